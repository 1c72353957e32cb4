//! Pruning the remote-context cache: by last use, within a size budget,
//! leftovers always, and never while a context from it is open.

use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use kiln_context::{CachePruneOptions, Opener, prune_cache};

fn entry(path: &Path, bytes: usize, days_ago: u64) {
    std::fs::create_dir_all(path).unwrap();
    std::fs::write(path.join("f"), vec![b'x'; bytes]).unwrap();
    let when = SystemTime::now() - Duration::from_secs(days_ago * 24 * 3600);
    std::fs::File::open(path)
        .unwrap()
        .set_modified(when)
        .unwrap();
}

/// git/r/{old,new,tmp-x}, url/u/{old (validators name it), .tmpQ}, tmp/ctx-1.
fn cache() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path();
    entry(&c.join("git/r/old"), 1000, 10);
    entry(&c.join("git/r/new"), 2000, 0);
    entry(&c.join("git/r/tmp-x"), 10, 0);
    entry(&c.join("url/u/d0"), 3000, 9);
    std::fs::write(c.join("url/u/validators"), "digest d0\netag \"1\"\n").unwrap();
    std::fs::write(c.join("url/u/.tmpQ"), "partial").unwrap();
    entry(&c.join("tmp/ctx-1"), 10, 0);
    dir
}

#[test]
fn prune_by_last_use_removes_old_entries_their_validators_and_leftovers() {
    let dir = cache();
    let c = dir.path();
    let report = prune_cache(
        c,
        &CachePruneOptions {
            unused_for: Some(Duration::from_secs(7 * 24 * 3600)),
            keep_bytes: None,
        },
    )
    .unwrap();
    assert_eq!(report.entries, 2);
    assert!(report.freed >= 4000 + 7 + 20, "{report:?}");
    assert!(c.join("git/r/new").is_dir());
    for gone in ["git/r/old", "git/r/tmp-x", "url/u", "tmp/ctx-1"] {
        assert!(!c.join(gone).exists(), "{gone} is still there");
    }
}

#[test]
fn prune_all_keeps_the_most_recent_within_the_budget() {
    let dir = cache();
    let c = dir.path();
    let report = prune_cache(
        c,
        &CachePruneOptions {
            unused_for: None,
            keep_bytes: Some(2500),
        },
    )
    .unwrap();
    assert_eq!(report.entries, 2);
    assert!(c.join("git/r/new").is_dir());
    assert!(!c.join("git/r/old").exists() && !c.join("url/u/d0").exists());

    let report = prune_cache(c, &CachePruneOptions::default()).unwrap();
    assert_eq!(report.entries, 1);
    assert!(!c.join("git/r").exists());
    // An empty or missing cache is fine.
    assert_eq!(
        prune_cache(c, &CachePruneOptions::default())
            .unwrap()
            .entries,
        0
    );
    assert_eq!(
        prune_cache(&c.join("nothing"), &CachePruneOptions::default())
            .unwrap()
            .entries,
        0
    );
}

#[test]
fn prune_waits_while_a_context_from_the_cache_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().to_path_buf();
    let ctx = Opener::new(&c).open("-", &b"FROM scratch\n"[..]).unwrap();
    assert!(ctx.root().starts_with(c.join("tmp")));
    let (tx, rx) = mpsc::channel();
    let pruner = std::thread::spawn(move || {
        let r = prune_cache(&c, &CachePruneOptions::default()).unwrap();
        tx.send(r).unwrap();
    });
    // While the context is open, the prune waits (and its files stay).
    assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
    assert!(ctx.root().is_dir());
    let root = ctx.root().to_path_buf();
    drop(ctx);
    rx.recv_timeout(Duration::from_secs(30)).unwrap();
    pruner.join().unwrap();
    assert!(!root.exists());
}
