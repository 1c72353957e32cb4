//! The parent side of a run: the runtime's state directory, one run
//! directory per container, the stubs lower dirs shared between runs
//! (`<state>/stubs`), the lifeline pipe, the helper command, and cleaning up
//! after runs that a killed kiln left behind.
//!
//! ```text
//! RUNS/<id>/            on a tmpfs when there is one (see below)
//!   lock                flock held by kiln and the helper while the run lives
//!   0 1 …               short links to the lower dirs (stubs last)
//!   merged/             the overlay's mount point (in the container's namespace)
//!   hosts resolv.conf hostname secrets/ spec.json result.json
//! <state>/upper/<id>/   the upper dir: on the state's file system, so that a
//! <state>/work/<id>/    RUN step's layer is persisted by a rename
//! <state>/volumes/<id>/ anonymous volumes
//! <state>/trash/<pid>-<n>/ finished runs' disk dirs, being removed by the
//!                       process <pid> (see [`crate::trash`]); trash.lock
//! <state>/stubs/<key>/  mount points shared by runs with the same set
//! ```
//!
//! RUNS is `<state>/runs` when the state dir is on a tmpfs; else a directory
//! of this state dir's own in `/run` or `/dev/shm` when one of them is a
//! tmpfs (`kiln-<uid>-<key>`, made 0700 and checked to be ours), else
//! `<state>/runs`. Creating and removing a run's small files and directories
//! on a disk costs more than the rest of a run: on an ext4 mounted with
//! `discard` every freed block is discarded synchronously.

use std::collections::BTreeSet;
use std::fs::File;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use nix::fcntl::OFlag;

use crate::error::{Result, RuntimeError};
use crate::helper::{HELPER_ARG, Outcome};
use crate::rootfs::RUNTIME_MOUNT_POINTS;
use crate::spec::{self, ContainerSpec, Mount, MountKind, Network, Process, Rootfs};
use crate::trash::pid_alive;

/// A secret the process can read as a file (BuildKit's `--mount=type=secret`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secret {
    /// Absolute path inside the container (`/run/secrets/<id>` by default).
    pub target: String,
    /// The content.
    pub data: Vec<u8>,
    /// File mode (BuildKit's default is 0400).
    pub mode: u32,
    /// Owner uid and gid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
}

/// What to run and how: shared by RUN steps and `kiln run`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerConfig {
    /// Lower directories (image or snapshot layers), top first.
    pub lowers: Vec<PathBuf>,
    /// The command and its arguments (already resolved from shell or exec
    /// form, entrypoint and cmd).
    pub argv: Vec<String>,
    /// `KEY=VALUE` pairs.
    pub env: Vec<String>,
    /// Working directory (created if missing); empty means `/`.
    pub cwd: String,
    /// `user[:group]`, empty for root.
    pub user: String,
    /// Hostname.
    pub hostname: String,
    /// Network namespace.
    pub network: Network,
    /// Extra mounts, targets absolute (checked by [`spec::check_target`]).
    pub mounts: Vec<Mount>,
    /// Secrets, mounted read-only as files.
    pub secrets: Vec<Secret>,
    /// stdin is a terminal.
    pub tty: bool,
    /// Run kiln's minimal init as PID 1.
    pub init: bool,
    /// Read-only root filesystem.
    pub readonly_rootfs: bool,
    /// Capabilities kept (see [`crate::caps::compute`]).
    pub capabilities: Vec<String>,
    /// `--privileged`.
    pub privileged: bool,
    /// Leave the image's `/etc/hostname` alone instead of mounting a
    /// generated one (BuildKit's RUN steps mount only `/etc/hosts` and
    /// `/etc/resolv.conf`; a step may delete or replace `/etc/hostname`).
    pub keep_hostname_file: bool,
    /// Have the helper hand the run's disk dirs (upper, work, anonymous
    /// volumes) to a detached reaper once the container is gone, instead of
    /// leaving their removal to the caller (see [`crate::trash`]): for
    /// `kiln run`, which should exit as soon as the container is gone, not
    /// once a slow disk has freed its directories. A RUN step keeps its
    /// upper dir, so it leaves this off.
    pub reap_detached: bool,
}

/// Where the runtime keeps its run directories (`<store root>/runtime`).
#[derive(Debug, Clone)]
pub struct Runtime {
    state: PathBuf,
    runs: PathBuf,
    helper: PathBuf,
    reaper: Arc<Reaper>,
}

/// Removes the disk dirs of finished RUN steps on a thread of its own:
/// on a disk that discards freed blocks synchronously, removing a run's
/// five directories (upper, work and the overlay's work/work, incompat,
/// volatile) can take longer than the run, and nothing waits for it. The
/// dirs are first renamed into `<state>/trash/<pid>-<n>` (cheap, and no
/// later run can meet them); the thread starts with the first removal and
/// is joined when the last clone of the [`Runtime`] goes, so a process that
/// ends normally leaves nothing behind. A killed one's trash is removed by
/// a detached reaper that the next [`Runtime::open`] starts (see
/// [`crate::trash`]).
#[derive(Debug)]
struct Reaper {
    trash: PathBuf,
    queue: Mutex<Option<(Sender<PathBuf>, JoinHandle<()>)>>,
    /// A tmpfs runs dir, removed (when empty) with the last clone.
    runs: Option<PathBuf>,
}

