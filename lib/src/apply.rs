//! Applying: the trust pipeline from bundle and source into the target.
//!
//! Every chunk's bytes are produced (copied, zero-filled, or decoded with its length as a hard
//! cap), hashed, and only then wrapped in a [`VerifiedChunk`], the one type a [`Target`]
//! accepts. The whole image's hash is checked at the end. The source is only ever read.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::bundle::VerifiedBundle;
use crate::chunk::VerifiedChunk;
use crate::codec;
use crate::error::{ApplyError, Progress, ProgressFn, io};
use crate::format::{BlobRef, ChunkEntry, Fallback, GroupLayout, Hash};
use crate::plan::{Plan, SourceErrorLog, SourceErrors, Step, StepCounts, StepKind, join_base};
use crate::storage::{BundleSource, Source, Target, read_range};

/// What an apply did.
#[derive(Debug, Clone, Default)]
pub struct ApplyReport {
    /// Chunks by the step that produced them.
    pub counts: StepCounts,
    /// Chunks whose planned copy or patch failed its check during apply (the source changed
    /// after planning, or a patch group was corrupt) and were rebuilt from their fallback recipe.
    pub fell_back: Vec<usize>,
    /// Reads of the source that failed during apply; their chunks are among `fell_back`.
    pub source_errors: SourceErrors,
    /// Bytes read from the bundle (header and blobs).
    pub bundle_bytes_read: u64,
    /// Bytes written to the target.
    pub bytes_written: u64,
    /// The most chunk bytes produced in one batch (at most [`BATCH_BYTES`] plus one chunk).
    pub peak_batch_bytes: u64,
    /// The most decoded patch groups held at once (at most two).
    pub peak_groups: usize,
    /// Wall time.
    pub elapsed: Duration,
}

/// Chunks produced in parallel before being written in order: bounded in count and bytes so
/// memory stays bounded whatever the image size.
const BATCH_CHUNKS: usize = 64;
/// Bytes produced per batch, at most (one chunk may pass it).
pub const BATCH_BYTES: u64 = 16 << 20;
/// Decoded patch groups held at once (each at most the format's group limit): a batch stops
/// before a chunk that would need a third.
const LIVE_GROUPS: usize = 2;

/// The decoded patch groups the current batch needs: the blob, and its content (`None` when
/// the blob did not decode: its members take their fallback).
type Groups = Vec<(BlobRef, Option<Vec<u8>>)>;

/// The group blob a step reads, with its layout.
fn group_of(step: &Step) -> Option<(BlobRef, GroupLayout)> {
    match step {
        Step::Patch { blob, member, .. } => Some((*blob, member.group)),
        _ => None,
    }
}

/// A produced, verified chunk and what it cost.
struct Output<'s> {
    chunk: VerifiedChunk<'s>,
    blob_read: u64,
    fell_back: bool,
    kind: StepKind,
}

/// Produces a chunk from the recipe that needs no source (literal or zero-fill).
fn produce_fallback<'s>(
    bundle: &VerifiedBundle,
    reader: &dyn BundleSource,
    entry: &ChunkEntry,
    index: usize,
) -> Result<Output<'s>, ApplyError> {
    let (bytes, blob_read, kind) = match entry.fallback {
        Fallback::Zero => (vec![0u8; entry.len as usize], 0, StepKind::Zero),
        Fallback::Literal { blob, .. } => {
            let mut encoded = Vec::new();
            bundle.read_blob(reader, &blob, &mut encoded)?;
            let mut out = vec![0u8; entry.len as usize];
            codec::decode_literal(&encoded, &mut out)
                .map_err(|error| ApplyError::Blob { index, error })?;
            (out, blob.len.into(), StepKind::Literal)
        }
    };
    let chunk = VerifiedChunk::check(entry, Cow::Owned(bytes))
        .ok_or(ApplyError::ChunkHashMismatch { index })?;
    Ok(Output {
        chunk,
        blob_read,
        fell_back: false,
        kind,
    })
}

