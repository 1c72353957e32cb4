//! `kiln pull [--platform os/arch[/variant]] [-q] NAME[:TAG|@DIGEST]`.

use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use kiln_oci::Reference;
use kiln_registry::{Platform, Registry};
use kiln_store::Store;

use crate::Exit;
use crate::cli::GlobalArgs;
use crate::humanize::outln;
use crate::registry_glue::{RegistryArgs, Render, StoreSink, runtime};

/// Arguments of `kiln pull`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// Image to pull (NAME[:TAG|@DIGEST]; the tag defaults to `latest`)
    #[arg(value_name = "NAME[:TAG|@DIGEST]")]
    pub image: String,
    /// Platform to pull from a multi-platform image [default: this machine's]
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// Print only the image's name
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

pub fn run(global: &GlobalArgs, args: &PullArgs) -> Result<Exit> {
    let reference = Reference::parse(&args.image)?;
    let platform: Platform = match &args.platform {
        Some(p) => p.parse()?,
        None => Platform::host(),
    };
    let store = Store::open(global.root_dir())?;
    let _lease = store.lease()?;
    let opts = args.registry.options(global, reference.domain())?;
    let registry = Registry::new(reference.domain(), opts)?;
    let render = Render::new(args.quiet, "Pull");
    if !args.quiet {
        eprintln!(
            "{}: Pulling from {}",
            reference.tag().unwrap_or("latest"),
            reference.familiar_name()
        );
    }
    let sink = Arc::new(StoreSink(store.clone()));
    let pulled =
        runtime()?.block_on(registry.pull(&reference, &platform, sink, &render.progress()));
    render.clear();
    let pulled = pulled.with_context(|| format!("pulling {}", reference.familiar()))?;
    let had_before = store
        .images()?
        .iter()
        .any(|i| i.manifest == pulled.manifest.digest && i.tags.contains(&reference.to_string()));
    // A digest reference names no tag to record; the image is kept untagged.
    let tags: Vec<Reference> = match reference.tag() {
        Some(t) => vec![reference.with_tag(t)?],
        None => Vec::new(),
    };
    store
        .insert_manifest(&pulled.manifest.digest, &tags)
        .with_context(|| format!("recording {} in the store", reference.familiar()))?;
    if args.quiet {
        outln!("{}", reference.familiar());
    } else {
        let digest = pulled
            .index
            .as_ref()
            .map_or(&pulled.manifest.digest, |i| &i.digest);
        eprintln!("Digest: {digest}");
        if had_before && pulled.downloaded == 0 {
            eprintln!("Status: Image is up to date for {}", reference.familiar());
        } else {
            eprintln!(
                "Status: Downloaded newer image for {}",
                reference.familiar()
            );
        }
        outln!("{}", reference.familiar());
    }
    Ok(Exit::SUCCESS)
}
