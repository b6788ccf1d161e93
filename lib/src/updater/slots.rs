//! Which slot the station booted, which slot an install writes, and what a reboot says about
//! a pending slot. Pure functions over the device state, the configured slots, the kernel
//! command line and the boot id.

use crate::policy::{DeviceState, SlotState};

use super::config::SlotConfig;

/// The kernel command-line parameter that names the booted slot (RAUC's is `rauc.slot=`).
pub const CMDLINE_KEY: &str = "abdelta.slot=";

/// The slot named by `abdelta.slot=NAME` on a kernel command line; the last one counts, as
/// the kernel's own parameters do. `None` when absent (a rescue or installer system).
pub fn booted_from_cmdline(cmdline: &str) -> Option<&str> {
    cmdline
        .split_whitespace()
        .filter_map(|word| word.strip_prefix(CMDLINE_KEY))
        .next_back()
}

/// A pending slot's fate after the boot the station is now in.
pub(crate) fn reconcile(
    state: &mut DeviceState,
    slots: &[SlotConfig],
    booted: Option<&str>,
    boot_id: &str,
) {
    // Only configured slots are kept: a slot removed from the configuration is forgotten.
    state
        .slots
        .retain(|r| slots.iter().any(|s| s.name == r.name));
    for slot in slots {
        let failures = state.boot_failures;
        let record = state.slot_mut(&slot.name);
        let is_booted = booted == Some(slot.name.as_str());
        let mut failed = None;
        match record.state {
            // Written and switched to in an earlier boot, yet this boot did not start it: the
            // boot failed and the bootloader fell back. The install failed; it may be retried.
            SlotState::Pending if !is_booted && record.boot_id != boot_id => {
                record.state = SlotState::Bad;
                failed = record.release;
            }
            // The slot the station runs on when it first meets abdelta (a factory image): it
            // booted, so it is adopted as good, its release unknown.
            SlotState::Empty if is_booted => {
                record.state = SlotState::Good;
                record.release = None;
            }
            _ => {}
        }
        if let Some(release) = failed {
            state.boot_failures = Some(count_failure(failures, release));
        }
    }
    // "Up to date" is judged against the booted, confirmed slot only.
    state.installed = booted
        .and_then(|b| state.slot(b))
        .filter(|r| r.state == SlotState::Good)
        .and_then(|r| r.release);
}

/// One more failed boot of `release`: counted on from an earlier failure of the same
/// release, from one for another.
pub(crate) fn count_failure(failures: Option<(u64, u64)>, release: u64) -> (u64, u64) {
    match failures {
        Some((r, n)) if r == release => (r, n.saturating_add(1)),
        _ => (release, 1),
    }
}

/// The slot an install writes: never the booted one; of the others, one that holds nothing
/// good first (empty, bad, pending), else the one with the oldest release.
pub(crate) fn choose_target<'c>(
    state: &DeviceState,
    slots: &'c [SlotConfig],
    booted: Option<&str>,
) -> Option<&'c SlotConfig> {
    let candidates = || {
        slots
            .iter()
            .filter(move |s| Some(s.name.as_str()) != booted)
    };
    let good = |s: &SlotConfig| {
        state
            .slot(&s.name)
            .is_some_and(|r| r.state == SlotState::Good)
    };
    candidates().find(|s| !good(s)).or_else(|| {
        candidates().min_by_key(|s| state.slot(&s.name).and_then(|r| r.release).unwrap_or(0))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::SlotRecord;

    fn slots(names: &[&str]) -> Vec<SlotConfig> {
        names
            .iter()
            .map(|n| SlotConfig {
                name: (*n).to_owned(),
                device: format!("/dev/{n}").into(),
            })
            .collect()
    }

    fn record(name: &str, state: SlotState, release: Option<u64>) -> SlotRecord {
        SlotRecord {
            state,
            release,
            ..SlotRecord::empty(name)
        }
    }

    #[test]
    fn the_target_is_a_slot_holding_nothing_good_before_the_oldest_good_one() {
        let config = slots(&["A", "B", "C"]);
        let mut state = DeviceState {
            slots: vec![
                record("A", SlotState::Good, Some(3)),
                record("B", SlotState::Good, Some(2)),
                record("C", SlotState::Empty, None),
            ],
            ..DeviceState::default()
        };
        let target = |state: &DeviceState, booted| {
            choose_target(state, &config, booted).map(|s| s.name.clone())
        };
        assert_eq!(target(&state, Some("A")).as_deref(), Some("C"));
        state.slots[2] = record("C", SlotState::Good, Some(4));
        assert_eq!(
            target(&state, Some("A")).as_deref(),
            Some("B"),
            "the oldest release"
        );
        assert_eq!(target(&state, Some("B")).as_deref(), Some("A"));
    }

    #[test]
    fn reconcile_forgets_unconfigured_slots_and_counts_failures_per_release() {
        let config = slots(&["A", "B"]);
        let mut state = DeviceState {
            slots: vec![
                record("A", SlotState::Good, Some(1)),
                SlotRecord {
                    boot_id: "old".into(),
                    ..record("B", SlotState::Pending, Some(3))
                },
                record("Z", SlotState::Good, Some(9)),
            ],
            boot_failures: Some((2, 5)),
            ..DeviceState::default()
        };
        reconcile(&mut state, &config, Some("A"), "new");
        let names: Vec<&str> = state.slots.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            ["A", "B"],
            "a slot removed from the configuration is forgotten"
        );
        assert_eq!(state.slot("B").map(|r| r.state), Some(SlotState::Bad));
        assert_eq!(
            state.boot_failures,
            Some((3, 1)),
            "another release counts from 1"
        );
        assert_eq!(state.installed, Some(1));
        assert_eq!(count_failure(Some((3, 1)), 3), (3, 2));
    }

    #[test]
    fn the_booted_slot_is_the_last_abdelta_slot_parameter() {
        assert_eq!(booted_from_cmdline("ro quiet abdelta.slot=B\n"), Some("B"));
        assert_eq!(
            booted_from_cmdline("abdelta.slot=A abdelta.slot=B"),
            Some("B")
        );
        assert_eq!(booted_from_cmdline("root=/dev/sda1 rauc.slot=A"), None);
        assert_eq!(booted_from_cmdline("xabdelta.slot=A"), None);
    }
}
