//! `abdelta inspect`: print a bundle's manifest.

use abdelta::UnverifiedBundle;
use abdelta::format::{Fallback, Limits, Manifest};

use abdelta::policy::{Decision, DeviceState, authorize};

use crate::device::DeviceArgs;
use crate::location::FetchArgs;
use crate::ui::{hex, human};

/// Flags of `abdelta inspect`.
#[derive(clap::Args)]
pub struct Args {
    /// The bundle: a path, or an http(s):// URL (only the byte ranges needed are fetched).
    bundle: String,
    #[command(flatten)]
    fetch: FetchArgs,
    /// With keys (and optionally the device's policy), the signature and policy are checked
    /// and the verdict printed; nothing is saved.
    #[command(flatten)]
    device: DeviceArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn summary(m: &Manifest) -> serde_json::Value {
    let (mut copy, mut patch, mut zero, mut literal) = (0, 0, 0, 0);
    for c in &m.chunks {
        copy += usize::from(c.copy.is_some());
        patch += usize::from(c.patch.is_some());
        match c.fallback {
            Fallback::Zero => zero += 1,
            Fallback::Literal { .. } => literal += 1,
        }
    }
    serde_json::json!({
        "format_version": abdelta::format::FORMAT_VERSION,
        "key_id": hex(&m.key_id),
        "release_version": m.release_version,
        "created_at": m.created_at,
        "expires_at": m.expires_at,
        "hardware_compat": m.hardware_compat,
        "channel": m.channel,
        "source": m.source.map(|s| serde_json::json!({"size": s.size, "blake3": hex(&s.hash)})),
        "earlier_releases": m.bases.iter().map(|b| serde_json::json!({"size": b.size, "blake3": hex(&b.hash)})).collect::<Vec<_>>(),
        "chunks_with_earlier_release_patches": m.chunks.iter().filter(|c| !c.alternates.is_empty()).count(),
        "target": {"size": m.target.size, "blake3": hex(&m.target.hash)},
        "chunking": {"min": m.chunking.min, "avg": m.chunking.avg, "max": m.chunking.max},
        "payload_bytes": m.payload_len,
        "chunks": m.chunks.len(),
        "recipes": {"copy": copy, "patch": patch, "literal": literal, "zero": zero},
        "patch_groups": m.groups().len(),
    })
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let fetch = args
        .fetch
        .config(&abdelta::updater::FetchConfig::default())?;
    let file = crate::location::open(&args.bundle, &fetch, &crate::location::stage_dir(None))?;
    let limits = Limits::DEFAULT;
    let unverified = UnverifiedBundle::read(file.source(), &limits)?;
    let signers: Vec<String> = unverified
        .records()
        .iter()
        .map(|r| hex(&r.key_id))
        .collect();
    let bundle_len = file.source().len();
    // The check that failed, when one was asked for: the exit status says so after the report.
    let mut failed: Option<abdelta::BundleError> = None;
    let (manifest, signature, policy) = if !args.device.is_configured() {
        let m = unverified.decode_unverified(&limits)?;
        (
            m,
            "not checked (no --pubkey or --root-key)".to_owned(),
            "not checked".to_owned(),
        )
    } else {
        let device = args.device.device()?;
        let mut state = match &device.state_dir {
            Some(dir) => DeviceState::load(dir)?,
            None => DeviceState::default(),
        };
        let manifest = unverified.decode_unverified(&limits).ok();
        match authorize(
            unverified,
            &device.policy,
            &mut state,
            crate::device::now(),
            &limits,
        ) {
            Ok(a) => {
                let verdict = match a.decision {
                    Decision::Install => "passes: would install",
                    Decision::UpToDate => "passes: up to date, nothing to install",
                };
                let signer = format!("valid, key {}", a.bundle.verified().key_id());
                (a.bundle.manifest().clone(), signer, verdict.to_owned())
            }
            Err(e) => {
                let Some(m) = manifest else {
                    return Err(e.into());
                };
                let report = if matches!(e, abdelta::BundleError::Policy(_)) {
                    (
                        m,
                        "valid".to_owned(),
                        format!("FAILS: {}", abdelta::report(&e)),
                    )
                } else {
                    (
                        m,
                        format!("FAILS: {}", abdelta::report(&e)),
                        "not checked".to_owned(),
                    )
                };
                failed = Some(e);
                report
            }
        }
    };
    let mut value = summary(&manifest);
    if let Some(obj) = value.as_object_mut() {
        obj.insert("signature".into(), signature.clone().into());
        obj.insert("policy".into(), policy.clone().into());
        obj.insert("signature_key_ids".into(), signers.clone().into());
        obj.insert("bundle_bytes".into(), bundle_len.into());
    }
    let outcome = match failed {
        Some(e) => {
            Err(anyhow::Error::new(e).context("the bundle fails a check inspect was asked to make"))
        }
        None => Ok(()),
    };
    if args.json {
        println!("{value}");
        return outcome;
    }
    let m = &manifest;
    println!("bundle          {} ({})", args.bundle, human(bundle_len));
    println!(
        "signature       {signature}; signed by {}",
        signers.join(", ")
    );
    println!("policy          {policy}");
    println!("release         {}", m.release_version);
    println!("compatible with {}", m.hardware_compat.join(", "));
    println!(
        "channel         {}",
        if m.channel.is_empty() {
            "(none)"
        } else {
            &m.channel
        }
    );
    println!("created         {}", date(m.created_at));
    println!(
        "expires         {}",
        m.expires_at.map_or("never".to_owned(), date)
    );
    match &m.source {
        Some(s) => println!("source          {} blake3 {}", human(s.size), hex(&s.hash)),
        None => println!("source          (none: full bundle)"),
    }
    for (k, b) in m.bases.iter().enumerate() {
        println!(
            "earlier {}       {} blake3 {} (patched for {} chunks)",
            k + 1,
            human(b.size),
            hex(&b.hash),
            m.chunks
                .iter()
                .filter(|c| c.alternates.iter().any(|a| usize::from(a.base) == k + 1))
                .count()
        );
    }
    println!(
        "target          {} blake3 {}",
        human(m.target.size),
        hex(&m.target.hash)
    );
    println!(
        "chunks          {} ({}/{}/{} min/avg/max)",
        m.chunks.len(),
        human(m.chunking.min.into()),
        human(m.chunking.avg.into()),
        human(m.chunking.max.into())
    );
    println!("recipes         {}", value["recipes"]);
    println!("patch groups    {}", value["patch_groups"]);
    println!("payload         {}", human(m.payload_len));
    outcome
}

/// A signed time as a UTC date, with its Unix seconds.
fn date(seconds: u64) -> String {
    let at = std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(seconds));
    match at {
        Some(t) => format!("{} ({seconds})", humantime::format_rfc3339_seconds(t)),
        None => format!("{seconds} (Unix seconds)"),
    }
}
