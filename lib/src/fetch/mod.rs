//! Getting bundle bytes from where they are: HTTP(S) range requests that survive flaky links
//! ([`HttpSource`]), the choice of which ranges to request ([`coalesce`]), and the on-disk
//! stage that makes downloads resumable ([`Stage`]). Everything fetched is
//! untrusted until the signature (header) or a chunk hash (blobs) says otherwise.

mod error;
mod head_cache;
mod http;
pub(crate) mod multipart;
pub(crate) mod ranges;
pub(crate) mod response;
pub(crate) mod stage;

pub use error::FetchError;
pub use head_cache::HeadCache;
pub use http::{FetchStats, HttpOptions, HttpSource, Retry, RetryHook};
pub use ranges::coalesce;
pub use stage::{PIECE, Stage};