/// Produces and verifies one chunk by its planned step, falling back to the source-free
/// recipe when the planned copy or patch does not verify.
#[allow(clippy::too_many_arguments)]
fn produce<'s, S: Source + ?Sized>(
    bundle: &VerifiedBundle,
    reader: &dyn BundleSource,
    source: &S,
    entry: &ChunkEntry,
    index: usize,
    step: &Step,
    groups: &Groups,
    errors: &SourceErrorLog,
) -> Result<Output<'s>, ApplyError> {
    let len = u64::from(entry.len);
    let candidate = match step {
        // Read out of the source before the check: the source is a running partition, and
        // the bytes checked are the bytes written and hashed, whatever a writer does to it
        // meanwhile. A read that fails (the medium, a source that shrank) falls back.
        Step::Copy { offset } => errors
            .read(read_range(source, *offset, len))
            .map(Cow::Owned),
        Step::Patch { base, blob, member } => {
            let content = groups
                .iter()
                .find(|(b, _)| b == blob)
                .and_then(|(_, content)| content.as_deref());
            let parts = content.and_then(|g| {
                Some(codec::PatchParts {
                    ctrl: g.get(member.ctrl())?,
                    gaps: g.get(member.gaps())?,
                    values: g.get(member.values())?,
                    extra: g.get(member.extra())?,
                })
            });
            let mut out = vec![0u8; entry.len as usize];
            parts
                .and_then(|parts| Some((parts, errors.read(join_base(source, base))?)))
                .and_then(|(parts, base)| codec::decode_bsdiff_content(&base, parts, &mut out).ok())
                .map(|()| Cow::Owned(out))
        }
        Step::Zero | Step::Literal { .. } => return produce_fallback(bundle, reader, entry, index),
    };
    if let Some(chunk) = candidate.and_then(|bytes| VerifiedChunk::check(entry, bytes)) {
        // A group's blob is counted once, when it is decoded.
        return Ok(Output {
            chunk,
            blob_read: 0,
            fell_back: false,
            kind: step.kind(),
        });
    }
    // The source changed between plan and apply, or the patch group is corrupt. Rebuild the
    // chunk from the recipe that needs no source rather than fail the update.
    let mut output = produce_fallback(bundle, reader, entry, index)?;
    output.fell_back = true;
    Ok(output)
}

/// The next batch of chunks to produce.
#[derive(Debug, PartialEq, Eq)]
struct Batch {
    /// How many chunks it takes from the front of the rest.
    take: usize,
    /// Their bytes.
    bytes: u64,
    /// The groups they read, at most [`LIVE_GROUPS`].
    needed: Vec<(BlobRef, GroupLayout)>,
}

/// The next batch from the front of `rest`: at most [`BATCH_CHUNKS`] chunks, stopping once
/// [`BATCH_BYTES`] are reached and before a chunk that would need a group beyond
/// [`LIVE_GROUPS`]; never empty while chunks remain.
fn next_batch(rest: &[(usize, &ChunkEntry, &Step)]) -> Batch {
    let mut batch = Batch {
        take: 0,
        bytes: 0,
        needed: Vec::new(),
    };
    for (_, entry, step) in rest.iter().take(BATCH_CHUNKS) {
        if batch.bytes >= BATCH_BYTES {
            break;
        }
        if let Some(group) = group_of(step)
            && !batch.needed.contains(&group)
        {
            // `needed` gains at most one group per chunk taken, so it is full only after two
            // chunks: the first chunk of a batch always goes.
            if batch.needed.len() == LIVE_GROUPS {
                break;
            }
            batch.needed.push(group);
        }
        batch.bytes += u64::from(entry.len);
        batch.take += 1;
    }
    batch
}

/// Keeps, of the decoded `groups`, those the batch starting at chunk `first` needs, then those
/// later chunks still need while there is room within [`LIVE_GROUPS`]; the batch's missing
/// groups are decoded after.
fn keep_groups(
    groups: &mut Groups,
    needed: &[(BlobRef, GroupLayout)],
    last_use: &HashMap<BlobRef, usize>,
    first: usize,
) {
    let mut room = LIVE_GROUPS.saturating_sub(needed.len());
    groups.retain(|(blob, _)| {
        if needed.iter().any(|(b, ..)| b == blob) {
            return true;
        }
        let later = last_use.get(blob).is_some_and(|&last| last >= first);
        let keep = later && room > 0;
        room -= usize::from(keep);
        keep
    });
}

