//! `kiln run` of images made by `kiln import` of kiln-test-support's
//! busybox root file system. Real containers: these need root
//! (`*_needs_root`; they fail without it).

// Fixture helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kiln_oci::layer::{CreateOptions, create_layer};
use kiln_test_support::{FIXED_EPOCH, TempRoot, busybox_rootfs};

use crate::support::{kiln, output, output_with_stdin, require_root};

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/runtime")
        .join(name)
}

/// A tar of the busybox root file system, with `extra` applied to the tree
/// first.
fn rootfs_tar(extra: impl FnOnce(&Path)) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    busybox_rootfs(dir.path());
    extra(dir.path());
    let opts = CreateOptions {
        source_date_epoch: Some(FIXED_EPOCH),
        overlay_upper: false,
    };
    create_layer(dir.path(), Vec::new(), &opts).unwrap().0
}

/// A store root holding the image `bb` (busybox, with `/seed/from-image`).
struct Fixture {
    root: TempRoot,
}

impl Fixture {
    fn new() -> Fixture {
        require_root();
        let f = Fixture {
            root: TempRoot::new(),
        };
        f.import("bb", &[], |dir| {
            std::fs::create_dir_all(dir.join("seed")).unwrap();
            std::fs::write(dir.join("seed/from-image"), "image").unwrap();
        });
        f
    }

    /// `kiln import -c CHANGE… TAR NAME` of the busybox tree plus `extra`.
    fn import(&self, name: &str, changes: &[&str], extra: impl FnOnce(&Path)) {
        let tar = self.root.path().join("rootfs.tar");
        std::fs::write(&tar, rootfs_tar(extra)).unwrap();
        let mut cmd = kiln(self.root.path());
        cmd.arg("import");
        for c in changes {
            cmd.args(["-c", c]);
        }
        let (out, _, stderr) = output(cmd.arg(&tar).arg(name));
        assert!(out.status.success(), "import: {stderr}");
        std::fs::remove_file(tar).unwrap();
    }

    /// `kiln --root R run FLAGS… IMAGE CMD…`.
    fn run_image(&self, flags: &[&str], image: &str, cmd: &[&str]) -> Command {
        let mut c = kiln(self.root.path());
        c.arg("run").args(flags).arg(image).args(cmd);
        c
    }

    /// `kiln run FLAGS… bb CMD…`.
    fn run(&self, flags: &[&str], cmd: &[&str]) -> Command {
        self.run_image(flags, "bb", cmd)
    }

    fn sh(&self, flags: &[&str], script: &str) -> (i32, String, String) {
        let (out, stdout, stderr) = output(&mut self.run(flags, &["sh", "-c", script]));
        (out.status.code().unwrap_or(-1), stdout, stderr)
    }

    /// `kiln run IMAGE sh -c SCRIPT`: (status, stdout).
    fn sh_image(&self, image: &str, script: &str) -> (i32, String) {
        let (out, stdout, _) = output(&mut self.run_image(&[], image, &["sh", "-c", script]));
        (out.status.code().unwrap_or(-1), stdout)
    }

    fn dir_entries(&self, sub: &str) -> Vec<String> {
        std::fs::read_dir(self.root.path().join(sub))
            .map(|d| {
                let mut v: Vec<String> = d
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect();
                v.sort();
                v
            })
            .unwrap_or_default()
    }

    /// Run dirs (wherever the runtime keeps them) and upper, work and
    /// volume dirs left in the runtime's state.
    fn runs_left(&self) -> Vec<String> {
        let mut v = Vec::new();
        for dir in kiln_runtime::prepare::run_entry_dirs(&self.root.path().join("runtime")) {
            if let Ok(entries) = std::fs::read_dir(&dir) {
                v.extend(entries.flatten().map(|e| e.path().display().to_string()));
            }
        }
        v.sort();
        v
    }

    /// Container records left in the store (the registry's own lock aside).
    fn containers_left(&self) -> Vec<String> {
        let mut v = self.dir_entries("containers");
        v.retain(|n| n != "registry.lock");
        v
    }

