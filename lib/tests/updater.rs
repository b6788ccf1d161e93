//! The station's updater end to end, on file-backed slots, a real HTTP server (the testkit's
//! ServeDir behind a counting proxy) and a real GRUB environment block, read back with
//! `grub-editenv` where it is installed (CI installs it; elsewhere the check says it was
//! skipped). The tests 1–3 and 5–9; test 4 (kill -9) runs through the binary in
//! `cli/tests/station.rs`.
// These tests make bundles: they need the generator.
#![cfg(feature = "generator")]
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use abdelta::no_progress;
use abdelta::policy::SlotState;
use abdelta::updater::{
    Action, Cancel, Event, FetchConfig, FirmwareStatus, GRUB_ONCE, GRUB_PRIMARY, Grub, Hooks,
    InstallOptions, Outcome, SlotConfig, UBoot, UpdateError, Updater, UpdaterConfig,
};
use common::{Rng, device, key, release};

const MIB: usize = 1 << 20;

/// Three releases of a 2 MiB image: each changes a few places and inserts some bytes.
fn releases() -> [Vec<u8>; 3] {
    let mut rng = Rng(4242);
    let r1 = rng.text(2 * MIB);
    let mut r2 = r1.clone();
    r2.splice(500_000..500_000, rng.bytes(20_000));
    r2[1_500_000] ^= 0x55;
    r2.truncate(2 * MIB);
    let mut r3 = r2.clone();
    r3.splice(1_200_000..1_210_000, rng.bytes(30_000));
    r3.truncate(2 * MIB);
    [r1, r2, r3]
}

fn diff(from: &[u8], to: &[u8], version: u64) -> Vec<u8> {
    let mut out = Vec::new();
    abdelta::diff(from, to, &release(version), &key(), &mut out, &no_progress).unwrap();
    out
}

/// A station on files: two slots, a kernel command line, a boot id, a grubenv, a state dir.
struct Station {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    hooks: Hooks,
    slot_b_device: PathBuf,
    boots: u32,
    /// U-Boot instead of GRUB.
    uboot: Option<UBoot>,
    lock_wait: std::time::Duration,
}

