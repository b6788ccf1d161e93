//! Switching the next boot between slots, behind one trait: GRUB (the updater writes the
//! `grubenv` block itself), U-Boot (through `fw_setenv`/`fw_printenv`, with a boot counter),
//! or none (a script of the integrator's switches boot, and tests).
//!
//! The protocol, whatever the bootloader: before a slot is written it is [`disable`]d, so no
//! boot can start a half-written slot; once it verified it is tried [`once`]: the next boot
//! starts it, and any boot after that returns to the primary unless it was [`confirm`]ed.
//!
//! [`disable`]: BootBackend::disable
//! [`once`]: BootBackend::try_once
//! [`confirm`]: BootBackend::confirm

use crate::record::write_atomic;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A bootloader could not be read or switched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootError(pub String);

impl std::fmt::Display for BootError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "boot switch: {}", self.0)
    }
}

impl std::error::Error for BootError {}

/// Which slots the boot configuration may start, in the order it tries them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootView {
    /// The slots a boot may start, first choice first.
    pub bootable: Vec<String>,
}

/// A bootloader the updater switches.
pub trait BootBackend: Send + Sync {
    /// The backend's name, for messages (`grub`).
    fn name(&self) -> &'static str;
    /// Before `slot` is written: no boot may start it. `fallback` (the booted slot, if any)
    /// becomes the primary if `slot` was.
    fn disable(&self, slot: &str, fallback: Option<&str>) -> Result<(), BootError>;
    /// `slot` verified: the next boot starts it, once. Later boots return to the primary
    /// (`fallback` becomes the primary if none is set).
    fn try_once(&self, slot: &str, fallback: Option<&str>) -> Result<(), BootError>;
    /// `slot` booted and was confirmed: it becomes the primary.
    fn confirm(&self, slot: &str) -> Result<(), BootError>;
    /// What the boot configuration says now.
    fn view(&self) -> Result<BootView, BootError>;
}

/// No bootloader integration: the integrator's own script switches boot (it can read
/// `abdelta status --json`). Used by tests that exercise only the slots.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoBoot;

impl BootBackend for NoBoot {
    fn name(&self) -> &'static str {
        "none"
    }
    fn disable(&self, _: &str, _: Option<&str>) -> Result<(), BootError> {
        Ok(())
    }
    fn try_once(&self, _: &str, _: Option<&str>) -> Result<(), BootError> {
        Ok(())
    }
    fn confirm(&self, _: &str) -> Result<(), BootError> {
        Ok(())
    }
    fn view(&self) -> Result<BootView, BootError> {
        Ok(BootView::default())
    }
}

/// The GRUB variable naming the confirmed slot.
pub const GRUB_PRIMARY: &str = "abdelta_primary";
/// The GRUB variable naming the slot to boot once (the `grub.cfg` snippet clears it when it
/// boots it).
pub const GRUB_ONCE: &str = "abdelta_once";

/// GRUB: reads and writes the environment block (`grubenv`) directly, atomically (a new file
/// synced, then renamed over the old one), in the format `grub-editenv` and GRUB's `load_env`
/// read. Variables other than abdelta's are kept as they are.
#[derive(Debug, Clone)]
pub struct Grub {
    path: PathBuf,
}

const GRUBENV_LEN: usize = 1024;
const GRUBENV_HEADER: &str = "# GRUB Environment Block\n";

impl Grub {
    /// The block at `path` (created on first write if missing).
    pub fn new(path: PathBuf) -> Grub {
        Grub { path }
    }

