//! Getting bundle bytes from where they are: HTTP(S) range requests that survive flaky links
//! ([`http`]), the choice of which ranges to request ([`ranges`]), and the on-disk stage
//! that makes downloads resumable ([`stage`]). Everything fetched is
//! untrusted until the signature (header) or a chunk hash (blobs) says otherwise.

pub mod http;
pub mod multipart;
pub mod ranges;
pub mod stage;

pub use http::{FetchError, FetchStats, HeadCache, HttpOptions, HttpSource, Retry, RetryHook};
pub use ranges::coalesce;
pub use stage::Stage;
