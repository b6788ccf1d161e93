//! The device configuration: what the station trusts and is (the policy), where its state
//! lives, its slots, how it switches boot, its install hooks and how it fetches. Read from a
//! `device.toml` ([`UpdaterConfig::load`]) or built by an agent in code.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::UpdateError;
use super::boot::{BootBackend, Grub, NoBoot, UBoot};
use crate::PublicKey;
use crate::fetch::HttpOptions;
use crate::policy::{MAX_SLOT_NAME, MAX_SLOTS, Policy};

/// One A/B slot: a name (what `abdelta.slot=NAME` on the kernel command line says) and the
/// partition or image file that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotConfig {
    /// The slot's name (`A`, `B`).
    pub name: String,
    /// Its block device or image file. Never created: it must exist.
    pub device: PathBuf,
}

/// How the updater fetches bundles given by URL.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// Deadlines, retries, private CA, rate limit.
    pub http: HttpOptions,
    /// Link round-trip time, for merging neighbouring ranges.
    pub rtt_ms: u64,
    /// Link bandwidth in bytes per second, for merging neighbouring ranges.
    pub bandwidth: u64,
    /// Refuse an install that would download more than this many bytes (gaps that range
    /// merging adds included), before any blob is fetched.
    pub max_download: Option<u64>,
}

impl Default for FetchConfig {
    /// A 3G-like link: 600 ms round trips at 32 kB/s.
    fn default() -> Self {
        FetchConfig {
            http: HttpOptions::default(),
            rtt_ms: 600,
            bandwidth: 32_000,
            max_download: None,
        }
    }
}

impl FetchConfig {
    /// The gap between two ranges worth downloading rather than paying another round trip.
    pub fn range_gap(&self) -> u64 {
        crate::fetch::ranges::gap_for_link(self.rtt_ms, self.bandwidth)
    }
}

/// Commands run around an install. Each is a program and its arguments (no shell); a non-zero
/// exit refuses the install. They see `ABDELTA_SLOT`, `ABDELTA_DEVICE`, `ABDELTA_RELEASE` and
/// `ABDELTA_BOOTED` in their environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hooks {
    /// Before the download and before the target is opened: a refusal leaves the target and
    /// the boot configuration untouched.
    pub pre_install: Option<Vec<String>>,
    /// After the target verified by read-back, before the boot switch: a refusal leaves the
    /// boot unswitched.
    pub post_install: Option<Vec<String>>,
}

/// Everything the updater needs to know about the station.
pub struct UpdaterConfig {
    /// What the station trusts and is.
    pub policy: Policy,
    /// Where the device state, the download stage and the update lock live.
    pub state_dir: PathBuf,
    /// The A/B slots (two or more, at most [`MAX_SLOTS`]).
    pub slots: Vec<SlotConfig>,
    /// How the next boot is switched.
    pub boot: Box<dyn BootBackend>,
    /// Where the kernel command line is read (`/proc/cmdline`); `abdelta.slot=NAME` names the
    /// booted slot.
    pub cmdline: PathBuf,
    /// Where this boot's id is read (`/proc/sys/kernel/random/boot_id`): a pending slot that a
    /// later boot did not start was fallen back from.
    pub boot_id: PathBuf,
    /// Install hooks.
    pub hooks: Hooks,
    /// Fetching.
    pub fetch: FetchConfig,
    /// How long an operation waits for the update lock before it is refused as busy.
    pub lock_wait: std::time::Duration,
    /// Times in a row a release may fail to come up confirmed before it is refused (until a
    /// newer one comes): a release that cannot boot on this station is not retried in a loop.
    pub max_boot_failures: u64,
}

/// The default of [`UpdaterConfig::max_boot_failures`].
pub const MAX_BOOT_FAILURES: u64 = 3;