impl Station {
    /// Slot A holds `a` (or nothing), slot B is an empty file, nothing booted yet.
    fn new(a: Option<&[u8]>) -> Station {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        std::fs::write(dir.join("slot-a.img"), a.unwrap_or(&[])).unwrap();
        std::fs::write(dir.join("slot-b.img"), b"").unwrap();
        std::fs::write(dir.join("cmdline"), "ro quiet\n").unwrap();
        std::fs::write(dir.join("boot_id"), "boot-0\n").unwrap();
        Station {
            slot_b_device: dir.join("slot-b.img"),
            _tmp: tmp,
            dir,
            hooks: Hooks::default(),
            boots: 0,
            uboot: None,
            lock_wait: abdelta::updater::LOCK_WAIT,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A reboot into `slot` (`None`: a rescue system with no slot on its command line).
    fn boot(&mut self, slot: Option<&str>) {
        self.boots += 1;
        let cmdline = match slot {
            Some(s) => format!("ro quiet abdelta.slot={s}\n"),
            None => "ro quiet\n".to_owned(),
        };
        std::fs::write(self.path("cmdline"), cmdline).unwrap();
        std::fs::write(self.path("boot_id"), format!("boot-{}\n", self.boots)).unwrap();
    }

    fn updater(&self) -> Result<Updater, UpdateError> {
        Updater::new(UpdaterConfig {
            policy: device(),
            state_dir: self.path("state"),
            slots: vec![
                SlotConfig {
                    name: "A".into(),
                    device: self.path("slot-a.img"),
                },
                SlotConfig {
                    name: "B".into(),
                    device: self.slot_b_device.clone(),
                },
            ],
            boot: match &self.uboot {
                Some(u) => Box::new(u.clone()),
                None => Box::new(Grub::new(self.path("grubenv"))),
            },
            cmdline: self.path("cmdline"),
            boot_id: self.path("boot_id"),
            hooks: self.hooks.clone(),
            fetch: FetchConfig::default(),
            max_boot_failures: 2,
            lock_wait: self.lock_wait,
        })
    }

    fn slot(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(&format!("slot-{}.img", name.to_lowercase()))).unwrap()
    }

    /// (once, primary) from the GRUB environment, read by `grub-editenv` when installed.
    fn grub(&self) -> (Option<String>, Option<String>) {
        let path = self.path("grubenv");
        let vars = match grub_editenv_list(&path) {
            Some(vars) => vars,
            None => Grub::new(path).read().unwrap(),
        };
        let get = |n: &str| vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        (get(GRUB_ONCE), get(GRUB_PRIMARY))
    }

    fn states(&self) -> Vec<(String, Option<u64>, SlotState)> {
        self.updater()
            .unwrap()
            .status()
            .unwrap()
            .slots
            .into_iter()
            .map(|s| (s.name, s.release, s.state))
            .collect()
    }
}

/// `grub-editenv FILE list`, parsed; `None` (with a note) where the tool is not installed.
/// CI installs it, so there a missing tool fails the test.
fn grub_editenv_list(path: &Path) -> Option<Vec<(String, String)>> {
    match std::process::Command::new("grub-editenv")
        .arg(path)
        .arg("list")
        .output()
    {
        Ok(out) => {
            assert!(
                out.status.success(),
                "grub-editenv refused {}",
                path.display()
            );
            Some(
                String::from_utf8(out.stdout)
                    .unwrap()
                    .lines()
                    .filter_map(|l| l.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            )
        }
        Err(_) if std::env::var_os("CI").is_some() => panic!("CI must install grub-editenv"),
        Err(_) => {
            eprintln!("grub-editenv not installed: the environment block is read by abdelta only");
            None
        }
    }
}

/// A release server: the bundles in a directory, served by ServeDir behind a counting proxy.
struct Server {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    addr: std::net::SocketAddr,
    counters: Arc<abdelta_testkit::Counters>,
}

impl Server {
    fn new() -> Server {
        Server::with(abdelta_testkit::Fault::Pass)
    }

    /// Every response goes through `fault` (`Throttle` makes what the proxy counts what a
    /// slow link would carry, so a cancelled transfer stops being counted).
    fn with(fault: abdelta_testkit::Fault) -> Server {
        Server::scripted(move |_| fault.clone())
    }

    /// Response `n` goes through `fault(n)`.
    fn scripted(fault: impl Fn(usize) -> abdelta_testkit::Fault + Send + Sync + 'static) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let upstream = abdelta_testkit::serve(&dir);
        let (addr, counters) = abdelta_testkit::proxy(upstream, fault);
        Server {
            _tmp: tmp,
            dir,
            addr,
            counters,
        }
    }

    fn publish(&self, name: &str, bundle: &[u8]) -> String {
        std::fs::write(self.dir.join(name), bundle).unwrap();
        format!("http://{}/{name}", self.addr)
    }

    fn body_bytes(&self) -> u64 {
        self.counters.body_bytes.load(Ordering::SeqCst)
    }
}

/// Runs an install, collecting its status events (progress dropped).
fn install(
    updater: &Updater,
    location: &str,
    options: &InstallOptions,
    cancel: &Cancel,
) -> (Result<Outcome, UpdateError>, Vec<FirmwareStatus>) {
    let mut statuses = Vec::new();
    let result = updater.check(location).and_then(|offer| {
        updater.install(offer, options, cancel, &mut |e: &Event| {
            if e.is_status() {
                statuses.push(e.status);
            }
        })
    });
    (result, statuses)
}

fn rebooting(result: Result<Outcome, UpdateError>) -> (String, u64) {
    match result.unwrap() {
        Outcome::Rebooting { slot, release, .. } => (slot, release),
        Outcome::UpToDate { .. } => panic!("up to date"),
    }
}

/// Tests 1 and 2: r1 → r2 over HTTP into B (events in OCPP order, B pending, GRUB boots B
/// once, A untouched); reboot into B and confirm; r3, made against r2, installs into A.
#[test]
fn r1_to_r2_over_http_then_confirm_then_r3_into_a() {
    let [r1, r2, r3] = releases();
    let server = Server::new();
    let url2 = server.publish("r2.abd", &diff(&r1, &r2, 2));
    let mut station = Station::new(Some(&r1));
    station.boot(Some("A"));
    let updater = station.updater().unwrap();
    assert_eq!(
        station.states(),
        vec![
            ("A".into(), None, SlotState::Good),
            ("B".into(), None, SlotState::Empty)
        ]
    );
    let (result, events) = install(
        &updater,
        &url2,
        &InstallOptions::default(),
        &Cancel::default(),
    );
    assert_eq!(rebooting(result), ("B".into(), 2));
    assert_eq!(
        events,
        [
            FirmwareStatus::Downloading,
            FirmwareStatus::Downloaded,
            FirmwareStatus::SignatureVerified,
            FirmwareStatus::Installing,
            FirmwareStatus::InstallRebooting,
        ]
    );
    assert_eq!(station.slot("B"), r2);
    assert_eq!(station.slot("A"), r1, "the running slot is never written");
    assert_eq!(station.grub(), (Some("B".into()), Some("A".into())));
    let status = updater.status().unwrap();
    assert_eq!(status.firmware, FirmwareStatus::InstallRebooting);
    assert_eq!(
        station.states(),
        vec![
            ("A".into(), None, SlotState::Good),
            ("B".into(), Some(2), SlotState::Pending)
        ]
    );
    // Until the reboot, the same release is neither installed again nor "up to date".
    let again = updater.check(&url2).unwrap();
    assert_eq!(again.action(), Action::Switch);
    drop(again);

    // Test 2: the reboot starts B; the station's health check confirms it.
    station.boot(Some("B"));
    let updater = station.updater().unwrap();
    assert_eq!(
        updater.status().unwrap().firmware,
        FirmwareStatus::InstallRebooting
    );
    let marked = updater.confirm().unwrap();
    assert_eq!(marked.firmware, FirmwareStatus::Installed);
    assert_eq!(
        station.states(),
        vec![
            ("A".into(), None, SlotState::Good),
            ("B".into(), Some(2), SlotState::Good)
        ]
    );
    assert_eq!(station.grub(), (None, Some("B".into())));
    assert_eq!(updater.status().unwrap().firmware, FirmwareStatus::Idle);
    // r2 is now what the booted, confirmed slot runs: up to date, nothing downloaded.
    let before = server.body_bytes();
    let (result, _) = install(
        &updater,
        &url2,
        &InstallOptions::default(),
        &Cancel::default(),
    );
    assert!(matches!(result.unwrap(), Outcome::UpToDate { release: 2 }));
    assert!(server.body_bytes() - before < 20_000, "only the header");

    let url3 = server.publish("r3.abd", &diff(&r2, &r3, 3));
    let (result, _) = install(
        &updater,
        &url3,
        &InstallOptions::default(),
        &Cancel::default(),
    );
    assert_eq!(rebooting(result), ("A".into(), 3));
    assert_eq!(station.slot("A"), r3);
    assert_eq!(station.slot("B"), r2);
    assert_eq!(station.grub(), (Some("A".into()), Some("B".into())));
}

/// Test 3: the reboot falls back (the command line still says A): the install is reported
/// failed, and the same release installs again.
#[test]
fn a_boot_that_falls_back_is_reported_failed_and_the_release_installs_again() {
    let [r1, r2, _] = releases();
    let server = Server::new();
    let url = server.publish("r2.abd", &diff(&r1, &r2, 2));
    let mut station = Station::new(Some(&r1));
    station.boot(Some("A"));
    let (result, _) = install(
        &station.updater().unwrap(),
        &url,
        &InstallOptions::default(),
        &Cancel::default(),
    );
    rebooting(result);
    station.boot(Some("A")); // GRUB tried B once, B never confirmed, GRUB came back to A.
    let updater = station.updater().unwrap();
    let status = updater.status().unwrap();
    assert_eq!(status.firmware, FirmwareStatus::InstallationFailed);
    assert_eq!(status.installed, None);
    assert_eq!(
        station.states(),
        vec![
            ("A".into(), None, SlotState::Good),
            ("B".into(), Some(2), SlotState::Bad)
        ]
    );
    let offer = updater.check(&url).unwrap();
    assert_eq!(
        (offer.action(), offer.target().name.as_str()),
        (Action::Install, "B")
    );
    drop(offer);
    let (result, _) = install(
        &updater,
        &url,
        &InstallOptions::default(),
        &Cancel::default(),
    );
    assert_eq!(rebooting(result), ("B".into(), 2));
    assert_eq!(station.grub(), (Some("B".into()), Some("A".into())));
    // It fails again (this station has max_boot_failures = 2): no retry loop; the release is
    // refused until a newer one comes.
    station.boot(Some("A"));
    let updater = station.updater().unwrap();
    match updater.check(&url) {
        Err(
            e @ UpdateError::KeepsFailing {
                release: 2,
                failures: 2,
            },
        ) => assert_eq!(e.firmware_status(), FirmwareStatus::InstallationFailed),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a release that failed twice was offered again"),
    }
    let url3 = server.publish("r3.abd", &diff(&r1, &r2, 3));
    let (result, _) = install(
        &updater,
        &url3,
        &InstallOptions::default(),
        &Cancel::default(),
    );
    assert_eq!(rebooting(result), ("B".into(), 3));
}

/// A booted slot that fails its health check is marked bad: the next boot starts the good one.
#[test]
fn mark_bad_points_the_boot_at_the_good_slot() {
    let [r1, r2, _] = releases();
    let mut station = Station::new(Some(&r1));
    station.boot(Some("A"));
    let bundle = station.path("r2.abd");
    std::fs::write(&bundle, diff(&r1, &r2, 2)).unwrap();
    let (result, _) = install(
        &station.updater().unwrap(),
        bundle.to_str().unwrap(),
        &InstallOptions::default(),
        &Cancel::default(),
    );
    rebooting(result);
    station.boot(Some("B"));
    let updater = station.updater().unwrap();
    let marked = updater.mark_bad().unwrap();
    assert_eq!(marked.fallback.as_deref(), Some("A"));
    assert_eq!(marked.firmware, FirmwareStatus::InstallationFailed);
    let (once, primary) = station.grub();
    assert_ne!(once.as_deref(), Some("B"));
    assert_eq!(primary.as_deref(), Some("A"));
    // A technician who fixed the slot may still confirm it: the booted slot is the station's call.
    assert!(updater.confirm().is_ok());
}

/// Test 5: a cancelled download pauses; the next install fetches nothing already staged.
#[test]
fn a_cancelled_download_resumes_without_fetching_again() {
    let [r1, r2, _] = releases();
    let server = Server::with(abdelta_testkit::Fault::Throttle(4 << 20));
    let url = server.publish("r2.abd", &diff(&r1, &r2, 2));
    // A blank device downloads every literal: enough to cancel in the middle.
    let mut station = Station::new(None);
    station.boot(None);
    let updater = station.updater().unwrap();
    let full = updater.check(&url).unwrap().download().to_download;
    assert!(full > 300_000, "the whole image's literals: {full}");
    let cancel = Cancel::default();
    let mut statuses = Vec::new();
    let mut received = 0;
    let offer = updater.check(&url).unwrap();
    let before = server.body_bytes();
    let result = updater.install(
        offer,
        &InstallOptions::default(),
        &cancel,
        &mut |e: &Event| {
            if let Some(p) = e.progress {
                received = p.done;
                if p.done > 100_000 {
                    cancel.cancel();
                }
            } else {
                statuses.push(e.status);
            }
        },
    );
    assert!(matches!(
        result,
        Err(UpdateError::Cancelled { downloading: true })
    ));
    assert_eq!(statuses.last(), Some(&FirmwareStatus::DownloadPaused));
    assert!(received > 100_000 && received < full, "{received}");
    let first_run = server.body_bytes() - before;
    assert_eq!(
        std::fs::metadata(station.path("slot-a.img")).unwrap().len(),
        0
    );

    let offer = updater.check(&url).unwrap();
    assert!(offer.download().staged >= received);
    let still = offer.download().to_download;
    assert!(still <= full - received, "{still} > {full} - {received}");
    let before = server.body_bytes();
    let cancel = Cancel::default();
    let result = updater.install(
        offer,
        &InstallOptions::default(),
        &cancel,
        &mut |_: &Event| {},
    );
    assert_eq!(rebooting(result), ("A".into(), 2));
    let second_run = server.body_bytes() - before;
    assert!(
        second_run <= still + 20_000,
        "the second run fetched {second_run} bytes, {still} were missing"
    );
    // The first run's count includes what was in flight when it stopped; it is printed,
    // not bounded, since loopback socket buffers hold far more than a 3G link would.
    eprintln!("first run {first_run} bytes (cancelled at {received}), second run {second_run}");
    assert_eq!(station.slot("A"), r2);
}

/// Test 6: the bytes the server sends stay within the budget the offer was priced at (range
/// merging's gaps included), and a budget below it fails before any blob is fetched.
#[test]
fn the_wire_stays_within_the_budget_with_range_merging() {
    let [r1, r2, _] = releases();
    let server = Server::new();
    let url = server.publish("r2.abd", &diff(&r1, &r2, 2));
    // The running slot drifted (logs written to it) in chunks about 100 KB apart: their
    // literals are fetched, and the gaps between them are short enough to merge.
    let mut drifted = r1.clone();
    for at in (50_000..drifted.len()).step_by(100_000) {
        drifted[at] ^= 0xff;
    }
    let mut station = Station::new(Some(&drifted));
    station.boot(Some("A"));
    let updater = station.updater().unwrap();
    // Each check prices its own install: the header it fetched (nothing once revalidated)
    // plus the merged ranges still missing.
    let priced = |max: &dyn Fn(u64) -> u64| {
        let before = server.body_bytes();
        let offer = updater.check(&url).unwrap();
        let d = offer.download().clone();
        let merged = (d.ranges.len(), offer.plan().unwrap().ranges.len());
        let wire = d.header_fetched + d.to_download;
        let options = InstallOptions {
            max_download: Some(max(wire)),
        };
        let mut events = Vec::new();
        let result = updater.install(offer, &options, &Cancel::default(), &mut |e: &Event| {
            if e.is_status() {
                events.push(e.status);
            }
        });
        (
            result,
            events,
            wire,
            server.body_bytes() - before,
            merged,
            d,
        )
    };
    // One byte short: refused before any blob is fetched.
    let (result, events, wire, sent, (merged, planned), d) = priced(&|wire| wire - 1);
    assert!(
        merged < planned,
        "default merging joins ranges: {merged} of {planned}"
    );
    assert!(
        matches!(
            result,
            Err(UpdateError::Bundle(abdelta::Error::OverBudget(_)))
        ),
        "{result:?}"
    );
    assert_eq!(events, [FirmwareStatus::DownloadFailed]);
    assert_eq!(sent, d.header_fetched, "only the header, {wire} priced");
    assert_eq!(station.slot("B"), b"", "nothing written");
    // Exactly the price: installs, and the server sent no more than that.
    let (result, _, wire, sent, ..) = priced(&|wire| wire);
    rebooting(result);
    assert!(
        sent <= wire,
        "the server sent {sent} bytes, the budget was {wire}"
    );
}

/// Test 7: a blank station (booted from a USB rescue system, no slot on its command line)
/// installs the same bundle from a local path into an empty slot.
#[test]
fn the_same_bundle_flashes_a_blank_station_from_a_local_path() {
    let [r1, r2, _] = releases();
    let mut station = Station::new(None);
    station.boot(None);
    let usb = station.path("usb-r2.abd");
    std::fs::write(&usb, diff(&r1, &r2, 2)).unwrap();
    let updater = station.updater().unwrap();
    let (result, events) = install(
        &updater,
        usb.to_str().unwrap(),
        &InstallOptions::default(),
        &Cancel::default(),
    );
    assert_eq!(rebooting(result), ("A".into(), 2));
    assert_eq!(
        events,
        [
            FirmwareStatus::SignatureVerified,
            FirmwareStatus::Installing,
            FirmwareStatus::InstallRebooting
        ]
    );
    assert_eq!(station.slot("A"), r2);
    assert_eq!(station.grub(), (Some("A".into()), None));
    station.boot(Some("A"));
    let marked = station.updater().unwrap().confirm().unwrap();
    assert_eq!(
        (marked.release, marked.firmware),
        (Some(2), FirmwareStatus::Installed)
    );
}

/// Test 8: a failing pre-install hook stops the install before the target is opened; a
/// failing post-install hook leaves the boot unswitched.
#[test]
fn hooks_refuse_before_the_target_is_opened_and_before_the_switch() {
    let [r1, r2, _] = releases();
    let mut station = Station::new(Some(&r1));
    station.boot(Some("A"));
    let bundle = station.path("r2.abd");
    std::fs::write(&bundle, diff(&r1, &r2, 2)).unwrap();
    let seen = station.path("hook-env");
    station.hooks.pre_install = Some(vec![
        "/bin/sh".into(),
        "-c".into(),
        format!(
            "echo \"$ABDELTA_SLOT $ABDELTA_RELEASE $ABDELTA_BOOTED\" > {}; echo charging >&2; exit 3",
            seen.display()
        ),
    ]);
    let updater = station.updater().unwrap();
    let (result, events) = install(
        &updater,
        bundle.to_str().unwrap(),
        &InstallOptions::default(),
        &Cancel::default(),
    );
    match result {
        Err(UpdateError::HookRefused { why, .. }) => assert!(why.contains("charging"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(events, [FirmwareStatus::InstallationFailed]);
    assert_eq!(std::fs::read_to_string(&seen).unwrap(), "B 2 A\n");
    assert_eq!(station.slot("B"), b"", "the target was not opened");
    assert!(
        !station.path("grubenv").exists(),
        "the boot was not touched"
    );

    station.hooks.pre_install = None;
    station.hooks.post_install = Some(vec!["/bin/false".into()]);
    let updater = station.updater().unwrap();
    let (result, _) = install(
        &updater,
        bundle.to_str().unwrap(),
        &InstallOptions::default(),
        &Cancel::default(),
    );
    assert!(matches!(result, Err(UpdateError::HookRefused { .. })));
    assert_eq!(station.slot("B"), r2, "written and verified");
    let (once, _) = station.grub();
    assert_eq!(once, None, "the boot is not switched");
    assert_eq!(station.states()[1], ("B".into(), Some(2), SlotState::Bad));
}

/// Test 9: a slot device that does not exist is refused, not created.
#[test]
fn a_missing_slot_device_is_refused_not_created() {
    let [r1, r2, _] = releases();
    let mut station = Station::new(Some(&r1));
    station.boot(Some("A"));
    station.slot_b_device = station.path("dev/mmcblk0p3");
    let bundle = station.path("r2.abd");
    std::fs::write(&bundle, diff(&r1, &r2, 2)).unwrap();
    let updater = station.updater().unwrap();
    match updater.check(bundle.to_str().unwrap()) {
        Err(UpdateError::SlotDevice { slot, .. }) => assert_eq!(slot, "B"),
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("a missing device was accepted"),
    }
    assert!(!station.slot_b_device.exists());
}

/// The booted slot comes from the kernel command line only: a slot the configuration does
/// not have is refused, and without a booted slot nothing can be confirmed.
#[test]
fn the_booted_slot_comes_from_the_command_line() {
    let mut station = Station::new(None);
    station.boot(Some("C"));
    assert!(matches!(station.updater(), Err(UpdateError::UnknownSlot(s)) if s == "C"));
    station.boot(None);
    assert!(matches!(
        station.updater().unwrap().confirm(),
        Err(UpdateError::NotBooted)
    ));
}

/// Installs the bundle at `location` and cancels once the slot is being written: everything
/// is downloaded, and the install ends cancelled.
fn cancel_once_writing(updater: &Updater, location: &str) {
    let cancel = Cancel::default();
    let offer = updater.check(location).unwrap();
    let result = updater.install(
        offer,
        &InstallOptions::default(),
        &cancel,
        &mut |e: &Event| {
            if e.status == FirmwareStatus::Installing {
                cancel.cancel();
            }
        },
    );
    assert!(matches!(
        result,
        Err(UpdateError::Cancelled { downloading: false })
    ));
}

/// Cancelling while the slot is written leaves it empty and not bootable.
#[test]
fn a_cancelled_write_leaves_the_slot_empty_and_unbootable() {
    let [r1, r2, _] = releases();
    let mut station = Station::new(Some(&r1));
    station.boot(Some("A"));
    let bundle = station.path("r2.abd");
    std::fs::write(&bundle, diff(&r1, &r2, 2)).unwrap();
    let updater = station.updater().unwrap();
    cancel_once_writing(&updater, bundle.to_str().unwrap());
    assert_eq!(station.states()[1], ("B".into(), None, SlotState::Empty));
    assert_eq!(station.grub().0, None);
}

/// U-Boot through the real `fw_setenv`/`fw_printenv` (libubootenv) on an environment kept in
/// a file: the install gives B one attempt at the head of `BOOT_ORDER`, confirmation gives it
/// the configured attempts, and marking it bad sends the next boot back to A.
#[test]
fn uboot_boot_counter_through_fw_setenv() {
    if std::process::Command::new("fw_printenv")
        .arg("-V")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install libubootenv-tool"
        );
        eprintln!("fw_printenv not installed: the U-Boot backend is not exercised here");
        return;
    }
    let [r1, r2, _] = releases();
    let mut station = Station::new(Some(&r1));
    let env = station.path("uboot.env");
    std::fs::write(&env, vec![0u8; 0x4000]).unwrap();
    let config = station.path("fw_env.config");
    std::fs::write(&config, format!("{} 0x0 0x4000\n", env.display())).unwrap();
    let defaults = station.path("uboot-defaults.txt");
    std::fs::write(&defaults, "BOOT_ORDER=A B\nBOOT_A_LEFT=3\nBOOT_B_LEFT=3\n").unwrap();
    // A blank environment takes the defaults on its first write, as a factory image's would.
    let init = std::process::Command::new("fw_setenv")
        .arg("-c")
        .arg(&config)
        .arg("-f")
        .arg(&defaults)
        .args(["bootdelay", "1"])
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    station.uboot = Some(UBoot {
        fw_printenv: "fw_printenv".into(),
        fw_setenv: "fw_setenv".into(),
        config: Some(config.clone()),
        attempts: 3,
    });
    let env_vars = || {
        let out = std::process::Command::new("fw_printenv")
            .arg("-c")
            .arg(&config)
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let get = |n: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{n}=")).map(str::to_owned))
        };
        (get("BOOT_ORDER"), get("BOOT_A_LEFT"), get("BOOT_B_LEFT"))
    };
    assert_eq!(
        env_vars(),
        (Some("A B".into()), Some("3".into()), Some("3".into()))
    );
    station.boot(Some("A"));
    let bundle = station.path("r2.abd");
    std::fs::write(&bundle, diff(&r1, &r2, 2)).unwrap();
    let (result, _) = install(
        &station.updater().unwrap(),
        bundle.to_str().unwrap(),
        &InstallOptions::default(),
        &Cancel::default(),
    );
    assert_eq!(rebooting(result), ("B".into(), 2));
    assert_eq!(
        env_vars(),
        (Some("B A".into()), Some("3".into()), Some("1".into()))
    );
    // U-Boot's script spends B's one attempt as it boots it.
    station.boot(Some("B"));
    let spend = std::process::Command::new("fw_setenv")
        .arg("-c")
        .arg(&config)
        .args(["BOOT_B_LEFT", "0"])
        .output()
        .unwrap();
    assert!(spend.status.success());
    let updater = station.updater().unwrap();
    assert_eq!(
        updater.confirm().unwrap().firmware,
        FirmwareStatus::Installed
    );
    assert_eq!(
        env_vars(),
        (Some("B A".into()), Some("3".into()), Some("3".into()))
    );
    let marked = updater.mark_bad().unwrap();
    assert_eq!(marked.fallback.as_deref(), Some("A"));
    assert_eq!(
        env_vars(),
        (Some("A B".into()), Some("3".into()), Some("0".into()))
    );
}

/// Fault 1 (header): one flipped byte in the response that carries the signed header fails
/// that run with `InvalidSignature`, and nothing of it is kept: the next run fetches the header
/// again (instead of revalidating the bad copy) and installs.
#[test]
fn fault_01_a_corrupted_header_response_heals_on_the_next_run() {
    let [r1, r2, _] = releases();
    // The first response (the probe: envelope, manifest, signatures) has one byte flipped.
    let server = Server::scripted(|n| match n {
        0 => abdelta_testkit::Fault::FlipByte(300),
        _ => abdelta_testkit::Fault::Pass,
    });
    let url = server.publish("r2.abd", &diff(&r1, &r2, 2));
    let mut station = Station::new(Some(&r1));
    station.boot(Some("A"));
    let updater = station.updater().unwrap();
    let (result, events) = install(
        &updater,
        &url,
        &InstallOptions::default(),
        &Cancel::default(),
    );
    let error = result.unwrap_err();
    assert_eq!(
        error.firmware_status(),
        FirmwareStatus::InvalidSignature,
        "{error}"
    );
    assert!(
        events.is_empty(),
        "a check failure comes before any install event"
    );
    let (result, _) = install(
        &updater,
        &url,
        &InstallOptions::default(),
        &Cancel::default(),
    );
    assert_eq!(rebooting(result), ("B".into(), 2));
    assert_eq!(station.slot("B"), r2);
}

/// Fault 1 (head cache): a head kept by an earlier version before its signature was checked
/// (bytes that do not verify, under the file's real ETag) costs one failed run, not every run:
/// the failed head is forgotten and fetched again.
#[test]
fn fault_01_a_poisoned_head_cache_is_forgotten_after_one_failure() {
    let [r1, r2, _] = releases();
    let server = Server::new();
    let url = server.publish("r2.abd", &diff(&r1, &r2, 2));
    let mut station = Station::new(Some(&r1));
    station.boot(Some("A"));
    let updater = station.updater().unwrap();
    drop(updater.check(&url).unwrap());
    let cache = station
        .path("state/download/heads")
        .join(blake3::hash(url.as_bytes()).to_hex().as_str());
    let mut head = abdelta::fetch::HeadCache::load(&cache).expect("a verified head is kept");
    head.bytes[300] ^= 0xff;
    std::fs::write(&cache, head.encode()).unwrap();
    let error = updater
        .check(&url)
        .err()
        .expect("the poisoned head is used once");
    assert_eq!(
        error.firmware_status(),
        FirmwareStatus::InvalidSignature,
        "{error}"
    );
    assert!(!cache.exists(), "a head that failed is not kept");
    let (result, _) = install(
        &updater,
        &url,
        &InstallOptions::default(),
        &Cancel::default(),
    );
    assert_eq!(rebooting(result), ("B".into(), 2));
}

/// Fault 11: a run that starts while a killed one still holds the lock (its descriptors not
/// yet closed) waits for it, a bounded time; a live update keeps it refused as busy.
#[test]
fn fault_11_the_lock_is_waited_for_a_bounded_time() {
    use std::time::{Duration, Instant};
    let [r1, r2, _] = releases();
    let mut station = Station::new(Some(&r1));
    station.boot(Some("A"));
    station.lock_wait = Duration::from_millis(1500);
    let bundle = station.path("r2.abd");
    std::fs::write(&bundle, diff(&r1, &r2, 2)).unwrap();
    std::fs::create_dir_all(station.path("state")).unwrap();
    let hold = || {
        let file = std::fs::File::create(station.path("state/download.lock")).unwrap();
        file.lock().unwrap();
        file
    };
    let updater = station.updater().unwrap();
    let dying = hold();
    let exits = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        drop(dying);
    });
    let started = Instant::now();
    let offer = updater.check(bundle.to_str().unwrap()).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(250));
    exits.join().unwrap();
    drop(offer);
    let _live = hold();
    let started = Instant::now();
    match updater.check(bundle.to_str().unwrap()) {
        Err(UpdateError::Busy(_)) => {}
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a held lock was taken"),
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
}