impl Reaper {
    fn new(trash: PathBuf) -> Self {
        Reaper {
            trash,
            queue: Mutex::new(None),
            runs: None,
        }
    }

    /// Remove `dirs` soon; inline when they cannot be moved to the trash.
    fn remove(&self, dirs: &[PathBuf]) {
        for dir in dirs {
            let dest = self.trash.join(format!(
                "{}-{}",
                std::process::id(),
                NEXT_RUN.fetch_add(1, Ordering::Relaxed)
            ));
            let moved = match std::fs::rename(dir, &dest) {
                Ok(()) => true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if !dir.exists() {
                        continue; // persisted, or never made
                    }
                    std::fs::create_dir_all(&self.trash).is_ok()
                        && std::fs::rename(dir, &dest).is_ok()
                }
                Err(_) => false,
            };
            if !moved || !self.send(dest.clone()) {
                let _ = std::fs::remove_dir_all(if moved { &dest } else { dir });
            }
        }
    }

    fn send(&self, dir: PathBuf) -> bool {
        let Ok(mut queue) = self.queue.lock() else {
            return false;
        };
        if queue.is_none() {
            let (tx, rx) = std::sync::mpsc::channel::<PathBuf>();
            let Ok(thread) = std::thread::Builder::new()
                .name("kiln-reaper".into())
                .spawn(move || {
                    for dir in rx {
                        let _ = std::fs::remove_dir_all(dir);
                    }
                })
            else {
                return false;
            };
            *queue = Some((tx, thread));
        }
        queue.as_ref().is_some_and(|(tx, _)| tx.send(dir).is_ok())
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        let queue = self.queue.get_mut().ok().and_then(Option::take);
        if let Some((tx, thread)) = queue {
            drop(tx);
            let _ = thread.join();
        }
        if let Some(runs) = &self.runs {
            let _ = std::fs::remove_dir(runs);
        }
    }
}

static NEXT_RUN: AtomicU64 = AtomicU64::new(0);

fn lock_exclusive(file: &File, wait: bool) -> bool {
    let mut op = libc::LOCK_EX;
    if !wait {
        op |= libc::LOCK_NB;
    }
    // SAFETY: flock on a descriptor we own.
    unsafe { libc::flock(file.as_raw_fd(), op) == 0 }
}

impl Runtime {
    /// Open (creating) the state directory and clean up what runs of a
    /// killed kiln left there. `helper` is the executable that dispatches
    /// [`HELPER_ARG`] (kiln itself: `/proc/self/exe`).
    pub fn open(state_dir: &Path, helper: &Path) -> Result<Runtime> {
        fs_err::create_dir_all(state_dir)?;
        let state = std::fs::canonicalize(state_dir).map_err(|e| fs_err_io(&e, state_dir))?;
        let runs = runs_location(&state);
        let mut reaper = Reaper::new(state.join("trash"));
        if runs != state.join("runs") {
            reaper.runs = Some(runs.clone());
        }
        let rt = Runtime {
            reaper: Arc::new(reaper),
            state,
            runs,
            helper: helper.to_owned(),
        };
        rt.clean_stale()?;
        Ok(rt)
    }

    /// The directory holding one directory per run (on a tmpfs when there
    /// is one, see the module doc). It exists only while runs do.
    pub fn runs_dir(&self) -> PathBuf {
        self.runs.clone()
    }

    /// The run dirs of older kiln versions, which lived in the state dir.
    fn legacy_runs_dir(&self) -> PathBuf {
        self.state.join("runs")
    }

    /// The stubs lower dir for this set of mount points, shared by every
    /// run with the same set (`<state>/stubs/<key>`, made once, never
    /// changed): creating and removing a dozen inodes per run costs more
    /// than the rest of a run on a disk. `<key>.points` beside it lists the
    /// points, so a hash collision is noticed (and answered with a new
    /// directory under another key).
    fn shared_stubs(&self, points: &[(PathBuf, bool)]) -> Result<PathBuf> {
        let base = self.state.join("stubs");
        fs_err::create_dir_all(&base)?;
        let (manifest, mut key) = stubs_key(points);
        loop {
            let dir = base.join(format!("{key:016x}"));
            let list = base.join(format!("{key:016x}.points"));
            match std::fs::read_to_string(&list) {
                Ok(existing) if existing == manifest && dir.is_dir() => return Ok(dir),
                Ok(existing) if existing != manifest => {
                    key = key.wrapping_add(1);
                    continue;
                }
                _ => {}
            }
            // Made in a private temp dir, then renamed: a directory under
            // its key is always complete.
            let tmp = base.join(format!(
                ".tmp-{}-{}",
                std::process::id(),
                NEXT_RUN.fetch_add(1, Ordering::Relaxed)
            ));
            fs_err::create_dir(&tmp)?;
            make_stubs(&tmp, points)?;
            let list_tmp = tmp.with_extension("points");
            fs_err::write(&list_tmp, &manifest)?;
            fs_err::rename(&list_tmp, &list)?;
            if std::fs::rename(&tmp, &dir).is_err() {
                // Another run made it first.
                let _ = std::fs::remove_dir_all(&tmp);
            }
            if dir.is_dir() {
                return Ok(dir);
            }
        }
    }

