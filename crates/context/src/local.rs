//! A build context on local disk: its root, its Dockerfile, its ignore
//! rules; the filtered walk and the checksums of what COPY/ADD read.

use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use globset::{GlobBuilder, GlobMatcher};
use rayon::prelude::*;
use sha2::{Digest as _, Sha256};

use crate::error::{ContextError, Result};
use crate::exclude::ExcludeSet;
use crate::hash::{Stamp, StatCache, file_digest};
use crate::ignore::{Ancestry, Matcher};

/// Symlinks followed while resolving one path, like Linux's `MAXSYMLINKS`.
const MAX_SYMLINKS: usize = 40;

/// The name docker looks for first, then its lowercase form.
pub const DEFAULT_DOCKERFILE: &str = "Dockerfile";

/// Where the Dockerfile comes from.
#[derive(Debug, Clone, Default)]
pub enum DockerfileSpec {
    /// `CONTEXT/Dockerfile`, else `CONTEXT/dockerfile` (docker's lookup).
    #[default]
    Default,
    /// `-f PATH`: for a local directory relative to the current directory
    /// (it may lie outside the context); for remote contexts relative to
    /// the context root.
    Path(PathBuf),
    /// `-f -`: the text itself (read from stdin by the caller).
    Text(Vec<u8>),
}

/// The Dockerfile of a build, always readable whatever `.dockerignore` says.
#[derive(Debug, Clone)]
pub struct Dockerfile {
    /// Where it is on disk (`None` for `-f -`).
    pub path: Option<PathBuf>,
    /// How to name it in messages (`Dockerfile`, `build/app.Dockerfile`, `-`).
    pub name: String,
    /// Its content.
    pub text: Vec<u8>,
}

/// A build context ready to read: a root directory, the Dockerfile, and the
/// `.dockerignore` rules. Cloning is cheap; all methods take `&self` and
/// can run from several threads.
#[derive(Debug, Clone)]
pub struct Context {
    root: PathBuf,
    dockerfile: Dockerfile,
    ignore: Arc<Matcher>,
    ignore_file: Option<PathBuf>,
    cache: Option<Arc<StatCache>>,
    /// The directory of a context extracted for this build (stdin), removed
    /// when the last clone is dropped.
    _temp: Option<Arc<tempfile::TempDir>>,
    /// A shared hold on the remote-context cache the root lies in, so that
    /// a prune waits until this context is no longer used.
    #[allow(dead_code)] // held for its Drop only
    cache_lock: Option<Arc<crate::cache::CacheLock>>,
}

/// Which entries one COPY/ADD source list reads, and how (the fields of
/// the solver's copy action that change what is read).
#[derive(Debug, Clone)]
pub struct SourceOptions {
    /// Sources may be glob patterns (`*`, `?`, `[...]`, per path component).
    pub allow_wildcard: bool,
    /// A source that is a symlink is followed (Dockerfile COPY/ADD do).
    pub follow_symlinks: bool,
    /// `COPY --exclude` patterns, matched against paths inside each copied
    /// directory (as the copy engine does).
    pub exclude: Vec<String>,
}

impl Default for SourceOptions {
    fn default() -> SourceOptions {
        SourceOptions {
            allow_wildcard: true,
            follow_symlinks: true,
            exclude: Vec::new(),
        }
    }
}

/// The type of a context entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (kept as a link, never followed inside a copied tree).
    Symlink,
}

impl EntryKind {
    fn tag(self) -> &'static str {
        match self {
            EntryKind::File => "file",
            EntryKind::Dir => "dir",
            EntryKind::Symlink => "symlink",
        }
    }
}

/// One entry of the context, as a walk or a selection sees it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Path relative to the context root (empty for the root itself).
    pub rel: PathBuf,
    /// File, directory or symlink.
    pub kind: EntryKind,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes (of a file; of the link text for a symlink).
    pub size: u64,
    /// A symlink's target, as written.
    pub link_target: Option<PathBuf>,
    stamp: Stamp,
}

impl Entry {
    fn from_meta(rel: PathBuf, disk: &Path, meta: &Metadata) -> Result<Entry> {
        Entry::from_meta_with(rel, meta, || disk.to_path_buf())
    }

