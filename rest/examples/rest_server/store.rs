//! The durable storage of `rest_server`: an SQLite index, and one file per
//! large value.
//!
//! Layout of the data directory:
//!
//! ```text
//! DIR/lock              held (flock) while a server uses DIR
//! DIR/index.sqlite3     keys, media types, ETags, sizes, small values (WAL mode)
//! DIR/blobs/NAME        one immutable file per value larger than INLINE_MAX
//! DIR/tmp/NAME          values being received
//! ```
//!
//! Why it survives a crash at any point:
//!
//! * a small value is one SQLite transaction (`synchronous=FULL`: the
//!   write-ahead log is on disk when `commit` returns);
//! * a large value is written to `tmp/`, `fsync`ed, renamed into `blobs/`
//!   under a fresh random name, and `blobs/` is `fsync`ed; only then does
//!   the index transaction point the key at it. A crash before the commit
//!   leaves the old value in place (and an unreferenced file, removed at
//!   the next start); after it, the new value is there;
//! * a replaced or deleted value's file is removed after the commit (a
//!   crash in between leaves an unreferenced file, removed at start).
//!
//! Blob files are never modified once named, so a reader that opened one
//! keeps reading the value it looked up even if it is replaced meanwhile.

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use openssl::sha::Sha256;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

/// Values up to this size live in the index; larger ones in files.
pub const INLINE_MAX: usize = 64 * 1024;

/// Buffer of the writer of a large value's file.
const SPILL_BUFFER: usize = 256 * 1024;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS kv (
    key          TEXT PRIMARY KEY NOT NULL,
    content_type TEXT NOT NULL,
    etag         TEXT NOT NULL,
    size         INTEGER NOT NULL,
    inline       BLOB,
    file         TEXT
) WITHOUT ROWID";

/// What went wrong in the store.
#[derive(Debug)]
pub enum StoreError {
    /// A file system operation failed.
    Io(io::Error),
    /// The index failed.
    Index(rusqlite::Error),
    /// Another process holds the data directory.
    Locked(PathBuf),
    /// The index names a value file that is not there.
    Missing(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io(e) => write!(f, "storage I/O: {e}"),
            StoreError::Index(e) => write!(f, "index: {e}"),
            StoreError::Locked(dir) => write!(
                f,
                "{} is in use by another process (its lock file is held)",
                dir.display()
            ),
            StoreError::Missing(name) => write!(f, "value file {name} is missing"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<io::Error> for StoreError {
    fn from(e: io::Error) -> Self {
        StoreError::Io(e)
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Index(e)
    }
}

/// A stored value, ready to be sent.
#[derive(Debug)]
pub struct Entry {
    /// The media type it was stored with.
    pub content_type: String,
    /// Its entity tag (without quotes).
    pub etag: String,
    /// Its length in bytes.
    pub size: u64,
    /// The bytes.
    pub data: Data,
}

/// Where a stored value's bytes are.
#[derive(Debug)]
pub enum Data {
    /// In memory (a small value).
    Inline(Vec<u8>),
    /// In this file, opened (a large value; it stays readable even if the
    /// key is replaced or deleted meanwhile), and its path.
    File(File, PathBuf),
}

/// What a [`Store::put`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    /// A new key, with this entity tag.
    Created(String),
    /// Replaced the value of an existing key.
    Replaced(String),
    /// The condition refused the current state (its tag, if any); nothing
    /// changed.
    Refused(Option<String>),
}

/// What a [`Store::delete`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Removed {
    /// The key is gone.
    Deleted,
    /// There was no such key.
    NotFound,
    /// The condition refused the current value (its tag); nothing changed.
    Refused(String),
}

/// One page of a key listing.
#[derive(Debug, PartialEq, Eq)]
pub struct Page {
    /// The keys, in byte order.
    pub keys: Vec<String>,
    /// The last key of this page when more keys follow (the `after` of the
    /// next page).
    pub next: Option<String>,
}

/// What [`Store::open`] cleaned up after an earlier run.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Keys in the index.
    pub keys: u64,
    /// Partial uploads removed from `tmp/`.
    pub partial: usize,
    /// Value files no key pointed to (a crash between their rename and
    /// the commit, or between a commit and the old file's removal).
    pub orphans: usize,
}

