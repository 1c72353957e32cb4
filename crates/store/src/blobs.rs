//! Content-addressed blobs in `ROOT/oci/blobs/<alg>/<hex>`.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::PathBuf;

use kiln_oci::{Compression, Digest, OciError, ParallelDigestWriter, VerifyingReader};

use crate::error::{Result, StoreError};
use crate::{Store, fsutil};

/// A verified stream of a blob's bytes: reading past the end of a blob whose
/// content does not match its digest fails with `InvalidData`; use
/// [`BlobReader::finish`] for a typed error.
pub struct BlobReader {
    inner: VerifyingReader<BufReader<File>>,
    digest: Digest,
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

impl BlobReader {
    /// Drain and verify; `CorruptBlob` when the content is wrong.
    pub fn finish(self) -> Result<()> {
        let digest = self.digest;
        self.inner
            .finish()
            .map(|_| ())
            .map_err(|e| corrupt(&digest, None, &e))
    }
}

pub(crate) fn corrupt(
    digest: &Digest,
    image: Option<&str>,
    e: &dyn std::fmt::Display,
) -> StoreError {
    StoreError::CorruptBlob {
        digest: digest.clone(),
        image: image.map(str::to_owned),
        reason: e.to_string(),
    }
}

/// Copies what is read into a writer (one pass: parse and store).
struct Tee<'a, R, W> {
    inner: R,
    out: &'a mut W,
}

impl<R: Read, W: Write> Read for Tee<'_, R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// A blob being written: hashed as it goes (a big one on a second thread,
/// overlapping the writes), committed under its digest.
pub struct BlobWriter {
    inner: ParallelDigestWriter<io::BufWriter<tempfile::NamedTempFile>>,
    store: Store,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl BlobWriter {
    /// Make the blob durable under its digest; with `expected`, refuse
    /// content with another digest. Returns digest and size.
    pub fn commit(self, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        let (digest, size, buf) = self.inner.finish();
        let tmp = buf
            .into_inner()
            .map_err(|e| StoreError::io("write", self.store.tmp_dir(), e.into_error()))?;
        if let Some(expected) = expected
            && expected != &digest
        {
            return Err(StoreError::Oci(OciError::DigestMismatch {
                expected: expected.clone(),
                actual: digest,
            }));
        }
        let path = self.store.blob_path(&digest);
        if path.exists() {
            // Same content already there (content addressing): keep it.
            return Ok((digest, size));
        }
        tmp.as_file()
            .sync_all()
            .map_err(|e| StoreError::io("sync", tmp.path().to_path_buf(), e))?;
        if let Some(parent) = path.parent() {
            fs_err::create_dir_all(parent)
                .map_err(|e| StoreError::io("create directory", parent, e))?;
        }
        tmp.persist(&path)
            .map_err(|e| StoreError::io("rename blob into place", &path, e.error))?;
        if let Some(parent) = path.parent() {
            fsutil::sync_dir(parent)?;
        }
        Ok((digest, size))
    }
}

impl Store {
    /// Where a blob lives.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.oci_dir()
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    /// Whether a blob is present (not verified).
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Start writing a blob.
    pub fn blob_writer(&self) -> Result<BlobWriter> {
        let tmp = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(self.tmp_dir())
            .map_err(|e| StoreError::io("create temp file in", self.tmp_dir(), e))?;
        Ok(BlobWriter {
            inner: ParallelDigestWriter::new(io::BufWriter::with_capacity(1 << 20, tmp)),
            store: self.clone(),
        })
    }

    /// Stream a blob in, verifying it against `expected` (and `size` when
    /// known): the registry client and `kiln load` bring content this way.
    pub fn ingest_blob(
        &self,
        mut reader: impl Read,
        expected: &Digest,
        size: Option<u64>,
    ) -> Result<u64> {
        if self.has_blob(expected) {
            // Already present: skip the copy, but drain so callers streaming
            // an archive stay in sync.
            io::copy(&mut reader, &mut io::sink())
                .map_err(|e| StoreError::io("read", self.tmp_dir(), e))?;
            return Ok(size.unwrap_or(0));
        }
        let mut w = self.blob_writer()?;
        let n = io::copy(&mut reader, &mut w)
            .map_err(|e| StoreError::io("write blob", self.tmp_dir(), e))?;
        if let Some(size) = size
            && size != n
        {
            return Err(StoreError::Oci(OciError::SizeMismatch {
                digest: expected.clone(),
                expected: size,
                actual: n,
            }));
        }
        w.commit(Some(expected))?;
        Ok(n)
    }

