//! Applying: the trust pipeline from bundle and source into the target.
//!
//! Every chunk's bytes are produced (copied, zero-filled, or decoded with its length as a hard
//! cap), hashed, and only then wrapped in a [`VerifiedChunk`], the one type a [`Target`]
//! accepts. The whole image's hash is checked at the end. The source is only ever read.

use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::bundle::VerifiedBundle;
use crate::chunk::hash;
use crate::codec;
use crate::error::{Error, Progress, ProgressFn};
use crate::format::{ChunkEntry, Fallback, Hash};
use crate::plan::{Plan, Step, StepCounts};
use crate::storage::{BundleSource, Target};

/// Bytes whose hash matched the signed manifest, with where they go. Only this module makes
/// one, after the check, so a [`Target`] can never be handed unverified bytes.
pub struct VerifiedChunk<'a> {
    offset: u64,
    bytes: &'a [u8],
}

impl<'a> VerifiedChunk<'a> {
    /// Checks `bytes` against the chunk entry; the only constructor.
    fn check(
        entry: &ChunkEntry,
        index: usize,
        bytes: &'a [u8],
    ) -> Result<VerifiedChunk<'a>, Error> {
        if bytes.len() != entry.len as usize || hash(bytes) != entry.hash {
            return Err(Error::ChunkHashMismatch { index });
        }
        Ok(VerifiedChunk {
            offset: entry.offset,
            bytes,
        })
    }

    /// Offset in the target.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The verified bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

/// What an apply did.
#[derive(Debug, Clone, Default)]
pub struct ApplyReport {
    /// Chunks by the step that produced them.
    pub counts: StepCounts,
    /// Chunks whose planned copy or patch failed its hash check during apply (the source
    /// changed after planning) and were rebuilt from their fallback recipe instead.
    pub fell_back: Vec<usize>,
    /// Bytes read from the bundle (header and blobs).
    pub bundle_bytes_read: u64,
    /// Bytes written to the target.
    pub bytes_written: u64,
    /// Wall time.
    pub elapsed: Duration,
}

/// Chunks decoded in parallel before being written in order: bounded in count and bytes so
/// memory stays bounded whatever the image size.
const BATCH_CHUNKS: usize = 64;
const BATCH_BYTES: u64 = 16 << 20;

enum Produced<'s> {
    Source(&'s [u8]),
    Owned(Vec<u8>),
}

impl Produced<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Produced::Source(b) => b,
            Produced::Owned(v) => v,
        }
    }
}

struct Output<'s> {
    bytes: Produced<'s>,
    blob_read: u64,
    fell_back: bool,
    kind: &'static str,
}

fn source_slice(source: &[u8], offset: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    source.get(start..start.checked_add(usize::try_from(len).ok()?)?)
}

fn produce_fallback<'s>(
    bundle: &VerifiedBundle,
    reader: &dyn BundleSource,
    entry: &ChunkEntry,
    index: usize,
) -> Result<(Produced<'s>, u64, &'static str), Error> {
    match entry.fallback {
        Fallback::Zero => Ok((Produced::Owned(vec![0u8; entry.len as usize]), 0, "zero")),
        Fallback::Literal { blob, .. } => {
            let mut encoded = Vec::new();
            bundle.read_blob(reader, &blob, &mut encoded)?;
            let mut out = vec![0u8; entry.len as usize];
            codec::decode_literal(&encoded, &mut out)
                .map_err(|error| Error::Blob { index, error })?;
            Ok((Produced::Owned(out), blob.len.into(), "literal"))
        }
    }
}