/// The durable key-value store.
pub struct Store {
    dir: PathBuf,
    blobs: PathBuf,
    tmp: PathBuf,
    /// The one connection that writes (SQLite has one writer at a time).
    writer: Mutex<Connection>,
    /// Idle read-only connections (WAL readers never wait for the writer).
    readers: Mutex<Vec<Connection>>,
    /// Held for the store's life.
    _lock: File,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").field("dir", &self.dir).finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `fsync` of a directory, so that names created or renamed in it last.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A fresh random file name (128 bits, hex).
fn random_name() -> io::Result<String> {
    let mut bytes = [0u8; 16];
    openssl::rand::rand_bytes(&mut bytes).map_err(io::Error::other)?;
    Ok(hex(&bytes))
}

/// Whether `name` can be a value file's name (what [`random_name`] makes):
/// an index entry never leads outside `blobs/`.
fn is_blob_name(name: &str) -> bool {
    name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

impl Store {
    /// Opens (creating it if needed) the store in `dir`, locks it, and
    /// removes what an interrupted earlier run left behind.
    pub fn open(dir: &Path) -> Result<(Store, Recovered), StoreError> {
        let blobs = dir.join("blobs");
        let tmp = dir.join("tmp");
        fs::create_dir_all(&blobs)?;
        fs::create_dir_all(&tmp)?;
        sync_dir(dir)?;
        let lock_file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))?;
        // `File::try_lock` is newer than the workspace's declared MSRV, but
        // this example's SQLite binding already needs a newer compiler.
        #[allow(clippy::incompatible_msrv)]
        match lock_file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked(dir.to_path_buf()))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
        }
        let index = dir.join("index.sqlite3");
        let writer = Connection::open(&index)?;
        // WAL: readers do not wait for the writer. FULL: a commit is on
        // disk when it returns (NORMAL could lose the last commits on
        // power loss).
        let mode: String = writer.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Io(io::Error::other(format!(
                "{}: cannot use write-ahead logging (journal mode {mode})",
                index.display()
            ))));
        }
        writer.pragma_update(None, "synchronous", "FULL")?;
        writer.busy_timeout(std::time::Duration::from_secs(5))?;
        writer.execute_batch(SCHEMA)?;
        let store = Store {
            dir: dir.to_path_buf(),
            blobs,
            tmp,
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
            _lock: lock_file,
        };
        let recovered = store.recover()?;
        Ok((store, recovered))
    }

    /// Removes partial uploads and unreferenced value files.
    fn recover(&self) -> Result<Recovered, StoreError> {
        let mut recovered = Recovered::default();
        for entry in fs::read_dir(&self.tmp)? {
            fs::remove_file(entry?.path())?;
            recovered.partial += 1;
        }
        let writer = lock(&self.writer);
        let keys: i64 = writer.query_row("SELECT count(*) FROM kv", [], |r| r.get(0))?;
        recovered.keys = keys.unsigned_abs();
        let mut referenced = HashSet::new();
        let mut stmt = writer.prepare("SELECT file FROM kv WHERE file IS NOT NULL")?;
        for name in stmt.query_map([], |r| r.get::<_, String>(0))? {
            referenced.insert(name?);
        }
        for entry in fs::read_dir(&self.blobs)? {
            let entry = entry?;
            let name = entry.file_name();
            if !name.to_str().is_some_and(|n| referenced.contains(n)) {
                fs::remove_file(entry.path())?;
                recovered.orphans += 1;
            }
        }
        Ok(recovered)
    }

    fn open_reader(&self) -> Result<Connection, StoreError> {
        let conn = Connection::open_with_flags(
            self.dir.join("index.sqlite3"),
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(conn)
    }

    /// Runs `f` on an idle read-only connection.
    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let idle = lock(&self.readers).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.open_reader()?,
        };
        let result = f(&conn);
        lock(&self.readers).push(conn);
        result
    }

    fn blob(&self, name: &str) -> Result<PathBuf, StoreError> {
        if is_blob_name(name) {
            Ok(self.blobs.join(name))
        } else {
            Err(StoreError::Missing(name.to_owned()))
        }
    }

    /// The entity tag of `key`'s value, if there is one.
    pub fn etag(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.read(|conn| {
            Ok(conn
                .query_row("SELECT etag FROM kv WHERE key = ?1", [key], |r| r.get(0))
                .optional()?)
        })
    }

    /// `key`'s value, with its file already open for a large one.
    pub fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        // A writer may replace the value between the look-up and the open
        // (its old file is then gone): look again.
        for _ in 0..3 {
            let row = self.read(|conn| {
                Ok(conn
                    .query_row(
                        "SELECT content_type, etag, size, inline, file FROM kv WHERE key = ?1",
                        [key],
                        |r| {
                            Ok((
                                r.get::<_, String>(0)?,
                                r.get::<_, String>(1)?,
                                r.get::<_, i64>(2)?.unsigned_abs(),
                                r.get::<_, Option<Vec<u8>>>(3)?,
                                r.get::<_, Option<String>>(4)?,
                            ))
                        },
                    )
                    .optional()?)
            })?;
            let Some((content_type, etag, size, inline, file)) = row else {
                return Ok(None);
            };
            let data = match file {
                None => Data::Inline(inline.unwrap_or_default()),
                Some(name) => match File::open(self.blob(&name)?) {
                    Ok(file) => Data::File(file, self.blob(&name)?),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e.into()),
                },
            };
            return Ok(Some(Entry {
                content_type,
                etag,
                size,
                data,
            }));
        }
        Err(StoreError::Missing(format!("of key {key:?}")))
    }

    /// Starts receiving a value of media type `content_type`.
    pub fn upload(&self, content_type: &str) -> Upload<'_> {
        let mut hasher = Sha256::new();
        hasher.update(content_type.as_bytes());
        hasher.update(&[0]);
        Upload {
            store: self,
            content_type: content_type.to_owned(),
            hasher,
            size: 0,
            buf: Vec::new(),
            spill: None,
        }
    }

    /// Stores `upload` under `key` if `allow(current tag)` says so, in one
    /// transaction: when this returns `Created`/`Replaced`, the value is on
    /// disk. A refused or failed put leaves the old value as it was.
    pub fn put(
        &self,
        key: &str,
        upload: Upload<'_>,
        allow: impl FnOnce(Option<&str>) -> bool,
    ) -> Result<Written, StoreError> {
        let (content_type, etag, size, inline, blob) = upload.finish()?;
        let file = blob.as_ref().map(|b| b.name.clone());
        let size = i64::try_from(size).map_err(io::Error::other)?;
        let mut writer = lock(&self.writer);
        let tx = writer.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current = current_of(&tx, key)?;
        if !allow(current.as_ref().map(|(tag, _)| tag.as_str())) {
            // `blob` drops here: the new file goes.
            return Ok(Written::Refused(current.map(|(tag, _)| tag)));
        }
        tx.execute(
            "INSERT OR REPLACE INTO kv (key, content_type, etag, size, inline, file)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![key, content_type, etag, size, inline, file],
        )?;
        tx.commit()?;
        drop(writer);
        if let Some(blob) = blob {
            blob.keep();
        }
        match current {
            None => Ok(Written::Created(etag)),
            Some((_, old)) => {
                if let Some(old) = old {
                    if let Err(e) = self.blob(&old).and_then(|p| Ok(remove_if_present(&p)?)) {
                        log::warn!("removing the replaced value file {old}: {e}");
                    }
                }
                Ok(Written::Replaced(etag))
            }
        }
    }

    /// Deletes `key` if `allow(its tag)` says so.
    pub fn delete(
        &self,
        key: &str,
        allow: impl FnOnce(&str) -> bool,
    ) -> Result<Removed, StoreError> {
        let mut writer = lock(&self.writer);
        let tx = writer.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current = current_of(&tx, key)?;
        let Some((tag, file)) = current else {
            return Ok(Removed::NotFound);
        };
        if !allow(&tag) {
            return Ok(Removed::Refused(tag));
        }
        tx.execute("DELETE FROM kv WHERE key = ?1", [key])?;
        tx.commit()?;
        drop(writer);
        if let Some(old) = file {
            if let Err(e) = self.blob(&old).and_then(|p| Ok(remove_if_present(&p)?)) {
                log::warn!("removing the deleted value file {old}: {e}");
            }
        }
        Ok(Removed::Deleted)
    }

    /// Up to `limit` keys starting with `prefix`, in byte order, after
    /// `after` (exclusive) if given.
    pub fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        self.read(|conn| {
            let (sql, start) = match after {
                Some(after) if after >= prefix => {
                    ("SELECT key FROM kv WHERE key > ?1 ORDER BY key", after)
                }
                _ => ("SELECT key FROM kv WHERE key >= ?1 ORDER BY key", prefix),
            };
            let mut stmt = conn.prepare_cached(sql)?;
            let mut rows = stmt.query([start])?;
            let mut page = Page {
                keys: Vec::new(),
                next: None,
            };
            while let Some(row) = rows.next()? {
                let key: String = row.get(0)?;
                if !key.starts_with(prefix) {
                    break;
                }
                if page.keys.len() == limit {
                    page.next = page.keys.last().cloned();
                    break;
                }
                page.keys.push(key);
            }
            Ok(page)
        })
    }
}

