//! Device policy: only the right signed release installs. Given the device's own configuration
//! (trusted keys, hardware id, channel) and its persistent [`DeviceState`], [`authorize`]
//! authenticates a bundle's keyset and manifest and refuses rollbacks, other hardware, other
//! channels, expired releases and keys outside their validity window, all before the first
//! payload byte is read. Nothing here comes from the manifest's own claims about the device.

pub(crate) mod error;
mod state;

pub use error::PolicyError;
pub use state::{DeviceState, MAX_BOOT_ID, MAX_SLOT_NAME, MAX_SLOTS, SlotRecord, SlotState};

use crate::bundle::{UnverifiedBundle, VerifiedBundle};
use crate::error::BundleError;
use crate::format::Limits;
use crate::sign::{KeyId, PublicKey, VerifiedKeyset, verify_keyset};

/// What the device trusts and is, from local configuration only.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Release keys trusted directly (no keyset needed).
    pub release_keys: Vec<PublicKey>,
    /// Root keys trusted to sign keysets: the current root and the next one.
    pub root_keys: Vec<PublicKey>,
    /// This device's hardware-compatibility id; when set, the manifest must list it.
    pub hardware_id: Option<String>,
    /// This device's channel; when set, the manifest's channel must equal it.
    pub channel: Option<String>,
    /// Longest validity (expiry − creation, seconds) accepted, if limited.
    pub max_validity: Option<u64>,
    /// Refuse manifests without an expiry.
    pub require_expiry: bool,
    /// Refuse manifests created more than this many seconds after the trusted time (the later
    /// of the device clock and the stored floor). Accepted creation times raise the floor, so
    /// this keeps a far-future time signed by a stolen key from freezing the device. Set it
    /// only where the clock is kept (GNSS, NTP, a battery-backed RTC): a device whose clock
    /// resets would refuse every release made after its last update. It also bounds how far
    /// the device clock may raise the stored floor past the newest signed creation time
    /// (without it, only signed times raise the floor).
    pub max_clock_skew: Option<u64>,
}

/// What to do with an authorised release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A newer release: plan and apply it.
    Install,
    /// The installed release: nothing to download.
    UpToDate,
}

/// A bundle that passed signature and policy.
pub struct Authorized {
    /// The authenticated bundle.
    pub bundle: VerifiedBundle,
    /// Install it, or nothing to do.
    pub decision: Decision,
    /// The version of a keyset accepted from this bundle, if one was.
    pub keyset_accepted: Option<u64>,
}

/// Authenticates `unverified` under `policy` and checks it against `state`, updating `state`
/// (accepted keyset, highest-seen release, time floor). The caller persists `state` before
/// fetching anything else. `now` is the device clock (Unix seconds), trusted only to raise the
/// floor.
pub fn authorize(
    unverified: UnverifiedBundle,
    policy: &Policy,
    state: &mut DeviceState,
    now: u64,
    limits: &Limits,
) -> Result<Authorized, BundleError> {
    // Work on a copy: a refused bundle leaves the caller's state exactly as it was.
    let mut next = state.clone();
    let floor = next.time_floor.max(now);
    let (bundle, keyset_accepted) = trust(unverified, policy, &mut next, floor, limits)?;
    release_rules(bundle, policy, state, next, floor, keyset_accepted)
}

/// Authenticates `unverified` under `policy` with the same keyset rules as [`authorize`]
/// (stored and bundled keysets, keyset rollback and expiry, release-key windows, at the
/// trusted-time floor), but none of the release rules (hardware, channel, expiry, rollback)
/// and without changing `state`: for checking which release a slot holds, whatever its age.
pub fn authenticate(
    unverified: UnverifiedBundle,
    policy: &Policy,
    state: &DeviceState,
    now: u64,
    limits: &Limits,
) -> Result<VerifiedBundle, BundleError> {
    let mut scratch = state.clone();
    let floor = scratch.time_floor.max(now);
    trust(unverified, policy, &mut scratch, floor, limits).map(|(bundle, _)| bundle)
}

