//! Where bytes live: the bundle as a random-access byte source, the running partition read
//! with checked positioned reads, the target that receives only verified chunks, and (on the
//! release side) images mapped whole for the generator.
//!
//! This is the one module allowed `unsafe`, for the generator's read-only maps. The device
//! path never maps what it reads: a mapped file that shrinks, or a page the medium fails to
//! return, raises SIGBUS, where a read returns an error the apply can fall back from.
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::chunk::VerifiedChunk;

/// Random access to a bundle's bytes: a local file, memory, or HTTP ranges.
pub trait BundleSource: Sync {
    /// Total length, if known.
    fn len(&self) -> u64;
    /// Whether the bundle is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Fills `buf` with the bytes at `offset`, or fails.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;

    /// Streams the `len` bytes at `offset` into `sink`, in pieces. A remote source overrides
    /// this to fetch the whole range in one request.
    fn read_stream(
        &self,
        offset: u64,
        len: u64,
        sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut buf = vec![0u8; (len.min(1 << 20)) as usize];
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(buf.len() as u64) as usize;
            let piece = buf.get_mut(..n).ok_or(io::ErrorKind::InvalidInput)?;
            self.read_at(offset + done, piece)?;
            sink(piece)?;
            done += n as u64;
        }
        Ok(())
    }

    /// Streams several sorted, disjoint ranges into `sink(offset, bytes)`. A remote source
    /// overrides this to ask for many ranges in one request.
    fn read_ranges(
        &self,
        ranges: &[std::ops::Range<u64>],
        sink: &mut dyn FnMut(u64, &[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        for r in ranges {
            let mut at = r.start;
            self.read_stream(r.start, r.end - r.start, &mut |bytes| {
                sink(at, bytes)?;
                at += bytes.len() as u64;
                Ok(())
            })?;
        }
        Ok(())
    }
}

/// A bundle in a local file.
pub struct FileBundle {
    file: File,
    len: u64,
}

impl FileBundle {
    /// Opens a bundle file read-only.
    pub fn open(path: &Path) -> io::Result<FileBundle> {
        let mut file = File::open(path)?;
        let len = file.seek(SeekFrom::End(0))?;
        Ok(FileBundle { file, len })
    }
}

impl BundleSource for FileBundle {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
}

/// A bundle held in memory (tests, fuzzing, an agent that already has the bytes).
#[derive(Debug, Clone, Copy)]
pub struct MemBundle<'a>(pub &'a [u8]);

impl BundleSource for MemBundle<'_> {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        read_slice(self.0, offset, buf)
    }
}

/// Copies the bytes of `bytes` at `offset` into `buf`, or fails when they run out.
fn read_slice(bytes: &[u8], offset: u64, buf: &mut [u8]) -> io::Result<()> {
    let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
    let found = bytes
        .get(start..)
        .and_then(|rest| rest.get(..buf.len()))
        .ok_or(io::ErrorKind::UnexpectedEof)?;
    buf.copy_from_slice(found);
    Ok(())
}

/// The bytes a device rebuilds from (its running partition), read with checked, positioned
/// reads. A read may fail (an I/O error of the medium, a source that shrank): the plan and the
/// apply then take the recipes that need no source for the chunks concerned.
pub trait Source: Sync {
    /// Length in bytes when opened (named apart from `len`, which byte containers have).
    fn size(&self) -> u64;
    /// Fills `buf` with the bytes at `offset`, or fails.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
}

/// Bytes in memory are a source (tests, fuzzing, an agent holding the image).
impl<T: AsRef<[u8]> + Sync + ?Sized> Source for T {
    fn size(&self) -> u64 {
        self.as_ref().len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        read_slice(self.as_ref(), offset, buf)
    }
}