    /// [`Entry::from_meta`] with the path on disk made only for a symlink
    /// (to read its target).
    fn from_meta_with(
        rel: PathBuf,
        meta: &Metadata,
        disk: impl FnOnce() -> PathBuf,
    ) -> Result<Entry> {
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_symlink() {
            EntryKind::Symlink
        } else if ft.is_file() {
            EntryKind::File
        } else {
            let kind = if ft.is_fifo() {
                "fifo"
            } else if ft.is_socket() {
                "socket"
            } else {
                "device"
            };
            return Err(ContextError::Unsupported { path: rel, kind });
        };
        let link_target = if kind == EntryKind::Symlink {
            Some(fs_err::read_link(disk())?)
        } else {
            None
        };
        Ok(Entry {
            rel,
            kind,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            size: meta.size(),
            link_target,
            stamp: Stamp::of(meta),
        })
    }
}

/// One entry's part of a cache key, for keys that can say which file
/// changed (see [`Context::file_sums`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSum {
    /// Relative to the context root; `.` for the root itself.
    pub path: String,
    /// File, directory or symlink.
    pub kind: EntryKind,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// `sha256:<hex>` of a file's content, a symlink's target, or empty.
    pub content: String,
}

impl std::fmt::Display for FileSum {
    /// `KIND MODE UID:GID CONTENT`, e.g. `file 644 0:0 sha256:…`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {:o} {}:{} {}",
            self.kind.tag(),
            self.mode,
            self.uid,
            self.gid,
            self.content
        )
    }
}

/// A checksum of context content (sha256), as `sha256:<hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Checksum(String);

impl Checksum {
    /// `sha256:<64 hex digits>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Checksum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What one COPY/ADD source list reads from the context: every entry,
/// relative to the context root, in a stable order.
#[derive(Debug, Clone)]
pub struct Selection {
    /// One group per source text, in order: the text and what it matched.
    sources: Vec<(String, Vec<Matched>)>,
}

/// One path a source matched, and the entries read under it.
#[derive(Debug, Clone)]
struct Matched {
    /// The path as matched (before following a final symlink).
    rel: PathBuf,
    /// Symlinks followed to reach it (they are read too).
    via: Vec<Entry>,
    /// The entry and, for a directory, everything under it (sorted), in
    /// runs as the walk made them (never copied into one list).
    entries: Vec<Vec<Entry>>,
}

impl Selection {
    /// Every entry read, sorted by path, without duplicates: the matched
    /// paths, the symlinks followed to reach them, and the contents of
    /// matched directories (ignore rules and `exclude` applied).
    pub fn entries(&self) -> Vec<&Entry> {
        let mut all: Vec<&Entry> = self.read().collect();
        // One source matching one directory (`COPY . /`) is sorted already.
        if !all.is_sorted_by(|a, b| a.rel < b.rel) {
            all.sort_by(|a, b| a.rel.cmp(&b.rel));
            all.dedup_by(|a, b| a.rel == b.rel);
        }
        all
    }

    /// Every entry as the checksum reads them: per source, per match, the
    /// symlinks followed then the entries (duplicates kept).
    fn read(&self) -> impl Iterator<Item = &Entry> {
        self.sources
            .iter()
            .flat_map(|(_, m)| m.iter())
            .flat_map(|m| m.via.iter().chain(m.entries.iter().flatten()))
    }

    /// The paths each source text matched (relative to the root).
    pub fn matched(&self) -> impl Iterator<Item = (&str, Vec<&Path>)> {
        self.sources
            .iter()
            .map(|(text, m)| (text.as_str(), m.iter().map(|m| m.rel.as_path()).collect()))
    }
}

/// A [`Selection`] with the content digest of each of its files (see
/// [`Context::digest`]).
#[derive(Debug)]
pub struct Digested<'a> {
    selection: &'a Selection,
    /// One per entry of [`Selection::read`], in its order (`None` for
    /// directories and symlinks).
    digests: Vec<Option<[u8; 32]>>,
}