    fn mounts_under_root(&self) -> Vec<String> {
        let root = self.root.path().display().to_string();
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.contains(&root))
            .map(str::to_owned)
            .collect()
    }

    /// Nothing of a finished run may be left: no run dir, no record, no
    /// mount; and the trash, where runs' disk dirs wait for the detached
    /// reaper, is emptied soon.
    fn assert_clean(&self) {
        assert!(self.runs_left().is_empty(), "{:?}", self.runs_left());
        let trash = self.root.path().join("runtime/trash");
        wait_until("the trash to be reaped", || {
            std::fs::read_dir(&trash).map_or(true, |mut d| d.next().is_none())
        });
        assert!(
            self.containers_left().is_empty(),
            "{:?}",
            self.containers_left()
        );
        assert!(
            self.mounts_under_root().is_empty(),
            "{:?}",
            self.mounts_under_root()
        );
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

/// Kills processes whose command line holds the marker, even when a test
/// fails; not a reaper that a finished `kiln run` forked (it has kiln's
/// command line, and removes the run's directories).
struct KillOnDrop(&'static str);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let reaper = format!("{}\n", kiln_runtime::trash::REAPER_NAME.to_string_lossy());
        for pid in pids_with_cmdline(self.0) {
            if std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c == reaper) {
                continue;
            }
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Read one line from a child's stdout.
fn line(reader: &mut impl BufRead) -> String {
    let mut l = String::new();
    reader.read_line(&mut l).unwrap();
    l
}

#[test]
fn run_exit_codes_like_docker_needs_root() {
    let f = Fixture::new();
    assert_eq!(f.sh(&[], "exit 3").0, 3);
    let (out, _, stderr) = output(&mut f.run(&[], &["no-such-cmd"]));
    assert_eq!(out.status.code(), Some(127), "{stderr}");
    assert!(
        stderr.contains("exec: \"no-such-cmd\": executable file not found in $PATH"),
        "{stderr}"
    );
    let (out, _, stderr) = output(&mut f.run(&[], &["/etc/passwd"]));
    assert_eq!(out.status.code(), Some(126), "{stderr}");
    let (out, _, stderr) = output(&mut f.run(&["--network", "bridge2"], &["true"]));
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert!(stderr.contains("unknown network `bridge2`"), "{stderr}");
    let (out, _, stderr) = output(&mut f.run(&[], &[]));
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert!(stderr.contains("no command specified"), "{stderr}");
    let (out, _, stderr) = output(&mut f.run(&["-u", "mallory"], &["true"]));
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert!(stderr.contains("unable to find user mallory"), "{stderr}");
    let (out, _, stderr) = output(&mut f.run_image(&[], "nosuch:1", &["true"]));
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert!(
        stderr.contains("Unable to find image 'nosuch:1' locally"),
        "{stderr}"
    );
    // killed by a signal: 128 + n (under --init; PID 1 ignores a SIGKILL
    // sent from inside its namespace)
    assert_eq!(f.sh(&["--init"], "kill -9 $$").0, 137);
    f.assert_clean();
}

#[test]
fn run_honours_the_image_config_and_flags_override_it_needs_root() {
    let f = Fixture::new();
    f.import(
        "cfg",
        &[
            "ENV GREETING=from-image PATH=/usr/bin:/bin",
            "WORKDIR /home/alice",
            "USER alice",
            r#"ENTRYPOINT ["/bin/sh", "-c", "echo $0 $GREETING; pwd; id -un"]"#,
            r#"CMD ["from-cmd"]"#,
        ],
        |_| {},
    );
    let (out, stdout, stderr) = output(&mut f.run_image(&[], "cfg", &[]));
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout, "from-cmd from-image\n/home/alice\nalice\n");
    // arguments replace Cmd (here: $0 of the entrypoint's script)
    let (_, stdout, _) = output(&mut f.run_image(&[], "cfg", &["arg0"]));
    assert_eq!(stdout, "arg0 from-image\n/home/alice\nalice\n");
    // flags override Env, WorkingDir, User and Entrypoint (which drops Cmd)
    let (out, stdout, stderr) = output(&mut f.run_image(
        &[
            "-e",
            "GREETING=flag",
            "-w",
            "/tmp",
            "-u",
            "root",
            "--entrypoint",
            "sh",
        ],
        "cfg",
        &["-c", "echo $GREETING $PATH; pwd; id -u"],
    ));
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout, "flag /usr/bin:/bin\n/tmp\n0\n");

    // StopSignal: a SIGTERM sent to kiln reaches the container as SIGUSR1.
    f.import("stop", &["STOPSIGNAL SIGUSR1"], |_| {});
    let _guard = KillOnDrop("stop-marker");
    let mut child = f
        .run_image(
            &[],
            "stop",
            &[
                "sh",
                "-c",
                "trap 'echo got-usr1; exit 5' USR1; trap 'echo got-term; exit 6' TERM; echo ready; while true; do sleep 0.05; done # stop-marker",
            ],
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    assert_eq!(line(&mut stdout), "ready\n");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(line(&mut stdout), "got-usr1\n");
    assert_eq!(child.wait().unwrap().code(), Some(5));
    f.assert_clean();
}

#[test]
fn run_separates_stdout_and_stderr_and_pipes_stdin_needs_root() {
    let f = Fixture::new();
    let out = output_with_stdin(
        &mut f.run(&["-i"], &["sh", "-c", "cat; echo to-err >&2"]),
        b"piped in\n",
    );
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
    let mut cmd = f.run(
        &[
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
        ],
        &[
            "sh",
            "-c",
            "echo $A $KILN_TEST_PASS $FROM_FILE $OVERRIDE; pwd",
        ],
    );
    cmd.env("KILN_TEST_PASS", "passed");
    let (out, stdout, stderr) = output(&mut cmd);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout, "1 passed yes flag\n/new/dir\n");
    let (_, stdout, _) = f.sh(&["-u", "alice"], "id -u; id -g; id -G; echo $HOME");
    assert_eq!(stdout, "1000\n1000\n1000 10 100\n/home/alice\n");
    let (_, stdout, _) = f.sh(&["-u", "1000:10"], "id -u; id -g");
    assert_eq!(stdout, "1000\n10\n");
    let (_, stdout, _) = f.sh(&["-u", "alice:users"], "id -G");
    assert_eq!(
        stdout, "100\n",
        "an explicit group means no supplementary groups"
    );
    let (_, stdout, _) = f.sh(&["-u", "4321"], "id -u; id -g; echo $HOME");
    assert_eq!(stdout, "4321\n0\n/\n", "an id not in passwd is fine");
}

