//! Indexes of the source image for the generator: exact chunks by hash (for copies) and
//! content-defined anchors (for finding where a changed chunk's old bytes lie, so its patch
//! gets the right base).

// Indexing here is by `u8` into 256-entry tables, or inside a const loop bounded by 256.
#![allow(clippy::indexing_slicing)]

use std::collections::HashMap;

use rayon::prelude::*;

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

/// An anchor is a position whose rolling hash has its top 7 bits zero: one per ~128 bytes,
/// dense enough to find moved bytes, sparse enough to keep the index small (the measurements: BENCHMARKS.md, "Tuning record").
const ANCHOR_MASK: u64 = 0x7f << 57;
/// Source positions kept per anchor key (the first ones). Content that recurs (common code,
/// tables, padding) has many places; keeping only the first one misleads the votes, keeping
/// too many adds false friends (the measurements: BENCHMARKS.md, "Tuning record").
const PLACES_PER_KEY: usize = 16;
/// Bytes an anchor key depends on. Rebuilt code changes an address every few dozen bytes, so a
/// long window finds no unchanged run to anchor on; a very short one recurs by chance
/// (the measurements: BENCHMARKS.md, "Tuning record").
const WINDOW: usize = 16;
/// Each byte shifts the hash by this many bits, so a byte leaves the top bits (and the key)
/// after [`WINDOW`] bytes.
const SHIFT: u32 = u64::BITS / WINDOW as u32;
/// The gear hash of [`WINDOW`] zero bytes: zero runs would anchor everywhere or nowhere, so
/// skip them.
const ZERO_RUN: u64 = {
    let mut h: u64 = 0;
    let mut i = 0;
    while i < WINDOW {
        h = (h << SHIFT).wrapping_add(GEAR[0]);
        i += 1;
    }
    h
};

/// Calls `found(position, key)` for every anchor in `data`; the key depends only on the
/// [`WINDOW`] bytes ending at `position`, so the same content yields the same key wherever it
/// lies.
pub fn anchors(data: &[u8], mut found: impl FnMut(usize, u64)) {
    let mut h: u64 = 0;
    for (i, &b) in data.iter().enumerate() {
        h = (h << SHIFT).wrapping_add(GEAR[usize::from(b)]);
        if i + 1 >= WINDOW && h & ANCHOR_MASK == 0 && h != ZERO_RUN {
            found(i, h);
        }
    }
}

/// What the generator knows about the source.
pub struct SourceIndex {
    /// Offset of the first source chunk with each hash.
    pub chunks: HashMap<ChunkHash, u64>,
    /// (key, position) of the source's anchors, sorted, at most [`PLACES_PER_KEY`] per key:
    /// 16 bytes per anchor, where a map of vectors would take several times that.
    anchors: Vec<(u64, u64)>,
}

/// A chunk's anchor found in the source: its position in the chunk, and the source positions
/// with the same key.
pub struct Hit<'a> {
    /// Position in the chunk.
    pub at: i64,
    /// (key, source position) entries of the index.
    places: &'a [(u64, u64)],
}

impl Hit<'_> {
    /// The source positions with this anchor's key.
    pub fn places(&self) -> impl Iterator<Item = i64> + '_ {
        // Positions are below 2^44 (the image limit): the casts cannot wrap.
        self.places.iter().map(|&(_, pos)| pos as i64)
    }
}

impl SourceIndex {
    /// Indexes `source`, already chunked into `spans`.
    pub fn build(source: &[u8], spans: &[ChunkSpan]) -> SourceIndex {
        let mut chunks = HashMap::with_capacity(spans.len());
        for span in spans {
            chunks.entry(span.hash).or_insert(span.offset);
        }
        let mut all = Vec::with_capacity(source.len() / 100);
        anchors(source, |pos, key| all.push((key, pos as u64)));
        all.par_sort_unstable();
        let mut kept: Vec<(u64, u64)> = Vec::with_capacity(all.len());
        let mut run = 0;
        for entry in all {
            run = match kept.last() {
                Some(last) if last.0 == entry.0 => run + 1,
                _ => 0,
            };
            if run < PLACES_PER_KEY {
                kept.push(entry);
            }
        }
        kept.shrink_to_fit();
        SourceIndex {
            chunks,
            anchors: kept,
        }
    }

    /// The anchors of `chunk` that the source also has, in chunk order.
    pub fn hits(&self, chunk: &[u8]) -> Vec<Hit<'_>> {
        let mut hits = Vec::new();
        anchors(chunk, |pos, key| {
            let start = self.anchors.partition_point(|e| e.0 < key);
            let end = self.anchors.partition_point(|e| e.0 <= key);
            if let Some(places) = self.anchors.get(start..end).filter(|p| !p.is_empty()) {
                // Positions inside a chunk are below 2^32: the cast cannot wrap.
                hits.push(Hit {
                    at: pos as i64,
                    places,
                });
            }
        });
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_find_moved_content() {
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
        let hits = index.hits(&chunk);
        assert!(hits.len() > 100, "{} anchors found", hits.len());
        assert!(
            hits.iter()
                .all(|h| h.places().any(|place| place - h.at == 123_456))
        );
    }
}
