//! Where a bundle is (a local path or an http(s):// URL) and how it is fetched: flags turned
//! into the library's [`FetchConfig`], and the library's [`BundleFile`] opened with them.

use std::path::{Path, PathBuf};

use abdelta::updater::{BundleFile, FetchConfig};
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
    /// Link round-trip time in milliseconds, for merging ranges (the default is 3G-like).
    #[arg(long, value_name = "MS", default_value_t = 600)]
    rtt_ms: u64,
    /// Link bandwidth in bytes per second, for merging ranges (the default is 3G-like).
    #[arg(long, value_name = "BYTES_PER_SEC", default_value_t = 32_000)]
    bandwidth: u64,
}

impl FetchArgs {
    /// The library's fetch settings from these flags, over `base` (a config file's).
    pub fn config(&self, base: &FetchConfig) -> anyhow::Result<FetchConfig> {
        let mut config = base.clone();
        if let Some(p) = &self.ca_cert {
            config.http.ca_certs_pem =
                Some(std::fs::read(p).with_context(|| format!("reading {}", p.display()))?);
        }
        if self.rate_limit.is_some() {
            config.http.rate_limit = self.rate_limit;
        }
        config.rtt_ms = self.rtt_ms;
        config.bandwidth = self.bandwidth;
        config.http.on_retry = Some(crate::ui::retry_hook());
        Ok(config)
    }
}

/// Where downloads are staged: `<state-dir>/download`, else the user's cache directory.
pub fn stage_dir(state_dir: Option<&Path>) -> PathBuf {
    match state_dir {
        Some(dir) => abdelta::updater::stage_dir(dir),
        None => {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .unwrap_or_else(std::env::temp_dir);
            cache.join("abdelta").join("download")
        }
    }
}

/// Opens a bundle path or URL, staging under `stage`.
pub fn open(location: &str, fetch: &FetchConfig, stage: &Path) -> anyhow::Result<BundleFile> {
    Ok(BundleFile::open(location, fetch, stage)?)
}
