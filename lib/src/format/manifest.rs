//! The signed manifest (SPEC.md §Manifest): what the target image is, chunk by chunk, and every
//! way to rebuild each chunk.
//!
//! A bundle stores the manifest packed, one Zstandard frame of its plain encoding ([`pack`],
//! [`unpack`]); the signature covers the stored bytes, so a device unpacks only what a trusted
//! key signed. [`Manifest::decode_plain`] validates every length, range and cross-reference
//! before returning, so code holding a `Manifest` needs no further bounds checks;
//! [`Manifest::encode_plain`] is its exact inverse (`encode_plain(decode_plain(x)) == x` for
//! every accepted `x`).

use std::collections::HashMap;

use super::cursor::{put_bytes, put_relative, put_varint};
use super::{ChunkHash, Cursor, FORMAT_VERSION, FormatError, Hash, Limits, SourceHash};
use crate::chunk::{chunk_hash, source_hash, source_part};

/// The only signature algorithm: pure Ed25519 over a domain-separated message (SPEC.md §4).
pub const SIG_ALG_ED25519: u8 = 1;
/// Most hardware-compatibility ids in one manifest.
pub const MAX_COMPAT_IDS: u64 = 16;
/// Longest hardware-compatibility id or channel name, in bytes.
pub const MAX_NAME_LEN: u64 = 64;

const RECIPE_COPY: u8 = 0x01;
const RECIPE_PATCH: u8 = 0x02;
const RECIPE_LITERAL: u8 = 0x04;
const RECIPE_ZERO: u8 = 0x08;
const RECIPE_ALTERNATES: u8 = 0x10;

/// Most extra bases one manifest may carry (SPEC.md §5.1): with the source, patches against
/// up to eight earlier releases.
pub const MAX_EXTRA_BASES: u64 = 7;

/// Size and BLAKE3 hash of a whole image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageId {
    /// Length in bytes.
    pub size: u64,
    /// BLAKE3-256 of all `size` bytes.
    pub hash: Hash,
}

/// Content-defined chunking parameters (FastCDC 2020, normalization level 1, no seed).
/// Devices use them to index their own source when a copy hint misses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunking {
    /// Smallest chunk except the last.
    pub min: u32,
    /// Target average.
    pub avg: u32,
    /// Largest chunk.
    pub max: u32,
}

/// A byte range of the payload holding one encoded blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlobRef {
    /// Offset from the start of the payload.
    pub offset: u64,
    /// Encoded length.
    pub len: u32,
}

impl BlobRef {
    /// One past the last byte, relative to the payload.
    pub fn end(&self) -> u64 {
        // Cannot overflow once decoded; saturates for hand-built values, which validation rejects.
        self.offset.saturating_add(u64::from(self.len))
    }
}

/// Most source ranges one patch base may join.
pub const MAX_BASE_RANGES: usize = 4;

/// The source hash of no bytes: the hash of an empty patch base, which the manifest does not
/// spell out.
pub const EMPTY_BASE_HASH: SourceHash = [0xaf, 0x13, 0x49, 0xb9, 0xf5, 0xf9, 0xa1, 0xa6];

/// A patch's base: up to [`MAX_BASE_RANGES`] source ranges, joined in order, identified by the
/// hash of the joined bytes so a device can check it holds them. Several ranges let a chunk
/// whose old bytes lie in several places (files that moved independently) be patched against
/// all of them. No range at all makes a patch that is only its group's compressed bytes: new
/// data that still shares its group's entropy context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchBase {
    ranges: [(u64, u64); MAX_BASE_RANGES],
    count: u8,
    /// Source hash of the joined ranges.
    pub hash: SourceHash,
}

impl PatchBase {
    /// A base of `ranges` (offset, length); `None` with more than [`MAX_BASE_RANGES`].
    pub fn new(ranges: &[(u64, u64)], hash: SourceHash) -> Option<PatchBase> {
        let mut all = [(0, 0); MAX_BASE_RANGES];
        all.get_mut(..ranges.len())?.copy_from_slice(ranges);
        let count = u8::try_from(ranges.len()).ok()?;
        Some(PatchBase {
            ranges: all,
            count,
            hash,
        })
    }

