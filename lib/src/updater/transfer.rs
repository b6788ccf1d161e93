//! Where the bundle's bytes come from on the device: a local path (a USB key) or a URL, whose
//! signed head is kept between runs for revalidation, and whose planned ranges are brought
//! into the resumable stage; and the update lock that keeps one update at a time.

use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::UpdateError;
use super::config::FetchConfig;
use crate::fetch::{FetchStats, HeadCache, HttpSource, Stage};
use crate::storage::{BundleSource, FileBundle};
use crate::{Plan, VerifiedBundle};

/// The download stage inside a state directory.
pub fn stage_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("download")
}

/// How long [`lock`] waits by default for a lock whose holder is exiting (a process killed a
/// moment ago, whose descriptors the kernel has not closed yet).
pub const LOCK_WAIT: Duration = Duration::from_secs(5);

/// Takes the update lock of a stage (`<stage>.lock`), waiting up to `wait` for it; fails
/// with [`UpdateError::Busy`] while another process still holds it then. Released when the
/// file is dropped or the process dies.
pub fn lock(stage: &Path, wait: Duration) -> Result<File, UpdateError> {
    let path = stage.with_extension("lock");
    let io = |what: &str, e: std::io::Error| UpdateError::Io {
        context: format!("{what} {}", path.display()),
        source: e,
    };
    if let Some(dir) = path.parent() {
        crate::record::create_dir(dir).map_err(|e| io("creating the directory of", e))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| io("opening the lock", e))?;
    let deadline = Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(std::fs::TryLockError::WouldBlock) => return Err(UpdateError::Busy(path)),
            Err(std::fs::TryLockError::Error(e)) => return Err(io("locking", e)),
        }
    }
}

/// A bundle opened where it is.
pub enum BundleFile {
    /// A local file or block device.
    Local(FileBundle),
    /// A URL (boxed: the client and its head are large), and where its head is kept.
    Remote(Box<HttpSource>, PathBuf),
}

/// Whether `location` is a URL rather than a path.
pub fn is_url(location: &str) -> bool {
    location.starts_with("http://") || location.starts_with("https://")
}

impl BundleFile {
    /// Opens a path or URL. For a URL, the head an earlier run kept under `stage` is
    /// revalidated (`If-None-Match`) rather than downloaded again.
    pub fn open(
        location: &str,
        fetch: &FetchConfig,
        stage: &Path,
    ) -> Result<BundleFile, UpdateError> {
        if is_url(location) {
            let cache_path = stage
                .join("heads")
                .join(blake3::hash(location.as_bytes()).to_hex().as_str());
            let cached = HeadCache::load(&cache_path);
            let source =
                HttpSource::open_cached(location, fetch.http.clone(), cached).map_err(|e| {
                    UpdateError::Fetch {
                        context: format!("fetching {location}"),
                        source: e,
                    }
                })?;
            Ok(BundleFile::Remote(Box::new(source), cache_path))
        } else {
            let file = FileBundle::open(location.as_ref()).map_err(|e| UpdateError::Io {
                context: format!("opening bundle {location}"),
                source: e,
            })?;
            Ok(BundleFile::Local(file))
        }
    }

    /// The bytes.
    pub fn source(&self) -> &dyn BundleSource {
        match self {
            BundleFile::Local(f) => f,
            BundleFile::Remote(h, _) => h.as_ref(),
        }
    }

    /// Reads the signed header and authenticates it with `check` (a signature check, or the
    /// whole device policy). Only a head that passed is kept for a later run to revalidate
    /// instead of download; one that failed is forgotten, so the next run fetches it again
    /// rather than revalidating bytes that a proxy, a bad CDN node or bit rot corrupted.
    pub fn authenticate<T>(
        &self,
        limits: &crate::format::Limits,
        check: impl FnOnce(crate::UnverifiedBundle) -> Result<T, crate::BundleError>,
    ) -> Result<T, UpdateError> {
        let result = crate::UnverifiedBundle::read(self.source(), limits).and_then(check);
        if let BundleFile::Remote(http, path) = self {
            match (&result, http.head_cache()) {
                (Ok(_), Some(head)) => {
                    let written = path
                        .parent()
                        .map_or(Ok(()), crate::record::create_dir)
                        .and_then(|()| Ok(crate::record::write_atomic(path, &head.encode())?));
                    // Losing the head costs one header download on the next run, nothing more.
                    drop(written);
                }
                // A policy refusal is about the release, not the bytes: the head is kept.
                (Err(crate::BundleError::Policy(_)), _) | (Ok(_), None) => {}
                (Err(_), _) => drop(std::fs::remove_file(path)),
            }
        }
        Ok(result?)
    }

