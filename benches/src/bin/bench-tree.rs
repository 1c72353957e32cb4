//! Writes a generated workload tree for `benches/build.sh`:
//! `bench-tree DIR FILES DIRS FILE_SIZE` (see [`kiln_bench::Tree`]).
#![allow(clippy::print_stderr)] // a command-line tool

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let nums: Option<Vec<usize>> = args.iter().skip(1).map(|a| a.parse().ok()).collect();
    let (Some(dir), Some([files, dirs, file_size])) = (args.first(), nums.as_deref()) else {
        eprintln!("usage: bench-tree DIR FILES DIRS FILE_SIZE");
        return ExitCode::from(2);
    };
    let tree = kiln_bench::Tree {
        files: *files,
        dirs: *dirs,
        file_size: *file_size,
    };
    match tree.write(Path::new(dir)) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-tree: {e}");
            ExitCode::FAILURE
        }
    }
}
