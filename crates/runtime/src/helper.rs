//! The runtime helper: the process `kiln __runtime SPEC-FILE` becomes.
//!
//! kiln never forks inside its own (multi-threaded, tokio) process. It
//! re-executes itself as this helper, which is single-threaded from its
//! first instruction: [`main`] must be called at the very top of the
//! binary's `main`, before anything starts a thread.
//!
//! ```text
//! kiln (tokio) ──spawn──▶ kiln __runtime spec.json      (host namespaces)
//!     │ lifeline pipe           │ clone(NEWPID|NEWNS|NEWUTS|NEWIPC[|NEWNET])
//!     └──────── EOF = kiln gone ▼
//!                         container PID 1: mounts, pivot_root, credentials,
//!                         exec (or a minimal init that runs the command)
//! ```
//!
//! The helper forwards the signals it gets to the container's PID 1, kills
//! the container when kiln's lifeline breaks, waits, and writes an
//! [`Outcome`] next to the spec. Every mount lives in the container's own
//! mount namespace, so none survives the container: not even after
//! `kill -9` of kiln or of the helper (PID 1 has `PR_SET_PDEATHSIG`).
//!
//! `kiln run` without a tty skips the helper when it can: before it has
//! started any thread, it is as single-threaded as the helper, and
//! [`crate::Prepared::run_here`] runs the same code (clone, supervise) in
//! kiln's own process, checking the thread count first. That saves a
//! second start of the kiln binary per container; the helper stays for RUN
//! steps (called from tokio), for `-t` (which pumps the pty on threads),
//! and for any process that has a second thread.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, pipe2};
use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError};
use crate::spec::{ContainerSpec, Network};

/// The hidden first argument that turns `kiln` into the helper.
pub const HELPER_ARG: &str = "__runtime";

/// The exit status for a failure of the runtime itself (docker's 125).
pub const EXIT_RUNTIME_FAILURE: i32 = 125;

/// How a container run ended, as the helper reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The process exited with this code.
    Exited {
        /// Exit code.
        code: i32,
    },
    /// The process was killed by this signal.
    Signaled {
        /// Signal number.
        signal: i32,
    },
    /// The command could not be started: 127 (not found) or 126 (not
    /// executable), with docker's message.
    ExecFailed {
        /// 126 or 127.
        code: i32,
        /// What went wrong.
        message: String,
    },
    /// Setting up the container failed (a mount, the user, …).
    SetupFailed {
        /// What went wrong.
        message: String,
    },
    /// kiln went away (or cancelled the run); the container was killed.
    Cancelled,
}

impl Outcome {
    /// The exit status docker would give: the code, 128 + signal, 126/127,
    /// or 125.
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Exited { code } | Outcome::ExecFailed { code, .. } => *code,
            Outcome::Signaled { signal } => 128 + signal,
            Outcome::SetupFailed { .. } => EXIT_RUNTIME_FAILURE,
            Outcome::Cancelled => 128 + Signal::SIGKILL as i32,
        }
    }

    /// Read the outcome a helper wrote.
    pub fn read(path: &Path) -> Result<Outcome> {
        let bytes = fs_err::read(path)?;
        serde_json::from_slice(&bytes).map_err(|source| RuntimeError::Spec {
            path: path.to_owned(),
            source,
        })
    }

    fn write(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("tmp");
        let bytes = serde_json::to_vec(self).map_err(|source| RuntimeError::Spec {
            path: path.to_owned(),
            source,
        })?;
        fs_err::write(&tmp, bytes)?;
        fs_err::rename(&tmp, path)?;
        Ok(())
    }
}

/// The signals passed on to a container: by `kiln run` to the helper, by
/// the helper to the container's PID 1, by `--init` to the command.
pub const FORWARDED_SIGNALS: &[Signal] = &[
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCONT,
    Signal::SIGALRM,
    Signal::SIGPWR,
];