fn produce<'s>(
    bundle: &VerifiedBundle,
    reader: &dyn BundleSource,
    source: &'s [u8],
    entry: &ChunkEntry,
    index: usize,
    step: &Step,
) -> Result<Output<'s>, Error> {
    let len = u64::from(entry.len);
    let preferred: Option<(Produced<'s>, u64, &'static str)> = match step {
        Step::Copy { offset } => {
            source_slice(source, *offset, len).map(|b| (Produced::Source(b), 0, "copy"))
        }
        Step::Patch {
            base_offset,
            base_len,
            blob,
        } => {
            let mut encoded = Vec::new();
            bundle.read_blob(reader, blob, &mut encoded)?;
            let mut out = vec![0u8; entry.len as usize];
            source_slice(source, *base_offset, *base_len)
                .and_then(|b| codec::decode_patch(b, &encoded, &mut out).ok())
                .map(|()| (Produced::Owned(out), u64::from(blob.len), "patch"))
        }
        Step::Zero | Step::Literal { .. } => Some(produce_fallback(bundle, reader, entry, index)?),
    };
    if let Some((bytes, read, kind)) = preferred
        && bytes.bytes().len() == entry.len as usize
        && hash(bytes.bytes()) == entry.hash
    {
        return Ok(Output {
            bytes,
            blob_read: read,
            fell_back: false,
            kind,
        });
    }
    if matches!(step, Step::Zero | Step::Literal { .. }) {
        return Err(Error::ChunkHashMismatch { index });
    }
    // The source changed between plan and apply: its bytes no longer match. Rebuild the chunk
    // from the recipe that needs no source rather than fail the update.
    let (bytes, read, kind) = produce_fallback(bundle, reader, entry, index)?;
    Ok(Output {
        bytes,
        blob_read: read,
        fell_back: true,
        kind,
    })
}

/// Rebuilds the target: runs `plan` chunk by chunk, verifies each chunk before writing it,
/// checks the whole image's hash, and syncs the target.
pub fn apply(
    bundle: &VerifiedBundle,
    reader: &dyn BundleSource,
    source: &[u8],
    target: &mut dyn Target,
    plan: &Plan,
    progress: ProgressFn<'_>,
) -> Result<ApplyReport, Error> {
    let started = Instant::now();
    let manifest = bundle.manifest();
    let mut report = ApplyReport {
        bundle_bytes_read: plan.header_bytes,
        ..ApplyReport::default()
    };
    let mut image_hasher = blake3::Hasher::new();
    let total = manifest.target.size;
    let mut next = 0usize;
    let chunks = manifest.chunks.len().min(plan.steps.len());
    if plan.steps.len() != manifest.chunks.len() {
        return Err(Error::InvalidInput(
            "the plan was made for another manifest".into(),
        ));
    }
    while next < chunks {
        let mut end = next;
        let mut bytes = 0u64;
        while end < chunks && end - next < BATCH_CHUNKS && bytes < BATCH_BYTES {
            bytes += manifest.chunks.get(end).map_or(0, |c| u64::from(c.len));
            end += 1;
        }
        let outputs: Vec<Result<Output<'_>, Error>> = (next..end)
            .into_par_iter()
            .map(|i| match (manifest.chunks.get(i), plan.steps.get(i)) {
                (Some(entry), Some(step)) => produce(bundle, reader, source, entry, i, step),
                _ => Err(Error::InvalidInput(
                    "the plan was made for another manifest".into(),
                )),
            })
            .collect();
        for (i, output) in (next..end).zip(outputs) {
            let output = output?;
            let entry = manifest
                .chunks
                .get(i)
                .ok_or(Error::ChunkHashMismatch { index: i })?;
            let chunk = VerifiedChunk::check(entry, i, output.bytes.bytes())?;
            target
                .write_chunk(&chunk)
                .map_err(Error::io(format!("writing chunk {i} to the target")))?;
            image_hasher.update(chunk.bytes());
            report.bytes_written += u64::from(entry.len);
            report.bundle_bytes_read += output.blob_read;
            if output.fell_back {
                report.fell_back.push(i);
            }
            match output.kind {
                "copy" => report.counts.copy += 1,
                "zero" => report.counts.zero += 1,
                "patch" => report.counts.patch += 1,
                _ => report.counts.literal += 1,
            }
        }
        progress(Progress {
            phase: "apply",
            done: report.bytes_written,
            total,
        });
        next = end;
    }
    let image_hash: Hash = *image_hasher.finalize().as_bytes();
    if image_hash != manifest.target.hash {
        return Err(Error::TargetHashMismatch {
            bad_chunks: Vec::new(),
            bad_count: 0,
        });
    }
    target.sync().map_err(Error::io("syncing the target"))?;
    report.elapsed = started.elapsed();
    Ok(report)
}
