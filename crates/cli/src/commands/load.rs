//! `kiln load [-i FILE]`: images from a docker-archive or OCI archive.

use std::io::IsTerminal;

use anyhow::{Context, Result, bail};
use clap::Args;
use kiln_store::Store;

use crate::Exit;
use crate::cli::GlobalArgs;
use crate::humanize::outln;

/// Arguments of `kiln load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Read from this file instead of stdin (docker or OCI archive, compressed or not)
    #[arg(short, long, value_name = "FILE")]
    pub input: Option<std::path::PathBuf>,
    /// Print nothing
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(global: &GlobalArgs, args: &LoadArgs) -> Result<Exit> {
    let store = Store::open(global.root_dir())?;
    let images = if let Some(path) = &args.input {
        let f = fs_err::File::open(path)?;
        store
            .load(f)
            .with_context(|| format!("loading {}", path.display()))?
    } else {
        if std::io::stdin().is_terminal() {
            bail!(
                "`kiln load` reads an image archive from stdin, but stdin is a terminal; use -i FILE or redirect"
            );
        }
        store
            .load(std::io::stdin().lock())
            .context("loading from stdin")?
    };
    if !args.quiet {
        for img in images {
            let refs = img.references();
            if refs.is_empty() {
                outln!("Loaded image ID: {}", img.config);
            }
            for r in refs {
                outln!("Loaded image: {}", r.familiar());
            }
        }
    }
    Ok(Exit::SUCCESS)
}
