//! Compression of layer blobs (gzip and zstd, both multi-threaded) and
//! decompression detected by content (gzip, bzip2, xz, zstd, plain).
//!
//! Parallel gzip works like pigz: the input is cut into chunks that are
//! deflated independently on rayon's pool, each ending on a byte boundary
//! (a sync flush), and stitched into one standard gzip member whose CRC is
//! combined from the chunks' CRCs. Any gzip reader reads the result.

use std::io::{self, BufRead, BufReader, Read, Write};

use flate2::{Compress, Compression as Level, FlushCompress};
use rayon::prelude::*;

use crate::error::{OciError, Result};

/// A compression a layer blob can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Plain tar.
    None,
    /// gzip (`application/vnd.oci.image.layer.v1.tar+gzip`).
    Gzip,
    /// zstd (`application/vnd.oci.image.layer.v1.tar+zstd`).
    Zstd,
    /// bzip2 (read only).
    Bzip2,
    /// xz (read only).
    Xz,
}

impl Compression {
    /// Guess the compression from the first bytes of a stream.
    pub fn detect(head: &[u8]) -> Self {
        if head.starts_with(&[0x1f, 0x8b]) {
            Self::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Self::Zstd
        } else if head.starts_with(b"BZh") {
            Self::Bzip2
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Self::Xz
        } else {
            Self::None
        }
    }

    /// The OCI layer media type for a tar with this compression.
    pub fn layer_media_type(self) -> &'static str {
        match self {
            Self::Gzip => crate::media::LAYER_GZIP,
            Self::Zstd => crate::media::LAYER_ZSTD,
            _ => crate::media::LAYER_TAR,
        }
    }

    /// The compression a layer media type implies (docker and OCI types).
    pub fn of_media_type(media_type: &str) -> Self {
        if media_type.ends_with("gzip") {
            Self::Gzip
        } else if media_type.ends_with("zstd") {
            Self::Zstd
        } else {
            Self::None
        }
    }

    /// `gzip`, `zstd`, …
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
            Self::Bzip2 => "bzip2",
            Self::Xz => "xz",
        }
    }
}

/// Wrap `reader` in the decompressor its first bytes call for.
pub fn decompress<'a, R: Read + 'a>(reader: R) -> Result<(Compression, Box<dyn Read + 'a>)> {
    let mut buf = BufReader::with_capacity(256 * 1024, reader);
    let head = buf.fill_buf().map_err(|source| OciError::Stream {
        context: "reading archive",
        source,
    })?;
    let kind = Compression::detect(head);
    let reader: Box<dyn Read + 'a> = match kind {
        Compression::None => Box::new(buf),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buf)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buf).map_err(
            |source| OciError::Stream {
                context: "starting zstd decoder",
                source,
            },
        )?),
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(buf)),
        Compression::Xz => Box::new(xz2::bufread::XzDecoder::new_multi_decoder(buf)),
    };
    Ok((kind, reader))
}

/// Compress everything from `input` into `output`. `Gzip` and `Zstd` use
/// all cores; other kinds cannot be written and are copied as-is.
pub fn compress<R: Read, W: Write>(kind: Compression, input: R, output: W) -> io::Result<W> {
    match kind {
        Compression::Gzip => gzip_parallel(input, output, 6),
        Compression::Zstd => {
            let mut enc = zstd::stream::write::Encoder::new(output, 3)?;
            let threads = u32::try_from(rayon::current_num_threads()).unwrap_or(1);
            if threads > 1 {
                enc.multithread(threads)?;
            }
            let mut input = input;
            io::copy(&mut input, &mut enc)?;
            enc.finish()
        }
        _ => {
            let mut input = input;
            let mut output = output;
            io::copy(&mut input, &mut output)?;
            Ok(output)
        }
    }
}

const GZIP_CHUNK: usize = 1 << 20;