fn refetched(result: Result<Outcome, UpdateError>) -> u64 {
    match result.unwrap() {
        Outcome::Rebooting { report, .. } => report.refetched,
        Outcome::UpToDate { .. } => panic!("up to date"),
    }
}

/// Fault 1 (literal): one flipped byte in the download of a blank device's literals fails one
/// chunk's check; the stage forgets that blob, fetches it again and the install ends verified
/// in the same run.
#[test]
fn fault_01_a_corrupted_literal_on_a_blank_device_heals_in_one_run() {
    let [r1, r2, _] = releases();
    let server = Server::scripted(|n| match n {
        1 => abdelta_testkit::Fault::FlipByte(100_000),
        _ => abdelta_testkit::Fault::Pass,
    });
    let url = server.publish("r2.abd", &diff(&r1, &r2, 2));
    let mut station = Station::new(None);
    station.boot(None);
    let updater = station.updater().unwrap();
    let (result, _) = install(
        &updater,
        &url,
        &InstallOptions::default(),
        &Cancel::default(),
    );
    let again = refetched(result);
    assert!(again > 0 && again < 200_000, "fetched again: {again}");
    assert_eq!(station.slot("A"), r2);
}

/// Fault 1 (patch group): one flipped byte in the delta path's patch group makes it fail to
/// decode; its members fall back to their literals, fetched on demand, in the same run.
#[test]
fn fault_01_a_corrupted_patch_group_heals_in_one_run() {
    let [r1, r2, _] = releases();
    let server = Server::scripted(|n| match n {
        1 => abdelta_testkit::Fault::FlipByte(2_000),
        _ => abdelta_testkit::Fault::Pass,
    });
    let url = server.publish("r2.abd", &diff(&r1, &r2, 2));
    let mut station = Station::new(Some(&r1));
    station.boot(Some("A"));
    let updater = station.updater().unwrap();
    let (result, _) = install(
        &updater,
        &url,
        &InstallOptions::default(),
        &Cancel::default(),
    );
    assert!(refetched(result) > 0);
    assert_eq!(station.slot("B"), r2);
}

