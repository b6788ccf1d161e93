//! `abdelta keyset sign|inspect`: the root-signed list of release keys devices trust.

use std::path::PathBuf;

use abdelta::format::{Keyset, ReleaseKey, SignedKeyset};
use abdelta::sign::{sign_keyset, verify_keyset};
use abdelta::{PublicKey, SecretKey};
use anyhow::{Context, bail};

use crate::ui::hex;

/// `abdelta keyset` subcommands.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Sign a keyset with root key(s).
    Sign(SignArgs),
    /// Print a keyset (authenticated when --root-key is given).
    Inspect(InspectArgs),
}

/// Flags of `abdelta keyset sign`.
#[derive(clap::Args)]
pub struct SignArgs {
    /// Root secret key (repeat to sign with the current and the next root during a rotation).
    #[arg(long = "root-key", value_name = "ROOT.key", required = true)]
    root_keys: Vec<PathBuf>,
    /// Keyset version; devices refuse one lower than they accepted.
    #[arg(long)]
    version: u64,
    /// Release key: `NAME.pub` or `NAME.pub:NOT_BEFORE:NOT_AFTER` (Unix seconds; default: from
    /// the keyset's creation to its expiry). Repeat for several.
    #[arg(long = "release-key", value_name = "KEY[:FROM:UNTIL]", required = true)]
    release_keys: Vec<String>,
    /// Expiry, in days after creation.
    #[arg(long, value_name = "DAYS")]
    expires_in_days: u64,
    /// Creation time, Unix seconds (default now).
    #[arg(long, value_name = "SECONDS")]
    created_at: Option<u64>,
    /// Reset devices' highest-seen release to this (recovery from a key that signed a huge
    /// release version).
    #[arg(long, value_name = "RELEASE")]
    version_floor_reset: Option<u64>,
    /// Output keyset file.
    #[arg(short = 'o', long = "out", value_name = "KEYSET")]
    out: PathBuf,
}

/// Flags of `abdelta keyset inspect`.
#[derive(clap::Args)]
pub struct InspectArgs {
    /// The keyset file.
    keyset: PathBuf,
    /// Trusted root public key: when given, the root signature is checked.
    #[arg(long = "root-key", value_name = "ROOT.pub")]
    root_keys: Vec<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Sign(a) => sign(a),
        Command::Inspect(a) => inspect(a),
    }
}

fn read(path: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn sign(args: SignArgs) -> anyhow::Result<()> {
    let roots = args
        .root_keys
        .iter()
        .map(|p| SecretKey::from_pem(&read(p)?).with_context(|| format!("loading {}", p.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let created_at = args.created_at.unwrap_or_else(crate::device::now);
    let expires_at = created_at.saturating_add(args.expires_in_days.saturating_mul(86_400));
    let mut release_keys = Vec::new();
    for spec in &args.release_keys {
        let mut parts = spec.rsplitn(3, ':').collect::<Vec<_>>();
        parts.reverse();
        let (path, window) = match parts.as_slice() {
            [path, from, until] => (*path, Some((from.parse::<u64>()?, until.parse::<u64>()?))),
            _ => (spec.as_str(), None),
        };
        let key = PublicKey::parse(&read(&PathBuf::from(path))?)
            .with_context(|| format!("loading {path}"))?;
        let (not_before, not_after) = window.unwrap_or((created_at, expires_at));
        if not_before > not_after {
            bail!("release key {path}: the window starts after it ends");
        }
        release_keys.push(ReleaseKey {
            public_key: key.to_bytes(),
            not_before,
            not_after,
        });
    }
    release_keys.sort_by_key(|k| k.public_key);
    release_keys.dedup_by_key(|k| k.public_key);
    let keyset = Keyset {
        version: args.version,
        created_at,
        expires_at,
        version_floor_reset: args.version_floor_reset,
        release_keys,
    };
    let refs: Vec<&SecretKey> = roots.iter().collect();
    let file = sign_keyset(&refs, &keyset)?;
    std::fs::write(&args.out, &file).with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "wrote keyset version {} ({} release keys) to {}",
        keyset.version,
        keyset.release_keys.len(),
        args.out.display()
    );
    Ok(())
}

fn inspect(args: InspectArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&args.keyset)
        .with_context(|| format!("reading {}", args.keyset.display()))?;
    let signed = SignedKeyset::decode(&bytes)?;
    let keyset = Keyset::decode(signed.document)?;
    let signature = if args.root_keys.is_empty() {
        "not checked (no --root-key)".to_owned()
    } else {
        let roots = args
            .root_keys
            .iter()
            .map(|p| {
                PublicKey::parse(&read(p)?).with_context(|| format!("loading {}", p.display()))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        verify_keyset(&bytes, &roots).context("keyset signature check failed")?;
        "valid".to_owned()
    };
    let keys: Vec<serde_json::Value> = keyset
        .release_keys
        .iter()
        .map(|k| {
            let id = PublicKey::from_bytes(&k.public_key).map(|p| p.key_id().to_string()).unwrap_or_else(|e| e.to_string());
            serde_json::json!({"key_id": id, "public_key": hex(&k.public_key), "not_before": k.not_before, "not_after": k.not_after})
        })
        .collect();
    let value = serde_json::json!({
        "version": keyset.version,
        "created_at": keyset.created_at,
        "expires_at": keyset.expires_at,
        "version_floor_reset": keyset.version_floor_reset,
        "release_keys": keys,
        "signed_by": signed.records.iter().map(|r| hex(&r.key_id)).collect::<Vec<_>>(),
        "signature": signature,
    });
    if args.json {
        println!("{value}");
    } else {
        println!(
            "keyset {} (created {}, expires {}), signature {signature}",
            keyset.version, keyset.created_at, keyset.expires_at
        );
        if let Some(r) = keyset.version_floor_reset {
            println!("resets devices' highest-seen release to {r}");
        }
        for k in &keys {
            println!(
                "release key {} valid {}..={}",
                k["key_id"], k["not_before"], k["not_after"]
            );
        }
    }
    Ok(())
}
