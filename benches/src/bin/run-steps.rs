//! Times kiln's RUN-step API: N sequential steps of `true`, each in a fresh
//! overlay over LOWER (a new upper dir, the runtime's mounts, a helper
//! process, namespaces), the way the solver runs `RUN true` N times.
//!
//! Usage: `run-steps STATE-DIR LOWER-DIR [N]` (as root). Prints one line:
//! `run-step: N steps, T ms total, M ms/step`. `benches/run.sh` runs it
//! beside `kiln run`, runc and crun.
//!
//! The binary is its own runtime helper: like `kiln`, it dispatches
//! `__runtime` before anything else.

// A benchmark's output is its result.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use kiln_runtime::{Runtime, StepConfig};

fn main() -> ExitCode {
    if let Some(code) = kiln_runtime::dispatch_helper() {
        return ExitCode::from(u8::try_from(code & 0xff).unwrap_or(125));
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(state), Some(lower)) = (args.first(), args.get(1)) else {
        eprintln!("usage: run-steps STATE-DIR LOWER-DIR [N]");
        return ExitCode::from(2);
    };
    let n: u32 = match args.get(2).map(|s| s.parse()) {
        None => 50,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("run-steps: N must be a positive number");
            return ExitCode::from(2);
        }
    };
    match run(&PathBuf::from(state), &PathBuf::from(lower), n) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("run-steps: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(state: &std::path::Path, lower: &std::path::Path, n: u32) -> Result<(), String> {
    let helper = std::env::current_exe().map_err(|e| format!("locating myself: {e}"))?;
    let runtime = Runtime::open(state, &helper).map_err(|e| e.to_string())?;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let lowers = [lower.to_owned()];
    let config = StepConfig {
        argv: vec!["true".into()],
        ..StepConfig::default()
    };
    let step = || {
        tokio.block_on(async {
            let (mut out, mut err) = (tokio::io::sink(), tokio::io::sink());
            let result = runtime
                .run_step(&lowers, &config, &mut out, &mut err)
                .await
                .map_err(|e| e.to_string())?;
            if result.exit_code() != 0 {
                return Err(format!("`true` exited with {}", result.exit_code()));
            }
            // Dropping the result removes the run directory: part of a step.
            drop(result);
            Ok(())
        })
    };
    // Warm the page cache and the helper binary.
    for _ in 0..3 {
        step()?;
    }
    let start = Instant::now();
    for _ in 0..n {
        step()?;
    }
    // The runtime removes finished steps' directories in the background;
    // dropping it waits for the last of them, which counts too.
    drop(runtime);
    let total = start.elapsed().as_secs_f64() * 1000.0;
    println!(
        "run-step: {n} steps, {total:.0} ms total, {:.2} ms/step",
        total / f64::from(n)
    );
    Ok(())
}
