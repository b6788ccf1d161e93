//! Why fetching failed: a leaf that the client, the response checks and callers share.

use std::time::Duration;

/// Why fetching failed: each variant names the rule that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FetchError {
    /// The URL, TLS (an untrusted certificate), proxy or redirects make the bundle unreachable;
    /// not retried.
    Config(String),
    /// The server answered a range request with the whole file (200): refused, never read.
    RangesUnsupported,
    /// The file on the server changed since the download started (validator or length).
    FileChanged,
    /// `Content-Range` missing, malformed, or not the range asked for.
    BadContentRange(String),
    /// The body is encoded (`Content-Encoding`): its bytes are not the file's.
    ContentEncoding(String),
    /// The body is longer than the range asked for, or `Content-Length` disagrees with it.
    LengthMismatch {
        /// Bytes asked for.
        expected: u64,
        /// Bytes announced or seen.
        got: u64,
    },
    /// The server refused with this status.
    Status(u16),
    /// Storing received bytes failed (disk full, I/O error).
    Local(String),
    /// The source's overall deadline passed.
    DeadlinePassed(Duration),
    /// The first request could not reach the server (refused, no route, unknown host) for
    /// [`HttpOptions::first_contact_patience`](super::HttpOptions::first_contact_patience).
    Unreachable {
        /// How long it tried.
        waited: Duration,
        /// The last failure.
        last: String,
    },
    /// Every attempt failed without progress.
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Config(why) => write!(f, "unreachable (not retried): {why}"),
            FetchError::RangesUnsupported => {
                write!(
                    f,
                    "ranges unsupported: the server sent the whole file (200) for a range request; refusing to download it (serve the bundle with a server that honours Range: nginx, Apache, Caddy, lighttpd, S3 or any CDN; `python3 -m http.server` does not)"
                )
            }
            FetchError::Unreachable { waited, last } => write!(
                f,
                "cannot reach the server (tried for {} s; last: {last}): check the URL, its port and the network",
                waited.as_secs()
            ),
            FetchError::FileChanged => write!(
                f,
                "file changed: the bundle on the server was replaced during the download"
            ),
            FetchError::BadContentRange(why) => write!(f, "bad Content-Range: {why}"),
            FetchError::ContentEncoding(enc) => write!(
                f,
                "content encoding {enc:?}: the server or a proxy altered the bytes"
            ),
            FetchError::LengthMismatch { expected, got } => {
                write!(
                    f,
                    "length mismatch: asked for {expected} bytes, the response has {got}"
                )
            }
            FetchError::Status(code) => write!(f, "HTTP status {code}"),
            FetchError::Local(why) => write!(f, "storing received bytes: {why}"),
            FetchError::DeadlinePassed(d) => write!(
                f,
                "deadline passed: the download took longer than {} s",
                d.as_secs()
            ),
            FetchError::RetriesExhausted { attempts, last } => {
                write!(
                    f,
                    "gave up after {attempts} attempts without progress; last: {last}"
                )
            }
        }
    }
}

impl std::error::Error for FetchError {}