/// §9.3 steps 2–7: the keyset in use, the trusted keys, the signature and the signing key's
/// window. Updates `next` with a newly accepted keyset.
fn trust(
    unverified: UnverifiedBundle,
    policy: &Policy,
    next: &mut DeviceState,
    floor: u64,
    limits: &Limits,
) -> Result<(VerifiedBundle, Option<u64>), BundleError> {
    // A stored keyset counts only while a configured root still vouches for it; its version
    // stays the floor for keyset rollback either way. Without root keys, keysets are ignored
    // and only the directly trusted release keys count.
    let mut keyset: Option<VerifiedKeyset> =
        verify_keyset(&next.keyset_file, &policy.root_keys).ok();
    let mut keyset_accepted = None;
    if let Some(file) = unverified
        .keyset_file()
        .filter(|_| !policy.root_keys.is_empty())
    {
        let candidate = verify_keyset(file, &policy.root_keys)?;
        let version = candidate.keyset().version;
        if version < next.keyset_version {
            return Err(PolicyError::KeysetRollback {
                found: version,
                accepted: next.keyset_version,
            }
            .into());
        }
        // A newer keyset, or the accepted version again when the stored copy no longer verifies.
        if version > next.keyset_version || keyset.is_none() {
            let k = candidate.keyset();
            if k.expires_at < floor {
                return Err(PolicyError::KeysetExpired {
                    expires_at: k.expires_at,
                    floor,
                }
                .into());
            }
            let previous_reset = keyset
                .as_ref()
                .and_then(|old| old.keyset().version_floor_reset);
            if let Some(reset) = k.version_floor_reset
                && Some(reset) != previous_reset
            {
                // The one way down, applied once: when a keyset introduces the reset (a key
                // signed a huge release). Only ever lowers.
                next.highest_seen = next.highest_seen.min(reset);
                next.installed = next.installed.map(|i| i.min(reset));
            }
            next.keyset_version = version;
            next.keyset_file = file.to_vec();
            next.time_floor = next.time_floor.max(k.created_at);
            keyset_accepted = Some(version);
            keyset = Some(candidate);
        }
    }
    // An expired keyset vouches for nothing; directly trusted keys still count.
    let keyset_expired = keyset
        .as_ref()
        .map(|k| k.keyset().expires_at)
        .filter(|&t| t < floor);
    if keyset_expired.is_some() {
        keyset = None;
    }
    let mut trusted = policy.release_keys.clone();
    if let Some(k) = &keyset {
        trusted.extend(k.release_keys().iter().cloned());
    }
    if trusted.is_empty() {
        return Err(match keyset_expired {
            Some(expires_at) => PolicyError::KeysetExpired { expires_at, floor },
            None => PolicyError::NoTrustedKeys,
        }
        .into());
    }
    let bundle = match (unverified.verify(&trusted, limits), keyset_expired) {
        (Ok(bundle), _) => bundle,
        (Err(BundleError::Sign(_)), Some(expires_at)) => {
            return Err(PolicyError::KeysetExpired { expires_at, floor }.into());
        }
        (Err(e), _) => return Err(e),
    };
    let signer = bundle.verified().key_id();
    check_key_window(
        policy,
        keyset.as_ref(),
        signer,
        floor,
        bundle.manifest().created_at,
    )?;
    Ok((bundle, keyset_accepted))
}

/// §9.3 steps 8–12: hardware, channel, expiry and rollback; then `state` takes `next`.
fn release_rules(
    bundle: VerifiedBundle,
    policy: &Policy,
    state: &mut DeviceState,
    mut next: DeviceState,
    floor: u64,
    keyset_accepted: Option<u64>,
) -> Result<Authorized, BundleError> {
    let manifest = bundle.manifest();
    if let Some(device) = &policy.hardware_id
        && !manifest.hardware_compat.contains(device)
    {
        return Err(PolicyError::WrongHardware {
            device: device.clone(),
            compatible: manifest.hardware_compat.clone(),
        }
        .into());
    }
    if let Some(device) = &policy.channel
        && *device != manifest.channel
    {
        return Err(PolicyError::WrongChannel {
            device: device.clone(),
            manifest: manifest.channel.clone(),
        }
        .into());
    }
    if let Some(skew) = policy.max_clock_skew
        && manifest.created_at > floor.saturating_add(skew)
    {
        return Err(PolicyError::CreatedInFuture {
            created_at: manifest.created_at,
            now: floor,
        }
        .into());
    }
    match manifest.expires_at {
        Some(expires_at) if expires_at < floor => {
            return Err(PolicyError::Expired { expires_at, floor }.into());
        }
        Some(expires_at) => {
            let validity = expires_at.saturating_sub(manifest.created_at);
            if let Some(max) = policy.max_validity
                && validity > max
            {
                return Err(PolicyError::ValidityTooLong { validity, max }.into());
            }
        }
        None if policy.require_expiry => return Err(PolicyError::NoExpiry.into()),
        None => {}
    }
    let release = manifest.release_version;
    let decision = if next.installed == Some(release) {
        Decision::UpToDate
    } else {
        let minimum = next.installed.unwrap_or(0).max(next.highest_seen);
        if release < minimum {
            return Err(PolicyError::Rollback { release, minimum }.into());
        }
        Decision::Install
    };
    next.highest_seen = next.highest_seen.max(release);
    // The clock raises the stored floor only as far as signed data supports: up to this
    // manifest's creation time plus the clock skew the device allows (0 without one). One
    // run with a clock in 2106 must not refuse every later release as expired.
    let clock_bound = manifest
        .created_at
        .saturating_add(policy.max_clock_skew.unwrap_or(0));
    next.time_floor = next
        .time_floor
        .max(manifest.created_at)
        .max(floor.min(clock_bound));
    *state = next;
    Ok(Authorized {
        bundle,
        decision,
        keyset_accepted,
    })
}

fn check_key_window(
    policy: &Policy,
    keyset: Option<&VerifiedKeyset>,
    signer: KeyId,
    floor: u64,
    created_at: u64,
) -> Result<(), PolicyError> {
    // Directly trusted keys have no window; keyset keys are valid only inside theirs, both by
    // trusted time and by the manifest's signed creation time.
    if policy.release_keys.iter().any(|k| k.key_id() == signer) {
        return Ok(());
    }
    let Some(keyset) = keyset else { return Ok(()) };
    for (key, entry) in keyset
        .release_keys()
        .iter()
        .zip(&keyset.keyset().release_keys)
    {
        if key.key_id() == signer {
            let inside = |t: u64| (entry.not_before..=entry.not_after).contains(&t);
            if !inside(floor) || !inside(created_at) {
                return Err(PolicyError::KeyNotValid {
                    key_id: signer.to_string(),
                    not_before: entry.not_before,
                    not_after: entry.not_after,
                });
            }
        }
    }
    Ok(())
}
