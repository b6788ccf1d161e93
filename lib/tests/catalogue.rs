//! The bad-input catalogue of THREATS.md §5, one test per item, named `bad_NN_<defect>`. Each
//! asserts the specific error (the rule that failed), no panic, and that nothing unverified
//! reaches the target. Items covered by a threat-row test carry both names there
//! (`threats.rs`: `t12_bad_17_…`, `t05_bad_18_…`, `t06_bad_19_…`, `t07_bad_20_…`); the
//! transport items 43–46 are in `http.rs` (`bad_43_…`–`bad_46_…`) and item 47 is a unit test of
//! the multipart parser (`lib/src/fetch/multipart.rs`). The allocation bound of the worst
//! inputs is measured in `alloc.rs`.
// These tests make bundles: they need the generator.
#![cfg(feature = "generator")]
#![allow(clippy::unwrap_used)]

mod common;

use abdelta::format::manifest::{pack, unpack};
use abdelta::format::{
    ChunkCheck, Cursor, ENVELOPE_LEN, Envelope, Fallback, FormatError, Limits, Manifest,
    SignatureRecord,
};
use abdelta::no_progress;
use abdelta::policy::{DeviceState, Policy, PolicyError};
use abdelta::sign::{SignError, sign_manifest};
use abdelta::storage::{FileTarget, MemBundle, MemTarget, SourceImage};
use abdelta::{
    ApplyError, ApplyReport, BundleError, OverBudget, SecretKey, UnverifiedBundle, VerifiedBundle,
};
use abdelta::{
    CodecError,
    internals::{decode_literal, encode_literal},
};
use common::*;

/// A small delta bundle (images from `common::images`) and its source.
fn fixture() -> (Vec<u8>, Vec<u8>) {
    let (a, _) = images();
    (bundle(&release(2), &key()), a)
}

/// A bundle for a blank device: literals and zero chunks only.
fn blank_fixture() -> (Vec<u8>, Vec<u8>) {
    let mut rng = Rng(5);
    let mut target = rng.bytes(200_000);
    target.extend_from_slice(&rng.text(200_000));
    let mut out = Vec::new();
    abdelta::diff(&[], &target, &release(2), &key(), &mut out, &no_progress).unwrap();
    (out, target)
}

fn open(bytes: &[u8]) -> Result<VerifiedBundle, BundleError> {
    VerifiedBundle::open(&MemBundle(bytes), &trusted(), &Limits::DEFAULT)
}

/// The format rule a bundle breaks, before or after its signature verified.
fn format_error(bytes: &[u8]) -> FormatError {
    match open(bytes) {
        Err(BundleError::Format(e) | BundleError::Sign(SignError::Format(e))) => e,
        Err(other) => panic!("expected a format error, got {other}"),
        Ok(_) => panic!("expected a format error, got acceptance"),
    }
}

fn sign_err(bytes: &[u8]) -> SignError {
    match open(bytes) {
        Err(BundleError::Sign(e)) => e,
        Err(other) => panic!("expected a signature error, got {other}"),
        Ok(_) => panic!("expected a signature error, got acceptance"),
    }
}

/// `bytes` with the envelope rewritten by `edit` (nothing re-signed: the envelope is not).
fn with_envelope(bytes: &[u8], edit: impl FnOnce(&mut [u8; ENVELOPE_LEN])) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let head: &mut [u8; ENVELOPE_LEN] = (&mut out[..ENVELOPE_LEN]).try_into().unwrap();
    edit(head);
    out
}

/// The bundle around a stored manifest packed from its plain encoding rewritten by `edit`,
/// correctly signed by the trusted key: what a generator bug or a stolen key could produce.
/// The payload is kept.
fn resigned_bytes(bytes: &[u8], edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let (_, stored, payload) = parts(bytes);
    let mut plain = unpack(&stored, &Limits::DEFAULT).unwrap();
    edit(&mut plain);
    resigned_stored(&pack(&plain).unwrap(), &payload)
}

/// The bundle around stored manifest bytes as given, correctly signed.
fn resigned_stored(stored: &[u8], payload: &[u8]) -> Vec<u8> {
    assemble(stored, &[sign_manifest(&key(), stored)], payload)
}

/// As [`resigned_bytes`], editing the chunk table's columns (SPEC.md §5.2; indexes below).
fn resigned_columns(bytes: &[u8], edit: impl FnOnce(&mut [Vec<u8>])) -> Vec<u8> {
    resigned_bytes(bytes, |plain| {
        let m = Manifest::decode_plain(plain, &Limits::DEFAULT).unwrap();
        let start = chunk_table_start(&m);
        let mut c = Cursor::new(&plain[start..]);
        let mut columns: Vec<Vec<u8>> = (0..COLUMNS)
            .map(|_| c.bytes("column", u64::MAX).unwrap().to_vec())
            .collect();
        c.finish("manifest").unwrap();
        edit(&mut columns);
        plain.truncate(start);
        for column in &columns {
            abdelta::format::cursor::put_bytes(plain, column);
        }
    })
}

/// The chunk table's columns, in order (SPEC.md §5.2); the ones the tests edit.
const COLUMNS: usize = 15;
const LENGTHS: usize = 0;
const MASKS: usize = 1;
const CHECKS: usize = 2;
const PATCH_GROUPS: usize = 9;
const LITERAL_CODECS: usize = 11;
const LITERAL_LENGTHS: usize = 13;

/// As [`resigned_bytes`], editing the decoded manifest (encoded without validation).
fn resigned(bytes: &[u8], edit: impl FnOnce(&mut Manifest)) -> Vec<u8> {
    resigned_bytes(bytes, |m| {
        let mut manifest = Manifest::decode_plain(m, &Limits::DEFAULT).unwrap();
        edit(&mut manifest);
        *m = manifest.encode_plain();
    })
}

/// Plans and applies into memory, returning the result and what reached the target.
fn apply_keep(bytes: &[u8], source: &[u8]) -> (Result<ApplyReport, ApplyError>, Vec<u8>) {
    let verified = open(bytes).unwrap();
    let plan = abdelta::plan(&verified, source);
    let mut target = MemTarget::default();
    let result = abdelta::apply(
        &verified,
        &MemBundle(bytes),
        source,
        &mut target,
        &plan,
        &no_progress,
    );
    (result, target.bytes)
}

/// Where the manifest's field list (after the fixed head) starts: version, alg, key id.
const MANIFEST_HEAD: usize = 2 + 1 + 8;

// ---- Envelope / header -------------------------------------------------------------------

