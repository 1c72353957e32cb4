//! File actions (COPY/ADD, mkdir, mkfile) applied as a new layer directory
//! on top of a [`View`], with BuildKit's copy semantics:
//!
//! - sources are paths or (with `allow_wildcard`) patterns relative to the
//!   source root, symlinks resolved inside it, never escaping it;
//! - a directory source copies its contents (`dir_contents_only`), merged
//!   into what is already there;
//! - the destination is a directory when it ends with `/`, when there are
//!   several sources, or when it already is one; else it names the copy;
//! - missing parents are created (`0755`, owned by `--chown` or root);
//! - owners: `--chown` (names resolved in the destination), else the
//!   op's default (root for the build context), else the source's;
//!   `--chmod` applies to every copied file and directory;
//! - hard links inside a copied tree stay hard links; mtimes are kept.
//!
//! Big regular files (1 MiB and up) are created during the walk and their
//! contents copied afterwards, several at once (`copy_file_range`, on the
//! rayon pool), each through the descriptor opened when it was created:
//! a later source replacing the same path cannot receive an earlier one's
//! content or metadata.
//!
//! The new layer only holds what changed, plus the parent directories of
//! what changed (with their existing metadata), as an overlay upper dir
//! would.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::fs::FileTypeExt as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};
use kiln_context::{ContextError, ExcludeSet};
use rayon::prelude::*;

use super::perm::{Chmod, Owner, resolve_owner};
use super::view::{Entry, View, clean};
use super::{Copy, FileAction, FileOpError};

/// A source filesystem of a file op.
#[derive(Debug, Clone)]
pub struct Source {
    /// Its files.
    pub view: View,
    /// Owner of copies when no `--chown` is given (`None`: the source
    /// file's own). The build context's files are owned by root.
    pub default_owner: Option<Owner>,
}

/// What a file op wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CopyStats {
    /// Regular files written.
    pub files: u64,
    /// Directories created.
    pub dirs: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Bytes of file content written.
    pub bytes: u64,
}

/// Apply `actions` on top of `base`, writing the changes into the empty
/// directory `out`. `sources[i]` is the op's input `i`.
pub fn apply_actions(
    actions: &[FileAction],
    base: &View,
    sources: &[Source],
    out: &Path,
) -> Result<CopyStats, FileOpError> {
    apply_actions_with_users(actions, base, None, sources, out)
}

/// [`apply_actions`] with `--chown` names resolved in `users` (the image
/// the result is stacked on) instead of `base`: for `COPY --link`, whose
/// copy is made on an empty filesystem.
pub fn apply_actions_with_users(
    actions: &[FileAction],
    base: &View,
    users: Option<&View>,
    sources: &[Source],
    out: &Path,
) -> Result<CopyStats, FileOpError> {
    let mut layers = base.layers().to_vec();
    layers.push(out.to_path_buf());
    let mut w = Writer {
        users: users.cloned(),
        state: View::new(layers),
        out: out.to_path_buf(),
        stats: CopyStats::default(),
        links: HashMap::new(),
        pending: Vec::new(),
    };
    for action in actions {
        match action {
            FileAction::Copy(copy) => {
                let source = sources
                    .get(copy.from)
                    .ok_or(FileOpError::NoSuchInput { input: copy.from })?;
                w.links.clear();
                w.copy(copy, source)?;
                w.flush()?;
            }
            FileAction::Mkdir {
                path,
                mode,
                parents,
                chown,
            } => {
                let owner = w.owner(chown.as_ref(), None)?;
                let rel = w.state.resolve(Path::new(path), true)?;
                if let Some(parent) = rel.parent() {
                    if !*parents && w.state.lookup(parent)?.is_none() {
                        return Err(FileOpError::NotFound {
                            path: parent.to_path_buf(),
                        });
                    }
                    w.ensure_dir(parent, owner)?;
                }
                match w.state.lookup(&rel)? {
                    Some(e) if e.meta.is_dir() => {}
                    Some(_) => return Err(FileOpError::NotADirectory { path: rel }),
                    None => {
                        let disk = out.join(&rel);
                        fs_err::create_dir(&disk).map_err(FileOpError::Io)?;
                        set_meta(&disk, owner.unwrap_or(ROOT), *mode, None)?;
                        w.stats.dirs += 1;
                    }
                }
            }
            FileAction::Mkfile {
                path,
                mode,
                data,
                chown,
            } => {
                let owner = w.owner(chown.as_ref(), None)?;
                let rel = w.state.resolve(Path::new(path), true)?;
                if let Some(parent) = rel.parent() {
                    w.ensure_dir(parent, owner)?;
                }
                let disk = out.join(&rel);
                remove_in_out(&disk)?;
                fs_err::write(&disk, data).map_err(FileOpError::Io)?;
                set_meta(&disk, owner.unwrap_or(ROOT), *mode, None)?;
                w.stats.files += 1;
                w.stats.bytes += data.len() as u64;
            }
        }
    }
    Ok(w.stats)
}