/// A value file that is removed when dropped, unless kept.
struct NewBlob {
    path: PathBuf,
    name: String,
}

impl NewBlob {
    fn keep(mut self) {
        self.path = PathBuf::new();
    }
}

impl Drop for NewBlob {
    fn drop(&mut self) {
        if self.path.as_os_str().is_empty() {
            return;
        }
        if let Err(e) = remove_if_present(&self.path) {
            log::warn!("removing {}: {e}", self.path.display());
        }
    }
}

/// A value being received: kept in memory up to [`INLINE_MAX`], written
/// to a file in `tmp/` beyond. Dropping it (the client went away, the
/// body was bad) removes the file.
pub struct Upload<'s> {
    store: &'s Store,
    content_type: String,
    hasher: Sha256,
    size: u64,
    buf: Vec<u8>,
    spill: Option<(BufWriter<File>, NewBlob)>,
}

impl fmt::Debug for Upload<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upload")
            .field("size", &self.size)
            .field("spilled", &self.spill.is_some())
            .finish()
    }
}

/// A finished upload: media type, tag, size, inline bytes or file.
type Finished = (String, String, u64, Option<Vec<u8>>, Option<NewBlob>);

impl Upload<'_> {
    /// Bytes received so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends `data` to the value.
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.hasher.update(data);
        self.size += data.len() as u64;
        if let Some((file, _)) = &mut self.spill {
            return file.write_all(data);
        }
        if self.buf.len() + data.len() <= INLINE_MAX {
            self.buf.extend_from_slice(data);
            return Ok(());
        }
        let name = random_name()?;
        let blob = NewBlob {
            path: self.store.tmp.join(&name),
            name,
        };
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&blob.path)?;
        let mut file = BufWriter::with_capacity(SPILL_BUFFER, file);
        file.write_all(&std::mem::take(&mut self.buf))?;
        file.write_all(data)?;
        self.spill = Some((file, blob));
        Ok(())
    }

    /// Makes a large value's file durable under its final name.
    fn finish(mut self) -> Result<Finished, StoreError> {
        let etag = hex(&self.hasher.clone().finish()[..16]);
        let content_type = std::mem::take(&mut self.content_type);
        let Some((file, mut blob)) = self.spill.take() else {
            let inline = std::mem::take(&mut self.buf);
            return Ok((content_type, etag, self.size, Some(inline), None));
        };
        let file = file.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        let dest = self.store.blobs.join(&blob.name);
        fs::rename(&blob.path, &dest)?;
        blob.path = dest;
        sync_dir(&self.store.blobs)?;
        Ok((content_type, etag, self.size, None, Some(blob)))
    }
}

