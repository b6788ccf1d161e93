//! The download stage: bundle ranges received so far, kept on disk with a journal so that an
//! interrupted download (dropped link, killed process, power cut) resumes where it stopped and
//! never downloads a kept byte twice.
//!
//! Two files in the stage directory: `bundle.part`, a sparse file the size of the bundle
//! holding received bytes at their offsets, and `journal`, a header binding the stage to one
//! manifest (by hash) and bundle length, then one record per piece of at most
//! [`PIECE`] bytes. A piece is recorded only after its bytes are synced, and each record
//! carries a checksum, so a torn or damaged tail is dropped on open. A stage left by another
//! manifest, or a damaged header, is discarded: a clean restart, never a panic.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::record::{seal, unseal, write_atomic};
use crate::storage::BundleSource;

/// Bytes per journal record: the most an interruption can cost.
pub const PIECE: u64 = 64 << 10;

const MAGIC: [u8; 8] = *b"ABDJRNL1";
pub(crate) const HEADER_LEN: usize = 8 + 32 + 8 + 8;
pub(crate) const RECORD_LEN: usize = 8 + 8 + 8;

/// Received bundle ranges on disk.
pub struct Stage {
    dir: PathBuf,
    data: File,
    journal: File,
    len: u64,
    /// Received and recorded ranges, sorted and merged.
    done: Vec<Range<u64>>,
}

fn insert(done: &mut Vec<Range<u64>>, r: Range<u64>) {
    done.push(r);
    merge(done);
}

/// Sorts `done` and merges touching ranges.
fn merge(done: &mut Vec<Range<u64>>) {
    done.sort_by_key(|r| r.start);
    let mut merged: Vec<Range<u64>> = Vec::with_capacity(done.len());
    for r in done.drain(..) {
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    *done = merged;
}

/// The parts of `ranges` that `done` (sorted, merged) does not cover.
pub fn subtract(ranges: &[Range<u64>], done: &[Range<u64>]) -> Vec<Range<u64>> {
    let mut out = Vec::new();
    for r in ranges {
        let mut at = r.start;
        for d in done.iter().filter(|d| d.end > r.start && d.start < r.end) {
            if d.start > at {
                out.push(at..d.start);
            }
            at = at.max(d.end);
        }
        if at < r.end {
            out.push(at..r.end);
        }
    }
    out
}

/// Journal records read at most per [`PIECE`] of the bundle.
const RECORDS_PER_PIECE: u64 = 16;

/// The most journal bytes read for a bundle of `len` bytes: the header and
/// [`RECORDS_PER_PIECE`] records per piece of the bundle, and two pieces' worth more (0.6 %
/// of the bundle's length, so a hostile or runaway journal is never read whole). A download
/// records a piece per [`PIECE`] and one more per range it starts or breaks off: it stays
/// inside the bound unless its ranges average under 4 KiB apart over the whole bundle.
/// Records past it are dropped and their bytes fetched again, never trusted.
fn journal_bound(len: u64) -> u64 {
    HEADER_LEN as u64 + (len / PIECE + 2) * RECORDS_PER_PIECE * RECORD_LEN as u64
}

/// The journal's header for one manifest and bundle length.
pub(crate) fn journal_header(manifest_hash: &[u8; 32], len: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_LEN);
    h.extend_from_slice(&MAGIC);
    h.extend_from_slice(manifest_hash);
    h.extend_from_slice(&len.to_le_bytes());
    seal::<8>(&mut h);
    h
}

/// One journal record: a piece of `n` bytes at `offset`, with its checksum.
pub(crate) fn journal_record(offset: u64, n: u64) -> [u8; RECORD_LEN] {
    let mut rec = Vec::with_capacity(RECORD_LEN);
    rec.extend_from_slice(&offset.to_le_bytes());
    rec.extend_from_slice(&n.to_le_bytes());
    seal::<8>(&mut rec);
    // 8 + 8 bytes and an 8-byte seal: exactly RECORD_LEN.
    rec.try_into().unwrap_or([0; RECORD_LEN])
}

