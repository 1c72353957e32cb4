//! Images in and out of the store: `import` of a root file system tar,
//! `save` to and `load` from docker-archive and OCI archive files.

use std::collections::HashMap;
use std::io::{self, Read, Seek, Write};

use kiln_oci::archive::{
    ArchiveEntry, ArchiveWriter, DockerManifestEntry, blob_path, classify, read_metadata,
    repositories_json,
};
use kiln_oci::config::{History, ImageConfig};
use kiln_oci::{Compression, Digest, OciError, Reference, media};

use crate::Store;
use crate::error::{Result, StoreError};
use crate::images::{ImageRecord, LayerRecord, with_image};

/// The archive formats of `kiln save`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// `docker save`'s format (uncompressed layers, `manifest.json`).
    Docker,
    /// A tar of an OCI image layout (gzip layers, compressed once and cached).
    Oci,
}

/// What `kiln import` should make.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Dockerfile-style changes (`CMD ["sh"]`).
    pub changes: Vec<String>,
    /// Commit message (history comment).
    pub message: Option<String>,
    /// Where the tar came from (history).
    pub source: String,
    /// Name for the image.
    pub tag: Option<Reference>,
}

/// The architecture name OCI uses for this machine.
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

const METADATA_LIMIT: u64 = 64 << 20;

impl Store {
    /// `docker import`: one layer from a root file system tar (any
    /// compression), a config from `opts.changes`.
    pub fn import(&self, reader: impl Read, opts: &ImportOptions) -> Result<ImageRecord> {
        let _lease = self.lease()?;
        let mut cfg = ImageConfig {
            architecture: host_architecture().to_owned(),
            os: "linux".to_owned(),
            ..ImageConfig::default()
        };
        // Validate the changes before reading a possibly large stream.
        for c in &opts.changes {
            cfg.apply_change(c)?;
        }
        let (digest, size) = self.add_layer_tar(reader)?;
        let now = kiln_oci::config::timestamp(std::time::SystemTime::now());
        cfg.created = Some(now.clone());
        cfg.rootfs.diff_ids.push(digest.clone());
        cfg.history.push(History {
            created: Some(now),
            created_by: Some(format!("kiln import {}", opts.source)),
            comment: Some(
                opts.message
                    .clone()
                    .unwrap_or_else(|| "Imported from ".to_owned() + &opts.source),
            ),
            ..History::default()
        });
        let (bytes, _) = cfg.to_bytes();
        let layer = LayerRecord {
            diff_id: digest.clone(),
            digest,
            size,
            media_type: media::LAYER_TAR.to_owned(),
        };
        let tags: Vec<Reference> = opts.tag.iter().cloned().collect();
        self.commit_image(&bytes, &[layer], &tags)
    }

