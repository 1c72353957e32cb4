//! Creating a layer tar from a directory.
//!
//! The bytes are a function of the tree alone: entries are walked depth
//! first with siblings sorted by name bytes, owners are numeric (no user or
//! group names), only mtime is recorded (clamped to `SOURCE_DATE_EPOCH` when
//! given), xattrs are written as sorted `SCHILY.xattr.*` PAX records, long
//! names, large ids and huge files use PAX records. Hard links become link
//! entries to the first path seen; sockets are skipped.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use tar::{Builder, EntryType, Header};

use super::{
    OPAQUE_WHITEOUT, OVERLAY_OPAQUE_USER_XATTR, OVERLAY_OPAQUE_XATTR, PAX_XATTR, WHITEOUT_PREFIX,
};
use crate::error::{OciError, Result};

/// How to turn a directory into a layer.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Clamp every mtime to at most this many seconds since the epoch
    /// (`SOURCE_DATE_EPOCH`), for reproducible layers.
    pub source_date_epoch: Option<u64>,
    /// The directory is an overlayfs upper dir: 0/0 character devices are
    /// whiteouts and opaque xattrs mark opaque directories; both become OCI
    /// whiteout entries, and overlay's own xattrs are not copied.
    pub overlay_upper: bool,
}

/// What a created layer holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerStats {
    /// Tar entries written (whiteouts included).
    pub entries: u64,
    /// Bytes of regular-file content.
    pub content_bytes: u64,
}

/// Write `dir` as a layer tar to `out`; returns `out` (so callers can wrap
/// a [`DigestWriter`](crate::DigestWriter) and learn the diff id in the same
/// pass).
pub fn create_layer<W: Write>(dir: &Path, out: W, opts: &CreateOptions) -> Result<(W, LayerStats)> {
    let mut w = LayerWriter {
        builder: Builder::new(out),
        opts: opts.clone(),
        links: HashMap::new(),
        stats: LayerStats::default(),
        buf: vec![0; 1 << 20],
    };
    let meta = fs_err::symlink_metadata(dir).map_err(|e| OciError::io("stat", dir, e))?;
    if !meta.is_dir() {
        return Err(OciError::io(
            "create layer from",
            dir,
            io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
        ));
    }
    w.walk(dir, &mut Vec::new())?;
    let out = w.builder.into_inner().map_err(|source| OciError::Stream {
        context: "writing layer",
        source,
    })?;
    Ok((out, w.stats))
}

struct LayerWriter<W: Write> {
    builder: Builder<W>,
    opts: CreateOptions,
    /// (dev, ino) of multiply-linked files → the first path written.
    links: HashMap<(u64, u64), Vec<u8>>,
    stats: LayerStats,
    buf: Vec<u8>,
}

