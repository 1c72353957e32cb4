//! A read-only merged view of stacked layer directories, with overlayfs's
//! rules: an upper entry hides lower ones, a 0/0 character device is a
//! whiteout, a directory with the overlay opaque xattr hides everything
//! below it. Symlinks are resolved inside the view's root, never outside.
//!
//! This is how file ops read a filesystem made of snapshots without
//! mounting anything (no root needed), and how a build context directory is
//! read (a view of one layer).

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::fs::Metadata;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use super::FileOpError;

/// The overlayfs opaque-directory xattrs (privileged and `userxattr` mounts).
const OPAQUE_XATTRS: [&str; 2] = ["trusted.overlay.opaque", "user.overlay.opaque"];

/// Symlinks followed while resolving one path, like Linux's `MAXSYMLINKS`.
const MAX_SYMLINKS: usize = 40;

/// Layer directories seen as one filesystem.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// Lowest layer first.
    layers: Vec<PathBuf>,
    /// When set, only these relative paths (and the root) exist: a build
    /// context with `.dockerignore` applied, limited to what a COPY reads.
    visible: Option<Arc<HashSet<PathBuf>>>,
}

/// One entry found in a [`View`].
#[derive(Debug)]
pub struct Entry {
    /// Where the entry is on disk (in the upper-most layer that has it).
    pub disk: PathBuf,
    /// Its metadata (`lstat`).
    pub meta: Metadata,
}

fn is_whiteout(meta: &Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

fn is_opaque(dir: &Path) -> bool {
    OPAQUE_XATTRS
        .iter()
        .any(|name| matches!(xattr::get(dir, name), Ok(Some(v)) if v == b"y"))
}

/// Normalise a path inside a root: leading `/`, `.` and `..` resolved
/// lexically, never above the root. Returns a relative path.
pub fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    out
}

impl View {
    /// A view of `layers`, lowest first.
    pub fn new(layers: Vec<PathBuf>) -> View {
        View {
            layers,
            visible: None,
        }
    }

    /// A view of one directory.
    pub fn dir(path: impl Into<PathBuf>) -> View {
        View {
            layers: vec![path.into()],
            visible: None,
        }
    }

    /// The same view where only `visible` (relative paths) and the root
    /// exist; everything else reads as missing.
    #[must_use]
    pub fn only(mut self, visible: Arc<HashSet<PathBuf>>) -> View {
        self.visible = Some(visible);
        self
    }

    fn hidden(&self, rel: &Path) -> bool {
        self.visible
            .as_ref()
            .is_some_and(|v| !rel.as_os_str().is_empty() && !v.contains(rel))
    }

    /// The layers, lowest first.
    pub fn layers(&self) -> &[PathBuf] {
        &self.layers
    }