#[test]
fn bad_01_empty_file_is_truncated() {
    let r = UnverifiedBundle::read(&MemBundle(&[]), &Limits::DEFAULT);
    assert!(matches!(
        r,
        Err(BundleError::Format(FormatError::Truncated {
            field: "envelope"
        }))
    ));
}

#[test]
fn bad_02_truncation_at_every_offset_is_rejected() {
    let (b, _) = fixture();
    for cut in 0..b.len() {
        match open(&b[..cut]) {
            Err(BundleError::Format(FormatError::Truncated { .. })) => assert!(cut < ENVELOPE_LEN),
            Err(BundleError::BundleLength { declared, actual }) => {
                assert!(cut >= ENVELOPE_LEN);
                assert_eq!((declared, actual), (b.len() as u64, cut as u64));
            }
            Err(other) => panic!("cut at {cut}: {other}"),
            Ok(_) => panic!("cut at {cut}: accepted"),
        }
    }
}

#[test]
fn bad_03_wrong_magic_or_a_compressed_stream_is_bad_magic() {
    let (b, _) = fixture();
    for magic in [
        &b"\x89ABC\r\n\x1a\n"[..],
        &[0x28, 0xb5, 0x2f, 0xfd],          // zstd
        &[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0], // xz
        &[0x1f, 0x8b],                      // gzip
    ] {
        let bad = with_envelope(&b, |h| h[..magic.len()].copy_from_slice(magic));
        assert_eq!(format_error(&bad), FormatError::BadMagic);
    }
}

#[test]
fn bad_04_unknown_version_or_a_critical_flag_is_unsupported() {
    let (b, _) = fixture();
    for version in [0u16, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, u16::MAX] {
        let bad = with_envelope(&b, |h| h[8..10].copy_from_slice(&version.to_le_bytes()));
        assert_eq!(
            format_error(&bad),
            FormatError::UnsupportedVersion { found: version }
        );
        // The same inside the signed manifest.
        let bad = resigned_bytes(&b, |m| m[..2].copy_from_slice(&version.to_le_bytes()));
        assert_eq!(
            format_error(&bad),
            FormatError::UnsupportedVersion { found: version }
        );
    }
    // A future minor revision's flag: no flag is defined, so any set flag is refused.
    for bit in 0..16 {
        let bad = with_envelope(&b, |h| {
            h[10..12].copy_from_slice(&(1u16 << bit).to_le_bytes())
        });
        assert!(matches!(
            format_error(&bad),
            FormatError::Malformed { field: "flags", .. }
        ));
    }
}

#[test]
fn bad_05_manifest_len_zero_past_the_end_max_or_over_the_cap() {
    let (b, _) = fixture();
    let env = Envelope::decode(&b[..ENVELOPE_LEN], &Limits::DEFAULT).unwrap();
    let set = |len: u32| with_envelope(&b, |h| h[12..16].copy_from_slice(&len.to_le_bytes()));
    let cap = Limits::DEFAULT.max_manifest_len;
    for len in [0, cap + 1, u32::MAX] {
        assert!(
            matches!(
                format_error(&set(len)),
                FormatError::OutOfRange {
                    field: "manifest length",
                    ..
                }
            ),
            "{len}"
        );
    }
    // One byte more than the file holds: the declared length no longer matches the file.
    let remaining = u32::try_from(b.len() - ENVELOPE_LEN).unwrap();
    for len in [remaining + 1, env.manifest_len + 1, cap] {
        assert!(
            matches!(open(&set(len)), Err(BundleError::BundleLength { .. })),
            "{len}"
        );
    }
}

#[test]
fn bad_05_a_stored_manifest_is_one_frame_that_declares_its_length() {
    let (b, _) = fixture();
    let (_, stored, payload) = parts(&b);
    let plain = unpack(&stored, &Limits::DEFAULT).unwrap();
    let frame_error = |stored: &[u8]| format_error(&resigned_stored(stored, &payload));
    let rule = |rule| FormatError::Malformed {
        field: "manifest frame",
        rule,
    };
    // Signed plain bytes, a frame with a byte after it, two frames, a cut frame.
    let one = rule("a stored manifest is exactly one Zstandard frame");
    assert_eq!(frame_error(&plain), one);
    let mut trailing = stored.clone();
    trailing.push(0);
    assert_eq!(frame_error(&trailing), one);
    assert_eq!(frame_error(&[stored.clone(), stored.clone()].concat()), one);
    assert_eq!(frame_error(&stored[..stored.len() - 1]), one);
    // A frame that does not declare its length (streamed, no content size).
    let mut streamed = Vec::new();
    let mut encoder = zstd::stream::write::Encoder::new(&mut streamed, 3).unwrap();
    encoder.include_contentsize(false).unwrap();
    std::io::Write::write_all(&mut encoder, &plain).unwrap();
    encoder.finish().unwrap();
    assert_eq!(
        frame_error(&streamed),
        rule("the frame must declare its decoded length")
    );
    // A frame declaring more than the manifest limit is refused before anything is allocated.
    let big = pack(&vec![0u8; Limits::DEFAULT.max_manifest_len as usize + 1]).unwrap();
    assert!(matches!(
        frame_error(&big),
        FormatError::OutOfRange {
            field: "manifest length",
            ..
        }
    ));
}

#[test]
fn bad_06_trailing_bytes_after_the_envelope_the_manifest_or_the_payload() {
    let (b, _) = fixture();
    let mut envelope = b[..ENVELOPE_LEN].to_vec();
    envelope.push(0);
    assert!(matches!(
        Envelope::decode(&envelope, &Limits::DEFAULT),
        Err(FormatError::TrailingBytes { .. })
    ));
    let bad = resigned_bytes(&b, |m| m.push(0));
    assert!(matches!(
        format_error(&bad),
        FormatError::TrailingBytes {
            what: "manifest",
            count: 1
        }
    ));
    let mut longer = b.clone();
    longer.push(0);
    assert!(matches!(
        open(&longer),
        Err(BundleError::BundleLength { .. })
    ));
}

#[test]
fn bad_07_reserved_bytes_non_zero() {
    let (b, _) = fixture();
    for at in [22, 23] {
        for bit in 0..8 {
            let bad = with_envelope(&b, |h| h[at] |= 1 << bit);
            assert!(matches!(
                format_error(&bad),
                FormatError::Malformed {
                    field: "reserved",
                    ..
                }
            ));
        }
    }
}

// ---- Signature / keys --------------------------------------------------------------------