/// The tag and blob file of `key` as `tx` sees it, if it exists.
fn current_of(
    tx: &rusqlite::Transaction<'_>,
    key: &str,
) -> rusqlite::Result<Option<(String, Option<String>)>> {
    tx.query_row("SELECT etag, file FROM kv WHERE key = ?1", [key], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .optional()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system's temporary one, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!(
                "pistachio-store-{name}-{}-{}",
                std::process::id(),
                random_name().unwrap()
            ));
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn put(store: &Store, key: &str, value: &[u8]) -> Written {
        let mut upload = store.upload("application/octet-stream");
        for piece in value.chunks(10_000) {
            upload.write(piece).unwrap();
        }
        store.put(key, upload, |_| true).unwrap()
    }

    fn value_of(store: &Store, key: &str) -> Option<Vec<u8>> {
        let entry = store.get(key).unwrap()?;
        Some(match entry.data {
            Data::Inline(bytes) => bytes,
            Data::File(mut file, _) => {
                let mut bytes = Vec::new();
                io::Read::read_to_end(&mut file, &mut bytes).unwrap();
                bytes
            }
        })
    }

    fn files_in(dir: &Path) -> usize {
        fs::read_dir(dir).unwrap().count()
    }

    #[test]
    fn small_and_large_values_round_trip_and_persist() {
        let dir = TempDir::new("persist");
        let small = b"hello".to_vec();
        let large: Vec<u8> = (0..INLINE_MAX * 3).map(|i| (i % 251) as u8).collect();
        {
            let (store, recovered) = Store::open(&dir.0).unwrap();
            assert_eq!(recovered, Recovered::default());
            assert!(matches!(put(&store, "s", &small), Written::Created(_)));
            assert!(matches!(put(&store, "l", &large), Written::Created(_)));
            assert_eq!(files_in(&dir.0.join("blobs")), 1);
            assert!(matches!(
                store.get("s").unwrap().unwrap().data,
                Data::Inline(_)
            ));
            assert!(matches!(
                store.get("l").unwrap().unwrap().data,
                Data::File(..)
            ));
        }
        let (store, recovered) = Store::open(&dir.0).unwrap();
        assert_eq!(recovered.keys, 2);
        assert_eq!(value_of(&store, "s").unwrap(), small);
        assert_eq!(value_of(&store, "l").unwrap(), large);
        assert_eq!(store.get("l").unwrap().unwrap().size, large.len() as u64);
    }

    #[test]
    fn etags_follow_content_and_media_type() {
        let dir = TempDir::new("etag");
        let (store, _) = Store::open(&dir.0).unwrap();
        let Written::Created(a) = put(&store, "a", b"one") else {
            panic!("not created")
        };
        let Written::Replaced(same) = put(&store, "a", b"one") else {
            panic!("not replaced")
        };
        assert_eq!(a, same, "same bytes, same type: same tag");
        let Written::Replaced(other) = put(&store, "a", b"two") else {
            panic!("not replaced")
        };
        assert_ne!(a, other);
        let mut upload = store.upload("text/plain");
        upload.write(b"two").unwrap();
        let Written::Replaced(typed) = store.put("a", upload, |_| true).unwrap() else {
            panic!("not replaced")
        };
        assert_ne!(other, typed, "the media type is part of the tag");
        assert_eq!(store.etag("a").unwrap(), Some(typed));
    }

    #[test]
    fn refused_and_abandoned_writes_leave_the_old_value() {
        let dir = TempDir::new("refused");
        let (store, _) = Store::open(&dir.0).unwrap();
        let old: Vec<u8> = vec![1; INLINE_MAX + 1];
        let Written::Created(tag) = put(&store, "k", &old) else {
            panic!("not created")
        };
        // Refused by its condition: nothing changes, no file is left.
        let mut upload = store.upload("application/octet-stream");
        upload.write(&[2; INLINE_MAX * 2]).unwrap();
        let seen = Mutex::new(None);
        let written = store
            .put("k", upload, |current| {
                *seen.lock().unwrap() = current.map(str::to_owned);
                false
            })
            .unwrap();
        assert_eq!(written, Written::Refused(Some(tag.clone())));
        assert_eq!(seen.into_inner().unwrap(), Some(tag.clone()));
        assert_eq!(value_of(&store, "k").unwrap(), old);
        assert_eq!(files_in(&dir.0.join("blobs")), 1);
        // Abandoned half way (the client went away): its file goes.
        let mut upload = store.upload("application/octet-stream");
        upload.write(&[3; INLINE_MAX * 2]).unwrap();
        assert_eq!(files_in(&dir.0.join("tmp")), 1);
        drop(upload);
        assert_eq!(files_in(&dir.0.join("tmp")), 0);
        assert_eq!(store.etag("k").unwrap(), Some(tag));
        // Replacing removes the old file; deleting removes the new one.
        assert!(matches!(
            put(&store, "k", &[4; INLINE_MAX * 2]),
            Written::Replaced(_)
        ));
        assert_eq!(files_in(&dir.0.join("blobs")), 1);
        assert_eq!(store.delete("k", |_| false).unwrap(), {
            let tag = store.etag("k").unwrap().unwrap();
            Removed::Refused(tag)
        });
        assert_eq!(store.delete("k", |_| true).unwrap(), Removed::Deleted);
        assert_eq!(store.delete("k", |_| true).unwrap(), Removed::NotFound);
        assert_eq!(files_in(&dir.0.join("blobs")), 0);
        assert!(store.get("k").unwrap().is_none());
    }

    #[test]
    fn an_open_value_survives_its_replacement() {
        let dir = TempDir::new("open");
        let (store, _) = Store::open(&dir.0).unwrap();
        let old = vec![5u8; INLINE_MAX * 2];
        put(&store, "k", &old);
        let entry = store.get("k").unwrap().unwrap();
        put(&store, "k", &[6u8; INLINE_MAX * 2]);
        let Data::File(mut file, _) = entry.data else {
            panic!("a large value is a file")
        };
        let mut bytes = Vec::new();
        io::Read::read_to_end(&mut file, &mut bytes).unwrap();
        assert_eq!(bytes, old);
    }

    #[test]
    fn start_up_removes_partial_uploads_and_orphans() {
        let dir = TempDir::new("recover");
        {
            let (store, _) = Store::open(&dir.0).unwrap();
            put(&store, "kept", &[7u8; INLINE_MAX * 2]);
        }
        // What a crash can leave: a half-received value, and a value file
        // renamed into place whose commit never happened.
        fs::write(dir.0.join("tmp").join(random_name().unwrap()), b"partial").unwrap();
        fs::write(dir.0.join("blobs").join(random_name().unwrap()), b"orphan").unwrap();
        let (store, recovered) = Store::open(&dir.0).unwrap();
        assert_eq!(
            recovered,
            Recovered {
                keys: 1,
                partial: 1,
                orphans: 1
            }
        );
        assert_eq!(files_in(&dir.0.join("blobs")), 1);
        assert_eq!(value_of(&store, "kept").unwrap(), vec![7u8; INLINE_MAX * 2]);
    }

    #[test]
    fn a_second_store_on_the_same_directory_is_refused() {
        let dir = TempDir::new("lock");
        let (_store, _) = Store::open(&dir.0).unwrap();
        assert!(matches!(Store::open(&dir.0), Err(StoreError::Locked(_))));
    }

    #[test]
    fn listing_pages_through_a_prefix() {
        let dir = TempDir::new("list");
        let (store, _) = Store::open(&dir.0).unwrap();
        for key in ["a", "b/1", "b/2", "b/3", "b/4", "b0", "c", "é"] {
            put(&store, key, b"v");
        }
        let page = store.list("b/", None, 3).unwrap();
        assert_eq!(page.keys, ["b/1", "b/2", "b/3"]);
        assert_eq!(page.next.as_deref(), Some("b/3"));
        let page = store.list("b/", page.next.as_deref(), 3).unwrap();
        assert_eq!(page.keys, ["b/4"]);
        assert_eq!(page.next, None);
        // Exactly a page full: no next page.
        assert_eq!(store.list("b/", Some("b/1"), 3).unwrap().next, None);
        // `after` before the prefix starts at the prefix.
        assert_eq!(store.list("c", Some("a"), 10).unwrap().keys, ["c"]);
        let all = store.list("", None, 100).unwrap();
        assert_eq!(all.keys, ["a", "b/1", "b/2", "b/3", "b/4", "b0", "c", "é"]);
        assert!(store.list("zz", None, 10).unwrap().keys.is_empty());
    }
}
