//! `kiln history IMAGE`: the steps that made an image.

use anyhow::Result;
use clap::Args;
use kiln_store::Store;

use crate::cli::GlobalArgs;
use crate::humanize::outln;
use crate::{Exit, humanize};

/// Arguments of `kiln history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Do not truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Only show image ids
    #[arg(short, long)]
    pub quiet: bool,
    /// The image (name, id or name@digest)
    #[arg(value_name = "IMAGE")]
    pub image: String,
}

pub fn run(global: &GlobalArgs, args: &HistoryArgs) -> Result<Exit> {
    let store = Store::open(global.root_dir())?;
    let img = store.resolve(&args.image)?;
    let cfg = store.image_config(&img)?;
    // Pair history entries with layers: each entry that is not an empty
    // layer owns the next layer.
    let mut layers = img.layers.iter();
    let mut rows: Vec<(String, Option<String>, String, u64, String)> = Vec::new();
    if cfg.history.is_empty() {
        for l in &img.layers {
            rows.push((
                String::new(),
                cfg.created.clone(),
                String::new(),
                l.size,
                String::new(),
            ));
        }
    }
    for h in &cfg.history {
        let size = if h.empty_layer {
            0
        } else {
            layers.next().map_or(0, |l| l.size)
        };
        rows.push((
            String::new(),
            h.created.clone(),
            h.created_by.clone().unwrap_or_default(),
            size,
            h.comment.clone().unwrap_or_default(),
        ));
    }
    rows.reverse();
    let id = if args.no_trunc {
        img.config.to_string()
    } else {
        img.config.short().to_owned()
    };
    if let Some(first) = rows.first_mut() {
        first.0.clone_from(&id);
    }
    if args.quiet {
        for r in &rows {
            outln!("{}", if r.0.is_empty() { "<missing>" } else { &r.0 });
        }
        return Ok(Exit::SUCCESS);
    }
    let mut table = vec![
        ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]
            .map(str::to_owned)
            .to_vec(),
    ];
    for (id, created, by, size, comment) in rows {
        let by = if args.no_trunc || by.chars().count() <= 45 {
            by
        } else {
            by.chars().take(44).collect::<String>() + "…"
        };
        table.push(vec![
            if id.is_empty() {
                "<missing>".to_owned()
            } else {
                id
            },
            humanize::ago(created.as_deref()),
            by,
            humanize::size(size),
            comment,
        ]);
    }
    humanize::write_out(&humanize::table(&table));
    Ok(Exit::SUCCESS)
}
