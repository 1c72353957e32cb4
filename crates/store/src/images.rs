//! Images and tags, and the OCI layout's `index.json` that mirrors them.

use std::collections::BTreeMap;

use kiln_oci::config::ImageConfig;
use kiln_oci::{Digest, Reference, media};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use crate::db::{
    COMPRESSED, IMAGES, META, TAGS, TxError, all_bytes, all_str, decode, encode, store_err,
};
use crate::error::{Result, StoreError};
use crate::{Store, fsutil};

/// One layer of an image, as its manifest names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// Blob digest (for local layers: the diff id).
    pub digest: Digest,
    /// Blob size.
    pub size: u64,
    /// Layer media type (compression).
    pub media_type: String,
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
}

/// An image the store holds: its manifest, config and layers, and the
/// names it goes by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Manifest digest (the repo digest).
    pub manifest: Digest,
    /// Manifest size.
    pub manifest_size: u64,
    /// Manifest media type.
    pub manifest_media_type: String,
    /// Config digest: the image id.
    pub config: Digest,
    /// Config size.
    pub config_size: u64,
    /// Layers, bottom first.
    pub layers: Vec<LayerRecord>,
    /// When the image was created (config's `created`), RFC 3339.
    pub created: Option<String>,
    /// Full normalized names.
    #[serde(default)]
    pub tags: Vec<String>,
}

impl ImageRecord {
    /// The image id (config digest).
    pub fn id(&self) -> &Digest {
        &self.config
    }
    /// Sum of the layers' blob sizes.
    pub fn size(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum()
    }
    /// The names, parsed.
    pub fn references(&self) -> Vec<Reference> {
        self.tags
            .iter()
            .filter_map(|t| Reference::parse_strict(t).ok())
            .collect()
    }
    /// A name to show in errors: the first tag, else the short id.
    pub fn display_name(&self) -> String {
        self.references()
            .first()
            .map_or_else(|| self.config.short().to_owned(), Reference::familiar)
    }
}

fn oci_manifest(config: &Digest, config_size: u64, layers: &[LayerRecord]) -> Vec<u8> {
    let layers: Vec<serde_json::Value> = layers
        .iter()
        .map(|l| serde_json::json!({"mediaType": l.media_type, "digest": l.digest, "size": l.size}))
        .collect();
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::MANIFEST,
        "config": {"mediaType": media::CONFIG, "digest": config, "size": config_size},
        "layers": layers,
    });
    serde_json::to_vec(&m).unwrap_or_default()
}

impl Store {
    /// Record a new image: the config (bytes, stored as given), the layers
    /// (already in the store), and its tags. Writes the manifest; returns the
    /// record.
    pub fn commit_image(
        &self,
        config: &[u8],
        layers: &[LayerRecord],
        tags: &[Reference],
    ) -> Result<ImageRecord> {
        let cfg = ImageConfig::from_slice(config)?;
        for l in layers {
            if !self.has_blob(&l.digest) {
                return Err(StoreError::MissingBlob {
                    digest: l.digest.clone(),
                    image: None,
                });
            }
        }
        let config_digest = self.put_blob(config)?;
        let manifest = oci_manifest(&config_digest, config.len() as u64, layers);
        let manifest_digest = self.put_blob(&manifest)?;
        let record = ImageRecord {
            manifest: manifest_digest,
            manifest_size: manifest.len() as u64,
            manifest_media_type: media::MANIFEST.to_owned(),
            config: config_digest,
            config_size: config.len() as u64,
            layers: layers.to_vec(),
            created: cfg.created,
            tags: Vec::new(),
        };
        self.insert_image(record, tags)
    }

