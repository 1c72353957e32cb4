//! Hashing a build context for the cache: `Context::checksum` of `COPY .`
//! over a generated 30,000-file tree (300 directories, 2 KiB files, 60 MiB)
//! on tmpfs (`/dev/shm`, else `$TMPDIR`), with
//!
//! - `cold`: no stat cache, every file read and hashed (rayon);
//! - `warm`: a stat cache from an earlier run, loaded from its file as a new
//!   `kiln build` process would, so no file is read;
//! - `baseline_find_sha256sum`: `find DIR -type f -print0 | xargs -0 -P2 sha256sum`.
//!
//! `cargo bench -p kiln-bench --bench context_hash`

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use kiln_context::{Context, DockerfileSpec, SourceOptions, StatCache};

fn tmpfs_dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(tmpfs_dir()).expect("temp dir");
    let root = dir.path().join("ctx");
    kiln_bench::Tree {
        files: 30_000,
        dirs: 300,
        file_size: 2048,
    }
    .write(&root)
    .expect("writing the tree");
    std::fs::write(root.join("Dockerfile"), "FROM scratch\nCOPY . /\n").expect("Dockerfile");
    // Files changed in the last 2 s are not saved in the stat cache (racy
    // timestamps); let the tree age so the warm run is what a rebuild sees.
    std::thread::sleep(Duration::from_millis(2100));
    let opts = SourceOptions::default();
    let cache_file = dir.path().join("statcache");

    let mut group = c.benchmark_group("context_hash_30k");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));

    group.bench_function("cold", |b| {
        let ctx = Context::from_dir(&root, DockerfileSpec::Default).expect("context");
        b.iter(|| ctx.checksum(&["."], &opts, false).expect("checksum"));
    });

    {
        let mut ctx = Context::from_dir(&root, DockerfileSpec::Default).expect("context");
        let cache = Arc::new(StatCache::open(&cache_file).expect("cache"));
        ctx.set_stat_cache(cache.clone());
        ctx.checksum(&["."], &opts, false).expect("checksum");
        cache.save().expect("save");
        assert!(cache.len() >= 30_000, "cache holds {}", cache.len());
    }
    group.bench_function("warm", |b| {
        b.iter(|| {
            let mut ctx = Context::from_dir(&root, DockerfileSpec::Default).expect("context");
            let cache = Arc::new(StatCache::open(&cache_file).expect("cache"));
            ctx.set_stat_cache(cache.clone());
            let sum = ctx.checksum(&["."], &opts, false).expect("checksum");
            assert_eq!(cache.stats().misses, 0);
            sum
        });
    });

    group.bench_function("baseline_find_sha256sum", |b| {
        b.iter(|| {
            let status = Command::new("sh")
                .arg("-c")
                .arg("find \"$1\" -type f -print0 | xargs -0 -P2 -n 2000 sha256sum > /dev/null")
                .arg("sh")
                .arg(&root)
                .status()
                .expect("sh");
            assert!(status.success());
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
