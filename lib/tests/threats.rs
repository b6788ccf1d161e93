//! One test per threat row T1–T23 of THREATS.md §2 that applies to this layer (see
//! SECURITY.md for the rows covered elsewhere or not applicable, and why).
// These tests make bundles: they need the generator.
#![cfg(feature = "generator")]
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};

use abdelta::DiffOptions;
use abdelta::VerifiedChunk;
use abdelta::format::{Envelope, Limits, Manifest, ReleaseKey, SignatureRecord};
use abdelta::no_progress;
use abdelta::policy::{Decision, DeviceState, Policy, PolicyError, authorize};
use abdelta::sign::{SignError, sign_keyset, sign_manifest};
use abdelta::storage::{BundleSource, MemBundle, MemTarget, Target};
use abdelta::{ApplyError, BundleError, PublicKey, SecretKey, UnverifiedBundle, VerifyError};
use common::*;

#[test]
fn t01_forged_or_unsigned_manifest_is_rejected() {
    let b = bundle(&release(2), &key());
    let (env, manifest, payload) = parts(&b);
    let unsigned = assemble(
        &manifest,
        &[SignatureRecord {
            key_id: key().public().key_id().0,
            signature: [0; 64],
        }],
        &payload,
    );
    assert_eq!(
        sign_error(check(
            &unsigned,
            &device(),
            &mut DeviceState::default(),
            NOW
        )),
        SignError::BadSignature
    );
    // Every bit of the signed region, one at a time: never accepted.
    for byte in 0..usize::try_from(env.payload_offset()).unwrap() {
        let mut bad = b.clone();
        bad[byte] ^= 0x10;
        assert!(
            check(&bad, &device(), &mut DeviceState::default(), NOW).is_err(),
            "byte {byte}"
        );
    }
}

#[test]
fn t02_one_canonical_encoding_no_parser_differential() {
    let b = bundle(&release(2), &key());
    let (_, manifest, payload) = parts(&b);
    let decoded = Manifest::decode(&manifest, &Limits::DEFAULT).unwrap();
    assert_eq!(decoded.encode().unwrap(), manifest);
    let plain = abdelta::format::manifest::unpack(&manifest, &Limits::DEFAULT).unwrap();
    assert_eq!(decoded.encode_plain(), plain);
    // Re-signed manifests that break canonical form, in the plain encoding or in the frame
    // that stores it, are rejected after the signature check.
    let mut trailing_plain = plain.clone();
    trailing_plain.push(0);
    let mut trailing_frame = manifest.clone();
    trailing_frame.push(0);
    for trailing in [
        abdelta::format::manifest::pack(&trailing_plain).unwrap(),
        trailing_frame,
    ] {
        let bad = assemble(&trailing, &[sign_manifest(&key(), &trailing)], &payload);
        assert!(matches!(
            check(&bad, &device(), &mut DeviceState::default(), NOW),
            Err(BundleError::Format(_))
        ));
    }
    let mut dup = decoded.clone();
    dup.hardware_compat = vec!["a".into(), "a".into()];
    let dup_bytes = dup.encode().unwrap();
    let bad = assemble(&dup_bytes, &[sign_manifest(&key(), &dup_bytes)], &payload);
    assert!(matches!(
        check(&bad, &device(), &mut DeviceState::default(), NOW),
        Err(BundleError::Format(_))
    ));
}

#[test]
fn t03_signature_spliced_from_another_release_is_rejected() {
    let (_, m2, p2) = parts(&bundle(&release(2), &key()));
    let (_, m3, _) = parts(&bundle(&release(3), &key()));
    let spliced = assemble(&m3, &[sign_manifest(&key(), &m2)], &p2);
    assert_eq!(
        sign_error(check(&spliced, &device(), &mut DeviceState::default(), NOW)),
        SignError::BadSignature
    );
}

