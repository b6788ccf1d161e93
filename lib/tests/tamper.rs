//! Tampering: every single-bit flip of the signed region is rejected before a target could be
//! opened; wrong keys are rejected; a corrupted blob never gets an unverified byte written.
// These tests make bundles: they need the generator.
#![cfg(feature = "generator")]
#![allow(clippy::unwrap_used)]

mod common;

use abdelta::VerifiedChunk;
use abdelta::format::{ENVELOPE_LEN, Envelope, Fallback, Limits};
use abdelta::no_progress;
use abdelta::sign::SignError;
use abdelta::storage::{MemBundle, Target};
use abdelta::{ApplyError, BundleError, VerifiedBundle};
use common::{Rng, apply_mem, make_bundle, other_key, trusted};

fn pair() -> (Vec<u8>, Vec<u8>) {
    let mut rng = Rng(11);
    let mut a = rng.text(150_000);
    a.extend(rng.bytes(50_000));
    let mut b = a.clone();
    b[70_000] ^= 0x20;
    b.splice(10_000..10_000, rng.text(700));
    (a, b)
}

fn open(bundle: &[u8]) -> Result<VerifiedBundle, BundleError> {
    VerifiedBundle::open(&MemBundle(bundle), &trusted(), &Limits::DEFAULT)
}

#[test]
fn every_bit_flip_of_envelope_manifest_and_signature_is_rejected() {
    let (a, b) = pair();
    let bundle = make_bundle(&a, &b);
    let envelope = Envelope::decode(&bundle[..ENVELOPE_LEN], &Limits::DEFAULT).unwrap();
    let signed_end = usize::try_from(envelope.payload_offset()).unwrap();
    assert!(open(&bundle).is_ok());
    let mut flips = 0;
    for byte in 0..signed_end {
        for bit in 0..8 {
            let mut bad = bundle.clone();
            bad[byte] ^= 1 << bit;
            assert!(
                open(&bad).is_err(),
                "flip of bit {bit} of byte {byte} was accepted"
            );
            flips += 1;
        }
    }
    assert_eq!(flips, signed_end * 8);
}

#[test]
fn truncation_at_every_header_offset_is_rejected() {
    let (a, b) = pair();
    let bundle = make_bundle(&a, &b);
    for len in 0..bundle.len() {
        assert!(
            open(&bundle[..len]).is_err(),
            "truncation to {len} accepted"
        );
    }
    let mut longer = bundle.clone();
    longer.push(0);
    assert!(matches!(
        open(&longer),
        Err(BundleError::BundleLength { .. })
    ));
}

#[test]
fn wrong_key_is_rejected() {
    let (a, b) = pair();
    let bundle = make_bundle(&a, &b);
    let wrong = vec![other_key().public()];
    let result = VerifiedBundle::open(&MemBundle(&bundle), &wrong, &Limits::DEFAULT);
    assert!(
        matches!(result, Err(BundleError::Sign(SignError::UnknownKey))),
        "{:?}",
        result.err()
    );
}

/// A target that checks every write against the expected image.
struct Checking<'a> {
    expected: &'a [u8],
    written: usize,
}

impl Target for Checking<'_> {
    fn write_chunk(&mut self, chunk: &VerifiedChunk<'_>) -> std::io::Result<()> {
        let start = usize::try_from(chunk.offset()).unwrap();
        assert_eq!(
            &self.expected[start..start + chunk.bytes().len()],
            chunk.bytes(),
            "unverified bytes written"
        );
        self.written += 1;
        Ok(())
    }
    fn sync(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn corrupted_literal_fails_its_chunk_and_writes_nothing_unverified() {
    let (a, b) = pair();
    let bundle = make_bundle(&a, &b);
    let verified = open(&bundle).unwrap();
    let manifest = verified.manifest().clone();
    let (index, blob) = manifest
        .chunks
        .iter()
        .enumerate()
        .find_map(|(i, c)| match c.fallback {
            Fallback::Literal { blob, .. } if i > 0 => Some((i, blob)),
            _ => None,
        })
        .unwrap();
    let at = usize::try_from(verified.blob_offset(&blob)).unwrap() + blob.len as usize / 2;
    let mut bad = bundle.clone();
    bad[at] ^= 0x01;
    let bad_verified = open(&bad).unwrap(); // payload bytes are not in the signed region
    let plan = abdelta::plan(&bad_verified, &[]);
    let mut target = Checking {
        expected: &b,
        written: 0,
    };
    let result = abdelta::apply(
        &bad_verified,
        &MemBundle(&bad),
        &[],
        &mut target,
        &plan,
        &no_progress,
    );
    match result {
        Err(ApplyError::ChunkHashMismatch { index: i })
        | Err(ApplyError::Blob { index: i, .. }) => {
            assert_eq!(i, index)
        }
        other => panic!("expected chunk {index} to fail, got {other:?}"),
    }
    assert!(
        target.written <= index,
        "chunks after the bad one were written"
    );
}

#[test]
fn corrupted_patch_group_falls_back_to_the_literals() {
    let (a, b) = pair();
    let bundle = make_bundle(&a, &b);
    let verified = open(&bundle).unwrap();
    let blob = verified
        .manifest()
        .chunks
        .iter()
        .find_map(|c| c.patch.map(|p| p.blob))
        .expect("the pair has a patched chunk");
    let members: Vec<usize> = (verified.manifest().chunks.iter().enumerate())
        .filter(|(_, c)| c.patch.is_some_and(|p| p.blob == blob))
        .map(|(i, _)| i)
        .collect();
    for at in [0, blob.len as usize / 2, blob.len as usize - 1] {
        let at = usize::try_from(verified.blob_offset(&blob)).unwrap() + at;
        let mut bad = bundle.clone();
        bad[at] ^= 0x40;
        let (out, report, _) = apply_mem(&bad, &a).unwrap();
        assert!(out == b);
        // The group no longer decodes, or rebuilds some members wrongly: those members (and
        // only members of that group) take their literals.
        assert!(!report.fell_back.is_empty(), "byte {at}");
        assert!(report.fell_back.iter().all(|i| members.contains(i)));
    }
}
