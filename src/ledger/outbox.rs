//! What this machine has not yet delivered to the team ledger: an outbox of keys, filled by
//! triggers on the local ledger's tables (so every writer of rows, today's and tomorrow's, is
//! covered) and emptied by the sync as the server acknowledges. The triggers exist only while a
//! team ledger is configured: a machine on its own keeps no outbox.
//!
//! The outbox holds keys, not rows: what is delivered is each row as it is when delivered, so a
//! response amended after it was queued goes out once, with its final figure.

use super::pg::{Seat, TeamSession, TeamUsage};
use super::Ledger;
use rusqlite::params;

const TRIGGERS: &str = "
CREATE TRIGGER IF NOT EXISTS sync_usage_insert AFTER INSERT ON usage
    BEGIN INSERT INTO sync_outbox (kind, key) VALUES ('u', NEW.key); END;
CREATE TRIGGER IF NOT EXISTS sync_usage_update AFTER UPDATE OF cost_nanos, priced_by, estimated, session_id ON usage
    BEGIN INSERT INTO sync_outbox (kind, key) VALUES ('u', NEW.key); END;
CREATE TRIGGER IF NOT EXISTS sync_session_insert AFTER INSERT ON sessions
    BEGIN INSERT INTO sync_outbox (kind, key) VALUES ('s', NEW.id); END;
CREATE TRIGGER IF NOT EXISTS sync_session_update
    AFTER UPDATE OF ended_ms, end_kind, exit_code, class, meter, billing_mode, reason, model, ceiling_nanos, overage ON sessions
    BEGIN INSERT INTO sync_outbox (kind, key) VALUES ('s', NEW.id); END;
";

/// One batch taken from the outbox: deliver these, then [`Ledger::outbox_ack`] up to `last`.
#[derive(Debug, Default)]
pub struct Batch {
    pub last: i64,
    pub sessions: Vec<TeamSession>,
    pub usage: Vec<TeamUsage>,
}

/// This machine's name for rows recorded before sessions carried theirs.
#[derive(Debug, Clone)]
pub struct Me {
    pub user: String,
    pub host: String,
    /// Share responses read from transcripts of sessions not run through ccb.
    pub share_unmetered: bool,
    pub seat: Option<Seat>,
}

