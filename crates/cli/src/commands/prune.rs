//! `kiln prune [-a] [--keep-storage SIZE]`: free space.

use std::time::Duration;

use anyhow::{Result, anyhow};
use clap::Args;
use kiln_store::{PruneOptions, Store};

use crate::cli::GlobalArgs;
use crate::humanize::outln;
use crate::{Exit, humanize};

/// Cached remote contexts unused for this long go without `-a`.
const CONTEXTS_UNUSED_FOR: Duration = Duration::from_secs(7 * 24 * 3600);

/// Arguments of `kiln prune`.
#[derive(Debug, Args)]
#[command(after_help = "\
Always removes images without a name that no container uses, blobs and
snapshots nothing references, leftovers of interrupted operations, and the
remote build contexts (git checkouts, downloaded tarballs under
ROOT/contexts) not used for 7 days. With -a, also the build cache and every
cached remote context; --keep-storage keeps the most recently used build
cache, and the most recently used remote contexts, up to SIZE each.")]
pub struct PruneArgs {
    /// Also remove the build cache and every cached remote context
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
    let root = global.root_dir();
    let store = Store::open(&root)?;
    let all = args.all || keep_storage.is_some();
    let report = store.prune(&PruneOptions { all, keep_storage })?;
    let contexts = kiln_context::prune_cache(
        &root.join("contexts"),
        &kiln_context::CachePruneOptions {
            unused_for: (!all).then_some(CONTEXTS_UNUSED_FOR),
            keep_bytes: keep_storage,
        },
    )?;
    if !report.images.is_empty() {
        outln!("Deleted Images:");
        for d in &report.images {
            outln!("deleted: {d}");
        }
    }
    outln!(
        "Removed {} blobs, {} snapshots, {} build cache entries, {} cached contexts",
        report.blobs,
        report.snapshots,
        report.cache_entries,
        contexts.entries
    );
    outln!(
        "Total reclaimed space: {}",
        humanize::size(report.freed + contexts.freed)
    );
    Ok(Exit::SUCCESS)
}
