//! Content digests (`sha256:…`) and readers/writers that hash while they
//! stream, so that content is hashed once, in the same pass that copies it.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use sha2::{Digest as _, Sha256, Sha512};

use crate::error::{OciError, Result};

/// A content digest: `sha256:<64 hex>` (or `sha512:<128 hex>`), always in
/// canonical lowercase form.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest {
    // Invariant: `algorithm:hex`, validated by `FromStr`.
    text: String,
}

/// A digest algorithm kiln can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// SHA-256, the default everywhere.
    Sha256,
    /// SHA-512, accepted when reading.
    Sha512,
}

impl Algorithm {
    /// `sha256` / `sha512`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
        }
    }
    fn hex_len(self) -> usize {
        match self {
            Self::Sha256 => 64,
            Self::Sha512 => 128,
        }
    }
}

impl Digest {
    /// The sha256 digest of `data`.
    pub fn sha256_of(data: &[u8]) -> Self {
        Self::from_hash(Algorithm::Sha256, &Sha256::digest(data))
    }

    fn from_hash(alg: Algorithm, hash: &[u8]) -> Self {
        Self {
            text: format!("{}:{}", alg.as_str(), hex::encode(hash)),
        }
    }

    /// The algorithm part.
    pub fn algorithm(&self) -> Algorithm {
        if self.text.starts_with("sha512:") {
            Algorithm::Sha512
        } else {
            Algorithm::Sha256
        }
    }

    /// The hex part.
    pub fn hex(&self) -> &str {
        self.text
            .split_once(':')
            .map_or(self.text.as_str(), |(_, h)| h)
    }

    /// `sha256:…`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first 12 hex digits, as docker shows image ids.
    pub fn short(&self) -> &str {
        let hex = self.hex();
        &hex[..12.min(hex.len())]
    }

    /// A hasher for this digest's algorithm.
    pub fn hasher(&self) -> Hasher {
        Hasher::new(self.algorithm())
    }

    /// Check `data` against this digest.
    pub fn verify(&self, data: &[u8]) -> Result<()> {
        let mut h = self.hasher();
        h.update(data);
        let actual = h.finish();
        if &actual == self {
            Ok(())
        } else {
            Err(OciError::DigestMismatch {
                expected: self.clone(),
                actual,
            })
        }
    }
}

impl FromStr for Digest {
    type Err = OciError;

    fn from_str(s: &str) -> Result<Self> {
        let err = |reason| OciError::Digest {
            input: s.to_owned(),
            reason,
        };
        let (alg, hex) = s
            .split_once(':')
            .ok_or_else(|| err("expected `algorithm:hex`"))?;
        let alg = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            a if !a.is_empty()
                && a.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b)
                }) =>
            {
                return Err(err("unsupported digest algorithm"));
            }
            _ => return Err(err("invalid digest format")),
        };
        if hex.len() != alg.hex_len() {
            return Err(err("invalid checksum digest length"));
        }
        if !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(err(
                "invalid checksum digest format (lowercase hex expected)",
            ));
        }
        Ok(Self { text: s.to_owned() })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.text)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl From<&Digest> for oci_spec::image::Digest {
    fn from(d: &Digest) -> Self {
        // Our digests are a strict subset of what oci-spec accepts.
        d.text
            .parse()
            .unwrap_or_else(|_| unreachable!("validated digest"))
    }
}

impl TryFrom<&oci_spec::image::Digest> for Digest {
    type Error = OciError;
    fn try_from(d: &oci_spec::image::Digest) -> Result<Self> {
        d.to_string().parse()
    }
}

/// An incremental hasher producing a [`Digest`].
#[derive(Clone)]
pub enum Hasher {
    /// SHA-256 state.
    Sha256(Sha256),
    /// SHA-512 state.
    Sha512(Sha512),
}

impl Hasher {
    /// A fresh hasher.
    pub fn new(alg: Algorithm) -> Self {
        match alg {
            Algorithm::Sha256 => Self::Sha256(Sha256::new()),
            Algorithm::Sha512 => Self::Sha512(Sha512::new()),
        }
    }
    /// A fresh SHA-256 hasher.
    pub fn sha256() -> Self {
        Self::new(Algorithm::Sha256)
    }
    /// Feed bytes.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Self::Sha256(h) => h.update(data),
            Self::Sha512(h) => h.update(data),
        }
    }
    /// The digest of everything fed so far.
    pub fn finish(self) -> Digest {
        match self {
            Self::Sha256(h) => Digest::from_hash(Algorithm::Sha256, &h.finalize()),
            Self::Sha512(h) => Digest::from_hash(Algorithm::Sha512, &h.finalize()),
        }
    }
}

/// A writer that hashes and counts what passes through it.
pub struct DigestWriter<W> {
    inner: W,
    hasher: Hasher,
    size: u64,
}

