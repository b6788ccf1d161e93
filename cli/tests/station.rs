//! The station commands through the real binary: `install`, `check`, `status`, `mark-good`,
//! `mark-bad` on file-backed slots with a real GRUB environment block (checked with
//! `grub-editenv` where installed; CI installs it), over a real HTTP server; and `kill -9`
//! at random points of an install (the issue's test 4).
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Instant;

use abdelta::updater::{GRUB_ONCE, GRUB_PRIMARY, Grub, encode_grubenv};
use abdelta_testkit::{Fault, proxy, serve};

fn abdelta() -> Command {
    Command::new(env!("CARGO_BIN_EXE_abdelta"))
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn paint(seed: u64, len: usize) -> Vec<u8> {
    let mut s = seed;
    let mut out = Vec::with_capacity(len);
    let words: [&[u8]; 5] = [b"station ", b"charger ", b"\n", b"ocpp=1 ", b"relay "];
    while out.len() < len {
        s = s
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        out.extend_from_slice(words[(s >> 60) as usize % words.len()]);
        if s >> 62 == 3 {
            out.push((s >> 24) as u8);
        }
    }
    out.truncate(len);
    out
}

/// A station on files with a release server: slots A (r1) and B (empty), grub backend.
struct Station {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    config: PathBuf,
    r1: Vec<u8>,
    r2: Vec<u8>,
    url: String,
    boots: u32,
}

impl Station {
    /// `boot_extra`: more `[boot]` keys.
    fn new(fault: Fault, boot_extra: &str) -> Station {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let r1 = paint(1, 3 << 20);
        let mut r2 = r1.clone();
        r2.splice(1_000_000..1_000_000, paint(7, 300_000));
        r2.truncate(3 << 20);
        r2[2_500_000] ^= 1;
        std::fs::write(dir.join("r1.img"), &r1).unwrap();
        std::fs::write(dir.join("r2.img"), &r2).unwrap();
        ok(run(abdelta()
            .args(["keygen", "-o"])
            .arg(dir.join("release"))));
        let www = dir.join("www");
        std::fs::create_dir(&www).unwrap();
        ok(run(abdelta()
            .arg("diff")
            .arg("--from")
            .arg(dir.join("r1.img"))
            .arg("--to")
            .arg(dir.join("r2.img"))
            .arg("--key")
            .arg(dir.join("release.key"))
            .args(["--release-version", "2", "--compat", "evse-ac22-rev3", "-o"])
            .arg(www.join("r2.abd"))));
        std::fs::write(dir.join("slot-a.img"), &r1).unwrap();
        std::fs::write(dir.join("slot-b.img"), b"").unwrap();
        let config = dir.join("device.toml");
        std::fs::write(
            &config,
            r#"pubkeys = ["release.pub"]
hardware_id = "evse-ac22-rev3"
state_dir = "state"

[slots.A]
device = "slot-a.img"
[slots.B]
device = "slot-b.img"

[boot]
backend = "grub"
grubenv = "grubenv"
cmdline = "cmdline"
boot_id = "boot_id"
"#
            .to_owned()
                + boot_extra,
        )
        .unwrap();
        let (addr, _) = proxy(serve(&www), move |_| fault.clone());
        let mut station = Station {
            _tmp: tmp,
            url: format!("http://{addr}/r2.abd"),
            dir,
            config,
            r1,
            r2,
            boots: 0,
        };
        station.boot("A");
        station
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A reboot into `slot`: GRUB's snippet consumes a one-shot boot, the kernel command
    /// line names the slot, and the boot id changes.
    fn boot(&mut self, slot: &str) {
        self.boots += 1;
        let grubenv = self.path("grubenv");
        if grubenv.exists() {
            let mut vars = Grub::new(grubenv.clone()).read().unwrap();
            vars.retain(|(k, _)| k != GRUB_ONCE);
            std::fs::write(&grubenv, encode_grubenv(&vars).unwrap()).unwrap();
        }
        std::fs::write(self.path("cmdline"), format!("quiet abdelta.slot={slot}\n")).unwrap();
        std::fs::write(self.path("boot_id"), format!("boot-{}\n", self.boots)).unwrap();
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = abdelta();
        c.args(args).arg("--config").arg(&self.config);
        c
    }

    fn status(&self) -> serde_json::Value {
        serde_json::from_str(&ok(run(&mut self.cmd(&["status", "--json"])))).unwrap()
    }

    /// (once, primary), as `grub-editenv` lists them (abdelta's own reader where the tool is
    /// not installed; CI installs it).
    fn grub(&self) -> (Option<String>, Option<String>) {
        let path = self.path("grubenv");
        let vars: Vec<(String, String)> =
            match Command::new("grub-editenv").arg(&path).arg("list").output() {
                Ok(out) => String::from_utf8(out.stdout)
                    .unwrap()
                    .lines()
                    .filter_map(|l| l.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
                Err(_) if std::env::var_os("CI").is_some() => {
                    panic!("CI must install grub-editenv")
                }
                Err(_) => Grub::new(path).read().unwrap(),
            };
        let get = |n: &str| vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        (get(GRUB_ONCE), get(GRUB_PRIMARY))
    }
}

fn statuses(stderr: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "status")
        .map(|e| e["status"].as_str().unwrap().to_owned())
        .collect()
}

/// The CLI contract: check, install (events in OCPP order), status, reboot, mark-good, and a
/// fallback reported failed then retried; with the closing note's transcripts printed.
#[test]
fn install_status_mark_good_and_fallback_through_the_binary() {
    let mut st = Station::new(Fault::Pass, "");
    let offer: serde_json::Value =
        serde_json::from_str(&ok(run(&mut st.cmd(&["check", &st.url, "--json"])))).unwrap();
    assert_eq!(offer["action"], "install");
    assert_eq!(
        (offer["booted"].as_str(), offer["target"].as_str()),
        (Some("A"), Some("B"))
    );
    assert_eq!(offer["release"], 2);
    let out = run(&mut st.cmd(&["install", &st.url, "--json"]));
    let events = statuses(&out.stderr);
    let report = ok(out);
    println!("install events: {}", events.join(" → "));
    assert_eq!(
        events,
        [
            "Downloading",
            "Downloaded",
            "SignatureVerified",
            "Installing",
            "InstallRebooting"
        ]
    );
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(
        (report["slot"].as_str(), report["release"].as_u64()),
        (Some("B"), Some(2))
    );
    let status = st.status();
    println!("status after install: {status}");
    assert_eq!(
        status,
        serde_json::json!({"booted": "A", "installed": null, "firmware_status": "InstallRebooting", "bootable": ["B", "A"], "slots": [
            {"name": "A", "device": st.path("slot-a.img"), "release": null, "state": "good"},
            {"name": "B", "device": st.path("slot-b.img"), "release": 2, "state": "pending"}]})
    );
    assert_eq!(st.grub(), (Some("B".into()), Some("A".into())));
    assert_eq!(std::fs::read(st.path("slot-a.img")).unwrap(), st.r1);
    assert_eq!(std::fs::read(st.path("slot-b.img")).unwrap(), st.r2);

    // Test 3 through the binary: the boot falls back to A; reported failed, then retried.
    st.boot("A");
    let status = st.status();
    println!("status after a fallback: {status}");
    assert_eq!(status["firmware_status"], "InstallationFailed");
    assert_eq!(status["slots"][1]["state"], "bad");
    let out = run(&mut st.cmd(&["install", &st.url, "--json"]));
    assert_eq!(
        statuses(&out.stderr).last().map(String::as_str),
        Some("InstallRebooting")
    );
    ok(out);

    // Test 2 through the binary: the reboot starts B, the health check confirms it.
    st.boot("B");
    let marked: serde_json::Value =
        serde_json::from_str(&ok(run(&mut st.cmd(&["mark-good", "--json"])))).unwrap();
    assert_eq!(marked["status"], "Installed");
    let status = st.status();
    println!("status after mark-good: {status}");
    assert_eq!(
        status,
        serde_json::json!({"booted": "B", "installed": 2, "firmware_status": "Idle", "bootable": ["B"], "slots": [
            {"name": "A", "device": st.path("slot-a.img"), "release": null, "state": "good"},
            {"name": "B", "device": st.path("slot-b.img"), "release": 2, "state": "good"}]})
    );
    assert_eq!(st.grub(), (None, Some("B".into())));
    let up: serde_json::Value =
        serde_json::from_str(&ok(run(&mut st.cmd(&["install", &st.url, "--json"])))).unwrap();
    assert_eq!(up["up_to_date"], true);

    // mark-bad from B: the next boot starts A.
    let marked: serde_json::Value =
        serde_json::from_str(&ok(run(&mut st.cmd(&["mark-bad", "--json"])))).unwrap();
    assert_eq!(marked["fallback"], "A");
    assert_eq!(st.grub(), (None, Some("A".into())));
}

/// Usage and environment errors exit with their codes: a config without slots (2), a
/// missing slot device (3), and a second install while one holds the lock (3, "busy").
#[test]
fn configuration_mistakes_and_missing_devices_exit_with_their_codes() {
    let st = Station::new(Fault::Pass, "");
    let text = std::fs::read_to_string(&st.config).unwrap();
    let bad = st.path("no-slots.toml");
    std::fs::write(
        &bad,
        text.replace("[slots.B]\ndevice = \"slot-b.img\"\n", ""),
    )
    .unwrap();
    let out = run(abdelta().args(["status", "--config"]).arg(&bad));
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let missing = st.path("missing.toml");
    std::fs::write(&missing, text.replace("slot-b.img", "dev/mmcblk0p3")).unwrap();
    let out = run(abdelta()
        .args(["install", &st.url, "--config"])
        .arg(&missing));
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("it is not created"));
    assert!(!st.path("dev").exists());
    let held = std::fs::File::create(st.path("state/download.lock"))
        .or_else(|_| {
            std::fs::create_dir_all(st.path("state"))?;
            std::fs::File::create(st.path("state/download.lock"))
        })
        .unwrap();
    held.lock().unwrap();
    let out = run(&mut st.cmd(&["install", &st.url]));
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("busy"));
}

