//! The CLI through the real binary: the whole path on files, exit codes and error text.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the binary. Each call gets its own cache directory: without `--state-dir`, `apply`
/// stages under (and locks) the user's cache, which tests running in parallel would share and
/// find busy.
fn abdelta(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let cache = std::env::temp_dir().join(format!("abdelta-cli-test-{}-{n}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_abdelta"))
        .args(args.iter().map(|a| a.as_ref()))
        .env("XDG_CACHE_HOME", &cache)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&cache);
    out
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn paint(seed: u64, len: usize) -> Vec<u8> {
    let mut s = seed;
    let words: [&[u8]; 6] = [
        b"station ",
        b"charger ",
        b"\n",
        b"ocpp=1 ",
        b"\x00\x00\x00\x00",
        b"relay ",
    ];
    let mut out = Vec::new();
    while out.len() < len {
        s = s
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        out.extend_from_slice(words[(s >> 60) as usize % words.len()]);
        if s >> 63 == 1 {
            out.push((s >> 20) as u8);
        }
    }
    out.truncate(len);
    out
}

struct Setup {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    old: PathBuf,
    new: PathBuf,
    bundle: PathBuf,
    key: PathBuf,
    pubkey: PathBuf,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let a = paint(1, 1 << 20);
    let mut b = a.clone();
    b.splice(300_000..300_000, paint(2, 4000));
    b[700_000] ^= 1;
    let (old, new) = (dir.join("old.img"), dir.join("new.img"));
    std::fs::write(&old, &a).unwrap();
    std::fs::write(&new, &b).unwrap();
    let name = dir.join("release");
    ok(&abdelta(&[&"keygen", &"-o", &name]));
    let (key, pubkey) = (dir.join("release.key"), dir.join("release.pub"));
    let bundle = dir.join("r2.abd");
    ok(&abdelta(&[
        &"diff",
        &"--from",
        &old,
        &"--to",
        &new,
        &"--key",
        &key,
        &"--release-version",
        &"2",
        &"--compat",
        &"evse-ac22-rev3",
        &"--literal-level",
        &"3",
        &"-o",
        &bundle,
    ]));
    Setup {
        _dir: tmp,
        dir,
        old,
        new,
        bundle,
        key,
        pubkey,
    }
}

fn hash(path: &Path) -> blake3::Hash {
    blake3::hash(&std::fs::read(path).unwrap())
}

