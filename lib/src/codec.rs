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

use liblzma::stream::{Action, Filters, LzmaOptions, Status, Stream};
use rayon::prelude::*;
use zstd::zstd_safe::{self, CCtx, CParameter, DCtx};

#[cfg(feature = "generator")]
use crate::format::cursor::zigzag;
use crate::format::cursor::{put_varint, unzigzag};
use crate::format::{Cursor, GroupLayout};

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

fn window_log_for(len: usize) -> u32 {
    let bits = usize::BITS - len.saturating_sub(1).leading_zeros();
    bits.clamp(10, WINDOW_LOG_MAX)
}

fn compress(data: &[u8], level: i32) -> Vec<u8> {
    let mut cctx = CCtx::create();
    // Frame header trimmed to what a manifest does not already say: the declared chunk length
    // and hash make the content size and checksum redundant.
    let window = window_log_for(data.len());
    let params = [
        CParameter::CompressionLevel(level),
        CParameter::ContentSizeFlag(false),
        CParameter::ChecksumFlag(false),
        CParameter::DictIdFlag(false),
        CParameter::WindowLog(window),
    ];
    for p in params {
        // Every value above is within zstd's documented bounds.
        let _ = cctx.set_parameter(p);
    }
    let mut out = Vec::with_capacity(zstd_safe::compress_bound(data.len()));
    match cctx.compress2(&mut out, data) {
        Ok(_) => out,
        // compress_bound guarantees room; fall back to an empty frame never happens in practice,
        // but must not panic: callers compare sizes and keep the literal.
        Err(_) => Vec::new(),
    }
}

/// Compresses a chunk into a self-contained literal blob.
pub fn encode_literal(data: &[u8], level: i32) -> Vec<u8> {
    compress(data, level)
}

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

/// A patch's bsdiff-class content: control records, differences (kept both dense and sparse,
/// so either spelling is borrowed without work) and extra bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchContent {
    /// Control records.
    pub ctrl: Vec<u8>,
    /// Byte-wise differences, one per matched byte.
    diff: Vec<u8>,
    /// The sparse spelling of `diff`: gaps, then values.
    gaps: Vec<u8>,
    values: Vec<u8>,
    /// Extra (unmatched) bytes.
    extra: Vec<u8>,
}

impl PatchContent {
    /// Content of control records, dense differences and extra bytes.
    pub fn new(ctrl: Vec<u8>, diff: Vec<u8>, extra: Vec<u8>) -> PatchContent {
        let (mut gaps, mut values) = (Vec::new(), Vec::new());
        let mut zeros = 0u64;
        for &d in &diff {
            if d == 0 {
                zeros += 1;
            } else {
                put_varint(&mut gaps, zeros);
                values.push(d);
                zeros = 0;
            }
        }
        PatchContent {
            ctrl,
            diff,
            gaps,
            values,
            extra,
        }
    }

    /// The four stored streams (ctrl, gaps, values, extra), with the differences spelled
    /// sparsely or densely.
    pub fn streams(&self, sparse: bool) -> [&[u8]; 4] {
        match sparse {
            true => [&self.ctrl, &self.gaps, &self.values, &self.extra],
            false => [&self.ctrl, &[], &self.diff, &self.extra],
        }
    }

    /// The stored streams as [`PatchParts`].
    pub fn parts(&self, sparse: bool) -> PatchParts<'_> {
        let [ctrl, gaps, values, extra] = self.streams(sparse);
        PatchParts {
            ctrl,
            gaps,
            values,
            extra,
        }
    }

    /// Bytes of the stored streams.
    pub fn len(&self, sparse: bool) -> usize {
        self.streams(sparse).iter().map(|s| s.len()).sum()
    }

    /// The stored streams joined, as one blob-sized sample for size estimates.
    pub fn joined(&self, sparse: bool) -> Vec<u8> {
        self.streams(sparse).concat()
    }
}

/// Reads the differences (sparse or dense) back in order, in spans.
struct Differences<'a> {
    gaps: Cursor<'a>,
    values: std::slice::Iter<'a, u8>,
    dense: bool,
    /// Sparse: zero differences before the next value (after the last value: all the rest).
    zeros: u64,
    /// Sparse: the next value, if any.
    next: Option<u8>,
}

impl<'a> Differences<'a> {
    /// `total` differences from `gaps` and `values`: dense when there are no gaps and the
    /// values are all the differences (a sparse spelling has a gap per value), else sparse.
    fn new(gaps: &'a [u8], values: &'a [u8], total: usize) -> Result<Self, CodecError> {
        let mut d = Differences {
            gaps: Cursor::new(gaps),
            values: values.iter(),
            dense: gaps.is_empty() && values.len() == total && total > 0,
            zeros: 0,
            next: None,
        };
        if !d.dense {
            d.advance()?;
        }
        Ok(d)
    }

    /// Sparse: loads the next value and the zeros before it; after the last, zeros never
    /// run out.
    fn advance(&mut self) -> Result<(), CodecError> {
        self.next = self.values.next().copied();
        self.zeros = match self.next {
            Some(_) => self
                .gaps
                .varint("gap")
                .map_err(|_| CodecError::BadPatch("every difference value needs its gap"))?,
            None => u64::MAX,
        };
        Ok(())
    }

    /// Adds the next `out.len()` differences to `old` (as long as `out`) into `out`.
    fn apply(&mut self, old: &[u8], out: &mut [u8]) -> Result<(), CodecError> {
        if self.dense {
            for ((d, &o), &a) in out.iter_mut().zip(old).zip(self.values.by_ref()) {
                *d = o.wrapping_add(a);
            }
            return Ok(()); // the caller counts differences against the total
        }
        let mut at = 0;
        while at < out.len() {
            let room = out.len() - at;
            let run = usize::try_from(self.zeros).map_or(room, |z| z.min(room));
            if let (Some(dest), Some(src)) = (out.get_mut(at..at + run), old.get(at..at + run)) {
                dest.copy_from_slice(src);
            }
            at += run;
            self.zeros -= run as u64; // run <= zeros
            if at < out.len() {
                // zeros is 0 here and a value is next (after the last value, zeros never end).
                let value = self.next.ok_or(CodecError::BadPatch("difference values"))?;
                if let (Some(d), Some(&o)) = (out.get_mut(at), old.get(at)) {
                    *d = o.wrapping_add(value);
                }
                at += 1;
                self.advance()?;
            }
        }
        Ok(())
    }