impl Digested<'_> {
    /// The checksum of the selection: sha256 over each entry's relative
    /// path, type, mode, owner, symlink target and content digest, grouped
    /// by source.
    pub fn checksum(&self) -> Checksum {
        let mut h = Sha256::new();
        h.update(b"kiln-context-checksum-v1\n");
        let mut digests = self.digests.iter();
        let mut scratch = Vec::with_capacity(256);
        for (text, matched) in &self.selection.sources {
            h.update(b"source\0");
            h.update(text.as_bytes());
            h.update(b"\n");
            for m in matched {
                h.update(b"match\0");
                h.update(m.rel.as_os_str().as_bytes());
                h.update(b"\n");
                for e in m.via.iter().chain(m.entries.iter().flatten()) {
                    let d = digests.next().and_then(Option::as_ref);
                    write_entry(&mut h, &mut scratch, e, d);
                }
            }
        }
        Checksum(format!("sha256:{}", hex::encode(h.finalize())))
    }

    /// Every entry read with its metadata and content digest, sorted by
    /// path, without duplicates.
    pub fn file_sums(&self) -> Vec<FileSum> {
        let mut all: Vec<(&Entry, Option<&[u8; 32]>)> = self
            .selection
            .read()
            .zip(self.digests.iter().map(Option::as_ref))
            .collect();
        if !all.is_sorted_by(|a, b| a.0.rel < b.0.rel) {
            all.sort_by(|a, b| a.0.rel.cmp(&b.0.rel));
            all.dedup_by(|a, b| a.0.rel == b.0.rel);
        }
        all.into_iter()
            .map(|(e, digest)| FileSum {
                path: if e.rel.as_os_str().is_empty() {
                    ".".to_owned()
                } else {
                    e.rel.to_string_lossy().into_owned()
                },
                kind: e.kind,
                mode: e.mode,
                uid: e.uid,
                gid: e.gid,
                content: match (&e.link_target, digest) {
                    (Some(t), _) => t.to_string_lossy().into_owned(),
                    (None, Some(d)) => format!("sha256:{}", hex::encode(d)),
                    (None, None) => String::new(),
                },
            })
            .collect()
    }
}

impl Context {
    /// Open a local directory as a context. The Dockerfile is found as
    /// docker finds it; the ignore file is `<Dockerfile>.dockerignore`
    /// next to the Dockerfile if there is one, else `CONTEXT/.dockerignore`.
    pub fn from_dir(dir: impl AsRef<Path>, dockerfile: DockerfileSpec) -> Result<Context> {
        Context::from_root(dir.as_ref(), dockerfile, None)
    }

    pub(crate) fn from_root(
        dir: &Path,
        dockerfile: DockerfileSpec,
        temp: Option<Arc<tempfile::TempDir>>,
    ) -> Result<Context> {
        let root = match std::fs::canonicalize(dir) {
            Ok(p) if p.is_dir() => p,
            _ => {
                return Err(ContextError::NotADirectory {
                    path: dir.to_path_buf(),
                });
            }
        };
        let dockerfile = match dockerfile {
            DockerfileSpec::Text(text) => Dockerfile {
                path: None,
                name: "-".to_owned(),
                text,
            },
            DockerfileSpec::Path(p) => {
                // Inside a fetched context, name it relative to the root.
                let name = p
                    .strip_prefix(dir)
                    .or_else(|_| p.strip_prefix(&root))
                    .unwrap_or(&p)
                    .display()
                    .to_string();
                read_dockerfile(&p, name)?
            }
            DockerfileSpec::Default => {
                let upper = root.join(DEFAULT_DOCKERFILE);
                let lower = root.join("dockerfile");
                let path = if std::fs::symlink_metadata(&upper).is_err()
                    && std::fs::symlink_metadata(&lower).is_ok()
                {
                    lower
                } else {
                    upper
                };
                let name = path
                    .strip_prefix(&root)
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                read_dockerfile(&path, name)?
            }
        };
        let mut ctx = Context {
            root,
            dockerfile,
            ignore: Arc::new(Matcher::empty()),
            ignore_file: None,
            cache: None,
            _temp: temp,
            cache_lock: None,
        };
        ctx.load_default_ignore()?;
        Ok(ctx)
    }