impl Ledger {
    /// Keep an outbox from now on; the first time, queue every row already recorded (a machine
    /// joining a team brings its history).
    pub fn outbox_enable(&self) -> anyhow::Result<bool> {
        let has = |c: &rusqlite::Connection| -> rusqlite::Result<bool> {
            c.query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = 'sync_usage_insert')",
                [],
                |r| r.get(0),
            )
        };
        if has(&self.conn)? {
            return Ok(false);
        }
        // IMMEDIATE: the write lock first (with the busy wait), then the check again; a read
        // that turned into a write would fail at once if another process wrote in between.
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        let result = (|| -> rusqlite::Result<bool> {
            if has(&self.conn)? {
                return Ok(false);
            }
            self.conn.execute_batch(TRIGGERS)?;
            self.conn
                .execute("INSERT INTO sync_outbox (kind, key) SELECT 's', id FROM sessions ORDER BY started_ms", [])?;
            self.conn.execute("INSERT INTO sync_outbox (kind, key) SELECT 'u', key FROM usage ORDER BY ts_ms", [])?;
            Ok(true)
        })();
        match result {
            Ok(created) => {
                self.conn.execute_batch("COMMIT")?;
                Ok(created)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e.into())
            }
        }
    }

    /// No team ledger any more: drop the triggers and what was queued.
    pub fn outbox_disable(&self) -> anyhow::Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        for t in ["sync_usage_insert", "sync_usage_update", "sync_session_insert", "sync_session_update"] {
            tx.execute(&format!("DROP TRIGGER IF EXISTS {t}"), [])?;
        }
        tx.execute("DELETE FROM sync_outbox", [])?;
        tx.commit()?;
        Ok(())
    }

    /// How many entries wait to be delivered.
    pub fn outbox_len(&self) -> anyhow::Result<i64> {
        Ok(self.conn.query_row("SELECT COUNT(*) FROM sync_outbox", [], |r| r.get(0))?)
    }

    /// The oldest `max` entries, read as rows: a session's row goes with its responses (the
    /// server's reports join them), whether or not it was queued itself.
    pub fn outbox_take(&self, max: usize, me: &Me) -> anyhow::Result<Batch> {
        let tx = self.conn.unchecked_transaction()?;
        let mut st = tx.prepare("SELECT seq, kind, key FROM sync_outbox ORDER BY seq LIMIT ?1")?;
        let entries: Vec<(i64, String, String)> =
            st.query_map([max as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?;
        drop(st);
        let mut b = Batch { last: entries.last().map_or(0, |e| e.0), ..Batch::default() };
        let mut session_ids = std::collections::BTreeSet::new();
        let mut keys = std::collections::BTreeSet::new();
        for (_, kind, key) in entries {
            if kind == "s" {
                session_ids.insert(key);
            } else {
                keys.insert(key);
            }
        }
        let mut owners: std::collections::HashMap<String, (String, String)> = std::collections::HashMap::new();
        {
            let mut st = tx.prepare_cached(
                "SELECT u.key, u.session_id, u.ts_ms, u.model, u.requested_model, u.agent_id, u.input, u.output,
                        u.cache_write_5m, u.cache_write_1h, u.cache_read, u.web_search, u.cost_nanos, u.source, u.priced_by,
                        u.estimated, s.user_name, s.host
                 FROM usage u LEFT JOIN sessions s ON s.id = u.session_id WHERE u.key = ?1",
            )?;
            for k in &keys {
                let row = st.query_row([k], |r| {
                    Ok(TeamUsage {
                        key: r.get(0)?,
                        session_id: r.get(1)?,
                        ts_ms: r.get(2)?,
                        model: r.get(3)?,
                        requested_model: r.get(4)?,
                        agent_id: r.get(5)?,
                        tokens: [r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?, r.get(10)?, r.get(11)?],
                        cost_nanos: r.get(12)?,
                        source: r.get(13)?,
                        priced_by: r.get(14)?,
                        estimated: r.get(15)?,
                        user: r.get::<_, Option<String>>(16)?.unwrap_or_else(|| me.user.clone()),
                        host: r.get::<_, Option<String>>(17)?.unwrap_or_else(|| me.host.clone()),
                        via_ccb: true,
                    })
                });
                match row {
                    Ok(u) => {
                        session_ids.insert(u.session_id.clone());
                        owners.insert(u.session_id.clone(), (u.user.clone(), u.host.clone()));
                        b.usage.push(u);
                    }
                    // Gone since it was queued (a repair moved it): nothing to deliver.
                    Err(rusqlite::Error::QueryReturnedNoRows) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        {
            let mut st = tx.prepare_cached(
                "SELECT id, started_ms, ended_ms, cwd, class, print_mode, model, reason, billing_mode, meter, ceiling_nanos,
                        overage, end_kind, exit_code, branch, commit_sha, user_name, host
                 FROM sessions WHERE id = ?1",
            )?;
            for id in &session_ids {
                let row = st.query_row([id], |r| {
                    let cwd: String = r.get(3)?;
                    Ok(TeamSession {
                        id: r.get(0)?,
                        started_ms: r.get(1)?,
                        ended_ms: r.get(2)?,
                        project: crate::core::team::project_name(&cwd),
                        class: r.get(4)?,
                        print_mode: r.get(5)?,
                        model: r.get(6)?,
                        reason: r.get(7)?,
                        billing_mode: r.get(8)?,
                        meter: r.get(9)?,
                        ceiling_nanos: r.get(10)?,
                        overage: r.get(11)?,
                        end_kind: r.get(12)?,
                        exit_code: r.get(13)?,
                        branch: r.get(14)?,
                        commit: r.get(15)?,
                        user: r.get::<_, Option<String>>(16)?.unwrap_or_else(|| me.user.clone()),
                        host: r.get::<_, Option<String>>(17)?.unwrap_or_else(|| me.host.clone()),
                        via_ccb: true,
                    })
                });
                match row {
                    Ok(s) => b.sessions.push(s),
                    Err(rusqlite::Error::QueryReturnedNoRows) => {
                        // A response whose session has no row (an older ccb, a repair): the
                        // server still needs one to report it.
                        if let Some((user, host)) = owners.get(id) {
                            b.sessions.push(TeamSession::unrecorded(
                                id,
                                user,
                                host,
                                String::new(),
                                "unknown".into(),
                                true,
                            ));
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        tx.commit()?;
        Ok(b)
    }

    /// The server has these: forget every entry up to `last`.
    pub fn outbox_ack(&self, last: i64) -> anyhow::Result<()> {
        self.conn.execute("DELETE FROM sync_outbox WHERE seq <= ?1", params![last])?;
        Ok(())
    }

    /// How far each transcript was shared: path → (dev, ino, offset).
    pub fn share_marks(&self) -> anyhow::Result<std::collections::HashMap<Vec<u8>, (i64, i64, i64)>> {
        let mut st = self.conn.prepare("SELECT path, dev, ino, offset FROM sync_files")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?))))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn set_share_marks(&self, marks: &[(Vec<u8>, i64, i64, i64)]) -> anyhow::Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        {
            let mut st =
                tx.prepare("INSERT OR REPLACE INTO sync_files (path, dev, ino, offset) VALUES (?1, ?2, ?3, ?4)")?;
            for (p, d, i, o) in marks {
                st.execute(params![p, d, i, o])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Is this response in the ledger (run through ccb)?
    pub fn has_usage(&self, key: &str) -> anyhow::Result<bool> {
        let mut st = self.conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM usage WHERE key = ?1)")?;
        Ok(st.query_row([key], |r| r.get(0))?)
    }

    /// What this ledger recorded from `from_ms` on.
    pub fn spend_since(&self, from_ms: i64) -> anyhow::Result<crate::core::money::Usd> {
        let n: i64 = self.conn.query_row(
            "SELECT COALESCE(SUM(cost_nanos), 0) FROM usage WHERE ts_ms >= ?1",
            [from_ms],
            |r| r.get(0),
        )?;
        Ok(crate::core::money::Usd(n))
    }

    /// The pids of this ledger's runs that have not ended (started in the last two days: a run
    /// older than that without an end was abandoned).
    pub fn open_run_pids(&self, now_ms: i64) -> anyhow::Result<Vec<i64>> {
        let mut st = self
            .conn
            .prepare("SELECT DISTINCT pid FROM runs WHERE ended_ms IS NULL AND pid IS NOT NULL AND started_ms > ?1")?;
        let pids = st.query_map([now_ms - 2 * 86_400_000], |r| r.get(0))?.collect::<Result<_, _>>()?;
        Ok(pids)
    }
}
