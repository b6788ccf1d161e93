//! `abdelta apply`: rebuild the new image on a target named by hand, then verify it by reading
//! it back: flags in, one library call ([`write_image`]), the report out.

use std::path::PathBuf;
use std::time::Instant;

use abdelta::updater::{Event, ImageOutcome, ImageRequest, InstallOptions, write_image};
use anyhow::Context;

use crate::plan::{PlanArgs, first, plan_json};
use crate::ui::{AnonPeak, Bar, human, memory};

/// Flags of `abdelta apply`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    input: PlanArgs,
    /// The partition or image file to write (created if it is a missing regular file).
    #[arg(long, value_name = "NEW")]
    target: PathBuf,
    /// Print JSON (progress events go to stderr, one per line).
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let input = &args.input;
    if let Some(source) = &input.source
        && same_file(source, &args.target)
    {
        return Err(crate::Usage(format!(
            "--target {} is the --source: the running partition is never written; name the other slot",
            args.target.display()
        ))
        .into());
    }
    let device = input.device.device()?;
    if device.state_dir.is_none() {
        eprintln!(
            "abdelta: note: no --state-dir: rollback protection and the trusted-time floor are off"
        );
    }
    let fetch = input.fetch.config(&device.fetch)?;
    let stage_dir = crate::location::stage_dir(device.state_dir.as_deref());
    let request = ImageRequest {
        location: &input.bundle,
        policy: &device.policy,
        state_dir: device.state_dir.as_deref(),
        stage_dir: &stage_dir,
        fetch: &fetch,
        source: input.source.as_deref(),
        target: &args.target,
        lock_wait: device.lock_wait,
    };
    let options = InstallOptions {
        max_download: input.max_download,
    };
    let bar = Bar::new(args.json);
    let anon = AnonPeak::start();
    let outcome = write_image(
        &request,
        &options,
        &crate::ui::interrupt(),
        &mut |e: &Event| {
            if let Some(p) = e.progress {
                bar.update(p);
            }
        },
    );
    bar.finish();
    let peak_anon = anon.stop();
    let report = match outcome
        .with_context(|| format!("apply to {} failed", args.target.display()))?
    {
        ImageOutcome::UpToDate {
            release,
            header_bytes,
        } => {
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"up_to_date": true, "release": release, "bundle_bytes_read": header_bytes})
                );
            } else {
                println!(
                    "up to date: release {release} is installed; nothing downloaded or written"
                );
            }
            return Ok(());
        }
        ImageOutcome::Written(report) => report,
    };
    let secs = started.elapsed().as_secs_f64();
    let (plan, apply) = (&report.plan, &report.apply);
    let c = apply.counts;
    if args.json {
        let value = serde_json::json!({
            "target": args.target,
            "verified": true,
            "plan": plan_json(plan, &report.download),
            "bundle_bytes_read": apply.bundle_bytes_read,
            "bytes_written": apply.bytes_written,
            "copy": c.copy, "zero": c.zero, "patch": c.patch, "literal": c.literal,
            "fell_back_during_apply": apply.fell_back,
            "apply_seconds": apply.elapsed.as_secs_f64(),
            "verify_seconds": report.verify_time.as_secs_f64(),
            "seconds": secs,
            "wire": report.wire.map(|s| serde_json::json!({"requests": s.requests, "body_bytes": s.body_bytes, "retries": s.retries})),
            "resumed_bytes": report.wire.map(|_| report.download.staged),
            "refetched_bytes": report.refetched,
            "source_read_errors": source_errors_json(&apply.source_errors),
            "peak_rss_bytes": memory("VmHWM"),
            "rss_anon_bytes": memory("RssAnon"),
            "peak_rss_anon_bytes": peak_anon,
        });
        println!("{value}");
    } else {
        println!(
            "{} written and verified: {} chunks = {} copy, {} zero, {} patch, {} literal; read {} of the bundle; {secs:.2} s",
            args.target.display(),
            plan.steps.len(),
            c.copy,
            c.zero,
            c.patch,
            c.literal,
            human(apply.bundle_bytes_read),
        );
        if report.wire.is_some() && report.download.staged > 0 {
            println!(
                "resumed: {} were kept from an earlier run, {} downloaded now",
                human(report.download.staged),
                human(report.download.to_download),
            );
        }
        if !plan.fell_back.is_empty() {
            println!(
                "{} fell back from the source: {:?}",
                crate::ui::count(plan.fell_back.len(), "chunk", "chunks"),
                first(&plan.fell_back)
            );
        }
        if !apply.fell_back.is_empty() {
            println!(
                "warning: {} failed its patch or copy while applying (a corrupt patch group, or the source changed) and took its literal: {} read beyond the plan",
                crate::ui::count(apply.fell_back.len(), "chunk", "chunks"),
                human(apply.bundle_bytes_read.saturating_sub(plan.total_bytes())),
            );
        }
        print_source_errors(&apply.source_errors, report.refetched);
    }
    Ok(())
}

/// Failed reads of the running partition, for `--json`.
pub fn source_errors_json(errors: &abdelta::SourceErrors) -> serde_json::Value {
    serde_json::json!({"count": errors.count, "first": errors.first})
}

/// Says on stderr that the running partition failed reads and what the fallback cost.
pub fn print_source_errors(errors: &abdelta::SourceErrors, refetched: u64) {
    if let Some(first) = &errors.first {
        let cost = match refetched {
            0 => String::new(),
            n => format!(" ({} fetched beyond the plan)", human(n)),
        };
        eprintln!(
            "warning: {} read(s) of the running partition failed (first: {first}); those chunks are rebuilt from the bundle{cost}",
            errors.count,
        );
    }
}

/// Whether two paths name the same file or device (the library refuses it too, and any overlap
/// through the block layer; this names the usage mistake).
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => (x.dev(), x.ino()) == (y.dev(), y.ino()),
        _ => false,
    }
}
