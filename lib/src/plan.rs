//! Planning: for each chunk, the cheapest recipe the device can really use, checked against
//! the bytes its source actually holds; and the exact bundle byte ranges that follows.
//!
//! A copy hint or patch base is used only if the source bytes hash to the manifest's value.
//! When a hint misses (the source drifted, or is another version), the source is indexed by
//! content-defined chunks with the manifest's parameters and the chunk looked up by hash.

use std::collections::HashMap;
use std::ops::Range;

use rayon::prelude::*;

use crate::bundle::VerifiedBundle;
use crate::chunk::{chunk_and_hash, source_hash, source_part};
use crate::format::{BlobRef, ChunkEntry, Fallback, Manifest, Recipe, SourceHash};

/// How one chunk will be produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Copy `len` bytes from this source offset (hash already checked).
    Copy {
        /// Source offset.
        offset: u64,
    },
    /// Fill with zeros.
    Zero,
    /// Rebuild from the patch's streams in its group against the source ranges of its base
    /// (hash already checked).
    Patch {
        /// The source ranges the patch decodes against.
        base: crate::format::PatchBase,
        /// The group's blob (shared with the group's other members).
        blob: BlobRef,
        /// Where this patch's streams lie in the group's content.
        member: crate::format::GroupMember,
    },
    /// Decode the literal blob.
    Literal {
        /// The blob.
        blob: BlobRef,
    },
}

impl Step {
    /// The blob this step reads from the bundle, if any.
    pub fn blob(&self) -> Option<BlobRef> {
        match self {
            Step::Patch { blob, .. } | Step::Literal { blob } => Some(*blob),
            Step::Copy { .. } | Step::Zero => None,
        }
    }

    /// Which kind of step this is.
    pub fn kind(&self) -> StepKind {
        match self {
            Step::Copy { .. } => StepKind::Copy,
            Step::Zero => StepKind::Zero,
            Step::Patch { .. } => StepKind::Patch,
            Step::Literal { .. } => StepKind::Literal,
        }
    }
}

/// The kinds of [`Step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// Copied from the source.
    Copy,
    /// Zero-filled.
    Zero,
    /// Patched from the source.
    Patch,
    /// Decoded from a literal.
    Literal,
}

/// Counts of chunks by step kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepCounts {
    /// Chunks copied from the source.
    pub copy: usize,
    /// Chunks zero-filled.
    pub zero: usize,
    /// Chunks patched from the source.
    pub patch: usize,
    /// Chunks decoded from literals.
    pub literal: usize,
}

impl StepCounts {
    /// Counts one more chunk of `kind`.
    pub fn add(&mut self, kind: StepKind) {
        match kind {
            StepKind::Copy => self.copy += 1,
            StepKind::Zero => self.zero += 1,
            StepKind::Patch => self.patch += 1,
            StepKind::Literal => self.literal += 1,
        }
    }
}

/// The plan for one bundle and one source.
#[derive(Debug, Clone)]
pub struct Plan {
    /// One step per chunk, in target order.
    pub steps: Vec<Step>,
    /// Chunks whose first recipe was not usable with this source (drift, or another version).
    pub fell_back: Vec<usize>,
    /// Chunks whose copy was found by content search rather than at the hinted offset.
    pub relocated: Vec<usize>,
    /// Bundle byte ranges to read, absolute, sorted and merged; the first is the signed header.
    pub ranges: Vec<Range<u64>>,
    /// Bytes the header (envelope, manifest, signatures) takes.
    pub header_bytes: u64,
    /// Bytes of blobs to read.
    pub blob_bytes: u64,
    /// Chunk counts by step.
    pub counts: StepCounts,
}

impl Plan {
    /// Fails closed when the plan reads more than `budget` bytes (header included), before a
    /// single blob is fetched.
    pub fn check_budget(&self, budget: u64) -> Result<(), crate::Error> {
        if self.total_bytes() > budget {
            return Err(crate::Error::BudgetExceeded {
                planned: self.total_bytes(),
                budget,
            });
        }
        Ok(())
    }

