//! `abdelta demo`: the whole path on a built-in sample. Builds two releases of an ext4 root
//! filesystem from deterministic package trees (binaries whose code and call addresses move
//! between versions, changelogs, configs, an application tree; packages bumped, added and
//! removed), then runs keygen, diff, plan, apply and verify through this same binary and prints
//! what each step cost.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};

use crate::ui::human;

/// Flags of `abdelta demo`.
#[derive(clap::Args)]
pub struct Args {
    /// Working directory (trees, images, keys, bundle).
    #[arg(long, default_value = "target/abdelta-demo")]
    dir: PathBuf,
    /// Size of each ext4 image in MiB (at least 16; the file trees fill about half).
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u64).range(16..=65536))]
    image_mib: u64,
    /// Skip the zstd reference compression.
    #[arg(long)]
    no_peers: bool,
}

/// SplitMix64: deterministic bytes from a seed.
struct Rng(u64);

impl Rng {
    fn seeded(parts: &[&str]) -> Rng {
        let mut seed = 0xcbf2_9ce4_8422_2325u64;
        for part in parts {
            for b in part.bytes().chain([0xff]) {
                seed = (seed ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
            }
        }
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<'a>(&mut self, items: &'a [&'a str]) -> &'a str {
        items
            .get(self.below(items.len() as u64) as usize)
            .copied()
            .unwrap_or("")
    }
}

/// One instruction of a synthetic binary: an opcode template and, for calls and jumps, the
/// index of the instruction it targets (rendered as that instruction's address, so code that
/// moves changes the immediates that point at it, as relinking does).
#[derive(Clone, Copy)]
struct Insn {
    opcode: u8,
    target: Option<u32>,
    imm: u32,
}

const OPCODES: [&[u8]; 16] = [
    b"\x55",
    b"\x48\x89\xe5",
    b"\x48\x83\xec",
    b"\xc3",
    b"\x48\x8b\x45",
    b"\x89\x7d",
    b"\xe8",
    b"\xe9",
    b"\x0f\x84",
    b"\x31\xc0",
    b"\x48\x8d\x3d",
    b"\x83\xf8",
    b"\x74",
    b"\x75",
    b"\x90",
    b"\x48\xc7\xc0",
];

fn insn_len(i: &Insn) -> u32 {
    let op = OPCODES
        .get(usize::from(i.opcode))
        .map_or(1, |o| o.len() as u32);
    op + if i.target.is_some() || i.opcode.is_multiple_of(3) {
        4
    } else {
        1
    }
}

fn binary(name: &str, version: u32, size: u64) -> Vec<u8> {
    let mut rng = Rng::seeded(&[name, "code"]);
    let count = (size / 4) as u32;
    let mut insns: Vec<Insn> = (0..count)
        .map(|_| {
            let opcode = rng.below(16) as u8;
            let target = (opcode == 6 || opcode == 7).then(|| rng.below(u64::from(count)) as u32);
            Insn {
                opcode,
                target,
                imm: rng.below(64) as u32,
            }
        })
        .collect();
    // Each later version edits the previous one: insertions, deletions and changed constants.
    for v in 2..=version {
        let mut edit = Rng::seeded(&[name, "edit", &v.to_string()]);
        for _ in 0..(count / 2000).max(3) {
            let at = edit.below(insns.len() as u64) as usize;
            match edit.below(3) {
                0 => {
                    let new: Vec<Insn> = (0..edit.below(40) + 1)
                        .map(|_| Insn {
                            opcode: edit.below(16) as u8,
                            target: None,
                            imm: edit.below(64) as u32,
                        })
                        .collect();
                    insns.splice(at..at, new);
                }
                1 => {
                    let end = (at + edit.below(30) as usize + 1).min(insns.len());
                    insns.drain(at..end);
                }
                _ => {
                    if let Some(i) = insns.get_mut(at) {
                        i.imm = edit.below(1 << 20) as u32;
                    }
                }
            }
        }
    }
    let mut addresses = Vec::with_capacity(insns.len());
    let mut at = 0x1000u32;
    for i in &insns {
        addresses.push(at);
        at += insn_len(i);
    }
    let mut out = b"\x7fELF\x02\x01\x01\0".to_vec();
    out.extend_from_slice(format!("{name} {version}\0").as_bytes());
    for i in &insns {
        out.extend_from_slice(
            OPCODES
                .get(usize::from(i.opcode))
                .copied()
                .unwrap_or(b"\x90"),
        );
        if let Some(t) = i.target {
            let addr = addresses.get(t as usize).copied().unwrap_or(0);
            out.extend_from_slice(&addr.to_le_bytes());
        } else if i.opcode % 3 == 0 {
            out.extend_from_slice(&i.imm.to_le_bytes());
        } else {
            out.push(i.imm as u8);
        }
    }
    out
}

const WORDS: &[&str] = &[
    "charger",
    "station",
    "session",
    "meter",
    "voltage",
    "current",
    "phase",
    "relay",
    "contactor",
    "firmware",
    "update",
    "fixed",
    "added",
    "removed",
    "security",
    "timeout",
    "ocpp",
    "websocket",
    "retry",
    "backoff",
    "certificate",
    "tls",
    "modem",
    "signal",
    "error",
    "warning",
    "the",
    "a",
    "when",
    "on",
    "in",
    "for",
    "with",
];

fn text(rng: &mut Rng, words: usize) -> String {
    let mut s = String::new();
    for i in 0..words {
        s.push_str(rng.pick(WORDS));
        s.push(if i % 12 == 11 { '\n' } else { ' ' });
    }
    s
}

fn changelog(name: &str, version: u32) -> String {
    let mut s = String::new();
    for v in (1..=version).rev() {
        let mut rng = Rng::seeded(&[name, "changelog", &v.to_string()]);
        let words = 40 + rng.below(200) as usize;
        s.push_str(&format!(
            "{name} (1.{v}.0) stable; urgency=medium\n\n  * {}\n\n",
            text(&mut rng, words)
        ));
    }
    s
}

fn config(name: &str, version: u32) -> String {
    let mut rng = Rng::seeded(&[name, "config"]);
    let mut s = format!("# {name} configuration, package version 1.{version}.0\n");
    for i in 0..20 + rng.below(60) {
        s.push_str(&format!(
            "{}_{i} = {}\n",
            rng.pick(WORDS),
            rng.below(10_000)
        ));
    }
    s
}

fn package_name(i: u32) -> String {
    const SYL: [&str; 12] = [
        "lib", "ev", "core", "net", "ssl", "ocpp", "mod", "util", "power", "gui", "log", "db",
    ];
    let a = SYL.get((i % 12) as usize).copied().unwrap_or("x");
    let b = SYL.get(((i / 12) % 12) as usize).copied().unwrap_or("y");
    format!("{a}{b}{i}")
}

/// Package versions of a release: (name, version, binary size). About one package per MiB of
/// image keeps the trees at roughly half the image.
fn release(number: u32, count: u32) -> Vec<(String, u32, u64)> {
    let mut packages = Vec::new();
    for i in 0..count {
        let name = package_name(i);
        let mut rng = Rng::seeded(&[&name, "meta"]);
        let size = 20_000 + rng.below(600_000) + if i % 17 == 0 { 2_000_000 } else { 0 };
        let bumped = rng.below(100) < 20;
        let version = if number >= 2 && bumped { 2 } else { 1 };
        if number >= 2 && i == count / 4 {
            continue; // removed in release 2
        }
        if number < 2 && i + 2 >= count {
            continue; // added in release 2
        }
        packages.push((name, version, size));
    }
    packages
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

fn build_tree(root: &Path, number: u32, packages: u32) -> anyhow::Result<()> {
    if root.exists() {
        fs::remove_dir_all(root)?;
    }
    for (name, version, size) in release(number, packages) {
        write(
            &root.join(format!("usr/lib/{name}/lib{name}.so.1")),
            &binary(&name, version, size),
        )?;
        write(
            &root.join(format!("usr/share/doc/{name}/changelog")),
            changelog(&name, version).as_bytes(),
        )?;
        write(
            &root.join(format!("etc/{name}/{name}.conf")),
            config(&name, version).as_bytes(),
        )?;
    }
    // The station application: 60 modules, a third rewritten in release 2.
    for m in 0..60u32 {
        let edited = number >= 2 && m % 3 == 0;
        let mut rng = Rng::seeded(&["app", &m.to_string()]);
        let mut body = text(&mut rng, 2000);
        if edited {
            let mut edit = Rng::seeded(&["app-edit", &m.to_string()]);
            body.insert_str(body.len() / 2, &text(&mut edit, 300));
        }
        write(
            &root.join(format!("opt/station/app/module{m}.py")),
            body.as_bytes(),
        )?;
    }
    write(
        &root.join("etc/os-release"),
        format!("NAME=StationOS\nVERSION_ID=1.{number}\n").as_bytes(),
    )?;
    // Fixed timestamps so the images do not depend on when the demo ran.
    let fixed = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    for entry in walk(root)? {
        let f = fs::File::open(&entry)?;
        f.set_times(fs::FileTimes::new().set_accessed(fixed).set_modified(fixed))?;
    }
    Ok(())
}

fn walk(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<PathBuf> = fs::read_dir(&dir)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for e in entries {
            if e.is_dir() {
                stack.push(e.clone());
            }
            out.push(e);
        }
    }
    // Children before parents, so setting a file's times does not disturb its directory's.
    out.reverse();
    out.push(root.to_path_buf());
    Ok(out)
}

fn mkfs(tree: &Path, image: &Path, mib: u64) -> anyhow::Result<()> {
    let _ = fs::remove_file(image);
    let status = Command::new("mkfs.ext4")
        .env("E2FSPROGS_FAKE_TIME", "1700000000")
        .args(["-q", "-F", "-b", "4096", "-L", "rootfs", "-U", "5e1f1c2a-7d3b-4c55-9a10-0123456789ab"])
        .args(["-E", "hash_seed=0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0,root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0,nodiscard"])
        .arg("-d")
        .arg(tree)
        .arg(image)
        .arg(format!("{mib}M"))
        .stdout(std::process::Stdio::null())
        .status()
        .context("running mkfs.ext4 (install e2fsprogs: apt-get install e2fsprogs)")?;
    if !status.success() {
        bail!("mkfs.ext4 failed for {}", image.display());
    }
    Ok(())
}

fn run_self(args: &[&dyn AsRef<std::ffi::OsStr>]) -> anyhow::Result<(serde_json::Value, Duration)> {
    let exe = std::env::current_exe()?;
    let started = Instant::now();
    let name = args
        .first()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .unwrap_or_default();
    // A heartbeat on stderr while a long step (the diff takes minutes on two cores) runs.
    let (done, waiting) = std::sync::mpsc::channel::<()>();
    let heartbeat = std::thread::spawn(move || {
        let mut beats = 0u64;
        while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
            waiting.recv_timeout(Duration::from_secs(10))
        {
            beats += 1;
            eprintln!("  {name}: still running, {} s", beats * 10);
        }
    });
    let out = Command::new(exe)
        .args(args.iter().map(|a| a.as_ref()))
        .output();
    drop(done);
    let _ = heartbeat.join();
    let out = out?;
    let elapsed = started.elapsed();
    if !out.status.success() {
        bail!(
            "abdelta {:?} failed: {}",
            args.first().map(|a| a.as_ref()),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    Ok((json, elapsed))
}

fn num(v: &serde_json::Value, key: &str) -> u64 {
    v.get(key).and_then(serde_json::Value::as_u64).unwrap_or(0)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let dir = &args.dir;
    fs::create_dir_all(dir)?;
    eprintln!(
        "building release 1 and release 2 ext4 images ({} MiB each) in {}",
        args.image_mib,
        dir.display()
    );
    let (tree_a, tree_b) = (dir.join("tree-1"), dir.join("tree-2"));
    let (img_a, img_b, img_new) = (
        dir.join("release-1.img"),
        dir.join("release-2.img"),
        dir.join("rebuilt.img"),
    );
    let packages = u32::try_from(args.image_mib).unwrap_or(u32::MAX).max(8);
    build_tree(&tree_a, 1, packages)?;
    build_tree(&tree_b, 2, packages)?;
    mkfs(&tree_a, &img_a, args.image_mib)?;
    mkfs(&tree_b, &img_b, args.image_mib)?;
    let key = dir.join("release");
    let bundle = dir.join("release-2.abd");
    let pubkey = key.with_extension("pub");
    run_self(&[&"keygen", &"-o", &key, &"--force"])?;
    eprintln!("diff (zstd -19 literals, LZMA2 patch groups, both cores)");
    let (d, diff_time) = run_self(&[
        &"diff",
        &"--from",
        &img_a,
        &"--to",
        &img_b,
        &"--key",
        &key.with_extension("key"),
        &"--release-version",
        &"2",
        &"--compat",
        &"demo-station-rev1",
        &"-o",
        &bundle,
        &"--json",
    ])?;
    let (blank, _) = run_self(&[&"plan", &bundle, &"--pubkey", &pubkey, &"--json"])?;
    let _ = fs::remove_file(&img_new);
    // A fresh device: no release installed yet.
    let state = dir.join("device-state");
    let _ = fs::remove_dir_all(&state);
    eprintln!("apply release 2 onto a new image from release 1");
    let (a, apply_time) = run_self(&[
        &"apply",
        &bundle,
        &"--source",
        &img_a,
        &"--target",
        &img_new,
        &"--pubkey",
        &pubkey,
        &"--hardware-id",
        &"demo-station-rev1",
        &"--state-dir",
        &state,
        &"--json",
    ])?;
    let (_, verify_time) = run_self(&[
        &"verify",
        &bundle,
        &"--target",
        &img_new,
        &"--pubkey",
        &pubkey,
        &"--json",
    ])?;
    if fs::read(&img_new)? != fs::read(&img_b)? {
        bail!("rebuilt image differs from release 2");
    }
    let zstd = if args.no_peers {
        None
    } else {
        zstd_size(&img_b)
    };
    let image = args.image_mib << 20;
    let row = |name: &str, value: String| println!("| {name:<44} | {value:>22} |");
    println!();
    println!(
        "| {:<44} | {:>22} |",
        "abdelta demo: release 1 -> release 2", ""
    );
    println!("|{}|{}|", "-".repeat(46), "-".repeat(24));
    row("image size", human(image));
    if let Some(z) = zstd {
        row("full image, zstd -19 --long=27", human(z));
    }
    row(
        "full path: blank device reads",
        human(num(&blank, "download_bytes")),
    );
    row(
        "bundle file (deltas + literals)",
        human(num(&d, "bundle_bytes")),
    );
    row(
        "delta path: device with release 1 reads",
        human(num(&a, "bundle_bytes_read")),
    );
    let plan = a.get("plan").cloned().unwrap_or_default();
    row(
        "chunks: copy / zero / patch / literal",
        format!(
            "{} / {} / {} / {}",
            num(&plan, "copy"),
            num(&plan, "zero"),
            num(&plan, "patch"),
            num(&plan, "literal")
        ),
    );
    row("diff time", format!("{:.1} s", diff_time.as_secs_f64()));
    row(
        "apply time (incl. read-back verify)",
        format!("{:.2} s", apply_time.as_secs_f64()),
    );
    row("diff peak memory (RSS)", human(num(&d, "peak_rss_bytes")));
    row("apply peak RSS", human(num(&a, "peak_rss_bytes")));
    row(
        "apply anonymous memory at the end",
        human(num(&a, "rss_anon_bytes")),
    );
    row("verify time", format!("{:.2} s", verify_time.as_secs_f64()));
    println!(
        "\nrebuilt image {} is byte-identical to {}",
        img_new.display(),
        img_b.display()
    );
    Ok(())
}

fn zstd_size(image: &Path) -> Option<u64> {
    let out = Command::new("zstd")
        .args(["-19", "--long=27", "-T0", "-c", "-q"])
        .arg(image)
        .output()
        .ok()?;
    out.status.success().then_some(out.stdout.len() as u64)
}
