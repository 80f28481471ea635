//! The ledger: every session and every priced response, in SQLite (WAL, so many ccb processes
//! record at once; each response committed as it arrives, so a session killed mid-way loses
//! nothing already recorded).
//!
//! Reports and the pool see the ledger only through [`Store`], so that a shared server-side
//! ledger for teams can stand in for it without touching them.
//!
//! The parts: the schema (`schema.rs`), the file on disk (`file.rs`), the report cache
//! (`cache.rs`), limits (`limits.rs`), the session's writer (`writer.rs`), repair (`repair.rs`).
//! Over 600 lines with its tests (a quarter): the `Store` implementation reads as one.

mod cache;
mod file;
pub mod limits;
pub mod outbox;
pub mod pg;
pub mod repair;
mod schema;
pub mod status;
pub mod writer;

pub use cache::{CachedFile, CachedKeys, DirRow, ScanWrite};
use file::create_file;
pub use file::{file_fate, identity, set_aside, FileFate, FileIdentity};
use schema::MIGRATIONS;

use crate::core::exit::Ending;
use crate::core::money::Usd;
use crate::core::plan::{BillingMode, Class, Payer};
use crate::core::pricing::Usage;
use crate::core::recorded::Source;
use rusqlite::{params, Connection};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A session as planned, recorded when it starts (or is refused).
#[derive(Debug, Clone, Default)]
pub struct SessionStart {
    pub id: String,
    pub started_ms: i64,
    pub cwd: String,
    pub class: Class,
    pub print_mode: bool,
    pub model: Option<String>,
    pub reason: Option<String>,
    pub billing_mode: BillingMode,
    /// Stored in the `meter` column.
    pub payer: Payer,
    pub ceiling: Option<Usd>,
    /// A credit-pool session started past an exhausted pool with `overage = "allow"`.
    pub overage: bool,
    /// The git branch the working directory was on at the start (None: not in a repository, or
    /// a detached HEAD).
    pub branch: Option<String>,
    /// The commit checked out at the start (40 hex digits), when in a repository.
    pub commit: Option<String>,
    /// Who ran it (`[team] user`, default the login name) and on which host.
    pub user: Option<String>,
    pub host: Option<String>,
}

/// One ccb invocation: a session has one run, or one more each time it is resumed.
#[derive(Debug, Clone, Default)]
pub struct RunStart {
    pub id: String,
    pub session_id: String,
    pub started_ms: i64,
    pub pid: u32,
    /// The run continues a session recorded before (`--resume`, `--continue`).
    pub resumed: bool,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunEnd {
    pub id: String,
    pub ended_ms: i64,
    pub end: Ending,
    pub exit_code: Option<i32>,
}

/// What a session has spent so far, over all its runs, and its ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionSpend {
    pub spent: Usd,
    pub ceiling: Option<Usd>,
    pub runs: u64,
}

/// How a session ended.
#[derive(Debug, Clone)]
pub struct SessionEnd {
    pub id: String,
    pub ended_ms: i64,
    pub end: Ending,
    pub exit_code: Option<i32>,
    pub thresholds: Vec<u32>,
}

/// One priced API response.
#[derive(Debug, Clone)]
pub struct UsageRow {
    /// `message.id:requestId`: one response is one row, whichever source saw it first.
    pub key: String,
    pub session_id: String,
    pub ts_ms: i64,
    /// The model that served the response, and the one it is priced on.
    pub model: String,
    /// The model claude asked for, when the gate's routing served another (None otherwise, and
    /// in rows written before ccb routed calls).
    pub requested_model: Option<String>,
    pub agent_id: Option<String>,
    pub usage: Usage,
    pub cost: Usd,
    pub source: Source,
    /// Who priced it: `claude` (its own per-call figure), `claude-release`, `claude-cache`,
    /// `user-file`, `learned`, `family-dearest` (see [`crate::core::budget::PricedBy`]).
    pub priced_by: String,
    /// The figure is an estimate (nobody priced the model); never below what it cost.
    pub estimated: bool,
    /// The ccb run that recorded it (None for rows written before runs were recorded).
    pub run_id: Option<String>,
}

