//! One file per verb; each is a thin layer over library calls.

pub mod build;
pub mod check;
pub mod completions;
pub mod context;
pub mod history;
pub mod images;
pub mod import;
pub mod inspect;
pub mod load;
pub mod login;
pub mod logout;
pub mod parse;
pub mod prune;
pub mod pull;
pub mod push;
pub mod rmi;
pub mod run;
pub mod save;
pub mod tag;

use anyhow::Result;

use crate::Exit;
use crate::cli::{Cli, Command};

/// Dispatch a parsed command line.
pub fn run(cli: Cli) -> Result<Exit> {
    let global = cli.global;
    match cli.command {
        Command::Completions(args) => completions::run(&args),
        Command::Build(args) => build::run(&global, &args),
        Command::Run(args) => run::run(&global, &args),
        Command::Import(args) => import::run(&global, &args),
        Command::Images(args) => images::run(&global, &args),
        Command::Tag(args) => tag::run(&global, &args),
        Command::Rmi(args) => rmi::run(&global, &args),
        Command::Inspect(args) => inspect::run(&global, &args),
        Command::History(args) => history::run(&global, &args),
        Command::Save(args) => save::run(&global, &args),
        Command::Load(args) => load::run(&global, &args),
        Command::Prune(args) => prune::run(&global, &args),
        Command::Pull(args) => pull::run(&global, &args),
        Command::Push(args) => push::run(&global, &args),
        Command::Login(args) => login::run(&global, &args),
        Command::Logout(args) => logout::run(&args),
        Command::Parse(args) => parse::run(&args),
        Command::Check(args) => check::run(&args),
        Command::Context(args) => context::run(&global, &args),
    }
}
