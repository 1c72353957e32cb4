//! Snapshots: unpacked layers under `ROOT/snapshots/<diff-id hex>`, shared
//! between images, usable as overlayfs lower dirs (whiteouts recorded the
//! overlay way). A snapshot is extracted into `tmp/` and renamed into
//! place, so one that exists under its name is complete.

use std::io::Read;
use std::path::{Path, PathBuf};

use kiln_oci::layer::{ApplyOptions, CreateOptions, WhiteoutMode, apply_layer, create_layer};
use kiln_oci::{Digest, Hasher, OciError, media};

use crate::blobs::corrupt;
use crate::error::{Result, StoreError};
use crate::images::{ImageRecord, LayerRecord, with_image};
use crate::{Store, fsutil};

/// Hashes what passes through (the decompressed stream: the diff id).
struct HashingReader<R> {
    inner: R,
    hasher: Option<Hasher>,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = self.hasher.as_mut() {
            h.update(&buf[..n]);
        }
        Ok(n)
    }
}

impl Store {
    /// Where the snapshot of a layer with this diff id lives (it may not
    /// exist yet: see [`Store::snapshot`]).
    pub fn snapshot_path(&self, diff_id: &Digest) -> PathBuf {
        self.root.join("snapshots").join(diff_id.hex())
    }

    /// The unpacked directory of `layer`, extracting it from its blob (with
    /// both the blob digest and the diff id verified) if needed.
    pub fn snapshot(&self, layer: &LayerRecord) -> Result<PathBuf> {
        let path = self.snapshot_path(&layer.diff_id);
        if path.is_dir() {
            return Ok(path);
        }
        let tmp = tempfile::Builder::new()
            .prefix("snapshot-")
            .tempdir_in(self.tmp_dir())
            .map_err(|e| StoreError::io("create directory in", self.tmp_dir(), e))?;
        let blob = self.read_blob(&layer.digest)?;
        let (_, plain) = kiln_oci::compress::decompress(blob)?;
        let mut hashing = HashingReader {
            inner: plain,
            hasher: Some(layer.diff_id.hasher()),
        };
        let opts = ApplyOptions {
            whiteouts: WhiteoutMode::Overlay,
            ..ApplyOptions::default()
        };
        match apply_layer(&mut hashing, tmp.path(), &opts) {
            Ok(_) => {}
            Err(OciError::Tar { source, .. } | OciError::Stream { source, .. })
                if source.kind() == std::io::ErrorKind::InvalidData =>
            {
                return Err(corrupt(&layer.digest, None, &source));
            }
            Err(e) => return Err(e.into()),
        }
        // Tar readers stop at the end marker; hash the padding too.
        std::io::copy(&mut hashing, &mut std::io::sink())
            .map_err(|e| corrupt(&layer.digest, None, &e))?;
        let actual = hashing.hasher.take().map(Hasher::finish);
        if actual.as_ref() != Some(&layer.diff_id) {
            return Err(corrupt(
                &layer.digest,
                None,
                &format!(
                    "uncompressed content hashes to {}, the image says {}",
                    actual.map_or_else(String::new, |d| d.to_string()),
                    layer.diff_id
                ),
            ));
        }
        let dir = tmp.keep();
        match std::fs::rename(&dir, &path) {
            Ok(()) => {}
            // Another process made the same snapshot first.
            Err(_) if path.is_dir() => {
                let _ = std::fs::remove_dir_all(&dir);
            }
            Err(e) => return Err(StoreError::io("rename snapshot into place", &path, e)),
        }
        fsutil::sync_dir(&self.root.join("snapshots"))?;
        Ok(path)
    }

    /// The snapshots of an image's layers, bottom first (overlayfs wants
    /// `lowerdir=` top first: reverse this).
    pub fn image_snapshots(&self, image: &ImageRecord) -> Result<Vec<PathBuf>> {
        image
            .layers
            .iter()
            .map(|l| self.snapshot(l).map_err(|e| with_image(e, image)))
            .collect()
    }

    /// Turn a directory (an overlay upper dir, or a whole tree) into an
    /// uncompressed layer blob, hashing it once while it is written. The
    /// blob digest is the diff id.
    pub fn add_layer_from_dir(&self, dir: &Path, opts: &CreateOptions) -> Result<LayerRecord> {
        let w = self.blob_writer()?;
        let (w, _) = create_layer(dir, w, opts)?;
        let (digest, size) = w.commit(None)?;
        Ok(LayerRecord {
            diff_id: digest.clone(),
            digest,
            size,
            media_type: media::LAYER_TAR.to_owned(),
        })
    }

    /// Record `dir` as the snapshot of `layer` (moving it), when the caller
    /// already has the unpacked tree (e.g. the solver's upper dir after a
    /// RUN step). `dir` must be on the store's file system.
    pub fn adopt_snapshot(&self, layer: &LayerRecord, dir: &Path) -> Result<PathBuf> {
        let path = self.snapshot_path(&layer.diff_id);
        if path.is_dir() {
            return Ok(path);
        }
        match std::fs::rename(dir, &path) {
            Ok(()) => {}
            Err(_) if path.is_dir() => {}
            Err(e) => return Err(StoreError::io("rename snapshot into place", &path, e)),
        }
        fsutil::sync_dir(&self.root.join("snapshots"))?;
        Ok(path)
    }
}