    /// Record an image whose manifest and blobs are already in the store
    /// (pulled or loaded), and tag it.
    pub fn insert_image(&self, mut record: ImageRecord, tags: &[Reference]) -> Result<ImageRecord> {
        let db = self.db()?;
        // Already recorded with these names (a rebuild served from the
        // cache): nothing to write, and index.json is already right.
        let unchanged = db.read(|txn| {
            let images = txn.open_table(IMAGES)?;
            let tag_t = txn.open_table(TAGS)?;
            let Some(old) = images.get(record.manifest.as_str())? else {
                return Ok(None);
            };
            let old: ImageRecord = decode("image", old.value())?;
            let same = old.layers == record.layers && old.config == record.config;
            for t in tags {
                let name = t.to_string();
                let here = tag_t
                    .get(name.as_str())?
                    .is_some_and(|m| m.value() == record.manifest.as_str());
                if !here || !old.tags.contains(&name) {
                    return Ok(None);
                }
            }
            let dirty = txn.open_table(META)?.get("index_dirty")?.is_some();
            Ok((same && !dirty).then_some(old))
        })?;
        if let Some(old) = unchanged {
            return Ok(old);
        }
        let rec = db.write(|txn| {
            let mut images = txn.open_table(IMAGES)?;
            let mut tag_t = txn.open_table(TAGS)?;
            if let Some(old) = images.get(record.manifest.as_str())? {
                let old: ImageRecord = decode("image", old.value())?;
                record.tags = old.tags;
            }
            let mut records = BTreeMap::new();
            for t in tags {
                let name = t.to_string();
                if let Some(prev) = tag_t.insert(name.as_str(), record.manifest.as_str())? {
                    let prev = prev.value().to_owned();
                    if prev != record.manifest.as_str() {
                        records.insert(prev, name.clone());
                    }
                }
                if !record.tags.contains(&name) {
                    record.tags.push(name);
                }
            }
            images.insert(record.manifest.as_str(), encode(&record).as_slice())?;
            // Names moved away from other images.
            for (prev, name) in records {
                let Some(bytes) = images.get(prev.as_str())?.map(|g| g.value().to_vec()) else {
                    continue;
                };
                let mut old: ImageRecord = decode("image", &bytes)?;
                old.tags.retain(|t| t != &name);
                images.insert(prev.as_str(), encode(&old).as_slice())?;
            }
            mark_dirty(txn)?;
            Ok(record.clone())
        })?;
        self.write_index(&db)?;
        Ok(rec)
    }