    /// Whether every gap and value was used.
    fn finished(&self) -> bool {
        self.values.len() == 0 && self.next.is_none() && self.gaps.remaining() == 0
    }
}

/// The bsdiff-class content of `data` against `base`; `None` when matching fails or the
/// control stream would outgrow the chunk. bsdiff's matches (bidiff's suffix-array matcher),
/// with each match's differences cut where they cost more than the same bytes as extra
/// ([`noisy_spans`]), and neighbouring records on one diagonal joined.
#[cfg(feature = "generator")]
pub fn bsdiff_content(base: &[u8], data: &[u8]) -> Option<PatchContent> {
    if base.is_empty() {
        // bidiff's suffix-array search panics on an empty base.
        return None;
    }
    let mut matches = Vec::new();
    bidiff::diff(base, data, &bidiff::DiffParams::default(), |m| {
        matches.push(m);
        Ok::<(), std::io::Error>(())
    })
    .ok()?;
    content_of_matches(base, data, &matches)
}

/// The bsdiff-class content of `data` from bsdiff matches against `base` (each: differences
/// over `add_length` bytes, then extra bytes up to `copy_end`), split and joined as
/// [`bsdiff_content`] does. Public for the matcher comparison (`examples/matchers.rs`).
#[doc(hidden)]
#[cfg(feature = "generator")]
pub fn content_of_matches(
    base: &[u8],
    data: &[u8],
    matches: &[bidiff::Match],
) -> Option<PatchContent> {
    let mut records = Records::default();
    for m in matches {
        let old = base.get(m.add_old_start..)?.get(..m.add_length)?;
        let new = data.get(m.add_new_start..)?.get(..m.add_length)?;
        let mut at = 0;
        for (start, end) in noisy_spans(old, new) {
            records.differences(
                m.add_old_start + at,
                old.get(at..start)?,
                new.get(at..start)?,
            );
            records.extra(new.get(start..end)?);
            at = end;
        }
        records.differences(m.add_old_start + at, old.get(at..)?, new.get(at..)?);
        records.extra(data.get(m.copy_start()..m.copy_end)?);
    }
    let content = records.finish();
    (content.ctrl.len() <= data.len()).then_some(content)
}

/// Estimated cost, in tenths of a bit once compressed in a group, of one byte of a patch: a
/// difference that is zero (a run the gaps stream skips), a non-zero difference (its gap and
/// value), an extra byte; and of a control record, paid at each switch between differences
/// and extra bytes. Splitting matches by these costs fewer bytes than bsdiff's own choice;
/// records stored field by field (SPEC §6.1) are cheap, so a switch is priced low
/// (the measurements: BENCHMARKS.md, "Tuning record").
#[cfg(feature = "generator")]
const ZERO_DIFFERENCE_COST: u64 = 3;
#[cfg(feature = "generator")]
const DIFFERENCE_COST: u64 = 90;
#[cfg(feature = "generator")]
const EXTRA_COST: u64 = 60;
#[cfg(feature = "generator")]
const RECORD_COST: u64 = 100;

/// The spans (start, end) of a match's bytes, in order, cheaper sent as extra bytes than as
/// differences against `old`: the cheapest split of the match into difference and extra
/// runs, by the costs above (a two-state shortest path). bsdiff extends matches while at least
/// half their bytes agree, which keeps long stretches of unrelated bytes as differences.
#[cfg(feature = "generator")]
fn noisy_spans(old: &[u8], new: &[u8]) -> Vec<(usize, usize)> {
    // Per byte, the state each state's cheapest path came from: bit 0 for ending in
    // differences, bit 1 for ending in extra bytes (set = came from extra bytes).
    let mut from = Vec::with_capacity(new.len());
    let (mut diff, mut extra) = (0u64, RECORD_COST);
    for (&o, &n) in old.iter().zip(new) {
        let to_diff = (diff, extra + RECORD_COST);
        let to_extra = (diff + RECORD_COST, extra);
        from.push(u8::from(to_diff.1 < to_diff.0) | (u8::from(to_extra.1 <= to_extra.0) << 1));
        let byte = if o == n {
            ZERO_DIFFERENCE_COST
        } else {
            DIFFERENCE_COST
        };
        diff = to_diff.0.min(to_diff.1) + byte;
        extra = to_extra.0.min(to_extra.1) + EXTRA_COST;
    }
    // Walk back from the cheaper end (a match ends in differences unless extra bytes save
    // a record's worth).
    let mut in_extra = extra + RECORD_COST < diff;
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for (i, &bits) in from.iter().enumerate().rev() {
        if in_extra {
            match spans.last_mut() {
                Some(span) if span.0 == i + 1 => span.0 = i,
                _ => spans.push((i, i + 1)),
            }
        }
        in_extra = bits & (1 << u8::from(in_extra)) != 0;
    }
    spans.reverse();
    spans
}

/// Control records under construction: each is differences against the base from its
/// start, then extra bytes, then a seek to the next record's start.
#[derive(Default)]
#[cfg(feature = "generator")]
struct Records {
    ctrl: Vec<u8>,
    diff: Vec<u8>,
    extra: Vec<u8>,
    /// The open record: base position of its differences, their count, its extra count.
    open: Option<(usize, usize, usize)>,
    /// Where the next record's differences start in the base when none is open.
    old: usize,
}