#[test]
fn bad_08_signature_all_zero_or_63_or_65_bytes() {
    let (b, _) = fixture();
    let (_, manifest, payload) = parts(&b);
    let zero = SignatureRecord {
        key_id: key().public().key_id().0,
        signature: [0; 64],
    };
    assert_eq!(
        sign_err(&assemble(&manifest, &[zero], &payload)),
        SignError::BadSignature
    );
    // Records are 72 bytes: a 63- or 65-byte signature leaves 71 or 73.
    let mut record = Vec::new();
    sign_manifest(&key(), &manifest).encode_into(&mut record);
    assert!(matches!(
        SignatureRecord::decode_all(&record[..71], 1),
        Err(FormatError::Truncated { .. })
    ));
    record.push(0);
    assert!(matches!(
        SignatureRecord::decode_all(&record, 1),
        Err(FormatError::TrailingBytes { .. })
    ));
}

/// ed25519's group order L, little-endian.
const L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

#[test]
fn bad_09_non_canonical_s_is_rejected() {
    let (b, _) = fixture();
    let (_, manifest, payload) = parts(&b);
    let good = sign_manifest(&key(), &manifest);
    // S + L: the same point, [S + L]B = [S]B, so the verification equation still holds. Only
    // the canonical-S rule refuses it (the malleability a lax verifier lets through).
    let mut s_plus_l = [0u8; 32];
    let mut carry = 0u16;
    for (i, out) in s_plus_l.iter_mut().enumerate() {
        let sum = u16::from(good.signature[32 + i]) + u16::from(L[i]) + carry;
        *out = (sum & 0xff) as u8;
        carry = sum >> 8;
    }
    assert_eq!(carry, 0, "S + L < 2^253 fits in 32 bytes");
    for s in [s_plus_l, L, [0xff; 32]] {
        let mut bad = good;
        bad.signature[32..].copy_from_slice(&s);
        assert_eq!(
            sign_err(&assemble(&manifest, &[bad], &payload)),
            SignError::BadSignature
        );
    }
}

#[test]
/// With a canonical key that is not of small order (weak keys are refused when loaded:
/// `keys::small_order_and_non_canonical_public_keys_are_rejected`), a small-order R cannot
/// satisfy the verification equation of any verifier; this proves such signatures are refused,
/// and the key rule is what keeps a lax verifier's weak-key forgery out.
fn bad_10_small_order_r_fails_the_signature_check() {
    let (b, _) = fixture();
    let (_, manifest, payload) = parts(&b);
    let good = sign_manifest(&key(), &manifest);
    // The identity point and a point of order 8 as R.
    let mut order8 = [0u8; 32];
    order8.copy_from_slice(
        &(0..32)
            .map(|i| {
                u8::from_str_radix(
                    &"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"
                        [2 * i..2 * i + 2],
                    16,
                )
                .unwrap()
            })
            .collect::<Vec<u8>>(),
    );
    let mut identity = [0u8; 32];
    identity[0] = 1;
    for r in [identity, order8] {
        let mut bad = good;
        bad.signature[..32].copy_from_slice(&r);
        assert_eq!(
            sign_err(&assemble(&manifest, &[bad], &payload)),
            SignError::BadSignature
        );
    }
}

#[test]
fn bad_11_keyset_with_a_small_order_or_non_canonical_key_is_rejected() {
    let (root, _) = roots();
    for weak in [
        [0u8; 32],
        {
            let mut k = [0xffu8; 32];
            k[0] = 0xec;
            k[31] = 0x7f; // -1: small order
            k
        },
        {
            let mut k = [0xffu8; 32];
            k[0] = 0xee;
            k[31] = 0x7f; // y = p + 1: non-canonical
            k
        },
    ] {
        let mut ks = keyset(2, &[(&key(), 0, u64::MAX)], None);
        ks.release_keys.push(abdelta::format::ReleaseKey {
            public_key: weak,
            not_before: 0,
            not_after: u64::MAX,
        });
        ks.release_keys.sort_by_key(|k| k.public_key);
        // The signing tool refuses it, and so does a device given a hand-signed file.
        assert_eq!(
            abdelta::sign::sign_keyset(&[&root], &ks),
            Err(SignError::WeakKey)
        );
        let file = common::sign_keyset_unchecked(&ROOT_SEED, &ks);
        assert_eq!(
            abdelta::sign::verify_keyset(&file, &[root.public()]).err(),
            Some(SignError::WeakKey)
        );
    }
}

#[test]
fn bad_12_valid_signature_by_an_untrusted_key_is_unknown_key() {
    let b = bundle(&release(2), &SecretKey::from_seed(&[42; 32]));
    assert_eq!(sign_err(&b), SignError::UnknownKey);
}

#[test]
fn bad_13_key_id_of_a_with_a_signature_by_b() {
    let (b, _) = fixture();
    let (_, manifest, payload) = parts(&b);
    // The record names the trusted key A; the signature is B's.
    let mut record = sign_manifest(&other_key(), &manifest);
    record.key_id = key().public().key_id().0;
    assert_eq!(
        sign_err(&assemble(&manifest, &[record], &payload)),
        SignError::BadSignature
    );
    // Both trusted; the manifest names A, B signed.
    let both = [key().public(), other_key().public()];
    let signed_by_b = assemble(
        &manifest,
        &[sign_manifest(&other_key(), &manifest)],
        &payload,
    );
    let r = VerifiedBundle::open(&MemBundle(&signed_by_b), &both, &Limits::DEFAULT);
    assert!(matches!(
        r,
        Err(BundleError::Sign(SignError::KeyIdMismatch))
    ));
}

#[test]
fn bad_14_signature_spliced_from_another_release() {
    let (b, _) = fixture();
    let other = bundle(&release(3), &key());
    let (_, manifest, payload) = parts(&b);
    let (_, other_manifest, _) = parts(&other);
    let spliced = assemble(
        &manifest,
        &[sign_manifest(&key(), &other_manifest)],
        &payload,
    );
    assert_eq!(sign_err(&spliced), SignError::BadSignature);
}

#[test]
fn bad_15_signature_without_the_domain_prefix() {
    use ed25519_dalek::Signer;
    let (b, _) = fixture();
    let (_, manifest, payload) = parts(&b);
    let raw = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let id = key().public().key_id().0;
    let digest = blake3::hash(&manifest);
    for message in [&manifest[..], digest.as_bytes()] {
        let record = SignatureRecord {
            key_id: id,
            signature: raw.sign(message).to_bytes(),
        };
        assert_eq!(
            sign_err(&assemble(&manifest, &[record], &payload)),
            SignError::BadSignature
        );
    }
}

