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
};

/// Envelope decoding; accepted envelopes re-encode to the same bytes.
pub fn envelope(data: &[u8]) {
    if let Ok(e) = Envelope::decode(data, &FUZZ_LIMITS) {
        assert_eq!(&e.encode()[..], data);
    }
}

/// Manifest decoding; accepted manifests re-encode to the same bytes (one encoding per value).
pub fn manifest(data: &[u8]) {
    if let Ok(m) = Manifest::decode(data, &FUZZ_LIMITS) {
        assert_eq!(m.encode(), data, "non-canonical manifest accepted");
    }
}

/// Blob codecs under their declared-size cap: output never exceeds the buffer.
pub fn codec(data: &[u8]) {
    let Some((&len_byte, rest)) = data.split_first() else {
        return;
    };
    let len = usize::from(len_byte) * 256 + 1;
    let mut out = vec![0u8; len];
    let _ = crate::codec::decode_literal(rest, &mut out);
    let (base, blob) = rest.split_at(rest.len() / 2);
    let _ = crate::codec::decode_patch(base, blob, &mut out);
}

/// The whole device path on an unsigned bundle (manifest bytes ‖ payload, split by the first
/// two bytes) against a small source: plan, then apply into memory. Every write must land
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
    let _ = crate::apply(
        &bundle,
        &MemBundle(&bytes),
        &source,
        &mut target,
        &plan,
        &crate::error::no_progress,
    );
    assert!(target.bytes.len() as u64 <= bundle.manifest().target.size);
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
/// every byte delivered lies inside a range that was asked for. The first byte picks how the
/// input is split between the asked ranges and the reply, and the reader's buffer size.
pub fn multipart(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let asked = [0..u64::from(selector % 16) + 1, 100..164, 4000..4001];
    let capacity = usize::from(selector).max(1);
    let mut reader = std::io::BufReader::with_capacity(capacity, rest);
    let mut sink = |offset: u64, bytes: &[u8]| -> std::io::Result<()> {
        let end = offset + bytes.len() as u64;
        assert!(
            asked.iter().any(|r| r.start <= offset && end <= r.end),
            "delivered bytes outside the ranges asked"
        );
        Ok(())
    };
    let _ = crate::fetch::multipart::parse(&mut reader, "XYZ", &asked, 10_000, &mut sink);
    if let Ok(text) = std::str::from_utf8(rest) {
        let _ = crate::fetch::multipart::boundary(text);
    }
}