#[cfg(feature = "generator")]
impl Records {
    /// `new` as differences against `old`, which starts at `at` in the base.
    fn differences(&mut self, at: usize, old: &[u8], new: &[u8]) {
        if new.is_empty() {
            return;
        }
        match self.open {
            // Continues the open record's differences on the same diagonal.
            Some((start, n, 0)) if start + n == at => self.open = Some((start, n + new.len(), 0)),
            _ => {
                if self.open.is_none() && at != self.old {
                    self.open = Some((self.old, 0, 0));
                }
                self.close(at);
                self.open = Some((at, new.len(), 0));
            }
        }
        self.diff
            .extend(new.iter().zip(old).map(|(&n, &o)| n.wrapping_sub(o)));
    }

    /// `new` as extra bytes.
    fn extra(&mut self, new: &[u8]) {
        if new.is_empty() {
            return;
        }
        let (start, n, e) = self.open.unwrap_or((self.old, 0, 0));
        self.open = Some((start, n, e + new.len()));
        self.extra.extend_from_slice(new);
    }

    /// Writes the open record, seeking to `next` (the next record's start in the base).
    fn close(&mut self, next: usize) {
        if let Some((start, n, e)) = self.open.take() {
            let end = start + n;
            put_varint(&mut self.ctrl, n as u64);
            put_varint(&mut self.ctrl, e as u64);
            // Positions are inside a base below 2^44: the casts cannot wrap.
            put_varint(&mut self.ctrl, zigzag(next as i64 - end as i64));
            self.old = next;
        }
    }

    fn finish(mut self) -> PatchContent {
        let end = self.open.map_or(self.old, |(start, n, _)| start + n);
        self.close(end);
        PatchContent::new(self.ctrl, self.diff, self.extra)
    }
}

/// The intervals of the base that control records `ctrl` read differences against, in order
/// (touching ones merged); `None` if the records are malformed.
pub fn base_reads(ctrl: &[u8]) -> Option<Vec<(u64, u64)>> {
    let mut c = Cursor::new(ctrl);
    let mut reads: Vec<(u64, u64)> = Vec::new();
    let mut old: i64 = 0;
    while c.remaining() > 0 {
        let d = i64::try_from(c.varint("difference count").ok()?).ok()?;
        c.varint("extra count").ok()?;
        let seek = unzigzag(c.varint("seek").ok()?);
        if d > 0 {
            let (start, end) = (u64::try_from(old).ok()?, u64::try_from(old + d).ok()?);
            match reads.last_mut() {
                Some(last) if last.1 == start => last.1 = end,
                _ => reads.push((start, end)),
            }
        }
        old = old.checked_add(d)?.checked_add(seek)?;
    }
    Some(reads)
}

/// The content that is `data` itself: one record of extra bytes, for a patch with an empty
/// base (new data compressed in its group's context).
pub fn raw_content(data: &[u8]) -> PatchContent {
    let mut ctrl = Vec::new();
    put_varint(&mut ctrl, 0);
    put_varint(&mut ctrl, data.len() as u64);
    put_varint(&mut ctrl, 0);
    PatchContent::new(ctrl, Vec::new(), data.to_vec())
}

/// Rebuilds a chunk from its bsdiff-class content and `base` into `out` (exactly the declared
/// chunk length).
pub fn decode_bsdiff_content(
    base: &[u8],
    parts: PatchParts<'_>,
    out: &mut [u8],
) -> Result<(), CodecError> {
    let bad = CodecError::BadPatch;
    let PatchParts {
        ctrl,
        gaps,
        values,
        extra,
    } = parts;
    let diff_total = out
        .len()
        .checked_sub(extra.len())
        .ok_or(bad("extra bytes must fit the chunk"))?;
    let mut diff = Differences::new(gaps, values, diff_total)?;
    let (mut ctrl, mut extra) = (Cursor::new(ctrl), Cursor::new(extra));
    let mut diff_done = 0usize;
    let mut old: u64 = 0;
    let mut at = 0usize;
    while ctrl.remaining() > 0 {
        let diff_n = ctrl
            .varint("difference count")
            .map_err(|_| bad("control record"))?;
        let extra_n = ctrl
            .varint("extra count")
            .map_err(|_| bad("control record"))?;
        let seek = unzigzag(ctrl.varint("seek").map_err(|_| bad("control record"))?);
        let diff_n = usize::try_from(diff_n).map_err(|_| bad("difference count"))?;
        let extra_n = usize::try_from(extra_n).map_err(|_| bad("extra count"))?;
        let from = usize::try_from(old).map_err(|_| bad("base position"))?;
        let old_bytes = from
            .checked_add(diff_n)
            .and_then(|end| base.get(from..end))
            .ok_or(bad("differences read past the base"))?;
        diff_done = diff_done
            .checked_add(diff_n)
            .filter(|&n| n <= diff_total)
            .ok_or(bad("difference count"))?;
        let dest = at
            .checked_add(diff_n)
            .and_then(|end| out.get_mut(at..end))
            .ok_or(bad("differences write past the chunk"))?;
        diff.apply(old_bytes, dest)?;
        at += diff_n;
        let copied = extra
            .take(extra_n, "extra")
            .map_err(|_| bad("extra count"))?;
        at.checked_add(extra_n)
            .and_then(|end| out.get_mut(at..end))
            .ok_or(bad("extra bytes write past the chunk"))?
            .copy_from_slice(copied);
        at += extra_n;
        old = i64::try_from(old)
            .ok()
            .and_then(|o| o.checked_add(i64::try_from(diff_n).ok()?))
            .and_then(|o| o.checked_add(seek))
            .and_then(|o| u64::try_from(o).ok())
            .filter(|&o| o <= base.len() as u64)
            .ok_or(bad("seek leaves the base"))?;
    }
    if at != out.len() || diff_done != diff_total || !diff.finished() || extra.remaining() != 0 {
        return Err(bad("records must produce exactly the chunk"));
    }
    Ok(())
}

