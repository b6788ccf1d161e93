//! Generation: from a source and a target image (and, for one bundle that serves a fleet
//! spread over releases, earlier releases: [`diff_bases`]) to a signed bundle.
//!
//! Chunk the target (CDC), joining runs of zero chunks; for each chunk pick recipes: zero-fill;
//! copy when the source holds the same bytes; else (with a source) a patch: bsdiff-class against
//! the source windows its anchors point to, trimmed to what it reads, or the chunk as new data
//! with an empty base, whichever compresses smaller; and always a literal. Neighbouring
//! patches are then joined into groups of about [`GROUP_CONTENT`](group::GROUP_CONTENT)
//! bytes (`group.rs`), each compressed as two LZMA2 streams (differences spelled sparsely or
//! densely, extra bytes with or without a branch filter, whichever is smaller). Then lay out
//! the payload (groups first, in target order, so a device with the expected source reads one
//! contiguous run; literals after) and sign the manifest.
//! Matching and compression run on all cores; memory is the images (mapped), the indexes, the
//! patch contents and the encoded blobs.

mod group;
mod index;

use group::{Encoded, Group, encode_grouped};

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use crate::chunk::{
    ChunkSpan, DEFAULT_CHUNKING, chunk_and_hash, chunk_hash, hash_large, source_hash, source_part,
};
use crate::codec::{self, PatchContent};
use crate::error::{DiffError, Progress, ProgressFn, io};
use crate::format::manifest::{Alternate, Fallback, LiteralCodec, Patch, PatchCodec};
use crate::format::{
    BlobRef, ChunkCheck, ChunkEntry, Chunking, Envelope, GroupMember, ImageId, Limits,
    MAX_BASE_RANGES, Manifest, PatchBase,
};
use crate::sign::{SecretKey, sign_manifest};

pub use index::SourceIndex;

/// What to generate and how hard to try.
#[derive(Debug, Clone)]
pub struct DiffOptions {
    /// Chunking parameters.
    pub chunking: Chunking,
    /// zstd level for literal blobs.
    pub literal_level: i32,
    /// Release number.
    pub release_version: u64,
    /// Hardware-compatibility ids (sorted and de-duplicated by `diff`).
    pub hardware_compat: Vec<String>,
    /// Release channel (may be empty).
    pub channel: String,
    /// Creation time, Unix seconds.
    pub created_at: u64,
    /// Expiry, Unix seconds.
    pub expires_at: Option<u64>,
    /// A root-signed keyset file to carry in the bundle (key rotation reaches devices with
    /// the next release); checked for form here, for trust on the device.
    pub keyset: Option<Vec<u8>>,
}

impl Default for DiffOptions {
    fn default() -> Self {
        DiffOptions {
            chunking: DEFAULT_CHUNKING,
            literal_level: 19,
            release_version: 1,
            hardware_compat: Vec::new(),
            channel: String::new(),
            created_at: 0,
            expires_at: None,
            keyset: None,
        }
    }
}

/// What `diff` produced.
#[derive(Debug, Clone, Default)]
pub struct DiffReport {
    /// Chunks in the target.
    pub chunks: usize,
    /// Chunks with a copy recipe.
    pub copy: usize,
    /// All-zero chunks.
    pub zero: usize,
    /// Chunks with a patch recipe.
    pub patch: usize,
    /// Chunks only a literal can produce.
    pub literal_only: usize,
    /// Manifest bytes.
    pub manifest_len: u64,
    /// Sum of patch group blob lengths.
    pub patch_bytes: u64,
    /// Patch groups.
    pub groups: usize,
    /// Sum of literal blob lengths: what a blank device downloads besides the header.
    pub literal_bytes: u64,
    /// Chunks with patches against earlier releases (extra bases).
    pub alternates: usize,
    /// Sum of those patches' group blob lengths.
    pub alternate_bytes: u64,
    /// Total bundle size.
    pub bundle_len: u64,
    /// Bytes a device holding exactly the source reads: header, patches, needed literals.
    pub expected_download: u64,
}

