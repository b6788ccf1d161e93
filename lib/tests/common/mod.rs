//! Helpers shared by the integration tests: deterministic images, keys, bundles in memory.
#![allow(dead_code, clippy::unwrap_used)]

use abdelta::diff::DiffOptions;
use abdelta::error::no_progress;
use abdelta::format::Limits;
use abdelta::storage::{MemBundle, MemTarget};
use abdelta::{ApplyReport, Error, PublicKey, SecretKey, VerifiedBundle};

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

pub fn options() -> DiffOptions {
    DiffOptions {
        literal_level: 3,
        patch_level: 9,
        release_version: 2,
        hardware_compat: vec!["evse-ac22-rev3".into()],
        created_at: 1_780_000_000,
        ..DiffOptions::default()
    }
}

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
