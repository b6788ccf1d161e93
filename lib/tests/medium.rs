//! The station's updater on a storage medium that fails and loses power: the testkit's
//! in-memory filesystem mounted through FUSE holds the state directory (the device state, the
//! header cache, the stage), the slot written and the GRUB environment, so the updater makes
//! its real system calls and the medium decides what each returns and what survives.
//!
//! - Injected faults: EIO and ENOSPC on the stage's writes, on the state directory's files
//!   and on the slot, EIO on reading the stage or the slot back, a byte of the slot that rots
//!   on the medium while the page cache still holds it (fault 4), and short writes
//!   everywhere. Each ends in a clear error or in the signed image, and the next run
//!   converges.
//! - The crash matrix through one `Updater`: the power goes at every flush point and at
//!   random writes of a whole install (download into the stage, the slot, its read-back, the
//!   boot switch); after each cut, with unsynced writes kept or lost at random and the last
//!   one torn, the next run installs the signed image, the boot is never switched to a slot
//!   that does not hold it, at most one piece in flight is downloaded again, and the running
//!   slot is never written.
//!
//! Where FUSE cannot be mounted (no `/dev/fuse`, no right to mount) each test prints why and
//! passes, as the loop-device tests do.
// These tests make bundles: they need the generator.
#![cfg(feature = "generator")]
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use abdelta::fetch::PIECE;
use abdelta::no_progress;
use abdelta::policy::SlotState;
use abdelta::updater::{
    Cancel, Event, FetchConfig, FirmwareStatus, Grub, Hooks, InstallOptions, Outcome, SlotConfig,
    UpdateError, Updater, UpdaterConfig,
};
use abdelta_testkit::medium::{Cut, Fault, Medium};
use common::{Rng, device, key, release};

const MIB: usize = 1 << 20;

/// A 4 MiB release and the next: copies, patches and literals all occur.
fn releases() -> (Vec<u8>, Vec<u8>) {
    let mut rng = Rng(8080);
    let r1 = rng.text(4 * MIB);
    let mut r2 = r1.clone();
    for at in [300_000, 1_700_000, 3_100_000] {
        r2.splice(at..at, rng.bytes(40_000));
    }
    r2[2_500_000..2_600_000].copy_from_slice(&rng.bytes(100_000));
    r2.truncate(4 * MIB);
    (r1, r2)
}

/// Mounts a medium at `at`; `None` (with the reason printed) where FUSE is unavailable.
fn mount(at: &Path) -> Option<Medium> {
    std::fs::create_dir_all(at).unwrap();
    match Medium::mount(at) {
        Ok(m) => Some(m),
        Err(e) => {
            eprintln!("SKIPPED: this machine does not allow FUSE mounts ({e})");
            None
        }
    }
}

/// A release server (ServeDir behind the counting proxy) and a station whose slot A (the
/// running one, on the ordinary disk) holds r1 and whose writable storage is the medium.
struct Bench {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    r1: Vec<u8>,
    r2: Vec<u8>,
    url: String,
    counters: Arc<abdelta_testkit::Counters>,
    medium: Option<Medium>,
}

impl Bench {
    fn new() -> Option<Bench> {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let medium = mount(&dir.join("medium"))?;
        let (r1, r2) = releases();
        let mut bundle = Vec::new();
        abdelta::diff(&r1, &r2, &release(2), &key(), &mut bundle, &no_progress).unwrap();
        std::fs::create_dir(dir.join("www")).unwrap();
        std::fs::write(dir.join("www/r2.abd"), &bundle).unwrap();
        let upstream = abdelta_testkit::serve(&dir.join("www"));
        let (addr, counters) = abdelta_testkit::proxy(upstream, |_| abdelta_testkit::Fault::Pass);
        std::fs::write(dir.join("slot-a.img"), &r1).unwrap();
        std::fs::write(dir.join("cmdline"), "ro quiet abdelta.slot=A\n").unwrap();
        std::fs::write(dir.join("boot_id"), "boot-1\n").unwrap();
        // The slot written is a file on the medium, there before the install, like a partition.
        std::fs::write(medium.path().join("slot-b.img"), b"").unwrap();
        medium.settle();
        Some(Bench {
            _tmp: tmp,
            url: format!("http://{addr}/r2.abd"),
            dir,
            r1,
            r2,
            counters,
            medium: Some(medium),
        })
    }

