//! Planning: for each chunk, the cheapest recipe the device can really use, checked against
//! the bytes its source actually holds; and the exact bundle byte ranges that follows.
//!
//! A copy hint or patch base is used only if the source bytes hash to the manifest's value.
//! When a hint misses (the source drifted, or is another version), the source is indexed by
//! content-defined chunks with the manifest's parameters and the chunk looked up by hash.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::ops::Range;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use crate::bundle::VerifiedBundle;
use crate::chunk::{chunk_and_hash, source_hash, source_part};
use crate::format::{BlobRef, ChunkEntry, Fallback, Manifest, Recipe, SourceHash};
use crate::storage::{Source, read_range};

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
    /// Chunks whose first recipe was not usable with this source (drift, or another version)
    /// and that take neither a patch against the earlier release it holds nor a relocated copy.
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
    /// Reads of the source that failed while planning.
    pub source_errors: SourceErrors,
}

/// Reads of the source that failed (an I/O error of the medium, a source that shrank): the
/// chunks concerned took recipes that need no source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceErrors {
    /// How many reads failed.
    pub count: u64,
    /// The first failure, with where it was.
    pub first: Option<String>,
}

/// Collects failed source reads from parallel workers.
#[derive(Default)]
pub(crate) struct SourceErrorLog {
    count: AtomicU64,
    first: OnceLock<String>,
}

impl SourceErrorLog {
    /// The bytes a read returned, or `None` when the source does not hold them or the read
    /// failed, which is logged.
    pub(crate) fn read<T>(&self, read: std::io::Result<Option<T>>) -> Option<T> {
        read.unwrap_or_else(|error| {
            self.count.fetch_add(1, Ordering::Relaxed);
            self.first.get_or_init(|| error.to_string());
            None
        })
    }

    pub(crate) fn finish(self) -> SourceErrors {
        SourceErrors {
            count: self.count.into_inner(),
            first: self.first.into_inner(),
        }
    }
}

