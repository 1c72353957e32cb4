//! The `kiln` binary: a thin layer of clap commands over kiln's library
//! crates. This is the only crate that prints, and the only one that uses
//! `anyhow`; libraries return typed errors that are rendered here.
//!
//! One verb per file under `commands/`. A command returns `Result<Exit>`:
//! `Ok` carries the process exit status, `Err` is rendered to stderr and the
//! process exits with [`Exit::FAILURE`] (or the status a [`diagnostic::Fatal`]
//! carries).

// The CLI is where output happens.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cli;
mod commands;
mod diagnostic;
mod dockerfile_input;
mod fetch_progress;
mod humanize;
mod progress;
mod registry_glue;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::Cli;
pub use crate::diagnostic::Exit;

fn main() -> ExitCode {
    // Hidden helper entry points (the runtime re-executes this binary) must be
    // dispatched here, before clap and before any thread is started.
    if let Some(code) = kiln_runtime::dispatch_helper() {
        return ExitCode::from(u8::try_from(code & 0xff).unwrap_or(125));
    }
    let cli = Cli::parse();
    let debug = cli.global.debug;
    match commands::run(cli) {
        Ok(exit) => exit.into(),
        Err(err) => {
            eprint!("{}", diagnostic::render_error(&err, debug));
            diagnostic::exit_code_of(&err).into()
        }
    }
}