    /// Look `rel` (relative, clean, symlinks in it already resolved) up
    /// without following a final symlink.
    pub fn lookup(&self, rel: &Path) -> Result<Option<Entry>, FileOpError> {
        if self.hidden(rel) {
            return Ok(None);
        }
        'layers: for layer in self.layers.iter().rev() {
            // An ancestor in this layer that is a whiteout, a non-directory
            // or opaque ends the search at this layer.
            let mut prefix = layer.clone();
            let components: Vec<_> = rel.components().collect();
            for (i, c) in components.iter().enumerate() {
                prefix.push(c);
                let meta = match std::fs::symlink_metadata(&prefix) {
                    Ok(m) => m,
                    Err(e) if is_absent(&e) => continue 'layers,
                    Err(e) => return Err(FileOpError::io("stat", &prefix, &e)),
                };
                let last = i + 1 == components.len();
                if is_whiteout(&meta) {
                    return Ok(None);
                }
                if last {
                    return Ok(Some(Entry { disk: prefix, meta }));
                }
                if !meta.is_dir() {
                    return Ok(None);
                }
                if is_opaque(&prefix) {
                    // Lower layers are hidden below here; keep looking in
                    // this layer only.
                    let mut rest = prefix.clone();
                    for c in &components[i + 1..] {
                        rest.push(c);
                    }
                    return match std::fs::symlink_metadata(&rest) {
                        Ok(m) if is_whiteout(&m) => Ok(None),
                        Ok(m) => Ok(Some(Entry {
                            disk: rest,
                            meta: m,
                        })),
                        Err(e) if is_absent(&e) => Ok(None),
                        Err(e) => Err(FileOpError::io("stat", &rest, &e)),
                    };
                }
            }
            // `rel` is the root itself.
            let meta =
                std::fs::symlink_metadata(layer).map_err(|e| FileOpError::io("stat", layer, &e))?;
            return Ok(Some(Entry {
                disk: layer.clone(),
                meta,
            }));
        }
        Ok(None)
    }

    /// Resolve symlinks in `path` inside the root (absolute links are
    /// relative to the root; `..` stops at it). With `follow_last`, a
    /// final symlink is followed too. Missing components are kept as they
    /// are (the result may not exist).
    pub fn resolve(&self, path: &Path, follow_last: bool) -> Result<PathBuf, FileOpError> {
        let mut pending: Vec<OsString> = clean_components(path);
        pending.reverse();
        let mut out = PathBuf::new();
        let mut hops = 0;
        while let Some(name) = pending.pop() {
            if name == ".." {
                out.pop();
                continue;
            }
            let candidate = out.join(&name);
            let is_last = pending.is_empty();
            if is_last && !follow_last {
                out = candidate;
                break;
            }
            match self.lookup(&candidate)? {
                Some(entry) if entry.meta.file_type().is_symlink() => {
                    hops += 1;
                    if hops > MAX_SYMLINKS {
                        return Err(FileOpError::SymlinkLoop {
                            path: path.to_path_buf(),
                        });
                    }
                    let target = std::fs::read_link(&entry.disk)
                        .map_err(|e| FileOpError::io("read link", &entry.disk, &e))?;
                    if target.is_absolute() {
                        out = PathBuf::new();
                    }
                    let mut parts = raw_components(&target);
                    parts.reverse();
                    pending.extend(parts);
                }
                _ => out = candidate,
            }
        }
        Ok(out)
    }

    /// The merged entries of directory `rel` (resolved), by name.
    pub fn read_dir(&self, rel: &Path) -> Result<BTreeMap<OsString, Entry>, FileOpError> {
        let mut out: BTreeMap<OsString, Entry> = BTreeMap::new();
        let mut hidden: std::collections::HashSet<OsString> = std::collections::HashSet::new();
        for layer in self.layers.iter().rev() {
            // The directory must be a directory in this layer, and not hidden
            // by an upper layer (a whiteout, a non-dir, an opaque dir).
            let dir = layer.join(rel);
            let meta = match std::fs::symlink_metadata(&dir) {
                Ok(m) => m,
                Err(e) if is_absent(&e) || e.raw_os_error() == Some(20) => {
                    if hidden_below(layer, rel)? {
                        break;
                    }
                    continue;
                }
                Err(e) => return Err(FileOpError::io("stat", &dir, &e)),
            };
            if !meta.is_dir() {
                break;
            }
            let entries = std::fs::read_dir(&dir).map_err(|e| FileOpError::io("list", &dir, &e))?;
            for entry in entries {
                let entry = entry.map_err(|e| FileOpError::io("list", &dir, &e))?;
                let name = entry.file_name();
                if out.contains_key(&name)
                    || hidden.contains(&name)
                    || self.hidden(&rel.join(&name))
                {
                    continue;
                }
                let disk = entry.path();
                let meta = std::fs::symlink_metadata(&disk)
                    .map_err(|e| FileOpError::io("stat", &disk, &e))?;
                if is_whiteout(&meta) {
                    hidden.insert(name);
                } else {
                    if !meta.is_dir() {
                        // A non-directory hides lower entries of that name.
                        hidden.insert(name.clone());
                    }
                    out.insert(name, Entry { disk, meta });
                }
            }
            if is_opaque(&dir) || hidden_below(layer, rel)? {
                break;
            }
        }
        Ok(out)
    }

    /// Read a whole file (symlinks resolved), `None` when it is missing or
    /// not a regular file.
    pub fn read_file(&self, path: &Path) -> Result<Option<Vec<u8>>, FileOpError> {
        let rel = self.resolve(path, true)?;
        match self.lookup(&rel)? {
            Some(entry) if entry.meta.is_file() => std::fs::read(&entry.disk)
                .map(Some)
                .map_err(|e| FileOpError::io("read", &entry.disk, &e)),
            _ => Ok(None),
        }
    }
}

