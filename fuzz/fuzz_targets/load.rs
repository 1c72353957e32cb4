//! `kiln load`'s reader on arbitrary bytes (docker-archive or OCI archive,
//! compressed or not): never a panic, and whatever it accepts leaves a store
//! whose every listed image resolves and whose config verifies.
#![no_main]

use std::sync::OnceLock;

use kiln_store::Store;
use libfuzzer_sys::fuzz_target;

/// One store for the whole run (opening a fresh one per input costs more
/// than the load itself); on tmpfs when there is one.
fn store() -> &'static Store {
    static STORE: OnceLock<(tempfile::TempDir, Store)> = OnceLock::new();
    &STORE
        .get_or_init(|| {
            let base = if std::path::Path::new("/dev/shm").is_dir() {
                "/dev/shm"
            } else {
                "/tmp"
            };
            let root = tempfile::Builder::new()
                .prefix("kiln-fuzz-")
                .tempdir_in(base)
                .expect("tempdir");
            let store = Store::open(root.path()).expect("open store");
            (root, store)
        })
        .1
}

fuzz_target!(|data: &[u8]| {
    let store = store();
    let _ = store.load(data);
    // Loaded or not, the store is consistent: every image it lists has a
    // readable, verified config, and it reopens.
    let images = store.images().expect("list images after load");
    for image in &images {
        store
            .image_config(image)
            .expect("a loaded image's config reads back");
    }
    Store::open(store.root()).expect("store reopens after load");
});
