//! Verifying a partition or image against a signed manifest: the whole-image hash, and on a
//! mismatch, which chunks differ. Read-only.

use std::path::Path;

use rayon::prelude::*;

use crate::chunk::hash_large;
use crate::error::Error;
use crate::format::Manifest;
use crate::storage::map_prefix;

/// At most this many bad chunk indices are listed in an error.
const LISTED_BAD_CHUNKS: usize = 16;

/// Checks that `image` (exactly the target's bytes) matches the manifest.
pub fn verify_bytes(manifest: &Manifest, image: &[u8]) -> Result<(), Error> {
    if image.len() as u64 == manifest.target.size && hash_large(image) == manifest.target.hash {
        return Ok(());
    }
    let bad: Vec<usize> = manifest
        .chunks
        .par_iter()
        .enumerate()
        .filter(|(_, c)| {
            let start = usize::try_from(c.offset).unwrap_or(usize::MAX);
            image
                .get(start..start.saturating_add(c.len as usize))
                .is_none_or(|b| !c.check.admits(b))
        })
        .map(|(i, _)| i)
        .collect();
    Err(Error::TargetHashMismatch {
        bad_count: bad.len(),
        bad_chunks: bad.into_iter().take(LISTED_BAD_CHUNKS).collect(),
    })
}

/// Checks the first `target.size` bytes of a file or block device against the manifest.
pub fn verify_path(manifest: &Manifest, path: &Path) -> Result<(), Error> {
    let map = map_prefix(path, manifest.target.size).map_err(|source| {
        if source.kind() == std::io::ErrorKind::UnexpectedEof {
            Error::TargetTooSmall {
                size: manifest.target.size,
            }
        } else {
            Error::Io {
                context: format!("reading {}", path.display()),
                source,
            }
        }
    })?;
    verify_bytes(manifest, map.as_deref().unwrap_or(&[]))
}