#[test]
fn t04_wrong_hardware_is_refused_before_any_payload_byte() {
    let b = bundle(
        &DiffOptions {
            hardware_compat: vec!["evse-dc50-rev1".into()],
            ..release(2)
        },
        &key(),
    );
    let (env, _, _) = parts(&b);
    let source = Counting {
        bytes: &b,
        header: env.payload_offset(),
        payload_reads: AtomicU64::new(0),
    };
    let unverified = UnverifiedBundle::read(&source, &Limits::DEFAULT).unwrap();
    let result = authorize(
        unverified,
        &device(),
        &mut DeviceState::default(),
        NOW,
        &Limits::DEFAULT,
    );
    assert!(matches!(
        policy_error(result),
        PolicyError::WrongHardware { .. }
    ));
    assert_eq!(source.payload_reads.load(Ordering::Relaxed), 0);
    // The device's id comes from its configuration: a manifest listing it passes.
    let ok = bundle(
        &DiffOptions {
            hardware_compat: vec!["evse-ac22-rev3".into(), "x".into()],
            ..release(2)
        },
        &key(),
    );
    assert!(check(&ok, &device(), &mut DeviceState::default(), NOW).is_ok());
}

#[test]
fn t05_bad_18_rollback_refused_equal_is_up_to_date_and_survives_a_power_cut() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = DeviceState {
        installed: Some(5),
        highest_seen: 5,
        ..DeviceState::default()
    };
    assert!(matches!(
        policy_error(check(
            &bundle(&release(4), &key()),
            &device(),
            &mut state.clone(),
            NOW
        )),
        PolicyError::Rollback {
            release: 4,
            minimum: 5
        }
    ));
    let same = check(
        &bundle(&release(5), &key()),
        &device(),
        &mut state.clone(),
        NOW,
    )
    .unwrap();
    assert_eq!(same.decision, Decision::UpToDate);
    // Release 7 verifies (state saved), then power is cut before it is installed.
    check(&bundle(&release(7), &key()), &device(), &mut state, NOW).unwrap();
    state.save(dir.path()).unwrap();
    let mut after_reboot = DeviceState::load(dir.path()).unwrap();
    assert_eq!(after_reboot.installed, Some(5));
    let r = check(
        &bundle(&release(6), &key()),
        &device(),
        &mut after_reboot,
        NOW,
    );
    assert!(matches!(
        policy_error(r),
        PolicyError::Rollback {
            release: 6,
            minimum: 7
        }
    ));
}

#[test]
fn t06_bad_19_fast_forward_recovers_through_a_root_signed_keyset() {
    let (root, _) = roots();
    let (old, new) = (key(), other_key());
    let ks1 = sign_keyset(&[&root], &keyset(1, &[(&old, 0, u64::MAX)], None)).unwrap();
    let mut state = DeviceState {
        installed: Some(10),
        highest_seen: 10,
        ..DeviceState::default()
    };
    // The compromised old key signs a release at u64::MAX: accepted (it is trusted)...
    check(
        &bundle(&with_keyset(release(u64::MAX), ks1.clone()), &old),
        &rooted(),
        &mut state,
        NOW,
    )
    .unwrap();
    // ...and the fleet is stuck: release 11 is now a rollback.
    let stuck = check(
        &bundle(&release(11), &old),
        &rooted(),
        &mut state.clone(),
        NOW,
    );
    assert!(matches!(policy_error(stuck), PolicyError::Rollback { .. }));
    // The root rotates the release key and resets the floor to 10.
    let ks2 = sign_keyset(&[&root], &keyset(2, &[(&new, 0, u64::MAX)], Some(10))).unwrap();
    let accepted = check(
        &bundle(&with_keyset(release(11), ks2), &new),
        &rooted(),
        &mut state,
        NOW,
    )
    .unwrap();
    assert_eq!(
        (accepted.decision, accepted.keyset_accepted),
        (Decision::Install, Some(2))
    );
    // The old key is no longer trusted.
    let old_again = check(&bundle(&release(12), &old), &rooted(), &mut state, NOW);
    assert_eq!(sign_error(old_again), SignError::UnknownKey);
    // The fleet moves on to release 20; a later keyset that still carries the reset must not
    // lower the floor again (that would reopen releases 11..19).
    check(&bundle(&release(20), &new), &rooted(), &mut state, NOW).unwrap();
    state.installed = Some(20);
    let ks3 = sign_keyset(&[&root], &keyset(3, &[(&new, 0, u64::MAX)], Some(10))).unwrap();
    check(
        &bundle(&with_keyset(release(21), ks3), &new),
        &rooted(),
        &mut state,
        NOW,
    )
    .unwrap();
    let r = check(&bundle(&release(15), &new), &rooted(), &mut state, NOW);
    assert!(matches!(policy_error(r), PolicyError::Rollback { .. }));
}

