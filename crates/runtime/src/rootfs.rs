//! Setting up the container's root filesystem inside its new mount
//! namespace: the overlay, `/proc`, `/dev`, `/sys`, the generated `/etc`
//! files, the extra mounts, docker's masked paths, and `pivot_root`.
//!
//! Every mount target inside the image is resolved with
//! [`Sys::resolve_in_root`], so an image's symlink (`/proc -> /etc`,
//! `/data -> /`) can never redirect a mount to a host path.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};

use crate::error::{Result, RuntimeError};
use crate::spec::{ContainerSpec, MountKind, Rootfs};
use crate::sys::Sys;

/// Paths docker masks: directories get an empty read-only tmpfs, files
/// `/dev/null`.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths docker makes read-only.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Host devices bound into the container's `/dev`.
pub const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// The mount points the runtime itself adds, besides the extra mounts:
/// `(path, is_dir)`. They go on the stubs lower dir.
pub const RUNTIME_MOUNT_POINTS: &[(&str, bool)] = &[
    ("/proc", true),
    ("/dev", true),
    ("/sys", true),
    ("/etc/hosts", false),
    ("/etc/resolv.conf", false),
    ("/etc/hostname", false),
];

/// The `-o` data of the overlay mount, with lower dirs named by their short
/// links (`0`, `1`, … in `rootfs.links`, the current directory at mount
/// time).
pub fn overlay_options(rootfs: &Rootfs) -> String {
    let lowers: Vec<String> = (0..rootfs.lowers.len()).map(|i| i.to_string()).collect();
    let mut data = format!("lowerdir={}", lowers.join(":"));
    if let (Some(upper), Some(work)) = (&rootfs.upper, &rootfs.work) {
        let _ = write!(
            data,
            ",upperdir={},workdir={}",
            short(&rootfs.links, upper).display(),
            short(&rootfs.links, work).display()
        );
    }
    // Without these the upper dir could hold redirects, metacopy-only files
    // and index entries, and could not be turned into a layer tar.
    data.push_str(",redirect_dir=off,metacopy=off,index=off");
    if rootfs.upper.is_some() {
        // No syncfs of the upper file system when the overlay goes away (on
        // a disk that costs more than the rest of a run): the upper dir is
        // thrown away, or read into a layer blob that is synced itself.
        data.push_str(VOLATILE);
    }
    data
}

/// The overlay option that skips syncing the upper dir (Linux 5.10+).
const VOLATILE: &str = ",volatile";

/// `path` relative to `base` when it is inside it (shorter option text).
fn short(base: &Path, path: &Path) -> PathBuf {
    path.strip_prefix(base)
        .ok()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| path.to_owned(), Path::to_owned)
}

fn resolve(sys: &dyn Sys, root: &Path, path: &str) -> Result<PathBuf> {
    sys.resolve_in_root(root, Path::new(path))
        .map_err(RuntimeError::sys("resolve mount target", path))
}

#[allow(clippy::too_many_arguments)] // mount(2)'s five, the Sys, and what to name in an error
fn mount(
    sys: &dyn Sys,
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
    what: &'static str,
    shown: &str,
) -> Result<()> {
    sys.mount(source, target, fstype, flags, data)
        .map_err(RuntimeError::sys(what, shown))
}

