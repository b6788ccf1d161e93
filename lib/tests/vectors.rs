//! Test vectors in `testdata/vectors/`: bundles (valid and each breaking one rule) with their
//! expected outcome in `expected.txt`, and frozen chunk boundaries.
//!
//! `every_vector_gives_its_outcome` runs each vector through open → plan → apply. The vectors
//! are generated here; `vectors_are_fresh` fails when the checked-in files differ from what
//! this code generates. Regenerate with:
//!
//!     ABDELTA_REGEN_VECTORS=1 cargo test -p abdelta --test vectors
//!
//! A station build (`--no-default-features`, no generator) runs the vectors and the checks of
//! SPEC.md against them; generating them needs the generator.
#![allow(clippy::unwrap_used)]
#![cfg_attr(not(feature = "generator"), allow(dead_code, unused_imports))]

mod common;

use std::path::PathBuf;

use abdelta::DEFAULT_CHUNKING;
use abdelta::format::manifest::{pack, unpack};
use abdelta::format::{
    ChunkCheck, ENVELOPE_LEN, Envelope, Fallback, FormatError, Limits, Manifest, PatchCodec,
    SignatureRecord,
};
use abdelta::internals::chunk_and_hash;
use abdelta::no_progress;
use abdelta::sign::{SignError, sign_manifest};
use abdelta::storage::{MemBundle, MemTarget};
use abdelta::{ApplyError, BundleError, Error, SecretKey, VerifiedBundle};
#[cfg(feature = "generator")]
use common::options;
use common::{Rng, key, other_key};

const REGEN: &str = "ABDELTA_REGEN_VECTORS=1 cargo test -p abdelta --test vectors";

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/vectors")
}

fn images() -> (Vec<u8>, Vec<u8>) {
    let mut rng = Rng(2026);
    let mut source = Vec::new();
    for _ in 0..6 {
        source.extend(rng.text(12_000));
        source.extend(rng.bytes(3_000));
        source.extend(std::iter::repeat_n(0u8, 9_000));
    }
    let mut target = source.clone();
    target.splice(40_000..40_000, rng.text(2_000));
    target[100_000] ^= 0x10;
    target.truncate(target.len() - 5_000);
    // "Code" whose addresses all move by 0x40: the bsdiff-class patch codec's case.
    for i in 0..8_000u32 {
        let op = rng.bytes(2);
        source.extend_from_slice(&op);
        source.extend_from_slice(&(0x40_0000 + i * 8).to_le_bytes());
        target.extend_from_slice(&op);
        target.extend_from_slice(&(0x40_0040 + i * 8).to_le_bytes());
    }
    (source, target)
}

struct Parts {
    envelope: Envelope,
    manifest: Vec<u8>,
    payload: Vec<u8>,
}

fn split(bundle: &[u8]) -> Parts {
    let envelope = Envelope::decode(&bundle[..ENVELOPE_LEN], &Limits::DEFAULT).unwrap();
    let m_end = ENVELOPE_LEN + envelope.manifest_len as usize;
    let p_start = usize::try_from(envelope.payload_offset()).unwrap();
    Parts {
        envelope,
        manifest: bundle[ENVELOPE_LEN..m_end].to_vec(),
        payload: bundle[p_start..].to_vec(),
    }
}

/// Re-assembles a bundle around `manifest` bytes, signed by `signer` over `message`.
fn assemble(manifest: &[u8], payload: &[u8], record: SignatureRecord) -> Vec<u8> {
    let envelope = Envelope {
        manifest_len: u32::try_from(manifest.len()).unwrap(),
        signature_count: 1,
        keyset_len: 0,
        payload_len: payload.len() as u64,
    };
    let mut out = envelope.encode().to_vec();
    out.extend_from_slice(manifest);
    record.encode_into(&mut out);
    out.extend_from_slice(payload);
    out
}

fn resign(manifest: &[u8], payload: &[u8], signer: &SecretKey) -> Vec<u8> {
    assemble(manifest, payload, sign_manifest(signer, manifest))
}

fn edit_manifest(parts: &Parts, edit: impl FnOnce(&mut Manifest)) -> Vec<u8> {
    let mut m = Manifest::decode(&parts.manifest, &Limits::DEFAULT).unwrap();
    edit(&mut m);
    resign(&m.encode().unwrap(), &parts.payload, &key())
}

/// Files to write (name, bytes).
type Files = Vec<(String, Vec<u8>)>;