    /// Remove run directories whose owner is gone (their lock is free),
    /// unmounting anything still mounted below them first.
    pub fn clean_stale(&self) -> Result<usize> {
        let mut removed = 0;
        let mut runs_dirs = vec![self.runs.clone()];
        if self.legacy_runs_dir() != self.runs {
            runs_dirs.push(self.legacy_runs_dir());
        }
        for runs in &runs_dirs {
            let Ok(entries) = std::fs::read_dir(runs) else {
                continue;
            };
            for entry in entries.flatten() {
                let dir = entry.path();
                let Ok(lock) = File::open(dir.join("lock")) else {
                    // A run directory is created with its lock file; one
                    // without is a half-created leftover, unless its maker is
                    // still between the two steps.
                    if !owner_alive(&dir) {
                        self.remove_run(&dir);
                        removed += 1;
                    }
                    continue;
                };
                if lock_exclusive(&lock, false) {
                    self.remove_run(&dir);
                    removed += 1;
                }
            }
        }
        // What reapers that were killed left in the trash: a detached
        // reaper removes it (no caller waits for that).
        if crate::trash::spawn_if_orphans(&self.reaper.trash, &self.helper) {
            removed += 1;
        }
        // Upper, work and volume dirs whose run dir is gone (a reboot
        // emptied the tmpfs, or kiln died between making the two), unless
        // their maker is still alive.
        for sub in DISK_DIRS {
            let Ok(entries) = std::fs::read_dir(self.state.join(sub)) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if !self.runs.join(&*name).exists() && !pid_alive(&name) {
                    let _ = std::fs::remove_dir_all(entry.path());
                    removed += 1;
                }
            }
        }
        // A tmpfs runs dir that stale runs left empty.
        if self.runs != self.legacy_runs_dir() {
            let _ = std::fs::remove_dir(&self.runs);
        }
        // Stubs being made by a process that died (named `.tmp-PID-N`).
        if let Ok(entries) = std::fs::read_dir(self.state.join("stubs")) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some(rest) = name.strip_prefix(".tmp-")
                    && !pid_alive(rest)
                {
                    let path = entry.path();
                    let _ = if path.is_dir() {
                        std::fs::remove_dir_all(&path)
                    } else {
                        std::fs::remove_file(&path)
                    };
                }
            }
        }
        Ok(removed)
    }

    /// Remove the run directory `dir` and the disk dirs of the same id.
    fn remove_run(&self, dir: &Path) {
        if let Some(id) = dir.file_name() {
            for sub in DISK_DIRS {
                let _ = std::fs::remove_dir_all(self.state.join(sub).join(id));
            }
        }
        remove_run_dir(dir);
    }

    /// Create the run directory `id` (and the runs dir, which the last run
    /// to end removes) with its lock file, locked.
    fn create_run_dir(&self, id: &str) -> Result<(PathBuf, File)> {
        let dir = self.runs.join(id);
        let mut attempts = 0;
        loop {
            match std::fs::create_dir(&dir) {
                Ok(()) => break,
                // The runs dir is missing, or a run ending right now
                // removed it after we made it.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempts < 100 => {
                    attempts += 1;
                    make_private_dir(&self.runs)?;
                }
                Err(e) => return Err(fs_err_io(&e, &dir)),
            }
        }
        let lock = fs_err::File::create(dir.join("lock"))?.into_parts().0;
        lock_exclusive(&lock, true);
        Ok((dir, lock))
    }

    /// Prepare a run directory and spec for `config`.
    pub fn prepare(&self, config: &ContainerConfig) -> Result<Prepared> {
        let id = format!(
            "{}-{}-{}",
            std::process::id(),
            NEXT_RUN.fetch_add(1, Ordering::Relaxed),
            nanos()
        );
        let (dir, lock) = self.create_run_dir(&id)?;
        let upper = self.state.join("upper").join(&id);
        let work = self.state.join("work").join(&id);
        let mut prepared = Prepared {
            dir: dir.clone(),
            runs: (self.runs != self.legacy_runs_dir()).then(|| self.runs.clone()),
            upper: upper.clone(),
            disk_dirs: Vec::new(),
            reaper: None,
            lock,
            lifeline: None,
            lifeline_read: None,
            inherited: Vec::new(),
            helper: self.helper.clone(),
            spec: None,
        };

        let mut mounts = Vec::new();
        for (i, m) in config.mounts.iter().enumerate() {
            let target = spec::check_target(&m.target.to_string_lossy())?;
            let kind = match &m.kind {
                MountKind::Volume { readonly } => {
                    let volumes = self.state.join("volumes").join(&id);
                    if !prepared.disk_dirs.contains(&volumes) {
                        prepared.disk_dirs.push(volumes.clone());
                    }
                    let source = volumes.join(i.to_string());
                    fs_err::create_dir_all(&source)?;
                    MountKind::Bind {
                        source,
                        readonly: *readonly,
                        seed: true,
                    }
                }
                other => other.clone(),
            };
            mounts.push(Mount { target, kind });
        }
        let secrets_dir = dir.join("secrets");
        for (i, s) in config.secrets.iter().enumerate() {
            let target = spec::check_target(&s.target)?;
            fs_err::create_dir_all(&secrets_dir)?;
            let file = secrets_dir.join(i.to_string());
            fs_err::write(&file, &s.data)?;
            fs_err::set_permissions(&file, std::fs::Permissions::from_mode(s.mode))?;
            std::os::unix::fs::chown(&file, Some(s.uid), Some(s.gid))
                .map_err(|e| fs_err_io(&e, &file))?;
            mounts.push(Mount {
                target,
                kind: MountKind::Bind {
                    source: file,
                    readonly: true,
                    seed: false,
                },
            });
        }
        let mut points: Vec<(PathBuf, bool)> = RUNTIME_MOUNT_POINTS
            .iter()
            .map(|(p, d)| (PathBuf::from(p), *d))
            .collect();
        points.extend(mounts.iter().map(|m| (m.target.clone(), m.is_dir())));
        let stubs = self.shared_stubs(&points)?;

        let mut lowers = config.lowers.clone();
        lowers.push(stubs);
        for (i, lower) in lowers.iter().enumerate() {
            std::os::unix::fs::symlink(lower, dir.join(i.to_string()))
                .map_err(|e| fs_err_io(&e, &dir.join(i.to_string())))?;
        }
        fs_err::create_dir(dir.join("merged"))?;
        for (parent, sub) in [("upper", &upper), ("work", &work)] {
            // Listed before they exist: a failure half-way removes them.
            prepared.disk_dirs.push(sub.clone());
            if let Err(e) = std::fs::create_dir(sub) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(fs_err_io(&e, sub));
                }
                fs_err::create_dir_all(self.state.join(parent))?;
                fs_err::create_dir(sub)?;
            }
        }
        fs_err::set_permissions(&upper, std::fs::Permissions::from_mode(0o755))?;

        let hostname = if config.hostname.is_empty() {
            "kiln"
        } else {
            &config.hostname
        };
        let etc = [
            ("/etc/hosts", hosts_file(hostname)),
            ("/etc/resolv.conf", resolv_conf()),
            ("/etc/hostname", format!("{hostname}\n")),
        ];
        let mut etc_files = Vec::new();
        for (target, content) in etc {
            if config.keep_hostname_file && target == "/etc/hostname" {
                continue;
            }
            let file = dir.join(Path::new(target).file_name().unwrap_or_default());
            fs_err::write(&file, content)?;
            fs_err::set_permissions(&file, std::fs::Permissions::from_mode(0o644))?;
            etc_files.push((target.to_owned(), file));
        }

        let (read, write) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(RuntimeError::sys("pipe", &dir))?;
        let spec = ContainerSpec {
            rootfs: Rootfs {
                lowers,
                links: dir.clone(),
                upper: Some(upper),
                work: Some(work),
                merged: dir.join("merged"),
                readonly: config.readonly_rootfs,
            },
            process: Process {
                argv: config.argv.clone(),
                env: config.env.clone(),
                cwd: config.cwd.clone(),
                user: config.user.clone(),
                tty: config.tty,
                init: config.init,
                capabilities: config.capabilities.clone(),
            },
            hostname: hostname.to_owned(),
            network: config.network,
            etc_files,
            mounts,
            privileged: config.privileged,
            result: dir.join("result.json"),
            lifeline_fd: Some(read.as_raw_fd()),
            run_dir: Some(dir.clone()),
            disk_dirs: prepared.disk_dirs.clone(),
            trash: config.reap_detached.then(|| self.reaper.trash.clone()),
        };
        spec.write(&dir.join("spec.json"))?;
        prepared.spec = Some(Box::new(spec));
        prepared.lifeline = Some(write);
        prepared.lifeline_read = Some(read);
        Ok(prepared)
    }
}