#[test]
fn run_bind_mounts_read_only_and_volumes_needs_root() {
    let f = Fixture::new();
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("in"), "host file").unwrap();
    let rw = format!("{}:/mnt/rw", host.path().display());
    let ro = format!("{}:/mnt/ro:ro", host.path().display());
    let (code, stdout, stderr) = f.sh(
        &["-v", &rw, "-v", &ro],
        "cat /mnt/ro/in; echo; echo out > /mnt/rw/out; touch /mnt/ro/x 2>/dev/null || echo ro-refused",
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "host file\nro-refused\n");
    assert_eq!(
        std::fs::read_to_string(host.path().join("out")).unwrap(),
        "out\n"
    );

    // A new named volume is seeded from the image's content at its path,
    // and keeps what the container writes for the next run.
    let (code, stdout, stderr) = f.sh(
        &["-v", "vol1:/seed"],
        "cat /seed/from-image; echo; echo kept > /seed/written; rm /seed/from-image",
    );
    assert_eq!((code, stdout.as_str()), (0, "image\n"), "{stderr}");
    let data = f.root.path().join("volumes/vol1/_data");
    assert_eq!(
        std::fs::read_to_string(data.join("written")).unwrap(),
        "kept\n"
    );
    // Not seeded again (it is not empty), here mounted elsewhere and read-only.
    let (_, stdout, _) = f.sh(
        &["-v", "vol1:/seed:ro"],
        "ls /seed; touch /seed/y 2>/dev/null || echo ro",
    );
    assert_eq!(stdout, "written\nro\n");

    // An anonymous volume is seeded too, and goes with the container.
    let (code, stdout, stderr) = f.sh(&["-v", "/seed"], "ls /seed; grep -c ' /seed ' /proc/mounts");
    assert_eq!((code, stdout.as_str()), (0, "from-image\n1\n"), "{stderr}");
    assert_eq!(f.dir_entries("volumes"), ["vol1"]);
    f.assert_clean();
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
    // docker's default hostname: the short container id
    let (_, stdout, _) = f.sh(&[], "hostname");
    assert!(
        stdout.len() == 13 && stdout.trim().bytes().all(|b| b.is_ascii_hexdigit()),
        "{stdout:?}"
    );
    assert_eq!(f.sh(&[], "echo x > /leak; rm /seed/from-image").0, 0);
    assert_eq!(
        f.sh(&[], "test ! -e /leak && test -e /seed/from-image").0,
        0,
        "one run's changes are gone in the next"
    );
    f.assert_clean();
}

