//! `kiln prune [-a] [--keep-storage SIZE]`: free space.

use anyhow::{Result, anyhow};
use clap::Args;
use kiln_store::{PruneOptions, Store};

use crate::cli::GlobalArgs;
use crate::humanize::outln;
use crate::{Exit, humanize};

/// Arguments of `kiln prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Also remove the build cache
    #[arg(short, long)]
    pub all: bool,
    /// With --all: keep this much of the most recently used build cache (`10GB`, `512MB`)
    #[arg(long, value_name = "SIZE")]
    pub keep_storage: Option<String>,
    /// Do not ask for confirmation (kiln never asks; accepted for docker compatibility)
    #[arg(short, long)]
    pub force: bool,
}

pub fn run(global: &GlobalArgs, args: &PruneArgs) -> Result<Exit> {
    let keep_storage = args
        .keep_storage
        .as_deref()
        .map(|s| {
            humanize::parse_size(s).ok_or_else(|| {
                anyhow!("invalid --keep-storage `{s}`: expected a size like 512MB, 10GB or 1GiB")
            })
        })
        .transpose()?;
    let store = Store::open(global.root_dir())?;
    let report = store.prune(&PruneOptions {
        all: args.all || keep_storage.is_some(),
        keep_storage,
    })?;
    if !report.images.is_empty() {
        outln!("Deleted Images:");
        for d in &report.images {
            outln!("deleted: {d}");
        }
    }
    outln!(
        "Removed {} blobs, {} snapshots, {} build cache entries",
        report.blobs,
        report.snapshots,
        report.cache_entries
    );
    outln!("Total reclaimed space: {}", humanize::size(report.freed));
    Ok(Exit::SUCCESS)
}
