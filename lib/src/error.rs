//! The pipeline's errors, one per operation, each naming the rule that failed: reading and
//! authorizing a bundle ([`BundleError`]), making one ([`DiffError`]), staying within a byte
//! budget ([`OverBudget`]), rebuilding an image ([`ApplyError`]) and checking one
//! ([`VerifyError`]). [`Error`] holds any of them, for callers that run several operations
//! and report one error. Format, signature, policy and codec errors keep their own layer's
//! enum inside.

use std::io;

use crate::codec::CodecError;
use crate::format::FormatError;
use crate::policy::error::PolicyError;
use crate::sign::SignError;

/// Reading or writing a file, device or bundle failed: what was being done, and (as its
/// `source()`) the operating system's error.
#[derive(Debug)]
pub struct IoError {
    context: String,
    source: io::Error,
}

impl IoError {
    /// What was being done ("reading the bundle manifest").
    pub fn context(&self) -> &str {
        &self.context
    }

    /// The operating system's error.
    pub fn kind(&self) -> io::ErrorKind {
        self.source.kind()
    }
}

impl std::fmt::Display for IoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.context)
    }
}

impl std::error::Error for IoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Wraps an I/O error with `context` (`?` then makes it the failed operation's error).
pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> IoError {
    let context = context.into();
    move |source| IoError { context, source }
}

/// Why a bundle could not be read, authenticated or authorized (`UnverifiedBundle::read` and
/// `verify`, `policy::authorize`).
#[derive(Debug)]
#[non_exhaustive]
pub enum BundleError {
    /// Reading the bundle failed.
    Io(IoError),
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
}

impl std::fmt::Display for BundleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BundleError::Io(e) => e.fmt(f),
            BundleError::Format(e) => write!(f, "invalid bundle: {e}"),
            BundleError::Sign(e) => e.fmt(f),
            BundleError::Policy(e) => e.fmt(f),
            BundleError::BundleLength { declared, actual } => write!(
                f,
                "bundle length mismatch: the envelope declares {declared} bytes, the bundle has {actual}"
            ),
            BundleError::PayloadLengthMismatch => write!(
                f,
                "payload length mismatch: envelope and signed manifest disagree"
            ),
        }
    }
}

// A cause is given by `source()`, never repeated in the message: print the chain (anyhow's
// `{:#}`, or [`report`]) to read "context: cause". The layer errors a variant wraps (format,
// signature, policy) are the error itself, named by the message.
impl std::error::Error for BundleError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BundleError::Io(e) => e.source(),
            _ => None,
        }
    }
}

impl From<IoError> for BundleError {
    fn from(e: IoError) -> Self {
        BundleError::Io(e)
    }
}

impl From<FormatError> for BundleError {
    fn from(e: FormatError) -> Self {
        BundleError::Format(e)
    }
}

impl From<PolicyError> for BundleError {
    fn from(e: PolicyError) -> Self {
        BundleError::Policy(e)
    }
}

impl From<SignError> for BundleError {
    fn from(e: SignError) -> Self {
        match e {
            SignError::Format(f) => BundleError::Format(f),
            other => BundleError::Sign(other),
        }
    }
}

/// Why `diff` wrote no bundle.
#[derive(Debug)]
#[non_exhaustive]
pub enum DiffError {
    /// Writing the bundle failed.
    Io(IoError),
    /// The inputs are too large for the format's limits, or the options are invalid.
    InvalidInput(String),
    /// The compressor failed (zstd or liblzma).
    Encoder(&'static str),
    /// The keyset file to embed, or the manifest made, breaks a format rule.
    Format(FormatError),
}

impl std::fmt::Display for DiffError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DiffError::Io(e) => e.fmt(f),
            DiffError::InvalidInput(why) => write!(f, "invalid input: {why}"),
            DiffError::Encoder(what) => write!(f, "encoder failed: {what}"),
            DiffError::Format(e) => write!(f, "the bundle would break a format rule: {e}"),
        }
    }
}

impl std::error::Error for DiffError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DiffError::Io(e) => e.source(),
            _ => None,
        }
    }
}

impl From<IoError> for DiffError {
    fn from(e: IoError) -> Self {
        DiffError::Io(e)
    }
}

impl From<FormatError> for DiffError {
    fn from(e: FormatError) -> Self {
        DiffError::Format(e)
    }
}

/// The plan needs more bytes than the download budget allows; nothing was downloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverBudget {
    /// Bytes the plan reads.
    pub planned: u64,
    /// The budget.
    pub budget: u64,
}

impl std::fmt::Display for OverBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "byte budget exceeded: the plan reads {} bytes, the budget is {}; nothing was downloaded",
            self.planned, self.budget
        )
    }
}

impl std::error::Error for OverBudget {}

/// Whole image hash mismatch: which chunks differ.
fn hash_mismatch(
    f: &mut std::fmt::Formatter<'_>,
    bad_chunks: &[usize],
    bad_count: usize,
) -> std::fmt::Result {
    write!(
        f,
        "target hash mismatch: the image does not match the signed manifest ({bad_count} bad chunk{}, first: {bad_chunks:?})",
        if bad_count == 1 { "" } else { "s" }
    )
}

/// Why `apply` did not leave a verified image.
#[derive(Debug)]
#[non_exhaustive]
pub enum ApplyError {
    /// Reading the bundle or the source, or writing the target, failed.
    Io(IoError),
    /// The plan was made for another manifest.
    PlanMismatch,
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
    /// Every chunk verified but the whole image written does not hash to the manifest's
    /// target hash.
    TargetHashMismatch {
        /// Indices of (up to 16) chunks whose bytes differ from the manifest.
        bad_chunks: Vec<usize>,
        /// How many chunks differ in all.
        bad_count: usize,
    },
    /// The caller cancelled the operation; what was written so far is verified but incomplete.
    Cancelled,
}