const ROOT: Owner = Owner { uid: 0, gid: 0 };

struct Writer {
    /// Where `--chown` names are looked up, when not in `state`.
    users: Option<View>,
    /// The base plus `out`: the filesystem as it is now.
    state: View,
    out: PathBuf,
    stats: CopyStats,
    /// (dev, inode) of a copied multiply-linked file → where its copy is.
    links: HashMap<(u64, u64), PathBuf>,
    /// Big files created whose content is still to be copied.
    pending: Vec<Pending>,
}

/// Files at least this big are copied after the walk, several at once.
const DEFER_FROM: u64 = 1 << 20;
/// Pending copies at most (each holds a descriptor).
const PENDING_MAX: usize = 64;

/// A created, still empty copy of a big file: what the walk would have done
/// to it after its content.
struct Pending {
    from: PathBuf,
    file: std::fs::File,
    disk: PathBuf,
    owner: Owner,
    mode: u32,
    mtime: Option<std::time::SystemTime>,
}

impl Pending {
    /// Copy the content, then owner, mode (chown clears set-id bits) and
    /// mtime, all through the descriptor. Returns the bytes copied.
    fn finish(mut self) -> Result<u64, FileOpError> {
        use std::os::unix::fs::fchown;
        let mut from = fs_err::File::open(&self.from).map_err(FileOpError::Io)?;
        // File to file: std copies with copy_file_range.
        let bytes = std::io::copy(from.file_mut(), &mut self.file)
            .map_err(|e| FileOpError::io("copy", &self.disk, &e))?;
        fchown(&self.file, Some(self.owner.uid), Some(self.owner.gid))
            .map_err(|e| FileOpError::io("chown", &self.disk, &e))?;
        self.file
            .set_permissions(std::fs::Permissions::from_mode(self.mode))
            .map_err(|e| FileOpError::io("chmod", &self.disk, &e))?;
        if let Some(mtime) = self.mtime {
            self.file
                .set_modified(mtime)
                .map_err(|e| FileOpError::io("set mtime", &self.disk, &e))?;
        }
        Ok(bytes)
    }
}

/// Whether a path component has glob syntax.
fn has_meta(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

fn component_glob(pattern: &str) -> Result<GlobMatcher, FileOpError> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| FileOpError::BadPattern {
            pattern: pattern.to_owned(),
            reason: e.kind().to_string(),
        })
}

/// `--exclude` patterns as the context's selection compiles them (one
/// definition: the cache key covers exactly what the copy reads).
fn exclude_set(patterns: &[String]) -> Result<Option<ExcludeSet>, FileOpError> {
    ExcludeSet::new(patterns).map_err(|e| match e {
        ContextError::BadSource { pattern, reason } => FileOpError::BadPattern { pattern, reason },
        other => FileOpError::BadPattern {
            pattern: patterns.join(" "),
            reason: other.to_string(),
        },
    })
}

/// Whether `rel` or one of its parents matches an exclude pattern.
fn excluded(set: Option<&ExcludeSet>, rel: &Path) -> bool {
    set.is_some_and(|s| s.excludes(rel))
}

/// One matched source: where it is in the source view, and the path kept
/// under the destination with `--parents`.
struct Matched {
    rel: PathBuf,
    keep: PathBuf,
}

