//! `kiln completions SHELL`: print a completion script for SHELL.

use std::io;

use anyhow::Result;
use clap::{Args, CommandFactory};
use clap_complete::Shell;

use crate::Exit;
use crate::cli::Cli;

/// Arguments of `kiln completions`.
#[derive(Debug, Args)]
#[command(after_help = "Example: kiln completions bash > /etc/bash_completion.d/kiln")]
pub struct CompletionsArgs {
    /// The shell to write completions for
    #[arg(value_enum)]
    pub shell: Shell,
}

pub fn run(args: &CompletionsArgs) -> Result<Exit> {
    let mut cmd = Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "kiln", &mut io::stdout());
    Ok(Exit::SUCCESS)
}
