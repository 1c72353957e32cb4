//! Pushing: every blob is checked with HEAD first, mounted from another
//! repository of the same registry when it is known to be there, else
//! uploaded (monolithic PUT or PATCH chunks); the manifest goes last.

use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use kiln_oci::{Digest, Reference};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Body, StatusCode};
use tokio::sync::Semaphore;

use crate::client::{Op, Registry};
use crate::error::{BoxError, RegistryError, Result};
use crate::events::{Event, Progress};
use crate::manifest::Descriptor;
use crate::pull::reference_str;

/// Where pushed blobs come from (the store, in kiln). Readers should verify
/// what they read (the store's do).
pub trait BlobSource: Send + Sync {
    /// A reader of the blob's bytes.
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, BoxError>;
}

/// An image to push: the manifest as it will be stored, and every blob it
/// names (config and layers).
#[derive(Debug, Clone)]
pub struct PushImage {
    /// The manifest bytes (pushed as they are: the digest is theirs).
    pub manifest: Vec<u8>,
    /// Its media type.
    pub media_type: String,
    /// The config and layers.
    pub blobs: Vec<Descriptor>,
    /// Repositories of the same registry that hold these blobs (tried for a
    /// cross-repository mount before uploading).
    pub mount_from: Vec<String>,
}

/// The result of a push.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// The manifest's digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// Bytes uploaded (blobs already there or mounted excluded).
    pub uploaded: u64,
}