/// A usage row with its session's attributes, for reports.
#[derive(Debug, Clone)]
pub struct LedgerUsage {
    pub row: UsageRow,
    pub cwd: String,
    /// `unknown` ([`Class::NotRecorded`]) for a response whose session has no row.
    pub class: Class,
    /// `unknown` ([`Payer::NotRecorded`]) for a response whose session has no row.
    pub payer: Payer,
    pub reason: Option<String>,
    /// The branch its session started on, who ran it and where (None: not recorded).
    pub branch: Option<String>,
    pub user: Option<String>,
    pub host: Option<String>,
}

pub trait Store {
    fn begin(&self, s: &SessionStart) -> anyhow::Result<()>;
    /// Record a response; false when it was recorded already (by another source).
    fn record(&self, u: &UsageRow) -> anyhow::Result<bool>;
    fn end(&self, e: &SessionEnd) -> anyhow::Result<()>;
    /// Replace a recorded response's figure (claude's own arrived after a provisional one).
    fn amend(&self, key: &str, cost: Usd, priced_by: &str, estimated: bool) -> anyhow::Result<()>;
    /// A session's reason, set after it began (a premium model answered a session whose
    /// `--reason` was not needed at the start).
    fn set_reason(&self, session_id: &str, reason: &str) -> anyhow::Result<()>;
    /// Usage with `from_ms <= ts < to_ms`.
    fn usage_between(&self, from_ms: i64, to_ms: i64) -> anyhow::Result<Vec<LedgerUsage>>;
    /// Mark an alert as fired; true the first time for this (kind, scope, threshold).
    fn fire_once(&self, kind: &str, scope: &str, threshold: u32) -> anyhow::Result<bool>;
    fn begin_run(&self, r: &RunStart) -> anyhow::Result<()>;
    fn end_run(&self, e: &RunEnd) -> anyhow::Result<()>;
    /// What a session spent so far and its ceiling; None when it is not in the ledger.
    fn session_spend(&self, session_id: &str) -> anyhow::Result<Option<SessionSpend>>;
}

pub struct Ledger {
    conn: Connection,
    pub path: PathBuf,
}

/// `$CCB_LEDGER`, else `$XDG_DATA_HOME/ccb/ledger.db`.
pub fn default_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CCB_LEDGER").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    crate::sys::paths::data_dir().map(|d| d.join("ledger.db"))
}

/// Move the ledger's WAL into the database and empty it, if the ledger exists and no one holds
/// it busy for long: then the next connection to open it has no WAL to replay. Never creates the
/// file; any error leaves things as they were (a checkpoint is SQLite's own business, safe to
/// interrupt).
pub fn checkpoint(path: &Path) {
    use rusqlite::OpenFlags;
    let Ok(c) = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
    else {
        return;
    };
    let _ = c.busy_timeout(Duration::from_millis(200));
    let _ = c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
}

/// Insert a session's row as `id` unless the ledger has it already (a row another writer made
/// first is left as it is): for the writers that may meet a session before its own start was
/// written (repair, limits' settling). A session's own start is an upsert ([`Store::begin`]).
pub(crate) fn insert_session_if_absent(c: &Connection, id: &str, s: &SessionStart) -> rusqlite::Result<usize> {
    write_session(c, id, s, "ON CONFLICT(id) DO NOTHING")
}

/// A session's start row, with what to do when the ledger has one already: the one statement
/// both [`insert_session_if_absent`] and [`Store::begin`] use.
fn write_session(c: &Connection, id: &str, s: &SessionStart, on_conflict: &str) -> rusqlite::Result<usize> {
    c.prepare_cached(&format!(
        "INSERT INTO sessions (id, started_ms, cwd, class, print_mode, model, reason, billing_mode, meter, ceiling_nanos, overage,
            branch, commit_sha, user_name, host)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) {on_conflict}"
    ))?
    .execute(params![
        id,
        s.started_ms,
        s.cwd,
        s.class.as_str(),
        s.print_mode,
        s.model,
        s.reason,
        s.billing_mode.as_str(),
        s.payer.as_str(),
        s.ceiling.map(|c| c.nanos()),
        s.overage,
        s.branch,
        s.commit,
        s.user,
        s.host
    ])
}

