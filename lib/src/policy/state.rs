//! The device's persistent state: the release it runs, the highest release seen, the
//! trusted-time floor, the newest accepted keyset, and what each A/B slot holds. Written
//! atomically (temp file, fsync, rename, fsync of the directory) with a checksum; a damaged
//! file fails closed. A version-1 file (before slots) is read and migrated, never reset.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::format::Cursor;
use crate::format::cursor::{put_bytes, put_varint};

use super::PolicyError;

const STATE_MAGIC_V1: [u8; 8] = *b"ABDSTAT1";
const STATE_MAGIC: [u8; 8] = *b"ABDSTAT2";
const STATE_FILE: &str = "device-state";
/// Most slots a device state records.
pub const MAX_SLOTS: usize = 8;
/// Longest slot name, in bytes.
pub const MAX_SLOT_NAME: usize = 32;
/// Longest boot id kept with a pending slot (Linux's is a 36-byte UUID).
pub const MAX_BOOT_ID: usize = 64;
/// Bytes of the longest varint (a `u64` takes at most ten).
const MAX_VARINT: u64 = 10;

/// Bytes of the varint of `v`.
const fn varint_len(v: u64) -> u64 {
    (64 - (v | 1).leading_zeros() as u64).div_ceil(7)
}

/// Length of the largest valid state file, exactly: magic, `installed` (flag and varint),
/// three varints, the keyset file with its length, the slot count and records (name, state,
/// release flag and varint, boot id), the boot failures (flag and two varints), and the
/// checksum.
const MAX_STATE_LEN: u64 = 8
    + (1 + MAX_VARINT)
    + 3 * MAX_VARINT
    + varint_len(crate::format::MAX_KEYSET_FILE_LEN as u64)
    + crate::format::MAX_KEYSET_FILE_LEN as u64
    + 1
    + MAX_SLOTS as u64 * (1 + MAX_SLOT_NAME as u64 + 1 + (1 + MAX_VARINT) + 1 + MAX_BOOT_ID as u64)
    + (1 + 2 * MAX_VARINT)
    + 32;

/// What a slot holds, as far as the device knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    /// Nothing known to be bootable: never written, or being written.
    Empty,
    /// Written and verified, the next boot switched to it once; not yet confirmed.
    Pending,
    /// Booted and confirmed (or the slot the device was running when it first met abdelta).
    Good,
    /// Did not come up confirmed, was marked bad, or a post-install hook refused it.
    Bad,
}

impl SlotState {
    /// The lower-case name used in status output.
    pub fn name(self) -> &'static str {
        match self {
            SlotState::Empty => "empty",
            SlotState::Pending => "pending",
            SlotState::Good => "good",
            SlotState::Bad => "bad",
        }
    }

    fn code(self) -> u8 {
        match self {
            SlotState::Empty => 0,
            SlotState::Pending => 1,
            SlotState::Good => 2,
            SlotState::Bad => 3,
        }
    }

    fn from_code(code: u8) -> Option<SlotState> {
        Some(match code {
            0 => SlotState::Empty,
            1 => SlotState::Pending,
            2 => SlotState::Good,
            3 => SlotState::Bad,
            _ => return None,
        })
    }
}

/// One slot's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRecord {
    /// The slot's name from the device configuration (`A`, `B`).
    pub name: String,
    /// The release it holds, when known.
    pub release: Option<u64>,
    /// Its state.
    pub state: SlotState,
    /// For a pending slot: the boot (Linux `boot_id`) in which it was written. A later boot
    /// that did not start it means the switch failed and the bootloader fell back.
    pub boot_id: String,
}

impl SlotRecord {
    /// An empty record for `name`.
    pub fn empty(name: &str) -> SlotRecord {
        SlotRecord {
            name: name.to_owned(),
            release: None,
            state: SlotState::Empty,
            boot_id: String::new(),
        }
    }
}

/// What a device remembers between updates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceState {
    /// The release the device runs: held by the booted slot, which booted and was confirmed
    /// (none before the first confirmed update). A bundle of this release is "up to date".
    pub installed: Option<u64>,
    /// Highest release version whose manifest verified and passed policy: lower ones are
    /// rollbacks even if never installed (a power cut between verify and install changes
    /// nothing).
    pub highest_seen: u64,
    /// Trusted-time floor, Unix seconds: never lowered, raised by the clock and by the signed
    /// creation times of accepted manifests and keysets.
    pub time_floor: u64,
    /// Version of the newest accepted keyset (0: none).
    pub keyset_version: u64,
    /// That keyset's signed file.
    pub keyset_file: Vec<u8>,
    /// What each slot holds (empty without A/B slots, as for a manual `apply`).
    pub slots: Vec<SlotRecord>,
    /// The last release whose slot did not come up confirmed, and how many times in a row it
    /// failed: a release that keeps failing is not installed again in a loop.
    pub boot_failures: Option<(u64, u64)>,
}