/// An earlier release than source.bin: a few bytes changed and a block inserted.
fn earlier(source: &[u8]) -> Vec<u8> {
    let mut rng = Rng(1999);
    let mut out = source.to_vec();
    for at in (5_000..out.len()).step_by(20_000) {
        out[at] ^= 0x21;
    }
    out.splice(70_000..70_000, rng.text(1_500));
    out
}

/// The vector files, and for each bundle the image it is applied against (`none`: a blank
/// device).
#[cfg(feature = "generator")]
fn generate() -> (Files, Vec<(String, &'static str)>) {
    let (source, target) = images();
    let earlier = earlier(&source);
    let mut delta = Vec::new();
    abdelta::diff(
        &source,
        &target,
        &options(),
        &key(),
        &mut delta,
        &no_progress,
    )
    .unwrap();
    let mut full = Vec::new();
    abdelta::diff(&[], &target, &options(), &key(), &mut full, &no_progress).unwrap();
    let parts = split(&delta);
    let mut fleet = Vec::new();
    abdelta::diff_bases(
        &source,
        &[&earlier],
        &target,
        &options(),
        &key(),
        &mut fleet,
        &no_progress,
    )
    .unwrap();
    let mut bundles: Vec<(&str, &'static str, Vec<u8>)> = vec![
        ("ok_delta", "source.bin", delta.clone()),
        ("ok_delta_blank_device", "none", delta.clone()),
        ("ok_full", "none", full.clone()),
        ("ok_fleet", "source.bin", fleet.clone()),
        ("ok_fleet_earlier_device", "earlier.bin", fleet),
    ];
    let mut flip = |name: &'static str, at: usize, xor: u8| {
        let mut b = delta.clone();
        b[at] ^= xor;
        bundles.push((name, "source.bin", b));
    };
    flip("envelope_bad_magic", 1, 0x01);
    // The versions either side of FORMAT_VERSION (10).
    flip("envelope_version_9", 8, 0x03);
    flip("envelope_version_11", 8, 0x01);
    flip("envelope_reserved_nonzero", 22, 0x01);
    flip("envelope_keyset_len_too_large", 20, 0x01);
    flip(
        "signature_flipped_bit",
        ENVELOPE_LEN + parts.manifest.len() + 8 + 10,
        0x04,
    );
    flip("manifest_flipped_bit", ENVELOPE_LEN + 5, 0x80);
    let mut push = |name: &'static str, source: bool, bytes: Vec<u8>| {
        bundles.push((name, if source { "source.bin" } else { "none" }, bytes))
    };
    let mut zstd_magic = delta.clone();
    zstd_magic[..4].copy_from_slice(&[0x28, 0xb5, 0x2f, 0xfd]);
    push("envelope_zstd_magic", true, zstd_magic);
    let with_manifest_len = |len: u32| {
        let mut b = delta.clone();
        b[12..16].copy_from_slice(&len.to_le_bytes());
        b
    };
    push("envelope_manifest_len_zero", true, with_manifest_len(0));
    push(
        "envelope_manifest_len_max",
        true,
        with_manifest_len(u32::MAX),
    );
    let mut no_sigs = delta.clone();
    no_sigs[16..18].copy_from_slice(&0u16.to_le_bytes());
    push("envelope_signature_count_zero", true, no_sigs);
    let mut trailing = delta.clone();
    trailing.push(0);
    push("bundle_trailing_byte", true, trailing);
    push("bundle_truncated", true, delta[..delta.len() - 1].to_vec());
    push("bundle_empty", true, Vec::new());
    push(
        "signature_all_zero",
        true,
        assemble(
            &parts.manifest,
            &parts.payload,
            SignatureRecord {
                key_id: key().public().key_id().0,
                signature: [0; 64],
            },
        ),
    );
    push(
        "signature_unknown_key",
        true,
        resign(&parts.manifest, &parts.payload, &other_key()),
    );
    // A valid signature by the right key, but over other bytes (the manifest minus its first
    // byte): what a signer that hashed or framed the manifest differently would produce.
    let raw = assemble(
        &parts.manifest,
        &parts.payload,
        sign_manifest(&key(), &parts.manifest[1..]),
    );
    push("signature_over_other_bytes", true, raw);
    // A byte after the plain encoding, and a byte after the frame that stores it.
    let mut trailing_plain = unpack(&parts.manifest, &Limits::DEFAULT).unwrap();
    trailing_plain.push(0);
    push(
        "manifest_trailing_byte",
        true,
        resign(&pack(&trailing_plain).unwrap(), &parts.payload, &key()),
    );
    let mut trailing_frame = parts.manifest.clone();
    trailing_frame.push(0);
    push(
        "manifest_frame_trailing_byte",
        true,
        resign(&trailing_frame, &parts.payload, &key()),
    );
    push(
        "manifest_key_id_mismatch",
        true,
        edit_manifest(&parts, |m| m.key_id = other_key().public().key_id().0),
    );
    push(
        "manifest_chunks_short_of_target",
        true,
        edit_manifest(&parts, |m| m.target.size += 1),
    );
    push(
        "manifest_payload_len_mismatch",
        true,
        edit_manifest(&parts, |m| m.payload_len += 1),
    );
    push(
        "manifest_blobs_overlap",
        true,
        edit_manifest(&parts, |m| {
            let mut first = None;
            for c in &mut m.chunks {
                if let Fallback::Literal { blob, .. } = &mut c.fallback {
                    match first {
                        None => first = Some(*blob),
                        Some(f) => {
                            blob.offset = f.offset;
                            break;
                        }
                    }
                }
            }
        }),
    );
    push(
        "manifest_target_hash_wrong",
        false,
        edit_manifest(&parts, |m| m.target.hash[0] ^= 1),
    );
    push(
        "manifest_chunk_hash_wrong",
        false,
        edit_manifest(&parts, |m| {
            if let Some(c) = m
                .chunks
                .iter_mut()
                .find(|c| matches!(c.fallback, Fallback::Literal { .. }))
            {
                match &mut c.check {
                    ChunkCheck::Hash(hash) => hash[15] ^= 1,
                    ChunkCheck::Source(hash) => hash[7] ^= 1,
                    ChunkCheck::Zero => {}
                }
            }
        }),
    );
    let literal_at = {
        let m = Manifest::decode(&parts.manifest, &Limits::DEFAULT).unwrap();
        let blob = m.chunks.iter().find_map(|c| match c.fallback {
            Fallback::Literal { blob, .. } => Some(blob),
            Fallback::Zero => None,
        });
        usize::try_from(parts.envelope.payload_offset() + blob.unwrap().offset).unwrap() + 2
    };
    let mut corrupt = delta.clone();
    corrupt[literal_at] ^= 0xff;
    push("blob_literal_corrupt", false, corrupt);
    let group_at = {
        let m = Manifest::decode(&parts.manifest, &Limits::DEFAULT).unwrap();
        let (blob, ..) = m.groups()[0];
        usize::try_from(parts.envelope.payload_offset() + blob.offset).unwrap()
            + blob.len as usize / 2
    };
    let mut corrupt = delta.clone();
    corrupt[group_at] ^= 0xff;
    push("ok_group_corrupt_falls_back", true, corrupt);

    let mut files = Vec::new();
    let mut expected = Vec::new();
    for (name, uses_source, bytes) in bundles {
        files.push((format!("{name}.abd"), bytes));
        expected.push((format!("{name}.abd"), uses_source));
    }
    files.push(("source.bin".into(), source.clone()));
    files.push(("earlier.bin".into(), earlier));
    files.push(("target.bin".into(), target.clone()));
    files.push((
        "release.pub".into(),
        key().public().to_pem().unwrap().into_bytes(),
    ));
    let mut chunks = String::from(
        "# FastCDC 2020 boundaries of target.bin with the default parameters (16/64/256 KiB): offset length blake3\n",
    );
    for c in chunk_and_hash(&target, DEFAULT_CHUNKING) {
        chunks.push_str(&format!("{} {} {}\n", c.offset, c.len, hex(&c.hash)));
    }
    files.push(("chunks_default.txt".into(), chunks.into_bytes()));
    (files, expected)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The rule an error names, as written in expected.txt.
