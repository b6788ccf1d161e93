//! Helpers shared by the integration tests: deterministic images, keys, bundles in memory.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering};

#[cfg(feature = "generator")]
use abdelta::DiffOptions;
use abdelta::format::{
    ENVELOPE_LEN, Envelope, Keyset, Limits, ReleaseKey, SignatureRecord, SignedKeyset,
};
use abdelta::no_progress;
use abdelta::policy::{Authorized, DeviceState, Policy, PolicyError, authorize};
use abdelta::sign::SignError;
use abdelta::storage::{BundleSource, MemBundle, MemTarget};
use abdelta::{
    ApplyReport, BundleError, Error, PublicKey, SecretKey, UnverifiedBundle, VerifiedBundle,
};

/// SplitMix64: a tiny deterministic generator for painting test images.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    /// Compressible "text-like" bytes: words from a small vocabulary.
    pub fn text(&mut self, n: usize) -> Vec<u8> {
        const WORDS: &[&str] = &[
            "config", "station", "charger", "voltage", "=", "\n", "0x1f", "enable", "port", " ",
            "log", "ocpp",
        ];
        let mut out = Vec::with_capacity(n + 16);
        while out.len() < n {
            out.extend_from_slice(WORDS[self.below(WORDS.len())].as_bytes());
        }
        out.truncate(n);
        out
    }
}

pub fn key() -> SecretKey {
    SecretKey::from_seed(&[7u8; 32])
}

pub fn other_key() -> SecretKey {
    SecretKey::from_seed(&[9u8; 32])
}

#[cfg(feature = "generator")]
pub fn options() -> DiffOptions {
    DiffOptions {
        literal_level: 3,
        release_version: 2,
        hardware_compat: vec!["evse-ac22-rev3".into()],
        created_at: 1_780_000_000,
        ..DiffOptions::default()
    }
}

#[cfg(feature = "generator")]
pub fn make_bundle(source: &[u8], target: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    abdelta::diff(source, target, &options(), &key(), &mut out, &no_progress).unwrap();
    out
}

pub fn trusted() -> Vec<PublicKey> {
    vec![key().public()]
}

/// Opens, plans and applies `bundle` against `source` into memory.
pub fn apply_mem(
    bundle: &[u8],
    source: &[u8],
) -> Result<(Vec<u8>, ApplyReport, abdelta::Plan), Error> {
    let verified = VerifiedBundle::open(&MemBundle(bundle), &trusted(), &Limits::DEFAULT)?;
    let plan = abdelta::plan(&verified, source);
    let mut target = MemTarget::default();
    let report = abdelta::apply(
        &verified,
        &MemBundle(bundle),
        source,
        &mut target,
        &plan,
        &no_progress,
    )?;
    Ok((target.bytes, report, plan))
}

pub const NOW: u64 = 1_800_000_000;
pub const DAY: u64 = 86_400;

pub fn images() -> (Vec<u8>, Vec<u8>) {
    let mut rng = Rng(77);
    let a = rng.text(300_000);
    let mut b = a.clone();
    b[1000] ^= 1;
    b.splice(150_000..150_000, rng.text(3000));
    (a, b)
}

#[cfg(feature = "generator")]
pub fn bundle(opts: &DiffOptions, signer: &SecretKey) -> Vec<u8> {
    let (a, b) = images();
    let mut out = Vec::new();
    abdelta::diff(&a, &b, opts, signer, &mut out, &no_progress).unwrap();
    out
}

#[cfg(feature = "generator")]
pub fn release(version: u64) -> DiffOptions {
    DiffOptions {
        release_version: version,
        created_at: NOW,
        expires_at: Some(NOW + 30 * DAY),
        ..options()
    }
}

pub fn device() -> Policy {
    Policy {
        release_keys: vec![key().public()],
        hardware_id: Some("evse-ac22-rev3".into()),
        ..Policy::default()
    }
}

pub fn check(
    bytes: &[u8],
    policy: &Policy,
    state: &mut DeviceState,
    now: u64,
) -> Result<Authorized, BundleError> {
    let unverified = UnverifiedBundle::read(&MemBundle(bytes), &Limits::DEFAULT)?;
    authorize(unverified, policy, state, now, &Limits::DEFAULT)
}

pub fn policy_error(result: Result<Authorized, BundleError>) -> PolicyError {
    match result {
        Err(BundleError::Policy(e)) => e,
        Err(other) => panic!("expected a policy error, got {other:?}"),
        Ok(_) => panic!("expected a policy error, got acceptance"),
    }
}

