//! A directory blob store standing in for kiln-store, and image makers.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiln_oci::{Digest, media};
use kiln_registry::{
    BlobSink, BlobSource, BlobWrite, BoxError, ClientOptions, Descriptor, Event, Progress,
    PushImage,
};

/// Blobs as files named by hex digest; writes go through a temp file that is
/// removed unless committed (like the store).
pub struct DirSink {
    pub dir: tempfile::TempDir,
}

impl DirSink {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            dir: tempfile::tempdir().unwrap(),
        })
    }
    pub fn path(&self, d: &Digest) -> PathBuf {
        self.dir.path().join(d.hex())
    }
    pub fn get(&self, d: &Digest) -> Option<Vec<u8>> {
        std::fs::read(self.path(d)).ok()
    }
    /// Every file, temp files included.
    pub fn files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
    pub fn put(&self, data: &[u8]) -> Digest {
        let d = Digest::sha256_of(data);
        std::fs::write(self.path(&d), data).unwrap();
        d
    }
}

struct DirWrite {
    tmp: tempfile::NamedTempFile,
    dir: PathBuf,
}

impl Write for DirWrite {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tmp.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.tmp.flush()
    }
}

impl BlobWrite for DirWrite {
    fn commit(self: Box<Self>, expected: &Digest) -> Result<(), BoxError> {
        let data = std::fs::read(self.tmp.path())?;
        expected.verify(&data)?;
        self.tmp.persist(self.dir.join(expected.hex()))?;
        Ok(())
    }
}

impl BlobSink for DirSink {
    fn has_blob(&self, digest: &Digest) -> bool {
        self.path(digest).exists()
    }
    fn writer(&self) -> Result<Box<dyn BlobWrite>, BoxError> {
        Ok(Box::new(DirWrite {
            tmp: tempfile::Builder::new()
                .prefix(".tmp-")
                .tempfile_in(self.dir.path())?,
            dir: self.dir.path().to_owned(),
        }))
    }
}

impl BlobSource for DirSink {
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, BoxError> {
        Ok(Box::new(std::fs::File::open(self.path(digest))?))
    }
}

/// Progress events, recorded.
#[derive(Clone, Default)]
pub struct Recorder(pub Arc<Mutex<Vec<Event>>>);

impl Recorder {
    pub fn progress(&self) -> Progress {
        let r = self.0.clone();
        Arc::new(move |e| r.lock().unwrap().push(e))
    }
    pub fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }
}

/// Fast retries for tests.
pub fn opts() -> ClientOptions {
    ClientOptions {
        attempts: 2,
        backoff: Duration::from_millis(20),
        ..ClientOptions::default()
    }
}

/// Deterministic pseudo-random bytes (incompressible enough).
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24).to_le_bytes()[0]
        })
        .collect()
}

/// An image of `layers` (arbitrary bytes: the registry does not look inside)
/// stored in `src`, ready to push.
pub fn make_image(src: &DirSink, arch: &str, layers: &[Vec<u8>]) -> PushImage {
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for l in layers {
        let d = src.put(l);
        diff_ids.push(serde_json::json!(d.as_str()));
        descs.push(Descriptor::new(media::LAYER_GZIP, d, l.len() as u64));
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": arch, "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "config": {}
    }))
    .unwrap();
    let cd = src.put(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::MANIFEST,
        "config": {"mediaType": media::CONFIG, "digest": cd, "size": config.len()},
        "layers": descs.iter().map(|d| serde_json::json!({"mediaType": d.media_type, "digest": d.digest, "size": d.size})).collect::<Vec<_>>(),
    }))
    .unwrap();
    let mut blobs = vec![Descriptor::new(media::CONFIG, cd, config.len() as u64)];
    blobs.extend(descs);
    PushImage {
        manifest,
        media_type: media::MANIFEST.to_owned(),
        blobs,
        mount_from: Vec::new(),
    }
}

/// A current-thread runtime for one test.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[allow(dead_code)]
pub fn count<T>(v: &[T], f: impl Fn(&T) -> bool) -> usize {
    v.iter().filter(|x| f(x)).count()
}

#[allow(dead_code)]
pub type Headers = HashMap<String, String>;
