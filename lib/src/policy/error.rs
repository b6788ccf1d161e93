//! Why a signed release is refused. A leaf of the crate: the crate-wide error embeds it, and
//! nothing here depends on that error.

/// Why a signed release is refused: each variant names the rule that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyError {
    /// The release is lower than one installed or already accepted.
    Rollback {
        /// The manifest's release.
        release: u64,
        /// The lowest release still acceptable.
        minimum: u64,
    },
    /// The manifest does not list this device's hardware id.
    WrongHardware {
        /// The device's id.
        device: String,
        /// The ids the manifest lists.
        compatible: Vec<String>,
    },
    /// The manifest is for another channel.
    WrongChannel {
        /// The device's channel.
        device: String,
        /// The manifest's channel.
        manifest: String,
    },
    /// The manifest expired before the trusted-time floor.
    Expired {
        /// Its expiry.
        expires_at: u64,
        /// The trusted-time floor.
        floor: u64,
    },
    /// The manifest has no expiry and the policy requires one.
    NoExpiry,
    /// The manifest's validity period exceeds the policy's maximum.
    ValidityTooLong {
        /// expiry − creation, seconds.
        validity: u64,
        /// The maximum.
        max: u64,
    },
    /// The bundle's keyset is older than the one the device accepted.
    KeysetRollback {
        /// Its version.
        found: u64,
        /// The accepted version.
        accepted: u64,
    },
    /// The keyset in use expired before the trusted-time floor.
    KeysetExpired {
        /// Its expiry.
        expires_at: u64,
        /// The floor.
        floor: u64,
    },
    /// The release key that signed is outside its validity window.
    KeyNotValid {
        /// The key.
        key_id: String,
        /// The window, Unix seconds.
        not_before: u64,
        /// The window, Unix seconds.
        not_after: u64,
    },
    /// The manifest was created later than the trusted time allows (`max_clock_skew`).
    CreatedInFuture {
        /// The manifest's creation time.
        created_at: u64,
        /// The trusted time it was judged against.
        now: u64,
    },
    /// Neither a release key nor a keyset is configured.
    NoTrustedKeys,
    /// The state file could not be read or written.
    StateIo(String),
    /// The state file is damaged: refuse rather than forget what was installed.
    StateCorrupt(String),
}

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicyError::Rollback { release, minimum } => {
                write!(
                    f,
                    "rollback: release {release} is lower than {minimum}, already installed or accepted"
                )
            }
            PolicyError::WrongHardware { device, compatible } => write!(
                f,
                "wrong hardware: this device is {device}, the release is for {}",
                compatible.join(", ")
            ),
            PolicyError::WrongChannel { device, manifest } => {
                write!(
                    f,
                    "wrong channel: this device follows {device:?}, the release is for {manifest:?}"
                )
            }
            PolicyError::CreatedInFuture { created_at, now } => write!(
                f,
                "created in the future: the release was created at {created_at}, trusted time is {now} (clock skew limit)"
            ),
            PolicyError::Expired { expires_at, floor } => {
                write!(
                    f,
                    "expired: the release expired at {expires_at}, trusted time is at least {floor}"
                )
            }
            PolicyError::NoExpiry => write!(f, "no expiry: the policy requires releases to expire"),
            PolicyError::ValidityTooLong { validity, max } => {
                write!(
                    f,
                    "validity too long: {validity} s exceeds the policy's {max} s"
                )
            }
            PolicyError::KeysetRollback { found, accepted } => {
                write!(
                    f,
                    "keyset rollback: keyset {found} is older than the accepted keyset {accepted}"
                )
            }
            PolicyError::KeysetExpired { expires_at, floor } => {
                write!(
                    f,
                    "keyset expired at {expires_at}, trusted time is at least {floor}"
                )
            }
            PolicyError::KeyNotValid {
                key_id,
                not_before,
                not_after,
            } => write!(
                f,
                "release key {key_id} is outside its validity window {not_before}..={not_after}"
            ),
            PolicyError::NoTrustedKeys => {
                write!(f, "no trusted key: configure a release key or root keys")
            }
            PolicyError::StateIo(why) => write!(f, "device state: {why}"),
            PolicyError::StateCorrupt(path) => write!(
                f,
                "device state corrupt: {path} fails its checksum; refusing to forget the installed release"
            ),
        }
    }
}

impl std::error::Error for PolicyError {}
