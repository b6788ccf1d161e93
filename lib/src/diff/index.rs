//! Indexes of the source image for the generator: exact chunks by hash (for copies) and
//! content-defined anchors (for finding where a changed chunk's old version lies, so its patch
//! gets the right base).

// Indexing here is by `u8` into 256-entry tables, or inside a const loop bounded by 256.
#![allow(clippy::indexing_slicing)]

use std::collections::HashMap;

use crate::chunk::ChunkSpan;
use crate::format::ChunkHash;

/// Gear table for the anchor rolling hash: fixed pseudo-random words (SplitMix64 from 0).
const GEAR: [u64; 256] = {
    let mut table = [0u64; 256];
    let mut state: u64 = 0;
    let mut i = 0;
    while i < 256 {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        table[i] = z ^ (z >> 31);
        i += 1;
    }
    table
};

/// An anchor is a position whose rolling hash has its top 9 bits zero: one per ~512 bytes.
const ANCHOR_MASK: u64 = 0x1ff << 55;
/// The gear hash of 64 zero bytes: zero runs would anchor everywhere or nowhere, so skip them.
const ZERO_RUN: u64 = GEAR[0].wrapping_neg();

/// Calls `found(position, key)` for every anchor in `data`; the key depends only on the 64
/// bytes ending at `position`, so the same content yields the same key wherever it lies.
pub fn anchors(data: &[u8], mut found: impl FnMut(usize, u64)) {
    let mut h: u64 = 0;
    for (i, &b) in data.iter().enumerate() {
        h = (h << 1).wrapping_add(GEAR[usize::from(b)]);
        if i >= 63 && h & ANCHOR_MASK == 0 && h != ZERO_RUN {
            found(i, h);
        }
    }
}

/// What the generator knows about the source.
pub struct SourceIndex {
    /// Offset of the first source chunk with each hash.
    pub chunks: HashMap<ChunkHash, u64>,
    /// Position of the first anchor with each key.
    pub anchors: HashMap<u64, u64>,
}

impl SourceIndex {
    /// Indexes `source`, already chunked into `spans`.
    pub fn build(source: &[u8], spans: &[ChunkSpan]) -> SourceIndex {
        let mut chunks = HashMap::with_capacity(spans.len());
        for span in spans {
            chunks.entry(span.hash).or_insert(span.offset);
        }
        let mut anchors_map = HashMap::with_capacity(source.len() / 400);
        anchors(source, |pos, key| {
            anchors_map.entry(key).or_insert(pos as u64);
        });
        SourceIndex {
            chunks,
            anchors: anchors_map,
        }
    }

    /// Source offsets that align with the start of `chunk`, by anchor votes: the diagonals
    /// (source position − chunk position) the chunk's anchors agree on, with their vote
    /// counts, most votes first (ties: lower offset first).
    pub fn alignments(&self, chunk: &[u8]) -> Vec<(i64, u32)> {
        let mut votes: HashMap<i64, u32> = HashMap::new();
        anchors(chunk, |pos, key| {
            if let Some(&at) = self.anchors.get(&key) {
                // Positions are below 2^44 (the image limit): the casts cannot wrap.
                *votes.entry(at as i64 - pos as i64).or_insert(0) += 1;
            }
        });
        let mut ranked: Vec<(i64, u32)> = votes.into_iter().collect();
        ranked.sort_unstable_by_key(|&(diag, n)| (std::cmp::Reverse(n), diag));
        ranked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_finds_moved_content() {
        // Non-periodic bytes: the gear table itself, hashed forward.
        let mut state = 1u64;
        let source: Vec<u8> = (0..400_000)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (state >> 56) as u8
            })
            .collect();
        let index = SourceIndex::build(&source, &[]);
        let mut chunk = source[123_456..123_456 + 40_000].to_vec();
        chunk[20_000] ^= 0xff;
        assert_eq!(index.alignments(&chunk).first().map(|a| a.0), Some(123_456));
    }
}
