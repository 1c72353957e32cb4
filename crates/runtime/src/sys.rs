//! The OS calls the container set-up makes, behind one trait.
//!
//! [`RealSys`] makes the calls; [`RecordingSys`] records them as text and
//! pretends they worked, so the mount plan, the order of calls and the
//! options passed can be tested without root (the idea of youki's
//! `syscall` module).

use std::cell::RefCell;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};

/// The result of one OS call.
pub type SysResult<T> = Result<T, Errno>;

/// The OS calls the container set-up makes (see the module docs).
pub trait Sys {
    /// mount(2).
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> SysResult<()>;
    /// umount2(2).
    fn umount2(&self, target: &Path, flags: MntFlags) -> SysResult<()>;
    /// mkdir(2) with `mode`; an existing directory is fine.
    fn mkdir(&self, path: &Path, mode: u32) -> SysResult<()>;
    /// Create an empty file (a mount point); an existing one is fine.
    fn create_file(&self, path: &Path) -> SysResult<()>;
    /// symlink(2): `link` pointing at `target`.
    fn symlink(&self, target: &Path, link: &Path) -> SysResult<()>;
    /// chdir(2).
    fn chdir(&self, path: &Path) -> SysResult<()>;
    /// pivot_root(2).
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> SysResult<()>;
    /// sethostname(2).
    fn sethostname(&self, name: &str) -> SysResult<()>;
    /// Resolve `path` inside `root` as if `root` were `/` (symlinks and `..`
    /// never leave it: `openat2(RESOLVE_IN_ROOT)`), and return a path that
    /// names the result for later calls (`/proc/self/fd/N`).
    fn resolve_in_root(&self, root: &Path, path: &Path) -> SysResult<PathBuf>;
    /// Like `mkdir -p` inside `root`, each component resolved in the root.
    fn mkdir_all_in_root(&self, root: &Path, path: &Path) -> SysResult<()>;
    /// Whether `path` is a directory (following symlinks).
    fn is_dir(&self, path: &Path) -> bool;
    /// readlink(2).
    fn readlink(&self, path: &Path) -> SysResult<PathBuf>;
    /// Copy the tree at `from` into the directory `to` (owners, modes,
    /// symlinks kept) if `to` is empty; else do nothing. Seeds a volume
    /// with the image's content, like docker (only an empty volume is
    /// seeded).
    fn copy_tree(&self, from: &Path, to: &Path) -> SysResult<()>;
    /// Bring the loopback interface of the current network namespace up.
    fn loopback_up(&self) -> SysResult<()>;
}

/// The real OS calls.
#[derive(Debug, Default)]
pub struct RealSys {
    /// Descriptors behind the `/proc/self/fd/N` paths handed out by
    /// `resolve_in_root`; they stay open until exec (they are close-on-exec).
    held: RefCell<Vec<OwnedFd>>,
}

fn cstring(path: &Path) -> SysResult<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)
}

fn io_errno(err: &std::io::Error) -> Errno {
    err.raw_os_error().map_or(Errno::EIO, Errno::from_raw)
}

/// openat2(2) with `RESOLVE_IN_ROOT`.
fn openat2_in_root(dirfd: i32, path: &Path, flags: i32) -> SysResult<OwnedFd> {
    let path = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    let c = cstring(path)?;
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = u64::try_from(flags | libc::O_CLOEXEC).map_err(|_| Errno::EINVAL)?;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: `c` and `how` outlive the call; the size is the struct's.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dirfd,
            c.as_ptr(),
            &raw const how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(Errno::last());
    }
    let fd = i32::try_from(fd).map_err(|_| Errno::EBADF)?;
    // SAFETY: the kernel just returned this descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn relative(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect()
}

impl RealSys {
    fn open_root(root: &Path) -> SysResult<OwnedFd> {
        let c = cstring(root)?;
        // SAFETY: plain open of a NUL-terminated path.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(Errno::last());
        }
        // SAFETY: the kernel just returned this descriptor to us.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

impl Sys for RealSys {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> SysResult<()> {
        nix::mount::mount(source, target, fstype, flags, data)
    }

    fn umount2(&self, target: &Path, flags: MntFlags) -> SysResult<()> {
        nix::mount::umount2(target, flags)
    }

    fn mkdir(&self, path: &Path, mode: u32) -> SysResult<()> {
        match nix::unistd::mkdir(path, nix::sys::stat::Mode::from_bits_truncate(mode)) {
            Err(Errno::EEXIST) if path.is_dir() => Ok(()),
            other => other,
        }
    }

    fn create_file(&self, path: &Path) -> SysResult<()> {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map(drop)
            .map_err(|e| io_errno(&e))
    }

    fn symlink(&self, target: &Path, link: &Path) -> SysResult<()> {
        std::os::unix::fs::symlink(target, link).map_err(|e| io_errno(&e))
    }

    fn chdir(&self, path: &Path) -> SysResult<()> {
        nix::unistd::chdir(path)
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> SysResult<()> {
        nix::unistd::pivot_root(new_root, put_old)
    }

    fn sethostname(&self, name: &str) -> SysResult<()> {
        nix::unistd::sethostname(name)
    }

    fn resolve_in_root(&self, root: &Path, path: &Path) -> SysResult<PathBuf> {
        let root_fd = Self::open_root(root)?;
        let fd = openat2_in_root(root_fd.as_raw_fd(), &relative(path), libc::O_PATH)?;
        let named = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        self.held.borrow_mut().push(fd);
        Ok(named)
    }

    fn mkdir_all_in_root(&self, root: &Path, path: &Path) -> SysResult<()> {
        let root_fd = Self::open_root(root)?;
        let mut done = PathBuf::new();
        for part in relative(path).components() {
            let parent =
                openat2_in_root(root_fd.as_raw_fd(), &done, libc::O_PATH | libc::O_DIRECTORY)?;
            done.push(part);
            let name = cstring(Path::new(part.as_os_str()))?;
            // SAFETY: `parent` is an open directory and `name` one component.
            let rc = unsafe { libc::mkdirat(parent.as_raw_fd(), name.as_ptr(), 0o755) };
            if rc < 0 {
                let errno = Errno::last();
                if errno != Errno::EEXIST {
                    return Err(errno);
                }
            }
        }
        // The result must be a directory (an existing file is an error).
        openat2_in_root(root_fd.as_raw_fd(), &done, libc::O_PATH | libc::O_DIRECTORY).map(drop)
    }

    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }

