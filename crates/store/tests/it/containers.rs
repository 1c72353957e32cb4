//! The running-container registry: unique names, stale records of killed
//! processes, and images kept from `rmi` and prune while in use.

use kiln_oci::Reference;
use kiln_store::{PruneOptions, StoreError};
use kiln_test_support::TempRoot;

use crate::store_with_busybox;

fn listing(root: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root.join("containers"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "registry.lock")
        .collect();
    v.sort();
    v
}

#[test]
fn names_are_unique_while_running_and_records_go_on_drop() {
    let root = TempRoot::new();
    let (store, rec) = store_with_busybox(root.path(), "busybox");
    let web = store.register_container(Some("web"), Some(&rec)).unwrap();
    assert_eq!(web.id().len(), 64);
    let err = store
        .register_container(Some("web"), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("\"web\" is already in use by running container")
            && err.contains(web.record().short_id()),
        "{err}"
    );
    let anon = store.register_container(None, None).unwrap();
    let running = store.containers().unwrap();
    assert_eq!(running.len(), 2);
    assert_eq!(running[0].name.as_deref(), Some("web"));
    assert_eq!(running[0].image.as_ref().unwrap().config, rec.config);
    assert!(matches!(
        store.register_container(Some("-bad"), None),
        Err(StoreError::InvalidName(_))
    ));
    drop(web);
    drop(anon);
    assert!(store.containers().unwrap().is_empty());
    assert!(
        listing(root.path()).is_empty(),
        "{:?}",
        listing(root.path())
    );
    // the name is free again
    drop(store.register_container(Some("web"), None).unwrap());
}

#[test]
fn records_of_a_killed_process_are_removed_at_the_next_scan() {
    let root = TempRoot::new();
    let (store, rec) = store_with_busybox(root.path(), "busybox");
    let live = store.register_container(Some("live"), Some(&rec)).unwrap();
    // What `kill -9` leaves: the files, with nobody holding the lock.
    let dir = root.path().join("containers");
    let id = "ab".repeat(32);
    let mut stale = live.record().clone();
    stale.id.clone_from(&id);
    stale.name = Some("stale".into());
    std::fs::write(
        dir.join(format!("{id}.json")),
        serde_json::to_vec(&stale).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join(format!("{id}.lock")), "").unwrap();
    // and a record whose lock file was already removed, and a temp record
    std::fs::write(dir.join(format!("{}.json", "cd".repeat(32))), "{}").unwrap();
    std::fs::write(dir.join(format!(".{}.json.tmp", "ef".repeat(32))), "{").unwrap();
    let running = store.containers().unwrap();
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].id, live.id());
    assert_eq!(
        listing(root.path()),
        [format!("{}.json", live.id()), format!("{}.lock", live.id())]
    );
    // the stale record's name is free
    drop(store.register_container(Some("stale"), None).unwrap());
}

#[test]
fn images_of_running_containers_survive_rmi_and_prune() {
    let root = TempRoot::new();
    let (store, rec) = store_with_busybox(root.path(), "busybox");
    let container = store.register_container(None, Some(&rec)).unwrap();
    assert_eq!(store.containers_using(&rec).unwrap().len(), 1);
    let err = store.remove_image(&rec).unwrap_err();
    assert!(
        matches!(err, StoreError::ImageInUse { .. })
            && err.to_string().contains("(cannot be forced)"),
        "{err}"
    );
    // Untagging the last name keeps the record, dangling, while in use…
    let (_, deleted) = store.untag(&Reference::parse("busybox").unwrap()).unwrap();
    assert!(!deleted);
    let report = store.prune(&PruneOptions::default()).unwrap();
    assert!(report.images.is_empty(), "{report:?}");
    assert!(store.has_blob(&rec.layers[0].digest));
    assert!(store.has_blob(&rec.config));
    // …and prune removes it once the container is gone.
    drop(container);
    let report = store.prune(&PruneOptions::default()).unwrap();
    assert_eq!(report.images, std::slice::from_ref(&rec.config));
    assert!(!store.has_blob(&rec.layers[0].digest));
}
