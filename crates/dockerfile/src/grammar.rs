//! The pest parser generated from `grammar/dockerfile.pest`. Private: pest's
//! `Rule` and `Pair` never appear in a public signature.

/// The generated parser.
#[derive(pest_derive::Parser)]
#[grammar = "../../grammar/dockerfile.pest"]
pub(crate) struct DockerfileGrammar;
