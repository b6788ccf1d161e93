//! Content-defined chunking (FastCDC 2020) and chunk hashing: the boundaries that let shifted
//! content keep its chunks, and the type of a chunk's bytes that passed their check
//! ([`VerifiedChunk`]). Pure functions over byte slices.

use std::borrow::Cow;

use fastcdc::v2020::FastCDC;
use rayon::prelude::*;

pub use crate::format::hash::{chunk_hash, source_hash, source_part};
use crate::format::{ChunkEntry, ChunkHash, Chunking, Hash};

/// Default chunking: 64 KiB average, between 16 KiB and 256 KiB. Patches absorb small edits
/// inside a chunk, so larger chunks cost few delta bytes while shrinking the manifest (about 30
/// bytes per chunk that every device downloads) and compressing literals better; 64 KiB keeps
/// drift recovery fine-grained (the measurements: BENCHMARKS.md, "Tuning record").
pub const DEFAULT_CHUNKING: Chunking = Chunking {
    min: 16 << 10,
    avg: 64 << 10,
    max: 256 << 10,
};

/// Chunking for images smaller than [`SMALL_IMAGE_LEN`]: 256 KiB average, between 64 KiB and
/// 1 MiB. A single file or a small partition changes little between releases, so its few
/// dozen manifest entries would outweigh the delta; a running partition's drift, which small
/// chunks contain, concerns large images (the measurements: BENCHMARKS.md, "Tuning record").
pub const SMALL_IMAGE_CHUNKING: Chunking = Chunking {
    min: 64 << 10,
    avg: 256 << 10,
    max: 1 << 20,
};

/// Images below this length get [`SMALL_IMAGE_CHUNKING`] from [`chunking_for`].
pub const SMALL_IMAGE_LEN: u64 = 64 << 20;

/// The default chunking for a target of `len` bytes: [`DEFAULT_CHUNKING`], or
/// [`SMALL_IMAGE_CHUNKING`] below [`SMALL_IMAGE_LEN`].
pub fn chunking_for(len: u64) -> Chunking {
    if len < SMALL_IMAGE_LEN {
        SMALL_IMAGE_CHUNKING
    } else {
        DEFAULT_CHUNKING
    }
}

/// A chunk of an image: offset, length, hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkSpan {
    /// Offset in the image.
    pub offset: u64,
    /// Length in bytes.
    pub len: u32,
    /// [`chunk_hash`] of the bytes.
    pub hash: ChunkHash,
}

impl ChunkSpan {
    /// The bytes of this chunk within `image`.
    pub fn bytes<'a>(&self, image: &'a [u8]) -> &'a [u8] {
        let start = usize::try_from(self.offset).unwrap_or(usize::MAX);
        image
            .get(start..start.saturating_add(self.len as usize))
            .unwrap_or(&[])
    }
}

/// Chunk boundaries of `image` as (offset, len), in order. Parameters must satisfy FastCDC's
/// bounds (the manifest decoder enforces them for untrusted values).
pub fn boundaries(image: &[u8], params: Chunking) -> Vec<(u64, u32)> {
    FastCDC::new(
        image,
        params.min as usize,
        params.avg as usize,
        params.max as usize,
    )
    // fastcdc never returns a chunk longer than `max`, which is a u32.
    .map(|c| (c.offset as u64, u32::try_from(c.length).unwrap_or(u32::MAX)))
    .collect()
}

/// Chunks `image` and hashes every chunk, hashing on all cores.
pub fn chunk_and_hash(image: &[u8], params: Chunking) -> Vec<ChunkSpan> {
    boundaries(image, params)
        .into_par_iter()
        .map(|(offset, len)| {
            let mut span = ChunkSpan {
                offset,
                len,
                hash: [0; 16],
            };
            span.hash = chunk_hash(span.bytes(image));
            span
        })
        .collect()
}

/// BLAKE3-256 of a large buffer, on all cores.
pub fn hash_large(bytes: &[u8]) -> Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update_rayon(bytes);
    *hasher.finalize().as_bytes()
}

/// Bytes that passed their chunk's check in the signed manifest, with where they go. Only
/// the apply pipeline makes one, after the check, so a `Target` can never be handed unverified
/// bytes.
pub struct VerifiedChunk<'a> {
    offset: u64,
    bytes: Cow<'a, [u8]>,
}

impl<'a> VerifiedChunk<'a> {
    /// Checks `bytes` against the chunk entry: the only constructor.
    pub(crate) fn check(entry: &ChunkEntry, bytes: Cow<'a, [u8]>) -> Option<VerifiedChunk<'a>> {
        (bytes.len() == entry.len as usize && entry.check.admits(&bytes)).then_some(VerifiedChunk {
            offset: entry.offset,
            bytes,
        })
    }

    /// Offset in the target.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The verified bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_hash_is_the_start_of_the_chunk_hash() {
        // The plan indexes a source by the first 8 bytes of its chunk hashes and looks chunks
        // of either check up there: both must be the same bytes.
        for bytes in [&b""[..], b"abc", &[7u8; 100_000]] {
            assert_eq!(source_part(&chunk_hash(bytes)), source_hash(bytes));
            assert_ne!(source_hash(bytes), [0; 8]);
        }
    }

    #[test]
    fn small_images_get_larger_chunks() {
        assert_eq!(chunking_for(7 << 20), SMALL_IMAGE_CHUNKING);
        assert_eq!(chunking_for(SMALL_IMAGE_LEN - 1), SMALL_IMAGE_CHUNKING);
        assert_eq!(chunking_for(SMALL_IMAGE_LEN), DEFAULT_CHUNKING);
        for c in [SMALL_IMAGE_CHUNKING, DEFAULT_CHUNKING] {
            assert!(c.min * 4 == c.avg && c.avg * 4 == c.max, "{c:?}");
        }
    }

    #[test]
    fn boundaries_cover_the_image_exactly() {
        let image: Vec<u8> = (0..1_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let spans = boundaries(&image, DEFAULT_CHUNKING);
        let mut next = 0;
        for (offset, len) in &spans {
            assert_eq!(*offset, next);
            assert!(*len <= DEFAULT_CHUNKING.max);
            next += u64::from(*len);
        }
        assert_eq!(next, image.len() as u64);
        assert!(boundaries(&[], DEFAULT_CHUNKING).is_empty());
    }
}