    /// The empty base: no source bytes, hash [`EMPTY_BASE_HASH`].
    pub fn empty() -> PatchBase {
        PatchBase {
            ranges: [(0, 0); MAX_BASE_RANGES],
            count: 0,
            hash: EMPTY_BASE_HASH,
        }
    }

    /// The ranges, (offset, length), in joining order.
    pub fn ranges(&self) -> &[(u64, u64)] {
        self.ranges.get(..usize::from(self.count)).unwrap_or(&[])
    }

    /// The joined length.
    pub fn joined_len(&self) -> u64 {
        self.ranges().iter().map(|r| r.1).sum()
    }

    /// Mutable ranges, for tests that build malformed manifests.
    #[doc(hidden)]
    pub fn ranges_mut(&mut self) -> &mut [(u64, u64)] {
        let n = usize::from(self.count);
        self.ranges.get_mut(..n).unwrap_or(&mut [])
    }
}

/// Codec of a patch (of its group blob).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PatchCodec {
    /// A member of a patch group: the blob is the group's (shared by its members), its
    /// members' bsdiff-class streams in two raw LZMA2 streams; [`GroupMember`] locates this
    /// chunk's (SPEC.md §6.1). Neighbouring patches share one entropy context, and a member
    /// whose base drifted costs only itself. (Codecs 1 and 2, format 3's single-chunk zstd
    /// patches, are retired.)
    Grouped = 3,
}

/// Where a grouped patch's four streams lie in its group's decoded content. A group's content
/// is all its members' control records, then all their difference gaps, then all their
/// difference values, then all their extra bytes, each in member (chunk) order; only the
/// lengths are encoded, the offsets follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GroupMember {
    /// Control-record bytes (encoded).
    pub ctrl_len: u32,
    /// Gap bytes: the varint zero-run before each non-zero difference.
    pub gaps_len: u32,
    /// Non-zero differences.
    pub values_len: u32,
    /// Extra bytes; the chunk's other `len − extra_len` bytes are differences.
    pub extra_len: u32,
    /// Where each stream of this member starts in the group's content (ctrl, gaps, values,
    /// extra).
    pub at: [u32; 4],
    /// Where the group's streams lie (the same for every member of the group).
    pub group: GroupLayout,
}

/// Where a patch group's streams lie in its decoded content (SPEC.md §5.3, §6.1), from its
/// members' lengths in the signed manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GroupLayout {
    /// Length the whole group decodes to.
    pub len: u32,
    /// Where its difference gaps start: the total of its control records.
    pub gaps_at: u32,
    /// Where its extra bytes start: the totals of its control records, gaps and values.
    pub extra_at: u32,
}

impl GroupMember {
    /// The four stream lengths, in group order.
    pub fn lens(&self) -> [u32; 4] {
        [
            self.ctrl_len,
            self.gaps_len,
            self.values_len,
            self.extra_len,
        ]
    }

    fn span(&self, stream: usize) -> std::ops::Range<usize> {
        // Validated when the offsets are assigned: at + len <= group.len, a u32.
        let at = self.at.get(stream).copied().unwrap_or(0) as usize;
        at..at + self.lens().get(stream).copied().unwrap_or(0) as usize
    }

    /// This member's control records in the group's content.
    pub fn ctrl(&self) -> std::ops::Range<usize> {
        self.span(0)
    }

    /// Its difference gaps.
    pub fn gaps(&self) -> std::ops::Range<usize> {
        self.span(1)
    }

    /// Its non-zero difference values.
    pub fn values(&self) -> std::ops::Range<usize> {
        self.span(2)
    }

    /// Its extra bytes.
    pub fn extra(&self) -> std::ops::Range<usize> {
        self.span(3)
    }
}

/// Codec of a literal blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LiteralCodec {
    /// One zstd frame.
    Zstd = 1,
}

/// A patch recipe: decode `blob` against the source bytes of `base`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Patch {
    /// How the blob is encoded.
    pub codec: PatchCodec,
    /// The source range the patch was made against.
    pub base: PatchBase,
    /// The group's blob in the payload (shared by the group's members).
    pub blob: BlobRef,
    /// Where this patch's streams lie in the group's content.
    pub member: GroupMember,
}