impl<W: Write> DigestWriter<W> {
    /// Wrap `inner`; SHA-256.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Hasher::sha256(),
            size: 0,
        }
    }
    /// The digest and size of everything written, and the inner writer.
    pub fn finish(self) -> (Digest, u64, W) {
        (self.hasher.finish(), self.size, self.inner)
    }
    /// The inner writer.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }
}

impl<W: Write> Write for DigestWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A writer that hashes and counts what passes through it, like
/// [`DigestWriter`], but hashes on a second thread once the stream is large:
/// writing to `inner` (a file) and SHA-256 (about 1.5 GB/s with SHA-NI, the
/// slowest step of committing a big layer) then overlap. Small streams are
/// hashed inline (no thread for a config blob). Bytes are handed over in
/// 1 MiB chunks through a bounded queue, so at most a few MiB are in flight.
pub struct ParallelDigestWriter<W> {
    inner: W,
    size: u64,
    state: HashState,
}

/// Where the hashing happens.
enum HashState {
    /// On the writing thread (streams below [`PARALLEL_HASH_FROM`] bytes).
    Inline(Hasher),
    /// On a helper thread: `chunk` collects bytes until it is full.
    Thread {
        chunk: Vec<u8>,
        to_hasher: std::sync::mpsc::SyncSender<Vec<u8>>,
        spare: std::sync::mpsc::Receiver<Vec<u8>>,
        hasher: std::thread::JoinHandle<Hasher>,
    },
}

/// Streams hash inline up to this size, then on a helper thread.
const PARALLEL_HASH_FROM: u64 = 8 << 20;
/// Bytes handed to the hashing thread at once.
const HASH_CHUNK: usize = 1 << 20;
/// Chunks queued for the hashing thread at most.
const HASH_QUEUE: usize = 4;

impl<W: Write> ParallelDigestWriter<W> {
    /// Wrap `inner`; SHA-256.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            size: 0,
            state: HashState::Inline(Hasher::sha256()),
        }
    }

    /// The digest and size of everything written, and the inner writer.
    pub fn finish(self) -> (Digest, u64, W) {
        let hasher = match self.state {
            HashState::Inline(h) => h,
            HashState::Thread {
                chunk,
                to_hasher,
                spare,
                hasher,
            } => {
                if !chunk.is_empty() {
                    // The thread only stops when `to_hasher` is dropped.
                    let _ = to_hasher.send(chunk);
                }
                drop(to_hasher);
                drop(spare);
                // The thread cannot fail short of a panic; pass that on.
                hasher
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            }
        };
        (hasher.finish(), self.size, self.inner)
    }

    /// Move hashing to a helper thread (stays inline if none can start).
    fn start_thread(&mut self) {
        let HashState::Inline(h) = &self.state else {
            return;
        };
        // The thread gets a copy of the state so far (a few hundred bytes);
        // if it cannot start, the original keeps hashing inline.
        let mut h = h.clone();
        let (to_hasher, chunks) = std::sync::mpsc::sync_channel::<Vec<u8>>(HASH_QUEUE);
        let (give_back, spare) = std::sync::mpsc::sync_channel::<Vec<u8>>(HASH_QUEUE + 2);
        let started = std::thread::Builder::new()
            .name("kiln-hash".into())
            .spawn(move || {
                for mut c in chunks {
                    h.update(&c);
                    c.clear();
                    // The writer may have stopped taking buffers back.
                    let _ = give_back.try_send(c);
                }
                h
            });
        if let Ok(hasher) = started {
            self.state = HashState::Thread {
                chunk: Vec::with_capacity(HASH_CHUNK),
                to_hasher,
                spare,
                hasher,
            };
        }
    }

    fn hash(&mut self, mut data: &[u8]) -> io::Result<()> {
        match &mut self.state {
            HashState::Inline(h) => h.update(data),
            HashState::Thread {
                chunk,
                to_hasher,
                spare,
                ..
            } => {
                while !data.is_empty() {
                    let take = (HASH_CHUNK - chunk.len()).min(data.len());
                    chunk.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if chunk.len() == HASH_CHUNK {
                        let next = spare
                            .try_recv()
                            .unwrap_or_else(|_| Vec::with_capacity(HASH_CHUNK));
                        let full = std::mem::replace(chunk, next);
                        to_hasher.send(full).map_err(|_| {
                            io::Error::other("the hashing thread stopped unexpectedly")
                        })?;
                    }
                }
            }
        }
        Ok(())
    }
}

impl<W: Write> Write for ParallelDigestWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if self.size < PARALLEL_HASH_FROM && self.size + n as u64 >= PARALLEL_HASH_FROM {
            self.start_thread();
        }
        self.hash(&buf[..n])?;
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes and counts what passes through it; with an
/// expected digest, reaching the end of the stream with other content is an
/// `InvalidData` I/O error (so that any consumer notices), and
/// [`VerifyingReader::finish`] reports a typed error.
pub struct VerifyingReader<R> {
    inner: R,
    hasher: Option<Hasher>,
    size: u64,
    expected: Option<(Digest, Option<u64>)>,
    result: Option<Digest>,
}