    /// Every byte to read from the bundle: header plus blobs.
    pub fn total_bytes(&self) -> u64 {
        self.header_bytes + self.blob_bytes
    }
}

/// A patch base's bytes: borrowed from the source when it is one range, else its ranges
/// joined (bounded by the manifest's base-length limit). `None` when a range lies outside the
/// source.
pub(crate) fn join_base<'s>(
    source: &'s [u8],
    base: &crate::format::PatchBase,
) -> Option<std::borrow::Cow<'s, [u8]>> {
    match base.ranges() {
        [(offset, len)] => slice(source, *offset, *len).map(std::borrow::Cow::Borrowed),
        ranges => {
            let mut joined = Vec::with_capacity(usize::try_from(base.joined_len()).ok()?);
            for &(offset, len) in ranges {
                joined.extend_from_slice(slice(source, offset, len)?);
            }
            Some(std::borrow::Cow::Owned(joined))
        }
    }
}

fn slice(source: &[u8], offset: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    let len = usize::try_from(len).ok()?;
    source.get(start..start.checked_add(len)?)
}

/// An index of the source's content-defined chunks by source hash (the first 8 bytes of the
/// chunk hash, which a chunk's check starts with whatever its form).
fn index_source(source: &[u8], manifest: &Manifest) -> HashMap<SourceHash, u64> {
    let mut index = HashMap::new();
    for span in chunk_and_hash(source, manifest.chunking) {
        index.entry(source_part(&span.hash)).or_insert(span.offset);
    }
    index
}

enum Choice {
    Ready {
        step: Step,
        fell_back: bool,
        relocated: bool,
    },
    /// The copy hint missed: look the chunk up in the source index, then continue with the rest.
    NeedsIndex,
}

fn choose(entry: &ChunkEntry, source: &[u8], index: Option<&HashMap<SourceHash, u64>>) -> Choice {
    let mut fell_back = false;
    if let Some(index) = index
        && let Some(&at) = entry.check.index_key().and_then(|key| index.get(&key))
        && slice(source, at, entry.len.into()).is_some_and(|b| b.len() == entry.len as usize)
    {
        // Index entries were hashed when built; the copy is checked again, in full, at apply.
        let hinted = entry.copy == Some(at);
        return Choice::Ready {
            step: Step::Copy { offset: at },
            fell_back: false,
            relocated: !hinted,
        };
    }
    for recipe in entry.recipes() {
        match recipe {
            Recipe::Copy { offset } => {
                if slice(source, offset, entry.len.into()).is_some_and(|b| entry.check.admits(b)) {
                    return Choice::Ready {
                        step: Step::Copy { offset },
                        fell_back,
                        relocated: false,
                    };
                }
                if index.is_none() {
                    return Choice::NeedsIndex;
                }
                fell_back = true;
            }
            Recipe::Patch(patch) => {
                if join_base(source, &patch.base)
                    .is_some_and(|b| source_hash(&b) == patch.base.hash)
                {
                    let step = Step::Patch {
                        base: patch.base,
                        blob: patch.blob,
                        member: patch.member,
                    };
                    return Choice::Ready {
                        step,
                        fell_back,
                        relocated: false,
                    };
                }
                fell_back = true;
            }
            Recipe::Literal { blob, .. } => {
                return Choice::Ready {
                    step: Step::Literal { blob },
                    fell_back,
                    relocated: false,
                };
            }
            Recipe::Zero => {
                return Choice::Ready {
                    step: Step::Zero,
                    fell_back,
                    relocated: false,
                };
            }
        }
    }
    // Unreachable for a decoded manifest (every chunk ends in Literal or Zero); a zero-fill
    // here would still be caught by the chunk hash check.
    Choice::Ready {
        step: Step::Zero,
        fell_back: true,
        relocated: false,
    }
}

