//! A complete station update agent on the abdelta library, in the shape an integrator's
//! agent takes: report the firmware status after boot, confirm or refuse the booted slot by
//! the station's health check, then look for a release, install it with OCPP status events,
//! and reboot into it. Type `cancel` on stdin to stop a running install (it resumes next time).
//!
//! ```sh
//! cargo run -p abdelta --example agent -- /etc/abdelta/device.toml https://updates.example/stable.abd \
//!     /usr/lib/station/check-boot
//! ```

use std::io::BufRead;
use std::process::Command;

use abdelta::policy::SlotState;
use abdelta::updater::{Cancel, Event, InstallOptions, Outcome, Updater, UpdaterConfig};

/// What a charge point sends its CSMS: an OCPP 2.0.1 FirmwareStatusNotification.
fn notify(status: &str, detail: Option<&str>) {
    println!(r#"[2,"abdelta","FirmwareStatusNotification",{{"status":"{status}"}}]"#);
    if let Some(d) = detail {
        eprintln!("  {d}");
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, config, url, health_check, ..] = args.as_slice() else {
        return Err("usage: agent DEVICE.toml BUNDLE-URL HEALTH-CHECK-PROGRAM".into());
    };
    let updater = Updater::new(UpdaterConfig::load(config.as_ref())?)?;

    // After boot: a pending slot that booted is confirmed only if the station works.
    let status = updater.status()?;
    let booted = status
        .slots
        .iter()
        .find(|s| Some(&s.name) == status.booted.as_ref());
    if booted.is_some_and(|s| s.state == SlotState::Pending) {
        let marked = if Command::new(health_check).status()?.success() {
            updater.confirm()?
        } else {
            let marked = updater.mark_bad()?;
            notify(
                marked.firmware.as_ocpp(),
                Some("health check failed; rebooting"),
            );
            Command::new("systemctl").arg("reboot").status()?;
            return Ok(());
        };
        notify(marked.firmware.as_ocpp(), None);
    } else {
        notify(status.firmware.as_ocpp(), None);
    }

    // Look for a release and install it; a technician or the CSMS may cancel.
    let offer = updater.check(url)?;
    eprintln!(
        "release {} → slot {}: {} bytes to download",
        offer.release(),
        offer.target().name,
        offer.download().to_download
    );
    let cancel = Cancel::default();
    let stop = cancel.clone();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if line.trim() == "cancel" {
                stop.cancel();
            }
        }
    });
    let mut on_event = |event: &Event| {
        if event.is_status() {
            notify(event.status.as_ocpp(), event.detail.as_deref());
        }
    };
    match updater.install(offer, &InstallOptions::default(), &cancel, &mut on_event) {
        Ok(Outcome::UpToDate { release }) => eprintln!("up to date: release {release}"),
        Ok(Outcome::Rebooting { slot, release, .. }) => {
            eprintln!("release {release} in slot {slot}: rebooting into it once");
            Command::new("systemctl").arg("reboot").status()?;
        }
        // The failure's status was the last event; the next run resumes or retries.
        Err(e) => eprintln!("not installed: {e}"),
    }
    Ok(())
}
