//! The RUN-step API against real containers.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use kiln_runtime::{Network, Outcome, Secret, StepConfig, StepMount};

use crate::support::{
    KillOnDrop, busybox_rootfs, names, pids_with_cmdline, require_root, run_leftovers, runtime, sh,
    tree, wait_until,
};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Run one step; returns (result, stdout, stderr).
async fn step(
    rt: &kiln_runtime::Runtime,
    lowers: &[PathBuf],
    config: &StepConfig,
) -> (kiln_runtime::StepResult, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let result = rt
        .run_step(lowers, config, &mut out, &mut err)
        .await
        .unwrap();
    (
        result,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

#[test]
fn step_layer_has_created_changed_deleted_and_opaque_entries_only_needs_root() {
    require_root();
    let base = busybox_rootfs();
    std::fs::create_dir_all(base.path().join("data")).unwrap();
    std::fs::write(base.path().join("data/old"), "old").unwrap();
    std::fs::create_dir_all(base.path().join("opaque/sub")).unwrap();
    std::fs::write(base.path().join("opaque/sub/a"), "a").unwrap();
    let state = tempfile::tempdir().unwrap();
    let runtime = runtime(state.path());
    let config = StepConfig {
        argv: sh(
            "echo new > /new && echo changed >> /etc/passwd && rm /data/old && rm -rf /opaque && mkdir /opaque && echo b > /opaque/b && pwd && hostname && echo oops >&2 && cat /etc/hosts > /seen-hosts",
        ),
        cwd: "/work/dir".into(),
        ..StepConfig::default()
    };
    let (result, out, err) = rt().block_on(step(&runtime, &[base.path().to_owned()], &config));
    assert_eq!(result.outcome, Outcome::Exited { code: 0 }, "stderr: {err}");
    assert_eq!(out, "/work/dir\nbuildkitsandbox\n");
    assert_eq!(err, "oops\n");
    let upper = result.upper();
    assert_eq!(std::fs::read_to_string(upper.join("new")).unwrap(), "new\n");
    assert!(
        std::fs::read_to_string(upper.join("etc/passwd"))
            .unwrap()
            .ends_with("changed\n")
    );
    assert!(
        std::fs::read_to_string(upper.join("seen-hosts"))
            .unwrap()
            .contains("localhost buildkitsandbox")
    );
    let whiteout = std::fs::symlink_metadata(upper.join("data/old")).unwrap();
    assert!(
        whiteout.file_type().is_char_device() && whiteout.rdev() == 0,
        "deleted file is a 0/0 char device"
    );
    assert_eq!(
        kiln_runtime::upper::get_xattr(&upper.join("opaque"), "trusted.overlay.opaque")
            .unwrap()
            .as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(names(&upper.join("opaque")), ["b"]);
    assert!(
        upper.join("work/dir").is_dir(),
        "WORKDIR is created in the layer"
    );
    // Run-only mount points never reach the layer.
    let entries = tree(&upper);
    for absent in [
        "etc/hosts",
        "etc/resolv.conf",
        "etc/hostname",
        "proc",
        "dev",
        "sys",
        "run",
    ] {
        assert!(
            !entries.contains(&PathBuf::from(absent)),
            "{absent} in {entries:?}"
        );
    }
    // overlayfs' bookkeeping is stripped; only the opaque marker stays.
    for path in &entries {
        for name in kiln_runtime::upper::list_xattrs(&upper.join(path)).unwrap() {
            let name = String::from_utf8_lossy(&name).into_owned();
            assert!(
                !name.starts_with("trusted.overlay.") || name == "trusted.overlay.opaque",
                "{path:?}: {name}"
            );
        }
    }
    let dest = state.path().join("snapshot");
    result.persist(&dest).unwrap();
    assert!(dest.join("new").is_file());
    assert_eq!(
        run_leftovers(state.path()),
        Vec::<PathBuf>::new(),
        "run dir removed"
    );
}

#[test]
fn step_exit_codes_and_missing_commands_needs_root() {
    require_root();
    let base = busybox_rootfs();
    let state = tempfile::tempdir().unwrap();
    let runtime = runtime(state.path());
    let lowers = [base.path().to_owned()];
    let r = rt();
    let run = |argv: Vec<String>| {
        let config = StepConfig {
            argv,
            ..StepConfig::default()
        };
        r.block_on(step(&runtime, &lowers, &config)).0.outcome
    };
    assert_eq!(run(sh("exit 7")), Outcome::Exited { code: 7 });
    match run(vec!["no-such-tool".into()]) {
        Outcome::ExecFailed { code: 127, message } => assert!(
            message.contains("executable file not found in $PATH"),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        run(vec!["/etc/passwd".into()]),
        Outcome::ExecFailed { code: 126, .. }
    ));
    // A child killed by a signal: the shell reports 128 + 9.
    assert_eq!(
        run(sh("sh -c 'kill -9 $$'; exit $?")),
        Outcome::Exited { code: 137 }
    );
}

#[test]
fn step_env_user_groups_and_workdir_needs_root() {
    require_root();
    let base = busybox_rootfs();
    let state = tempfile::tempdir().unwrap();
    let runtime = runtime(state.path());
    let config = StepConfig {
        argv: sh("echo $GREETING; id -u; id -g; id -G; echo $HOME; pwd; echo $$"),
        env: vec!["GREETING=hello world".into()],
        user: "alice".into(),
        cwd: "/home/alice".into(),
        ..StepConfig::default()
    };
    let (result, out, err) = rt().block_on(step(&runtime, &[base.path().to_owned()], &config));
    assert_eq!(result.exit_code(), 0, "{err}");
    assert_eq!(
        out,
        "hello world\n1000\n1000\n1000 10 100\n/home/alice\n/home/alice\n1\n"
    );
    let config = StepConfig {
        argv: sh("id -u; id -g"),
        user: "65534:10".into(),
        ..StepConfig::default()
    };
    let (_, out, _) = rt().block_on(step(&runtime, &[base.path().to_owned()], &config));
    assert_eq!(out, "65534\n10\n");
    let (mut o, mut e) = (Vec::new(), Vec::new());
    let config = StepConfig {
        argv: sh("true"),
        user: "mallory".into(),
        ..StepConfig::default()
    };
    let err = rt()
        .block_on(runtime.run_step(&[base.path().to_owned()], &config, &mut o, &mut e))
        .unwrap_err();
    assert!(
        err.to_string().contains("unable to find user mallory"),
        "{err}"
    );
}

#[test]
fn step_mounts_bind_cache_tmpfs_secret_stay_out_of_the_layer_needs_root() {
    require_root();
    let base = busybox_rootfs();
    let state = tempfile::tempdir().unwrap();
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("input"), "from host").unwrap();
    let cache = tempfile::tempdir().unwrap();
    let runtime = runtime(state.path());
    let config = StepConfig {
        argv: sh(
            "cat /src/input; echo; touch /src/x 2>/dev/null && echo writable; echo cached > /cache/c; echo t > /scratch/t; cat /run/secrets/tok; echo; stat -c %a /run/secrets/tok; grep -c ' /scratch tmpfs' /proc/mounts",
        ),
        mounts: vec![
            StepMount::Bind {
                source: host.path().to_owned(),
                target: "/src".into(),
                readonly: true,
            },
            StepMount::Cache {
                dir: cache.path().to_owned(),
                target: "/cache".into(),
            },
            StepMount::Tmpfs {
                target: "/scratch".into(),
                size: Some(1 << 20),
            },
            StepMount::Secret(Secret {
                target: "/run/secrets/tok".into(),
                data: b"s3cret".to_vec(),
                mode: 0o400,
                uid: 0,
                gid: 0,
            }),
        ],
        ..StepConfig::default()
    };
    let (result, out, err) = rt().block_on(step(&runtime, &[base.path().to_owned()], &config));
    assert_eq!(result.exit_code(), 0, "{err}");
    assert_eq!(out, "from host\ns3cret\n400\n1\n");
    assert_eq!(
        std::fs::read_to_string(cache.path().join("c")).unwrap(),
        "cached\n"
    );
    assert!(!host.path().join("x").exists());
    let entries = tree(&result.upper());
    assert!(
        entries.is_empty(),
        "mount points and mounted content stay out of the layer: {entries:?}"
    );
}

#[test]
fn step_network_none_has_only_loopback_up_needs_root() {
    require_root();
    let base = busybox_rootfs();
    let state = tempfile::tempdir().unwrap();
    let runtime = runtime(state.path());
    let config = StepConfig {
        argv: sh(
            "ls /sys/class/net; cat /sys/class/net/lo/flags; ping -c1 -W1 127.0.0.1 >/dev/null && echo ping-ok",
        ),
        network: Network::None,
        ..StepConfig::default()
    };
    let (result, out, err) = rt().block_on(step(&runtime, &[base.path().to_owned()], &config));
    assert_eq!(result.exit_code(), 0, "{err}");
    assert_eq!(out, "lo\n0x9\nping-ok\n");
}

#[test]
fn step_rootfs_does_not_leak_and_concurrent_steps_do_not_interfere_needs_root() {
    require_root();
    let base = busybox_rootfs();
    let state = tempfile::tempdir().unwrap();
    let runtime = runtime(state.path());
    let lowers = [base.path().to_owned()];
    let tokio_rt = rt();
    let first = StepConfig {
        argv: sh("echo x > /leak"),
        ..StepConfig::default()
    };
    let (res, _, _) = tokio_rt.block_on(step(&runtime, &lowers, &first));
    assert_eq!(res.exit_code(), 0);
    drop(res);
    let second = StepConfig {
        argv: sh("test ! -e /leak"),
        ..StepConfig::default()
    };
    assert_eq!(
        tokio_rt
            .block_on(step(&runtime, &lowers, &second))
            .0
            .exit_code(),
        0
    );

    let configs: Vec<StepConfig> = (0..4)
        .map(|i| StepConfig {
            argv: sh(&format!(
                "echo {i} > /mine-{i}; sleep 0.2; ls / | grep -c mine-"
            )),
            ..StepConfig::default()
        })
        .collect();
    let results = tokio_rt.block_on(async {
        let (r0, r1, r2, r3) = tokio::join!(
            step(&runtime, &lowers, &configs[0]),
            step(&runtime, &lowers, &configs[1]),
            step(&runtime, &lowers, &configs[2]),
            step(&runtime, &lowers, &configs[3]),
        );
        vec![r0, r1, r2, r3]
    });
    for (i, (res, out, err)) in results.iter().enumerate() {
        assert_eq!(res.exit_code(), 0, "{err}");
        assert_eq!(out, "1\n", "run {i} sees only its own file");
        assert_eq!(names(&res.upper()), [format!("mine-{i}")]);
    }
    // The steps' dirs go in the background; all of them by the time the
    // runtime is gone.
    drop(results);
    drop(runtime);
    assert_eq!(run_leftovers(state.path()), Vec::<PathBuf>::new());
    let trash = state.path().join("trash");
    assert!(
        !trash.exists() || names(&trash).is_empty(),
        "{:?}",
        names(&trash)
    );
}

#[test]
fn step_cancellation_kills_the_tree_and_removes_the_run_needs_root() {
    require_root();
    let base = busybox_rootfs();
    let state = tempfile::tempdir().unwrap();
    let runtime = runtime(state.path());
    let marker = "sleep 4141";
    let _guard = KillOnDrop(marker.into());
    let config = StepConfig {
        argv: sh(&format!("{marker} & {marker} & wait")),
        ..StepConfig::default()
    };
    let r = rt();
    r.block_on(async {
        let (mut o, mut e) = (Vec::new(), Vec::new());
        let lowers = [base.path().to_owned()];
        let run = runtime.run_step(&lowers, &config, &mut o, &mut e);
        let started = async {
            while pids_with_cmdline(marker).len() < 2 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::select! {
            res = run => panic!("the step finished: {:?}", res.map(|r| r.outcome)),
            () = started => {}
        }
        // dropping the future cancelled the run
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = pids_with_cmdline(marker);
        let runs = run_leftovers(state.path());
        if left.is_empty() && runs.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still there after cancel: processes {left:?}, runs {runs:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&state.path().display().to_string()),
        "no mount left under the state dir"
    );
}

#[test]
fn stale_runs_of_a_killed_kiln_are_cleaned_at_start_needs_root() {
    require_root();
    let state = tempfile::tempdir().unwrap();
    let stale = state.path().join("runs/12345-0-0");
    std::fs::create_dir_all(stale.join("merged")).unwrap();
    std::fs::write(stale.join("lock"), "").unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &stale.join("merged"),
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    // made by a process that is gone (no such pid) and never finished
    let half = state.path().join("runs/999999999-1-0");
    std::fs::create_dir_all(&half).unwrap();
    // one being made right now by a live process (ours) stays
    let making = state
        .path()
        .join(format!("runs/{}-99-0", std::process::id()));
    std::fs::create_dir_all(&making).unwrap();
    let stubs_tmp = state.path().join("stubs/.tmp-999999999-0");
    std::fs::create_dir_all(stubs_tmp.join("proc")).unwrap();
    // upper, work and volume dirs of the stale runs (the runs dir itself
    // may be on a tmpfs that a reboot emptied), and of the live one
    let mut gone = Vec::new();
    for sub in ["upper", "work", "volumes"] {
        for id in ["12345-0-0", "999999999-1-0", "999999999-7-0"] {
            let dir = state.path().join(sub).join(id);
            std::fs::create_dir_all(dir.join("work/incompat/volatile")).unwrap();
            gone.push(dir);
        }
    }
    // trash a killed reaper left: a detached reaper started by `open`
    // removes it (nothing waits for that)
    let dead_trash = state.path().join("trash/999999999-3");
    std::fs::create_dir_all(dead_trash.join("work/work/incompat/volatile")).unwrap();
    let live_upper = state
        .path()
        .join(format!("upper/{}-99-0", std::process::id()));
    std::fs::create_dir_all(&live_upper).unwrap();
    let _ = runtime(state.path());
    for dir in gone {
        assert!(!dir.exists(), "{dir:?} left behind");
    }
    assert!(live_upper.is_dir(), "a live run's upper dir stays");
    wait_until("the orphaned trash to be reaped", || !dead_trash.exists());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    if mounts.contains(&stale.display().to_string()) {
        let _ = nix::mount::umount2(&stale.join("merged"), nix::mount::MntFlags::MNT_DETACH);
        panic!("stale mount left behind");
    }
    assert_eq!(
        names(&state.path().join("runs")),
        [making.file_name().unwrap().to_string_lossy()]
    );
    assert!(!stubs_tmp.exists());
}

#[test]
fn mount_targets_resolve_inside_the_root_even_through_escaping_symlinks_needs_root() {
    require_root();
    let base = busybox_rootfs();
    // The image's symlinks point out of the root: an absolute one, and one
    // that climbs with `..`. A naive mount would follow them to host paths
    // (gone after pivot_root); resolved in the root they land on the
    // image's /tmp and /data.
    std::fs::create_dir(base.path().join("data")).unwrap();
    std::os::unix::fs::symlink("/tmp", base.path().join("evil")).unwrap();
    std::os::unix::fs::symlink("../../../../data", base.path().join("climb")).unwrap();
    let state = tempfile::tempdir().unwrap();
    let runtime = runtime(state.path());
    let config = StepConfig {
        argv: sh("grep -E ' /(tmp|data|evil|climb) tmpfs' /proc/mounts | cut -d' ' -f2"),
        mounts: ["/evil", "/climb"]
            .map(|t| StepMount::Tmpfs {
                target: t.into(),
                size: Some(1 << 20),
            })
            .to_vec(),
        ..StepConfig::default()
    };
    let (result, out, err) = rt().block_on(step(&runtime, &[base.path().to_owned()], &config));
    assert_eq!(result.exit_code(), 0, "{err}");
    assert_eq!(out, "/tmp\n/data\n");
    assert!(
        tree(&result.upper()).is_empty(),
        "nothing written through the links"
    );
}
