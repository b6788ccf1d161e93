//! The device's persistent trust state: installed and highest-seen release, the trusted-time
//! floor, and the newest accepted keyset. Written atomically (temp file, fsync, rename, fsync
//! of the directory) with a checksum; a damaged file fails closed.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::format::Cursor;
use crate::format::cursor::{put_bytes, put_varint};

use super::PolicyError;

const STATE_MAGIC: [u8; 8] = *b"ABDSTAT1";
const STATE_FILE: &str = "device-state";
/// Largest valid state file: magic, flag, four varints, the keyset file with its length, and
/// the checksum.
const MAX_STATE_LEN: u64 = 8 + 1 + 4 * 10 + 5 + crate::format::MAX_KEYSET_FILE_LEN as u64 + 32;

/// What a device remembers between updates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceState {
    /// Release installed and verified on a slot (none before the first update).
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
}

impl DeviceState {
    /// The state file inside `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(STATE_FILE)
    }

    /// Loads the state from `dir`; a missing file is a fresh device.
    pub fn load(dir: &Path) -> Result<DeviceState, PolicyError> {
        let path = DeviceState::path(dir);
        // Bounded: a state file larger than the largest valid one is damaged, not read whole.
        let mut bytes = Vec::new();
        let read =
            File::open(&path).and_then(|f| f.take(MAX_STATE_LEN + 1).read_to_end(&mut bytes));
        match read {
            Ok(_) if bytes.len() as u64 > MAX_STATE_LEN => {
                return Err(PolicyError::StateCorrupt(path.display().to_string()));
            }
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

    /// Decodes a state file's bytes; `None` for anything damaged or non-canonical.
    pub(crate) fn decode(bytes: &[u8]) -> Option<DeviceState> {
        let (body, sum) = bytes.split_last_chunk::<32>()?;
        if blake3::hash(body).as_bytes() != sum {
            return None;
        }
        let mut c = Cursor::new(body);
        if c.array::<8>("magic").ok()? != STATE_MAGIC {
            return None;
        }
        let installed = match c.u8("installed flag").ok()? {
            0 => None,
            1 => Some(c.varint("installed").ok()?),
            _ => return None,
        };
        let state = DeviceState {
            installed,
            highest_seen: c.varint("highest seen").ok()?,
            time_floor: c.varint("time floor").ok()?,
            keyset_version: c.varint("keyset version").ok()?,
            keyset_file: c
                .bytes("keyset", u64::from(crate::format::MAX_KEYSET_FILE_LEN))
                .ok()?
                .to_vec(),
        };
        c.finish("state").ok()?;
        Some(state)
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = STATE_MAGIC.to_vec();
        match self.installed {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                put_varint(&mut out, v);
            }
        }
        put_varint(&mut out, self.highest_seen);
        put_varint(&mut out, self.time_floor);
        put_varint(&mut out, self.keyset_version);
        put_bytes(&mut out, &self.keyset_file);
        let sum = blake3::hash(&out);
        out.extend_from_slice(sum.as_bytes());
        out
    }

    /// Saves the state into `dir` (created if missing) so that a crash leaves either the old
    /// or the new state, never a mix.
    pub fn save(&self, dir: &Path) -> Result<(), PolicyError> {
        let io = |what: &str, e: std::io::Error| {
            PolicyError::StateIo(format!("{what} in {}: {e}", dir.display()))
        };
        fs::create_dir_all(dir).map_err(|e| io("creating the state directory", e))?;
        let tmp = dir.join(format!("{STATE_FILE}.tmp"));
        let mut file = File::create(&tmp).map_err(|e| io("creating the state file", e))?;
        file.write_all(&self.encode())
            .map_err(|e| io("writing the state file", e))?;
        file.sync_all()
            .map_err(|e| io("syncing the state file", e))?;
        fs::rename(&tmp, DeviceState::path(dir)).map_err(|e| io("replacing the state file", e))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("syncing the state directory", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_damage_fails_closed() {
        let dir = std::env::temp_dir().join(format!("abdelta-state-{}", std::process::id()));
        let state = DeviceState {
            installed: Some(4),
            highest_seen: 5,
            time_floor: 1_800_000_000,
            keyset_version: 2,
            keyset_file: vec![1, 2, 3],
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
        let _ = fs::remove_dir_all(&dir);
    }
}