/// [`FORWARDED_SIGNALS`] and SIGCHLD, which the helper and init watch.
pub(crate) fn forwarded_signals() -> SigSet {
    let mut set: SigSet = FORWARDED_SIGNALS.iter().copied().collect();
    set.add(Signal::SIGCHLD);
    set
}

/// The helper's entry point: run the container described by the spec at
/// `spec_path`, write the outcome to the spec's result path, and return the
/// status the helper exits with (the container's, see [`Outcome::exit_code`]).
///
/// Call only at the very top of `main`, while the process has one thread.
pub fn main(spec_path: &Path) -> i32 {
    let Ok(spec) = ContainerSpec::read(spec_path) else {
        return EXIT_RUNTIME_FAILURE;
    };
    // SAFETY: the spec names a descriptor kiln passed to us; it stays open
    // for the helper's lifetime.
    let lifeline = spec
        .lifeline_fd
        .map(|fd| unsafe { BorrowedFd::borrow_raw(fd) });
    let watch = Watch {
        lifeline,
        ..Watch::default()
    };
    let outcome = run(&spec, &watch).unwrap_or_else(|e| Outcome::SetupFailed {
        message: e.to_string(),
    });
    if outcome == Outcome::Cancelled {
        // kiln is gone: nobody else will remove the run directory. (Its
        // mounts went with the container's mount namespace.)
        remove_disk_dirs(&spec);
        if let Some(dir) = &spec.run_dir {
            let _ = std::fs::remove_dir_all(dir);
            // The runs dir goes with its last run.
            if let Some(runs) = dir.parent() {
                let _ = std::fs::remove_dir(runs);
            }
        }
        return outcome.exit_code();
    }
    if outcome.write(&spec.result).is_err() {
        return EXIT_RUNTIME_FAILURE;
    }
    if spec.trash.is_some() {
        remove_disk_dirs(&spec);
    }
    outcome.exit_code()
}

/// Remove the run's disk dirs: through a detached reaper when the spec
/// names a trash dir (nothing waits for the removal), else here.
pub(crate) fn remove_disk_dirs(spec: &ContainerSpec) {
    match &spec.trash {
        Some(trash) => crate::trash::hand_off(trash, &spec.disk_dirs),
        None => {
            for dir in &spec.disk_dirs {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

/// clone(2) without a new stack: like fork, with namespace flags. Safe only
/// in a single-threaded process, which the helper is.
fn clone_process(flags: libc::c_int) -> Result<Option<Pid>> {
    // SAFETY: with a null stack the child continues on a copy of ours, like
    // fork(2); the process is single-threaded, so no lock is held elsewhere.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::c_long::from(flags | libc::SIGCHLD),
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    match rc {
        -1 => Err(RuntimeError::sys("clone", "container")(Errno::last())),
        0 => Ok(None),
        pid => Ok(Some(Pid::from_raw(i32::try_from(pid).unwrap_or(-1)))),
    }
}

/// What [`run`] watches and passes on besides the spec.
#[derive(Default)]
pub(crate) struct Watch<'a> {
    /// kiln's lifeline: EOF (kiln gone) kills the container.
    pub lifeline: Option<BorrowedFd<'a>>,
    /// The container's stdin instead of this process's.
    pub stdin: Option<BorrowedFd<'a>>,
    /// What a SIGTERM becomes when passed on (the image's StopSignal).
    pub stop_signal: Option<Signal>,
}

/// Whether this process has a single thread, so that it may clone the
/// container itself (a clone in a multi-threaded process could copy a lock
/// that another thread holds).
pub(crate) fn single_threaded() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .is_some_and(|n| n.trim() == "1")
    })
}

