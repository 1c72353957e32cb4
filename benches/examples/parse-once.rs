//! Parse a generated Dockerfile a few times, for profilers that need a plain
//! process (`valgrind --tool=callgrind`, `perf record`, `perf stat`).
//!
//! `cargo build --release -p kiln-bench --example parse-once`, then
//! `parse-once LAYER INPUT [REPEAT]`: LAYER is `syntax` (`syntax::parse`)
//! `typed` (`Dockerfile::parse`) or `check` (that and `check::check`,
//! what `kiln check` does), INPUT is `1mb` (`generate_bytes(1 MiB)`),
//! `10k` (`generate(10_000)`) or a file path. The input is generated before
//! the first parse; the process prints the median thread CPU time of the
//! parses. Count instructions of the parses alone with
//! `valgrind --tool=callgrind --toggle-collect='parse_once::parse_typed'`.

#![allow(clippy::print_stdout)] // a command-line tool: its result is its output

use std::time::Instant;

use kiln_dockerfile::{Dockerfile, syntax};

fn thread_cpu() -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    std::time::Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// One syntax parse, dropping included (callgrind:
/// `--toggle-collect='parse_once::parse_syntax'`).
#[inline(never)]
fn parse_syntax(input: &[u8]) {
    std::hint::black_box(syntax::parse(input).expect("input parses"));
}

/// One typed parse, dropping included (callgrind:
/// `--toggle-collect='parse_once::parse_typed'`).
#[inline(never)]
fn parse_typed(input: &[u8]) {
    std::hint::black_box(Dockerfile::parse(input).expect("input is valid"));
}

/// A typed parse and every build check (`kiln check`), dropping included.
#[inline(never)]
fn parse_check(input: &[u8]) {
    let df = Dockerfile::parse(input).expect("input is valid");
    std::hint::black_box(kiln_dockerfile::check::check(&df).expect("checks run"));
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: parse-once syntax|typed|check 1mb|10k|FILE [REPEAT]";
    let layer = args.first().expect(usage).clone();
    let input = match args.get(1).map(String::as_str) {
        Some("1mb") => kiln_bench::dockerfile::generate_bytes(1 << 20).into_bytes(),
        Some("10k") => kiln_bench::dockerfile::generate(10_000).into_bytes(),
        Some(path) => std::fs::read(path).expect("read the input file"),
        None => panic!("{usage}"),
    };
    let repeat: usize = args.get(2).map_or(1, |r| r.parse().expect(usage));
    let mut times = Vec::with_capacity(repeat);
    for _ in 0..repeat {
        let (cpu, wall) = (thread_cpu(), Instant::now());
        match layer.as_str() {
            "syntax" => parse_syntax(&input),
            "typed" => parse_typed(&input),
            "check" => parse_check(&input),
            _ => panic!("{usage}"),
        }
        times.push((thread_cpu().saturating_sub(cpu), wall.elapsed()));
    }
    times.sort();
    let (cpu, wall) = times[times.len() / 2];
    println!(
        "{layer} {} bytes x{repeat}: median thread CPU {:.2} ms (wall {:.2} ms)",
        input.len(),
        cpu.as_secs_f64() * 1e3,
        wall.as_secs_f64() * 1e3
    );
}