fn fs_err_io(err: &std::io::Error, path: &Path) -> RuntimeError {
    RuntimeError::Io(std::io::Error::new(
        err.kind(),
        format!("{err} (at {})", path.display()),
    ))
}

/// The dirs of a run kept on the state's file system, one per run id.
const DISK_DIRS: [&str; 3] = ["upper", "work", "volumes"];

/// Every directory that holds per-run entries of the state dir
/// `state_dir` (the runs dir wherever it may be, and the upper, work and
/// volume dirs), whether it exists or not. Empty when no run is active:
/// for tests and diagnostics. Has no side effects.
pub fn run_entry_dirs(state_dir: &Path) -> Vec<PathBuf> {
    let state = std::fs::canonicalize(state_dir).unwrap_or_else(|_| state_dir.to_owned());
    let mut dirs = vec![state.join("runs")];
    for base in ["/run", "/dev/shm"] {
        dirs.push(Path::new(base).join(tmpfs_runs_name(&state)));
    }
    dirs.extend(DISK_DIRS.iter().map(|d| state.join(d)));
    dirs
}

/// The name of the runs dir of `state` in a shared tmpfs.
fn tmpfs_runs_name(state: &Path) -> String {
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    format!(
        "kiln-{uid}-{:016x}",
        fnv1a(state.as_os_str().as_encoded_bytes())
    )
}

