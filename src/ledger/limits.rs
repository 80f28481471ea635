//! The ledger's side of spend limits (issue 13): what is spent in a window, what calls in flight
//! hold, and admission as one atomic step across every ccb process.
//!
//! - `limit_spend` sums `usage` per 15-minute UTC slot, session and model. Every time zone's day
//!   starts on a slot boundary (offsets are whole quarter hours), so a day, a week, a month or a
//!   billing cycle in any zone is a range of slots. SQLite triggers on `usage` keep it exact
//!   (insert, a changed figure or session, delete), so "spent in this window" reads a few hundred
//!   rows at most, whatever the size of the ledger.
//! - `limit_holds` holds one row per call in flight: its amount and the facts scopes match on.
//!   A hold belongs to a live run: its pid and that process's start time (field 22 of
//!   `/proc/<pid>/stat`). Every admission first deletes the holds whose process is gone or is
//!   another process under a reused pid, so a SIGKILLed run's holds go at the next admission
//!   anywhere, not after a timeout; a minutes-long stream keeps its own.
//! - Admission is one `BEGIN IMMEDIATE` transaction: purge, read spend and holds, decide (the
//!   caller's closure, [`crate::core::limits::admit`]), insert the hold. Settling writes the
//!   call's usage row (the same row, by the same key, that the session's ledger writer writes
//!   later, whose insert is then ignored) and deletes the hold in one transaction, so no moment
//!   sees the call neither held nor spent.

use super::{Ledger, RunStart, SessionStart, UsageRow};
use crate::core::money::Usd;
use rusqlite::{params, OptionalExtension, TransactionBehavior};

/// One slot of `limit_spend`.
pub const SLOT_MS: i64 = 15 * 60 * 1000;

pub(super) const MIGRATION: &str = "CREATE TABLE limit_holds (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL,
        pid INTEGER NOT NULL,
        pid_start INTEGER NOT NULL,
        session_id TEXT NOT NULL,
        cwd TEXT NOT NULL,
        class TEXT NOT NULL,
        meter TEXT NOT NULL,
        family TEXT NOT NULL,
        premium INTEGER NOT NULL,
        amount_nanos INTEGER NOT NULL,
        created_ms INTEGER NOT NULL
    );
    CREATE TABLE limit_spend (
        slot INTEGER NOT NULL,
        session_id TEXT NOT NULL,
        model TEXT NOT NULL,
        cost_nanos INTEGER NOT NULL,
        PRIMARY KEY (slot, session_id, model)
    ) WITHOUT ROWID;
    INSERT INTO limit_spend (slot, session_id, model, cost_nanos)
        SELECT ts_ms / 900000, session_id, model, SUM(cost_nanos) FROM usage GROUP BY 1, 2, 3;
    CREATE TRIGGER limit_spend_insert AFTER INSERT ON usage BEGIN
        INSERT INTO limit_spend (slot, session_id, model, cost_nanos)
            VALUES (NEW.ts_ms / 900000, NEW.session_id, NEW.model, NEW.cost_nanos)
            ON CONFLICT (slot, session_id, model) DO UPDATE SET cost_nanos = cost_nanos + excluded.cost_nanos;
    END;
    CREATE TRIGGER limit_spend_delete AFTER DELETE ON usage BEGIN
        UPDATE limit_spend SET cost_nanos = cost_nanos - OLD.cost_nanos
            WHERE slot = OLD.ts_ms / 900000 AND session_id = OLD.session_id AND model = OLD.model;
    END;
    CREATE TRIGGER limit_spend_update AFTER UPDATE OF cost_nanos, session_id, ts_ms, model ON usage BEGIN
        UPDATE limit_spend SET cost_nanos = cost_nanos - OLD.cost_nanos
            WHERE slot = OLD.ts_ms / 900000 AND session_id = OLD.session_id AND model = OLD.model;
        INSERT INTO limit_spend (slot, session_id, model, cost_nanos)
            VALUES (NEW.ts_ms / 900000, NEW.session_id, NEW.model, NEW.cost_nanos)
            ON CONFLICT (slot, session_id, model) DO UPDATE SET cost_nanos = cost_nanos + excluded.cost_nanos;
    END;";

/// A call's hold, as admitted.
#[derive(Debug, Clone, Default)]
pub struct NewHold {
    pub run_id: String,
    pub pid: u32,
    pub pid_start: u64,
    pub session_id: String,
    pub cwd: String,
    pub class: String,
    pub meter: String,
    /// The model's family (`sonnet`, …), for tier scopes.
    pub family: String,
    pub premium: bool,
}

