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