    /// The environment's lines (`name=value`, escapes left as they are), or none when the
    /// file does not exist yet.
    pub fn read(&self) -> Result<Vec<(String, String)>, BootError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(BootError(format!("reading {}: {e}", self.path.display()))),
        };
        parse_grubenv(&bytes).ok_or_else(|| {
            BootError(format!(
                "{} is not a GRUB environment block",
                self.path.display()
            ))
        })
    }

    fn get(&self, name: &str) -> Result<Option<String>, BootError> {
        Ok(self
            .read()?
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .filter(|v| !v.is_empty()))
    }

    /// Sets (`Some`) or removes (`None`) variables, keeping every other line.
    fn set(&self, changes: &[(&str, Option<&str>)]) -> Result<(), BootError> {
        let mut vars = self.read()?;
        for (name, value) in changes {
            vars.retain(|(n, _)| n != name);
            if let Some(v) = value {
                vars.push(((*name).to_owned(), (*v).to_owned()));
            }
        }
        let block = encode_grubenv(&vars).ok_or_else(|| {
            BootError(format!(
                "{}: the variables exceed GRUB's 1024-byte block",
                self.path.display()
            ))
        })?;
        write_atomic(&self.path, &block)
            .map_err(|e| BootError(format!("writing {}: {e}", self.path.display())))
    }
}

/// Parses a GRUB environment block: exactly 1024 bytes, the header line, `name=value` lines,
/// `#` padding. `None` for anything else.
pub fn parse_grubenv(bytes: &[u8]) -> Option<Vec<(String, String)>> {
    if bytes.len() != GRUBENV_LEN {
        return None;
    }
    let text = std::str::from_utf8(bytes).ok()?;
    let body = text.strip_prefix(GRUBENV_HEADER)?;
    let mut vars = Vec::new();
    let mut rest = body;
    while let Some(line_end) = rest.find('\n') {
        let (line, tail) = rest.split_at(line_end);
        rest = tail.get(1..)?;
        if line.starts_with('#') {
            // Padding: GRUB fills the rest of the block with '#'.
            break;
        }
        let (name, value) = line.split_once('=')?;
        vars.push((name.to_owned(), value.to_owned()));
    }
    Some(vars)
}

/// Encodes variables as a GRUB environment block, or `None` if they do not fit in 1024 bytes
/// or a name or value would break a line.
pub fn encode_grubenv(vars: &[(String, String)]) -> Option<Vec<u8>> {
    let mut out = GRUBENV_HEADER.as_bytes().to_vec();
    for (name, value) in vars {
        if name.is_empty() || name.contains(['=', '\n']) || value.contains('\n') {
            return None;
        }
        out.extend_from_slice(format!("{name}={value}\n").as_bytes());
    }
    if out.len() > GRUBENV_LEN {
        return None;
    }
    out.resize(GRUBENV_LEN, b'#');
    Some(out)
}

impl BootBackend for Grub {
    fn name(&self) -> &'static str {
        "grub"
    }

    fn disable(&self, slot: &str, fallback: Option<&str>) -> Result<(), BootError> {
        let once = self.get(GRUB_ONCE)?;
        let primary = self.get(GRUB_PRIMARY)?;
        let mut changes: Vec<(&str, Option<&str>)> = Vec::new();
        if once.as_deref() == Some(slot) {
            changes.push((GRUB_ONCE, None));
        }
        if primary.as_deref() == Some(slot) {
            changes.push((GRUB_PRIMARY, fallback.filter(|f| *f != slot)));
        }
        if changes.is_empty() {
            return Ok(());
        }
        self.set(&changes)
    }

    fn try_once(&self, slot: &str, fallback: Option<&str>) -> Result<(), BootError> {
        let primary = self.get(GRUB_PRIMARY)?;
        let primary = primary.as_deref().or(fallback).filter(|p| *p != slot);
        self.set(&[(GRUB_PRIMARY, primary), (GRUB_ONCE, Some(slot))])
    }

    fn confirm(&self, slot: &str) -> Result<(), BootError> {
        self.set(&[(GRUB_PRIMARY, Some(slot)), (GRUB_ONCE, None)])
    }

    fn view(&self) -> Result<BootView, BootError> {
        let mut bootable = Vec::new();
        for name in [GRUB_ONCE, GRUB_PRIMARY] {
            if let Some(v) = self.get(name)?
                && !bootable.contains(&v)
            {
                bootable.push(v);
            }
        }
        Ok(BootView { bootable })
    }
}

