//! Dockerfile parsing throughput (MB/s of Dockerfile text).
//!
//! - `corpus`: every Dockerfile of kiln's own fixtures and examples
//!   (`testdata/dockerfile/**/Dockerfile`, `examples/*/Dockerfile`), and,
//!   when the shared conformance data is beside the checkout
//!   (`../shared/conformance`, or `$KILN_CONFORMANCE`), its real-world
//!   corpus of 259 Dockerfiles, read from there at run time.
//! - `generated-10k`: a generated 10,000-instruction Dockerfile
//!   (`kiln_bench::dockerfile::generate`).
//! - `generated-1MB`: a generated Dockerfile of 1 MB; the target is well
//!   under 100 ms for the syntax tree and the typed IR together.
//!
//! Each group times the syntax tree (`syntax::parse`, what `kiln parse`
//! does) and the typed IR on top (`Dockerfile::parse`, what `kiln check`
//! and `kiln build` do). Run: `cargo bench -p kiln-bench --bench parse`.
//!
//! Parsing is single-threaded, so on a busy machine the wall clock says more
//! about the neighbours than about kiln: with `KILN_BENCH_CPU=1` the same
//! benches measure the thread's CPU time instead (`CLOCK_THREAD_CPUTIME_ID`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kiln_dockerfile::{Dockerfile, syntax};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn dockerfiles_under(
    dir: &Path,
    out: &mut Vec<(PathBuf, Vec<u8>)>,
    accept: &dyn Fn(&Path) -> bool,
) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            dockerfiles_under(&p, out, accept);
        } else if accept(&p) {
            let bytes = std::fs::read(&p).expect("read corpus file");
            out.push((p, bytes));
        }
    }
}

/// The corpus, keeping only files the parser accepts (negative fixtures
/// are in the tree too; they are not what a throughput number is about).
fn corpus(dirs: &[PathBuf], accept: &dyn Fn(&Path) -> bool) -> Vec<Vec<u8>> {
    let mut files = Vec::new();
    for d in dirs {
        dockerfiles_under(d, &mut files, accept);
    }
    files
        .into_iter()
        .filter(|(_, b)| syntax::parse(b).is_ok())
        .map(|(_, b)| b)
        .collect()
}

fn bench_corpus<M: Measurement>(c: &mut Criterion<M>, name: &str, files: &[Vec<u8>]) {
    let bytes: usize = files.iter().map(Vec::len).sum();
    let mut g = c.benchmark_group(format!("parse/{name}"));
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function(
        BenchmarkId::new("syntax", format!("{} files", files.len())),
        |b| {
            b.iter(|| {
                for f in files {
                    std::hint::black_box(syntax::parse(f).ok());
                }
            });
        },
    );
    g.bench_function(
        BenchmarkId::new("typed", format!("{} files", files.len())),
        |b| {
            b.iter(|| {
                for f in files {
                    std::hint::black_box(Dockerfile::parse(f).ok());
                }
            });
        },
    );
    g.finish();
}

fn bench_one<M: Measurement>(c: &mut Criterion<M>, name: &str, text: &str) {
    // The generated text must be a valid Dockerfile for both layers, or the
    // numbers would time an early error.
    let tree = syntax::parse(text.as_bytes()).expect("generated Dockerfile parses");
    let count = tree.instructions.len();
    Dockerfile::from_tree(tree).expect("generated Dockerfile is valid");
    let mut g = c.benchmark_group(format!("parse/{name}"));
    g.throughput(Throughput::Bytes(text.len() as u64));
    let label = format!("{count} instructions, {} bytes", text.len());
    g.bench_function(BenchmarkId::new("syntax", &label), |b| {
        b.iter(|| std::hint::black_box(syntax::parse(text.as_bytes()).ok()));
    });
    g.bench_function(BenchmarkId::new("typed", &label), |b| {
        b.iter(|| std::hint::black_box(Dockerfile::parse(text.as_bytes()).ok()));
    });
    g.finish();
}

fn parse<M: Measurement>(c: &mut Criterion<M>) {
    let root = repo();
    let named_dockerfile = |p: &Path| p.file_name().is_some_and(|n| n == "Dockerfile");
    let own = corpus(
        &[root.join("testdata/dockerfile"), root.join("examples")],
        &named_dockerfile,
    );
    assert!(
        !own.is_empty(),
        "no Dockerfiles under testdata/ and examples/"
    );
    bench_corpus(c, "fixtures", &own);

    let shared = std::env::var_os("KILN_CONFORMANCE")
        .map_or_else(|| root.join("../shared/conformance"), PathBuf::from)
        .join("realworld");
    if shared.is_dir() {
        let realworld = corpus(&[shared], &|p: &Path| {
            p.to_string_lossy().ends_with(".Dockerfile")
        });
        bench_corpus(c, "realworld", &realworld);
    }

    bench_one(
        c,
        "generated-10k",
        &kiln_bench::dockerfile::generate(10_000),
    );
    bench_one(
        c,
        "generated-1MB",
        &kiln_bench::dockerfile::generate_bytes(1 << 20),
    );
}

/// CPU time of the calling thread: what a parse costs, whatever else the
/// machine is doing.
struct ThreadCpuTime;

fn thread_cpu_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant
    // every Linux kernel since 2.6.12 supports.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

impl Measurement for ThreadCpuTime {
    type Intermediate = Duration;
    type Value = Duration;
    fn start(&self) -> Duration {
        thread_cpu_now()
    }
    fn end(&self, start: Duration) -> Duration {
        thread_cpu_now().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_secs_f64() * 1e9
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        // Same unit (nanoseconds) as the wall clock, so the same formatter.
        WallTime.formatter()
    }
}

fn cpu_mode() -> bool {
    std::env::var_os("KILN_BENCH_CPU").is_some_and(|v| v != "0")
}

fn parse_wall(c: &mut Criterion) {
    if !cpu_mode() {
        parse(c);
    }
}

fn parse_cpu(c: &mut Criterion<ThreadCpuTime>) {
    if cpu_mode() {
        parse(c);
    }
}

fn config<M: Measurement>(c: Criterion<M>) -> Criterion<M> {
    c.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = wall;
    config = config(Criterion::default());
    targets = parse_wall
}
criterion_group! {
    name = cpu;
    config = config(Criterion::default().with_measurement(ThreadCpuTime));
    targets = parse_cpu
}
criterion_main!(wall, cpu);