    /// Traffic so far, for a URL.
    pub fn wire(&self) -> Option<FetchStats> {
        match self {
            BundleFile::Local(_) => None,
            BundleFile::Remote(h, _) => Some(h.stats()),
        }
    }

    /// The remote source, for a URL.
    pub fn remote(&self) -> Option<&HttpSource> {
        match self {
            BundleFile::Local(_) => None,
            BundleFile::Remote(h, _) => Some(h),
        }
    }
}

/// What the download of a plan will cost: the ranges requested (neighbours merged when the
/// gap costs less than a round trip) and the bytes they add up to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Download {
    /// The requested ranges, merged.
    pub ranges: Vec<Range<u64>>,
    /// Bytes of the plan's ranges alone.
    pub planned_bytes: u64,
    /// Bytes still to download: the merged ranges (gaps included) less what the stage and
    /// the fetched head already hold.
    pub to_download: u64,
    /// Bytes already in the stage from an earlier, interrupted run.
    pub staged: u64,
    /// Bytes the header cost this run (0 when revalidated).
    pub header_fetched: u64,
}

impl Download {
    /// Prices `plan`'s download for `bundle` against what `dir`'s stage already holds.
    pub fn price(
        file: &BundleFile,
        bundle: &VerifiedBundle,
        plan: &Plan,
        dir: &Path,
        gap: u64,
    ) -> Download {
        let Some(http) = file.remote() else {
            return Download::default();
        };
        let ranges = crate::fetch::coalesce(&plan.ranges, gap);
        let planned_bytes = plan.ranges.iter().map(|r| r.end - r.start).sum();
        let held = http.head_len();
        let (missing, staged) =
            match Stage::peek(dir, bundle.verified().manifest_hash(), http.len()) {
                Some(done) => (
                    crate::fetch::stage::subtract(&ranges, &done),
                    done.iter().map(|r| r.end - r.start).sum(),
                ),
                None => (ranges.clone(), 0),
            };
        let to_download = missing
            .iter()
            .map(|r| r.end - r.start.max(held).min(r.end))
            .sum();
        Download {
            ranges,
            planned_bytes,
            to_download,
            staged,
            header_fetched: http.stats().body_bytes,
        }
    }
}

impl Download {
    /// What a byte budget is judged against: for a URL, the header this run fetched plus the
    /// merged ranges still missing (what goes over the wire); for a local file, the bytes
    /// the plan reads.
    pub fn cost(&self, file: &BundleFile, plan: &Plan) -> u64 {
        match file.remote() {
            Some(_) => self.header_fetched + self.to_download,
            None => plan.total_bytes(),
        }
    }

    /// Refuses, before any blob is fetched, a download that costs more than `budget`.
    pub fn check_budget(
        &self,
        file: &BundleFile,
        plan: &Plan,
        budget: Option<u64>,
    ) -> Result<(), crate::OverBudget> {
        let cost = self.cost(file, plan);
        match budget {
            Some(budget) if cost > budget => Err(crate::OverBudget {
                planned: cost,
                budget,
            }),
            _ => Ok(()),
        }
    }
}

/// Brings `ranges` of a remote bundle into the stage at `dir`, resuming what an interrupted
/// run received. `progress(done, total)` may stop the download by returning an error.
pub fn download(
    http: &HttpSource,
    bundle: &VerifiedBundle,
    ranges: &[Range<u64>],
    dir: &Path,
    progress: &mut dyn FnMut(u64, u64) -> std::io::Result<()>,
) -> Result<Stage, UpdateError> {
    let mut stage =
        Stage::open(dir, bundle.verified().manifest_hash(), http.len()).map_err(|e| {
            UpdateError::Io {
                context: format!("opening the download stage {}", dir.display()),
                source: e,
            }
        })?;
    let total: u64 = stage.missing(ranges).iter().map(|r| r.end - r.start).sum();
    stage
        .fetch(http, ranges, &mut |done| progress(done, total))
        .map_err(|e| UpdateError::from_download(e, dir))?;
    Ok(stage)
}