fn encode_chunk(
    span: &ChunkSpan,
    target: &[u8],
    source: &[u8],
    index: &SourceIndex,
    options: &DiffOptions,
    max_base: u64,
) -> Option<Encoded> {
    let data = span.bytes(target);
    if data.iter().all(|&b| b == 0) {
        return Some(Encoded {
            zero: true,
            ..Encoded::default()
        });
    }
    let literal = codec::encode_literal(data, options.literal_level)?;
    if let Some(&at) = index.chunks.get(&span.hash) {
        return Some(Encoded {
            copy: Some(at),
            literal: Some(literal),
            ..Encoded::default()
        });
    }
    if source.is_empty() {
        return Some(Encoded {
            literal: Some(literal),
            ..Encoded::default()
        });
    }
    // Against its base where the chunk's old bytes were found, else as new data: whichever
    // compresses smaller alone will in its group too. Approximate matches against
    // unrelated bytes turn compressible data into noise, so the base does not always win.
    let windows = base_windows(index, data, span.len, source.len() as u64, max_base);
    let raw = codec::raw_content(data);
    let estimate = |content: &PatchContent| codec::estimate_group_len(&content.joined(true));
    let patch = match patch_content(source, &windows, data) {
        Some((base, content)) if estimate(&content) < estimate(&raw) => (base, content),
        _ => (PatchBase::empty(), raw),
    };
    Some(Encoded {
        patch: Some(patch),
        literal: Some(literal),
        ..Encoded::default()
    })
}

/// The source bytes of `windows`, joined.
fn join_windows(source: &[u8], windows: &[(u64, u64)]) -> Option<Vec<u8>> {
    let mut base = Vec::new();
    for &(offset, len) in windows {
        // Inside the source by construction.
        base.extend_from_slice(source.get(offset as usize..(offset + len) as usize)?);
    }
    Some(base)
}

/// `windows` cut down to the bytes that `reads` (intervals of the joined windows) touch;
/// windows nothing reads are dropped.
fn trim_windows(windows: &[(u64, u64)], reads: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut trimmed = Vec::with_capacity(windows.len());
    let mut joined_at = 0u64;
    for &(offset, len) in windows {
        let (start, end) = (joined_at, joined_at + len);
        let touched = reads
            .iter()
            .filter(|&&(a, b)| a < end && b > start)
            .map(|&(a, b)| (a.max(start), b.min(end)));
        let span = touched.fold(None, |acc: Option<(u64, u64)>, (a, b)| {
            Some(acc.map_or((a, b), |(lo, hi)| (lo.min(a), hi.max(b))))
        });
        if let Some((lo, hi)) = span {
            trimmed.push((offset + (lo - start), hi - lo));
        }
        joined_at = end;
    }
    trimmed
}

/// The bsdiff-class content of `data` against `windows`, with its base: the windows are first
/// cut down to the bytes the patch reads and the patch made again against those, so the
/// device's base check covers only bytes that matter (a drifted block in an unread margin
/// then costs nothing). Read back once here: the generator never ships a patch it cannot
/// rebuild.
fn patch_content(
    source: &[u8],
    windows: &[(u64, u64)],
    data: &[u8],
) -> Option<(PatchBase, PatchContent)> {
    let wide = codec::bsdiff_content(&join_windows(source, windows)?, data)?;
    let windows = trim_windows(windows, &codec::base_reads(&wide.ctrl)?);
    let base = join_windows(source, &windows)?;
    let content = codec::bsdiff_content(&base, data)?;
    // Both spellings of the differences: the group picks one later.
    let mut check = vec![0u8; data.len()];
    let rebuilds = [false, true].into_iter().all(|sparse| {
        codec::decode_bsdiff_content(&base, content.parts(sparse), &mut check).is_ok()
            && check == data
    });
    rebuilds
        .then(|| PatchBase::new(&windows, source_hash(&base)))
        .flatten()
        .map(|base| (base, content))
}

/// How far a patch base window reaches beyond its chunk's aligned bytes on each side, in
/// chunk lengths, so insertions and deletions still find their old bytes; a wider base gives
/// bsdiff's approximate matches more false friends, and the base check covers more bytes
/// (the measurements: BENCHMARKS.md, "Tuning record").
const WINDOW_PAD_CHUNKS: i64 = 1;

