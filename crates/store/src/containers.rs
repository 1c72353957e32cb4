//! Running containers: a registry so that `rmi` and garbage collection know
//! which images (and so which snapshots) a `kiln run` is using, and so that
//! container names are unique while their containers run.
//!
//! ```text
//! containers/registry.lock   exclusive flock, held while registering (short)
//! containers/<id>.lock       exclusive flock, held by the process running <id>
//! containers/<id>.json       its ContainerRecord
//! ```
//!
//! A record counts as running while its lock is held. A process killed with
//! `kill -9` releases the lock with its last descriptor; its files are
//! removed by the next registration or listing ([`Store::containers`]).
//! kiln keeps no stopped containers: a [`Container`] guard removes its
//! record when dropped.

use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::images::ImageRecord;
use crate::{Store, fsutil};

/// A running container, as recorded in the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// 64 hex digits, random (docker's container ids).
    pub id: String,
    /// `--name`, unique among running containers of this store.
    pub name: Option<String>,
    /// The image it runs (`None` for a root file system directory).
    pub image: Option<ImageRecord>,
    /// The process that runs it (`kiln run`).
    pub pid: u32,
    /// When it started, RFC 3339.
    pub created: String,
}

impl ContainerRecord {
    /// The id as docker shows it (12 digits).
    pub fn short_id(&self) -> &str {
        self.id.get(..12).unwrap_or(&self.id)
    }
}

/// A registered container; the registration ends (its record and lock file
/// are removed) when this is dropped.
#[derive(Debug)]
pub struct Container {
    record: ContainerRecord,
    dir: PathBuf,
    lock: Option<File>,
}

impl Container {
    /// The record.
    pub fn record(&self) -> &ContainerRecord {
        &self.record
    }

    /// The container id.
    pub fn id(&self) -> &str {
        &self.record.id
    }

    /// The lock file's descriptor: a process that inherits it keeps the
    /// container registered until it exits too (e.g. the runtime helper,
    /// which outlives a killed `kiln run` for a moment).
    pub fn lock_file(&self) -> Option<&File> {
        self.lock.as_ref()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // Files first, then the lock: a scan that meets the lock file in
        // between sees it held (running) or the files gone.
        let _ = std::fs::remove_file(self.dir.join(format!("{}.json", self.record.id)));
        let _ = std::fs::remove_file(self.dir.join(format!("{}.lock", self.record.id)));
        self.lock = None;
    }
}

/// Whether `name` is a valid container name (docker's
/// `[a-zA-Z0-9][a-zA-Z0-9_.-]*`).
pub fn valid_container_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

fn random_id() -> Result<String> {
    use std::io::Read;
    let mut buf = [0u8; 32];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| StoreError::io("read", "/dev/urandom", e))?;
    Ok(hex::encode(buf))
}

impl Store {
    fn containers_dir(&self) -> PathBuf {
        self.root.join("containers")
    }

