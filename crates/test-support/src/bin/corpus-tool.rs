//! The Dockerfile corpus's helper for `testdata/build/regen-expected.sh`:
//!
//! - `corpus-tool base-tar OUT` — write the busybox base layer tar (what
//!   both `docker import` and `kiln import` get);
//! - `corpus-tool cases` — list the case names, one per line;
//! - `corpus-tool flags CASE` — a case's extra build flags, one per line;
//! - `corpus-tool prepare CASE OUT` — make a case's build context in OUT;
//! - `corpus-tool snapshot ARCHIVE [REFERENCE]` — print the normalized
//!   snapshot of a docker archive (`docker save`), relative to the base;
//! - `corpus-tool compare EXPECTED ARCHIVE` — exit 1 listing differences.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line tool

use std::path::Path;
use std::process::ExitCode;

use kiln_test_support::corpus::{cases, corpus_dir, prepare_context};
use kiln_test_support::snapshot::{Snapshot, base_tree, read_docker_archive, snapshot};
use kiln_test_support::{busybox_rootfs_tar, write_busybox_rootfs_tar};

fn usage() -> ExitCode {
    eprintln!(
        "usage: corpus-tool base-tar OUT | cases | flags CASE | prepare CASE OUT | \
         snapshot ARCHIVE [REFERENCE] | compare EXPECTED ARCHIVE"
    );
    ExitCode::from(2)
}

fn find(name: &str) -> kiln_test_support::corpus::Case {
    cases(&corpus_dir())
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no corpus case `{name}` in {}", corpus_dir().display()))
}

fn take(archive: &str) -> Snapshot {
    let image = read_docker_archive(Path::new(archive)).unwrap_or_else(|e| panic!("{e}"));
    let base = base_tree(&busybox_rootfs_tar()).unwrap_or_else(|e| panic!("base: {e}"));
    snapshot(&image, &base)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["base-tar", out] => write_busybox_rootfs_tar(Path::new(out)),
        ["cases"] => {
            for c in cases(&corpus_dir()) {
                println!("{}", c.name);
            }
        }
        ["flags", name] => {
            for f in find(name).flags {
                println!("{f}");
            }
        }
        ["prepare", name, out] => prepare_context(&find(name), Path::new(out)),
        ["snapshot", archive, rest @ ..] if rest.len() <= 1 => {
            let mut s = take(archive);
            s.reference = rest.first().map(|r| (*r).to_owned()).unwrap_or_default();
            print!("{}", s.to_json());
        }
        ["compare", expected, archive] => {
            let text =
                std::fs::read_to_string(expected).unwrap_or_else(|e| panic!("{expected}: {e}"));
            let expected = Snapshot::from_json(&text).unwrap_or_else(|e| panic!("{e}"));
            let diff = expected.diff(&take(archive));
            if !diff.is_empty() {
                for d in diff {
                    println!("{d}");
                }
                return ExitCode::from(1);
            }
        }
        _ => return usage(),
    }
    ExitCode::SUCCESS
}