/// Where the run directories of the state dir `state` (canonical) go: see
/// the module doc.
fn runs_location(state: &Path) -> PathBuf {
    let on_disk = state.join("runs");
    if is_tmpfs(state) {
        return on_disk;
    }
    let name = tmpfs_runs_name(state);
    for base in ["/run", "/dev/shm"] {
        let base = Path::new(base);
        if !is_tmpfs(base) {
            continue;
        }
        let runs = base.join(&name);
        // Made by the first run and removed by the last one (checked again
        // then): an open runtime that runs nothing leaves nothing there.
        match std::fs::symlink_metadata(&runs) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return runs,
            Ok(_) if check_private_dir(&runs).is_ok() => return runs,
            _ => {}
        }
    }
    on_disk
}

fn is_tmpfs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
}

/// Create `dir` (mode 0700) unless it exists, and check that it is a real
/// directory of ours that nobody else can write to: in a world-writable
/// place like `/dev/shm` someone else may have made it first.
fn make_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(fs_err_io(&e, dir)),
    }
    check_private_dir(dir)
}

/// Check that `dir` is a real directory of ours that nobody else can write.
fn check_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(dir).map_err(|e| fs_err_io(&e, dir))?;
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o022 != 0 {
        return Err(RuntimeError::Setup {
            message: format!(
                "{} is not a private directory of user {uid}; remove it",
                dir.display()
            ),
        });
    }
    Ok(())
}