    /// Record a container that is about to run `image` (`None`: a root file
    /// system directory), under `name` when given. Fails with
    /// [`StoreError::NameInUse`] when a running container has that name.
    ///
    /// Take a [`Lease`](crate::Lease) first and hold it until this returns,
    /// so that no garbage collection runs between resolving the image's
    /// snapshots and registering their user.
    pub fn register_container(
        &self,
        name: Option<&str>,
        image: Option<&ImageRecord>,
    ) -> Result<Container> {
        if let Some(n) = name
            && !valid_container_name(n)
        {
            return Err(StoreError::InvalidName(n.to_owned()));
        }
        let dir = self.containers_dir();
        fs_err::create_dir_all(&dir).map_err(|e| StoreError::io("create directory", &dir, e))?;
        let registry = dir.join("registry.lock");
        let _guard = fsutil::lock(&registry, true, true)?.ok_or_else(|| {
            StoreError::io("lock", &registry, std::io::ErrorKind::WouldBlock.into())
        })?;
        let running = Self::scan_containers(&dir)?;
        if let Some(n) = name
            && let Some(other) = running.iter().find(|c| c.name.as_deref() == Some(n))
        {
            return Err(StoreError::NameInUse {
                name: n.to_owned(),
                id: other.short_id().to_owned(),
            });
        }
        let id = random_id()?;
        let lock_path = dir.join(format!("{id}.lock"));
        let lock = fsutil::lock(&lock_path, true, false)?
            .ok_or_else(|| {
                StoreError::io("lock", &lock_path, std::io::ErrorKind::WouldBlock.into())
            })?
            .into_file();
        let record = ContainerRecord {
            id: id.clone(),
            name: name.map(str::to_owned),
            image: image.cloned(),
            pid: std::process::id(),
            created: kiln_oci::config::timestamp(std::time::SystemTime::now()),
        };
        let bytes = serde_json::to_vec_pretty(&record).map_err(|e| StoreError::Metadata {
            what: format!("container {id}"),
            reason: e.to_string(),
        })?;
        let container = Container {
            record,
            dir: dir.clone(),
            lock: Some(lock),
        };
        // Temp file and rename (a reader never sees half a record), no
        // fsync: a record only means something while its process lives,
        // and after a crash its lock is free anyway.
        let tmp = dir.join(format!(".{id}.json.tmp"));
        let path = dir.join(format!("{id}.json"));
        fs_err::write(&tmp, &bytes)
            .and_then(|()| fs_err::rename(&tmp, &path))
            .map_err(|e| StoreError::io("write", &path, e))?;
        Ok(container)
    }

    /// The running containers of this store. Records whose process is gone
    /// (a killed kiln) are removed on the way.
    pub fn containers(&self) -> Result<Vec<ContainerRecord>> {
        let dir = self.containers_dir();
        if !dir.is_dir() {
            return Ok(Vec::new());
        }
        let registry = dir.join("registry.lock");
        let _guard = fsutil::lock(&registry, true, true)?.ok_or_else(|| {
            StoreError::io("lock", &registry, std::io::ErrorKind::WouldBlock.into())
        })?;
        Self::scan_containers(&dir)
    }

    /// The running containers that use the image with this id (config
    /// digest).
    pub fn containers_using(&self, image: &ImageRecord) -> Result<Vec<ContainerRecord>> {
        Ok(self
            .containers()?
            .into_iter()
            .filter(|c| c.image.as_ref().is_some_and(|i| i.config == image.config))
            .collect())
    }

    /// Read every record, removing those whose lock is free. Call with the
    /// registry lock held.
    fn scan_containers(dir: &Path) -> Result<Vec<ContainerRecord>> {
        let mut running = Vec::new();
        let entries =
            fs_err::read_dir(dir).map_err(|e| StoreError::io("read directory", dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io("read directory", dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".lock") else {
                // A record without a lock file is a leftover of a crash
                // between the two removals in `Drop`.
                // A temp record is a leftover too: records are written
                // under the registry lock, which the caller holds.
                let stale_record = name
                    .strip_suffix(".json")
                    .is_some_and(|id| !dir.join(format!("{id}.lock")).exists());
                if stale_record || name.ends_with(".json.tmp") {
                    let _ = std::fs::remove_file(entry.path());
                }
                continue;
            };
            if id == "registry" {
                continue;
            }
            let lock_path = entry.path();
            let json = dir.join(format!("{id}.json"));
            match fsutil::lock(&lock_path, false, false) {
                // Nobody holds it: the container's process is gone.
                Ok(Some(_free)) => {
                    let _ = std::fs::remove_file(&json);
                    let _ = std::fs::remove_file(&lock_path);
                }
                Ok(None) => {
                    // Held: running (the record may not be written yet).
                    let Ok(bytes) = std::fs::read(&json) else {
                        continue;
                    };
                    let record: ContainerRecord =
                        serde_json::from_slice(&bytes).map_err(|e| StoreError::Metadata {
                            what: format!("container {id}"),
                            reason: e.to_string(),
                        })?;
                    running.push(record);
                }
                Err(e) => return Err(e),
            }
        }
        running.sort_by(|a, b| a.created.cmp(&b.created));
        Ok(running)
    }
}
