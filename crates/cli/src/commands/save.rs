//! `kiln save [-o FILE] [--format docker|oci] IMAGE…`: images to an archive.

use std::io::{IsTerminal, Write};

use anyhow::{Context, Result, bail};
use clap::Args;
use kiln_oci::Reference;
use kiln_store::{ArchiveFormat, Store};

use crate::Exit;
use crate::cli::GlobalArgs;

/// Arguments of `kiln save`.
#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Write to this file instead of stdout
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
    /// `docker` (docker-archive, loadable by `docker load`) or `oci` (OCI image layout tar)
    #[arg(long, default_value = "docker", value_parser = ["docker", "oci"])]
    pub format: String,
    /// Images (names, ids or name@digest)
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

pub fn run(global: &GlobalArgs, args: &SaveArgs) -> Result<Exit> {
    let store = Store::open(global.root_dir())?;
    let mut images = Vec::new();
    for what in &args.images {
        let img = store.resolve(what)?;
        // Saved under the name given; an id saves every name the image has.
        let names = match Reference::parse(what) {
            Ok(r) if r.digest().is_none() && img.tags.contains(&r.to_string()) => vec![r],
            _ => img.references(),
        };
        if let Some((_, existing)) =
            images
                .iter_mut()
                .find(|(i, _): &&mut (kiln_store::ImageRecord, Vec<Reference>)| {
                    i.manifest == img.manifest
                })
        {
            existing.extend(names);
        } else {
            images.push((img, names));
        }
    }
    let format = if args.format == "oci" {
        ArchiveFormat::Oci
    } else {
        ArchiveFormat::Docker
    };
    if let Some(path) = &args.output {
        // A regular file (or a new one) is written atomically: temp file
        // beside it, fsync, rename. Anything else (`/dev/null`, a fifo, a
        // device) is written in place: renaming over it would replace it.
        let special = std::fs::metadata(path).is_ok_and(|m| !m.is_file());
        if special {
            let f = fs_err::OpenOptions::new().write(true).open(path)?;
            let mut w = store.save(
                &images,
                format,
                std::io::BufWriter::with_capacity(1 << 20, f),
            )?;
            w.flush()?;
        } else {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            let tmp = tempfile::Builder::new()
                .prefix(".kiln-save-")
                .tempfile_in(dir)
                .with_context(|| format!("creating a file in {}", dir.display()))?;
            let w = std::io::BufWriter::with_capacity(1 << 20, tmp);
            let w = store.save(&images, format, w)?;
            let tmp = w
                .into_inner()
                .map_err(std::io::IntoInnerError::into_error)?;
            tmp.as_file().sync_all()?;
            tmp.persist(path)
                .with_context(|| format!("writing {}", path.display()))?;
        }
    } else {
        if std::io::stdout().is_terminal() {
            bail!(
                "cowardly refusing to write an image archive to a terminal; use -o FILE or redirect stdout"
            );
        }
        let out = std::io::stdout().lock();
        let mut w = store.save(
            &images,
            format,
            std::io::BufWriter::with_capacity(1 << 20, out),
        )?;
        w.flush()?;
    }
    Ok(Exit::SUCCESS)
}
