//! Generation: from a source and a target image to a signed bundle.
//!
//! Chunk the target (CDC); for each chunk pick recipes: zero-fill; copy when the source holds
//! the same bytes; a patch against the source range that anchor votes align with it (both
//! patch codecs are tried, zstd-ref and bsdiff-class, and the smaller kept when it beats the
//! literal); and always a literal. Then lay out the payload (patches first, in
//! target order, so a device with the expected source reads one contiguous run; literals after)
//! and sign the manifest. Compression runs on all cores; memory is the images (mapped), the
//! indexes and the encoded blobs.

mod index;

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use crate::chunk::{ChunkSpan, DEFAULT_CHUNKING, chunk_and_hash, hash, hash_large};
use crate::codec;
use crate::error::{Error, Progress, ProgressFn};
use crate::format::manifest::{Fallback, LiteralCodec, Patch, PatchCodec};
use crate::format::{
    BlobRef, ChunkEntry, Chunking, Envelope, ImageId, Limits, MAX_BASE_RANGES, Manifest, PatchBase,
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
    /// zstd level for patch blobs.
    pub patch_level: i32,
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
            patch_level: 19,
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
    /// Sum of patch blob lengths.
    pub patch_bytes: u64,
    /// Sum of literal blob lengths: what a blank device downloads besides the header.
    pub literal_bytes: u64,
    /// Total bundle size.
    pub bundle_len: u64,
    /// Bytes a device holding exactly the source reads: header, patches, needed literals.
    pub expected_download: u64,
}

/// Manifest bytes a patch recipe adds beyond the literal it replaces (codec, base range and
/// hash, blob reference): a patch must save more than this to be worth shipping.
const PATCH_RECIPE_OVERHEAD: usize = 48;

struct Encoded {
    copy: Option<u64>,
    zero: bool,
    patch: Option<(PatchCodec, PatchBase, Vec<u8>)>,
    literal: Option<Vec<u8>>,
}

fn encode_chunk(
    span: &ChunkSpan,
    target: &[u8],
    source: &[u8],
    index: &SourceIndex,
    options: &DiffOptions,
    max_base: u64,
) -> Encoded {
    let data = span.bytes(target);
    if data.iter().all(|&b| b == 0) {
        return Encoded {
            copy: None,
            zero: true,
            patch: None,
            literal: None,
        };
    }
    let literal = codec::encode_literal(data, options.literal_level);
    if let Some(&at) = index.chunks.get(&span.hash) {
        return Encoded {
            copy: Some(at),
            zero: false,
            patch: None,
            literal: Some(literal),
        };
    }
    let windows = base_windows(index, data, span.len, source.len() as u64, max_base);
    let patch = (!windows.is_empty()).then(|| {
        let mut base = Vec::new();
        for &(offset, len) in &windows {
            // Inside the source by construction.
            base.extend_from_slice(source.get(offset as usize..(offset + len) as usize)?);
        }
        let (codec, blob) = best_patch(&base, data, options.patch_level)?;
        let overhead = PATCH_RECIPE_OVERHEAD + 8 * (windows.len() - 1);
        (blob.len() + overhead < literal.len())
            .then(|| PatchBase::new(&windows, hash(&base)).map(|b| (codec, b, blob)))
            .flatten()
    });
    let patch = patch.flatten();
    Encoded {
        copy: None,
        zero: false,
        patch,
        literal: Some(literal),
    }
}

/// The source windows a changed chunk is patched against: around each of the diagonals its
/// anchors vote for (the best, and up to three more that at least two anchors agree on, where
/// parts of the chunk moved independently), widened by half a chunk each side so insertions
/// and deletions still find their old bytes; not overlapping, at most `max_base` bytes in all.
/// Joined best last: zstd references nearer bytes more cheaply.
fn base_windows(
    index: &SourceIndex,
    data: &[u8],
    len: u32,
    source_len: u64,
    max_base: u64,
) -> Vec<(u64, u64)> {
    let pad = i64::from(len / 2);
    let src_len = i64::try_from(source_len).unwrap_or(i64::MAX);
    let mut windows: Vec<(u64, u64)> = Vec::new();
    let mut total = 0u64;
    for (rank, (diag, votes)) in index.alignments(data).into_iter().enumerate() {
        if windows.len() == MAX_BASE_RANGES {
            break;
        }
        if rank > 0 && votes < 2 {
            break;
        }
        let start = (diag - pad).clamp(0, src_len);
        let end = (diag + i64::from(len) + pad).clamp(0, src_len);
        let (start, end) = (start as u64, end as u64);
        if end <= start
            || total + (end - start) > max_base
            || windows.iter().any(|&(o, l)| start < o + l && o < end)
        {
            continue;
        }
        total += end - start;
        windows.push((start, end - start));
    }
    windows.reverse();
    windows
}