    fn medium(&self) -> &Medium {
        self.medium.as_ref().unwrap()
    }

    fn on_medium(&self, name: &str) -> PathBuf {
        self.medium().path().join(name)
    }

    fn updater(&self) -> Updater {
        Updater::new(UpdaterConfig {
            policy: device(),
            state_dir: self.on_medium("state"),
            slots: vec![
                SlotConfig {
                    name: "A".into(),
                    device: self.dir.join("slot-a.img"),
                },
                SlotConfig {
                    name: "B".into(),
                    device: self.on_medium("slot-b.img"),
                },
            ],
            boot: Box::new(Grub::new(self.on_medium("grubenv"))),
            cmdline: self.dir.join("cmdline"),
            boot_id: self.dir.join("boot_id"),
            hooks: Hooks::default(),
            fetch: FetchConfig::default(),
            max_boot_failures: 2,
            lock_wait: std::time::Duration::from_secs(1),
        })
        .unwrap()
    }

    /// Bytes the server sent so far.
    fn sent(&self) -> u64 {
        self.counters.body_bytes.load(Ordering::SeqCst)
    }

    /// The GRUB environment's one-time boot entry, as abdelta reads it back.
    fn once(&self) -> Option<String> {
        let vars = Grub::new(self.on_medium("grubenv")).read().ok()?;
        vars.into_iter()
            .find(|(k, _)| k == abdelta::updater::GRUB_ONCE)
            .map(|(_, v)| v)
    }

    /// Slot B's state as the updater reports it.
    fn slot_b(&self) -> (Option<u64>, SlotState) {
        let status = self.updater().status().unwrap();
        let b = status.slots.into_iter().find(|s| s.name == "B").unwrap();
        (b.release, b.state)
    }

    fn assert_installed(&self, outcome: Result<Outcome, UpdateError>) {
        match outcome {
            Ok(Outcome::Rebooting { slot, release, .. }) => {
                assert_eq!((slot.as_str(), release), ("B", 2));
            }
            other => panic!("expected an install into B, got {other:?}"),
        }
        assert!(std::fs::read(self.on_medium("slot-b.img")).unwrap() == self.r2);
        assert_eq!(self.once().as_deref(), Some("B"));
        assert_eq!(std::fs::read(self.dir.join("slot-a.img")).unwrap(), self.r1);
    }
}

#[test]
fn the_medium_keeps_what_was_synced_and_tears_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(medium) = mount(&tmp.path().join("m")) else {
        return;
    };
    let path = medium.path().join("f");
    std::fs::write(&path, b"synced").unwrap();
    std::fs::File::open(&path).unwrap().sync_all().unwrap();
    std::fs::File::open(medium.path())
        .unwrap()
        .sync_all()
        .unwrap();
    std::fs::write(medium.path().join("g"), b"never synced").unwrap();
    let medium = medium.power_cut(0).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"synced");
    // `g`'s name was never synced: it survives or not, but never with bytes not written.
    if let Ok(g) = std::fs::read(medium.path().join("g")) {
        assert!(b"never synced".starts_with(&g) || g.is_empty(), "{g:?}");
    }
    // An injected fault reaches the caller with its errno.
    medium.inject(vec![Fault::Write {
        file: "f",
        at: 0,
        errno: EIO,
    }]);
    let e = std::fs::write(&path, b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(EIO));
    medium.inject(Vec::new());
    // A cut write lands as whole sectors of it, or not at all; then every request fails.
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    medium.crash(Cut::Change(medium.counts().changes + 1), 512);
    let e = f.write_all_at(&[7; 8192], 0).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(EIO));
    assert!(medium.crashed());
    drop(f);
    let medium = medium.power_cut(1).unwrap();
    // The truncation `fs::write` made before its write failed, and the torn write, each land
    // or not.
    let f = std::fs::read(medium.path().join("f")).unwrap();
    let whole_sectors = f.len() % 512 == 0 && f.len() < 8192 && f.iter().all(|b| *b == 7);
    assert!(f == b"synced" || whole_sectors, "{} bytes", f.len());
}

