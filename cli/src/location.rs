//! Where a bundle is: a local path or an http(s):// URL, opened as a [`BundleSource`].

use std::path::PathBuf;

use abdelta::fetch::{FetchStats, HttpOptions, HttpSource};
use abdelta::storage::{BundleSource, FileBundle};
use anyhow::Context;

/// Flags for bundles fetched over HTTP(S).
#[derive(clap::Args, Clone, Default)]
pub struct FetchArgs {
    /// PEM certificate(s) of a private CA to trust for https:// bundles.
    #[arg(long, value_name = "PEM")]
    ca_cert: Option<PathBuf>,
    /// Cap the download rate, in bytes per second, to leave bandwidth to the station.
    #[arg(long, value_name = "BYTES_PER_SEC")]
    rate_limit: Option<u64>,
}

/// An opened bundle.
pub enum Bundle {
    /// A local file or block device.
    File(FileBundle),
    /// A URL (boxed: the client and its cached head are large).
    Http(Box<HttpSource>),
}

impl Bundle {
    /// Opens a path or URL.
    pub fn open(location: &str, fetch: &FetchArgs) -> anyhow::Result<Bundle> {
        if location.starts_with("http://") || location.starts_with("https://") {
            let ca_certs_pem = match &fetch.ca_cert {
                Some(p) => {
                    Some(std::fs::read(p).with_context(|| format!("reading {}", p.display()))?)
                }
                None => None,
            };
            let options = HttpOptions {
                ca_certs_pem,
                rate_limit: fetch.rate_limit,
                ..HttpOptions::default()
            };
            let source = HttpSource::open(location, options)
                .with_context(|| format!("fetching {location}"))?;
            Ok(Bundle::Http(Box::new(source)))
        } else {
            let file = FileBundle::open(location.as_ref())
                .with_context(|| format!("opening bundle {location}"))?;
            Ok(Bundle::File(file))
        }
    }

    /// The bytes.
    pub fn source(&self) -> &dyn BundleSource {
        match self {
            Bundle::File(f) => f,
            Bundle::Http(h) => h.as_ref(),
        }
    }

    /// Traffic, for a URL.
    pub fn wire(&self) -> Option<FetchStats> {
        match self {
            Bundle::File(_) => None,
            Bundle::Http(h) => Some(h.stats()),
        }
    }

    /// Traffic as JSON (null for a local file).
    pub fn wire_json(&self) -> serde_json::Value {
        match self.wire() {
            Some(s) => {
                serde_json::json!({"requests": s.requests, "body_bytes": s.body_bytes, "retries": s.retries})
            }
            None => serde_json::Value::Null,
        }
    }
}