pub fn sign_error(result: Result<Authorized, BundleError>) -> SignError {
    match result {
        Err(BundleError::Sign(e)) => e,
        Err(other) => panic!("expected a signature error, got {other:?}"),
        Ok(_) => panic!("expected a signature error, got acceptance"),
    }
}

/// Splits a bundle into envelope, manifest bytes and payload.
pub fn parts(bytes: &[u8]) -> (Envelope, Vec<u8>, Vec<u8>) {
    let env = Envelope::decode(&bytes[..ENVELOPE_LEN], &Limits::DEFAULT).unwrap();
    let m = bytes[ENVELOPE_LEN..ENVELOPE_LEN + env.manifest_len as usize].to_vec();
    let p = bytes[usize::try_from(env.payload_offset()).unwrap()..].to_vec();
    (env, m, p)
}

/// A bundle around `manifest` with the given records and payload (no keyset).
pub fn assemble(manifest: &[u8], records: &[SignatureRecord], payload: &[u8]) -> Vec<u8> {
    let env = Envelope {
        manifest_len: u32::try_from(manifest.len()).unwrap(),
        signature_count: u16::try_from(records.len()).unwrap(),
        keyset_len: 0,
        payload_len: payload.len() as u64,
    };
    let mut out = env.encode().to_vec();
    out.extend_from_slice(manifest);
    for r in records {
        r.encode_into(&mut out);
    }
    out.extend_from_slice(payload);
    out
}

/// Counts bundle bytes read past the signed header.
pub struct Counting<'a> {
    pub bytes: &'a [u8],
    pub header: u64,
    pub payload_reads: AtomicU64,
}

impl BundleSource for Counting<'_> {
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        if offset + buf.len() as u64 > self.header {
            self.payload_reads
                .fetch_add(buf.len() as u64, Ordering::Relaxed);
        }
        MemBundle(self.bytes).read_at(offset, buf)
    }
}

/// The device's current root key's seed.
pub const ROOT_SEED: [u8; 32] = [50; 32];

pub fn roots() -> (SecretKey, SecretKey) {
    (
        SecretKey::from_seed(&ROOT_SEED),
        SecretKey::from_seed(&[51; 32]),
    )
}

pub fn keyset(version: u64, keys: &[(&SecretKey, u64, u64)], reset: Option<u64>) -> Keyset {
    let mut release_keys: Vec<ReleaseKey> = keys
        .iter()
        .map(|(k, nb, na)| ReleaseKey {
            public_key: k.public().to_bytes(),
            not_before: *nb,
            not_after: *na,
        })
        .collect();
    release_keys.sort_by_key(|k| k.public_key);
    Keyset {
        version,
        created_at: NOW - DAY,
        expires_at: NOW + 365 * DAY,
        version_floor_reset: reset,
        release_keys,
    }
}

#[cfg(feature = "generator")]
pub fn with_keyset(opts: DiffOptions, file: Vec<u8>) -> DiffOptions {
    DiffOptions {
        keyset: Some(file),
        ..opts
    }
}

pub fn rooted() -> Policy {
    let (root, next) = roots();
    Policy {
        root_keys: vec![root.public(), next.public()],
        hardware_id: Some("evse-ac22-rev3".into()),
        ..Policy::default()
    }
}

/// A keyset file signed by the root with this seed, with no validation of its keys: what a
/// careless or hostile signer could publish.
pub fn sign_keyset_unchecked(root_seed: &[u8; 32], keyset: &Keyset) -> Vec<u8> {
    use ed25519_dalek::Signer;
    let document = keyset.encode();
    let mut message = b"abdelta/keyset/v1\0".to_vec();
    message.extend_from_slice(&document);
    let signing = ed25519_dalek::SigningKey::from_bytes(root_seed);
    let record = SignatureRecord {
        key_id: SecretKey::from_seed(root_seed).public().key_id().0,
        signature: signing.sign(&message).to_bytes(),
    };
    SignedKeyset::encode(&document, &[record])
}

/// A loop block device over a file, detached on drop; `None` where this machine does not
/// allow loop devices (needs root and /dev/loop-control).
pub struct Loop(String);

impl Loop {
    pub fn attach(file: &std::path::Path) -> Option<Loop> {
        let out = std::process::Command::new("losetup")
            .args(["--find", "--show"])
            .arg(file)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| Loop(String::from_utf8_lossy(&out.stdout).trim().to_owned()))
    }

    pub fn path(&self) -> &std::path::Path {
        std::path::Path::new(&self.0)
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("losetup")
            .arg("-d")
            .arg(&self.0)
            .status();
    }
}
