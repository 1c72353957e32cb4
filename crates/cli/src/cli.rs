//! The clap definition of kiln's command line. Each subcommand's arguments
//! live in its own file under `commands/`; this file only lists them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::commands;

/// Build container images from Dockerfiles without a daemon, and run them.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about, long_about = None, propagate_version = true)]
#[command(after_help = "Run `kiln COMMAND --help` for a command's options.")]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Options every command accepts.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Where kiln keeps images, layers and build cache
    /// [default: /var/lib/kiln as root, $XDG_DATA_HOME/kiln otherwise]
    #[arg(long, global = true, env = "KILN_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// Print more detail: error chains, timings, internal steps
    #[arg(long, global = true)]
    pub debug: bool,
}

impl GlobalArgs {
    /// The store root: `--root`, else `$KILN_ROOT`, else `/var/lib/kiln` as
    /// root, else `$XDG_DATA_HOME/kiln` (or `~/.local/share/kiln`).
    pub fn root_dir(&self) -> PathBuf {
        if let Some(root) = &self.root {
            return root.clone();
        }
        if is_root_user() {
            return PathBuf::from("/var/lib/kiln");
        }
        if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(xdg).join("kiln");
        }
        let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from);
        home.join(".local/share/kiln")
    }
}

fn is_root_user() -> bool {
    // /proc/self/status is always there on Linux and needs no libc binding.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// kiln's commands.
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process; boxing buys nothing
pub enum Command {
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions(commands::completions::CompletionsArgs),
    /// Build an image from a Dockerfile
    Build(commands::build::BuildArgs),
    /// Run a command in a new container
    Run(commands::run::RunArgs),
    /// Make an image from a root file system tar (like `docker import`)
    Import(commands::import::ImportArgs),
    /// List images
    Images(commands::images::ImagesArgs),
    /// Give an image another name
    Tag(commands::tag::TagArgs),
    /// Remove images
    Rmi(commands::rmi::RmiArgs),
    /// Show images as JSON
    Inspect(commands::inspect::InspectArgs),
    /// Show the steps that made an image
    History(commands::history::HistoryArgs),
    /// Write images to a docker-archive or OCI archive
    Save(commands::save::SaveArgs),
    /// Read images from a docker-archive or OCI archive
    Load(commands::load::LoadArgs),
    /// Download an image from a registry
    Pull(commands::pull::PullArgs),
    /// Upload an image to a registry
    Push(commands::push::PushArgs),
    /// Log in to a registry (credentials kept where docker keeps them)
    Login(commands::login::LoginArgs),
    /// Log out from a registry
    Logout(commands::logout::LogoutArgs),
    /// Remove unused blobs, snapshots, cached contexts and (with -a) build cache
    Prune(commands::prune::PruneArgs),
    /// Print a Dockerfile's syntax tree (BuildKit's parse; --json for machines)
    Parse(commands::parse::ParseArgs),
    /// Run BuildKit's build checks on a Dockerfile (no build needed)
    Check(commands::check::CheckArgs),
    /// Show what a build sees of its context (`ls`) and why (`why`)
    Context(commands::context::ContextArgs),
}