/// Decodes a journal read from disk (`existing`, hostile: a torn write, a damaged disk or
/// anyone with access to the stage directory) against the `header` expected for this
/// manifest and a bundle of `len` bytes. Returns the received ranges (sorted, merged, inside
/// `0..len`) and how many leading bytes of the journal are valid; 0 means "start over".
pub(crate) fn read_journal(existing: &[u8], header: &[u8], len: u64) -> (Vec<Range<u64>>, usize) {
    let mut done = Vec::new();
    if existing.get(..HEADER_LEN) != Some(header) {
        return (done, 0);
    }
    let mut valid_len = HEADER_LEN;
    while let Some(record) = existing
        .get(valid_len..)
        .and_then(|rest| rest.first_chunk::<RECORD_LEN>())
    {
        let Some((offset, n)) = unseal::<8>(record).and_then(|body| body.split_at_checked(8))
        else {
            break; // a torn or damaged record ends the journal
        };
        let offset = u64::from_le_bytes(offset.try_into().unwrap_or([0; 8]));
        let n = u64::from_le_bytes(n.try_into().unwrap_or([0; 8]));
        if n == 0 || n > PIECE || offset.checked_add(n).is_none_or(|end| end > len) {
            break;
        }
        done.push(offset..offset + n);
        valid_len += RECORD_LEN;
    }
    merge(&mut done);
    (done, valid_len)
}

