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
//! 1. Open the context from the CONTEXT argument with an [`Opener`]
//!    (`Opener::new(store_root.join("contexts")).dockerfile(spec).open(arg, stdin)`):
//!    a directory, `-` (a tar in any compression, or a Dockerfile), a git
//!    URL (`URL#REF:SUBDIR`, fetched with the `git` program, shallow, with
//!    submodules) or a tarball URL (reqwest, streamed, size and redirect
//!    limits). Remote sources are cached per URL and commit/content.
//!    [`Context::from_dir`] opens a directory directly. The [`DockerfileSpec`]
//!    is the default lookup, `-f PATH` or `-f -` text; the Dockerfile is in
//!    [`Context::dockerfile`], always readable whatever the ignore rules say;
//!    the rules ([`Context::ignore`]) come from `<Dockerfile>.dockerignore`
//!    next to the Dockerfile, else `CONTEXT/.dockerignore`.
//!    [`Progress`] events tell how a fetch goes (bytes of a download, git's
//!    steps and its own progress lines) for the caller to render.
//!    [`prune_cache`] removes cached remote contexts (all, or those unused
//!    for a while); it waits while any context from the cache is open.
//! 2. Optionally share a [`StatCache`] kept in the store, one file per
//!    context root ([`StatCache::file_for`], [`Context::set_stat_cache`]),
//!    and [`StatCache::save`] it at the end (it writes only when a file was
//!    hashed).
//! 3. For each COPY/ADD from the context, ask for its checksum with the
//!    copy action's sources and flags ([`Context::checksum`]); it errors,
//!    naming the source, when a source escapes the context, is excluded or
//!    matches nothing (like the copy would).
//!    For keys that explain a miss file by file, [`Context::select`] then
//!    [`Context::digest`] hash the selection once and give both the
//!    checksum and each entry's `KIND MODE UID:GID CONTENT`
//!    ([`Digested::file_sums`]). `COPY --exclude` patterns compile through
//!    [`ExcludeSet`], which the solver's copy engine uses too.
//!    kiln-build's `BuildContext` maps onto this API: `root` →
//!    [`Context::root`], `is_excluded` → [`Context::is_excluded`],
//!    `has_exclusions` → `!ctx.ignore().is_empty()`, `checksum(include,
//!    exclude)` → `select(include, &SourceOptions { exclude, ..default },
//!    true)` then `file_sums` as (`file:PATH`, `sum.to_string()`).
//! 4. The copy itself reads [`Context::root`]; entries for which
//!    [`Context::is_excluded`] is true must be skipped (or use
//!    [`Context::select`], which lists every entry a source list reads,
//!    already filtered, each at `root().join(&entry.rel)`).
//!
//! # The checksum
//!
//! sha256 over a versioned encoding: for each source text, the paths it
//! matched and, for each, the symlinks followed to reach it and every entry
//! read (the matched entry, and a directory's whole filtered subtree in
//! path order), each as `path, type, mode, uid, gid, link target, content
//! sha256`. A change outside the selection (or to an excluded file) leaves
//! it unchanged; a content change, rename, chmod, chown or symlink retarget
//! inside changes it.
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

mod archive;
mod cache;
mod error;
mod exclude;
mod gopath;
mod hash;
pub mod ignore;
mod local;
mod open;
mod remote;

pub use cache::{CachePruneOptions, CachePruneReport, prune_cache};
pub use error::{ContextError, Result};
pub use exclude::ExcludeSet;
pub use hash::{CacheStats, StatCache};
pub use ignore::{Matcher, PatternError, Rule, Verdict};
pub use local::{
    Checksum, Context, DEFAULT_DOCKERFILE, Digested, Dockerfile, DockerfileSpec, Entry, EntryKind,
    FileSum, Selection, SourceOptions, find_ignore_file,
};
pub use open::{GitTree, Opener};
pub use remote::{GitSource, Progress, ProgressFn, Source};
