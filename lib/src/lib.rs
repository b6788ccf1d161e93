//! abdelta: signed, chunked, content-addressed A/B delta bundles.
//!
//! Release side: [`diff()`] chunks the new image, finds what the old one already holds,
//! encodes the rest as patches (compressed in groups) and literals, and signs the manifest.
//! Device side: [`fetch`] reads a bundle's bytes over HTTP(S) and stages them resumably,
//! [`bundle::UnverifiedBundle::read`] reads the signed header, [`policy::authorize`]
//! authenticates it and applies the device's policy before any payload byte is read,
//! [`plan()`] checks which recipes the running partition can really serve, [`apply()`]
//! rebuilds the new partition chunk by chunk (each chunk hash-checked before it is written),
//! and [`verify`] checks a partition against the manifest.
//!
//! The data's path, one module per stage:
//! `chunk` → `diff` → `codec` → `format` → `sign` → bundle file → `fetch` (HTTP, stage) →
//! `bundle` (read) → `sign` + `policy` (authenticate, authorize) → `plan` → `apply` (through
//! `storage`) → `verify`.

#![deny(unsafe_code)]
// Hostile bytes reach most of this crate: no panicking slice indexing outside tests.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

pub mod apply;
pub mod bundle;
pub mod chunk;
pub mod codec;
pub mod diff;
pub mod error;
pub mod fetch;
pub mod format;
#[cfg(fuzzing)]
pub mod fuzz_hooks;
pub mod plan;
pub mod policy;
pub mod sign;
pub mod storage;
pub mod updater;
pub mod verify;

pub use apply::{ApplyReport, apply};
pub use bundle::{UnverifiedBundle, VerifiedBundle};
pub use diff::{DiffOptions, DiffReport, diff};
pub use error::{Error, Progress, ProgressFn};
pub use format::{Limits, Manifest};
pub use plan::{Plan, Step, plan};
pub use sign::{PublicKey, SecretKey};