/// The smaller of the zstd-ref and bsdiff-class patches of `data` against `base`. A bsdiff
/// patch is decoded once here: the generator never ships a patch it cannot read back.
fn best_patch(base: &[u8], data: &[u8], level: i32) -> Option<(PatchCodec, Vec<u8>)> {
    let zref = codec::encode_patch(PatchCodec::ZstdRef, base, data, level);
    let bsdiff = codec::encode_patch(PatchCodec::Bsdiff, base, data, level);
    let mut check = vec![0u8; data.len()];
    let bsdiff_ok = !bsdiff.is_empty()
        && codec::decode_patch(PatchCodec::Bsdiff, base, &bsdiff, &mut check).is_ok()
        && check == data;
    if bsdiff_ok && (zref.is_empty() || bsdiff.len() < zref.len()) {
        Some((PatchCodec::Bsdiff, bsdiff))
    } else {
        (!zref.is_empty()).then_some((PatchCodec::ZstdRef, zref))
    }
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
) -> Result<DiffReport, Error> {
    let limits = Limits::DEFAULT;
    if target.len() as u64 > limits.max_image_len || source.len() as u64 > limits.max_image_len {
        return Err(Error::InvalidInput(format!(
            "image larger than the format's {}-byte limit",
            limits.max_image_len
        )));
    }
    let Chunking { min, avg, max } = options.chunking;
    let in_range = (64..=1 << 20).contains(&min)
        && (256..=4 << 20).contains(&avg)
        && (1024..=limits.max_chunk_len).contains(&max);
    if !in_range || min > avg || avg > max || min % 2 != 0 || avg % 2 != 0 || max % 2 != 0 {
        return Err(Error::InvalidInput(
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
        return Err(Error::InvalidInput(
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

    let spans = chunk_and_hash(target, options.chunking);
    if spans.len() as u64 > limits.max_chunks {
        return Err(Error::InvalidInput(
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
    let encoded: Vec<Encoded> = spans
        .par_iter()
        .map(|span| {
            let e = encode_chunk(span, target, source, &index, options, max_base);
            let now = done.fetch_add(span.len.into(), Ordering::Relaxed) + u64::from(span.len);
            progress(Progress {
                phase: "compress",
                done: now,
                total,
            });
            e
        })
        .collect();
    drop(index);

    // Layout: all patch blobs in target order, then all literal blobs in target order.
    let mut report = DiffReport {
        chunks: spans.len(),
        ..DiffReport::default()
    };
    let mut offset = 0u64;
    let mut patch_refs = Vec::with_capacity(spans.len());
    for e in &encoded {
        patch_refs.push(e.patch.as_ref().map(|(_, _, blob)| {
            let r = BlobRef {
                offset,
                len: blob.len() as u32,
            };
            offset += blob.len() as u64;
            r
        }));
    }
    report.patch_bytes = offset;
    let mut chunks = Vec::with_capacity(spans.len());
    for ((span, e), patch_ref) in spans.iter().zip(&encoded).zip(patch_refs) {
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
            .map(|((codec, base, _), blob)| Patch {
                codec: *codec,
                base: *base,
                blob,
            });
        match (&e.copy, &patch, &fallback) {
            (Some(_), _, _) => report.copy += 1,
            (_, Some(p), _) => {
                report.patch += 1;
                report.expected_download += u64::from(p.blob.len);
            }
            (_, _, Fallback::Zero) => report.zero += 1,
            (_, _, Fallback::Literal { blob, .. }) => {
                report.literal_only += 1;
                report.expected_download += u64::from(blob.len);
            }
        }
        chunks.push(ChunkEntry {
            offset: span.offset,
            len: span.len,
            hash: span.hash,
            copy: e.copy,
            patch,
            fallback,
        });
    }
    report.literal_bytes = offset - report.patch_bytes;

    let manifest = Manifest {
        key_id: key.public().key_id().0,
        release_version: options.release_version,
        created_at: options.created_at,
        expires_at: options.expires_at,
        hardware_compat,
        channel: options.channel.clone(),
        source: source_id,
        target: target_id,
        chunking: options.chunking,
        payload_len: offset,
        chunks,
    };
    manifest.validate(&limits)?;
    let manifest_bytes = manifest.encode();
    let record = sign_manifest(key, &manifest_bytes);
    let envelope = Envelope {
        manifest_len: u32::try_from(manifest_bytes.len())
            .map_err(|_| Error::InvalidInput("manifest too large: raise the chunk size".into()))?,
        signature_count: 1,
        keyset_len: u32::try_from(options.keyset.as_ref().map_or(0, Vec::len))
            .map_err(|_| Error::InvalidInput("keyset file too large".into()))?,
        payload_len: offset,
    };
    let io = Error::io("writing the bundle");
    let mut write = || -> std::io::Result<()> {
        out.write_all(&envelope.encode())?;
        out.write_all(&manifest_bytes)?;
        let mut sig = Vec::with_capacity(72);
        record.encode_into(&mut sig);
        out.write_all(&sig)?;
        if let Some(keyset) = &options.keyset {
            out.write_all(keyset)?;
        }
        for e in &encoded {
            if let Some((_, _, blob)) = &e.patch {
                out.write_all(blob)?;
            }
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
