//! One file per verb; each is a thin layer over library calls.

pub mod completions;
pub mod run;

use anyhow::Result;

use crate::Exit;
use crate::cli::{Cli, Command};

/// Dispatch a parsed command line.
pub fn run(cli: Cli) -> Result<Exit> {
    let global = cli.global;
    match cli.command {
        Command::Completions(args) => completions::run(&args),
        Command::Run(args) => run::run(&global, &args),
    }
}
