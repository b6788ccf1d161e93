//! The station's commands: `install`, `check`, `status`, `mark-good`, `mark-bad`. Each reads
//! the device configuration, makes one call to the library's [`Updater`] and prints what it
//! says. Source and target slots come from the configuration and the kernel command line,
//! never from flags.

use std::path::PathBuf;

use abdelta::updater::{
    Action, Event, InstallOptions, Marked, Offer, Outcome, Status, Updater, UpdaterConfig,
};

use crate::plan::plan_json;
use crate::ui::{Bar, human};

/// The device configuration every station command takes.
#[derive(clap::Args)]
pub struct ConfigArg {
    /// Device configuration (device.toml: keys and policy, state_dir, [slots.NAME] device,
    /// [boot] backend/grubenv/cmdline, [hooks], [fetch]; see dist/device.toml).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Print JSON (install: status and progress events on stderr, one per line).
    #[arg(long)]
    json: bool,
}

impl ConfigArg {
    fn updater(&self) -> anyhow::Result<Updater> {
        let mut config = UpdaterConfig::load(&self.config)?;
        config.fetch.http.on_retry = Some(crate::ui::retry_hook());
        Ok(Updater::new(config)?)
    }
}

/// Flags of `abdelta install`.
#[derive(clap::Args)]
pub struct InstallArgs {
    /// The bundle: a path (a USB key) or an http(s):// URL.
    bundle: String,
    #[command(flatten)]
    config: ConfigArg,
    /// Refuse, before any blob is fetched, an install that would download more than this
    /// many bytes (overrides fetch.max_download).
    #[arg(long, value_name = "BYTES")]
    max_download: Option<u64>,
}

/// Flags of `abdelta check`.
#[derive(clap::Args)]
pub struct CheckArgs {
    /// The bundle: a path or an http(s):// URL.
    bundle: String,
    #[command(flatten)]
    config: ConfigArg,
}

fn action_name(action: Action) -> &'static str {
    match action {
        Action::UpToDate => "up_to_date",
        Action::Install => "install",
        Action::Switch => "switch",
    }
}

fn offer_json(offer: &Offer, booted: Option<&str>) -> serde_json::Value {
    let d = offer.download();
    serde_json::json!({
        "release": offer.release(),
        "action": action_name(offer.action()),
        "booted": booted,
        "target": offer.target().name,
        "target_device": offer.target().device,
        "wire_bytes": d.header_fetched + d.to_download,
        "header_bytes_fetched": d.header_fetched,
        "download_bytes": d.to_download,
        "planned_bytes": d.planned_bytes,
        "staged_bytes": d.staged,
        "merged_ranges": d.ranges.len(),
        "plan": offer.plan().map(|p| plan_json(p, d)),
    })
}

pub fn check(args: CheckArgs) -> anyhow::Result<()> {
    let updater = args.config.updater()?;
    let offer = updater.check(&args.bundle)?;
    if args.config.json {
        println!("{}", offer_json(&offer, updater.booted()));
        return Ok(());
    }
    let d = offer.download();
    match offer.action() {
        Action::UpToDate => println!(
            "up to date: the booted slot runs release {}",
            offer.release()
        ),
        Action::Switch => println!(
            "release {}: slot {} is written and verified; install switches the boot to it",
            offer.release(),
            offer.target().name
        ),
        Action::Install => println!(
            "release {} installs into slot {}: downloads {} ({} already staged)",
            offer.release(),
            offer.target().name,
            human(d.header_fetched + d.to_download),
            human(d.staged)
        ),
    }
    Ok(())
}

fn event_json(event: &Event) -> serde_json::Value {
    match event.progress {
        Some(p) => {
            serde_json::json!({"event": "progress", "status": event.status.as_ocpp(), "phase": p.phase, "done": p.done, "total": p.total})
        }
        None => {
            serde_json::json!({"event": "status", "status": event.status.as_ocpp(), "detail": event.detail})
        }
    }
}

