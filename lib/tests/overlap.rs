//! Fault 7: a target that shares bytes with the source through the block layer (a loop device
//! over the source's file, two loop devices over one file, a partition of the source's disk,
//! the disk of the source's partition, a device-mapper target over it) is refused, where the
//! machine allows loop devices (root); elsewhere the test says why it did not run.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use abdelta::storage::{FileTarget, SourceImage};

struct Loop(String);

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

fn losetup(args: &[&str], file: &Path) -> Result<Loop, String> {
    let out = Command::new("losetup")
        .args(["--find", "--show"])
        .args(args)
        .arg(file)
        .output()
        .map_err(|e| format!("losetup: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(Loop(String::from_utf8_lossy(&out.stdout).trim().to_owned()))
}

/// A disk image with an MBR and two 1 MiB partitions (sectors 2048.. and 4096..).
fn disk_image(path: &Path) {
    let mut disk = vec![0u8; 6144 * 512];
    for (i, start) in [2048u32, 4096].into_iter().enumerate() {
        let entry = 446 + 16 * i;
        disk[entry + 4] = 0x83;
        disk[entry + 8..entry + 12].copy_from_slice(&start.to_le_bytes());
        disk[entry + 12..entry + 16].copy_from_slice(&2048u32.to_le_bytes());
    }
    disk[510] = 0x55;
    disk[511] = 0xaa;
    std::fs::write(path, disk).unwrap();
}

fn refused(source: &str, target: &str) -> bool {
    let source = SourceImage::open(Path::new(source)).unwrap();
    match FileTarget::open(Path::new(target), 4096, &source) {
        Ok(_) => false,
        Err(e) => {
            assert!(e.to_string().contains("never written"), "{e}");
            true
        }
    }
}

#[test]
fn fault_07_a_target_overlapping_the_source_through_the_block_layer_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("slot.img");
    std::fs::write(&file, vec![0u8; 1 << 20]).unwrap();
    let first = match losetup(&[], &file) {
        Ok(l) => l,
        Err(why) => {
            eprintln!("fault_07 SKIPPED: this machine does not allow loop devices ({why})");
            return;
        }
    };
    let file_path = file.to_str().unwrap();
    // A loop device over the source's file, and the file under the source's loop device.
    assert!(refused(&first.0, file_path));
    assert!(refused(file_path, &first.0));
    // Two loop devices over one file.
    let second = losetup(&[], &file).unwrap();
    assert!(refused(&first.0, &second.0));
    // A disk and its partitions.
    let disk = tmp.path().join("disk.img");
    disk_image(&disk);
    let whole = losetup(&["--partscan"], &disk).unwrap();
    // Without udev the partitions' device nodes do not appear: make them from sysfs.
    let name = whole.0.trim_start_matches("/dev/");
    let node = |n: u32| {
        let dev = std::fs::read_to_string(format!("/sys/block/{name}/{name}p{n}/dev")).ok()?;
        let path = tmp.path().join(format!("p{n}"));
        let (major, minor) = dev.trim().split_once(':')?;
        let made = Command::new("mknod")
            .arg(&path)
            .args(["b", major, minor])
            .status()
            .ok()?;
        made.success().then(|| path.to_str().unwrap().to_owned())
    };
    let mut parts = (None, None);
    for _ in 0..50 {
        parts = (node(1), node(2));
        if parts.1.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    if let (Some(p1), Some(p2)) = parts {
        assert!(
            !refused(&p1, &p2),
            "two partitions of one disk do not overlap"
        );
        assert!(refused(&whole.0, &p2), "the disk of a partition");
        assert!(refused(&p1, &whole.0), "the partition of a disk");
    } else {
        eprintln!("fault_07: the kernel did not scan the partitions here: partitions not checked");
    }
    // A device-mapper target over the source's loop device.
    let name = format!("abdelta-test-{}", std::process::id());
    let table = format!("0 2048 linear {} 0", second.0);
    let created = Command::new("dmsetup")
        .args(["create", &name, "--table", &table])
        .output();
    match created {
        Ok(out) if out.status.success() => {
            let mapped = format!("/dev/mapper/{name}");
            let result = refused(&second.0, &mapped);
            let _ = Command::new("dmsetup").args(["remove", &name]).status();
            assert!(result, "a device-mapper target over the source");
        }
        Ok(out) => eprintln!(
            "fault_07: device-mapper not available here: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => eprintln!("fault_07: dmsetup not available here: {e}"),
    }
}