impl Writer {
    /// Copy the contents of the pending big files, in parallel.
    fn flush(&mut self) -> Result<(), FileOpError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let copied: Vec<Result<u64, FileOpError>> =
            pending.into_par_iter().map(Pending::finish).collect();
        for bytes in copied {
            self.stats.bytes += bytes?;
        }
        Ok(())
    }

    fn owner(
        &self,
        chown: Option<&super::Chown>,
        default: Option<Owner>,
    ) -> Result<Option<Owner>, FileOpError> {
        match chown {
            Some(c) => resolve_owner(
                self.users.as_ref().unwrap_or(&self.state),
                &c.user,
                c.group.as_deref(),
            )
            .map(Some),
            None => Ok(default),
        }
    }

    /// Expand one source (a path, or a pattern) in `view`.
    fn expand(view: &View, text: &str, wildcard: bool) -> Result<Vec<Matched>, FileOpError> {
        // `--parents` keeps what follows a `/./` pivot, else the whole path.
        let pivot = text
            .find("/./")
            .map_or_else(PathBuf::new, |i| clean(Path::new(&text[..i])));
        let cleaned = clean(Path::new(text));
        let mut found = vec![PathBuf::new()];
        for comp in &cleaned {
            let comp_str = comp.to_string_lossy();
            let mut next = Vec::new();
            for base in &found {
                if wildcard && has_meta(&comp_str) {
                    let matcher = component_glob(&comp_str)?;
                    let dir = view.resolve(base, true)?;
                    if view.lookup(&dir)?.is_some_and(|e| e.meta.is_dir()) {
                        for name in view.read_dir(&dir)?.into_keys() {
                            if matcher.is_match(Path::new(&name)) {
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
        Ok(found
            .into_iter()
            .map(|rel| {
                let keep = rel
                    .strip_prefix(&pivot)
                    .map_or_else(|_| rel.clone(), Path::to_path_buf);
                Matched { rel, keep }
            })
            .collect())
    }

    fn copy(&mut self, copy: &Copy, source: &Source) -> Result<(), FileOpError> {
        let owner = self.owner(copy.chown.as_ref(), source.default_owner)?;
        let chmod = copy.chmod.as_deref().map(Chmod::parse).transpose()?;
        let exclude = exclude_set(&copy.exclude)?;

        let mut matched = Vec::new();
        let mut patterns = false;
        for text in &copy.sources {
            let is_pattern = copy.allow_wildcard && has_meta(text);
            patterns |= is_pattern;
            let found = Self::expand(&source.view, text, copy.allow_wildcard)?;
            let mut any = false;
            for m in found {
                let rel = source.view.resolve(&m.rel, copy.follow_symlinks)?;
                match source.view.lookup(&rel)? {
                    Some(entry) => {
                        any = true;
                        matched.push((m, entry));
                    }
                    None if is_pattern => {}
                    None => {
                        return Err(FileOpError::NotFound {
                            path: Path::new("/").join(&m.rel),
                        });
                    }
                }
            }
            if !any && (!is_pattern || !copy.allow_empty_wildcard) {
                return Err(FileOpError::NotFound {
                    path: PathBuf::from(text),
                });
            }
        }

        let dest_text = &copy.dest;
        let wants_dir = dest_text.ends_with('/')
            || dest_text.ends_with("/.")
            || dest_text == "."
            || matched.len() > 1
            || patterns;
        let dest = self.state.resolve(Path::new(dest_text), true)?;
        let dest_is_dir = wants_dir
            || dest.as_os_str().is_empty()
            || self.state.lookup(&dest)?.is_some_and(|e| e.meta.is_dir());

        let opts = CopyOpts {
            owner,
            chmod: chmod.as_ref(),
            exclude: exclude.as_ref(),
        };
        for (m, entry) in matched {
            // ADD of a local tar (plain or compressed): its contents go into
            // the destination, made a directory, owners and modes as in the
            // archive. A file that only looks like one is copied.
            if copy.unpack_archives
                && entry.meta.is_file()
                && let Some(reader) = open_tar(&entry.disk)?
            {
                self.ensure_dir(&dest, owner)?;
                let disk = self.out.join(&dest);
                if !disk.is_dir() {
                    fs_err::create_dir_all(&disk).map_err(FileOpError::Io)?;
                }
                let stats = kiln_oci::layer::apply_layer(
                    reader,
                    &disk,
                    &kiln_oci::layer::ApplyOptions {
                        whiteouts: kiln_oci::layer::WhiteoutMode::Delete,
                        preserve_owner: true,
                    },
                )
                .map_err(|e| {
                    FileOpError::Io(std::io::Error::other(format!(
                        "extracting {}: {e}",
                        Path::new("/").join(&m.rel).display()
                    )))
                })?;
                self.stats.bytes += stats.content_bytes;
                continue;
            }
            let (target, contents) = if entry.meta.is_dir() && copy.dir_contents_only {
                let target = if copy.parents {
                    dest.join(&m.keep)
                } else {
                    dest.clone()
                };
                (target, true)
            } else if dest_is_dir {
                let name = if copy.parents {
                    m.keep.clone()
                } else {
                    PathBuf::from(m.rel.file_name().unwrap_or_else(|| OsStr::new("")))
                };
                (dest.join(name), false)
            } else {
                (dest.clone(), false)
            };
            let target = self.state.resolve(&target, false)?;
            if let Some(parent) = target.parent() {
                if copy.create_dest_path || self.state.lookup(parent)?.is_some() {
                    self.ensure_dir(parent, owner)?;
                } else {
                    return Err(FileOpError::NotFound {
                        path: Path::new("/").join(parent),
                    });
                }
            }
            let src_rel = source.view.resolve(&m.rel, copy.follow_symlinks)?;
            if contents {
                // An existing directory keeps its own metadata (BuildKit
                // only sets it on directories it creates).
                let existed = self.state.lookup(&target)?.is_some_and(|e| e.meta.is_dir());
                self.ensure_dir_meta(&target, &entry, &opts)?;
                self.copy_children(&source.view, &src_rel, &target, Path::new(""), &opts)?;
                if !existed {
                    // A destination created for a directory's contents is
                    // made like a missing parent (BuildKit's MkdirAll: 0755,
                    // owned by --chown or root), not a copy of the source.
                    set_meta(&self.out.join(&target), owner.unwrap_or(ROOT), 0o755, None)?;
                }
            } else {
                self.copy_entry(
                    &source.view,
                    &src_rel,
                    &entry,
                    &target,
                    Path::new(""),
                    &opts,
                )?;
            }
        }
        Ok(())
    }

    /// Make sure directory `rel` exists in `out`, copying the metadata of
    /// an existing directory in the state, or creating a new one.
    fn ensure_dir(&mut self, rel: &Path, owner: Option<Owner>) -> Result<(), FileOpError> {
        let mut prefix = PathBuf::new();
        for comp in rel {
            prefix.push(comp);
            let disk = self.out.join(&prefix);
            match self.state.lookup(&prefix)? {
                Some(e) if e.meta.is_dir() => {
                    if !disk.is_dir() {
                        fs_err::create_dir(&disk).map_err(FileOpError::Io)?;
                        set_meta(
                            &disk,
                            Owner {
                                uid: e.meta.uid(),
                                gid: e.meta.gid(),
                            },
                            e.meta.mode() & 0o7777,
                            e.meta.modified().ok(),
                        )?;
                    }
                }
                Some(e) if e.meta.file_type().is_symlink() => {
                    // Resolved paths never hold symlinks; one appearing here
                    // is a race with the filesystem changing under us.
                    return Err(FileOpError::NotADirectory { path: prefix });
                }
                Some(_) => return Err(FileOpError::NotADirectory { path: prefix }),
                None => {
                    fs_err::create_dir(&disk).map_err(FileOpError::Io)?;
                    set_meta(&disk, owner.unwrap_or(ROOT), 0o755, None)?;
                    self.stats.dirs += 1;
                }
            }
        }
        Ok(())
    }

    /// A directory being merged into: create it in `out` if needed.
    fn ensure_dir_meta(
        &mut self,
        target: &Path,
        src: &Entry,
        opts: &CopyOpts,
    ) -> Result<(), FileOpError> {
        match self.state.lookup(target)? {
            Some(e) if e.meta.is_dir() => self.ensure_dir(target, opts.owner),
            Some(_) => {
                let disk = self.out.join(target);
                remove_in_out(&disk)?;
                fs_err::create_dir(&disk).map_err(FileOpError::Io)?;
                self.stats.dirs += 1;
                finish_meta(&disk, src, opts)
            }
            None => {
                fs_err::create_dir(self.out.join(target)).map_err(FileOpError::Io)?;
                self.stats.dirs += 1;
                Ok(())
            }
        }
    }

    fn copy_children(
        &mut self,
        view: &View,
        src_dir: &Path,
        target_dir: &Path,
        rel: &Path,
        opts: &CopyOpts,
    ) -> Result<(), FileOpError> {
        for (name, entry) in view.read_dir(src_dir)? {
            let child_rel = rel.join(&name);
            if excluded(opts.exclude, &child_rel) {
                continue;
            }
            self.copy_entry(
                view,
                &src_dir.join(&name),
                &entry,
                &target_dir.join(&name),
                &child_rel,
                opts,
            )?;
        }
        Ok(())
    }

    fn copy_entry(
        &mut self,
        view: &View,
        src_rel: &Path,
        entry: &Entry,
        target: &Path,
        rel: &Path,
        opts: &CopyOpts,
    ) -> Result<(), FileOpError> {
        let disk = self.out.join(target);
        let ft = entry.meta.file_type();
        if ft.is_dir() {
            if self.state.lookup(target)?.is_some_and(|e| e.meta.is_dir()) {
                self.ensure_dir(target, opts.owner)?;
            } else {
                remove_in_out(&disk)?;
                fs_err::create_dir(&disk).map_err(FileOpError::Io)?;
                self.stats.dirs += 1;
            }
            self.copy_children(view, src_rel, target, rel, opts)?;
            return finish_meta(&disk, entry, opts);
        }
        if self.state.lookup(target)?.is_some_and(|e| e.meta.is_dir()) {
            return Err(FileOpError::IsADirectory {
                path: Path::new("/").join(target),
            });
        }
        remove_in_out(&disk)?;
        if ft.is_symlink() {
            let link = fs_err::read_link(&entry.disk).map_err(FileOpError::Io)?;
            std::os::unix::fs::symlink(&link, &disk)
                .map_err(|e| FileOpError::io("symlink", &disk, &e))?;
            let owner = opts.owner.unwrap_or(Owner {
                uid: entry.meta.uid(),
                gid: entry.meta.gid(),
            });
            std::os::unix::fs::lchown(&disk, Some(owner.uid), Some(owner.gid))
                .map_err(|e| FileOpError::io("chown", &disk, &e))?;
            self.stats.symlinks += 1;
            return Ok(());
        }
        if ft.is_file() {
            let inode = (entry.meta.dev(), entry.meta.ino());
            if entry.meta.nlink() > 1 {
                if let Some(first) = self.links.get(&inode) {
                    fs_err::hard_link(first, &disk).map_err(FileOpError::Io)?;
                    return Ok(());
                }
                self.links.insert(inode, disk.clone());
            }
            if entry.meta.len() >= DEFER_FROM {
                let file = fs_err::File::create(&disk)
                    .map_err(FileOpError::Io)?
                    .into_parts()
                    .0;
                let (owner, mode) = copy_meta(entry, opts);
                self.pending.push(Pending {
                    from: entry.disk.clone(),
                    file,
                    disk,
                    owner,
                    mode,
                    mtime: entry.meta.modified().ok(),
                });
                self.stats.files += 1;
                if self.pending.len() >= PENDING_MAX {
                    self.flush()?;
                }
                return Ok(());
            }
            let bytes = fs_err::copy(&entry.disk, &disk).map_err(FileOpError::Io)?;
            self.stats.files += 1;
            self.stats.bytes += bytes;
            return finish_meta(&disk, entry, opts);
        }
        // Device nodes and fifos are made anew, like BuildKit's copy does
        // (never opened: a fifo would block, a device could act). A socket
        // is skipped: a layer cannot carry one.
        let kind = if ft.is_char_device() {
            rustix::fs::FileType::CharacterDevice
        } else if ft.is_block_device() {
            rustix::fs::FileType::BlockDevice
        } else if ft.is_fifo() {
            rustix::fs::FileType::Fifo
        } else {
            return Ok(());
        };
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &disk,
            kind,
            rustix::fs::Mode::from_raw_mode(0o600),
            entry.meta.rdev(),
        )
        .map_err(|e| FileOpError::io("mknod", &disk, &e.into()))?;
        let owner = opts.owner.unwrap_or(Owner {
            uid: entry.meta.uid(),
            gid: entry.meta.gid(),
        });
        let mode = entry.meta.mode() & 0o7777;
        let mode = opts.chmod.map_or(mode, |c| c.apply(mode, false));
        std::os::unix::fs::lchown(&disk, Some(owner.uid), Some(owner.gid))
            .map_err(|e| FileOpError::io("chown", &disk, &e))?;
        fs_err::set_permissions(&disk, std::fs::Permissions::from_mode(mode))
            .map_err(FileOpError::Io)?;
        let mtime = rustix::fs::Timespec {
            tv_sec: entry.meta.mtime(),
            tv_nsec: entry.meta.mtime_nsec(),
        };
        rustix::fs::utimensat(
            rustix::fs::CWD,
            &disk,
            &rustix::fs::Timestamps {
                last_access: mtime,
                last_modification: mtime,
            },
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| FileOpError::io("set mtime", &disk, &e.into()))?;
        self.stats.files += 1;
        Ok(())
    }
}

struct CopyOpts<'a> {
    owner: Option<Owner>,
    chmod: Option<&'a Chmod>,
    exclude: Option<&'a ExcludeSet>,
}

/// Owner, mode and mtime of a copy of `src`.
fn finish_meta(disk: &Path, src: &Entry, opts: &CopyOpts) -> Result<(), FileOpError> {
    let (owner, mode) = copy_meta(src, opts);
    set_meta(disk, owner, mode, src.meta.modified().ok())
}

/// Owner and mode of a copy of `src`.
fn copy_meta(src: &Entry, opts: &CopyOpts) -> (Owner, u32) {
    let owner = opts.owner.unwrap_or(Owner {
        uid: src.meta.uid(),
        gid: src.meta.gid(),
    });
    let mode = src.meta.mode() & 0o7777;
    let mode = opts
        .chmod
        .map_or(mode, |c| c.apply(mode, src.meta.is_dir()));
    (owner, mode)
}

/// chown, then chmod (chown clears set-id bits), then the mtime.
fn set_meta(
    disk: &Path,
    owner: Owner,
    mode: u32,
    mtime: Option<std::time::SystemTime>,
) -> Result<(), FileOpError> {
    std::os::unix::fs::lchown(disk, Some(owner.uid), Some(owner.gid))
        .map_err(|e| FileOpError::io("chown", disk, &e))?;
    fs_err::set_permissions(disk, std::fs::Permissions::from_mode(mode))
        .map_err(FileOpError::Io)?;
    if let Some(mtime) = mtime {
        let file = fs_err::File::open(disk).map_err(FileOpError::Io)?;
        file.file()
            .set_modified(mtime)
            .map_err(|e| FileOpError::io("set mtime", disk, &e))?;
    }
    Ok(())
}

/// Remove a non-directory at `disk` (in the output layer) if there is one.
fn remove_in_out(disk: &Path) -> Result<(), FileOpError> {
    match std::fs::symlink_metadata(disk) {
        Ok(m) if m.is_dir() => fs_err::remove_dir_all(disk).map_err(FileOpError::Io),
        Ok(_) => fs_err::remove_file(disk).map_err(FileOpError::Io),
        Err(_) => Ok(()),
    }
}

/// The file as a tar stream, decompressed, if it is a tar archive (plain,
/// gzip, bzip2, xz or zstd; checked by a valid first header, as BuildKit
/// does), else `None`.
fn open_tar(disk: &Path) -> Result<Option<Box<dyn std::io::Read>>, FileOpError> {
    use std::io::Read as _;
    let file = fs_err::File::open(disk).map_err(FileOpError::Io)?;
    let Ok((_, mut plain)) = kiln_oci::compress::decompress(file) else {
        return Ok(None);
    };
    let mut head = vec![0u8; 512];
    let mut n = 0;
    while n < head.len() {
        match plain.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            // Not valid compressed data: not an archive.
            Err(_) => return Ok(None),
        }
    }
    if n < 512 || !valid_tar_header(&head) {
        return Ok(None);
    }
    Ok(Some(Box::new(std::io::Cursor::new(head).chain(plain))))
}

/// A ustar/GNU/v7 header whose checksum is right.
fn valid_tar_header(h: &[u8]) -> bool {
    let field = &h[148..156];
    let text: String = field
        .iter()
        .take_while(|b| **b != 0 && **b != b' ')
        .map(|b| char::from(*b))
        .collect();
    let Ok(want) = u32::from_str_radix(text.trim(), 8) else {
        return false;
    };
    let sum: u32 = h
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(*b)
            }
        })
        .sum();
    sum == want && h[0] != 0
}