#[test]
fn t07_bad_20_indefinite_freeze_expired_clock_reset_future_creation_and_overlong_validity() {
    let expired = bundle(
        &DiffOptions {
            expires_at: Some(NOW - 1),
            created_at: NOW - 10 * DAY,
            ..release(2)
        },
        &key(),
    );
    assert!(matches!(
        policy_error(check(&expired, &device(), &mut DeviceState::default(), NOW)),
        PolicyError::Expired { .. }
    ));
    // The clock resets to 1970: the persisted floor still says it expired.
    let mut state = DeviceState {
        time_floor: NOW,
        ..DeviceState::default()
    };
    assert!(matches!(
        policy_error(check(&expired, &device(), &mut state, 0)),
        PolicyError::Expired { .. }
    ));
    // Accepting a manifest raises the floor to its signed creation time.
    let mut fresh = DeviceState::default();
    check(&bundle(&release(2), &key()), &device(), &mut fresh, 0).unwrap();
    assert_eq!(fresh.time_floor, NOW);
    // Fault 8: one run with the clock in 2106 (accepting a release that never expires)
    // raises the stored floor no further than signed data supports: the creation time, plus
    // the allowed clock skew where one is set. Later releases are not refused as expired
    // once the clock is right again, even where every release must expire.
    const Y2106: u64 = 4_300_000_000;
    let never_expires = bundle(
        &DiffOptions {
            expires_at: None,
            ..release(2)
        },
        &key(),
    );
    let next = bundle(
        &DiffOptions {
            created_at: NOW + 2 * DAY,
            expires_at: Some(NOW + 30 * DAY),
            ..release(3)
        },
        &key(),
    );
    let mut glitched = DeviceState::default();
    check(&never_expires, &device(), &mut glitched, Y2106).unwrap();
    assert_eq!(glitched.time_floor, NOW, "the clock alone raised the floor");
    let strict_expiry = Policy {
        require_expiry: true,
        ..device()
    };
    check(&next, &strict_expiry, &mut glitched, NOW + 2 * DAY).unwrap();
    let skewed = Policy {
        max_clock_skew: Some(DAY),
        ..device()
    };
    let mut glitched = DeviceState::default();
    check(&never_expires, &skewed, &mut glitched, Y2106).unwrap();
    assert_eq!(glitched.time_floor, NOW + DAY);
    check(&next, &skewed, &mut glitched, NOW + 2 * DAY).unwrap();
    // A clock that is right raises the floor, up to the skew past the signed time.
    let mut kept = DeviceState::default();
    check(&never_expires, &skewed, &mut kept, NOW + 3600).unwrap();
    assert_eq!(kept.time_floor, NOW + 3600);
    let long = bundle(
        &DiffOptions {
            expires_at: Some(NOW + 3650 * DAY),
            ..release(2)
        },
        &key(),
    );
    let strict = Policy {
        max_validity: Some(400 * DAY),
        require_expiry: true,
        ..device()
    };
    assert!(matches!(
        policy_error(check(&long, &strict, &mut DeviceState::default(), NOW)),
        PolicyError::ValidityTooLong { .. }
    ));
    let never = bundle(
        &DiffOptions {
            expires_at: None,
            ..release(2)
        },
        &key(),
    );
    assert_eq!(
        policy_error(check(&never, &strict, &mut DeviceState::default(), NOW)),
        PolicyError::NoExpiry
    );
    // Created in the future (a stolen key pushing the floor forward): refused where the
    // device keeps its clock, and the floor stays put.
    let future = bundle(
        &DiffOptions {
            created_at: NOW + 30 * DAY,
            expires_at: Some(NOW + 60 * DAY),
            ..release(2)
        },
        &key(),
    );
    let clocked = Policy {
        max_clock_skew: Some(DAY),
        ..device()
    };
    let mut state = DeviceState::default();
    assert!(matches!(
        policy_error(check(&future, &clocked, &mut state, NOW)),
        PolicyError::CreatedInFuture { .. }
    ));
    assert_eq!(state.time_floor, 0);
    check(&future, &clocked, &mut state, NOW + 29 * DAY + 1).unwrap();
}