/// 64-bit FNV-1a: a key that stays the same across kiln versions.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Whether the process that made the run directory `dir` is alive.
fn owner_alive(dir: &Path) -> bool {
    dir.file_name()
        .is_some_and(|n| pid_alive(&n.to_string_lossy()))
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// The `/etc/hosts` a container gets.
pub fn hosts_file(hostname: &str) -> String {
    format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n")
}

fn resolv_conf() -> String {
    std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()
}

/// The manifest of a set of mount points and its key: the std hasher with
/// its fixed keys, so the same points give the same key in every process of
/// a build.
fn stubs_key(points: &[(PathBuf, bool)]) -> (String, u64) {
    use std::hash::{Hash, Hasher};
    let mut manifest = String::new();
    for (p, is_dir) in points {
        manifest.push_str(if *is_dir { "d " } else { "f " });
        manifest.push_str(&p.to_string_lossy());
        manifest.push('\n');
    }
    let mut h = std::hash::DefaultHasher::new();
    manifest.hash(&mut h);
    let key = h.finish();
    (manifest, key)
}

/// Create the mount points in the stubs dir: parents as directories, each
/// point as a directory or an empty file.
pub(crate) fn make_stubs(stubs: &Path, points: &[(PathBuf, bool)]) -> Result<()> {
    let mut dirs = BTreeSet::new();
    for (point, is_dir) in points {
        let rel: PathBuf = point.components().skip(1).collect();
        let path = stubs.join(&rel);
        if *is_dir {
            dirs.insert(path);
        } else if let Some(parent) = path.parent() {
            dirs.insert(parent.to_owned());
        }
    }
    for dir in &dirs {
        fs_err::create_dir_all(dir)?;
    }
    for (point, is_dir) in points {
        if !is_dir {
            let rel: PathBuf = point.components().skip(1).collect();
            let path = stubs.join(rel);
            if !path.exists() {
                fs_err::write(&path, b"")?;
            }
        }
    }
    Ok(())
}

/// Unmount whatever is still mounted below `dir` (deepest first), then
/// remove it. Best effort: used for stale runs.
fn remove_run_dir(dir: &Path) {
    let mut mounted: Vec<PathBuf> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect();
    mounted.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for m in mounted {
        let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// A prepared run: its directory and disk dirs (removed on drop; the upper
/// dir unless it was persisted), the lifeline, and the helper command.
#[derive(Debug)]
pub struct Prepared {
    dir: PathBuf,
    runs: Option<PathBuf>,
    upper: PathBuf,
    disk_dirs: Vec<PathBuf>,
    reaper: Option<Arc<Reaper>>,
    lock: File,
    lifeline: Option<OwnedFd>,
    lifeline_read: Option<OwnedFd>,
    inherited: Vec<OwnedFd>,
    helper: PathBuf,
    spec: Option<Box<ContainerSpec>>,
}

impl Prepared {
    /// The run directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The upper dir: the run's changes to the root filesystem (on the
    /// state dir's file system).
    pub fn upper(&self) -> PathBuf {
        self.upper.clone()
    }

    /// The helper command (`HELPER __runtime SPEC`). Its stdio is the
    /// container's; the helper gets the lifeline's read end.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.helper);
        cmd.arg(HELPER_ARG).arg(self.dir.join("spec.json"));
        // The helper inherits the lifeline's read end and the run's lock:
        // the run directory counts as live until the helper is gone too.
        let inherit: Vec<i32> = self
            .lifeline_read
            .iter()
            .map(AsRawFd::as_raw_fd)
            .chain([self.lock.as_raw_fd()])
            .chain(self.inherited.iter().map(AsRawFd::as_raw_fd))
            .collect();
        // SAFETY: only fcntl, which is async-signal-safe, runs between fork
        // and exec.
        unsafe {
            cmd.pre_exec(move || {
                for fd in &inherit {
                    if libc::fcntl(*fd, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        cmd
    }

    /// Run the container from this process, as the helper would, when the
    /// process is still single-threaded (`kiln run` without a tty, before
    /// it starts a thread): that saves starting the kiln binary a second
    /// time. Returns `Ok(None)` and does nothing when the process has more
    /// than one thread; the caller then spawns [`Prepared::command`].
    ///
    /// The container gets this process's stdio, except stdin when `stdin`
    /// is given. The forwarded signals are blocked here and passed on to
    /// the container's PID 1 (SIGTERM as `stop_signal`, when given) until
    /// it is gone; they stay blocked afterwards. There is no lifeline: PID
    /// 1 dies with this process (`PR_SET_PDEATHSIG`), and what a killed
    /// process leaves is removed by the next [`Runtime::clean_stale`].
    pub fn run_here(
        &mut self,
        stdin: Option<BorrowedFd<'_>>,
        stop_signal: Option<nix::sys::signal::Signal>,
    ) -> Result<Option<Outcome>> {
        let Some(spec) = &self.spec else {
            return Ok(None);
        };
        if !crate::helper::single_threaded() {
            return Ok(None);
        }
        let watch = crate::helper::Watch {
            lifeline: None,
            stdin,
            stop_signal,
        };
        let outcome = crate::helper::run(spec, &watch)?;
        if spec.trash.is_some() {
            crate::helper::remove_disk_dirs(spec);
        }
        Ok(Some(outcome))
    }

    /// Have the run's disk dirs removed by the runtime's background
    /// reaper when this is dropped, instead of before `drop` returns (for
    /// callers that go on with other work, like a build's next step).
    pub(crate) fn remove_in_background(&mut self, runtime: &Runtime) {
        self.reaper = Some(Arc::clone(&runtime.reaper));
    }

    /// Let the helper (and so the container's PID 1, never the command)
    /// hold a duplicate of `fd` until it exits: e.g. the lock that marks a
    /// container as running, so it stays held for a moment after `kill -9`
    /// of kiln, until the container is gone.
    pub fn inherit(&mut self, fd: BorrowedFd<'_>) -> Result<()> {
        let dup = fd
            .try_clone_to_owned()
            .map_err(|e| fs_err_io(&e, Path::new("inherited descriptor")))?;
        self.inherited.push(dup);
        Ok(())
    }

    /// Call once the helper has started: kiln's copy of the lifeline's
    /// read end is closed, so the helper sees EOF when kiln goes away.
    pub fn started(&mut self) {
        self.lifeline_read = None;
        self.inherited.clear();
    }

    /// Break the lifeline: the helper kills the container.
    pub fn cancel(&mut self) {
        self.lifeline = None;
    }

    /// The helper's outcome, once it has exited.
    pub fn outcome(&self, helper_status: &std::process::ExitStatus) -> Result<Outcome> {
        let path = self.dir.join("result.json");
        if path.exists() {
            Outcome::read(&path)
        } else {
            Err(RuntimeError::HelperDied {
                status: helper_status.to_string(),
            })
        }
    }

    /// Move the upper dir to `dest` (on the same filesystem) after stripping
    /// overlayfs' bookkeeping xattrs; the rest of the run dir is removed.
    ///
    /// The overlay is `volatile`: nothing has synced the upper dir's files
    /// to disk. A caller that keeps the directory across a crash syncs it
    /// (the usual path, a layer blob written from it, is durable anyway).
    pub fn persist_upper(self, dest: &Path) -> Result<()> {
        let upper = self.upper();
        crate::upper::clean(&upper)?;
        fs_err::rename(&upper, dest)?;
        Ok(())
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        self.lifeline = None;
        if let Some(reaper) = &self.reaper {
            reaper.remove(&self.disk_dirs);
        } else {
            for dir in &self.disk_dirs {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        // Its mounts were in the container's mount namespace: nothing is
        // mounted below it here.
        let _ = std::fs::remove_dir_all(&self.dir);
        // The last run to end removes a tmpfs runs dir (one named after
        // the state dir would outlive a removed store otherwise).
        if let Some(runs) = &self.runs {
            let _ = std::fs::remove_dir(runs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stubs_hold_dirs_and_files() {
        let dir = tempfile::tempdir().unwrap();
        make_stubs(
            dir.path(),
            &[
                ("/proc".into(), true),
                ("/etc/hosts".into(), false),
                ("/run/secrets/a".into(), false),
                ("/a/b/c".into(), true),
            ],
        )
        .unwrap();
        assert!(dir.path().join("proc").is_dir());
        assert!(dir.path().join("etc/hosts").is_file());
        assert!(dir.path().join("run/secrets/a").is_file());
        assert!(dir.path().join("a/b/c").is_dir());
    }

    #[test]
    fn prepare_lays_out_a_run_and_drop_removes_it() {
        let state = tempfile::tempdir().unwrap();
        let rt = Runtime::open(state.path(), Path::new("/bin/true")).unwrap();
        let lower = tempfile::tempdir().unwrap();
        let config = ContainerConfig {
            lowers: vec![lower.path().to_owned()],
            argv: vec!["true".into()],
            hostname: "box".into(),
            secrets: vec![Secret {
                target: "/run/secrets/tok".into(),
                data: b"s3cret".to_vec(),
                mode: 0o400,
                uid: 0,
                gid: 0,
            }],
            ..Default::default()
        };
        let prepared = rt.prepare(&config).unwrap();
        let dir = prepared.dir().to_owned();
        let spec = ContainerSpec::read(&dir.join("spec.json")).unwrap();
        assert_eq!(spec.rootfs.lowers.len(), 2);
        assert_eq!(std::fs::read_link(dir.join("0")).unwrap(), lower.path());
        let stubs = spec.rootfs.lowers.last().unwrap();
        assert!(stubs.starts_with(state.path().join("stubs")), "{stubs:?}");
        assert!(stubs.join("run/secrets/tok").is_file());
        assert!(stubs.join("etc/resolv.conf").is_file());
        // the next run with the same mount points shares them
        let again = rt.prepare(&config).unwrap();
        let spec2 = ContainerSpec::read(&again.dir().join("spec.json")).unwrap();
        assert_eq!(spec2.rootfs.lowers.last(), Some(stubs));
        drop(again);
        assert_eq!(
            std::fs::read_to_string(dir.join("hostname")).unwrap(),
            "box\n"
        );
        assert!(
            std::fs::read_to_string(dir.join("hosts"))
                .unwrap()
                .contains("localhost box")
        );
        assert_eq!(std::fs::read(dir.join("secrets/0")).unwrap(), b"s3cret");
        // a concurrent cleaner must not touch a live run
        assert_eq!(rt.clean_stale().unwrap(), 0);
        // With a second thread alive, the run is left to the helper.
        let mut prepared = prepared;
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || rx.recv());
        assert!(matches!(prepared.run_here(None, None), Ok(None)));
        drop(tx);
        let _ = other.join();
        assert!(dir.join("spec.json").exists(), "still prepared");
        drop(prepared);
        assert!(!dir.exists());
    }

    #[test]
    fn run_dirs_go_to_a_tmpfs_and_upper_dirs_stay_with_the_state() {
        let state = tempfile::tempdir().unwrap();
        let rt = Runtime::open(state.path(), Path::new("/bin/true")).unwrap();
        assert!(
            !rt.runs_dir().exists(),
            "made by the first run, not by open"
        );
        let prepared = rt.prepare(&ContainerConfig::default()).unwrap();
        let state_dir = std::fs::canonicalize(state.path()).unwrap();
        assert!(prepared.upper().starts_with(state_dir.join("upper")));
        let spec = ContainerSpec::read(&prepared.dir().join("spec.json")).unwrap();
        assert_eq!(spec.rootfs.upper, Some(prepared.upper()));
        assert!(
            spec.rootfs
                .work
                .as_ref()
                .unwrap()
                .starts_with(state_dir.join("work"))
        );
        let shared_tmpfs = ["/run", "/dev/shm"].iter().any(|d| is_tmpfs(Path::new(d)));
        if is_tmpfs(&state_dir) || !shared_tmpfs {
            assert!(prepared.dir().starts_with(state_dir.join("runs")));
        } else {
            assert!(is_tmpfs(prepared.dir()), "{:?}", prepared.dir());
            let runs = rt.runs_dir();
            let meta = std::fs::symlink_metadata(&runs).unwrap();
            assert_eq!(
                std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
                0o700
            );
        }
        let entry_dirs = run_entry_dirs(state.path());
        assert!(entry_dirs.contains(&rt.runs_dir()), "{entry_dirs:?}");
        let dirs = [
            prepared.dir().to_owned(),
            prepared.upper(),
            spec.rootfs.work.unwrap(),
        ];
        drop(prepared);
        for dir in dirs {
            assert!(!dir.exists(), "{dir:?} left behind");
        }
        if rt.runs_dir() != state_dir.join("runs") {
            assert!(
                !rt.runs_dir().exists(),
                "an empty tmpfs runs dir is removed"
            );
        }
    }

    #[test]
    fn the_reaper_removes_in_the_background_and_is_done_when_dropped() {
        let state = tempfile::tempdir().unwrap();
        let reaper = Reaper::new(state.path().join("trash"));
        let dirs: Vec<PathBuf> = (0..3)
            .map(|i| {
                let d = state.path().join(format!("d{i}"));
                std::fs::create_dir_all(d.join("work/incompat/volatile")).unwrap();
                d
            })
            .collect();
        let missing = state.path().join("never-made");
        reaper.remove(&[dirs.clone(), vec![missing]].concat());
        for d in &dirs {
            assert!(!d.exists(), "{d:?} is moved away at once");
        }
        drop(reaper);
        assert_eq!(
            std::fs::read_dir(state.path().join("trash"))
                .unwrap()
                .count(),
            0,
            "and removed by the time the reaper is gone"
        );
    }

    #[test]
    fn a_runs_dir_someone_else_can_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        std::fs::create_dir(&runs).unwrap();
        std::fs::set_permissions(&runs, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(make_private_dir(&runs).is_err());
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path(), &link).unwrap();
        assert!(make_private_dir(&link).is_err(), "a symlink is not ours");
        let fresh = dir.path().join("fresh");
        make_private_dir(&fresh).unwrap();
        make_private_dir(&fresh).unwrap();
    }

    #[test]
    fn anonymous_volumes_become_seeded_binds_in_the_state_dir() {
        let state = tempfile::tempdir().unwrap();
        let rt = Runtime::open(state.path(), Path::new("/bin/true")).unwrap();
        let config = ContainerConfig {
            mounts: vec![Mount {
                target: "/data".into(),
                kind: MountKind::Volume { readonly: true },
            }],
            ..Default::default()
        };
        let prepared = rt.prepare(&config).unwrap();
        let dir = prepared.dir().to_owned();
        let id = dir.file_name().unwrap();
        let volume = std::fs::canonicalize(state.path())
            .unwrap()
            .join("volumes")
            .join(id)
            .join("0");
        let spec = ContainerSpec::read(&dir.join("spec.json")).unwrap();
        assert_eq!(
            spec.mounts,
            [Mount {
                target: "/data".into(),
                kind: MountKind::Bind {
                    source: volume.clone(),
                    readonly: true,
                    seed: true,
                },
            }]
        );
        assert!(volume.is_dir());
        assert!(
            spec.rootfs.lowers.last().unwrap().join("data").is_dir(),
            "its mount point is a stub"
        );
        drop(prepared);
        assert!(!dir.exists());
        assert!(
            !volume.parent().unwrap().exists(),
            "the volume goes with the run"
        );
    }

    #[test]
    fn a_stubs_key_collision_gets_its_own_directory() {
        let state = tempfile::tempdir().unwrap();
        let rt = Runtime::open(state.path(), Path::new("/bin/true")).unwrap();
        let points = [(PathBuf::from("/proc"), true)];
        let (_, key) = stubs_key(&points);
        let taken = state.path().join(format!("stubs/{key:016x}"));
        std::fs::create_dir_all(&taken).unwrap();
        std::fs::write(taken.with_extension("points"), "d /other\n").unwrap();
        let dir = rt.shared_stubs(&points).unwrap();
        assert_ne!(dir, taken);
        assert!(dir.join("proc").is_dir());
        assert!(!taken.join("proc").exists(), "the other set is untouched");
        assert_eq!(rt.shared_stubs(&points).unwrap(), dir, "and is found again");
    }

    #[test]
    fn bad_targets_are_rejected() {
        let state = tempfile::tempdir().unwrap();
        let rt = Runtime::open(state.path(), Path::new("/bin/true")).unwrap();
        let config = ContainerConfig {
            mounts: vec![Mount {
                target: "rel".into(),
                kind: MountKind::Tmpfs {
                    options: String::new(),
                    readonly: false,
                },
            }],
            ..Default::default()
        };
        assert!(
            rt.prepare(&config)
                .unwrap_err()
                .to_string()
                .contains("`rel`")
        );
    }
}
