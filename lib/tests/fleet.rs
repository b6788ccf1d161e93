//! One bundle for the whole fleet: a bundle made with patches against earlier releases as well
//! as the source serves a device on any of them from its own partition, and a device on each
//! reads only its own release's patches.
// These tests make bundles: they need the generator.
#![cfg(feature = "generator")]
#![allow(clippy::unwrap_used)]

mod common;

use abdelta::format::Limits;
use abdelta::no_progress;
use abdelta::storage::MemBundle;
use abdelta::{Plan, VerifiedBundle};
use common::{Rng, key, options, trusted};

const MIB: usize = 1 << 20;

/// Four releases of an 8 MiB image, each changing a few hundred places of the one before and
/// inserting a block: most chunks of release N+1 differ from release N−1 in a few bytes, so a
/// patch against N−1 is far smaller than the chunk.
fn releases() -> Vec<Vec<u8>> {
    let mut rng = Rng(31337);
    let mut r = rng.text(8 * MIB);
    let mut out = vec![r.clone()];
    for _ in 0..3 {
        for _ in 0..300 {
            let at = rng.below(r.len());
            r[at] = r[at].wrapping_add(1);
        }
        let at = rng.below(r.len());
        r.splice(at..at, rng.bytes(5_000));
        r.truncate(8 * MIB);
        out.push(r.clone());
    }
    out
}

/// The bundle from r2 to r3 with r1 as an extra base, made once.
fn fleet() -> &'static [u8] {
    static FLEET: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    FLEET.get_or_init(|| {
        let r = releases();
        bundle(&r[2], &[&r[1]], &r[3])
    })
}

fn bundle(from: &[u8], earlier: &[&[u8]], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    abdelta::diff_bases(
        from,
        earlier,
        to,
        &options(),
        &key(),
        &mut out,
        &no_progress,
    )
    .unwrap();
    out
}

/// What a device holding `source` downloads, and the image it rebuilds.
fn install(bundle: &[u8], source: &[u8]) -> (Plan, Vec<u8>) {
    let (image, _, plan) = common::apply_mem(bundle, source).unwrap();
    (plan, image)
}

#[test]
fn a_device_one_or_two_releases_behind_downloads_patches_against_its_own_release() {
    let r = releases();
    let single = bundle(&r[2], &[], &r[3]);
    let fleet = bundle(&r[2], &[&r[1], &r[0]], &r[3]);
    for (held, name) in [(2, "r2 (the source)"), (1, "r1"), (0, "r0")] {
        let (alone, image) = install(&single, &r[held]);
        assert_eq!(image, r[3]);
        let (shared, image) = install(&fleet, &r[held]);
        assert_eq!(image, r[3]);
        println!(
            "device on {name}: {} bytes ({} header) from the fleet bundle, {} ({} header) from the single-base one",
            shared.total_bytes(),
            shared.header_bytes,
            alone.total_bytes(),
            alone.header_bytes,
        );
        if held == 2 {
            // The source's device reads the same blobs; only the header, which lists every
            // release's patches, grows.
            assert_eq!(shared.blob_bytes, alone.blob_bytes);
            assert_eq!(shared.ranges.len(), alone.ranges.len());
        } else {
            // Its patches are the ones planned for it, not fallbacks: none falls back, where
            // the single-base bundle sends it to literals.
            assert!(
                shared.fell_back.is_empty(),
                "{name}: {:?}",
                shared.fell_back
            );
            assert!(!alone.fell_back.is_empty());
            assert!(
                shared.total_bytes() * 3 < alone.total_bytes(),
                "{name}: {} vs {}",
                shared.total_bytes(),
                alone.total_bytes()
            );
        }
    }
    // A blank device still installs it from literals.
    let (blank, image) = install(&fleet, &[0u8; 0][..]);
    assert_eq!(image, r[3]);
    assert!(blank.counts.patch == 0 || blank.blob_bytes > 0);
}

#[test]
fn without_earlier_releases_the_bundle_is_the_plain_diff() {
    let r = releases();
    let mut plain = Vec::new();
    abdelta::diff(&r[2], &r[3], &options(), &key(), &mut plain, &no_progress).unwrap();
    assert_eq!(bundle(&r[2], &[], &r[3]), plain);
}