fn rule(e: &Error) -> String {
    match e {
        Error::Bundle(BundleError::Format(f)) => match f {
            FormatError::Truncated { field } => format!("Truncated({field})"),
            FormatError::BadMagic => "BadMagic".into(),
            FormatError::UnsupportedVersion { found } => format!("UnsupportedVersion({found})"),
            FormatError::Unsupported { field, .. } => format!("Unsupported({field})"),
            FormatError::OutOfRange { field, .. } => format!("OutOfRange({field})"),
            FormatError::Malformed { field, rule } => format!("Malformed({field}: {rule})"),
            FormatError::TrailingBytes { what, .. } => format!("TrailingBytes({what})"),
            other => format!("{other:?}"),
        },
        Error::Bundle(BundleError::Sign(s)) => match s {
            SignError::UnknownKey => "UnknownKey".into(),
            SignError::BadSignature => "BadSignature".into(),
            SignError::KeyIdMismatch => "KeyIdMismatch".into(),
            other => format!("{other:?}"),
        },
        Error::Bundle(BundleError::BundleLength { .. }) => "BundleLength".into(),
        Error::Bundle(BundleError::PayloadLengthMismatch) => "PayloadLengthMismatch".into(),
        Error::Apply(ApplyError::Blob { index, .. }) => format!("Blob({index})"),
        Error::Apply(ApplyError::ChunkHashMismatch { index }) => {
            format!("ChunkHashMismatch({index})")
        }
        Error::Apply(ApplyError::TargetHashMismatch { .. }) => "TargetHashMismatch".into(),
        other => format!("{other}"),
    }
}