/// Rebuilds the target: runs `plan` chunk by chunk, verifies each chunk before writing it,
/// checks the whole image's hash, and syncs the target.
pub fn apply<S: Source + ?Sized>(
    bundle: &VerifiedBundle,
    reader: &dyn BundleSource,
    source: &S,
    target: &mut dyn Target,
    plan: &Plan,
    progress: ProgressFn<'_>,
) -> Result<ApplyReport, ApplyError> {
    apply_until(bundle, reader, source, target, plan, progress, &|| false)
}

/// [`apply`], asking `stop` between batches of chunks (at most [`BATCH_BYTES`] apart): when
/// it answers true, the apply ends with [`ApplyError::Cancelled`], every chunk written so far
/// verified, nothing made durable.
pub fn apply_until<S: Source + ?Sized>(
    bundle: &VerifiedBundle,
    reader: &dyn BundleSource,
    source: &S,
    target: &mut dyn Target,
    plan: &Plan,
    progress: ProgressFn<'_>,
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<ApplyReport, ApplyError> {
    let started = Instant::now();
    let manifest = bundle.manifest();
    if plan.steps.len() != manifest.chunks.len() {
        return Err(ApplyError::PlanMismatch);
    }
    let mut report = ApplyReport {
        bundle_bytes_read: plan.header_bytes,
        ..ApplyReport::default()
    };
    let errors = SourceErrorLog::default();
    let mut image_hasher = blake3::Hasher::new();
    let work: Vec<(usize, &ChunkEntry, &Step)> = manifest
        .chunks
        .iter()
        .zip(&plan.steps)
        .enumerate()
        .map(|(i, (c, s))| (i, c, s))
        .collect();
    // The last chunk that uses each group, so a group is decoded once even when copies run
    // between its members.
    let mut last_use: HashMap<BlobRef, usize> = HashMap::new();
    for &(i, _, step) in &work {
        if let Some((blob, ..)) = group_of(step) {
            last_use.insert(blob, i);
        }
    }
    let mut rest = work.as_slice();
    let mut groups: Groups = Vec::new();
    while !rest.is_empty() {
        if stop() {
            return Err(ApplyError::Cancelled);
        }
        let Batch {
            take,
            bytes,
            needed,
        } = next_batch(rest);
        let (batch, tail) = rest.split_at(take);
        rest = tail;
        report.peak_batch_bytes = report.peak_batch_bytes.max(bytes);
        let first = batch.first().map_or(0, |&(i, _, _)| i);
        keep_groups(&mut groups, &needed, &last_use, first);
        for (blob, layout) in needed {
            if groups.iter().any(|(b, _)| *b == blob) {
                continue;
            }
            let mut encoded = Vec::new();
            bundle.read_blob(reader, &blob, &mut encoded)?;
            report.bundle_bytes_read += u64::from(blob.len);
            let content = codec::decode_group(&encoded, &layout).ok();
            groups.push((blob, content));
        }
        report.peak_groups = report.peak_groups.max(groups.len());
        let outputs = batch
            .par_iter()
            .map(|&(i, entry, step)| {
                produce(bundle, reader, source, entry, i, step, &groups, &errors)
            })
            .collect::<Result<Vec<Output<'_>>, ApplyError>>()?;
        for (&(i, _, _), output) in batch.iter().zip(outputs) {
            target
                .write_chunk(&output.chunk)
                .map_err(io(format!("writing chunk {i} to the target")))?;
            image_hasher.update(output.chunk.bytes());
            report.bytes_written += output.chunk.bytes().len() as u64;
            report.bundle_bytes_read += output.blob_read;
            if output.fell_back {
                report.fell_back.push(i);
            }
            report.counts.add(output.kind);
        }
        progress(Progress {
            phase: "apply",
            done: report.bytes_written,
            total: manifest.target.size,
        });
    }
    let image_hash: Hash = *image_hasher.finalize().as_bytes();
    if image_hash != manifest.target.hash {
        return Err(ApplyError::TargetHashMismatch {
            bad_chunks: Vec::new(),
            bad_count: 0,
        });
    }
    target.sync().map_err(io("syncing the target"))?;
    report.source_errors = errors.finish();
    report.elapsed = started.elapsed();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{ChunkCheck, GroupMember, PatchBase};

    fn entry(len: u32) -> ChunkEntry {
        ChunkEntry {
            offset: 0,
            len,
            check: ChunkCheck::Zero,
            copy: None,
            patch: None,
            alternates: Vec::new(),
            fallback: Fallback::Zero,
        }
    }

    fn patch(group: u64) -> Step {
        let layout = GroupLayout {
            len: 1,
            ..GroupLayout::default()
        };
        Step::Patch {
            base: PatchBase::empty(),
            blob: BlobRef {
                offset: group * 10,
                len: 10,
            },
            member: GroupMember {
                group: layout,
                ..GroupMember::default()
            },
        }
    }

    fn batch(steps: &[(u32, Step)]) -> Batch {
        let entries: Vec<ChunkEntry> = steps.iter().map(|(len, _)| entry(*len)).collect();
        let work: Vec<(usize, &ChunkEntry, &Step)> = entries
            .iter()
            .zip(steps)
            .enumerate()
            .map(|(i, (e, (_, s)))| (i, e, s))
            .collect();
        next_batch(&work)
    }

    #[test]
    fn a_batch_stops_before_a_third_group() {
        let b = batch(&[
            (100, patch(0)),
            (100, Step::Zero),
            (100, patch(1)),
            (100, patch(0)),
            (100, patch(2)),
            (100, patch(1)),
        ]);
        assert_eq!((b.take, b.bytes, b.needed.len()), (4, 400, 2));
        // A first chunk always goes, even when it alone needs a group.
        assert_eq!(batch(&[(100, patch(5))]).take, 1);
    }

    #[test]
    fn a_batch_stops_at_its_bytes_or_its_chunk_count() {
        let big = 4 << 20;
        let b = batch(&vec![(big, Step::Zero); 10]);
        assert_eq!((b.take, b.bytes), (4, 4 * u64::from(big)));
        let b = batch(&vec![(1, Step::Zero); 100]);
        assert_eq!((b.take, b.bytes), (BATCH_CHUNKS, BATCH_CHUNKS as u64));
    }

    #[test]
    fn groups_later_chunks_need_are_kept_while_there_is_room() {
        let blob = |g| match patch(g) {
            Step::Patch { blob, member, .. } => (blob, member.group),
            _ => unreachable!(),
        };
        let held = |gs: &[u64]| -> Groups { gs.iter().map(|&g| (blob(g).0, None)).collect() };
        let last_use: HashMap<BlobRef, usize> =
            [(blob(0).0, 50), (blob(1).0, 5), (blob(2).0, 60)].into();
        // The batch at chunk 10 needs group 3: one place left; 0 and 2 are needed later, 1 not.
        let mut groups = held(&[0, 1, 2]);
        keep_groups(&mut groups, &[blob(3)], &last_use, 10);
        assert_eq!(groups, held(&[0]));
        // It needs nothing: both later groups stay.
        let mut groups = held(&[0, 1, 2]);
        keep_groups(&mut groups, &[], &last_use, 10);
        assert_eq!(groups, held(&[0, 2]));
        // Needed groups stay whatever their last use; a group used last by this very chunk
        // counts as needed later.
        let mut groups = held(&[1, 2]);
        keep_groups(&mut groups, &[blob(1), blob(3)], &last_use, 5);
        assert_eq!(groups, held(&[1]));
        let mut groups = held(&[1]);
        keep_groups(&mut groups, &[], &last_use, 5);
        assert_eq!(groups, held(&[1]));
    }
}