/// Spend in a window by one session on one model, with the session's facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spend {
    pub session_id: String,
    pub model: String,
    pub cost: Usd,
    pub cwd: String,
    pub class: String,
    pub meter: String,
}

/// A live hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub id: i64,
    pub run_id: String,
    pub session_id: String,
    pub cwd: String,
    pub class: String,
    pub meter: String,
    pub family: String,
    pub premium: bool,
    pub amount: Usd,
}

/// What counts against the limits now: spend per window asked for, in order, and the live holds.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub spend: Vec<Vec<Spend>>,
    pub holds: Vec<Held>,
}

/// The usage row a settled call leaves, with the session and run it belongs to (created when the
/// session's ledger writer has not written them yet; it fills them in later).
pub struct Settled<'a> {
    pub session: &'a SessionStart,
    pub run: &'a RunStart,
    pub row: &'a UsageRow,
}

/// The start time of process `pid` (clock ticks since boot, field 22 of `/proc/<pid>/stat`);
/// None when there is no such process (or it is a zombie: it holds nothing any more).
pub fn pid_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // Field 3 (the state) is the first after the command's closing parenthesis.
    if fields.next()? == "Z" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// `[from, to)` in milliseconds → the slots it covers, `[first, end)`.
fn slots(from_ms: i64, to_ms: i64) -> (i64, i64) {
    (from_ms.div_euclid(SLOT_MS), to_ms.div_euclid(SLOT_MS) + i64::from(to_ms.rem_euclid(SLOT_MS) != 0))
}

impl Ledger {
    fn spend_in(&self, from_ms: i64, to_ms: i64) -> rusqlite::Result<Vec<Spend>> {
        let (a, b) = slots(from_ms, to_ms);
        let mut st = self.conn.prepare_cached(
            "SELECT g.session_id, g.model, g.cost, COALESCE(s.cwd, ''), COALESCE(s.class, 'unknown'),
                    COALESCE(s.meter, 'unknown')
             FROM (SELECT session_id, model, SUM(cost_nanos) AS cost FROM limit_spend
                   WHERE slot >= ?1 AND slot < ?2 GROUP BY session_id, model) g
             LEFT JOIN sessions s ON s.id = g.session_id",
        )?;
        let rows = st.query_map(params![a, b], |r| {
            Ok(Spend {
                session_id: r.get(0)?,
                model: r.get(1)?,
                cost: Usd(r.get(2)?),
                cwd: r.get(3)?,
                class: r.get(4)?,
                meter: r.get(5)?,
            })
        })?;
        rows.collect()
    }

