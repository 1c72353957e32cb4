//! `kiln import FILE|- [NAME]`: a one-layer image from a root file system tar.

use std::io::IsTerminal;

use anyhow::{Context, Result, bail};
use clap::Args;
use kiln_store::{ImportOptions, Store};

use crate::Exit;
use crate::cli::GlobalArgs;
use crate::humanize::outln;

/// Arguments of `kiln import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A tar of a root file system (plain, gzip, bzip2, xz or zstd), or `-` for stdin
    #[arg(value_name = "FILE|-")]
    pub file: String,
    /// Name the image (`name[:tag]`)
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub name: Option<String>,
    /// Apply a Dockerfile instruction to the image config (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR)
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    pub changes: Vec<String>,
    /// Commit message (the history comment)
    #[arg(short = 'm', long)]
    pub message: Option<String>,
}

pub fn run(global: &GlobalArgs, args: &ImportArgs) -> Result<Exit> {
    let tag = args
        .name
        .as_deref()
        .map(kiln_oci::Reference::parse)
        .transpose()?;
    let store = Store::open(global.root_dir())?;
    let opts = ImportOptions {
        changes: args.changes.clone(),
        message: args.message.clone(),
        source: args.file.clone(),
        tag,
    };
    let record = if args.file == "-" {
        if std::io::stdin().is_terminal() {
            bail!(
                "`kiln import -` reads a tar archive from stdin, but stdin is a terminal; pipe or redirect a file"
            );
        }
        store.import(std::io::stdin().lock(), &opts)?
    } else {
        let f = fs_err::File::open(&args.file)?;
        store
            .import(f, &opts)
            .with_context(|| format!("importing {}", args.file))?
    };
    outln!("{}", record.config);
    Ok(Exit::SUCCESS)
}