/// Fault 2: the running slot changes after the plan (a log written to it): the chunks whose
/// copies no longer verify take their literals, fetched on demand over HTTP.
#[test]
fn fault_02_a_source_that_changes_after_planning_falls_back_over_http() {
    let [r1, r2, _] = releases();
    let server = Server::new();
    let url = server.publish("r2.abd", &diff(&r1, &r2, 2));
    let mut station = Station::new(Some(&r1));
    station.boot(Some("A"));
    let updater = station.updater().unwrap();
    let offer = updater.check(&url).unwrap();
    let mut changed = r1.clone();
    for at in [10_000, 1_900_000] {
        changed[at] ^= 0xff;
    }
    std::fs::write(station.path("slot-a.img"), &changed).unwrap();
    let result = updater.install(
        offer,
        &InstallOptions::default(),
        &Cancel::default(),
        &mut |_: &Event| {},
    );
    let again = refetched(result);
    assert!(again > 0, "the fallback literals came on demand");
    assert_eq!(station.slot("B"), r2);
}

/// Fault 5 through the install path: the running slot is an image file that shrinks between
/// the check and the install. Its reads past the new end fail; those chunks take their
/// literals, fetched on demand over HTTP, and slot B ends verified (before: SIGBUS, exit 135).
#[test]
fn fault_05_a_source_that_shrinks_during_the_install_falls_back_over_http() {
    let [r1, r2, _] = releases();
    let server = Server::new();
    let url = server.publish("r2.abd", &diff(&r1, &r2, 2));
    let mut station = Station::new(Some(&r1));
    station.boot(Some("A"));
    let updater = station.updater().unwrap();
    let offer = updater.check(&url).unwrap();
    std::fs::File::options()
        .write(true)
        .open(station.path("slot-a.img"))
        .unwrap()
        .set_len(MIB as u64)
        .unwrap();
    let result = updater.install(
        offer,
        &InstallOptions::default(),
        &Cancel::default(),
        &mut |_: &Event| {},
    );
    match result.unwrap() {
        Outcome::Rebooting { report, .. } => {
            assert!(report.refetched > 0, "the fallback literals came on demand");
            let first = report
                .apply
                .unwrap()
                .source_errors
                .first
                .unwrap_or_default();
            assert!(first.contains("shrank"), "{first}");
        }
        Outcome::UpToDate { .. } => panic!("up to date"),
    }
    assert_eq!(station.slot("B"), r2);
}