#[test]
fn t08_delta_for_another_base_never_yields_a_wrong_image() {
    // Our answer to mix-and-match: every source range is hash-checked before use and every
    // chunk carries a literal, so a delta made against v3 applied on v4 still produces
    // exactly v5 (it reads more), and never a wrong target.
    let mut rng = Rng(8);
    let v3 = rng.text(400_000);
    let mut v4 = v3.clone();
    v4.splice(100_000..100_000, rng.text(20_000));
    let mut v5 = v3.clone();
    v5[300_000] ^= 4;
    let mut out = Vec::new();
    abdelta::diff(&v3, &v5, &release(5), &key(), &mut out, &no_progress).unwrap();
    let (rebuilt, _, plan) = common::apply_mem(&out, &v4).unwrap();
    assert!(rebuilt == v5);
    assert!(!plan.fell_back.is_empty() || !plan.relocated.is_empty());
}

#[test]
fn t09_endless_data_is_bounded_by_signed_lengths() {
    let b = bundle(&release(2), &key());
    let mut longer = b.clone();
    longer.extend(std::iter::repeat_n(0u8, 1 << 20));
    assert!(matches!(
        check(&longer, &device(), &mut DeviceState::default(), NOW),
        Err(BundleError::BundleLength { .. })
    ));
    let mut huge = b.clone();
    huge[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        check(&huge, &device(), &mut DeviceState::default(), NOW),
        Err(BundleError::Format(_))
    ));
}

#[test]
fn t10_decompression_bomb_stops_at_the_declared_length() {
    let bomb = abdelta::internals::encode_literal(&vec![0u8; 8 << 20], 3).unwrap();
    assert!(bomb.len() < 4096);
    let mut out = vec![0u8; 64 << 10];
    assert_eq!(
        abdelta::internals::decode_literal(&bomb, &mut out),
        Err(abdelta::CodecError::TooLong)
    );
}

#[test]
fn t12_bad_17_key_compromise_rotation_keyset_rollback_expiry_and_key_windows() {
    let (root, next) = roots();
    let (old, new) = (key(), other_key());
    let mut state = DeviceState::default();
    let ks2 = sign_keyset(&[&root], &keyset(2, &[(&new, 0, u64::MAX)], None)).unwrap();
    check(
        &bundle(&with_keyset(release(2), ks2), &new),
        &rooted(),
        &mut state,
        NOW,
    )
    .unwrap();
    // The old release key after rotation.
    assert_eq!(
        sign_error(check(
            &bundle(&release(3), &old),
            &rooted(),
            &mut state.clone(),
            NOW
        )),
        SignError::UnknownKey
    );
    // Keyset rollback: version 1 after 2.
    let ks1 = sign_keyset(&[&root], &keyset(1, &[(&old, 0, u64::MAX)], None)).unwrap();
    let r = check(
        &bundle(&with_keyset(release(3), ks1), &old),
        &rooted(),
        &mut state.clone(),
        NOW,
    );
    assert!(matches!(
        policy_error(r),
        PolicyError::KeysetRollback {
            found: 1,
            accepted: 2
        }
    ));
    // A keyset signed by an untrusted root.
    let rogue = SecretKey::from_seed(&[66; 32]);
    let ks3 = sign_keyset(&[&rogue], &keyset(3, &[(&old, 0, u64::MAX)], None)).unwrap();
    let r = check(
        &bundle(&with_keyset(release(3), ks3), &old),
        &rooted(),
        &mut state.clone(),
        NOW,
    );
    assert_eq!(sign_error(r), SignError::UnknownKey);
    // The next root (pre-shipped) takes over.
    let ks4 = sign_keyset(&[&next], &keyset(4, &[(&new, 0, u64::MAX)], None)).unwrap();
    check(
        &bundle(&with_keyset(release(3), ks4), &new),
        &rooted(),
        &mut state.clone(),
        NOW,
    )
    .unwrap();
    // A release key outside its validity window.
    let ks5 = sign_keyset(&[&root], &keyset(5, &[(&new, 0, NOW - DAY)], None)).unwrap();
    let before = state.clone();
    let r = check(
        &bundle(&with_keyset(release(3), ks5), &new),
        &rooted(),
        &mut state,
        NOW,
    );
    assert!(matches!(policy_error(r), PolicyError::KeyNotValid { .. }));
    // A refused bundle changes nothing, not even the keyset it carried.
    assert_eq!(state, before);
    // An expired keyset vouches for nothing.
    let mut stale = keyset(6, &[(&new, 0, u64::MAX)], None);
    (stale.created_at, stale.expires_at) = (NOW - 400 * DAY, NOW - DAY);
    let ks6 = sign_keyset(&[&root], &stale).unwrap();
    let r = check(
        &bundle(&with_keyset(release(3), ks6), &new),
        &rooted(),
        &mut state.clone(),
        NOW,
    );
    assert!(matches!(policy_error(r), PolicyError::KeysetExpired { .. }));
}

