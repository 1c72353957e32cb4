//! Image archives: the docker-archive format (`docker save`: `manifest.json`,
//! `repositories`, blobs) and the OCI archive format (a tar of an OCI image
//! layout). This module knows the file names and JSON shapes; moving blobs
//! in and out of a store is the caller's (`kiln-store`'s) job.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

use crate::Digest;
use crate::error::{OciError, Result};

/// One image in a docker-archive's `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerManifestEntry {
    /// Path of the config file inside the archive.
    #[serde(rename = "Config")]
    pub config: String,
    /// Familiar names (`busybox:latest`).
    #[serde(rename = "RepoTags", default)]
    pub repo_tags: Option<Vec<String>>,
    /// Paths of the layer tars, bottom first.
    #[serde(rename = "Layers")]
    pub layers: Vec<String>,
}

/// The path of a blob in both formats (`blobs/sha256/<hex>`).
pub fn blob_path(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm().as_str(), digest.hex())
}

/// The digest a `blobs/<alg>/<hex>` path names, if it is one.
pub fn digest_of_path(path: &str) -> Option<Digest> {
    let rest = path.trim_start_matches("./").strip_prefix("blobs/")?;
    let (alg, hex) = rest.split_once('/')?;
    format!("{alg}:{hex}").parse().ok()
}

/// Writes an archive: a tar with fixed, reproducible headers.
pub struct ArchiveWriter<W: Write> {
    builder: tar::Builder<W>,
    written: std::collections::HashSet<String>,
}

impl<W: Write> ArchiveWriter<W> {
    /// Start an archive on `out`.
    pub fn new(out: W) -> Self {
        Self {
            builder: tar::Builder::new(out),
            written: std::collections::HashSet::new(),
        }
    }

    /// Add a file (once: a second file with the same name is skipped, so a
    /// blob shared by two images is written once).
    pub fn add(&mut self, name: &str, size: u64, data: impl Read) -> Result<()> {
        if !self.written.insert(name.to_owned()) {
            return Ok(());
        }
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(size);
        h.set_mtime(0);
        self.builder
            .append_data(&mut h, name, data)
            .map_err(|source| OciError::Tar {
                entry: Some(name.to_owned()),
                source,
            })
    }

    /// Add a small file from memory.
    pub fn add_bytes(&mut self, name: &str, data: &[u8]) -> Result<()> {
        self.add(name, data.len() as u64, data)
    }

    /// Whether `name` was already written.
    pub fn contains(&self, name: &str) -> bool {
        self.written.contains(name)
    }

    /// Finish the tar and return the writer.
    pub fn finish(self) -> Result<W> {
        self.builder
            .into_inner()
            .map_err(|source| OciError::Stream {
                context: "finishing archive",
                source,
            })
    }
}

/// The `repositories` file of a docker-archive: repository → tag → id hex.
pub fn repositories_json(names: &[(String, String, Digest)]) -> Vec<u8> {
    let mut repos: BTreeMap<&str, BTreeMap<&str, &str>> = BTreeMap::new();
    for (repo, tag, id) in names {
        repos.entry(repo).or_default().insert(tag, id.hex());
    }
    serde_json::to_vec(&repos).unwrap_or_default()
}

/// What an entry of an archive being read is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveEntry {
    /// `blobs/<alg>/<hex>`: content with a known digest.
    Blob(Digest),
    /// A small metadata file kept in memory (`manifest.json`, `index.json`,
    /// `repositories`, `oci-layout`, legacy `<id>.json` configs).
    Metadata,
    /// A legacy docker-archive layer (`<id>/layer.tar`) or other file whose
    /// digest must be computed.
    Content,
    /// Anything else (legacy `VERSION`, `json` files, directories).
    Ignored,
}

/// Classify an archive member by name.
// Archive member names are exact (docker writes lowercase); case matters.
#[allow(clippy::case_sensitive_file_extension_comparisons)]
pub fn classify(name: &str) -> ArchiveEntry {
    let name = name.trim_start_matches("./");
    if let Some(d) = digest_of_path(name) {
        return ArchiveEntry::Blob(d);
    }
    if name.starts_with("blobs/") {
        return ArchiveEntry::Ignored;
    }
    if matches!(
        name,
        "manifest.json" | "index.json" | "repositories" | "oci-layout"
    ) || (name.ends_with(".json") && !name.contains('/'))
    {
        return ArchiveEntry::Metadata;
    }
    if name.ends_with("/layer.tar") || name.ends_with(".tar") {
        return ArchiveEntry::Content;
    }
    ArchiveEntry::Ignored
}

/// Read at most `limit` bytes of a metadata file (refusing bigger ones).
pub fn read_metadata(mut r: impl Read, name: &str, limit: u64) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    (&mut r)
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|source| OciError::Tar {
            entry: Some(name.to_owned()),
            source,
        })?;
    if out.len() as u64 > limit {
        return Err(OciError::Archive {
            reason: format!("{name} is larger than {limit} bytes"),
        });
    }
    io::copy(&mut r, &mut io::sink()).map_err(|source| OciError::Stream {
        context: "reading archive",
        source,
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_members() {
        let d = Digest::sha256_of(b"");
        assert_eq!(classify(&blob_path(&d)), ArchiveEntry::Blob(d.clone()));
        assert_eq!(
            classify(&format!("./{}", blob_path(&d))),
            ArchiveEntry::Blob(d)
        );
        assert_eq!(classify("manifest.json"), ArchiveEntry::Metadata);
        assert_eq!(classify("abc.json"), ArchiveEntry::Metadata);
        assert_eq!(classify("abc/layer.tar"), ArchiveEntry::Content);
        assert_eq!(classify("abc/json"), ArchiveEntry::Ignored);
        assert_eq!(classify("blobs/sha256/zz"), ArchiveEntry::Ignored);
    }
}