/// `device.toml`, as written by integrators (every key optional but `pubkeys` or `root_keys`).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    pubkeys: Vec<PathBuf>,
    #[serde(default)]
    root_keys: Vec<PathBuf>,
    hardware_id: Option<String>,
    channel: Option<String>,
    state_dir: Option<PathBuf>,
    max_validity_days: Option<u64>,
    #[serde(default)]
    require_expiry: bool,
    max_clock_skew: Option<u64>,
    #[serde(default)]
    slots: std::collections::BTreeMap<String, SlotFile>,
    boot: Option<BootFile>,
    #[serde(default)]
    hooks: HooksFile,
    #[serde(default)]
    fetch: FetchFile,
    lock_wait_seconds: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SlotFile {
    device: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BootFile {
    backend: String,
    grubenv: Option<PathBuf>,
    cmdline: Option<PathBuf>,
    boot_id: Option<PathBuf>,
    fw_printenv: Option<PathBuf>,
    fw_setenv: Option<PathBuf>,
    fw_config: Option<PathBuf>,
    attempts: Option<u32>,
    max_failures: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HooksFile {
    pre_install: Option<Vec<String>>,
    post_install: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FetchFile {
    ca_cert: Option<PathBuf>,
    rate_limit: Option<u64>,
    rtt_ms: Option<u64>,
    bandwidth: Option<u64>,
    max_download: Option<u64>,
    #[serde(default)]
    follow_other_hosts: bool,
    deadline_seconds: Option<u64>,
}

/// The device-side settings of `device.toml` that make a [`Policy`], for commands that need
/// no slots (`plan`, `apply`, `verify` by hand).
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// The policy.
    pub policy: Policy,
    /// The state directory, if configured.
    pub state_dir: Option<PathBuf>,
    /// Fetch settings.
    pub fetch: FetchConfig,
    /// How long to wait for the update lock.
    pub lock_wait: std::time::Duration,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            policy: Policy::default(),
            state_dir: None,
            fetch: FetchConfig::default(),
            lock_wait: super::LOCK_WAIT,
        }
    }
}

fn config_error(path: &Path, why: impl std::fmt::Display) -> UpdateError {
    UpdateError::Config(format!("{}: {why}", path.display()))
}

/// Resolves `p` against the directory of the configuration file.
fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_owned()
    } else {
        base.join(p)
    }
}

fn load_keys(base: &Path, paths: &[PathBuf]) -> Result<Vec<PublicKey>, UpdateError> {
    paths
        .iter()
        .map(|p| {
            let p = resolve(base, p);
            let text = std::fs::read_to_string(&p).map_err(|e| config_error(&p, e))?;
            PublicKey::parse(&text).map_err(|e| config_error(&p, e))
        })
        .collect()
}

fn read_file(path: &Path) -> Result<(File, PathBuf), UpdateError> {
    let text = std::fs::read_to_string(path).map_err(|e| config_error(path, e))?;
    let file: File = toml::from_str(&text).map_err(|e| config_error(path, e))?;
    let base = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    Ok((file, base))
}

impl PolicyConfig {
    /// Reads the policy part of a `device.toml`; its slots and boot settings are ignored here.
    /// Relative paths are resolved against the file's directory.
    pub fn load(path: &Path) -> Result<PolicyConfig, UpdateError> {
        let (file, base) = read_file(path)?;
        PolicyConfig::from_file(&file, &base, path)
    }

    fn from_file(file: &File, base: &Path, path: &Path) -> Result<PolicyConfig, UpdateError> {
        let policy = Policy {
            release_keys: load_keys(base, &file.pubkeys)?,
            root_keys: load_keys(base, &file.root_keys)?,
            hardware_id: file.hardware_id.clone(),
            channel: file.channel.clone(),
            max_validity: file.max_validity_days.map(|d| d.saturating_mul(86_400)),
            require_expiry: file.require_expiry,
            max_clock_skew: file.max_clock_skew,
        };
        let mut fetch = FetchConfig::default();
        let f = &file.fetch;
        if let Some(ca) = &f.ca_cert {
            let ca = resolve(base, ca);
            fetch.http.ca_certs_pem = Some(std::fs::read(&ca).map_err(|e| config_error(&ca, e))?);
        }
        fetch.http.rate_limit = f.rate_limit;
        fetch.rtt_ms = f.rtt_ms.unwrap_or(fetch.rtt_ms);
        fetch.bandwidth = f.bandwidth.unwrap_or(fetch.bandwidth);
        fetch.max_download = f.max_download;
        fetch.http.follow_other_hosts = f.follow_other_hosts;
        fetch.http.deadline = f.deadline_seconds.map(std::time::Duration::from_secs);
        if fetch.bandwidth == 0 {
            return Err(config_error(path, "fetch.bandwidth must be above 0"));
        }
        Ok(PolicyConfig {
            policy,
            state_dir: file.state_dir.as_ref().map(|d| resolve(base, d)),
            fetch,
            lock_wait: file
                .lock_wait_seconds
                .map_or(super::LOCK_WAIT, std::time::Duration::from_secs),
        })
    }
}