    /// A directory of files only: no Dockerfile, no ignore rules.
    pub(crate) fn files_only(dir: &Path) -> Result<Context> {
        let mut ctx = Context::from_root(dir, DockerfileSpec::Text(Vec::new()), None)?;
        ctx.set_ignore(Matcher::empty());
        Ok(ctx)
    }

    fn load_default_ignore(&mut self) -> Result<()> {
        match find_ignore_file(&self.root, self.dockerfile.path.as_deref()) {
            Some(path) => self.set_ignore_file(&path),
            None => Ok(()),
        }
    }

    /// Keep the remote-context cache held while this context (or a clone)
    /// lives.
    pub(crate) fn hold_cache(mut self, lock: Arc<crate::cache::CacheLock>) -> Context {
        self.cache_lock = Some(lock);
        self
    }

    /// Use the rules of `path` instead of the ones found by default.
    pub fn set_ignore_file(&mut self, path: &Path) -> Result<()> {
        let text = fs_err::read(path)?;
        let name = match path.strip_prefix(&self.root) {
            Ok(rel) => rel.display().to_string(),
            Err(_) => path.display().to_string(),
        };
        self.ignore = Arc::new(Matcher::parse(name, &text)?);
        self.ignore_file = Some(path.to_path_buf());
        Ok(())
    }

    /// Use `matcher` as the ignore rules.
    pub fn set_ignore(&mut self, matcher: Matcher) {
        self.ignore = Arc::new(matcher);
        self.ignore_file = None;
    }

    /// Keep file digests in `cache` (see [`StatCache`]); call
    /// [`StatCache::save`] when done.
    pub fn set_stat_cache(&mut self, cache: Arc<StatCache>) {
        self.cache = Some(cache);
    }

    /// The context's root directory (absolute, symlinks resolved).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The Dockerfile.
    pub fn dockerfile(&self) -> &Dockerfile {
        &self.dockerfile
    }

    /// The ignore rules in effect (empty when there is no ignore file).
    pub fn ignore(&self) -> &Matcher {
        &self.ignore
    }

    /// The ignore file in effect, if any.
    pub fn ignore_file(&self) -> Option<&Path> {
        self.ignore_file.as_deref()
    }

    /// Whether `rel` (relative to the root, `/`-separated) is excluded.
    pub fn is_excluded(&self, rel: &Path) -> bool {
        self.ignore.is_excluded_path(rel)
    }

    /// Every entry of the context that is not excluded, sorted by path,
    /// the root not included. Directories excluded themselves but holding
    /// re-included entries are listed (a build sees them as parents).
    pub fn walk(&self) -> Result<Vec<Entry>> {
        let root_meta = fs_err::symlink_metadata(&self.root)?;
        let root = Entry::from_meta(PathBuf::new(), &self.root, &root_meta)?;
        self.walk_dir(&root, &Ancestry::default(), None)
    }

    /// The entries under directory entry `dir` (not `dir` itself), not
    /// excluded by the ignore rules nor by `exclude` (relative to `base`),
    /// sorted by path: each directory's names are sorted before descending,
    /// so the pre-order walk comes out in `Path` order with no sort of the
    /// whole list. `ancestry` says which ignore rules match `dir` or a
    /// parent of it, so each entry is matched once. An excluded directory
    /// is not entered unless a `!` rule may re-include something below it;
    /// an excluded file is not even stat'ed. Entries are stat'ed relative
    /// to their directory (no walk of the whole path per file), a run of
    /// names per task, in parallel; subdirectories are walked in parallel.
    fn walk_dir(
        &self,
        dir: &Entry,
        ancestry: &Ancestry,
        exclude: Option<(&ExcludeSet, &Path)>,
    ) -> Result<Vec<Entry>> {
        let mut runs = Vec::new();
        self.walk_into(dir, ancestry, exclude, &mut runs)?;
        // Each entry is moved once, here: the parallel walk hands back
        // runs in order rather than copying subtrees up level by level.
        let mut out = Vec::with_capacity(runs.iter().map(Vec::len).sum());
        for run in runs {
            out.extend(run);
        }
        Ok(out)
    }