pub fn install(args: InstallArgs) -> anyhow::Result<()> {
    let json = args.config.json;
    let updater = args.config.updater()?;
    let offer = updater.check(&args.bundle)?;
    let cancel = crate::ui::interrupt();
    let bar = Bar::new(false);
    let mut last_progress = std::time::Instant::now();
    let mut on_event = |event: &Event| {
        if json {
            // Progress at most five times a second; every status change.
            if event.is_status() || last_progress.elapsed().as_millis() >= 200 {
                last_progress = std::time::Instant::now();
                eprintln!("{}", event_json(event));
            }
            return;
        }
        match event.progress {
            Some(p) => bar.update(p),
            None => {
                bar.finish();
                eprintln!("{}", event.status.as_ocpp());
            }
        }
    };
    let options = InstallOptions {
        max_download: args.max_download,
    };
    let outcome = updater.install(offer, &options, &cancel, &mut on_event);
    bar.finish();
    match outcome? {
        Outcome::UpToDate { release } => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"up_to_date": true, "release": release})
                );
            } else {
                println!("up to date: the booted slot runs release {release}");
            }
        }
        Outcome::Rebooting {
            slot,
            release,
            report,
        } => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "status": "InstallRebooting",
                        "slot": slot,
                        "release": release,
                        "bytes_written": report.apply.as_ref().map(|a| a.bytes_written),
                        "bundle_bytes_read": report.apply.as_ref().map(|a| a.bundle_bytes_read),
                        "wire": report.wire.map(|w| serde_json::json!({"requests": w.requests, "body_bytes": w.body_bytes, "retries": w.retries})),
                        "resumed_bytes": report.download.staged,
                        "refetched_bytes": report.refetched,
                        "source_read_errors": report.apply.as_ref().map(|a| crate::apply::source_errors_json(&a.source_errors)),
                    })
                );
            } else {
                if let Some(apply) = &report.apply {
                    crate::apply::print_source_errors(&apply.source_errors, report.refetched);
                }
                println!(
                    "release {release} written to slot {slot} and verified; the next boot starts it once: reboot, then confirm with `abdelta mark-good`"
                );
            }
        }
    }
    Ok(())
}

fn status_json(status: &Status) -> serde_json::Value {
    serde_json::json!({
        "booted": status.booted,
        "installed": status.installed,
        "firmware_status": status.firmware.as_ocpp(),
        // What the bootloader may start next, first choice first (null: unreadable).
        "bootable": status.bootable,
        "slots": status.slots.iter().map(|s| serde_json::json!({
            "name": s.name,
            "device": s.device,
            "release": s.release,
            "state": s.state.name(),
        })).collect::<Vec<_>>(),
    })
}

pub fn status(args: ConfigArg) -> anyhow::Result<()> {
    let status = args.updater()?.status()?;
    if args.json {
        println!("{}", status_json(&status));
        return Ok(());
    }
    println!(
        "booted: {}; status: {}",
        status.booted.as_deref().unwrap_or("(none)"),
        status.firmware.as_ocpp()
    );
    for s in &status.slots {
        println!(
            "  slot {:<4} {:<8} release {:<6} {}",
            s.name,
            s.state.name(),
            s.release.map_or("-".to_owned(), |r| r.to_string()),
            s.device.display()
        );
    }
    Ok(())
}

fn print_marked(marked: &Marked, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::json!({"slot": marked.slot, "release": marked.release, "status": marked.firmware.as_ocpp(), "fallback": marked.fallback})
        );
    } else {
        println!(
            "slot {} ({}): {}",
            marked.slot,
            marked
                .release
                .map_or("release unknown".to_owned(), |r| format!("release {r}")),
            marked.firmware.as_ocpp()
        );
    }
}

pub fn mark_good(args: ConfigArg) -> anyhow::Result<()> {
    print_marked(&args.updater()?.confirm()?, args.json);
    Ok(())
}

pub fn mark_bad(args: ConfigArg) -> anyhow::Result<()> {
    let marked = args.updater()?.mark_bad()?;
    print_marked(&marked, args.json);
    if !args.json {
        match &marked.fallback {
            Some(f) => println!("the next boot starts slot {f}: reboot now"),
            None => println!("no good slot to fall back to"),
        }
    }
    Ok(())
}