#[test]
fn run_multi_layer_image_from_a_run_step_needs_root() {
    // RUN step → layer (whiteouts, opaque dir) → image → kiln run: the
    // path a build takes, with the layers in the right order.
    let f = Fixture::new();
    let store = kiln_store::Store::open(f.root.path()).unwrap();
    let base = store.resolve("bb").unwrap();
    let mid_dir = tempfile::tempdir_in(f.root.path()).unwrap();
    for d in ["opaque/sub", "data", "etc"] {
        std::fs::create_dir_all(mid_dir.path().join(d)).unwrap();
    }
    std::fs::write(mid_dir.path().join("opaque/sub/a"), "a").unwrap();
    std::fs::write(mid_dir.path().join("data/old"), "old").unwrap();
    std::fs::write(mid_dir.path().join("etc/motd"), "mid").unwrap();
    let mid = store
        .add_layer_from_dir(mid_dir.path(), &CreateOptions::default())
        .unwrap();
    let mut lowers: Vec<PathBuf> = store
        .image_snapshots(&base)
        .unwrap()
        .into_iter()
        .chain([store.snapshot(&mid).unwrap()])
        .collect();
    lowers.reverse();

    let runtime = kiln_runtime::Runtime::open(
        &f.root.path().join("runtime"),
        Path::new(env!("CARGO_BIN_EXE_kiln")),
    )
    .unwrap();
    let step = kiln_runtime::StepConfig {
        argv: [
            "/bin/sh",
            "-c",
            "rm /data/old && rm -rf /opaque && mkdir /opaque && echo b > /opaque/b && echo top > /etc/motd",
        ]
        .map(str::to_owned)
        .to_vec(),
        ..kiln_runtime::StepConfig::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut o, mut e) = (Vec::new(), Vec::new());
    let result = rt
        .block_on(runtime.run_step(&lowers, &step, &mut o, &mut e))
        .unwrap();
    assert_eq!(result.exit_code(), 0, "{}", String::from_utf8_lossy(&e));
    let top = store
        .add_layer_from_dir(
            &result.upper(),
            &CreateOptions {
                source_date_epoch: None,
                overlay_upper: true,
            },
        )
        .unwrap();
    drop(result);

    let mut cfg = store.image_config(&base).unwrap();
    cfg.rootfs.diff_ids.push(mid.diff_id.clone());
    cfg.rootfs.diff_ids.push(top.diff_id.clone());
    let (bytes, _) = cfg.to_bytes();
    store
        .commit_image(
            &bytes,
            &[base.layers[0].clone(), mid, top],
            &[kiln_oci::Reference::parse("layered").unwrap()],
        )
        .unwrap();
    let (out, stdout, stderr) = output(&mut f.run_image(
        &[],
        "layered",
        &[
            "sh",
            "-c",
            "cat /etc/motd; ls /opaque /data; cat /opaque/sub/a 2>/dev/null; cat /seed/from-image",
        ],
    ));
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stdout, "top\n/data:\n\n/opaque:\nb\nimage",
        "the top layer wins, its whiteouts hide, its opaque dir replaces"
    );
    f.assert_clean();
}

