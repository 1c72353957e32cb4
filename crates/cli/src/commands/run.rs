//! `kiln run [OPTIONS] IMAGE [COMMAND [ARG…]]`: run a command in a new
//! container from an image in the store, like `docker run`.
//!
//! The image's layers are its snapshots in the store (overlay lower dirs,
//! shared by every container and build); the container writes to a fresh
//! upper dir that is removed when it exits: kiln keeps no stopped
//! containers (`--rm` is accepted for docker compatibility). While it runs,
//! the container is registered in the store, so `rmi` and `prune` leave
//! its image alone and `--name` is unique.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use anyhow::{Context, Result, bail};
use clap::Args;
use kiln_runtime::{ContainerConfig, Mount, MountKind, Network, Outcome, Runtime};
use kiln_store::{Container, ImageRecord, Store, StoreError};
use nix::sys::signal::{SigSet, Signal};

use crate::Exit;
use crate::cli::GlobalArgs;
use crate::diagnostic::Fatal;

/// Run a command in a new container
#[derive(Debug, Args)]
#[command(
    after_help = "The container gets the image's Entrypoint, Cmd, Env, WorkingDir, User and \
StopSignal (a SIGTERM sent to kiln reaches the container as the image's StopSignal); \
flags override them as in docker.\n\
Network: `host` shares the host's network (also what `default` and `bridge` mean for now); \
`none` gives an empty network namespace with only `lo` up.\n\
Volumes: `-v /host:/ctr` binds a host path; `-v name:/ctr` is a named volume kept under \
ROOT/volumes/NAME and seeded from the image's content while empty; `-v /ctr` an anonymous \
volume removed with the container.\n\
Exit status: the command's; 125 when kiln fails, 126 when the command cannot be run, \
127 when it is not found."
)]
// `-h` is `--hostname`, as in docker; help is `--help` only.
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Print help
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// Remove the container when it exits (always done: kiln keeps no stopped containers)
    #[arg(long)]
    pub rm: bool,
    /// Keep stdin open and attach it to the container
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-terminal
    #[arg(short, long)]
    pub tty: bool,
    /// Set an environment variable (`K=V`, or `K` to pass the caller's value)
    #[arg(short, long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Read environment variables from a file (one `K=V` or `K` a line, `#` comments)
    #[arg(long, value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Bind a host path (`/host:/ctr[:ro]`) or a named volume (`name:/ctr[:ro]`)
    #[arg(short, long, value_name = "SRC:DST[:ro]")]
    pub volume: Vec<String>,
    /// Mount a tmpfs (`/ctr[:size=64m,mode=1777,ro]`)
    #[arg(long, value_name = "DST[:OPTS]")]
    pub tmpfs: Vec<String>,
    /// Working directory inside the container
    #[arg(short, long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// User (`name|uid[:group|gid]`), resolved in the image's /etc/passwd and /etc/group
    #[arg(short, long)]
    pub user: Option<String>,
    /// Override the image's entrypoint (`""` clears it)
    #[arg(long, value_name = "CMD")]
    pub entrypoint: Option<String>,
    /// Network: `host` (default) or `none`
    #[arg(long, value_name = "MODE")]
    pub network: Option<String>,
    /// Container hostname [default: a random id]
    #[arg(short = 'h', long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// Name the container (unique among running containers of this store)
    #[arg(long)]
    pub name: Option<String>,
    /// Run kiln's minimal init as PID 1 (forwards signals, reaps zombies)
    #[arg(long)]
    pub init: bool,
    /// Mount the container's root filesystem read-only
    #[arg(long)]
    pub read_only: bool,
    /// Add a Linux capability (`NET_ADMIN`, `ALL`)
    #[arg(long, value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a Linux capability (`CHOWN`, `ALL`)
    #[arg(long, value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Give the container every capability, no masked paths, a writable /sys
    #[arg(long)]
    pub privileged: bool,
    /// IMAGE is a root file system directory, not an image (like podman's --rootfs):
    /// e.g. a `kiln build --output type=local` result. It is a read-only lower layer:
    /// the container's writes never reach it
    #[arg(long)]
    pub rootfs: bool,
    /// IMAGE, then the command and its arguments
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "IMAGE [COMMAND [ARG...]]"
    )]
    pub args: Vec<String>,
}

/// What an image contributes to a run (its OCI config and layers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    /// Lower dirs, top first.
    pub lowers: Vec<PathBuf>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub stop_signal: Option<String>,
}

