//! Pulling: resolve a reference to an image manifest (choosing a platform
//! from an index), then stream config and layers into a [`BlobSink`] with
//! their digests verified as the bytes arrive.

use std::io::Write;
use std::sync::Arc;

use kiln_oci::{Digest, Hasher, OciError, Reference};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use tokio::sync::Semaphore;

use crate::client::{Op, Registry};
use crate::error::{BoxError, RegistryError, Result};
use crate::events::{Event, Progress};
use crate::manifest::{self, Descriptor, Manifest};
use crate::platform::Platform;

/// Where pulled blobs go (the store, in kiln). The registry client verifies
/// every blob before committing it; the sink may verify again.
pub trait BlobSink: Send + Sync {
    /// Whether the blob is already there (it is then not downloaded).
    fn has_blob(&self, digest: &Digest) -> bool;
    /// Start writing a blob.
    fn writer(&self) -> Result<Box<dyn BlobWrite>, BoxError>;
}

/// A blob being written. Dropping it without [`BlobWrite::commit`] must
/// discard what was written (nothing half-stored).
pub trait BlobWrite: Write + Send {
    /// Make the blob durable under `expected`.
    fn commit(self: Box<Self>, expected: &Digest) -> Result<(), BoxError>;
}

/// The result of a pull: the image manifest (its bytes are in the sink under
/// `manifest.digest`), its config and layers (in the sink too).
#[derive(Debug, Clone)]
pub struct PulledImage {
    /// The image manifest.
    pub manifest: Descriptor,
    /// The index the manifest was chosen from, if the reference named one.
    pub index: Option<Descriptor>,
    /// The config blob.
    pub config: Descriptor,
    /// The layers, bottom first.
    pub layers: Vec<Descriptor>,
    /// Bytes downloaded (layers already present excluded).
    pub downloaded: u64,
}

/// A manifest fetched and verified.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// Its descriptor (digest verified).
    pub descriptor: Descriptor,
    /// The bytes as served.
    pub bytes: Vec<u8>,
    /// Parsed.
    pub manifest: Manifest,
}

