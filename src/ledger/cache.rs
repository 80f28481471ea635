//! The report cache in the ledger's database (migration 2): what `scan` remembers of each
//! transcript file and directory between reports. Only a cache: deleting its rows costs one slow
//! report, nothing else.

use super::*;

/// What a report remembers of one transcript file between runs (scan.rs decides what it means and
/// owns the format of the blobs).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CachedFile {
    /// The path's bytes.
    pub path: Vec<u8>,
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
    /// Bytes read, up to the end of the last complete line.
    pub offset: u64,
    pub head: u64,
    pub tail: u64,
    pub uses_mtime: bool,
    pub sums: Vec<u8>,
}

/// A cached file's response identities: every one in it, and those counted elsewhere.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CachedKeys {
    pub keys: Vec<u8>,
    pub lost: Vec<u8>,
}

/// A directory listing remembered by the report cache: path, modification time, when it was
/// listed (both in nanoseconds), and its entries (scan.rs owns their format).
pub type DirRow = (Vec<u8>, i64, i64, Vec<u8>);

/// One write of the report cache: applied whole, and only if nobody wrote it since it was read.
#[derive(Debug, Default)]
pub struct ScanWrite {
    pub expect_generation: i64,
    /// Forget every cached file first (the cache was made for other prices or directories).
    pub clear: bool,
    pub meta: Vec<(&'static str, i64)>,
    pub upsert: Vec<(CachedFile, CachedKeys)>,
    pub delete: Vec<Vec<u8>>,
}

/// The report cache's storage. A read sees one consistent state: run it inside [`Ledger::snapshot`].
impl Ledger {
    /// Run `f` inside one read transaction, so the ledger's rows and the cache agree.
    pub fn snapshot<T>(&self, f: impl FnOnce(&Ledger) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let tx = self.conn.unchecked_transaction()?;
        let r = f(self)?;
        tx.commit()?;
        Ok(r)
    }

