//! Atomic writes and file locks.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::error::{Result, StoreError};

/// Write `data` to `path` atomically: temp file beside it, fsync, rename,
/// fsync of the directory.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| StoreError::io("create temp file in", dir, e))?;
    tmp.write_all(data)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| StoreError::io("write", tmp.path().to_path_buf(), e))?;
    tmp.persist(path)
        .map_err(|e| StoreError::io("rename into place", path, e.error))?;
    sync_dir(dir)
}

/// fsync a directory so a rename in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| StoreError::io("sync directory", dir, e))
}

/// An advisory lock on a file (flock), released on drop.
#[derive(Debug)]
pub struct LockGuard {
    file: File,
}

impl LockGuard {
    /// The locked file; the lock lasts as long as it (or a duplicate of its
    /// descriptor) stays open.
    pub(crate) fn into_file(self) -> File {
        self.file
    }

    /// The locked file.
    pub(crate) fn file(&self) -> &File {
        &self.file
    }
}

pub(crate) fn lock(path: &Path, exclusive: bool, wait: bool) -> Result<Option<LockGuard>> {
    use rustix::fs::FlockOperation as Op;
    let file = fs_err::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| StoreError::io("open lock file", path, e))?
        .into_parts()
        .0;
    let op = match (exclusive, wait) {
        (true, true) => Op::LockExclusive,
        (true, false) => Op::NonBlockingLockExclusive,
        (false, true) => Op::LockShared,
        (false, false) => Op::NonBlockingLockShared,
    };
    loop {
        match rustix::fs::flock(&file, op) {
            Ok(()) => return Ok(Some(LockGuard { file })),
            Err(rustix::io::Errno::WOULDBLOCK) => return Ok(None),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(StoreError::io("lock", path, e.into())),
        }
    }
}
