//! `reap_detached` runs (`kiln run`): the helper hands the run's disk dirs
//! to a detached reaper through the trash; nothing waits for their
//! removal, and nothing stays for good, even when the reaper is killed.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use kiln_runtime::{ContainerConfig, Outcome};

use crate::support::{
    busybox_rootfs, names, pids_with_cmdline, require_root, run_leftovers, runtime, sh, wait_until,
};

/// A state dir on a disk (the target dir's temp dir): on a tmpfs the
/// helper removes the dirs itself, which is cheaper than a reaper.
fn disk_state() -> tempfile::TempDir {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    assert!(
        !is_tmpfs(dir.path()),
        "these tests need the target dir on a disk, not a tmpfs"
    );
    dir
}

fn is_tmpfs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
}

/// Hold the reapers' lock: a reaper started meanwhile waits for it.
fn hold_trash_lock(state: &Path) -> File {
    kiln_runtime::trash::hold_lock(&state.join("trash")).unwrap()
}

/// Run `script` in a detached-reaping container; returns the outcome, the
/// output (read to EOF: nothing may hold stdout once the helper is gone)
/// and the run's upper dir.
fn run_detached(
    rt: &kiln_runtime::Runtime,
    lower: &Path,
    script: &str,
) -> (Outcome, Output, PathBuf) {
    let config = ContainerConfig {
        lowers: vec![lower.to_owned()],
        argv: sh(script),
        reap_detached: true,
        ..ContainerConfig::default()
    };
    let mut prepared = rt.prepare(&config).unwrap();
    let upper = prepared.upper();
    let mut cmd = prepared.command();
    cmd.stdin(Stdio::null()).stdout(Stdio::piped());
    let child = cmd.spawn().unwrap();
    prepared.started();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    let output = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the helper's stdout reaches EOF while its reaper still works")
        .unwrap();
    let outcome = prepared.outcome(&output.status).unwrap();
    drop(prepared);
    (outcome, output, upper)
}

/// The pids of the reapers that own the trash's entries (`PID-N`).
fn owners(trash: &Path) -> Vec<i32> {
    let mut pids: Vec<i32> = names(trash)
        .iter()
        .filter_map(|n| n.split('-').next()?.parse().ok())
        .collect();
    pids.dedup();
    pids
}

fn alive(pid: i32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

#[test]
fn a_detached_run_moves_its_dirs_to_the_trash_and_its_reaper_empties_it_needs_root() {
    require_root();
    let lower = busybox_rootfs();
    let state = disk_state();
    let rt = runtime(state.path());
    let lock = hold_trash_lock(state.path());
    let (outcome, output, upper) = run_detached(
        &rt,
        lower.path(),
        "mkdir -p /a/b && echo data > /a/b/f && rm /bin/ls && echo ran",
    );
    assert_eq!(outcome, Outcome::Exited { code: 0 });
    assert_eq!(String::from_utf8_lossy(&output.stdout), "ran\n");
    // Gone from the state at once, although the reaper cannot start yet.
    assert!(!upper.exists(), "{upper:?}");
    assert_eq!(run_leftovers(state.path()), Vec::<PathBuf>::new());
    let trash = state.path().join("trash");
    let reapers = owners(&trash);
    assert_eq!(reapers.len(), 1, "{:?}", names(&trash));
    assert!(alive(reapers[0]), "the reaper waits for the lock");
    assert_eq!(
        names(&trash).len(),
        2,
        "upper and work: {:?}",
        names(&trash)
    );
    drop(lock);
    wait_until("the reaper to empty the trash", || names(&trash).is_empty());
    wait_until("the reaper to exit", || !alive(reapers[0]));
    // Runs in a row never pile up: each run's reaper removes its own.
    for _ in 0..5 {
        let (outcome, _, _) = run_detached(&rt, lower.path(), "echo x > /y");
        assert_eq!(outcome, Outcome::Exited { code: 0 });
        assert!(names(&trash).len() <= 10, "{:?}", names(&trash));
    }
    wait_until("the trash to be empty again", || names(&trash).is_empty());
    assert_eq!(run_leftovers(state.path()), Vec::<PathBuf>::new());
}

#[test]
fn trash_of_a_reaper_killed_before_it_removed_anything_is_reclaimed_at_the_next_start_needs_root() {
    require_root();
    let lower = busybox_rootfs();
    let state = disk_state();
    let rt = runtime(state.path());
    let lock = hold_trash_lock(state.path());
    let (outcome, _, _) = run_detached(&rt, lower.path(), "echo x > /y");
    assert_eq!(outcome, Outcome::Exited { code: 0 });
    let trash = state.path().join("trash");
    let reapers = owners(&trash);
    assert_eq!(reapers.len(), 1, "{:?}", names(&trash));
    let entries = names(&trash);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(reapers[0]),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_until("the killed reaper to be gone", || !alive(reapers[0]));
    drop(lock);
    assert_eq!(names(&trash), entries, "nobody has removed them yet");
    // The next runtime to open starts a reaper for the orphans.
    drop(rt);
    let _rt = runtime(state.path());
    wait_until("the orphans to be reaped", || names(&trash).is_empty());
    wait_until("no reaper to be left", || {
        pids_with_cmdline(&format!("__reap {}", trash.display())).is_empty()
    });
}

#[test]
fn on_a_tmpfs_the_helper_removes_the_dirs_itself_needs_root() {
    require_root();
    let lower = busybox_rootfs();
    let state = tempfile::tempdir_in("/dev/shm").unwrap();
    assert!(
        is_tmpfs(state.path()),
        "/dev/shm must be a tmpfs for this test"
    );
    let rt = runtime(state.path());
    // A reaper would wait for this lock, and its entries would show.
    let _lock = hold_trash_lock(state.path());
    let (outcome, output, upper) = run_detached(&rt, lower.path(), "echo x > /y; echo ran");
    assert_eq!(outcome, Outcome::Exited { code: 0 });
    assert_eq!(String::from_utf8_lossy(&output.stdout), "ran\n");
    assert!(!upper.exists(), "{upper:?}");
    assert_eq!(run_leftovers(state.path()), Vec::<PathBuf>::new());
    let trash = state.path().join("trash");
    assert!(
        !trash.exists() || names(&trash).is_empty(),
        "{:?}",
        names(&trash)
    );
}
