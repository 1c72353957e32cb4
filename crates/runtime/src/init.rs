//! The container's side of the clone: PID 1 in the new namespaces.
//!
//! It sets up the root filesystem, hostname and loopback, resolves the user
//! in the image, drops capabilities, closes inherited descriptors, and
//! execs the command (found on the container's `PATH`). With `--init` it
//! forks the command instead and stays as a minimal init that forwards
//! signals and reaps zombies.
//!
//! Failures before exec are written to the helper's error pipe as
//! `CODE\nmessage` (125 set-up, 126 not executable, 127 not found).

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Gid, Pid, Uid};

use crate::caps;
use crate::helper::{EXIT_RUNTIME_FAILURE, forwarded_signals};
use crate::spec::{ContainerSpec, Network};
use crate::sys::{RealSys, Sys};
use crate::user;

/// docker's `PATH` for an image that sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Why the container's process could not be started.
struct Failure {
    code: i32,
    message: String,
}

fn setup_failure(message: impl std::fmt::Display) -> Failure {
    Failure {
        code: EXIT_RUNTIME_FAILURE,
        message: message.to_string(),
    }
}

/// Run as the cloned child; returns the status to `_exit` with (only
/// after a failure, or from the init).
pub(crate) fn run(spec: &ContainerSpec, err_w: OwnedFd, alive_r: &OwnedFd) -> i32 {
    let mut err_w = Some(err_w);
    match start(spec, &mut err_w, alive_r) {
        Ok(code) => code,
        Err(f) => {
            report(err_w.as_ref(), &f);
            f.code
        }
    }
}

fn report(err_w: Option<&OwnedFd>, f: &Failure) {
    if let Some(w) = err_w {
        let _ = nix::unistd::write(w, format!("{}\n{}", f.code, f.message).as_bytes());
    }
}

fn start(
    spec: &ContainerSpec,
    err_w: &mut Option<OwnedFd>,
    alive_r: &OwnedFd,
) -> Result<i32, Failure> {
    // Die with the helper; if it is already gone, the pipe says so.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(setup_failure)?;
    let mut fds = [PollFd::new(alive_r.as_fd(), PollFlags::POLLIN)];
    if poll(&mut fds, PollTimeout::ZERO).is_ok_and(|n| n > 0) {
        return Ok(EXIT_RUNTIME_FAILURE);
    }
    nix::unistd::setsid().map_err(setup_failure)?;
    if spec.process.tty {
        // SAFETY: TIOCSCTTY takes an integer argument.
        if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } < 0 {
            return Err(setup_failure(format!(
                "make stdin the controlling terminal: {}",
                Errno::last()
            )));
        }
    }

    let sys = RealSys::default();
    crate::rootfs::setup(&sys, spec).map_err(setup_failure)?;
    sys.sethostname(&spec.hostname)
        .map_err(|e| setup_failure(format!("sethostname: {e}")))?;
    if spec.network == Network::None {
        sys.loopback_up()
            .map_err(|e| setup_failure(format!("bring up lo: {e}")))?;
    }

    // The root is the container's now: these are the image's files.
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let who = user::resolve(&spec.process.user, &passwd, &group).map_err(setup_failure)?;
    let env = process_env(&spec.process.env, &who.home);
    let cwd = if spec.process.cwd.is_empty() {
        "/"
    } else {
        &spec.process.cwd
    };
    nix::unistd::chdir(cwd).map_err(|e| setup_failure(format!("chdir to {cwd}: {e}")))?;

    let mask = caps::mask(&spec.process.capabilities) & caps::permitted();
    caps::drop_bounding(mask).map_err(|e| setup_failure(format!("drop capabilities: {e}")))?;
    let groups: Vec<Gid> = who.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    nix::unistd::setgroups(&groups).map_err(|e| setup_failure(format!("setgroups: {e}")))?;
    nix::unistd::setgid(Gid::from_raw(who.gid))
        .map_err(|e| setup_failure(format!("setgid {}: {e}", who.gid)))?;
    nix::unistd::setuid(Uid::from_raw(who.uid))
        .map_err(|e| setup_failure(format!("setuid {}: {e}", who.uid)))?;
    if who.uid == 0 {
        caps::set_process(mask).map_err(|e| setup_failure(format!("capset: {e}")))?;
    }

    // Everything kiln or the helper had open stays out of the container.
    // SAFETY: close_range only flags descriptors close-on-exec.
    unsafe {
        libc::close_range(
            3,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC.cast_signed(),
        )
    };

    let argv = c_strings(&spec.process.argv)?;
    let envp = c_strings(&env)?;
    let path_var = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH)
        .to_owned();
    let program = find_program(&spec.process.argv[0], &path_var)?;

    if spec.process.init {
        return Ok(run_init(&program, &argv, &envp, err_w));
    }
    reset_signals();
    Err(exec(&program, &argv, &envp))
}

/// The environment the process gets: the spec's, plus `HOME` from passwd
/// and docker's default `PATH` when missing.
pub(crate) fn process_env(env: &[String], home: &str) -> Vec<String> {
    let mut env = env.to_vec();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={home}"));
    }
    env
}

fn c_strings(items: &[String]) -> Result<Vec<CString>, Failure> {
    items
        .iter()
        .map(|s| {
            CString::new(s.as_bytes()).map_err(|_| {
                setup_failure(format!("argument or variable contains a NUL byte: {s:?}"))
            })
        })
        .collect()
}