/// The step that needs no source: the chunk's literal, or zero-fill.
fn fallback_step(entry: &ChunkEntry) -> Step {
    match entry.fallback {
        Fallback::Literal { blob, .. } => Step::Literal { blob },
        Fallback::Zero => Step::Zero,
    }
}

/// A group's blob serves all its members whose base this source holds; when it costs more than
/// those members' literals (a source of another version, or one that drifted, leaves few of
/// them usable), they take their literals instead.
fn drop_costly_groups(
    manifest: &Manifest,
    mut chosen: Vec<(Step, bool, bool)>,
) -> Vec<(Step, bool, bool)> {
    // Per group blob: the literal bytes its usable members would otherwise read.
    let mut instead: HashMap<BlobRef, u64> = HashMap::new();
    for ((step, _, _), entry) in chosen.iter().zip(&manifest.chunks) {
        if let Step::Patch { blob, .. } = step {
            let literal = fallback_step(entry).blob().map_or(0, |b| u64::from(b.len));
            *instead.entry(*blob).or_insert(0) += literal;
        }
    }
    for ((step, fell_back, _), entry) in chosen.iter_mut().zip(&manifest.chunks) {
        if let Step::Patch { blob, .. } = step
            && instead
                .get(blob)
                .is_some_and(|&lit| u64::from(blob.len) > lit)
        {
            *step = fallback_step(entry);
            *fell_back = true;
        }
    }
    chosen
}

/// Plans how to rebuild the bundle's target from `source` (empty for a blank device).
pub fn plan(bundle: &VerifiedBundle, source: &[u8]) -> Plan {
    let manifest = bundle.manifest();
    let first: Vec<Choice> = manifest
        .chunks
        .par_iter()
        .map(|c| choose(c, source, None))
        .collect();
    let index = first
        .iter()
        .any(|c| matches!(c, Choice::NeedsIndex))
        .then(|| index_source(source, manifest));
    let chosen: Vec<(Step, bool, bool)> = first
        .into_par_iter()
        .zip(manifest.chunks.par_iter())
        .map(|(choice, entry)| {
            let choice = match choice {
                Choice::NeedsIndex => choose(entry, source, index.as_ref()),
                ready => ready,
            };
            match choice {
                Choice::Ready {
                    step,
                    fell_back,
                    relocated,
                } => (step, fell_back, relocated),
                Choice::NeedsIndex => (Step::Zero, true, false), // index is present: not reached
            }
        })
        .collect();

    let chosen = drop_costly_groups(manifest, chosen);
    let mut counts = StepCounts::default();
    let mut fell_back = Vec::new();
    let mut relocated = Vec::new();
    let mut blobs = Vec::new();
    let mut steps = Vec::with_capacity(chosen.len());
    for (index, (step, fb, moved)) in chosen.into_iter().enumerate() {
        counts.add(step.kind());
        if fb {
            fell_back.push(index);
        }
        if moved {
            relocated.push(index);
        }
        if let Some(blob) = step.blob() {
            blobs.push(blob);
        }
        steps.push(step);
    }
    let header_bytes = bundle.envelope().payload_offset();
    // Members of one group share its blob: read it once.
    blobs.sort_unstable();
    blobs.dedup();
    let blob_bytes = blobs.iter().map(|b| u64::from(b.len)).sum();
    let mut ranges: Vec<Range<u64>> = Vec::with_capacity(blobs.len() + 1);
    ranges.push(0..header_bytes);
    for blob in blobs {
        let start = bundle.blob_offset(&blob);
        let end = start + u64::from(blob.len);
        match ranges.last_mut() {
            Some(last) if last.end == start => last.end = end,
            _ => ranges.push(start..end),
        }
    }
    Plan {
        steps,
        fell_back,
        relocated,
        ranges,
        header_bytes,
        blob_bytes,
        counts,
    }
}
