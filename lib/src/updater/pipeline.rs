//! The install's data path with its events: the download into the stage, and the apply that
//! heals what arrived corrupt. Shared by the slot install and the manual image write.

use std::io;
use std::path::Path;

use super::transfer::{self, BundleFile, Download, download};
use super::{Cancel, Event, FirmwareStatus, UpdateError};
use crate::error::{ApplyError, Error};
use crate::storage::{BundleSource, FileTarget, Source};
use crate::{ApplyReport, Plan, Progress, VerifiedBundle};

/// For a URL, brings `ranges` into the stage at `dir` with `Downloading` (and progress) then
/// `Downloaded` events; a cancellation stops the download, keeping what arrived. A local
/// bundle needs no stage.
pub(super) fn stage_with_events(
    file: &BundleFile,
    bundle: &VerifiedBundle,
    ranges: &[std::ops::Range<u64>],
    dir: &Path,
    cancel: &Cancel,
    on_event: &mut (dyn FnMut(&Event) + Send),
) -> Result<Option<crate::fetch::Stage>, UpdateError> {
    let Some(http) = file.remote() else {
        return Ok(None);
    };
    on_event(&Event::status(FirmwareStatus::Downloading, None));
    let result = download(http, bundle, ranges, dir, &mut |done, total| {
        if cancel.is_cancelled() {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "cancelled"));
        }
        on_event(&Event {
            status: FirmwareStatus::Downloading,
            progress: Some(Progress {
                phase: "download",
                done,
                total,
            }),
            detail: None,
        });
        Ok(())
    });
    let stage = match result {
        Err(_) if cancel.is_cancelled() => {
            return Err(UpdateError::Cancelled { downloading: true });
        }
        other => other?,
    };
    on_event(&Event::status(FirmwareStatus::Downloaded, None));
    Ok(Some(stage))
}

/// How many times one run fetches a failed blob again before it gives up.
const MAX_HEALS: u32 = 2;

/// Applies from the stage (or the local bundle), healing what arrived corrupt: a chunk whose
/// literal fails its decode or check has that blob forgotten by the stage and fetched again,
/// and the apply restarts, at most [`MAX_HEALS`] times; whatever the stage lacks (a fallback
/// the plan did not expect) is fetched on demand within `allowance`. Returns the report and
/// the bytes fetched beyond the plan.
#[allow(clippy::too_many_arguments)] // one call site per path; a struct would only rename them
pub(super) fn apply_healing(
    bundle: &VerifiedBundle,
    file: &BundleFile,
    stage: &mut Option<crate::fetch::Stage>,
    source: &dyn Source,
    target: &mut FileTarget,
    plan: &Plan,
    (download, budget): (&Download, Option<u64>),
    cancel: &Cancel,
    on_event: &mut (dyn FnMut(&Event) + Send),
) -> Result<(ApplyReport, u64), UpdateError> {
    // What the budget leaves once the planned download is paid for.
    let allowance = budget.map(|b| b.saturating_sub(download.cost(file, plan)));
    let mut refetched = 0u64;
    let mut heals = 0;
    loop {
        let result = match (stage.as_ref(), file.remote()) {
            (Some(staged), Some(http)) => {
                let reader = transfer::StagedOrRemote::new(
                    staged,
                    http,
                    allowance.map(|a| a.saturating_sub(refetched)),
                );
                let result =
                    apply_with_events(bundle, &reader, source, target, plan, cancel, on_event);
                refetched += reader.fetched();
                result
            }
            _ => apply_with_events(
                bundle,
                file.source(),
                source,
                target,
                plan,
                cancel,
                on_event,
            ),
        };
        let index = match &result {
            Err(UpdateError::Bundle(Error::Apply(
                ApplyError::ChunkHashMismatch { index } | ApplyError::Blob { index, .. },
            ))) => *index,
            _ => return result.map(|report| (report, refetched)),
        };
        let blob = bundle
            .manifest()
            .chunks
            .get(index)
            .and_then(|c| match c.fallback {
                crate::format::Fallback::Literal { blob, .. } => Some(blob),
                crate::format::Fallback::Zero => None,
            });
        let (Some(staged), Some(blob)) = (stage.as_mut(), blob) else {
            return result.map(|report| (report, refetched));
        };
        let start = bundle.blob_offset(&blob);
        let range = start..start + u64::from(blob.len);
        if heals == MAX_HEALS || !staged.holds(&range) {
            // Fetched again and still wrong, or fetched on demand and wrong: the server (or
            // something between it and the station) serves bytes the signed manifest refutes.
            return result.map(|report| (report, refetched));
        }
        heals += 1;
        staged.forget(range.clone()).map_err(|e| UpdateError::Io {
            context: "dropping a corrupt blob from the download stage".into(),
            source: e,
        })?;
        on_event(&Event::status(
            FirmwareStatus::Installing,
            Some(format!(
                "chunk {index}: its blob (bundle bytes {}..{}) arrived corrupt; fetching it again",
                range.start, range.end
            )),
        ));
    }
}

/// Applies with `Installing` progress events, stopping between batches when cancelled.
fn apply_with_events(
    bundle: &VerifiedBundle,
    reader: &dyn BundleSource,
    source: &dyn Source,
    target: &mut FileTarget,
    plan: &Plan,
    cancel: &Cancel,
    on_event: &mut (dyn FnMut(&Event) + Send),
) -> Result<ApplyReport, UpdateError> {
    // Apply reports progress through a shared callback; the agent's is `FnMut`.
    let events = std::sync::Mutex::new(on_event);
    let applied = crate::apply::apply_until(
        bundle,
        reader,
        source,
        target,
        plan,
        &|p| {
            if let Ok(mut emit) = events.lock() {
                emit(&Event {
                    status: FirmwareStatus::Installing,
                    progress: Some(p),
                    detail: None,
                });
            }
        },
        &|| cancel.is_cancelled(),
    );
    match applied {
        Err(ApplyError::Cancelled) => Err(UpdateError::Cancelled { downloading: false }),
        other => Ok(other?),
    }
}
