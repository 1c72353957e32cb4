//! The API the solver calls for a RUN step (async; the fork happens in the
//! helper process, never in the caller's tokio process).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::caps;
use crate::error::{Result, RuntimeError};
use crate::helper::Outcome;
use crate::prepare::{ContainerConfig, Prepared, Runtime, Secret};
use crate::spec::{Mount, MountKind, Network};

/// BuildKit's hostname for RUN steps; some build scripts look for it.
pub const STEP_HOSTNAME: &str = "buildkitsandbox";

/// A mount a RUN step adds (`RUN --mount=…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepMount {
    /// A host directory or file (a context, another stage's snapshot).
    Bind {
        /// Host path.
        source: PathBuf,
        /// Absolute path inside the container.
        target: String,
        /// Read-only (BuildKit's default for bind mounts).
        readonly: bool,
    },
    /// A persistent cache directory kept by the caller, bound read-write.
    Cache {
        /// Host directory.
        dir: PathBuf,
        /// Absolute path inside the container.
        target: String,
    },
    /// A fresh tmpfs.
    Tmpfs {
        /// Absolute path inside the container.
        target: String,
        /// Size limit in bytes (`None`: the kernel's default).
        size: Option<u64>,
    },
    /// A secret as a read-only file (`/run/secrets/<id>` by default).
    Secret(Secret),
}

/// What a RUN step runs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StepConfig {
    /// argv, already resolved from shell or exec form with the image's SHELL.
    pub argv: Vec<String>,
    /// `KEY=VALUE` pairs.
    pub env: Vec<String>,
    /// `USER` (`name[:group]`, `uid[:gid]`), empty for root.
    pub user: String,
    /// `WORKDIR`, created if missing (and then part of the layer).
    pub cwd: String,
    /// `RUN --network` (`default` is [`Network::Host`] for now).
    pub network: Network,
    /// `RUN --mount`s.
    pub mounts: Vec<StepMount>,
}

/// A finished RUN step: how the process ended, and its upper dir.
#[derive(Debug)]
pub struct StepResult {
    /// How the process ended.
    pub outcome: Outcome,
    run: Prepared,
}

impl StepResult {
    /// The exit status (0 on success).
    pub fn exit_code(&self) -> i32 {
        self.outcome.exit_code()
    }

    /// The upper dir: the new layer diff (whiteouts as 0/0 char devices,
    /// opaque dirs marked with `trusted.overlay.opaque=y`). Removed when the
    /// result is dropped, unless [`StepResult::persist`] moved it.
    pub fn upper(&self) -> PathBuf {
        self.run.upper()
    }

    /// Move the upper dir to `dest` (same filesystem as the runtime's state
    /// dir), e.g. the store's new snapshot directory.
    pub fn persist(self, dest: &Path) -> Result<()> {
        self.run.persist_upper(dest)
    }
}

impl StepConfig {
    fn container(&self, lowers: &[PathBuf]) -> ContainerConfig {
        let mut mounts = Vec::new();
        let mut secrets = Vec::new();
        for m in &self.mounts {
            match m {
                StepMount::Bind {
                    source,
                    target,
                    readonly,
                } => mounts.push(Mount {
                    target: target.into(),
                    kind: MountKind::Bind {
                        source: source.clone(),
                        readonly: *readonly,
                        seed: false,
                    },
                }),
                StepMount::Cache { dir, target } => mounts.push(Mount {
                    target: target.into(),
                    kind: MountKind::Bind {
                        source: dir.clone(),
                        readonly: false,
                        seed: false,
                    },
                }),
                StepMount::Tmpfs { target, size } => mounts.push(Mount {
                    target: target.into(),
                    kind: MountKind::Tmpfs {
                        options: size.map(|s| format!("size={s}")).unwrap_or_default(),
                        readonly: false,
                    },
                }),
                StepMount::Secret(s) => secrets.push(s.clone()),
            }
        }
        ContainerConfig {
            lowers: lowers.to_vec(),
            argv: self.argv.clone(),
            env: self.env.clone(),
            cwd: self.cwd.clone(),
            user: self.user.clone(),
            hostname: STEP_HOSTNAME.into(),
            network: self.network,
            mounts,
            secrets,
            keep_hostname_file: true,
            capabilities: caps::DOCKER_DEFAULT
                .iter()
                .map(|c| (*c).to_owned())
                .collect(),
            ..ContainerConfig::default()
        }
    }
}

/// Kills the helper and removes the run directory when a step's future is
/// dropped before it finished (cancellation).
struct Running {
    child: Option<tokio::process::Child>,
    run: Option<Prepared>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let mut run = self.run.take();
        // Breaking the lifeline makes the helper kill the container; the
        // SIGKILL makes sure of it (PID 1 has PDEATHSIG). Every mount is in
        // the container's mount namespace and goes with it.
        if let Some(r) = run.as_mut() {
            r.cancel();
        }
        let _ = child.start_kill();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = child.wait().await;
                let _ = tokio::task::spawn_blocking(move || drop(run)).await;
            });
        }
    }
}

impl Runtime {
    /// Run a RUN step: `config.argv` in a fresh overlay of `lowers` (top
    /// first), its stdout and stderr copied to the sinks. Returns how it
    /// ended and the upper dir (tidied, see [`crate::upper::clean`]).
    ///
    /// Dropping the future cancels the step: the process tree is killed and
    /// the run directory removed. Steps may run concurrently.
    pub async fn run_step<O, E>(
        &self,
        lowers: &[PathBuf],
        config: &StepConfig,
        stdout: &mut O,
        stderr: &mut E,
    ) -> Result<StepResult>
    where
        O: AsyncWrite + Unpin + Send + ?Sized,
        E: AsyncWrite + Unpin + Send + ?Sized,
    {
        let container = config.container(lowers);
        let rt = self.clone();
        let mut run = tokio::task::spawn_blocking(move || rt.prepare(&container))
            .await
            .map_err(|e| RuntimeError::Setup {
                message: format!("preparing the run: {e}"),
            })??;
        // The build goes on while the step's directories are removed.
        run.remove_in_background(self);
        let mut cmd = tokio::process::Command::from(run.command());
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn()?;
        run.started();
        let mut out = child.stdout.take();
        let mut err = child.stderr.take();
        let mut running = Running {
            child: Some(child),
            run: Some(run),
        };

        let copy_out = async {
            if let Some(o) = out.as_mut() {
                tokio::io::copy(o, stdout).await?;
            }
            stdout.flush().await
        };
        let copy_err = async {
            if let Some(e) = err.as_mut() {
                tokio::io::copy(e, stderr).await?;
            }
            stderr.flush().await
        };
        let (a, b) = tokio::join!(copy_out, copy_err);
        a?;
        b?;
        let status = match running.child.as_mut() {
            Some(c) => c.wait().await?,
            None => return Err(RuntimeError::Cancelled),
        };
        running.child = None;
        let Some(run) = running.run.take() else {
            return Err(RuntimeError::Cancelled);
        };
        let outcome = run.outcome(&status)?;
        match outcome {
            Outcome::SetupFailed { message } => Err(RuntimeError::Setup { message }),
            Outcome::Cancelled => Err(RuntimeError::Cancelled),
            outcome => {
                let upper = run.upper();
                tokio::task::spawn_blocking(move || crate::upper::clean(&upper))
                    .await
                    .map_err(|e| RuntimeError::Setup {
                        message: format!("cleaning the upper dir: {e}"),
                    })??;
                Ok(StepResult { outcome, run })
            }
        }
    }
}