    /// Every hold, with its holder's pid and start time.
    fn holds(&self) -> rusqlite::Result<Vec<(Held, u32, u64)>> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, run_id, session_id, cwd, class, meter, family, premium, amount_nanos, pid, pid_start FROM limit_holds",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                Held {
                    id: r.get(0)?,
                    run_id: r.get(1)?,
                    session_id: r.get(2)?,
                    cwd: r.get(3)?,
                    class: r.get(4)?,
                    meter: r.get(5)?,
                    family: r.get(6)?,
                    premium: r.get(7)?,
                    amount: Usd(r.get(8)?),
                },
                r.get::<_, i64>(9)? as u32,
                r.get::<_, i64>(10)? as u64,
            ))
        })?;
        rows.collect()
    }

    /// The live holds; with `purge`, the dead ones are deleted (inside a write transaction).
    fn live_holds(&self, purge: bool) -> rusqlite::Result<Vec<Held>> {
        let mut live = Vec::new();
        let mut known: Vec<(u32, Option<u64>)> = Vec::new();
        for (h, pid, start) in self.holds()? {
            let now = match known.iter().find(|(p, _)| *p == pid) {
                Some((_, s)) => *s,
                None => {
                    let s = pid_start(pid);
                    known.push((pid, s));
                    s
                }
            };
            if now == Some(start) {
                live.push(h);
            } else if purge {
                self.conn.execute("DELETE FROM limit_holds WHERE id = ?1", [h.id])?;
            }
        }
        Ok(live)
    }

    /// Spend in each window (`[from_ms, to_ms)`) and the live holds, read in one snapshot;
    /// nothing is written.
    pub fn limits_snapshot(&self, windows: &[(i64, i64)]) -> anyhow::Result<Snapshot> {
        let tx = self.conn.unchecked_transaction()?;
        let mut snap = Snapshot::default();
        for &(a, b) in windows {
            snap.spend.push(self.spend_in(a, b)?);
        }
        snap.holds = self.live_holds(false)?;
        tx.commit()?;
        Ok(snap)
    }

    /// Admit a call: in one write transaction, delete the holds of dead runs, read what counts
    /// (as [`Ledger::limits_snapshot`]), let `decide` say how much to hold or why not, and insert
    /// the hold. Ok(Ok(id)) when admitted; Ok(Err(why)) when `decide` refused.
    pub fn limits_admit<R>(
        &self,
        windows: &[(i64, i64)],
        hold: &NewHold,
        decide: impl FnOnce(&Snapshot) -> Result<Usd, R>,
    ) -> anyhow::Result<Result<i64, R>> {
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        let mut snap = Snapshot { spend: Vec::with_capacity(windows.len()), holds: self.live_holds(true)? };
        for &(a, b) in windows {
            snap.spend.push(self.spend_in(a, b)?);
        }
        let amount = match decide(&snap) {
            Ok(a) => a,
            Err(r) => {
                tx.commit()?;
                return Ok(Err(r));
            }
        };
        self.conn
            .prepare_cached(
                "INSERT INTO limit_holds (run_id, pid, pid_start, session_id, cwd, class, meter, family, premium, amount_nanos, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?
            .execute(params![
                hold.run_id,
                hold.pid,
                hold.pid_start as i64,
                hold.session_id,
                hold.cwd,
                hold.class,
                hold.meter,
                hold.family,
                hold.premium,
                amount.nanos(),
                super::now_ms()
            ])?;
        let id = self.conn.last_insert_rowid();
        tx.commit()?;
        Ok(Ok(id))
    }

    /// The call is over: in one transaction its usage row is written (when it was answered) and
    /// its hold deleted (a response counted without a hold: its row alone).
    pub fn limits_settle(&self, hold: Option<i64>, settled: Option<Settled>) -> anyhow::Result<()> {
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        if let Some(s) = settled {
            let (ss, run, u) = (s.session, s.run, s.row);
            super::insert_session_if_absent(&self.conn, &u.session_id, ss)?;
            if let Some(r) = &u.run_id {
                self.conn
                    .prepare_cached(
                        "INSERT OR IGNORE INTO runs (id, session_id, started_ms, pid, resumed) VALUES (?1, ?2, ?3, ?4, ?5)",
                    )?
                    .execute(params![r, u.session_id, run.started_ms, run.pid, run.resumed])?;
            }
            let n = super::insert_usage(&self.conn, u)?;
            if n > 0 {
                self.conn
                    .prepare_cached("UPDATE sessions SET cost_nanos = cost_nanos + ?1 WHERE id = ?2")?
                    .execute(params![u.cost.nanos(), u.session_id])?;
                if let Some(r) = &u.run_id {
                    self.conn
                        .prepare_cached("UPDATE runs SET cost_nanos = cost_nanos + ?1 WHERE id = ?2")?
                        .execute(params![u.cost.nanos(), r])?;
                }
            }
        }
        if let Some(hold) = hold {
            self.conn.prepare_cached("DELETE FROM limit_holds WHERE id = ?1")?.execute([hold])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Every hold of a run (at its end: normally none are left).
    pub fn limits_release_run(&self, run_id: &str) -> anyhow::Result<()> {
        self.conn.execute("DELETE FROM limit_holds WHERE run_id = ?1", [run_id])?;
        Ok(())
    }

    /// The amount of hold `id`, if it is still there.
    pub fn limits_hold(&self, id: i64) -> anyhow::Result<Option<Usd>> {
        Ok(self
            .conn
            .query_row("SELECT amount_nanos FROM limit_holds WHERE id = ?1", [id], |r| r.get(0))
            .optional()?
            .map(Usd))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Store;
    const D: i64 = crate::core::money::NANOS_PER_USD;

    fn row(key: &str, session: &str, ts: i64, cost: i64) -> UsageRow {
        UsageRow {
            key: key.into(),
            session_id: session.into(),
            ts_ms: ts,
            model: "claude-sonnet-4-6".into(),
            requested_model: None,
            agent_id: None,
            usage: Default::default(),
            cost: Usd(cost),
            source: crate::core::recorded::Source::Gate,
            priced_by: "claude-release".into(),
            estimated: false,
            run_id: Some("r1".into()),
        }
    }

    fn total(snap: &[Spend]) -> i64 {
        snap.iter().map(|s| s.cost.nanos()).sum()
    }

    #[test]
    fn the_spend_summary_follows_every_change_to_usage() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(&dir.path().join("l.db")).unwrap();
        let start = SessionStart {
            id: "s1".into(),
            cwd: "/w".into(),
            class: crate::core::plan::Class::Programmatic,
            payer: crate::core::plan::Payer::Api,
            ..Default::default()
        };
        l.begin(&start).unwrap();
        let day = 86_400_000;
        l.record(&row("a", "s1", day + 10, D)).unwrap();
        l.record(&row("b", "s1", day + SLOT_MS * 3, 2 * D)).unwrap();
        l.record(&row("b", "s1", day + SLOT_MS * 3, 2 * D)).unwrap(); // a second source: ignored
        l.record(&row("c", "s1", 2 * day, 4 * D)).unwrap(); // the next day
        let snap = l.limits_snapshot(&[(day, 2 * day), (day + SLOT_MS, 2 * day), (0, 3 * day)]).unwrap();
        assert_eq!([total(&snap.spend[0]), total(&snap.spend[1]), total(&snap.spend[2])], [3 * D, 2 * D, 7 * D]);
        assert_eq!((snap.spend[0][0].cwd.as_str(), snap.spend[0][0].meter.as_str()), ("/w", "api"));
        l.amend("b", Usd(D / 2), "claude", false).unwrap();
        l.conn.execute("UPDATE usage SET session_id = 's2' WHERE key = 'a'", []).unwrap();
        l.conn.execute("DELETE FROM usage WHERE key = 'c'", []).unwrap();
        let snap = l.limits_snapshot(&[(day, 2 * day), (0, 3 * day)]).unwrap();
        assert_eq!([total(&snap.spend[0]), total(&snap.spend[1])], [D + D / 2, D + D / 2]);
        let by_s2: i64 = snap.spend[0].iter().filter(|s| s.session_id == "s2").map(|s| s.cost.nanos()).sum();
        assert_eq!(by_s2, D);
        // Exactly what usage holds, slot by slot.
        let exact: i64 = l.conn.query_row("SELECT COALESCE(SUM(cost_nanos), 0) FROM usage", [], |r| r.get(0)).unwrap();
        let summary: i64 = l.conn.query_row("SELECT SUM(cost_nanos) FROM limit_spend", [], |r| r.get(0)).unwrap();
        assert_eq!(exact, summary);
    }

    #[test]
    fn holds_of_dead_runs_go_at_the_next_admission_and_settling_writes_the_row_once() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(&dir.path().join("l.db")).unwrap();
        let me = std::process::id();
        let hold = NewHold {
            run_id: "r1".into(),
            pid: me,
            pid_start: pid_start(me).unwrap(),
            session_id: "s1".into(),
            ..Default::default()
        };
        let a = l.limits_admit(&[], &hold, |_| Ok::<_, ()>(Usd(D))).unwrap().unwrap();
        // A run that died: a pid with another start time (a reused pid), and a pid that is gone.
        let dead = NewHold { pid_start: 1, ..hold.clone() };
        l.limits_admit(&[], &dead, |_| Ok::<_, ()>(Usd(7 * D))).unwrap().unwrap();
        let gone = NewHold { pid: u32::MAX - 1, ..hold.clone() };
        l.limits_admit(&[], &gone, |_| Ok::<_, ()>(Usd(7 * D))).unwrap().unwrap();
        assert_eq!(l.limits_snapshot(&[]).unwrap().holds.len(), 1, "only the live hold counts");
        let mut seen = 0;
        let refused = l
            .limits_admit(&[], &hold, |s| {
                seen = s.holds.len();
                Err("no")
            })
            .unwrap();
        assert_eq!((refused, seen), (Err("no"), 1));
        let n: i64 = l.conn.query_row("SELECT COUNT(*) FROM limit_holds", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 1, "the dead runs' holds were deleted");
        // Settled: the row is written with its session and run, the hold goes; the writer's
        // later insert of the same row changes nothing.
        let start = SessionStart {
            id: "s1".into(),
            class: crate::core::plan::Class::Programmatic,
            payer: crate::core::plan::Payer::Api,
            ..Default::default()
        };
        let run = RunStart { id: "r1".into(), session_id: "s1".into(), ..Default::default() };
        let r = row("k", "s1", 5, D / 4);
        l.limits_settle(Some(a), Some(Settled { session: &start, run: &run, row: &r })).unwrap();
        assert!(!l.record(&r).unwrap());
        l.begin(&start).unwrap();
        l.begin_run(&run).unwrap();
        let s = l.session_spend("s1").unwrap().unwrap();
        assert_eq!(s.spent, Usd(D / 4));
        let run_cost: i64 = l.conn.query_row("SELECT cost_nanos FROM runs WHERE id = 'r1'", [], |r| r.get(0)).unwrap();
        assert_eq!(run_cost, D / 4);
        assert_eq!(l.limits_hold(a).unwrap(), None);
        assert!(l.limits_snapshot(&[]).unwrap().holds.is_empty());
    }
}