/// The `len` bytes at `offset`, when the source holds them: `Ok(None)` when the range runs
/// past its end (a smaller source, or another version), `Err` when a read inside it failed.
pub(crate) fn read_range<S: Source + ?Sized>(
    source: &S,
    offset: u64,
    len: u64,
) -> io::Result<Option<Vec<u8>>> {
    let end = offset.checked_add(len);
    if end.is_none_or(|end| end > source.size()) {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?;
    let mut buf = vec![0u8; len];
    source.read_at(offset, &mut buf).map_err(|error| {
        io::Error::new(
            error.kind(),
            format!("reading the source at byte {offset} ({len} bytes): {error}"),
        )
    })?;
    Ok(Some(buf))
}

/// The running partition (or an image file), opened read-only. Never written, never mapped.
pub struct SourceImage {
    file: Option<File>,
    len: u64,
    identity: Option<(u64, u64)>,
    /// Where its bytes lie on the block layer (partition, loop, device-mapper resolved).
    extents: Vec<crate::extents::Extent>,
}

impl SourceImage {
    /// Opens a file or block device read-only.
    pub fn open(path: &Path) -> io::Result<SourceImage> {
        let mut file = File::open(path)?;
        let len = file.seek(SeekFrom::End(0))?;
        let identity = Some(identity(&file)?);
        let extents = crate::extents::of(&file.metadata()?);
        Ok(SourceImage {
            file: Some(file),
            len,
            identity,
            extents,
        })
    }

    /// No source: a blank device (USB flashing).
    pub fn empty() -> SourceImage {
        SourceImage {
            file: None,
            len: 0,
            identity: None,
            extents: Vec::new(),
        }
    }
}

impl Source for SourceImage {
    fn size(&self) -> u64 {
        self.len
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let Some(file) = &self.file else {
            return read_slice(&[], offset, buf);
        };
        file.read_exact_at(buf, offset).map_err(|error| {
            if error.kind() == io::ErrorKind::UnexpectedEof {
                io::Error::new(
                    error.kind(),
                    "the source ended early: it shrank after it was opened",
                )
            } else {
                error
            }
        })
    }
}

/// An image mapped whole, read-only: the generator's view of the releases it compares (on the
/// release side, where images are files nobody changes while a bundle is made).
pub struct MappedImage {
    map: Option<Mmap>,
}

impl MappedImage {
    /// Maps a file or block device read-only.
    pub fn open(path: &Path) -> io::Result<MappedImage> {
        let mut file = File::open(path)?;
        let len = file.seek(SeekFrom::End(0))?;
        if len == 0 {
            return Ok(MappedImage { map: None });
        }
        let len = usize::try_from(len)
            .map_err(|_| io::Error::other("image larger than the address space"))?;
        // SAFETY: the map is read-only and private to this process. The release tooling's
        // images are files nobody writes while a bundle is generated; a file truncated
        // underneath would raise SIGBUS, which is why the device path never maps its source.
        let map = unsafe { memmap2::MmapOptions::new().len(len).map(&file)? };
        Ok(MappedImage { map: Some(map) })
    }

    /// No image: the generator building a full bundle.
    pub fn empty() -> MappedImage {
        MappedImage { map: None }
    }

    /// The image's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }
}

fn identity(file: &File) -> io::Result<(u64, u64)> {
    let meta = file.metadata()?;
    if meta.file_type().is_block_device() {
        Ok((u64::MAX, meta.rdev()))
    } else {
        Ok((meta.dev(), meta.ino()))
    }
}

/// Receives verified chunks. Only the apply pipeline can make a [`VerifiedChunk`], so no
/// implementation can be handed unverified bytes.
pub trait Target {
    /// Writes a verified chunk at its offset.
    fn write_chunk(&mut self, chunk: &VerifiedChunk<'_>) -> io::Result<()>;
    /// Makes every write durable.
    fn sync(&mut self) -> io::Result<()>;
}

/// A target partition or image file.
pub struct FileTarget {
    file: File,
    path: PathBuf,
}

impl FileTarget {
    /// Opens `path` for writing `size` bytes: a block device at least that large, or a regular
    /// file (created if missing, except under `/dev`, then set to exactly `size`). Refuses the
    /// source itself.
    pub fn open(path: &Path, size: u64, source: &SourceImage) -> io::Result<FileTarget> {
        if path.starts_with("/dev") && !path.exists() {
            // A mistyped partition name must not become a file in the device directory.
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} does not exist; no file is created under /dev",
                    path.display()
                ),
            ));
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        FileTarget::check(&mut file, size, source)?;
        Ok(FileTarget {
            file,
            path: path.to_owned(),
        })
    }

    /// Opens an existing slot for writing `size` bytes: a block device at least that large,
    /// or a regular file (set to exactly `size`). Never creates anything: a slot whose device
    /// is missing (a typo, a partition that did not appear) is refused, not made a file under
    /// `/dev`. Refuses the source itself.
    pub fn open_existing(path: &Path, size: u64, source: &SourceImage) -> io::Result<FileTarget> {
        let meta = std::fs::metadata(path)?;
        let kind = meta.file_type();
        if !kind.is_block_device() && !kind.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is neither a block device nor a regular file",
                    path.display()
                ),
            ));
        }
        let mut file = OpenOptions::new().read(true).write(true).open(path)?;
        FileTarget::check(&mut file, size, source)?;
        Ok(FileTarget {
            file,
            path: path.to_owned(),
        })
    }

    fn check(file: &mut File, size: u64, source: &SourceImage) -> io::Result<()> {
        let id = identity(file)?;
        if source.identity == Some(id) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the target is the source partition: the running partition is never written",
            ));
        }
        let meta = file.metadata()?;
        if crate::extents::overlap(&crate::extents::of(&meta), &source.extents) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the target overlaps the source partition (through a partition table, a loop device or device-mapper): the running partition is never written",
            ));
        }
        if meta.file_type().is_block_device() {
            let capacity = file.seek(SeekFrom::End(0))?;
            if capacity < size {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("target device holds {capacity} bytes, the image needs {size}"),
                ));
            }
        } else if meta.len() != size {
            file.set_len(size)?;
        }
        Ok(())
    }

    /// The path it was opened at.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Target for FileTarget {
    fn write_chunk(&mut self, chunk: &VerifiedChunk<'_>) -> io::Result<()> {
        self.file.write_all_at(chunk.bytes(), chunk.offset())
    }
    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_all()
    }
}

