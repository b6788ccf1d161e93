//! The pipeline's error: what went wrong while opening, planning, applying or verifying, naming
//! the rule that failed. Format, signature and codec errors keep their own layer's enum inside.

use std::io;

use crate::codec::CodecError;
use crate::format::FormatError;
use crate::policy::error::PolicyError;
use crate::sign::SignError;

/// An error from `diff`, `plan`, `apply` or `verify`.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file, device or bundle failed.
    Io {
        /// What was being done.
        context: String,
        /// The operating system's error.
        source: io::Error,
    },
    /// The bundle's bytes break a format rule.
    Format(FormatError),
    /// The manifest is not signed by a trusted key.
    Sign(SignError),
    /// The release is signed but not for this device now (rollback, hardware, expiry, keys).
    Policy(PolicyError),
    /// The bundle's length differs from what its envelope declares.
    BundleLength {
        /// Length the envelope implies.
        declared: u64,
        /// Length found.
        actual: u64,
    },
    /// The envelope's payload length differs from the signed manifest's.
    PayloadLengthMismatch,
    /// A blob did not decode.
    Blob {
        /// Chunk index.
        index: usize,
        /// Why.
        error: CodecError,
    },
    /// A chunk's bytes do not hash to the manifest's value, and no recipe is left to try.
    ChunkHashMismatch {
        /// Chunk index.
        index: usize,
    },
    /// Every chunk verified but the whole target does not hash to the manifest's target hash.
    TargetHashMismatch {
        /// Indices of (up to 16) chunks whose bytes on the target differ from the manifest.
        bad_chunks: Vec<usize>,
        /// How many chunks differ in all.
        bad_count: usize,
    },
    /// The plan needs more bytes than the download budget allows; nothing was downloaded.
    BudgetExceeded {
        /// Bytes the plan reads.
        planned: u64,
        /// The budget.
        budget: u64,
    },
    /// The partition or image checked is shorter than the target image.
    TargetTooSmall {
        /// Bytes the target image has.
        size: u64,
    },
    /// An image file checked holds bytes after the target image (a block device may be larger
    /// than the image; a file is the image, exactly).
    TargetTrailingBytes {
        /// Bytes the target image has.
        size: u64,
        /// Bytes the file holds.
        actual: u64,
    },
    /// The diff inputs are too large for the format's limits, or options are invalid.
    InvalidInput(String),
    /// The generator's compressor failed (zstd or liblzma): no bundle was written.
    Encoder(&'static str),
    /// The caller cancelled the operation; what was written so far is verified but incomplete.
    Cancelled,
}

impl Error {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Io { context, .. } => write!(f, "{context}"),
            Error::Format(e) => write!(f, "invalid bundle: {e}"),
            Error::Sign(e) => write!(f, "{e}"),
            Error::Policy(e) => write!(f, "{e}"),
            Error::BundleLength { declared, actual } => write!(
                f,
                "bundle length mismatch: the envelope declares {declared} bytes, the bundle has {actual}"
            ),
            Error::PayloadLengthMismatch => {
                write!(
                    f,
                    "payload length mismatch: envelope and signed manifest disagree"
                )
            }
            Error::Blob { index, .. } => write!(f, "chunk {index}"),
            Error::ChunkHashMismatch { index } => {
                write!(
                    f,
                    "chunk hash mismatch: chunk {index} does not match the signed manifest"
                )
            }
            Error::TargetHashMismatch {
                bad_chunks,
                bad_count,
            } => write!(
                f,
                "target hash mismatch: the image does not match the signed manifest ({bad_count} bad chunk{}, first: {bad_chunks:?})",
                if *bad_count == 1 { "" } else { "s" }
            ),
            Error::BudgetExceeded { planned, budget } => write!(
                f,
                "byte budget exceeded: the plan reads {planned} bytes, the budget is {budget}; nothing was downloaded"
            ),
            Error::TargetTrailingBytes { size, actual } => write!(
                f,
                "target has trailing bytes: the file holds {actual} bytes, the signed image {size}"
            ),
            Error::TargetTooSmall { size } => {
                write!(
                    f,
                    "target too small: it is shorter than the {size}-byte image (target hash mismatch)"
                )
            }
            Error::InvalidInput(why) => write!(f, "invalid input: {why}"),
            Error::Encoder(what) => write!(f, "encoder failed: {what}"),
            Error::Cancelled => write!(f, "cancelled: the target is incomplete and not bootable"),
        }
    }
}

// A cause is given by `source()`, never repeated in the message: print the chain (anyhow's
// `{:#}`, or [`report`]) to read "context: cause". The layer errors a variant wraps (format,
// signature, policy) are the error itself, named by the message.
impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Blob { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// `error` and its causes, joined by ": " (what anyhow prints with `{:#}`): the whole message
/// for a log line or an event.
pub fn report(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        message.push_str(": ");
        message.push_str(&e.to_string());
        cause = e.source();
    }
    message
}

impl From<FormatError> for Error {
    fn from(e: FormatError) -> Self {
        Error::Format(e)
    }
}

impl From<PolicyError> for Error {
    fn from(e: PolicyError) -> Self {
        Error::Policy(e)
    }
}

impl From<SignError> for Error {
    fn from(e: SignError) -> Self {
        match e {
            SignError::Format(f) => Error::Format(f),
            other => Error::Sign(other),
        }
    }
}

/// Progress of a long operation, for bars and event streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The phase ("index source", "hash", "compress", "plan", "apply", "verify").
    pub phase: &'static str,
    /// Units done (bytes).
    pub done: u64,
    /// Units in all (bytes).
    pub total: u64,
}

/// A progress callback; called from any thread.
pub type ProgressFn<'a> = &'a (dyn Fn(Progress) + Sync);

/// A callback that ignores progress.
pub fn no_progress(_: Progress) {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn a_cause_is_the_source_and_the_report_joins_it() {
        let io = Error::io("reading the source")(io::Error::from(io::ErrorKind::NotFound));
        assert_eq!(io.to_string(), "reading the source");
        assert!(io.source().is_some_and(|s| s.is::<io::Error>()));
        assert_eq!(
            report(&io),
            format!(
                "reading the source: {}",
                io::Error::from(io::ErrorKind::NotFound)
            )
        );
        let blob = Error::Blob {
            index: 3,
            error: CodecError::TooLong,
        };
        assert_eq!(report(&blob), format!("chunk 3: {}", CodecError::TooLong));
        // A wrapped pipeline error is the updater's error itself: its cause comes next, once.
        let update = crate::updater::UpdateError::Bundle(io);
        assert_eq!(
            report(&update),
            format!(
                "reading the source: {}",
                io::Error::from(io::ErrorKind::NotFound)
            )
        );
        // Errors without a cause are their message.
        assert!(Error::Cancelled.source().is_none());
        assert_eq!(report(&Error::Cancelled), Error::Cancelled.to_string());
    }
}
