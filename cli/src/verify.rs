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
    /// Trusted release public key (repeat for several).
    #[arg(long, value_name = "NAME.pub")]
    pubkey: Vec<PathBuf>,
    /// Trusted root public key: release keys come from the bundle's keyset.
    #[arg(long, value_name = "ROOT.pub")]
    root_key: Vec<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    // Authenticity only: any trusted key, no device policy (a slot holding an older release
    // is still that release).
    let keys_only = DeviceArgs::keys(args.pubkey, args.root_key);
    let bundle = crate::device::open_authentic(&args.bundle, &args.fetch, &keys_only.device()?)?;
    let m = bundle.manifest();
    abdelta::verify::verify_path(m, &args.target)
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
