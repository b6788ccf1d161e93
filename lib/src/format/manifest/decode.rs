//! Decoding a manifest from untrusted bytes, and the rules every manifest keeps (SPEC.md §5,
//! §10): every length, range and cross-reference is checked before a [`Manifest`] exists.

use std::collections::HashMap;

use super::columns::{Columns, Origins};
use super::*;
use crate::format::{Cursor, FORMAT_VERSION, FormatError, Limits};

fn name(c: &mut Cursor<'_>, field: &'static str, min: u64) -> Result<String, FormatError> {
    let bytes = c.bytes(field, MAX_NAME_LEN)?;
    if (bytes.len() as u64) < min {
        return Err(FormatError::Malformed {
            field,
            rule: "must not be empty",
        });
    }
    if !bytes.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(FormatError::Malformed {
            field,
            rule: "only printable ASCII without spaces",
        });
    }
    // Checked above: ASCII is valid UTF-8.
    String::from_utf8(bytes.to_vec()).map_err(|_| FormatError::Malformed {
        field,
        rule: "only printable ASCII without spaces",
    })
}

fn read_hash(c: &mut Cursor<'_>, field: &'static str) -> Result<Hash, FormatError> {
    c.array::<32>(field)
}

/// A blob reference at payload `offset`, `len` bytes (in `1..=max_blob_len`) long (SPEC.md
/// §5.2).
fn blob(offset: u64, len: u64, payload_len: u64) -> Result<BlobRef, FormatError> {
    if offset > payload_len {
        return Err(FormatError::OutOfRange {
            field: "blob offset",
            value: offset,
            min: 0,
            max: payload_len,
        });
    }
    if offset.checked_add(len).is_none_or(|end| end > payload_len) {
        return Err(FormatError::Malformed {
            field: "blob",
            rule: "blob must lie inside the payload",
        });
    }
    // Bounded by max_blob_len (a u32) by the caller.
    let len = u32::try_from(len).map_err(|_| FormatError::Malformed {
        field: "blob length",
        rule: "fits u32",
    })?;
    Ok(BlobRef { offset, len })
}

/// The first four bytes of a Zstandard frame.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// The plain encoding inside stored manifest bytes: exactly one Zstandard frame that declares
/// a length of at most `max_manifest_len` and decodes to exactly that many bytes, into a
/// buffer of that length (no window buffer is allocated whatever the frame header claims).
pub fn unpack(stored: &[u8], limits: &Limits) -> Result<Vec<u8>, FormatError> {
    use zstd::zstd_safe::{DCtx, find_frame_compressed_size, get_frame_content_size};
    let malformed = |rule| FormatError::Malformed {
        field: "manifest frame",
        rule,
    };
    let one_frame = stored.get(..4) == Some(&ZSTD_MAGIC[..])
        && find_frame_compressed_size(stored).is_ok_and(|n| n == stored.len());
    if !one_frame {
        return Err(malformed(
            "a stored manifest is exactly one Zstandard frame",
        ));
    }
    let Ok(Some(len)) = get_frame_content_size(stored) else {
        return Err(malformed("the frame must declare its decoded length"));
    };
    let max = u64::from(limits.max_manifest_len);
    if len > max {
        return Err(FormatError::OutOfRange {
            field: "manifest length",
            value: len,
            min: 1,
            max,
        });
    }
    // At most max_manifest_len, a u32.
    let mut plain = vec![0u8; usize::try_from(len).unwrap_or(0)];
    match DCtx::create().decompress(&mut plain, stored) {
        Ok(n) if n as u64 == len => Ok(plain),
        _ => Err(malformed("the frame must decode to its declared length")),
    }
}

/// Refuses manifest bytes, stored or plain, longer than `max_manifest_len`.
fn check_manifest_len(bytes: &[u8], limits: &Limits) -> Result<(), FormatError> {
    if bytes.len() as u64 > u64::from(limits.max_manifest_len) {
        return Err(FormatError::OutOfRange {
            field: "manifest length",
            value: bytes.len() as u64,
            min: 1,
            max: limits.max_manifest_len.into(),
        });
    }
    Ok(())
}

