//! `abdelta plan`: what applying would read, given the real source. Writes nothing.

use std::path::PathBuf;

use abdelta::storage::SourceImage;
use abdelta::updater::Download;
use anyhow::Context;

use abdelta::policy::Decision;

use crate::device::DeviceArgs;
use crate::location::FetchArgs;
use crate::ui::human;

/// What `plan` and `apply` share: the bundle, how to fetch it, the source, the budget and the
/// device's policy.
#[derive(clap::Args)]
pub struct PlanArgs {
    /// The bundle: a path, or an http(s):// URL (only the byte ranges needed are fetched).
    pub bundle: String,
    #[command(flatten)]
    pub fetch: FetchArgs,
    /// Refuse (before downloading any blob) a plan that reads more than this many bytes.
    #[arg(long, value_name = "BYTES")]
    pub max_download: Option<u64>,
    /// The running partition or old image, opened read-only (omit for a blank device).
    #[arg(long, value_name = "OLD")]
    pub source: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArgs,
}

impl PlanArgs {
    /// Maps the source read-only (or none, for a blank device).
    pub fn source_image(&self) -> anyhow::Result<SourceImage> {
        match &self.source {
            Some(p) => {
                SourceImage::open(p).with_context(|| format!("opening source {}", p.display()))
            }
            None => Ok(SourceImage::empty()),
        }
    }

    /// Plans `bundle` against `source`, prices the download (range-merging gaps included,
    /// less what an earlier run staged) and applies the byte budget, before any blob is read.
    pub fn plan(
        &self,
        opened: &crate::device::Opened,
        source: &SourceImage,
        stage: &std::path::Path,
        budget: Option<u64>,
    ) -> anyhow::Result<(abdelta::Plan, Download)> {
        let bundle = &opened.authorized.bundle;
        let plan = abdelta::plan(bundle, source);
        let download =
            Download::price(&opened.file, bundle, &plan, stage, opened.fetch.range_gap());
        download.check_budget(&opened.file, &plan, self.max_download.or(budget))?;
        Ok((plan, download))
    }
}

/// Flags of `abdelta plan`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    input: PlanArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// The plan as JSON (shared with `apply --json` and `check --json`).
pub fn plan_json(plan: &abdelta::Plan, download: &Download) -> serde_json::Value {
    serde_json::json!({
        "download_bytes": plan.total_bytes(),
        // Over HTTP: the merged ranges (gaps included) still to fetch, and the header bytes
        // this run fetched; what a byte budget is judged against.
        "wire_bytes": download.header_fetched + download.to_download,
        "merged_ranges": download.ranges.len(),
        "staged_bytes": download.staged,
        "header_bytes": plan.header_bytes,
        "blob_bytes": plan.blob_bytes,
        "ranges": plan.ranges.len(),
        "chunks": plan.steps.len(),
        "copy": plan.counts.copy,
        "zero": plan.counts.zero,
        "patch": plan.counts.patch,
        "literal": plan.counts.literal,
        "fell_back_chunks": plan.fell_back,
        // What the chunks whose source bytes no longer verify cost: their fallback blobs.
        "fell_back_bytes": plan
            .fell_back
            .iter()
            .filter_map(|&i| plan.steps.get(i).and_then(abdelta::Step::blob))
            .map(|b| u64::from(b.len))
            .sum::<u64>(),
        "relocated_chunks": plan.relocated.len(),
        "source_read_errors": crate::apply::source_errors_json(&plan.source_errors),
    })
}

pub fn run(args: Args) -> anyhow::Result<()> {
    // A plan changes nothing: the device state is read, never saved.
    let input = &args.input;
    let device = input.device.device()?;
    let opened = crate::device::open(&input.bundle, &input.fetch, &device)?;
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
    let source = input.source_image()?;
    let stage = crate::location::stage_dir(device.state_dir.as_deref());
    let (plan, download) = input.plan(&opened, &source, &stage, device.fetch.max_download)?;
    if args.json {
        println!("{}", plan_json(&plan, &download));
        return Ok(());
    }
    let c = plan.counts;
    println!(
        "read {} from the bundle in {} ({} header + {} blobs)",
        human(plan.total_bytes()),
        crate::ui::count(plan.ranges.len(), "range", "ranges"),
        human(plan.header_bytes),
        human(plan.blob_bytes)
    );
    println!(
        "chunks: {} copy, {} zero, {} patch, {} literal",
        c.copy, c.zero, c.patch, c.literal
    );
    if !plan.fell_back.is_empty() {
        println!(
            "{} fall back (source differs from the expected one): {:?}",
            crate::ui::count(plan.fell_back.len(), "chunk", "chunks"),
            first(&plan.fell_back)
        );
    }
    crate::apply::print_source_errors(&plan.source_errors, 0);
    Ok(())
}

/// The first few entries of a list, for messages.
pub fn first(list: &[usize]) -> &[usize] {
    list.get(..list.len().min(16)).unwrap_or(list)
}
