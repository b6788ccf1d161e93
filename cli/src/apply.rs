//! `abdelta apply`: rebuild the new image on the target, then verify it by reading it back.

use std::path::PathBuf;
use std::time::Instant;

use abdelta::storage::FileTarget;
use anyhow::Context;

use crate::plan::{PlanArgs, first, plan_json};
use abdelta::policy::Decision;

use crate::ui::{AnonPeak, Bar, human, memory};
use abdelta::Progress;

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
    let device = input.device.device()?;
    if device.state_dir.is_none() {
        eprintln!(
            "abdelta: note: no --state-dir: rollback protection and the trusted-time floor are off"
        );
    }
    let stage_dir = crate::location::stage_dir(device.state_dir.as_deref());
    // One update at a time per state: a second agent or a technician's CLI waits for nothing
    // and corrupts nothing; it is refused (F20).
    let _lock = abdelta::updater::lock(&stage_dir)?;
    // Policy first, state saved (highest-seen release, trusted time, keyset) before any
    // payload byte is read.
    let opened = crate::device::open(&input.bundle, &input.fetch, &device, true)?;
    let bundle = &opened.authorized.bundle;
    let release = bundle.manifest().release_version;
    if opened.authorized.decision == Decision::UpToDate {
        if args.json {
            println!(
                "{}",
                serde_json::json!({"up_to_date": true, "release": release, "bundle_bytes_read": bundle.envelope().payload_offset()})
            );
        } else {
            println!("up to date: release {release} is installed; nothing downloaded or written");
        }
        return Ok(());
    }
    let source = input.source_image()?;
    let (plan, download) = input.plan(&opened, &source, &stage_dir, device.fetch.max_download)?;
    // A remote bundle is first brought into the on-disk stage, exactly the planned ranges
    // (neighbours merged when the gap costs less than a round trip), resuming whatever an
    // interrupted run already received; apply then reads locally.
    let stage = match opened.file.remote() {
        Some(http) => {
            let bar = Bar::new(args.json);
            let result = abdelta::updater::download(
                http,
                bundle,
                &download.ranges,
                &stage_dir,
                &mut |done, total| {
                    bar.update(Progress {
                        phase: "download",
                        done,
                        total,
                    });
                    Ok(())
                },
            );
            bar.finish();
            Some(result?)
        }
        None => None,
    };
    let reader: &dyn abdelta::storage::BundleSource = match &stage {
        Some(s) => s,
        None => opened.file.source(),
    };
    let mut target = FileTarget::open(&args.target, bundle.manifest().target.size, &source)
        .with_context(|| format!("opening target {}", args.target.display()))?;
    let bar = Bar::new(args.json);
    let anon = AnonPeak::start();
    let report = abdelta::apply(bundle, reader, source.bytes(), &mut target, &plan, &|p| {
        bar.update(p)
    });
    bar.finish();
    let report = report.with_context(|| format!("apply to {} failed", args.target.display()))?;
    drop(target);
    let verify_started = Instant::now();
    abdelta::verify::verify_path(bundle.manifest(), &args.target).with_context(|| {
        format!(
            "verification of {} after writing failed",
            args.target.display()
        )
    })?;
    let verify_secs = verify_started.elapsed().as_secs_f64();
    let peak_anon = anon.stop();
    // The state is not told the release is installed: a written partition is not a booted,
    // confirmed one. `abdelta install` and `mark-good` keep the slots.
    if let Some(s) = stage {
        s.remove().context("removing the download stage")?;
    }
    let secs = started.elapsed().as_secs_f64();
    let c = report.counts;
    if args.json {
        let value = serde_json::json!({
            "target": args.target,
            "verified": true,
            "plan": plan_json(&plan, &download),
            "bundle_bytes_read": report.bundle_bytes_read,
            "bytes_written": report.bytes_written,
            "copy": c.copy, "zero": c.zero, "patch": c.patch, "literal": c.literal,
            "fell_back_during_apply": report.fell_back,
            "apply_seconds": report.elapsed.as_secs_f64(),
            "verify_seconds": verify_secs,
            "seconds": secs,
            "wire": crate::location::wire_json(&opened.file),
            "resumed_bytes": opened.file.remote().map(|_| download.staged),
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
            human(report.bundle_bytes_read),
        );
        if !plan.fell_back.is_empty() {
            println!(
                "{} chunks fell back from the source: {:?}",
                plan.fell_back.len(),
                first(&plan.fell_back)
            );
        }
    }
    Ok(())
}
