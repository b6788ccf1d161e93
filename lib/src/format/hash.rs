//! The format's short hashes (SPEC.md §5.2): a chunk hash is the first 16 bytes of a chunk's
//! BLAKE3, a source hash the first 8, so a source hash is a prefix of the chunk hash of the
//! same bytes.

use super::{ChunkHash, SourceHash};

/// The first `N` bytes of the BLAKE3 output over `bytes`.
fn blake3_prefix<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    blake3::Hasher::new()
        .update(bytes)
        .finalize_xof()
        .fill(&mut out);
    out
}

/// The chunk hash of `bytes`: the first 16 bytes of their BLAKE3.
pub fn chunk_hash(bytes: &[u8]) -> ChunkHash {
    blake3_prefix(bytes)
}

/// The source hash of `bytes` (a chunk the source holds, a patch base): the first 8 bytes of
/// their BLAKE3, so the first 8 of their chunk hash.
pub fn source_hash(bytes: &[u8]) -> SourceHash {
    blake3_prefix(bytes)
}

/// The source hash of the bytes whose chunk hash is `hash`: its first 8 bytes.
pub fn source_part(hash: &ChunkHash) -> SourceHash {
    let [a, b, c, d, e, f, g, h, ..] = *hash;
    [a, b, c, d, e, f, g, h]
}