impl ImageConfig {
    /// The parts of an OCI image config a run uses.
    pub fn from_oci(config: &kiln_oci::config::ImageConfig, lowers: Vec<PathBuf>) -> Self {
        let c = config.config.clone().unwrap_or_default();
        ImageConfig {
            lowers,
            entrypoint: c.entrypoint.unwrap_or_default(),
            cmd: c.cmd.unwrap_or_default(),
            env: c.env.unwrap_or_default(),
            working_dir: c.working_dir.unwrap_or_default(),
            user: c.user.unwrap_or_default(),
            stop_signal: c.stop_signal.filter(|s| !s.is_empty()),
        }
    }
}

fn fatal(exit: Exit, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Fatal {
        exit,
        message: message.into(),
    })
}

/// `kiln run`.
pub fn run(global: &GlobalArgs, args: &RunArgs) -> Result<Exit> {
    // Failures before the container runs are kiln's own: docker's 125.
    let failed = |e: anyhow::Error| {
        if e.downcast_ref::<Fatal>().is_some() {
            e
        } else {
            fatal(Exit::RUNTIME_FAILURE, format!("{e:#}"))
        }
    };
    let root = global.root_dir();
    let Some((source, command)) = args.args.split_first() else {
        return Err(failed(anyhow::anyhow!(
            "`kiln run` needs an image: kiln run [OPTIONS] IMAGE [COMMAND [ARG...]]"
        )));
    };
    // The lease keeps a prune from removing snapshots between resolving
    // them and registering the container that uses them.
    let (store, lease, image) = if args.rootfs {
        let store = Store::open(&root).map_err(|e| failed(e.into()))?;
        let lease = store.lease().map_err(|e| failed(e.into()))?;
        (store, lease, (rootfs_image(source).map_err(failed)?, None))
    } else {
        // One database open for the store's check and the lookup.
        let (store, lease, found) =
            Store::open_and_resolve(&root, source).map_err(|e| failed(e.into()))?;
        let image = store_image(&store, source, found).map_err(failed)?;
        (store, lease, image)
    };
    let (image, record) = image;
    let container = store
        .register_container(args.name.as_deref(), record.as_ref())
        .map_err(|e| failed(e.into()))?;
    drop(lease);
    let config = container_config(&root, args, &image, command, container.id()).map_err(failed)?;
    let helper = std::env::current_exe()
        .context("locating the kiln binary")
        .map_err(failed)?;
    let runtime = Runtime::open(&root.join("runtime"), &helper).map_err(|e| failed(e.into()))?;
    let stop_signal = image
        .stop_signal
        .as_deref()
        .map(parse_signal)
        .transpose()
        .map_err(failed)?;
    execute(&runtime, &config, args, stop_signal, &container)
}

/// `--rootfs DIR`: a directory as the only lower layer.
fn rootfs_image(dir: &str) -> Result<ImageConfig> {
    let path = Path::new(dir);
    if !path.is_dir() {
        bail!("--rootfs {dir}: not a directory");
    }
    Ok(ImageConfig {
        lowers: vec![std::fs::canonicalize(path)?],
        ..ImageConfig::default()
    })
}

/// An image from the store: its config and its snapshots (extracted from
/// the layer blobs on first use), top first.
fn store_image(
    store: &Store,
    name: &str,
    found: kiln_store::Result<ImageRecord>,
) -> Result<(ImageConfig, Option<ImageRecord>)> {
    let record = match found {
        Ok(r) => r,
        Err(StoreError::NoSuchImage(_)) => {
            let shown =
                kiln_oci::Reference::parse(name).map_or_else(|_| name.to_owned(), |r| r.familiar());
            bail!(
                "Unable to find image '{shown}' locally: build it, or get it with `kiln load` or `kiln import` (see `kiln images`)"
            );
        }
        Err(e) => return Err(e.into()),
    };
    let config = store.image_config(&record)?;
    let mut lowers = store.image_snapshots(&record)?;
    lowers.reverse();
    Ok((ImageConfig::from_oci(&config, lowers), Some(record)))
}

/// docker's rule: `--entrypoint` replaces the image's entrypoint and drops
/// its Cmd; arguments after IMAGE replace Cmd.
pub fn resolve_argv(
    entrypoint_flag: Option<&str>,
    image: &ImageConfig,
    args: &[String],
) -> Vec<String> {
    let (entrypoint, default_cmd) = match entrypoint_flag {
        Some("") => (Vec::new(), Vec::new()),
        Some(e) => (vec![e.to_owned()], Vec::new()),
        None => (image.entrypoint.clone(), image.cmd.clone()),
    };
    let cmd = if args.is_empty() {
        default_cmd
    } else {
        args.to_vec()
    };
    entrypoint.into_iter().chain(cmd).collect()
}