#[test]
fn earlier_releases_need_a_source_and_are_at_most_seven() {
    let r = releases();
    let mut out = Vec::new();
    let no_source = abdelta::diff_bases(
        &[],
        &[&r[0]],
        &r[1],
        &options(),
        &key(),
        &mut out,
        &no_progress,
    );
    assert!(no_source.is_err());
    let eight: Vec<&[u8]> = (0..8).map(|_| &r[0][..]).collect();
    let too_many = abdelta::diff_bases(
        &r[1],
        &eight,
        &r[2],
        &options(),
        &key(),
        &mut out,
        &no_progress,
    );
    assert!(too_many.is_err());
}

/// The manifest of a fleet bundle (r2 → r3 with r1 as an extra base), edited and encoded
/// without validation, then decoded: the rule it breaks.
fn refused(edit: impl FnOnce(&mut abdelta::Manifest)) -> abdelta::format::FormatError {
    let verified = VerifiedBundle::open(&MemBundle(fleet()), &trusted(), &Limits::DEFAULT).unwrap();
    let mut m = verified.manifest().clone();
    edit(&mut m);
    abdelta::Manifest::decode_plain(&m.encode_plain(), &Limits::DEFAULT).unwrap_err()
}

fn with_alternate(m: &abdelta::Manifest) -> usize {
    m.chunks
        .iter()
        .position(|c| !c.alternates.is_empty())
        .unwrap()
}

#[test]
fn malformed_extra_bases_and_alternates_are_refused_by_name() {
    use abdelta::format::FormatError::{Malformed, OutOfRange};
    assert!(matches!(
        refused(|m| {
            m.source = None;
        }),
        Malformed {
            field: "extra bases",
            ..
        }
    ));
    assert!(matches!(
        refused(|m| m.bases = vec![m.bases[0]; 8]),
        OutOfRange {
            field: "extra base count",
            value: 8,
            ..
        }
    ));
    // Two alternates against a manifest with one extra base.
    assert!(matches!(
        refused(|m| {
            let i = with_alternate(m);
            let again = m.chunks[i].alternates[0];
            m.chunks[i].alternates.push(again);
        }),
        OutOfRange {
            field: "alternate count",
            ..
        }
    ));
    // Alternates out of base order (at most one per base).
    assert!(matches!(
        refused(|m| {
            m.bases.push(m.bases[0]);
            let i = with_alternate(m);
            let mut second = m.chunks[i].alternates[0];
            second.base = 2;
            m.chunks[i].alternates.insert(0, second);
        }),
        OutOfRange {
            field: "alternate base",
            ..
        }
    ));
    // A base range outside its own base (not the source's).
    assert!(matches!(
        refused(|m| {
            let size = m.bases[0].size;
            let i = m
                .chunks
                .iter()
                .position(|c| {
                    c.alternates
                        .iter()
                        .any(|a| !a.patch.base.ranges().is_empty())
                })
                .unwrap();
            m.chunks[i].alternates[0].patch.base.ranges_mut()[0].0 = size;
        }),
        Malformed {
            field: "patch recipe",
            rule: "patch base must lie inside the source"
        }
    ));
    // A group whose members patch against different bases.
    assert!(matches!(
        refused(|m| {
            let blob = m
                .chunks
                .iter()
                .find_map(|c| c.patch.map(|p| p.blob))
                .unwrap();
            let i = with_alternate(m);
            m.chunks[i].alternates[0].patch.blob = blob;
        }),
        Malformed {
            field: "patch group",
            rule: "the members of a group patch against one base"
        }
    ));
}