    fn readlink(&self, path: &Path) -> SysResult<PathBuf> {
        std::fs::read_link(path).map_err(|e| io_errno(&e))
    }

    fn copy_tree(&self, from: &Path, to: &Path) -> SysResult<()> {
        let mut entries = std::fs::read_dir(to).map_err(|e| io_errno(&e))?;
        if entries.next().is_some() {
            return Ok(());
        }
        // `from` is a `/proc/self/fd/N` link: "/." makes the walk follow it.
        // Only a directory is seeded (docker copies nothing onto a file).
        let from = from.join(".");
        if !from.is_dir() {
            return Ok(());
        }
        copy_tree(&from, to).map_err(|e| io_errno(&e))
    }

    fn loopback_up(&self) -> SysResult<()> {
        crate::net::loopback_up()
    }
}

/// Copy a tree, keeping owners, modes and symlinks (files are copied, not
/// linked: the source is an overlay that goes away).
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::symlink_metadata(from)?;
    let ft = meta.file_type();
    if ft.is_dir() {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
    } else if ft.is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(from)?, to)?;
    } else if ft.is_file() {
        std::fs::copy(from, to)?;
    } else {
        // Devices, fifos and sockets are not seeded (docker copies regular
        // content only).
        return Ok(());
    }
    std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid()))?;
    if !ft.is_symlink() {
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    }
    Ok(())
}

/// Records every call as a line of text and pretends it worked.
///
/// `resolve_in_root` answers `root` + `path`; `is_dir` answers true for
/// paths that do not look like files (`/proc/kcore`, … are listed in
/// `files`).
#[derive(Debug, Default)]
pub struct RecordingSys {
    calls: RefCell<Vec<String>>,
    /// Paths `is_dir` reports as files.
    pub files: Vec<PathBuf>,
    /// Paths `resolve_in_root` reports as missing (ENOENT).
    pub missing: Vec<PathBuf>,
}

impl RecordingSys {
    /// A recorder that reports `files` as files and `missing` as absent.
    pub fn new(files: &[&str], missing: &[&str]) -> Self {
        RecordingSys {
            calls: RefCell::default(),
            files: files.iter().map(PathBuf::from).collect(),
            missing: missing.iter().map(PathBuf::from).collect(),
        }
    }

    /// The calls so far, one line each.
    pub fn calls(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }

    fn record(&self, line: String) {
        self.calls.borrow_mut().push(line);
    }
}

impl Sys for RecordingSys {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> SysResult<()> {
        self.record(format!(
            "mount {} {} {} {:?} {}",
            source.map_or("-".into(), |s| s.display().to_string()),
            target.display(),
            fstype.unwrap_or("-"),
            flags,
            data.unwrap_or("-"),
        ));
        Ok(())
    }

    fn umount2(&self, target: &Path, flags: MntFlags) -> SysResult<()> {
        self.record(format!("umount2 {} {flags:?}", target.display()));
        Ok(())
    }

    fn mkdir(&self, path: &Path, mode: u32) -> SysResult<()> {
        self.record(format!("mkdir {} {mode:o}", path.display()));
        Ok(())
    }

    fn create_file(&self, path: &Path) -> SysResult<()> {
        self.record(format!("create {}", path.display()));
        Ok(())
    }

    fn symlink(&self, target: &Path, link: &Path) -> SysResult<()> {
        self.record(format!(
            "symlink {} -> {}",
            link.display(),
            target.display()
        ));
        Ok(())
    }

    fn chdir(&self, path: &Path) -> SysResult<()> {
        self.record(format!("chdir {}", path.display()));
        Ok(())
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> SysResult<()> {
        self.record(format!(
            "pivot_root {} {}",
            new_root.display(),
            put_old.display()
        ));
        Ok(())
    }

    fn sethostname(&self, name: &str) -> SysResult<()> {
        self.record(format!("sethostname {name}"));
        Ok(())
    }

    fn resolve_in_root(&self, root: &Path, path: &Path) -> SysResult<PathBuf> {
        if self.missing.iter().any(|m| m == path) {
            return Err(Errno::ENOENT);
        }
        Ok(root.join(relative(path)))
    }

    fn mkdir_all_in_root(&self, root: &Path, path: &Path) -> SysResult<()> {
        self.record(format!(
            "mkdir_all_in_root {} {}",
            root.display(),
            path.display()
        ));
        Ok(())
    }

    fn is_dir(&self, path: &Path) -> bool {
        !self.files.iter().any(|f| path.ends_with(relative(f)))
    }

    fn readlink(&self, path: &Path) -> SysResult<PathBuf> {
        self.record(format!("readlink {}", path.display()));
        Ok(PathBuf::from("/dev/pts/7"))
    }

    fn copy_tree(&self, from: &Path, to: &Path) -> SysResult<()> {
        self.record(format!("copy_tree {} {}", from.display(), to.display()));
        Ok(())
    }

    fn loopback_up(&self) -> SysResult<()> {
        self.record("loopback_up".into());
        Ok(())
    }
}
