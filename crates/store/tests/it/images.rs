//! Images, tags, the OCI layout index, cache entries and prune.

use kiln_oci::Reference;
use kiln_store::{PruneOptions, Store};
use kiln_test_support::TempRoot;

use crate::store_with_busybox;

#[test]
fn commit_tag_resolve_untag() {
    let root = TempRoot::new();
    let (store, rec) = store_with_busybox(root.path(), "busybox");
    assert_eq!(rec.tags, ["docker.io/library/busybox:latest"]);
    assert_eq!(store.resolve("busybox").unwrap().config, rec.config);
    assert_eq!(
        store.resolve(rec.config.short()).unwrap().manifest,
        rec.manifest
    );
    assert_eq!(
        store.resolve(rec.config.as_str()).unwrap().manifest,
        rec.manifest
    );
    let pinned = format!("busybox@{}", rec.manifest);
    assert_eq!(store.resolve(&pinned).unwrap().config, rec.config);

    store
        .tag(
            "busybox",
            &Reference::parse("localhost:5000/bb:v1").unwrap(),
        )
        .unwrap();
    let index = std::fs::read_to_string(root.path().join("oci/index.json")).unwrap();
    assert!(
        index.contains("\"org.opencontainers.image.ref.name\": \"localhost:5000/bb:v1\""),
        "{index}"
    );
    assert!(index.contains("docker.io/library/busybox:latest"));

    let (after, deleted) = store.untag(&Reference::parse("busybox").unwrap()).unwrap();
    assert!(!deleted);
    assert_eq!(after.tags, ["localhost:5000/bb:v1"]);
    assert!(store.resolve("busybox").is_err());
    let (_, deleted) = store
        .untag(&Reference::parse("localhost:5000/bb:v1").unwrap())
        .unwrap();
    assert!(deleted);
    assert!(store.images().unwrap().is_empty());
    let index = std::fs::read_to_string(root.path().join("oci/index.json")).unwrap();
    assert!(!index.contains("ref.name"));
}

#[test]
fn moving_a_tag_leaves_the_old_image_dangling_and_prune_removes_it() {
    let root = TempRoot::new();
    let (store, first) = store_with_busybox(root.path(), "app");
    // A second image with another config under the same name.
    let mut cfg = store.image_config(&first).unwrap();
    cfg.apply_change("ENV X=1").unwrap();
    let (bytes, _) = cfg.to_bytes();
    let second = store
        .commit_image(&bytes, &first.layers, &[Reference::parse("app").unwrap()])
        .unwrap();
    let all = store.images().unwrap();
    assert_eq!(all.len(), 2);
    let old = all.iter().find(|r| r.config == first.config).unwrap();
    assert!(old.tags.is_empty());
    let report = store.prune(&PruneOptions::default()).unwrap();
    assert_eq!(report.images, std::slice::from_ref(&first.config));
    assert!(report.blobs >= 2, "{report:?}");
    assert!(!store.has_blob(&first.config));
    assert!(store.has_blob(&second.layers[0].digest));
    assert_eq!(store.images().unwrap().len(), 1);
}

#[test]
fn cache_entries_round_trip_and_keep_layers_alive() {
    let root = TempRoot::new();
    let (store, rec) = store_with_busybox(root.path(), "busybox");
    let layer = rec.layers[0].clone();
    let mut e = Store::new_cache_entry("v1\nRUN true\n".into());
    e.diff_id = Some(layer.diff_id.clone());
    e.layer_digest = Some(layer.digest.clone());
    e.layer_size = layer.size;
    store.cache_put("key1", &e).unwrap();
    assert_eq!(
        store.cache_get("key1").unwrap().unwrap().pre_image,
        "v1\nRUN true\n"
    );
    assert!(store.cache_get("nope").unwrap().is_none());
    store.remove_image(&rec).unwrap();
    store.prune(&PruneOptions::default()).unwrap();
    assert!(
        store.has_blob(&layer.digest),
        "the cache still needs the layer"
    );
    let report = store
        .prune(&PruneOptions {
            all: true,
            keep_storage: None,
        })
        .unwrap();
    assert_eq!(report.cache_entries, 1);
    assert!(!store.has_blob(&layer.digest));
}

