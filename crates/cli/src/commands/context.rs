//! `kiln context ls|why`: what a build sees of its context, and why a path
//! is (not) part of it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand, ValueEnum};
use kiln_context::{DockerfileSpec, EntryKind, Matcher, Opener};
use serde_json::json;

use crate::Exit;
use crate::cli::GlobalArgs;
use crate::fetch_progress::FetchView;
use crate::humanize;
use crate::progress::ProgressFlag;

/// Arguments of `kiln context`.
#[derive(Debug, Args)]
pub struct ContextArgs {
    #[command(subcommand)]
    pub command: ContextCommand,
}

/// `kiln context` subcommands.
#[derive(Debug, Subcommand)]
pub enum ContextCommand {
    /// List the files a build would see (after .dockerignore)
    Ls(LsArgs),
    /// Say whether a path is excluded from the context, and by which rule
    Why(WhyArgs),
}

/// Arguments of `kiln context ls`.
#[derive(Debug, Args)]
#[command(after_help = "\
Prints one path per line (directories end in `/`, symlinks show their target),
then a total. The Dockerfile and the ignore file are always readable by the
build, but `COPY .` copies them only when they are listed here.

CONTEXT is a directory, `-` (a tar archive, plain or compressed, or a
Dockerfile on stdin), a git URL (`https://host/o/r.git#REF:SUBDIR`,
`git@host:o/r.git`, `git://…`, `ssh://…`, `github.com/o/r`) or a tarball
URL. Remote contexts are fetched into ROOT/contexts and reused while their
ref or content is unchanged.

Examples:
  kiln context ls
  kiln context ls -f build/app.Dockerfile .
  tar -cz . | kiln context ls -
  kiln context ls 'https://example.com/app.git#v1.2:docker'")]
pub struct LsArgs {
    /// The Dockerfile (selects `<Dockerfile>.dockerignore` when it exists)
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// The context: a directory, `-`, a git URL or a tarball URL
    #[arg(value_name = "CONTEXT|URL|-", default_value = ".")]
    pub context: String,
}

/// Output formats of `kiln context why`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One sentence
    Text,
    /// `{"path", "excluded", "rule": {"file", "line", "pattern"} | null}`
    Json,
}

/// Arguments of `kiln context why`.
#[derive(Debug, Args)]
#[command(after_help = "\
PATH is relative to the context root and need not exist. A path is excluded
when the last rule matching it or one of its parent directories is not a `!`
rule (Docker's rules). The ignore file is `<Dockerfile>.dockerignore` next to
the Dockerfile if it exists, else CONTEXT/.dockerignore; --ignorefile picks
another. An invalid ignore file is an error (exit status 1).

Examples:
  kiln context why node_modules/left-pad/index.js
  kiln context why --format json docs/README.md ./app")]
pub struct WhyArgs {
    /// The Dockerfile (selects `<Dockerfile>.dockerignore` when it exists)
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// Read the rules from this file instead
    #[arg(long, value_name = "FILE")]
    pub ignorefile: Option<PathBuf>,

    /// How to print the answer
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,

    /// The path to explain, relative to the context root
    #[arg(value_name = "PATH", allow_hyphen_values = true)]
    pub path: String,

    /// The context directory
    #[arg(value_name = "CONTEXT", default_value = ".")]
    pub context: PathBuf,
}

pub fn run(global: &GlobalArgs, args: &ContextArgs) -> Result<Exit> {
    match &args.command {
        ContextCommand::Ls(a) => ls(global, a),
        ContextCommand::Why(a) => why(a),
    }
}

fn ls(global: &GlobalArgs, args: &LsArgs) -> Result<Exit> {
    let spec = match &args.file {
        Some(f) if f.as_os_str() == "-" => {
            let mut text = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut text)?;
            DockerfileSpec::Text(text)
        }
        Some(f) => DockerfileSpec::Path(f.clone()),
        None => DockerfileSpec::Default,
    };
    // Fetch progress on stderr (a bar on a terminal): stdout stays the listing.
    let view = FetchView::new(ProgressFlag::Auto.mode(), false);
    let shown = Arc::clone(&view);
    let opener = Opener::new(global.root_dir().join("contexts"))
        .dockerfile(spec)
        .progress(move |p| shown.handle(p));
    let opened = opener.open(&args.context, std::io::stdin().lock());
    view.finish(opened.is_ok());
    let ctx = opened.with_context(|| format!("cannot open build context `{}`", args.context))?;
    let entries = ctx.walk()?;
    let (mut files, mut dirs, mut links, mut bytes) = (0u64, 0u64, 0u64, 0u64);
    let mut out = String::new();
    for e in &entries {
        let path = e.rel.display();
        match e.kind {
            EntryKind::Dir => {
                dirs += 1;
                let _ = writeln!(out, "{path}/");
            }
            EntryKind::Symlink => {
                links += 1;
                let target = e.link_target.as_deref().unwrap_or(Path::new(""));
                let _ = writeln!(out, "{path} -> {}", target.display());
            }
            EntryKind::File => {
                files += 1;
                bytes += e.size;
                let _ = writeln!(out, "{path}");
            }
        }
    }
    let rules = match ctx.ignore_file() {
        Some(f) => format!("{} rules from {}", ctx.ignore().rules().len(), f.display()),
        None => "no ignore file".to_owned(),
    };
    let _ = writeln!(
        out,
        "total: {files} files, {dirs} directories, {links} symlinks, {} ({bytes} bytes); {rules}",
        humanize::size(bytes)
    );
    humanize::write_out(&out);
    Ok(Exit::SUCCESS)
}