/// Set `K=V` in `env` (replacing an existing `K`).
fn set_env(env: &mut Vec<String>, entry: String) {
    let key = entry.split('=').next().unwrap_or_default().to_owned();
    env.retain(|e| e.split('=').next() != Some(key.as_str()));
    env.push(entry);
}

/// One `-e`/`--env-file` entry: `K=V` as is, `K` from `lookup` (dropped
/// when the caller has no such variable, like docker).
pub fn env_entry(raw: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<Option<String>> {
    if raw.is_empty() || raw.starts_with('=') {
        bail!("invalid environment variable `{raw}`: expected K=V or K");
    }
    if raw.contains('=') {
        return Ok(Some(raw.to_owned()));
    }
    Ok(lookup(raw).map(|v| format!("{raw}={v}")))
}

/// The lines of an env file that set something (blank lines and `#`
/// comments skipped).
pub fn env_file_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim_start)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

/// A parsed `-v`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Volume {
    /// `/host:/ctr`.
    Bind {
        source: PathBuf,
        target: String,
        readonly: bool,
    },
    /// `name:/ctr` (or `/ctr` alone: an anonymous volume).
    Named {
        name: Option<String>,
        target: String,
        readonly: bool,
    },
}

/// Parse `-v SRC:DST[:OPTS]` / `-v DST`.
pub fn parse_volume(spec: &str) -> Result<Volume> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, opts) = match parts.as_slice() {
        [target] => (None, *target, ""),
        [source, target] => (Some(*source), *target, ""),
        [source, target, opts] => (Some(*source), *target, *opts),
        _ => bail!("invalid volume `{spec}`: expected SRC:DST[:ro]"),
    };
    if !target.starts_with('/') {
        bail!("invalid volume `{spec}`: the container path `{target}` must be absolute");
    }
    let mut readonly = false;
    for opt in opts.split(',').filter(|o| !o.is_empty()) {
        match opt {
            "ro" => readonly = true,
            "rw" => readonly = false,
            // SELinux relabelling and propagation: nothing to do without
            // SELinux; bind mounts are private.
            "z" | "Z" | "private" | "rprivate" => {}
            other => bail!("invalid volume `{spec}`: unknown option `{other}` (ro, rw)"),
        }
    }
    Ok(match source {
        None => Volume::Named {
            name: None,
            target: target.to_owned(),
            readonly,
        },
        Some(s) if s.starts_with('/') || s.starts_with('.') || s.starts_with('~') => {
            let path = if let Some(rest) = s.strip_prefix('~') {
                PathBuf::from(std::env::var("HOME").unwrap_or_default())
                    .join(rest.trim_start_matches('/'))
            } else {
                std::path::absolute(s)?
            };
            Volume::Bind {
                source: path,
                target: target.to_owned(),
                readonly,
            }
        }
        Some(name) if kiln_store::valid_container_name(name) => Volume::Named {
            name: Some(name.to_owned()),
            target: target.to_owned(),
            readonly,
        },
        Some(name) => bail!(
            "invalid volume `{spec}`: `{name}` is neither an absolute host path nor a volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)"
        ),
    })
}

/// Parse `--tmpfs DST[:OPTS]` into a mount (docker's defaults: noexec,
/// nosuid, nodev).
pub fn parse_tmpfs(spec: &str) -> Result<Mount> {
    let (target, opts) = spec.split_once(':').unwrap_or((spec, ""));
    if !target.starts_with('/') {
        bail!("invalid --tmpfs `{spec}`: the container path must be absolute");
    }
    let mut readonly = false;
    let mut data = Vec::new();
    for opt in opts.split(',').filter(|o| !o.is_empty()) {
        match opt {
            "ro" => readonly = true,
            "rw" | "noexec" | "nosuid" | "nodev" => {}
            "exec" | "suid" | "dev" => bail!("invalid --tmpfs `{spec}`: `{opt}` is not allowed"),
            o if ["size=", "mode=", "uid=", "gid=", "nr_inodes=", "nr_blocks="]
                .iter()
                .any(|p| o.starts_with(p)) =>
            {
                data.push(o);
            }
            other => bail!("invalid --tmpfs `{spec}`: unknown option `{other}`"),
        }
    }
    Ok(Mount {
        target: target.into(),
        kind: MountKind::Tmpfs {
            options: data.join(","),
            readonly,
        },
    })
}

