//! `kiln parse [--json] FILE|-`: print a Dockerfile's syntax tree.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::Exit;
use crate::dockerfile_input::DockerfileInput;

/// Arguments of `kiln parse`.
#[derive(Debug, Args)]
#[command(after_help = "\
The syntax tree is BuildKit's: lenient (unknown instructions and flags are
kept; `kiln check` reports them) and lossless with respect to BuildKit's parser.

--json prints {\"escape\", \"directives\", \"warnings\", \"instructions\": [{\"cmd\",
\"flags\", \"args\", \"json\", \"heredocs\", \"next\", \"original\", \"start_line\",
\"end_line\", \"comments\"}]}; see README.md for the schema.

Examples:
  kiln parse Dockerfile
  kiln parse --json - < Dockerfile")]
pub struct ParseArgs {
    /// Print the stable JSON form instead of the s-expression dump
    #[arg(long)]
    pub json: bool,

    /// The Dockerfile to read, `-` for standard input
    #[arg(value_name = "FILE|-")]
    pub file: PathBuf,
}

pub fn run(args: &ParseArgs) -> Result<Exit> {
    let input = DockerfileInput::read(&args.file)?;
    let tree = input.parse()?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", tree.to_json())?;
    } else {
        for node in &tree.instructions {
            writeln!(
                out,
                "{:>4}-{:<4} ({})",
                node.start_line,
                node.end_line,
                kiln_dockerfile::syntax::dump_node(node)
            )?;
        }
        for warning in &tree.warnings {
            writeln!(out, "warning: line {}: {}", warning.line, warning.message)?;
        }
    }
    Ok(Exit::SUCCESS)
}