#[test]
fn bad_16_signature_algorithm_switched() {
    let (b, _) = fixture();
    // Unsigned switch: the signature no longer covers the bytes.
    let (_, mut manifest, payload) = parts(&b);
    let good = sign_manifest(&key(), &manifest);
    manifest[2] = 2;
    assert_eq!(
        sign_err(&assemble(&manifest, &[good], &payload)),
        SignError::BadSignature
    );
    // Signed with an unknown algorithm id: refused, never a fallback.
    for alg in [0u8, 2, 0xff] {
        let bad = resigned_bytes(&b, |m| m[2] = alg);
        assert_eq!(
            format_error(&bad),
            FormatError::Unsupported {
                field: "signature algorithm",
                value: alg.into()
            }
        );
    }
}

// ---- Manifest semantics (17–20: threats.rs) ---------------------------------------------

#[test]
fn bad_21_other_hardware_missing_compat_or_other_channel() {
    let check_with = |opts: abdelta::DiffOptions, policy: &Policy| {
        policy_error(check(
            &bundle(&opts, &key()),
            policy,
            &mut DeviceState::default(),
            NOW,
        ))
    };
    let other_rev = abdelta::DiffOptions {
        hardware_compat: vec!["evse-ac22-rev2".into()],
        ..release(2)
    };
    assert!(matches!(
        check_with(other_rev, &device()),
        PolicyError::WrongHardware { .. }
    ));
    let beta = abdelta::DiffOptions {
        channel: "beta".into(),
        ..release(2)
    };
    let stable = Policy {
        channel: Some("stable".into()),
        ..device()
    };
    assert!(matches!(
        check_with(beta, &stable),
        PolicyError::WrongChannel { .. }
    ));
    // A manifest without any hardware id cannot be encoded: at least one is required.
    let (b, _) = fixture();
    let bad = resigned(&b, |m| m.hardware_compat.clear());
    assert!(matches!(
        format_error(&bad),
        FormatError::OutOfRange {
            field: "hardware compatibility count",
            ..
        }
    ));
}

#[test]
fn bad_22_delta_for_another_base_never_writes_a_wrong_image() {
    // abdelta tolerates a drifted source by design: every source byte is hashed before use, so
    // a delta for another base falls back to literals and still yields the signed image. The
    // byte budget is what stops it from downloading a full image unasked, before any write.
    let (b, a) = fixture();
    let mut other = Rng(1234).text(a.len());
    other.truncate(a.len());
    let (r, written) = apply_keep(&b, &other);
    r.unwrap();
    let (_, expected) = images();
    assert_eq!(written, expected);
    let verified = open(&b).unwrap();
    let plan = abdelta::plan(&verified, &other);
    let clean = abdelta::plan(&verified, &a);
    let budget = clean.total_bytes() + 1000;
    assert!(matches!(plan.check_budget(budget), Err(OverBudget { .. })));
    // A patch group is read only when it costs less than the literals of the members this
    // source can use: a wrong source never reads more than the literals alone.
    let literals: u64 = verified
        .manifest()
        .chunks
        .iter()
        .filter_map(|c| match c.fallback {
            Fallback::Literal { blob, .. } => Some(u64::from(blob.len)),
            Fallback::Zero => None,
        })
        .sum();
    assert!(
        plan.blob_bytes <= literals,
        "{} > {literals}",
        plan.blob_bytes
    );
}

#[test]
fn bad_23_target_larger_than_the_slot() {
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("slot.raw");
    std::fs::write(&backing, vec![0u8; 64 << 10]).unwrap();
    let source_path = dir.path().join("source");
    std::fs::write(&source_path, b"source").unwrap();
    let source = SourceImage::open(&source_path).unwrap();
    let Some(dev) = common::Loop::attach(&backing) else {
        eprintln!("loop devices not available here (needs root): skipped");
        return;
    };
    let err = FileTarget::open(dev.path(), (64 << 10) + 1, &source)
        .err()
        .unwrap();
    assert!(err.to_string().contains("target device holds 65536 bytes"));
    assert!(FileTarget::open(dev.path(), 64 << 10, &source).is_ok());
}

#[test]
fn bad_24_unknown_enum_values_are_unsupported() {
    let (b, _) = fixture();
    let m = Manifest::decode(&parts(&b).1, &Limits::DEFAULT).unwrap();
    let head = MANIFEST_HEAD;
    // The expiry flag follows version, created_at (varints).
    let mut fields = Vec::new();
    abdelta::format::cursor::put_varint(&mut fields, m.release_version);
    abdelta::format::cursor::put_varint(&mut fields, m.created_at);
    let expiry_at = head + fields.len();
    let bad = resigned_bytes(&b, |bytes| bytes[expiry_at] = 2);
    assert_eq!(
        format_error(&bad),
        FormatError::Unsupported {
            field: "expiry flag",
            value: 2
        }
    );
    // The first chunk's recipe mask, with an undefined bit.
    let mut mask = 0;
    let bad = resigned_columns(&b, |columns| {
        assert_eq!(columns[MASKS][0] & 0xe0, 0);
        columns[MASKS][0] |= 0x20;
        mask = columns[MASKS][0];
    });
    assert_eq!(
        format_error(&bad),
        FormatError::Unsupported {
            field: "recipe mask",
            value: mask.into()
        }
    );
    // The literal codec of a blank bundle's first chunk.
    let (blank, _) = blank_fixture();
    for codec in [0u8, 2, 0xff] {
        let bad = resigned_columns(&blank, |columns| columns[LITERAL_CODECS][0] = codec);
        assert_eq!(
            format_error(&bad),
            FormatError::Unsupported {
                field: "literal codec",
                value: codec.into()
            }
        );
    }
}

/// Offset of the chunk table's first column in `m`'s plain encoding (after the chunk count).
fn chunk_table_start(m: &Manifest) -> usize {
    let mut empty = m.clone();
    empty.chunks.clear();
    // The empty encoding ends with a count of 0 and the columns' lengths, 0 each.
    let without = empty.encode_plain().len() - 1 - COLUMNS;
    without + varint_len(m.chunks.len() as u64)
}

fn varint_len(v: u64) -> usize {
    let mut out = Vec::new();
    abdelta::format::cursor::put_varint(&mut out, v);
    out.len()
}