/// An in-memory target for tests and fuzzing.
#[derive(Debug, Default, Clone)]
pub struct MemTarget {
    /// The image being written.
    pub bytes: Vec<u8>,
}

impl Target for MemTarget {
    fn write_chunk(&mut self, chunk: &VerifiedChunk<'_>) -> io::Result<()> {
        let start = usize::try_from(chunk.offset()).map_err(|_| io::ErrorKind::InvalidInput)?;
        let end = start
            .checked_add(chunk.bytes().len())
            .ok_or(io::ErrorKind::InvalidInput)?;
        if self.bytes.len() < end {
            self.bytes.resize(end, 0);
        }
        self.bytes
            .get_mut(start..end)
            .ok_or(io::ErrorKind::InvalidInput)?
            .copy_from_slice(chunk.bytes());
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Opens a target for its read-back: a file or block device holding at least `size` bytes,
/// whose cached pages over that range are dropped first (they are clean: the writer synced),
/// so the read-back checks what the storage returns, not what the page cache still remembers
/// of the writes. Pages another process keeps mapped stay cached; the kernel offers no way to
/// bypass those short of O_DIRECT.
pub fn open_readback(path: &Path, size: u64) -> io::Result<File> {
    let mut file = File::open(path)?;
    let len = file.seek(SeekFrom::End(0))?;
    if len < size {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("{} holds {len} bytes, the image has {size}", path.display()),
        ));
    }
    if let Some(size) = std::num::NonZeroU64::new(size) {
        rustix::fs::fadvise(&file, 0, Some(size), rustix::fs::Advice::DontNeed)?;
    }
    Ok(file)
}