fn decompress(blob: &[u8], out: &mut [u8]) -> Result<(), CodecError> {
    let want = out.len();
    match decompress_at_most(blob, out)? {
        n if n == want => Ok(()),
        n => Err(CodecError::TooShort { got: n }),
    }
}

/// Decodes one frame into `out`, which bounds the output: returns the bytes produced.
fn decompress_at_most(blob: &[u8], out: &mut [u8]) -> Result<usize, CodecError> {
    if blob.get(..4) != Some(&ZSTD_MAGIC[..]) {
        return Err(CodecError::NotOneFrame);
    }
    match zstd_safe::find_frame_compressed_size(blob) {
        Ok(n) if n == blob.len() => {}
        _ => return Err(CodecError::NotOneFrame),
    }
    // Single-shot decoding ignores WindowLogMax, so the limit is checked on the frame header:
    // byte 4 is the descriptor; unless Single_Segment (bit 5), byte 5 is the window
    // descriptor: exponent (top five bits, windowLog − 10) and mantissa in eighths (RFC 8878
    // §3.1.1.1.2). Single-segment frames use the content size, which `out` already bounds.
    let descriptor = blob.get(4).copied().ok_or(CodecError::NotOneFrame)?;
    if descriptor & 0x20 == 0 {
        let window = blob.get(5).copied().ok_or(CodecError::NotOneFrame)?;
        let log = 10 + u64::from(window >> 3);
        let size = (1u64 << log) + u64::from(window & 7) * ((1u64 << log) / 8);
        if size > 1 << WINDOW_LOG_MAX {
            return Err(CodecError::WindowTooLarge);
        }
    }
    let mut dctx = DCtx::create();
    // The buffer bounds the output: zstd stops with dstSize_tooSmall when the frame wants
    // more, whatever its header claims.
    match dctx.decompress(out, blob) {
        Ok(n) => Ok(n),
        Err(code)
            if zstd_safe::get_error_name(code).contains("Destination buffer is too small") =>
        {
            Err(CodecError::TooLong)
        }
        Err(code) => Err(CodecError::Corrupt(zstd_safe::get_error_name(code))),
    }
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

/// The head's: control records, gaps and values have no 2- or 4-byte structure (no position
/// bits), and a previous byte's high bits tell little about the next (one literal context
/// bit) (the measurements: BENCHMARKS.md, "Tuning record").
const HEAD_BITS: ContextBits = ContextBits { lc: 1, pb: 0 };

/// The extra bytes' literal context bits: the previous byte's high half predicts new code and
/// data (the measurements: BENCHMARKS.md, "Tuning record"). Their position bits are chosen per group ([`GroupExtra::new`]).
const EXTRA_LC: u32 = 4;

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

/// Compresses `data` into one raw stream of the group chain at `preset` with context bits
/// `bits`; empty if liblzma fails.
fn deflate(data: &[u8], preset: u32, filter: ExtraFilter, bits: ContextBits) -> Vec<u8> {
    let Some(filters) = group_filters(data.len(), preset, filter, bits) else {
        return Vec::new();
    };
    let Ok(mut stream) = Stream::new_raw_encoder(&filters) else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(data.len() / 2 + 1024);
    loop {
        let read = usize::try_from(stream.total_in()).unwrap_or(usize::MAX);
        if out.capacity() - out.len() < 4096 {
            out.reserve(out.capacity().max(4096));
        }
        let rest = data.get(read..).unwrap_or_default();
        match stream.process_vec(rest, &mut out, Action::Finish) {
            Ok(Status::StreamEnd) => return out,
            Ok(_) => {}
            Err(_) => return Vec::new(),
        }
    }
}

/// Preset 9, extreme: groups are compressed once and read by every device.
const GROUP_PRESET: u32 = 9 | liblzma::stream::PRESET_EXTREME;
/// A fast preset that ranks the branch filters before the chosen one is compressed in full.
const RANKING_PRESET: u32 = 3;

/// The preset of [`estimate_group_len`]: an LZMA estimate chooses between a patch and new
/// data better than a zstd one (the measurements: BENCHMARKS.md, "Tuning record").
const ESTIMATE_PRESET: u32 = 6;

/// What `data` compresses to as a group stream on its own, at a middle preset: the
/// generator's estimate when it chooses between encodings of a chunk.
pub fn estimate_group_len(data: &[u8]) -> usize {
    deflate(data, ESTIMATE_PRESET, ExtraFilter::None, PLAIN_BITS).len()
}

/// A group's extra bytes, compressed with the branch filter that made them smallest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupExtra {
    filter: ExtraFilter,
    stream: Vec<u8>,
}

impl GroupExtra {
    /// Compresses `extra` (all of a group's extra bytes) without a filter and with the branch
    /// filter that a fast pass ranks best, each with 0, 1 and 2 position bits, and keeps the
    /// smallest; `None` if liblzma fails. (New files are often code or tables with 2- or
    /// 4-byte fields, which position bits model; text compresses better with none.)
    pub fn new(extra: &[u8]) -> Option<GroupExtra> {
        let ranked = [ExtraFilter::X86, ExtraFilter::Arm64, ExtraFilter::ArmThumb]
            .into_par_iter()
            .min_by_key(|&f| deflate(extra, RANKING_PRESET, f, PLAIN_BITS).len())?;
        [ExtraFilter::None, ranked]
            .into_par_iter()
            .flat_map_iter(|filter| [0, 1, 2].map(|pb| (filter, ContextBits { lc: EXTRA_LC, pb })))
            .map(|(filter, bits)| GroupExtra {
                filter,
                stream: deflate(extra, GROUP_PRESET, filter, bits),
            })
            .filter(|e| !e.stream.is_empty())
            .min_by_key(|e| e.stream.len())
    }

    /// The filter chosen.
    pub fn filter(&self) -> ExtraFilter {
        self.filter
    }
}

