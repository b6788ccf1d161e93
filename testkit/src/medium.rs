//! A storage medium for fault tests: an in-memory filesystem mounted through FUSE, so the code
//! under test makes its real system calls (open, pwrite, fsync, rename, fsync of a directory)
//! and the medium decides what each one returns and what survives a power cut.
//!
//! **Power cuts.** The medium keeps two trees: what the running system sees, and what is
//! durable. A file's writes and size changes become durable when the file is synced; a name
//! created, removed or renamed in a directory becomes durable when that directory is synced.
//! That is the least POSIX promises: code that keeps its data here keeps it on any file system
//! that honours fsync. [`Medium::crash`] arms a cut at a change (a write, a size change, a
//! name change, a sync) or just after a sync: the write it cuts lands torn (a prefix of whole
//! 512 B or 4 KiB sectors), and from then on every request fails with EIO, as on a machine
//! that lost power. [`Medium::power_cut`] then unmounts and mounts again with the durable tree
//! plus a random subset of the changes not yet synced, applied in order: unflushed writes may
//! land or not, in any combination.
//!
//! **Faults.** [`Medium::inject`] makes a file's reads or writes fail with an errno at an
//! offset (EIO, ENOSPC), or makes every write short.
//!
//! Files are opened with FOPEN_DIRECT_IO: no page cache stands between the code and the
//! medium, so each `write` reaches it as one request and a read-back reads the medium
//! ([`Fault::PageCache`] puts the cache back, for the read-back's own test).
//! Needs `/dev/fuse` and the right to mount (root, or CAP_SYS_ADMIN).

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, UNIX_EPOCH};

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, WriteFlags,
};

const ROOT: u64 = 1;

#[derive(Clone, Debug)]
enum Node {
    File(Vec<u8>),
    Dir(BTreeMap<OsString, u64>),
}

/// Inodes by number; the root is 1. Inodes no name reaches are dropped at a power cut.
#[derive(Clone, Debug)]
struct Tree {
    nodes: HashMap<u64, Node>,
}

impl Tree {
    fn empty() -> Tree {
        Tree {
            nodes: HashMap::from([(ROOT, Node::Dir(BTreeMap::new()))]),
        }
    }

    /// A directory's entries; on the durable tree a directory whose own name is not durable
    /// yet is created empty.
    fn entries(&mut self, dir: u64) -> Option<&mut BTreeMap<OsString, u64>> {
        match self.nodes.entry(dir).or_insert(Node::Dir(BTreeMap::new())) {
            Node::Dir(entries) => Some(entries),
            Node::File(_) => None,
        }
    }

    /// Applies one change. On the durable tree, a change may name an inode it does not hold
    /// yet (a file written and synced before its name is): it is created empty.
    fn apply(&mut self, change: &Change) {
        match change {
            Change::Write { ino, offset, data } => {
                if let Node::File(bytes) = self.nodes.entry(*ino).or_insert(Node::File(Vec::new()))
                {
                    let end = *offset as usize + data.len();
                    if bytes.len() < end {
                        bytes.resize(end, 0);
                    }
                    bytes[*offset as usize..end].copy_from_slice(data);
                }
            }
            Change::SetLen { ino, len } => {
                if let Node::File(bytes) = self.nodes.entry(*ino).or_insert(Node::File(Vec::new()))
                {
                    bytes.resize(*len as usize, 0);
                }
            }
            Change::Link {
                dir,
                name,
                ino,
                is_dir,
            } => {
                self.nodes.entry(*ino).or_insert(if *is_dir {
                    Node::Dir(BTreeMap::new())
                } else {
                    Node::File(Vec::new())
                });
                if let Some(entries) = self.entries(*dir) {
                    entries.insert(name.clone(), *ino);
                }
            }
            Change::Unlink { dir, name } => {
                if let Some(entries) = self.entries(*dir) {
                    entries.remove(name);
                }
            }
            Change::Rename {
                from_dir,
                from,
                to_dir,
                to,
            } => {
                let moved = self.entries(*from_dir).and_then(|e| e.remove(from));
                if let (Some(ino), Some(entries)) = (moved, self.entries(*to_dir)) {
                    entries.insert(to.clone(), ino);
                }
            }
        }
    }