/// Insert a response's row, once by its key (a second source's insert of the same response
/// changes nothing): the one statement every writer of usage rows uses. The number of rows it
/// inserted (0 or 1).
pub(crate) fn insert_usage(c: &Connection, u: &UsageRow) -> rusqlite::Result<usize> {
    c.prepare_cached(
        "INSERT OR IGNORE INTO usage (key, session_id, ts_ms, model, agent_id, input, output, cache_write_5m, cache_write_1h, cache_read, web_search, cost_nanos, source, priced_by, estimated, run_id, requested_model)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
    )?
    .execute(params![
        u.key,
        u.session_id,
        u.ts_ms,
        u.model,
        u.agent_id,
        u.usage.input as i64,
        u.usage.output as i64,
        u.usage.cache_write_5m as i64,
        u.usage.cache_write_1h as i64,
        u.usage.cache_read as i64,
        u.usage.web_search as i64,
        u.cost.nanos(),
        u.source.as_str(),
        u.priced_by,
        u.estimated,
        u.run_id,
        u.requested_model
    ])
}

/// A ledger error in words, for "cannot read the ledger (…)" and "cannot record … (…)": what
/// the operating system or SQLite said, without error codes, and what to do where there is
/// something to do.
pub fn describe(e: &anyhow::Error, path: &Path) -> String {
    use rusqlite::ErrorCode as C;
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        return format!("{}: {}", path.display(), crate::sys::paths::io_reason(io));
    }
    let Some(rusqlite::Error::SqliteFailure(f, _)) = e.downcast_ref::<rusqlite::Error>() else {
        return format!("{e:#}");
    };
    let what = match f.code {
        C::NotADatabase => "not a SQLite database; move it aside and ccb starts a new one",
        C::DatabaseCorrupt => "damaged; `sqlite3 FILE .recover` can save what is left",
        C::ReadOnly => "read-only",
        C::PermissionDenied => "permission denied",
        C::DatabaseBusy | C::DatabaseLocked => "locked by another process for too long",
        C::DiskFull => "the disk is full",
        C::CannotOpen => "cannot be opened",
        C::SystemIoFailure => "an I/O error",
        C::OutOfMemory => "out of memory",
        _ => return format!("{}: {}", path.display(), rusqlite::ffi::code_to_str(f.extended_code)),
    };
    format!("{}: {what}", path.display())
}

/// The ledger was locked by another process for longer than the busy timeout: a fault that
/// clears by itself, worth waiting for.
pub fn is_busy(e: &anyhow::Error) -> bool {
    e.downcast_ref::<rusqlite::Error>().is_some_and(|e| {
        matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
    })
}

pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

impl Ledger {
    /// Open (creating it, owner-only, on first use) and bring the schema up to date. The error
    /// says what is wrong in words (see [`describe`]).
    pub fn open(path: &Path) -> anyhow::Result<Ledger> {
        Ledger::open_raw(path).map_err(|e| anyhow::anyhow!(describe(&e, path)))
    }