/// A patch against one of the manifest's extra bases (an earlier release than the source): a
/// device holding that release rebuilds the chunk from it where the source's recipes do not
/// apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alternate {
    /// Which extra base, `1..=` their count (0 is the source, whose patch is
    /// [`ChunkEntry::patch`]).
    pub base: u8,
    /// The patch, its ranges in that base's bytes.
    pub patch: Patch,
}

/// The recipe that needs no source: every chunk has exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// A self-contained compressed copy of the chunk.
    Literal {
        /// How the blob is encoded.
        codec: LiteralCodec,
        /// Where it lies in the payload.
        blob: BlobRef,
    },
    /// The chunk is all zero bytes.
    Zero,
}

/// One way to produce a chunk, in the manifest's order of preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipe {
    /// Copy the chunk's bytes from this source offset (a hint: the hash decides).
    Copy {
        /// Source offset where the generator found the chunk.
        offset: u64,
    },
    /// Decode a patch against source ranges.
    Patch(Patch),
    /// Decode a literal blob.
    Literal {
        /// Codec.
        codec: LiteralCodec,
        /// Blob.
        blob: BlobRef,
    },
    /// Fill with zeros.
    Zero,
}

/// What a chunk's bytes must pass before they are written (SPEC.md §5.2). Its form follows
/// from the chunk's recipes, so the manifest spells only the hash bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkCheck {
    /// A chunk built from downloaded bytes (a patch, or a literal): its chunk hash.
    Hash(ChunkHash),
    /// A chunk the source holds (a copy recipe): its source hash, which finds it in a source
    /// and tells a drifted one apart. Its literal, needed only when the source drifted, is
    /// checked against it too (SECURITY.md, "Hash lengths").
    Source(SourceHash),
    /// A zero-fill chunk: every byte zero, no hash.
    Zero,
}

impl ChunkCheck {
    /// Whether `bytes` pass (their length is checked apart).
    pub fn admits(&self, bytes: &[u8]) -> bool {
        match self {
            ChunkCheck::Hash(hash) => chunk_hash(bytes) == *hash,
            ChunkCheck::Source(hash) => source_hash(bytes) == *hash,
            ChunkCheck::Zero => bytes.iter().all(|&b| b == 0),
        }
    }

    /// The source hash that finds the chunk in an index of a source's chunks (the first 8
    /// bytes of its chunk hash); none for a zero-fill chunk, which needs no source.
    pub fn index_key(&self) -> Option<SourceHash> {
        match self {
            ChunkCheck::Hash(hash) => Some(source_part(hash)),
            ChunkCheck::Source(hash) => Some(*hash),
            ChunkCheck::Zero => None,
        }
    }
}

/// One target chunk: where it lies, what it hashes to, how to produce it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkEntry {
    /// Offset in the target image (implied by the lengths before it; not encoded).
    pub offset: u64,
    /// Length in bytes.
    pub len: u32,
    /// What the chunk's bytes must pass.
    pub check: ChunkCheck,
    /// Copy hint, if the generator found the chunk in its source.
    pub copy: Option<u64>,
    /// Patch against the generator's source, if one was worth shipping.
    pub patch: Option<Patch>,
    /// Patches against the extra bases, in ascending base order.
    pub alternates: Vec<Alternate>,
    /// The recipe that always works.
    pub fallback: Fallback,
}

impl ChunkEntry {
    /// The recipes in order of preference.
    pub fn recipes(&self) -> impl Iterator<Item = Recipe> + '_ {
        let copy = self.copy.map(|offset| Recipe::Copy { offset });
        let patches = self.patches().map(|(_, p)| Recipe::Patch(*p));
        let last = match self.fallback {
            Fallback::Literal { codec, blob } => Recipe::Literal { codec, blob },
            Fallback::Zero => Recipe::Zero,
        };
        copy.into_iter().chain(patches).chain(std::iter::once(last))
    }

    /// Every patch with the base it reads (0: the source), the source's first.
    pub fn patches(&self) -> impl Iterator<Item = (u8, &Patch)> + '_ {
        let alternates = self.alternates.iter().map(|a| (a.base, &a.patch));
        self.patch.iter().map(|p| (0, p)).chain(alternates)
    }

    fn patches_mut(&mut self) -> impl Iterator<Item = &mut Patch> + '_ {
        let alternates = self.alternates.iter_mut().map(|a| &mut a.patch);
        self.patch.iter_mut().chain(alternates)
    }

    /// Whether the chunk's check is its source hash: it has a copy recipe and no patch.
    fn checked_by_source_hash(&self) -> bool {
        self.copy.is_some() && self.patches().next().is_none()
    }

    /// One past the chunk's last byte in the target.
    pub fn end(&self) -> u64 {
        self.offset + u64::from(self.len) // validated at decode: cannot overflow
    }
}

