//! `kiln run` against a busybox root filesystem (`--rootfs`). Real
//! containers: these need root (`*_needs_root`; they fail without it).

// Fixture helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{kiln, output};

fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let euid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap()
        .split_whitespace()
        .nth(2)
        .unwrap();
    assert_eq!(
        euid, "0",
        "this test needs root (namespaces, overlayfs, mounts); run it as root"
    );
}

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/runtime")
        .join(name)
}

/// A store root and a busybox rootfs, both removed on drop.
struct Fixture {
    root: tempfile::TempDir,
    rootfs: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        require_root();
        let rootfs = tempfile::tempdir().unwrap();
        let status = Command::new("bash")
            .arg(testdata("busybox-rootfs.sh"))
            .arg(rootfs.path())
            .status()
            .unwrap();
        assert!(status.success());
        Fixture {
            root: tempfile::tempdir().unwrap(),
            rootfs,
        }
    }

    /// `kiln --root R run --rootfs FS <args>`.
    fn run(&self, args: &[&str]) -> Command {
        let mut cmd = kiln(self.root.path());
        cmd.arg("run")
            .arg("--rootfs")
            .arg(self.rootfs.path())
            .args(args);
        cmd
    }

    fn sh(&self, flags: &[&str], script: &str) -> (i32, String, String) {
        let mut args = flags.to_vec();
        args.extend(["sh", "-c", script]);
        let (out, stdout, stderr) = output(&mut self.run(&args));
        (out.status.code().unwrap_or(-1), stdout, stderr)
    }

    fn runs_left(&self) -> Vec<String> {
        let dir = self.root.path().join("runtime/runs");
        std::fs::read_dir(dir)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn pids_with_cmdline(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmd)
            .replace('\0', " ")
            .contains(needle)
        {
            out.push(pid);
        }
    }
    out
}

/// Kills processes whose command line holds the marker, even when a test fails.
struct KillOnDrop(&'static str);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for pid in pids_with_cmdline(self.0) {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn run_exit_codes_like_docker_needs_root() {
    let f = Fixture::new();
    assert_eq!(f.sh(&[], "exit 3").0, 3);
    let (out, _, stderr) = output(&mut f.run(&["no-such-cmd"]));
    assert_eq!(out.status.code(), Some(127), "{stderr}");
    assert!(
        stderr.contains("exec: \"no-such-cmd\": executable file not found in $PATH"),
        "{stderr}"
    );
    let (out, _, stderr) = output(&mut f.run(&["/etc/passwd"]));
    assert_eq!(out.status.code(), Some(126), "{stderr}");
    let (out, _, stderr) = output(&mut f.run(&["--network", "bridge2", "true"]));
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert!(stderr.contains("unknown network `bridge2`"), "{stderr}");
    let (out, _, stderr) = output(&mut f.run(&[]));
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert!(stderr.contains("no command specified"), "{stderr}");
    let (out, _, stderr) = output(&mut f.run(&["-u", "mallory", "true"]));
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert!(stderr.contains("unable to find user mallory"), "{stderr}");
    assert!(f.runs_left().is_empty(), "{:?}", f.runs_left());
}