/// The source windows a changed chunk is patched against, chosen greedily: the diagonal
/// (source position − chunk position) most of the chunk's anchors agree on, then up to three
/// more, each the one most of the anchors not yet inside a chosen window agree on (at least
/// two: parts of the chunk that moved independently, or that recur elsewhere). Each window
/// is the chunk's aligned bytes widened by [`WINDOW_PAD_CHUNKS`] each side; windows do not
/// overlap and hold at most `max_base` bytes in all. Joined best last.
fn base_windows(
    index: &SourceIndex,
    data: &[u8],
    len: u32,
    source_len: u64,
    max_base: u64,
) -> Vec<(u64, u64)> {
    let pad = WINDOW_PAD_CHUNKS * i64::from(len);
    let src_len = i64::try_from(source_len).unwrap_or(i64::MAX);
    let hits = index.hits(data);
    let mut covered = vec![false; hits.len()];
    let mut refused: Vec<i64> = Vec::new();
    let mut windows: Vec<(u64, u64)> = Vec::new();
    let mut total = 0u64;
    // Each round adds a window or refuses a diagonal; a few dozen rounds settle any chunk.
    for _ in 0..64 {
        if windows.len() == MAX_BASE_RANGES {
            break;
        }
        let mut votes: HashMap<i64, u32> = HashMap::new();
        for (hit, _) in hits.iter().zip(&covered).filter(|(_, c)| !**c) {
            for place in hit.places() {
                let diag = place - hit.at;
                if !refused.contains(&diag) {
                    *votes.entry(diag).or_insert(0) += 1;
                }
            }
        }
        // Most votes; ties to the lower diagonal, so the choice is deterministic.
        let Some((diag, n)) = votes
            .into_iter()
            .max_by_key(|&(diag, n)| (n, std::cmp::Reverse(diag)))
        else {
            break;
        };
        if !windows.is_empty() && n < 2 {
            break;
        }
        // Clamped into 0..=source_len: the casts cannot wrap.
        let start = (diag - pad).clamp(0, src_len) as u64;
        let end = (diag + i64::from(len) + pad).clamp(0, src_len) as u64;
        if end <= start
            || total + (end - start) > max_base
            || windows.iter().any(|&(o, l)| start < o + l && o < end)
        {
            refused.push(diag);
            continue;
        }
        total += end - start;
        windows.push((start, end - start));
        let inside = |p: i64| p >= start as i64 && p < end as i64;
        for (hit, c) in hits.iter().zip(covered.iter_mut()) {
            *c = *c || hit.places().any(inside);
        }
    }
    windows.reverse();
    windows
}

/// Joins neighbouring all-zero chunks into chunks of up to the format's chunk limit: a zero
/// chunk is never read from the source, so joining loses no reuse or drift tolerance, and the
/// manifest carries one entry (length, hash, mask) instead of many (the measurements:
/// BENCHMARKS.md, "Tuning record").
fn merge_zero_runs(target: &[u8], spans: Vec<ChunkSpan>, limits: &Limits) -> Vec<ChunkSpan> {
    // (span, is all zero, was joined)
    let mut out: Vec<(ChunkSpan, bool, bool)> = Vec::with_capacity(spans.len());
    for span in spans {
        let zero = span.bytes(target).iter().all(|&b| b == 0);
        match out.last_mut() {
            Some((last, true, joined)) if zero && last.len + span.len <= limits.max_chunk_len => {
                last.len += span.len;
                *joined = true;
            }
            _ => out.push((span, zero, false)),
        }
    }
    out.into_par_iter()
        .map(|(mut span, _, joined)| {
            if joined {
                span.hash = chunk_hash(span.bytes(target));
            }
            span
        })
        .collect()
}

/// Generates a bundle that rebuilds `target`, with copies and patches against `source` (empty
/// for a full bundle), signs it with `key`, and writes it to `out`.
pub fn diff(
    source: &[u8],
    target: &[u8],
    options: &DiffOptions,
    key: &SecretKey,
    out: &mut dyn Write,
    progress: ProgressFn<'_>,
) -> Result<DiffReport, DiffError> {
    diff_bases(source, &[], target, options, key, out, progress)
}

