//! Blob codecs: zstd literals, and patch groups (LZMA2) of bsdiff-class patch contents.
//!
//! - A **literal** is one zstd frame. Decoding is single-shot into a buffer of exactly the
//!   declared chunk length, so a blob can never produce more than the manifest allows, and no
//!   window buffer is allocated whatever the frame header claims.
//! - A **patch** is bsdiff-class content: bsdiff's approximate matches (via `bidiff`'s
//!   suffix-array matcher) against the chunk's base, cut where unrelated bytes inside a match
//!   cost less as extra bytes than as differences, stored as control records, byte-wise
//!   differences and extra bytes. When code moves, the addresses inside it change by the same
//!   amount, so the differences are runs of a few repeated values that compress to almost
//!   nothing. The content decodes without the base; only rebuilding the chunk reads it.
//! - A **patch group** holds its members' contents, stream by stream, in two raw LZMA2
//!   streams: the head (control records, stored field by field, then gaps and values),
//!   then the extra bytes behind the branch filter ([`ExtraFilter`]) that suits them.
//!   Neighbouring patches share one entropy context and match each other's new bytes. Its
//!   lengths,
//!   from the signed manifest, bound the output and the dictionaries.
//!
//! The decoders (`decode`) face hostile bytes on the device; the encoders (`encode`, the
//! release side's `generator` feature) produce what they accept. This file holds what both
//! share: the error, the patch's stored streams, the branch filters and the LZMA2 chain.

use liblzma::stream::{Filters, LzmaOptions};

mod decode;
#[cfg(feature = "generator")]
mod encode;
#[cfg(test)]
#[cfg(feature = "generator")]
mod tests;

pub use decode::{decode_bsdiff_content, decode_group, decode_literal};
#[cfg(feature = "generator")]
pub use encode::{
    GroupExtra, PatchContent, base_reads, bsdiff_content, content_of_matches, encode_group,
    encode_literal, estimate_group_len, raw_content,
};

/// The first four bytes of a zstd frame.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// Largest window a frame may declare (128 MiB); frames declaring more are refused.
const WINDOW_LOG_MAX: u32 = 27;

/// Why a blob did not decode: each variant names the rule that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodecError {
    /// The blob is not exactly one zstd frame (bad magic, skippable or concatenated frames,
    /// trailing bytes, or truncated).
    NotOneFrame,
    /// The frame decodes to more bytes than the manifest declares for the chunk.
    TooLong,
    /// The frame decodes to fewer bytes than the manifest declares.
    TooShort {
        /// Bytes produced.
        got: usize,
    },
    /// The frame declares a window above 2^27 bytes.
    WindowTooLarge,
    /// zstd rejected the frame.
    Corrupt(&'static str),
    /// A bsdiff-class patch's records break a rule (they must stay inside the base and
    /// produce exactly the chunk).
    BadPatch(&'static str),
    /// A patch group blob is not a known filter byte and two raw streams decoding to exactly
    /// the group's declared head and extra lengths.
    BadGroup(&'static str),
}

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CodecError::NotOneFrame => write!(f, "blob is not exactly one zstd frame"),
            CodecError::TooLong => write!(f, "blob decodes to more than the declared chunk length"),
            CodecError::TooShort { got } => {
                write!(f, "blob decodes to {got} bytes, fewer than declared")
            }
            CodecError::WindowTooLarge => write!(f, "zstd frame window larger than 128 MiB"),
            CodecError::Corrupt(why) => write!(f, "corrupt zstd frame: {why}"),
            CodecError::BadPatch(why) => write!(f, "malformed bsdiff-class patch: {why}"),
            CodecError::BadGroup(why) => write!(f, "malformed patch group: {why}"),
        }
    }
}

impl std::error::Error for CodecError {}

