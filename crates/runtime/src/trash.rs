//! The trash (`<state>/trash`): disk dirs of finished runs waiting to be
//! removed, and the detached reaper process that removes them.
//!
//! On a disk that discards freed blocks synchronously (ext4 mounted
//! `discard`), removing a run's five directories (upper, work and the
//! overlay's work/work, incompat, volatile) takes longer than the run
//! itself. Nothing needs to wait for it: a rename into the trash frees no
//! block, and once renamed no run can meet the directories again.
//!
//! Every entry is named `<pid>-<n>` after the process that removes it: a
//! RUN step's entries after the build process (its reaper thread, see
//! [`crate::prepare`]), a `kiln run` container's after the detached reaper
//! that kiln (or its helper) forks once the container is gone
//! (`hand_off`). An entry whose process is gone is an orphan (that process
//! was killed): any reaper sweeps orphans, and [`crate::Runtime::open`]
//! starts one (`spawn_if_orphans`, `kiln __reap TRASH`) when it finds
//! orphans; it waits for a reaper at work to finish. So the trash holds
//! only what live processes are removing, plus what killed ones left until
//! the next kiln starts.
//!
//! Reapers take an exclusive `flock` on `<state>/trash.lock` while they
//! sweep, so two never remove the same tree at once; one that gives up
//! because another holds the lock is covered by the holder, which looks
//! again after releasing it.

use std::fs::File;
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};
use nix::unistd::ForkResult;

/// The hidden first argument that turns `kiln` into a trash reaper
/// (`kiln __reap TRASH-DIR`).
pub const REAPER_ARG: &str = "__reap";

/// The process name (`comm`) of a reaper that `hand_off` forks.
pub const REAPER_NAME: &std::ffi::CStr = c"kiln-reaper";

/// The lock reapers hold while they sweep (`<state>/trash.lock`).
fn lock_path(trash: &Path) -> PathBuf {
    trash.with_extension("lock")
}

fn open_lock(trash: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path(trash))
}

