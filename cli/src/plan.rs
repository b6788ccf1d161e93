//! `abdelta plan`: what applying would read, given the real source. Writes nothing.

use std::path::PathBuf;

use abdelta::storage::SourceImage;
use anyhow::Context;

use abdelta::policy::Decision;

use crate::device::DeviceArgs;
use crate::location::FetchArgs;
use crate::ui::human;

/// Flags of `abdelta plan`.
#[derive(clap::Args)]
pub struct Args {
    /// The bundle: a path, or an http(s):// URL (only the byte ranges needed are fetched).
    bundle: String,
    #[command(flatten)]
    fetch: FetchArgs,
    /// Refuse (before downloading any blob) a plan that reads more than this many bytes.
    #[arg(long, value_name = "BYTES")]
    max_download: Option<u64>,
    /// The running partition or old image (omit for a blank device).
    #[arg(long, value_name = "OLD")]
    source: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// The plan as JSON (shared with `apply --json`).
pub fn plan_json(plan: &abdelta::Plan) -> serde_json::Value {
    serde_json::json!({
        "download_bytes": plan.total_bytes(),
        "header_bytes": plan.header_bytes,
        "blob_bytes": plan.blob_bytes,
        "ranges": plan.ranges.len(),
        "chunks": plan.steps.len(),
        "copy": plan.counts.copy,
        "zero": plan.counts.zero,
        "patch": plan.counts.patch,
        "literal": plan.counts.literal,
        "fell_back_chunks": plan.fell_back,
        "relocated_chunks": plan.relocated.len(),
    })
}

pub fn run(args: Args) -> anyhow::Result<()> {
    // A plan changes nothing: the device state is read, never saved.
    let opened = crate::device::open(&args.bundle, &args.fetch, &args.device.device()?, false)?;
    let bundle = &opened.authorized.bundle;
    if opened.authorized.decision == Decision::UpToDate {
        if args.json {
            println!(
                "{}",
                serde_json::json!({"up_to_date": true, "download_bytes": 0})
            );
        } else {
            println!(
                "up to date: release {} is installed; nothing to read",
                bundle.manifest().release_version
            );
        }
        return Ok(());
    }
    let source = match &args.source {
        Some(p) => {
            SourceImage::open(p).with_context(|| format!("opening source {}", p.display()))?
        }
        None => SourceImage::empty(),
    };
    let plan = abdelta::plan(bundle, source.bytes());
    if let Some(budget) = args.max_download {
        plan.check_budget(budget)?;
    }
    if args.json {
        println!("{}", plan_json(&plan));
        return Ok(());
    }
    let c = plan.counts;
    println!(
        "read {} from the bundle in {} ranges ({} header + {} blobs)",
        human(plan.total_bytes()),
        plan.ranges.len(),
        human(plan.header_bytes),
        human(plan.blob_bytes)
    );
    println!(
        "chunks: {} copy, {} zero, {} patch, {} literal",
        c.copy, c.zero, c.patch, c.literal
    );
    if !plan.fell_back.is_empty() {
        println!(
            "{} chunks fall back (source differs from the expected one): {:?}",
            plan.fell_back.len(),
            first(&plan.fell_back)
        );
    }
    Ok(())
}

/// The first few entries of a list, for messages.
pub fn first(list: &[usize]) -> &[usize] {
    list.get(..list.len().min(16)).unwrap_or(list)
}