#[test]
fn bad_25_duplicate_ids_overlong_varint_bad_text_and_max_plus_one_strings() {
    let (b, _) = fixture();
    let bad = resigned(&b, |m| m.hardware_compat = vec!["a".into(), "a".into()]);
    assert!(matches!(
        format_error(&bad),
        FormatError::Malformed {
            field: "hardware compatibility id",
            ..
        }
    ));
    // Overlong varint: release version 2 written as 0x82 0x00.
    let bad = resigned_bytes(&b, |m| {
        assert_eq!(m[MANIFEST_HEAD], 2);
        m.splice(MANIFEST_HEAD..=MANIFEST_HEAD, [0x82, 0x00]);
    });
    assert!(matches!(
        format_error(&bad),
        FormatError::Malformed {
            field: "release version",
            ..
        }
    ));
    // Text: invalid UTF-8, control characters and spaces; exactly the maximum and one more.
    for id in ["\u{ff}x", "a b", "tab\t"] {
        let bad = resigned(&b, |m| m.channel = id.into());
        assert!(
            matches!(
                format_error(&bad),
                FormatError::Malformed {
                    field: "channel",
                    ..
                }
            ),
            "{id:?}"
        );
    }
    let max = usize::try_from(abdelta::format::manifest::MAX_NAME_LEN).unwrap();
    let ok = resigned(&b, |m| m.channel = "c".repeat(max));
    open(&ok).unwrap();
    let bad = resigned(&b, |m| m.channel = "c".repeat(max + 1));
    assert!(matches!(
        format_error(&bad),
        FormatError::OutOfRange {
            field: "channel",
            ..
        }
    ));
    // "Duplicate chunk id with different lengths" has no encoding: chunks are positional and
    // two chunks with equal bytes (and hash) are legitimate.
}

#[test]
fn bad_26_chunk_count_2_pow_32_in_a_tiny_manifest() {
    // SPEC.md §5.1: at most ⌊rest / 4⌋, rest counted from the count's first byte. Here the
    // count and 15 empty columns follow the header.
    let (b, _) = fixture();
    let with_count = |count: u64| {
        resigned_bytes(&b, |m| {
            let manifest = Manifest::decode_plain(m, &Limits::DEFAULT).unwrap();
            let start = chunk_table_start(&manifest) - varint_len(manifest.chunks.len() as u64);
            m.truncate(start);
            abdelta::format::cursor::put_varint(m, count);
            m.extend_from_slice(&[0; COLUMNS]);
        })
    };
    assert!(matches!(
        format_error(&with_count(1 << 32)),
        FormatError::OutOfRange {
            field: "chunk count",
            value: 0x1_0000_0000,
            ..
        }
    ));
    // 16 bytes (a 1-byte count and the columns) hold 4 entries, never 5; 4 passes the bound
    // and fails at the first entry's length.
    assert_eq!(
        format_error(&with_count(5)),
        FormatError::OutOfRange {
            field: "chunk count",
            value: 5,
            min: 0,
            max: 4
        }
    );
    assert_eq!(
        format_error(&with_count(4)),
        FormatError::Truncated {
            field: "chunk length"
        }
    );
}

// ---- Chunk table / operations --------------------------------------------------------------

fn first_literal(m: &mut Manifest) -> &mut abdelta::format::BlobRef {
    m.chunks
        .iter_mut()
        .find_map(|c| match &mut c.fallback {
            Fallback::Literal { blob, .. } => Some(blob),
            Fallback::Zero => None,
        })
        .unwrap()
}

#[test]
fn bad_27_blob_past_the_payload_or_wrapping() {
    let (b, _) = blank_fixture();
    for (offset, len) in [(u64::MAX - 1, 2), (0, u32::MAX)] {
        let bad = resigned(&b, |m| {
            let payload = m.payload_len;
            let blob = first_literal(m);
            blob.offset = if offset == 0 { payload - 1 } else { offset };
            blob.len = if len == u32::MAX { 2 } else { len };
        });
        assert!(matches!(
            format_error(&bad),
            FormatError::OutOfRange {
                field: "blob offset",
                ..
            } | FormatError::Malformed { field: "blob", .. }
        ));
    }
}

#[test]
fn bad_28_zero_lengths() {
    let (b, _) = blank_fixture();
    let bad = resigned(&b, |m| first_literal(m).len = 0);
    assert!(matches!(
        format_error(&bad),
        FormatError::OutOfRange {
            field: "blob length",
            value: 0,
            ..
        }
    ));
    let bad = resigned(&b, |m| {
        let len = m.chunks[0].len;
        m.chunks[0].len = 0;
        m.chunks[1].len += len; // keep the coverage
    });
    assert!(matches!(
        format_error(&bad),
        FormatError::OutOfRange {
            field: "chunk length",
            value: 0,
            ..
        }
    ));
}

#[test]
fn bad_29_writes_past_the_target_end() {
    let (b, _) = blank_fixture();
    // Chunks covering more than the target.
    let bad = resigned(&b, |m| m.target.size -= 1);
    assert!(matches!(
        format_error(&bad),
        FormatError::Malformed {
            field: "chunk table",
            ..
        }
    ));
    // A target at the end of the address space.
    let bad = resigned(&b, |m| m.target.size = u64::MAX - 1);
    assert!(matches!(
        format_error(&bad),
        FormatError::OutOfRange {
            field: "target size",
            ..
        }
    ));
}

#[test]
fn bad_30_reads_past_the_source_end() {
    let (b, _) = fixture();
    let copy_at = |m: &Manifest| m.chunks.iter().position(|c| c.copy.is_some()).unwrap();
    for offset in [u64::MAX - 1, 1 << 63] {
        let bad = resigned(&b, |m| {
            let i = copy_at(m);
            m.chunks[i].copy = Some(offset);
        });
        assert!(matches!(
            format_error(&bad),
            FormatError::Malformed {
                field: "copy recipe",
                ..
            }
        ));
    }
    let bad = resigned(&b, |m| {
        let size = m.source.unwrap().size;
        let i = copy_at(m);
        m.chunks[i].copy = Some(size - u64::from(m.chunks[i].len) + 1);
    });
    assert!(matches!(
        format_error(&bad),
        FormatError::Malformed {
            field: "copy recipe",
            ..
        }
    ));
    let bad = resigned(&b, |m| {
        let size = m.source.unwrap().size;
        let c = m.chunks.iter_mut().find(|c| c.patch.is_some()).unwrap();
        c.patch.as_mut().unwrap().base.ranges_mut()[0].0 = size;
    });
    assert!(matches!(
        format_error(&bad),
        FormatError::Malformed {
            field: "patch recipe",
            ..
        }
    ));
    // A base longer than the limit (a device may hold a joined base in memory).
    let (_, manifest, _) = parts(&b);
    let small = Limits {
        max_patch_base_len: 100,
        ..Limits::DEFAULT
    };
    assert!(matches!(
        Manifest::decode(&manifest, &small),
        Err(FormatError::OutOfRange {
            field: "patch base length",
            ..
        })
    ));
}

