//! Entry points for the fuzz targets in `fuzz/` (compiled only under `cfg(fuzzing)`). Each
//! asserts an oracle, not just "no panic": canonical round trips, writes inside the target.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use crate::format::{Envelope, Limits, Manifest};
use crate::storage::{MemBundle, MemTarget};

/// Small limits so the fuzzer explores edges instead of allocating.
const FUZZ_LIMITS: Limits = Limits {
    max_manifest_len: 1 << 20,
    max_signatures: 8,
    max_chunks: 4096,
    max_chunk_len: 1 << 16,
    max_blob_len: 1 << 17,
    max_patch_base_len: 1 << 18,
    max_image_len: 1 << 24,
    max_group_len: 1 << 18,
};

/// Envelope decoding (accepted envelopes re-encode to the same bytes), and a whole bundle
/// read and checked against a trusted key (the test vectors' signing key, so seeds from the
/// vectors verify): the path every byte takes before anything is trusted. A bundle that
/// verifies must carry a manifest that re-encodes to the bytes that were signed.
pub fn envelope(data: &[u8]) {
    if let Ok(e) = Envelope::decode(data, &FUZZ_LIMITS) {
        assert_eq!(&e.encode()[..], data);
    }
    let trusted = [crate::SecretKey::from_seed(&[7; 32]).public()];
    if let Ok(unverified) = crate::UnverifiedBundle::read(&MemBundle(data), &FUZZ_LIMITS)
        && let Ok(verified) = unverified.verify(&trusted, &FUZZ_LIMITS)
    {
        let signed = verified.verified().manifest_hash();
        assert_eq!(
            blake3::hash(&verified.manifest().encode().unwrap_or_default()).as_bytes(),
            signed
        );
    }
}

/// Manifest decoding: accepted plain manifests re-encode to the same bytes (one encoding per
/// value); stored (packed) manifests unpack within the limit or are refused.
pub fn manifest(data: &[u8]) {
    if let Ok(m) = Manifest::decode_plain(data, &FUZZ_LIMITS) {
        assert_eq!(m.encode_plain(), data, "non-canonical manifest accepted");
    }
    // The same bytes as a stored manifest: unpacked within the limit, or refused.
    if let Ok(plain) = crate::format::manifest::unpack(data, &FUZZ_LIMITS) {
        assert!(plain.len() <= FUZZ_LIMITS.max_manifest_len as usize);
    }
}

/// Blob codecs under their declared-size cap: output never exceeds the buffer; patch groups
/// decode to exactly their declared length or fail; bsdiff-class records never read outside
/// the base or write outside the chunk.
pub fn codec(data: &[u8]) {
    // Three 3-byte little-endian numbers (low 20 bits used): the declared length, and where
    // a group's gaps and extra bytes start; then the blob.
    let Some((header, rest)) = data.split_first_chunk::<9>() else {
        return;
    };
    // At most 1 MiB: larger buffers only slow the fuzzer down.
    let [len, gaps_at, extra_at] = [0, 3, 6].map(|at| {
        let [a, b, c] = header
            .get(at..at + 3)
            .and_then(|n| n.try_into().ok())
            .unwrap_or([0; 3]);
        u32::from_le_bytes([a, b, c, 0]) & 0xf_ffff
    });
    let mut out = vec![0u8; len as usize];
    let _ = crate::codec::decode_literal(rest, &mut out);
    let layout = crate::format::GroupLayout {
        len,
        gaps_at,
        extra_at,
    };
    if let Ok(content) = crate::codec::decode_group(rest, &layout) {
        assert_eq!(
            content.len(),
            len as usize,
            "group decoded to another length"
        );
    }
    // bsdiff-class streams read directly, so the control records are reached: the rest split
    // into base, control records, difference gaps and values, and extra bytes.
    let (base, streams) = rest.split_at(rest.len() / 2);
    let (ctrl, streams) = streams.split_at(streams.len() / 4);
    let (gaps, streams) = streams.split_at(streams.len() / 3);
    let (values, extra) = streams.split_at(streams.len() / 2);
    let parts = crate::codec::PatchParts {
        ctrl,
        gaps,
        values,
        extra,
    };
    let _ = crate::codec::decode_bsdiff_content(base, parts, &mut out);
}

