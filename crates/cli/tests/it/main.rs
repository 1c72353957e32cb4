//! Integration tests of the `kiln` binary: one test binary, one module per
//! command.

mod completions;
mod run;
mod support;
