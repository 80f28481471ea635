//! The ledger as `ccb statusline` reads it: claude runs a status line every few hundred
//! milliseconds, so it opens the file as it is (no directory or file created, no migration, no
//! WAL mode change), writes nothing, waits briefly for a lock, and asks one session's figures.

use super::Ledger;
use crate::core::money::Usd;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::time::Duration;

/// The schema step that added the limits' tables (`limits.rs`): older ledgers have no limits to
/// show.
const LIMITS_SCHEMA: i64 = 5;

/// One session, as the status line shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionStatus {
    pub spent: Usd,
    pub ceiling: Option<Usd>,
    pub reason: Option<String>,
    pub class: String,
    pub meter: String,
    pub cwd: String,
    /// Every model that answered it, in order of first answer.
    pub models: Vec<String>,
}

impl Ledger {
    /// Open an existing ledger to read: None when there is none (nothing is created). Errors
    /// (not a database, unreadable) are the caller's to shrug off.
    pub fn open_to_read(path: &Path) -> anyhow::Result<Option<Ledger>> {
        if !path.exists() {
            return Ok(None);
        }
        // Read-write without CREATE: a read-only handle on a WAL database cannot always build
        // its shared-memory index; `query_only` makes sure nothing is written.
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
        )?;
        conn.busy_timeout(Duration::from_millis(250))?;
        conn.pragma_update(None, "query_only", true)?;
        let _ = conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true);
        Ok(Some(Ledger { conn, path: path.to_path_buf() }))
    }

    /// Whether the ledger has the limits' tables.
    pub fn has_limits(&self) -> bool {
        self.conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0)).is_ok_and(|v| v >= LIMITS_SCHEMA)
    }

    /// One session's figures; None when the ledger does not know it.
    pub fn session_status(&self, id: &str) -> anyhow::Result<Option<SessionStatus>> {
        let row = self.conn.query_row(
            "SELECT cost_nanos, ceiling_nanos, reason, class, meter, cwd FROM sessions WHERE id = ?1",
            [id],
            |r| {
                Ok(SessionStatus {
                    spent: Usd(r.get(0)?),
                    ceiling: r.get::<_, Option<i64>>(1)?.map(Usd),
                    reason: r.get::<_, Option<String>>(2)?.filter(|s| !s.is_empty()),
                    class: r.get(3)?,
                    meter: r.get(4)?,
                    cwd: r.get(5)?,
                    models: Vec::new(),
                })
            },
        );
        let mut s = match row {
            Ok(s) => s,
            Err(rusqlite::Error::QueryReturnedNoRows) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut q = self.conn.prepare_cached(
            "SELECT model FROM usage WHERE session_id = ?1 GROUP BY model ORDER BY MIN(ts_ms), model",
        )?;
        s.models = q.query_map([id], |r| r.get::<_, String>(0))?.collect::<Result<_, _>>()?;
        Ok(Some(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::plan::{BillingMode, Class, Payer};
    use crate::core::pricing::Usage;
    use crate::core::recorded::Source;
    use crate::ledger::{SessionStart, Store, UsageRow};

    #[test]
    fn reads_a_session_without_creating_or_writing_anything() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("sub/ledger.db");
        assert!(Ledger::open_to_read(&path).unwrap().is_none());
        assert!(!path.parent().unwrap().exists(), "nothing created");
        let l = Ledger::open(&path).unwrap();
        l.begin(&SessionStart {
            id: "s1".into(),
            cwd: "/w".into(),
            class: Class::Interactive,
            billing_mode: BillingMode::ApiKey,
            payer: Payer::Api,
            ceiling: Some(Usd(5_000_000_000)),
            ..SessionStart::default()
        })
        .unwrap();
        for (key, ts, model, cost) in
            [("a", 2, "claude-opus-4-8", 100), ("b", 1, "claude-sonnet-4-6", 20), ("c", 3, "claude-sonnet-4-6", 3)]
        {
            l.record(&UsageRow {
                key: key.into(),
                session_id: "s1".into(),
                ts_ms: ts,
                model: model.into(),
                agent_id: None,
                usage: Usage::default(),
                cost: Usd(cost),
                source: Source::Gate,
                priced_by: "claude".into(),
                estimated: false,
                run_id: None,
                requested_model: None,
            })
            .unwrap();
        }
        let r = Ledger::open_to_read(&path).unwrap().unwrap();
        assert!(r.has_limits());
        let s = r.session_status("s1").unwrap().unwrap();
        assert_eq!(
            s,
            SessionStatus {
                spent: Usd(123),
                ceiling: Some(Usd(5_000_000_000)),
                reason: None,
                class: "interactive".into(),
                meter: "api".into(),
                cwd: "/w".into(),
                models: vec!["claude-sonnet-4-6".into(), "claude-opus-4-8".into()],
            }
        );
        assert_eq!(r.session_status("nope").unwrap(), None);
        // It writes nothing.
        assert!(r.conn.execute("DELETE FROM sessions", []).is_err());
        // Not a database: an error, never a panic.
        let junk = d.path().join("junk.db");
        std::fs::write(&junk, b"this is not SQLite, not at all, no header here").unwrap();
        assert!(Ledger::open_to_read(&junk).and_then(|l| l.unwrap().session_status("s1")).is_err());
    }
}