/// What one install run did: its result, the bytes it received into the stage, and what its
/// offer priced as still to download.
struct Run {
    result: Result<Outcome, UpdateError>,
    received: u64,
    to_download: Option<u64>,
}

impl Bench {
    /// One install run, as an agent makes it: a fresh `Updater`, check, install.
    fn run(&self) -> Run {
        let updater = self.updater();
        let mut received = 0;
        let mut to_download = None;
        let result = updater.check(&self.url).and_then(|offer| {
            to_download = Some(offer.download().to_download);
            updater.install(
                offer,
                &InstallOptions::default(),
                &Cancel::default(),
                &mut |e: &Event| {
                    if let (FirmwareStatus::Downloading, Some(p)) = (e.status, e.progress) {
                        received = p.done;
                    }
                },
            )
        });
        Run {
            result,
            received,
            to_download,
        }
    }

    /// Replaces the medium by a fresh one holding only the empty slot.
    fn fresh_medium(&mut self) {
        let at = self.medium().path().to_path_buf();
        drop(self.medium.take());
        let medium = Medium::mount(&at).unwrap();
        std::fs::write(medium.path().join("slot-b.img"), b"").unwrap();
        medium.settle();
        self.medium = Some(medium);
    }

    /// Runs an install with `faults` injected, then one without: the second run installs the
    /// signed image, receiving again at most the piece in flight. If the first run failed,
    /// slot B is left unbootable and the boot unswitched. Returns the first run.
    fn heals(&mut self, faults: Vec<Fault>) -> Run {
        let clean_download = {
            let clean = self.run();
            self.assert_installed(clean.result);
            clean.to_download.unwrap()
        };
        self.fresh_medium();
        self.medium().inject(faults);
        let faulted = self.run();
        assert!(self.medium().counts().faulted > 0, "the fault never fired");
        self.medium().inject(Vec::new());
        if faulted.result.is_err() {
            // A failed install leaves slot B unbootable and the boot where it was.
            assert!(matches!(self.slot_b().1, SlotState::Empty | SlotState::Bad));
            assert_eq!(self.once(), None);
        }
        let rerun = self.run();
        let lost =
            (faulted.received + rerun.to_download.unwrap_or(0)).saturating_sub(clean_download);
        assert!(lost <= PIECE, "{lost} bytes received again");
        match rerun.result {
            Ok(Outcome::UpToDate { .. }) => {
                assert!(std::fs::read(self.on_medium("slot-b.img")).unwrap() == self.r2);
            }
            other => self.assert_installed(other),
        }
        faulted
    }
}