/// The stage's file damaged after a complete download (emptied, as a crash of the file
/// system or a bad medium could leave it; the journal still says every byte arrived): the
/// next install reads zeros or errors where the bytes were, their chunks fail their checks,
/// the stage forgets those blobs and fetches them again, and the slot ends verified in the
/// same run. (A read error on bytes the stage holds is fetched again on demand:
/// `updater::transfer::tests::bytes_the_stage_cannot_read_back_are_fetched_again`.)
#[test]
fn fault_stage_a_damaged_stage_file_heals_in_one_run() {
    let [r1, r2, _] = releases();
    let server = Server::new();
    let url = server.publish("r2.abd", &diff(&r1, &r2, 2));
    let mut station = Station::new(Some(&r1));
    station.boot(Some("A"));
    let updater = station.updater().unwrap();
    // A first run downloads everything and is cancelled once it starts writing.
    cancel_once_writing(&updater, &url);
    let staged = abdelta::updater::stage_dir(&station.path("state")).join("bundle.part");
    let len = std::fs::metadata(&staged).unwrap().len();
    std::fs::File::options()
        .write(true)
        .open(&staged)
        .unwrap()
        .set_len(0)
        .unwrap();
    let before = server.body_bytes();
    let (result, _) = install(
        &updater,
        &url,
        &InstallOptions::default(),
        &Cancel::default(),
    );
    assert!(
        matches!(result, Ok(Outcome::Rebooting { .. })),
        "{result:?}"
    );
    let again = server.body_bytes() - before;
    assert!(again > 0 && again <= len, "fetched again: {again} of {len}");
    assert_eq!(station.slot("B"), r2);
}