impl<R: Read> VerifyingReader<R> {
    /// Hash `inner` and check it against `expected` (and `size`, if given)
    /// at end of stream.
    pub fn new(inner: R, expected: &Digest, size: Option<u64>) -> Self {
        Self {
            inner,
            hasher: Some(expected.hasher()),
            size: 0,
            expected: Some((expected.clone(), size)),
            result: None,
        }
    }

    /// Hash `inner` without an expectation (learn its digest).
    pub fn hashing(inner: R) -> Self {
        Self {
            inner,
            hasher: Some(Hasher::sha256()),
            size: 0,
            expected: None,
            result: None,
        }
    }

    /// Bytes read so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Read to the end (discarding), then return the digest and size; a
    /// typed error when they differ from the expectation.
    pub fn finish(mut self) -> Result<(Digest, u64)> {
        let mut sink = io::sink();
        match io::copy(&mut self, &mut sink) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::InvalidData && self.result.is_some() => {}
            Err(e) => {
                return Err(OciError::Stream {
                    context: "reading blob",
                    source: e,
                });
            }
        }
        let actual = self.result.clone().unwrap_or_else(|| {
            self.hasher
                .take()
                .map_or_else(|| Digest::sha256_of(b""), Hasher::finish)
        });
        self.check(&actual)?;
        Ok((actual, self.size))
    }

    fn check(&self, actual: &Digest) -> Result<()> {
        if let Some((expected, size)) = &self.expected {
            if let Some(size) = size
                && *size != self.size
            {
                return Err(OciError::SizeMismatch {
                    digest: expected.clone(),
                    expected: *size,
                    actual: self.size,
                });
            }
            if expected != actual {
                return Err(OciError::DigestMismatch {
                    expected: expected.clone(),
                    actual: actual.clone(),
                });
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n > 0 {
            if let Some(h) = self.hasher.as_mut() {
                h.update(&buf[..n]);
            }
            self.size += n as u64;
            if let Some((_, Some(limit))) = &self.expected
                && self.size > *limit
            {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("blob is larger than its announced {limit} bytes"),
                ));
            }
            return Ok(n);
        }
        if let Some(h) = self.hasher.take() {
            let actual = h.finish();
            let verdict = self.check(&actual);
            self.result = Some(actual);
            if let Err(e) = verdict {
                return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string()));
            }
        }
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parse_and_hash() {
        let d: Digest = EMPTY.parse().unwrap();
        assert_eq!(d, Digest::sha256_of(b""));
        assert_eq!(d.short(), "e3b0c44298fc");
        for (bad, why) in [
            ("sha256", "algorithm:hex"),
            ("sha256:abc", "length"),
            ("md5:abc", "unsupported"),
            ("SHA256:abc", "invalid digest format"),
        ] {
            let e = bad.parse::<Digest>().unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let upper = EMPTY.to_uppercase().replace("SHA256", "sha256");
        assert!(upper.parse::<Digest>().is_err());
    }

    #[test]
    fn parallel_digest_writer_equals_one_pass_hash() {
        // Sizes around the switch to the hashing thread and the chunk size,
        // written in pieces that straddle both.
        let big = usize::try_from(PARALLEL_HASH_FROM).unwrap();
        let data: Vec<u8> = (0..big + 3 * HASH_CHUNK + 77)
            .map(|i| u8::try_from((i * 31 + i / 4093) % 251).unwrap())
            .collect();
        for len in [
            0,
            1,
            4096,
            big - 1,
            big,
            big + 1,
            big + HASH_CHUNK,
            data.len(),
        ] {
            for piece in [1000, 65_536, HASH_CHUNK + 3, 3 << 20] {
                let mut w = ParallelDigestWriter::new(Vec::new());
                for part in data[..len].chunks(piece) {
                    w.write_all(part).unwrap();
                }
                let (d, size, out) = w.finish();
                assert_eq!(size, len as u64, "len {len} piece {piece}");
                assert_eq!(out, &data[..len], "len {len} piece {piece}");
                assert_eq!(
                    d,
                    Digest::sha256_of(&data[..len]),
                    "len {len} piece {piece}"
                );
            }
        }
    }

    #[test]
    fn verifying_reader_detects_corruption() {
        let d = Digest::sha256_of(b"hello");
        let mut r = VerifyingReader::new(&b"hellp"[..], &d, Some(5));
        let mut out = Vec::new();
        let e = r.read_to_end(&mut out).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let r = VerifyingReader::new(&b"hello"[..], &d, Some(5));
        assert_eq!(r.finish().unwrap(), (d.clone(), 5));
        let r = VerifyingReader::new(&b"hello!"[..], &d, Some(5));
        assert!(matches!(
            r.finish(),
            Err(OciError::Stream { .. } | OciError::SizeMismatch { .. })
        ));
    }
}