    /// [`Context::walk_dir`]'s entries, as runs appended to `runs`.
    fn walk_into(
        &self,
        dir: &Entry,
        ancestry: &Ancestry,
        exclude: Option<(&ExcludeSet, &Path)>,
        runs: &mut Vec<Vec<Entry>>,
    ) -> Result<()> {
        let disk = self.root.join(&dir.rel);
        let mut children = Vec::new();
        for item in fs_err::read_dir(&disk)? {
            let item = item?;
            children.push((item.file_name(), item));
        }
        children.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        // A few tasks per thread: big enough that a task's overhead is
        // small next to its stats, small enough to spread one directory's
        // files (or subdirectories) over the threads.
        let chunk = children
            .len()
            .div_ceil(4 * rayon::current_num_threads())
            .max(1);
        let parts = children
            .par_chunks(chunk)
            .map(|names| {
                let mut runs = Vec::new();
                let mut run = Vec::with_capacity(names.len());
                for (i, (name, item)) in names.iter().enumerate() {
                    let left = names.len() - i - 1;
                    self.walk_entry(
                        dir, ancestry, exclude, name, item, &mut run, &mut runs, left,
                    )?;
                }
                if !run.is_empty() {
                    runs.push(run);
                }
                Ok(runs)
            })
            .collect::<Result<Vec<Vec<Vec<Entry>>>>>()?;
        for part in parts {
            runs.extend(part);
        }
        Ok(())
    }

    /// One entry of [`Context::walk_dir`], unless excluded: a file is
    /// pushed to `run`; a directory ends `run` (moved to `runs`, a new one
    /// made for the `left` names to come) and its subtree's runs follow.
    #[allow(clippy::too_many_arguments)] // one walk's state, passed down
    fn walk_entry(
        &self,
        dir: &Entry,
        ancestry: &Ancestry,
        exclude: Option<(&ExcludeSet, &Path)>,
        name: &std::ffi::OsStr,
        item: &fs_err::DirEntry,
        run: &mut Vec<Entry>,
        runs: &mut Vec<Vec<Entry>>,
        left: usize,
    ) -> Result<()> {
        let mut rel = PathBuf::with_capacity(dir.rel.as_os_str().len() + name.len() + 1);
        rel.push(&dir.rel);
        rel.push(name);
        // The walk never enters an excluded directory, so only the entry
        // itself can match a `--exclude` pattern.
        if let Some((set, base)) = exclude
            && set.matches(rel.strip_prefix(base).unwrap_or(&rel))
        {
            return Ok(());
        }
        let (excluded, own) = if self.ignore.is_empty() {
            (false, None)
        } else {
            // The type from the directory listing (no stat): an excluded
            // file is dropped unstat'ed.
            let is_dir = item.file_type()?.is_dir();
            let text = rel.to_string_lossy();
            let (excluded, own) = self.ignore.walk_verdict(&text, ancestry, is_dir);
            if excluded && (!is_dir || !self.ignore.may_reinclude_below(&text)) {
                return Ok(());
            }
            (excluded, own)
        };
        let meta = item.metadata()?;
        let entry = Entry::from_meta_with(rel, &meta, || item.path())?;
        if entry.kind != EntryKind::Dir {
            run.push(entry);
            return Ok(());
        }
        let mut below = Vec::new();
        self.walk_into(
            &entry,
            own.as_ref().unwrap_or(ancestry),
            exclude,
            &mut below,
        )?;
        if excluded && below.iter().all(Vec::is_empty) {
            return Ok(());
        }
        run.push(entry);
        runs.push(std::mem::replace(run, Vec::with_capacity(left)));
        runs.extend(below);
        Ok(())
    }

