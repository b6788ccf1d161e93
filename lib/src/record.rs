//! Small records on the device's own storage, kept one way: a body sealed with a BLAKE3
//! checksum, replaced atomically. The device state, the stage's journal and the header cache
//! all use it, so a torn or damaged record reads as absent, never as data, and a power cut
//! during a save leaves the old record or the new one, never a mix.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

/// The first `N` bytes of the BLAKE3 hash of `body`: its seal.
fn checksum<const N: usize>(body: &[u8]) -> [u8; N] {
    let mut sum = [0u8; N];
    let hash = blake3::hash(body);
    for (s, h) in sum.iter_mut().zip(hash.as_bytes()) {
        *s = *h;
    }
    sum
}

/// Appends the seal of everything `record` holds so far (`N` ≤ 32 bytes).
pub(crate) fn seal<const N: usize>(record: &mut Vec<u8>) {
    let sum = checksum::<N>(record);
    record.extend_from_slice(&sum);
}

/// The body of a record sealed by [`seal`] with `N` bytes; `None` if it is too short or its
/// seal does not match.
pub(crate) fn unseal<const N: usize>(record: &[u8]) -> Option<&[u8]> {
    let (body, sum) = record.split_last_chunk::<N>()?;
    (checksum::<N>(body) == *sum).then_some(body)
}

/// An atomic write that failed, with the step that failed.
#[derive(Debug)]
pub(crate) struct WriteError {
    /// What was being done: "creating", "writing", "syncing", "replacing" or "syncing the
    /// directory of".
    pub step: &'static str,
    /// The cause.
    pub source: io::Error,
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.step, self.source)
    }
}

impl From<WriteError> for io::Error {
    fn from(e: WriteError) -> io::Error {
        io::Error::new(e.source.kind(), e.to_string())
    }
}

/// The directory holding `path`: its parent, or `.` for a bare file name (whose parent is
/// the empty path, which cannot be opened to sync).
fn directory_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Creates the directory `dir` and any missing parents, syncing the directory each one is
/// made in: a directory whose name a power cut can forget would take the records and the
/// stage kept in it along. Nothing is synced when `dir` exists.
pub(crate) fn create_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir(parent)?;
    }
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
        Ok(()) => File::open(directory_of(dir)).and_then(|d| d.sync_all()),
    }
}

/// Replaces `path` with `bytes` so that a crash leaves the old file or the new one, never a
/// mix: a temporary file beside it (`<name>.new`), written and synced, renamed over it, and
/// the directory synced.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let at = |step: &'static str| move |source| WriteError { step, source };
    let invalid = || io::Error::from(io::ErrorKind::InvalidInput);
    let name = path.file_name().ok_or_else(invalid).map_err(at("naming"))?;
    let dir = directory_of(path);
    let mut tmp_name = name.to_os_string();
    tmp_name.push(".new");
    let tmp = dir.join(tmp_name);
    let mut file = File::create(&tmp).map_err(at("creating"))?;
    file.write_all(bytes).map_err(at("writing"))?;
    file.sync_all().map_err(at("syncing"))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(at("replacing"))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(at("syncing the directory of"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_file_name_lives_in_the_current_directory() {
        assert_eq!(directory_of(Path::new("state")), Path::new("."));
        assert_eq!(directory_of(Path::new("/")), Path::new("."));
        assert_eq!(directory_of(Path::new("a/state")), Path::new("a"));
        assert_eq!(directory_of(Path::new("/var/state")), Path::new("/var"));
    }

    #[test]
    fn a_directory_is_created_with_its_parents() {
        let tmp = tempfile::tempdir().unwrap();
        let deep = tmp.path().join("a").join("b").join("c");
        create_dir(&deep).unwrap();
        assert!(deep.is_dir());
        create_dir(&deep).unwrap();
        std::fs::write(tmp.path().join("file"), b"").unwrap();
        assert!(create_dir(&tmp.path().join("file").join("d")).is_err());
    }

    #[test]
    fn a_sealed_record_opens_and_any_damage_closes_it() {
        let mut record = b"the body".to_vec();
        seal::<8>(&mut record);
        assert_eq!(record.len(), 16);
        assert_eq!(unseal::<8>(&record), Some(&b"the body"[..]));
        for i in 0..record.len() {
            let mut bad = record.clone();
            bad[i] ^= 1;
            assert_eq!(unseal::<8>(&bad), None, "byte {i}");
        }
        assert_eq!(unseal::<8>(&record[..record.len() - 1]), None);
        assert_eq!(unseal::<32>(&record), None);
        let mut full = Vec::new();
        seal::<32>(&mut full);
        assert_eq!(full, blake3::hash(&[]).as_bytes());
        assert_eq!(unseal::<32>(&full), Some(&[][..]));
    }

    #[test]
    fn an_atomic_write_replaces_the_file_and_names_the_failed_step() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("record");
        write_atomic(&path, b"old").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert!(!dir.path().join("record.new").exists());
        let missing = dir.path().join("no such dir").join("record");
        let e = write_atomic(&missing, b"x").unwrap_err();
        assert_eq!(e.step, "creating");
        let e = io::Error::from(e);
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().starts_with("creating: "), "{e}");
    }
}