/// T5 through the install path: the raised rollback floor is saved before anything is
/// downloaded. A release 7 that authenticates, then stops before its download (here a
/// refusing hook; a power cut does the same), still makes 6 a rollback afterwards.
#[test]
fn t05_the_raised_rollback_floor_is_saved_before_any_download() {
    let [r1, r2, _] = releases();
    let server = Server::new();
    let url7 = server.publish("r7.abd", &diff(&r1, &r2, 7));
    let url6 = server.publish("r6.abd", &diff(&r1, &r2, 6));
    let mut station = Station::new(Some(&r1));
    station.boot(Some("A"));
    station.hooks.pre_install = Some(vec!["/bin/false".into()]);
    let updater = station.updater().unwrap();
    let offer = updater.check(&url7).unwrap();
    let header = offer.download().header_fetched;
    let before = server.body_bytes();
    let result = updater.install(
        offer,
        &InstallOptions::default(),
        &Cancel::default(),
        &mut |_: &Event| {},
    );
    assert!(matches!(result, Err(UpdateError::HookRefused { .. })));
    assert_eq!(
        server.body_bytes(),
        before,
        "nothing downloaded after the header ({header} bytes)"
    );
    // A new process, as after a reboot.
    let updater = station.updater().unwrap();
    match updater.check(&url6) {
        Err(UpdateError::Bundle(abdelta::Error::Bundle(abdelta::BundleError::Policy(
            abdelta::policy::PolicyError::Rollback {
                release: 6,
                minimum: 7,
            },
        )))) => {}
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("release 6 offered after 7 authenticated"),
    }
}