    fn open_raw(path: &Path) -> anyhow::Result<Ledger> {
        if let Some(dir) = path.parent() {
            crate::sys::paths::create_private_dir(dir)?;
        }
        if !path.exists() {
            create_file(path)?;
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        let mut tries = 0;
        while let Err(e) = conn.pragma_update(None, "journal_mode", "WAL") {
            tries += 1;
            // Worth waiting for only while another process holds the file (creating it too):
            // not a database, read-only, … will not change in 2 s.
            let busy = matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            );
            if tries > 100 || !busy {
                return Err(e.into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // The last connection to close would checkpoint the WAL into the database and sync it:
        // ~10 ms on every ccb exit, for a session or a report. Leave that to the automatic
        // checkpoints writers run as the WAL grows.
        let _ = conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true);
        // Read pages in place rather than a system call each (a report reads the whole cache).
        let _ = conn.pragma_update(None, "mmap_size", 64i64 << 20);
        let mut l = Ledger { conn, path: path.to_path_buf() };
        l.migrate()?;
        Ok(l)
    }

    /// The ledger's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How long a write waits for another process's lock before it fails (10 s when opened).
    pub fn set_busy_timeout(&self, d: Duration) -> anyhow::Result<()> {
        Ok(self.conn.busy_timeout(d)?)
    }

    pub fn open_default() -> anyhow::Result<Ledger> {
        let p = default_path().ok_or_else(|| anyhow::anyhow!("no data directory: set HOME or XDG_DATA_HOME"))?;
        Ledger::open(&p)
    }

    fn migrate(&mut self) -> anyhow::Result<()> {
        let current =
            |c: &Connection| -> rusqlite::Result<i64> { c.pragma_query_value(None, "user_version", |r| r.get(0)) };
        if current(&self.conn)? as usize == MIGRATIONS.len() {
            return Ok(());
        }
        // Several ccb processes may create the ledger at once: take the write lock first, then
        // read the version again, so each migration runs exactly once.
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let version = current(&tx)?;
        if version as usize > MIGRATIONS.len() {
            anyhow::bail!(
                "the ledger {} was written by a newer ccb (schema {version}, this ccb knows {}): upgrade ccb",
                self.path.display(),
                MIGRATIONS.len()
            );
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        }
        tx.commit()?;
        Ok(())
    }

    #[cfg(test)]
    pub fn schema_version(&self) -> anyhow::Result<i64> {
        Ok(self.conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    /// The connection, for tests elsewhere in the crate to look at what was written.
    #[cfg(test)]
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    #[cfg(test)]
    pub fn integrity_ok(&self) -> anyhow::Result<bool> {
        let s: String = self.conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        Ok(s == "ok")
    }
}

/// A response as the ledger holds it, for `ccb ledger repair`.
#[derive(Debug, Clone)]
pub struct HeldRow {
    pub key: String,
    pub session_id: String,
    pub cost: Usd,
}

/// What `ccb ledger repair` changes for one session, applied in one transaction with the others.
#[derive(Debug, Clone, Default)]
pub struct SessionFix {
    pub id: String,
    /// The session's row, when the ledger has none.
    pub create: Option<SessionStart>,
    /// Responses the ledger lacks.
    pub insert: Vec<UsageRow>,
    /// Keys of responses recorded with an empty session id that belong to this session.
    pub reattribute: Vec<String>,
}

/// A session's total before and after a repair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub before: Usd,
    pub after: Usd,
}

/// What `ccb ledger repair` reads and writes.
impl Ledger {
    /// Every response the ledger holds.
    pub fn held_rows(&self) -> anyhow::Result<Vec<HeldRow>> {
        let mut st = self.conn.prepare("SELECT key, session_id, cost_nanos FROM usage")?;
        let rows = st.query_map([], |r| Ok(HeldRow { key: r.get(0)?, session_id: r.get(1)?, cost: Usd(r.get(2)?) }))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every session the ledger has a row for.
    pub fn session_ids(&self) -> anyhow::Result<Vec<String>> {
        let mut st = self.conn.prepare("SELECT id FROM sessions ORDER BY started_ms, id")?;
        let rows = st.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A session's runs: (id, start), in the order they started.
    pub fn runs_of(&self, session_id: &str) -> anyhow::Result<Vec<(String, i64)>> {
        let mut st = self.conn.prepare("SELECT id, started_ms FROM runs WHERE session_id = ?1 ORDER BY started_ms")?;
        let rows = st.query_map([session_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Apply every fix in one transaction (all or nothing), then set each session's total, and
    /// each of its runs', to the sum of its responses. Returns each session's totals.
    pub fn apply_repair(&self, fixes: &[SessionFix]) -> anyhow::Result<Vec<Totals>> {
        // The write lock first: the totals are summed from what this transaction sees.
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        match self.apply_repair_in_tx(fixes) {
            Ok(t) => {
                self.conn.execute_batch("COMMIT")?;
                Ok(t)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    fn apply_repair_in_tx(&self, fixes: &[SessionFix]) -> anyhow::Result<Vec<Totals>> {
        let tx = &self.conn;
        let total = |id: &str| -> rusqlite::Result<Usd> {
            tx.query_row("SELECT COALESCE((SELECT cost_nanos FROM sessions WHERE id = ?1), 0)", [id], |r| r.get(0))
                .map(Usd)
        };
        let mut out = Vec::new();
        for f in fixes {
            let before = total(&f.id)?;
            if let Some(s) = &f.create {
                insert_session_if_absent(tx, &s.id, s)?;
            }
            for key in &f.reattribute {
                tx.execute("UPDATE usage SET session_id = ?2 WHERE key = ?1 AND session_id = ''", params![key, f.id])?;
            }
            for u in &f.insert {
                insert_usage(tx, u)?;
            }
            tx.execute(
                "UPDATE sessions SET cost_nanos = (SELECT COALESCE(SUM(cost_nanos), 0) FROM usage WHERE session_id = ?1) WHERE id = ?1",
                [&f.id],
            )?;
            tx.execute(
                "UPDATE runs SET cost_nanos = (SELECT COALESCE(SUM(u.cost_nanos), 0) FROM usage u WHERE u.run_id = runs.id)
                 WHERE session_id = ?1",
                [&f.id],
            )?;
            out.push(Totals { before, after: total(&f.id)? });
        }
        Ok(out)
    }
}

fn thresholds_text(t: &[u32]) -> String {
    t.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(",")
}

impl Store for Ledger {
    fn begin(&self, s: &SessionStart) -> anyhow::Result<()> {
        write_session(
            &self.conn,
            &s.id,
            s,
            "ON CONFLICT(id) DO UPDATE SET class = excluded.class, meter = excluded.meter, billing_mode = excluded.billing_mode,
                ceiling_nanos = excluded.ceiling_nanos, reason = excluded.reason, model = excluded.model,
                branch = COALESCE(sessions.branch, excluded.branch), commit_sha = COALESCE(sessions.commit_sha, excluded.commit_sha),
                user_name = COALESCE(sessions.user_name, excluded.user_name), host = COALESCE(sessions.host, excluded.host)",
        )?;
        Ok(())
    }

    fn record(&self, u: &UsageRow) -> anyhow::Result<bool> {
        let tx = self.conn.unchecked_transaction()?;
        let n = insert_usage(&tx, u)?;
        if n > 0 {
            tx.execute(
                "UPDATE sessions SET cost_nanos = cost_nanos + ?1 WHERE id = ?2",
                params![u.cost.nanos(), u.session_id],
            )?;
            if let Some(run) = &u.run_id {
                tx.execute("UPDATE runs SET cost_nanos = cost_nanos + ?1 WHERE id = ?2", params![u.cost.nanos(), run])?;
            }
        }
        tx.commit()?;
        Ok(n > 0)
    }

    fn end(&self, e: &SessionEnd) -> anyhow::Result<()> {
        self.conn.execute(
            "UPDATE sessions SET ended_ms = ?2, end_kind = ?3, exit_code = ?4, thresholds = ?5 WHERE id = ?1",
            params![e.id, e.ended_ms, e.end.as_str(), e.exit_code, thresholds_text(&e.thresholds)],
        )?;
        Ok(())
    }

    fn amend(&self, key: &str, cost: Usd, priced_by: &str, estimated: bool) -> anyhow::Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        tx.execute(
            "UPDATE sessions SET cost_nanos = cost_nanos - (SELECT cost_nanos FROM usage WHERE key = ?1) + ?2
             WHERE id = (SELECT session_id FROM usage WHERE key = ?1)",
            params![key, cost.nanos()],
        )?;
        tx.execute(
            "UPDATE runs SET cost_nanos = cost_nanos - (SELECT cost_nanos FROM usage WHERE key = ?1) + ?2
             WHERE id = (SELECT run_id FROM usage WHERE key = ?1)",
            params![key, cost.nanos()],
        )?;
        tx.execute(
            "UPDATE usage SET cost_nanos = ?2, priced_by = ?3, estimated = ?4 WHERE key = ?1",
            params![key, cost.nanos(), priced_by, estimated],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn set_reason(&self, session_id: &str, reason: &str) -> anyhow::Result<()> {
        self.conn.execute("UPDATE sessions SET reason = ?2 WHERE id = ?1", params![session_id, reason])?;
        Ok(())
    }

    fn usage_between(&self, from_ms: i64, to_ms: i64) -> anyhow::Result<Vec<LedgerUsage>> {
        let mut st = self.conn.prepare_cached(
            "SELECT u.key, u.session_id, u.ts_ms, u.model, u.agent_id, u.input, u.output, u.cache_write_5m, u.cache_write_1h,
                    u.cache_read, u.web_search, u.cost_nanos, u.source,
                    COALESCE(s.cwd, ''), COALESCE(s.class, 'unknown'), COALESCE(s.meter, 'unknown'), s.reason,
                    u.priced_by, u.estimated, u.run_id, s.branch, s.user_name, s.host, u.requested_model
             FROM usage u LEFT JOIN sessions s ON s.id = u.session_id
             WHERE u.ts_ms >= ?1 AND u.ts_ms < ?2 ORDER BY u.ts_ms",
        )?;
        let rows = st.query_map(params![from_ms, to_ms], |r| {
            Ok(LedgerUsage {
                row: UsageRow {
                    key: r.get(0)?,
                    session_id: r.get(1)?,
                    ts_ms: r.get(2)?,
                    model: r.get(3)?,
                    requested_model: r.get(23)?,
                    agent_id: r.get(4)?,
                    usage: Usage {
                        input: r.get::<_, i64>(5)? as u64,
                        output: r.get::<_, i64>(6)? as u64,
                        cache_write_5m: r.get::<_, i64>(7)? as u64,
                        cache_write_1h: r.get::<_, i64>(8)? as u64,
                        cache_read: r.get::<_, i64>(9)? as u64,
                        web_search: r.get::<_, i64>(10)? as u64,
                    },
                    cost: Usd(r.get(11)?),
                    source: Source::parse(r.get_ref(12)?.as_str()?),
                    priced_by: r.get(17)?,
                    estimated: r.get(18)?,
                    run_id: r.get(19)?,
                },
                cwd: r.get(13)?,
                class: Class::parse(r.get_ref(14)?.as_str()?),
                payer: Payer::parse(r.get_ref(15)?.as_str()?),
                reason: r.get(16)?,
                branch: r.get(20)?,
                user: r.get(21)?,
                host: r.get(22)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn begin_run(&self, r: &RunStart) -> anyhow::Result<()> {
        self.conn.execute(
            "INSERT OR IGNORE INTO runs (id, session_id, started_ms, pid, resumed) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![r.id, r.session_id, r.started_ms, r.pid, r.resumed],
        )?;
        Ok(())
    }

    fn end_run(&self, e: &RunEnd) -> anyhow::Result<()> {
        self.conn.execute(
            "UPDATE runs SET ended_ms = ?2, end_kind = ?3, exit_code = ?4 WHERE id = ?1",
            params![e.id, e.ended_ms, e.end.as_str(), e.exit_code],
        )?;
        Ok(())
    }

    fn session_spend(&self, session_id: &str) -> anyhow::Result<Option<SessionSpend>> {
        let row = self.conn.query_row(
            "SELECT cost_nanos, ceiling_nanos, (SELECT COUNT(*) FROM runs WHERE session_id = ?1) FROM sessions WHERE id = ?1",
            [session_id],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?, r.get::<_, i64>(2)?)),
        );
        match row {
            Ok((spent, ceiling, runs)) => {
                Ok(Some(SessionSpend { spent: Usd(spent), ceiling: ceiling.map(Usd), runs: runs.max(1) as u64 }))
            }
            Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn fire_once(&self, kind: &str, scope: &str, threshold: u32) -> anyhow::Result<bool> {
        let n = self.conn.execute(
            "INSERT OR IGNORE INTO alerts (kind, scope, threshold, fired_ms) VALUES (?1, ?2, ?3, ?4)",
            params![kind, scope, threshold, now_ms()],
        )?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::file::side_file;
    use super::*;

    fn row(key: &str, session: &str, ts: i64, cost: i64) -> UsageRow {
        UsageRow {
            key: key.into(),
            session_id: session.into(),
            ts_ms: ts,
            model: "claude-sonnet-4-6".into(),
            requested_model: None,
            agent_id: None,
            usage: Usage { input: 10, output: 2, ..Usage::default() },
            cost: Usd(cost),
            source: crate::core::recorded::Source::Transcript,
            priced_by: "claude-release".into(),
            estimated: false,
            run_id: None,
        }
    }

    #[test]
    fn records_sessions_and_usage_once() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("sub/ledger.db");
        let l = Ledger::open(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
        let s = SessionStart {
            id: "s1".into(),
            started_ms: 1000,
            class: crate::core::plan::Class::Programmatic,
            billing_mode: crate::core::plan::BillingMode::ApiKey,
            payer: crate::core::plan::Payer::Api,
            reason: Some("infra".into()),
            ..Default::default()
        };
        l.begin(&s).unwrap();
        assert!(l.record(&row("a", "s1", 1500, 300)).unwrap());
        assert!(!l.record(&row("a", "s1", 1500, 300)).unwrap(), "a response is recorded once");
        assert!(l.record(&row("b", "s1", 2500, 700)).unwrap());
        l.end(&SessionEnd {
            id: "s1".into(),
            ended_ms: 3000,
            end: crate::core::exit::Ending::StoppedAtCeiling,
            exit_code: Some(3),
            thresholds: vec![50, 80],
        })
        .unwrap();
        let (cost, end, thresholds, reason): (i64, String, String, String) = l
            .conn
            .query_row("SELECT cost_nanos, end_kind, thresholds, reason FROM sessions WHERE id = 's1'", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .unwrap();
        assert_eq!((cost, end.as_str(), thresholds.as_str(), reason.as_str()), (1000, "ceiling", "50,80", "infra"));
        let u = l.usage_between(0, 2000).unwrap();
        assert_eq!(u.len(), 1);
        assert_eq!(u[0].payer, Payer::Api);
        assert_eq!(l.usage_between(0, i64::MAX).unwrap().len(), 2);
        assert!(l.fire_once("pool", "2026-11-15", 85).unwrap());
        assert!(!l.fire_once("pool", "2026-11-15", 85).unwrap());
        drop(l);
        let again = Ledger::open(&path).unwrap();
        assert_eq!(again.schema_version().unwrap(), MIGRATIONS.len() as i64);
        assert!(again.integrity_ok().unwrap());
    }

    #[test]
    fn a_ledger_deleted_truncated_or_replaced_is_told_apart_and_a_new_one_starts_clean() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("ledger.db");
        let count = |l: &Ledger| -> i64 { l.conn.query_row("SELECT COUNT(*) FROM usage", [], |r| r.get(0)).unwrap() };
        let l = Ledger::open(&path).unwrap();
        let id = identity(&path).unwrap();
        assert_eq!(file_fate(&path, id), FileFate::Same);
        l.begin(&SessionStart { id: "s1".into(), ..Default::default() }).unwrap();
        l.record(&row("a", "s1", 1, 5)).unwrap();
        // Deleted while open: the connection writes on into the void, and its WAL stays.
        std::fs::remove_file(&path).unwrap();
        l.record(&row("b", "s1", 2, 5)).unwrap();
        assert_eq!(file_fate(&path, id), FileFate::Deleted);
        assert!(side_file(&path, "-wal").exists());
        // A new ledger at the path does not take in the old one's WAL (SQLite drops it).
        let fresh = Ledger::open(&path).unwrap();
        assert_eq!(count(&fresh), 0);
        assert!(fresh.integrity_ok().unwrap());
        assert_eq!(file_fate(&path, id), FileFate::Replaced);
        drop(l);
        // Truncated: moved aside with its WAL, and the path is free for a new one.
        let id = identity(&path).unwrap();
        fresh.record(&row("c", "s1", 3, 5)).unwrap();
        std::fs::OpenOptions::new().write(true).truncate(true).open(&path).unwrap();
        assert_eq!(file_fate(&path, id), FileFate::Truncated);
        let aside = set_aside(&path, id).unwrap().expect("moved aside");
        assert!(aside.exists() && side_file(&aside, "-wal").exists() && !path.exists());
        assert_eq!(set_aside(&path, id).unwrap(), None, "only once");
        drop(fresh);
        let again = Ledger::open(&path).unwrap();
        assert_eq!(count(&again), 0);
        assert!(again.integrity_ok().unwrap());
    }

    /// A shared ledger that an older ccb (the v1 fixture) and a newer one (names this ccb does not
    /// know) both wrote: every row reads, known names as their cases, the others verbatim, and
    /// what this ccb writes back keeps them.
    #[test]
    fn rows_from_an_older_and_a_newer_ccb_read_back_verbatim() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("shared.db");
        let c = Connection::open(&path).unwrap();
        c.execute_batch(include_str!("../../tests/fixtures/ledger-v1.sql")).unwrap();
        drop(c);
        let l = Ledger::open(&path).unwrap();
        l.conn
            .execute_batch(
                "INSERT INTO sessions (id, started_ms, cwd, class, billing_mode, meter, end_kind)
                 VALUES ('future', 1795168900000, '/f', 'batch', 'quantum-credits', 'team-pool', 'preempted');
                 INSERT INTO usage (key, session_id, ts_ms, model, input, output, cache_write_5m, cache_write_1h,
                                    cache_read, web_search, cost_nanos, source, priced_by)
                 VALUES ('msg_f:req_f', 'future', 1795168910000, 'claude-sonnet-9', 1, 1, 0, 0, 0, 0, 7, 'edge-cache', 'oracle');
                 INSERT INTO usage (key, session_id, ts_ms, model, input, output, cache_write_5m, cache_write_1h,
                                    cache_read, web_search, cost_nanos, source)
                 VALUES ('msg_o:req_o', 'no-session-row', 1795168920000, 'claude-haiku-4-5', 1, 1, 0, 0, 0, 0, 3, 'gate');",
            )
            .unwrap();
        let got: Vec<(String, Source, Class, Payer)> = l
            .usage_between(0, i64::MAX)
            .unwrap()
            .into_iter()
            .map(|u| (u.row.key, u.row.source, u.class, u.payer))
            .collect();
        let unknown = |s: &str| s.to_string();
        assert_eq!(
            got,
            [
                ("msg_a:req_a".into(), Source::Transcript, Class::OpusWithReason, Payer::CreditPool),
                ("msg_b:req_b".into(), Source::Transcript, Class::OpusWithReason, Payer::CreditPool),
                (
                    "msg_f:req_f".into(),
                    Source::Unknown(unknown("edge-cache")),
                    Class::Unknown(unknown("batch")),
                    Payer::Unknown(unknown("team-pool"))
                ),
                ("msg_o:req_o".into(), Source::Gate, Class::NotRecorded, Payer::NotRecorded),
            ]
        );
        // Written back through the enums, the names are the same text.
        let copy = Ledger::open(&d.path().join("copy.db")).unwrap();
        for u in l.usage_between(0, i64::MAX).unwrap() {
            copy.begin(&SessionStart {
                id: u.row.session_id.clone(),
                class: u.class.clone(),
                billing_mode: BillingMode::Unknown("quantum-credits".into()),
                payer: u.payer.clone(),
                ..Default::default()
            })
            .unwrap();
            copy.record(&u.row).unwrap();
        }
        copy.end(&SessionEnd {
            id: "future".into(),
            ended_ms: 1,
            end: Ending::parse("preempted"),
            exit_code: None,
            thresholds: vec![],
        })
        .unwrap();
        let text = |db: &Ledger, sql: &str| -> Vec<String> {
            let mut st = db.conn.prepare(sql).unwrap();
            let rows = st.query_map([], |r| r.get::<_, String>(0)).unwrap();
            rows.collect::<Result<_, _>>().unwrap()
        };
        for sql in [
            "SELECT source FROM usage ORDER BY key",
            "SELECT class || ' ' || meter FROM sessions WHERE id = 'future'",
            "SELECT end_kind FROM sessions WHERE id = 'future'",
        ] {
            assert_eq!(text(&copy, sql), text(&l, sql), "{sql}");
        }
        assert_eq!(text(&copy, "SELECT billing_mode FROM sessions WHERE id = 'future'"), ["quantum-credits"]);
    }

    #[test]
    fn refuses_a_ledger_from_a_newer_ccb() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("l.db");
        Ledger::open(&path).unwrap().conn.pragma_update(None, "user_version", 99).unwrap();
        let e = Ledger::open(&path).err().unwrap().to_string();
        assert!(e.contains("newer ccb"), "{e}");
    }
}