/// Set up the root filesystem at `spec.rootfs.merged` and switch to it.
/// Runs in the container's fresh mount namespace, before the process's
/// credentials change.
pub fn setup(sys: &dyn Sys, spec: &ContainerSpec) -> Result<()> {
    let rootfs = &spec.rootfs;
    let merged = rootfs.merged.as_path();
    // Nothing mounted from here on propagates back to the host.
    mount(
        sys,
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
        "make / private",
        "/",
    )?;

    sys.chdir(&rootfs.links)
        .map_err(RuntimeError::sys("chdir", &rootfs.links))?;
    let options = overlay_options(rootfs);
    let overlay = |data: &str| {
        sys.mount(
            Some(Path::new("overlay")),
            merged,
            Some("overlay"),
            MsFlags::empty(),
            Some(data),
        )
    };
    match overlay(&options) {
        Ok(()) => {}
        // A kernel before 5.10 does not know `volatile`: mount without it.
        Err(Errno::EINVAL) if options.ends_with(VOLATILE) => {
            overlay(options.trim_end_matches(VOLATILE))
                .map_err(RuntimeError::sys("mount overlay", merged))?;
        }
        Err(e) => return Err(RuntimeError::sys("mount overlay", merged)(e)),
    }

    let nosuid_nodev_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;

    let proc_dir = resolve(sys, merged, "/proc")?;
    mount(
        sys,
        Some(Path::new("proc")),
        &proc_dir,
        Some("proc"),
        nosuid_nodev_noexec,
        None,
        "mount proc",
        "/proc",
    )?;

    let sys_dir = resolve(sys, merged, "/sys")?;
    let mut sys_flags = nosuid_nodev_noexec;
    if !spec.privileged {
        sys_flags |= MsFlags::MS_RDONLY;
    }
    match sys.mount(
        Some(Path::new("sysfs")),
        &sys_dir,
        Some("sysfs"),
        sys_flags,
        None,
    ) {
        Ok(()) => {}
        // sysfs refuses a mount tied to a network namespace the caller does
        // not own; the host's, read-only, is what runc falls back to as well.
        Err(Errno::EPERM) => {
            mount(
                sys,
                Some(Path::new("/sys")),
                &sys_dir,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
                "bind /sys",
                "/sys",
            )?;
            let top = resolve(sys, merged, "/sys")?;
            mount(
                sys,
                None,
                &top,
                None,
                sys_flags | MsFlags::MS_BIND | MsFlags::MS_REMOUNT,
                None,
                "remount /sys",
                "/sys",
            )?;
        }
        Err(errno) => return Err(RuntimeError::sys("mount sysfs", "/sys")(errno)),
    }

    setup_dev(sys, spec, merged)?;

    for (path, source) in &spec.etc_files {
        let target = resolve(sys, merged, path)?;
        mount(
            sys,
            Some(source),
            &target,
            None,
            MsFlags::MS_BIND,
            None,
            "bind",
            path,
        )?;
    }

    for m in &spec.mounts {
        let shown = m.target.display().to_string();
        // `/dev` is the runtime's own tmpfs, which hides the stubs lower
        // dir: make mount points below it there (BuildKit mounts a RUN
        // heredoc script at /dev/pipes/). Nothing in it reaches a layer.
        if let Ok(below) = m.target.strip_prefix("/dev")
            && !below.as_os_str().is_empty()
            && m.is_dir()
        {
            sys.mkdir_all_in_root(merged, &m.target)
                .map_err(RuntimeError::sys("create mount point", &m.target))?;
        }
        let target = sys
            .resolve_in_root(merged, &m.target)
            .map_err(RuntimeError::sys("resolve mount target", &m.target))?;
        match &m.kind {
            MountKind::Bind {
                source,
                readonly,
                seed,
            } => {
                if *seed {
                    sys.copy_tree(&target, source)
                        .map_err(RuntimeError::sys("seed volume from", &m.target))?;
                }
                mount(
                    sys,
                    Some(source),
                    &target,
                    None,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None,
                    "bind",
                    &shown,
                )?;
                if *readonly {
                    let top = resolve(sys, merged, &shown)?;
                    mount(
                        sys,
                        None,
                        &top,
                        None,
                        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                        None,
                        "remount read-only",
                        &shown,
                    )?;
                }
            }
            // `prepare` turns anonymous volumes into seeded binds.
            MountKind::Volume { .. } => {
                return Err(RuntimeError::Setup {
                    message: format!("anonymous volume at {shown} was not prepared"),
                });
            }
            MountKind::Tmpfs { options, readonly } => {
                let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
                if *readonly {
                    flags |= MsFlags::MS_RDONLY;
                }
                let data = (!options.is_empty()).then_some(options.as_str());
                mount(
                    sys,
                    Some(Path::new("tmpfs")),
                    &target,
                    Some("tmpfs"),
                    flags,
                    data,
                    "mount tmpfs",
                    &shown,
                )?;
            }
        }
    }

    if !spec.privileged {
        mask_paths(sys, merged)?;
    }

    // WORKDIR is created if missing, before a read-only remount (it ends
    // up in the upper dir, like BuildKit's).
    let cwd = if spec.process.cwd.is_empty() {
        "/"
    } else {
        spec.process.cwd.as_str()
    };
    sys.mkdir_all_in_root(merged, Path::new(cwd))
        .map_err(RuntimeError::sys("create working directory", cwd))?;

    if rootfs.readonly {
        mount(
            sys,
            None,
            merged,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None,
            "remount / read-only",
            "/",
        )?;
    }

    // pivot_root(".", ".") stacks the old root on the new one; detaching it
    // leaves only the container's tree.
    sys.chdir(merged)
        .map_err(RuntimeError::sys("chdir", merged))?;
    sys.pivot_root(Path::new("."), Path::new("."))
        .map_err(RuntimeError::sys("pivot_root", merged))?;
    sys.umount2(Path::new("."), MntFlags::MNT_DETACH)
        .map_err(RuntimeError::sys("detach old root", "/"))?;
    sys.chdir(Path::new("/"))
        .map_err(RuntimeError::sys("chdir", "/"))?;
    Ok(())
}

