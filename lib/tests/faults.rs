//! Faults of the medium and of the running partition on the device path (issue rows 3 and 5):
//! a source that changes between reads, that fails to read, that shrinks. Each ends in the
//! signed image or a clear error, never in a signal or in unverified bytes on the target.
#![allow(clippy::unwrap_used)]

mod common;

use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use abdelta::error::no_progress;
use abdelta::format::Limits;
use abdelta::storage::{MemBundle, MemTarget, Source, SourceImage};
use abdelta::{Plan, VerifiedBundle};
use common::{Rng, make_bundle, trusted};

const MIB: usize = 1 << 20;

/// A 2 MiB release and the next: copies, patches and literals all occur.
fn pair() -> (Vec<u8>, Vec<u8>) {
    let mut rng = Rng(5150);
    let a = rng.text(2 * MIB);
    let mut b = a.clone();
    b.splice(400_000..400_000, rng.bytes(25_000));
    for at in (0..b.len()).step_by(300_000) {
        b[at] ^= 0x40;
    }
    b.truncate(2 * MIB);
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