#[test]
fn bad_31_overlapping_writes_or_blobs_cannot_be_expressed() {
    // Chunk offsets are not encoded: each chunk starts where the previous one ends, so two
    // chunks never cover the same target bytes. What can overlap is payload blobs.
    let (b, _) = blank_fixture();
    let bad = resigned(&b, |m| {
        let mut blobs = m.chunks.iter_mut().filter_map(|c| match &mut c.fallback {
            Fallback::Literal { blob, .. } => Some(blob),
            Fallback::Zero => None,
        });
        let first = *blobs.next().unwrap();
        let second = blobs.next().unwrap();
        second.offset = first.offset + 1;
        second.len = 1;
    });
    let overlap = |bad: &[u8]| {
        matches!(
            format_error(bad),
            FormatError::Malformed {
                field: "blob",
                rule: "blobs must not overlap (only members of one group share a blob)"
            }
        )
    };
    assert!(overlap(&bad));
    // Members of one patch group share its blob; the group's length follows from their stream
    // lengths and must stay within the limit; no literal may reuse a group's blob.
    let (d, _) = fixture();
    let (_, manifest, _) = parts(&d);
    let m = Manifest::decode(&manifest, &Limits::DEFAULT).unwrap();
    let group = m.groups()[0];
    let members = m
        .chunks
        .iter()
        .filter(|c| c.patch.is_some_and(|p| p.blob == group.0))
        .count();
    assert!(
        members >= 2,
        "the fixture's first group has {members} members"
    );
    let small = Limits {
        max_group_len: group.1.len - 1,
        ..Limits::DEFAULT
    };
    assert!(matches!(
        Manifest::decode(&manifest, &small),
        Err(FormatError::OutOfRange {
            field: "patch group length",
            ..
        })
    ));
    let bad = resigned(&d, |m| {
        let c = m.chunks.iter_mut().find(|c| c.patch.is_some()).unwrap();
        c.patch.as_mut().unwrap().member.extra_len = c.len + 1;
    });
    assert!(matches!(
        format_error(&bad),
        FormatError::OutOfRange {
            field: "group member extra length",
            ..
        }
    ));
    let bad = resigned(&d, |m| {
        let c = m.chunks.iter_mut().find(|c| c.patch.is_some()).unwrap();
        let member = &mut c.patch.as_mut().unwrap().member;
        member.values_len = c.len - member.extra_len + 1;
    });
    assert!(matches!(
        format_error(&bad),
        FormatError::OutOfRange {
            field: "group member values length",
            ..
        }
    ));
    let bad = resigned(&d, |m| {
        let literal = m.chunks.iter_mut().find_map(|c| match &mut c.fallback {
            Fallback::Literal { blob, .. } => Some(blob),
            Fallback::Zero => None,
        });
        *literal.unwrap() = group.0;
    });
    assert!(overlap(&bad));
}

#[test]
fn bad_31_a_group_blob_is_spelled_once_then_named_by_zero() {
    // SPEC.md §5.2: a patch names the previous patch's group by `group` = 0, and only then.
    let (d, _) = fixture();
    let (_, manifest, _) = parts(&d);
    let m = Manifest::decode(&manifest, &Limits::DEFAULT).unwrap();
    let mut patches = m.chunks.iter().filter_map(|c| c.patch);
    let blob = patches.next().unwrap().blob;
    assert_eq!(
        patches.next().unwrap().blob,
        blob,
        "the fixture's first group has two members"
    );
    // The first patch's `group 1 ‖ offset ‖ length` rewritten as `0`: there is no previous group.
    let spelled = 1 + varint_len(blob.offset * 2) + varint_len(blob.len.into());
    let bad = resigned_columns(&d, |columns| {
        columns[PATCH_GROUPS].splice(..spelled, [0]);
    });
    assert_eq!(
        format_error(&bad),
        FormatError::Malformed {
            field: "patch group",
            rule: "0 (the previous patch's group) needs a previous patch"
        }
    );
    // The second member's `0` spelled out instead: two encodings of one manifest are refused.
    let mut spelled_out = vec![1];
    let back = i64::from(blob.len);
    let zigzag = abdelta::format::cursor::zigzag(-back);
    abdelta::format::cursor::put_varint(&mut spelled_out, zigzag);
    abdelta::format::cursor::put_varint(&mut spelled_out, blob.len.into());
    let bad = resigned_columns(&d, |columns| {
        assert_eq!(columns[PATCH_GROUPS][spelled], 0);
        columns[PATCH_GROUPS].splice(spelled..=spelled, spelled_out);
    });
    assert_eq!(
        format_error(&bad),
        FormatError::Malformed {
            field: "patch group",
            rule: "the previous patch's group is named by 0"
        }
    );
}

#[test]
fn bad_32_every_chunk_table_column_is_consumed_exactly() {
    // SPEC.md §5.2: each column holds exactly its fields of every chunk, planar ones in whole
    // 3-byte values.
    let (b, _) = fixture();
    let edit = |column: usize, f: fn(&mut Vec<u8>)| {
        format_error(&resigned_columns(&b, |columns| f(&mut columns[column])))
    };
    assert_eq!(
        edit(LENGTHS, |c| c.push(0)),
        FormatError::Malformed {
            field: "lengths column",
            rule: "3-byte values: a multiple of 3 bytes"
        }
    );
    assert_eq!(
        edit(LITERAL_LENGTHS, |c| c.truncate(c.len() - 1)),
        FormatError::Malformed {
            field: "literal lengths column",
            rule: "3-byte values: a multiple of 3 bytes"
        }
    );
    assert_eq!(
        edit(MASKS, |c| c.push(0x04)),
        FormatError::TrailingBytes {
            what: "masks column",
            count: 1
        }
    );
    assert!(matches!(
        edit(CHECKS, |c| c.truncate(c.len() - 1)),
        FormatError::Truncated {
            field: "chunk hash" | "chunk source hash"
        }
    ));
    // The last column declared longer than the manifest holds.
    let bad = resigned_bytes(&b, |plain| {
        plain.pop();
    });
    assert_eq!(
        format_error(&bad),
        FormatError::Truncated {
            field: "alternates column"
        }
    );
}

