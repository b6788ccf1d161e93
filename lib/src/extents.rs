//! Where a file or block device lies, as the block layer itself describes it (sysfs): so that a
//! target sharing bytes with the source through a partition table, a loop device or
//! device-mapper is refused, and not only one with the source's inode or device number.
//! Reads only; an unreadable description is taken as "the whole device", which can refuse
//! more, never less.

use std::fs::Metadata;
use std::ops::Range;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Bytes a file or device occupies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Extent {
    /// A byte range of a whole disk, named by its device number.
    Disk {
        /// The disk's major and minor numbers.
        disk: (u32, u32),
        /// The bytes of it.
        bytes: Range<u64>,
    },
    /// A regular file, whole.
    File {
        /// Its filesystem's device number.
        dev: u64,
        /// Its inode.
        ino: u64,
    },
}

/// Block devices stacked deeper than this (a loop over a partition of a device-mapper target
/// of …) are taken whole at that depth.
const MAX_DEPTH: u32 = 8;

/// The extents of an opened file or block device.
pub(crate) fn of(meta: &Metadata) -> Vec<Extent> {
    if meta.file_type().is_block_device() {
        let (major, minor) = split(meta.rdev());
        let mut out = Vec::new();
        block(major, minor, 0..u64::MAX, 0, &mut out);
        out
    } else {
        vec![Extent::File {
            dev: meta.dev(),
            ino: meta.ino(),
        }]
    }
}

/// Whether two sets of extents share a byte.
pub(crate) fn overlap(a: &[Extent], b: &[Extent]) -> bool {
    a.iter().any(|x| {
        b.iter().any(|y| match (x, y) {
            (Extent::File { dev, ino }, Extent::File { dev: d, ino: i }) => dev == d && ino == i,
            (Extent::Disk { disk, bytes }, Extent::Disk { disk: d, bytes: r }) => {
                disk == d && bytes.start < r.end && r.start < bytes.end
            }
            _ => false,
        })
    })
}

/// Linux's device number split as glibc's `major()` and `minor()` do.
fn split(rdev: u64) -> (u32, u32) {
    let major = ((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0x0fff);
    let minor = ((rdev >> 12) & 0xffff_ff00) | (rdev & 0xff);
    (
        u32::try_from(major).unwrap_or(u32::MAX),
        u32::try_from(minor).unwrap_or(u32::MAX),
    )
}

fn sys(major: u32, minor: u32) -> PathBuf {
    PathBuf::from(format!("/sys/dev/block/{major}:{minor}"))
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn read_dev(path: &Path) -> Option<(u32, u32)> {
    let text = std::fs::read_to_string(path).ok()?;
    let (major, minor) = text.trim().split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// Shifts `window` (bytes of a device) by `offset` into the device below, saturating.
fn shift(window: &Range<u64>, offset: u64) -> Range<u64> {
    window.start.saturating_add(offset)..window.end.saturating_add(offset)
}

/// The extents of bytes `window` of block device `major:minor`, following partitions to their
/// disk, loop devices to their backing file or device, and stacked devices (device-mapper,
/// md) to each device below (whole, conservatively).
fn block(major: u32, minor: u32, window: Range<u64>, depth: u32, out: &mut Vec<Extent>) {
    let node = sys(major, minor);
    let whole = |out: &mut Vec<Extent>| {
        out.push(Extent::Disk {
            disk: (major, minor),
            bytes: window.clone(),
        })
    };
    if depth >= MAX_DEPTH {
        return whole(out);
    }
    // A partition: its bytes are its disk's, from its start sector on.
    if node.join("partition").exists() {
        let start = read_u64(&node.join("start")).map(|s| s.saturating_mul(512));
        let len = read_u64(&node.join("size")).map(|s| s.saturating_mul(512));
        let parent = std::fs::canonicalize(&node)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .and_then(|p| read_dev(&p.join("dev")));
        if let (Some(start), Some(len), Some((pmaj, pmin))) = (start, len, parent) {
            let bounded = window.start.min(len)..window.end.min(len);
            return block(pmaj, pmin, shift(&bounded, start), depth + 1, out);
        }
        return whole(out);
    }
    // A loop device: its bytes are its backing file's (or device's), from its offset on.
    if let Ok(backing) = std::fs::read_to_string(node.join("loop/backing_file")) {
        let backing = backing.trim_end_matches('\n');
        let backing = backing.strip_suffix(" (deleted)").unwrap_or(backing);
        let offset = read_u64(&node.join("loop/offset")).unwrap_or(0);
        match std::fs::metadata(backing) {
            Ok(meta) if meta.file_type().is_block_device() => {
                let (bmaj, bmin) = split(meta.rdev());
                return block(bmaj, bmin, shift(&window, offset), depth + 1, out);
            }
            Ok(meta) => out.push(Extent::File {
                dev: meta.dev(),
                ino: meta.ino(),
            }),
            Err(_) => {}
        }
        return whole(out);
    }
    // Stacked on other devices (device-mapper, md): each of them, whole.
    let below: Vec<(u32, u32)> = std::fs::read_dir(node.join("slaves"))
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| read_dev(&e.path().join("dev")))
                .collect()
        })
        .unwrap_or_default();
    if below.is_empty() {
        return whole(out);
    }
    whole(out);
    for (smaj, smin) in below {
        block(smaj, smin, 0..u64::MAX, depth + 1, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extents_overlap_by_disk_range_or_inode() {
        let disk = |start, end| Extent::Disk {
            disk: (7, 0),
            bytes: start..end,
        };
        assert!(overlap(&[disk(0, 100)], &[disk(99, 200)]));
        assert!(!overlap(&[disk(0, 100)], &[disk(100, 200)]));
        let other = Extent::Disk {
            disk: (7, 1),
            bytes: 0..100,
        };
        assert!(!overlap(&[disk(0, 100)], &[other]));
        let file = Extent::File { dev: 1, ino: 2 };
        assert!(overlap(
            &[disk(0, 1), file.clone()],
            std::slice::from_ref(&file)
        ));
        assert!(!overlap(&[file], &[Extent::File { dev: 1, ino: 3 }]));
        assert_eq!(split(0x0000_0000_0000_0701), (7, 1));
        assert_eq!(split((259u64 << 8) | 3), (259, 3));
    }
}