fn sorted_children(dir: &Path) -> Result<Vec<OsString>> {
    let rd = std::fs::read_dir(dir).map_err(|e| OciError::io("read directory", dir, e))?;
    let mut names = Vec::new();
    for e in rd {
        names.push(
            e.map_err(|e| OciError::io("read directory", dir, e))?
                .file_name(),
        );
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

impl<W: Write> LayerWriter<W> {
    fn walk(&mut self, dir: &Path, rel: &mut Vec<u8>) -> Result<()> {
        for name in sorted_children(dir)? {
            let path = dir.join(&name);
            let base = rel.len();
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(name.as_bytes());
            let meta =
                std::fs::symlink_metadata(&path).map_err(|e| OciError::io("stat", &path, e))?;
            let ft = meta.file_type();
            if self.opts.overlay_upper && ft.is_char_device() && meta.rdev() == 0 {
                // An overlay whiteout: `.wh.NAME` beside where NAME was.
                let mut wh = rel[..base].to_vec();
                if !wh.is_empty() {
                    wh.push(b'/');
                }
                wh.extend_from_slice(WHITEOUT_PREFIX.as_bytes());
                wh.extend_from_slice(name.as_bytes());
                self.marker(&wh, &meta)?;
            } else if ft.is_dir() {
                let mut d = rel.clone();
                d.push(b'/');
                self.entry(&path, &d, &meta, EntryType::Directory, None)?;
                if self.opts.overlay_upper && is_opaque(&path) {
                    let mut opq = rel.clone();
                    opq.push(b'/');
                    opq.extend_from_slice(OPAQUE_WHITEOUT.as_bytes());
                    self.marker(&opq, &meta)?;
                }
                self.walk(&path, rel)?;
            } else if ft.is_socket() {
                // Sockets cannot be carried in a layer (docker skips them too).
            } else {
                self.non_dir(&path, &rel.clone(), &meta)?;
            }
            rel.truncate(base);
        }
        Ok(())
    }

    fn non_dir(&mut self, path: &Path, rel: &[u8], meta: &std::fs::Metadata) -> Result<()> {
        let ft = meta.file_type();
        if ft.is_file() {
            if meta.nlink() > 1 {
                let key = (meta.dev(), meta.ino());
                if let Some(first) = self.links.get(&key).cloned() {
                    return self.entry(path, rel, meta, EntryType::Link, Some(&first));
                }
                self.links.insert(key, rel.to_vec());
            }
            self.entry(path, rel, meta, EntryType::Regular, None)
        } else if ft.is_symlink() {
            let target =
                std::fs::read_link(path).map_err(|e| OciError::io("read link", path, e))?;
            let target = target.as_os_str().as_bytes().to_vec();
            self.entry(path, rel, meta, EntryType::Symlink, Some(&target))
        } else if ft.is_char_device() {
            self.entry(path, rel, meta, EntryType::Char, None)
        } else if ft.is_block_device() {
            self.entry(path, rel, meta, EntryType::Block, None)
        } else if ft.is_fifo() {
            self.entry(path, rel, meta, EntryType::Fifo, None)
        } else {
            Ok(())
        }
    }

    fn mtime(&self, meta: &std::fs::Metadata) -> u64 {
        let m = u64::try_from(meta.mtime()).unwrap_or(0);
        self.opts.source_date_epoch.map_or(m, |e| m.min(e))
    }

    /// An empty whiteout marker file.
    fn marker(&mut self, rel: &[u8], meta: &std::fs::Metadata) -> Result<()> {
        let mut h = Header::new_ustar();
        h.set_entry_type(EntryType::Regular);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(self.mtime(meta));
        h.set_size(0);
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        set_name(&mut h, rel, &mut pax);
        self.write(&h, &pax, rel, io::empty())
    }

    fn entry(
        &mut self,
        path: &Path,
        rel: &[u8],
        meta: &std::fs::Metadata,
        kind: EntryType,
        link: Option<&[u8]>,
    ) -> Result<()> {
        let mut h = Header::new_ustar();
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        h.set_entry_type(kind);
        h.set_mode(meta.mode() & 0o7777);
        set_id(&mut h, meta.uid(), "uid", &mut pax);
        set_id(&mut h, meta.gid(), "gid", &mut pax);
        h.set_mtime(self.mtime(meta));
        let size = if kind == EntryType::Regular {
            meta.len()
        } else {
            0
        };
        if size > 0o77_777_777_777 {
            pax.push(("size".into(), size.to_string().into_bytes()));
        }
        h.set_size(size);
        if matches!(kind, EntryType::Char | EntryType::Block) {
            let rdev = meta.rdev();
            let (major, minor) = (rustix::fs::major(rdev), rustix::fs::minor(rdev));
            h.set_device_major(major)
                .and_then(|()| h.set_device_minor(minor))
                .map_err(|e| OciError::io("device numbers of", path, e))?;
        }
        set_name(&mut h, rel, &mut pax);
        if let Some(link) = link
            && (link.len() > 100 || h.set_link_name_literal(link).is_err())
        {
            pax.push(("linkpath".into(), link.to_vec()));
            let _ = h.set_link_name_literal(truncate(link, 100));
        }
        for (name, value) in self.xattrs(path)? {
            pax.push((format!("{PAX_XATTR}{name}"), value));
        }
        if kind == EntryType::Regular {
            let file = std::fs::File::open(path).map_err(|e| OciError::io("open", path, e))?;
            self.stats.content_bytes += size;
            let reader = SizedReader {
                inner: file,
                remaining: size,
                path,
            };
            self.write_file(&h, &pax, rel, reader, size)
        } else {
            self.write(&h, &pax, rel, io::empty())
        }
    }

    fn write<R: io::Read>(
        &mut self,
        h: &Header,
        pax: &[(String, Vec<u8>)],
        rel: &[u8],
        data: R,
    ) -> Result<()> {
        let err = |source| OciError::Tar {
            entry: Some(String::from_utf8_lossy(rel).into_owned()),
            source,
        };
        if !pax.is_empty() {
            self.builder
                .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                .map_err(err)?;
        }
        let mut h = h.clone();
        h.set_cksum();
        self.builder.append(&h, data).map_err(err)?;
        self.stats.entries += 1;
        Ok(())
    }

    /// A regular file's entry: what [`Builder::append`] writes (header,
    /// content, zeros to the next 512-byte block), but the content is copied
    /// in large reads (`append` copies 8 KiB at a time: 128 read and write
    /// calls per MiB).
    fn write_file<R: io::Read>(
        &mut self,
        h: &Header,
        pax: &[(String, Vec<u8>)],
        rel: &[u8],
        mut data: R,
        size: u64,
    ) -> Result<()> {
        let err = |source| OciError::Tar {
            entry: Some(String::from_utf8_lossy(rel).into_owned()),
            source,
        };
        if !pax.is_empty() {
            self.builder
                .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                .map_err(err)?;
        }
        let mut h = h.clone();
        h.set_cksum();
        let out = self.builder.get_mut();
        out.write_all(h.as_bytes()).map_err(err)?;
        let mut copied = 0u64;
        loop {
            let n = match data.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(err(e)),
            };
            out.write_all(&self.buf[..n]).map_err(err)?;
            copied += n as u64;
        }
        // `SizedReader` stops at `size` and fails on a short file.
        debug_assert_eq!(copied, size);
        let pad = (512 - size % 512) % 512;
        out.write_all(&[0u8; 512][..usize::try_from(pad).unwrap_or(0)])
            .map_err(err)?;
        self.stats.entries += 1;
        Ok(())
    }

    fn xattrs(&self, path: &Path) -> Result<Vec<(String, Vec<u8>)>> {
        let mut out = Vec::new();
        let names = match xattr::list(path) {
            Ok(n) => n,
            // File systems without xattr support have none to copy.
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::OPNOTSUPP.raw_os_error()) => {
                return Ok(out);
            }
            Err(e) => return Err(OciError::io("list xattrs of", path, e)),
        };
        for name in names {
            let name_s = name.to_string_lossy().into_owned();
            if self.opts.overlay_upper
                && (name_s.starts_with("trusted.overlay.") || name_s.starts_with("user.overlay."))
            {
                continue;
            }
            if let Some(v) =
                xattr::get(path, &name).map_err(|e| OciError::io("read xattr of", path, e))?
            {
                out.push((name_s, v));
            }
        }
        out.sort();
        Ok(out)
    }
}