impl Manifest {
    /// Decodes and validates untrusted stored manifest bytes (a frame, [`unpack`]).
    pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Manifest, FormatError> {
        check_manifest_len(bytes, limits)?;
        Manifest::decode_plain(&unpack(bytes, limits)?, limits)
    }

    /// Decodes and validates an untrusted plain encoding.
    pub fn decode_plain(bytes: &[u8], limits: &Limits) -> Result<Manifest, FormatError> {
        check_manifest_len(bytes, limits)?;
        let mut c = Cursor::new(bytes);
        let version = c.u16_le("manifest format version")?;
        if version != FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion { found: version });
        }
        let alg = c.u8("signature algorithm")?;
        if alg != SIG_ALG_ED25519 {
            return Err(FormatError::Unsupported {
                field: "signature algorithm",
                value: alg.into(),
            });
        }
        let key_id = c.array::<8>("key id")?;
        let release_version = c.varint("release version")?;
        let created_at = c.varint("creation time")?;
        let expires_at = match c.u8("expiry flag")? {
            0 => None,
            1 => Some(c.varint("expiry time")?),
            v => {
                return Err(FormatError::Unsupported {
                    field: "expiry flag",
                    value: v.into(),
                });
            }
        };
        let compat_count = c.varint_in("hardware compatibility count", 1, MAX_COMPAT_IDS)?;
        let mut hardware_compat: Vec<String> = Vec::new();
        for _ in 0..compat_count {
            let id = name(&mut c, "hardware compatibility id", 1)?;
            if hardware_compat.last().is_some_and(|prev| *prev >= id) {
                return Err(FormatError::Malformed {
                    field: "hardware compatibility id",
                    rule: "ids must be strictly ascending (sorted, no duplicates)",
                });
            }
            hardware_compat.push(id);
        }
        let channel = name(&mut c, "channel", 0)?;
        let source = match c.u8("source flag")? {
            0 => None,
            1 => Some(ImageId {
                size: c.varint_in("source size", 0, limits.max_image_len)?,
                hash: read_hash(&mut c, "source hash")?,
            }),
            v => {
                return Err(FormatError::Unsupported {
                    field: "source flag",
                    value: v.into(),
                });
            }
        };
        let base_count = c.varint_in("extra base count", 0, MAX_EXTRA_BASES)?;
        if base_count > 0 && source.is_none() {
            return Err(FormatError::Malformed {
                field: "extra bases",
                rule: "extra bases need a source image",
            });
        }
        let mut bases = Vec::new();
        for _ in 0..base_count {
            bases.push(ImageId {
                size: c.varint_in("extra base size", 0, limits.max_image_len)?,
                hash: read_hash(&mut c, "extra base hash")?,
            });
        }
        let target = ImageId {
            size: c.varint_in("target size", 0, limits.max_image_len)?,
            hash: read_hash(&mut c, "target hash")?,
        };
        let chunking = decode_chunking(&mut c, limits)?;
        let payload_len = c.varint("payload length")?;
        // Every chunk entry takes at least 4 bytes (a zero chunk: its length, its mask):
        // refuse counts the remaining bytes cannot hold. The table then grows with the entries
        // that decode, so a count the columns do not back costs no memory.
        let max_by_bytes = (c.remaining() / MIN_ENTRY_LEN) as u64;
        let chunk_count = c.varint_in("chunk count", 0, limits.max_chunks.min(max_by_bytes))?;
        let mut chunks = Vec::new();
        let mut offset: u64 = 0;
        let mut rows = [Vec::new(), Vec::new()];
        let mut cols = Columns::read(&mut c)?.cursors(&mut rows)?;
        let mut origins = Origins::default();
        for _ in 0..chunk_count {
            let entry = decode_chunk(
                &mut cols,
                limits,
                offset,
                (source.as_ref(), &bases),
                payload_len,
                &mut origins,
            )?;
            offset = entry.end();
            if offset > target.size {
                return Err(FormatError::Malformed {
                    field: "chunk table",
                    rule: "chunks must cover the target exactly once",
                });
            }
            chunks.push(entry);
        }
        if offset != target.size {
            return Err(FormatError::Malformed {
                field: "chunk table",
                rule: "chunks must cover the target exactly once",
            });
        }
        cols.finish()?;
        c.finish("manifest")?;
        let manifest = Manifest {
            key_id,
            release_version,
            created_at,
            expires_at,
            hardware_compat,
            channel,
            source,
            bases,
            target,
            chunking,
            payload_len,
            chunks,
        };
        let mut manifest = manifest;
        manifest.link_groups(limits)?;
        manifest.check_blobs_disjoint()?;
        Ok(manifest)
    }

    /// Checks a manifest built in memory by the same rules as [`Manifest::decode`], by encoding
    /// and decoding its plain encoding.
    pub fn validate(&self, limits: &Limits) -> Result<(), FormatError> {
        for chunk in &self.chunks {
            let zero = chunk.fallback == Fallback::Zero;
            let fits = match chunk.check {
                ChunkCheck::Zero => zero,
                ChunkCheck::Source(_) => !zero && chunk.checked_by_source_hash(),
                ChunkCheck::Hash(_) => !zero && !chunk.checked_by_source_hash(),
            };
            if !fits {
                return Err(FormatError::Malformed {
                    field: "chunk check",
                    rule: CHECK_RULE,
                });
            }
        }
        let decoded = Manifest::decode_plain(&self.encode_plain(), limits)?;
        if decoded != *self {
            return Err(FormatError::Malformed {
                field: "chunk table",
                rule: "chunk offsets must equal the sum of the lengths before them",
            });
        }
        Ok(())
    }

    fn check_blobs_disjoint(&self) -> Result<(), FormatError> {
        // (blob, whether it is a group's): members of one group share its blob.
        let mut blobs: Vec<(BlobRef, bool)> = Vec::new();
        for chunk in &self.chunks {
            for (_, patch) in chunk.patches() {
                blobs.push((patch.blob, true));
            }
            if let Fallback::Literal { blob, .. } = chunk.fallback {
                blobs.push((blob, false));
            }
        }
        blobs.sort_unstable();
        blobs.dedup_by(|(b, group), (a, a_group)| *group && *a_group && a == b);
        for pair in blobs.windows(2) {
            if let [(a, _), (b, _)] = pair
                && a.end() > b.offset
            {
                return Err(FormatError::Malformed {
                    field: "blob",
                    rule: "blobs must not overlap (only members of one group share a blob)",
                });
            }
        }
        Ok(())
    }

    /// Lays out each patch group's content from its members' stream lengths (SPEC.md §6.1):
    /// sets every member's offsets and group length, and refuses groups longer than the limit.
    /// Decoding calls it; a generator calls it on the manifest it built, before encoding.
    pub fn link_groups(&mut self, limits: &Limits) -> Result<(), FormatError> {
        // Per group blob: the total of each stream, then the running offsets.
        let mut totals: HashMap<BlobRef, [u64; 4]> = HashMap::new();
        let mut bases: HashMap<BlobRef, u8> = HashMap::new();
        for (base, patch) in self.chunks.iter().flat_map(ChunkEntry::patches) {
            if *bases.entry(patch.blob).or_insert(base) != base {
                return Err(FormatError::Malformed {
                    field: "patch group",
                    rule: "the members of a group patch against one base",
                });
            }
            let t = totals.entry(patch.blob).or_insert([0; 4]);
            for (total, len) in t.iter_mut().zip(patch.member.lens()) {
                *total += u64::from(len);
            }
        }
        let mut next: HashMap<BlobRef, [u64; 4]> = HashMap::with_capacity(totals.len());
        for (blob, [ctrl, gaps, values, extra]) in &totals {
            let group_len = ctrl + gaps + values + extra;
            if group_len > u64::from(limits.max_group_len) {
                return Err(FormatError::OutOfRange {
                    field: "patch group length",
                    value: group_len,
                    min: 1,
                    max: limits.max_group_len.into(),
                });
            }
            next.insert(*blob, [0, *ctrl, ctrl + gaps, ctrl + gaps + values]);
        }
        // Every offset is below group_len, at most max_group_len (a u32): checked just above.
        let to_u32 = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        for patch in self.chunks.iter_mut().flat_map(ChunkEntry::patches_mut) {
            let (Some(at), Some(&[ctrl, gaps, values, extra])) =
                (next.get_mut(&patch.blob), totals.get(&patch.blob))
            else {
                continue;
            };
            let m = &mut patch.member;
            m.at = at.map(to_u32);
            m.group = GroupLayout {
                len: to_u32(ctrl + gaps + values + extra),
                gaps_at: to_u32(ctrl),
                extra_at: to_u32(ctrl + gaps + values),
            };
            for (at, len) in at.iter_mut().zip(m.lens()) {
                *at += u64::from(len);
            }
        }
        Ok(())
    }

    /// The distinct patch group blobs with their layouts, in payload order.
    pub fn groups(&self) -> Vec<(BlobRef, GroupLayout)> {
        let mut groups: Vec<(BlobRef, GroupLayout)> = self
            .chunks
            .iter()
            .flat_map(ChunkEntry::patches)
            .map(|(_, p)| (p.blob, p.member.group))
            .collect();
        groups.sort_unstable();
        groups.dedup();
        groups
    }
}