fn container_config(
    root: &Path,
    args: &RunArgs,
    image: &ImageConfig,
    command: &[String],
    container_id: &str,
) -> Result<ContainerConfig> {
    let argv = resolve_argv(args.entrypoint.as_deref(), image, command);
    if argv.is_empty() {
        bail!("no command specified: the image has no Entrypoint or Cmd; give one after IMAGE");
    }
    let mut env = image.env.clone();
    let lookup = |k: &str| std::env::var(k).ok();
    for file in &args.env_file {
        let text = fs_err::read_to_string(file)?;
        for line in env_file_lines(&text) {
            if let Some(e) =
                env_entry(line, lookup).with_context(|| format!("in {}", file.display()))?
            {
                set_env(&mut env, e);
            }
        }
    }
    for raw in &args.env {
        if let Some(e) = env_entry(raw, lookup)? {
            set_env(&mut env, e);
        }
    }
    let mut mounts = Vec::new();
    for spec in &args.volume {
        mounts.push(match parse_volume(spec)? {
            Volume::Bind {
                source,
                target,
                readonly,
            } => {
                // Like `docker run -v`, a missing host directory is created.
                if !source.exists() {
                    fs_err::create_dir_all(&source)?;
                }
                Mount {
                    target: target.into(),
                    kind: MountKind::Bind {
                        source,
                        readonly,
                        seed: false,
                    },
                }
            }
            Volume::Named {
                name: Some(name),
                target,
                readonly,
            } => {
                // docker's layout; the runtime seeds it while it is empty.
                let data = root.join("volumes").join(&name).join("_data");
                fs_err::create_dir_all(&data)?;
                Mount {
                    target: target.into(),
                    kind: MountKind::Bind {
                        source: data,
                        readonly,
                        seed: true,
                    },
                }
            }
            Volume::Named {
                name: None,
                target,
                readonly,
            } => Mount {
                target: target.into(),
                kind: MountKind::Volume { readonly },
            },
        });
    }
    for spec in &args.tmpfs {
        mounts.push(parse_tmpfs(spec)?);
    }
    let network = match args.network.as_deref() {
        None | Some("host" | "default" | "bridge") => Network::Host,
        Some("none") => Network::None,
        Some(other) => bail!("unknown network `{other}`: kiln supports `host` and `none`"),
    };
    let capabilities = kiln_runtime::caps::compute(&args.cap_add, &args.cap_drop, args.privileged)?;
    Ok(ContainerConfig {
        lowers: image.lowers.clone(),
        argv,
        env,
        cwd: args
            .workdir
            .clone()
            .unwrap_or_else(|| image.working_dir.clone()),
        user: args.user.clone().unwrap_or_else(|| image.user.clone()),
        // docker's default: the short container id.
        hostname: args
            .hostname
            .clone()
            .unwrap_or_else(|| container_id.chars().take(12).collect()),
        network,
        mounts,
        secrets: Vec::new(),
        tty: args.tty,
        init: args.init,
        readonly_rootfs: args.read_only,
        capabilities,
        privileged: args.privileged,
        keep_hostname_file: false,
        // kiln exits once the container is gone; its disk dirs are removed
        // by a detached reaper (on a disk that discards freed blocks
        // synchronously, that takes longer than the whole run).
        reap_detached: true,
    })
}

/// `SIGTERM`, `TERM`, `15` → a signal.
pub fn parse_signal(s: &str) -> Result<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).with_context(|| format!("invalid signal `{s}`"));
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>()
        .with_context(|| format!("invalid signal `{s}`"))
}

/// Signals kiln forwards to the container while it runs.
fn forwarded() -> SigSet {
    kiln_runtime::helper::FORWARDED_SIGNALS
        .iter()
        .copied()
        .collect()
}

/// Restores the terminal's settings on drop.
struct RawMode {
    saved: nix::sys::termios::Termios,
}

impl RawMode {
    fn enable() -> Option<RawMode> {
        let stdin = std::io::stdin();
        let saved = nix::sys::termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        nix::sys::termios::cfmakeraw(&mut raw);
        nix::sys::termios::tcsetattr(stdin.as_fd(), nix::sys::termios::SetArg::TCSANOW, &raw)
            .ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(
            std::io::stdin().as_fd(),
            nix::sys::termios::SetArg::TCSANOW,
            &self.saved,
        );
    }
}