    /// Write `images` (each with the names to save it under) as an archive.
    pub fn save<W: Write>(
        &self,
        images: &[(ImageRecord, Vec<Reference>)],
        format: ArchiveFormat,
        out: W,
    ) -> Result<W> {
        let _lease = self.lease()?;
        let mut ar = ArchiveWriter::new(out);
        match format {
            ArchiveFormat::Docker => {
                let mut entries = Vec::new();
                let mut repos = Vec::new();
                for (img, names) in images {
                    let config = self.image_config_bytes(img)?;
                    ar.add_bytes(&blob_path(&img.config), &config)?;
                    let mut layers = Vec::new();
                    for l in &img.layers {
                        let path = blob_path(&l.diff_id);
                        if !ar.contains(&path) {
                            self.write_plain_layer(&mut ar, img, l, &path)?;
                        }
                        layers.push(path);
                    }
                    for n in names {
                        repos.push((
                            n.familiar_name(),
                            n.tag().unwrap_or("latest").to_owned(),
                            img.config.clone(),
                        ));
                    }
                    entries.push(DockerManifestEntry {
                        config: blob_path(&img.config),
                        repo_tags: Some(names.iter().map(Reference::familiar).collect()),
                        layers,
                    });
                }
                ar.add_bytes(
                    "manifest.json",
                    &serde_json::to_vec(&entries).unwrap_or_default(),
                )?;
                ar.add_bytes("repositories", &repositories_json(&repos))?;
            }
            ArchiveFormat::Oci => {
                let mut descs = Vec::new();
                for (img, names) in images {
                    let config = self.image_config_bytes(img)?;
                    ar.add_bytes(&blob_path(&img.config), &config)?;
                    let mut layers = Vec::new();
                    for l in &img.layers {
                        let (digest, size, media_type) = if l.media_type == media::LAYER_TAR
                            || l.media_type == media::DOCKER_LAYER_TAR
                        {
                            let (d, s) = self
                                .compressed_layer(&l.digest, Compression::Gzip)
                                .map_err(|e| with_image(e, img))?;
                            (d, s, media::LAYER_GZIP.to_owned())
                        } else {
                            (l.digest.clone(), l.size, l.media_type.clone())
                        };
                        let path = blob_path(&digest);
                        if !ar.contains(&path) {
                            let r = self.read_blob(&digest).map_err(|e| with_image(e, img))?;
                            ar.add(&path, size, r)
                                .map_err(|e| verified(e, &digest, img))?;
                        }
                        layers.push(serde_json::json!({"mediaType": media_type, "digest": digest, "size": size}));
                    }
                    let manifest = serde_json::to_vec(&serde_json::json!({
                        "schemaVersion": 2,
                        "mediaType": media::MANIFEST,
                        "config": {"mediaType": media::CONFIG, "digest": img.config, "size": config.len()},
                        "layers": layers,
                    }))
                    .unwrap_or_default();
                    let md = Digest::sha256_of(&manifest);
                    ar.add_bytes(&blob_path(&md), &manifest)?;
                    let desc = |name: Option<&Reference>| {
                        let mut d = serde_json::json!({"mediaType": media::MANIFEST, "digest": md, "size": manifest.len()});
                        if let Some(n) = name {
                            d["annotations"] = serde_json::json!({
                                media::ANNOTATION_REF_NAME: n.to_string(),
                                media::ANNOTATION_IMAGE_NAME: n.to_string(),
                            });
                        }
                        d
                    };
                    if names.is_empty() {
                        descs.push(desc(None));
                    }
                    for n in names {
                        descs.push(desc(Some(n)));
                    }
                }
                ar.add_bytes("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
                let index = serde_json::json!({"schemaVersion": 2, "mediaType": media::INDEX, "manifests": descs});
                ar.add_bytes(
                    "index.json",
                    &serde_json::to_vec(&index).unwrap_or_default(),
                )?;
            }
        }
        Ok(ar.finish()?)
    }

    /// An uncompressed layer into a docker-archive (decompressing pulled
    /// layers through a temp file, since tar needs the size first).
    fn write_plain_layer<W: Write>(
        &self,
        ar: &mut ArchiveWriter<W>,
        img: &ImageRecord,
        l: &LayerRecord,
        path: &str,
    ) -> Result<()> {
        if l.digest == l.diff_id {
            let r = self.read_blob(&l.digest).map_err(|e| with_image(e, img))?;
            return ar
                .add(path, l.size, r)
                .map_err(|e| verified(e, &l.digest, img));
        }
        let blob = self.read_blob(&l.digest).map_err(|e| with_image(e, img))?;
        let (_, mut plain) = kiln_oci::compress::decompress(blob)?;
        let mut tmp = tempfile::tempfile_in(self.tmp_dir())
            .map_err(|e| StoreError::io("create temp file in", self.tmp_dir(), e))?;
        let mut w = kiln_oci::DigestWriter::new(&mut tmp);
        io::copy(&mut plain, &mut w)
            .map_err(|e| crate::blobs::corrupt(&l.digest, Some(&img.display_name()), &e))?;
        let (diff_id, size, _) = w.finish();
        if diff_id != l.diff_id {
            return Err(crate::blobs::corrupt(
                &l.digest,
                Some(&img.display_name()),
                &format!(
                    "uncompressed content hashes to {diff_id}, the image says {}",
                    l.diff_id
                ),
            ));
        }
        tmp.rewind()
            .map_err(|e| StoreError::io("rewind", self.tmp_dir(), e))?;
        ar.add(path, size, tmp).map_err(StoreError::from)
    }

    /// Read a docker-archive or OCI archive (compressed or not, detected by
    /// content) and record its images. Blobs are verified as they stream in;
    /// images are recorded only once all their blobs are present.
    #[allow(clippy::case_sensitive_file_extension_comparisons)] // exact member names
    pub fn load(&self, reader: impl Read) -> Result<Vec<ImageRecord>> {
        let _lease = self.lease()?;
        let (_, plain) = kiln_oci::compress::decompress(reader)?;
        let mut archive = tar::Archive::new(plain);
        let mut metadata: HashMap<String, Vec<u8>> = HashMap::new();
        // Archive path → digest of what it holds (legacy layer tars and configs).
        let mut contents: HashMap<String, Digest> = HashMap::new();
        let mut links: HashMap<String, String> = HashMap::new();
        let entries = archive.entries().map_err(|source| OciError::Tar {
            entry: None,
            source,
        })?;
        let mut any = false;
        for e in entries {
            let mut e = e.map_err(|source| OciError::Tar {
                entry: None,
                source,
            })?;
            any = true;
            let name = String::from_utf8_lossy(&e.path_bytes())
                .trim_start_matches("./")
                .to_owned();
            let kind = e.header().entry_type();
            if kind == tar::EntryType::Symlink || kind == tar::EntryType::Link {
                if let Some(target) = e.link_name_bytes() {
                    let target = String::from_utf8_lossy(&target).into_owned();
                    let base = name.rsplit_once('/').map_or("", |(d, _)| d);
                    let resolved = if kind == tar::EntryType::Symlink && !target.starts_with('/') {
                        normalize(&format!("{base}/{target}"))
                    } else {
                        normalize(&target)
                    };
                    links.insert(name, resolved);
                }
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            match classify(&name) {
                ArchiveEntry::Blob(d) => {
                    let size = e.header().size().ok();
                    self.ingest_blob(&mut e, &d, size)
                        .map_err(|err| match err {
                            StoreError::Oci(
                                OciError::DigestMismatch { .. } | OciError::SizeMismatch { .. },
                            ) => StoreError::Oci(OciError::Archive {
                                reason: format!("{name} does not match its digest: {err}"),
                            }),
                            other => other,
                        })?;
                    contents.insert(name, d);
                }
                ArchiveEntry::Metadata => {
                    let bytes = read_metadata(&mut e, &name, METADATA_LIMIT)?;
                    if name.ends_with(".json")
                        && !matches!(name.as_str(), "manifest.json" | "index.json")
                    {
                        contents.insert(name.clone(), self.put_blob(&bytes)?);
                    }
                    metadata.insert(name, bytes);
                }
                ArchiveEntry::Content => {
                    let mut w = self.blob_writer()?;
                    io::copy(&mut e, &mut w).map_err(|source| OciError::Tar {
                        entry: Some(name.clone()),
                        source,
                    })?;
                    contents.insert(name, w.commit(None)?.0);
                }
                ArchiveEntry::Ignored => {}
            }
        }
        if !any {
            return Err(OciError::Archive {
                reason: "empty input: expected a docker-archive or OCI archive tar".into(),
            }
            .into());
        }
        let lookup = |path: &str| -> Result<Digest> {
            let p = normalize(path);
            let p = links.get(&p).cloned().unwrap_or(p);
            contents.get(&p).cloned().ok_or_else(|| {
                StoreError::Oci(OciError::Archive {
                    reason: format!("{path} is named in the archive's manifest but missing"),
                })
            })
        };
        if let Some(bytes) = metadata.get("manifest.json") {
            let entries: Vec<DockerManifestEntry> =
                serde_json::from_slice(bytes).map_err(|source| OciError::Json {
                    what: "manifest.json",
                    source,
                })?;
            let mut out = Vec::new();
            for entry in entries {
                let config_digest = lookup(&entry.config)?;
                let config = self.read_blob_bytes(&config_digest)?;
                let cfg = ImageConfig::from_slice(&config)?;
                if cfg.rootfs.diff_ids.len() != entry.layers.len() {
                    return Err(OciError::Archive {
                        reason: format!(
                            "{} lists {} layers but its config has {} diff ids",
                            entry.config,
                            entry.layers.len(),
                            cfg.rootfs.diff_ids.len()
                        ),
                    }
                    .into());
                }
                let mut layers = Vec::new();
                for (path, diff_id) in entry.layers.iter().zip(&cfg.rootfs.diff_ids) {
                    let digest = lookup(path)?;
                    let size = std::fs::metadata(self.blob_path(&digest))
                        .map_err(|e| StoreError::io("stat", self.blob_path(&digest), e))?
                        .len();
                    let kind = self.blob_compression(&digest)?;
                    if kind == Compression::None && &digest != diff_id {
                        return Err(OciError::Archive {
                            reason: format!(
                                "layer {path} hashes to {digest} but the config says {diff_id}"
                            ),
                        }
                        .into());
                    }
                    layers.push(LayerRecord {
                        digest,
                        size,
                        media_type: kind.layer_media_type().to_owned(),
                        diff_id: diff_id.clone(),
                    });
                }
                let tags = entry
                    .repo_tags
                    .unwrap_or_default()
                    .iter()
                    .map(|t| Reference::parse(t))
                    .collect::<kiln_oci::Result<Vec<_>>>()?;
                out.push(self.commit_image(&config, &layers, &tags)?);
            }
            return Ok(out);
        }
        if let Some(bytes) = metadata.get("index.json") {
            return self.load_oci_index(bytes);
        }
        Err(OciError::Archive {
            reason:
                "not an image archive: it has neither manifest.json (docker) nor index.json (OCI)"
                    .into(),
        }
        .into())
    }

    fn blob_compression(&self, digest: &Digest) -> Result<Compression> {
        let mut head = [0u8; 8];
        let mut f = std::fs::File::open(self.blob_path(digest))
            .map_err(|e| StoreError::io("open blob", self.blob_path(digest), e))?;
        let n = f
            .read(&mut head)
            .map_err(|e| StoreError::io("read blob", self.blob_path(digest), e))?;
        Ok(Compression::detect(&head[..n]))
    }

    /// Record the image whose manifest blob (and config and layer blobs)
    /// are in the store — pulled from a registry or loaded — and tag it.
    /// The manifest is read verified; its layers must be present.
    pub fn insert_manifest(
        &self,
        manifest_digest: &Digest,
        names: &[Reference],
    ) -> Result<ImageRecord> {
        let mbytes = self.read_blob_bytes(manifest_digest)?;
        let manifest: serde_json::Value =
            serde_json::from_slice(&mbytes).map_err(|source| OciError::Json {
                what: "manifest",
                source,
            })?;
        let config = parse_digest(&manifest["config"])?;
        let cfg = ImageConfig::from_slice(&self.read_blob_bytes(&config)?)?;
        let layer_descs = manifest["layers"].as_array().cloned().unwrap_or_default();
        if layer_descs.len() != cfg.rootfs.diff_ids.len() {
            return Err(OciError::Archive {
                reason: format!(
                    "manifest {manifest_digest} has {} layers but its config has {} diff ids",
                    layer_descs.len(),
                    cfg.rootfs.diff_ids.len()
                ),
            }
            .into());
        }
        let mut layers = Vec::new();
        for (l, diff_id) in layer_descs.iter().zip(&cfg.rootfs.diff_ids) {
            let digest = parse_digest(l)?;
            if !self.has_blob(&digest) {
                return Err(StoreError::MissingBlob {
                    digest,
                    image: names.first().map(Reference::familiar),
                });
            }
            layers.push(LayerRecord {
                digest,
                size: l["size"].as_u64().unwrap_or(0),
                media_type: l["mediaType"]
                    .as_str()
                    .unwrap_or(media::LAYER_TAR)
                    .to_owned(),
                diff_id: diff_id.clone(),
            });
        }
        let record = ImageRecord {
            manifest: manifest_digest.clone(),
            manifest_size: mbytes.len() as u64,
            manifest_media_type: manifest["mediaType"]
                .as_str()
                .unwrap_or(media::MANIFEST)
                .to_owned(),
            config,
            config_size: manifest["config"]["size"].as_u64().unwrap_or(0),
            layers,
            created: cfg.created,
            tags: Vec::new(),
        };
        self.insert_image(record, names)
    }

    fn load_oci_index(&self, bytes: &[u8]) -> Result<Vec<ImageRecord>> {
        let index: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|source| OciError::Json {
                what: "index.json",
                source,
            })?;
        let mut out = Vec::new();
        for desc in index["manifests"].as_array().cloned().unwrap_or_default() {
            let names: Vec<Reference> = [media::ANNOTATION_IMAGE_NAME, media::ANNOTATION_REF_NAME]
                .iter()
                .filter_map(|k| desc["annotations"][*k].as_str())
                .filter(|n| n.contains('/') || n.contains(':'))
                .filter_map(|n| Reference::parse(n).ok())
                .take(1)
                .collect();
            let mut desc = desc;
            // An index inside: take this machine's platform (or the first).
            for _ in 0..4 {
                let mt = desc["mediaType"].as_str().unwrap_or("");
                if !media::is_index(mt) {
                    break;
                }
                let d: Digest = parse_digest(&desc)?;
                let inner: serde_json::Value = serde_json::from_slice(&self.read_blob_bytes(&d)?)
                    .map_err(|source| OciError::Json {
                    what: "image index",
                    source,
                })?;
                let list = inner["manifests"].as_array().cloned().unwrap_or_default();
                desc = list
                    .iter()
                    .find(|m| {
                        m["platform"]["architecture"] == host_architecture()
                            && m["platform"]["os"] == "linux"
                    })
                    .or_else(|| list.first())
                    .cloned()
                    .ok_or_else(|| {
                        StoreError::Oci(OciError::Archive {
                            reason: format!("image index {d} lists no manifests"),
                        })
                    })?;
            }
            let md = parse_digest(&desc)?;
            out.push(self.insert_manifest(&md, &names)?);
        }
        if out.is_empty() {
            return Err(OciError::Archive {
                reason: "index.json lists no images".into(),
            }
            .into());
        }
        Ok(out)
    }
}

fn parse_digest(desc: &serde_json::Value) -> Result<Digest> {
    let s = desc["digest"].as_str().ok_or_else(|| {
        StoreError::Oci(OciError::Archive {
            reason: "a descriptor has no digest".into(),
        })
    })?;
    Ok(s.parse()?)
}

fn verified(e: OciError, digest: &Digest, img: &ImageRecord) -> StoreError {
    match &e {
        OciError::Tar { source, .. } if source.kind() == io::ErrorKind::InvalidData => {
            crate::blobs::corrupt(digest, Some(&img.display_name()), source)
        }
        _ => e.into(),
    }
}

fn normalize(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out.join("/")
}
