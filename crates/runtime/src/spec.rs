//! The container spec: everything the helper process needs, written to a
//! file by the parent and read by `kiln __runtime SPEC-FILE`.
//!
//! All paths are host paths, prepared by [`crate::prepare`]: the lower
//! directories (top first, the stubs directory last), the upper and work
//! directories, and the generated `/etc` files.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError};

/// The network a container sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// The host's network namespace. `--network=default` of a RUN step maps
    /// here for now (an isolated network with outbound access comes later).
    #[default]
    Host,
    /// A new, empty network namespace with only `lo`, up.
    None,
}

/// One mount the runtime adds on top of the root filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Absolute path inside the container.
    pub target: PathBuf,
    /// What is mounted there.
    pub kind: MountKind,
}

/// The kinds of [`Mount`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MountKind {
    /// A host file or directory, bound recursively.
    Bind {
        /// The host path.
        source: PathBuf,
        /// Mounted read-only.
        readonly: bool,
        /// Before mounting, copy the image's content at the target into the
        /// source if the source is empty: docker's behaviour for a named
        /// volume that holds nothing yet.
        seed: bool,
    },
    /// An anonymous volume (`-v /ctr`): a new directory in the run
    /// directory, seeded from the image's content at the target, removed
    /// with the run (kiln keeps no stopped containers to reuse it).
    Volume {
        /// Mounted read-only.
        readonly: bool,
    },
    /// A fresh tmpfs.
    Tmpfs {
        /// tmpfs options (`size=64m,mode=1777`); empty for the defaults.
        options: String,
        /// Mounted read-only.
        readonly: bool,
    },
}

impl Mount {
    /// Whether the mount point is a directory (else a file).
    pub(crate) fn is_dir(&self) -> bool {
        match &self.kind {
            MountKind::Bind { source, .. } => source.is_dir(),
            MountKind::Tmpfs { .. } | MountKind::Volume { .. } => true,
        }
    }
}

/// The root filesystem: an overlay of lower dirs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rootfs {
    /// Lower directories, top first. The last one is the run's stubs
    /// directory with the mount points the runtime adds.
    pub lowers: Vec<PathBuf>,
    /// The directory that holds the short links `0`, `1`, … to the lower
    /// directories; the overlay is mounted from there with relative paths so
    /// that `lowerdir=` stays under a page whatever the number of layers.
    pub links: PathBuf,
    /// The upper directory (the new layer), `None` for a read-only rootfs.
    pub upper: Option<PathBuf>,
    /// overlayfs' work directory (same filesystem as `upper`).
    pub work: Option<PathBuf>,
    /// Where the overlay is mounted (inside the container's mount namespace).
    pub merged: PathBuf,
    /// Remount the root read-only (`--read-only`).
    pub readonly: bool,
}

/// How the container's process is started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    /// The command and its arguments; `argv[0]` is looked up on the
    /// container's `PATH` when it has no `/`.
    pub argv: Vec<String>,
    /// `KEY=VALUE` pairs.
    pub env: Vec<String>,
    /// Working directory inside the container (created if missing).
    pub cwd: String,
    /// `user[:group]` or `uid[:gid]`, resolved in the container's
    /// `/etc/passwd` and `/etc/group`; empty means root.
    pub user: String,
    /// stdin is a terminal: make it the controlling terminal and
    /// `/dev/console`.
    pub tty: bool,
    /// Run a minimal init as PID 1 that forwards signals and reaps zombies.
    pub init: bool,
    /// Capabilities (`CAP_…`) the process keeps.
    pub capabilities: Vec<String>,
}

/// Everything the helper needs to run one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// The root filesystem.
    pub rootfs: Rootfs,
    /// The process.
    pub process: Process,
    /// Hostname (UTS namespace).
    pub hostname: String,
    /// Network namespace.
    pub network: Network,
    /// Generated `/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname`, bound
    /// over the image's (the stubs make sure the mount points exist).
    pub etc_files: Vec<(String, PathBuf)>,
    /// Extra mounts, in order.
    pub mounts: Vec<Mount>,
    /// No masked paths, read-write `/sys`, every capability.
    pub privileged: bool,
    /// Where the helper writes its [`crate::helper::Outcome`].
    pub result: PathBuf,
    /// The read end of kiln's lifeline pipe: when it reports EOF, kiln is
    /// gone and the container is killed.
    pub lifeline_fd: Option<i32>,
    /// The run directory, which the helper removes itself when kiln went
    /// away (nobody else is left to do it).
    pub run_dir: Option<PathBuf>,
    /// The run's dirs on the state's file system (upper, work, volumes),
    /// removed with the run directory.
    #[serde(default)]
    pub disk_dirs: Vec<PathBuf>,
    /// When set, the helper does not leave [`ContainerSpec::disk_dirs`] to
    /// kiln: once the container is gone it hands them to a detached reaper
    /// through this trash dir (see [`crate::trash`]), so that nobody waits
    /// for the file system to free them.
    #[serde(default)]
    pub trash: Option<PathBuf>,
}

impl ContainerSpec {
    /// Write the spec to `path` (the helper reads it from there).
    pub fn write(&self, path: &Path) -> Result<()> {
        let bytes = serde_json::to_vec(self).map_err(|source| RuntimeError::Spec {
            path: path.to_owned(),
            source,
        })?;
        fs_err::write(path, bytes)?;
        Ok(())
    }

    /// Read a spec written by [`ContainerSpec::write`].
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = fs_err::read(path)?;
        serde_json::from_slice(&bytes).map_err(|source| RuntimeError::Spec {
            path: path.to_owned(),
            source,
        })
    }
}

/// Check that a mount target is absolute and not `/`, and normalise it
/// (`/a/./b/` → `/a/b`). `..` is rejected: targets are resolved inside the
/// root anyway, but a target that climbs is always a mistake.
pub fn check_target(target: &str) -> Result<PathBuf> {
    let bad = || RuntimeError::BadMountTarget {
        target: target.to_owned(),
    };
    if !target.starts_with('/') {
        return Err(bad());
    }
    let mut out = PathBuf::from("/");
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(bad()),
            part => out.push(part),
        }
    }
    if out == Path::new("/") {
        return Err(bad());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_normalised_and_checked() {
        assert_eq!(check_target("/a/./b//").unwrap(), PathBuf::from("/a/b"));
        for bad in ["", "rel", "/", "//", "/a/../b"] {
            assert!(check_target(bad).is_err(), "{bad}");
        }
    }
}
