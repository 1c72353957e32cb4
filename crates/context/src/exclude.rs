//! `COPY --exclude` patterns, compiled once for both readers of a copy:
//! the context's selection (what the cache key covers) and the solver's
//! copy engine (what lands in the layer). One definition, so the two can
//! never disagree about which file a pattern leaves out.

use std::path::Path;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::{ContextError, Result};

/// Compiled `--exclude` patterns. A pattern is a glob relative to the
/// copied directory (a leading `/` is dropped; `*` and `?` stop at `/`,
/// `**` crosses directories, `\` escapes); a path is excluded when it or
/// one of its parent directories matches, as BuildKit's copy does.
///
/// ```
/// use kiln_context::ExcludeSet;
///
/// let set = ExcludeSet::new(&["*.log".to_owned(), "/build".to_owned()])?.unwrap();
/// assert!(set.excludes("debug.log".as_ref()));
/// assert!(!set.excludes("src/debug.log".as_ref())); // `*` stops at `/`
/// assert!(set.excludes("build/out/a.o".as_ref())); // a parent matches
/// assert!(ExcludeSet::new::<String>(&[])?.is_none());
/// # Ok::<(), kiln_context::ContextError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ExcludeSet {
    set: GlobSet,
}

impl ExcludeSet {
    /// Compile `patterns`; `None` when there are none. An invalid glob is
    /// [`ContextError::BadSource`] naming it.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Option<ExcludeSet>> {
        if patterns.is_empty() {
            return Ok(None);
        }
        let mut set = GlobSetBuilder::new();
        for p in patterns {
            let p = p.as_ref().trim_start_matches('/');
            let glob = GlobBuilder::new(p)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| ContextError::BadSource {
                    pattern: p.to_owned(),
                    reason: e.kind().to_string(),
                })?;
            set.add(glob);
        }
        let set = set.build().map_err(|e| ContextError::BadSource {
            pattern: patterns
                .iter()
                .map(AsRef::as_ref)
                .collect::<Vec<_>>()
                .join(" "),
            reason: e.kind().to_string(),
        })?;
        Ok(Some(ExcludeSet { set }))
    }

    /// Whether `rel` itself (not its parents) matches a pattern: for a
    /// walk, which never enters an excluded directory.
    pub(crate) fn matches(&self, rel: &Path) -> bool {
        self.set.is_match(rel)
    }

    /// Whether `rel` (relative to the copied directory) or one of its
    /// parents matches a pattern.
    pub fn excludes(&self, rel: &Path) -> bool {
        let mut p = rel;
        loop {
            if !p.as_os_str().is_empty() && self.set.is_match(p) {
                return true;
            }
            match p.parent() {
                Some(parent) => p = parent,
                None => return false,
            }
        }
    }
}
