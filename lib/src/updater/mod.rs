//! The station's updater: the whole install transaction as one library call.
//!
//! [`Updater::check`] authenticates a bundle (a URL or a local path), applies the device
//! policy and returns an [`Offer`]: the release, the decision, the slot it would write and
//! the exact bytes it would download. [`Updater::install`] takes only an `Offer`, so nothing
//! skips the policy: it saves the device state, runs the pre-install hook, downloads the
//! planned ranges resumably, rebuilds the other slot from the booted one, reads it back
//! against the signed image hash, runs the post-install hook and switches the next boot to
//! the new slot once. After the reboot, the station's health check calls
//! [`Updater::confirm`] (`abdelta mark-good`) and only then is the install `Installed`; a boot
//! that does not come up confirmed falls back and is reported `InstallationFailed`, and the
//! same release may be installed again (up to `max_boot_failures` times in a row). Events map
//! one to one onto OCPP 2.0.1's firmware statuses ([`FirmwareStatus`]). [`write_image`] is
//! the same path without slots, for a technician writing a partition by hand.
//!
//! The crate root shows an agent's loop; `lib/examples/agent.rs` is a complete agent.

mod boot;
mod config;
mod error;
mod events;
mod hooks;
mod image;
mod pipeline;
mod slots;
mod transfer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub use boot::{
    BootBackend, BootError, BootView, GRUB_ONCE, GRUB_PRIMARY, Grub, NoBoot, UBoot, encode_grubenv,
    parse_grubenv,
};
pub use config::{FetchConfig, Hooks, MAX_BOOT_FAILURES, PolicyConfig, SlotConfig, UpdaterConfig};
pub use error::UpdateError;
pub use events::{Event, FirmwareStatus};
pub use hooks::HookKind;
pub use image::{ImageOutcome, ImageReport, ImageRequest, write_image};
pub use slots::{CMDLINE_KEY, booted_from_cmdline};
pub use transfer::{BundleFile, Download, LOCK_WAIT, download, is_url, lock, stage_dir};

use crate::error::BundleError;
use crate::format::Limits;
use crate::policy::{Decision, DeviceState, SlotState, authorize};
use crate::storage::{FileTarget, SourceImage};
use crate::{ApplyReport, Plan, VerifiedBundle};

/// Asks a running install to stop: checked as bytes arrive and between batches of chunks.
/// Clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// Asks the install to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was asked for.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Per-install choices.
#[derive(Debug, Clone, Default)]
pub struct InstallOptions {
    /// Refuse before downloading any blob when the install would download more than this
    /// (overrides the configuration's `fetch.max_download`).
    pub max_download: Option<u64>,
}

/// What the check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The booted, confirmed slot holds this release: nothing to do.
    UpToDate,
    /// Write the target slot.
    Install,
    /// The target slot already holds this release, written and verified in this boot; the
    /// boot switch is all that is left (a run stopped just before or after it).
    Switch,
}

/// A release the device may install: authenticated, allowed by the device policy, planned
/// against the booted slot. Only [`Updater::check`] makes one, and it holds the update lock
/// until installed or dropped.
pub struct Offer {
    _lock: std::fs::File,
    location: String,
    file: BundleFile,
    bundle: VerifiedBundle,
    state: DeviceState,
    action: Action,
    target: SlotConfig,
    source: SourceImage,
    plan: Option<Plan>,
    download: Download,
}

impl Offer {
    /// The release.
    pub fn release(&self) -> u64 {
        self.bundle.manifest().release_version
    }

    /// What the install will do.
    pub fn action(&self) -> Action {
        self.action
    }

    /// The slot it writes.
    pub fn target(&self) -> &SlotConfig {
        &self.target
    }

    /// The signed bundle.
    pub fn bundle(&self) -> &VerifiedBundle {
        &self.bundle
    }

    /// The plan (none when there is nothing to write).
    pub fn plan(&self) -> Option<&Plan> {
        self.plan.as_ref()
    }

    /// The bytes the install will download, range-merging gaps included.
    pub fn download(&self) -> &Download {
        &self.download
    }

    /// Where the bundle is.
    pub fn location(&self) -> &str {
        &self.location
    }
}