fn outcome(bundle: &[u8], source: &[u8]) -> String {
    let keys = vec![key().public()];
    let verified = match VerifiedBundle::open(&MemBundle(bundle), &keys, &Limits::DEFAULT) {
        Ok(v) => v,
        Err(e) => return format!("reject {}", rule(&e.into())),
    };
    let plan = abdelta::plan(&verified, source);
    let mut target = MemTarget::default();
    match abdelta::apply(
        &verified,
        &MemBundle(bundle),
        source,
        &mut target,
        &plan,
        &no_progress,
    ) {
        Ok(r) => format!(
            "ok read={} blake3={}",
            r.bundle_bytes_read,
            hex(blake3::hash(&target.bytes).as_bytes())
        ),
        Err(e) => format!("apply-error {}", rule(&e.into())),
    }
}

fn expected_txt(files: &[(String, Vec<u8>)], uses: &[(String, &'static str)]) -> String {
    let mut out = String::from(
        "# vector, source it is applied against, outcome (see lib/tests/vectors.rs)\n",
    );
    for (name, src) in uses {
        let bytes = &files.iter().find(|(n, _)| n == name).unwrap().1;
        let image: &[u8] = files.iter().find(|(n, _)| n == src).map_or(&[], |(_, b)| b);
        out.push_str(&format!("{name} {src} {}\n", outcome(bytes, image)));
    }
    out
}

#[test]
#[cfg(feature = "generator")]
fn vectors_are_fresh() {
    let (mut files, uses) = generate();
    let expected = expected_txt(&files, &uses);
    files.push(("expected.txt".into(), expected.into_bytes()));
    let dir = dir();
    if std::env::var_os("ABDELTA_REGEN_VECTORS").is_some() {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in &files {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|_| panic!("no vectors in {}; run {REGEN}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut generated: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
    generated.sort();
    assert_eq!(on_disk, generated, "vector set changed; run {REGEN}");
    for (name, bytes) in &files {
        let disk = std::fs::read(dir.join(name)).unwrap();
        assert!(
            disk == *bytes,
            "testdata/vectors/{name} is stale; run {REGEN}"
        );
    }
}

#[test]
fn every_vector_gives_its_outcome() {
    if std::env::var_os("ABDELTA_REGEN_VECTORS").is_some() {
        return; // the files are being rewritten by vectors_are_fresh
    }
    let dir = dir();
    let text = std::fs::read_to_string(dir.join("expected.txt")).unwrap();
    let target = std::fs::read(dir.join("target.bin")).unwrap();
    let target_hash = hex(blake3::hash(&target).as_bytes());
    let mut seen = 0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let mut fields = line.splitn(3, ' ');
        let (name, src, want) = (
            fields.next().unwrap(),
            fields.next().unwrap(),
            fields.next().unwrap(),
        );
        let bundle = std::fs::read(dir.join(name)).unwrap();
        let image = match src {
            "none" => Vec::new(),
            file => std::fs::read(dir.join(file)).unwrap(),
        };
        assert_eq!(outcome(&bundle, &image), want, "vector {name}");
        if name.starts_with("ok_") {
            assert!(
                want.ends_with(&target_hash),
                "{name} must rebuild target.bin"
            );
        } else {
            assert!(
                !want.starts_with("ok"),
                "negative vector {name} was accepted"
            );
        }
        seen += 1;
    }
    assert!(seen >= 20);
}

#[test]
fn ok_delta_shares_patch_groups() {
    if std::env::var_os("ABDELTA_REGEN_VECTORS").is_some() {
        return; // the files are being rewritten by vectors_are_fresh
    }
    let bytes = std::fs::read(dir().join("ok_delta.abd")).unwrap();
    let parts = split(&bytes);
    let m = Manifest::decode(&parts.manifest, &Limits::DEFAULT).unwrap();
    let patches: Vec<_> = m.chunks.iter().filter_map(|c| c.patch).collect();
    assert!(patches.iter().all(|p| p.codec == PatchCodec::Grouped));
    let groups = m.groups();
    assert!(
        !groups.is_empty() && groups.len() < patches.len(),
        "{} patches in {} groups",
        patches.len(),
        groups.len()
    );
    assert!(patches.iter().any(|p| !p.base.ranges().is_empty()));
}

/// SPEC.md states the vectors' sizes (§12) and ok_delta.abd's envelope (§3): they stay true.
#[test]
fn the_spec_states_the_vectors_as_they_are() {
    if std::env::var_os("ABDELTA_REGEN_VECTORS").is_some() {
        return;
    }
    let spec =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../SPEC.md"))
            .unwrap();
    let dir = dir();
    let mut checked = 0;
    for line in spec.lines().filter(|l| l.starts_with("| `")) {
        let Some((first, rest)) = line[2..].split_once(" |") else {
            continue;
        };
        let files: Vec<&str> = first
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|f| dir.join(f).is_file())
            .collect();
        // Every "N NNN bytes" in the row, in order, one per file named.
        let sizes: Vec<u64> = rest
            .split(" bytes")
            .filter_map(|before| {
                let digits: String = before
                    .chars()
                    .rev()
                    .take_while(|c| c.is_ascii_digit() || *c == ' ')
                    .collect::<String>()
                    .chars()
                    .rev()
                    .filter(char::is_ascii_digit)
                    .collect();
                digits.parse().ok()
            })
            .collect();
        if files.is_empty() || sizes.len() < files.len() {
            continue;
        }
        for (file, size) in files.iter().zip(&sizes) {
            let actual = std::fs::metadata(dir.join(file)).unwrap().len();
            assert_eq!(actual, *size, "SPEC.md §12 says {file} is {size} bytes");
            checked += 1;
        }
    }
    assert!(checked >= 5, "only {checked} sizes found in SPEC.md §12");
    let envelope: String = std::fs::read(dir.join("ok_delta.abd")).unwrap()[..32]
        .chunks(4)
        .map(hex)
        .collect::<Vec<_>>()
        .join(" ");
    let spelled: String = envelope.replace(' ', "");
    let in_spec: String = spec
        .lines()
        .find(|l| l.starts_with('`') && l.contains("89414244"))
        .unwrap()
        .chars()
        .filter(char::is_ascii_hexdigit)
        .collect();
    assert_eq!(in_spec, spelled, "SPEC.md §3's example envelope");
}

/// SPEC.md §10 names every rule the decoders report: each `Malformed` rule string and each
/// range-checked field in `lib/src/format/` appears there, so the catalogue cannot fall behind
/// the code.
#[test]
fn the_spec_names_every_rule_the_decoders_report() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let spec = std::fs::read_to_string(root.join("../SPEC.md")).unwrap();
    let catalogue = spec
        .split("## 10. Error catalogue")
        .nth(1)
        .unwrap()
        .split("## 11.")
        .next()
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let mut missing = Vec::new();
    let mut seen = 0;
    // The format's files, those of its subfolders (the manifest's) included.
    let mut files = Vec::new();
    let mut dirs = vec![root.join("src/format")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            match path.is_dir() {
                true => dirs.push(path),
                false => files.push(path),
            }
        }
    }
    for path in files {
        let code = std::fs::read_to_string(path).unwrap();
        let code = code.split("#[cfg(test)]").next().unwrap();
        // Strings after these markers are rules or range-checked field names.
        for marker in ["rule: \"", "malformed(\"", "_in(\"", "RULE: &str = \""] {
            for piece in code.split(marker).skip(1) {
                let text = piece.split('"').next().unwrap();
                if text.is_empty() {
                    continue;
                }
                seen += 1;
                if !catalogue.contains(text) {
                    missing.push(text.to_owned());
                }
            }
        }
    }
    assert!(seen > 30, "only {seen} rules found");
    assert!(missing.is_empty(), "not in SPEC.md §10: {missing:#?}");
}
