//! `abdelta`: the command-line shell around the library. Each subcommand parses its flags,
//! builds the library's inputs, makes one library call, and reports. Exit codes:
//! 0 success; 1 a check failed (signature, format, hash, policy: the message names the rule);
//! 2 usage error; 3 I/O or environment error.

mod apply;
mod demo;
mod device;
mod diff;
mod inspect;
mod keygen;
mod keyset;
mod location;
mod plan;
mod ui;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Signed, chunked A/B delta updates for field devices.
#[derive(Parser)]
#[command(name = "abdelta", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a signing key pair: NAME.key (PKCS#8 PEM, mode 0600) and NAME.pub (SPKI PEM).
    Keygen(keygen::Args),
    /// Sign or inspect a keyset: the release keys a root key authorises.
    #[command(subcommand)]
    Keyset(keyset::Command),
    /// Generate a signed bundle that rebuilds NEW, with deltas against OLD.
    Diff(diff::Args),
    /// Print a bundle's manifest (authenticated when --pubkey is given).
    Inspect(inspect::Args),
    /// Show what applying a bundle to a source would read, without writing anything.
    Plan(plan::Args),
    /// Rebuild the new image on a target partition or file, then verify it.
    Apply(apply::Args),
    /// Check a partition or image against a bundle's signed manifest.
    Verify(verify::Args),
    /// Build two sample ext4 releases, diff, apply and verify them, and print a table.
    Demo(demo::Args),
}

/// Exit code for a failed check (the message names the rule).
const EXIT_CHECK_FAILED: u8 = 1;
/// Exit code for I/O and environment errors.
const EXIT_IO: u8 = 3;

fn exit_code(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        if let Some(e) = cause.downcast_ref::<abdelta::Error>() {
            return match e {
                abdelta::Error::Io { .. } => EXIT_IO,
                _ => EXIT_CHECK_FAILED,
            };
        }
        if cause.downcast_ref::<abdelta::sign::SignError>().is_some()
            || cause
                .downcast_ref::<abdelta::format::FormatError>()
                .is_some()
            || cause
                .downcast_ref::<abdelta::policy::PolicyError>()
                .is_some()
        {
            return EXIT_CHECK_FAILED;
        }
    }
    EXIT_IO
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Keygen(a) => keygen::run(a),
        Command::Keyset(c) => keyset::run(c),
        Command::Diff(a) => diff::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Plan(a) => plan::run(a),
        Command::Apply(a) => apply::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Demo(a) => demo::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("abdelta: error: {error:#}");
            ExitCode::from(exit_code(&error))
        }
    }
}