    /// All images, newest first.
    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        let db = self.db()?;
        Self::images_in(&db)
    }

    fn images_in(db: &crate::db::Db) -> Result<Vec<ImageRecord>> {
        let mut out = db.read(|txn| {
            let images = txn.open_table(IMAGES)?;
            all_bytes(&images)?
                .into_iter()
                .map(|(_, v)| decode::<ImageRecord>("image", &v))
                .collect::<std::result::Result<Vec<_>, _>>()
        })?;
        out.sort_by(|a, b| b.created.cmp(&a.created).then(a.config.cmp(&b.config)));
        Ok(out)
    }

    /// Find an image by name (`busybox`, `busybox:1`, `name@sha256:…`), id
    /// (`sha256:…` or a prefix of at least one hex digit) or manifest digest.
    pub fn resolve(&self, what: &str) -> Result<ImageRecord> {
        let db = self.db()?;
        Self::resolve_in(&db, what)
    }

    /// [`Store::open`], a [`Lease`](crate::Lease), and [`Store::resolve`]
    /// of `what` in one database open (each open and close of the database
    /// syncs it several times), or in none when the lookup cache answers
    /// (the same name resolved before, the database unchanged since: see
    /// `lookup.rs`): what `kiln run` needs first. The lease is taken before
    /// the lookup. A failed lookup is the inner error.
    pub fn open_and_resolve(
        root: impl AsRef<std::path::Path>,
        what: &str,
    ) -> Result<(Self, crate::Lease, Result<ImageRecord>)> {
        let store = Self::open_dirs(root.as_ref())?;
        let lease = store.lease()?;
        if let Some(record) = store.cached_lookup(what) {
            return Ok((store, lease, Ok(record)));
        }
        let db = store.db()?;
        store.repair_with(&db)?;
        let found = Self::resolve_in(&db, what);
        let lock = db.close();
        if let Ok(record) = &found
            && let Some(stamp) = store.db_stamp(lock.file())
        {
            store.remember_lookup(stamp, what, record);
        }
        drop(lock);
        Ok((store, lease, found))
    }

    fn resolve_in(db: &crate::db::Db, what: &str) -> Result<ImageRecord> {
        let all = Self::images_in(db)?;
        // By id or id prefix (docker accepts short ids).
        let hex = what.strip_prefix("sha256:").unwrap_or(what);
        if !hex.is_empty()
            && hex.len() <= 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            let by_id: Vec<&ImageRecord> = all
                .iter()
                .filter(|r| r.config.hex().starts_with(hex) || r.manifest.hex() == hex)
                .collect();
            let mut ids: Vec<&Digest> = by_id.iter().map(|r| &r.config).collect();
            ids.dedup();
            match ids.len() {
                0 => {}
                1 => return Ok(by_id[0].clone()),
                _ => return Err(StoreError::Ambiguous(what.to_owned())),
            }
        }
        let r = Reference::parse(what)?;
        if let Some(d) = r.digest() {
            return all
                .into_iter()
                .find(|i| &i.manifest == d)
                .ok_or_else(|| StoreError::NoSuchImage(what.to_owned()));
        }
        let name = r.to_string();
        all.into_iter()
            .find(|i| i.tags.contains(&name))
            .ok_or_else(|| StoreError::NoSuchImage(what.to_owned()))
    }

    /// Give an existing image another name.
    pub fn tag(&self, source: &str, target: &Reference) -> Result<ImageRecord> {
        let rec = self.resolve(source)?;
        self.insert_image(rec, std::slice::from_ref(target))
    }

    /// Remove a name. When it was the image's last name, the image record is
    /// removed too (its blobs go at the next prune), unless a running
    /// container uses the image: then it stays, without a name, until a
    /// prune after the container exits. Returns the image and whether it
    /// was deleted.
    pub fn untag(&self, name: &Reference) -> Result<(ImageRecord, bool)> {
        let in_use: Vec<Digest> = self
            .containers()?
            .into_iter()
            .filter_map(|c| c.image.map(|i| i.config))
            .collect();
        let db = self.db()?;
        let key = name.to_string();
        let out = db.write(|txn| {
            let mut tag_t = txn.open_table(TAGS)?;
            let mut images = txn.open_table(IMAGES)?;
            let Some(manifest) = tag_t.remove(key.as_str())?.map(|g| g.value().to_owned()) else {
                return Err(store_err(StoreError::NoSuchImage(name.familiar())));
            };
            let Some(bytes) = images.get(manifest.as_str())?.map(|g| g.value().to_vec()) else {
                return Err(store_err(StoreError::NoSuchImage(name.familiar())));
            };
            let mut rec: ImageRecord = decode("image", &bytes)?;
            rec.tags.retain(|t| t != &key);
            let deleted = rec.tags.is_empty() && !in_use.contains(&rec.config);
            if deleted {
                images.remove(manifest.as_str())?;
            } else {
                images.insert(manifest.as_str(), encode(&rec).as_slice())?;
            }
            mark_dirty(txn)?;
            Ok((rec, deleted))
        })?;
        self.write_index(&db)?;
        Ok(out)
    }

    /// Remove an image record and all its names. Refused
    /// ([`StoreError::ImageInUse`]) while a running container uses it.
    pub fn remove_image(&self, image: &ImageRecord) -> Result<()> {
        if let Some(c) = self.containers_using(image)?.first() {
            return Err(StoreError::ImageInUse {
                id: image.config.short().to_owned(),
                container: c.short_id().to_owned(),
            });
        }
        let db = self.db()?;
        db.write(|txn| {
            let mut tag_t = txn.open_table(TAGS)?;
            let mut images = txn.open_table(IMAGES)?;
            // Every manifest with this id goes (docker removes by id).
            let victims: Vec<(String, ImageRecord)> = all_bytes(&images)?
                .into_iter()
                .map(|(k, v)| decode::<ImageRecord>("image", &v).map(|r| (k, r)))
                .collect::<std::result::Result<Vec<_>, _>>()?
                .into_iter()
                .filter(|(_, r)| r.config == image.config)
                .collect();
            for (k, r) in victims {
                for t in &r.tags {
                    tag_t.remove(t.as_str())?;
                }
                images.remove(k.as_str())?;
            }
            mark_dirty(txn)?;
            Ok(())
        })?;
        self.write_index(&db)
    }

    /// The parsed config of an image (verified read).
    pub fn image_config(&self, image: &ImageRecord) -> Result<ImageConfig> {
        let bytes = self
            .read_blob_bytes(&image.config)
            .map_err(|e| with_image(e, image))?;
        Ok(ImageConfig::from_slice(&bytes)?)
    }

    /// The raw config bytes of an image (verified read).
    pub fn image_config_bytes(&self, image: &ImageRecord) -> Result<Vec<u8>> {
        self.read_blob_bytes(&image.config)
            .map_err(|e| with_image(e, image))
    }

    pub(crate) fn compressed_lookup(&self, key: &str) -> Result<Option<(Digest, u64)>> {
        let db = self.db()?;
        db.read(|txn| {
            let t = txn.open_table(COMPRESSED)?;
            match t.get(key)? {
                Some(v) => Ok(Some(decode("compressed blob", v.value())?)),
                None => Ok(None),
            }
        })
    }

    pub(crate) fn compressed_record(&self, key: &str, digest: &Digest, size: u64) -> Result<()> {
        let db = self.db()?;
        db.write(|txn| {
            let mut t = txn.open_table(COMPRESSED)?;
            t.insert(key, encode(&(digest, size)).as_slice())?;
            Ok(())
        })
    }

    /// Rewrite `oci/index.json` from the database, then clear the dirty flag.
    pub(crate) fn write_index(&self, db: &crate::db::Db) -> Result<()> {
        let (tags, images) = db.read(|txn| {
            let tags = all_str(&txn.open_table(TAGS)?)?;
            let images = all_bytes(&txn.open_table(IMAGES)?)?
                .into_iter()
                .map(|(_, v)| decode::<ImageRecord>("image", &v))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Ok((tags, images))
        })?;
        let by_manifest: BTreeMap<&str, &ImageRecord> =
            images.iter().map(|r| (r.manifest.as_str(), r)).collect();
        let mut manifests = Vec::new();
        let desc = |r: &ImageRecord, name: Option<&str>| {
            let mut d = serde_json::json!({
                "mediaType": r.manifest_media_type,
                "digest": r.manifest,
                "size": r.manifest_size,
            });
            if let Some(name) = name {
                d["annotations"] = serde_json::json!({ media::ANNOTATION_REF_NAME: name });
            }
            d
        };
        for (name, manifest) in &tags {
            if let Some(r) = by_manifest.get(manifest.as_str()) {
                manifests.push(desc(r, Some(name)));
            }
        }
        for r in &images {
            if r.tags.is_empty() {
                manifests.push(desc(r, None));
            }
        }
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::INDEX,
            "manifests": manifests,
        });
        let bytes = serde_json::to_vec_pretty(&index).unwrap_or_default();
        fsutil::write_atomic(&self.oci_dir().join("index.json"), &bytes)?;
        db.write(|txn| {
            txn.open_table(META)?.remove("index_dirty")?;
            Ok(())
        })
    }

    /// Repair what a crash may have left: a stale index.json.
    pub(crate) fn repair(&self) -> Result<()> {
        let db = self.db()?;
        self.repair_with(&db)
    }

    fn repair_with(&self, db: &crate::db::Db) -> Result<()> {
        let dirty = db.read(|txn| Ok(txn.open_table(META)?.get("index_dirty")?.is_some()))?;
        if dirty || !self.oci_dir().join("index.json").exists() {
            self.write_index(db)?;
        }
        Ok(())
    }
}

pub(crate) fn with_image(e: StoreError, image: &ImageRecord) -> StoreError {
    match e {
        StoreError::CorruptBlob { digest, reason, .. } => StoreError::CorruptBlob {
            digest,
            image: Some(image.display_name()),
            reason,
        },
        StoreError::MissingBlob { digest, .. } => StoreError::MissingBlob {
            digest,
            image: Some(image.display_name()),
        },
        other => other,
    }
}

fn mark_dirty(txn: &redb::WriteTransaction) -> std::result::Result<(), TxError> {
    txn.open_table(META)?.insert("index_dirty", &b"1"[..])?;
    Ok(())
}