impl Registry {
    /// Fetch a manifest by tag or digest; its digest is verified (against the
    /// reference's digest, else the registry's `Docker-Content-Digest`).
    pub async fn fetch_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<FetchedManifest> {
        let op = Op {
            what: format!("pull manifest {reference}"),
            repository: Some(repository),
            scopes: vec![format!("repository:{repository}:pull")],
        };
        let base = self.base().await?.to_owned();
        let url = format!("{base}/v2/{repository}/manifests/{reference}");
        let resp = self
            .send(&op, &mut |http| {
                Ok(http.get(&url).header(ACCEPT, manifest::ACCEPT))
            })
            .await?;
        if !resp.status().is_success() {
            return Err(self.status_error(&op, resp).await);
        }
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok());
        let bytes = resp.bytes().await.map_err(|e| RegistryError::Connect {
            registry: self.host().to_owned(),
            reason: format!("{}: {}", op.what, crate::error::chain(&e)),
        })?;
        if bytes.len() > 4 << 20 {
            return Err(RegistryError::Protocol {
                registry: self.host().to_owned(),
                reason: format!("manifest {reference} of {repository} is larger than 4 MiB"),
            });
        }
        let expected = reference.parse::<Digest>().ok().or(header_digest);
        let digest = match &expected {
            Some(d) => {
                d.verify(&bytes).map_err(|source| RegistryError::Verify {
                    registry: self.host().to_owned(),
                    what: format!("manifest {reference} of {repository}"),
                    source,
                })?;
                d.clone()
            }
            None => Digest::sha256_of(&bytes),
        };
        let parsed = manifest::parse(&bytes, content_type.as_deref()).map_err(|reason| {
            RegistryError::Protocol {
                registry: self.host().to_owned(),
                reason: format!("manifest {reference} of {repository}: {reason}"),
            }
        })?;
        let media_type = match &parsed {
            Manifest::Image { media_type, .. }
            | Manifest::Index { media_type, .. }
            | Manifest::Schema1 { media_type } => media_type.clone(),
        };
        Ok(FetchedManifest {
            descriptor: Descriptor::new(media_type, digest, bytes.len() as u64),
            bytes: bytes.to_vec(),
            manifest: parsed,
        })
    }

    /// The digest `reference` points at now (a manifest or index), without
    /// downloading anything else: for `--pull` checks.
    pub async fn resolve(&self, reference: &Reference) -> Result<Descriptor> {
        let r = reference_str(reference);
        Ok(self.fetch_manifest(reference.path(), &r).await?.descriptor)
    }

    /// Pull `reference` for `platform` into `sink`: config and layers first
    /// (in parallel, bounded; the ones the sink has are skipped), the
    /// manifest last. A blob whose content does not match its digest aborts
    /// the pull and nothing of it is kept.
    pub async fn pull(
        &self,
        reference: &Reference,
        platform: &Platform,
        sink: Arc<dyn BlobSink>,
        progress: &Progress,
    ) -> Result<PulledImage> {
        let repo = reference.path();
        let first = self.fetch_manifest(repo, &reference_str(reference)).await?;
        let (index, fetched) = match &first.manifest {
            Manifest::Index { manifests, .. } => {
                let chosen = manifest::select(manifests, platform).map_err(|available| {
                    RegistryError::NoMatchingPlatform {
                        reference: reference.familiar(),
                        wanted: platform.to_string(),
                        available,
                    }
                })?;
                let inner = self.fetch_manifest(repo, chosen.digest.as_str()).await?;
                (
                    Some((first.descriptor.clone(), chosen.platform.clone())),
                    inner,
                )
            }
            _ => (None, first),
        };
        let (config, layers) = match &fetched.manifest {
            Manifest::Image { config, layers, .. } => (config.clone(), layers.clone()),
            Manifest::Schema1 { media_type } => {
                return Err(RegistryError::Schema1 {
                    reference: reference.familiar(),
                    media_type: media_type.clone(),
                });
            }
            Manifest::Index { .. } => {
                return Err(RegistryError::Protocol {
                    registry: self.host().to_owned(),
                    reason: format!(
                        "{}: an index inside an index is not supported",
                        reference.familiar()
                    ),
                });
            }
        };
        progress(Event::Resolved {
            reference: reference.familiar(),
            digest: fetched.descriptor.digest.clone(),
            platform: index
                .as_ref()
                .and_then(|(_, p)| p.as_ref().map(ToString::to_string)),
        });

        // Config and layers, bounded in parallel.
        let sem = Arc::new(Semaphore::new(self.options().max_concurrent.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        // Every blob commit (a blocking write into the sink) holds a clone of
        // `commits`; a failure aborts the download tasks, but a commit already
        // on a blocking thread runs on, so the pull waits for the channel to
        // close before it returns: no sink write outlives the call.
        let (commits, mut commits_done) = tokio::sync::mpsc::channel::<()>(1);
        let mut blobs = vec![config.clone()];
        blobs.extend(layers.iter().cloned());
        let mut seen = std::collections::HashSet::new();
        for blob in blobs {
            if !seen.insert(blob.digest.clone()) {
                continue;
            }
            if sink.has_blob(&blob.digest) {
                progress(Event::BlobExists {
                    digest: blob.digest.clone(),
                    size: blob.size,
                });
                continue;
            }
            let this = self.clone();
            let sink = sink.clone();
            let sem = sem.clone();
            let progress = progress.clone();
            let repo = repo.to_owned();
            let commits = commits.clone();
            tasks.spawn(async move {
                let _permit = sem
                    .acquire_owned()
                    .await
                    .map_err(|_| RegistryError::Protocol {
                        registry: this.host().to_owned(),
                        reason: "download pool closed".into(),
                    })?;
                this.download_blob(&repo, &blob, sink.as_ref(), &progress, &commits)
                    .await
            });
        }
        let downloaded = self.join_transfers(tasks, "download").await;
        drop(commits);
        let _ = commits_done.recv().await;
        let downloaded = downloaded?;

        // The manifest last: once it is in the sink, the image is complete.
        put_bytes(sink.as_ref(), &fetched.descriptor.digest, &fetched.bytes)?;
        Ok(PulledImage {
            manifest: fetched.descriptor,
            index: index.map(|(d, _)| d),
            config,
            layers,
            downloaded,
        })
    }

    /// Download one blob into the sink, verifying as it streams; retried
    /// from the start when the connection breaks mid-way.
    async fn download_blob(
        &self,
        repo: &str,
        blob: &Descriptor,
        sink: &dyn BlobSink,
        progress: &Progress,
        commits: &tokio::sync::mpsc::Sender<()>,
    ) -> Result<u64> {
        let op = Op {
            what: format!("pull blob {}", blob.digest),
            repository: Some(repo),
            scopes: vec![format!("repository:{repo}:pull")],
        };
        let base = self.base().await?.to_owned();
        let url = format!("{base}/v2/{repo}/blobs/{}", blob.digest);
        let attempts = self.options().attempts.max(1);
        progress(Event::BlobStart {
            digest: blob.digest.clone(),
            size: blob.size,
        });
        let mut attempt = 0;
        loop {
            attempt += 1;
            let resp = self
                .send_with_progress(&op, &mut |http| Ok(http.get(&url)), Some(progress))
                .await?;
            if !resp.status().is_success() {
                return Err(self.status_error(&op, resp).await);
            }
            match self.stream_into(resp, blob, sink, progress, commits).await {
                Ok(n) => {
                    progress(Event::BlobDone {
                        digest: blob.digest.clone(),
                        size: n,
                    });
                    return Ok(n);
                }
                Err(StreamError::Transfer(reason)) if attempt < attempts => {
                    progress(Event::Retry {
                        what: op.what.clone(),
                        attempt,
                        reason,
                    });
                    tokio::time::sleep(self.options().backoff * attempt).await;
                }
                Err(StreamError::Transfer(reason)) => {
                    return Err(RegistryError::Connect {
                        registry: self.host().to_owned(),
                        reason: format!(
                            "{} (repository {repo}): download broke off: {reason}",
                            op.what
                        ),
                    });
                }
                Err(StreamError::Fatal(e)) => return Err(e),
            }
        }
    }

    async fn stream_into(
        &self,
        mut resp: reqwest::Response,
        blob: &Descriptor,
        sink: &dyn BlobSink,
        progress: &Progress,
        commits: &tokio::sync::mpsc::Sender<()>,
    ) -> Result<u64, StreamError> {
        let store_err = |source: BoxError| {
            StreamError::Fatal(RegistryError::Store {
                digest: blob.digest.clone(),
                source,
            })
        };
        let mut w = sink.writer().map_err(store_err)?;
        let mut hasher: Hasher = blob.digest.hasher();
        let mut n: u64 = 0;
        let mut last_report = 0u64;
        loop {
            let chunk = match resp.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => return Err(StreamError::Transfer(crate::error::chain(&e))),
            };
            n += chunk.len() as u64;
            if n > blob.size {
                return Err(self.verify_err(
                    blob,
                    OciError::SizeMismatch {
                        digest: blob.digest.clone(),
                        expected: blob.size,
                        actual: n,
                    },
                ));
            }
            hasher.update(&chunk);
            w.write_all(&chunk).map_err(|e| store_err(Box::new(e)))?;
            if n - last_report >= 256 << 10 || n == blob.size {
                last_report = n;
                progress(Event::BlobProgress {
                    digest: blob.digest.clone(),
                    done: n,
                    total: blob.size,
                });
            }
        }
        if n != blob.size {
            return Err(StreamError::Transfer(format!(
                "the registry sent {n} of {} bytes",
                blob.size
            )));
        }
        let actual = hasher.finish();
        if actual != blob.digest {
            return Err(self.verify_err(
                blob,
                OciError::DigestMismatch {
                    expected: blob.digest.clone(),
                    actual,
                },
            ));
        }
        let expected = blob.digest.clone();
        let in_flight = commits.clone();
        tokio::task::spawn_blocking(move || {
            let done = w.commit(&expected);
            drop(in_flight);
            done
        })
        .await
        .map_err(|e| store_err(Box::new(e)))?
        .map_err(store_err)?;
        Ok(n)
    }

    fn verify_err(&self, blob: &Descriptor, source: OciError) -> StreamError {
        StreamError::Fatal(RegistryError::Verify {
            registry: self.host().to_owned(),
            what: format!("blob {}", blob.digest),
            source,
        })
    }
}

enum StreamError {
    /// The connection broke: worth another attempt.
    Transfer(String),
    /// Wrong content or a store failure: stop.
    Fatal(RegistryError),
}

fn put_bytes(sink: &dyn BlobSink, digest: &Digest, bytes: &[u8]) -> Result<()> {
    if sink.has_blob(digest) {
        return Ok(());
    }
    let store_err = |source: BoxError| RegistryError::Store {
        digest: digest.clone(),
        source,
    };
    let mut w = sink.writer().map_err(store_err)?;
    w.write_all(bytes).map_err(|e| store_err(Box::new(e)))?;
    w.commit(digest).map_err(store_err)
}

/// The tag or digest part of a reference, as the API wants it.
pub(crate) fn reference_str(r: &Reference) -> String {
    r.digest().map_or_else(
        || {
            r.tag()
                .unwrap_or(kiln_oci::reference::DEFAULT_TAG)
                .to_owned()
        },
        |d| d.as_str().to_owned(),
    )
}