/// Test 4: `kill -9` at random points of installs over a slow link. After every kill the
/// GRUB environment points only at slots that hold their verified image; a rerun converges
/// to a verified, pending slot the next boot starts.
#[test]
fn kill_9_at_random_points_never_points_the_boot_at_an_unverified_slot() {
    let points: u32 = std::env::var("ABDELTA_INSTALL_KILL_POINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    // 300 kB/s: the download takes a while, so kills land in it as well as in the writing.
    // Every point ends in a fallback of the same release, which would stop its retries after
    // three (boot.max_failures): this station allows them all.
    let mut st = Station::new(Fault::Throttle(300_000), "max_failures = 100000\n");
    let started = Instant::now();
    ok(run(&mut st.cmd(&["install", &st.url])));
    let full = started.elapsed();
    let mut seed = started.elapsed().as_nanos() as u64 | 1;
    println!("one install takes {full:?}; {points} kill points, seed {seed}");
    let mut killed_early = 0;
    let mut converged = 0;
    for point in 0..points {
        // The station falls back to A (B never confirmed): B is bad, the install redoes it.
        st.boot("A");
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = full.mul_f64((seed % 1000) as f64 / 1000.0 * 1.2);
        let mut child = st
            .cmd(&["install", &st.url])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let finished = child.try_wait().unwrap().is_some();
        let _ = child.kill();
        child.wait().unwrap();
        killed_early += u32::from(!finished);
        check_boot_points_at_verified(&st, point);
        if point % 20 == 19 {
            // A rerun (in the same boot) converges: B verified and pending, booted next.
            ok(run(&mut st.cmd(&["install", &st.url])));
            assert_eq!(std::fs::read(st.path("slot-b.img")).unwrap(), st.r2);
            assert_eq!(
                st.grub(),
                (Some("B".into()), Some("A".into())),
                "point {point}"
            );
            assert_eq!(st.status()["slots"][1]["state"], "pending");
            converged += 1;
        }
    }
    println!(
        "{killed_early} of {points} runs killed before they finished; {converged} reruns converged"
    );
    assert!(
        killed_early > points / 4,
        "the kills must land inside installs"
    );
}

fn check_boot_points_at_verified(st: &Station, point: u32) {
    let Ok(bytes) = std::fs::read(st.path("grubenv")) else {
        return;
    };
    let vars = abdelta::updater::parse_grubenv(&bytes)
        .unwrap_or_else(|| panic!("point {point}: the GRUB environment is damaged"));
    for (name, value) in vars {
        if name != GRUB_ONCE && name != GRUB_PRIMARY {
            continue;
        }
        let (image, want) = match value.as_str() {
            "A" => (st.path("slot-a.img"), &st.r1),
            "B" => (st.path("slot-b.img"), &st.r2),
            other => panic!("point {point}: {name}={other}"),
        };
        assert!(
            std::fs::read(&image).unwrap() == *want,
            "point {point}: {name} points at slot {value}, which does not hold its verified image"
        );
    }
}

/// What `dist/` ships parses: the example `device.toml` loads as an updater configuration,
/// and the GRUB snippet passes `grub-script-check` (CI installs it).
#[test]
fn dist_device_toml_and_grub_snippet_parse() {
    let dist = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist");
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(dist.join("device.toml"), tmp.path().join("device.toml")).unwrap();
    for root in ["root-2026", "root-2028"] {
        ok(run(abdelta()
            .args(["keygen", "--root", "-o"])
            .arg(tmp.path().join(root))));
    }
    let config = abdelta::updater::UpdaterConfig::load(&tmp.path().join("device.toml")).unwrap();
    assert_eq!(config.slots.len(), 2);
    assert_eq!(config.boot.name(), "grub");
    assert_eq!(config.fetch.max_download, Some(52_428_800));
    match Command::new("grub-script-check")
        .arg(dist.join("grub/abdelta.cfg"))
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(_) if std::env::var_os("CI").is_some() => panic!("CI must install grub-common"),
        Err(_) => eprintln!("grub-script-check not installed: the GRUB snippet is not checked"),
    }
}
