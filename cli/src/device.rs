//! The device's configuration from flags and an optional `device.toml` (read by the library),
//! turned into the library's [`Policy`] and [`DeviceState`]; and opening a bundle under it.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use abdelta::PublicKey;
use abdelta::format::Limits;
use abdelta::policy::{Authorized, DeviceState, Policy, authorize};
use abdelta::updater::{BundleFile, FetchConfig, PolicyConfig};
use anyhow::Context;

use crate::location::FetchArgs;

/// Flags that say what the device trusts and is. Flags override the config file.
#[derive(clap::Args, Clone, Default)]
pub struct DeviceArgs {
    /// Trusted release public key (SPKI PEM or OpenSSH `ssh-ed25519` line; repeat for several).
    #[arg(long, value_name = "NAME.pub")]
    pubkey: Vec<PathBuf>,
    /// Trusted root public key that signs keysets (repeat: current and next root).
    #[arg(long, value_name = "ROOT.pub")]
    root_key: Vec<PathBuf>,
    /// This device's hardware-compatibility id: the release must list it.
    #[arg(long, value_name = "ID")]
    hardware_id: Option<String>,
    /// This device's channel: the release must be for it.
    #[arg(long)]
    channel: Option<String>,
    /// Directory of the device state (releases seen, trusted time, keyset, slots) and of the
    /// resumable download stage.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Refuse releases valid for longer than this many days.
    #[arg(long, value_name = "DAYS")]
    max_validity_days: Option<u64>,
    /// Refuse releases that never expire.
    #[arg(long)]
    require_expiry: bool,
    /// Refuse releases created more than this many seconds after trusted time (only for
    /// devices whose clock survives power loss).
    #[arg(long, value_name = "SECONDS")]
    max_clock_skew: Option<u64>,
    /// Device configuration file (device.toml: pubkeys, root_keys, hardware_id, channel,
    /// state_dir, max_validity_days, require_expiry, max_clock_skew, [slots], [boot], [hooks],
    /// [fetch]; see dist/device.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

fn load_keys(paths: &[PathBuf]) -> anyhow::Result<Vec<PublicKey>> {
    paths
        .iter()
        .map(|p| {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            PublicKey::parse(&text).with_context(|| format!("loading {}", p.display()))
        })
        .collect()
}

/// The device's resolved configuration.
pub struct Device {
    /// What it trusts and is.
    pub policy: Policy,
    /// Where its state lives, if anywhere.
    pub state_dir: Option<PathBuf>,
    /// The config file's fetch settings (flags apply over them).
    pub fetch: FetchConfig,
    /// How long to wait for the update lock.
    pub lock_wait: std::time::Duration,
}

impl DeviceArgs {
    /// Whether any key or config was given.
    pub fn is_configured(&self) -> bool {
        !self.pubkey.is_empty() || !self.root_key.is_empty() || self.config.is_some()
    }

    /// Resolves flags and config file into a policy.
    pub fn device(&self) -> anyhow::Result<Device> {
        let config = match &self.config {
            Some(p) => PolicyConfig::load(p)?,
            None => PolicyConfig::default(),
        };
        let mut policy = config.policy;
        if !self.pubkey.is_empty() {
            policy.release_keys = load_keys(&self.pubkey)?;
        }
        if !self.root_key.is_empty() {
            policy.root_keys = load_keys(&self.root_key)?;
        }
        policy.hardware_id = self.hardware_id.clone().or(policy.hardware_id);
        policy.channel = self.channel.clone().or(policy.channel);
        if let Some(days) = self.max_validity_days {
            policy.max_validity = Some(days.saturating_mul(86_400));
        }
        policy.require_expiry |= self.require_expiry;
        policy.max_clock_skew = self.max_clock_skew.or(policy.max_clock_skew);
        if policy.release_keys.is_empty() && policy.root_keys.is_empty() {
            return Err(crate::Usage(
                "no trusted key: pass --pubkey NAME.pub or --root-key ROOT.pub (or set them in --config)"
                    .into(),
            )
            .into());
        }
        Ok(Device {
            policy,
            state_dir: self.state_dir.clone().or(config.state_dir),
            fetch: config.fetch,
            lock_wait: config.lock_wait,
        })
    }
}

/// Seconds since the Unix epoch by the device clock (only ever raises the trusted floor).
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Opens a bundle path or URL and authenticates it under the device's keys and keyset rules
/// (stored and bundled keysets, keyset rollback and expiry, release-key windows), ignoring the
/// release rules (hardware, channel, expiry, rollback): for checking which release a slot
/// holds, whatever its age. The state is read, never saved.
pub fn open_authentic(
    location: &str,
    fetch: &FetchArgs,
    device: &Device,
) -> anyhow::Result<abdelta::VerifiedBundle> {
    let file = crate::location::open(
        location,
        &fetch.config(&device.fetch)?,
        &crate::location::stage_dir(device.state_dir.as_deref()),
    )?;
    let state = match &device.state_dir {
        Some(dir) => DeviceState::load(dir)?,
        None => DeviceState::default(),
    };
    let limits = Limits::DEFAULT;
    let bundle = file
        .authenticate(&limits, |unverified| {
            abdelta::policy::authenticate(unverified, &device.policy, &state, now(), &limits)
        })
        .with_context(|| format!("bundle {location} rejected"))?;
    Ok(bundle)
}

/// A bundle opened under the device's policy.
pub struct Opened {
    /// The bundle file.
    pub file: BundleFile,
    /// The signed, authorised bundle and what to do with it.
    pub authorized: Authorized,
    /// The fetch settings in force.
    pub fetch: FetchConfig,
}

/// Opens a bundle path or URL, authenticates it and checks the device policy. Nothing is
/// saved: `plan` changes nothing (`apply` and `install` save the state in the library).
pub fn open(location: &str, fetch: &FetchArgs, device: &Device) -> anyhow::Result<Opened> {
    let fetch = fetch.config(&device.fetch)?;
    let file = crate::location::open(
        location,
        &fetch,
        &crate::location::stage_dir(device.state_dir.as_deref()),
    )?;
    let mut state = match &device.state_dir {
        Some(dir) => DeviceState::load(dir)?,
        None => DeviceState::default(),
    };
    let limits = Limits::DEFAULT;
    let authorized = file
        .authenticate(&limits, |unverified| {
            authorize(unverified, &device.policy, &mut state, now(), &limits)
        })
        .with_context(|| format!("bundle {location} rejected"))?;
    Ok(Opened {
        file,
        authorized,
        fetch,
    })
}