#[test]
fn run_init_reaps_zombies_and_forwards_signals_needs_root() {
    let f = Fixture::new();
    // The orphaned `sh` exits at once; its parent (PID 1) must reap it.
    let script = "sh -c 'sleep 0 & exit 0' & sleep 0.3; cat /proc/1/comm; grep -l '^State:.*Z' /proc/[0-9]*/status | wc -l";
    let (code, stdout, stderr) = f.sh(&["--init"], script);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "kiln-init\n0\n");

    for flags in [&[][..], &["--init"][..]] {
        let _guard = KillOnDrop("trap-marker");
        let mut child = f
            .run(flags, &["sh", "-c", "trap 'echo got-term; exit 42' TERM; echo ready; while true; do sleep 0.05; done # trap-marker"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        assert_eq!(line(&mut stdout), "ready\n");
        Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert_eq!(line(&mut stdout), "got-term\n", "{flags:?}");
        assert_eq!(child.wait().unwrap().code(), Some(42), "{flags:?}");
    }
    f.assert_clean();
}

#[test]
fn run_pty_raw_mode_window_size_and_ctrl_c_needs_root() {
    let f = Fixture::new();
    let script = "trap 'echo SIZE $(stty size)' WINCH; trap 'echo GOT-INT; echo DONE; exit 7' INT; \
                  echo TTY $(tty) $(stty size); echo READY; while true; do sleep 0.05; done";
    let out = Command::new("python3")
        .arg(testdata("pty-driver.py"))
        .arg(env!("CARGO_BIN_EXE_kiln"))
        .arg("--root")
        .arg(f.root.path())
        .args(["run", "-it", "bb", "sh", "-c", script])
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
    f.assert_clean();
}

#[test]
fn run_kill_9_of_kiln_leaves_no_process_and_next_start_cleans_up_needs_root() {
    let f = Fixture::new();
    let _guard = KillOnDrop("sleep 4343");
    let mut child = f
        .run(&["--name", "doomed", "-v", "/anon"], &["sleep", "4343"])
        .spawn()
        .unwrap();
    let kiln_pid = i32::try_from(child.id()).unwrap();
    wait_until("the container to start", || {
        pids_with_cmdline("sleep 4343").iter().any(|p| {
            *p != kiln_pid
                && std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c == "sleep\n")
        })
    });
    child.kill().unwrap();
    child.wait().unwrap();
    wait_until("the container to die with kiln", || {
        pids_with_cmdline("sleep 4343").is_empty()
    });
    // Its mounts went with the container's mount namespace.
    assert!(f.mounts_under_root().is_empty());
    // kiln ran the container itself (no tty): its run directory and the
    // anonymous volume stay until the next start, which removes them with
    // the dead container's record (its name is free again).
    assert!(!f.runs_left().is_empty(), "the killed run left nothing?");
    assert_eq!(f.sh(&["--name", "doomed"], "true").0, 0);
    f.assert_clean();
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
fn run_names_are_unique_and_rmi_refuses_a_running_image_needs_root() {
    let f = Fixture::new();
    let _guard = KillOnDrop("sleep 4545");
    let mut first = f
        .run(&["--rm", "--name", "web"], &["sleep", "4545"])
        .spawn()
        .unwrap();
    wait_until("the first container", || {
        pids_with_cmdline("sleep 4545").len() >= 2
    });
    let (out, _, stderr) = output(&mut f.run(&["--name", "web"], &["true"]));
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr.contains("\"web\" is already in use"), "{stderr}");

    let (out, _, stderr) = output(kiln(f.root.path()).args(["rmi", "bb"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("unable to remove repository reference \"bb\" (must force) - container"),
        "{stderr}"
    );
    let (_, id, _) = output(kiln(f.root.path()).args(["images", "-q"]));
    let (out, _, stderr) = output(kiln(f.root.path()).args(["rmi", "-f", id.trim()]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("(cannot be forced) - image is being used by running container"),
        "{stderr}"
    );
    let (out, _, _) = output(kiln(f.root.path()).args(["prune"]));
    assert!(out.status.success());
    assert_eq!(
        output(kiln(f.root.path()).args(["images", "-q"])).1,
        id,
        "still there"
    );

    first.kill().unwrap();
    first.wait().unwrap();
    wait_until("the first container to go", || {
        pids_with_cmdline("sleep 4545").is_empty()
    });
    // kiln ran the container itself (no tty) and held the registration:
    // it went with kiln, the name is free at once.
    let (out, _, stderr) = output(&mut f.run(&["--name", "web"], &["true"]));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let (out, _, stderr) = output(kiln(f.root.path()).args(["rmi", "bb"]));
    assert!(out.status.success(), "{stderr}");
    f.assert_clean();
}

#[test]
fn run_concurrent_containers_do_not_interfere_needs_root() {
    let f = Fixture::new();
    let children: Vec<_> = (0..4)
        .map(|i| {
            f.run(
                &[],
                &[
                    "sh",
                    "-c",
                    &format!(
                        "echo {i} > /mine-{i}; sleep 0.2; ls / | grep -c mine-; cat /mine-{i}"
                    ),
                ],
            )
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("1\n{i}\n"));
    }
    f.assert_clean();
}

#[test]
fn run_rootfs_directory_is_a_read_only_lower_needs_root() {
    let f = Fixture::new();
    let dir = tempfile::tempdir().unwrap();
    busybox_rootfs(dir.path());
    let mut cmd = kiln(f.root.path());
    cmd.arg("run").arg("--rootfs").arg(dir.path()).args([
        "sh",
        "-c",
        "echo x > /written; head -1 /etc/passwd",
    ]);
    let (out, stdout, stderr) = output(&mut cmd);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout, "root:x:0:0:root:/root:/bin/sh\n");
    assert!(!dir.path().join("written").exists());
    let (out, _, stderr) =
        output(kiln(f.root.path()).args(["run", "--rootfs", "/nonexistent", "true"]));
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr.contains("not a directory"), "{stderr}");
    f.assert_clean();
}

#[test]
fn the_container_starts_with_default_signal_dispositions_needs_root() {
    use std::os::unix::process::CommandExt as _;
    let f = Fixture::new();
    let mut cmd = f.run(&[], &["cat", "/proc/self/status"]);
    // kiln itself started with SIGINT and SIGQUIT ignored, as a background
    // job of a non-interactive shell is.
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_IGN);
            libc::signal(libc::SIGQUIT, libc::SIG_IGN);
            Ok(())
        });
    }
    let (out, stdout, stderr) = output(&mut cmd);
    assert!(out.status.success(), "{stderr}");
    let ignored = stdout
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .unwrap_or_else(|| panic!("no SigIgn in {stdout}"));
    assert_eq!(ignored.trim(), "0000000000000000", "{stdout}");
    f.assert_clean();
}

