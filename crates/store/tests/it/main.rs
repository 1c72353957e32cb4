//! Integration tests of kiln-store.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns

mod containers;
mod images;
mod integrity;

use kiln_oci::Reference;
use kiln_oci::config::ImageConfig;
use kiln_store::{ImageRecord, Store};

/// A store holding the busybox base image as `name`.
pub fn store_with_busybox(root: &std::path::Path, name: &str) -> (Store, ImageRecord) {
    let store = Store::open(root).unwrap();
    let tar = kiln_test_support::busybox_rootfs_tar();
    let layer = {
        let (digest, size) = store.add_layer_tar(&tar[..]).unwrap();
        kiln_store::LayerRecord {
            diff_id: digest.clone(),
            digest,
            size,
            media_type: kiln_oci::media::LAYER_TAR.to_owned(),
        }
    };
    let mut cfg = ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        created: Some("2024-01-01T00:00:00Z".into()),
        ..ImageConfig::default()
    };
    cfg.rootfs.diff_ids.push(layer.diff_id.clone());
    cfg.apply_change(r#"CMD ["sh"]"#).unwrap();
    let (bytes, _) = cfg.to_bytes();
    let rec = store
        .commit_image(&bytes, &[layer], &[Reference::parse(name).unwrap()])
        .unwrap();
    (store, rec)
}
