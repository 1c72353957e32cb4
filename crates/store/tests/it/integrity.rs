//! Verified reads: corrupted and mislabelled blobs are caught.

use std::io::Read;

use kiln_oci::{Digest, OciError};
use kiln_store::{Store, StoreError};
use kiln_test_support::TempRoot;

use crate::store_with_busybox;

#[test]
fn corrupted_config_names_digest_and_image() {
    let root = TempRoot::new();
    let (store, rec) = store_with_busybox(root.path(), "busybox");
    let path = store.blob_path(&rec.config);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[5] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let err = store.image_config(&rec).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::CorruptBlob { .. }), "{msg}");
    assert!(
        msg.contains(rec.config.as_str()) && msg.contains("busybox:latest"),
        "{msg}"
    );
}

#[test]
fn corrupted_layer_is_caught_when_read_and_when_unpacked() {
    let root = TempRoot::new();
    let (store, rec) = store_with_busybox(root.path(), "busybox");
    let layer = &rec.layers[0];
    let path = store.blob_path(&layer.digest);
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len() / 2;
    bytes[n] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let mut r = store.read_blob(&layer.digest).unwrap();
    let mut sink = Vec::new();
    assert!(r.read_to_end(&mut sink).is_err());
    let err = store.image_snapshots(&rec).unwrap_err().to_string();
    assert!(
        err.contains("corrupted blob") && err.contains(layer.digest.as_str()),
        "{err}"
    );
    assert!(
        !store.snapshot_path(&layer.diff_id).exists(),
        "no half snapshot"
    );
}

#[test]
fn ingest_refuses_wrong_content() {
    let root = TempRoot::new();
    let store = Store::open(root.path()).unwrap();
    let expected = Digest::sha256_of(b"right");
    let err = store
        .ingest_blob(&b"wrong"[..], &expected, None)
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Oci(OciError::DigestMismatch { .. })),
        "{err}"
    );
    assert!(!store.has_blob(&expected));
    let err = store
        .ingest_blob(&b"right"[..], &expected, Some(4))
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Oci(OciError::SizeMismatch { .. })),
        "{err}"
    );
    store
        .ingest_blob(&b"right"[..], &expected, Some(5))
        .unwrap();
    assert_eq!(store.read_blob_bytes(&expected).unwrap(), b"right");
    // Nothing is left in tmp/.
    assert_eq!(
        std::fs::read_dir(root.path().join("tmp")).unwrap().count(),
        0
    );
}

#[test]
fn compressed_layers_are_cached() {
    let root = TempRoot::new();
    let (store, rec) = store_with_busybox(root.path(), "busybox");
    let layer = &rec.layers[0].digest;
    let (gz, size) = store
        .compressed_layer(layer, kiln_oci::Compression::Gzip)
        .unwrap();
    assert!(size < rec.layers[0].size);
    let mtime = std::fs::metadata(store.blob_path(&gz))
        .unwrap()
        .modified()
        .unwrap();
    let (again, _) = store
        .compressed_layer(layer, kiln_oci::Compression::Gzip)
        .unwrap();
    assert_eq!(gz, again);
    assert_eq!(
        std::fs::metadata(store.blob_path(&gz))
            .unwrap()
            .modified()
            .unwrap(),
        mtime
    );
    let (zst, _) = store
        .compressed_layer(layer, kiln_oci::Compression::Zstd)
        .unwrap();
    assert_ne!(zst, gz);
    let _ = Store::open(root.path()).unwrap();
}