fn why(args: &WhyArgs) -> Result<Exit> {
    let (file, shown) = if let Some(f) = &args.ignorefile {
        (Some(f.clone()), f.display().to_string())
    } else {
        let dockerfile = args.file.clone().or_else(|| {
            let upper = args.context.join("Dockerfile");
            let lower = args.context.join("dockerfile");
            Some(if !upper.exists() && lower.exists() {
                lower
            } else {
                upper
            })
        });
        match kiln_context::find_ignore_file(&args.context, dockerfile.as_deref()) {
            Some(f) => {
                let shown = f
                    .strip_prefix(&args.context)
                    .unwrap_or(&f)
                    .display()
                    .to_string();
                (Some(f), shown)
            }
            None => (None, ".dockerignore".to_owned()),
        }
    };
    let matcher = match &file {
        Some(f) => {
            let text = fs_err::read(f)?;
            Matcher::parse(shown.clone(), &text)?
        }
        None => Matcher::empty(),
    };
    let verdict = matcher.verdict(&args.path);
    let mut out = String::new();
    match args.format {
        Format::Json => {
            let rule = verdict.rule.map(|r| {
                json!({"file": shown, "line": r.line(), "pattern": r.pattern(), "parent": verdict.parent})
            });
            let doc = json!({"path": args.path, "excluded": verdict.excluded, "rule": rule});
            let _ = writeln!(out, "{doc}");
        }
        Format::Text => {
            let parent = verdict
                .parent
                .as_ref()
                .map(|p| format!(" (matches its parent directory `{p}`)"))
                .unwrap_or_default();
            let _ = match (verdict.excluded, verdict.rule) {
                (true, Some(r)) => writeln!(
                    out,
                    "excluded by {shown}:{}: {}{parent}",
                    r.line(),
                    r.pattern()
                ),
                (false, Some(r)) => writeln!(
                    out,
                    "included: re-included by {shown}:{}: {}{parent}",
                    r.line(),
                    r.pattern()
                ),
                (_, None) if file.is_none() => {
                    writeln!(out, "included: no ignore file")
                }
                (_, None) => writeln!(out, "included: no rule matches"),
            };
        }
    }
    humanize::write_out(&out);
    Ok(Exit::SUCCESS)
}
