//! Context archives (stdin and tarball URLs): compression detected by
//! content like docker does, and an extraction that can't leave its
//! directory.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use crate::error::{ContextError, Result};

/// A compression format, detected from the first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

impl Compression {
    pub(crate) fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b, 0x08]) {
            Compression::Gzip
        } else if head.starts_with(b"BZh") {
            Compression::Bzip2
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Compression::Xz
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Compression::None => "tar",
            Compression::Gzip => "gzip",
            Compression::Bzip2 => "bzip2",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
        }
    }
}

/// Whether `head` (up to 1 KiB of the input) starts an archive: a
/// compressed stream, or a tar header with a valid checksum (docker's
/// `IsArchive`).
pub(crate) fn is_archive(head: &[u8]) -> bool {
    if Compression::detect(head) != Compression::None {
        return true;
    }
    if head.len() < 512 {
        return false;
    }
    let block = &head[..512];
    let stored = std::str::from_utf8(&block[148..156])
        .ok()
        .map(|s| s.trim_matches(|c: char| c == '\0' || c == ' '))
        .and_then(|s| u32::from_str_radix(s, 8).ok());
    let Some(stored) = stored else { return false };
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(b)
            }
        })
        .sum();
    sum == stored
}

/// A decompressing reader over `input`, by content.
fn decompress<'a>(input: impl BufRead + 'a) -> Result<(Box<dyn Read + 'a>, Compression)> {
    let mut input = input;
    let head = input.fill_buf()?;
    let c = Compression::detect(head);
    let r: Box<dyn Read + 'a> = match c {
        Compression::None => Box::new(input),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(input)),
        Compression::Xz => Box::new(xz2::bufread::XzDecoder::new_multi_decoder(input)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(input)?),
    };
    Ok((r, c))
}

/// Extract the (possibly compressed) tar `input` into the empty directory
/// `dest`. `source` names the input in errors (`stdin`, a URL). Entries
/// with `..`, or that would be written through a symlink, are errors;
/// absolute names are taken relative to `dest`.
pub(crate) fn extract(input: impl Read, dest: &Path, source: &str) -> Result<()> {
    let (reader, compression) = decompress(BufReader::with_capacity(256 * 1024, input))?;
    let bad = |reason: String| ContextError::Archive {
        origin: source.to_owned(),
        reason,
    };
    let read_err = |e: std::io::Error| {
        bad(format!(
            "{} data is corrupt or truncated: {e}",
            compression.name()
        ))
    };
    let mut archive = tar::Archive::new(reader);
    let is_root = is_root_user();
    let mut dirs: Vec<(PathBuf, u32, Option<u64>)> = Vec::new();
    let mut count = 0usize;
    for entry in archive.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        count += 1;
        let raw = entry.path().map_err(read_err)?.into_owned();
        let rel = safe_rel(&raw).ok_or_else(|| {
            bad(format!(
                "entry `{}` points outside the context (`..`)",
                raw.display()
            ))
        })?;
        if rel.as_os_str().is_empty() {
            continue; // `./` itself
        }
        let target = dest.join(&rel);
        ensure_parents(dest, &rel).map_err(|e| match e {
            ContextError::Io(io) => bad(format!("entry `{}`: {io}", raw.display())),
            other => other,
        })?;
        let header = entry.header().clone();
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        let mtime = header.mtime().ok();
        let kind = header.entry_type();
        remove_existing(&target)?;
        match kind {
            tar::EntryType::Directory => {
                std::fs::create_dir(&target).or_else(|e| {
                    if e.kind() == std::io::ErrorKind::AlreadyExists && target.is_dir() {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })?;
                dirs.push((target.clone(), mode, mtime));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let mut f = std::fs::File::create(&target)?;
                std::io::copy(&mut entry, &mut f).map_err(read_err)?;
                f.set_permissions(std::fs::Permissions::from_mode(mode))?;
                if let Some(t) = mtime {
                    f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(t))?;
                }
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(read_err)?
                    .ok_or_else(|| bad(format!("symlink `{}` has no target", raw.display())))?;
                std::os::unix::fs::symlink(&link, &target)?;
            }
            tar::EntryType::Link => {
                let link = entry
                    .link_name()
                    .map_err(read_err)?
                    .ok_or_else(|| bad(format!("hard link `{}` has no target", raw.display())))?;
                let link_rel = safe_rel(&link).ok_or_else(|| {
                    bad(format!(
                        "hard link `{}` points outside the context",
                        raw.display()
                    ))
                })?;
                if !no_symlink_parents(dest, &link_rel) {
                    return Err(bad(format!(
                        "hard link `{}` points through a symlink",
                        raw.display()
                    )));
                }
                std::fs::hard_link(dest.join(&link_rel), &target).map_err(|e| {
                    bad(format!(
                        "hard link `{}` to `{}`: {e}",
                        raw.display(),
                        link.display()
                    ))
                })?;
            }
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => continue,
            other => {
                return Err(bad(format!(
                    "entry `{}` is a {other:?}, which a build context can't hold",
                    raw.display()
                )));
            }
        }
        if is_root && kind != tar::EntryType::Link {
            let uid = header.uid().ok().and_then(|u| u32::try_from(u).ok());
            let gid = header.gid().ok().and_then(|g| u32::try_from(g).ok());
            std::os::unix::fs::lchown(&target, uid, gid)?;
        }
    }
    if count == 0 {
        return Err(bad("empty or not a tar archive".to_owned()));
    }
    // Directory modes and times last (writing into them changes both).
    for (dir, mode, mtime) in dirs.into_iter().rev() {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode | 0o700))?;
        if let Some(t) = mtime {
            let f = std::fs::File::open(&dir)?;
            f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(t))?;
        }
    }
    Ok(())
}

fn is_root_user() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// An archive name made relative and clean; `None` if `..` leaves the root.
fn safe_rel(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    Some(out)
}

/// Create the missing parents of `rel` under `dest` as real directories;
/// a parent that is a symlink or a file is an error.
fn ensure_parents(dest: &Path, rel: &Path) -> Result<()> {
    let mut p = dest.to_path_buf();
    let comps: Vec<_> = rel.components().collect();
    for c in &comps[..comps.len().saturating_sub(1)] {
        p.push(c);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(ContextError::Io(std::io::Error::other(format!(
                    "`{}` is not a directory (a symlink or a file is in the way)",
                    p.strip_prefix(dest).unwrap_or(&p).display()
                ))));
            }
            Err(_) => std::fs::create_dir(&p)?,
        }
    }
    Ok(())
}

fn no_symlink_parents(dest: &Path, rel: &Path) -> bool {
    let mut p = dest.to_path_buf();
    for c in rel.components() {
        p.push(c);
        if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
            return false;
        }
    }
    true
}

fn remove_existing(target: &Path) -> Result<()> {
    match std::fs::symlink_metadata(target) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Ok(std::fs::remove_file(target)?),
        Err(_) => Ok(()),
    }
}