/// The decoded manifest. Construct with [`Manifest::decode`] (untrusted bytes) or directly
/// (the generator), and check a hand-built one with [`Manifest::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Key id of the release key that signs this manifest.
    pub key_id: [u8; 8],
    /// Monotonic release number (rollback protection: see `policy`).
    pub release_version: u64,
    /// Creation time, seconds since the Unix epoch.
    pub created_at: u64,
    /// Expiry time, seconds since the Unix epoch.
    pub expires_at: Option<u64>,
    /// Hardware-compatibility ids, strictly ascending, at least one.
    pub hardware_compat: Vec<String>,
    /// Release channel; empty means none.
    pub channel: String,
    /// The source image the copies and patches were made against, if any.
    pub source: Option<ImageId>,
    /// Earlier releases the alternates patch against (extra base `i` is `bases[i − 1]`); only
    /// with a source.
    pub bases: Vec<ImageId>,
    /// The target image.
    pub target: ImageId,
    /// Chunking parameters used for the target.
    pub chunking: Chunking,
    /// Payload length (also in the envelope; this one is signed).
    pub payload_len: u64,
    /// The chunks, covering the target exactly once, in order.
    pub chunks: Vec<ChunkEntry>,
}

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
/// zstd level of stored manifests: a manifest is compressed once and read by every device.
const PACK_LEVEL: i32 = 19;