impl UpdaterConfig {
    /// Reads a `device.toml`: today's policy keys plus `[slots.NAME] device`, `[boot]`,
    /// `[hooks]` and `[fetch]`. Relative paths are resolved against the file's directory.
    pub fn load(path: &Path) -> Result<UpdaterConfig, UpdateError> {
        let (file, base) = read_file(path)?;
        let policy = PolicyConfig::from_file(&file, &base, path)?;
        let state_dir = policy
            .state_dir
            .ok_or_else(|| config_error(path, "state_dir is required for slot updates"))?;
        let slots = file
            .slots
            .iter()
            .map(|(name, s)| SlotConfig {
                name: name.clone(),
                device: resolve(&base, &s.device),
            })
            .collect();
        let boot_file = file
            .boot
            .as_ref()
            .ok_or_else(|| config_error(path, "[boot] is required for slot updates"))?;
        let opt = |p: &Option<PathBuf>| p.as_ref().map(|p| resolve(&base, p));
        let boot: Box<dyn BootBackend> = match boot_file.backend.as_str() {
            "grub" => Box::new(Grub::new(opt(&boot_file.grubenv).ok_or_else(|| {
                config_error(path, "boot.grubenv is required with backend \"grub\"")
            })?)),
            "uboot" => Box::new(UBoot {
                fw_printenv: opt(&boot_file.fw_printenv)
                    .unwrap_or_else(|| PathBuf::from("fw_printenv")),
                fw_setenv: opt(&boot_file.fw_setenv).unwrap_or_else(|| PathBuf::from("fw_setenv")),
                config: opt(&boot_file.fw_config),
                attempts: boot_file.attempts.unwrap_or(3),
            }),
            "none" => Box::new(NoBoot),
            other => {
                return Err(config_error(
                    path,
                    format!("boot.backend {other:?}: expected \"grub\", \"uboot\" or \"none\""),
                ));
            }
        };
        let config = UpdaterConfig {
            policy: policy.policy,
            state_dir,
            slots,
            boot,
            cmdline: opt(&boot_file.cmdline).unwrap_or_else(|| PathBuf::from("/proc/cmdline")),
            boot_id: opt(&boot_file.boot_id)
                .unwrap_or_else(|| PathBuf::from("/proc/sys/kernel/random/boot_id")),
            hooks: Hooks {
                pre_install: file.hooks.pre_install.clone(),
                post_install: file.hooks.post_install.clone(),
            },
            fetch: policy.fetch,
            lock_wait: policy.lock_wait,
            max_boot_failures: boot_file.max_failures.unwrap_or(MAX_BOOT_FAILURES),
        };
        config.validate().map_err(|e| config_error(path, e))?;
        Ok(config)
    }

    /// Checks what the types cannot: two to [`MAX_SLOTS`] uniquely named slots on distinct
    /// devices, names the kernel command line and the bootloader can carry, and a trusted key.
    pub fn validate(&self) -> Result<(), String> {
        if self.slots.len() < 2 || self.slots.len() > MAX_SLOTS {
            return Err(format!(
                "{} slots configured: an A/B device needs 2 to {MAX_SLOTS}",
                self.slots.len()
            ));
        }
        for (i, slot) in self.slots.iter().enumerate() {
            let name_ok = !slot.name.is_empty()
                && slot.name.len() <= MAX_SLOT_NAME
                && slot
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !name_ok {
                return Err(format!(
                    "slot name {:?}: use 1 to {MAX_SLOT_NAME} letters, digits, '_' or '-'",
                    slot.name
                ));
            }
            let later = self.slots.iter().skip(i + 1);
            for other in later {
                if other.name == slot.name || other.device == slot.device {
                    return Err(format!(
                        "slots {} and {} must differ in name and device",
                        slot.name, other.name
                    ));
                }
            }
        }
        if self.policy.release_keys.is_empty() && self.policy.root_keys.is_empty() {
            return Err("no trusted key: set pubkeys or root_keys".into());
        }
        if self.max_boot_failures == 0 {
            return Err("boot.max_failures must be at least 1".into());
        }
        Ok(())
    }
}