fn setup_dev(sys: &dyn Sys, spec: &ContainerSpec, merged: &Path) -> Result<()> {
    let dev = resolve(sys, merged, "/dev")?;
    mount(
        sys,
        Some(Path::new("tmpfs")),
        &dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
        "mount tmpfs",
        "/dev",
    )?;
    // From here on /dev is our own tmpfs: names inside it are safe.
    let dev = resolve(sys, merged, "/dev")?;
    let err =
        |what: &'static str, name: &str| RuntimeError::sys(what, Path::new("/dev").join(name));
    for name in DEVICES {
        let node = dev.join(name);
        sys.create_file(&node).map_err(err("create", name))?;
        let host = Path::new("/dev").join(name);
        mount(
            sys,
            Some(&host),
            &node,
            None,
            MsFlags::MS_BIND,
            None,
            "bind",
            &host.display().to_string(),
        )?;
    }
    sys.mkdir(&dev.join("pts"), 0o755)
        .map_err(err("mkdir", "pts"))?;
    mount(
        sys,
        Some(Path::new("devpts")),
        &dev.join("pts"),
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
        "mount devpts",
        "/dev/pts",
    )?;
    sys.mkdir(&dev.join("shm"), 0o1777)
        .map_err(err("mkdir", "shm"))?;
    mount(
        sys,
        Some(Path::new("shm")),
        &dev.join("shm"),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=1777,size=65536k"),
        "mount tmpfs",
        "/dev/shm",
    )?;
    sys.mkdir(&dev.join("mqueue"), 0o755)
        .map_err(err("mkdir", "mqueue"))?;
    mount(
        sys,
        Some(Path::new("mqueue")),
        &dev.join("mqueue"),
        Some("mqueue"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
        "mount mqueue",
        "/dev/mqueue",
    )?;
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("core", "/proc/kcore"),
    ] {
        sys.symlink(Path::new(target), &dev.join(link))
            .map_err(err("symlink", link))?;
    }
    if spec.process.tty {
        let tty = sys
            .readlink(Path::new("/proc/self/fd/0"))
            .map_err(RuntimeError::sys("readlink", "/proc/self/fd/0"))?;
        let console = dev.join("console");
        sys.create_file(&console)
            .map_err(err("create", "console"))?;
        mount(
            sys,
            Some(&tty),
            &console,
            None,
            MsFlags::MS_BIND,
            None,
            "bind",
            "/dev/console",
        )?;
    }
    Ok(())
}

