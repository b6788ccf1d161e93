//! Where a bundle is: a local path or an http(s):// URL, opened as a [`BundleSource`].

use std::path::{Path, PathBuf};

use abdelta::fetch::{FetchStats, HeadCache, HttpOptions, HttpSource, Stage};
use abdelta::storage::{BundleSource, FileBundle};
use abdelta::{Plan, Progress, VerifiedBundle};
use anyhow::Context;

use crate::ui::Bar;

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
    /// The gap between two ranges worth downloading rather than paying another round trip.
    pub fn range_gap(&self) -> u64 {
        abdelta::fetch::ranges::gap_for_link(self.rtt_ms, self.bandwidth)
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().ok_or(std::io::ErrorKind::InvalidInput)?;
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Takes the update lock beside the stage directory, or fails at once if another process holds
/// it. Released when the returned file is dropped (or the process dies).
pub fn lock(stage: &Path) -> anyhow::Result<std::fs::File> {
    let path = stage.with_extension("lock");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening the lock {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            anyhow::bail!("busy: another abdelta update holds {}", path.display())
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// Where downloads are staged: `<state-dir>/download`, else the user's cache directory.
pub fn stage_dir(state_dir: Option<&Path>) -> PathBuf {
    match state_dir {
        Some(dir) => dir.join("download"),
        None => {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .unwrap_or_else(std::env::temp_dir);
            cache.join("abdelta").join("download")
        }
    }
}

/// A finished download stage.
pub struct Downloaded {
    /// The received bytes.
    pub stage: Stage,
    /// Bytes an earlier, interrupted run had already received.
    pub resumed: u64,
}

/// Brings the planned ranges of a remote bundle into the stage at `dir`.
pub fn download(
    events: bool,
    http: &HttpSource,
    bundle: &VerifiedBundle,
    plan: &Plan,
    dir: &Path,
    gap: u64,
) -> anyhow::Result<Downloaded> {
    let mut stage = Stage::open(dir, bundle.verified().manifest_hash(), http.len())
        .with_context(|| format!("opening the download stage {}", dir.display()))?;
    let resumed = stage.received();
    let ranges = abdelta::fetch::coalesce(&plan.ranges, gap);
    let total: u64 = stage.missing(&ranges).iter().map(|r| r.end - r.start).sum();
    let bar = Bar::new(events);
    let result = stage.fetch(http, &ranges, &mut |done| {
        bar.update(Progress {
            phase: "download",
            done,
            total,
        })
    });
    bar.finish();
    result.context("downloading the bundle")?;
    Ok(Downloaded { stage, resumed })
}

/// An opened bundle.
pub enum Bundle {
    /// A local file or block device.
    File(FileBundle),
    /// A URL (boxed: the client and its cached head are large), and where its head is kept.
    Http(Box<HttpSource>, PathBuf),
}

impl Bundle {
    /// Opens a path or URL. For a URL, the bundle's first bytes from an earlier interrupted
    /// run (kept under `stage`) are revalidated rather than downloaded again.
    pub fn open(location: &str, fetch: &FetchArgs, stage: &Path) -> anyhow::Result<Bundle> {
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
            let cache_path = stage
                .join("heads")
                .join(blake3::hash(location.as_bytes()).to_hex().as_str());
            let cached = HeadCache::load(&cache_path);
            let source = HttpSource::open_cached(location, options, cached)
                .with_context(|| format!("fetching {location}"))?;
            Ok(Bundle::Http(Box::new(source), cache_path))
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
            Bundle::Http(h, _) => h.as_ref(),
        }
    }

    /// Keeps the bundle's head (the signed header read so far) for a resumed run to
    /// revalidate instead of download. Best effort: without it a rerun fetches the header again.
    pub fn remember_head(&self) {
        if let Bundle::Http(http, path) = self
            && let Some(head) = http.head_cache()
        {
            let _ = write_atomic(path, &head.encode());
        }
    }

    /// Traffic, for a URL.
    pub fn wire(&self) -> Option<FetchStats> {
        match self {
            Bundle::File(_) => None,
            Bundle::Http(h, _) => Some(h.stats()),
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
