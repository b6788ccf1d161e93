//! `abdelta`: the command-line shell around the library. Each subcommand parses its flags,
//! builds the library's inputs, makes one library call, and reports. Exit codes:
//! 0 success; 1 a check failed (signature, format, hash, policy: the message names the rule);
//! 2 usage or configuration error; 3 I/O, network or environment error.

mod apply;
#[cfg(feature = "generator")]
mod demo;
mod device;
#[cfg(feature = "generator")]
mod diff;
mod inspect;
mod keygen;
mod keyset;
mod location;
mod plan;
mod station;
mod ui;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit codes, listed in every `--help`.
const EXIT_CODES: &str = "Exit codes: 0 success; 1 a check failed (signature, format, hash, policy: the message names the rule); 2 usage or configuration error; 3 I/O, network or environment error; 130 stopped by Ctrl-C or SIGTERM (what arrived is kept: the same command resumes).";

/// Signed, chunked A/B delta updates for field devices.
#[derive(Parser)]
#[command(
    name = "abdelta",
    version,
    about = "Signed, chunked A/B delta updates for field devices: release tooling (keygen, keyset, diff, inspect), manual updates (plan, apply, verify) and the station's updater (install, check, status, mark-good, mark-bad)",
    long_about = None,
    after_help = EXIT_CODES,
)]
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
    #[cfg(feature = "generator")]
    Diff(diff::Args),
    /// Print a bundle's manifest (authenticated when --pubkey is given).
    Inspect(inspect::Args),
    /// Show what applying a bundle to a source would read, without writing anything.
    Plan(plan::Args),
    /// Rebuild the new image on a target partition or file, then verify it.
    Apply(apply::Args),
    /// Check a partition or image against a bundle's signed manifest.
    Verify(verify::Args),
    /// Install a release into the other slot and switch the next boot to it once.
    Install(station::InstallArgs),
    /// Say what installing a bundle would do and download: the offer.
    Check(station::CheckArgs),
    /// Show the booted slot and what each slot holds.
    Status(station::ConfigArg),
    /// Confirm the booted slot after the station's health check: it becomes good.
    MarkGood(station::ConfigArg),
    /// Mark the booted slot bad: the next boot starts a good slot instead.
    MarkBad(station::ConfigArg),
    /// Build two sample ext4 releases, diff, apply and verify them, and print a table.
    #[cfg(feature = "generator")]
    Demo(demo::Args),
}

/// Exit code for a failed check (the message names the rule).
const EXIT_CHECK_FAILED: u8 = 1;
/// Exit code for I/O and environment errors.
const EXIT_IO: u8 = 3;

/// Exit code for a usage or configuration error.
const EXIT_USAGE: u8 = 2;
/// Exit code after Ctrl-C (SIGINT) or SIGTERM stopped a run cleanly: 128 + SIGINT.
const EXIT_INTERRUPTED: u8 = 130;

/// A usage mistake the flags parser cannot see (no trusted key, the target named as the
/// source): exit code 2.
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// The exit status of one of the pipeline's errors: a read or write that failed (3), else a
/// rule the bytes broke (1); `None` for any other error.
fn pipeline_exit(cause: &(dyn std::error::Error + 'static)) -> Option<u8> {
    use abdelta::{ApplyError, BundleError, DiffError, VerifyError};
    let io = if let Some(e) = cause.downcast_ref::<abdelta::Error>() {
        e.is_io()
    } else if let Some(e) = cause.downcast_ref::<BundleError>() {
        matches!(e, BundleError::Io(_))
    } else if let Some(e) = cause.downcast_ref::<ApplyError>() {
        matches!(e, ApplyError::Io(_))
    } else if let Some(e) = cause.downcast_ref::<VerifyError>() {
        matches!(e, VerifyError::Io(_))
    } else if let Some(e) = cause.downcast_ref::<DiffError>() {
        matches!(e, DiffError::Io(_))
    } else if cause.is::<abdelta::OverBudget>() {
        false
    } else {
        return None;
    };
    Some(if io { EXIT_IO } else { EXIT_CHECK_FAILED })
}

fn exit_code(error: &anyhow::Error) -> u8 {
    use abdelta::updater::UpdateError;
    for cause in error.chain() {
        if cause.downcast_ref::<Usage>().is_some() {
            return EXIT_USAGE;
        }
        if let Some(UpdateError::Cancelled { .. }) = cause.downcast_ref::<UpdateError>() {
            return EXIT_INTERRUPTED;
        }
        if let Some(e) = cause.downcast_ref::<UpdateError>() {
            return match e {
                UpdateError::Bundle(e) if e.is_io() => EXIT_IO,
                UpdateError::Bundle(_)
                | UpdateError::HookRefused { .. }
                | UpdateError::KeepsFailing { .. } => EXIT_CHECK_FAILED,
                UpdateError::Config(_) | UpdateError::NotBooted | UpdateError::UnknownSlot(_) => {
                    EXIT_USAGE
                }
                _ => EXIT_IO,
            };
        }
        if let Some(code) = pipeline_exit(cause) {
            return code;
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
    use clap::CommandFactory;
    let mut command = Cli::command();
    // Every subcommand's help ends with the exit codes too.
    for sub in command.get_subcommands_mut() {
        *sub = sub.clone().after_help(EXIT_CODES);
    }
    ui::set_json(std::env::args().any(|a| a == "--json"));
    let cli = match command.try_get_matches() {
        Ok(matches) => match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
            Ok(cli) => cli,
            Err(e) => e.exit(),
        },
        Err(e) => e.exit(),
    };
    let result = match cli.command {
        Command::Keygen(a) => keygen::run(a),
        Command::Keyset(c) => keyset::run(c),
        #[cfg(feature = "generator")]
        Command::Diff(a) => diff::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Plan(a) => plan::run(a),
        Command::Apply(a) => apply::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Install(a) => station::install(a),
        Command::Check(a) => station::check(a),
        Command::Status(a) => station::status(a),
        Command::MarkGood(a) => station::mark_good(a),
        Command::MarkBad(a) => station::mark_bad(a),
        #[cfg(feature = "generator")]
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
