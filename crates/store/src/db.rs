//! The metadata database (redb), opened per transaction under `db.lock` so
//! that several kiln processes can share one root (redb itself allows one
//! open handle per file).

use redb::{Database, ReadableTable, TableDefinition};

use crate::error::{Result, StoreError};
use crate::{Store, fsutil};

/// Full normalized reference (`docker.io/library/busybox:latest`) → manifest digest.
pub(crate) const TAGS: TableDefinition<&str, &str> = TableDefinition::new("tags");
/// Manifest digest → `ImageRecord` (JSON).
pub(crate) const IMAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("images");
/// `<layer blob digest>|<compression>` → compressed blob `{digest,size}` (JSON).
pub(crate) const COMPRESSED: TableDefinition<&str, &[u8]> = TableDefinition::new("compressed");
/// Build-cache key → `CacheEntry` (JSON).
pub(crate) const CACHE: TableDefinition<&str, &[u8]> = TableDefinition::new("cache");
/// Build step identity (`Dockerfile path|stage|index`) → the pre-image its
/// key had in the last build (JSON), for `kiln build --explain`.
pub(crate) const STEPS: TableDefinition<&str, &[u8]> = TableDefinition::new("steps");
/// Flags (`index_dirty`).
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

pub(crate) struct Db {
    database: Database,
    lock: fsutil::LockGuard,
    lock_path: std::path::PathBuf,
}

impl Store {
    pub(crate) fn db(&self) -> Result<Db> {
        let lock_path = self.root.join("db.lock");
        let lock = fsutil::lock(&lock_path, true, true)?.ok_or_else(|| {
            StoreError::io("lock", &lock_path, std::io::ErrorKind::WouldBlock.into())
        })?;
        let db =
            Database::create(self.root.join("kiln.redb")).map_err(|e| StoreError::db("open", e))?;
        let this = Db {
            database: db,
            lock,
            lock_path,
        };
        // Create every table once so that readers never meet a missing one
        // (checked in a read transaction first: a write commits durably,
        // which costs several fsyncs on every open).
        let ready = this.database.begin_read().is_ok_and(|txn| {
            txn.open_table(TAGS).is_ok()
                && txn.open_table(IMAGES).is_ok()
                && txn.open_table(COMPRESSED).is_ok()
                && txn.open_table(CACHE).is_ok()
                && txn.open_table(STEPS).is_ok()
                && txn.open_table(META).is_ok()
        });
        if ready {
            return Ok(this);
        }
        this.write(|txn| {
            txn.open_table(TAGS)?;
            txn.open_table(IMAGES)?;
            txn.open_table(COMPRESSED)?;
            txn.open_table(CACHE)?;
            txn.open_table(STEPS)?;
            txn.open_table(META)?;
            Ok(())
        })?;
        Ok(this)
    }
}

impl Db {
    /// Close the database, keeping `db.lock` held.
    pub(crate) fn close(self) -> fsutil::LockGuard {
        drop(self.database);
        self.lock
    }

    /// Run `f` in a write transaction and commit it.
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> std::result::Result<T, TxError>,
    ) -> Result<T> {
        let mut txn = self
            .database
            .begin_write()
            .map_err(|e| StoreError::db("begin", e))?;
        // The database is closed right after this transaction (see
        // `Store::db`), and closing writes the allocator state in a commit
        // of its own when the last commit did not: saving it in this commit
        // (a quick-repair commit) makes that second durable commit, and its
        // fsyncs, unnecessary. Same durability, one commit instead of two
        // per write (a cold build writes once per step).
        txn.set_quick_repair(true);
        let out = f(&txn).map_err(TxError::into_store)?;
        // Invalidates the lookup cache (see `crate::lookup`).
        crate::lookup::bump_generation(self.lock.file())
            .map_err(|e| StoreError::io("write", &self.lock_path, e))?;
        txn.commit().map_err(|e| StoreError::db("commit", e))?;
        Ok(out)
    }

    /// Run `f` in a read transaction.
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> std::result::Result<T, TxError>,
    ) -> Result<T> {
        let txn = self
            .database
            .begin_read()
            .map_err(|e| StoreError::db("begin", e))?;
        f(&txn).map_err(TxError::into_store)
    }
}

/// Errors inside a transaction closure: database errors or our own.
pub(crate) enum TxError {
    Db(Box<redb::Error>),
    Store(StoreError),
}

impl TxError {
    fn into_store(self) -> StoreError {
        match self {
            Self::Db(e) => StoreError::Db {
                op: "transaction",
                source: e,
            },
            Self::Store(e) => e,
        }
    }
}

impl<E: Into<redb::Error>> From<E> for TxError {
    fn from(e: E) -> Self {
        Self::Db(Box::new(e.into()))
    }
}

pub(crate) fn store_err(e: StoreError) -> TxError {
    TxError::Store(e)
}

/// Decode a JSON record.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    what: &str,
    bytes: &[u8],
) -> std::result::Result<T, TxError> {
    serde_json::from_slice(bytes).map_err(|e| {
        TxError::Store(StoreError::Metadata {
            what: what.to_owned(),
            reason: e.to_string(),
        })
    })
}

/// Encode a JSON record (plain data: cannot fail).
pub(crate) fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

/// Every (key, value) of a `&str → &[u8]` table, owned.
pub(crate) fn all_bytes(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
) -> std::result::Result<Vec<(String, Vec<u8>)>, TxError> {
    let mut out = Vec::new();
    for item in table.iter()? {
        let (k, v) = item?;
        out.push((k.value().to_owned(), v.value().to_vec()));
    }
    Ok(out)
}

/// Every (key, value) of a `&str → &str` table, owned.
pub(crate) fn all_str(
    table: &impl ReadableTable<&'static str, &'static str>,
) -> std::result::Result<Vec<(String, String)>, TxError> {
    let mut out = Vec::new();
    for item in table.iter()? {
        let (k, v) = item?;
        out.push((k.value().to_owned(), v.value().to_owned()));
    }
    Ok(out)
}