impl Stage {
    /// Opens (or starts) the stage in `dir` for the bundle whose manifest hashes to
    /// `manifest_hash` and whose length is `len`.
    pub fn open(dir: &Path, manifest_hash: &[u8; 32], len: u64) -> io::Result<Stage> {
        crate::record::create_dir(dir)?;
        let header = journal_header(manifest_hash, len);
        let journal_path = dir.join("journal");
        let mut existing = Vec::new();
        if let Ok(mut f) = File::open(&journal_path) {
            Read::by_ref(&mut f)
                .take(journal_bound(len))
                .read_to_end(&mut existing)?;
        }
        let (done, valid_len) = read_journal(&existing, &header, len);
        let fresh = valid_len == 0;
        let data = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(fresh)
            .open(dir.join("bundle.part"))?;
        data.set_len(len)?;
        let mut journal = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&journal_path)?;
        if fresh {
            journal.set_len(0)?;
            journal.write_all_at(&header, 0)?;
            journal.sync_all()?;
            File::open(dir).and_then(|d| d.sync_all())?;
        } else {
            journal.set_len(valid_len as u64)?; // drop a torn tail before appending
        }
        journal = OpenOptions::new().append(true).open(&journal_path)?;
        Ok(Stage {
            dir: dir.to_path_buf(),
            data,
            journal,
            len,
            done,
        })
    }

    /// Bytes already received.
    pub fn received(&self) -> u64 {
        self.done.iter().map(|r| r.end - r.start).sum()
    }

    /// The parts of `ranges` not yet received.
    pub fn missing(&self, ranges: &[Range<u64>]) -> Vec<Range<u64>> {
        subtract(ranges, &self.done)
    }

    /// The ranges a stage in `dir` holds for this manifest and length, read without changing
    /// anything (for pricing a download before it starts); `None` when there is no such stage.
    pub fn peek(dir: &Path, manifest_hash: &[u8; 32], len: u64) -> Option<Vec<Range<u64>>> {
        let mut existing = Vec::new();
        File::open(dir.join("journal"))
            .ok()?
            .take(journal_bound(len))
            .read_to_end(&mut existing)
            .ok()?;
        let (done, valid_len) = read_journal(&existing, &journal_header(manifest_hash, len), len);
        (valid_len > 0).then_some(done)
    }

    fn record(&mut self, offset: u64, n: u64) -> io::Result<()> {
        self.data.sync_data()?;
        let rec = journal_record(offset, n);
        self.journal.write_all(&rec)?;
        self.journal.sync_data()?;
        insert(&mut self.done, offset..offset + n);
        Ok(())
    }

    /// Downloads every part of `ranges` not yet received from `source` (a remote source asks
    /// for many ranges per request), recording each piece as it lands. `progress` gets the
    /// bytes received in this call so far; an error it returns (a cancellation) stops the
    /// download after the bytes received so far are recorded.
    pub fn fetch(
        &mut self,
        source: &dyn BundleSource,
        ranges: &[Range<u64>],
        progress: &mut dyn FnMut(u64) -> io::Result<()>,
    ) -> io::Result<u64> {
        let missing = self.missing(ranges);
        let mut received = 0u64;
        // The piece being filled: [piece_start, at).
        let mut piece_start = 0u64;
        let mut at = 0u64;
        let mut sink = |offset: u64, bytes: &[u8]| -> io::Result<()> {
            if offset != at {
                // A new range: record what the previous one left unrecorded.
                if at > piece_start {
                    self.record(piece_start, at - piece_start)?;
                }
                piece_start = offset;
                at = offset;
            }
            self.data.write_all_at(bytes, at)?;
            at += bytes.len() as u64;
            received += bytes.len() as u64;
            while at - piece_start >= PIECE {
                self.record(piece_start, PIECE)?;
                piece_start += PIECE;
            }
            progress(received)
        };
        let result = source.read_ranges(&missing, &mut sink);
        // Keep whatever partial piece arrived, even before a failure.
        if at > piece_start {
            self.record(piece_start, at - piece_start)?;
        }
        result.map(|()| received)
    }

    /// Forgets `range`: a blob there failed its decode or check, so its bytes are not to be
    /// trusted and will be fetched again. The journal is rewritten without it (a new file,
    /// synced, renamed over the old one), so a crash leaves the old or the new journal.
    pub fn forget(&mut self, range: Range<u64>) -> io::Result<()> {
        let kept = subtract(&self.done, std::slice::from_ref(&range));
        let header = {
            let mut existing = vec![0u8; HEADER_LEN];
            File::open(self.dir.join("journal"))?.read_exact(&mut existing)?;
            existing
        };
        let mut journal = header;
        for r in &kept {
            let mut at = r.start;
            while at < r.end {
                let n = (r.end - at).min(PIECE);
                journal.extend_from_slice(&journal_record(at, n));
                at += n;
            }
        }
        let path = self.dir.join("journal");
        write_atomic(&path, &journal)?;
        self.journal = OpenOptions::new().append(true).open(&path)?;
        self.done = kept;
        Ok(())
    }

    /// Whether every byte of `range` was received.
    pub fn holds(&self, range: &Range<u64>) -> bool {
        self.done
            .iter()
            .any(|d| d.start <= range.start && range.end <= d.end)
    }

    /// Removes the stage (after the update verified).
    pub fn remove(self) -> io::Result<()> {
        let dir = self.dir.clone();
        drop(self);
        fs::remove_dir_all(dir)
    }
}

impl BundleSource for Stage {
    fn len(&self) -> u64 {
        self.len
    }

    /// Serves only received bytes: asking for anything else is a bug in the plan, reported as
    /// an error, never answered with zeros.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .ok_or(io::ErrorKind::InvalidInput)?;
        if !self.done.iter().any(|d| d.start <= offset && end <= d.end) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("bundle bytes {offset}..{end} were not downloaded"),
            ));
        }
        self.data.read_exact_at(buf, offset)
    }
}