#[test]
fn bad_31_a_chunk_check_follows_its_recipes() {
    // A patched chunk that also claims a copy: its output would pass on a source hash alone.
    let (b, _) = fixture();
    let bad = resigned(&b, |m| {
        let c = m.chunks.iter_mut().find(|c| c.patch.is_some()).unwrap();
        c.copy = Some(0);
    });
    assert_eq!(
        format_error(&bad),
        FormatError::Malformed {
            field: "recipe mask",
            rule: "a chunk the source holds (copy) has no patch"
        }
    );
    // A hand-built manifest whose checks do not follow the recipes is refused by name.
    let m = Manifest::decode(&parts(&b).1, &Limits::DEFAULT).unwrap();
    let swaps: [fn(&mut abdelta::format::ChunkEntry); 3] = [
        |c| c.check = ChunkCheck::Hash([0; 16]),
        |c| c.check = ChunkCheck::Source([0; 8]),
        |c| c.check = ChunkCheck::Zero,
    ];
    for (i, chunk) in m.chunks.iter().enumerate() {
        for swap in swaps {
            let mut bad = m.clone();
            swap(&mut bad.chunks[i]);
            if std::mem::discriminant(&bad.chunks[i].check) == std::mem::discriminant(&chunk.check)
            {
                continue;
            }
            assert_eq!(
                bad.validate(&Limits::DEFAULT),
                Err(FormatError::Malformed {
                    field: "chunk check",
                    rule: "a zero-fill chunk has no hash, a chunk with a copy recipe and no \
                           patch a source hash, any other a chunk hash"
                })
            );
        }
    }
}

#[test]
fn bad_32_coverage_gap() {
    let (b, _) = blank_fixture();
    let bad = resigned(&b, |m| m.target.size += 1);
    assert!(matches!(
        format_error(&bad),
        FormatError::Malformed {
            field: "chunk table",
            rule: "chunks must cover the target exactly once"
        }
    ));
}

#[test]
fn bad_33_target_aliasing_the_source_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slot-a");
    std::fs::write(&path, vec![1u8; 4096]).unwrap();
    let source = SourceImage::open(&path).unwrap();
    let link = dir.path().join("alias");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    for target in [&path, &link] {
        let err = FileTarget::open(target, 4096, &source).err().unwrap();
        assert!(
            err.to_string()
                .contains("the target is the source partition")
        );
    }
    assert_eq!(std::fs::read(&path).unwrap(), vec![1u8; 4096]);
}

/// The bundle with chunk `index`'s literal blob damaged in the payload (which the signature
/// does not cover): re-encoded from other bytes when that keeps its length, else a byte
/// flipped.
fn corrupt_literal(bytes: &[u8], index: usize) -> Vec<u8> {
    let m = open(bytes).unwrap().manifest().clone();
    let Fallback::Literal { blob, .. } = m.chunks[index].fallback else {
        panic!("chunk {index} is not a literal");
    };
    let env = Envelope::decode(&bytes[..ENVELOPE_LEN], &Limits::DEFAULT).unwrap();
    let at = usize::try_from(env.payload_offset() + blob.offset).unwrap();
    let mut out = bytes.to_vec();
    // Re-encode other bytes of the same length so the blob decodes but hashes wrong.
    let mut plain = vec![0u8; m.chunks[index].len as usize];
    decode_literal(&out[at..at + blob.len as usize], &mut plain).unwrap();
    plain[0] ^= 1;
    let replacement = encode_literal(&plain, 3).unwrap();
    if replacement.len() == blob.len as usize {
        out[at..at + replacement.len()].copy_from_slice(&replacement);
    } else {
        // Keep the length: flip a byte in the middle (the frame may then fail to decode).
        out[at + blob.len as usize / 2] ^= 0x55;
    }
    out
}

#[test]
fn bad_34_hash_mismatch_in_the_first_middle_and_last_chunk() {
    let (b, _) = blank_fixture();
    let m = open(&b).unwrap().manifest().clone();
    let literals: Vec<usize> = (0..m.chunks.len())
        .filter(|&i| matches!(m.chunks[i].fallback, Fallback::Literal { .. }))
        .collect();
    let picks = [
        literals[0],
        literals[literals.len() / 2],
        *literals.last().unwrap(),
    ];
    for index in picks {
        let bad = corrupt_literal(&b, index);
        let (r, written) = apply_keep(&bad, &[]);
        match r {
            Err(ApplyError::ChunkHashMismatch { index: i } | ApplyError::Blob { index: i, .. }) => {
                assert_eq!(i, index);
            }
            other => panic!("chunk {index}: {other:?}"),
        }
        // Nothing of the bad chunk reached the target: its region was never written (the
        // in-memory target is zero where nothing was written).
        let c = &m.chunks[index];
        let range = usize::try_from(c.offset).unwrap()..usize::try_from(c.end()).unwrap();
        let region = written.get(range).unwrap_or(&[]);
        assert!(region.iter().all(|&b| b == 0), "chunk {index} written");
    }
}

#[test]
fn bad_35_declared_length_differs_from_the_decoded_length() {
    let (b, _) = blank_fixture();
    let m = open(&b).unwrap().manifest().clone();
    let (index, c) = m
        .chunks
        .iter()
        .enumerate()
        .find(|(_, c)| matches!(c.fallback, Fallback::Literal { .. }))
        .unwrap();
    // The blob decodes to the chunk's bytes but one fewer: hash right for the shorter data
    // does not matter, the declared length is the cap and the floor.
    let Fallback::Literal { blob, .. } = c.fallback else {
        unreachable!()
    };
    let env = Envelope::decode(&b[..ENVELOPE_LEN], &Limits::DEFAULT).unwrap();
    let at = usize::try_from(env.payload_offset() + blob.offset).unwrap();
    let mut plain = vec![0u8; c.len as usize];
    decode_literal(&b[at..at + blob.len as usize], &mut plain).unwrap();
    plain.pop();
    let mut short = encode_literal(&plain, 3).unwrap();
    let mut out = vec![0u8; c.len as usize];
    assert_eq!(
        decode_literal(&short, &mut out),
        Err(CodecError::TooShort {
            got: c.len as usize - 1
        })
    );
    // In a bundle: the shorter blob replaces the original one (padded with a skippable
    // frame would be two frames; so the manifest is re-signed with the new blob length).
    short.resize(short.len().max(1), 0);
    let (_, manifest, payload) = parts(&b);
    let mut manifest = Manifest::decode(&manifest, &Limits::DEFAULT).unwrap();
    let mut payload = payload;
    let new_offset = payload.len() as u64;
    payload.extend_from_slice(&short);
    manifest.payload_len = payload.len() as u64;
    if let Fallback::Literal { blob, .. } = &mut manifest.chunks[index].fallback {
        blob.offset = new_offset;
        blob.len = u32::try_from(short.len()).unwrap();
    }
    let bytes = manifest.encode().unwrap();
    let bad = assemble(&bytes, &[sign_manifest(&key(), &bytes)], &payload);
    let (r, _) = apply_keep(&bad, &[]);
    assert!(
        matches!(
            r,
            Err(ApplyError::Blob {
                index: i,
                error: CodecError::TooShort { .. }
            }) if i == index
        ),
        "{r:?}"
    );
}