#[test]
fn run_sees_a_moved_tag_and_an_untag_at_once_needs_root() {
    // `kiln run` answers an image it resolved before from the store's
    // lookup cache; any change to the database must invalidate it.
    let f = Fixture::new();
    f.import("app", &["ENV WHICH=one"], |_| {});
    assert_eq!(f.sh_image("app", "echo $WHICH"), (0, "one\n".into()));
    assert_eq!(f.sh_image("app", "echo $WHICH"), (0, "one\n".into()));
    f.import("app", &["ENV WHICH=two"], |_| {});
    assert_eq!(f.sh_image("app", "echo $WHICH"), (0, "two\n".into()));
    let (out, _, stderr) = output(kiln(f.root.path()).args(["rmi", "app"]));
    assert!(out.status.success(), "{stderr}");
    let (out, _, stderr) = output(&mut f.run_image(&[], "app", &["true"]));
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert!(stderr.contains("Unable to find image 'app"), "{stderr}");
    f.assert_clean();
}

#[test]
fn the_reaper_a_run_leaves_keeps_none_of_kilns_descriptors_needs_root() {
    let f = Fixture::new();
    // With the trash lock held, the reaper that `kiln run` forks to remove
    // the run's directories waits: it is still there after kiln has exited.
    // (Taken before any run, so that no run before the one under test can
    // hang the test.)
    let trash = f.root.path().join("runtime/trash");
    std::fs::create_dir_all(f.root.path().join("runtime")).unwrap();
    let lock = kiln_runtime::trash::hold_lock(&trash).unwrap();
    let reaper = || -> Option<i32> {
        std::fs::read_dir(&trash).ok()?.flatten().find_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.split('-').next()?.parse().ok()
        })
    };
    // Meanwhile kiln's stdout and stderr reach EOF: the reaper holds
    // neither.
    let mut run = f.run(&["--name", "held"], &["echo", "hi"]);
    let (sent, got) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sent.send(output(&mut run));
    });
    let Ok((out, stdout, stderr)) = got.recv_timeout(Duration::from_secs(30)) else {
        // End the test rather than wait for ever: the reaper goes.
        if let Some(pid) = reaper() {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
        panic!("kiln's output stayed open while its reaper waited");
    };
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout, "hi\n");
    let pid = reaper().expect("the run's directories wait in the trash");
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap(),
        format!("{}\n", kiln_runtime::trash::REAPER_NAME.to_string_lossy())
    );
    // Nor the container's registration: the name is free at once.
    let (out, _, stderr) = output(&mut f.run(&["--name", "held"], &["true"]));
    assert!(out.status.success(), "{stderr}");
    drop(lock);
    f.assert_clean();
}