/// Take the reapers' lock for the trash dir `trash`, waiting for it: no
/// reaper sweeps while the returned file is open (tests hold it to keep a
/// reaper waiting).
pub fn hold_lock(trash: &Path) -> std::io::Result<File> {
    let lock = open_lock(trash)?;
    if flock(&lock, libc::LOCK_EX) {
        Ok(lock)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn flock(file: &File, op: libc::c_int) -> bool {
    // SAFETY: flock on a descriptor we own.
    unsafe { libc::flock(file.as_raw_fd(), op) == 0 }
}

/// Whether the process whose id starts `name` (`PID-…`) is alive.
pub(crate) fn pid_alive(name: &str) -> bool {
    let pid = name.split('-').next().unwrap_or_default();
    !pid.is_empty()
        && pid.bytes().all(|b| b.is_ascii_digit())
        && Path::new("/proc").join(pid).exists()
}

/// The trash entries whose process is gone.
pub fn orphans(trash: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(trash) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| !pid_alive(&e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .collect()
}

/// Remove `own` (entries this process was handed) and every orphan, under
/// the trash lock (waiting for it). Then, with the lock released, look
/// again: orphans that appeared meanwhile are swept too, unless another
/// reaper holds the lock by then (and will look again itself).
pub fn reap(trash: &Path, own: &[PathBuf]) {
    let Ok(lock) = open_lock(trash) else {
        // No lock file (the state dir is gone or read-only): our own
        // entries still go.
        for dir in own {
            let _ = std::fs::remove_dir_all(dir);
        }
        return;
    };
    let mut locked = flock(&lock, libc::LOCK_EX);
    for dir in own {
        let _ = std::fs::remove_dir_all(dir);
    }
    while locked {
        loop {
            let found = orphans(trash);
            if found.is_empty() {
                break;
            }
            for dir in found {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        flock(&lock, libc::LOCK_UN);
        locked = !orphans(trash).is_empty() && flock(&lock, libc::LOCK_EX | libc::LOCK_NB);
    }
}

/// The reaper's entry point (`kiln __reap TRASH`): detach from the
/// caller's session, sweep the orphans, exit 0.
pub fn main(trash: &Path) -> i32 {
    let _ = nix::unistd::setsid();
    reap(trash, &[]);
    0
}

/// Start a detached reaper (`helper __reap TRASH`) when the trash holds
/// orphans. Returns whether one was started. It waits for the lock, so a
/// reaper at work is not disturbed; the lock is not tried here, because a
/// holder need not be a reaper that will look again (a process forked
/// from one that had the lock open holds it until it execs).
/// The child is waited for on a thread, so a long-lived caller keeps no
/// zombie.
pub(crate) fn spawn_if_orphans(trash: &Path, helper: &Path) -> bool {
    if orphans(trash).is_empty() {
        return false;
    }
    let child = Command::new(helper)
        .arg(REAPER_ARG)
        .arg(trash)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match child {
        Ok(mut child) => {
            let _ = std::thread::Builder::new()
                .name("kiln-reaper-wait".into())
                .spawn(move || child.wait());
            true
        }
        Err(_) => false,
    }
}

/// Hand the directories `dirs` to a detached reaper process and return at
/// once: fork a child, rename the directories into the trash under the
/// child's pid, and let the child remove them after this process is gone.
/// Directories that cannot be moved are removed here, before returning, and
/// so are directories on a tmpfs (removing them is cheaper than a fork).
///
/// Only for a single-threaded process (the runtime helper at its very end,
/// or `kiln run` once its container is gone): the reaper first closes every
/// descriptor it inherited (its stdio becomes `/dev/null`), so it keeps
/// nothing of kiln's open — no pipe a caller waits on for EOF, no lock that
/// marks the container as running.
pub(crate) fn hand_off(trash: &Path, dirs: &[PathBuf]) {
    let dirs: Vec<&PathBuf> = dirs
        .iter()
        .filter(|d| std::fs::symlink_metadata(d).is_ok())
        .collect();
    if dirs.is_empty() {
        return;
    }
    let remove_here = |dirs: &[&PathBuf]| {
        for dir in dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    };
    // On a tmpfs removing a run's few empty directories costs less than
    // forking a reaper.
    let on_tmpfs = nix::sys::statfs::statfs(dirs[0].as_path())
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC);
    if on_tmpfs || std::fs::create_dir_all(trash).is_err() {
        return remove_here(&dirs);
    }
    let Ok((ready_r, ready_w)) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) else {
        return remove_here(&dirs);
    };
    // A fork of `kiln run` carries its command line: the name says what it
    // is (`ps -o comm`, top). Set before the fork, so the reaper has it
    // from its first instruction, and put back in the parent.
    let name = nix::sys::prctl::get_name().ok();
    let _ = nix::sys::prctl::set_name(REAPER_NAME);
    // SAFETY: the caller is single-threaded: the child may allocate and
    // use the file system like any process.
    let forked = unsafe { nix::unistd::fork() };
    if let (Some(name), Ok(ForkResult::Parent { .. }) | Err(_)) = (&name, &forked) {
        let _ = nix::sys::prctl::set_name(name);
    }
    match forked {
        Err(_) => remove_here(&dirs),
        Ok(ForkResult::Child) => {
            detach_descriptors(ready_r.as_raw_fd());
            // Closed with the rest (the Rust object is not dropped).
            std::mem::forget(ready_w);
            // EOF once the parent has moved the directories (or died).
            let mut buf = [0u8; 1];
            while matches!(
                nix::unistd::read(&ready_r, &mut buf),
                Err(nix::errno::Errno::EINTR)
            ) {}
            drop(ready_r);
            let _ = nix::unistd::setsid();
            let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
            let me = std::process::id();
            let own: Vec<PathBuf> = (0..dirs.len())
                .map(|i| trash.join(format!("{me}-{i}")))
                .collect();
            reap(trash, &own);
            // SAFETY: leave without running the helper's destructors.
            unsafe { libc::_exit(0) }
        }
        Ok(ForkResult::Parent { child }) => {
            drop(ready_r);
            for (i, dir) in dirs.iter().enumerate() {
                if std::fs::rename(dir, trash.join(format!("{child}-{i}"))).is_err() {
                    let _ = std::fs::remove_dir_all(dir);
                }
            }
            drop(ready_w);
        }
    }
}

/// In a forked reaper: point stdin, stdout and stderr at `/dev/null` and
/// close every other descriptor but `keep` (the reaper's own pipe, which
/// `pipe2` put above the standard three when they were open).
fn detach_descriptors(keep: RawFd) {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .ok()
        .map(IntoRawFd::into_raw_fd);
    for fd in 0..3 {
        if fd == keep || Some(fd) == null {
            continue;
        }
        match null {
            // SAFETY: dup2 onto the standard descriptors.
            Some(null) => unsafe { libc::dup2(null, fd) },
            // SAFETY: closes a standard descriptor in the reaper.
            None => unsafe { libc::close(fd) },
        };
    }
    if let Some(null) = null.filter(|n| *n >= 3) {
        // SAFETY: the descriptor was opened above and is owned by nothing.
        unsafe { libc::close(null) };
    }
    let keep = libc::c_uint::try_from(keep).unwrap_or(0);
    // SAFETY: closes inherited descriptors in the reaper, which owns no
    // Rust object for them beyond `keep` (its parent's objects are never
    // dropped here: the reaper leaves by `_exit`).
    unsafe {
        if keep >= 3 {
            libc::close_range(3, keep - 1, 0);
        }
        libc::close_range(keep.max(2) + 1, libc::c_uint::MAX, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reaper_removes_its_own_entries_and_orphans_but_not_live_ones() {
        let state = tempfile::tempdir().unwrap();
        let trash = state.path().join("trash");
        let me = std::process::id();
        let own = trash.join("424242424-0");
        let orphan = trash.join("999999999-1");
        let live = trash.join(format!("{me}-7"));
        for d in [&own, &orphan, &live] {
            std::fs::create_dir_all(d.join("work/incompat/volatile")).unwrap();
        }
        assert_eq!(
            orphans(&trash).len(),
            2,
            "own is an orphan too (no such pid)"
        );
        reap(&trash, std::slice::from_ref(&own));
        assert!(!own.exists());
        assert!(!orphan.exists());
        assert!(live.is_dir(), "a live process removes its own");
        assert!(orphans(&trash).is_empty());
    }

    #[test]
    fn a_reaper_starts_for_orphans_only_and_even_while_the_lock_is_held() {
        let state = tempfile::tempdir().unwrap();
        let trash = state.path().join("trash");
        assert!(
            !spawn_if_orphans(&trash, Path::new("/bin/true")),
            "no trash"
        );
        // An entry of a live process is no orphan.
        std::fs::create_dir_all(trash.join(format!("{}-0", std::process::id()))).unwrap();
        assert!(!spawn_if_orphans(&trash, Path::new("/bin/true")));
        // The lock's holder may be no reaper (a fork that has not exec'd
        // yet): the new reaper waits for the lock instead of giving up.
        std::fs::create_dir_all(trash.join("999999999-0")).unwrap();
        let _lock = hold_lock(&trash).unwrap();
        assert!(spawn_if_orphans(&trash, Path::new("/bin/true")));
    }
}
