//! `abdelta inspect`: print a bundle's manifest.

use std::path::PathBuf;

use abdelta::UnverifiedBundle;
use abdelta::format::{Fallback, Limits, Manifest};
use abdelta::storage::FileBundle;
use anyhow::Context;

use crate::ui::{hex, human, load_pubkeys};

/// Flags of `abdelta inspect`.
#[derive(clap::Args)]
pub struct Args {
    /// The bundle.
    bundle: PathBuf,
    /// Trusted public key: when given, the signature is checked and its result printed.
    #[arg(long, value_name = "NAME.pub")]
    pubkey: Vec<PathBuf>,
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
        "target": {"size": m.target.size, "blake3": hex(&m.target.hash)},
        "chunking": {"min": m.chunking.min, "avg": m.chunking.avg, "max": m.chunking.max},
        "payload_bytes": m.payload_len,
        "chunks": m.chunks.len(),
        "recipes": {"copy": copy, "patch": patch, "literal": literal, "zero": zero},
    })
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let file = FileBundle::open(&args.bundle)
        .with_context(|| format!("opening {}", args.bundle.display()))?;
    let limits = Limits::DEFAULT;
    let unverified = UnverifiedBundle::read(&file, &limits)?;
    let signers: Vec<String> = unverified
        .records()
        .iter()
        .map(|r| hex(&r.key_id))
        .collect();
    let bundle_len = file_len(&args.bundle);
    let (manifest, signature) = if args.pubkey.is_empty() {
        (
            unverified.decode_unverified(&limits)?,
            "not checked (no --pubkey)".to_owned(),
        )
    } else {
        let keys = load_pubkeys(&args.pubkey)?;
        let verified = unverified
            .verify(&keys, &limits)
            .context("signature check failed")?;
        (
            verified.manifest().clone(),
            format!("valid, key {}", verified.verified().key_id()),
        )
    };
    let mut value = summary(&manifest);
    if let Some(obj) = value.as_object_mut() {
        obj.insert("signature".into(), signature.clone().into());
        obj.insert("signature_key_ids".into(), signers.clone().into());
        obj.insert("bundle_bytes".into(), bundle_len.into());
    }
    if args.json {
        println!("{value}");
        return Ok(());
    }
    let m = &manifest;
    println!(
        "bundle          {} ({})",
        args.bundle.display(),
        human(bundle_len)
    );
    println!(
        "signature       {signature}; signed by {}",
        signers.join(", ")
    );
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
    println!("created         {} (Unix seconds)", m.created_at);
    println!(
        "expires         {}",
        m.expires_at.map_or("never".to_owned(), |t| t.to_string())
    );
    match &m.source {
        Some(s) => println!("source          {} blake3 {}", human(s.size), hex(&s.hash)),
        None => println!("source          (none: full bundle)"),
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
    println!("payload         {}", human(m.payload_len));
    Ok(())
}

fn file_len(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}
