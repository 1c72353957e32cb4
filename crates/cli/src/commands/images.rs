//! `kiln images`: the images in the store.

use anyhow::Result;
use clap::Args;
use kiln_store::Store;

use crate::cli::GlobalArgs;
use crate::humanize::outln;
use crate::{Exit, humanize};

/// Arguments of `kiln images`.
#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Only show image ids
    #[arg(short, long)]
    pub quiet: bool,
    /// Show digests
    #[arg(long)]
    pub digests: bool,
    /// Show full ids
    #[arg(long)]
    pub no_trunc: bool,
    /// Output format: `table` (default) or `json` (one object per line)
    #[arg(long, value_name = "FORMAT", default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
    /// Only images of this repository (`busybox`, `busybox:1`)
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub repository: Option<String>,
}

struct Row {
    repo: String,
    tag: String,
    digest: String,
    id: String,
    created: Option<String>,
    size: u64,
}

pub fn run(global: &GlobalArgs, args: &ImagesArgs) -> Result<Exit> {
    let store = Store::open(global.root_dir())?;
    let filter = args
        .repository
        .as_deref()
        .map(kiln_oci::Reference::parse_normalized)
        .transpose()?;
    let mut rows = Vec::new();
    for img in store.images()? {
        let id = if args.no_trunc {
            img.config.to_string()
        } else {
            img.config.short().to_owned()
        };
        let refs = img.references();
        if refs.is_empty() && filter.is_none() {
            rows.push(Row {
                repo: "<none>".into(),
                tag: "<none>".into(),
                digest: img.manifest.to_string(),
                id: id.clone(),
                created: img.created.clone(),
                size: img.size(),
            });
        }
        for r in refs {
            if let Some(f) = &filter
                && (f.name() != r.name() || f.tag().is_some_and(|t| Some(t) != r.tag()))
            {
                continue;
            }
            rows.push(Row {
                repo: r.familiar_name(),
                tag: r.tag().unwrap_or("<none>").to_owned(),
                digest: img.manifest.to_string(),
                id: id.clone(),
                created: img.created.clone(),
                size: img.size(),
            });
        }
    }
    if args.quiet {
        let mut seen = std::collections::HashSet::new();
        for r in &rows {
            if seen.insert(r.id.clone()) {
                outln!("{}", r.id);
            }
        }
        return Ok(Exit::SUCCESS);
    }
    if args.format == "json" {
        for r in &rows {
            let v = serde_json::json!({
                "Repository": r.repo,
                "Tag": r.tag,
                "Digest": r.digest,
                "ID": r.id,
                "CreatedAt": r.created.clone().unwrap_or_default(),
                "CreatedSince": humanize::ago(r.created.as_deref()),
                "Size": humanize::size(r.size),
                "VirtualSize": humanize::size(r.size),
            });
            outln!("{v}");
        }
        return Ok(Exit::SUCCESS);
    }
    let mut table = vec![
        if args.digests {
            vec!["REPOSITORY", "TAG", "DIGEST", "IMAGE ID", "CREATED", "SIZE"]
        } else {
            vec!["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
        }
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>(),
    ];
    for r in rows {
        let mut line = vec![r.repo, r.tag];
        if args.digests {
            line.push(r.digest);
        }
        line.extend([
            r.id,
            humanize::ago(r.created.as_deref()),
            humanize::size(r.size),
        ]);
        table.push(line);
    }
    humanize::write_out(&humanize::table(&table));
    Ok(Exit::SUCCESS)
}
