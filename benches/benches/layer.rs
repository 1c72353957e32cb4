//! Layer tars: create (walk + tar + sha256), apply (untar onto an empty
//! directory) and compress (gzip / zstd, multi-threaded, hashing the
//! output) of two generated trees, next to the same work done by the
//! system's `tar`, `gzip` and `zstd` on the same data.
//!
//! Trees (`kiln_bench::Tree`, incompressible content):
//! - `1GB`: 1,024 files of 1 MiB in 32 directories;
//! - `50k-files`: 50,000 files of 2 KiB in 500 directories.
//!
//! Everything lives on tmpfs (`/dev/shm`, which must be tmpfs; set
//! `KILN_BENCH_DIR` to use another directory, whose file system type is then
//! printed) so the numbers are about kiln, not the disk. Set
//! `KILN_BENCH_SCALE=0.1` to shrink both trees (e.g. for a smoke run).
//!
//! Baselines, each a shell pipeline on the same tree or layer file:
//! `tar -c | sha256sum` (create), `tar -x` (apply), `gzip -c`, `zstd -T0 -3`
//! (compress a layer), and `tar -c | gzip`, `tar -c | zstd -T0` (what
//! "compress a tree" costs with the usual tools).
//!
//! Run: `cargo bench -p kiln-bench --bench layer`.

#![allow(clippy::print_stderr)] // a bench reports to the person running it

use std::fs::File;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{
    BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main, measurement::WallTime,
};
use kiln_bench::Tree;
use kiln_oci::layer::{ApplyOptions, CreateOptions, WhiteoutMode, apply_layer, create_layer};
use kiln_oci::{Compression, DigestWriter};

/// The directory the trees go in: tmpfs, or `$KILN_BENCH_DIR`.
fn bench_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KILN_BENCH_DIR") {
        let dir = PathBuf::from(dir);
        eprintln!("layer bench: data in {} ({})", dir.display(), fs_type(&dir));
        return dir;
    }
    let shm = PathBuf::from("/dev/shm");
    let kind = fs_type(&shm);
    assert_eq!(
        kind, "tmpfs",
        "/dev/shm is {kind:?}, not tmpfs: set KILN_BENCH_DIR to time on another file system"
    );
    shm
}

/// The type of the file system `dir` is on, from /proc/self/mounts (the
/// longest mount point that is a prefix of it).
fn fs_type(dir: &Path) -> String {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, point, kind) = (f.next()?, f.next()?, f.next()?);
            dir.starts_with(point)
                .then(|| (point.len(), kind.to_owned()))
        })
        .max()
        .map_or_else(|| "unknown".to_owned(), |(_, k)| k)
}

fn scale() -> f64 {
    std::env::var("KILN_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0)
}

fn scaled(n: usize) -> usize {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let v = (n as f64 * scale()).round() as usize;
    v.max(1)
}

/// Runs a shell pipeline; panics when it fails (a missing tool must not
/// look like a fast one).
fn sh(script: &str) {
    let status = Command::new("bash")
        .arg("-c")
        .arg(format!("set -eo pipefail; {script}"))
        .status()
        .expect("run sh");
    assert!(status.success(), "baseline failed: {script}");
}

fn tool_present(name: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name} >/dev/null"))
        .status()
        .is_ok_and(|s| s.success())
}

fn rm_rf(p: &Path) {
    if p.exists() {
        std::fs::remove_dir_all(p).expect("clean up");
    }
}

/// Times `f` once per iteration, with `fresh` (untimed) run before each.
fn timed(iters: u64, mut fresh: impl FnMut(), mut f: impl FnMut()) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        fresh();
        let start = Instant::now();
        f();
        total += start.elapsed();
    }
    total
}

