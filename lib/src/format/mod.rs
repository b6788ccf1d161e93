//! The bundle format (SPEC.md): pure encode/decode of the envelope and the manifest.
//!
//! This layer does no I/O and trusts nothing: every decoder is a checked [`Cursor`] that
//! validates lengths against [`Limits`] before allocating and accepts exactly one encoding
//! per value. It knows nothing about keys, files or HTTP.

pub mod cursor;
pub mod envelope;
pub(crate) mod hash;
pub mod keyset;
pub mod manifest;

pub use cursor::Cursor;
pub use envelope::{ENVELOPE_LEN, Envelope, MAGIC, MAX_KEYSET_FILE_LEN, SignatureRecord};
pub use keyset::{Keyset, ReleaseKey, SignedKeyset};
pub use manifest::{
    BlobRef, ChunkCheck, ChunkEntry, Chunking, Fallback, GroupLayout, GroupMember, ImageId,
    LiteralCodec, MAX_BASE_RANGES, Manifest, Patch, PatchBase, PatchCodec, Recipe,
};

/// A BLAKE3-256 digest: whole images.
pub type Hash = [u8; 32];

/// The first 16 bytes of a BLAKE3 digest: chunks built from downloaded bytes (SPEC.md §5.2).
/// A chunk's hash guards what is written before the whole image's [`Hash`](type@Hash) is checked, so
/// 128 bits (second preimages at 2^128 work) suffice, and each chunk entry is 16 bytes shorter.
pub type ChunkHash = [u8; 16];

/// The first 8 bytes of a BLAKE3 digest: checks of bytes the device already holds, a chunk its
/// source should hold (a copy recipe) and a patch base (SPEC.md §5.2). They tell a drifted
/// source from the expected one; what they pass is still bound by the whole image's [`Hash`](type@Hash)
/// before anyone boots it (SECURITY.md, "Hash lengths").
pub type SourceHash = [u8; 8];

/// The format version this library writes and reads.
pub const FORMAT_VERSION: u16 = 10;

/// Hard limits checked before any allocation. Decoders take them as a value so tests and
/// fuzzers can shrink them; devices use [`Limits::DEFAULT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest manifest accepted, in bytes.
    pub max_manifest_len: u32,
    /// Most signature records in one envelope.
    pub max_signatures: u16,
    /// Most chunks in one manifest.
    pub max_chunks: u64,
    /// Largest chunk (decoded size), in bytes: the decode buffer and the decompression cap.
    pub max_chunk_len: u32,
    /// Largest blob (encoded size), in bytes.
    pub max_blob_len: u32,
    /// Largest patch base (its ranges joined), in bytes: a device may hold a joined base in
    /// memory while it rebuilds the chunk.
    pub max_patch_base_len: u64,
    /// Largest target image, in bytes.
    pub max_image_len: u64,
    /// Largest patch group content (what a group blob decodes to), in bytes: the device holds
    /// at most two decoded groups.
    pub max_group_len: u32,
}

impl Limits {
    /// The limits of this format version (SPEC.md §7).
    pub const DEFAULT: Limits = Limits {
        max_manifest_len: 16 << 20,
        max_signatures: 8,
        max_chunks: 1 << 20,
        max_chunk_len: 4 << 20,
        max_blob_len: (4 << 20) + (64 << 10),
        max_patch_base_len: 8 << 20,
        max_image_len: 1 << 42, // max_chunks × max_chunk_len
        max_group_len: 8 << 20,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// Why bytes are not a valid bundle: each variant names the rule that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FormatError {
    /// The input ended before `field` was complete.
    Truncated {
        /// The field being read.
        field: &'static str,
    },
    /// The file does not start with the abdelta magic.
    BadMagic,
    /// The envelope or manifest declares a format version this reader does not implement.
    UnsupportedVersion {
        /// The version found.
        found: u16,
    },
    /// An enumeration has a value this version does not define.
    Unsupported {
        /// The field.
        field: &'static str,
        /// The value found.
        value: u64,
    },
    /// A number lies outside the range the format or the [`Limits`] allow.
    OutOfRange {
        /// The field.
        field: &'static str,
        /// The value found.
        value: u64,
        /// Smallest allowed.
        min: u64,
        /// Largest allowed.
        max: u64,
    },
    /// A structural rule of the format is broken.
    Malformed {
        /// The field.
        field: &'static str,
        /// The rule, as SPEC.md words it.
        rule: &'static str,
    },
    /// Bytes remain after a structure that must end there.
    TrailingBytes {
        /// The structure.
        what: &'static str,
        /// How many bytes remain.
        count: usize,
    },
}

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FormatError::Truncated { field } => write!(f, "truncated: input ends inside {field}"),
            FormatError::BadMagic => write!(f, "bad magic: not an abdelta bundle"),
            FormatError::UnsupportedVersion { found } => {
                write!(
                    f,
                    "unsupported format version {found} (this reader implements {FORMAT_VERSION})"
                )
            }
            FormatError::Unsupported { field, value } => {
                write!(f, "unsupported value {value} for {field}")
            }
            FormatError::OutOfRange {
                field,
                value,
                min,
                max,
            } => {
                write!(
                    f,
                    "{field} = {value} is outside the allowed range {min}..={max}"
                )
            }
            FormatError::Malformed { field, rule } => write!(f, "malformed {field}: {rule}"),
            FormatError::TrailingBytes { what, count } => {
                write!(f, "{count} trailing bytes after {what}")
            }
        }
    }
}

impl std::error::Error for FormatError {}