/// T18 through the install path: a chunk that fails its check (a local bundle damaged in its
/// last blob, which no download can heal) fails the install; the slot is recorded empty and
/// no boot can start it.
#[test]
fn t18_a_chunk_that_fails_leaves_the_slot_empty_and_the_boot_unswitched() {
    let [r1, r2, _] = releases();
    let mut station = Station::new(None);
    station.boot(None);
    let mut bundle = diff(&r1, &r2, 2);
    let at = bundle.len() - 100;
    bundle[at] ^= 0xff;
    let path = station.path("damaged.abd");
    std::fs::write(&path, &bundle).unwrap();
    let updater = station.updater().unwrap();
    let (result, events) = install(
        &updater,
        path.to_str().unwrap(),
        &InstallOptions::default(),
        &Cancel::default(),
    );
    match result {
        Err(UpdateError::Bundle(abdelta::Error::Apply(
            abdelta::ApplyError::ChunkHashMismatch { .. } | abdelta::ApplyError::Blob { .. },
        ))) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(events.last(), Some(&FirmwareStatus::InstallationFailed));
    assert_eq!(station.states()[0], ("A".into(), None, SlotState::Empty));
    assert_eq!(station.grub(), (None, None));
    assert_eq!(updater.status().unwrap().firmware, FirmwareStatus::Idle);
}

/// A tmpfs mounted for a test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` bytes at `at`, where the machine allows it (root, a mount
    /// namespace that permits it); else says why and returns `None`.
    fn mount(at: &Path, size: usize) -> Option<Tmpfs> {
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs(at.to_path_buf())),
            Ok(o) => {
                eprintln!(
                    "skipped: cannot mount a tmpfs here: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("skipped: no mount command: {e}");
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// Fills the file system holding `path` with a file there until the kernel says ENOSPC.
fn fill(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let block = vec![0xa5u8; 64 << 10];
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("{e}"),
        }
    }
    f.sync_all().ok();
}

/// Frees `bytes` of the filler made by [`fill`].
fn free(path: &Path, bytes: u64) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len.saturating_sub(bytes)).unwrap();
}

