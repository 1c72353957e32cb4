//! `kiln pull [--platform os/arch[/variant]] [-q] NAME[:TAG|@DIGEST]`.

use anyhow::Result;
use clap::Args;
use kiln_oci::Reference;
use kiln_registry::Platform;
use kiln_store::Store;

use crate::Exit;
use crate::cli::GlobalArgs;
use crate::humanize::outln;
use crate::registry_glue::{RegistryArgs, Render, pull_to_store};

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
    let render = Render::new(args.quiet, "Pull");
    if !args.quiet {
        eprintln!(
            "{}: Pulling from {}",
            reference.tag().unwrap_or("latest"),
            reference.familiar_name()
        );
    }
    let name = reference.to_string();
    let before = store
        .images()?
        .into_iter()
        .find(|i| i.tags.contains(&name))
        .map(|i| i.manifest);
    let (pulled, _) = pull_to_store(
        global,
        &args.registry,
        &store,
        &reference,
        &platform,
        &render,
    )?;
    let up_to_date = before.as_ref() == Some(&pulled.manifest.digest);
    if args.quiet {
        outln!("{}", reference.familiar());
    } else {
        let digest = pulled
            .index
            .as_ref()
            .map_or(&pulled.manifest.digest, |i| &i.digest);
        eprintln!("Digest: {digest}");
        if up_to_date {
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