/// The stage, with whatever it lacks fetched on demand from the server. The plan downloads
/// only the blobs it expects to need; a chunk whose copy or patch then fails (the source
/// changed after planning, a patch group was corrupt in transit) falls back to its literal,
/// which comes from here, as do bytes the stage holds but cannot read back. On-demand bytes
/// are counted, and refused past `allowance`.
pub(crate) struct StagedOrRemote<'a> {
    stage: &'a Stage,
    remote: &'a HttpSource,
    allowance: Option<u64>,
    fetched: std::sync::atomic::AtomicU64,
}

impl<'a> StagedOrRemote<'a> {
    pub(crate) fn new(stage: &'a Stage, remote: &'a HttpSource, allowance: Option<u64>) -> Self {
        StagedOrRemote {
            stage,
            remote,
            allowance,
            fetched: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Bytes fetched on demand.
    pub(crate) fn fetched(&self) -> u64 {
        self.fetched.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl BundleSource for StagedOrRemote<'_> {
    fn len(&self) -> u64 {
        self.stage.len()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let len = buf.len() as u64;
        let end = offset
            .checked_add(len)
            .ok_or(std::io::ErrorKind::InvalidInput)?;
        // Bytes the stage holds but cannot return (a bad sector, a damaged or truncated
        // file) are fetched again like bytes it never had; the stage's error is kept for the
        // message if the server fails too.
        let unreadable = if self.stage.holds(&(offset..end)) {
            match self.stage.read_at(offset, buf) {
                Ok(()) => return Ok(()),
                Err(e) => Some(e),
            }
        } else {
            None
        };
        let with_stage_error = |e: std::io::Error| match &unreadable {
            Some(stage) => std::io::Error::new(
                e.kind(),
                format!(
                    "the download stage could not read bundle bytes {offset}..{end} ({stage}), and fetching them again failed: {e}"
                ),
            ),
            None => e,
        };
        let total = self.fetched() + len;
        if self.allowance.is_some_and(|a| total > a) {
            return Err(with_stage_error(std::io::Error::other(format!(
                "byte budget exceeded: a fallback needs bundle bytes {offset}..{end} beyond what the budget allows"
            ))));
        }
        self.remote.read_at(offset, buf).map_err(with_stage_error)?;
        self.fetched
            .fetch_add(len, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetch::HttpOptions;
    use crate::storage::MemBundle;

    /// Bytes the journal says arrived but the stage's file cannot return (here the file is
    /// cut short under the open stage; a bad sector gives EIO the same way) are fetched again
    /// from the server, counted against the budget; past the budget the error names both.
    #[test]
    #[allow(clippy::single_range_in_vec_init)] // one range: what Stage::fetch takes
    fn bytes_the_stage_cannot_read_back_are_fetched_again() {
        let tmp = tempfile::tempdir().unwrap();
        let bundle: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(tmp.path().join("b.abd"), &bundle).unwrap();
        let addr = abdelta_testkit::serve(tmp.path());
        let remote =
            HttpSource::open(&format!("http://{addr}/b.abd"), HttpOptions::default()).unwrap();
        let dir = tmp.path().join("stage");
        let len = bundle.len() as u64;
        let mut stage = Stage::open(&dir, &[1; 32], len).unwrap();
        stage
            .fetch(&MemBundle(&bundle), &[0..len], &mut |_| Ok(()))
            .unwrap();
        File::options()
            .write(true)
            .open(dir.join("bundle.part"))
            .unwrap()
            .set_len(100_000)
            .unwrap();
        let reader = StagedOrRemote::new(&stage, &remote, None);
        let mut buf = vec![0u8; 50_000];
        reader.read_at(200_000, &mut buf).unwrap();
        assert_eq!(buf, bundle[200_000..250_000]);
        assert_eq!(reader.fetched(), 50_000);
        // What the stage can read costs nothing.
        reader.read_at(0, &mut buf).unwrap();
        assert_eq!(buf, bundle[..50_000]);
        assert_eq!(reader.fetched(), 50_000);
        let tight = StagedOrRemote::new(&stage, &remote, Some(10));
        let e = tight.read_at(200_000, &mut buf).unwrap_err().to_string();
        assert!(e.contains("could not read") && e.contains("budget"), "{e}");
    }
}
