//! The stat cache: a rehash reads only changed files; the file persists
//! across processes; damage is a clear error.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kiln_context::{CacheStats, Context, ContextError, DockerfileSpec, SourceOptions, StatCache};

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn hash_with(root: &Path, cache_file: &Path) -> (String, CacheStats) {
    let mut ctx = Context::from_dir(root, DockerfileSpec::Default).unwrap();
    // The tree was just written: count its files as settled (a zero racy
    // window) so that the saved cache holds them.
    let cache = Arc::new(
        StatCache::open(cache_file)
            .unwrap()
            .racy_window(Duration::ZERO),
    );
    ctx.set_stat_cache(cache.clone());
    let sum = ctx
        .checksum(&["."], &SourceOptions::default(), false)
        .unwrap()
        .to_string();
    cache.save().unwrap();
    (sum, cache.stats())
}

#[test]
fn rehash_reads_only_changed_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ctx");
    write(&root, "Dockerfile", "FROM scratch\n");
    for i in 0..50 {
        write(&root, &format!("d{}/f{i}", i % 5), &format!("file {i}"));
    }
    let cache_file = dir.path().join("store/statcache");
    let (cold, stats) = hash_with(&root, &cache_file);
    assert_eq!(
        stats,
        CacheStats {
            hits: 0,
            misses: 51
        }
    );
    let (warm, stats) = hash_with(&root, &cache_file);
    assert_eq!(warm, cold);
    assert_eq!(
        stats,
        CacheStats {
            hits: 51,
            misses: 0
        }
    );
    // Change one file (same size: the mtime tells; set it explicitly, as
    // the change may fall in the same clock tick as the first write).
    write(&root, "d3/f3", "FILE 3");
    std::fs::File::options()
        .write(true)
        .open(root.join("d3/f3"))
        .unwrap()
        .set_modified(std::time::UNIX_EPOCH + Duration::from_secs(1_000_000))
        .unwrap();
    let (changed, stats) = hash_with(&root, &cache_file);
    assert_ne!(changed, cold);
    assert_eq!(
        stats,
        CacheStats {
            hits: 50,
            misses: 1
        }
    );
    // Same content under a new inode (an editor's save): rehashed, same sum.
    let tmp = root.join("d3/f3.tmp");
    std::fs::write(&tmp, "FILE 3").unwrap();
    std::fs::rename(&tmp, root.join("d3/f3")).unwrap();
    let (same, stats) = hash_with(&root, &cache_file);
    assert_eq!(same, changed);
    assert_eq!(stats.misses, 1);
}

#[test]
fn fresh_files_are_not_saved_with_the_default_window() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ctx");
    write(&root, "Dockerfile", "FROM scratch\n");
    let cache_file = dir.path().join("statcache");
    let mut ctx = Context::from_dir(&root, DockerfileSpec::Default).unwrap();
    let cache = Arc::new(StatCache::open(&cache_file).unwrap());
    ctx.set_stat_cache(cache.clone());
    ctx.checksum(&["."], &SourceOptions::default(), false)
        .unwrap();
    // In memory it is known; the file does not keep it (it may still change
    // within the file system's timestamp granularity).
    ctx.checksum(&["."], &SourceOptions::default(), false)
        .unwrap();
    assert_eq!(cache.stats(), CacheStats { hits: 1, misses: 1 });
    cache.save().unwrap();
    assert!(StatCache::open(&cache_file).unwrap().is_empty());
}

#[test]
fn a_damaged_cache_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("statcache");
    std::fs::write(&file, b"garbage").unwrap();
    let err = StatCache::open(&file).unwrap_err();
    assert!(matches!(err, ContextError::StatCache { .. }), "{err}");
    assert!(err.to_string().contains("statcache"), "{err}");
    let mut truncated = b"kiln-statcache2\n".to_vec();
    truncated.extend_from_slice(&100u64.to_le_bytes());
    truncated.extend_from_slice(b"short");
    std::fs::write(&file, truncated).unwrap();
    let err = StatCache::open(&file).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn an_older_kilns_cache_file_is_an_empty_cache_and_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ctx");
    write(&root, "Dockerfile", "FROM scratch\n");
    let cache_file = dir.path().join("statcache");
    // The first format: a path-keyed list of records.
    let mut v1 = b"kiln-statcache1\n".to_vec();
    v1.extend_from_slice(&3u64.to_le_bytes());
    v1.extend_from_slice(b"/x/");
    v1.extend_from_slice(&[0; 88]);
    std::fs::write(&cache_file, v1).unwrap();
    assert!(StatCache::open(&cache_file).unwrap().is_empty());
    let (cold, stats) = hash_with(&root, &cache_file);
    assert_eq!(stats.misses, 1);
    let (warm, stats) = hash_with(&root, &cache_file);
    assert_eq!((warm, stats.hits, stats.misses), (cold, 1, 0));
}

#[test]
fn a_warm_run_reads_no_file_and_leaves_the_cache_file_alone() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ctx");
    write(&root, "Dockerfile", "FROM scratch\n");
    for i in 0..20 {
        write(&root, &format!("d/f{i}"), &format!("file {i}"));
    }
    let cache_file = dir.path().join("statcache");
    let (cold, _) = hash_with(&root, &cache_file);
    let before = std::fs::metadata(&cache_file).unwrap();
    let (warm, stats) = hash_with(&root, &cache_file);
    assert_eq!(warm, cold);
    assert_eq!(stats.misses, 0, "a warm run read files");
    // Nothing new was learnt: the file is not rewritten (same inode: a
    // save renames a new file into place).
    let after = std::fs::metadata(&cache_file).unwrap();
    assert_eq!(
        (after.ino(), after.mtime_nsec()),
        (before.ino(), before.mtime_nsec())
    );
}

#[test]
fn checksum_and_listing_come_from_one_pass_over_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ctx");
    write(&root, "Dockerfile", "FROM scratch\n");
    for i in 0..10 {
        write(&root, &format!("src/f{i}"), &format!("file {i}"));
    }
    let mut ctx = Context::from_dir(&root, DockerfileSpec::Default).unwrap();
    let cache = Arc::new(StatCache::open(dir.path().join("statcache")).unwrap());
    ctx.set_stat_cache(cache.clone());
    let selection = ctx
        .select(&["src"], &SourceOptions::default(), false)
        .unwrap();
    let digested = ctx.digest(&selection).unwrap();
    let sums = digested.file_sums();
    let checksum = digested.checksum();
    // Each file read once, whatever is asked of the result.
    assert_eq!(
        cache.stats(),
        CacheStats {
            hits: 0,
            misses: 10
        }
    );
    assert_eq!(sums.len(), 11, "{sums:?}"); // src and its 10 files
    assert_eq!(checksum, ctx.checksum_of(&selection).unwrap());
    assert_eq!(sums, ctx.file_sums(&selection).unwrap());
}

#[test]
fn each_context_root_has_its_own_cache_file() {
    let dir = Path::new("/store/cache/stat");
    let a = StatCache::file_for(dir, Path::new("/src/a"));
    assert_eq!(a, StatCache::file_for(dir, Path::new("/src/a")));
    assert_ne!(a, StatCache::file_for(dir, Path::new("/src/b")));
    assert_eq!(a.parent(), Some(dir));
}