/// The patches of one extra base (an earlier release than the source), by chunk: for each
/// changed chunk that a device holding that base cannot find by content in its own partition,
/// a patch against that base, or the chunk as new data (an empty base) when that compresses
/// smaller; with their groups, compressed as they come ([`encode_grouped`]).
fn alternates(
    base: &[u8],
    spans: &[ChunkSpan],
    target: &[u8],
    encoded: &[Encoded],
    chunking: Chunking,
    max_base: u64,
    limits: &Limits,
) -> Option<(Vec<Encoded>, Vec<Group>)> {
    let base_spans = chunk_and_hash(base, chunking);
    let index = SourceIndex::build(base, &base_spans);
    encode_grouped(spans, limits, |i, span| {
        if encoded.get(i).is_none_or(|primary| primary.zero)
            || index.chunks.contains_key(&span.hash)
        {
            return Some(Encoded::default());
        }
        // Even where the source's patch would serve this base too (its base bytes are the
        // same here, or it has none), the alternate keeps this base's devices within their
        // own groups: reading a few members of the source's groups costs them more.
        let data = span.bytes(target);
        let windows = base_windows(&index, data, span.len, base.len() as u64, max_base);
        let raw = codec::raw_content(data);
        let estimate = |c: &PatchContent| codec::estimate_group_len(&c.joined(true));
        let patch = match patch_content(base, &windows, data) {
            Some((b, content)) if estimate(&content) < estimate(&raw) => (b, content),
            _ => (PatchBase::empty(), raw),
        };
        Some(Encoded {
            patch: Some(patch),
            ..Encoded::default()
        })
    })
}