#[test]
fn t13_weak_keys_and_malleable_signatures_are_rejected() {
    let hex = |s: &str| -> [u8; 32] {
        let v: Vec<u8> = (0..32)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        v.try_into().unwrap()
    };
    // The small-order points, and non-canonical encodings of points.
    for enc in [
        "0100000000000000000000000000000000000000000000000000000000000000",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000000000000000000000000000080",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
        "0100000000000000000000000000000000000000000000000000000000000080",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    ] {
        assert_eq!(
            PublicKey::from_bytes(&hex(enc)),
            Err(SignError::WeakKey),
            "{enc}"
        );
    }
    // S + L: the same signature, malleated, must not verify.
    let b = bundle(&release(2), &key());
    let (_, manifest, payload) = parts(&b);
    let good = sign_manifest(&key(), &manifest);
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut malleated = good;
    let mut carry = 0u16;
    for (byte, l) in malleated.signature[32..].iter_mut().zip(L) {
        let sum = u16::from(*byte) + u16::from(l) + carry;
        *byte = sum as u8;
        carry = sum >> 8;
    }
    let r = check(
        &assemble(&manifest, &[malleated], &payload),
        &device(),
        &mut DeviceState::default(),
        NOW,
    );
    assert_eq!(sign_error(r), SignError::BadSignature);
    // A small-order R.
    let mut small_r = good;
    small_r.signature[..32].copy_from_slice(&hex(
        "0100000000000000000000000000000000000000000000000000000000000000",
    ));
    let r = check(
        &assemble(&manifest, &[small_r], &payload),
        &device(),
        &mut DeviceState::default(),
        NOW,
    );
    assert_eq!(sign_error(r), SignError::BadSignature);
    // A keyset listing a weak key is rejected whole.
    let (root, _) = roots();
    let mut weak = keyset(1, &[(&key(), 0, u64::MAX)], None);
    weak.release_keys.push(ReleaseKey {
        public_key: [0; 32],
        not_before: 0,
        not_after: u64::MAX,
    });
    weak.release_keys.sort_by_key(|k| k.public_key);
    // The signing tool refuses it; a forger signing by hand (with the root) gets it rejected.
    assert!(matches!(
        sign_keyset(&[&root], &weak),
        Err(SignError::WeakKey)
    ));
    let document = weak.encode();
    let mut message = abdelta::sign::KEYSET_DOMAIN.to_vec();
    message.extend_from_slice(&document);
    let signature =
        ed25519_dalek::Signer::sign(&ed25519_dalek::SigningKey::from_bytes(&[50; 32]), &message);
    let record = SignatureRecord {
        key_id: root.public().key_id().0,
        signature: signature.to_bytes(),
    };
    let file = abdelta::format::SignedKeyset::encode(&document, &[record]);
    let r = check(
        &bundle(&with_keyset(release(2), file), &key()),
        &rooted(),
        &mut DeviceState::default(),
        NOW,
    );
    assert_eq!(sign_error(r), SignError::WeakKey);
}

