//! kiln's on-disk store: images, layers, snapshots and the build cache.
//!
//! Layout under the root (`--root`):
//!
//! ```text
//! oci/                an OCI image layout (oci-layout, index.json, blobs/sha256/…)
//!                     — every image, tags as org.opencontainers.image.ref.name
//!                     annotations with full names; skopeo and umoci read it
//! snapshots/<hex>     one unpacked layer per diff id (overlay lower dirs:
//!                     whiteouts as 0/0 char devices, opaque dirs by xattr)
//! kiln.redb           metadata: tags, image records, compressed-blob cache,
//!                     build-cache index (redb: ACID, crash-safe)
//! tmp/                blobs and snapshots being written
//! containers/         running containers (`kiln run`): a record and a held
//!                     flock each, so rmi and GC leave their images alone
//! db.lock, gc.lock    flock files (see below); db.lock also holds the
//!                     database's write generation
//! lookup-cache.json   names `kiln run` resolved, valid while the database
//!                     is unchanged (so a run of the same image again opens
//!                     no database: see `Store::open_and_resolve`)
//! ```
//!
//! **Not for:** talking to registries (kiln-registry pulls and pushes through
//! [`Store::ingest_blob`] and [`Store::compressed_layer`]), running
//! containers, or solving builds — it is the place they keep results.
//!
//! # Safety properties
//! - Blobs are written to `tmp/`, hashed while written, fsynced, and renamed
//!   under their digest; a crash never leaves a partial blob under a digest.
//!   Every blob read goes through a verifying reader: a corrupted blob is
//!   reported as [`StoreError::CorruptBlob`] naming the digest and image.
//! - Metadata changes are redb write transactions, made after the blobs they
//!   name are durable, so the database never points at a missing blob.
//!   `index.json` is rewritten atomically after each change; a crash between
//!   the two is repaired by the next open (a dirty flag in the database).
//! - Several processes may share a root: `db.lock` (exclusive, held only for
//!   the length of a transaction) serialises database access; `gc.lock` is
//!   held shared by every [`Store`] handle with a [`Lease`] that adds
//!   content or uses snapshots, and exclusively by [`Store::prune`], so GC
//!   never deletes something an unfinished operation is about to reference.
//!
//! # Example
//!
//! ```no_run
//! use kiln_store::Store;
//!
//! let store = Store::open("/var/lib/kiln")?;
//! for image in store.images()? {
//!     println!("{} {:?}", image.id().short(), image.tags);
//! }
//! # Ok::<(), kiln_store::StoreError>(())
//! ```
//!
//! # The API the solver uses
//! - [`Store::cache_get`] / [`Store::cache_put`]: key → [`CacheEntry`]
//!   (diff id of the layer, its snapshot, the key's pre-image).
//! - [`Store::add_layer_from_dir`]: a directory (an overlay upper dir) → an
//!   uncompressed layer blob, hashed once; [`Store::snapshot`]: a diff id →
//!   the unpacked directory; [`Store::image_snapshots`]: an image's lower dirs.
//! - [`Store::commit_image`]: config + layers + tags → a new image.
//!
//! # The API `kiln run` uses
//! - [`Store::resolve`], [`Store::image_config`], [`Store::image_snapshots`]
//!   under a [`Lease`], then [`Store::register_container`]: the returned
//!   [`Container`] keeps the image (its record, blobs and snapshots) from
//!   `rmi` and prune until it is dropped, and makes `--name` unique.
#![deny(missing_docs)]

mod blobs;
mod cache;
mod containers;
mod db;
mod error;
mod fsutil;
mod gc;
mod images;
mod lookup;
mod snapshots;
mod transfer;

use std::path::{Path, PathBuf};

pub use blobs::{BlobReader, BlobWriter};
pub use cache::{CacheEntry, LAST_USED_GRANULARITY};
pub use containers::{Container, ContainerRecord, valid_container_name};
pub use error::{Result, StoreError};
pub use fsutil::LockGuard;
pub use gc::{PruneOptions, PruneReport};
pub use images::{ImageRecord, LayerRecord};
pub use kiln_oci as oci;
pub use transfer::{ArchiveFormat, ImportOptions, host_architecture};

/// A handle on a store root. Cheap to open; holds no lock by itself.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// A shared hold on the store that keeps [`Store::prune`] away while
/// content is being added or snapshots are in use. Dropping releases it.
#[derive(Debug)]
pub struct Lease {
    _guard: LockGuard,
}

impl Store {
    /// Open (creating if needed) the store at `root`, repairing what a crash
    /// may have left (a stale `index.json`).
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let store = Self::open_dirs(root.as_ref())?;
        store.repair()?;
        Ok(store)
    }

    /// The directories and the layout file of [`Store::open`], without the
    /// database check.
    pub(crate) fn open_dirs(root: &Path) -> Result<Self> {
        let root = root.to_path_buf();
        for dir in [
            root.clone(),
            root.join("oci/blobs/sha256"),
            root.join("snapshots"),
            root.join("tmp"),
        ] {
            fs_err::create_dir_all(&dir)
                .map_err(|e| StoreError::io("create directory", &dir, e))?;
        }
        let store = Self { root };
        let layout = store.oci_dir().join("oci-layout");
        if !layout.exists() {
            fsutil::write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        Ok(store)
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The OCI image layout directory (`ROOT/oci`).
    pub fn oci_dir(&self) -> PathBuf {
        self.root.join("oci")
    }

    /// Take a [`Lease`]: hold it while adding content or using snapshots.
    pub fn lease(&self) -> Result<Lease> {
        let guard = fsutil::lock(&self.root.join("gc.lock"), false, true)?.ok_or_else(|| {
            StoreError::io(
                "lock",
                self.root.join("gc.lock"),
                std::io::ErrorKind::WouldBlock.into(),
            )
        })?;
        Ok(Lease { _guard: guard })
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }
}
