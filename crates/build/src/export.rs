//! Exporters: the built image into the store (with its tags), and
//! `--output type=oci|docker|tar|local,dest=…`.

use std::io::Write;
use std::path::{Path, PathBuf};

use kiln_oci::Reference;
use kiln_oci::config::{ImageConfig, RootFs};
use kiln_oci::layer::{ApplyOptions, CreateOptions, WhiteoutMode, apply_layer, create_layer};
use kiln_store::{ArchiveFormat, ImageRecord, LayerRecord, Store};

use crate::error::BuildError;

/// Where `--output` sends the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputSpec {
    /// The store (always done; `type=image` names it explicitly).
    Image,
    /// An OCI image archive (`dest` `-` is standard output).
    Oci {
        /// File, or `-`.
        dest: String,
    },
    /// A docker-archive (`docker load` format).
    Docker {
        /// File, or `-`.
        dest: String,
    },
    /// A tar of the final filesystem.
    Tar {
        /// File, or `-`.
        dest: String,
    },
    /// The final filesystem written into a directory.
    Local {
        /// Directory.
        dest: PathBuf,
    },
}

impl OutputSpec {
    /// Parse `--output`: `type=oci,dest=out.tar`, … or a bare path (a local
    /// directory), like `docker buildx build -o`.
    pub fn parse(text: &str) -> Result<OutputSpec, BuildError> {
        if !text.contains('=') {
            if text == "-" {
                return Ok(OutputSpec::Tar { dest: "-".into() });
            }
            return Ok(OutputSpec::Local { dest: text.into() });
        }
        let mut kind = None;
        let mut dest = None;
        for field in text.split(',') {
            let (k, v) = field.split_once('=').ok_or_else(|| {
                BuildError::request(
                    format!("invalid --output field `{field}`: expected key=value"),
                    Some("write --output type=oci,dest=image.tar"),
                )
            })?;
            match k.trim() {
                "type" => kind = Some(v.trim().to_owned()),
                "dest" => dest = Some(v.trim().to_owned()),
                other => {
                    return Err(BuildError::request(
                        format!("--output: unsupported attribute `{other}`"),
                        Some("kiln supports type= and dest="),
                    ));
                }
            }
        }
        let kind = kind.unwrap_or_else(|| "local".into());
        let need = |dest: Option<String>| {
            dest.ok_or_else(|| {
                BuildError::request(
                    format!("--output type={kind} needs dest=FILE (or dest=- for standard output)"),
                    None,
                )
            })
        };
        Ok(match kind.as_str() {
            "image" | "docker-image" if dest.is_none() => OutputSpec::Image,
            "image" => {
                return Err(BuildError::request(
                    "--output type=image takes no dest; name the image with -t",
                    None,
                ));
            }
            "oci" => OutputSpec::Oci { dest: need(dest)? },
            "docker" => OutputSpec::Docker { dest: need(dest)? },
            "tar" => OutputSpec::Tar { dest: need(dest)? },
            "local" => OutputSpec::Local {
                dest: need(dest)?.into(),
            },
            "registry" => {
                return Err(BuildError::request(
                    "--output type=registry is not supported yet",
                    Some("export with type=oci or type=docker"),
                ));
            }
            other => {
                return Err(BuildError::request(
                    format!("unknown --output type `{other}`"),
                    Some("use image, oci, docker, tar or local"),
                ));
            }
        })
    }
}

/// Fill in the config's layers and times and record the image in the
/// store under `tags`.
///
/// Times are those of the content, as BuildKit does: a step that made a
/// layer is dated by its layer blob (written once, when the step ran), a
/// metadata step by the step before it, the image by its last step. So a
/// rebuild served from the cache makes the very same image (same id), and
/// leaves no dangling copy behind.
pub fn commit(
    store: &Store,
    mut image: ImageConfig,
    layers: &[LayerRecord],
    tags: &[Reference],
) -> Result<ImageRecord, BuildError> {
    let rfc3339 = kiln_oci::config::timestamp;
    let now = rfc3339(std::time::SystemTime::now());
    image.rootfs = RootFs {
        diff_ids: layers.iter().map(|l| l.diff_id.clone()).collect(),
        ..RootFs::default()
    };
    let mut layer_index = 0usize;
    let mut last: Option<String> = None;
    for h in &mut image.history {
        if h.created.is_none() {
            let t = if h.empty_layer {
                None
            } else {
                layers
                    .get(layer_index)
                    .and_then(|l| std::fs::metadata(store.blob_path(&l.digest)).ok())
                    .and_then(|m| m.modified().ok())
                    .map(rfc3339)
            };
            h.created = t.or_else(|| last.clone()).or_else(|| Some(now.clone()));
        }
        if !h.empty_layer {
            layer_index += 1;
        }
        last.clone_from(&h.created);
    }
    image.created = last.or(Some(now));
    let (bytes, _) = image.to_bytes();
    Ok(store.commit_image(&bytes, layers, tags)?)
}

/// Write the image as an archive (`oci` or `docker` format) to `out`.
pub fn write_archive<W: Write>(
    store: &Store,
    image: &ImageRecord,
    tags: &[Reference],
    format: ArchiveFormat,
    out: W,
) -> Result<W, BuildError> {
    Ok(store.save(&[(image.clone(), tags.to_vec())], format, out)?)
}

/// Apply `layers` in order onto `dest` (whiteouts delete).
pub fn flatten(store: &Store, layers: &[LayerRecord], dest: &Path) -> Result<(), BuildError> {
    fs_err::create_dir_all(dest).map_err(|source| BuildError::Io {
        what: format!("creating {}", dest.display()),
        source,
    })?;
    let opts = ApplyOptions {
        whiteouts: WhiteoutMode::Delete,
        ..ApplyOptions::default()
    };
    for layer in layers {
        let blob = store.read_blob(&layer.digest)?;
        let (_, plain) = kiln_oci::compress::decompress(blob)?;
        apply_layer(plain, dest, &opts)?;
    }
    Ok(())
}

/// A tar of the final filesystem, written to `out`.
pub fn write_filesystem_tar<W: Write>(
    store: &Store,
    layers: &[LayerRecord],
    out: W,
) -> Result<W, BuildError> {
    let tmp = tempfile::Builder::new()
        .prefix("export-")
        .tempdir_in(store.root().join("tmp"))
        .map_err(|source| BuildError::Io {
            what: "creating an export directory".into(),
            source,
        })?;
    flatten(store, layers, tmp.path())?;
    let (out, _) = create_layer(tmp.path(), out, &CreateOptions::default())?;
    Ok(out)
}