impl DeviceState {
    /// The state file inside `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(STATE_FILE)
    }

    /// Loads the state from `dir`; a missing file is a fresh device.
    pub fn load(dir: &Path) -> Result<DeviceState, PolicyError> {
        let path = DeviceState::path(dir);
        // Bounded: one byte more than the largest valid file is read, so that a longer file
        // (a valid one with bytes after it) fails its checksum instead of being read whole.
        let mut bytes = Vec::new();
        let read =
            File::open(&path).and_then(|f| f.take(MAX_STATE_LEN + 1).read_to_end(&mut bytes));
        match read {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(DeviceState::default()),
            Err(e) => {
                return Err(PolicyError::StateIo(format!(
                    "reading {}: {e}",
                    path.display()
                )));
            }
        };
        DeviceState::decode(&bytes)
            .ok_or_else(|| PolicyError::StateCorrupt(path.display().to_string()))
    }

    /// Decodes a state file's bytes; `None` for anything damaged or non-canonical. A version-1
    /// file is migrated: its rollback floor, time floor and keyset are kept; its `installed`
    /// (written before any reboot, so not proof that the release runs) is dropped, which
    /// never lowers the rollback floor since `highest_seen` ≥ `installed`.
    pub(crate) fn decode(bytes: &[u8]) -> Option<DeviceState> {
        let mut c = Cursor::new(crate::record::unseal::<32>(bytes)?);
        let magic = c.array::<8>("magic").ok()?;
        let v1 = match magic {
            STATE_MAGIC => false,
            STATE_MAGIC_V1 => true,
            _ => return None,
        };
        let installed = optional_varint(&mut c, "installed")?;
        let mut state = DeviceState {
            installed,
            highest_seen: c.varint("highest seen").ok()?,
            time_floor: c.varint("time floor").ok()?,
            keyset_version: c.varint("keyset version").ok()?,
            keyset_file: c
                .bytes("keyset", u64::from(crate::format::MAX_KEYSET_FILE_LEN))
                .ok()?
                .to_vec(),
            slots: Vec::new(),
            boot_failures: None,
        };
        if v1 {
            c.finish("state").ok()?;
            state.highest_seen = state.highest_seen.max(state.installed.unwrap_or(0));
            state.installed = None;
            return Some(state);
        }
        let count = c.u8("slot count").ok()?;
        if usize::from(count) > MAX_SLOTS {
            return None;
        }
        for _ in 0..count {
            let name = c.bytes("slot name", MAX_SLOT_NAME as u64).ok()?;
            let name = std::str::from_utf8(name).ok()?.to_owned();
            let slot_state = SlotState::from_code(c.u8("slot state").ok()?)?;
            let release = optional_varint(&mut c, "slot release")?;
            let boot_id = c.bytes("boot id", MAX_BOOT_ID as u64).ok()?;
            let boot_id = std::str::from_utf8(boot_id).ok()?.to_owned();
            if name.is_empty() || state.slots.iter().any(|s| s.name == name) {
                return None;
            }
            state.slots.push(SlotRecord {
                name,
                release,
                state: slot_state,
                boot_id,
            });
        }
        state.boot_failures = match c.u8("boot failures flag").ok()? {
            0 => None,
            1 => Some((c.varint("failed release").ok()?, c.varint("failures").ok()?)),
            _ => return None,
        };
        c.finish("state").ok()?;
        Some(state)
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = STATE_MAGIC.to_vec();
        put_optional_varint(&mut out, self.installed);
        put_varint(&mut out, self.highest_seen);
        put_varint(&mut out, self.time_floor);
        put_varint(&mut out, self.keyset_version);
        put_bytes(&mut out, &self.keyset_file);
        // Callers keep at most MAX_SLOTS records with bounded names (the updater's
        // configuration check); the clamp keeps the file decodable whatever happens.
        let slots = self
            .slots
            .get(..self.slots.len().min(MAX_SLOTS))
            .unwrap_or(&[]);
        out.push(u8::try_from(slots.len()).unwrap_or(0));
        for slot in slots {
            put_bytes(&mut out, clamp(slot.name.as_bytes(), MAX_SLOT_NAME));
            out.push(slot.state.code());
            put_optional_varint(&mut out, slot.release);
            put_bytes(&mut out, clamp(slot.boot_id.as_bytes(), MAX_BOOT_ID));
        }
        match self.boot_failures {
            None => out.push(0),
            Some((release, count)) => {
                out.push(1);
                put_varint(&mut out, release);
                put_varint(&mut out, count);
            }
        }
        crate::record::seal::<32>(&mut out);
        out
    }

    /// The record of slot `name`, if any.
    pub fn slot(&self, name: &str) -> Option<&SlotRecord> {
        self.slots.iter().find(|s| s.name == name)
    }

    /// The record of slot `name`, created empty if missing.
    pub fn slot_mut(&mut self, name: &str) -> &mut SlotRecord {
        let at = match self.slots.iter().position(|s| s.name == name) {
            Some(at) => at,
            None => {
                self.slots.push(SlotRecord::empty(name));
                self.slots.len() - 1
            }
        };
        // `at` indexes an element that exists: found above, or just pushed.
        #[allow(clippy::indexing_slicing)]
        &mut self.slots[at]
    }

    /// Saves the state into `dir` (created if missing) so that a crash leaves either the old
    /// or the new state, never a mix.
    pub fn save(&self, dir: &Path) -> Result<(), PolicyError> {
        let io = |what: &str, e: &dyn std::fmt::Display| {
            PolicyError::StateIo(format!("{what} in {}: {e}", dir.display()))
        };
        crate::record::create_dir(dir).map_err(|e| io("creating the state directory", &e))?;
        crate::record::write_atomic(&DeviceState::path(dir), &self.encode()).map_err(|e| {
            let what = format!("{} the state file", e.step);
            io(&what, &e.source)
        })
    }
}

