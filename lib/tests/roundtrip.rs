//! `apply(diff(a, b), a) == b` over generated pairs, drift, and blank devices.
// These tests make bundles: they need the generator.
#![cfg(feature = "generator")]
#![allow(clippy::unwrap_used)]

mod common;

use common::{Rng, apply_mem, make_bundle};

fn check(a: &[u8], b: &[u8]) -> abdelta::ApplyReport {
    let before = blake3::hash(a);
    let bundle = make_bundle(a, b);
    let (out, report, plan) = apply_mem(&bundle, a).unwrap();
    assert_eq!(
        report.bundle_bytes_read,
        plan.total_bytes(),
        "apply read other bytes than planned"
    );
    assert_eq!(out.len(), b.len());
    assert!(out == b, "rebuilt image differs");
    assert_eq!(report.bytes_written, b.len() as u64);
    // Memory stays bounded: one batch of chunk bytes, at most two decoded groups.
    assert!(report.peak_batch_bytes <= abdelta::internals::BATCH_BYTES + (4 << 20));
    assert!(report.peak_batch_bytes > 0 || b.is_empty());
    assert!(report.peak_groups <= 2);
    // The source is never written.
    assert_eq!(blake3::hash(a), before);
    // Blank device: the same bundle rebuilds b without source bytes (literals, and patches
    // with an empty base where their group costs less than the literals).
    let (blank, blank_report, _) = apply_mem(&bundle, &[]).unwrap();
    assert!(blank == b, "blank-device image differs");
    assert_eq!(blank_report.counts.copy, 0);
    report
}

fn open(bundle: &[u8]) -> abdelta::VerifiedBundle {
    abdelta::VerifiedBundle::open(
        &abdelta::storage::MemBundle(bundle),
        &common::trusted(),
        &abdelta::format::Limits::DEFAULT,
    )
    .unwrap()
}

fn realistic(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let n = rng.below(30_000) + 1;
        match rng.below(4) {
            0 => out.extend(rng.bytes(n)),
            1 => out.extend(std::iter::repeat_n(0u8, n)),
            _ => out.extend(rng.text(n)),
        }
    }
    out.truncate(len);
    out
}

#[test]
fn identical() {
    let a = realistic(&mut Rng(1), 3 << 20);
    let report = check(&a, &a);
    assert_eq!(report.counts.literal, 0);
}

#[test]
fn a_group_is_read_once_when_copies_run_between_its_members() {
    // Two edits 10 MiB apart: their patches share one group, with far more copied chunks
    // between them than one apply batch holds.
    let a = Rng(9).bytes(12 << 20);
    let mut b = a.clone();
    b[1000] ^= 1;
    b[10 << 20] ^= 1;
    let bundle = make_bundle(&a, &b);
    let verified = open(&bundle);
    assert_eq!(verified.manifest().groups().len(), 1);
    let report = check(&a, &b);
    assert_eq!(report.counts.patch, 2);
}

#[test]
fn empty_and_tiny() {
    check(&[], &[]);
    check(&[1, 2, 3], &[]);
    check(&[], &[42]);
    check(&[42], &[42]);
    check(&[0], &[0]);
    check(b"hello", b"hellO");
}

#[test]
fn sizes_around_chunk_boundaries() {
    let c = abdelta::DEFAULT_CHUNKING;
    let mut rng = Rng(2);
    let base = rng.bytes(3 * c.max as usize);
    for size in [
        c.min - 1,
        c.min,
        c.min + 1,
        c.avg,
        c.max - 1,
        c.max,
        c.max + 1,
        2 * c.max,
    ] {
        let size = size as usize;
        check(&base[..size], &base[1..=size]);
        check(&base[..size / 2], &base[..size]);
    }
}

#[test]
fn shifted_inserted_deleted_zeroed_random() {
    let mut rng = Rng(3);
    let a = realistic(&mut rng, 4 << 20);
    // Shift: prepend bytes.
    let mut shifted = rng.bytes(1234);
    shifted.extend_from_slice(&a);
    let r = check(&a, &shifted);
    assert!(r.counts.copy > 0, "shifted content must be copied");
    // Inserts and deletes in the middle.
    let mut edited = a.clone();
    edited.splice(1_000_000..1_000_000, rng.text(5000));
    edited.drain(2_500_000..2_520_000);
    let r = check(&a, &edited);
    assert!(r.counts.copy > 0);
    // A zeroed region.
    let mut zeroed = a.clone();
    zeroed[500_000..900_000].fill(0);
    check(&a, &zeroed);
    // Random.
    check(&a, &rng.bytes(1 << 20));
}

#[test]
fn small_edits_become_patches() {
    let mut rng = Rng(4);
    let a = realistic(&mut rng, 2 << 20);
    let mut b = a.clone();
    for _ in 0..20 {
        let at = rng.below(b.len() - 10);
        b[at] ^= 0x55;
    }
    let r = check(&a, &b);
    assert!(
        r.counts.patch > 0,
        "byte edits must ship as patches: {:?}",
        r.counts
    );
}