/// Fault injection with the kernel's own ENOSPC (where root may mount a tmpfs for the state
/// directory, which holds the device state and the stage): a full disk refuses the install
/// with a message naming it and writes nothing to the slot; a disk that fills during the
/// download stops it with what arrived kept; freed, the next run converges and fetches again
/// at most one piece of what had arrived.
#[test]
fn fault_enospc_in_the_state_directory_ends_clearly_and_heals() {
    let [r1, r2, _] = releases();
    // Paced like a link, so what the proxy counts is what the client read, not what loopback
    // socket buffers held when the client stopped reading.
    let server = Server::with(abdelta_testkit::Fault::Throttle(4 << 20));
    let url = server.publish("r2.abd", &diff(&r1, &r2, 2));
    let mut station = Station::new(None);
    station.boot(None);
    let state = station.path("state");
    std::fs::create_dir_all(&state).unwrap();
    let Some(_mounted) = Tmpfs::mount(&state, 4 << 20) else {
        return;
    };
    let filler = state.join("filler");
    fill(&filler);
    let untouched = |station: &Station| {
        assert!(station.slot("A").is_empty(), "the slot was not written");
        assert_eq!(station.grub().0, None, "no boot was switched");
    };
    let attempt = |station: &Station| -> Result<Outcome, UpdateError> {
        let updater = station.updater()?;
        let offer = updater.check(&url)?;
        updater.install(
            offer,
            &InstallOptions::default(),
            &Cancel::default(),
            &mut |_: &Event| {},
        )
    };
    // Full: refused before the download, naming the cause.
    let full = attempt(&station).unwrap_err();
    assert!(
        abdelta::report(&full).contains("No space left on device"),
        "{full}"
    );
    untouched(&station);
    // Room for the state and part of the download.
    free(&filler, 300 << 10);
    let before = server.body_bytes();
    let partway = attempt(&station).unwrap_err();
    assert!(
        abdelta::report(&partway).contains("No space left on device"),
        "{partway}"
    );
    untouched(&station);
    let arrived = server.body_bytes() - before;
    // Freed: the rerun converges and fetches again at most the piece in flight.
    std::fs::remove_file(&filler).unwrap();
    let updater = station.updater().unwrap();
    let offer = updater.check(&url).unwrap();
    let (staged, to_download) = (offer.download().staged, offer.download().to_download);
    // The failed run fetched the signed header whole (the full disk kept no copy of it).
    let header = offer.plan().unwrap().header_bytes;
    assert!(staged > 0, "what arrived before the disk filled was kept");
    let before = server.body_bytes();
    let result = updater.install(
        offer,
        &InstallOptions::default(),
        &Cancel::default(),
        &mut |_: &Event| {},
    );
    assert!(
        matches!(result, Ok(Outcome::Rebooting { .. })),
        "{result:?}"
    );
    assert_eq!(station.slot("A"), r2);
    let again = arrived.saturating_sub(staged + header);
    println!(
        "ENOSPC: {arrived} bytes sent before the disk filled ({header} of header), {staged} kept, {again} lost; the rerun fetched {} (planned {to_download})",
        server.body_bytes() - before
    );
    // The piece in flight, plus what the transport had buffered when the client hung up.
    assert!(again <= 2 * abdelta::fetch::PIECE, "lost: {again}");
}