    pub fn scan_meta(&self) -> anyhow::Result<std::collections::HashMap<String, i64>> {
        let mut st = self.conn.prepare_cached("SELECT k, v FROM scan_meta")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn scan_files(&self) -> anyhow::Result<Vec<CachedFile>> {
        let mut st = self.conn.prepare_cached(
            "SELECT path, dev, ino, size, mtime_ns, offset, head, tail, uses_mtime, sums FROM scan_files ORDER BY path",
        )?;
        let rows = st.query_map([], |r| {
            Ok(CachedFile {
                path: r.get(0)?,
                dev: r.get::<_, i64>(1)? as u64,
                ino: r.get::<_, i64>(2)? as u64,
                size: r.get::<_, i64>(3)? as u64,
                mtime_ns: r.get(4)?,
                offset: r.get::<_, i64>(5)? as u64,
                head: r.get::<_, i64>(6)? as u64,
                tail: r.get::<_, i64>(7)? as u64,
                uses_mtime: r.get(8)?,
                sums: r.get(9)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Directory listings remembered by the report cache.
    pub fn scan_dirs(&self) -> anyhow::Result<Vec<DirRow>> {
        let mut st = self.conn.prepare_cached("SELECT path, mtime_ns, listed_ns, entries FROM scan_dirs")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Remember directory listings, and forget those of directories that are gone. Each row stands
    /// on its own (a listing is checked against its directory before use), so no generation is
    /// needed; a busy ledger just skips it.
    pub fn write_scan_dirs(&self, rows: &[DirRow], gone: &[Vec<u8>]) -> anyhow::Result<()> {
        if rows.is_empty() && gone.is_empty() {
            return Ok(());
        }
        self.conn.busy_timeout(Duration::from_millis(250))?;
        let r = (|| -> anyhow::Result<()> {
            let tx = self.conn.unchecked_transaction()?;
            {
                let mut up = tx.prepare_cached(
                    "INSERT OR REPLACE INTO scan_dirs (path, mtime_ns, listed_ns, entries) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for (p, m, l, e) in rows {
                    up.execute(params![p, m, l, e])?;
                }
                let mut del = tx.prepare_cached("DELETE FROM scan_dirs WHERE path = ?1")?;
                for p in gone {
                    del.execute(params![p])?;
                }
            }
            tx.commit()?;
            Ok(())
        })();
        self.conn.busy_timeout(Duration::from_secs(10))?;
        r
    }

    /// Every cached file's keys, by path.
    pub fn scan_keys(&self) -> anyhow::Result<std::collections::HashMap<Vec<u8>, CachedKeys>> {
        let mut st = self.conn.prepare_cached("SELECT path, keys, lost FROM scan_keys")?;
        let rows =
            st.query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, CachedKeys { keys: r.get(1)?, lost: r.get(2)? })))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Changes when a response is recorded: (rows, highest rowid). Rows are only ever added.
    pub fn usage_fingerprint(&self) -> anyhow::Result<(i64, i64)> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*), COALESCE(MAX(rowid), 0) FROM usage", [], |r| Ok((r.get(0)?, r.get(1)?)))?)
    }

    /// The key of every recorded response, whenever it was.
    pub fn usage_keys(&self, mut each: impl FnMut(&str)) -> anyhow::Result<()> {
        let mut st = self.conn.prepare_cached("SELECT key FROM usage")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            each(r.get_ref(0)?.as_str()?);
        }
        Ok(())
    }

    /// Apply a cache write; false (and nothing written) when another ccb wrote the cache since this
    /// one read it, or the ledger is busy: the cache is then left as it is, still consistent.
    pub fn write_scan(&self, w: &ScanWrite) -> anyhow::Result<bool> {
        self.conn.busy_timeout(Duration::from_millis(250))?;
        let r = self.write_scan_locked(w);
        if matches!(r, Ok(true)) && w.upsert.len() >= 64 {
            // A large write (a first report) lives in the WAL, where every later report would
            // read it a system call a page: move it into the database, which reports map.
            let _ = self.conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        }
        self.conn.busy_timeout(Duration::from_secs(10))?;
        match r {
            Err(e)
                if e.downcast_ref::<rusqlite::Error>().is_some_and(|e| {
                    matches!(
                        e.sqlite_error_code(),
                        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
                    )
                }) =>
            {
                Ok(false)
            }
            r => r,
        }
    }

    fn write_scan_locked(&self, w: &ScanWrite) -> anyhow::Result<bool> {
        // The write lock first, then the generation: a deferred transaction could read an old one.
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        let r = self.write_scan_in_tx(w);
        match r {
            Ok(true) => self.conn.execute_batch("COMMIT")?,
            _ => {
                let _ = self.conn.execute_batch("ROLLBACK");
            }
        }
        r
    }

    fn write_scan_in_tx(&self, w: &ScanWrite) -> anyhow::Result<bool> {
        let c = &self.conn;
        let generation: i64 =
            c.query_row("SELECT COALESCE((SELECT v FROM scan_meta WHERE k = 'generation'), 0)", [], |r| r.get(0))?;
        if generation != w.expect_generation {
            return Ok(false);
        }
        if w.clear {
            c.execute("DELETE FROM scan_files", [])?;
            c.execute("DELETE FROM scan_keys", [])?;
        }
        let mut del = c.prepare_cached("DELETE FROM scan_files WHERE path = ?1")?;
        let mut del_keys = c.prepare_cached("DELETE FROM scan_keys WHERE path = ?1")?;
        for p in &w.delete {
            del.execute(params![p])?;
            del_keys.execute(params![p])?;
        }
        // The sums, read by every report, apart from the identities, read only when something
        // changed: the first table stays small.
        let mut up = c.prepare_cached(
            "INSERT OR REPLACE INTO scan_files (path, dev, ino, size, mtime_ns, offset, head, tail, uses_mtime, sums)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        let mut up_keys =
            c.prepare_cached("INSERT OR REPLACE INTO scan_keys (path, keys, lost) VALUES (?1, ?2, ?3)")?;
        for (f, k) in &w.upsert {
            up.execute(params![
                f.path,
                f.dev as i64,
                f.ino as i64,
                f.size as i64,
                f.mtime_ns,
                f.offset as i64,
                f.head as i64,
                f.tail as i64,
                f.uses_mtime,
                f.sums
            ])?;
            up_keys.execute(params![f.path, k.keys, k.lost])?;
        }
        let mut meta = c.prepare_cached("INSERT OR REPLACE INTO scan_meta (k, v) VALUES (?1, ?2)")?;
        for (k, v) in &w.meta {
            meta.execute(params![k, v])?;
        }
        meta.execute(params!["generation", generation + 1])?;
        Ok(true)
    }
}