/// A manifest as a bundle stores it (SPEC.md §5): one Zstandard frame of its plain encoding,
/// declaring the plain length, without checksum or dictionary id (the signature covers the
/// stored bytes). Lengths, offsets and masks repeat within their columns, which the packer
/// finds (the measurements: BENCHMARKS.md, "Tuning record"). Empty if zstd fails.
pub fn pack(plain: &[u8]) -> Vec<u8> {
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
    match cctx.compress2(&mut out, plain) {
        Ok(_) => out,
        Err(_) => Vec::new(),
    }
}

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

    /// The stored encoding: the canonical plain encoding, packed ([`pack`]).
    pub fn encode(&self) -> Vec<u8> {
        pack(&self.encode_plain())
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

/// The smallest chunk entry: a 3-byte length and the mask of a zero chunk.
const MIN_ENTRY_LEN: usize = 3 + 1;

/// Which check a chunk carries (SPEC.md §5.2).
const CHECK_RULE: &str = "a zero-fill chunk has no hash, a chunk with a copy recipe and no patch a source hash, any other a chunk hash";

/// Declares [`Columns`] and the conversions to and from an array in encoding order, from
/// one list of (field, name for errors).
macro_rules! columns {
    ($($field:ident: $name:literal,)*) => {
        /// The chunk table's columns (SPEC.md §5.2), in encoding order: each holds one field
        /// of every chunk entry that has it, so the packer sees lengths next to lengths and
        /// hashes next to hashes. `C` is a column's bytes when encoding and decoding, then a
        /// cursor over them. The chunk and literal lengths are 3-byte values stored in byte
        /// planes ([`planes`]).
        struct Columns<C> {
            $($field: C,)*
        }

        /// Column names for errors, in encoding order.
        const COLUMN_NAMES: [&str; COLUMN_COUNT] = [$($name,)*];

        impl<C> Columns<C> {
            fn from_order([$($field,)*]: [C; COLUMN_COUNT]) -> Self {
                Columns { $($field,)* }
            }

            fn in_order(self) -> [C; COLUMN_COUNT] {
                [$(self.$field,)*]
            }
        }
    };
}

columns! {
    lengths: "lengths column",
    masks: "masks column",
    checks: "checks column",
    copy_offsets: "copy offsets column",
    patch_codecs: "patch codecs column",
    base_counts: "base counts column",
    base_offsets: "base offsets column",
    base_lengths: "base lengths column",
    base_hashes: "base hashes column",
    patch_groups: "patch groups column",
    members: "group members column",
    literal_codecs: "literal codecs column",
    literal_offsets: "literal offsets column",
    literal_lengths: "literal lengths column",
    alternates: "alternates column",
}

/// Columns of the chunk table.
const COLUMN_COUNT: usize = 15;

impl<C: Default> Default for Columns<C> {
    fn default() -> Self {
        Columns::from_order(Default::default())
    }
}

impl<'a> Columns<&'a [u8]> {
    /// The columns that follow the chunk count, each a length-prefixed run of bytes.
    fn read(c: &mut Cursor<'a>) -> Result<Self, FormatError> {
        let mut columns = [&[][..]; COLUMN_COUNT];
        for (column, name) in columns.iter_mut().zip(COLUMN_NAMES) {
            *column = c.bytes(name, u64::MAX)?;
        }
        Ok(Columns::from_order(columns))
    }

    /// Cursors over the columns, the planar ones read back into rows held in `rows`.
    fn cursors<'b>(self, rows: &'b mut [Vec<u8>; 2]) -> Result<Columns<Cursor<'b>>, FormatError>
    where
        'a: 'b,
    {
        let [lengths, literal_lengths] = rows;
        *lengths = unplanes(self.lengths, "lengths column")?;
        *literal_lengths = unplanes(self.literal_lengths, "literal lengths column")?;
        let mut columns = Columns::from_order(self.in_order().map(|c: &'b [u8]| Cursor::new(c)));
        columns.lengths = Cursor::new(lengths);
        columns.literal_lengths = Cursor::new(literal_lengths);
        Ok(columns)
    }
}

/// Appends `value` as a 3-byte big-endian row of a planar column. The values stored so
/// (chunk and blob lengths) are below 2^24 within the format's limits; a larger one loses its
/// high byte, which [`Manifest::validate`] reports (the decoded manifest differs).
fn put_u24(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(value.to_be_bytes().get(1..).unwrap_or_default());
}

/// A planar column's stored form (SPEC.md §5.2) from its 3-byte rows: the first byte of every
/// row, then every second byte, then every third. Lengths' high bytes take few values and
/// their low bytes many: apart, each plane compresses on its own (the measurements: BENCHMARKS.md, "Tuning record").
fn planes(rows: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.len());
    for plane in 0..3 {
        out.extend(rows.iter().skip(plane).step_by(3));
    }
    out
}

/// The rows of a planar column: the inverse of [`planes`].
fn unplanes(stored: &[u8], column: &'static str) -> Result<Vec<u8>, FormatError> {
    let malformed = FormatError::Malformed {
        field: column,
        rule: "3-byte values: a multiple of 3 bytes",
    };
    let n = stored.len() / 3;
    let (high, rest) = stored.split_at_checked(n).ok_or(malformed.clone())?;
    let (middle, low) = rest.split_at_checked(n).ok_or(malformed.clone())?;
    if low.len() != n {
        return Err(malformed);
    }
    Ok(high
        .iter()
        .zip(middle)
        .zip(low)
        .flat_map(|((&a, &b), &c)| [a, b, c])
        .collect())
}

impl Columns<Cursor<'_>> {
    /// Succeeds when the chunk entries consumed every column exactly.
    fn finish(self) -> Result<(), FormatError> {
        for (column, name) in self.in_order().into_iter().zip(COLUMN_NAMES) {
            column.finish(name)?;
        }
        Ok(())
    }
}

/// What blob offsets in a chunk entry are relative to (SPEC.md §5.2): the previous patch's
/// group blob, which the next patch may name again with one byte, and the end of the
/// previous literal blob. The reference layout makes nearly every offset 0.
#[derive(Default)]
struct Origins {
    /// Per base (0: the source, then the extra bases), its previous patch's group blob.
    groups: [Option<BlobRef>; 1 + MAX_EXTRA_BASES as usize],
    literal_end: u64,
}

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