/// A chunk the source holds (a copy) that is also patched against an earlier release carries
/// its whole chunk hash, so downloaded patch output is never checked by a source hash alone.
#[test]
fn a_copied_chunk_with_alternates_is_checked_by_its_chunk_hash() {
    let verified = VerifiedBundle::open(&MemBundle(fleet()), &trusted(), &Limits::DEFAULT).unwrap();
    let m = verified.manifest();
    let both = m
        .chunks
        .iter()
        .filter(|c| c.copy.is_some() && !c.alternates.is_empty())
        .collect::<Vec<_>>();
    assert!(
        !both.is_empty(),
        "the fixture has copied chunks changed since r1"
    );
    for c in both {
        assert!(matches!(c.check, abdelta::format::ChunkCheck::Hash(_)));
    }
    let mut bad = m.clone();
    let i = bad
        .chunks
        .iter()
        .position(|c| c.copy.is_some() && !c.alternates.is_empty())
        .unwrap();
    let abdelta::format::ChunkCheck::Hash(h) = bad.chunks[i].check else {
        unreachable!()
    };
    bad.chunks[i].check = abdelta::format::ChunkCheck::Source(h[..8].try_into().unwrap());
    assert!(bad.validate(&Limits::DEFAULT).is_err());
}

/// A chunk the device can copy stays a copy even when it also holds the base of one of the
/// chunk's several patches: weighing patch groups only ever chooses among patches. The
/// device holds r1 and then r2, so each chunk r3 shares with r2 is found by content (a copy)
/// while its patch against r1 decodes too.
#[test]
fn a_copy_is_never_traded_for_a_patch_the_device_could_also_use() {
    let r = releases();
    let single = bundle(&r[2], &[], &r[3]);
    let copies: Vec<usize> = install(&single, &r[2])
        .0
        .steps
        .iter()
        .enumerate()
        .filter(|(_, s)| s.kind() == abdelta::StepKind::Copy)
        .map(|(i, _)| i)
        .collect();
    assert!(!copies.is_empty());
    let fleet = bundle(&r[2], &[&r[1], &r[0]], &r[3]);
    let both = [r[1].as_slice(), r[2].as_slice()].concat();
    let (plan, image) = install(&fleet, &both);
    assert_eq!(image, r[3]);
    assert!(plan.counts.patch > 0, "the device uses its r1 patches too");
    for i in copies {
        assert_eq!(plan.steps[i].kind(), abdelta::StepKind::Copy, "chunk {i}");
    }
}

/// A patch group is read only when it costs less than the literals of the members the device
/// can use. Three releases of a 4 MiB image, each with 15,000 one-byte edits: the group of
/// patches against r0 is larger than two literals. A device holding only the start of r0
/// (the rest of its partition other data) could patch two chunks from it, and reads their
/// literals instead of the whole group.
#[test]
fn a_group_costlier_than_its_usable_members_literals_is_not_read() {
    let mut rng = Rng(4711);
    let mut r = vec![rng.text(4 * MIB)];
    for _ in 0..2 {
        let mut next = r.last().unwrap().clone();
        for _ in 0..15_000 {
            let at = rng.below(next.len());
            next[at] = next[at].wrapping_add(1);
        }
        r.push(next);
    }
    let bundle = bundle(&r[1], &[&r[0]], &r[2]);
    let keep = 200_000;
    let mut held = r[0].clone();
    let noise = Rng(99).bytes(held.len() - keep);
    held[keep..].copy_from_slice(&noise);
    let (plan, image) = install(&bundle, &held);
    assert_eq!(image, r[2]);
    let manifest = abdelta::UnverifiedBundle::read(&MemBundle(&bundle), &Limits::default())
        .unwrap()
        .verify(&trusted(), &Limits::default())
        .unwrap()
        .manifest()
        .clone();
    // The literals of the members each group read would serve.
    let mut usable: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
    let mut groups = std::collections::HashMap::new();
    for (step, entry) in plan.steps.iter().zip(&manifest.chunks) {
        if let abdelta::Step::Patch { blob, .. } = step {
            let literal = match entry.fallback {
                abdelta::format::Fallback::Literal { blob, .. } => u64::from(blob.len),
                abdelta::format::Fallback::Zero => 0,
            };
            *usable.entry(blob.offset).or_insert(0) += literal;
            groups.insert(blob.offset, u64::from(blob.len));
        }
    }
    for (offset, len) in &groups {
        assert!(
            *len <= usable[offset],
            "the group at {offset} ({len} bytes) is read for {} bytes of literals",
            usable[offset]
        );
    }
    assert!(
        !plan.fell_back.is_empty(),
        "some chunks fell back to literals"
    );
}