/// The whole device path on an unsigned bundle (plain manifest bytes ‖ payload, split by the
/// first two bytes) against a small source: plan, then apply into memory. Every write must land
/// inside the target; nothing may panic.
pub fn apply(data: &[u8]) {
    let Some((head, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let split = usize::from(u16::from_le_bytes(*head)).min(rest.len());
    let (manifest_bytes, payload) = rest.split_at(split);
    let Some((bundle, bytes)) =
        crate::bundle::VerifiedBundle::fuzz_unsigned(manifest_bytes, payload, &FUZZ_LIMITS)
    else {
        return;
    };
    let source_len = bundle.manifest().source.map_or(0, |s| s.size.min(1 << 16));
    let source: Vec<u8> = (0..source_len).map(|i| (i % 251) as u8).collect();
    let plan = crate::plan(&bundle, &source);
    let mut target = MemTarget::default();
    let applied = crate::apply(
        &bundle,
        &MemBundle(&bytes),
        &source,
        &mut target,
        &plan,
        &crate::error::no_progress,
    );
    assert!(target.bytes.len() as u64 <= bundle.manifest().target.size);
    // Ok means the signed image, whatever the bytes: its hash is the manifest's.
    if applied.is_ok() {
        let image = &target.bytes;
        assert_eq!(image.len() as u64, bundle.manifest().target.size);
        assert_eq!(
            crate::chunk::hash_large(image),
            bundle.manifest().target.hash,
            "apply returned Ok for an image that is not the signed one"
        );
    }
}

/// Keyset documents and files: accepted documents re-encode to the same bytes; files never
/// panic.
pub fn keyset(data: &[u8]) {
    if let Ok(k) = crate::format::Keyset::decode(data) {
        assert_eq!(k.encode(), data, "non-canonical keyset accepted");
    }
    let _ = crate::format::SignedKeyset::decode(data);
}

/// The multipart/byteranges parser and the Content-Range parser: strict, bounded, no panic;
/// every byte delivered lies inside a range that was asked for; and the reply fed in small
/// pieces (a reader buffer of 1..=255 bytes, picked by the first input byte) gives exactly the
/// result of feeding it whole.
pub fn multipart(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let asked = [0..u64::from(selector % 16) + 1, 100..164, 4000..4001];
    let run = |capacity: usize| {
        let mut reader = std::io::BufReader::with_capacity(capacity, rest);
        let mut bytes: Vec<(u64, u8)> = Vec::new();
        let mut sink = |offset: u64, chunk: &[u8]| -> std::io::Result<()> {
            let end = offset + chunk.len() as u64;
            assert!(
                asked.iter().any(|r| r.start <= offset && end <= r.end),
                "delivered bytes outside the ranges asked"
            );
            bytes.extend((offset..).zip(chunk.iter().copied()));
            Ok(())
        };
        let (delivered, result) =
            crate::fetch::multipart::parse(&mut reader, "XYZ", &asked, 10_000, &mut sink);
        (delivered, result.map_err(|e| e.to_string()), bytes)
    };
    let pieces = run(usize::from(selector).max(1));
    let whole = run(rest.len().max(1));
    assert_eq!(
        pieces, whole,
        "the result depends on how the reply was split"
    );
    if let Ok(text) = std::str::from_utf8(rest) {
        let _ = crate::fetch::response::boundary(text);
    }
}

/// The resume journal's decoder. The input is a sequence of records, each a flag byte and a
/// 16-byte body; the hook appends the right checksum unless the flag says to damage it, so the
/// fuzzer reaches the record checks behind the checksums. Oracle: the received ranges are
/// sorted, disjoint and inside the bundle; the valid prefix is whole records; decoding that
/// prefix alone gives the same ranges; another manifest's header yields nothing.
pub fn journal(data: &[u8]) {
    use crate::fetch::stage::{HEADER_LEN, RECORD_LEN, journal_header, read_journal};
    let Some((len_bytes, records)) = data.split_first_chunk::<4>() else {
        return;
    };
    let len = u64::from(u32::from_le_bytes(*len_bytes)) * 17;
    let header = journal_header(&[7; 32], len);
    let mut journal = header.clone();
    for unit in records.chunks(17) {
        let Some((&flag, body)) = unit.split_first() else {
            break;
        };
        journal.extend_from_slice(body);
        let sum = blake3::hash(body);
        let mut sum = *sum.as_bytes().first_chunk::<8>().unwrap();
        if flag & 1 == 1 {
            sum[usize::from(flag >> 5)] ^= flag;
        }
        journal.extend_from_slice(&sum);
    }
    let (done, valid) = read_journal(&journal, &header, len);
    assert!(valid == 0 || (valid >= HEADER_LEN && (valid - HEADER_LEN) % RECORD_LEN == 0));
    assert!(valid <= journal.len());
    for pair in done.windows(2) {
        if let [a, b] = pair {
            assert!(a.end < b.start, "ranges not merged: {done:?}");
        }
    }
    assert!(done.iter().all(|r| r.start < r.end && r.end <= len));
    assert_eq!(
        read_journal(journal.get(..valid).unwrap(), &header, len).0,
        done
    );
    let other = journal_header(&[8; 32], len);
    assert_eq!(read_journal(&journal, &other, len), (Vec::new(), 0));
}

/// The decoders of the local state files (the device state and the HTTP head cache):
/// accepted files re-encode to the same bytes. The input is tried as a whole file and, so the
/// fuzzer reaches the fields behind the checksum, as a body with the right checksum appended.
pub fn state(data: &[u8]) {
    use crate::fetch::HeadCache;
    use crate::policy::DeviceState;
    let mut file = data.to_vec();
    file.extend_from_slice(blake3::hash(data).as_bytes());
    for bytes in [data, &file] {
        if let Some(s) = DeviceState::decode(bytes) {
            let again = s.encode();
            if bytes.starts_with(b"ABDSTAT1") {
                // Version 1 is migrated: saved again as version 2, to the same state.
                assert_eq!(DeviceState::decode(&again), Some(s), "migration not stable");
            } else {
                assert_eq!(again, bytes, "non-canonical state accepted");
            }
        }
        if let Some(h) = HeadCache::decode(bytes) {
            assert_eq!(h.encode(), bytes, "non-canonical head cache accepted");
        }
    }
}