#[test]
fn keygen_writes_private_key_0600_and_openssl_reads_it() {
    let s = setup();
    let mode = std::fs::metadata(&s.key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let pem = std::fs::read_to_string(&s.key).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    // Refuses to overwrite without --force: a usage mistake (exit 2) that says how.
    let again = abdelta(&[&"keygen", &"-o", &s.dir.join("release")]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    if let Ok(out) = Command::new("openssl")
        .arg("pkey")
        .arg("-in")
        .arg(&s.key)
        .arg("-noout")
        .output()
    {
        assert!(
            out.status.success(),
            "openssl cannot read the key: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn diff_plan_apply_verify_on_files() {
    let s = setup();
    let source_hash = hash(&s.old);
    let plan = ok(&abdelta(&[
        &"plan",
        &s.bundle,
        &"--source",
        &s.old,
        &"--pubkey",
        &s.pubkey,
        &"--json",
    ]));
    let plan: serde_json::Value = serde_json::from_str(&plan).unwrap();
    let planned = plan["download_bytes"].as_u64().unwrap();
    let bundle_len = std::fs::metadata(&s.bundle).unwrap().len();
    assert!(
        planned > 0 && planned < bundle_len / 4,
        "delta path reads {planned} of {bundle_len}"
    );

    let target = s.dir.join("rebuilt.img"); // missing: apply creates it
    let out = ok(&abdelta(&[
        &"apply",
        &s.bundle,
        &"--source",
        &s.old,
        &"--target",
        &target,
        &"--pubkey",
        &s.pubkey,
        &"--json",
    ]));
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["bundle_bytes_read"].as_u64().unwrap(), planned);
    assert_eq!(hash(&target), hash(&s.new));
    ok(&abdelta(&[
        &"verify",
        &s.bundle,
        &"--target",
        &target,
        &"--pubkey",
        &s.pubkey,
    ]));
    assert_eq!(hash(&s.old), source_hash, "the source was modified");

    // Blank device: no source.
    let blank = s.dir.join("blank.img");
    ok(&abdelta(&[
        &"apply",
        &s.bundle,
        &"--target",
        &blank,
        &"--pubkey",
        &s.pubkey,
    ]));
    assert_eq!(hash(&blank), hash(&s.new));

    let text = ok(&abdelta(&[&"inspect", &s.bundle, &"--pubkey", &s.pubkey]));
    assert!(
        text.contains("evse-ac22-rev3") && text.contains("valid"),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&abdelta(&[&"inspect", &s.bundle, &"--json"]))).unwrap();
    assert_eq!(json["release_version"], 2);
}

#[test]
fn verify_names_the_failed_rule() {
    let s = setup();
    let out = abdelta(&[
        &"verify",
        &s.bundle,
        &"--target",
        &s.old,
        &"--pubkey",
        &s.pubkey,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("target hash mismatch"), "{err}");
}

#[test]
fn tampered_bundle_and_wrong_key_exit_1_before_touching_the_target() {
    let s = setup();
    let mut bytes = std::fs::read(&s.bundle).unwrap();
    bytes[40] ^= 1; // inside the signed manifest
    let bad = s.dir.join("bad.abd");
    std::fs::write(&bad, &bytes).unwrap();
    let target = s.dir.join("never.img");
    let out = abdelta(&[
        &"apply",
        &bad,
        &"--source",
        &s.old,
        &"--target",
        &target,
        &"--pubkey",
        &s.pubkey,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad signature"));
    assert!(
        !target.exists(),
        "the target was created for a rejected bundle"
    );

    ok(&abdelta(&[&"keygen", &"-o", &s.dir.join("other")]));
    let out = abdelta(&[
        &"apply",
        &s.bundle,
        &"--source",
        &s.old,
        &"--target",
        &target,
        &"--pubkey",
        &s.dir.join("other.pub"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("untrusted key"));
    assert!(!target.exists());
}

#[test]
fn refuses_to_write_the_source_and_reports_io_and_usage_errors() {
    let s = setup();
    let before = hash(&s.old);
    let out = abdelta(&[
        &"apply",
        &s.bundle,
        &"--source",
        &s.old,
        &"--target",
        &s.old,
        &"--pubkey",
        &s.pubkey,
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "naming the source as the target is a usage mistake"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("running partition is never written"));
    assert_eq!(hash(&s.old), before);

    // A mistyped partition is not created as a file under /dev.
    let typo = Path::new("/dev/abdelta-test-mmcblk9p3");
    let out = abdelta(&[
        &"apply",
        &s.bundle,
        &"--source",
        &s.old,
        &"--target",
        &typo,
        &"--pubkey",
        &s.pubkey,
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no file is created under /dev"));
    assert!(!typo.exists());

    let out = abdelta(&[
        &"verify",
        &s.dir.join("missing.abd"),
        &"--target",
        &s.new,
        &"--pubkey",
        &s.pubkey,
    ]);
    assert_eq!(out.status.code(), Some(3));
    let out = abdelta(&[&"apply", &s.bundle]);
    assert_eq!(out.status.code(), Some(2));
    // No trusted key: a usage mistake.
    let out = abdelta(&[&"verify", &s.bundle, &"--target", &s.new]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no trusted key"));
}

/// `inspect` exits 1 when a check it was asked to make fails (after printing what it read),
/// 0 when they pass; every help lists the exit codes; the top-level help lists every command;
/// dates are dates; `verify` refuses an image file with bytes after the image.
#[test]
fn inspect_and_verify_exit_with_what_they_found() {
    let s = setup();
    let ok_out = abdelta(&[&"inspect", &s.bundle, &"--pubkey", &s.pubkey]);
    assert_eq!(ok_out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&ok_out.stdout).into_owned();
    assert!(text.contains("created         20"), "a date: {text}");
    // Signed by another key.
    let other = s.dir.join("other");
    ok(&abdelta(&[&"keygen", &"-o", &other]));
    let out = abdelta(&[
        &"inspect",
        &s.bundle,
        &"--pubkey",
        &other.with_extension("pub"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAILS"));
    // Refused by the policy (another hardware id).
    let out = abdelta(&[
        &"inspect",
        &s.bundle,
        &"--pubkey",
        &s.pubkey,
        &"--hardware-id",
        &"another-board",
        &"--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["policy"].as_str().unwrap().starts_with("FAILS"));
    // A tampered header.
    let mut bytes = std::fs::read(&s.bundle).unwrap();
    bytes[40] ^= 1;
    let tampered = s.dir.join("tampered.abd");
    std::fs::write(&tampered, &bytes).unwrap();
    let out = abdelta(&[&"inspect", &tampered, &"--pubkey", &s.pubkey]);
    assert_eq!(out.status.code(), Some(1));

    let help = ok(&abdelta(&[&"--help"]));
    for command in ["keyset", "install", "mark-good", "Exit codes: 0 success"] {
        assert!(help.contains(command), "{command} missing from the help");
    }
    assert!(ok(&abdelta(&[&"apply", &"--help"])).contains("Exit codes"));

    // An image file with one byte more than the image.
    let longer = s.dir.join("longer.img");
    let mut image = std::fs::read(&s.new).unwrap();
    image.push(0);
    std::fs::write(&longer, &image).unwrap();
    let out = abdelta(&[
        &"verify",
        &s.bundle,
        &"--target",
        &longer,
        &"--pubkey",
        &s.pubkey,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("trailing bytes"));
}

/// Attaches `file` to a loop device, or says why this machine does not allow it.
fn losetup(file: &Path, read_only: bool) -> Result<String, String> {
    let mut cmd = Command::new("losetup");
    cmd.arg("--find").arg("--show");
    if read_only {
        cmd.arg("--read-only");
    }
    let out = cmd
        .arg(file)
        .output()
        .map_err(|e| format!("losetup: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!(
            "losetup {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

struct Loop(String);

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

#[test]
fn apply_and_verify_on_loop_block_devices() {
    let s = setup();
    // Block devices hold whole 512-byte sectors: the target device is larger than the image.
    let image_len = std::fs::metadata(&s.new).unwrap().len();
    let backing = s.dir.join("slot-b.raw");
    std::fs::write(
        &backing,
        vec![0xa5u8; (image_len as usize).div_ceil(512) * 512 + 4096],
    )
    .unwrap();
    let mut old = std::fs::read(&s.old).unwrap();
    old.resize(old.len().div_ceil(512) * 512, 0);
    let slot_a = s.dir.join("slot-a.raw");
    std::fs::write(&slot_a, &old).unwrap();
    let (source, target) = match (losetup(&slot_a, true), losetup(&backing, false)) {
        (Ok(source), Ok(target)) => (source, target),
        (source, target) => {
            // Say why, and keep whichever did attach from leaking.
            let why = [&source, &target]
                .iter()
                .filter_map(|r| r.as_ref().err().cloned())
                .collect::<Vec<_>>()
                .join("; ");
            for dev in [source, target].into_iter().flatten() {
                drop(Loop(dev));
            }
            eprintln!("loop-device test SKIPPED, this machine does not allow loop devices: {why}");
            return;
        }
    };
    let (source, target) = (Loop(source), Loop(target));
    let source_hash = hash(Path::new(&source.0));
    ok(&abdelta(&[
        &"apply",
        &s.bundle,
        &"--source",
        &source.0,
        &"--target",
        &target.0,
        &"--pubkey",
        &s.pubkey,
    ]));
    ok(&abdelta(&[
        &"verify",
        &s.bundle,
        &"--target",
        &target.0,
        &"--pubkey",
        &s.pubkey,
    ]));
    assert_eq!(hash(Path::new(&source.0)), source_hash);
    drop(target);
    let written = std::fs::read(&backing).unwrap();
    assert!(written[..image_len as usize] == std::fs::read(&s.new).unwrap()[..]);
    assert!(
        written[image_len as usize..].iter().all(|&b| b == 0xa5),
        "bytes past the image were written"
    );
}

#[test]
fn device_policy_keyset_and_state_through_the_cli() {
    let s = setup(); // r2.abd: release 2 signed by release.key, for evse-ac22-rev3
    let root = s.dir.join("root");
    let out = ok(&abdelta(&[&"keygen", &"--root", &"-o", &root]));
    assert!(out.contains("root key"));
    let ks = s.dir.join("keyset-1.abk");
    ok(&abdelta(&[
        &"keyset",
        &"sign",
        &"--root-key",
        &root.with_extension("key"),
        &"--version",
        &"1",
        &"--release-key",
        &s.pubkey,
        &"--expires-in-days",
        &"30",
        &"-o",
        &ks,
    ]));
    let inspected: serde_json::Value = serde_json::from_str(&ok(&abdelta(&[
        &"keyset",
        &"inspect",
        &ks,
        &"--root-key",
        &root.with_extension("pub"),
        &"--json",
    ])))
    .unwrap();
    assert_eq!(inspected["version"], 1);
    assert_eq!(inspected["signature"], "valid");

    let r3 = s.dir.join("r3.abd");
    ok(&abdelta(&[
        &"diff",
        &"--from",
        &s.old,
        &"--to",
        &s.new,
        &"--key",
        &s.key,
        &"--release-version",
        &"3",
        &"--compat",
        &"evse-ac22-rev3",
        &"--keyset",
        &ks,
        &"--literal-level",
        &"3",
        &"-o",
        &r3,
    ]));
    let state = s.dir.join("state");
    let target = s.dir.join("slot-b.img");
    let root_pub = root.with_extension("pub");
    let device: [&dyn AsRef<std::ffi::OsStr>; 6] = [
        &"--root-key",
        &root_pub,
        &"--hardware-id",
        &"evse-ac22-rev3",
        &"--state-dir",
        &state,
    ];
    let apply = |bundle: &Path, extra: &[&dyn AsRef<std::ffi::OsStr>]| {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> =
            vec![&"apply", &bundle, &"--source", &s.old, &"--target", &target];
        args.extend_from_slice(extra);
        abdelta(&args)
    };
    ok(&apply(&r3, &device));
    assert_eq!(hash(&target), hash(&s.new));
    // A written partition is not a booted, confirmed one: the same release is not "up to
    // date" for a manual apply (it writes and verifies again), nor a rollback.
    let again = ok(&apply(&r3, &device));
    assert!(again.contains("written and verified"), "{again}");

    // Release 2 after 3: a rollback, refused with exit 1, even with its key trusted directly.
    let mut with_pub = device.to_vec();
    with_pub.extend_from_slice(&[&"--pubkey", &s.pubkey]);
    let out = apply(&s.bundle, &with_pub);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rollback"));

    // Another hardware revision: refused; inspect shows the verdict, then exits 1.
    let other: [&dyn AsRef<std::ffi::OsStr>; 4] = [
        &"--root-key",
        &root_pub,
        &"--hardware-id",
        &"evse-dc50-rev1",
    ];
    let out = apply(&r3, &other);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong hardware"));
    let mut inspect: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"inspect", &r3];
    inspect.extend_from_slice(&other);
    let out = abdelta(&inspect);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAILS: wrong hardware"));

    // The same device configuration from a file, with the key as an OpenSSH line.
    let pem = std::fs::read_to_string(&s.pubkey).unwrap();
    let public = abdelta::PublicKey::parse(&pem).unwrap().to_bytes();
    let mut wire = Vec::new();
    for field in [&b"ssh-ed25519"[..], &public[..]] {
        wire.extend_from_slice(&(field.len() as u32).to_be_bytes());
        wire.extend_from_slice(field);
    }
    let ssh = s.dir.join("release.ssh.pub");
    std::fs::write(
        &ssh,
        format!("ssh-ed25519 {} release@ci\n", base64_encode(&wire)),
    )
    .unwrap();
    let config = s.dir.join("device.toml");
    std::fs::write(
        &config,
        format!(
            "pubkeys = [{:?}]\nhardware_id = \"evse-ac22-rev3\"\nstate_dir = {:?}\n",
            ssh.display().to_string(),
            state.display().to_string()
        ),
    )
    .unwrap();
    let out = ok(&apply(&r3, &[&"--config", &config]));
    assert!(out.contains("written and verified"), "{out}");
    // Release 2 is still a rollback for the state the file names.
    let out = apply(&s.bundle, &[&"--config", &config]);
    assert_eq!(out.status.code(), Some(1));
}

fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for group in bytes.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= group.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn a_second_update_on_the_same_state_is_refused_while_one_runs() {
    let s = setup();
    let state = s.dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let held = std::fs::File::create(state.join("download.lock")).unwrap();
    held.try_lock().unwrap();
    let target = s.dir.join("busy.img");
    let apply: [&dyn AsRef<std::ffi::OsStr>; 8] = [
        &"apply",
        &s.bundle,
        &"--target",
        &target,
        &"--pubkey",
        &s.pubkey,
        &"--state-dir",
        &state,
    ];
    let out = abdelta(&apply);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("busy"));
    assert!(!target.exists());
    drop(held);
    ok(&abdelta(&apply));
}

/// `diff --from NEWEST --from EARLIER`: one bundle; a device still on the earlier release
/// plans patches against its own partition (far fewer bytes than the single-base bundle
/// costs it) and rebuilds the new image; `inspect` lists the earlier release.
#[test]
fn one_bundle_serves_a_device_one_release_behind() {
    let s = setup();
    // r0 → old (r1) → new (r2): old changed a few hundred bytes of r0.
    let mut r0 = std::fs::read(&s.old).unwrap();
    for at in (0..r0.len()).step_by(3_001) {
        r0[at] = r0[at].wrapping_add(1);
    }
    let r0_path = s.dir.join("r0.img");
    std::fs::write(&r0_path, &r0).unwrap();
    let fleet = s.dir.join("fleet.abd");
    ok(&abdelta(&[
        &"diff",
        &"--from",
        &s.old,
        &"--from",
        &r0_path,
        &"--to",
        &s.new,
        &"--key",
        &s.key,
        &"--release-version",
        &"2",
        &"--compat",
        &"evse-ac22-rev3",
        &"--literal-level",
        &"3",
        &"-o",
        &fleet,
    ]));
    let planned = |bundle: &Path| {
        let out = ok(&abdelta(&[
            &"plan",
            &bundle,
            &"--source",
            &r0_path,
            &"--pubkey",
            &s.pubkey,
            &"--json",
        ]));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["download_bytes"].as_u64().unwrap()
    };
    let (shared, alone) = (planned(&fleet), planned(&s.bundle));
    assert!(shared * 4 < alone, "fleet {shared} vs single-base {alone}");
    let target = s.dir.join("from-r0.img");
    ok(&abdelta(&[
        &"apply",
        &fleet,
        &"--source",
        &r0_path,
        &"--target",
        &target,
        &"--pubkey",
        &s.pubkey,
    ]));
    assert_eq!(hash(&target), hash(&s.new));
    let text = ok(&abdelta(&[&"inspect", &fleet, &"--pubkey", &s.pubkey]));
    assert!(text.contains("earlier 1"), "{text}");
}

/// A URL on a closed port fails within the first contact's patience (15 s), exit 3, saying
/// what to check, where it used to retry silently for two minutes.
#[test]
fn a_closed_port_fails_in_seconds() {
    let s = setup();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = std::time::Instant::now();
    let out = abdelta(&[
        &"plan",
        &format!("http://127.0.0.1:{port}/r2.abd"),
        &"--pubkey",
        &s.pubkey,
    ]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot reach the server"), "{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(40));
}

/// A failed apply never leaves an image that looks finished: a target file it created is
/// removed again (an existing one, a partition, is left to the caller).
#[test]
fn a_failed_apply_removes_the_file_it_created() {
    let s = setup();
    let mut bytes = std::fs::read(&s.bundle).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff; // the last literal blob: no recipe is left for its chunk
    let broken = s.dir.join("broken.abd");
    std::fs::write(&broken, &bytes).unwrap();
    let target = s.dir.join("blank.img");
    let out = abdelta(&[
        &"apply",
        &broken,
        &"--target",
        &target,
        &"--pubkey",
        &s.pubkey,
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!target.exists(), "a half-written image was left behind");
}

/// A corrupt patch group costs literals, and the human output says so with the cost, not only
/// `--json`.
#[test]
fn a_fallback_at_apply_time_is_reported_with_its_cost() {
    let s = setup();
    let mut bytes = std::fs::read(&s.bundle).unwrap();
    let word = |at: usize, n: usize| {
        bytes[at..at + n]
            .iter()
            .rev()
            .fold(0usize, |v, &b| (v << 8) | usize::from(b))
    };
    // The payload starts after the envelope, manifest, signatures and keyset (SPEC §3); the
    // reference layout puts the patch groups first.
    let payload = 32 + word(12, 4) + 72 * word(16, 2) + word(18, 4);
    bytes[payload + 40] ^= 0xff;
    let broken = s.dir.join("group.abd");
    std::fs::write(&broken, &bytes).unwrap();
    let target = s.dir.join("out.img");
    let out = ok(&abdelta(&[
        &"apply",
        &broken,
        &"--source",
        &s.old,
        &"--target",
        &target,
        &"--pubkey",
        &s.pubkey,
    ]));
    assert!(
        out.contains("took its literal") && out.contains("beyond the plan"),
        "{out}"
    );
    assert_eq!(hash(&target), hash(&s.new));
}

/// Retries show on stderr: a line for people, a JSON event with `--json`.
#[test]
fn retries_show_on_stderr_and_as_json_events() {
    use abdelta_testkit::{Fault, proxy, serve};
    let s = setup();
    let www = s.dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::copy(&s.bundle, www.join("r2.abd")).unwrap();
    // The first response of each server is a 503; the rest pass.
    let flaky = || {
        let (addr, _) = proxy(serve(&www), |n| match n {
            0 => Fault::Respond("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"),
            _ => Fault::Pass,
        });
        format!("http://{addr}/r2.abd")
    };
    let out = abdelta(&[&"plan", &flaky(), &"--pubkey", &s.pubkey]);
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("retrying in") && stderr.contains("503"),
        "{stderr}"
    );
    let out = abdelta(&[&"plan", &flaky(), &"--pubkey", &s.pubkey, &"--json"]);
    assert_eq!(out.status.code(), Some(0));
    let event = String::from_utf8_lossy(&out.stderr)
        .lines()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .unwrap();
    assert_eq!(event["event"], "retry");
    assert_eq!(event["attempt"], 2, "the attempt about to be made");
}

/// Ctrl-C stops an apply cleanly (exit 130, saying that what arrived is kept), and the same
/// command then resumes, saying what it kept.
#[test]
fn ctrl_c_stops_cleanly_and_the_same_command_resumes() {
    use abdelta_testkit::{Fault, proxy, serve};
    let s = setup();
    let www = s.dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::copy(&s.bundle, www.join("r2.abd")).unwrap();
    let (addr, _) = proxy(serve(&www), |_| Fault::Throttle(40_000));
    let url = format!("http://{addr}/r2.abd");
    let (state, target) = (s.dir.join("state"), s.dir.join("blank.img"));
    let args = |cmd: &mut Command| {
        cmd.args(["apply", &url, "--pubkey"])
            .arg(&s.pubkey)
            .arg("--state-dir")
            .arg(&state)
            .arg("--target")
            .arg(&target);
    };
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_abdelta"));
    args(&mut cmd);
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    let mut again = Command::new(env!("CARGO_BIN_EXE_abdelta"));
    args(&mut again);
    let text = ok(&again.output().unwrap());
    assert!(text.contains("resumed:"), "{text}");
    assert_eq!(hash(&target), hash(&s.new));
}
