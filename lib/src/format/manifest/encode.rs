//! The canonical plain encoding of a manifest (one encoding per manifest: the exact inverse
//! of decoding) and the packer that stores it.

use super::columns::{Columns, Origins, planes, put_u24};
use super::*;
use crate::format::FORMAT_VERSION;
use crate::format::cursor::{put_bytes, put_relative, put_varint};

/// zstd level of stored manifests: a manifest is compressed once and read by every device.
const PACK_LEVEL: i32 = 19;

/// A manifest as a bundle stores it (SPEC.md §5): one Zstandard frame of its plain encoding,
/// declaring the plain length, without checksum or dictionary id (the signature covers the
/// stored bytes). Lengths, offsets and masks repeat within their columns, which the packer
/// finds (the measurements: BENCHMARKS.md, "Tuning record"). `None` if zstd fails.
pub fn pack(plain: &[u8]) -> Option<Vec<u8>> {
    use zstd::zstd_safe::{CCtx, CParameter, compress_bound};
    let mut cctx = CCtx::create();
    let params = [
        CParameter::CompressionLevel(PACK_LEVEL),
        CParameter::ContentSizeFlag(true),
        CParameter::ChecksumFlag(false),
        CParameter::DictIdFlag(false),
    ];
    for p in params {
        // Every value above is within zstd's documented bounds.
        let _ = cctx.set_parameter(p);
    }
    let mut out = Vec::with_capacity(compress_bound(plain.len()));
    cctx.compress2(&mut out, plain).ok().map(|_| out)
}

impl Manifest {
    /// The stored encoding: the canonical plain encoding, packed ([`pack`]); `None` if zstd
    /// fails.
    pub fn encode(&self) -> Option<Vec<u8>> {
        pack(&self.encode_plain())
    }

    /// The canonical plain encoding: one encoding per manifest.
    pub fn encode_plain(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.chunks.len() * 48);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.push(SIG_ALG_ED25519);
        out.extend_from_slice(&self.key_id);
        put_varint(&mut out, self.release_version);
        put_varint(&mut out, self.created_at);
        match self.expires_at {
            None => out.push(0),
            Some(t) => {
                out.push(1);
                put_varint(&mut out, t);
            }
        }
        put_varint(&mut out, self.hardware_compat.len() as u64);
        for id in &self.hardware_compat {
            put_bytes(&mut out, id.as_bytes());
        }
        put_bytes(&mut out, self.channel.as_bytes());
        match &self.source {
            None => out.push(0),
            Some(s) => {
                out.push(1);
                put_varint(&mut out, s.size);
                out.extend_from_slice(&s.hash);
            }
        }
        put_varint(&mut out, self.bases.len() as u64);
        for base in &self.bases {
            put_varint(&mut out, base.size);
            out.extend_from_slice(&base.hash);
        }
        put_varint(&mut out, self.target.size);
        out.extend_from_slice(&self.target.hash);
        put_varint(&mut out, self.chunking.min.into());
        put_varint(&mut out, self.chunking.avg.into());
        put_varint(&mut out, self.chunking.max.into());
        put_varint(&mut out, self.payload_len);
        put_varint(&mut out, self.chunks.len() as u64);
        let mut cols = Columns::<Vec<u8>>::default();
        let mut origins = Origins::default();
        for chunk in &self.chunks {
            put_u24(&mut cols.lengths, chunk.len);
            let mut mask = 0u8;
            if chunk.copy.is_some() {
                mask |= RECIPE_COPY;
            }
            if chunk.patch.is_some() {
                mask |= RECIPE_PATCH;
            }
            if !chunk.alternates.is_empty() {
                mask |= RECIPE_ALTERNATES;
            }
            mask |= match chunk.fallback {
                Fallback::Literal { .. } => RECIPE_LITERAL,
                Fallback::Zero => RECIPE_ZERO,
            };
            cols.masks.push(mask);
            match &chunk.check {
                ChunkCheck::Hash(hash) => cols.checks.extend_from_slice(hash),
                ChunkCheck::Source(hash) => cols.checks.extend_from_slice(hash),
                ChunkCheck::Zero => {}
            }
            if let Some(offset) = chunk.copy {
                put_relative(&mut cols.copy_offsets, offset, chunk.offset);
            }
            if let Some(patch) = &chunk.patch {
                put_patch(&mut cols, patch, chunk.offset, &mut origins.groups[0]);
            }
            if !chunk.alternates.is_empty() {
                put_varint(&mut cols.alternates, chunk.alternates.len() as u64);
                for alternate in &chunk.alternates {
                    put_varint(&mut cols.alternates, alternate.base.into());
                    let origin = origins.groups.get_mut(usize::from(alternate.base));
                    let mut none = None;
                    put_patch(
                        &mut cols,
                        &alternate.patch,
                        chunk.offset,
                        origin.unwrap_or(&mut none),
                    );
                }
            }
            if let Fallback::Literal { codec, blob } = &chunk.fallback {
                cols.literal_codecs.push(*codec as u8);
                put_relative(&mut cols.literal_offsets, blob.offset, origins.literal_end);
                put_u24(&mut cols.literal_lengths, blob.len);
                origins.literal_end = blob.end();
            }
        }
        cols.lengths = planes(&cols.lengths);
        cols.literal_lengths = planes(&cols.literal_lengths);
        for column in cols.in_order() {
            put_bytes(&mut out, &column);
        }
        out
    }
}

/// Appends one patch's fields to their columns; `origin` is the previous patch's group blob
/// against the same base, which group 0 names again.
fn put_patch(cols: &mut Columns<Vec<u8>>, patch: &Patch, at: u64, origin: &mut Option<BlobRef>) {
    cols.patch_codecs.push(patch.codec as u8);
    put_varint(&mut cols.base_counts, patch.base.ranges().len() as u64);
    for &(offset, len) in patch.base.ranges() {
        put_relative(&mut cols.base_offsets, offset, at);
        put_varint(&mut cols.base_lengths, len);
    }
    if !patch.base.ranges().is_empty() {
        cols.base_hashes.extend_from_slice(&patch.base.hash);
    }
    let groups = &mut cols.patch_groups;
    if *origin == Some(patch.blob) {
        put_varint(groups, 0);
    } else {
        put_varint(groups, 1);
        put_relative(groups, patch.blob.offset, origin.map_or(0, |b| b.end()));
        put_varint(groups, patch.blob.len.into());
        *origin = Some(patch.blob);
    }
    for len in [
        patch.member.ctrl_len,
        patch.member.extra_len,
        patch.member.gaps_len,
        patch.member.values_len,
    ] {
        put_varint(&mut cols.members, len.into());
    }
}
