//! `kiln push [--compression gzip|zstd] [-q] NAME[:TAG]`.

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use kiln_oci::{Compression, Reference, media};
use kiln_registry::{Descriptor, PushImage};
use kiln_store::{ImageRecord, Store};

use crate::Exit;
use crate::cli::GlobalArgs;
use crate::humanize::outln;
use crate::registry_glue::{RegistryArgs, Render, push_from_store};

/// Layer compression for pushes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PushCompression {
    /// gzip (every registry and runtime reads it)
    Gzip,
    /// zstd (OCI manifests only; needs a recent runtime to pull)
    Zstd,
}

/// Arguments of `kiln push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// Image to push: a name in the store, pushed to the registry it names
    #[arg(value_name = "NAME[:TAG]")]
    pub image: String,
    /// Compression of layers kiln holds uncompressed (built or imported ones;
    /// pulled layers are pushed as they are)
    #[arg(long, value_enum, default_value = "gzip")]
    pub compression: PushCompression,
    /// Print only the pushed digest
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

pub fn run(global: &GlobalArgs, args: &PushArgs) -> Result<Exit> {
    let reference = Reference::parse(&args.image)?;
    if reference.digest().is_some() {
        bail!(
            "cannot push to a digest reference `{}`: name a tag (the registry computes the digest)",
            args.image
        );
    }
    let store = Store::open(global.root_dir())?;
    let _lease = store.lease()?;
    let record = store
        .resolve(&reference.to_string())
        .or_else(|_| store.resolve(&args.image))?;
    let compression = match args.compression {
        PushCompression::Gzip => Compression::Gzip,
        PushCompression::Zstd => Compression::Zstd,
    };
    let render = Render::new(args.quiet, "Push");
    if !args.quiet {
        eprintln!("The push refers to repository [{}]", reference.name());
    }
    let pushed = push_from_store(
        global,
        &args.registry,
        &store,
        &record,
        &reference,
        compression,
        &render,
    )?;
    if args.quiet {
        outln!("{}", pushed.digest);
    } else {
        outln!(
            "{}: digest: {} size: {}",
            reference.tag().unwrap_or("latest"),
            pushed.digest,
            pushed.size
        );
    }
    Ok(Exit::SUCCESS)
}

/// What to push for `record`: its stored manifest when every layer is
/// already compressed (pulled images keep their digest), else a manifest
/// naming compressed forms of the uncompressed layers (made once, cached in
/// the store).
pub fn push_image(
    store: &Store,
    record: &ImageRecord,
    target: &Reference,
    compression: Compression,
) -> Result<PushImage> {
    let docker = record.manifest_media_type == media::DOCKER_MANIFEST;
    let mut manifest: serde_json::Value = serde_json::from_slice(
        &store
            .read_blob_bytes(&record.manifest)
            .with_context(|| format!("reading the manifest of {}", record.display_name()))?,
    )
    .context("the stored manifest is not JSON")?;
    let mut blobs = vec![Descriptor::new(
        manifest["config"]["mediaType"]
            .as_str()
            .unwrap_or(media::CONFIG),
        record.config.clone(),
        record.config_size,
    )];
    let mut changed = false;
    let mut layers_json = Vec::new();
    for l in &record.layers {
        let plain = l.media_type == media::LAYER_TAR || l.media_type == media::DOCKER_LAYER_TAR;
        let (digest, size, mt) = if plain {
            changed = true;
            let (d, size) = store
                .compressed_layer(&l.digest, compression)
                .with_context(|| format!("compressing layer {}", l.digest.short()))?;
            let mt = match (docker, compression) {
                (true, Compression::Gzip) => media::DOCKER_LAYER_GZIP,
                _ => compression.layer_media_type(),
            };
            (d, size, mt.to_owned())
        } else {
            (l.digest.clone(), l.size, l.media_type.clone())
        };
        layers_json.push(serde_json::json!({"mediaType": mt, "digest": digest, "size": size}));
        blobs.push(Descriptor::new(mt, digest, size));
    }
    let (bytes, media_type) = if changed {
        let mut mt = record.manifest_media_type.clone();
        if docker && compression == Compression::Zstd {
            // Docker schema 2 has no zstd layers: say OCI.
            media::MANIFEST.clone_into(&mut mt);
            manifest["config"]["mediaType"] = serde_json::json!(media::CONFIG);
            media::CONFIG.clone_into(&mut blobs[0].media_type);
        }
        manifest["mediaType"] = serde_json::json!(mt);
        manifest["layers"] = serde_json::Value::Array(layers_json);
        (
            serde_json::to_vec(&manifest).context("encoding the manifest")?,
            mt,
        )
    } else {
        (
            store.read_blob_bytes(&record.manifest)?,
            record.manifest_media_type.clone(),
        )
    };
    // Other names of this image in the same registry: blobs can be mounted.
    let mount_from = record
        .references()
        .into_iter()
        .filter(|r| r.domain() == target.domain() && r.path() != target.path())
        .map(|r| r.path().to_owned())
        .collect();
    Ok(PushImage {
        manifest: bytes,
        media_type,
        blobs,
        mount_from,
    })
}