#[test]
fn drifted_source_still_rebuilds_and_names_fallbacks() {
    let mut rng = Rng(5);
    let a = realistic(&mut rng, 4 << 20);
    let mut b = a.clone();
    b.splice(100_000..100_000, rng.text(3000));
    for _ in 0..10 {
        let at = rng.below(b.len() - 10);
        b[at] ^= 1;
    }
    let bundle = make_bundle(&a, &b);
    let mut drifted = a.clone();
    for _ in 0..8 {
        let at = rng.below(drifted.len() - 4096) & !4095;
        drifted[at..at + 4096].copy_from_slice(&rng.bytes(4096));
    }
    let (out, report, plan) = apply_mem(&bundle, &drifted).unwrap();
    assert!(out == b);
    assert!(
        !plan.fell_back.is_empty(),
        "drifted chunks must be reported"
    );
    assert!(report.counts.literal > 0);
    // The plan's download covers exactly the blobs the report read, and its ranges are
    // exactly those bytes: sorted, neither touching nor overlapping (touching ones joined).
    assert_eq!(plan.total_bytes(), report.bundle_bytes_read);
    let ranged: u64 = plan.ranges.iter().map(|r| r.end - r.start).sum();
    assert_eq!(ranged, plan.total_bytes());
    assert!(
        plan.ranges.windows(2).all(|w| w[0].end < w[1].start),
        "{:?}",
        plan.ranges
    );
}

#[test]
fn a_member_whose_base_drifted_costs_only_itself() {
    // Edits 512 KiB apart: their patches share one group, each with its own base. One byte of
    // one member's base drifts: that member takes its literal, the others still patch.
    let a = Rng(11).bytes(4 << 20);
    let mut b = a.clone();
    for at in (1000..b.len()).step_by(512 << 10) {
        b[at] ^= 1;
    }
    let bundle = make_bundle(&a, &b);
    let manifest = open(&bundle).manifest().clone();
    let patched: Vec<(usize, abdelta::format::Patch)> = manifest
        .chunks
        .iter()
        .enumerate()
        .filter_map(|(i, c)| Some((i, c.patch?)))
        .collect();
    assert!(patched.len() >= 4);
    assert!(patched.iter().all(|(_, p)| p.blob == patched[0].1.blob));
    let (victim, patch) = patched[1];
    let (base_at, _) = patch.base.ranges()[0];
    let mut drifted = a.clone();
    drifted[base_at as usize] ^= 0x80;
    let (out, report, plan) = apply_mem(&bundle, &drifted).unwrap();
    assert!(out == b);
    assert_eq!(plan.fell_back, vec![victim]);
    assert_eq!(report.counts.patch, patched.len() - 1);
}

#[test]
fn chunk_built_from_pieces_that_moved_apart_patches_against_several_ranges() {
    // Small "files" that a new layout interleaves differently: each new chunk's old bytes lie
    // in several far-apart places, so its patch base joins several source ranges.
    let mut rng = Rng(8);
    let files: Vec<Vec<u8>> = (0..64).map(|_| rng.bytes(24_000)).collect();
    let a: Vec<u8> = files.iter().flatten().copied().collect();
    let mut b = Vec::new();
    for i in 0..32 {
        for f in [&files[i], &files[63 - i]] {
            let mut edited = f.clone();
            edited[100] ^= 1; // every file changed a little: no chunk is a plain copy
            b.extend_from_slice(&edited);
        }
    }
    check(&a, &b);
    let bundle = make_bundle(&a, &b);
    let verified = open(&bundle);
    let most = verified
        .manifest()
        .chunks
        .iter()
        .filter_map(|c| c.patch)
        .map(|p| p.base.ranges().len())
        .max();
    assert!(most >= Some(2), "no patch joined several ranges: {most:?}");
}

/// A running partition whose content moved after the release was made (4 KiB inserted at the
/// front): the copy hints miss, the source index finds each chunk at its new place, and the
/// plan copies it from there, reporting it relocated, not a fallback.
#[test]
fn a_source_whose_content_moved_is_found_by_content() {
    let mut rng = Rng(21);
    let a = realistic(&mut rng, 4 << 20);
    let mut b = a.clone();
    b.splice(2_000_000..2_000_000, rng.text(5000));
    let bundle = make_bundle(&a, &b);
    let manifest = open(&bundle).manifest().clone();
    let mut moved = rng.bytes(4096);
    moved.extend_from_slice(&a[..a.len() - 4096]);
    let (out, _, plan) = apply_mem(&bundle, &moved).unwrap();
    assert!(out == b);
    let hinted: Vec<(usize, u64)> = manifest
        .chunks
        .iter()
        .enumerate()
        .filter_map(|(i, c)| Some((i, c.copy?)))
        .collect();
    assert!(hinted.len() > 4);
    // Every copy is found 4 KiB on, but the first (the inserted bytes join it in the source's
    // own chunking) and the one that reached the dropped tail.
    let found: Vec<usize> = hinted
        .iter()
        .filter(|&&(i, at)| plan.steps[i] == abdelta::Step::Copy { offset: at + 4096 })
        .map(|&(i, _)| i)
        .collect();
    assert!(
        found.len() + 2 >= hinted.len(),
        "{} of {}",
        found.len(),
        hinted.len()
    );
    assert_eq!(plan.relocated, found);
    assert!(found.iter().all(|i| !plan.fell_back.contains(i)));
}
