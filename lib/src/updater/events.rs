//! What an install reports as it goes: a status that maps one to one onto OCPP 2.0.1's
//! `FirmwareStatusEnumType`, so a charge point forwards it in a `FirmwareStatusNotification`
//! as it is, and progress within the long phases.

use crate::Progress;

/// OCPP 2.0.1 `FirmwareStatusEnumType`, value for value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FirmwareStatus {
    /// The planned byte ranges are in the stage.
    Downloaded,
    /// Downloading failed (network, server, local disk); the next install resumes.
    DownloadFailed,
    /// Downloading the planned byte ranges.
    Downloading,
    /// Waiting for a scheduled download (an agent's own schedule; never emitted here).
    DownloadScheduled,
    /// The download was cancelled; the next install resumes from what is staged.
    DownloadPaused,
    /// Nothing in progress.
    Idle,
    /// The install failed (policy refused it, a hook refused it, writing failed, the new slot
    /// did not come up confirmed), or was cancelled while writing.
    InstallationFailed,
    /// Writing the new slot.
    Installing,
    /// The new slot booted and was confirmed.
    Installed,
    /// The new slot is written and verified and the next boot starts it once: reboot now.
    InstallRebooting,
    /// Waiting for a scheduled install (an agent's own schedule; never emitted here).
    InstallScheduled,
    /// The written slot does not read back as the signed image.
    InstallVerificationFailed,
    /// The bundle's signature (or its keyset's) does not verify under the device's keys.
    InvalidSignature,
    /// The downloaded bundle is covered by a signature the device trusts.
    SignatureVerified,
}

impl FirmwareStatus {
    /// The OCPP spelling (`"InstallRebooting"`).
    pub fn as_ocpp(self) -> &'static str {
        match self {
            FirmwareStatus::Downloaded => "Downloaded",
            FirmwareStatus::DownloadFailed => "DownloadFailed",
            FirmwareStatus::Downloading => "Downloading",
            FirmwareStatus::DownloadScheduled => "DownloadScheduled",
            FirmwareStatus::DownloadPaused => "DownloadPaused",
            FirmwareStatus::Idle => "Idle",
            FirmwareStatus::InstallationFailed => "InstallationFailed",
            FirmwareStatus::Installing => "Installing",
            FirmwareStatus::Installed => "Installed",
            FirmwareStatus::InstallRebooting => "InstallRebooting",
            FirmwareStatus::InstallScheduled => "InstallScheduled",
            FirmwareStatus::InstallVerificationFailed => "InstallVerificationFailed",
            FirmwareStatus::InvalidSignature => "InvalidSignature",
            FirmwareStatus::SignatureVerified => "SignatureVerified",
        }
    }
}

impl std::fmt::Display for FirmwareStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_ocpp())
    }
}

/// One report from an install: a status change (`progress` is `None`, `detail` may say why),
/// or progress within the current status (Downloading, Installing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The status this event reports or continues.
    pub status: FirmwareStatus,
    /// Progress within the status, for progress events.
    pub progress: Option<Progress>,
    /// A human-readable reason, for failures and notable steps.
    pub detail: Option<String>,
}

impl Event {
    /// A status change.
    pub fn status(status: FirmwareStatus, detail: Option<String>) -> Event {
        Event {
            status,
            progress: None,
            detail,
        }
    }

    /// Whether this event is a status change rather than progress.
    pub fn is_status(&self) -> bool {
        self.progress.is_none()
    }
}