    /// Expand COPY/ADD `sources` the way the copy engine does (paths
    /// relative to the root, globs per component, a directory meaning all
    /// of its contents) and list what they read. Errors for a source that
    /// leaves the context, or that matches nothing (only a pattern may
    /// match nothing, and only when `allow_empty` is set).
    pub fn select<S: AsRef<str>>(
        &self,
        sources: &[S],
        opts: &SourceOptions,
        allow_empty: bool,
    ) -> Result<Selection> {
        let exclude = ExcludeSet::new(&opts.exclude)?;
        let mut groups = Vec::new();
        for text in sources {
            let text = text.as_ref();
            let is_pattern = opts.allow_wildcard && has_meta(text);
            let mut matched = Vec::new();
            for rel in self.expand(text, opts.allow_wildcard)? {
                let mut via = Vec::new();
                let resolved = self.resolve(text, &rel, opts.follow_symlinks, &mut via)?;
                let disk = self.root.join(&resolved);
                let meta = match std::fs::symlink_metadata(&disk) {
                    Ok(m) => m,
                    Err(_) if is_pattern => continue,
                    Err(_) => {
                        return Err(ContextError::NotFound {
                            path: text.to_owned(),
                            excluded: false,
                        });
                    }
                };
                if !resolved.as_os_str().is_empty() && self.ignore.is_excluded_path(&resolved) {
                    if is_pattern {
                        continue;
                    }
                    return Err(ContextError::NotFound {
                        path: text.to_owned(),
                        excluded: true,
                    });
                }
                let entry = Entry::from_meta(resolved.clone(), &disk, &meta)?;
                let mut entries = Vec::new();
                if entry.kind == EntryKind::Dir {
                    self.walk_into(
                        &entry,
                        &self.ignore.ancestry_of(&resolved.to_string_lossy()),
                        exclude.as_ref().map(|s| (s, resolved.as_path())),
                        &mut entries,
                    )?;
                }
                entries.insert(0, vec![entry]);
                matched.push(Matched { rel, via, entries });
            }
            if matched.is_empty() && (!is_pattern || !allow_empty) {
                return Err(ContextError::NotFound {
                    path: text.to_owned(),
                    excluded: false,
                });
            }
            groups.push((text.to_owned(), matched));
        }
        Ok(Selection { sources: groups })
    }

    /// The checksum of exactly what `sources` read (see [`Context::select`]):
    /// sha256 over each entry's relative path, type, mode, owner, symlink
    /// target and content digest, grouped by source. File contents are
    /// hashed in parallel, through the stat cache when one is set.
    pub fn checksum<S: AsRef<str>>(
        &self,
        sources: &[S],
        opts: &SourceOptions,
        allow_empty: bool,
    ) -> Result<Checksum> {
        let selection = self.select(sources, opts, allow_empty)?;
        self.checksum_of(&selection)
    }