/// Whether `layer` hides `rel` in the layers below it, through an
/// ancestor that is a whiteout, a non-directory or opaque.
fn hidden_below(layer: &Path, rel: &Path) -> Result<bool, FileOpError> {
    let mut prefix = layer.to_path_buf();
    let components: Vec<_> = rel.components().collect();
    for (i, c) in components.iter().enumerate() {
        prefix.push(c);
        let meta = match std::fs::symlink_metadata(&prefix) {
            Ok(m) => m,
            Err(e) if is_absent(&e) => return Ok(false),
            Err(e) => return Err(FileOpError::io("stat", &prefix, &e)),
        };
        if is_whiteout(&meta) || !meta.is_dir() {
            return Ok(true);
        }
        if i + 1 < components.len() && is_opaque(&prefix) {
            return Ok(true);
        }
    }
    Ok(false)
}

fn is_absent(e: &std::io::Error) -> bool {
    // ENOENT, or ENOTDIR when an ancestor is a file.
    e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(20)
}

fn raw_components(path: &Path) -> Vec<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

fn clean_components(path: &Path) -> Vec<OsString> {
    raw_components(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn upper_layers_hide_lower_ones_and_whiteouts_delete() {
        let t = tmp();
        let low = t.path().join("low");
        let up = t.path().join("up");
        std::fs::create_dir_all(low.join("etc")).unwrap();
        std::fs::create_dir_all(up.join("etc")).unwrap();
        std::fs::write(low.join("etc/a"), "low").unwrap();
        std::fs::write(low.join("etc/b"), "low").unwrap();
        std::fs::write(up.join("etc/a"), "up").unwrap();
        let view = View::new(vec![low, up]);
        let a = view.lookup(Path::new("etc/a")).unwrap().unwrap();
        assert_eq!(std::fs::read_to_string(a.disk).unwrap(), "up");
        let names: Vec<_> = view
            .read_dir(Path::new("etc"))
            .unwrap()
            .into_keys()
            .collect();
        assert_eq!(names, vec![OsString::from("a"), OsString::from("b")]);
        assert!(view.lookup(Path::new("etc/c")).unwrap().is_none());
        assert!(view.lookup(Path::new("etc/a/x")).unwrap().is_none());
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let t = tmp();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("opt/app")).unwrap();
        std::os::unix::fs::symlink("/opt/app", root.join("app")).unwrap();
        std::os::unix::fs::symlink("../../../../etc", root.join("opt/escape")).unwrap();
        let view = View::dir(&root);
        assert_eq!(
            view.resolve(Path::new("/app/x"), true).unwrap(),
            Path::new("opt/app/x")
        );
        assert_eq!(
            view.resolve(Path::new("/app"), false).unwrap(),
            Path::new("app")
        );
        // `..` never climbs above the root.
        assert_eq!(
            view.resolve(Path::new("/opt/escape/passwd"), true).unwrap(),
            Path::new("etc/passwd")
        );
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        assert!(matches!(
            view.resolve(Path::new("/loop"), true),
            Err(FileOpError::SymlinkLoop { .. })
        ));
    }

    #[test]
    fn clean_never_leaves_the_root() {
        assert_eq!(clean(Path::new("/a/../../b/./c")), Path::new("b/c"));
        assert_eq!(clean(Path::new("..")), Path::new(""));
    }
}