/// Find `name` on `path` like Go's `exec.LookPath` (which docker uses):
/// names with a `/` are taken as they are.
fn find_program(name: &str, path: &str) -> Result<PathBuf, Failure> {
    if name.is_empty() {
        return Err(Failure {
            code: 127,
            message: "exec: no command given".into(),
        });
    }
    if name.contains('/') {
        return Ok(PathBuf::from(name));
    }
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(name);
        if let Ok(meta) = std::fs::metadata(&candidate)
            && meta.is_file()
            && meta.permissions().mode() & 0o111 != 0
        {
            return Ok(candidate);
        }
    }
    Err(Failure {
        code: 127,
        message: format!("exec: \"{name}\": executable file not found in $PATH"),
    })
}

/// The container's process starts like docker's: no blocked signals and
/// every disposition at its default. An ignored signal survives execve, so
/// without this a kiln started with SIGINT ignored (a background job of a
/// non-interactive shell, as in CI) made the container's shell unable to
/// trap Ctrl-C.
fn reset_signals() {
    // The kernel's `struct sigaction` (not libc's): the C library refuses
    // the signals it reserves for itself (32, 33), which may be ignored too.
    // All zeros is SIG_DFL with no flags and an empty mask whatever the
    // architecture's field order (MIPS puts the flags first); 64 bytes is
    // more than any architecture's kernel struct, of which it reads only
    // its own size. The signal set is 64 bits, 128 on MIPS.
    const SIGNALS: libc::c_int = if cfg!(any(target_arch = "mips", target_arch = "mips64")) {
        128
    } else {
        64
    };
    const SIGSET_BYTES: usize = SIGNALS as usize / 8;
    let default = [0u64; 8];
    for sig in 1..=SIGNALS {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: rt_sigaction reads a zeroed kernel sigaction (SIG_DFL)
        // from `default`, which is larger than it, and installs no
        // handler; done between fork and exec.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                default.as_ptr(),
                std::ptr::null_mut::<u64>(),
                SIGSET_BYTES,
            );
        }
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

/// execve; returns only on failure, with docker's status for it.
fn exec(program: &Path, argv: &[CString], envp: &[CString]) -> Failure {
    let Ok(cpath) = CString::new(program.as_os_str().as_bytes()) else {
        return setup_failure("program path contains a NUL byte");
    };
    let errno = match nix::unistd::execve(&cpath, argv, envp) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    let code = if errno == Errno::ENOENT { 127 } else { 126 };
    Failure {
        code,
        message: format!(
            "exec: \"{}\": {}",
            program.display(),
            errno.desc().to_lowercase()
        ),
    }
}

/// `--init`: fork the command, forward signals to it, reap every child,
/// exit with the command's status.
fn run_init(
    program: &Path,
    argv: &[CString],
    envp: &[CString],
    err_w: &mut Option<OwnedFd>,
) -> i32 {
    let signals = forwarded_signals();
    let _ = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&signals), None);
    let _ = nix::sys::prctl::set_name(c"kiln-init");
    // SAFETY: the container's PID 1 is single-threaded.
    match unsafe { nix::unistd::fork() } {
        Err(e) => {
            report(err_w.as_ref(), &setup_failure(format!("fork: {e}")));
            EXIT_RUNTIME_FAILURE
        }
        Ok(ForkResult::Child) => {
            reset_signals();
            // The command gets its own process group, like tini's child.
            let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
            let f = exec(program, argv, envp);
            report(err_w.as_ref(), &f);
            // SAFETY: leave the forked child at once.
            unsafe { libc::_exit(f.code) }
        }
        Ok(ForkResult::Parent { child }) => {
            // Only the command holds the pipe now: the helper sees EOF once
            // it has exec'd.
            drop(err_w.take());
            loop {
                let Ok(sig) = signals.wait() else { continue };
                if sig != Signal::SIGCHLD {
                    let _ = kill(child, sig);
                    continue;
                }
                loop {
                    match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                        Ok(WaitStatus::Exited(pid, code)) if pid == child => return code,
                        Ok(WaitStatus::Signaled(pid, sig, _)) if pid == child => {
                            return 128 + sig as i32;
                        }
                        Ok(WaitStatus::StillAlive) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_gets_path_and_home_only_when_missing() {
        let env = process_env(&["A=1".into()], "/root");
        assert_eq!(env, ["A=1", &format!("PATH={DEFAULT_PATH}"), "HOME=/root"]);
        let env = process_env(&["PATH=/x".into(), "HOME=/h".into()], "/root");
        assert_eq!(env, ["PATH=/x", "HOME=/h"]);
    }

    #[test]
    fn program_lookup_follows_path_and_reports_127() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("tool");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let plain = dir.path().join("data");
        std::fs::write(&plain, "").unwrap();
        let path = format!("/nonexistent:{}", dir.path().display());
        assert_eq!(find_program("tool", &path).ok(), Some(exe));
        let missing = find_program("data", &path).err().unwrap();
        assert_eq!(missing.code, 127);
        assert_eq!(
            missing.message,
            "exec: \"data\": executable file not found in $PATH"
        );
        assert_eq!(
            find_program("./rel/x", "").ok(),
            Some(PathBuf::from("./rel/x"))
        );
    }
}
