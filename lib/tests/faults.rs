//! Faults of the medium and of the running partition on the device path: a source that
//! changes between reads, fails to read or shrinks (faults 3 and 5); a target that fails its
//! writes (EIO, ENOSPC) or loses power (the crash matrix). Each ends in the signed image or a
//! clear error, never in a signal, unverified bytes on the target, or a good report for a bad
//! image. The stage's own crash matrix is a unit test of `fetch/stage.rs`; ENOSPC in the state
//! directory, from the kernel, is in `updater.rs`; faults of the station's own storage and
//! power cuts through a whole install are in `medium.rs`.
// These tests make bundles: they need the generator.
#![cfg(feature = "generator")]
#![allow(clippy::unwrap_used)]

mod common;

use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use abdelta::format::Limits;
use abdelta::no_progress;
use abdelta::storage::{MemBundle, MemTarget, Source, SourceImage};
use abdelta::{Plan, VerifiedBundle};
use common::{Rng, make_bundle, trusted};

const MIB: usize = 1 << 20;

/// A 2 MiB release and the next: copies, patches and literals all occur.
fn pair() -> (Vec<u8>, Vec<u8>) {
    releases(5150, 2 * MIB)
}

/// A release of `len` bytes and the next: a block inserted, a byte changed every so often.
fn releases(seed: u64, len: usize) -> (Vec<u8>, Vec<u8>) {
    let mut rng = Rng(seed);
    let a = rng.text(len);
    let mut b = a.clone();
    b.splice(len / 5..len / 5, rng.bytes(len / 70));
    for at in (0..b.len()).step_by(len / 6) {
        b[at] ^= 0x40;
    }
    b.truncate(len);
    (a, b)
}

fn open(bundle: &[u8]) -> VerifiedBundle {
    VerifiedBundle::open(&MemBundle(bundle), &trusted(), &Limits::DEFAULT).unwrap()
}

fn apply(
    bundle: &[u8],
    source: &dyn Source,
    plan: &Plan,
) -> Result<(Vec<u8>, abdelta::ApplyReport), abdelta::Error> {
    let verified = open(bundle);
    let mut target = MemTarget::default();
    let report = abdelta::apply(
        &verified,
        &MemBundle(bundle),
        source,
        &mut target,
        plan,
        &no_progress,
    )?;
    Ok((target.bytes, report))
}

/// A running partition that a writer changes between any two reads: every second read of a
/// range returns it with one byte flipped.
struct Changing {
    bytes: Vec<u8>,
    reads: AtomicU64,
}

impl Source for Changing {
    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.bytes.as_slice().read_at(offset, buf)?;
        if self.reads.fetch_add(1, Ordering::Relaxed) % 2 == 1
            && let Some(b) = buf.first_mut()
        {
            *b ^= 0x01;
        }
        Ok(())
    }
}

/// Fault 3: the bytes a copy or patch checks are the bytes written and hashed. A source that
/// changes between reads makes about half the chunks fall back, and the target is still exactly
/// the signed image; an apply that read the source once to check and again to write would put
/// the changed bytes on the target and fail its image hash (or, worse, not check them).
#[test]
fn fault_03_the_bytes_checked_are_the_bytes_written() {
    let (a, b) = pair();
    let bundle = make_bundle(&a, &b);
    let plan = abdelta::plan(&open(&bundle), &a);
    assert!(
        plan.counts.copy > 10 && plan.counts.patch > 0,
        "{:?}",
        plan.counts
    );
    let changing = Changing {
        bytes: a.clone(),
        reads: AtomicU64::new(0),
    };
    let (written, report) = apply(&bundle, &changing, &plan).unwrap();
    assert_eq!(written, b, "the target is the signed image");
    assert!(
        !report.fell_back.is_empty(),
        "the changed reads failed their checks and fell back"
    );
    assert_eq!(
        report.counts.literal,
        plan.counts.literal + report.fell_back.len()
    );
}

/// A medium that returns EIO for the bytes in `bad`.
struct Failing {
    bytes: Vec<u8>,
    bad: std::ops::Range<u64>,
    failed: Mutex<Vec<u64>>,
}

impl Source for Failing {
    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let end = offset + buf.len() as u64;
        if offset < self.bad.end && self.bad.start < end {
            self.failed.lock().unwrap().push(offset);
            return Err(io::Error::from_raw_os_error(5));
        }
        self.bytes.as_slice().read_at(offset, buf)
    }
}

