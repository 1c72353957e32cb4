//! Build contexts: where a build's files come from, which of them the build
//! may see (`.dockerignore`, with Docker's exact semantics), and checksums
//! of exactly the files a COPY/ADD reads, for the build cache.
//!
//! What it is not: it does not copy files into images (the solver's copy
//! engine does, reading [`Context::root`]), and it never prints; callers
//! render its errors.
//!
//! # What a build calls
//!
//! 1. Open the context: [`Context::from_dir`] with a [`DockerfileSpec`]
//!    (the default lookup, `-f PATH`, or `-f -` text). The Dockerfile is in
//!    [`Context::dockerfile`], always readable whatever the ignore rules say;
//!    the rules ([`Context::ignore`]) come from `<Dockerfile>.dockerignore`
//!    next to the Dockerfile, else `CONTEXT/.dockerignore`.
//! 2. Optionally share a [`StatCache`] kept in the store
//!    ([`Context::set_stat_cache`]) and [`StatCache::save`] it at the end.
//! 3. For each COPY/ADD from the context, ask for its checksum with the
//!    copy action's sources and flags ([`Context::checksum`]); it errors,
//!    naming the source, when a source escapes the context, is excluded or
//!    matches nothing (like the copy would).
//! 4. The copy itself reads [`Context::root`]; entries for which
//!    [`Context::is_excluded`] is true must be skipped (or use
//!    [`Context::select`], which lists every entry a source list reads,
//!    already filtered, each at `root().join(&entry.rel)`).
//!
//! # Example
//!
//! ```
//! use kiln_context::{Context, DockerfileSpec, SourceOptions};
//!
//! let dir = tempfile::tempdir()?;
//! std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\nCOPY . /app\n")?;
//! std::fs::write(dir.path().join(".dockerignore"), "*.log\n!keep.log\n")?;
//! std::fs::write(dir.path().join("main.c"), "int main;")?;
//! std::fs::write(dir.path().join("debug.log"), "noise")?;
//! std::fs::write(dir.path().join("keep.log"), "kept")?;
//!
//! let ctx = Context::from_dir(dir.path(), DockerfileSpec::Default)?;
//! assert!(ctx.dockerfile().text.starts_with(b"FROM scratch"));
//! assert!(ctx.is_excluded("debug.log".as_ref()));
//! let why = ctx.ignore().verdict("keep.log");
//! assert_eq!((why.excluded, why.rule.map(|r| r.line())), (false, Some(2)));
//!
//! let opts = SourceOptions::default();
//! let before = ctx.checksum(&["."], &opts, false)?;
//! std::fs::write(dir.path().join("debug.log"), "more noise")?; // excluded
//! assert_eq!(ctx.checksum(&["."], &opts, false)?, before);
//! std::fs::write(dir.path().join("main.c"), "int main(){}")?;
//! assert_ne!(ctx.checksum(&["."], &opts, false)?, before);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod error;
mod gopath;
mod hash;
pub mod ignore;
mod local;

pub use error::{ContextError, Result};
pub use hash::{CacheStats, StatCache};
pub use ignore::{Matcher, PatternError, Rule, Verdict};
pub use local::{
    Checksum, Context, DEFAULT_DOCKERFILE, Dockerfile, DockerfileSpec, Entry, EntryKind, Selection,
    SourceOptions, find_ignore_file,
};
