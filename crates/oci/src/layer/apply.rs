//! Applying a layer tar onto a directory.
//!
//! Every path is resolved inside the target the way a chroot would resolve
//! it: `..` entries are refused, leading `/` is dropped, symlinks met on the
//! way (in the tar or already on disk) are followed but clamped at the
//! target root, and the final component is never followed (it is replaced).
//! Hard links must point at an existing non-directory inside the target.
//! So no entry, however crafted, can create, change or link a file outside
//! the target.

use std::collections::{HashSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use filetime::FileTime;
use tar::EntryType;

use super::{
    OPAQUE_WHITEOUT, OVERLAY_OPAQUE_USER_XATTR, OVERLAY_OPAQUE_XATTR, PAX_XATTR,
    WHITEOUT_META_PREFIX, WHITEOUT_PREFIX,
};
use crate::error::{OciError, Result};

/// What to do with whiteout entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhiteoutMode {
    /// Delete what they name from the target (flattening layers into one
    /// directory, e.g. `kiln export` or a rootfs without overlay).
    #[default]
    Delete,
    /// Record them as overlayfs does (0/0 character devices and the opaque
    /// xattr) so the target can serve as an overlay lower dir. Needs root.
    Overlay,
}

/// How to apply a layer.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Whiteout handling.
    pub whiteouts: WhiteoutMode,
    /// Set owners from the tar (needs root; without it files belong to the
    /// caller and device nodes are skipped).
    pub preserve_owner: bool,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        Self {
            whiteouts: WhiteoutMode::Delete,
            preserve_owner: rustix::process::geteuid().is_root(),
        }
    }
}

/// What applying did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyStats {
    /// Entries applied (whiteouts included).
    pub entries: u64,
    /// Bytes of regular-file content written.
    pub content_bytes: u64,
    /// Device nodes skipped because the caller is not root.
    pub skipped_devices: u64,
}

/// Apply the layer tar read from `reader` onto `target` (which must exist).
pub fn apply_layer<R: Read>(reader: R, target: &Path, opts: &ApplyOptions) -> Result<ApplyStats> {
    let mut ap = Applier {
        root: target.to_path_buf(),
        opts: opts.clone(),
        created: HashSet::new(),
        dirs: Vec::new(),
        stats: ApplyStats::default(),
        buf: vec![0; 256 * 1024],
    };
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(|source| OciError::Tar {
        entry: None,
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| OciError::Tar {
            entry: None,
            source,
        })?;
        ap.entry(entry)?;
    }
    // Directory times last: creating their children changed them.
    for (dir, mtime) in ap.dirs.iter().rev() {
        filetime::set_symlink_file_times(dir, *mtime, *mtime)
            .map_err(|e| OciError::io("set times of", dir, e))?;
    }
    Ok(ap.stats)
}

struct Applier {
    root: PathBuf,
    opts: ApplyOptions,
    /// Paths (relative, resolved) this layer has written: an opaque
    /// whiteout keeps these.
    created: HashSet<PathBuf>,
    dirs: Vec<(PathBuf, FileTime)>,
    stats: ApplyStats,
    buf: Vec<u8>,
}

fn unsafe_entry(entry: &[u8], reason: &'static str) -> OciError {
    OciError::UnsafeEntry {
        entry: String::from_utf8_lossy(entry).into_owned(),
        reason,
    }
}

/// Split a tar path into its normal components; `..` is refused.
fn clean(raw: &[u8]) -> Result<Vec<OsString>> {
    let mut out = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(unsafe_entry(raw, "path contains `..`")),
            c if c.contains(&0) => return Err(unsafe_entry(raw, "path contains a NUL byte")),
            c => out.push(OsStr::from_bytes(c).to_os_string()),
        }
    }
    Ok(out)
}

struct Meta {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: FileTime,
    xattrs: Vec<(String, Vec<u8>)>,
}