/// Clone the container's PID 1 and supervise it until it is gone. Only in
/// a single-threaded process: the helper, or kiln before it starts a
/// thread (see [`single_threaded`]).
pub(crate) fn run(spec: &ContainerSpec, watch: &Watch<'_>) -> Result<Outcome> {
    let signals = forwarded_signals();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&signals), None)
        .map_err(RuntimeError::sys("block signals", "helper"))?;
    let sigfd = SignalFd::with_flags(&signals, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(RuntimeError::sys("signalfd", "helper"))?;
    let (err_r, err_w) =
        pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(RuntimeError::sys("pipe", "helper"))?;
    let (alive_r, alive_w) =
        pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(RuntimeError::sys("pipe", "helper"))?;

    let mut flags =
        libc::CLONE_NEWPID | libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC;
    if spec.network == Network::None {
        flags |= libc::CLONE_NEWNET;
    }
    let Some(child) = clone_process(flags)? else {
        drop(err_r);
        drop(alive_w);
        drop(sigfd);
        if let Some(stdin) = watch.stdin {
            // SAFETY: dup2 onto stdin in the cloned child.
            if unsafe { libc::dup2(stdin.as_raw_fd(), 0) } < 0 {
                // SAFETY: leave the cloned child at once.
                unsafe { libc::_exit(EXIT_RUNTIME_FAILURE) }
            }
        }
        let code = crate::init::run(spec, err_w, &alive_r);
        // SAFETY: leave the cloned child without running the helper's
        // destructors or atexit handlers.
        unsafe { libc::_exit(code) }
    };
    drop(err_w);
    drop(alive_r);

    // The write end closes on a successful exec; before that the child
    // writes `CODE\nmessage` when something fails.
    let report = read_all(&err_r);
    if !report.is_empty() {
        let _ = waitpid(child, None);
        let text = String::from_utf8_lossy(&report);
        let (code, message) = text.split_once('\n').unwrap_or(("125", &text));
        let code: i32 = code.parse().unwrap_or(EXIT_RUNTIME_FAILURE);
        return Ok(if code == EXIT_RUNTIME_FAILURE {
            Outcome::SetupFailed {
                message: message.to_owned(),
            }
        } else {
            Outcome::ExecFailed {
                code,
                message: message.to_owned(),
            }
        });
    }

    let outcome = supervise(child, &sigfd, watch)?;
    drop(alive_w);
    Ok(outcome)
}

fn read_all(fd: &OwnedFd) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match nix::unistd::read(fd.as_fd(), &mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(Errno::EINTR) => {}
            Err(_) => return out,
        }
    }
}

/// Wait for the container, forwarding signals, and kill it if the lifeline
/// breaks.
fn supervise(child: Pid, sigfd: &SignalFd, watch: &Watch<'_>) -> Result<Outcome> {
    loop {
        let mut fds = vec![PollFd::new(sigfd.as_fd(), PollFlags::POLLIN)];
        if let Some(l) = watch.lifeline {
            fds.push(PollFd::new(l, PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(RuntimeError::sys("poll", "helper")(e)),
        }
        let lifeline_broken = fds.get(1).and_then(PollFd::revents).is_some_and(|r| {
            r.intersects(PollFlags::POLLHUP | PollFlags::POLLIN | PollFlags::POLLERR)
        });
        if lifeline_broken {
            let _ = kill(child, Signal::SIGKILL);
            let _ = waitpid(child, None);
            return Ok(Outcome::Cancelled);
        }
        while let Ok(Some(info)) = sigfd.read_signal() {
            let signo = i32::try_from(info.ssi_signo).unwrap_or(0);
            if signo == Signal::SIGCHLD as i32 {
                continue;
            }
            if let Ok(sig) = Signal::try_from(signo) {
                let sig = match (sig, watch.stop_signal) {
                    (Signal::SIGTERM, Some(stop)) => stop,
                    _ => sig,
                };
                let _ = kill(child, sig);
            }
        }
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(Outcome::Exited { code }),
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                return Ok(Outcome::Signaled { signal: sig as i32 });
            }
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(RuntimeError::sys("waitpid", "container")(e)),
        }
    }
}
