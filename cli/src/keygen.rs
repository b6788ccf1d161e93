//! `abdelta keygen -o NAME`: writes NAME.key (mode 0600) and NAME.pub.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use abdelta::SecretKey;
use anyhow::Context;

/// Flags of `abdelta keygen`.
#[derive(clap::Args)]
pub struct Args {
    /// Base name: writes NAME.key and NAME.pub.
    #[arg(short = 'o', long = "out", value_name = "NAME")]
    name: PathBuf,
    /// Label the pair as an offline root key (it signs keysets, never releases).
    #[arg(long)]
    root: bool,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let key = SecretKey::generate()?;
    let key_path = args.name.with_extension("key");
    let pub_path = args.name.with_extension("pub");
    let mut options = OpenOptions::new();
    options.write(true).mode(0o600);
    if args.force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = match options.open(&key_path) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(crate::Usage(format!(
                "{} exists: keygen never overwrites a key unless asked (--force), or choose another name",
                key_path.display()
            ))
            .into());
        }
        other => other.with_context(|| format!("creating {}", key_path.display()))?,
    };
    file.write_all(key.to_pem()?.as_bytes())?;
    file.sync_all()?;
    std::fs::write(&pub_path, key.public().to_pem()?)
        .with_context(|| format!("writing {}", pub_path.display()))?;
    let role = if args.root {
        "root key (keep offline; signs keysets)"
    } else {
        "release key"
    };
    println!(
        "{role} {}: wrote {} and {}",
        key.public().key_id(),
        key_path.display(),
        pub_path.display()
    );
    Ok(())
}
