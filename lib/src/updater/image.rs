//! Writing a release to a partition or image file by hand (`abdelta apply`): the same checks
//! and order as an install (lock, policy with the state saved first, plan, budget, resumable
//! download, verified writes, read-back), without slots or a boot switch. The target is what
//! the caller names; nothing is recorded as installed, since a written partition is not a
//! booted, confirmed one.

use std::path::Path;
use std::time::{Duration, Instant};

use super::config::FetchConfig;
use super::transfer::{BundleFile, Download, lock};
use super::{Cancel, Event, FirmwareStatus, InstallOptions, UpdateError};
use crate::error::BundleError;
use crate::format::Limits;
use crate::policy::{Decision, DeviceState, Policy, authorize};
use crate::storage::{FileTarget, SourceImage};
use crate::{ApplyReport, Plan};

/// What to write where, under which policy.
#[derive(Debug, Clone, Copy)]
pub struct ImageRequest<'a> {
    /// The bundle: a path or an http(s) URL.
    pub location: &'a str,
    /// What the device trusts and is.
    pub policy: &'a Policy,
    /// The device state, if kept (without it there is no rollback protection across runs).
    pub state_dir: Option<&'a Path>,
    /// Where downloads are staged (and the lock kept).
    pub stage_dir: &'a Path,
    /// Fetching.
    pub fetch: &'a FetchConfig,
    /// The running partition or old image, read-only (none: a blank device).
    pub source: Option<&'a Path>,
    /// The partition or image file to write (a missing regular file is created).
    pub target: &'a Path,
    /// How long to wait for the update lock (see [`super::LOCK_WAIT`]).
    pub lock_wait: std::time::Duration,
}

/// What writing an image did.
#[derive(Debug, Clone)]
pub struct ImageReport {
    /// The release written.
    pub release: u64,
    /// The plan it followed.
    pub plan: Plan,
    /// The priced download.
    pub download: Download,
    /// The apply.
    pub apply: ApplyReport,
    /// The read-back's wall time.
    pub verify_time: Duration,
    /// Traffic on the wire, for a URL.
    pub wire: Option<crate::fetch::FetchStats>,
    /// Bundle bytes fetched beyond the plan (see [`super::InstallReport::refetched`]).
    pub refetched: u64,
}

/// How writing an image ended.
#[derive(Debug, Clone)]
pub enum ImageOutcome {
    /// The booted, confirmed slot runs this release (per the state): nothing was written.
    UpToDate {
        /// The release.
        release: u64,
        /// Bundle bytes read (the header).
        header_bytes: u64,
    },
    /// Written and read back.
    Written(Box<ImageReport>),
}

/// Writes the release at `request.location` to `request.target`. `on_event` gets the same
/// statuses and progress as an install; `cancel` stops the download or the writing.
pub fn write_image(
    request: &ImageRequest<'_>,
    options: &InstallOptions,
    cancel: &Cancel,
    on_event: &mut (dyn FnMut(&Event) + Send),
) -> Result<ImageOutcome, UpdateError> {
    // One update at a time per stage: a second agent or a technician waits for nothing and
    // corrupts nothing; it is refused (F20).
    let _lock = lock(request.stage_dir, request.lock_wait)?;
    let limits = Limits::DEFAULT;
    let file = BundleFile::open(request.location, request.fetch, request.stage_dir)?;
    let mut state = match request.state_dir {
        Some(dir) => DeviceState::load(dir).map_err(BundleError::from)?,
        None => DeviceState::default(),
    };
    let authorized = file.authenticate(&limits, |unverified| {
        authorize(
            unverified,
            request.policy,
            &mut state,
            super::now(),
            &limits,
        )
    })?;
    // The raised floors are durable before any payload byte is read (SPEC §9.3 step 13).
    if let Some(dir) = request.state_dir {
        state.save(dir).map_err(BundleError::from)?;
    }
    let bundle = authorized.bundle;
    let release = bundle.manifest().release_version;
    if authorized.decision == Decision::UpToDate {
        return Ok(ImageOutcome::UpToDate {
            release,
            header_bytes: bundle.envelope().payload_offset(),
        });
    }
    let source = match request.source {
        Some(p) => SourceImage::open(p).map_err(|e| UpdateError::Io {
            context: format!("opening source {}", p.display()),
            source: e,
        })?,
        None => SourceImage::empty(),
    };
    let plan = crate::plan(&bundle, &source);
    let download_plan = Download::price(
        &file,
        &bundle,
        &plan,
        request.stage_dir,
        request.fetch.range_gap(),
    );
    let budget = options.max_download.or(request.fetch.max_download);
    download_plan.check_budget(&file, &plan, budget)?;
    let stage = super::pipeline::stage_with_events(
        &file,
        &bundle,
        &download_plan.ranges,
        request.stage_dir,
        cancel,
        on_event,
    )?;
    on_event(&Event::status(FirmwareStatus::Installing, None));
    // A file this call creates is removed again if the write or its check fails: a failed
    // apply never leaves a full-size image that looks finished.
    let created = std::fs::symlink_metadata(request.target).is_err();
    let remove_created = |error: UpdateError| {
        if created {
            let _removed = std::fs::remove_file(request.target);
        }
        error
    };
    let mut target = FileTarget::open(request.target, bundle.manifest().target.size, &source)
        .map_err(|e| UpdateError::Io {
            context: format!("opening target {}", request.target.display()),
            source: e,
        })?;
    let mut stage = stage;
    let (apply, refetched) = super::pipeline::apply_healing(
        &bundle,
        &file,
        &mut stage,
        &source,
        &mut target,
        &plan,
        (&download_plan, budget),
        cancel,
        on_event,
    )
    .map_err(remove_created)?;
    drop(target);
    let verify_started = Instant::now();
    crate::verify::verify_path(bundle.manifest(), request.target)
        .map_err(|e| remove_created(e.into()))?;
    let verify_time = verify_started.elapsed();
    if let Some(stage) = stage {
        stage.remove().map_err(|e| UpdateError::Io {
            context: "removing the download stage".into(),
            source: e,
        })?;
    }
    Ok(ImageOutcome::Written(Box::new(ImageReport {
        release,
        plan,
        download: download_plan,
        apply,
        verify_time,
        wire: file.wire(),
        refetched,
    })))
}