    /// Drops the inodes no name reaches (created, never linked durably).
    fn collect(&mut self) {
        let mut reached = vec![ROOT];
        let mut at = 0;
        while let Some(&ino) = reached.get(at) {
            if let Some(Node::Dir(entries)) = self.nodes.get(&ino) {
                reached.extend(entries.values().copied());
            }
            at += 1;
        }
        self.nodes.retain(|ino, _| reached.contains(ino));
    }
}

/// A change to the tree, pending until a sync makes it durable.
#[derive(Clone, Debug)]
enum Change {
    Write {
        ino: u64,
        offset: u64,
        data: Vec<u8>,
    },
    SetLen {
        ino: u64,
        len: u64,
    },
    Link {
        dir: u64,
        name: OsString,
        ino: u64,
        is_dir: bool,
    },
    Unlink {
        dir: u64,
        name: OsString,
    },
    Rename {
        from_dir: u64,
        from: OsString,
        to_dir: u64,
        to: OsString,
    },
}

impl Change {
    /// The inode whose sync makes this change durable (a file's data), or the directories
    /// whose sync does (a name).
    fn synced_by(&self, ino: u64) -> bool {
        match self {
            Change::Write { ino: i, .. } | Change::SetLen { ino: i, .. } => *i == ino,
            Change::Link { dir, .. } | Change::Unlink { dir, .. } => *dir == ino,
            Change::Rename {
                from_dir, to_dir, ..
            } => *from_dir == ino || *to_dir == ino,
        }
    }
}

/// When the power goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// At the n-th change (from 1): a write, a size change, a name change or a sync.
    Change(u64),
    /// At the first change after the n-th sync completed (a flush point).
    AfterSync(u64),
}

/// What a fault does to a file's requests.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Writes to the file named `file` (or to any file in a directory so named) that reach
    /// offset `at` or beyond fail with `errno`.
    Write {
        file: &'static str,
        at: u64,
        errno: i32,
    },
    /// Reads of the file named `file` (or of any file in a directory so named) that cover
    /// offset `at` fail with `errno`.
    Read {
        file: &'static str,
        at: u64,
        errno: i32,
    },
    /// Every write stores at most half of what it was given (at least one byte).
    ShortWrites,
    /// When the file named `file` is first synced, the byte it stores at `at` rots (its bits
    /// flip): the medium no longer holds what was written, though a page cache may.
    Rot { file: &'static str, at: u64 },
    /// Files keep their pages in the kernel's page cache across opens (FOPEN_KEEP_CACHE)
    /// instead of bypassing it: reads are served from the cache until it is dropped.
    PageCache,
}

/// Counts of what reached the medium.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Changes: writes, size changes, name changes and syncs.
    pub changes: u64,
    /// Syncs of a file or a directory (the flush points).
    pub syncs: u64,
    /// Requests an injected fault failed, cut short or rotted.
    pub faulted: u64,
}

struct State {
    live: Tree,
    durable: Tree,
    pending: Vec<Change>,
    next_ino: u64,
    /// Each inode's last name and its directory, for faults that name a file.
    names: HashMap<u64, (u64, OsString)>,
    counts: Counts,
    /// When the power goes, and the sector size the write it cuts tears at.
    crash: Option<(Cut, u64)>,
    /// The power went: every request fails.
    dead: bool,
    faults: Vec<Fault>,
}

