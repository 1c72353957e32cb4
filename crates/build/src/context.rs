//! The build context as the executor sees it: a directory of files, which
//! of them the build may read, and content checksums of exactly the files
//! an instruction reads (the cache-key input of COPY, ADD and bind mounts).
//!
//! [`BuildContext`] is the boundary: the `kiln-context` crate's contexts
//! (directories with `.dockerignore`, stdin tars, git checkouts) implement
//! it; [`LocalDir`] is a plain directory where every file is visible.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};
use rayon::prelude::*;
use sha2::{Digest as _, Sha256};

use kiln_solver::ops::{View, clean};

/// Why reading the context failed.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// A file could not be read.
    #[error("build context: {op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file (on disk).
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A source pattern is not a valid glob.
    #[error("invalid pattern `{pattern}`: {reason}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// What is wrong.
        reason: String,
    },
    /// The copy engine could not resolve a path.
    #[error("build context: {0}")]
    Resolve(String),
}

/// A build context: files the build can read.
pub trait BuildContext: Send + Sync + std::fmt::Debug {
    /// The directory holding the files.
    fn root(&self) -> &Path;

    /// Whether `rel` (relative to the root) is hidden from the build
    /// (`.dockerignore`); `is_dir` says whether it is a directory.
    fn is_excluded(&self, rel: &Path, is_dir: bool) -> bool;

    /// Whether any file of the root is hidden (when not, the root can be
    /// bind-mounted as it is).
    fn has_exclusions(&self) -> bool;

    /// Content-key fields (`file:PATH` → type, mode, owner and content
    /// digest or link target) of exactly the files that `include` (COPY's
    /// sources: paths or globs, relative to the root) selects, minus those
    /// matching `exclude` (COPY `--exclude`). Directories selected count with
    /// everything under them.
    fn checksum(
        &self,
        include: &[String],
        exclude: &[String],
    ) -> Result<Vec<(String, String)>, ContextError>;
}

/// A plain directory: every file is part of the context.
#[derive(Debug, Clone)]
pub struct LocalDir {
    root: PathBuf,
}

impl LocalDir {
    /// The directory `root`.
    pub fn new(root: impl Into<PathBuf>) -> LocalDir {
        LocalDir { root: root.into() }
    }
}

impl BuildContext for LocalDir {
    fn root(&self) -> &Path {
        &self.root
    }

    fn is_excluded(&self, _rel: &Path, _is_dir: bool) -> bool {
        false
    }

    fn has_exclusions(&self) -> bool {
        false
    }

    fn checksum(
        &self,
        include: &[String],
        exclude: &[String],
    ) -> Result<Vec<(String, String)>, ContextError> {
        checksum_files(self, include, exclude)
    }
}

fn glob(pattern: &str) -> Result<GlobMatcher, ContextError> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| ContextError::Pattern {
            pattern: pattern.to_owned(),
            reason: e.kind().to_string(),
        })
}

fn has_meta(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Expand one COPY source (path or per-component glob) in `view`, as the
/// copy engine does; returns root-relative paths that exist.
fn expand(view: &View, ctx: &dyn BuildContext, text: &str) -> Result<Vec<PathBuf>, ContextError> {
    let resolve = |e: kiln_solver::ops::FileOpError| ContextError::Resolve(e.to_string());
    let mut found = vec![PathBuf::new()];
    for comp in &clean(Path::new(text)) {
        let comp_str = comp.to_string_lossy();
        let mut next = Vec::new();
        for base in &found {
            if has_meta(&comp_str) {
                let matcher = glob(&comp_str)?;
                let dir = view.resolve(base, true).map_err(resolve)?;
                if view
                    .lookup(&dir)
                    .map_err(resolve)?
                    .is_some_and(|e| e.meta.is_dir())
                {
                    for (name, entry) in view.read_dir(&dir).map_err(resolve)? {
                        let rel = base.join(&name);
                        if matcher.is_match(Path::new(&name))
                            && !ctx.is_excluded(&rel, entry.meta.is_dir())
                        {
                            next.push(rel);
                        }
                    }
                }
            } else {
                next.push(base.join(comp));
            }
        }
        found = next;
    }
    Ok(found)
}

/// One file's content-key line.
struct FileSum {
    rel: PathBuf,
    kind: &'static str,
    meta: std::fs::Metadata,
    disk: PathBuf,
}

/// The default checksum of a directory context (parallel hashing).
pub fn checksum_files(
    ctx: &dyn BuildContext,
    include: &[String],
    exclude: &[String],
) -> Result<Vec<(String, String)>, ContextError> {
    let view = View::dir(ctx.root());
    let resolve = |e: kiln_solver::ops::FileOpError| ContextError::Resolve(e.to_string());
    let excludes = exclude_set(exclude)?;
    let mut files: Vec<FileSum> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for text in include {
        for rel in expand(&view, ctx, text)? {
            // A source naming a symlink copies what it points to.
            let resolved = view.resolve(&rel, true).map_err(resolve)?;
            let Some(entry) = view.lookup(&resolved).map_err(resolve)? else {
                // Missing sources are the copy's error to report.
                continue;
            };
            if !resolved.as_os_str().is_empty() && ctx.is_excluded(&resolved, entry.meta.is_dir()) {
                continue;
            }
            let walker = Walker {
                ctx,
                src_root: resolved.clone(),
                excludes: excludes.as_ref(),
            };
            walker.walk(&resolved, entry.disk, entry.meta, &mut files, &mut seen)?;
        }
    }
    files.sort_by(|a, b| a.rel.cmp(&b.rel));
    files
        .into_par_iter()
        .map(|f| {
            let content = match f.kind {
                "file" => hash_file(&f.disk)?,
                "symlink" => std::fs::read_link(&f.disk)
                    .map_err(|source| ContextError::Io {
                        op: "read link",
                        path: f.disk.clone(),
                        source,
                    })?
                    .to_string_lossy()
                    .into_owned(),
                _ => String::new(),
            };
            let value = format!(
                "{} {:o} {}:{} {content}",
                f.kind,
                f.meta.mode() & 0o7777,
                f.meta.uid(),
                f.meta.gid()
            );
            Ok((format!("file:{}", display(&f.rel)), value))
        })
        .collect()
}

fn display(rel: &Path) -> String {
    if rel.as_os_str().is_empty() {
        ".".to_owned()
    } else {
        rel.to_string_lossy().into_owned()
    }
}

fn exclude_set(patterns: &[String]) -> Result<Option<GlobSet>, ContextError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut set = GlobSetBuilder::new();
    for p in patterns {
        let p = p.trim_start_matches('/');
        let g = GlobBuilder::new(p)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| ContextError::Pattern {
                pattern: p.to_owned(),
                reason: e.kind().to_string(),
            })?;
        set.add(g);
    }
    set.build().map(Some).map_err(|e| ContextError::Pattern {
        pattern: patterns.join(" "),
        reason: e.kind().to_string(),
    })
}

