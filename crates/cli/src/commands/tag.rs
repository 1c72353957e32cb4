//! `kiln tag SOURCE TARGET`: another name for an image.

use anyhow::Result;
use clap::Args;
use kiln_store::Store;

use crate::Exit;
use crate::cli::GlobalArgs;

/// Arguments of `kiln tag`.
#[derive(Debug, Args)]
pub struct TagArgs {
    /// The image (name, id or name@digest)
    #[arg(value_name = "SOURCE_IMAGE[:TAG]")]
    pub source: String,
    /// The new name
    #[arg(value_name = "TARGET_IMAGE[:TAG]")]
    pub target: String,
}

pub fn run(global: &GlobalArgs, args: &TagArgs) -> Result<Exit> {
    let target = kiln_oci::Reference::parse(&args.target)?;
    if target.digest().is_some() {
        anyhow::bail!(
            "refusing to create a tag with a digest reference: {}",
            args.target
        );
    }
    let store = Store::open(global.root_dir())?;
    store.tag(&args.source, &target)?;
    Ok(Exit::SUCCESS)
}