/// U-Boot, through `fw_printenv` and `fw_setenv` (libubootenv or u-boot-tools), with the
/// boot-counter scheme the `boot.scr` snippet in `dist/uboot/` implements: `BOOT_ORDER` lists
/// the slots, first choice first, and `BOOT_<slot>_LEFT` counts the attempts left; the script
/// boots the first slot with attempts left and decrements its counter before booting it.
#[derive(Debug, Clone)]
pub struct UBoot {
    /// The `fw_printenv` program.
    pub fw_printenv: PathBuf,
    /// The `fw_setenv` program.
    pub fw_setenv: PathBuf,
    /// An `fw_env.config` other than the tools' default, if any.
    pub config: Option<PathBuf>,
    /// Attempts a confirmed slot gets per boot (RAUC's convention is 3).
    pub attempts: u32,
}

impl UBoot {
    fn command(&self, program: &Path) -> Command {
        let mut c = Command::new(program);
        if let Some(config) = &self.config {
            c.arg("-c").arg(config);
        }
        c
    }

    /// Runs one of the tools; its stdout, or an error naming the call and its stderr.
    fn run(&self, program: &Path, args: &[&str]) -> Result<Vec<u8>, BootError> {
        let call = || format!("{} {}", program.display(), args.join(" "));
        let out = self
            .command(program)
            .args(args)
            .output()
            .map_err(|e| BootError(format!("running {}: {e}", call())))?;
        if !out.status.success() {
            return Err(BootError(format!(
                "{} failed: {}",
                call().trim_end(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(out.stdout)
    }

    fn read(&self) -> Result<Vec<(String, String)>, BootError> {
        let out = self.run(&self.fw_printenv, &[])?;
        Ok(String::from_utf8_lossy(&out)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect())
    }

    fn order(vars: &[(String, String)]) -> Vec<String> {
        vars.iter()
            .find(|(n, _)| n == "BOOT_ORDER")
            .map(|(_, v)| v.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// `BOOT_ORDER` without `slot`, with `fallback` in it (first, if it was missing).
    fn order_without(vars: &[(String, String)], slot: &str, fallback: Option<&str>) -> Vec<String> {
        let mut order: Vec<String> = UBoot::order(vars)
            .into_iter()
            .filter(|s| s != slot)
            .collect();
        if let Some(f) = fallback.filter(|f| *f != slot && !order.iter().any(|s| s == f)) {
            order.insert(0, f.to_owned());
        }
        order
    }

    fn left(vars: &[(String, String)], slot: &str) -> u32 {
        let name = format!("BOOT_{slot}_LEFT");
        vars.iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Sets variables one `fw_setenv NAME VALUE` call each, in the order given (each call
    /// rewrites the environment as a whole; callers order the changes so that every state in
    /// between is safe). One call per variable because the `-s` script formats differ between
    /// libubootenv (`name=value`) and u-boot-tools (`name value`).
    fn set(&self, changes: &[(String, String)]) -> Result<(), BootError> {
        for (name, value) in changes {
            self.run(&self.fw_setenv, &[name, value])?;
        }
        Ok(())
    }
}

impl BootBackend for UBoot {
    fn name(&self) -> &'static str {
        "uboot"
    }

    fn disable(&self, slot: &str, fallback: Option<&str>) -> Result<(), BootError> {
        let vars = self.read()?;
        let mut order = UBoot::order_without(&vars, slot, fallback);
        order.push(slot.to_owned());
        // The fallback gets attempts before the slot loses its own, so that no moment in
        // between leaves nothing bootable.
        let mut changes = Vec::new();
        if let Some(f) = fallback.filter(|f| *f != slot && UBoot::left(&vars, f) == 0) {
            changes.push((format!("BOOT_{f}_LEFT"), self.attempts.to_string()));
        }
        changes.push((format!("BOOT_{slot}_LEFT"), "0".to_owned()));
        changes.push(("BOOT_ORDER".to_owned(), order.join(" ")));
        self.set(&changes)
    }

    fn try_once(&self, slot: &str, fallback: Option<&str>) -> Result<(), BootError> {
        let vars = self.read()?;
        let mut order = UBoot::order_without(&vars, slot, fallback);
        order.insert(0, slot.to_owned());
        self.set(&[
            (format!("BOOT_{slot}_LEFT"), "1".to_owned()),
            ("BOOT_ORDER".to_owned(), order.join(" ")),
        ])
    }

    fn confirm(&self, slot: &str) -> Result<(), BootError> {
        let vars = self.read()?;
        let mut order: Vec<String> = UBoot::order(&vars)
            .into_iter()
            .filter(|s| s != slot)
            .collect();
        order.insert(0, slot.to_owned());
        self.set(&[
            (format!("BOOT_{slot}_LEFT"), self.attempts.to_string()),
            ("BOOT_ORDER".to_owned(), order.join(" ")),
        ])
    }

    fn view(&self) -> Result<BootView, BootError> {
        let vars = self.read()?;
        Ok(BootView {
            bootable: UBoot::order(&vars)
                .into_iter()
                .filter(|s| UBoot::left(&vars, s) > 0)
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grub() -> (tempfile::TempDir, Grub) {
        let dir = tempfile::tempdir().unwrap();
        let grub = Grub::new(dir.path().join("grubenv"));
        (dir, grub)
    }

    fn bootable(b: &dyn BootBackend) -> Vec<String> {
        b.view().unwrap().bootable
    }

    #[test]
    fn grub_disables_a_slot_before_it_is_written_and_tries_it_once_after() {
        let (_dir, g) = grub();
        assert_eq!(
            g.read().unwrap(),
            Vec::new(),
            "no block yet: an empty environment"
        );
        assert_eq!(bootable(&g), Vec::<String>::new());
        g.try_once("B", Some("A")).unwrap();
        assert_eq!(bootable(&g), ["B", "A"]);
        // Writing B again: it leaves the environment, A stays.
        g.disable("B", Some("A")).unwrap();
        assert_eq!(bootable(&g), ["A"]);
        g.try_once("B", Some("A")).unwrap();
        g.confirm("B").unwrap();
        assert_eq!(bootable(&g), ["B"]);
        // The primary itself is written (a rescue system): the fallback takes its place.
        g.disable("B", Some("A")).unwrap();
        assert_eq!(bootable(&g), ["A"]);
        g.disable("A", None).unwrap();
        assert_eq!(bootable(&g), Vec::<String>::new());
        // Disabling a slot the environment does not name changes nothing.
        g.confirm("A").unwrap();
        g.disable("B", Some("A")).unwrap();
        assert_eq!(bootable(&g), ["A"]);
        // Other variables are kept.
        let mut vars = g.read().unwrap();
        vars.push(("saved_entry".into(), "1".into()));
        std::fs::write(&g.path, encode_grubenv(&vars).unwrap()).unwrap();
        g.try_once("B", None).unwrap();
        assert!(
            g.read()
                .unwrap()
                .contains(&("saved_entry".into(), "1".into()))
        );
    }

    #[test]
    fn an_unreadable_or_damaged_grubenv_is_an_error_not_an_empty_one() {
        let dir = tempfile::tempdir().unwrap();
        let g = Grub::new(dir.path().to_path_buf()); // a directory
        assert!(g.read().is_err());
        let path = dir.path().join("grubenv");
        std::fs::write(&path, b"not a block").unwrap();
        let err = Grub::new(path).try_once("B", None).unwrap_err();
        assert!(err.to_string().starts_with("boot switch: "), "{err}");
    }

    /// Stand-ins for `fw_printenv` and `fw_setenv` over a text file, so the U-Boot scheme is
    /// tested wherever the tests run (the real tools are exercised in tests/updater.rs).
    fn uboot(initial: &str) -> (tempfile::TempDir, UBoot) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let env = dir.path().join("env");
        std::fs::write(&env, initial).unwrap();
        let script = |name: &str, body: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, body).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            path
        };
        let env = env.display();
        let fw_printenv = script("fw_printenv", format!("#!/bin/sh\ncat {env}\n"));
        let fw_setenv = script(
            "fw_setenv",
            format!(
                "#!/bin/sh\nn=$1; shift\ngrep -v \"^$n=\" {env} > {env}.new\n[ -n \"$*\" ] && echo \"$n=$*\" >> {env}.new\nmv {env}.new {env}\n"
            ),
        );
        let u = UBoot {
            fw_printenv,
            fw_setenv,
            config: None,
            attempts: 3,
        };
        (dir, u)
    }

    fn vars(u: &UBoot) -> Vec<(String, String)> {
        let mut v = u.read().unwrap();
        v.sort();
        v
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn uboot_counts_attempts_and_never_leaves_nothing_bootable() {
        let (_dir, u) = uboot("BOOT_ORDER=A B\nBOOT_A_LEFT=3\nBOOT_B_LEFT=3\n");
        assert_eq!(bootable(&u), ["A", "B"]);
        u.disable("B", Some("A")).unwrap();
        assert_eq!(
            vars(&u),
            pairs(&[
                ("BOOT_A_LEFT", "3"),
                ("BOOT_B_LEFT", "0"),
                ("BOOT_ORDER", "A B")
            ])
        );
        assert_eq!(bootable(&u), ["A"]);
        u.try_once("B", Some("A")).unwrap();
        assert_eq!(
            vars(&u),
            pairs(&[
                ("BOOT_A_LEFT", "3"),
                ("BOOT_B_LEFT", "1"),
                ("BOOT_ORDER", "B A")
            ])
        );
        u.confirm("B").unwrap();
        assert_eq!(
            vars(&u),
            pairs(&[
                ("BOOT_A_LEFT", "3"),
                ("BOOT_B_LEFT", "3"),
                ("BOOT_ORDER", "B A")
            ])
        );
        // The fallback had no attempts left (it was spent): it gets them back first.
        let (_dir, u) = uboot("BOOT_ORDER=B A\nBOOT_A_LEFT=0\nBOOT_B_LEFT=3\n");
        u.disable("B", Some("A")).unwrap();
        assert_eq!(
            vars(&u),
            pairs(&[
                ("BOOT_A_LEFT", "3"),
                ("BOOT_B_LEFT", "0"),
                ("BOOT_ORDER", "A B")
            ])
        );
        // A fallback missing from the order is put first; a slot with attempts left but not
        // in the order is not bootable.
        let (_dir, u) = uboot("BOOT_ORDER=B\nBOOT_A_LEFT=2\nBOOT_B_LEFT=2\nBOOT_C_LEFT=2\n");
        assert_eq!(bootable(&u), ["B"]);
        u.try_once("B", Some("A")).unwrap();
        assert_eq!(bootable(&u), ["B", "A"]);
        u.disable("B", Some("A")).unwrap();
        assert_eq!(bootable(&u), ["A"]);
    }

    #[test]
    fn grubenv_round_trips_and_refuses_damage() {
        let vars = vec![
            ("saved_entry".to_owned(), "gnulinux".to_owned()),
            (GRUB_PRIMARY.to_owned(), "A".to_owned()),
        ];
        let block = encode_grubenv(&vars).unwrap();
        assert_eq!(block.len(), 1024);
        assert_eq!(parse_grubenv(&block).unwrap(), vars);
        assert!(parse_grubenv(&block[..1023]).is_none());
        let mut bad = block.clone();
        bad[0] = b'x';
        assert!(parse_grubenv(&bad).is_none());
        assert!(encode_grubenv(&[("x".into(), "a\nb".into())]).is_none());
        assert!(encode_grubenv(&[("x".into(), "y".repeat(1000))]).is_none());
        assert!(encode_grubenv(&[("a=b".into(), "c".into())]).is_none());
        assert!(encode_grubenv(&[("a\nb".into(), "c".into())]).is_none());
        assert!(encode_grubenv(&[(String::new(), "c".into())]).is_none());
        // A block the variables fill exactly fits; one byte more does not.
        let fill = 1024 - GRUBENV_HEADER.len() - "x=\n".len();
        assert!(encode_grubenv(&[("x".into(), "y".repeat(fill))]).is_some());
        assert!(encode_grubenv(&[("x".into(), "y".repeat(fill + 1))]).is_none());
    }
}