struct Walker<'a> {
    ctx: &'a dyn BuildContext,
    /// The copied source: `--exclude` patterns match paths below it.
    src_root: PathBuf,
    excludes: Option<&'a GlobSet>,
}

impl Walker<'_> {
    #[allow(clippy::needless_pass_by_value)] // `disk` is kept in the list
    fn walk(
        &self,
        rel: &Path,
        disk: PathBuf,
        meta: std::fs::Metadata,
        out: &mut Vec<FileSum>,
        seen: &mut std::collections::HashSet<PathBuf>,
    ) -> Result<(), ContextError> {
        if !seen.insert(rel.to_path_buf()) {
            return Ok(());
        }
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_file() {
            "file"
        } else {
            "special"
        };
        let is_dir = ft.is_dir();
        out.push(FileSum {
            rel: rel.to_path_buf(),
            kind,
            meta,
            disk: disk.clone(),
        });
        if !is_dir {
            return Ok(());
        }
        let rd = std::fs::read_dir(&disk).map_err(|source| ContextError::Io {
            op: "list",
            path: disk.clone(),
            source,
        })?;
        for entry in rd {
            let entry = entry.map_err(|source| ContextError::Io {
                op: "list",
                path: disk.clone(),
                source,
            })?;
            let child_rel = rel.join(entry.file_name());
            let child_disk = entry.path();
            let child_meta =
                std::fs::symlink_metadata(&child_disk).map_err(|source| ContextError::Io {
                    op: "stat",
                    path: child_disk.clone(),
                    source,
                })?;
            if self.ctx.is_excluded(&child_rel, child_meta.is_dir()) {
                continue;
            }
            if let Some(set) = self.excludes
                && set.is_match(child_rel.strip_prefix(&self.src_root).unwrap_or(&child_rel))
            {
                continue;
            }
            self.walk(&child_rel, child_disk, child_meta, out, seen)?;
        }
        Ok(())
    }
}

fn hash_file(path: &Path) -> Result<String, ContextError> {
    let io = |source| ContextError::Io {
        op: "read",
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(io)?;
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_covers_only_selected_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("src/a.rs"), "a").unwrap();
        std::fs::write(dir.path().join("README"), "r").unwrap();
        let ctx = LocalDir::new(dir.path());
        let before = ctx.checksum(&["src".into()], &[]).unwrap();
        std::fs::write(dir.path().join("README"), "changed").unwrap();
        assert_eq!(ctx.checksum(&["src".into()], &[]).unwrap(), before);
        std::fs::write(dir.path().join("src/a.rs"), "b").unwrap();
        let after = ctx.checksum(&["src".into()], &[]).unwrap();
        assert_ne!(after, before);
        assert!(after.iter().any(|(k, _)| k == "file:src/a.rs"));
        // Globs select like COPY does.
        let g = ctx.checksum(&["src/*.rs".into()], &[]).unwrap();
        assert_eq!(g.len(), 1);
        // --exclude leaves files out.
        let e = ctx.checksum(&["src".into()], &["*.rs".into()]).unwrap();
        assert_eq!(e.len(), 1);
    }
}