/// Encodes a patch group blob (SPEC.md §6.1): the extra bytes' filter byte, then `head` (the
/// members' control records, difference gaps and difference values, stream by stream; the
/// records are its first `gaps_at` bytes, stored field by field) as one raw LZMA2 stream
/// (preset 9, extreme), then the extra bytes' stream. Neighbouring patches share one entropy
/// context and match each other's bytes. Empty if liblzma fails or the first `gaps_at` bytes
/// are not whole control records.
pub fn encode_group(head: &[u8], gaps_at: usize, extra: &GroupExtra) -> Vec<u8> {
    let Some((records, rest)) = head.split_at_checked(gaps_at) else {
        return Vec::new();
    };
    let Some(mut stored) = split_records(records) else {
        return Vec::new();
    };
    stored.extend_from_slice(rest);
    let first = deflate(&stored, GROUP_PRESET, ExtraFilter::None, HEAD_BITS);
    if first.is_empty() {
        return Vec::new();
    }
    let mut blob = Vec::with_capacity(1 + first.len() + extra.stream.len());
    blob.push(extra.filter as u8);
    blob.extend_from_slice(&first);
    blob.extend_from_slice(&extra.stream);
    blob
}

/// Decodes a group blob into its content, laid out as `layout` says (from the signed manifest,
/// which bounds the output and the dictionaries), from exactly the blob's bytes: its control
/// records back in record order.
pub fn decode_group(blob: &[u8], layout: &GroupLayout) -> Result<Vec<u8>, CodecError> {
    let bad = CodecError::BadGroup;
    // u32 fits usize on every supported target.
    let [len, gaps_at, extra_at] =
        [layout.len, layout.gaps_at, layout.extra_at].map(|v| v as usize);
    if gaps_at > extra_at {
        return Err(bad("gaps start past the extra bytes"));
    }
    let (&filter, streams) = blob.split_first().ok_or(bad("empty blob"))?;
    let filter = ExtraFilter::from_byte(filter).ok_or(bad("unknown extra-bytes filter"))?;
    if extra_at > len {
        return Err(bad("extra bytes start past the end"));
    }
    // One spare byte after each stream's bytes: a stream that would decode past its length
    // shows itself by filling it (the head's spare is the extra bytes' first, decoded next).
    let mut content = vec![0u8; len.saturating_add(1)];
    let head = content
        .get_mut(..=extra_at)
        .ok_or(bad("extra bytes start"))?;
    let used = inflate(streams, head, ExtraFilter::None)?;
    let rest = streams.get(used..).unwrap_or_default();
    let extra = content
        .get_mut(extra_at..)
        .ok_or(bad("extra bytes start"))?;
    if inflate(rest, extra, filter)? != rest.len() {
        return Err(bad("bytes after the end of the stream"));
    }
    content.truncate(len);
    let records = content.get_mut(..gaps_at).ok_or(bad("gaps start"))?;
    let stored = records.to_vec();
    join_records(&stored, records)?;
    Ok(content)
}

/// A group's control records (three varints each: differences `d`, extra bytes `e`, seek
/// `k`) as stored (SPEC.md §6.1): every `d`, then every `e`, then the first byte of every
/// `k`, then the other bytes of the `k`s, each in record order. Like fields side by side
/// compress better than whole records (a seek's first byte is its low bits, nearly random,
/// its other bytes mostly small) (the measurements: BENCHMARKS.md, "Tuning record").
/// `None` if `records` are not whole records.
fn split_records(records: &[u8]) -> Option<Vec<u8>> {
    let (mut ds, mut es, mut firsts, mut rests) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut varints = varints(records);
    while let Some(d) = varints.next() {
        let (e, k) = (varints.next()?, varints.next()?);
        ds.extend_from_slice(d?);
        es.extend_from_slice(e?);
        let (first, rest) = k?.split_first()?;
        firsts.push(*first);
        rests.extend_from_slice(rest);
    }
    Some([ds, es, firsts, rests].concat())
}

/// Rebuilds control records in record order from their stored form into `out` (as long):
/// the inverse of [`split_records`]. The number of records is a third of the varints, which
/// end at the bytes below `0x80`.
fn join_records(stored: &[u8], out: &mut [u8]) -> Result<(), CodecError> {
    let bad = || CodecError::BadGroup("control records");
    let ends = stored.iter().filter(|&&b| b < 0x80).count();
    if ends % 3 != 0 {
        return Err(bad());
    }
    let count = ends / 3;
    let field_len = |varints: &mut dyn Iterator<Item = Option<&[u8]>>| -> Option<usize> {
        varints.take(count).map(|v| v.map(<[u8]>::len)).sum()
    };
    let mut all = varints(stored);
    let d_len = field_len(&mut all).ok_or_else(bad)?;
    let e_len = field_len(&mut all).ok_or_else(bad)?;
    let (ds, rest) = stored.split_at_checked(d_len).ok_or_else(bad)?;
    let (es, rest) = rest.split_at_checked(e_len).ok_or_else(bad)?;
    let (firsts, mut rests) = rest.split_at_checked(count).ok_or_else(bad)?;
    let (mut ds, mut es) = (varints(ds), varints(es));
    let mut free = out;
    let mut put = |bytes: &[u8]| -> Result<(), CodecError> {
        let (to, rest) = std::mem::take(&mut free)
            .split_at_mut_checked(bytes.len())
            .ok_or_else(bad)?;
        to.copy_from_slice(bytes);
        free = rest;
        Ok(())
    };
    for first in firsts.chunks(1) {
        let (Some(Some(d)), Some(Some(e))) = (ds.next(), es.next()) else {
            return Err(bad());
        };
        put(d)?;
        put(e)?;
        put(first)?;
        if first.first().is_some_and(|&b| b >= 0x80) {
            let end = rests.iter().position(|&b| b < 0x80).ok_or_else(bad)?;
            let (k, after) = rests.split_at_checked(end + 1).ok_or_else(bad)?;
            put(k)?;
            rests = after;
        }
    }
    if !rests.is_empty() || !free.is_empty() {
        return Err(bad());
    }
    Ok(())
}