/// How an install ended.
#[derive(Debug)]
pub enum Outcome {
    /// The booted, confirmed slot already holds the release; nothing was downloaded or written.
    UpToDate {
        /// The release.
        release: u64,
    },
    /// The slot is written and verified, and the next boot starts it once: reboot, then
    /// confirm from the new slot.
    Rebooting {
        /// The slot written.
        slot: String,
        /// The release it holds.
        release: u64,
        /// What the install did.
        report: Box<InstallReport>,
    },
}

/// What an install did.
#[derive(Debug, Clone, Default)]
pub struct InstallReport {
    /// The apply (none when only the boot switch was left to do).
    pub apply: Option<ApplyReport>,
    /// The priced download.
    pub download: Download,
    /// Traffic on the wire this run, for a URL.
    pub wire: Option<crate::fetch::FetchStats>,
    /// Bundle bytes fetched beyond the plan: literals of chunks whose copy or patch failed at
    /// apply time, and blobs fetched again after they failed their check (within the budget).
    pub refetched: u64,
}

/// One slot in a [`Status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotStatus {
    /// Its name.
    pub name: String,
    /// Its device.
    pub device: PathBuf,
    /// The release it holds, when known.
    pub release: Option<u64>,
    /// Its state.
    pub state: SlotState,
}

/// The device as the updater sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The booted slot, if the command line names one.
    pub booted: Option<String>,
    /// Every configured slot.
    pub slots: Vec<SlotStatus>,
    /// The firmware status to report now: `InstallRebooting` while a slot is pending,
    /// `InstallationFailed` while the last install's slot is bad, else `Idle`.
    pub firmware: FirmwareStatus,
    /// The release the device runs (booted and confirmed), if known.
    pub installed: Option<u64>,
    /// The slots the boot configuration may start, first choice first (`None` when it could
    /// not be read).
    pub bootable: Option<Vec<String>>,
}

/// What a confirmation or a refusal of the booted slot did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marked {
    /// The booted slot.
    pub slot: String,
    /// The release it holds, when known.
    pub release: Option<u64>,
    /// The status to report: `Installed` when a pending install was confirmed, `Idle` when
    /// the slot was already good, `InstallationFailed` when it was marked bad.
    pub firmware: FirmwareStatus,
    /// After marking bad: the slot the next boot starts instead, if any.
    pub fallback: Option<String>,
}

