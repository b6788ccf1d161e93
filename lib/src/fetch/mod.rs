//! Getting bundle bytes from where they are: HTTP(S) range requests that survive flaky links
//! ([`http`]), the choice of which ranges to request ([`ranges`]), and the on-disk stage
//! that makes downloads resumable ([`stage`]). Everything fetched is
//! untrusted until the signature (header) or a chunk hash (blobs) says otherwise.

mod error;
mod head_cache;
pub mod http;
pub mod multipart;
pub mod ranges;
pub(crate) mod response;
pub mod stage;

pub use error::FetchError;
pub use head_cache::HeadCache;
pub use http::{FetchStats, HttpOptions, HttpSource, Retry, RetryHook};
pub use ranges::coalesce;
pub use stage::Stage;