impl Applier {
    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<()> {
        let raw = entry.path_bytes().into_owned();
        let kind = entry.header().entry_type();
        if !matches!(
            kind,
            EntryType::Regular
                | EntryType::Continuous
                | EntryType::Directory
                | EntryType::Symlink
                | EntryType::Link
                | EntryType::Char
                | EntryType::Block
                | EntryType::Fifo
        ) {
            // Global PAX headers and vendor extensions carry no file.
            return Ok(());
        }
        let tar_err = |source| OciError::Tar {
            entry: Some(String::from_utf8_lossy(&raw).into_owned()),
            source,
        };
        let h = entry.header();
        let old = h.as_old();
        // Empty numeric fields are zero (as Go's archive/tar reads them);
        // garbage in them is an error.
        let mut meta = Meta {
            mode: u32::try_from(
                lenient(h.mode().map(u64::from), &old.mode).map_err(tar_err)? & 0o7777,
            )
            .unwrap_or(0),
            uid: lenient(h.uid(), &old.uid).map_err(tar_err)?,
            gid: lenient(h.gid(), &old.gid).map_err(tar_err)?,
            mtime: FileTime::from_unix_time(
                i64::try_from(lenient(h.mtime(), &old.mtime).map_err(tar_err)?).unwrap_or(0),
                0,
            ),
            xattrs: Vec::new(),
        };
        if let Some(pax) = entry.pax_extensions().map_err(tar_err)? {
            for ext in pax {
                let ext = ext.map_err(tar_err)?;
                if let Ok(key) = ext.key()
                    && let Some(name) = key.strip_prefix(PAX_XATTR)
                {
                    meta.xattrs
                        .push((name.to_owned(), ext.value_bytes().to_vec()));
                }
            }
        }
        let comps = clean(&raw)?;
        let Some((name, parent)) = comps.split_last() else {
            // The root itself (`./`): take its metadata.
            if kind == EntryType::Directory {
                let root = self.root.clone();
                self.set_meta(&root, &meta, true)?;
                self.dirs.push((root, meta.mtime));
            }
            return Ok(());
        };
        let name_b = name.as_bytes();
        self.stats.entries += 1;

        if name_b == OPAQUE_WHITEOUT.as_bytes() {
            let dir = self.resolve(&raw, parent, true)?;
            return self.opaque(&dir);
        }
        if name_b.starts_with(WHITEOUT_META_PREFIX.as_bytes()) {
            // Reserved names (hard-link bookkeeping of aufs); never content.
            return Ok(());
        }
        if let Some(victim) = name_b.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            if victim.is_empty() || victim == b"." || victim == b".." {
                return Err(unsafe_entry(&raw, "whiteout names nothing"));
            }
            let dir = self.resolve(&raw, parent, true)?;
            return self.whiteout(&dir, OsStr::from_bytes(victim));
        }

        let dir = self.resolve(&raw, parent, true)?;
        let rel = dir.join(name);
        let dest = self.root.join(&rel);
        let existing = fs::symlink_metadata(&dest).ok();
        if kind == EntryType::Directory {
            match existing {
                Some(m) if m.is_dir() => {}
                Some(m) => {
                    remove(&dest, &m)?;
                    mkdir(&dest)?;
                }
                None => mkdir(&dest)?,
            }
            self.set_meta(&dest, &meta, true)?;
            self.dirs.push((dest, meta.mtime));
            self.created.insert(rel);
            return Ok(());
        }

        if kind == EntryType::Link {
            let link = entry
                .link_name_bytes()
                .ok_or_else(|| unsafe_entry(&raw, "hard link without a target"))?
                .into_owned();
            let lcomps = clean(&link)?;
            let Some((lname, lparent)) = lcomps.split_last() else {
                return Err(unsafe_entry(&raw, "hard link to the root directory"));
            };
            let ldir = self.resolve(&raw, lparent, false)?;
            let source = self.root.join(ldir.join(lname));
            let smeta = fs::symlink_metadata(&source)
                .map_err(|_| unsafe_entry(&raw, "hard link target does not exist in the layer"))?;
            if smeta.is_dir() {
                return Err(unsafe_entry(&raw, "hard link to a directory"));
            }
            if source == dest {
                return Ok(());
            }
            if let Some(m) = &existing {
                remove(&dest, m)?;
            }
            fs::hard_link(&source, &dest).map_err(|e| OciError::io("hard link", &dest, e))?;
            self.created.insert(rel);
            return Ok(());
        }