#[test]
fn bad_36_target_hash_mismatch_with_every_chunk_valid() {
    let (b, _) = blank_fixture();
    let bad = resigned(&b, |m| m.target.hash[0] ^= 1);
    let (r, _) = apply_keep(&bad, &[]);
    assert!(matches!(
        r,
        Err(ApplyError::TargetHashMismatch { bad_count: 0, .. })
    ));
}

// ---- Compression ---------------------------------------------------------------------------

#[test]
fn bad_37_bomb_stops_at_the_declared_length() {
    // 64 MiB of zeros compress to a few KiB; the chunk declares 64 KiB.
    let bomb = encode_literal(&vec![0u8; 64 << 20], 19).unwrap();
    assert!(bomb.len() < 8 << 10);
    let mut out = vec![0u8; 64 << 10];
    assert_eq!(decode_literal(&bomb, &mut out), Err(CodecError::TooLong));
}

#[test]
fn bad_38_window_log_31_is_refused() {
    // Magic, a descriptor without single-segment, window descriptor (31 − 10) << 3, then an
    // empty last raw block.
    let frame = [0x28, 0xb5, 0x2f, 0xfd, 0x00, 21 << 3, 0x01, 0x00, 0x00];
    let mut out = [0u8; 16];
    assert_eq!(
        decode_literal(&frame, &mut out),
        Err(CodecError::WindowTooLarge)
    );
}

#[test]
fn bad_39_frame_content_size_that_lies() {
    let data = Rng(3).text(100_000);
    // abdelta's encoder leaves the content size out (the manifest declares it); a hostile or
    // foreign encoder writes one. Rewrite it to claim 10 bytes, and 1 TB.
    let honest = zstd::bulk::compress(&data, 3).unwrap();
    let descriptor = honest[4];
    let fcs_flag = descriptor >> 6;
    assert!(fcs_flag >= 1, "the frame carries a content size");
    let single = descriptor & 0x20 != 0;
    let fcs_at = 5 + usize::from(!single) + [0, 2, 4, 8][usize::from(descriptor & 3)];
    let mut out = vec![0u8; data.len()];
    decode_literal(&honest, &mut out).unwrap();
    let mut small = honest.clone();
    match fcs_flag {
        2 => small[fcs_at..fcs_at + 4].copy_from_slice(&10u32.to_le_bytes()),
        3 => small[fcs_at..fcs_at + 8].copy_from_slice(&10u64.to_le_bytes()),
        _ => small[fcs_at..fcs_at + 2].copy_from_slice(&0u16.to_le_bytes()),
    }
    let r = decode_literal(&small, &mut out);
    assert!(r.is_err(), "a frame lying about its size decoded");
    let mut huge = honest.clone();
    if fcs_flag == 3 {
        huge[fcs_at..fcs_at + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    } else {
        huge[fcs_at..fcs_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    }
    let r = decode_literal(&huge, &mut out);
    assert!(r.is_err(), "a frame lying about its size decoded");
}

#[test]
fn bad_40_concatenated_skippable_or_trailing_frames() {
    let blob = encode_literal(b"station", 3).unwrap();
    let mut out = [0u8; 7];
    let mut twice = blob.clone();
    twice.extend_from_slice(&blob);
    let mut skippable = vec![0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 1, 2, 3, 4];
    skippable.extend_from_slice(&blob);
    let mut after_skippable = blob.clone();
    after_skippable.extend_from_slice(&[0x50, 0x2a, 0x4d, 0x18, 0, 0, 0, 0]);
    let mut trailing = blob.clone();
    trailing.push(0);
    for bad in [twice, skippable, after_skippable, trailing] {
        assert_eq!(decode_literal(&bad, &mut out), Err(CodecError::NotOneFrame));
    }
}

#[test]
fn bad_41_truncated_stream() {
    let data = Rng(4).bytes(10_000);
    let blob = encode_literal(&data, 3).unwrap();
    let mut out = vec![0u8; data.len()];
    for cut in [0, 3, 4, 6, blob.len() / 2, blob.len() - 1] {
        assert_eq!(
            decode_literal(&blob[..cut], &mut out),
            Err(CodecError::NotOneFrame),
            "{cut}"
        );
    }
}

#[test]
fn bad_42_xz_or_lzma_header_with_a_huge_dictionary_is_refused_without_allocating_it() {
    // Literals are zstd frames: an xz stream there is not one. Patch groups are raw LZMA2
    // streams whose dictionary is fixed by the group's signed length (at most 8 MiB), never
    // read from the blob: a container header claiming a 4 GiB dictionary is not LZMA2 data.
    let xz = [
        0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0x00, 0x04, 0xe6, 0xd6, 0xb4, 0x46,
    ];
    let mut out = [0u8; 64];
    assert_eq!(decode_literal(&xz, &mut out), Err(CodecError::NotOneFrame));
    // .lzma ("alone") header: properties 0x5d, dictionary 0xffffffff, unknown size.
    let lzma_alone = [
        0x5d, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00,
    ];
    let layout = |len, gaps_at, extra_at| abdelta::format::GroupLayout {
        len,
        gaps_at,
        extra_at,
    };
    for blob in [&xz[..], &lzma_alone[..]] {
        assert!(matches!(
            abdelta::internals::decode_group(blob, &layout(1 << 20, 0, 1 << 19)),
            Err(CodecError::BadGroup(_))
        ));
    }
    // A valid stream decodes only to the declared length, whatever it would produce.
    let extra = abdelta::internals::GroupExtra::new(&vec![7u8; 1 << 20]).unwrap();
    let blob = abdelta::internals::encode_group(&[], 0, &extra).unwrap();
    assert!(matches!(
        abdelta::internals::decode_group(&blob, &layout(1000, 0, 0)),
        Err(CodecError::BadGroup("content longer than declared"))
    ));
}