/// A patch's bsdiff-class content as stored in its group, four streams: control records
/// (`varint diff_n ‖ varint extra_n ‖ zigzag-varint seek` each); the byte-wise differences
/// against the base, as *gaps* and *values*; and the extra bytes. The differences are spelled
/// either *sparsely* (for each non-zero difference a gap, the varint count of zero
/// differences before it, and its value; zeros after the last value are implied) or
/// *densely* (no gaps; the values are every difference). Differences are mostly zero with a
/// few repeating values (addresses that moved by the same amount): sparse usually compresses
/// smaller and lets a group of a given size hold far more members; dense is smaller where most
/// differences are non-zero (the measurements: BENCHMARKS.md, "Tuning record"). A group stores each stream of all its members together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchParts<'a> {
    /// Control records.
    pub ctrl: &'a [u8],
    /// Zero runs before each non-zero difference; empty when dense.
    pub gaps: &'a [u8],
    /// The non-zero differences, or when dense all of them.
    pub values: &'a [u8],
    /// Extra (unmatched) bytes.
    pub extra: &'a [u8],
}

/// The LZMA2 dictionary for a stream of `len` bytes: all of it (rounded up to 4 KiB,
/// liblzma's minimum), so every earlier byte is in reach and the decoder needs no more memory
/// than the content itself.
fn group_dict_size(len: usize) -> u32 {
    let rounded = len.div_ceil(4096).max(1).saturating_mul(4096);
    u32::try_from(rounded).unwrap_or(u32::MAX)
}

/// A branch filter for a group's extra bytes (SPEC.md §6.1): before compression it rewrites
/// the relative targets of calls and jumps in machine code to absolute ones, so calls to one
/// function repeat; the decoder undoes it. New code in a release is mostly machine code
/// (the measurements: BENCHMARKS.md, "Tuning record"). Each group keeps whichever is smallest, so other data and other instruction
/// sets cost nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExtraFilter {
    /// No filter.
    None = 0,
    /// x86 and x86-64 (`CALL`/`JMP` rel32).
    X86 = 1,
    /// ARM64 (`BL`, `ADRP`).
    Arm64 = 2,
    /// ARM Thumb-2 (`BL`): 32-bit ARM stations.
    ArmThumb = 3,
}

impl ExtraFilter {
    const ALL: [ExtraFilter; 4] = [
        ExtraFilter::None,
        ExtraFilter::X86,
        ExtraFilter::Arm64,
        ExtraFilter::ArmThumb,
    ];

    fn from_byte(b: u8) -> Option<ExtraFilter> {
        ExtraFilter::ALL.into_iter().find(|f| *f as u8 == b)
    }
}

/// LZMA2's context bits for one stream: how many high bits of the previous byte select a
/// literal's model (`lc`), and how many low bits of the position (`pb`). The decoder reads
/// them from the stream.
#[derive(Debug, Clone, Copy)]
struct ContextBits {
    lc: u32,
    pb: u32,
}

/// LZMA2's default literal context, without position bits: the generator's estimates and
/// its ranking of branch filters.
const PLAIN_BITS: ContextBits = ContextBits { lc: 3, pb: 0 };

/// The raw filter chain of one group stream of `len` bytes: the branch filter, if any, then
/// LZMA2 with context bits `bits`.
fn group_filters(
    len: usize,
    preset: u32,
    filter: ExtraFilter,
    bits: ContextBits,
) -> Option<Filters> {
    let mut options = LzmaOptions::new_preset(preset).ok()?;
    options
        .dict_size(group_dict_size(len))
        .literal_context_bits(bits.lc)
        .position_bits(bits.pb);
    let mut filters = Filters::new();
    match filter {
        ExtraFilter::None => &mut filters,
        ExtraFilter::X86 => filters.x86(),
        ExtraFilter::Arm64 => filters.arm64(),
        ExtraFilter::ArmThumb => filters.arm_thumb(),
    };
    filters.lzma2(&options);
    Some(filters)
}

/// The varints of `bytes`, each with its bytes up to the one below `0x80`; `None` for bytes
/// that end inside a varint.
fn varints(bytes: &[u8]) -> impl Iterator<Item = Option<&[u8]>> {
    bytes
        .split_inclusive(|&b| b < 0x80)
        .map(|v| v.last().is_some_and(|&b| b < 0x80).then_some(v))
}