        if let Some(m) = &existing {
            remove(&dest, m)?;
        }
        match kind {
            EntryType::Regular | EntryType::Continuous => {
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits().cast_signed())
                    .open(&dest)
                    .map_err(|e| OciError::io("create", &dest, e))?;
                loop {
                    let n = entry.read(&mut self.buf).map_err(tar_err)?;
                    if n == 0 {
                        break;
                    }
                    f.write_all(&self.buf[..n])
                        .map_err(|e| OciError::io("write", &dest, e))?;
                    self.stats.content_bytes += n as u64;
                }
                drop(f);
                self.set_meta(&dest, &meta, true)?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| unsafe_entry(&raw, "symlink without a target"))?
                    .into_owned();
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &dest)
                    .map_err(|e| OciError::io("symlink", &dest, e))?;
                meta.mode = 0;
                self.set_meta(&dest, &meta, false)?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let ft = match kind {
                    EntryType::Char => rustix::fs::FileType::CharacterDevice,
                    EntryType::Block => rustix::fs::FileType::BlockDevice,
                    _ => rustix::fs::FileType::Fifo,
                };
                let h = entry.header();
                let (major, minor) = if kind == EntryType::Fifo {
                    (0, 0)
                } else {
                    (
                        h.device_major().ok().flatten().unwrap_or(0),
                        h.device_minor().ok().flatten().unwrap_or(0),
                    )
                };
                let dev = rustix::fs::makedev(major, minor);
                match rustix::fs::mknodat(
                    rustix::fs::CWD,
                    &dest,
                    ft,
                    rustix::fs::Mode::from_raw_mode(0o600),
                    dev,
                ) {
                    Ok(()) => self.set_meta(&dest, &meta, true)?,
                    Err(rustix::io::Errno::PERM)
                        if !self.opts.preserve_owner && kind != EntryType::Fifo =>
                    {
                        self.stats.skipped_devices += 1;
                        return Ok(());
                    }
                    Err(e) => return Err(OciError::io("mknod", &dest, e.into())),
                }
            }
            _ => {}
        }
        self.created.insert(rel);
        Ok(())
    }

    /// Resolve `comps` (a directory) inside the root, following symlinks
    /// as a chroot would and creating missing directories when `create`.
    /// Returns the resolved path relative to the root.
    fn resolve(&self, raw: &[u8], comps: &[OsString], create: bool) -> Result<PathBuf> {
        let mut todo: VecDeque<OsString> = comps.iter().cloned().collect();
        let mut cur = PathBuf::new();
        let mut links = 0;
        while let Some(c) = todo.pop_front() {
            match c.as_bytes() {
                b"" | b"." => continue,
                b".." => {
                    cur.pop();
                    continue;
                }
                _ => {}
            }
            let next = cur.join(&c);
            let abs = self.root.join(&next);
            match fs::symlink_metadata(&abs) {
                Ok(m) if m.file_type().is_symlink() => {
                    links += 1;
                    if links > 40 {
                        return Err(unsafe_entry(raw, "too many levels of symbolic links"));
                    }
                    let target =
                        fs::read_link(&abs).map_err(|e| OciError::io("read link", &abs, e))?;
                    if target.is_absolute() {
                        cur = PathBuf::new();
                    }
                    let parts: Vec<OsString> = target
                        .as_os_str()
                        .as_bytes()
                        .split(|&b| b == b'/')
                        .map(|p| OsStr::from_bytes(p).to_os_string())
                        .collect();
                    for p in parts.into_iter().rev() {
                        todo.push_front(p);
                    }
                }
                Ok(m) if m.is_dir() => cur = next,
                Ok(_) => {
                    return Err(unsafe_entry(raw, "a parent path is not a directory"));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                    mkdir(&abs)?;
                    cur = next;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(unsafe_entry(raw, "link target's directory does not exist"));
                }
                Err(e) => return Err(OciError::io("stat", &abs, e)),
            }
        }
        Ok(cur)
    }

    fn whiteout(&mut self, dir: &Path, victim: &OsStr) -> Result<()> {
        let dest = self.root.join(dir).join(victim);
        match self.opts.whiteouts {
            WhiteoutMode::Delete => {
                if let Ok(m) = fs::symlink_metadata(&dest) {
                    remove(&dest, &m)?;
                }
            }
            WhiteoutMode::Overlay => {
                if let Ok(m) = fs::symlink_metadata(&dest) {
                    remove(&dest, &m)?;
                }
                rustix::fs::mknodat(
                    rustix::fs::CWD,
                    &dest,
                    rustix::fs::FileType::CharacterDevice,
                    rustix::fs::Mode::empty(),
                    rustix::fs::makedev(0, 0),
                )
                .map_err(|e| OciError::io("create whiteout device", &dest, e.into()))?;
                self.created.insert(dir.join(victim));
            }
        }
        Ok(())
    }

    fn opaque(&mut self, dir: &Path) -> Result<()> {
        let abs = self.root.join(dir);
        match self.opts.whiteouts {
            WhiteoutMode::Delete => self.clear_except_created(dir),
            WhiteoutMode::Overlay => {
                let name = if rustix::process::geteuid().is_root() {
                    OVERLAY_OPAQUE_XATTR
                } else {
                    OVERLAY_OPAQUE_USER_XATTR
                };
                xattr::set(&abs, name, b"y").map_err(|e| OciError::io("mark opaque", &abs, e))
            }
        }
    }

    fn clear_except_created(&self, dir: &Path) -> Result<()> {
        let abs = self.root.join(dir);
        let rd = fs::read_dir(&abs).map_err(|e| OciError::io("read directory", &abs, e))?;
        for e in rd {
            let e = e.map_err(|e| OciError::io("read directory", &abs, e))?;
            let rel = dir.join(e.file_name());
            let path = e.path();
            let m = fs::symlink_metadata(&path).map_err(|e| OciError::io("stat", &path, e))?;
            if !self.created.contains(&rel) {
                remove(&path, &m)?;
            } else if m.is_dir() {
                self.clear_except_created(&rel)?;
            }
        }
        Ok(())
    }

    fn set_meta(&self, path: &Path, meta: &Meta, chmod: bool) -> Result<()> {
        if self.opts.preserve_owner {
            let uid = u32::try_from(meta.uid).ok();
            let gid = u32::try_from(meta.gid).ok();
            std::os::unix::fs::lchown(path, uid, gid)
                .map_err(|e| OciError::io("chown", path, e))?;
        }
        for (name, value) in &meta.xattrs {
            if let Err(e) = xattr::set(path, name, value) {
                // Without root, trusted.* and security.* cannot be set; a
                // rootless apply keeps what it can.
                if self.opts.preserve_owner {
                    return Err(OciError::io("set xattr on", path, e));
                }
            }
        }
        // chmod after chown: chown clears setuid/setgid.
        if chmod {
            fs::set_permissions(path, fs::Permissions::from_mode(meta.mode))
                .map_err(|e| OciError::io("chmod", path, e))?;
        }
        if !path_is_dir(path) {
            filetime::set_symlink_file_times(path, meta.mtime, meta.mtime)
                .map_err(|e| OciError::io("set times of", path, e))?;
        }
        Ok(())
    }
}

fn lenient(v: io::Result<u64>, raw: &[u8]) -> io::Result<u64> {
    match v {
        Ok(v) => Ok(v),
        Err(_) if raw.iter().all(|&b| b == 0 || b == b' ') => Ok(0),
        Err(e) => Err(e),
    }
}

fn path_is_dir(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok_and(|m| m.is_dir())
}

fn mkdir(p: &Path) -> Result<()> {
    match fs::create_dir(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(OciError::io("create directory", p, e)),
    }
}

fn remove(p: &Path, m: &fs::Metadata) -> Result<()> {
    let r = if m.is_dir() {
        // std's remove_dir_all never follows symlinks.
        fs::remove_dir_all(p)
    } else {
        fs::remove_file(p)
    };
    r.map_err(|e| OciError::io("remove", p, e))
}
