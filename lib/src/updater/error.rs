//! Why an updater operation failed, and the OCPP firmware status that reports it.

use std::io;
use std::path::{Path, PathBuf};

use super::{BootError, CMDLINE_KEY, FirmwareStatus, HookKind};
use crate::error::{ApplyError, BundleError, Error, OverBudget, VerifyError};
use crate::fetch::FetchError;

/// Why an updater operation failed; [`UpdateError::firmware_status`] gives the status to
/// report.
#[derive(Debug)]
#[non_exhaustive]
pub enum UpdateError {
    /// The device configuration is invalid (the message names the setting).
    Config(String),
    /// Another update holds the lock at this path.
    Busy(PathBuf),
    /// A local file or device could not be read or written.
    Io {
        /// What was being done.
        context: String,
        /// The operating system's error.
        source: io::Error,
    },
    /// The bundle could not be downloaded; the next run resumes.
    Fetch {
        /// What was being fetched.
        context: String,
        /// Why.
        source: FetchError,
    },
    /// The bundle or the written slot broke a rule: format, signature, device policy, chunk
    /// or image hash, budget.
    Bundle(Error),
    /// The operation needs the booted slot and the kernel command line names none.
    NotBooted,
    /// The kernel command line names a slot the configuration does not have.
    UnknownSlot(String),
    /// A slot's device is missing or not a device or file; nothing is created.
    SlotDevice {
        /// The slot.
        slot: String,
        /// Its device.
        device: PathBuf,
        /// Why it is refused.
        why: String,
    },
    /// The bootloader could not be read or switched.
    Boot(BootError),
    /// A hook refused the install.
    HookRefused {
        /// Which hook.
        hook: HookKind,
        /// Its command.
        command: String,
        /// Its exit status and last line of stderr.
        why: String,
    },
    /// This release failed to come up confirmed too many times in a row on this station; it
    /// is refused until a newer release comes.
    KeepsFailing {
        /// The release.
        release: u64,
        /// Failed boots in a row.
        failures: u64,
    },
    /// The install was cancelled; what was staged is kept for the next run.
    Cancelled {
        /// Whether it was cancelled while downloading (else while writing the slot).
        downloading: bool,
    },
}

impl std::fmt::Display for UpdateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpdateError::Config(why) => write!(f, "device configuration: {why}"),
            UpdateError::Busy(path) => {
                write!(f, "busy: another abdelta update holds {}", path.display())
            }
            UpdateError::Io { context, .. } | UpdateError::Fetch { context, .. } => {
                write!(f, "{context}")
            }
            UpdateError::Bundle(e) => write!(f, "{e}"),
            UpdateError::NotBooted => write!(
                f,
                "no booted slot: the kernel command line has no {CMDLINE_KEY}NAME"
            ),
            UpdateError::UnknownSlot(name) => write!(
                f,
                "unknown slot: the kernel command line names slot {name:?}, which the configuration does not have"
            ),
            UpdateError::SlotDevice { slot, device, why } => {
                write!(f, "slot {slot}: device {}: {why}", device.display())
            }
            UpdateError::Boot(e) => write!(f, "{e}"),
            UpdateError::HookRefused { hook, command, why } => write!(
                f,
                "{} hook refused the install: {command}: {why}",
                hook.name()
            ),
            UpdateError::KeepsFailing { release, failures } => write!(
                f,
                "boot failures: release {release} did not come up confirmed {failures} times in a row; waiting for a newer release"
            ),
            UpdateError::Cancelled { downloading: true } => write!(
                f,
                "cancelled during the download: what arrived is staged, the next install resumes"
            ),
            UpdateError::Cancelled { downloading: false } => write!(
                f,
                "cancelled while writing the slot: it is marked empty and not bootable; the next install rewrites it"
            ),
        }
    }
}

// As for the pipeline's `Error`: a cause is given by `source()`, not repeated in the message.
// A wrapped pipeline error is this error itself (its message is the message), so its own
// cause comes next.
impl std::error::Error for UpdateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            UpdateError::Io { source, .. } => Some(source),
            UpdateError::Fetch { source, .. } => Some(source),
            UpdateError::Bundle(e) => std::error::Error::source(e),
            _ => None,
        }
    }
}

impl From<Error> for UpdateError {
    fn from(e: Error) -> Self {
        UpdateError::Bundle(e)
    }
}

impl From<BundleError> for UpdateError {
    fn from(e: BundleError) -> Self {
        UpdateError::Bundle(e.into())
    }
}

impl From<OverBudget> for UpdateError {
    fn from(e: OverBudget) -> Self {
        UpdateError::Bundle(e.into())
    }
}

impl From<ApplyError> for UpdateError {
    fn from(e: ApplyError) -> Self {
        UpdateError::Bundle(e.into())
    }
}

impl From<VerifyError> for UpdateError {
    fn from(e: VerifyError) -> Self {
        UpdateError::Bundle(e.into())
    }
}

impl From<BootError> for UpdateError {
    fn from(e: BootError) -> Self {
        UpdateError::Boot(e)
    }
}

impl UpdateError {
    /// The OCPP firmware status that reports this failure.
    pub fn firmware_status(&self) -> FirmwareStatus {
        match self {
            UpdateError::Fetch { .. } | UpdateError::Cancelled { downloading: true } => {
                if matches!(self, UpdateError::Cancelled { .. }) {
                    FirmwareStatus::DownloadPaused
                } else {
                    FirmwareStatus::DownloadFailed
                }
            }
            UpdateError::Bundle(e) => match e {
                Error::Bundle(
                    BundleError::Sign(_)
                    | BundleError::Format(_)
                    | BundleError::BundleLength { .. }
                    | BundleError::PayloadLengthMismatch,
                ) => FirmwareStatus::InvalidSignature,
                Error::Verify(VerifyError::Io(_)) => FirmwareStatus::InstallationFailed,
                Error::Apply(ApplyError::TargetHashMismatch { .. }) | Error::Verify(_) => {
                    FirmwareStatus::InstallVerificationFailed
                }
                Error::OverBudget(_) => FirmwareStatus::DownloadFailed,
                _ => FirmwareStatus::InstallationFailed,
            },
            _ => FirmwareStatus::InstallationFailed,
        }
    }

    /// Maps a download failure: the transport's own error when there is one.
    pub(crate) fn from_download(e: io::Error, dir: &Path) -> UpdateError {
        let context = format!("downloading into {}", dir.display());
        match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<FetchError>())
        {
            Some(fetch) => UpdateError::Fetch {
                context,
                source: fetch.clone(),
            },
            None => UpdateError::Fetch {
                context,
                source: FetchError::Local(e.to_string()),
            },
        }
    }
}
