//! How kiln reports failure: exit statuses, and errors rendered for people.
//!
//! A located error renders like a compiler's:
//!
//! ```text
//! error: unknown instruction `COPPY`; did you mean `COPY`?
//!  --> Dockerfile:7:1
//!   |
//! 7 | COPPY . /app
//!   | ^^^^^
//!   = help: instructions are case-insensitive; see `kiln parse --help`
//! ```

use std::fmt::{self, Write as _};
use std::process::ExitCode;

/// A process exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit(pub u8);

impl Exit {
    /// Everything worked.
    pub const SUCCESS: Exit = Exit(0);
    /// A user error or a failed build.
    pub const FAILURE: Exit = Exit(1);
    /// kiln itself failed while running a container (docker's 125).
    pub const RUNTIME_FAILURE: Exit = Exit(125);
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit.0)
    }
}

/// An error that ends the process with a given status instead of 1.
#[derive(Debug)]
pub struct Fatal {
    pub exit: Exit,
    pub message: String,
}

impl fmt::Display for Fatal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Fatal {}

/// An error at a place in a source file (a Dockerfile, an ignore file, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceError {
    /// What went wrong, one line, lower case.
    pub message: String,
    /// The file as the user named it (`Dockerfile`, `-` shows as `<stdin>`).
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
    /// How many characters the caret underlines (at least one is drawn).
    pub width: usize,
    /// The text of that line, without its line ending.
    pub line_text: String,
    /// How to fix it, when known.
    pub help: Option<String>,
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

impl std::error::Error for SourceError {}

impl SourceError {
    /// The multi-line rendering with the source line and a caret.
    pub fn render(&self) -> String {
        let number = self.line.to_string();
        let pad = " ".repeat(number.len());
        // Keep tabs in the caret line so the caret sits under the right
        // character however the terminal expands them.
        let lead: String = self
            .line_text
            .chars()
            .take(self.column.saturating_sub(1))
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let carets = "^".repeat(self.width.max(1));
        let mut out = format!(
            "error: {}\n{pad}--> {}:{}:{}\n{pad} |\n{number} | {}\n{pad} | {lead}{carets}\n",
            self.message, self.file, self.line, self.column, self.line_text
        );
        if let Some(help) = &self.help {
            let _ = writeln!(out, "{pad} = help: {help}");
        }
        out
    }
}

/// Render any error for stderr: a located error with its snippet, others as
/// `error: what: why` (the whole cause chain with `--debug`).
pub fn render_error(err: &anyhow::Error, debug: bool) -> String {
    if let Some(located) = err.downcast_ref::<SourceError>() {
        return located.render();
    }
    if debug {
        let mut out = format!("error: {err}\n");
        for cause in err.chain().skip(1) {
            let _ = writeln!(out, "  caused by: {cause}");
        }
        out
    } else {
        // `{:#}` joins the chain with ": ", which reads as one sentence.
        format!("error: {err:#}\n")
    }
}

/// The exit status an error ends the process with.
pub fn exit_code_of(err: &anyhow::Error) -> Exit {
    err.downcast_ref::<Fatal>()
        .map_or(Exit::FAILURE, |fatal| fatal.exit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn located(line_text: &str, column: usize, width: usize) -> SourceError {
        SourceError {
            message: "unknown instruction `COPPY`; did you mean `COPY`?".into(),
            file: "Dockerfile".into(),
            line: 7,
            column,
            width,
            line_text: line_text.into(),
            help: None,
        }
    }

    #[test]
    fn caret_sits_under_the_column() {
        let text = located("COPPY . /app", 1, 5).render();
        assert_eq!(
            text,
            "error: unknown instruction `COPPY`; did you mean `COPY`?\n --> Dockerfile:7:1\n  |\n7 | COPPY . /app\n  | ^^^^^\n"
        );
    }

    #[test]
    fn caret_keeps_tabs_and_counts_characters() {
        let text = located("\té RUN x", 4, 3).render();
        let caret_line = text.lines().nth(4).unwrap();
        assert_eq!(caret_line, "  | \t  ^^^");
    }

    #[test]
    fn zero_width_still_draws_a_caret_and_help_is_shown() {
        let mut err = located("FROM", 5, 0);
        err.help = Some("add an image name".into());
        let text = err.render();
        assert!(text.contains("  |     ^\n"), "{text}");
        assert!(text.ends_with("  = help: add an image name\n"), "{text}");
    }

    #[test]
    fn fatal_carries_its_exit_status() {
        let err = anyhow::Error::new(Fatal {
            exit: Exit(125),
            message: "no such image".into(),
        });
        assert_eq!(exit_code_of(&err), Exit(125));
        assert_eq!(exit_code_of(&anyhow::anyhow!("x")), Exit::FAILURE);
    }

    #[test]
    fn chain_is_joined_without_debug_and_listed_with_it() {
        let err = anyhow::anyhow!("disk full").context("writing blob sha256:ab");
        assert_eq!(
            render_error(&err, false),
            "error: writing blob sha256:ab: disk full\n"
        );
        assert_eq!(
            render_error(&err, true),
            "error: writing blob sha256:ab\n  caused by: disk full\n"
        );
    }
}