/// A file's content, held to the size stat reported: a file that grows or
/// shrinks while it is read must not corrupt the tar stream.
struct SizedReader<'a> {
    inner: std::fs::File,
    remaining: u64,
    path: &'a Path,
}

impl io::Read for SizedReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let max = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} shrank while it was being archived", self.path.display()),
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

fn is_opaque(path: &Path) -> bool {
    [OVERLAY_OPAQUE_XATTR, OVERLAY_OPAQUE_USER_XATTR]
        .iter()
        .any(|x| matches!(xattr::get(path, x), Ok(Some(v)) if v == b"y"))
}

fn truncate(b: &[u8], n: usize) -> &[u8] {
    &b[..b.len().min(n)]
}

fn set_id(h: &mut Header, id: u32, key: &str, pax: &mut Vec<(String, Vec<u8>)>) {
    // ustar's 8-byte octal field holds up to 0o7777777.
    if id > 0o7_777_777 {
        pax.push((key.into(), id.to_string().into_bytes()));
        if key == "uid" {
            h.set_uid(0);
        } else {
            h.set_gid(0);
        }
    } else if key == "uid" {
        h.set_uid(u64::from(id));
    } else {
        h.set_gid(u64::from(id));
    }
}

fn set_name(h: &mut Header, rel: &[u8], pax: &mut Vec<(String, Vec<u8>)>) {
    // ustar holds up to 100 bytes of name plus 155 of prefix, split at a
    // `/`; anything longer goes into a PAX `path` record (with a truncated
    // name in the header for old readers).
    let Some(ustar) = h.as_ustar_mut() else {
        return;
    };
    ustar.name = [0; 100];
    ustar.prefix = [0; 155];
    if rel.len() <= 100 {
        ustar.name[..rel.len()].copy_from_slice(rel);
        return;
    }
    // The split must leave a non-empty name of at most 100 bytes (a trailing
    // `/` of a directory stays with the name).
    let body = rel.strip_suffix(b"/").unwrap_or(rel);
    let split = (0..body.len())
        .filter(|&i| body[i] == b'/')
        .find(|&i| rel.len() - i - 1 <= 100);
    if let Some(i) = split
        && i <= 155
        && i > 0
    {
        ustar.prefix[..i].copy_from_slice(&rel[..i]);
        ustar.name[..rel.len() - i - 1].copy_from_slice(&rel[i + 1..]);
        return;
    }
    pax.push(("path".into(), rel.to_vec()));
    let short = truncate(rel, 100);
    ustar.name[..short.len()].copy_from_slice(short);
}