/// Fault 5 (a read error): an eMMC that fails to return a block of the running partition.
/// The chunks over that block take their literals, counted and named in the plan and the
/// apply report; the rest still copy; the target is the signed image.
#[test]
fn fault_05_a_source_that_fails_to_read_falls_back_for_those_chunks() {
    let (a, b) = pair();
    let bundle = make_bundle(&a, &b);
    let verified = open(&bundle);
    let failing = Failing {
        bytes: a.clone(),
        bad: 1_000_000..1_004_096,
        failed: Mutex::new(Vec::new()),
    };
    let plan = abdelta::plan(&verified, &failing);
    let clean = abdelta::plan(&verified, &a);
    assert!(plan.source_errors.count > 0, "{:?}", plan.source_errors);
    let first = plan.source_errors.first.as_deref().unwrap();
    assert!(
        first.contains("reading the source at byte") && first.contains("Input/output error"),
        "{first}"
    );
    assert!(plan.counts.literal > clean.counts.literal);
    assert!(
        plan.counts.copy > 0,
        "chunks away from the bad block still copy"
    );
    // The block fails while applying too (a plan made before the medium failed).
    let (written, report) = apply(&bundle, &failing, &clean).unwrap();
    assert_eq!(written, b);
    assert!(report.source_errors.count > 0 && !report.fell_back.is_empty());
    assert!(!failing.failed.lock().unwrap().is_empty());
}

/// Fault 5 (a shrinking source): the running partition is an image file truncated between the
/// plan and the apply. Before, the mapped source raised SIGBUS (exit 135); now the reads past
/// the new end fail, those chunks take their literals, and the target is the signed image.
#[test]
fn fault_05_a_source_that_shrinks_after_planning_falls_back() {
    let (a, b) = pair();
    let bundle = make_bundle(&a, &b);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("running.img");
    std::fs::write(&path, &a).unwrap();
    let source = SourceImage::open(&path).unwrap();
    let plan = abdelta::plan(&open(&bundle), &source);
    assert_eq!(plan.source_errors.count, 0);
    let copies_past_half = plan
        .steps
        .iter()
        .filter(|s| matches!(s, abdelta::Step::Copy { offset } if *offset > MIB as u64))
        .count();
    assert!(copies_past_half > 0);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(MIB as u64)
        .unwrap();
    let (written, report) = apply(&bundle, &source, &plan).unwrap();
    assert_eq!(written, b);
    assert!(report.fell_back.len() >= copies_past_half);
    let first = report.source_errors.first.unwrap();
    assert!(first.contains("shrank"), "{first}");
    // Opened again, the shorter source is simply a smaller one: no read fails.
    let reopened = SourceImage::open(&path).unwrap();
    let again = abdelta::plan(&open(&bundle), &reopened);
    assert_eq!(again.source_errors.count, 0);
    assert!(again.counts.literal > plan.counts.literal && again.counts.copy > 0);
}

/// Sectors the simulated medium writes at once.
const SECTOR: usize = 4096;
/// The granularity at which a sector's write may be torn.
const TORN: usize = 512;

/// Where the simulated power cut falls.
#[derive(Debug, Clone, Copy)]
enum Cut {
    Never,
    /// Before the n-th sector write (counted from 0).
    Write(u64),
    /// During the n-th sync (counted from 0): none of its volatile writes is known durable.
    Sync(u64),
}

/// A block device that loses power. This is a model, and says so: power cannot be cut on this
/// machine. Writes are 4 KiB sectors, volatile until a sync; at the cut the medium keeps what
/// the syncs made durable plus any subset of the volatile sectors, landed in any order, the
/// last of them torn at a 512-byte boundary.
struct PowerCut {
    durable: Vec<u8>,
    volatile: Vec<(usize, Vec<u8>)>,
    cut: Cut,
    writes: u64,
    syncs: u64,
    cut_off: bool,
}

impl PowerCut {
    fn new(medium: Vec<u8>, cut: Cut) -> PowerCut {
        PowerCut {
            durable: medium,
            volatile: Vec::new(),
            cut,
            writes: 0,
            syncs: 0,
            cut_off: false,
        }
    }

    fn power_cut() -> io::Error {
        io::Error::other("power cut")
    }

    /// What the medium holds once power returns.
    fn after_the_cut(&self, rng: &mut Rng) -> Vec<u8> {
        let mut medium = self.durable.clone();
        let mut landed: Vec<&(usize, Vec<u8>)> =
            self.volatile.iter().filter(|_| rng.below(2) == 0).collect();
        for i in (1..landed.len()).rev() {
            landed.swap(i, rng.below(i + 1));
        }
        let last = landed.len().saturating_sub(1);
        for (k, (offset, bytes)) in landed.into_iter().enumerate() {
            let keep = if k == last {
                TORN * rng.below(bytes.len() / TORN + 1)
            } else {
                bytes.len()
            };
            medium[*offset..*offset + keep].copy_from_slice(&bytes[..keep]);
        }
        medium
    }
}

impl abdelta::storage::Target for PowerCut {
    fn write_chunk(&mut self, chunk: &abdelta::VerifiedChunk<'_>) -> io::Result<()> {
        let start = chunk.offset() as usize;
        for (i, sector) in chunk.bytes().chunks(SECTOR).enumerate() {
            if self.cut_off || matches!(self.cut, Cut::Write(n) if n == self.writes) {
                self.cut_off = true;
                return Err(PowerCut::power_cut());
            }
            self.writes += 1;
            self.volatile.push((start + i * SECTOR, sector.to_vec()));
        }
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        if self.cut_off || matches!(self.cut, Cut::Sync(n) if n == self.syncs) {
            self.cut_off = true;
            return Err(PowerCut::power_cut());
        }
        self.syncs += 1;
        for (offset, bytes) in self.volatile.drain(..) {
            self.durable[offset..offset + bytes.len()].copy_from_slice(&bytes);
        }
        Ok(())
    }
}