fn window_size(fd: i32) -> Option<libc::winsize> {
    // SAFETY: TIOCGWINSZ fills a winsize.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    (unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &raw mut ws) } == 0).then_some(ws)
}

fn set_window_size(fd: i32, ws: &libc::winsize) {
    // SAFETY: TIOCSWINSZ reads a winsize.
    unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, std::ptr::from_ref(ws)) };
}

fn execute(
    runtime: &Runtime,
    config: &ContainerConfig,
    args: &RunArgs,
    stop_signal: Option<Signal>,
    container: &Container,
) -> Result<Exit> {
    let mut prepared = runtime
        .prepare(config)
        .map_err(|e| fatal(Exit::RUNTIME_FAILURE, e.to_string()))?;
    if !args.tty {
        // Without a tty there is nothing to pump, and no thread has been
        // started yet: kiln itself clones the container (the runtime falls
        // back to the helper below when the process has another thread).
        let null = if args.interactive {
            None
        } else {
            Some(
                File::open("/dev/null")
                    .map_err(|e| fatal(Exit::RUNTIME_FAILURE, format!("opening /dev/null: {e}")))?,
            )
        };
        let outcome = prepared
            .run_here(null.as_ref().map(AsFd::as_fd), stop_signal)
            .map_err(|e| fatal(Exit::RUNTIME_FAILURE, e.to_string()))?;
        if let Some(outcome) = outcome {
            return exit_for(outcome);
        }
    }
    // The helper holds the container's registration too: it stays until
    // the container is gone, even when kiln is killed first.
    if let Some(lock) = container.lock_file() {
        prepared
            .inherit(lock.as_fd())
            .map_err(|e| fatal(Exit::RUNTIME_FAILURE, e.to_string()))?;
    }
    let mut cmd = prepared.command();
    // The helper gets its own process group: a ^C typed at the terminal
    // reaches kiln only, which forwards it once.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);

    // Block the forwarded signals before any thread starts; a thread
    // picks them up with sigwait.
    let signals = forwarded();
    signals.thread_block().context("blocking signals")?;

    let mut pty_master: Option<OwnedFd> = None;
    let mut raw_mode = None;
    if args.tty {
        let ws = window_size(0);
        let pty = nix::pty::openpty(
            ws.as_ref()
                .map(|w| nix::pty::Winsize {
                    ws_row: w.ws_row,
                    ws_col: w.ws_col,
                    ws_xpixel: w.ws_xpixel,
                    ws_ypixel: w.ws_ypixel,
                })
                .as_ref(),
            None,
        )
        .context("allocating a pseudo-terminal")?;
        let slave = pty.slave;
        cmd.stdin(Stdio::from(slave.try_clone()?))
            .stdout(Stdio::from(slave.try_clone()?))
            .stderr(Stdio::from(slave));
        pty_master = Some(pty.master);
        raw_mode = RawMode::enable();
    } else if !args.interactive {
        cmd.stdin(Stdio::null());
    }

    let mut child = cmd.spawn().map_err(|e| {
        fatal(
            Exit::RUNTIME_FAILURE,
            format!("starting the runtime helper: {e}"),
        )
    })?;
    // kiln's copies of the slave went with `cmd`'s Stdio when spawned.
    drop(cmd);
    prepared.started();
    let helper = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(-1));

    let master_fd = pty_master.as_ref().map(AsRawFd::as_raw_fd);
    std::thread::spawn(move || {
        loop {
            let Ok(sig) = signals.wait() else { continue };
            if sig == Signal::SIGWINCH {
                if let (Some(m), Some(ws)) = (master_fd, window_size(0)) {
                    set_window_size(m, &ws);
                }
                continue;
            }
            // A stop request (SIGTERM, as `docker stop` sends) becomes the
            // image's StopSignal.
            let sig = match (sig, stop_signal) {
                (Signal::SIGTERM, Some(stop)) => stop,
                _ => sig,
            };
            let _ = nix::sys::signal::kill(helper, sig);
        }
    });

    let mut output_pump = None;
    if let Some(master) = &pty_master {
        let mut from = std::fs::File::from(master.try_clone()?);
        output_pump = Some(std::thread::spawn(move || {
            let mut stdout = std::io::stdout();
            let mut buf = [0u8; 8192];
            // EIO once every slave descriptor is closed: the container is gone.
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 || stdout.write_all(&buf[..n]).is_err() {
                    break;
                }
                let _ = stdout.flush();
            }
        }));
        if args.interactive {
            let mut to = std::fs::File::from(master.try_clone()?);
            std::thread::spawn(move || {
                let mut stdin = std::io::stdin();
                let mut buf = [0u8; 4096];
                while let Ok(n) = stdin.read(&mut buf) {
                    if n == 0 || to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    }

    let status: ExitStatus = child.wait().context("waiting for the runtime helper")?;
    if let Some(pump) = output_pump {
        let _ = pump.join();
    }
    drop(raw_mode);
    let outcome = prepared
        .outcome(&status)
        .map_err(|e| fatal(Exit::RUNTIME_FAILURE, e.to_string()))?;
    exit_for(outcome)
}

/// kiln's exit status for how the container ended (docker's codes).
fn exit_for(outcome: Outcome) -> Result<Exit> {
    match outcome {
        Outcome::ExecFailed { code, message } => {
            Err(fatal(Exit(u8::try_from(code).unwrap_or(127)), message))
        }
        Outcome::SetupFailed { message } => Err(fatal(Exit::RUNTIME_FAILURE, message)),
        other => Ok(Exit(u8::try_from(other.exit_code() & 0xff).unwrap_or(125))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn argv_follows_docker_rules() {
        let image = ImageConfig {
            entrypoint: s(&["/entry"]),
            cmd: s(&["--default"]),
            ..Default::default()
        };
        assert_eq!(resolve_argv(None, &image, &[]), s(&["/entry", "--default"]));
        assert_eq!(resolve_argv(None, &image, &s(&["x"])), s(&["/entry", "x"]));
        assert_eq!(resolve_argv(Some("/other"), &image, &[]), s(&["/other"]));
        assert_eq!(
            resolve_argv(Some("/other"), &image, &s(&["a"])),
            s(&["/other", "a"])
        );
        assert_eq!(resolve_argv(Some(""), &image, &s(&["sh"])), s(&["sh"]));
        assert!(resolve_argv(Some(""), &image, &[]).is_empty());
    }

    #[test]
    fn env_entries_and_files() {
        let lookup = |k: &str| (k == "HOME").then(|| "/home/me".to_owned());
        assert_eq!(env_entry("A=1=2", lookup).unwrap(), Some("A=1=2".into()));
        assert_eq!(
            env_entry("HOME", lookup).unwrap(),
            Some("HOME=/home/me".into())
        );
        assert_eq!(env_entry("UNSET", lookup).unwrap(), None);
        assert!(env_entry("=x", lookup).is_err());
        let lines: Vec<_> = env_file_lines("# c\n\nA=1\n  B\n").collect();
        assert_eq!(lines, ["A=1", "B"]);
        let mut env = s(&["A=1", "B=2"]);
        set_env(&mut env, "A=3".into());
        assert_eq!(env, s(&["B=2", "A=3"]));
    }

    #[test]
    fn volumes_parse_like_docker() {
        assert_eq!(
            parse_volume("/h:/c:ro").unwrap(),
            Volume::Bind {
                source: "/h".into(),
                target: "/c".into(),
                readonly: true
            }
        );
        assert_eq!(
            parse_volume("data:/c").unwrap(),
            Volume::Named {
                name: Some("data".into()),
                target: "/c".into(),
                readonly: false
            }
        );
        assert_eq!(
            parse_volume("/c").unwrap(),
            Volume::Named {
                name: None,
                target: "/c".into(),
                readonly: false
            }
        );
        for bad in ["a:b:c:d", "/h:rel", "/h:/c:bogus", "bad name:/c"] {
            assert!(parse_volume(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tmpfs_options_split_flags_from_data() {
        let m = parse_tmpfs("/run:size=1m,mode=1777,noexec,ro").unwrap();
        assert_eq!(
            m.kind,
            MountKind::Tmpfs {
                options: "size=1m,mode=1777".into(),
                readonly: true
            }
        );
        assert!(parse_tmpfs("rel").is_err());
        assert!(parse_tmpfs("/x:exec").is_err());
        assert!(parse_tmpfs("/x:what=1").is_err());
    }

    #[test]
    fn signals_parse_by_name_and_number() {
        assert_eq!(parse_signal("SIGQUIT").unwrap(), Signal::SIGQUIT);
        assert_eq!(parse_signal("usr1").unwrap(), Signal::SIGUSR1);
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert!(parse_signal("SIGNOPE").is_err());
    }
}
