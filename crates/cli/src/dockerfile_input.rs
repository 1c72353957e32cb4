//! Reading a Dockerfile named on the command line (a path or `-`), and
//! turning the frontend's errors into located, caret-rendered errors.

use std::io::Read as _;
use std::path::Path;

use anyhow::{Context as _, Result};
use kiln_dockerfile::syntax::SyntaxTree;

use crate::diagnostic::SourceError;

/// A Dockerfile's bytes and the name errors show for it.
pub struct DockerfileInput {
    /// `Dockerfile`, `path/to/Dockerfile`, or `<stdin>`.
    pub name: String,
    /// The raw bytes.
    pub bytes: Vec<u8>,
}

impl DockerfileInput {
    /// Read `path`, or standard input for `-`.
    pub fn read(path: &Path) -> Result<Self> {
        if path == Path::new("-") {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .context("reading the Dockerfile from standard input")?;
            return Ok(DockerfileInput {
                name: "<stdin>".into(),
                bytes,
            });
        }
        let bytes = fs_err::read(path)?;
        Ok(DockerfileInput {
            name: path.display().to_string(),
            bytes,
        })
    }

    /// Parse into a syntax tree; errors come back located.
    pub fn parse(&self) -> Result<SyntaxTree> {
        kiln_dockerfile::syntax::parse(&self.bytes).map_err(|e| self.located(&e).into())
    }

    /// A frontend error as a [`SourceError`] with this file's line text.
    pub fn located(&self, err: &kiln_dockerfile::Error) -> SourceError {
        let loc = err.location();
        let text = String::from_utf8_lossy(&self.bytes);
        let line_text = text
            .split('\n')
            .nth(loc.line.saturating_sub(1))
            .unwrap_or("")
            .trim_end_matches('\r')
            .trim_start_matches('\u{feff}')
            .to_string();
        SourceError {
            message: err.message().to_string(),
            file: self.name.clone(),
            line: loc.line,
            column: loc.column,
            width: loc.width,
            line_text,
            help: err.help().map(str::to_string),
        }
    }
}