/// The station's updater. See the module documentation.
pub struct Updater {
    config: UpdaterConfig,
    booted: Option<String>,
    boot_id: String,
    limits: Limits,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Updater {
    /// Validates the configuration and reads the booted slot (from the kernel command line)
    /// and the boot id.
    pub fn new(config: UpdaterConfig) -> Result<Updater, UpdateError> {
        config.validate().map_err(UpdateError::Config)?;
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|e| UpdateError::Io {
                context: format!("reading {}", path.display()),
                source: e,
            })
        };
        let cmdline = read(&config.cmdline)?;
        let booted = booted_from_cmdline(&cmdline).map(str::to_owned);
        if let Some(name) = &booted
            && !config.slots.iter().any(|s| &s.name == name)
        {
            return Err(UpdateError::UnknownSlot(name.clone()));
        }
        let boot_id = read(&config.boot_id)?.trim().to_owned();
        if boot_id.is_empty() || boot_id.len() > crate::policy::MAX_BOOT_ID {
            return Err(UpdateError::Config(format!(
                "{}: not a boot id",
                config.boot_id.display()
            )));
        }
        Ok(Updater {
            config,
            booted,
            boot_id,
            limits: Limits::DEFAULT,
        })
    }

    /// The booted slot, if the kernel command line names one.
    pub fn booted(&self) -> Option<&str> {
        self.booted.as_deref()
    }

    /// The configuration.
    pub fn config(&self) -> &UpdaterConfig {
        &self.config
    }

    fn stage(&self) -> PathBuf {
        stage_dir(&self.config.state_dir)
    }

    fn load_state(&self) -> Result<DeviceState, UpdateError> {
        let mut state = DeviceState::load(&self.config.state_dir).map_err(BundleError::from)?;
        slots::reconcile(&mut state, &self.config.slots, self.booted(), &self.boot_id);
        Ok(state)
    }

    fn save(&self, state: &DeviceState) -> Result<(), UpdateError> {
        state
            .save(&self.config.state_dir)
            .map_err(|e| BundleError::from(e).into())
    }

    fn slot(&self, name: &str) -> Option<&SlotConfig> {
        self.config.slots.iter().find(|s| s.name == name)
    }

    /// The slots, their states and the status to report. Reads only.
    pub fn status(&self) -> Result<Status, UpdateError> {
        let state = self.load_state()?;
        let slots: Vec<SlotStatus> = self
            .config
            .slots
            .iter()
            .map(|s| {
                let record = state.slot(&s.name);
                SlotStatus {
                    name: s.name.clone(),
                    device: s.device.clone(),
                    release: record.and_then(|r| r.release),
                    state: record.map_or(SlotState::Empty, |r| r.state),
                }
            })
            .collect();
        let firmware = if slots.iter().any(|s| s.state == SlotState::Pending) {
            FirmwareStatus::InstallRebooting
        } else if slots.iter().any(|s| s.state == SlotState::Bad) {
            FirmwareStatus::InstallationFailed
        } else {
            FirmwareStatus::Idle
        };
        Ok(Status {
            booted: self.booted.clone(),
            slots,
            firmware,
            installed: state.installed,
            bootable: self.config.boot.view().ok().map(|v| v.bootable),
        })
    }

    /// Authenticates the bundle at `location` (a path or an http(s) URL), applies the device
    /// policy and plans the install against the booted slot. Nothing is written: the state
    /// it updates (highest release seen, time floor, keyset) is saved by the install. The
    /// offer holds the update lock.
    pub fn check(&self, location: &str) -> Result<Offer, UpdateError> {
        let stage = self.stage();
        let lock = lock(&stage, self.config.lock_wait)?;
        let mut state = self.load_state()?;
        let file = BundleFile::open(location, &self.config.fetch, &stage)?;
        let authorized = file.authenticate(&self.limits, |unverified| {
            authorize(
                unverified,
                &self.config.policy,
                &mut state,
                now(),
                &self.limits,
            )
        })?;
        let bundle = authorized.bundle;
        let release = bundle.manifest().release_version;
        let target = slots::choose_target(&state, &self.config.slots, self.booted())
            .ok_or_else(|| UpdateError::Config("no slot other than the booted one".into()))?
            .clone();
        check_device(&target)?;
        let pending_here = state.slot(&target.name).is_some_and(|r| {
            r.state == SlotState::Pending && r.release == Some(release) && r.boot_id == self.boot_id
        });
        if authorized.decision == Decision::Install
            && let Some((failed, failures)) = state.boot_failures
            && failed == release
            && failures >= self.config.max_boot_failures
        {
            return Err(UpdateError::KeepsFailing { release, failures });
        }
        let action = match authorized.decision {
            Decision::UpToDate => Action::UpToDate,
            Decision::Install if pending_here => Action::Switch,
            Decision::Install => Action::Install,
        };
        let source = match (action, self.booted().and_then(|b| self.slot(b))) {
            (Action::Install, Some(booted)) => {
                SourceImage::open(&booted.device).map_err(|e| UpdateError::SlotDevice {
                    slot: booted.name.clone(),
                    device: booted.device.clone(),
                    why: format!("cannot be read as the source: {e}"),
                })?
            }
            _ => SourceImage::empty(),
        };
        let plan = (action == Action::Install).then(|| crate::plan(&bundle, &source));
        let download = plan.as_ref().map_or_else(Download::default, |plan| {
            Download::price(&file, &bundle, plan, &stage, self.config.fetch.range_gap())
        });
        Ok(Offer {
            _lock: lock,
            location: location.to_owned(),
            file,
            bundle,
            state,
            action,
            target,
            source,
            plan,
            download,
        })
    }

    /// Runs the install an [`Offer`] describes. `on_event` gets every status change and
    /// progress; on failure the last event is the failure's status. `cancel` stops the
    /// download (kept for the next run) or the writing (the slot stays empty).
    pub fn install(
        &self,
        offer: Offer,
        options: &InstallOptions,
        cancel: &Cancel,
        on_event: &mut (dyn FnMut(&Event) + Send),
    ) -> Result<Outcome, UpdateError> {
        let result = self.run_install(offer, options, cancel, on_event);
        if let Err(e) = &result {
            on_event(&Event::status(
                e.firmware_status(),
                Some(crate::error::report(e)),
            ));
        }
        result
    }

    fn run_install(
        &self,
        mut offer: Offer,
        options: &InstallOptions,
        cancel: &Cancel,
        on_event: &mut (dyn FnMut(&Event) + Send),
    ) -> Result<Outcome, UpdateError> {
        let release = offer.release();
        // §9.3 step 13: the raised rollback floor and time floor are durable before any
        // payload byte is read.
        self.save(&offer.state)?;
        let slot = offer.target.name.clone();
        match offer.action {
            Action::UpToDate => return Ok(Outcome::UpToDate { release }),
            Action::Switch => {
                if crate::verify::verify_path(offer.bundle.manifest(), &offer.target.device).is_ok()
                {
                    on_event(&Event::status(FirmwareStatus::SignatureVerified, None));
                    self.switch(&mut offer.state, &slot, release)?;
                    on_event(&Event::status(FirmwareStatus::InstallRebooting, None));
                    return Ok(Outcome::Rebooting {
                        slot,
                        release,
                        report: Box::default(),
                    });
                }
                // The slot changed since it verified: write it again.
                offer.action = Action::Install;
                offer.source = match self.booted().and_then(|b| self.slot(b)) {
                    Some(b) => SourceImage::open(&b.device).map_err(|source| UpdateError::Io {
                        context: format!("opening the source {}", b.device.display()),
                        source,
                    })?,
                    None => SourceImage::empty(),
                };
                let plan = crate::plan(&offer.bundle, &offer.source);
                offer.download = Download::price(
                    &offer.file,
                    &offer.bundle,
                    &plan,
                    &self.stage(),
                    self.config.fetch.range_gap(),
                );
                offer.plan = Some(plan);
            }
            Action::Install => {}
        }
        let Some(plan) = offer.plan.take() else {
            return Err(UpdateError::Config("the offer has no plan".into()));
        };
        let budget = options.max_download.or(self.config.fetch.max_download);
        offer.download.check_budget(&offer.file, &plan, budget)?;
        let hook_env = hooks::HookEnv {
            slot: &slot,
            device: &offer.target.device,
            release,
            booted: self.booted(),
        };
        hooks::run(
            HookKind::PreInstall,
            self.config.hooks.pre_install.as_deref(),
            &hook_env,
        )?;
        let stage_path = self.stage();
        let stage = pipeline::stage_with_events(
            &offer.file,
            &offer.bundle,
            &offer.download.ranges,
            &stage_path,
            cancel,
            on_event,
        )?;
        // The header's signature was verified before anything was downloaded, and every
        // downloaded byte is checked against it, chunk by chunk, while installing.
        on_event(&Event::status(FirmwareStatus::SignatureVerified, None));
        on_event(&Event::status(FirmwareStatus::Installing, None));
        // From here the slot holds nothing bootable: recorded first, then no boot may start it.
        *offer.state.slot_mut(&slot) = crate::policy::SlotRecord::empty(&slot);
        self.save(&offer.state)?;
        let fallback = self.fallback(&offer.state, &slot);
        self.config.boot.disable(&slot, fallback.as_deref())?;
        let manifest = offer.bundle.manifest();
        let mut target =
            FileTarget::open_existing(&offer.target.device, manifest.target.size, &offer.source)
                .map_err(|e| UpdateError::SlotDevice {
                    slot: slot.clone(),
                    device: offer.target.device.clone(),
                    why: e.to_string(),
                })?;
        let mut stage = stage;
        let (report, refetched) = pipeline::apply_healing(
            &offer.bundle,
            &offer.file,
            &mut stage,
            &offer.source,
            &mut target,
            &plan,
            (&offer.download, budget),
            cancel,
            on_event,
        )?;
        drop(target);
        // §8 step 14: what the medium returns, against the signed image hash.
        crate::verify::verify_path(manifest, &offer.target.device)?;
        if let Err(refused) = hooks::run(
            HookKind::PostInstall,
            self.config.hooks.post_install.as_deref(),
            &hook_env,
        ) {
            let record = offer.state.slot_mut(&slot);
            record.state = SlotState::Bad;
            record.release = Some(release);
            self.save(&offer.state)?;
            return Err(refused);
        }
        self.switch(&mut offer.state, &slot, release)?;
        if let Some(stage) = stage {
            // A stage left behind is discarded by the next download of another manifest.
            drop(stage.remove());
        }
        on_event(&Event::status(FirmwareStatus::InstallRebooting, None));
        Ok(Outcome::Rebooting {
            slot,
            release,
            report: Box::new(InstallReport {
                apply: Some(report),
                download: offer.download.clone(),
                wire: offer.file.wire(),
                refetched,
            }),
        })
    }

    /// Records `slot` pending (this boot), then points the next boot at it once. A crash in
    /// between leaves a pending slot the boot does not start: reported failed after the next
    /// reboot, or switched by the next install in this boot.
    fn switch(&self, state: &mut DeviceState, slot: &str, release: u64) -> Result<(), UpdateError> {
        let record = state.slot_mut(slot);
        record.state = SlotState::Pending;
        record.release = Some(release);
        record.boot_id = self.boot_id.clone();
        self.save(state)?;
        let fallback = self.fallback(state, slot);
        if let Err(e) = self.config.boot.try_once(slot, fallback.as_deref()) {
            state.slot_mut(slot).state = SlotState::Bad;
            self.save(state)?;
            return Err(e.into());
        }
        Ok(())
    }

    /// The slot the boot returns to while `slot` is written or tried: the booted one, or (in
    /// a rescue system) the good slot with the highest release.
    fn fallback(&self, state: &DeviceState, slot: &str) -> Option<String> {
        match self.booted() {
            Some(b) if b != slot => Some(b.to_owned()),
            _ => self.good_slot_except(state, slot),
        }
    }

    /// The good slot other than `slot` with the highest release.
    fn good_slot_except(&self, state: &DeviceState, slot: &str) -> Option<String> {
        self.config
            .slots
            .iter()
            .filter(|s| s.name != slot)
            .filter_map(|s| state.slot(&s.name).filter(|r| r.state == SlotState::Good))
            .max_by_key(|r| r.release)
            .map(|r| r.name.clone())
    }

    /// Confirms the booted slot (`abdelta mark-good`, run after the station's own health
    /// check): it becomes good and the bootloader's primary. Only the booted slot can be
    /// confirmed.
    pub fn confirm(&self) -> Result<Marked, UpdateError> {
        let _lock = lock(&self.stage(), self.config.lock_wait)?;
        let booted = self.booted.clone().ok_or(UpdateError::NotBooted)?;
        let mut state = self.load_state()?;
        let was = state.slot(&booted).map(|r| r.state);
        self.config.boot.confirm(&booted)?;
        let record = state.slot_mut(&booted);
        record.state = SlotState::Good;
        record.boot_id.clear();
        let release = record.release;
        state.installed = release;
        if state
            .boot_failures
            .is_some_and(|(failed, _)| release.is_some_and(|r| r >= failed))
        {
            state.boot_failures = None;
        }
        self.save(&state)?;
        Ok(Marked {
            slot: booted,
            release,
            firmware: if was == Some(SlotState::Pending) {
                FirmwareStatus::Installed
            } else {
                FirmwareStatus::Idle
            },
            fallback: None,
        })
    }

    /// Marks the booted slot bad (its health check failed): the next boot starts a good
    /// slot instead, if there is one. Reboot afterwards.
    pub fn mark_bad(&self) -> Result<Marked, UpdateError> {
        let _lock = lock(&self.stage(), self.config.lock_wait)?;
        let booted = self.booted.clone().ok_or(UpdateError::NotBooted)?;
        let mut state = self.load_state()?;
        let fallback = self.good_slot_except(&state, &booted);
        self.config.boot.disable(&booted, fallback.as_deref())?;
        let failures = state.boot_failures;
        let record = state.slot_mut(&booted);
        let was_pending = record.state == SlotState::Pending;
        record.state = SlotState::Bad;
        let release = record.release;
        if was_pending && let Some(r) = release {
            state.boot_failures = Some(slots::count_failure(failures, r));
        }
        state.installed = None;
        self.save(&state)?;
        Ok(Marked {
            slot: booted,
            release,
            firmware: FirmwareStatus::InstallationFailed,
            fallback,
        })
    }
}

/// A slot's device must exist and be a block device or a regular file: never created.
fn check_device(slot: &SlotConfig) -> Result<(), UpdateError> {
    let refuse = |why: String| UpdateError::SlotDevice {
        slot: slot.name.clone(),
        device: slot.device.clone(),
        why,
    };
    let meta =
        std::fs::metadata(&slot.device).map_err(|e| refuse(format!("{e}; it is not created")))?;
    use std::os::unix::fs::FileTypeExt;
    if meta.file_type().is_block_device() || meta.is_file() {
        Ok(())
    } else {
        Err(refuse("neither a block device nor a regular file".into()))
    }
}