/// The varints of `bytes`, each with its bytes up to the one below `0x80`; `None` for bytes
/// that end inside a varint.
fn varints(bytes: &[u8]) -> impl Iterator<Item = Option<&[u8]>> {
    bytes
        .split_inclusive(|&b| b < 0x80)
        .map(|v| v.last().is_some_and(|&b| b < 0x80).then_some(v))
}

/// Decodes the raw stream at the start of `input` into exactly `out.len() - 1` bytes (the
/// last byte of `out` is spare: a longer stream fills it); returns the input bytes the stream
/// took.
fn inflate(input: &[u8], out: &mut [u8], filter: ExtraFilter) -> Result<usize, CodecError> {
    let bad = CodecError::BadGroup;
    let len = out.len().saturating_sub(1);
    let filters = group_filters(len, 0, filter, PLAIN_BITS).ok_or(bad("LZMA2 options"))?;
    let mut stream = Stream::new_raw_decoder(&filters).map_err(|_| bad("LZMA2 decoder"))?;
    loop {
        let (read, written) = (stream.total_in(), stream.total_out());
        let rest = usize::try_from(read).ok().and_then(|r| input.get(r..));
        let output = usize::try_from(written).ok().and_then(|w| out.get_mut(w..));
        let (Some(rest), Some(output)) = (rest, output) else {
            return Err(bad("stream position"));
        };
        let status = stream
            .process(rest, output, Action::Finish)
            .map_err(|_| bad("corrupt LZMA2 stream"))?;
        if status == Status::StreamEnd {
            break;
        }
        if (stream.total_in(), stream.total_out()) == (read, written) {
            return Err(if stream.total_out() as usize > len {
                bad("content longer than declared")
            } else {
                bad("stream truncated")
            });
        }
    }
    if stream.total_out() != len as u64 {
        return Err(if stream.total_out() > len as u64 {
            bad("content longer than declared")
        } else {
            bad("content shorter than declared")
        });
    }
    // At most the input's length: the decoder never reads past it.
    Ok(usize::try_from(stream.total_in()).unwrap_or(usize::MAX))
}