fn layer_case(c: &mut Criterion, name: &str, tree: Tree) {
    let base = tempfile::Builder::new()
        .prefix("kiln-bench-layer-")
        .tempdir_in(bench_dir())
        .expect("bench dir");
    let src = base.path().join("tree");
    let bytes = tree.write(&src).expect("write tree");
    let layer = base.path().join("layer.tar");
    let (file, _) = create_layer(
        &src,
        File::create(&layer).expect("layer file"),
        &CreateOptions::default(),
    )
    .expect("create layer");
    drop(file);
    let tar_size = std::fs::metadata(&layer).expect("layer").len();
    let target = base.path().join("target");
    let (src_s, layer_s, target_s) = (
        src.display().to_string(),
        layer.display().to_string(),
        target.display().to_string(),
    );
    let has_zstd = tool_present("zstd");
    assert!(tool_present("gzip") && tool_present("tar") && tool_present("sha256sum"));

    let setup = |g: &mut BenchmarkGroup<'_, WallTime>| {
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(5));
    };

    // create: walk the tree, write the tar, hash it (the diff id).
    let mut g = c.benchmark_group(format!("layer/{name}/create"));
    setup(&mut g);
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function("kiln", |b| {
        b.iter(|| {
            let (w, _) = create_layer(
                &src,
                DigestWriter::new(io::sink()),
                &CreateOptions::default(),
            )
            .expect("create");
            std::hint::black_box(w.finish().0)
        });
    });
    g.bench_function("tar | sha256sum", |b| {
        b.iter(|| sh(&format!("tar -C {src_s} -cf - . | sha256sum >/dev/null")));
    });
    g.finish();

    // apply: untar onto an empty directory (deleting it is not timed).
    let mut g = c.benchmark_group(format!("layer/{name}/apply"));
    setup(&mut g);
    g.throughput(Throughput::Bytes(bytes));
    let opts = ApplyOptions {
        whiteouts: WhiteoutMode::Delete,
        preserve_owner: false,
    };
    let fresh = || {
        rm_rf(&target);
        std::fs::create_dir(&target).expect("target");
    };
    g.bench_function("kiln", |b| {
        b.iter_custom(|iters| {
            timed(iters, fresh, || {
                let r = BufReader::with_capacity(1 << 20, File::open(&layer).expect("layer"));
                apply_layer(r, &target, &opts).expect("apply");
            })
        });
    });
    g.bench_function("tar -x", |b| {
        b.iter_custom(|iters| {
            timed(iters, fresh, || {
                sh(&format!("tar -C {target_s} --no-same-owner -xf {layer_s}"));
            })
        });
    });
    g.finish();
    rm_rf(&target);

    // compress: the stored (uncompressed) layer to gzip / zstd, hashing the
    // compressed bytes in the same pass, as `save`/`push` do.
    let mut g = c.benchmark_group(format!("layer/{name}/compress"));
    setup(&mut g);
    g.throughput(Throughput::Bytes(tar_size));
    for (label, kind) in [
        ("kiln gzip", Compression::Gzip),
        ("kiln zstd", Compression::Zstd),
    ] {
        g.bench_function(label, |b| {
            b.iter(|| {
                let input = File::open(&layer).expect("layer");
                let w = kiln_oci::compress::compress(kind, input, DigestWriter::new(io::sink()))
                    .expect("compress");
                std::hint::black_box(w.finish().0)
            });
        });
    }
    g.bench_function("gzip", |b| {
        b.iter(|| sh(&format!("gzip -c {layer_s} >/dev/null")));
    });
    g.bench_function("tar | gzip", |b| {
        b.iter(|| sh(&format!("tar -C {src_s} -cf - . | gzip -c >/dev/null")));
    });
    if has_zstd {
        g.bench_function("zstd -T0", |b| {
            b.iter(|| sh(&format!("zstd -q -T0 -3 -c {layer_s} >/dev/null")));
        });
        g.bench_function("tar | zstd -T0", |b| {
            b.iter(|| {
                sh(&format!(
                    "tar -C {src_s} -cf - . | zstd -q -T0 -3 -c >/dev/null"
                ));
            });
        });
    } else {
        eprintln!("layer bench: zstd is not installed; its baselines are left out");
    }
    g.finish();
}

fn layers(c: &mut Criterion) {
    layer_case(
        c,
        "1GB",
        Tree {
            files: scaled(1024),
            dirs: 32,
            file_size: 1 << 20,
        },
    );
    layer_case(
        c,
        "50k-files",
        Tree {
            files: scaled(50_000),
            dirs: scaled(500),
            file_size: 2048,
        },
    );
}

criterion_group!(benches, layers);
criterion_main!(benches);