/// [`diff`] with patches against earlier releases too: a device holding any of `bases` (older
/// than `source`, at most [`crate::format::manifest::MAX_EXTRA_BASES`]) rebuilds the changed
/// chunks from its own partition, where the source's patches would not apply, and reads
/// nothing of the other bases' patches. With no extra base the bundle is [`diff`]'s.
pub fn diff_bases(
    source: &[u8],
    bases: &[&[u8]],
    target: &[u8],
    options: &DiffOptions,
    key: &SecretKey,
    out: &mut dyn Write,
    progress: ProgressFn<'_>,
) -> Result<DiffReport, DiffError> {
    let limits = Limits::DEFAULT;
    if bases.len() as u64 > crate::format::manifest::MAX_EXTRA_BASES
        || (!bases.is_empty() && source.is_empty())
    {
        return Err(DiffError::InvalidInput(format!(
            "at most {} earlier releases besides the source, and only with a source",
            crate::format::manifest::MAX_EXTRA_BASES
        )));
    }
    let too_large = |image: &[u8]| image.len() as u64 > limits.max_image_len;
    if too_large(target) || too_large(source) || bases.iter().any(|b| too_large(b)) {
        return Err(DiffError::InvalidInput(format!(
            "image larger than the format's {}-byte limit",
            limits.max_image_len
        )));
    }
    let Chunking { min, avg, max } = options.chunking;
    let in_range = (64..=1 << 20).contains(&min)
        && (256..=4 << 20).contains(&avg)
        && (1024..=limits.max_chunk_len).contains(&max);
    if !in_range || min > avg || avg > max || min % 2 != 0 || avg % 2 != 0 || max % 2 != 0 {
        return Err(DiffError::InvalidInput(
            "chunking must satisfy 64 <= min <= avg <= max <= 4 MiB, all even (SPEC.md, chunking)"
                .into(),
        ));
    }
    if let Some(keyset) = &options.keyset {
        let signed = crate::format::SignedKeyset::decode(keyset)?;
        crate::format::Keyset::decode(signed.document)?;
    }
    let mut hardware_compat = options.hardware_compat.clone();
    hardware_compat.sort();
    hardware_compat.dedup();
    if hardware_compat.is_empty() {
        return Err(DiffError::InvalidInput(
            "at least one hardware-compatibility id is required".into(),
        ));
    }

    progress(Progress {
        phase: "index source",
        done: 0,
        total: source.len() as u64,
    });
    let source_spans = chunk_and_hash(source, options.chunking);
    let index = SourceIndex::build(source, &source_spans);
    let source_id = (!source.is_empty()).then(|| ImageId {
        size: source.len() as u64,
        hash: hash_large(source),
    });
    progress(Progress {
        phase: "index source",
        done: source.len() as u64,
        total: source.len() as u64,
    });

    let spans = merge_zero_runs(target, chunk_and_hash(target, options.chunking), &limits);
    if spans.len() as u64 > limits.max_chunks {
        return Err(DiffError::InvalidInput(
            "too many chunks: raise the chunk size".into(),
        ));
    }
    let target_id = ImageId {
        size: target.len() as u64,
        hash: hash_large(target),
    };

    let done = AtomicU64::new(0);
    let total = target.len() as u64;
    let max_base = limits.max_patch_base_len;
    // The chunks, and the source's patches grouped and compressed as they come.
    let (encoded, groups) = encode_grouped(&spans, &limits, |_, span| {
        let e = encode_chunk(span, target, source, &index, options, max_base);
        let now = done.fetch_add(span.len.into(), Ordering::Relaxed) + u64::from(span.len);
        progress(Progress {
            phase: "compress",
            done: now,
            total,
        });
        e
    })
    .ok_or(DiffError::Encoder("zstd could not compress a chunk"))?;
    drop(index);

    // Per extra base: its patches, then their groups (each base's content freed in turn).
    let mut extra_groups: Vec<Vec<Group>> = Vec::with_capacity(bases.len());
    for (k, base) in bases.iter().enumerate() {
        progress(Progress {
            phase: "patch earlier releases",
            done: k as u64,
            total: bases.len() as u64,
        });
        let (patches, groups) = alternates(
            base,
            &spans,
            target,
            &encoded,
            options.chunking,
            max_base,
            &limits,
        )
        .ok_or(DiffError::Encoder("patching an earlier release"))?;
        // Keep each member's base with it: groups carry only chunk indexes and lengths.
        let with_bases = groups
            .into_iter()
            .map(|mut g| {
                g.bases = g
                    .members
                    .iter()
                    .filter_map(|&(i, _)| patches.get(i)?.patch.as_ref().map(|(b, _)| *b))
                    .collect();
                g
            })
            .collect();
        extra_groups.push(with_bases);
    }

    // Layout: the group blobs in target order, then the literal blobs in target order.
    let mut report = DiffReport {
        chunks: spans.len(),
        groups: groups.len(),
        ..DiffReport::default()
    };
    let mut offset = 0u64;
    let mut patch_refs: Vec<Option<(BlobRef, GroupMember)>> = vec![None; spans.len()];
    for group in &groups {
        let blob = BlobRef {
            offset,
            len: group.blob.len() as u32, // at most max_blob_len
        };
        offset += u64::from(blob.len);
        for &(i, member) in &group.members {
            if let Some(slot) = patch_refs.get_mut(i) {
                *slot = Some((blob, member));
            }
        }
    }
    report.patch_bytes = offset;
    // A device with the expected source reads every group of the source's patches.
    report.expected_download = offset;
    let mut alternate_refs: Vec<Vec<Alternate>> = vec![Vec::new(); spans.len()];
    for (k, groups) in extra_groups.iter().enumerate() {
        let base = u8::try_from(k + 1).unwrap_or(u8::MAX); // at most MAX_EXTRA_BASES
        for group in groups {
            let blob = BlobRef {
                offset,
                len: group.blob.len() as u32, // at most max_blob_len
            };
            offset += u64::from(blob.len);
            report.alternate_bytes += u64::from(blob.len);
            for (&(i, member), patch_base) in group.members.iter().zip(&group.bases) {
                if let Some(list) = alternate_refs.get_mut(i) {
                    list.push(Alternate {
                        base,
                        patch: Patch {
                            codec: PatchCodec::Grouped,
                            base: *patch_base,
                            blob,
                            member,
                        },
                    });
                }
            }
        }
    }
    let literals_at = offset;
    let mut chunks = Vec::with_capacity(spans.len());
    for (((span, e), patch_ref), alternates) in spans
        .iter()
        .zip(&encoded)
        .zip(patch_refs)
        .zip(alternate_refs)
    {
        let fallback = match &e.literal {
            Some(blob) if !e.zero => {
                let r = BlobRef {
                    offset,
                    len: blob.len() as u32,
                };
                offset += blob.len() as u64;
                Fallback::Literal {
                    codec: LiteralCodec::Zstd,
                    blob: r,
                }
            }
            _ => Fallback::Zero,
        };
        let patch = e
            .patch
            .as_ref()
            .zip(patch_ref)
            .map(|((base, _), (blob, member))| Patch {
                codec: PatchCodec::Grouped,
                base: *base,
                blob,
                member,
            });
        match (&e.copy, &patch, &fallback) {
            (Some(_), _, _) => report.copy += 1,
            (_, Some(_), _) => report.patch += 1,
            (_, _, Fallback::Zero) => report.zero += 1,
            (_, _, Fallback::Literal { blob, .. }) => {
                report.literal_only += 1;
                report.expected_download += u64::from(blob.len);
            }
        }
        if !alternates.is_empty() {
            report.alternates += 1;
        }
        // A chunk also patched against an earlier release is checked by its whole chunk
        // hash: downloaded patch output must not pass on a source hash.
        let check = match (e.zero, e.copy, alternates.is_empty()) {
            (true, _, _) => ChunkCheck::Zero,
            (false, Some(_), true) => ChunkCheck::Source(source_part(&span.hash)),
            _ => ChunkCheck::Hash(span.hash),
        };
        chunks.push(ChunkEntry {
            offset: span.offset,
            len: span.len,
            check,
            copy: e.copy,
            patch,
            alternates,
            fallback,
        });
    }
    report.literal_bytes = offset - literals_at;

    let mut manifest = Manifest {
        key_id: key.public().key_id().0,
        release_version: options.release_version,
        created_at: options.created_at,
        expires_at: options.expires_at,
        hardware_compat,
        channel: options.channel.clone(),
        source: source_id,
        bases: bases
            .iter()
            .map(|b| ImageId {
                size: b.len() as u64,
                hash: hash_large(b),
            })
            .collect(),
        target: target_id,
        chunking: options.chunking,
        payload_len: offset,
        chunks,
    };
    manifest.link_groups(&limits)?;
    manifest.validate(&limits)?;
    let manifest_bytes = manifest
        .encode()
        .ok_or(DiffError::Encoder("zstd could not pack the manifest"))?;
    let record = sign_manifest(key, &manifest_bytes);
    let envelope = Envelope {
        manifest_len: u32::try_from(manifest_bytes.len()).map_err(|_| {
            DiffError::InvalidInput("manifest too large: raise the chunk size".into())
        })?,
        signature_count: 1,
        keyset_len: u32::try_from(options.keyset.as_ref().map_or(0, Vec::len))
            .map_err(|_| DiffError::InvalidInput("keyset file too large".into()))?,
        payload_len: offset,
    };
    let io = io("writing the bundle");
    let mut write = || -> std::io::Result<()> {
        out.write_all(&envelope.encode())?;
        out.write_all(&manifest_bytes)?;
        let mut sig = Vec::with_capacity(72);
        record.encode_into(&mut sig);
        out.write_all(&sig)?;
        if let Some(keyset) = &options.keyset {
            out.write_all(keyset)?;
        }
        for group in groups.iter().chain(extra_groups.iter().flatten()) {
            out.write_all(&group.blob)?;
        }
        for e in &encoded {
            if let (Some(blob), false) = (&e.literal, e.zero) {
                out.write_all(blob)?;
            }
        }
        out.flush()
    };
    write().map_err(io)?;
    report.manifest_len = manifest_bytes.len() as u64;
    report.bundle_len = envelope.bundle_len().unwrap_or(u64::MAX);
    report.expected_download += envelope.payload_offset();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_trimmed_to_the_bytes_the_patch_reads() {
        // Two windows of 1000 bytes at source offsets 5000 and 9000; the records read joined
        // bytes 100..200 and 300..350 (the first window) and nothing of the second.
        let windows = [(5000, 1000), (9000, 1000)];
        assert_eq!(
            trim_windows(&windows, &[(100, 200), (300, 350)]),
            vec![(5100, 250)]
        );
        // A read across the join point keeps the end of one window and the start of the next.
        assert_eq!(
            trim_windows(&windows, &[(900, 1100)]),
            vec![(5900, 100), (9000, 100)]
        );
        assert!(trim_windows(&windows, &[]).is_empty());
    }

    #[test]
    fn a_patch_base_holds_only_what_the_patch_reads() {
        // The chunk is bytes 40_000..60_000 of the source with one byte changed; its window
        // spans the whole source, but the base that ships is (about) the 20 000 bytes it reads.
        let source: Vec<u8> = (0..100_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let mut data = source[40_000..60_000].to_vec();
        data[7] ^= 0xff;
        let (base, content) = patch_content(&source, &[(0, 100_000)], &data).unwrap();
        assert!(base.joined_len() <= 20_000, "{:?}", base.ranges());
        let mut out = vec![0u8; data.len()];
        let joined = join_windows(&source, base.ranges()).unwrap();
        codec::decode_bsdiff_content(&joined, content.parts(true), &mut out).unwrap();
        assert_eq!(out, data);
    }
}