impl State {
    fn new(tree: Tree) -> State {
        let next_ino = tree.nodes.keys().max().copied().unwrap_or(ROOT) + 1;
        let mut names = HashMap::new();
        for (dir, node) in &tree.nodes {
            if let Node::Dir(entries) = node {
                for (name, ino) in entries {
                    names.insert(*ino, (*dir, name.clone()));
                }
            }
        }
        State {
            durable: tree.clone(),
            live: tree,
            pending: Vec::new(),
            next_ino,
            names,
            counts: Counts::default(),
            crash: None,
            dead: false,
            faults: Vec::new(),
        }
    }

    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let (kind, size, perm, nlink) = match self.live.nodes.get(&ino)? {
            Node::File(bytes) => (FileType::RegularFile, bytes.len() as u64, 0o644, 1),
            Node::Dir(_) => (FileType::Directory, 0, 0o755, 2),
        };
        Some(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: UNIX_EPOCH,
            mtime: UNIX_EPOCH,
            ctime: UNIX_EPOCH,
            crtime: UNIX_EPOCH,
            kind,
            perm,
            nlink,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    /// Counts a change about to be made; `Err` when the power goes now (or went before).
    /// `torn` is the write being made, whose torn prefix is left pending.
    fn change(&mut self, sync: bool, torn: Option<(u64, u64, &[u8])>) -> Result<(), Errno> {
        if self.dead {
            return Err(Errno::EIO);
        }
        let due = match self.crash {
            Some((Cut::Change(n), _)) => self.counts.changes + 1 == n,
            Some((Cut::AfterSync(k), _)) => self.counts.syncs == k,
            None => false,
        };
        self.counts.changes += 1;
        self.counts.syncs += u64::from(sync);
        if let (true, Some((_, sector))) = (due, self.crash) {
            if let Some((ino, offset, data)) = torn {
                // Whole sectors of the write reach the medium, the rest does not.
                let sectors = (data.len() as u64 / sector) as usize;
                let keep = (self.counts.changes as usize * 7919 % (sectors + 1)) * sector as usize;
                if keep > 0 {
                    self.pending.push(Change::Write {
                        ino,
                        offset,
                        data: data[..keep].to_vec(),
                    });
                }
            }
            self.dead = true;
            return Err(Errno::EIO);
        }
        Ok(())
    }

    fn record(&mut self, change: Change) {
        match &change {
            Change::Link { dir, name, ino, .. } => {
                self.names.insert(*ino, (*dir, name.clone()));
            }
            Change::Rename {
                from_dir,
                from,
                to_dir,
                to,
            } => {
                if let Some(ino) = self.lookup(*from_dir, from) {
                    self.names.insert(ino, (*to_dir, to.clone()));
                }
            }
            _ => {}
        }
        self.live.apply(&change);
        self.pending.push(change);
    }

    /// A new file or directory named `name` in `parent`: its inode number.
    fn link_new(&mut self, parent: u64, name: &OsStr, is_dir: bool) -> Result<u64, Errno> {
        self.change(false, None)?;
        let ino = self.next_ino;
        self.next_ino += 1;
        self.record(Change::Link {
            dir: parent,
            name: name.to_owned(),
            ino,
            is_dir,
        });
        Ok(ino)
    }

    fn sync(&mut self, ino: u64) {
        // A rot strikes once, at the first sync of its file.
        let rot = self.faults.iter().position(|f| match f {
            Fault::Rot { file, .. } => self.named(ino, file),
            _ => false,
        });
        if let Some(Fault::Rot { at, .. }) = rot.map(|i| self.faults.remove(i))
            && let Some(Node::File(bytes)) = self.live.nodes.get_mut(&ino)
            && let Some(b) = bytes.get_mut(at as usize)
        {
            *b ^= 0xff;
            self.counts.faulted += 1;
        }
        let (now, later): (Vec<Change>, Vec<Change>) =
            self.pending.drain(..).partition(|c| c.synced_by(ino));
        for change in &now {
            self.durable.apply(change);
        }
        self.pending = later;
    }

    /// Whether `file` names the inode or its directory.
    fn named(&self, ino: u64, file: &str) -> bool {
        let Some((dir, name)) = self.names.get(&ino) else {
            return false;
        };
        let dir_name = self.names.get(dir).map(|(_, n)| n.as_os_str());
        name == file || dir_name == Some(OsStr::new(file))
    }

    fn fault(&mut self, ino: u64, write: bool, offset: u64, len: u64) -> Option<Errno> {
        let hit = self.faults.iter().find_map(|f| match f {
            Fault::Write { file, at, errno }
                if write && offset + len > *at && self.named(ino, file) =>
            {
                Some(*errno)
            }
            Fault::Read { file, at, errno }
                if !write && offset <= *at && *at < offset + len && self.named(ino, file) =>
            {
                Some(*errno)
            }
            _ => None,
        })?;
        self.counts.faulted += 1;
        Some(Errno::from_i32(hit))
    }

    /// How files are opened: around the page cache, or through it ([`Fault::PageCache`]).
    fn open_flags(&self) -> FopenFlags {
        if self.faults.iter().any(|f| matches!(f, Fault::PageCache)) {
            FopenFlags::FOPEN_KEEP_CACHE
        } else {
            FopenFlags::FOPEN_DIRECT_IO
        }
    }

    fn lookup(&self, parent: u64, name: &OsStr) -> Option<u64> {
        match self.live.nodes.get(&parent)? {
            Node::Dir(entries) => entries.get(name).copied(),
            Node::File(_) => None,
        }
    }
}

struct Fs(Arc<Mutex<State>>);

impl Fs {
    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

const TTL: Duration = Duration::ZERO;

impl Filesystem for Fs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let s = self.state();
        if s.dead {
            return reply.error(Errno::EIO);
        }
        match s.lookup(parent.0, name).and_then(|ino| s.attr(ino)) {
            Some(attr) => reply.entry(&TTL, &attr, Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let s = self.state();
        match s.attr(ino.0) {
            Some(attr) if !s.dead => reply.attr(&TTL, &attr),
            Some(_) => reply.error(Errno::EIO),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut s = self.state();
        if let Some(len) = size {
            if let Err(e) = s.change(false, None) {
                return reply.error(e);
            }
            s.record(Change::SetLen { ino: ino.0, len });
        } else if s.dead {
            return reply.error(Errno::EIO);
        }
        match s.attr(ino.0) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let mut s = self.state();
        if s.lookup(parent.0, name).is_some() {
            return reply.error(Errno::EEXIST);
        }
        match s.link_new(parent.0, name, true).map(|ino| s.attr(ino)) {
            Ok(Some(attr)) => reply.entry(&TTL, &attr, Generation(0)),
            Ok(None) => reply.error(Errno::ENOENT),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(parent.0, name, false, reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(parent.0, name, true, reply);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mut s = self.state();
        if s.lookup(parent.0, name).is_none() {
            return reply.error(if s.dead { Errno::EIO } else { Errno::ENOENT });
        }
        if let Err(e) = s.change(false, None) {
            return reply.error(e);
        }
        s.record(Change::Rename {
            from_dir: parent.0,
            from: name.to_owned(),
            to_dir: newparent.0,
            to: newname.to_owned(),
        });
        reply.ok();
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let s = self.state();
        match s.live.nodes.get(&ino.0) {
            _ if s.dead => reply.error(Errno::EIO),
            Some(_) => reply.opened(FileHandle(0), s.open_flags()),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let mut s = self.state();
        if s.dead {
            return reply.error(Errno::EIO);
        }
        if let Some(e) = s.fault(ino.0, false, offset, u64::from(size)) {
            return reply.error(e);
        }
        match s.live.nodes.get(&ino.0) {
            Some(Node::File(bytes)) => {
                let start = (offset as usize).min(bytes.len());
                let end = (start + size as usize).min(bytes.len());
                reply.data(&bytes[start..end]);
            }
            Some(Node::Dir(_)) => reply.error(Errno::EISDIR),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut s = self.state();
        if s.dead {
            return reply.error(Errno::EIO);
        }
        if let Some(e) = s.fault(ino.0, true, offset, data.len() as u64) {
            return reply.error(e);
        }
        let short = s.faults.iter().any(|f| matches!(f, Fault::ShortWrites));
        let data = if short && data.len() > 1 {
            s.counts.faulted += 1;
            &data[..data.len() / 2]
        } else {
            data
        };
        if let Err(e) = s.change(false, Some((ino.0, offset, data))) {
            return reply.error(e);
        }
        s.record(Change::Write {
            ino: ino.0,
            offset,
            data: data.to_vec(),
        });
        reply.written(data.len() as u32);
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.sync(ino.0, reply);
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let s = self.state();
        if s.dead {
            return reply.error(Errno::EIO);
        }
        let Some(Node::Dir(entries)) = s.live.nodes.get(&ino.0) else {
            return reply.error(Errno::ENOTDIR);
        };
        let listed = entries.iter().map(|(name, ino)| {
            let kind = match s.live.nodes.get(ino) {
                Some(Node::Dir(_)) => FileType::Directory,
                _ => FileType::RegularFile,
            };
            (*ino, kind, name.as_os_str())
        });
        let all = [
            (ino.0, FileType::Directory, OsStr::new(".")),
            (ino.0, FileType::Directory, OsStr::new("..")),
        ]
        .into_iter()
        .chain(listed);
        for (i, (ino, kind, name)) in all.enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ino), i as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.sync(ino.0, reply);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(1 << 24, 1 << 23, 1 << 23, 1 << 20, 1 << 19, 4096, 255, 4096);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let mut s = self.state();
        let ino = match s.lookup(parent.0, name) {
            Some(ino) if !s.dead => Ok(ino),
            _ => s.link_new(parent.0, name, false),
        };
        match ino.map(|ino| s.attr(ino)) {
            Ok(Some(attr)) => {
                reply.created(&TTL, &attr, Generation(0), FileHandle(0), s.open_flags());
            }
            Ok(None) => reply.error(Errno::ENOENT),
            Err(e) => reply.error(e),
        }
    }
}

impl Fs {
    fn remove(&self, parent: u64, name: &OsStr, dir: bool, reply: ReplyEmpty) {
        let mut s = self.state();
        let Some(ino) = s.lookup(parent, name) else {
            return reply.error(if s.dead { Errno::EIO } else { Errno::ENOENT });
        };
        match s.live.nodes.get(&ino) {
            Some(Node::Dir(entries)) if dir && !entries.is_empty() => {
                return reply.error(Errno::ENOTEMPTY);
            }
            Some(Node::Dir(_)) if !dir => return reply.error(Errno::EISDIR),
            Some(Node::File(_)) if dir => return reply.error(Errno::ENOTDIR),
            _ => {}
        }
        if let Err(e) = s.change(false, None) {
            return reply.error(e);
        }
        s.record(Change::Unlink {
            dir: parent,
            name: name.to_owned(),
        });
        reply.ok();
    }

    fn sync(&self, ino: u64, reply: ReplyEmpty) {
        let mut s = self.state();
        if let Err(e) = s.change(true, None) {
            return reply.error(e);
        }
        s.sync(ino);
        reply.ok();
    }
}

/// A mounted medium. Unmounted when dropped.
pub struct Medium {
    session: Option<fuser::BackgroundSession>,
    at: PathBuf,
    state: Arc<Mutex<State>>,
}

impl Medium {
    /// Mounts an empty medium at `at` (an existing, empty directory). `Err` where FUSE is not
    /// available: the caller prints why and skips.
    pub fn mount(at: &Path) -> io::Result<Medium> {
        Medium::mount_tree(at, Tree::empty())
    }

    fn mount_tree(at: &Path, tree: Tree) -> io::Result<Medium> {
        let state = Arc::new(Mutex::new(State::new(tree)));
        let mut config = fuser::Config::default();
        config.mount_options = vec![
            fuser::MountOption::FSName("abdelta-medium".into()),
            fuser::MountOption::NoAtime,
        ];
        let session = fuser::spawn_mount(Fs(state.clone()), at, &config)?;
        Ok(Medium {
            session: Some(session),
            at: at.to_path_buf(),
            state,
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where the medium is mounted.
    pub fn path(&self) -> &Path {
        &self.at
    }

    /// Makes everything written so far durable, as a clean shutdown would, and starts the
    /// counts afresh (for setting up).
    pub fn settle(&self) {
        let mut s = self.state();
        let pending = std::mem::take(&mut s.pending);
        for change in &pending {
            s.durable.apply(change);
        }
        s.counts = Counts::default();
    }

    /// Arms a power cut (changes and syncs are counted from the mount or the last
    /// [`Medium::settle`]); the write it cuts, if it cuts one, tears at `sector` bytes (512 or
    /// 4096). A cut past the last change never comes.
    pub fn crash(&self, cut: Cut, sector: u64) {
        self.state().crash = Some((cut, sector));
    }

    /// Whether the armed power cut happened.
    pub fn crashed(&self) -> bool {
        self.state().dead
    }

    /// Injects faults (replacing earlier ones; an empty list clears them).
    pub fn inject(&self, faults: Vec<Fault>) {
        self.state().faults = faults;
    }

    /// What reached the medium since it was mounted or settled.
    pub fn counts(&self) -> Counts {
        self.state().counts
    }

    /// The power goes and comes back: unmounts, and mounts again holding what was durable
    /// and each change not yet synced with probability ½ (decided by `seed`), in order.
    pub fn power_cut(mut self, seed: u64) -> io::Result<Medium> {
        self.unmount()?;
        let s = self.state();
        let mut tree = s.durable.clone();
        let mut rng = seed | 1;
        for change in &s.pending {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            if rng & 1 == 1 {
                tree.apply(change);
            }
        }
        tree.collect();
        drop(s);
        Medium::mount_tree(&self.at, tree)
    }

    fn unmount(&mut self) -> io::Result<()> {
        match self
            .session
            .take()
            .map(fuser::BackgroundSession::umount_and_join)
        {
            // The session's loop may end on the closed device with ECONNABORTED: unmounted.
            Some(Err(e)) if e.kind() != io::ErrorKind::ConnectionAborted => Err(e),
            _ => Ok(()),
        }
    }
}

impl Drop for Medium {
    fn drop(&mut self) {
        let _unmounted = self.unmount();
    }
}