/// The smallest chunk entry: a 3-byte length and the mask of a zero chunk.
const MIN_ENTRY_LEN: usize = 3 + 1;

/// Which check a chunk carries (SPEC.md §5.2).
const CHECK_RULE: &str = "a zero-fill chunk has no hash, a chunk with a copy recipe and no patch a source hash, any other a chunk hash";

fn group_member(c: &mut Cursor<'_>, len: u32) -> Result<GroupMember, FormatError> {
    let ctrl_len = c.varint_in("group member control length", 0, len.into())?;
    let extra_len = c.varint_in("group member extra length", 0, len.into())?;
    // A gap varint for `z` zeros takes at most 1 + z bytes, and each gap is followed by one
    // value: a member's gaps take at most its difference count, never more than the chunk.
    let gaps_len = c.varint_in("group member gaps length", 0, len.into())?;
    let values_len = c.varint_in("group member values length", 0, u64::from(len) - extra_len)?;
    // All at most the chunk length, a u32.
    let to_u32 = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    Ok(GroupMember {
        ctrl_len: to_u32(ctrl_len),
        gaps_len: to_u32(gaps_len),
        values_len: to_u32(values_len),
        extra_len: to_u32(extra_len),
        ..GroupMember::default()
    })
}

fn decode_chunking(c: &mut Cursor<'_>, limits: &Limits) -> Result<Chunking, FormatError> {
    // FastCDC 2020's own bounds, and no chunk larger than the decode buffer.
    let min = c.varint_in("chunking min", 64, 1 << 20)?;
    let avg = c.varint_in("chunking avg", 256, 4 << 20)?;
    let max = c.varint_in("chunking max", 1024, limits.max_chunk_len.into())?;
    if !(min <= avg && avg <= max) {
        return Err(FormatError::Malformed {
            field: "chunking",
            rule: "min <= avg <= max",
        });
    }
    if min % 2 != 0 || avg % 2 != 0 || max % 2 != 0 {
        return Err(FormatError::Malformed {
            field: "chunking",
            rule: "min, avg and max must be even",
        });
    }
    // Each is bounded by the ranges above, far below u32::MAX.
    let to_u32 = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    Ok(Chunking {
        min: to_u32(min),
        avg: to_u32(avg),
        max: to_u32(max),
    })
}