/// A bundle source whose payload bytes change after the first read of each range.
struct Swapping<'a> {
    bytes: &'a [u8],
    header: u64,
    reads: AtomicU64,
}

impl BundleSource for Swapping<'_> {
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        MemBundle(self.bytes).read_at(offset, buf)?;
        if offset >= self.header && self.reads.fetch_add(1, Ordering::Relaxed) % 2 == 1 {
            for b in buf.iter_mut() {
                *b ^= 0x5a;
            }
        }
        Ok(())
    }
}

/// A target that asserts every write is the expected bytes.
struct Expect<'a>(&'a [u8]);

impl Target for Expect<'_> {
    fn write_chunk(&mut self, chunk: &VerifiedChunk<'_>) -> std::io::Result<()> {
        let at = usize::try_from(chunk.offset()).unwrap();
        assert!(
            self.0[at..at + chunk.bytes().len()] == *chunk.bytes(),
            "an unverified byte was written"
        );
        Ok(())
    }
    fn sync(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn t14_downloaded_bytes_swapped_between_reads_never_reach_the_target_unverified() {
    let b = bundle(&release(2), &key());
    let (_, target) = images();
    let (env, _, _) = parts(&b);
    let source = Swapping {
        bytes: &b,
        header: env.payload_offset(),
        reads: AtomicU64::new(0),
    };
    let verified =
        abdelta::VerifiedBundle::open(&source, &[key().public()], &Limits::DEFAULT).unwrap();
    let plan = abdelta::plan(&verified, &[]);
    // Some blobs arrive altered: apply must fail on them, and every byte written is right.
    let result = abdelta::apply(
        &verified,
        &source,
        &[],
        &mut Expect(&target),
        &plan,
        &no_progress,
    );
    assert!(result.is_err());
}

#[test]
fn t15_source_changed_after_planning_falls_back_never_a_wrong_target() {
    let (a, target) = images();
    let b = bundle(&release(2), &key());
    let verified =
        abdelta::VerifiedBundle::open(&MemBundle(&b), &[key().public()], &Limits::DEFAULT).unwrap();
    let plan = abdelta::plan(&verified, &a);
    let mut changed = a.clone();
    for byte in changed.iter_mut().step_by(4096) {
        *byte ^= 0xff;
    }
    let mut out = MemTarget::default();
    let report = abdelta::apply(
        &verified,
        &MemBundle(&b),
        &changed,
        &mut out,
        &plan,
        &no_progress,
    )
    .unwrap();
    assert!(out.bytes == target);
    assert!(!report.fell_back.is_empty());
}

#[test]
fn t17_signature_covers_every_byte_of_a_target_larger_than_2_gib() {
    // RAUC CVE-2026-34155 broke at 2 GiB: a sparse 2 GiB + 4 KiB target, last byte flipped.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.img");
    let len = (2u64 << 30) + 4096;
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(len).unwrap();
    drop(file);
    let image = abdelta::storage::MappedImage::open(&path).unwrap();
    let mut out = Vec::new();
    abdelta::diff(
        &[],
        image.bytes(),
        &release(2),
        &key(),
        &mut out,
        &no_progress,
    )
    .unwrap();
    let verified =
        abdelta::VerifiedBundle::open(&MemBundle(&out), &[key().public()], &Limits::DEFAULT)
            .unwrap();
    abdelta::verify_path(verified.manifest(), &path).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[1], len - 1).unwrap();
    let r = abdelta::verify_path(verified.manifest(), &path);
    assert!(
        matches!(r, Err(VerifyError::TargetHashMismatch { bad_count: 1, .. })),
        "{r:?}"
    );
}

/// A bundle source that fails for the last blob: a withheld chunk.
struct Withholding<'a> {
    bytes: &'a [u8],
    from: u64,
}

impl BundleSource for Withholding<'_> {
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        if offset + buf.len() as u64 > self.from {
            return Err(std::io::Error::other("404 Not Found"));
        }
        MemBundle(self.bytes).read_at(offset, buf)
    }
}