/// pigz-style parallel gzip: a batch of chunks is deflated at once on rayon's
/// pool, written in order; memory stays at a few chunks per core.
fn gzip_parallel<R: Read, W: Write>(mut input: R, mut output: W, level: u32) -> io::Result<W> {
    // Header: no name, no mtime (reproducible), OS = unknown.
    output.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff])?;
    let batch = rayon::current_num_threads().max(1) * 2;
    let mut crc = crc32fast::Hasher::new();
    let mut total: u64 = 0;
    let mut next = read_chunk(&mut input)?;
    loop {
        let mut chunks = Vec::with_capacity(batch);
        while chunks.len() < batch && !next.is_empty() {
            let following = read_chunk(&mut input)?;
            let last = following.is_empty();
            chunks.push((std::mem::replace(&mut next, following), last));
        }
        if chunks.is_empty() {
            // Empty input: a final empty block.
            output.write_all(&deflate_chunk(&[], true, level)?)?;
            break;
        }
        let done = chunks.last().is_some_and(|(_, last)| *last);
        let compressed: Vec<io::Result<(Vec<u8>, u32, usize)>> = chunks
            .par_iter()
            .map(|(data, last)| {
                let mut h = crc32fast::Hasher::new();
                h.update(data);
                Ok((deflate_chunk(data, *last, level)?, h.finalize(), data.len()))
            })
            .collect();
        for c in compressed {
            let (bytes, chunk_crc, len) = c?;
            output.write_all(&bytes)?;
            crc.combine(&crc32fast::Hasher::new_with_initial_len(
                chunk_crc, len as u64,
            ));
            total += len as u64;
        }
        if done {
            break;
        }
    }
    output.write_all(&crc.finalize().to_le_bytes())?;
    // ISIZE is the input size modulo 2^32, by definition.
    #[allow(clippy::cast_possible_truncation)]
    output.write_all(&(total as u32).to_le_bytes())?;
    Ok(output)
}

fn read_chunk<R: Read>(input: &mut R) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(GZIP_CHUNK);
    input.take(GZIP_CHUNK as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

fn deflate_chunk(data: &[u8], last: bool, level: u32) -> io::Result<Vec<u8>> {
    let mut c = Compress::new(Level::new(level), false);
    let mut out = Vec::with_capacity(data.len() / 2 + 1024);
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    loop {
        let consumed = usize::try_from(c.total_in()).unwrap_or(usize::MAX);
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(64 * 1024));
        }
        let status = c
            .compress_vec(&data[consumed.min(data.len())..], &mut out, flush)
            .map_err(io::Error::other)?;
        let consumed = usize::try_from(c.total_in()).unwrap_or(usize::MAX);
        match status {
            flate2::Status::StreamEnd => break,
            _ if consumed >= data.len() && !last && out.capacity() > out.len() => break,
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| u8::try_from((i * 7 + i / 13) % 251).unwrap())
            .collect()
    }

    #[test]
    fn gzip_round_trips_any_size() {
        for n in [0, 1, 1000, GZIP_CHUNK, GZIP_CHUNK + 1, 5 * GZIP_CHUNK + 17] {
            let data = sample(n);
            let gz = compress(Compression::Gzip, &data[..], Vec::new()).unwrap();
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "size {n}");
            let (kind, mut r) = decompress(&gz[..]).unwrap();
            assert_eq!(kind, Compression::Gzip);
            let mut back = Vec::new();
            r.read_to_end(&mut back).unwrap();
            assert_eq!(back.len(), n);
        }
    }

    #[test]
    fn zstd_round_trips_and_is_detected() {
        let data = sample(3 * GZIP_CHUNK);
        let z = compress(Compression::Zstd, &data[..], Vec::new()).unwrap();
        let (kind, mut r) = decompress(&z[..]).unwrap();
        assert_eq!(kind, Compression::Zstd);
        let mut back = Vec::new();
        r.read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn detects_bzip2_xz_plain() {
        let data = sample(10_000);
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        bz.write_all(&data).unwrap();
        let bz = bz.finish().unwrap();
        let mut xz = xz2::write::XzEncoder::new(Vec::new(), 1);
        xz.write_all(&data).unwrap();
        let xz = xz.finish().unwrap();
        for (blob, kind) in [
            (bz, Compression::Bzip2),
            (xz, Compression::Xz),
            (data.clone(), Compression::None),
        ] {
            let (k, mut r) = decompress(&blob[..]).unwrap();
            assert_eq!(k, kind);
            let mut back = Vec::new();
            r.read_to_end(&mut back).unwrap();
            assert_eq!(back, data);
        }
    }
}
