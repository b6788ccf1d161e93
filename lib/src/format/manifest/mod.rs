//! The signed manifest (SPEC.md §Manifest): what the target image is, chunk by chunk, and every
//! way to rebuild each chunk.
//!
//! A bundle stores the manifest packed, one Zstandard frame of its plain encoding ([`pack`],
//! [`unpack`]); the signature covers the stored bytes, so a device unpacks only what a trusted
//! key signed. [`Manifest::decode_plain`] validates every length, range and cross-reference
//! before returning, so code holding a `Manifest` needs no further bounds checks;
//! [`Manifest::encode_plain`] is its exact inverse (`encode_plain(decode_plain(x)) == x` for
//! every accepted `x`).
//!
//! One file per side of the encoding: `decode` (hostile bytes on the device, and the rules
//! every manifest keeps), `encode` (the canonical encoding and the packer), `columns` (the
//! chunk table's column layout both share).

mod columns;
mod decode;
mod encode;

pub use decode::unpack;
pub use encode::pack;

use super::hash::{chunk_hash, source_hash, source_part};
use super::{ChunkHash, Hash, SourceHash};

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