#[test]
/// The library's part of T18: a withheld chunk fails the apply. (That nothing is then marked
/// installed or bootable is the updater's part: `updater::t18_…`.)
fn t18_withheld_chunk_fails_the_apply() {
    let b = bundle(&release(2), &key());
    let source = Withholding {
        bytes: &b,
        from: b.len() as u64 - 10,
    };
    let mut state = DeviceState {
        installed: Some(1),
        highest_seen: 1,
        ..DeviceState::default()
    };
    let unverified = UnverifiedBundle::read(&source, &Limits::DEFAULT).unwrap();
    let auth = authorize(unverified, &device(), &mut state, NOW, &Limits::DEFAULT).unwrap();
    let plan = abdelta::plan(&auth.bundle, &[]);
    let r = abdelta::apply(
        &auth.bundle,
        &source,
        &[],
        &mut MemTarget::default(),
        &plan,
        &no_progress,
    );
    assert!(matches!(r, Err(ApplyError::Io(_))));
}

#[test]
fn t20_algorithm_or_format_downgrade_is_rejected() {
    use abdelta::format::FormatError;
    use abdelta::format::manifest::{pack, unpack};
    let b = bundle(&release(2), &key());
    let (_, stored, payload) = parts(&b);
    // The stored manifest is a Zstandard frame: the fields are edited in its plain encoding,
    // packed again and re-signed, so only the edited field can be what refuses it.
    let plain = unpack(&stored, &Limits::DEFAULT).unwrap();
    let resigned = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut p = plain.clone();
        edit(&mut p);
        let stored = pack(&p).unwrap();
        let record = sign_manifest(&key(), &stored);
        check(
            &assemble(&stored, &[record], &payload),
            &device(),
            &mut DeviceState::default(),
            NOW,
        )
    };
    assert!(
        resigned(&|_| {}).is_ok(),
        "the untouched manifest, re-packed, verifies"
    );
    // sig_alg (byte 2 of the plain manifest) switched: refused, never a fallback.
    match resigned(&|p| p[2] = 2) {
        Err(BundleError::Format(FormatError::Unsupported { field, value })) => {
            assert_eq!((field, value), ("signature algorithm", 2))
        }
        other => panic!(
            "expected the signature algorithm refused, got {:?}",
            other.err()
        ),
    }
    // format_version (bytes 0..2) set to an older version.
    match resigned(&|p| p[..2].copy_from_slice(&8u16.to_le_bytes())) {
        Err(BundleError::Format(FormatError::UnsupportedVersion { found })) => assert_eq!(found, 8),
        other => panic!("expected the old format refused, got {:?}", other.err()),
    }
}

#[test]
fn t21_key_id_confusion() {
    let b = bundle(&release(2), &key());
    let (_, manifest, payload) = parts(&b);
    let both = Policy {
        release_keys: vec![key().public(), other_key().public()],
        ..device()
    };
    // Key id of A on a signature by B.
    let mut record = sign_manifest(&other_key(), &manifest);
    record.key_id = key().public().key_id().0;
    let r = check(
        &assemble(&manifest, &[record], &payload),
        &both,
        &mut DeviceState::default(),
        NOW,
    );
    assert_eq!(sign_error(r), SignError::BadSignature);
    // Unknown key id.
    let stranger = SecretKey::from_seed(&[99; 32]);
    let r = check(
        &assemble(&manifest, &[sign_manifest(&stranger, &manifest)], &payload),
        &both,
        &mut DeviceState::default(),
        NOW,
    );
    assert_eq!(sign_error(r), SignError::UnknownKey);
    // The manifest names A, B signed it, both trusted.
    let r = check(
        &assemble(
            &manifest,
            &[sign_manifest(&other_key(), &manifest)],
            &payload,
        ),
        &both,
        &mut DeviceState::default(),
        NOW,
    );
    assert_eq!(sign_error(r), SignError::KeyIdMismatch);
}