/// The crash matrix on the target: a realistic install (a 4 MiB release over the one before,
/// copies, patches and literals) cut at its flush point and at 1,000 random sector writes,
/// the cut leaving any subset of the unflushed sectors, reordered, the last one torn. After
/// each, the interrupted run reported failure (never good), the rerun (planned again from the
/// untouched source) converged to the signed image, and the source is unchanged.
#[test]
fn fault_crash_matrix_on_the_target_converges_at_every_cut() {
    let mut rng = Rng(2026);
    let (a, b) = releases(2026, 4 * MIB);
    let bundle = make_bundle(&a, &b);
    let verified = open(&bundle);
    let source_hash = blake3::hash(&a);
    let old_slot = vec![0u8; b.len()];
    let run = |medium: Vec<u8>, cut: Cut| {
        let plan = abdelta::plan(&verified, &a);
        let mut target = PowerCut::new(medium, cut);
        let result = abdelta::apply(
            &verified,
            &MemBundle(&bundle),
            &a,
            &mut target,
            &plan,
            &no_progress,
        );
        (result, target)
    };
    // The sector writes of one whole install.
    let (full, target) = run(old_slot.clone(), Cut::Never);
    full.unwrap();
    assert_eq!(target.durable, b);
    let (writes, flushes) = (target.writes, target.syncs);
    let mut cuts: Vec<Cut> = (0..flushes).map(Cut::Sync).collect();
    cuts.extend((0..1000).map(|_| Cut::Write(rng.next() % writes)));
    let mut torn_images = 0;
    for (i, &cut) in cuts.iter().enumerate() {
        let (result, target) = run(old_slot.clone(), cut);
        assert!(result.is_err(), "cut {i} ({cut:?}) reported good");
        let medium = target.after_the_cut(&mut rng);
        if abdelta::verify_bytes(verified.manifest(), &medium).is_err() {
            torn_images += 1;
        }
        let (rerun, target) = run(medium, Cut::Never);
        rerun.unwrap_or_else(|e| panic!("cut {i} ({cut:?}): the rerun failed: {e}"));
        assert_eq!(target.durable, b, "cut {i} ({cut:?}) did not converge");
    }
    assert_eq!(
        blake3::hash(&a),
        source_hash,
        "the source was never written"
    );
    println!(
        "target crash matrix: {} cuts ({flushes} flush point, 1,000 of {writes} sector writes); {torn_images} left an image failing verification; all {} reruns converged",
        cuts.len(),
        cuts.len()
    );
}

/// A target whose medium fails: EIO at one offset, or ENOSPC once `room` bytes are written.
struct FailingMedium {
    inner: MemTarget,
    eio_at: Option<u64>,
    room: Option<u64>,
    written: u64,
}

impl abdelta::storage::Target for FailingMedium {
    fn write_chunk(&mut self, chunk: &abdelta::VerifiedChunk<'_>) -> io::Result<()> {
        let end = chunk.offset() + chunk.bytes().len() as u64;
        if self
            .eio_at
            .is_some_and(|at| chunk.offset() <= at && at < end)
        {
            return Err(io::Error::from_raw_os_error(5));
        }
        self.written += chunk.bytes().len() as u64;
        if self.room.is_some_and(|room| self.written > room) {
            return Err(io::Error::from_raw_os_error(28));
        }
        self.inner.write_chunk(chunk)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.inner.sync()
    }
}

/// Fault injection on the target: a medium that returns EIO at an offset, or runs out of
/// space, ends the apply with an error naming the chunk and the cause; nothing reports good;
/// the rerun on a working medium converges.
#[test]
fn fault_target_write_errors_end_clearly_and_a_rerun_converges() {
    use abdelta::storage::Target as _;
    let (a, b) = pair();
    let bundle = make_bundle(&a, &b);
    let verified = open(&bundle);
    let plan = abdelta::plan(&verified, &a);
    for (eio_at, room, cause) in [
        (Some(1_500_000), None, "Input/output error"),
        (None, Some(700_000), "No space left on device"),
    ] {
        let mut target = FailingMedium {
            inner: MemTarget::default(),
            eio_at,
            room,
            written: 0,
        };
        let err = abdelta::apply(
            &verified,
            &MemBundle(&bundle),
            &a,
            &mut target,
            &plan,
            &no_progress,
        )
        .unwrap_err();
        let message = format!(
            "{err}: {}",
            std::error::Error::source(&err).map_or(String::new(), |s| s.to_string())
        );
        assert!(
            message.contains("writing chunk") && message.contains(cause),
            "{message}"
        );
        let mut healthy = MemTarget {
            bytes: target.inner.bytes,
        };
        healthy.sync().unwrap();
        abdelta::apply(
            &verified,
            &MemBundle(&bundle),
            &a,
            &mut healthy,
            &plan,
            &no_progress,
        )
        .unwrap();
        assert_eq!(healthy.bytes, b);
    }
}