#[test]
fn snapshots_of_an_image_needs_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "needs root (overlay whiteouts in snapshots)"
    );
    let root = TempRoot::new();
    let (store, rec) = store_with_busybox(root.path(), "busybox");
    let dirs = store.image_snapshots(&rec).unwrap();
    assert_eq!(dirs.len(), 1);
    assert!(dirs[0].join("bin/busybox").is_file());
    assert!(
        std::fs::symlink_metadata(dirs[0].join("bin/sh"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // A layer from a directory (an upper dir) and its snapshot.
    let upper = tempfile::tempdir().unwrap();
    std::fs::write(upper.path().join("hello"), b"hi").unwrap();
    let layer = store
        .add_layer_from_dir(upper.path(), &kiln_oci::layer::CreateOptions::default())
        .unwrap();
    assert_eq!(layer.digest, layer.diff_id);
    let snap = store.snapshot(&layer).unwrap();
    assert_eq!(std::fs::read(snap.join("hello")).unwrap(), b"hi");
}

#[test]
fn concurrent_handles_tag_safely() {
    let root = TempRoot::new();
    let (_, _) = store_with_busybox(root.path(), "base");
    let threads: Vec<_> = (0..6)
        .map(|i| {
            let path = root.path().to_path_buf();
            std::thread::spawn(move || {
                let store = Store::open(&path).unwrap();
                for j in 0..5 {
                    let name = Reference::parse(&format!("t{i}:{j}")).unwrap();
                    store.tag("base", &name).unwrap();
                    if j % 2 == 0 {
                        store.untag(&name).unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let store = Store::open(root.path()).unwrap();
    let rec = store.resolve("base").unwrap();
    assert_eq!(rec.tags.len(), 1 + 6 * 2);
    let index = std::fs::read_to_string(root.path().join("oci/index.json")).unwrap();
    assert_eq!(index.matches("ref.name").count(), 13);
}

#[test]
fn a_cache_hit_writes_its_last_use_only_when_that_is_stale() {
    let root = TempRoot::new();
    let (store, _) = store_with_busybox(root.path(), "busybox");
    let mut e = Store::new_cache_entry("v1\nRUN true\n".into());
    let recent = e.last_used - 10;
    e.last_used = recent;
    store.cache_put("recent", &e).unwrap();
    let stale = e.last_used - kiln_store::LAST_USED_GRANULARITY - 10;
    e.last_used = stale;
    store.cache_put("stale", &e).unwrap();

    assert_eq!(
        store.cache_get("recent").unwrap().unwrap().last_used,
        recent
    );
    assert!(store.cache_get("stale").unwrap().unwrap().last_used > stale);
    let recorded: std::collections::HashMap<String, i64> = store
        .cache_entries()
        .unwrap()
        .into_iter()
        .map(|(k, e)| (k, e.last_used))
        .collect();
    assert_eq!(recorded["recent"], recent, "a fresh hit was written");
    assert!(recorded["stale"] > stale, "a stale hit was not recorded");
}

#[test]
fn recommitting_the_same_image_rewrites_nothing() {
    use std::os::unix::fs::MetadataExt;
    let root = TempRoot::new();
    let (store, rec) = store_with_busybox(root.path(), "busybox");
    let config = store.image_config_bytes(&rec).unwrap();
    let name = Reference::parse("app").unwrap();
    let first = store
        .commit_image(&config, &rec.layers, std::slice::from_ref(&name))
        .unwrap();
    let index = store.oci_dir().join("index.json");
    let before = std::fs::metadata(&index).unwrap();
    let again = store
        .commit_image(&config, &rec.layers, std::slice::from_ref(&name))
        .unwrap();
    assert_eq!(again, first);
    let after = std::fs::metadata(&index).unwrap();
    assert_eq!(
        (after.ino(), after.mtime_nsec()),
        (before.ino(), before.mtime_nsec()),
        "index.json was rewritten"
    );
    // A new name still goes through.
    let other = Reference::parse("other").unwrap();
    let named = store
        .commit_image(&config, &rec.layers, std::slice::from_ref(&other))
        .unwrap();
    assert!(
        named
            .tags
            .contains(&"docker.io/library/other:latest".to_owned())
    );
    assert_eq!(store.resolve("other").unwrap().manifest, first.manifest);
}

#[test]
fn open_and_resolve_answers_from_the_lookup_cache_until_the_database_changes() {
    use std::os::unix::fs::MetadataExt;
    let root = TempRoot::new();
    let (store, first) = store_with_busybox(root.path(), "app");
    let resolve = |what: &str| Store::open_and_resolve(root.path(), what).unwrap().2;
    assert_eq!(resolve("app").unwrap(), first);
    assert!(root.path().join("lookup-cache.json").is_file());
    // Served from the cache: the database file is not even opened (an
    // open and close writes to it).
    let stamp = || {
        let m = std::fs::metadata(root.path().join("kiln.redb")).unwrap();
        (
            m.ino(),
            m.size(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
        )
    };
    let before = stamp();
    assert_eq!(resolve("app").unwrap(), first);
    assert_eq!(stamp(), before, "the second lookup opened the database");
    // Any write makes it stale: a moved tag is seen at once.
    let mut cfg = store.image_config(&first).unwrap();
    cfg.apply_change("ENV X=1").unwrap();
    let (bytes, _) = cfg.to_bytes();
    let second = store
        .commit_image(&bytes, &first.layers, &[Reference::parse("app").unwrap()])
        .unwrap();
    assert_eq!(resolve("app").unwrap(), second);
    assert_eq!(resolve("app").unwrap(), second, "cached again");
    store.untag(&Reference::parse("app").unwrap()).unwrap();
    assert!(matches!(
        resolve("app"),
        Err(kiln_store::StoreError::NoSuchImage(_))
    ));
    // Other names and ids keep resolving through the database.
    assert_eq!(
        resolve(&first.config.to_string()).unwrap().config,
        first.config
    );
}