#[test]
fn run_separates_stdout_and_stderr_and_pipes_stdin_needs_root() {
    let f = Fixture::new();
    let mut child = f
        .run(&["-i", "sh", "-c", "cat; echo to-err >&2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"piped in\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "piped in\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "to-err\n");
    // without -i the container's stdin is empty
    let (code, stdout, _) = f.sh(&[], "cat; echo end");
    assert_eq!((code, stdout.as_str()), (0, "end\n"));
}

#[test]
fn run_env_env_file_workdir_and_users_needs_root() {
    let f = Fixture::new();
    let env_file = f.root.path().join("env");
    std::fs::write(&env_file, "# comment\nFROM_FILE=yes\nOVERRIDE=file\n").unwrap();
    let mut cmd = f.run(&[
        "-e",
        "A=1",
        "-e",
        "KILN_TEST_PASS",
        "--env-file",
        env_file.to_str().unwrap(),
        "-e",
        "OVERRIDE=flag",
        "-w",
        "/new/dir",
        "sh",
        "-c",
        "echo $A $KILN_TEST_PASS $FROM_FILE $OVERRIDE; pwd",
    ]);
    cmd.env("KILN_TEST_PASS", "passed");
    let (out, stdout, stderr) = output(&mut cmd);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout, "1 passed yes flag\n/new/dir\n");
    let (_, stdout, _) = f.sh(&["-u", "alice"], "id -u; id -g; echo $HOME");
    assert_eq!(stdout, "1000\n1000\n/home/alice\n");
    let (_, stdout, _) = f.sh(&["-u", "1000:10"], "id -u; id -g");
    assert_eq!(stdout, "1000\n10\n");
    let (_, stdout, _) = f.sh(&["-u", "alice:users"], "id -G");
    assert_eq!(
        stdout, "100\n",
        "an explicit group means no supplementary groups"
    );
}

#[test]
fn run_bind_mounts_read_only_and_named_volumes_needs_root() {
    let f = Fixture::new();
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("in"), "host file").unwrap();
    let rw = format!("{}:/mnt/rw", host.path().display());
    let ro = format!("{}:/mnt/ro:ro", host.path().display());
    let (code, stdout, stderr) = f.sh(&["-v", &rw, "-v", &ro], "cat /mnt/ro/in; echo; echo out > /mnt/rw/out; touch /mnt/ro/x 2>/dev/null || echo ro-refused");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "host file\nro-refused\n");
    assert_eq!(
        std::fs::read_to_string(host.path().join("out")).unwrap(),
        "out\n"
    );

    // A new named volume is seeded from the image's content at its path,
    // and keeps what the container writes for the next run.
    std::fs::create_dir_all(f.rootfs.path().join("seed")).unwrap();
    std::fs::write(f.rootfs.path().join("seed/from-image"), "image").unwrap();
    let (code, stdout, stderr) = f.sh(
        &["-v", "vol1:/seed"],
        "cat /seed/from-image; echo; echo kept > /seed/written",
    );
    assert_eq!((code, stdout.as_str()), (0, "image\n"), "{stderr}");
    let (_, stdout, _) = f.sh(
        &["-v", "vol1:/elsewhere:ro"],
        "cat /elsewhere/written; touch /elsewhere/y 2>/dev/null || echo ro",
    );
    assert_eq!(stdout, "kept\nro\n");
    assert!(f.root.path().join("volumes/vol1/_data/written").is_file());
    // the image itself is untouched
    assert!(!f.rootfs.path().join("seed/written").exists());
}

#[test]
fn run_network_none_hostname_pid1_and_no_leaks_between_runs_needs_root() {
    let f = Fixture::new();
    let (code, stdout, stderr) = f.sh(
        &["--network", "none", "--hostname", "box"],
        "ls /sys/class/net; hostname; cat /etc/hostname; echo $$; grep -c box /etc/hosts",
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "lo\nbox\nbox\n1\n1\n");
    let (_, stdout, _) = f.sh(&["--network", "host"], "ls /sys/class/net | grep -cx lo");
    assert_eq!(stdout, "1\n");
    assert_eq!(f.sh(&[], "echo x > /leak").0, 0);
    assert_eq!(
        f.sh(&[], "test ! -e /leak").0,
        0,
        "one run's writes are gone in the next"
    );
    assert!(!f.rootfs.path().join("leak").exists());
}

#[test]
fn run_init_reaps_zombies_and_forwards_signals_needs_root() {
    let f = Fixture::new();
    // The orphaned `sh` exits at once; its parent (PID 1) must reap it.
    let script = "sh -c 'sleep 0 & exit 0' & sleep 0.5; cat /proc/1/comm; grep -l '^State:.*Z' /proc/[0-9]*/status | wc -l";
    let (code, stdout, stderr) = f.sh(&["--init"], script);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "kiln-init\n0\n");

    for flags in [&[][..], &["--init"][..]] {
        let _guard = KillOnDrop("trap-marker");
        let mut args = flags.to_vec();
        args.extend(["sh", "-c", "trap 'echo got-term; exit 42' TERM; echo ready; while true; do sleep 0.1; done # trap-marker"]);
        let mut child = f.run(&args).stdout(Stdio::piped()).spawn().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line, "ready\n");
        Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        line.clear();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line, "got-term\n", "{flags:?}");
        assert_eq!(child.wait().unwrap().code(), Some(42), "{flags:?}");
    }
}