    /// Hash the files of a selection (in parallel, through the stat cache
    /// when one is set), once: the result gives both the checksum and the
    /// per-file listing without reading anything again.
    pub fn digest<'a>(&self, selection: &'a Selection) -> Result<Digested<'a>> {
        let read: Vec<&Entry> = selection.read().collect();
        let digests = read
            .par_iter()
            .map(|e| {
                if e.kind != EntryKind::File {
                    return Ok(None);
                }
                file_digest(&self.root, &e.rel, &e.stamp, self.cache.as_deref()).map(Some)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Digested { selection, digests })
    }

    /// Every entry a selection reads with its metadata and content digest,
    /// sorted by path: the per-file form of [`Context::checksum_of`], for
    /// cache keys that can explain a miss file by file. (To have both, use
    /// [`Context::digest`]: it hashes once.)
    pub fn file_sums(&self, selection: &Selection) -> Result<Vec<FileSum>> {
        Ok(self.digest(selection)?.file_sums())
    }

    /// The checksum of a selection made by [`Context::select`].
    pub fn checksum_of(&self, selection: &Selection) -> Result<Checksum> {
        Ok(self.digest(selection)?.checksum())
    }

    /// Expand one source into candidate paths (relative, not resolved),
    /// as the copy engine does: components with glob syntax are matched
    /// against directory listings (excluded entries are not seen).
    fn expand(&self, text: &str, wildcard: bool) -> Result<Vec<PathBuf>> {
        let cleaned = lexical(text)?;
        let mut found = vec![PathBuf::new()];
        for comp in &cleaned {
            let comp_str = comp.to_string_lossy();
            let mut next = Vec::new();
            for base in &found {
                if wildcard && has_meta(&comp_str) {
                    let matcher = component_glob(&comp_str)?;
                    let mut via = Vec::new();
                    let dir = self.resolve(text, base, true, &mut via)?;
                    let disk = self.root.join(&dir);
                    if disk.is_dir() {
                        let mut names: Vec<_> = fs_err::read_dir(&disk)?
                            .filter_map(std::result::Result::ok)
                            .map(|e| e.file_name())
                            .collect();
                        names.sort();
                        for name in names {
                            if matcher.is_match(Path::new(&name))
                                && !self.ignore.is_excluded_path(&dir.join(&name))
                            {
                                next.push(base.join(&name));
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

    /// Resolve symlinks in `rel` inside the root (see [`resolve_in`]).
    fn resolve(
        &self,
        text: &str,
        rel: &Path,
        follow_last: bool,
        via: &mut Vec<Entry>,
    ) -> Result<PathBuf> {
        resolve_in(&self.root, text, rel, follow_last, via)
    }
}

/// Resolve symlinks in `rel` (already lexically clean) inside `root`. A link that points out of
/// the context (absolute, or `..` past the root) is an error; the links
/// followed are pushed to `via`. Missing components are kept.
pub(crate) fn resolve_in(
    root: &Path,
    text: &str,
    rel: &Path,
    follow_last: bool,
    via: &mut Vec<Entry>,
) -> Result<PathBuf> {
    let mut pending: Vec<std::ffi::OsString> =
        rel.iter().map(std::ffi::OsStr::to_os_string).collect();
    pending.reverse();
    let mut out = PathBuf::new();
    let mut hops = 0;
    while let Some(name) = pending.pop() {
        if name == ".." {
            if !out.pop() {
                return Err(ContextError::Escape {
                    path: text.to_owned(),
                    via: via.last().map(|e| e.rel.clone()),
                });
            }
            continue;
        }
        if name == "." {
            continue;
        }
        let candidate = out.join(&name);
        if pending.is_empty() && !follow_last {
            out = candidate;
            break;
        }
        let disk = root.join(&candidate);
        match std::fs::symlink_metadata(&disk) {
            Ok(meta) if meta.file_type().is_symlink() => {
                hops += 1;
                if hops > MAX_SYMLINKS {
                    return Err(ContextError::SymlinkLoop {
                        path: text.to_owned(),
                    });
                }
                let entry = Entry::from_meta(candidate.clone(), &disk, &meta)?;
                let target = entry.link_target.clone().unwrap_or_default();
                via.push(entry);
                if target.is_absolute() {
                    return Err(ContextError::Escape {
                        path: text.to_owned(),
                        via: Some(candidate),
                    });
                }
                let mut parts: Vec<_> = target.iter().map(std::ffi::OsStr::to_os_string).collect();
                parts.reverse();
                pending.extend(parts);
            }
            _ => out = candidate,
        }
    }
    Ok(out)
}

/// The ignore file docker uses for a context directory and a Dockerfile:
/// `<Dockerfile>.dockerignore` next to the Dockerfile if it exists, else
/// `CONTEXT/.dockerignore` if it exists.
pub fn find_ignore_file(context_dir: &Path, dockerfile: Option<&Path>) -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(path) = dockerfile
        && let (Some(dir), Some(name)) = (path.parent(), path.file_name())
    {
        let mut n = name.to_os_string();
        n.push(".dockerignore");
        candidates.push(dir.join(n));
    }
    candidates.push(context_dir.join(".dockerignore"));
    candidates.into_iter().find(|c| c.is_file())
}

fn read_dockerfile(path: &Path, name: String) -> Result<Dockerfile> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => {}
        Ok(_) => {
            return Err(ContextError::DockerfileNotAFile {
                path: path.to_path_buf(),
            });
        }
        Err(_) => {
            return Err(ContextError::NoDockerfile {
                path: path.to_path_buf(),
            });
        }
    }
    let text = fs_err::read(path)?;
    Ok(Dockerfile {
        path: Some(std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())),
        name,
        text,
    })
}

/// A source path cleaned lexically; `..` past the root is an error (the
/// context has nothing above its root).
pub(crate) fn lexical(text: &str) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in Path::new(text).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                if !out.pop() {
                    return Err(ContextError::Escape {
                        path: text.to_owned(),
                        via: None,
                    });
                }
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    Ok(out)
}

/// One entry's part of the checksum, made in `buf` and hashed in one
/// update: `PATH\0KIND\0MODE(octal)\0UID\0GID\0LINK\0HEX-DIGEST\n`.
fn write_entry(h: &mut Sha256, buf: &mut Vec<u8>, e: &Entry, digest: Option<&[u8; 32]>) {
    buf.clear();
    buf.extend_from_slice(e.rel.as_os_str().as_bytes());
    buf.push(0);
    buf.extend_from_slice(e.kind.tag().as_bytes());
    buf.push(0);
    push_number(buf, e.mode, 8);
    buf.push(0);
    push_number(buf, e.uid, 10);
    buf.push(0);
    push_number(buf, e.gid, 10);
    buf.push(0);
    if let Some(t) = &e.link_target {
        buf.extend_from_slice(t.as_os_str().as_bytes());
    }
    buf.push(0);
    if let Some(d) = digest {
        let mut hex = [0u8; 64];
        if hex::encode_to_slice(d, &mut hex).is_ok() {
            buf.extend_from_slice(&hex);
        }
    }
    buf.push(b'\n');
    h.update(&buf[..]);
}

/// `n` in base `radix` (8 or 10), as `format!` writes it.
fn push_number(buf: &mut Vec<u8>, mut n: u32, radix: u32) {
    let mut digits = [0u8; 11];
    let mut i = digits.len();
    loop {
        i -= 1;
        // A digit below 10 always fits a u8.
        digits[i] = b'0' + (n % radix).to_le_bytes()[0];
        n /= radix;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[i..]);
}

/// Whether a path component has glob syntax.
fn has_meta(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

fn component_glob(pattern: &str) -> Result<GlobMatcher> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| ContextError::BadSource {
            pattern: pattern.to_owned(),
            reason: e.kind().to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checksum's entry encoding as first written (several updates,
    /// `write!` for the numbers): the one-buffer form must hash the same
    /// bytes, or every cache key would change.
    fn write_entry_v1(h: &mut Sha256, e: &Entry, digest: Option<&[u8; 32]>) {
        h.update(e.rel.as_os_str().as_bytes());
        h.update(b"\0");
        h.update(e.kind.tag().as_bytes());
        h.update(format!("\0{:o}\0{}\0{}\0", e.mode, e.uid, e.gid).as_bytes());
        if let Some(t) = &e.link_target {
            h.update(t.as_os_str().as_bytes());
        }
        h.update(b"\0");
        if let Some(d) = digest {
            h.update(hex::encode(d).as_bytes());
        }
        h.update(b"\n");
    }

    #[test]
    fn entry_encoding_is_unchanged() {
        let stamp = Stamp {
            dev: 0,
            ino: 0,
            size: 0,
            mtime_ns: 0,
            ctime_ns: 0,
        };
        let mut buf = Vec::new();
        for (i, (mode, uid, gid)) in [
            (0, 0, 0),
            (0o644, 1000, 1000),
            (0o7777, u32::MAX, 65534),
            (0o755, 7, 4_000_000_000),
        ]
        .into_iter()
        .enumerate()
        {
            let e = Entry {
                rel: PathBuf::from(format!("dir/f{i}")),
                kind: [EntryKind::File, EntryKind::Dir, EntryKind::Symlink][i % 3],
                mode,
                uid,
                gid,
                size: 3,
                link_target: (i % 3 == 2).then(|| PathBuf::from("../target")),
                stamp,
            };
            let digest = (i % 2 == 0).then_some([i.to_le_bytes()[0] * 17; 32]);
            let (mut a, mut b) = (Sha256::new(), Sha256::new());
            write_entry(&mut a, &mut buf, &e, digest.as_ref());
            write_entry_v1(&mut b, &e, digest.as_ref());
            assert_eq!(a.finalize(), b.finalize(), "{e:?}");
        }
    }
}