#[test]
fn t22_bytes_outside_the_signed_manifest_do_not_steer_the_decision() {
    let b = bundle(&release(2), &key());
    let (env, _, _) = parts(&b);
    let reference = check(&b, &device(), &mut DeviceState::default(), NOW).unwrap();
    // Payload bytes: the decision and every signed field are unchanged.
    let mut other_payload = b.clone();
    let at = usize::try_from(env.payload_offset()).unwrap();
    for byte in &mut other_payload[at..] {
        *byte = 0;
    }
    let again = check(&other_payload, &device(), &mut DeviceState::default(), NOW).unwrap();
    assert_eq!(again.decision, reference.decision);
    assert_eq!(again.bundle.manifest(), reference.bundle.manifest());
    // A keyset region that is not a root-signed keyset is rejected, not ignored.
    let (_, manifest, payload) = parts(&b);
    let mut with_junk = Envelope {
        manifest_len: u32::try_from(manifest.len()).unwrap(),
        signature_count: 1,
        keyset_len: 16,
        payload_len: payload.len() as u64,
    }
    .encode()
    .to_vec();
    with_junk.extend_from_slice(&manifest);
    sign_manifest(&key(), &manifest).encode_into(&mut with_junk);
    with_junk.extend_from_slice(&[0u8; 16]);
    with_junk.extend_from_slice(&payload);
    // The device also trusts the signing key directly: were the junk region ignored, the
    // bundle would pass. It is read, and refused for what it is.
    let both = Policy {
        release_keys: vec![key().public()],
        ..rooted()
    };
    assert!(check(&b, &both, &mut DeviceState::default(), NOW).is_ok());
    match check(&with_junk, &both, &mut DeviceState::default(), NOW) {
        Err(BundleError::Format(_)) => {}
        other => panic!("expected the keyset region refused, got {:?}", other.err()),
    }
}

/// Fault 9: checking which release a slot holds (`verify`) applies the device's keyset rules,
/// as an install does (an expired keyset, a key outside its window, a keyset older than the
/// accepted one are refused), but not the release rules: an older release or another
/// channel is still that release.
#[test]
fn fault_09_verify_applies_the_keyset_rules_not_the_release_rules() {
    use abdelta::format::Keyset;
    use abdelta::policy::authenticate;
    let refused = |r: Result<abdelta::VerifiedBundle, BundleError>| match r {
        Err(BundleError::Policy(e)) => e,
        Err(other) => panic!("expected a policy error, got {other:?}"),
        Ok(_) => panic!("expected a policy error, got acceptance"),
    };
    let (root, _) = roots();
    let signer = other_key();
    let open = |b: &[u8], state: &DeviceState, now: u64| {
        let unverified = UnverifiedBundle::read(&MemBundle(b), &Limits::DEFAULT).unwrap();
        authenticate(unverified, &rooted(), state, now, &Limits::DEFAULT)
    };
    let ks = |version, not_after, expires_at| {
        sign_keyset(
            &[&root],
            &Keyset {
                expires_at,
                ..keyset(version, &[(&signer, 0, not_after)], None)
            },
        )
        .unwrap()
    };
    let good = bundle(
        &with_keyset(release(2), ks(2, u64::MAX, NOW + DAY)),
        &signer,
    );
    let fresh = DeviceState::default();
    assert!(open(&good, &fresh, NOW).is_ok());
    // A release below what the device accepted, for another hardware: still authentic.
    let state = DeviceState {
        highest_seen: 9,
        installed: Some(9),
        ..DeviceState::default()
    };
    assert!(open(&good, &state, NOW).is_ok());
    // The keyset expired by the device's clock.
    assert!(matches!(
        refused(open(&good, &fresh, NOW + 2 * DAY)),
        PolicyError::KeysetExpired { .. }
    ));
    // The key outside its window.
    let windowed = bundle(
        &with_keyset(release(2), ks(3, NOW - DAY, NOW + DAY)),
        &signer,
    );
    assert!(matches!(
        refused(open(&windowed, &fresh, NOW)),
        PolicyError::KeyNotValid { .. }
    ));
    // A keyset older than the one the device accepted.
    let accepted = DeviceState {
        keyset_version: 5,
        ..DeviceState::default()
    };
    assert!(matches!(
        refused(open(&good, &accepted, NOW)),
        PolicyError::KeysetRollback { .. }
    ));
}
