//! `kiln check [-f FILE|-] [--format text|json]`: BuildKit's build checks
//! that need no build.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};
use kiln_dockerfile::Dockerfile;
use kiln_dockerfile::check::{Finding, Severity};
use serde_json::json;

use crate::Exit;
use crate::diagnostic::SourceError;
use crate::dockerfile_input::DockerfileInput;

/// Output formats of `kiln check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One located finding per block, for people
    Text,
    /// `{"findings": [...], "errors": N, "warnings": N}`
    Json,
}

/// Arguments of `kiln check`.
#[derive(Debug, Args)]
#[command(after_help = "\
Rules: StageNameCasing, FromAsCasing, NoEmptyContinuation,
ConsistentInstructionCasing, DuplicateStageName, ReservedStageName,
JSONArgsRecommended, MaintainerDeprecated, UndefinedArgInFrom,
WorkdirRelativePath, UndefinedVar, MultipleInstructionsDisallowed,
LegacyKeyValueFormat, RedundantTargetPlatform, SecretsUsedInArgOrEnv,
InvalidDefaultArgInFrom, FromPlatformFlagConstDisallowed, ExposeProtoCasing,
ExposeInvalidFormat.

A `# check=skip=Rule1,Rule2;error=true` directive at the top of the
Dockerfile skips rules (`skip=all` skips every rule) and turns findings into
errors. Exit status: 0 when nothing is an error, 1 otherwise.

A Dockerfile that does not parse or is not valid gets every error found
reported, each located with its line and a caret (every bad instruction,
unknown or bad flag, bad mount; after a syntax error, parsing resumes at the
next logical line), and exit status 1; the rules run once it is valid.

Examples:
  kiln check
  kiln check -f build/Dockerfile --format json")]
pub struct CheckArgs {
    /// The Dockerfile to check, `-` for standard input
    #[arg(
        short = 'f',
        long = "file",
        value_name = "FILE|-",
        default_value = "Dockerfile"
    )]
    pub file: PathBuf,

    /// How to print the findings
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

pub fn run(args: &CheckArgs) -> Result<Exit> {
    let input = DockerfileInput::read(&args.file)?;
    let df = match typed_or_errors(&input) {
        Ok(df) => df,
        Err(errors) => return report_errors(&input, &errors, args.format),
    };
    let findings = kiln_dockerfile::check::check(&df).map_err(|e| input.located(&e))?;
    let errors = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    let warnings = findings.len() - errors;
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => {
            let list: Vec<serde_json::Value> =
                findings.iter().map(|f| finding_json(&input, f)).collect();
            let doc = json!({"file": input.name, "findings": list, "errors": errors, "warnings": warnings});
            writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        }
        Format::Text => {
            let mut text = String::new();
            for f in &findings {
                text.push_str(&render(&input, f));
            }
            if findings.is_empty() {
                let _ = writeln!(text, "{}: no problems found", input.name);
            } else {
                let _ = writeln!(
                    text,
                    "{}: {errors} error(s), {warnings} warning(s)",
                    input.name
                );
            }
            out.write_all(text.as_bytes())?;
        }
    }
    Ok(if errors > 0 {
        Exit::FAILURE
    } else {
        Exit::SUCCESS
    })
}

/// The typed Dockerfile, or every error in it: the syntax errors (each bad
/// logical line is skipped and parsing goes on) and the typed layer's errors
/// on the instructions that did parse, in file order.
fn typed_or_errors(input: &DockerfileInput) -> Result<Dockerfile, Vec<kiln_dockerfile::Error>> {
    let (tree, mut errors) = kiln_dockerfile::syntax::parse_recovering(&input.bytes);
    // Nothing parsed: the typed layer would only add "no FROM".
    if !errors.is_empty() && tree.instructions.is_empty() {
        return Err(errors);
    }
    match Dockerfile::from_tree_all(tree) {
        Ok(df) if errors.is_empty() => return Ok(df),
        Ok(_) => {}
        Err(more) => errors.extend(more),
    }
    // Stable: errors on one spot keep the order they were found in.
    errors.sort_by_key(|e| (e.location().line, e.location().column));
    errors.dedup();
    Err(errors)
}

/// Report a Dockerfile that does not parse or type: every error, located,
/// on stderr (text) or as error findings without a rule (json); exit 1.
fn report_errors(
    input: &DockerfileInput,
    errors: &[kiln_dockerfile::Error],
    format: Format,
) -> Result<Exit> {
    match format {
        Format::Json => {
            let list: Vec<serde_json::Value> = errors
                .iter()
                .map(|e| {
                    let l = e.location();
                    json!({
                        "rule": null,
                        "severity": "error",
                        "message": e.message(),
                        "description": null,
                        "url": null,
                        "file": input.name,
                        "line": l.line,
                        "column": l.column,
                        "width": l.width,
                        "fix": e.help(),
                    })
                })
                .collect();
            let doc = json!({"file": input.name, "findings": list, "errors": errors.len(), "warnings": 0});
            writeln!(
                std::io::stdout().lock(),
                "{}",
                serde_json::to_string_pretty(&doc)?
            )?;
        }
        Format::Text => {
            let mut text = String::new();
            for e in errors {
                text.push_str(&input.located(e).render());
            }
            let _ = writeln!(
                text,
                "{}: {} error(s); the Dockerfile is not valid",
                input.name,
                errors.len()
            );
            std::io::stderr().lock().write_all(text.as_bytes())?;
        }
    }
    Ok(Exit::FAILURE)
}

fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Warning => "warning",
        Severity::Error => "error",
    }
}

fn source_error(input: &DockerfileInput, f: &Finding) -> SourceError {
    let text = String::from_utf8_lossy(&input.bytes);
    let line_text = text
        .split('\n')
        .nth(f.location.line.saturating_sub(1))
        .unwrap_or("")
        .trim_end_matches('\r')
        .trim_start_matches('\u{feff}')
        .to_string();
    SourceError {
        message: format!("{} ({})", f.message, f.rule),
        file: input.name.clone(),
        line: f.location.line,
        column: f.location.column,
        width: f.location.width,
        line_text,
        help: Some(f.fix.clone()),
    }
}

fn render(input: &DockerfileInput, f: &Finding) -> String {
    let rendered = source_error(input, f).render();
    // SourceError renders as an error; a warning says so instead.
    match f.severity {
        Severity::Error => rendered,
        Severity::Warning => rendered.replacen("error: ", "warning: ", 1),
    }
}

fn finding_json(input: &DockerfileInput, f: &Finding) -> serde_json::Value {
    json!({
        "rule": f.rule,
        "severity": severity_name(f.severity),
        "message": f.message,
        "description": f.description,
        "url": f.url,
        "file": input.name,
        "line": f.location.line,
        "column": f.location.column,
        "width": f.location.width,
        "fix": f.fix,
    })
}
