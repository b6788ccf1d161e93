//! The release side's encoders: literals, bsdiff-class patch contents and patch groups, and
//! the size estimates the generator chooses by. What they write, the decoders read.

use liblzma::stream::{Action, Status, Stream};
use rayon::prelude::*;
use zstd::zstd_safe::{self, CCtx, CParameter};

use super::{
    ContextBits, ExtraFilter, PLAIN_BITS, PatchParts, WINDOW_LOG_MAX, group_filters, varints,
};
use crate::format::Cursor;
use crate::format::cursor::{put_varint, unzigzag, zigzag};

fn window_log_for(len: usize) -> u32 {
    let bits = usize::BITS - len.saturating_sub(1).leading_zeros();
    bits.clamp(10, WINDOW_LOG_MAX)
}

fn compress(data: &[u8], level: i32) -> Option<Vec<u8>> {
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
    // compress_bound guarantees room: a failure is zstd's own.
    cctx.compress2(&mut out, data).ok().map(|_| out)
}

/// Compresses a chunk into a self-contained literal blob; `None` if zstd fails.
pub fn encode_literal(data: &[u8], level: i32) -> Option<Vec<u8>> {
    compress(data, level)
}

/// A patch's bsdiff-class content: control records, differences (kept both dense and sparse,
/// so either spelling is borrowed without work) and extra bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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

/// The bsdiff-class content of `data` against `base`; `None` when matching fails or the
/// control stream would outgrow the chunk. bsdiff's matches (bidiff's suffix-array matcher),
/// with each match's differences cut where they cost more than the same bytes as extra
/// ([`noisy_spans`]), and neighbouring records on one diagonal joined.
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
const ZERO_DIFFERENCE_COST: u64 = 3;
const DIFFERENCE_COST: u64 = 90;
const EXTRA_COST: u64 = 60;
const RECORD_COST: u64 = 100;

/// The spans (start, end) of a match's bytes, in order, cheaper sent as extra bytes than as
/// differences against `old`: the cheapest split of the match into difference and extra
/// runs, by the costs above (a two-state shortest path). bsdiff extends matches while at least
/// half their bytes agree, which keeps long stretches of unrelated bytes as differences.
pub(super) fn noisy_spans(old: &[u8], new: &[u8]) -> Vec<(usize, usize)> {
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
struct Records {
    ctrl: Vec<u8>,
    diff: Vec<u8>,
    extra: Vec<u8>,
    /// The open record: base position of its differences, their count, its extra count.
    open: Option<(usize, usize, usize)>,
    /// Where the next record's differences start in the base when none is open.
    old: usize,
}

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

/// The head's: control records, gaps and values have no 2- or 4-byte structure (no position
/// bits), and a previous byte's high bits tell little about the next (one literal context
/// bit) (the measurements: BENCHMARKS.md, "Tuning record").
const HEAD_BITS: ContextBits = ContextBits { lc: 1, pb: 0 };

/// The extra bytes' literal context bits: the previous byte's high half predicts new code and
/// data (the measurements: BENCHMARKS.md, "Tuning record"). Their position bits are chosen per group ([`GroupExtra::new`]).
const EXTRA_LC: u32 = 4;

/// Compresses `data` into one raw stream of the group chain at `preset` with context bits
/// `bits`; `None` if liblzma fails.
fn deflate(data: &[u8], preset: u32, filter: ExtraFilter, bits: ContextBits) -> Option<Vec<u8>> {
    let filters = group_filters(data.len(), preset, filter, bits)?;
    let mut stream = Stream::new_raw_encoder(&filters).ok()?;
    let mut out = Vec::with_capacity(data.len() / 2 + 1024);
    loop {
        let read = usize::try_from(stream.total_in()).unwrap_or(usize::MAX);
        if out.capacity() - out.len() < 4096 {
            out.reserve(out.capacity().max(4096));
        }
        let rest = data.get(read..).unwrap_or_default();
        if stream.process_vec(rest, &mut out, Action::Finish).ok()? == Status::StreamEnd {
            return Some(out);
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
/// generator's estimate when it chooses between encodings of a chunk. If liblzma fails, the
/// estimate is `usize::MAX`: that encoding is never the smaller.
pub fn estimate_group_len(data: &[u8]) -> usize {
    deflate(data, ESTIMATE_PRESET, ExtraFilter::None, PLAIN_BITS).map_or(usize::MAX, |s| s.len())
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
            .min_by_key(|&f| {
                deflate(extra, RANKING_PRESET, f, PLAIN_BITS).map_or(usize::MAX, |s| s.len())
            })?;
        [ExtraFilter::None, ranked]
            .into_par_iter()
            .flat_map_iter(|filter| [0, 1, 2].map(|pb| (filter, ContextBits { lc: EXTRA_LC, pb })))
            .filter_map(|(filter, bits)| {
                let stream = deflate(extra, GROUP_PRESET, filter, bits)?;
                Some(GroupExtra { filter, stream })
            })
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
/// context and match each other's bytes. `None` if liblzma fails or the first `gaps_at`
/// bytes are not whole control records.
pub fn encode_group(head: &[u8], gaps_at: usize, extra: &GroupExtra) -> Option<Vec<u8>> {
    let (records, rest) = head.split_at_checked(gaps_at)?;
    let mut stored = split_records(records)?;
    stored.extend_from_slice(rest);
    let first = deflate(&stored, GROUP_PRESET, ExtraFilter::None, HEAD_BITS)?;
    let mut blob = Vec::with_capacity(1 + first.len() + extra.stream.len());
    blob.push(extra.filter as u8);
    blob.extend_from_slice(&first);
    blob.extend_from_slice(&extra.stream);
    Some(blob)
}

/// A group's control records (three varints each: differences `d`, extra bytes `e`, seek
/// `k`) as stored (SPEC.md §6.1): every `d`, then every `e`, then the first byte of every
/// `k`, then the other bytes of the `k`s, each in record order. Like fields side by side
/// compress better than whole records (a seek's first byte is its low bits, nearly random,
/// its other bytes mostly small) (the measurements: BENCHMARKS.md, "Tuning record").
/// `None` if `records` are not whole records.
pub(super) fn split_records(records: &[u8]) -> Option<Vec<u8>> {
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