fn mask_paths(sys: &dyn Sys, merged: &Path) -> Result<()> {
    for path in MASKED_PATHS {
        let target = match sys.resolve_in_root(merged, Path::new(path)) {
            Ok(t) => t,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(RuntimeError::sys("resolve masked path", *path)(e)),
        };
        if sys.is_dir(&target) {
            mount(
                sys,
                Some(Path::new("tmpfs")),
                &target,
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                None,
                "mask",
                path,
            )?;
        } else {
            mount(
                sys,
                Some(Path::new("/dev/null")),
                &target,
                None,
                MsFlags::MS_BIND,
                None,
                "mask",
                path,
            )?;
        }
    }
    for path in READONLY_PATHS {
        let target = match sys.resolve_in_root(merged, Path::new(path)) {
            Ok(t) => t,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(RuntimeError::sys("resolve read-only path", *path)(e)),
        };
        mount(
            sys,
            Some(&target),
            &target,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
            "bind",
            path,
        )?;
        let top = resolve(sys, merged, path)?;
        mount(
            sys,
            None,
            &top,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None,
            "remount read-only",
            path,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Mount, Network, Process};
    use crate::sys::RecordingSys;

    fn spec() -> ContainerSpec {
        ContainerSpec {
            rootfs: Rootfs {
                lowers: vec!["/s/snap/a".into(), "/s/snap/b".into(), "/r/stubs".into()],
                links: "/r".into(),
                upper: Some("/r/upper".into()),
                work: Some("/r/work".into()),
                merged: "/r/merged".into(),
                readonly: false,
            },
            process: Process {
                argv: vec!["true".into()],
                env: vec![],
                cwd: "/app".into(),
                user: String::new(),
                tty: false,
                init: false,
                capabilities: vec![],
            },
            hostname: "h".into(),
            network: Network::None,
            etc_files: vec![("/etc/hosts".into(), "/r/hosts".into())],
            mounts: vec![
                Mount {
                    target: "/data".into(),
                    kind: MountKind::Bind {
                        source: "/host/data".into(),
                        readonly: true,
                        seed: false,
                    },
                },
                Mount {
                    target: "/tmp".into(),
                    kind: MountKind::Tmpfs {
                        options: "size=1m".into(),
                        readonly: false,
                    },
                },
            ],
            privileged: false,
            result: "/r/result".into(),
            lifeline_fd: None,
            run_dir: None,
            disk_dirs: Vec::new(),
            trash: None,
        }
    }

    #[test]
    fn overlay_uses_short_relative_names_and_disables_redirects() {
        let s = spec();
        assert_eq!(
            overlay_options(&s.rootfs),
            "lowerdir=0:1:2,upperdir=upper,workdir=work,redirect_dir=off,metacopy=off,index=off,volatile"
        );
        let mut ro = s.rootfs.clone();
        ro.upper = None;
        ro.work = None;
        assert_eq!(
            overlay_options(&ro),
            "lowerdir=0:1:2,redirect_dir=off,metacopy=off,index=off"
        );
    }

    #[test]
    fn lowerdir_stays_short_with_many_layers() {
        let mut s = spec();
        s.rootfs.lowers = (0..130)
            .map(|i| PathBuf::from(format!("/var/lib/kiln/snapshots/{i:064}")))
            .collect();
        assert!(overlay_options(&s.rootfs).len() < 600);
    }

    #[test]
    fn setup_order_and_flags() {
        let sys = RecordingSys::new(&["/proc/kcore", "/proc/keys"], &[]);
        setup(&sys, &spec()).unwrap();
        let calls = sys.calls();
        let text = calls.join("\n");
        assert!(
            calls[0].starts_with("mount - / - MsFlags(MS_REC | MS_PRIVATE)"),
            "{text}"
        );
        assert_eq!(calls[1], "chdir /r");
        assert!(
            calls[2].starts_with("mount overlay /r/merged overlay"),
            "{text}"
        );
        // sysfs read-only, a bound host device, the ro bind remount, tmpfs with options
        assert!(text.contains("mount sysfs /r/merged/sys sysfs MsFlags(MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)"), "{text}");
        assert!(
            text.contains("mount /dev/null /r/merged/dev/null - MsFlags(MS_BIND)"),
            "{text}"
        );
        assert!(
            text.contains("mount /host/data /r/merged/data - MsFlags(MS_BIND | MS_REC)"),
            "{text}"
        );
        assert!(
            text.contains("mount - /r/merged/data - MsFlags(MS_RDONLY | MS_REMOUNT | MS_BIND)"),
            "{text}"
        );
        assert!(
            text.contains("mount tmpfs /r/merged/tmp tmpfs MsFlags(MS_NOSUID | MS_NODEV) size=1m"),
            "{text}"
        );
        assert!(
            text.contains("mount /r/hosts /r/merged/etc/hosts - MsFlags(MS_BIND)"),
            "{text}"
        );
        // masked: files get /dev/null, directories a read-only tmpfs
        assert!(
            text.contains("mount /dev/null /r/merged/proc/kcore - MsFlags(MS_BIND)"),
            "{text}"
        );
        assert!(
            text.contains("mount tmpfs /r/merged/proc/acpi tmpfs MsFlags(MS_RDONLY)"),
            "{text}"
        );
        assert!(text.contains("mkdir_all_in_root /r/merged /app"), "{text}");
        assert!(!text.contains("/dev/console"), "{text}");
        let tail: Vec<_> = calls[calls.len() - 4..].to_vec();
        assert_eq!(
            tail,
            [
                "chdir /r/merged",
                "pivot_root . .",
                "umount2 . MntFlags(MNT_DETACH)",
                "chdir /"
            ]
        );
    }

    #[test]
    fn privileged_skips_masks_and_keeps_sys_writable() {
        let mut s = spec();
        s.privileged = true;
        let sys = RecordingSys::default();
        setup(&sys, &s).unwrap();
        let text = sys.calls().join("\n");
        assert!(!text.contains("/r/merged/proc/kcore"), "{text}");
        assert!(
            text.contains(
                "mount sysfs /r/merged/sys sysfs MsFlags(MS_NOSUID | MS_NODEV | MS_NOEXEC)"
            ),
            "{text}"
        );
    }

    #[test]
    fn read_only_root_and_tty_console_and_seeded_volume() {
        let mut s = spec();
        s.rootfs.readonly = true;
        s.process.tty = true;
        s.mounts = vec![Mount {
            target: "/vol".into(),
            kind: MountKind::Bind {
                source: "/root/volumes/v/_data".into(),
                readonly: false,
                seed: true,
            },
        }];
        let sys = RecordingSys::default();
        setup(&sys, &s).unwrap();
        let calls = sys.calls();
        let text = calls.join("\n");
        assert!(
            text.contains("mount /dev/pts/7 /r/merged/dev/console - MsFlags(MS_BIND)"),
            "{text}"
        );
        let seed = calls
            .iter()
            .position(|c| c == "copy_tree /r/merged/vol /root/volumes/v/_data")
            .unwrap();
        let bind = calls
            .iter()
            .position(|c| c.starts_with("mount /root/volumes/v/_data /r/merged/vol"))
            .unwrap();
        assert!(seed < bind);
        let workdir = calls
            .iter()
            .position(|c| c.starts_with("mkdir_all_in_root"))
            .unwrap();
        let ro = calls
            .iter()
            .position(|c| {
                c.starts_with("mount - /r/merged - MsFlags(MS_RDONLY | MS_REMOUNT | MS_BIND)")
            })
            .unwrap();
        assert!(workdir < ro, "{text}");
    }

    #[test]
    fn missing_masked_paths_are_skipped_and_missing_targets_fail() {
        let sys = RecordingSys::new(&[], &["/proc/scsi"]);
        setup(&sys, &spec()).unwrap();
        assert!(!sys.calls().join("\n").contains("/proc/scsi"));
        let sys = RecordingSys::new(&[], &["/data"]);
        let err = setup(&sys, &spec()).unwrap_err().to_string();
        assert!(err.contains("/data"), "{err}");
    }
}