fn optional_varint(c: &mut Cursor<'_>, field: &'static str) -> Option<Option<u64>> {
    match c.u8(field).ok()? {
        0 => Some(None),
        1 => Some(Some(c.varint(field).ok()?)),
        _ => None,
    }
}

fn put_optional_varint(out: &mut Vec<u8>, value: Option<u64>) {
    match value {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            put_varint(out, v);
        }
    }
}

fn clamp(bytes: &[u8], max: usize) -> &[u8] {
    bytes.get(..bytes.len().min(max)).unwrap_or(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn varint_len_is_the_encoded_length() {
        for v in [0, 1, 2, 127, 128, 16_383, 16_384, u64::MAX >> 1, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(varint_len(v), out.len() as u64, "{v}");
        }
    }

    #[test]
    fn state_round_trips_and_damage_fails_closed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        let state = DeviceState {
            installed: Some(4),
            highest_seen: 5,
            time_floor: 1_800_000_000,
            keyset_version: 2,
            keyset_file: vec![1, 2, 3],
            slots: vec![
                SlotRecord {
                    name: "A".into(),
                    release: Some(4),
                    state: SlotState::Good,
                    boot_id: String::new(),
                },
                SlotRecord {
                    name: "B".into(),
                    release: Some(5),
                    state: SlotState::Pending,
                    boot_id: "0c4f".into(),
                },
            ],
            boot_failures: Some((3, 2)),
        };
        state.save(&dir).unwrap();
        assert_eq!(DeviceState::load(&dir).unwrap(), state);
        let mut bytes = fs::read(DeviceState::path(&dir)).unwrap();
        bytes[10] ^= 1;
        fs::write(DeviceState::path(&dir), &bytes).unwrap();
        assert!(matches!(
            DeviceState::load(&dir),
            Err(PolicyError::StateCorrupt(_))
        ));
        fs::write(DeviceState::path(&dir), b"").unwrap();
        assert!(matches!(
            DeviceState::load(&dir),
            Err(PolicyError::StateCorrupt(_))
        ));
    }

    /// A version-1 file (written before slots existed) is read, not reset: the rollback and
    /// time floors and the keyset survive, and `installed` (which version 1 set before any
    /// reboot) is dropped into the rollback floor.
    #[test]
    fn version_1_state_is_migrated_not_reset() {
        let mut v1 = STATE_MAGIC_V1.to_vec();
        v1.extend_from_slice(&[1, 7]); // installed 7
        put_varint(&mut v1, 6); // highest seen (older files could hold less than installed)
        put_varint(&mut v1, 1_800_000_000);
        put_varint(&mut v1, 3);
        put_bytes(&mut v1, &[9, 9]);
        crate::record::seal::<32>(&mut v1);
        let state = DeviceState::decode(&v1).unwrap();
        assert_eq!(
            state,
            DeviceState {
                installed: None,
                highest_seen: 7,
                time_floor: 1_800_000_000,
                keyset_version: 3,
                keyset_file: vec![9, 9],
                slots: Vec::new(),
                boot_failures: None,
            }
        );
        // Saved again as version 2.
        assert_eq!(DeviceState::decode(&state.encode()).unwrap(), state);
        assert_eq!(state.encode().get(..8), Some(&STATE_MAGIC[..]));
    }

    /// The largest state the rules allow: every varint ten bytes, every name and boot id at
    /// its limit, the largest keyset file.
    fn largest() -> DeviceState {
        let slot = |i: usize| SlotRecord {
            name: format!("{i}").repeat(MAX_SLOT_NAME),
            release: Some(u64::MAX),
            state: SlotState::Pending,
            boot_id: "b".repeat(MAX_BOOT_ID),
        };
        DeviceState {
            installed: Some(u64::MAX),
            highest_seen: u64::MAX,
            time_floor: u64::MAX,
            keyset_version: u64::MAX,
            keyset_file: vec![7; crate::format::MAX_KEYSET_FILE_LEN as usize],
            slots: (0..MAX_SLOTS).map(slot).collect(),
            boot_failures: Some((u64::MAX, u64::MAX)),
        }
    }

    #[test]
    fn the_largest_valid_state_is_exactly_the_bound_and_loads() {
        assert_eq!(
            [0, 127, 128, 1 << 14, u64::MAX].map(varint_len),
            [1, 1, 2, 3, 10]
        );
        let dir = tempfile::tempdir().unwrap();
        let state = largest();
        assert_eq!(state.encode().len() as u64, MAX_STATE_LEN);
        state.save(dir.path()).unwrap();
        assert_eq!(DeviceState::load(dir.path()).unwrap(), state);
        // A valid file with one byte after it is damaged, not read as the state before it.
        let path = DeviceState::path(dir.path());
        let mut longer = fs::read(&path).unwrap();
        longer.push(0);
        fs::write(&path, &longer).unwrap();
        assert!(matches!(
            DeviceState::load(dir.path()),
            Err(PolicyError::StateCorrupt(_))
        ));
    }

    /// A state whose body is `body` (no checksum yet) after the v2 magic.
    fn sealed(body: &[u8]) -> Vec<u8> {
        let mut out = STATE_MAGIC.to_vec();
        out.extend_from_slice(body);
        crate::record::seal::<32>(&mut out);
        out
    }

    #[test]
    fn slot_records_past_the_limit_unnamed_or_named_twice_are_refused() {
        // installed none, three zero varints, an empty keyset file; then the slots.
        let head = [0u8, 0, 0, 0, 0];
        let record = |name: &[u8]| {
            let mut r = Vec::new();
            put_bytes(&mut r, name);
            r.extend_from_slice(&[SlotState::Good.code(), 0, 0]); // no release, no boot id
            r
        };
        let state_of = |names: &[&[u8]]| {
            let mut body = head.to_vec();
            body.push(u8::try_from(names.len()).unwrap());
            for name in names {
                body.extend(record(name));
            }
            body.push(0); // no boot failures
            DeviceState::decode(&sealed(&body))
        };
        let names: Vec<Vec<u8>> = (0..=MAX_SLOTS).map(|i| vec![b'a' + i as u8]).collect();
        let names: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
        assert_eq!(
            state_of(&names[..MAX_SLOTS]).unwrap().slots.len(),
            MAX_SLOTS
        );
        assert_eq!(state_of(&names), None, "one slot past MAX_SLOTS");
        assert_eq!(state_of(&[b"A", b""]), None, "an unnamed slot");
        assert_eq!(state_of(&[b"A", b"B", b"A"]), None, "a slot named twice");
        assert_eq!(state_of(&[b"A", b"B"]).unwrap().slots.len(), 2);
    }

    #[test]
    fn an_unreadable_state_file_is_an_error_not_a_fresh_device() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            DeviceState::load(dir.path()).unwrap(),
            DeviceState::default()
        );
        // A directory where the file should be: it opens, and reading it fails (EISDIR).
        fs::create_dir(DeviceState::path(dir.path())).unwrap();
        let e = DeviceState::load(dir.path()).unwrap_err();
        assert!(matches!(e, PolicyError::StateIo(_)), "{e:?}");
    }

    #[test]
    fn slot_states_print_their_names() {
        let names = [
            SlotState::Empty,
            SlotState::Pending,
            SlotState::Good,
            SlotState::Bad,
        ]
        .map(SlotState::name);
        assert_eq!(names, ["empty", "pending", "good", "bad"]);
    }
}
