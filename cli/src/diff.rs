//! `abdelta diff`: generate and sign a bundle.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use abdelta::DiffOptions;
use abdelta::SecretKey;
use abdelta::storage::MappedImage;
use anyhow::Context;

use crate::ui::{Bar, human};

/// Flags of `abdelta diff`.
#[derive(clap::Args)]
pub struct Args {
    /// The image devices run now (omit for a full bundle that needs no source). Repeat for
    /// earlier releases, newest first (at most 7 more): a device still on one of them
    /// downloads patches against its own release, and nothing of the others'.
    #[arg(long, value_name = "OLD")]
    from: Vec<PathBuf>,
    /// The new image.
    #[arg(long, value_name = "NEW")]
    to: PathBuf,
    /// Release signing key (PKCS#8 PEM).
    #[arg(long, value_name = "NAME.key")]
    key: PathBuf,
    /// Release number; devices refuse lower ones.
    #[arg(long)]
    release_version: u64,
    /// Hardware-compatibility id (repeat for several).
    #[arg(long = "compat", value_name = "ID", required = true)]
    compat: Vec<String>,
    /// Release channel.
    #[arg(long, default_value = "")]
    channel: String,
    /// Expiry, in days from now.
    #[arg(long, value_name = "DAYS")]
    expires_in_days: Option<u64>,
    /// Creation time, Unix seconds (default: now; set it for reproducible bundles).
    #[arg(long, value_name = "SECONDS")]
    created_at: Option<u64>,
    /// zstd level of literal blobs (1-22).
    #[arg(long, default_value_t = 19, value_parser = clap::value_parser!(i32).range(1..=22))]
    literal_level: i32,
    /// Average chunk size in KiB (min = avg/4, max = avg×4): larger chunks make a smaller
    /// manifest, smaller ones reuse more of a drifted or different source. Default: 64, or
    /// 256 for a target below 64 MiB (a single file or small partition).
    #[arg(long, value_name = "KIB", value_parser = clap::value_parser!(u32).range(1..=1024))]
    chunk_avg_kib: Option<u32>,
    /// Root-signed keyset file to carry in the bundle (key rotation).
    #[arg(long, value_name = "KEYSET")]
    keyset: Option<PathBuf>,
    /// Output bundle.
    #[arg(short = 'o', long = "out", value_name = "BUNDLE")]
    out: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let pem = std::fs::read_to_string(&args.key)
        .with_context(|| format!("reading {}", args.key.display()))?;
    let key =
        SecretKey::from_pem(&pem).with_context(|| format!("loading {}", args.key.display()))?;
    let open =
        |p: &PathBuf| MappedImage::open(p).with_context(|| format!("opening {}", p.display()));
    let source = match args.from.first() {
        Some(p) => open(p)?,
        None => MappedImage::empty(),
    };
    let earlier = args
        .from
        .iter()
        .skip(1)
        .map(open)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let earlier: Vec<&[u8]> = earlier.iter().map(MappedImage::bytes).collect();
    let target =
        MappedImage::open(&args.to).with_context(|| format!("opening {}", args.to.display()))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let created_at = args.created_at.unwrap_or(now);
    let options = DiffOptions {
        literal_level: args.literal_level,
        release_version: args.release_version,
        hardware_compat: args.compat,
        channel: args.channel,
        created_at,
        expires_at: args
            .expires_in_days
            .map(|d| created_at.saturating_add(d.saturating_mul(86_400))),
        ..DiffOptions::default()
    };
    let keyset = match &args.keyset {
        Some(p) => Some(std::fs::read(p).with_context(|| format!("reading {}", p.display()))?),
        None => None,
    };
    let options = DiffOptions { keyset, ..options };
    let chunking = match args.chunk_avg_kib {
        Some(kib) => abdelta::format::Chunking {
            min: kib * 256,
            avg: kib * 1024,
            max: kib * 4096,
        },
        None => abdelta::chunking_for(target.bytes().len() as u64),
    };
    let options = DiffOptions {
        chunking,
        ..options
    };
    // Write beside the destination and rename, so a crash never leaves a half bundle under
    // the final name.
    let tmp = args.out.with_extension("partial");
    let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut out = BufWriter::new(file);
    let bar = Bar::new(args.json);
    let report = abdelta::diff_bases(
        source.bytes(),
        &earlier,
        target.bytes(),
        &options,
        &key,
        &mut out,
        &|p| bar.update(p),
    )?;
    bar.finish();
    let file = out.into_inner().context("flushing the bundle")?;
    file.sync_all()?;
    std::fs::rename(&tmp, &args.out)
        .with_context(|| format!("renaming to {}", args.out.display()))?;
    let secs = started.elapsed().as_secs_f64();
    if args.json {
        let value = serde_json::json!({
            "bundle": args.out,
            "bundle_bytes": report.bundle_len,
            "manifest_bytes": report.manifest_len,
            "chunks": report.chunks,
            "copy_chunks": report.copy,
            "zero_chunks": report.zero,
            "patch_chunks": report.patch,
            "literal_only_chunks": report.literal_only,
            "patch_bytes": report.patch_bytes,
            "patch_groups": report.groups,
            "earlier_release_chunks": report.alternates,
            "earlier_release_patch_bytes": report.alternate_bytes,
            "literal_bytes": report.literal_bytes,
            "expected_download_bytes": report.expected_download,
            "seconds": secs,
            "peak_rss_bytes": crate::ui::memory("VmHWM"),
        });
        println!("{value}");
    } else {
        println!(
            "wrote {} ({}): {} chunks = {} copy, {} zero, {} patch (in {} groups), {} literal only; a device with the source reads {}; a blank device reads {}; {secs:.1} s",
            args.out.display(),
            human(report.bundle_len),
            report.chunks,
            report.copy,
            report.zero,
            report.patch,
            report.groups,
            report.literal_only,
            human(report.expected_download),
            human(report.bundle_len - report.patch_bytes - report.alternate_bytes),
        );
        if !earlier.is_empty() {
            println!(
                "{} patched against {} too: {}",
                crate::ui::count(report.alternates, "chunk", "chunks"),
                crate::ui::count(earlier.len(), "earlier release", "earlier releases"),
                human(report.alternate_bytes),
            );
        }
    }
    Ok(())
}