impl Plan {
    /// Fails closed when the plan reads more than `budget` bytes (header included), before a
    /// single blob is fetched.
    pub fn check_budget(&self, budget: u64) -> Result<(), crate::error::OverBudget> {
        if self.total_bytes() > budget {
            return Err(crate::error::OverBudget {
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

/// A patch base's bytes, its ranges joined (bounded by the manifest's base-length limit):
/// `Ok(None)` when a range lies outside the source, `Err` when a read inside it failed.
pub(crate) fn join_base<S: Source + ?Sized>(
    source: &S,
    base: &crate::format::PatchBase,
) -> std::io::Result<Option<Vec<u8>>> {
    if let [(offset, len)] = base.ranges() {
        return read_range(source, *offset, *len);
    }
    let capacity = usize::try_from(base.joined_len()).map_err(|_| ErrorKind::InvalidInput)?;
    let mut joined = Vec::with_capacity(capacity);
    for &(offset, len) in base.ranges() {
        match read_range(source, offset, len)? {
            Some(bytes) => joined.extend_from_slice(&bytes),
            None => return Ok(None),
        }
    }
    Ok(Some(joined))
}

/// Bytes of the source indexed at a time; at least twice the longest chunk, so each window
/// ends at least one whole chunk.
const INDEX_WINDOW: u64 = 8 << 20;

/// An index of the source's content-defined chunks by source hash (the first 8 bytes of the
/// chunk hash, which a chunk's check starts with whatever its form). The source is read in
/// windows; each window's last chunk, which the window's end may have cut short, is chunked
/// again at the start of the next, so the spans are those of the whole source at once.
fn index_source<S: Source + ?Sized>(
    source: &S,
    manifest: &Manifest,
) -> std::io::Result<HashMap<SourceHash, u64>> {
    let mut index = HashMap::new();
    let window = INDEX_WINDOW.max(2 * u64::from(manifest.chunking.max));
    let len = source.size();
    let mut at = 0u64;
    while at < len {
        let bytes = read_range(source, at, window.min(len - at))?.unwrap_or_default();
        let end = at + bytes.len() as u64;
        let mut spans = chunk_and_hash(&bytes, manifest.chunking);
        let next = match spans.last() {
            Some(last) if end < len => at + last.offset,
            _ => end,
        };
        if end < len {
            spans.pop();
        }
        for span in spans {
            index
                .entry(source_part(&span.hash))
                .or_insert(at + span.offset);
        }
        // A window holds at least two chunks, so the next starts further on.
        at = next.max(at + 1);
    }
    Ok(index)
}

enum Choice {
    Ready(Chosen),
    /// The copy hint missed: look the chunk up in the source index, then continue with the rest.
    NeedsIndex,
}

fn choose<S: Source + ?Sized>(
    entry: &ChunkEntry,
    source: &S,
    index: Option<&HashMap<SourceHash, u64>>,
    errors: &SourceErrorLog,
) -> Choice {
    let mut fell_back = false;
    if let Some(index) = index
        && let Some(&at) = entry.check.index_key().and_then(|key| index.get(&key))
        && at.saturating_add(entry.len.into()) <= source.size()
    {
        // Index entries were hashed when built; the copy is checked again, in full, at apply.
        let hinted = entry.copy == Some(at);
        return Choice::Ready(Chosen {
            step: Step::Copy { offset: at },
            fell_back: false,
            relocated: !hinted,
        });
    }
    for recipe in entry.recipes() {
        match recipe {
            Recipe::Copy { offset } => {
                let held = errors.read(read_range(source, offset, entry.len.into()));
                if held.is_some_and(|b| entry.check.admits(&b)) {
                    return Choice::Ready(Chosen {
                        step: Step::Copy { offset },
                        fell_back,
                        relocated: false,
                    });
                }
                if index.is_none() {
                    return Choice::NeedsIndex;
                }
                fell_back = true;
            }
            Recipe::Patch(patch) => {
                let base = errors.read(join_base(source, &patch.base));
                if base.is_some_and(|b| source_hash(&b) == patch.base.hash) {
                    let step = Step::Patch {
                        base: patch.base,
                        blob: patch.blob,
                        member: patch.member,
                    };
                    // A patch against the earlier release this device runs is what the bundle
                    // planned for it, not a fallback.
                    let planned = entry.alternates.iter().any(|a| a.patch == patch);
                    return Choice::Ready(Chosen {
                        step,
                        fell_back: fell_back && !planned,
                        relocated: false,
                    });
                }
                fell_back = true;
            }
            Recipe::Literal { blob, .. } => {
                return Choice::Ready(Chosen {
                    step: Step::Literal { blob },
                    fell_back,
                    relocated: false,
                });
            }
            Recipe::Zero => {
                return Choice::Ready(Chosen {
                    step: Step::Zero,
                    fell_back,
                    relocated: false,
                });
            }
        }
    }
    // Unreachable for a decoded manifest (every chunk ends in Literal or Zero); a zero-fill
    // here would still be caught by the chunk hash check.
    Choice::Ready(Chosen {
        step: Step::Zero,
        fell_back: true,
        relocated: false,
    })
}

/// The step that needs no source: the chunk's literal, or zero-fill.
fn fallback_step(entry: &ChunkEntry) -> Step {
    match entry.fallback {
        Fallback::Literal { blob, .. } => Step::Literal { blob },
        Fallback::Zero => Step::Zero,
    }
}

/// The patch step of `patch`.
fn patch_step(patch: &crate::format::Patch) -> Step {
    Step::Patch {
        base: patch.base,
        blob: patch.blob,
        member: patch.member,
    }
}

/// A chunk's step, and how it came to be chosen.
struct Chosen {
    step: Step,
    /// Its planned recipe could not be used: it takes a fallback.
    fell_back: bool,
    /// Its bytes were found elsewhere in the source than the manifest says.
    relocated: bool,
}

/// In a bundle with alternates a chunk may have several usable patches (its base bytes are
/// the same in two releases), each a member of another group. Picks, per such chunk, the usable
/// patch whose group this device can use most (the literal bytes of the members it can use,
/// per byte of the group's blob), so that a device reads the groups made for its own release
/// rather than a few members of another release's.
fn prefer_useful_groups<S: Source + ?Sized>(
    manifest: &Manifest,
    source: &S,
    mut chosen: Vec<Chosen>,
    errors: &SourceErrorLog,
) -> Vec<Chosen> {
    let usable = |p: &crate::format::Patch| {
        errors
            .read(join_base(source, &p.base))
            .is_some_and(|b| source_hash(&b) == p.base.hash)
    };
    let candidates: Vec<Vec<Step>> = manifest
        .chunks
        .par_iter()
        .zip(chosen.par_iter())
        .map(|(entry, Chosen { step, .. })| {
            if !matches!(step, Step::Patch { .. }) || entry.patches().nth(1).is_none() {
                return Vec::new();
            }
            entry
                .patches()
                .filter(|(_, p)| usable(p))
                .map(|(_, p)| patch_step(p))
                .collect()
        })
        .collect();
    let mut worth: HashMap<BlobRef, u64> = HashMap::new();
    for ((entry, Chosen { step, .. }), cands) in
        manifest.chunks.iter().zip(&chosen).zip(&candidates)
    {
        let literal = fallback_step(entry).blob().map_or(0, |b| u64::from(b.len));
        let groups = match cands.is_empty() {
            true => std::slice::from_ref(step),
            false => cands.as_slice(),
        };
        for blob in groups.iter().filter_map(|s| match s {
            Step::Patch { blob, .. } => Some(*blob),
            _ => None,
        }) {
            *worth.entry(blob).or_insert(0) += literal;
        }
    }
    // Usable bytes per blob byte, compared without division.
    let score = |s: &Step| match s {
        Step::Patch { blob, .. } => (worth.get(blob).copied().unwrap_or(0), u64::from(blob.len)),
        _ => (0, 1),
    };
    for (Chosen { step, .. }, cands) in chosen.iter_mut().zip(candidates) {
        let mut best: Option<(Step, (u64, u64))> = None;
        for cand in cands {
            let (w, len) = score(&cand);
            let better = best.is_none_or(|(_, (bw, blen))| {
                u128::from(w) * u128::from(blen) > u128::from(bw) * u128::from(len)
            });
            if better {
                best = Some((cand, (w, len)));
            }
        }
        if let Some((cand, _)) = best {
            *step = cand;
        }
    }
    chosen
}

/// A group's blob serves all its members whose base this source holds; when it costs more than
/// those members' literals (a source of another version, or one that drifted, leaves few of
/// them usable), they take their literals instead.
fn drop_costly_groups(manifest: &Manifest, mut chosen: Vec<Chosen>) -> Vec<Chosen> {
    // Per group blob: the literal bytes its usable members would otherwise read.
    let mut instead: HashMap<BlobRef, u64> = HashMap::new();
    for (Chosen { step, .. }, entry) in chosen.iter().zip(&manifest.chunks) {
        if let Step::Patch { blob, .. } = step {
            let literal = fallback_step(entry).blob().map_or(0, |b| u64::from(b.len));
            *instead.entry(*blob).or_insert(0) += literal;
        }
    }
    for (
        Chosen {
            step, fell_back, ..
        },
        entry,
    ) in chosen.iter_mut().zip(&manifest.chunks)
    {
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

/// Plans how to rebuild the bundle's target from `source` (empty for a blank device). A read
/// of the source that fails leaves the chunks concerned to recipes that need no source, and is
/// counted in [`Plan::source_errors`].
pub fn plan<S: Source + ?Sized>(bundle: &VerifiedBundle, source: &S) -> Plan {
    let manifest = bundle.manifest();
    let errors = SourceErrorLog::default();
    let first: Vec<Choice> = manifest
        .chunks
        .par_iter()
        .map(|c| choose(c, source, None, &errors))
        .collect();
    let index = first
        .iter()
        .any(|c| matches!(c, Choice::NeedsIndex))
        .then(|| errors.read(index_source(source, manifest).map(Some)))
        .map(Option::unwrap_or_default);
    let chosen: Vec<Chosen> = first
        .into_par_iter()
        .zip(manifest.chunks.par_iter())
        .map(|(choice, entry)| {
            let choice = match choice {
                Choice::NeedsIndex => choose(entry, source, index.as_ref(), &errors),
                ready => ready,
            };
            match choice {
                Choice::Ready(chosen) => chosen,
                // The index is present: not reached.
                Choice::NeedsIndex => Chosen {
                    step: Step::Zero,
                    fell_back: true,
                    relocated: false,
                },
            }
        })
        .collect();

    let chosen = prefer_useful_groups(manifest, source, chosen, &errors);
    let chosen = drop_costly_groups(manifest, chosen);
    let mut counts = StepCounts::default();
    let mut fell_back = Vec::new();
    let mut relocated = Vec::new();
    let mut blobs = Vec::new();
    let mut steps = Vec::with_capacity(chosen.len());
    for (index, chosen) in chosen.into_iter().enumerate() {
        let Chosen {
            step,
            fell_back: fb,
            relocated: moved,
        } = chosen;
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
        source_errors: errors.finish(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_one_of_the_kind() {
        let mut counts = StepCounts::default();
        for kind in [
            StepKind::Copy,
            StepKind::Zero,
            StepKind::Zero,
            StepKind::Patch,
            StepKind::Patch,
            StepKind::Patch,
            StepKind::Literal,
        ] {
            counts.add(kind);
        }
        let want = StepCounts {
            copy: 1,
            zero: 2,
            patch: 3,
            literal: 1,
        };
        assert_eq!(counts, want);
    }

    #[test]
    fn the_budget_admits_exactly_the_plan() {
        let plan = Plan {
            steps: Vec::new(),
            fell_back: Vec::new(),
            relocated: Vec::new(),
            ranges: Vec::new(),
            header_bytes: 100,
            blob_bytes: 50,
            counts: StepCounts::default(),
            source_errors: SourceErrors::default(),
        };
        assert_eq!(plan.total_bytes(), 150);
        assert!(plan.check_budget(150).is_ok());
        assert!(matches!(
            plan.check_budget(149),
            Err(crate::error::OverBudget {
                planned: 150,
                budget: 149
            })
        ));
    }

    #[test]
    fn failed_source_reads_are_counted_and_the_first_named() {
        let log = SourceErrorLog::default();
        assert_eq!(log.read(Ok(Some(vec![1u8]))), Some(vec![1u8]));
        assert_eq!(log.read::<Vec<u8>>(Ok(None)), None);
        for what in ["first", "second"] {
            assert_eq!(log.read::<Vec<u8>>(Err(std::io::Error::other(what))), None);
        }
        let errors = log.finish();
        assert_eq!(errors.count, 2);
        assert_eq!(errors.first.as_deref(), Some("first"));
    }

    #[test]
    fn a_source_is_indexed_across_its_windows_as_if_whole() {
        // Four windows' worth of bytes: every chunk the whole-source chunking finds is in the
        // windowed index at its own offset.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let source: Vec<u8> = (0..4 * INDEX_WINDOW + 12_345)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (state >> 56) as u8
            })
            .collect();
        let chunking = crate::chunk::DEFAULT_CHUNKING;
        let manifest = Manifest {
            key_id: [0; 8],
            release_version: 1,
            created_at: 0,
            expires_at: None,
            hardware_compat: vec!["x".into()],
            channel: String::new(),
            source: None,
            bases: Vec::new(),
            target: crate::format::ImageId {
                size: 0,
                hash: [0; 32],
            },
            chunking,
            payload_len: 0,
            chunks: Vec::new(),
        };
        let index = index_source(&source, &manifest).unwrap();
        let whole = chunk_and_hash(&source, chunking);
        assert!(whole.len() > 100);
        // Nothing else: no chunk cut short by a window's end.
        assert_eq!(index.len(), whole.len());
        for span in whole {
            assert_eq!(index.get(&source_part(&span.hash)), Some(&span.offset));
        }
    }
}