impl Registry {
    /// Push `image` as `reference` (its tag, or its digest).
    pub async fn push(
        &self,
        reference: &Reference,
        image: &PushImage,
        source: Arc<dyn BlobSource>,
        progress: &Progress,
    ) -> Result<Pushed> {
        let repo = reference.path().to_owned();
        let sem = Arc::new(Semaphore::new(self.options().max_concurrent.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        let mut seen = std::collections::HashSet::new();
        for blob in &image.blobs {
            if !seen.insert(blob.digest.clone()) {
                continue;
            }
            let this = self.clone();
            let (sem, source, progress, repo, blob) = (
                sem.clone(),
                source.clone(),
                progress.clone(),
                repo.clone(),
                blob.clone(),
            );
            let mounts: Vec<String> = image
                .mount_from
                .iter()
                .filter(|r| **r != repo)
                .cloned()
                .collect();
            tasks.spawn(async move {
                let _permit = sem
                    .acquire_owned()
                    .await
                    .map_err(|_| RegistryError::Protocol {
                        registry: this.host().to_owned(),
                        reason: "upload pool closed".into(),
                    })?;
                this.push_blob(&repo, &blob, &mounts, source, &progress)
                    .await
            });
        }
        let uploaded = self.join_transfers(tasks, "upload").await?;

        let tag = reference_str(reference);
        let digest = Digest::sha256_of(&image.manifest);
        let op = Op {
            what: format!("push manifest {tag}"),
            repository: Some(&repo),
            scopes: vec![format!("repository:{repo}:pull,push")],
        };
        let base = self.base().await?.to_owned();
        let url = format!("{base}/v2/{repo}/manifests/{tag}");
        let body = Bytes::from(image.manifest.clone());
        let resp = self
            .send(&op, &mut |http| {
                Ok(http
                    .put(&url)
                    .header(CONTENT_TYPE, &image.media_type)
                    .body(body.clone()))
            })
            .await?;
        if !resp.status().is_success() {
            return Err(self.status_error(&op, resp).await);
        }
        if let Some(served) = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok())
            && served != digest
        {
            return Err(RegistryError::Protocol {
                registry: self.host().to_owned(),
                reason: format!(
                    "the registry stored manifest {tag} as {served}, but kiln sent {digest}"
                ),
            });
        }
        progress(Event::ManifestPushed {
            reference: reference.familiar(),
            digest: digest.clone(),
        });
        Ok(Pushed {
            digest,
            size: image.manifest.len() as u64,
            uploaded,
        })
    }

    /// Whether the repository has the blob (HEAD).
    pub async fn has_blob(&self, repo: &str, digest: &Digest) -> Result<bool> {
        let op = Op {
            what: format!("check blob {digest}"),
            repository: Some(repo),
            scopes: vec![format!("repository:{repo}:pull,push")],
        };
        let base = self.base().await?.to_owned();
        let url = format!("{base}/v2/{repo}/blobs/{digest}");
        let resp = self.send(&op, &mut |http| Ok(http.head(&url))).await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.status_error(&op, resp).await),
        }
    }

    async fn push_blob(
        &self,
        repo: &str,
        blob: &Descriptor,
        mounts: &[String],
        source: Arc<dyn BlobSource>,
        progress: &Progress,
    ) -> Result<u64> {
        if self.has_blob(repo, &blob.digest).await? {
            progress(Event::BlobExists {
                digest: blob.digest.clone(),
                size: blob.size,
            });
            return Ok(0);
        }
        let base = self.base().await?.to_owned();
        let mut location = None;
        for from in mounts {
            let op = Op {
                what: format!("mount blob {} from {from}", blob.digest),
                repository: Some(repo),
                scopes: vec![
                    format!("repository:{repo}:pull,push"),
                    format!("repository:{from}:pull"),
                ],
            };
            let url = format!("{base}/v2/{repo}/blobs/uploads/");
            let digest = blob.digest.as_str();
            let resp = self
                .send(&op, &mut |http| {
                    Ok(http
                        .post(&url)
                        .query(&[("mount", digest), ("from", from.as_str())])
                        .header(CONTENT_LENGTH, "0"))
                })
                .await;
            match resp {
                Ok(resp) if resp.status() == StatusCode::CREATED => {
                    progress(Event::BlobMounted {
                        digest: blob.digest.clone(),
                        from: from.clone(),
                    });
                    return Ok(0);
                }
                Ok(resp) if resp.status() == StatusCode::ACCEPTED => {
                    // Not mountable: the registry opened an upload instead.
                    location = Some(self.location(&base, &resp, &op)?);
                    break;
                }
                // A mount is an optimisation: any refusal falls back to upload.
                Ok(_) | Err(RegistryError::Unauthorized { .. } | RegistryError::Denied { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let op = Op {
            what: format!("upload blob {}", blob.digest),
            repository: Some(repo),
            scopes: vec![format!("repository:{repo}:pull,push")],
        };
        let mut location = if let Some(l) = location {
            l
        } else {
            {
                let url = format!("{base}/v2/{repo}/blobs/uploads/");
                let resp = self
                    .send(&op, &mut |http| {
                        Ok(http.post(&url).header(CONTENT_LENGTH, "0"))
                    })
                    .await?;
                if resp.status() != StatusCode::ACCEPTED {
                    return Err(self.status_error(&op, resp).await);
                }
                self.location(&base, &resp, &op)?
            }
        };
        progress(Event::BlobStart {
            digest: blob.digest.clone(),
            size: blob.size,
        });
        let digest = blob.digest.as_str().to_owned();
        let store_err = |source: BoxError| RegistryError::Store {
            digest: blob.digest.clone(),
            source,
        };
        let final_resp = match self.options().chunk_size {
            Some(chunk) if chunk > 0 && blob.size > chunk => {
                let mut reader = source.open(&blob.digest).map_err(store_err)?;
                let mut offset = 0u64;
                let mut buf = Vec::new();
                while offset < blob.size {
                    let want = chunk.min(blob.size - offset);
                    buf.clear();
                    (&mut reader)
                        .take(want)
                        .read_to_end(&mut buf)
                        .map_err(|e| store_err(Box::new(e)))?;
                    if buf.len() as u64 != want {
                        return Err(store_err(
                            format!(
                                "blob ended after {} of {} bytes",
                                offset + buf.len() as u64,
                                blob.size
                            )
                            .into(),
                        ));
                    }
                    let body = Bytes::from(std::mem::take(&mut buf));
                    let range = format!("{offset}-{}", offset + want - 1);
                    let loc = location.clone();
                    let resp = self
                        .send_with_progress(
                            &op,
                            &mut |http| {
                                Ok(http
                                    .patch(&loc)
                                    .header("content-range", &range)
                                    .header(CONTENT_TYPE, "application/octet-stream")
                                    .body(body.clone()))
                            },
                            Some(progress),
                        )
                        .await?;
                    if resp.status() != StatusCode::ACCEPTED {
                        return Err(self.status_error(&op, resp).await);
                    }
                    location = self.location(&base, &resp, &op)?;
                    offset += want;
                    progress(Event::BlobProgress {
                        digest: blob.digest.clone(),
                        done: offset,
                        total: blob.size,
                    });
                }
                // Verify what was read (the store's readers fail at EOF on a
                // mismatch).
                std::io::copy(&mut reader, &mut std::io::sink())
                    .map_err(|e| store_err(Box::new(e)))?;
                let loc = location.clone();
                self.send(&op, &mut |http| {
                    Ok(http
                        .put(&loc)
                        .query(&[("digest", digest.as_str())])
                        .header(CONTENT_LENGTH, "0"))
                })
                .await?
            }
            _ => {
                let loc = location.clone();
                let size = blob.size;
                let d = blob.digest.clone();
                let progress2 = progress.clone();
                self.send_with_progress(
                    &op,
                    &mut |http| {
                        let reader = source.open(&d).map_err(|source| RegistryError::Store {
                            digest: d.clone(),
                            source,
                        })?;
                        Ok(http
                            .put(&loc)
                            .query(&[("digest", digest.as_str())])
                            .header(CONTENT_TYPE, "application/octet-stream")
                            .header(CONTENT_LENGTH, size)
                            .body(stream_body(reader, d.clone(), size, progress2.clone())))
                    },
                    Some(progress),
                )
                .await?
            }
        };
        if final_resp.status() != StatusCode::CREATED && !final_resp.status().is_success() {
            return Err(self.status_error(&op, final_resp).await);
        }
        progress(Event::BlobDone {
            digest: blob.digest.clone(),
            size: blob.size,
        });
        Ok(blob.size)
    }

    fn location(&self, base: &str, resp: &reqwest::Response, op: &Op<'_>) -> Result<String> {
        let loc = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RegistryError::Protocol {
                registry: self.host().to_owned(),
                reason: format!("{}: the registry answered no upload location", op.what),
            })?;
        Ok(
            if loc.starts_with("http://") || loc.starts_with("https://") {
                loc.to_owned()
            } else if loc.starts_with('/') {
                format!("{base}{loc}")
            } else {
                format!("{base}/{loc}")
            },
        )
    }
}

/// A request body streaming `reader` (read on a blocking thread), with
/// progress events. A read error (the store's digest check) fails the
/// upload.
fn stream_body(
    mut reader: Box<dyn Read + Send>,
    digest: Digest,
    total: u64,
    progress: Progress,
) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let mut done = 0u64;
        let mut last = 0u64;
        loop {
            let mut buf = vec![0u8; 1 << 20];
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    buf.truncate(n);
                    done += n as u64;
                    if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                        return;
                    }
                    if done - last >= 1 << 20 || done == total {
                        last = done;
                        progress(Event::BlobProgress {
                            digest: digest.clone(),
                            done,
                            total,
                        });
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Body::wrap_stream(stream)
}