impl std::fmt::Display for ApplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApplyError::Io(e) => e.fmt(f),
            ApplyError::PlanMismatch => {
                write!(f, "invalid input: the plan was made for another manifest")
            }
            ApplyError::Blob { index, .. } => write!(f, "chunk {index}"),
            ApplyError::ChunkHashMismatch { index } => write!(
                f,
                "chunk hash mismatch: chunk {index} does not match the signed manifest"
            ),
            ApplyError::TargetHashMismatch {
                bad_chunks,
                bad_count,
            } => hash_mismatch(f, bad_chunks, *bad_count),
            ApplyError::Cancelled => {
                write!(f, "cancelled: the target is incomplete and not bootable")
            }
        }
    }
}

impl std::error::Error for ApplyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ApplyError::Io(e) => e.source(),
            ApplyError::Blob { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl From<IoError> for ApplyError {
    fn from(e: IoError) -> Self {
        ApplyError::Io(e)
    }
}

/// Why `verify_bytes` or `verify_path` refused an image.
#[derive(Debug)]
#[non_exhaustive]
pub enum VerifyError {
    /// Reading the image failed.
    Io(IoError),
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
    /// The image does not hash to the manifest's target hash.
    TargetHashMismatch {
        /// Indices of (up to 16) chunks whose bytes differ from the manifest.
        bad_chunks: Vec<usize>,
        /// How many chunks differ in all.
        bad_count: usize,
    },
}

impl std::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VerifyError::Io(e) => e.fmt(f),
            VerifyError::TargetTooSmall { size } => write!(
                f,
                "target too small: it is shorter than the {size}-byte image (target hash mismatch)"
            ),
            VerifyError::TargetTrailingBytes { size, actual } => write!(
                f,
                "target has trailing bytes: the file holds {actual} bytes, the signed image {size}"
            ),
            VerifyError::TargetHashMismatch {
                bad_chunks,
                bad_count,
            } => hash_mismatch(f, bad_chunks, *bad_count),
        }
    }
}

impl std::error::Error for VerifyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            VerifyError::Io(e) => e.source(),
            _ => None,
        }
    }
}

impl From<IoError> for VerifyError {
    fn from(e: IoError) -> Self {
        VerifyError::Io(e)
    }
}

/// Any of the pipeline's errors, for a caller that runs several operations (the station's
/// updater, the CLI) and reports one. Its message and cause are those of the error it holds.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Reading, authenticating or authorizing the bundle failed.
    Bundle(BundleError),
    /// Making a bundle failed.
    Diff(DiffError),
    /// The plan exceeds the byte budget.
    OverBudget(OverBudget),
    /// Rebuilding the image failed.
    Apply(ApplyError),
    /// The image does not verify.
    Verify(VerifyError),
}

impl Error {
    /// Whether a read or write failed (as opposed to a rule the bytes broke).
    pub fn is_io(&self) -> bool {
        matches!(
            self,
            Error::Bundle(BundleError::Io(_))
                | Error::Diff(DiffError::Io(_))
                | Error::Apply(ApplyError::Io(_))
                | Error::Verify(VerifyError::Io(_))
        )
    }

    fn inner(&self) -> &(dyn std::error::Error + 'static) {
        match self {
            Error::Bundle(e) => e,
            Error::Diff(e) => e,
            Error::OverBudget(e) => e,
            Error::Apply(e) => e,
            Error::Verify(e) => e,
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self.inner(), f)
    }
}

// The error held is this error itself: its cause comes next.
impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner().source()
    }
}

impl From<BundleError> for Error {
    fn from(e: BundleError) -> Self {
        Error::Bundle(e)
    }
}

impl From<DiffError> for Error {
    fn from(e: DiffError) -> Self {
        Error::Diff(e)
    }
}

impl From<OverBudget> for Error {
    fn from(e: OverBudget) -> Self {
        Error::OverBudget(e)
    }
}

impl From<ApplyError> for Error {
    fn from(e: ApplyError) -> Self {
        Error::Apply(e)
    }
}

impl From<VerifyError> for Error {
    fn from(e: VerifyError) -> Self {
        Error::Verify(e)
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
        let not_found = || io::Error::from(io::ErrorKind::NotFound);
        let e = ApplyError::from(io("reading the source")(not_found()));
        assert_eq!(e.to_string(), "reading the source");
        assert!(e.source().is_some_and(|s| s.is::<io::Error>()));
        assert_eq!(report(&e), format!("reading the source: {}", not_found()));
        let blob = ApplyError::Blob {
            index: 3,
            error: CodecError::TooLong,
        };
        assert_eq!(report(&blob), format!("chunk 3: {}", CodecError::TooLong));
        // An error held by `Error`, or by the updater's error, is that error itself: its
        // cause comes next, once.
        let any = Error::from(e);
        assert!(any.is_io());
        assert_eq!(report(&any), format!("reading the source: {}", not_found()));
        let update = crate::updater::UpdateError::Bundle(any);
        assert_eq!(
            report(&update),
            format!("reading the source: {}", not_found())
        );
        // Errors without a cause are their message.
        assert!(ApplyError::Cancelled.source().is_none());
        assert_eq!(
            report(&ApplyError::Cancelled),
            ApplyError::Cancelled.to_string()
        );
        assert!(!Error::from(ApplyError::Cancelled).is_io());
    }
}
