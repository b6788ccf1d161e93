//! `abdelta verify`: check a partition or image against the signed manifest.

use std::path::PathBuf;

use anyhow::Context;

use crate::device::DeviceArgs;
use crate::location::FetchArgs;
use crate::ui::hex;

/// Flags of `abdelta verify`.
#[derive(clap::Args)]
pub struct Args {
    /// The bundle: a path, or an http(s):// URL (only the byte ranges needed are fetched).
    bundle: String,
    #[command(flatten)]
    fetch: FetchArgs,
    /// The partition or image to check.
    #[arg(long, value_name = "NEW")]
    target: PathBuf,
    /// The device's keys (and, with --config or --state-dir, its accepted keyset): the
    /// keyset rules of an install apply (keyset rollback and expiry, key windows); the
    /// release rules (hardware, channel, expiry, rollback) do not, since a slot may hold an
    /// older release.
    #[command(flatten)]
    device: DeviceArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let bundle = crate::device::open_authentic(&args.bundle, &args.fetch, &args.device.device()?)?;
    let m = bundle.manifest();
    abdelta::verify_path(m, &args.target)
        .with_context(|| format!("{} is not the signed image", args.target.display()))?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"target": args.target, "verified": true, "size": m.target.size, "blake3": hex(&m.target.hash)})
        );
    } else {
        println!(
            "{}: OK, release {} ({} bytes, blake3 {})",
            args.target.display(),
            m.release_version,
            m.target.size,
            hex(&m.target.hash)
        );
    }
    Ok(())
}
