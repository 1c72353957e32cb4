//! The crate's one error type.

use crate::syntax::Span;

/// Where in the Dockerfile something is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Location {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// How many characters the problem covers (at least one is shown).
    pub width: usize,
    /// The byte span in the source.
    pub span: Span,
}

/// Everything that can be wrong with a Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// BuildKit's parser rejects the text (bad directive, unterminated
    /// heredoc, a non-string JSON array, ENV without a value…).
    #[error("{message}")]
    Syntax {
        /// What is wrong, one line.
        message: String,
        /// Where.
        location: Location,
        /// How to fix it.
        help: Option<String>,
    },
    /// The text parses but is not a valid instruction (unknown instruction or
    /// flag, bad flag value, bad stage name, variable expansion error…).
    #[error("{message}")]
    Instruction {
        /// What is wrong, one line.
        message: String,
        /// Where.
        location: Location,
        /// How to fix it (often a did-you-mean).
        help: Option<String>,
    },
}

impl Error {
    pub(crate) fn syntax(message: String, location: Location, help: Option<String>) -> Self {
        Error::Syntax {
            message,
            location,
            help,
        }
    }

    pub(crate) fn instruction(message: String, location: Location, help: Option<String>) -> Self {
        Error::Instruction {
            message,
            location,
            help,
        }
    }

    /// Where the problem is.
    pub fn location(&self) -> Location {
        match self {
            Error::Syntax { location, .. } | Error::Instruction { location, .. } => *location,
        }
    }

    /// How to fix it, when known.
    pub fn help(&self) -> Option<&str> {
        match self {
            Error::Syntax { help, .. } | Error::Instruction { help, .. } => help.as_deref(),
        }
    }

    /// The message without location.
    pub fn message(&self) -> &str {
        match self {
            Error::Syntax { message, .. } | Error::Instruction { message, .. } => message,
        }
    }
}