#[cfg(test)]
// Lists of one byte range are what these functions take and return.
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;
    use crate::storage::MemBundle;

    #[test]
    fn resumes_and_survives_a_torn_journal() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("stage");
        let bundle: Vec<u8> = (0..400_000u32).map(|i| (i % 251) as u8).collect();
        let hash = [7u8; 32];
        let ranges = [1000..200_000, 300_000..400_000];
        {
            let mut stage = Stage::open(&dir, &hash, bundle.len() as u64).unwrap();
            stage
                .fetch(&MemBundle(&bundle), &ranges[..1], &mut |_| Ok(()))
                .unwrap();
            assert_eq!(stage.received(), 199_000);
        }
        // A torn record at the end of the journal.
        let mut j = OpenOptions::new()
            .append(true)
            .open(dir.join("journal"))
            .unwrap();
        j.write_all(&[1, 2, 3]).unwrap();
        let mut stage = Stage::open(&dir, &hash, bundle.len() as u64).unwrap();
        assert_eq!(stage.received(), 199_000);
        assert_eq!(stage.missing(&ranges), vec![300_000..400_000]);
        let got = stage
            .fetch(&MemBundle(&bundle), &ranges, &mut |_| Ok(()))
            .unwrap();
        assert_eq!(got, 100_000);
        let mut buf = vec![0u8; 5000];
        stage.read_at(350_000, &mut buf).unwrap();
        assert_eq!(buf, bundle[350_000..355_000]);
        assert!(stage.read_at(250_000, &mut buf).is_err());
        drop(stage);
        // Another manifest: a clean restart.
        let other = Stage::open(&dir, &[8u8; 32], bundle.len() as u64).unwrap();
        assert_eq!(other.received(), 0);
        other.remove().unwrap();
    }

    #[test]
    fn subtract_keeps_exactly_what_is_not_covered() {
        assert_eq!(subtract(&[0..10], &[10..20]), vec![0..10]);
        assert_eq!(subtract(&[0..10], &[5..6]), vec![0..5, 6..10]);
        assert_eq!(subtract(&[0..10], &[0..10]), Vec::<Range<u64>>::new());
        assert_eq!(subtract(&[5..15], &[0..6, 14..30]), vec![6..14]);
        assert_eq!(subtract(&[0..10, 20..30], &[]), vec![0..10, 20..30]);
    }

    /// A blob that failed its check is forgotten: the journal is rewritten without it, a
    /// reopened or peeked stage agrees, and the range is missing again.
    #[test]
    fn forgotten_ranges_are_missing_again_after_a_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("stage");
        let bundle: Vec<u8> = (0..400_000u32).map(|i| (i % 253) as u8).collect();
        let len = bundle.len() as u64;
        let hash = [3u8; 32];
        let mut stage = Stage::open(&dir, &hash, len).unwrap();
        stage
            .fetch(&MemBundle(&bundle), &[0..300_000], &mut |_| Ok(()))
            .unwrap();
        assert!(stage.holds(&(100_000..200_000)));
        stage.forget(100_000..200_000).unwrap();
        assert_eq!(stage.received(), 200_000);
        assert!(!stage.holds(&(100_000..100_001)));
        assert!(stage.holds(&(0..100_000)) && stage.holds(&(200_000..300_000)));
        assert_eq!(stage.missing(&[0..300_000]), vec![100_000..200_000]);
        drop(stage);
        assert_eq!(
            Stage::peek(&dir, &hash, len),
            Some(vec![0..100_000, 200_000..300_000])
        );
        assert_eq!(Stage::peek(&dir, &[4u8; 32], len), None);
        let mut stage = Stage::open(&dir, &hash, len).unwrap();
        assert_eq!(stage.received(), 200_000);
        assert_eq!(stage.len(), len);
        // Appending after a rewrite still journals.
        stage
            .fetch(&MemBundle(&bundle), &[0..300_000], &mut |_| Ok(()))
            .unwrap();
        drop(stage);
        assert_eq!(Stage::peek(&dir, &hash, len), Some(vec![0..300_000]));
        let mut buf = vec![0u8; 1000];
        let stage = Stage::open(&dir, &hash, len).unwrap();
        stage.read_at(150_000, &mut buf).unwrap();
        assert_eq!(buf, bundle[150_000..151_000]);
        stage.remove().unwrap();
        assert!(!dir.exists());
    }

    /// A record whose checksum does not match ends the journal there.
    #[test]
    fn a_record_failing_its_checksum_ends_the_journal() {
        let header = journal_header(&[5u8; 32], 1 << 20);
        let mut journal = header.clone();
        journal.extend_from_slice(&journal_record(0, 1000));
        journal.extend_from_slice(&journal_record(1000, 1000));
        assert_eq!(read_journal(&journal, &header, 1 << 20).0, vec![0..2000]);
        let last = journal.len() - 1;
        journal[last] ^= 1;
        assert_eq!(read_journal(&journal, &header, 1 << 20).0, vec![0..1000]);
        // Out of bounds or empty pieces end it too.
        for (offset, n) in [(0, 0), (0, PIECE + 1), ((1 << 20) - 10, 11)] {
            let mut bad = header.clone();
            bad.extend_from_slice(&journal_record(offset, n));
            assert_eq!(
                read_journal(&bad, &header, 1 << 20),
                (Vec::new(), HEADER_LEN)
            );
        }
        let mut exact = header.clone();
        exact.extend_from_slice(&journal_record((1 << 20) - PIECE, PIECE));
        assert_eq!(read_journal(&exact, &header, 1 << 20).0.len(), 1);
    }

    /// A journal is read up to its bound: a longer one (a hostile or runaway file) is not
    /// read whole, and what lies past the bound is fetched again, never trusted.
    #[test]
    fn a_journal_is_read_only_up_to_its_bound() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("stage");
        // Three pieces: a bound that adds two pieces' worth differs from one that doubles.
        let (hash, len) = ([6u8; 32], 3 * PIECE);
        drop(Stage::open(&dir, &hash, len).unwrap());
        let bound = (len / PIECE + 2) * RECORDS_PER_PIECE;
        assert_eq!(
            journal_bound(len),
            (HEADER_LEN + bound as usize * RECORD_LEN) as u64
        );
        let mut journal = journal_header(&hash, len);
        for i in 0..bound + 3 {
            journal.extend_from_slice(&journal_record(i * 2, 1));
        }
        fs::write(dir.join("journal"), &journal).unwrap();
        let held = Stage::peek(&dir, &hash, len).unwrap();
        assert_eq!(held.len() as u64, bound);
        assert_eq!(held.last(), Some(&((bound - 1) * 2..(bound - 1) * 2 + 1)));
        let stage = Stage::open(&dir, &hash, len).unwrap();
        assert_eq!(stage.received(), bound);
        assert_eq!(
            fs::metadata(dir.join("journal")).unwrap().len(),
            (HEADER_LEN + bound as usize * RECORD_LEN) as u64
        );
    }

    /// A full piece is journaled before progress reports it, so a power cut right after
    /// costs nothing of it: what progress reports as received is durable.
    #[test]
    fn a_full_piece_is_journaled_before_progress_reports_it_and_no_empty_record_after() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("stage");
        let bundle = vec![5u8; 2 * PIECE as usize];
        let mut stage = Stage::open(&dir, &[4u8; 32], bundle.len() as u64).unwrap();
        let journal = dir.join("journal");
        let mut journaled = Vec::new();
        stage
            .fetch(&MemBundle(&bundle), &[0..PIECE], &mut |received| {
                journaled.push((received, fs::metadata(&journal)?.len()));
                Ok(())
            })
            .unwrap();
        assert_eq!(journaled, [(PIECE, (HEADER_LEN + RECORD_LEN) as u64)]);
        // Ending on a piece's boundary leaves nothing more to record: an empty record would
        // end the journal there, and the next download's records would be lost on reopening.
        stage
            .fetch(&MemBundle(&bundle), &[PIECE..2 * PIECE], &mut |_| Ok(()))
            .unwrap();
        drop(stage);
        let stage = Stage::open(&dir, &[4u8; 32], bundle.len() as u64).unwrap();
        assert_eq!(stage.received(), 2 * PIECE);
    }

    /// A bundle source that counts the bytes it serves.
    struct Counting<'a>(&'a [u8], std::sync::atomic::AtomicU64);

    impl BundleSource for Counting<'_> {
        fn len(&self) -> u64 {
            self.0.len() as u64
        }
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
            self.1
                .fetch_add(buf.len() as u64, std::sync::atomic::Ordering::Relaxed);
            MemBundle(self.0).read_at(offset, buf)
        }
    }

    /// The crash matrix on the stage, under a power-cut model (power cannot be cut here): the
    /// stage syncs a piece's bytes before it appends the piece's record and syncs that, so a
    /// cut after k records leaves those k pieces and records durable, a torn prefix of the next
    /// record, and any bytes at all (zeros, old bytes, part of the next piece) wherever no
    /// durable record points. Cut at every flush point and at 1,000 random points, the rerun
    /// keeps the durable pieces, fetches everything else exactly once more, and holds the
    /// bundle's bytes; what it fetches again of what the cut run had already received is at
    /// most the one piece in flight.
    #[test]
    fn crash_matrix_a_power_cut_costs_at_most_the_piece_in_flight() {
        let tmp = tempfile::tempdir().unwrap();
        let bundle: Vec<u8> = (0..1_500_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
            .collect();
        let len = bundle.len() as u64;
        let hash = [3u8; 32];
        let ranges = [0..300_000, 310_000..900_000, 1_000_000..1_499_000];
        let wanted: u64 = ranges.iter().map(|r| r.end - r.start).sum();
        let reference = tmp.path().join("reference");
        let mut stage = Stage::open(&reference, &hash, len).unwrap();
        stage
            .fetch(&MemBundle(&bundle), &ranges, &mut |_| Ok(()))
            .unwrap();
        drop(stage);
        let journal = fs::read(reference.join("journal")).unwrap();
        let flushes = (journal.len() - HEADER_LEN) / RECORD_LEN;
        let mut rng = 0x5eed_u64;
        let mut next = move || {
            rng = rng
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            rng >> 33
        };
        let mut cuts: Vec<u64> = (0..=flushes as u64).collect();
        cuts.extend((0..1000).map(|_| next() % (flushes as u64 + 1)));
        let mut worst = 0u64;
        for (i, &k) in cuts.iter().enumerate() {
            let dir = tmp.path().join(format!("cut-{i}"));
            fs::create_dir_all(&dir).unwrap();
            // k durable records, then a torn prefix of the next.
            let durable = HEADER_LEN + k as usize * RECORD_LEN;
            let torn = if (k as usize) < flushes {
                next() as usize % RECORD_LEN
            } else {
                0
            };
            fs::write(dir.join("journal"), &journal[..durable + torn]).unwrap();
            let (kept, _) = read_journal(&journal[..durable], &journal[..HEADER_LEN], len);
            // Bytes no durable record points at: garbage, zeros or the right bytes.
            let mut data: Vec<u8> = match next() % 3 {
                0 => (0..len).map(|_| next() as u8).collect(),
                1 => vec![0; bundle.len()],
                _ => bundle.clone(),
            };
            for r in &kept {
                let (s, e) = (r.start as usize, r.end as usize);
                data[s..e].copy_from_slice(&bundle[s..e]);
            }
            fs::write(dir.join("bundle.part"), &data).unwrap();
            let held: u64 = kept.iter().map(|r| r.end - r.start).sum();
            let mut stage = Stage::open(&dir, &hash, len).unwrap();
            assert_eq!(stage.received(), held, "cut {i} after {k} records");
            let counting = Counting(&bundle, 0.into());
            stage.fetch(&counting, &ranges, &mut |_| Ok(())).unwrap();
            let fetched = counting.1.into_inner();
            assert_eq!(fetched, wanted - held, "cut {i}: each missing byte once");
            for r in &ranges {
                let mut got = vec![0u8; (r.end - r.start) as usize];
                stage.read_at(r.start, &mut got).unwrap();
                assert!(got == bundle[r.start as usize..r.end as usize], "cut {i}");
            }
            // The cut run had received the k pieces and at most the next one in flight.
            let in_flight = journal
                .get(durable..durable + RECORD_LEN)
                .map_or(0, |rec| u64::from_le_bytes(rec[8..16].try_into().unwrap()));
            assert!(in_flight <= PIECE);
            worst = worst.max(in_flight);
            stage.remove().unwrap();
        }
        println!(
            "stage crash matrix: {} cuts ({} flush points + 1,000 random); at most {worst} bytes fetched again per cut (the piece in flight)",
            cuts.len(),
            flushes + 1
        );
    }
}