#[test]
fn run_pty_raw_mode_window_size_and_ctrl_c_needs_root() {
    let f = Fixture::new();
    let script = "trap 'echo SIZE $(stty size)' WINCH; trap 'echo GOT-INT; echo DONE; exit 7' INT; \
                  echo TTY $(tty) $(stty size); echo READY; while true; do sleep 0.1; done";
    let out = Command::new("python3")
        .arg(testdata("pty-driver.py"))
        .arg(env!("CARGO_BIN_EXE_kiln"))
        .arg("--root")
        .arg(f.root.path())
        .args(["run", "-it", "--rootfs"])
        .arg(f.rootfs.path())
        .args(["sh", "-c", script])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("24 80"), "initial window size: {stdout}");
    assert!(
        stdout.contains("SIZE 40 132"),
        "SIGWINCH carries the new size: {stdout}"
    );
    assert!(
        stdout.contains("GOT-INT"),
        "Ctrl-C reaches the container: {stdout}"
    );
    assert!(stdout.contains("EXIT=7"), "{stdout}");
    assert!(!stdout.contains("TTY not a tty"), "{stdout}");
}

#[test]
fn run_kill_9_of_kiln_leaves_no_process_and_next_start_cleans_up_needs_root() {
    let f = Fixture::new();
    let _guard = KillOnDrop("sleep 4343");
    let mut child = f.run(&["sleep", "4343"]).spawn().unwrap();
    wait_until("the container to start", || {
        !pids_with_cmdline("sleep 4343")
            .iter()
            .all(|p| *p == i32::try_from(child.id()).unwrap())
    });
    child.kill().unwrap();
    child.wait().unwrap();
    wait_until("the container to die with kiln", || {
        pids_with_cmdline("sleep 4343").is_empty()
    });
    // The helper removes the run directory once kiln is gone (and a later
    // kiln start would remove what a killed helper left).
    wait_until("the run directory to go", || f.runs_left().is_empty());
    assert_eq!(f.sh(&[], "true").0, 0);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&f.root.path().display().to_string()));
}

#[test]
fn run_read_only_tmpfs_capabilities_and_masks_needs_root() {
    let f = Fixture::new();
    let (code, stdout, stderr) = f.sh(
        &["--read-only", "--tmpfs", "/scratch:size=1m"],
        "touch /x 2>/dev/null || echo ro; touch /scratch/y && echo tmpfs-ok",
    );
    assert_eq!((code, stdout.as_str()), (0, "ro\ntmpfs-ok\n"), "{stderr}");
    let caps = |flags: &[&str]| f.sh(flags, "grep CapEff /proc/self/status | cut -f2").1;
    assert_eq!(caps(&[]), "00000000a80425fb\n", "docker's default set");
    assert_eq!(
        caps(&["--cap-drop", "ALL", "--cap-add", "CHOWN"]),
        "0000000000000001\n"
    );
    assert_eq!(
        caps(&["--cap-add", "NET_ADMIN", "--cap-drop", "MKNOD"]),
        "00000000a00435fb\n"
    );
    assert_eq!(caps(&["-u", "alice"]), "0000000000000000\n");
    // /proc/timer_list is masked (docker's list), /proc/sys read-only, /sys read-only
    let probe = "cat /proc/timer_list | wc -c; grep -E ' /(sys|proc/sys) ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1 | tr '\\n' ' '; echo";
    let (_, stdout, _) = f.sh(&[], probe);
    assert_eq!(stdout, "0\nro ro \n");
    let (_, stdout, _) = f.sh(&["--privileged"], probe);
    assert!(
        !stdout.starts_with("0\n") && stdout.ends_with("rw \n"),
        "{stdout}"
    );
}

#[test]
fn run_names_are_unique_while_running_needs_root() {
    let f = Fixture::new();
    let _guard = KillOnDrop("sleep 4545");
    let mut first = f.run(&["--name", "web", "sleep", "4545"]).spawn().unwrap();
    wait_until("the first container", || {
        pids_with_cmdline("sleep 4545").len() >= 2
    });
    let (out, _, stderr) = output(&mut f.run(&["--name", "web", "true"]));
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr.contains("\"web\" is already in use"), "{stderr}");
    first.kill().unwrap();
    first.wait().unwrap();
    wait_until("the first container to go", || {
        pids_with_cmdline("sleep 4545").is_empty()
    });
    assert_eq!(
        output(&mut f.run(&["--name", "web", "true"]))
            .0
            .status
            .code(),
        Some(0)
    );
}
