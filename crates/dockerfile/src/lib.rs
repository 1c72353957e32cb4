//! The Dockerfile frontend of kiln: text → syntax tree → typed instructions.
//!
//! - [`syntax`]: the lossless, lenient layer (BuildKit's parser): directives,
//!   continuations, heredocs, keyword/flags/arguments, with spans. `kiln parse`
//!   prints it.
//! - [`ir`]: the typed layer: a [`Dockerfile`] of global ARGs and stages of
//!   typed [`Instruction`]s (`Run`, `Copy`, … with `ShellOrExec`, heredocs,
//!   validated flags and mounts), stage references resolved. `kiln check` and
//!   `kiln build` use it.
//! - [`check`]: BuildKit's build checks that need no build (`kiln check`).
//! - [`shell`]: the shell-word lexer and variable expansion (`$VAR`,
//!   `${VAR:-x}`, quotes, escapes, word splitting).
//!
//! This crate performs no I/O: it takes bytes and returns data or
//! [`Error`]s that carry a [`Location`] (line, column, span) and, where one
//! helps, a suggestion.
//!
//! # Example
//!
//! ```
//! let tree = kiln_dockerfile::syntax::parse(b"FROM alpine AS base\nRUN echo hi\n").unwrap();
//! assert_eq!(tree.instructions[0].cmd, "from");
//! assert_eq!(tree.instructions[0].args, ["alpine", "AS", "base"]);
//! assert_eq!(tree.instructions[1].args, ["echo hi"]);
//!
//! let df = kiln_dockerfile::Dockerfile::from_tree(tree).unwrap();
//! assert_eq!(df.stages[0].name.as_deref(), Some("base"));
//! let kiln_dockerfile::InstructionKind::Run(run) = &df.stages[0].instructions[0].kind else { panic!() };
//! assert_eq!(run.command, kiln_dockerfile::ShellOrExec::Shell("echo hi".into()));
//! ```
#![deny(missing_docs)]

pub mod check;
mod error;
mod grammar;
pub mod ir;
pub mod shell;
pub mod syntax;

pub use error::{Error, Location};
pub use ir::{Base, Dockerfile, Instruction, InstructionKind, ShellOrExec, Stage};
