//! Verifying a partition or image against a signed manifest: the whole-image hash, and on a
//! mismatch, which chunks differ. Read-only.

use std::os::unix::fs::FileExt;
use std::path::Path;

use rayon::prelude::*;

use crate::chunk::hash_large;
use crate::error::{VerifyError, io};
use crate::format::Manifest;
use crate::storage::open_readback;

/// At most this many bad chunk indices are listed in an error.
const LISTED_BAD_CHUNKS: usize = 16;

/// Checks that `image` (exactly the target's bytes) matches the manifest.
pub fn verify_bytes(manifest: &Manifest, image: &[u8]) -> Result<(), VerifyError> {
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
    Err(VerifyError::TargetHashMismatch {
        bad_count: bad.len(),
        bad_chunks: bad.into_iter().take(LISTED_BAD_CHUNKS).collect(),
    })
}

/// Bytes read and hashed at a time in a read-back.
const READ_BLOCK: usize = 8 << 20;

/// Checks the first `target.size` bytes of a file or block device against the manifest, as
/// the medium returns them (see [`open_readback`]). Read with checked reads: a medium that
/// fails to return a block ends in an error naming where, never a signal.
pub fn verify_path(manifest: &Manifest, path: &Path) -> Result<(), VerifyError> {
    let size = manifest.target.size;
    let reading = |at: u64| io(format!("reading {} at byte {at}", path.display()));
    let file = open_readback(path, size).map_err(|source| {
        if source.kind() == std::io::ErrorKind::UnexpectedEof {
            VerifyError::TargetTooSmall { size }
        } else {
            reading(0)(source).into()
        }
    })?;
    let meta = file.metadata().map_err(reading(0))?;
    if meta.is_file() && meta.len() > size {
        return Err(VerifyError::TargetTrailingBytes {
            size,
            actual: meta.len(),
        });
    }
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; usize::try_from(size).unwrap_or(READ_BLOCK).min(READ_BLOCK)];
    let mut at = 0u64;
    while at < size {
        let n = usize::try_from(size - at)
            .unwrap_or(READ_BLOCK)
            .min(READ_BLOCK);
        let block = buf.get_mut(..n).unwrap_or_default();
        file.read_exact_at(block, at).map_err(reading(at))?;
        hasher.update_rayon(block);
        at += n as u64;
    }
    if *hasher.finalize().as_bytes() == manifest.target.hash {
        return Ok(());
    }
    // Which chunks differ: each read again and checked on its own.
    let mut bad = Vec::new();
    for (i, c) in manifest.chunks.iter().enumerate() {
        let mut chunk = vec![0u8; c.len as usize];
        file.read_exact_at(&mut chunk, c.offset)
            .map_err(reading(c.offset))?;
        if !c.check.admits(&chunk) {
            bad.push(i);
        }
    }
    Err(VerifyError::TargetHashMismatch {
        bad_count: bad.len(),
        bad_chunks: bad.into_iter().take(LISTED_BAD_CHUNKS).collect(),
    })
}