fn decode_chunk(
    cols: &mut Columns<Cursor<'_>>,
    limits: &Limits,
    offset: u64,
    (source, bases): (Option<&ImageId>, &[ImageId]),
    payload_len: u64,
    origins: &mut Origins,
) -> Result<ChunkEntry, FormatError> {
    let len = cols
        .lengths
        .u24_in("chunk length", 1, limits.max_chunk_len.into())?;
    let len = u32::try_from(len).map_err(|_| FormatError::Malformed {
        field: "chunk length",
        rule: "fits u32",
    })?;
    let mask = cols.masks.u8("recipe mask")?;
    let known = RECIPE_COPY | RECIPE_PATCH | RECIPE_LITERAL | RECIPE_ZERO | RECIPE_ALTERNATES;
    if mask & !known != 0 {
        return Err(FormatError::Unsupported {
            field: "recipe mask",
            value: mask.into(),
        });
    }
    if mask & RECIPE_COPY != 0 && mask & RECIPE_PATCH != 0 {
        return Err(FormatError::Malformed {
            field: "recipe mask",
            rule: "a chunk the source holds (copy) has no patch",
        });
    }
    let check = if mask & RECIPE_ZERO != 0 {
        ChunkCheck::Zero
    } else if mask & RECIPE_COPY != 0 && mask & RECIPE_ALTERNATES == 0 {
        ChunkCheck::Source(cols.checks.array::<8>("chunk source hash")?)
    } else {
        ChunkCheck::Hash(cols.checks.array::<16>("chunk hash")?)
    };
    let needs_source = |field: &'static str| {
        source.ok_or(FormatError::Malformed {
            field,
            rule: "copy and patch recipes need a source image",
        })
    };
    let copy = if mask & RECIPE_COPY != 0 {
        let src = needs_source("copy recipe")?;
        let at = cols.copy_offsets.relative("copy offset", offset)?;
        if at.checked_add(len.into()).is_none_or(|end| end > src.size) {
            return Err(FormatError::Malformed {
                field: "copy recipe",
                rule: "copy range must lie inside the source",
            });
        }
        Some(at)
    } else {
        None
    };
    let at = PatchAt {
        offset,
        len,
        payload_len,
    };
    let patch = if mask & RECIPE_PATCH != 0 {
        let src = needs_source("patch recipe")?;
        let [origin, ..] = &mut origins.groups;
        Some(decode_patch(cols, limits, at, src.size, origin)?)
    } else {
        None
    };
    let mut alternates = Vec::new();
    if mask & RECIPE_ALTERNATES != 0 {
        let most = bases.len() as u64;
        let count = cols.alternates.varint_in("alternate count", 1, most)?;
        let mut previous = 0u64;
        for _ in 0..count {
            // Strictly ascending, so at most one alternate per base.
            let base = cols
                .alternates
                .varint_in("alternate base", previous + 1, most)?;
            previous = base;
            // 1..=bases.len() (at most MAX_EXTRA_BASES), checked just above.
            let size = bases.get(base as usize - 1).map_or(0, |b| b.size);
            let origin = origins
                .groups
                .get_mut(base as usize)
                .ok_or(FormatError::OutOfRange {
                    field: "alternate base",
                    value: base,
                    min: 1,
                    max: most,
                })?;
            let patch = decode_patch(cols, limits, at, size, origin)?;
            alternates.push(Alternate {
                base: u8::try_from(base).unwrap_or(u8::MAX),
                patch,
            });
        }
    }
    let fallback = match mask & (RECIPE_LITERAL | RECIPE_ZERO) {
        RECIPE_LITERAL => {
            let codec = match cols.literal_codecs.u8("literal codec")? {
                1 => LiteralCodec::Zstd,
                v => {
                    return Err(FormatError::Unsupported {
                        field: "literal codec",
                        value: v.into(),
                    });
                }
            };
            let at = cols
                .literal_offsets
                .relative("blob offset", origins.literal_end)?;
            let len =
                (cols.literal_lengths).u24_in("blob length", 1, limits.max_blob_len.into())?;
            let blob = blob(at, len, payload_len)?;
            origins.literal_end = blob.end();
            Fallback::Literal { codec, blob }
        }
        RECIPE_ZERO => Fallback::Zero,
        _ => {
            return Err(FormatError::Malformed {
                field: "recipe mask",
                rule: "every chunk needs exactly one of literal or zero",
            });
        }
    };
    let end_ok = offset.checked_add(len.into()).is_some();
    if !end_ok {
        return Err(FormatError::Malformed {
            field: "chunk table",
            rule: "chunks must cover the target exactly once",
        });
    }
    Ok(ChunkEntry {
        offset,
        len,
        check,
        copy,
        patch,
        alternates,
        fallback,
    })
}