/// Decodes a literal blob into `out`, which has exactly the declared chunk length.
pub fn decode_literal(blob: &[u8], out: &mut [u8]) -> Result<(), CodecError> {
    decompress(blob, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_round_trips_and_is_capped() {
        let data = vec![7u8; 100_000];
        let blob = encode_literal(&data, 3);
        let mut out = vec![0u8; data.len()];
        decode_literal(&blob, &mut out).unwrap();
        assert_eq!(out, data);
        let mut small = vec![0u8; 1000];
        assert_eq!(decode_literal(&blob, &mut small), Err(CodecError::TooLong));
        let mut big = vec![0u8; 100_001];
        assert_eq!(
            decode_literal(&blob, &mut big),
            Err(CodecError::TooShort { got: 100_000 })
        );
    }

    #[test]
    fn concatenated_and_trailing_frames_are_rejected() {
        let blob = encode_literal(b"hello", 3);
        let mut twice = blob.clone();
        twice.extend_from_slice(&blob);
        let mut out = [0u8; 10];
        assert_eq!(
            decode_literal(&twice, &mut out),
            Err(CodecError::NotOneFrame)
        );
        let mut trailing = blob.clone();
        trailing.push(0);
        assert_eq!(
            decode_literal(&trailing, &mut out[..5]),
            Err(CodecError::NotOneFrame)
        );
        assert_eq!(
            decode_literal(&blob[..blob.len() - 1], &mut out[..5]),
            Err(CodecError::NotOneFrame)
        );
    }

    #[test]
    fn window_above_the_limit_is_rejected() {
        // A frame header declaring windowLog 31: magic, descriptor without single segment,
        // window descriptor (31 − 10) << 3, then an empty last raw block.
        let frame = [0x28, 0xb5, 0x2f, 0xfd, 0x00, 21 << 3, 0x01, 0x00, 0x00];
        let mut out = [0u8; 4];
        assert_eq!(
            decode_literal(&frame, &mut out),
            Err(CodecError::WindowTooLarge)
        );
    }

    /// The group blob of `content`, laid out as `layout` says.
    fn group(content: &[u8], layout: &GroupLayout) -> Vec<u8> {
        let (head, extra) = content.split_at(layout.extra_at as usize);
        encode_group(
            head,
            layout.gaps_at as usize,
            &GroupExtra::new(extra).unwrap(),
        )
    }

    fn layout(len: usize, gaps_at: usize, extra_at: usize) -> GroupLayout {
        let [len, gaps_at, extra_at] = [len, gaps_at, extra_at].map(|n| n as u32);
        GroupLayout {
            len,
            gaps_at,
            extra_at,
        }
    }

    /// Encodes `data` against `base` as a group of one, with the differences spelled each way,
    /// checks both decode back to `data`, and returns the smaller blob's length.
    #[cfg(feature = "generator")]
    fn round_trip(base: &[u8], data: &[u8]) -> usize {
        let content = bsdiff_content(base, data).unwrap();
        let mut sizes = Vec::new();
        for sparse in [false, true] {
            let [c, g, v, _] = content.streams(sparse).map(<[u8]>::len);
            let layout = layout(content.len(sparse), c, c + g + v);
            let blob = group(&content.joined(sparse), &layout);
            let decoded = decode_group(&blob, &layout).unwrap();
            let (ctrl, rest) = decoded.split_at(c);
            let (gaps, rest) = rest.split_at(g);
            let (values, extra) = rest.split_at(v);
            let parts = PatchParts {
                ctrl,
                gaps,
                values,
                extra,
            };
            let mut out = vec![0u8; data.len()];
            decode_bsdiff_content(base, parts, &mut out).unwrap();
            assert_eq!(out, data, "sparse: {sparse}");
            sizes.push(blob.len());
        }
        sizes.into_iter().min().unwrap_or(0)
    }

    #[test]
    #[cfg(feature = "generator")]
    fn unrelated_bytes_inside_a_match_become_extra_bytes() {
        let old: Vec<u8> = (0..3000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        // Bytes 1000..2000 agree with the old ones only one time in four: as differences they
        // cost more than as extra bytes. Half agreeing is still cheaper as differences.
        let mut new = old.clone();
        for i in 1000..2000 {
            if i % 4 != 0 {
                new[i] = old[i] ^ 0x5a;
            }
        }
        let spans = noisy_spans(&old, &new);
        assert_eq!(spans.len(), 1, "{spans:?}");
        let (start, end) = spans[0];
        assert!(
            (1000..1004).contains(&start) && (1996..=2000).contains(&end),
            "{spans:?}"
        );
        let mut half = old.clone();
        for i in (1000..2000).step_by(2) {
            half[i] ^= 0x5a;
        }
        assert!(noisy_spans(&old, &half).is_empty());
        assert!(noisy_spans(&old, &old).is_empty());
        // The split patch still rebuilds the data.
        round_trip(&old, &new);
    }

    #[test]
    #[cfg(feature = "generator")]
    fn patch_uses_the_base() {
        let base: Vec<u8> = (0..200_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
            .collect();
        let mut data = base[1000..101_000].to_vec();
        data[500] ^= 1;
        let len = round_trip(&base, &data);
        assert!(len < 200, "patch is {len} bytes");
        // Against the wrong base the content rebuilds other bytes of the right length (the
        // chunk hash catches that) or fails; it must not panic.
        let content = bsdiff_content(&base, &data).unwrap();
        let mut out = vec![0u8; data.len()];
        for sparse in [false, true] {
            let _ = decode_bsdiff_content(&base[1..], content.parts(sparse), &mut out);
            let _ = decode_bsdiff_content(&base[..10], content.parts(sparse), &mut out);
        }
        assert_eq!(bsdiff_content(&[], &data), None);
    }

    #[test]
    #[cfg(feature = "generator")]
    fn bsdiff_turns_moved_addresses_into_repeated_differences() {
        // "Code" whose 4-byte addresses all grow by 0x40 after an insertion: the differences
        // are one repeated small value, where an LZ77 coder must restart at every address.
        let mut base = Vec::new();
        let mut data = Vec::new();
        let mut x: u32 = 1;
        for i in 0..16_000u32 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let op = (x >> 16) as u8;
            base.extend_from_slice(&[op, 0x8b, 0x05]);
            base.extend_from_slice(&(0x40_0000 + i * 8).to_le_bytes());
            data.extend_from_slice(&[op, 0x8b, 0x05]);
            data.extend_from_slice(&(0x40_0040 + i * 8).to_le_bytes());
        }
        let literal = encode_literal(&data, 19);
        let len = round_trip(&base, &data);
        assert!(
            len * 20 < literal.len(),
            "patch {len} vs literal {}",
            literal.len()
        );
    }

    #[test]
    fn group_round_trips_and_holds_its_length() {
        let content: Vec<u8> = (0..300_000u32)
            .map(|i| (i % 251) as u8 ^ (i >> 12) as u8)
            .collect();
        let (len, at) = (content.len(), 100_000);
        let blob = group(&content, &layout(len, 0, at));
        assert!(!blob.is_empty() && blob.len() < content.len() / 10);
        assert_eq!(decode_group(&blob, &layout(len, 0, at)).unwrap(), content);
        assert_eq!(
            decode_group(&blob, &layout(len - 1, 0, at)),
            Err(CodecError::BadGroup("content longer than declared"))
        );
        assert_eq!(
            decode_group(&blob, &layout(len + 1, 0, at)),
            Err(CodecError::BadGroup("content shorter than declared"))
        );
        // The first stream holds exactly the bytes before the extra bytes.
        for wrong in [at - 1, at + 1] {
            assert!(matches!(
                decode_group(&blob, &layout(len, 0, wrong)),
                Err(CodecError::BadGroup(_))
            ));
        }
        assert_eq!(
            decode_group(&blob, &layout(len, 0, len + 1)),
            Err(CodecError::BadGroup("extra bytes start past the end"))
        );
        assert_eq!(
            decode_group(&blob, &layout(len, at + 1, at)),
            Err(CodecError::BadGroup("gaps start past the extra bytes"))
        );
        let mut trailing = blob.clone();
        trailing.push(0);
        assert_eq!(
            decode_group(&trailing, &layout(len, 0, at)),
            Err(CodecError::BadGroup("bytes after the end of the stream"))
        );
        assert!(decode_group(&blob[..blob.len() - 1], &layout(len, 0, at)).is_err());
        let mut unknown = blob.clone();
        unknown[0] = 4;
        assert_eq!(
            decode_group(&unknown, &layout(len, 0, at)),
            Err(CodecError::BadGroup("unknown extra-bytes filter"))
        );
        assert_eq!(
            decode_group(&[], &layout(0, 0, 0)),
            Err(CodecError::BadGroup("empty blob"))
        );
        for flip in [0, blob.len() / 2, blob.len() - 1] {
            let mut bad = blob.clone();
            bad[flip] ^= 0x55;
            // Corrupt streams fail or decode to other bytes of the declared length (the chunk
            // hashes catch those); they never panic or run past the length.
            if let Ok(out) = decode_group(&bad, &layout(len, 0, at)) {
                assert_eq!(out.len(), len);
            }
        }
        let empty = layout(0, 0, 0);
        assert_eq!(
            decode_group(&group(&[], &empty), &empty).unwrap(),
            Vec::<u8>::new()
        );
    }

    #[test]
    fn control_records_are_stored_field_by_field() {
        // Records (d, e, k): (1, 2, 3), (300, 0, 200), (0, 5, 0): k = 200 takes two bytes.
        let mut records = Vec::new();
        for v in [1u64, 2, 3, 300, 0, 200, 0, 5, 0] {
            put_varint(&mut records, v);
        }
        let stored = split_records(&records).unwrap();
        // Every d, every e, the first byte of every k, then the rest of the ks.
        let expected = [1, 0xac, 0x02, 0, 2, 0, 5, 3, 0xc8, 0, 0x01];
        assert_eq!(stored, expected);
        let mut out = vec![0u8; stored.len()];
        join_records(&stored, &mut out).unwrap();
        assert_eq!(out, records);
        // A group whose head starts with them decodes back to record order.
        let mut content = records.clone();
        content.extend_from_slice(b"gaps and values, then extra");
        let layout = layout(content.len(), records.len(), content.len() - 5);
        assert_eq!(
            decode_group(&group(&content, &layout), &layout).unwrap(),
            content
        );
        // Not whole records: the generator refuses them, a reader fails the group.
        assert_eq!(split_records(&records[..records.len() - 1]), None);
        assert_eq!(split_records(&[0x80]), None);
        for bad in [
            &stored[..stored.len() - 1],
            &[0, 0][..],
            &[0, 0, 0x80, 0x80][..],
        ] {
            let mut out = vec![0u8; bad.len()];
            assert_eq!(
                join_records(bad, &mut out),
                Err(CodecError::BadGroup("control records")),
                "{bad:?}"
            );
        }
        // A seek's first byte says more follow and none do; bytes left over after the seeks.
        for bad in [&[0, 0, 0x80][..], &[0, 0, 0, 0x80][..]] {
            let mut out = vec![0u8; bad.len()];
            assert!(join_records(bad, &mut out).is_err(), "{bad:?}");
        }
        // Any bytes with a third of their varints ending in each field join: the record
        // reader then judges them (here a seek spelled in two bytes, not minimal).
        let mut out = [0u8; 4];
        join_records(&[0, 0, 0x80, 0], &mut out).unwrap();
        assert_eq!(out, [0, 0, 0x80, 0]);
    }

    #[test]
    fn machine_code_extra_bytes_take_their_branch_filter() {
        // x86 calls (E8 rel32) to a few functions from everywhere: relative targets all differ,
        // absolute ones repeat.
        let mut code = Vec::new();
        for i in 0..20_000u32 {
            let at = code.len() as u32;
            let target = 0x40_0000 + (i % 16) * 0x1000;
            code.push(0xe8);
            code.extend_from_slice(&target.wrapping_sub(at + 5).to_le_bytes());
            code.extend_from_slice(&[0x48, 0x89, (i % 7) as u8]);
        }
        let extra = GroupExtra::new(&code).unwrap();
        assert_eq!(extra.filter(), ExtraFilter::X86);
        let blob = encode_group(b"head", 0, &extra);
        let content = decode_group(&blob, &layout(4 + code.len(), 0, 4)).unwrap();
        assert_eq!(&content[..4], b"head");
        assert_eq!(&content[4..], &code[..]);
        // Text keeps no filter.
        let text = b"the quick brown fox jumps over the lazy dog. ".repeat(2000);
        assert_eq!(GroupExtra::new(&text).unwrap().filter(), ExtraFilter::None);
    }

    #[test]
    fn bsdiff_records_outside_the_base_or_the_chunk_are_refused() {
        let base = [1u8, 2, 3, 4];
        let mut out = [0u8; 4];
        // Differences given densely here, spelled both ways for the decoder: both must agree.
        let decode = |ctrl: &[u8], diff: &[u8], extra: &[u8], out: &mut [u8]| {
            let content = PatchContent::new(ctrl.to_vec(), diff.to_vec(), extra.to_vec());
            let results = [false, true].map(|sparse| {
                let mut buf = vec![0u8; out.len()];
                decode_bsdiff_content(&base, content.parts(sparse), &mut buf).map(|()| buf)
            });
            let [dense, sparse] = results;
            assert_eq!(dense.is_ok(), sparse.is_ok(), "{ctrl:?} {diff:?}");
            sparse.map(|buf| out.copy_from_slice(&buf))
        };
        // Good: 2 differences, 2 extra bytes.
        decode(&[2, 2, 0], &[1, 1], &[9, 9], &mut out).unwrap();
        assert_eq!(out, [2, 3, 9, 9]);
        decode(&[4, 0, 0], &[0; 4], &[], &mut out).unwrap();
        decode(&[1, 0, 0, 3, 0, 0], &[0, 0, 0, 5], &[], &mut out).unwrap();
        assert_eq!(out, [1, 2, 3, 9], "zeros and values run across records");
        for (ctrl, diff, extra) in [
            (&[5u8, 0, 0][..], &[0u8; 5][..], &[][..]), // more than the chunk
            (&[2, 0, 20, 2, 0, 0], &[0; 4], &[]),       // seek past the base
            (&[2, 0, 7, 2, 0, 0], &[0; 4], &[]),        // seek back below 0
            (&[2, 2, 0], &[0; 2], &[0; 1]),             // extra stream too short
            (&[2, 1, 0], &[0; 2], &[0; 2]),             // stream left over
            (&[2, 1, 0], &[0, 0, 7], &[0]),             // a difference value left over
            (&[0x80], &[0; 2], &[0; 2]),                // truncated record
        ] {
            let r = decode(ctrl, diff, extra, &mut out);
            assert!(matches!(r, Err(CodecError::BadPatch(_))), "{ctrl:?}: {r:?}");
        }
        // A value without its gap, and a gap without its value.
        let ctrl = [4u8, 0, 0];
        for (gaps, values) in [(&[][..], &[1u8][..]), (&[0, 1], &[1])] {
            let parts = PatchParts {
                ctrl: &ctrl,
                gaps,
                values,
                extra: &[],
            };
            let r = decode_bsdiff_content(&base, parts, &mut out);
            assert!(matches!(r, Err(CodecError::BadPatch(_))), "{gaps:?}: {r:?}");
        }
    }
}
