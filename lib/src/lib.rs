//! abdelta: signed, chunked, content-addressed A/B delta bundles.
//!
//! Release side (the `generator` feature, on by default): `diff()` chunks the new image, finds what the old one already holds,
//! encodes the rest as patches (compressed in groups) and literals, and signs the manifest.
//! Device side: [`fetch`] reads a bundle's bytes over HTTP(S) and stages them resumably,
//! [`bundle::UnverifiedBundle::read`] reads the signed header, [`policy::authorize`]
//! authenticates it and applies the device's policy before any payload byte is read,
//! [`plan()`] checks which recipes the running partition can really serve, [`apply()`]
//! rebuilds the new partition chunk by chunk (each chunk hash-checked before it is written),
//! and [`verify_path`] checks a partition against the manifest.
//!
//! On a station, [`updater::Updater`] runs the whole install transaction: it authenticates
//! and authorizes a bundle, writes the slot the station is not running, verifies it, switches
//! the next boot to it once, and reports OCPP firmware statuses on the way. An agent's loop:
//!
//! ```no_run
//! use abdelta::updater::{Cancel, Event, InstallOptions, Outcome, Updater, UpdaterConfig};
//!
//! # fn main() -> Result<(), abdelta::updater::UpdateError> {
//! let updater = Updater::new(UpdaterConfig::load("/etc/abdelta/device.toml".as_ref())?)?;
//! loop {
//!     // Authenticated, allowed by the device policy, planned against the running slot.
//!     let offer = updater.check("https://updates.example/evse/stable.abd")?;
//!     println!("release {}: {} bytes to download", offer.release(), offer.download().to_download);
//!     let mut report = |event: &Event| {
//!         if event.is_status() {
//!             // Forward as an OCPP FirmwareStatusNotification.
//!             println!("{}", event.status.as_ocpp());
//!         }
//!     };
//!     match updater.install(offer, &InstallOptions::default(), &Cancel::default(), &mut report) {
//!         // The next boot starts the new slot once; after it, the health check calls
//!         // `updater.confirm()` (or `mark_bad()`), and only then is it `Installed`.
//!         Ok(Outcome::Rebooting { .. }) => break,
//!         Ok(Outcome::UpToDate { .. }) => {}
//!         // Reported already as the last event; the next attempt resumes.
//!         Err(e) => eprintln!("{}: {}", e.firmware_status(), abdelta::report(&e)),
//!     }
//!     std::thread::sleep(std::time::Duration::from_secs(6 * 3600));
//! }
//! # Ok(()) }
//! ```
//!
//! The data's path, one module per stage:
//! `chunk` → `diff` → `codec` → `format` → `sign` → bundle file → `fetch` (HTTP, stage) →
//! `bundle` (read) → `sign` + `policy` (authenticate, authorize) → `plan` → `apply` (through
//! `storage`) → `verify`; `updater` runs that path on a station, with its slots and bootloader.
//! Inside `codec` and `format::manifest`, decoders (the device's, facing hostile bytes) and
//! encoders (the release side's) sit in separate files; `fetch` keeps the HTTP client apart
//! from the pure checks of what a response says. The device's small records (its state, the
//! stage's journal, the header cache) are sealed and replaced one way (`record`).

#![deny(unsafe_code)]
// Every public type can be named by a caller: the curated list below is the whole surface.
#![deny(unnameable_types)]
// Hostile bytes reach most of this crate: no panicking slice indexing outside tests.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

// The data's path, stage by stage. Six modules are public (the format, keys and signatures,
// the device policy, transport, storage, the station's updater); the other stages are
// private, and what a caller needs of them is re-exported below.
mod apply;
mod bundle;
mod chunk;
mod codec;
#[cfg(feature = "generator")]
mod diff;
mod error;
mod extents;
pub mod fetch;
pub mod format;
#[cfg(fuzzing)]
pub mod fuzz_hooks;
mod plan;
pub mod policy;
mod record;
pub mod sign;
pub mod storage;
pub mod updater;
mod verify;

pub use apply::{ApplyReport, apply};
pub use bundle::{UnverifiedBundle, VerifiedBundle};
pub use chunk::{
    DEFAULT_CHUNKING, SMALL_IMAGE_CHUNKING, SMALL_IMAGE_LEN, VerifiedChunk, chunking_for,
};
pub use codec::CodecError;
#[cfg(feature = "generator")]
pub use diff::{DiffOptions, DiffReport, diff, diff_bases};
pub use error::{
    ApplyError, BundleError, DiffError, Error, IoError, OverBudget, Progress, ProgressFn,
    VerifyError, no_progress, report,
};
pub use format::{Limits, Manifest};
pub use plan::{Plan, SourceErrors, Step, StepCounts, StepKind, plan};
pub use sign::{PublicKey, SecretKey};
pub use verify::{verify_bytes, verify_path};

/// Not part of the API, and free to change in any release: the chunker's and the codec's
/// building blocks, for this project's own tests, fuzz targets, examples and benchmarks
/// (which craft payloads and time the stages one by one).
#[doc(hidden)]
pub mod internals {
    pub use crate::apply::BATCH_BYTES;
    pub use crate::chunk::{ChunkSpan, boundaries, chunk_and_hash, chunk_hash, hash_large};
    pub use crate::codec::{ExtraFilter, PatchParts, decode_group, decode_literal};
    #[cfg(feature = "generator")]
    pub use crate::codec::{
        GroupExtra, PatchContent, content_of_matches, encode_group, encode_literal,
        estimate_group_len,
    };
}
