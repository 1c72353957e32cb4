//! `kiln load`'s reader on arbitrary bytes (docker-archive or OCI archive,
//! compressed or not): never a panic, and whatever it accepts is a store
//! whose every listed image resolves and whose blobs verify.
#![no_main]

use kiln_store::Store;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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
    let _ = store.load(data);
    // Loaded or not, the store is consistent: every image it lists has a
    // readable, verified config.
    let images = store.images().expect("list images after load");
    for image in &images {
        store
            .image_config(image)
            .expect("a loaded image's config reads back");
    }
    drop(store);
    Store::open(root.path()).expect("store reopens after load");
});
