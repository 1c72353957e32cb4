//! `kiln rmi [-f] IMAGE…`: remove names and images.

use anyhow::Result;
use clap::Args;
use kiln_oci::Reference;
use kiln_store::{Store, StoreError};

use crate::Exit;
use crate::cli::GlobalArgs;
use crate::humanize::outln;

/// Arguments of `kiln rmi`.
#[derive(Debug, Args)]
#[command(
    after_help = "An image that a running container (`kiln run`) uses is never deleted; \
its last name is removed only with -f (the image then stays, without a name, until a prune after the container exits)."
)]
pub struct RmiArgs {
    /// Remove the image even when several names refer to it
    #[arg(short, long)]
    pub force: bool,
    /// Images (names, ids or name@digest)
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

pub fn run(global: &GlobalArgs, args: &RmiArgs) -> Result<Exit> {
    let store = Store::open(global.root_dir())?;
    let mut failed = false;
    for what in &args.images {
        if let Err(e) = remove(&store, what, args.force) {
            eprintln!("Error: {e}");
            failed = true;
        }
    }
    // Free the blobs now if no other kiln is busy; else `kiln prune` will.
    store.try_collect()?;
    Ok(if failed { Exit::FAILURE } else { Exit::SUCCESS })
}

fn remove(store: &Store, what: &str, force: bool) -> Result<(), StoreError> {
    let image = store.resolve(what)?;
    // A name (not an id, not a digest) that the image carries: untag it.
    if let Ok(r) = Reference::parse(what)
        && r.digest().is_none()
        && image.tags.contains(&r.to_string())
        && !is_id_of(what, &image)
    {
        // docker: removing the last name of an image a container uses needs
        // -f (the image then stays, without a name, until it is unused).
        if image.tags.len() == 1
            && !force
            && let Some(c) = store.containers_using(&image)?.first()
        {
            return Err(StoreError::ReferenceInUse {
                reference: what.to_owned(),
                container: c.short_id().to_owned(),
                id: image.config.short().to_owned(),
            });
        }
        let (img, deleted) = store.untag(&r)?;
        outln!("Untagged: {}", r.familiar());
        if deleted {
            outln!("Deleted: {}", img.config);
        }
        return Ok(());
    }
    if image.tags.len() > 1 && !force {
        return Err(StoreError::Conflict {
            id: image.config.short().to_owned(),
            names: image
                .references()
                .iter()
                .map(Reference::familiar)
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    for r in image.references() {
        outln!("Untagged: {}", r.familiar());
    }
    store.remove_image(&image)?;
    outln!("Deleted: {}", image.config);
    Ok(())
}

fn is_id_of(what: &str, image: &kiln_store::ImageRecord) -> bool {
    let hex = what.strip_prefix("sha256:").unwrap_or(what);
    !hex.is_empty() && image.config.hex().starts_with(hex)
}