/// The number of random cuts (`ABDELTA_CRASH_CUTS`, 1,000 by default).
fn random_cuts() -> usize {
    std::env::var("ABDELTA_CRASH_CUTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000)
}

/// The crash matrix through one `Updater`: the power goes just after each sync of a whole
/// install (a 4 MiB release over HTTP into the stage, the slot, its read-back, the boot
/// switch) and at random changes, with a torn last write and unsynced changes kept or lost
/// at random. After each cut the boot is never switched to a slot that does not hold the
/// signed image and the state never calls such a slot installed; the next run installs the
/// image; what the stage had received is kept but for the piece in flight; the running slot
/// is never written.
#[test]
fn fault_crash_matrix_through_one_updater() {
    let Some(mut bench) = Bench::new() else {
        return;
    };
    let clean = bench.run();
    let counts = bench.medium().counts();
    let clean_download = clean.to_download.unwrap();
    bench.assert_installed(clean.result);
    // Just after each sync, and at random changes.
    let mut cuts: Vec<(Cut, u64, u64)> = (1..=counts.syncs)
        .map(|k| (Cut::AfterSync(k), 4096, k))
        .collect();
    let mut rng = Rng(77);
    for _ in 0..random_cuts() {
        let sector = if rng.next().is_multiple_of(2) {
            512
        } else {
            4096
        };
        cuts.push((
            Cut::Change(1 + rng.next() % counts.changes),
            sector,
            rng.next(),
        ));
    }
    let (mut worst_lost, mut switched, mut failed, mut past_the_end) = (0u64, 0, 0, 0);
    for &(cut, sector, seed) in &cuts {
        bench.fresh_medium();
        bench.medium().crash(cut, sector);
        let crashed = bench.run();
        if !bench.medium().crashed() {
            // This run made fewer changes than the clean one (the network cut the download
            // into other writes): it installed, and the rerun finds it done.
            past_the_end += 1;
        }
        let medium = bench.medium.take().unwrap().power_cut(seed).unwrap();
        bench.medium = Some(medium);
        let slot = std::fs::read(bench.on_medium("slot-b.img")).unwrap_or_default();
        // Never a switch to, or a good report for, a slot that does not hold the image.
        if bench.once().as_deref() == Some("B") {
            assert!(slot == bench.r2, "{cut:?}: the boot points at a bad slot B");
            switched += 1;
        }
        let (release, state) = bench.slot_b();
        if release == Some(2) && matches!(state, SlotState::Pending | SlotState::Good) {
            assert!(
                slot == bench.r2,
                "{cut:?}: slot B reported {state:?} but bad"
            );
        }
        let rerun = bench.run();
        let lost =
            (crashed.received + rerun.to_download.unwrap_or(0)).saturating_sub(clean_download);
        worst_lost = worst_lost.max(lost);
        assert!(
            lost <= PIECE,
            "{cut:?}: {lost} bytes received again ({} received, {:?} still to download of \
             {clean_download}; {:?})",
            crashed.received,
            rerun.to_download,
            crashed.result.as_ref().err().map(|e| abdelta::report(e)),
        );
        match rerun.result {
            Ok(Outcome::UpToDate { .. }) => {
                assert!(std::fs::read(bench.on_medium("slot-b.img")).unwrap() == bench.r2);
                assert_eq!(bench.once().as_deref(), Some("B"), "{cut:?}");
            }
            other => bench.assert_installed(other),
        }
        failed += usize::from(crashed.result.is_err());
        assert_eq!(
            std::fs::read(bench.dir.join("slot-a.img")).unwrap(),
            bench.r1
        );
    }
    eprintln!(
        "updater crash matrix: {} cuts ({} flush points, {} random, of {} changes in a clean \
         install; {past_the_end} came after the run's last change); {switched} left the boot \
         switched (each to the signed image), {failed} ended the run in an error; every rerun \
         installed the image; at most {worst_lost} bytes received again (a piece is {PIECE})",
        cuts.len(),
        counts.syncs,
        cuts.len() as u64 - counts.syncs,
        counts.changes,
    );
}

/// EIO and ENOSPC as Linux numbers them.
const EIO: i32 = 5;
const ENOSPC: i32 = 28;

/// Runs [`Bench::heals`] with `faults` on a fresh bench: the faulted run fails with `status`
/// and a message naming `cause`, and the next run installs the image. Returns the faulted
/// run; `None` where FUSE is unavailable.
fn fails_then_heals(faults: Vec<Fault>, status: FirmwareStatus, cause: &str) -> Option<Run> {
    let mut bench = Bench::new()?;
    let run = bench.heals(faults);
    let e = run.result.as_ref().expect_err("the faulted run failed");
    let message = abdelta::report(e);
    assert_eq!(e.firmware_status(), status, "{message}");
    assert!(message.contains(cause), "{message}");
    Some(run)
}

/// One install on a fresh medium with `faults` injected: they fire, and it installs the image.
fn installs_despite(faults: Vec<Fault>) {
    let Some(mut bench) = Bench::new() else {
        return;
    };
    bench.fresh_medium();
    bench.medium().inject(faults);
    let run = bench.run();
    assert!(bench.medium().counts().faulted > 0, "the fault never fired");
    bench.assert_installed(run.result);
}

#[test]
fn fault_eio_writing_the_stage_ends_the_download_and_the_next_run_resumes() {
    let fault = Fault::Write {
        file: "bundle.part",
        at: 150_000,
        errno: EIO,
    };
    let cause = "storing received bytes";
    let Some(run) = fails_then_heals(vec![fault], FirmwareStatus::DownloadFailed, cause) else {
        return;
    };
    // Bytes arrived before the fault (`heals` checks that the next run keeps them).
    assert!(
        run.received > 0 && run.received <= 150_000,
        "{}",
        run.received
    );
}

#[test]
fn fault_enospc_writing_the_stage_ends_the_download_and_the_next_run_resumes() {
    let fault = Fault::Write {
        file: "bundle.part",
        at: 150_000,
        errno: ENOSPC,
    };
    fails_then_heals(vec![fault], FirmwareStatus::DownloadFailed, "os error 28");
}

#[test]
fn fault_eio_on_the_stage_journal_ends_the_download_and_the_next_run_resumes() {
    // The header (56 bytes) and two records (24 each) land, the third fails.
    let fault = Fault::Write {
        file: "journal",
        at: 56 + 2 * 24,
        errno: EIO,
    };
    fails_then_heals(vec![fault], FirmwareStatus::DownloadFailed, "os error 5");
}

#[test]
fn fault_eio_saving_the_device_state_stops_before_the_download() {
    let fault = Fault::Write {
        file: "device-state.new",
        at: 0,
        errno: EIO,
    };
    let status = FirmwareStatus::InstallationFailed;
    if let Some(run) = fails_then_heals(vec![fault], status, "the state file") {
        assert_eq!(
            run.received, 0,
            "nothing is downloaded before the state is saved"
        );
    }
}

#[test]
fn fault_eio_on_the_header_cache_costs_nothing_but_the_cache() {
    // The header cache keeps one file per URL in `heads/`.
    installs_despite(vec![Fault::Write {
        file: "heads",
        at: 0,
        errno: EIO,
    }]);
}

#[test]
fn fault_eio_writing_the_slot_leaves_it_unbootable_and_the_next_run_rewrites_it() {
    let fault = Fault::Write {
        file: "slot-b.img",
        at: 2 * MIB as u64,
        errno: EIO,
    };
    fails_then_heals(
        vec![fault],
        FirmwareStatus::InstallationFailed,
        "os error 5",
    );
}

#[test]
fn fault_eio_reading_the_stage_back_fetches_those_bytes_again() {
    installs_despite(vec![Fault::Read {
        file: "bundle.part",
        at: 100_000,
        errno: EIO,
    }]);
}

#[test]
fn fault_eio_reading_the_slot_back_is_never_reported_good() {
    let fault = Fault::Read {
        file: "slot-b.img",
        at: 3 * MIB as u64,
        errno: EIO,
    };
    fails_then_heals(
        vec![fault],
        FirmwareStatus::InstallationFailed,
        "os error 5",
    );
}

#[test]
fn fault_eio_switching_the_boot_leaves_it_on_the_running_slot() {
    let fault = Fault::Write {
        file: "grubenv.new",
        at: 0,
        errno: EIO,
    };
    fails_then_heals(
        vec![fault],
        FirmwareStatus::InstallationFailed,
        "os error 5",
    );
}

/// Fault 4: the read-back checks what the medium returns, not what the page cache remembers
/// of the writes. Slot B's pages stay cached, and one byte rots on the medium when the slot is
/// synced: the cache still holds the image, the medium does not. The read-back drops the
/// cached range first, reads the rotten byte and refuses the slot.
#[test]
fn fault_04_the_read_back_reads_the_medium_not_the_page_cache() {
    let rot = Fault::Rot {
        file: "slot-b.img",
        at: 1_000_000,
    };
    let status = FirmwareStatus::InstallVerificationFailed;
    fails_then_heals(vec![Fault::PageCache, rot], status, "target hash mismatch");
}

#[test]
fn short_writes_everywhere_still_install_the_image() {
    installs_despite(vec![Fault::ShortWrites]);
}

#[test]
fn a_clean_install_on_the_medium() {
    let Some(bench) = Bench::new() else {
        return;
    };
    let run = bench.run();
    bench.assert_installed(run.result);
    let counts = bench.medium().counts();
    eprintln!("a clean install: {counts:?}, {} bytes sent", bench.sent());
    assert_eq!(bench.slot_b(), (Some(2), SlotState::Pending));
}
