//! The build context as steps read it, over [`kiln_context::Context`]:
//! what one COPY (or bind mount) selects, its checksum for the cache key,
//! and a listing of the selected files per checksum so that `--explain`
//! can name the file that changed.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use kiln_context::{Context, Selection, SourceOptions};
use kiln_solver::Change;

/// What one read of the context sees.
#[derive(Debug, Clone)]
pub struct Selected {
    /// The checksum of exactly the selected entries.
    pub checksum: String,
    /// What was selected; the visible set is made from it only when a copy
    /// actually runs (a cache hit never needs it).
    selection: Arc<Selection>,
    visible: Arc<OnceLock<Arc<HashSet<PathBuf>>>>,
}

impl Selected {
    /// The selected paths (and their parent directories), relative.
    pub fn visible(&self) -> Arc<HashSet<PathBuf>> {
        Arc::clone(self.visible.get_or_init(|| {
            let entries = self.selection.entries();
            let mut visible: HashSet<PathBuf> = HashSet::with_capacity(entries.len() * 2);
            for e in &entries {
                let mut p = e.rel.as_path();
                while !p.as_os_str().is_empty() && visible.insert(p.to_path_buf()) {
                    match p.parent() {
                        Some(parent) => p = parent,
                        None => break,
                    }
                }
            }
            Arc::new(visible)
        }))
    }
}

/// Select `include` minus `exclude` (COPY `--exclude`) in `ctx`, the way the
/// copy engine expands sources, and hash it (each file once, through the
/// stat cache); records the per-file listing of the checksum under `lists`
/// (once per checksum) for `--explain`.
pub fn select(
    ctx: &Context,
    include: &[String],
    exclude: &[String],
    lists: &Path,
) -> Result<Selected, kiln_context::ContextError> {
    let opts = SourceOptions {
        exclude: exclude.to_vec(),
        ..SourceOptions::default()
    };
    let selection = ctx.select(include, &opts, true)?;
    let digested = ctx.digest(&selection)?;
    let checksum = digested.checksum().to_string();
    let list_path = lists.join(checksum.trim_start_matches("sha256:"));
    if !list_path.exists() {
        let map: BTreeMap<String, String> = digested
            .file_sums()
            .into_iter()
            .map(|sum| {
                let line = sum.to_string();
                (sum.path, line)
            })
            .collect();
        // Best effort: a missing listing only makes explanations vaguer. The
        // temp file is unique, so parallel COPY steps of one build never
        // rename each other's listing into place.
        if let Ok(json) = serde_json::to_vec(&map) {
            let _ = fs_err::create_dir_all(lists)
                .and_then(|()| tempfile::NamedTempFile::new_in(lists))
                .and_then(|mut tmp| {
                    std::io::Write::write_all(&mut tmp, &json)?;
                    tmp.persist(&list_path).map_err(|e| e.error)?;
                    Ok(())
                });
        }
    }
    drop(digested);
    Ok(Selected {
        checksum,
        selection: Arc::new(selection),
        visible: Arc::new(OnceLock::new()),
    })
}

fn load(lists: &Path, checksum: &str) -> Option<BTreeMap<String, String>> {
    let bytes = std::fs::read(lists.join(checksum.trim_start_matches("sha256:"))).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Replace a change of a context checksum by the changes of the files it
/// covers (`content.file:PATH`), when both listings are known.
pub fn explain(changes: Vec<Change>, lists: &Path) -> Vec<Change> {
    let mut out = Vec::with_capacity(changes.len());
    for c in changes {
        let (Some(before), Some(after)) = (&c.before, &c.after) else {
            out.push(c);
            continue;
        };
        if c.field != "content.context" {
            out.push(c);
            continue;
        }
        let (Some(old), Some(new)) = (load(lists, before), load(lists, after)) else {
            out.push(c);
            continue;
        };
        let mut files = Vec::new();
        for (path, value) in &new {
            if old.get(path) != Some(value) {
                files.push(Change {
                    field: format!("content.file:{path}"),
                    before: old.get(path).cloned(),
                    after: Some(value.clone()),
                });
            }
        }
        for (path, value) in &old {
            if !new.contains_key(path) {
                files.push(Change {
                    field: format!("content.file:{path}"),
                    before: Some(value.clone()),
                    after: None,
                });
            }
        }
        if files.is_empty() {
            out.push(c);
        } else {
            out.extend(files);
        }
    }
    out
}