/// Where the chunk being decoded lies, for its patches' fields.
#[derive(Clone, Copy)]
struct PatchAt {
    offset: u64,
    len: u32,
    payload_len: u64,
}

/// One patch's fields from their columns, its base ranges inside a base of `base_size` bytes;
/// `origin` is the previous patch's group blob against the same base, which group 0 names.
fn decode_patch(
    cols: &mut Columns<Cursor<'_>>,
    limits: &Limits,
    at: PatchAt,
    base_size: u64,
    origin: &mut Option<BlobRef>,
) -> Result<Patch, FormatError> {
    let PatchAt {
        offset,
        len,
        payload_len,
    } = at;
    let codec = match cols.patch_codecs.u8("patch codec")? {
        3 => PatchCodec::Grouped,
        v => {
            return Err(FormatError::Unsupported {
                field: "patch codec",
                value: v.into(),
            });
        }
    };
    let count = cols
        .base_counts
        .varint_in("patch base range count", 0, MAX_BASE_RANGES as u64)?;
    let mut ranges = [(0u64, 0u64); MAX_BASE_RANGES];
    let mut total: u64 = 0;
    for range in ranges.iter_mut().take(count as usize) {
        let base_offset = cols.base_offsets.relative("patch base offset", offset)?;
        let base_len =
            cols.base_lengths
                .varint_in("patch base length", 1, limits.max_patch_base_len)?;
        if base_offset
            .checked_add(base_len)
            .is_none_or(|end| end > base_size)
        {
            return Err(FormatError::Malformed {
                field: "patch recipe",
                rule: "patch base must lie inside the source",
            });
        }
        total = total.saturating_add(base_len);
        *range = (base_offset, base_len);
    }
    if total > limits.max_patch_base_len {
        return Err(FormatError::OutOfRange {
            field: "patch base length",
            value: total,
            min: 1,
            max: limits.max_patch_base_len,
        });
    }
    let hash = match count {
        0 => EMPTY_BASE_HASH,
        _ => cols.base_hashes.array::<8>("patch base hash")?,
    };
    // count is 0..=MAX_BASE_RANGES, checked above.
    let base = PatchBase::new(ranges.get(..count as usize).unwrap_or(&[]), hash).ok_or(
        FormatError::Malformed {
            field: "patch recipe",
            rule: "0 to 4 base ranges",
        },
    )?;
    let groups = &mut cols.patch_groups;
    let blob = match groups.varint_in("patch group", 0, 1)? {
        0 => origin.ok_or(FormatError::Malformed {
            field: "patch group",
            rule: "0 (the previous patch's group) needs a previous patch",
        })?,
        _ => {
            let at = groups.relative("blob offset", origin.map_or(0, |b| b.end()))?;
            let len = groups.varint_in("blob length", 1, limits.max_blob_len.into())?;
            let blob = blob(at, len, payload_len)?;
            if *origin == Some(blob) {
                return Err(FormatError::Malformed {
                    field: "patch group",
                    rule: "the previous patch's group is named by 0",
                });
            }
            blob
        }
    };
    *origin = Some(blob);
    let member = group_member(&mut cols.members, len)?;
    Ok(Patch {
        codec,
        base,
        blob,
        member,
    })
}