    /// Store `data` as a blob.
    pub fn put_blob(&self, data: &[u8]) -> Result<Digest> {
        // Content addressing: a blob already there is not written again (a
        // rebuild re-committing the same image writes nothing).
        let digest = Digest::sha256_of(data);
        if self.blob_path(&digest).is_file() {
            return Ok(digest);
        }
        let mut w = self.blob_writer()?;
        w.write_all(data)
            .map_err(|e| StoreError::io("write blob", self.tmp_dir(), e))?;
        Ok(w.commit(None)?.0)
    }

    /// A verified reader of a blob.
    pub fn read_blob(&self, digest: &Digest) -> Result<BlobReader> {
        let path = self.blob_path(digest);
        let file = File::open(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StoreError::MissingBlob {
                    digest: digest.clone(),
                    image: None,
                }
            } else {
                StoreError::io("open blob", &path, e)
            }
        })?;
        Ok(BlobReader {
            inner: VerifyingReader::new(BufReader::with_capacity(1 << 20, file), digest, None),
            digest: digest.clone(),
        })
    }

    /// A whole blob, verified.
    pub fn read_blob_bytes(&self, digest: &Digest) -> Result<Vec<u8>> {
        let mut r = self.read_blob(digest)?;
        let mut out = Vec::new();
        match r.read_to_end(&mut out) {
            Ok(_) => Ok(out),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => Err(corrupt(digest, None, &e)),
            Err(e) => Err(StoreError::io("read blob", self.blob_path(digest), e)),
        }
    }

    /// Store an uncompressed layer read from `reader` (any compression,
    /// detected by content): returns the blob digest (= diff id) and size.
    /// The tar is checked entry by entry in the same pass; a malformed or
    /// empty archive is an error and nothing is stored.
    pub fn add_layer_tar(&self, reader: impl Read) -> Result<(Digest, u64)> {
        let (_, plain) = kiln_oci::compress::decompress(reader)?;
        let mut w = self.blob_writer()?;
        let mut tee = Tee {
            inner: plain,
            out: &mut w,
        };
        let mut entries = 0u64;
        {
            let mut archive = tar::Archive::new(&mut tee);
            let iter = archive.entries().map_err(|source| OciError::Tar {
                entry: None,
                source,
            })?;
            for e in iter {
                let e = e.map_err(|source| OciError::Tar {
                    entry: None,
                    source,
                })?;
                let _ = e.header();
                entries += 1;
            }
        }
        if entries == 0 {
            return Err(StoreError::Oci(OciError::Archive {
                reason: "the archive holds no files (is it a tar archive?)".to_owned(),
            }));
        }
        // The rest of the stream (end-of-archive padding) belongs to the layer.
        io::copy(&mut tee, &mut io::sink()).map_err(|e| {
            StoreError::Oci(OciError::Stream {
                context: "reading layer",
                source: e,
            })
        })?;
        w.commit(None)
    }

    /// The compressed form of a layer blob, made once (multi-threaded) and
    /// cached: a second save or push reuses it.
    pub fn compressed_layer(&self, layer: &Digest, kind: Compression) -> Result<(Digest, u64)> {
        let key = format!("{layer}|{}", kind.name());
        if let Some((d, size)) = self.compressed_lookup(&key)?
            && self.has_blob(&d)
        {
            return Ok((d, size));
        }
        let reader = self.read_blob(layer)?;
        let w = self.blob_writer()?;
        let w = kiln_oci::compress::compress(kind, reader, w).map_err(|e| {
            if e.kind() == io::ErrorKind::InvalidData {
                corrupt(layer, None, &e)
            } else {
                StoreError::io("compress layer", self.blob_path(layer), e)
            }
        })?;
        let (d, size) = w.commit(None)?;
        self.compressed_record(&key, &d, size)?;
        Ok((d, size))
    }
}
