//! `kiln inspect IMAGE…`: docker-style JSON of images.

use anyhow::Result;
use clap::Args;
use kiln_oci::Reference;
use kiln_store::Store;

use crate::Exit;
use crate::cli::GlobalArgs;
use crate::humanize::outln;

/// Arguments of `kiln inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Images (names, ids or name@digest)
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

pub fn run(global: &GlobalArgs, args: &InspectArgs) -> Result<Exit> {
    let store = Store::open(global.root_dir())?;
    let mut out = Vec::new();
    let mut failed = false;
    for what in &args.images {
        match inspect(&store, what) {
            Ok(v) => out.push(v),
            Err(e) => {
                eprintln!("Error: {e}");
                failed = true;
            }
        }
    }
    outln!("{}", serde_json::to_string_pretty(&out)?);
    Ok(if failed { Exit::FAILURE } else { Exit::SUCCESS })
}

fn inspect(store: &Store, what: &str) -> Result<serde_json::Value> {
    let img = store.resolve(what)?;
    let cfg = store.image_config(&img)?;
    let refs = img.references();
    let mut repo_digests: Vec<String> = refs
        .iter()
        .map(|r| format!("{}@{}", r.familiar_name(), img.manifest))
        .collect();
    repo_digests.dedup();
    let comment = cfg
        .history
        .last()
        .and_then(|h| h.comment.clone())
        .unwrap_or_default();
    Ok(serde_json::json!({
        "Id": img.config,
        "RepoTags": refs.iter().map(Reference::familiar).collect::<Vec<_>>(),
        "RepoDigests": repo_digests,
        "Parent": "",
        "Comment": comment,
        "Created": cfg.created,
        "Author": cfg.author.clone().unwrap_or_default(),
        "Config": cfg.config,
        "Architecture": cfg.architecture,
        "Variant": cfg.variant,
        "Os": cfg.os,
        "Size": img.size(),
        "RootFS": {
            "Type": cfg.rootfs.kind,
            "Layers": cfg.rootfs.diff_ids,
        },
        "Metadata": {"LastTagTime": serde_json::Value::Null},
    }))
}
