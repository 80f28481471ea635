//! `[team] share_unmetered = true`: the responses of sessions not run through ccb, read from
//! claude's transcripts on this machine, for the team ledger (`via_ccb = false`). Each file is
//! read from where the last share stopped (its device, inode and offset are remembered in the
//! local ledger), so a share reads only what was appended since. A response the local ledger
//! already has is ccb's own and goes by the outbox instead.

use crate::core::transcript::{parse_line, Line};
use crate::ledger::outbox::Me;
use crate::ledger::pg::{TeamSession, TeamUsage};
use crate::ledger::Ledger;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// What one share read: rows to deliver, and where each file's reading ended.
#[derive(Debug, Default)]
pub struct Unmetered {
    pub sessions: Vec<TeamSession>,
    pub usage: Vec<TeamUsage>,
    /// (path, dev, ino, offset) to remember once the rows are delivered.
    pub marks: Vec<(Vec<u8>, i64, i64, i64)>,
}

pub fn read(
    ledger: &Ledger,
    dirs: &[PathBuf],
    prices: &crate::core::pricing::PriceTable,
    me: &Me,
) -> anyhow::Result<Unmetered> {
    use std::os::unix::ffi::OsStrExt;
    let known = ledger.share_marks()?;
    let mut out = Unmetered::default();
    let mut sessions: BTreeMap<String, TeamSession> = BTreeMap::new();
    let mut buf = Vec::new();
    for f in crate::scan::transcript_files(dirs) {
        let key = f.path.as_os_str().as_bytes().to_vec();
        let Ok(file) = std::fs::File::open(&f.path) else { continue };
        let Ok(m) = file.metadata() else { continue };
        let from = match known.get(&key) {
            Some(&(dev, ino, off)) if dev == m.dev() as i64 && ino == m.ino() as i64 && off as u64 <= m.len() => {
                off as u64
            }
            _ => 0,
        };
        if from == m.len() {
            continue;
        }
        let ctx = super::read::FileCtx::of(&f.path, f.mtime_ms());
        let mut events = Vec::new();
        let (end, _) = super::read::for_each_line(&file, from, m.len(), &mut buf, |line| {
            if let Line::Usage(e) = parse_line(line) {
                events.push(*e);
            }
        });
        for e in events {
            if ledger.has_usage(&e.key)? {
                continue;
            }
            let sid = e.session_id.clone().unwrap_or_else(|| ctx.session.clone());
            let ts = e.timestamp.as_deref().and_then(crate::scan::parse_ts_ms).unwrap_or(ctx.mtime_ms);
            let (price, _) = prices.lookup(&e.model);
            let cost = crate::core::pricing::price(&price, &e.usage, &e.mods, prices.web_search_nanos);
            sessions.entry(sid.clone()).or_insert_with(|| TeamSession {
                started_ms: ts,
                model: Some(e.model.clone()),
                ..TeamSession::unrecorded(
                    &sid,
                    &me.user,
                    &me.host,
                    e.cwd.as_deref().map(crate::core::team::project_name).unwrap_or_else(|| ctx.slug.clone()),
                    crate::scan::class_of_entrypoint(e.entrypoint.as_deref()).to_string(),
                    false,
                )
            });
            out.usage.push(TeamUsage {
                key: e.key.clone(),
                session_id: sid,
                user: me.user.clone(),
                host: me.host.clone(),
                ts_ms: ts,
                model: e.model.clone(),
                requested_model: None,
                agent_id: e.agent_id.clone(),
                tokens: crate::ledger::pg::tokens_of(&e.usage),
                cost_nanos: cost.nanos(),
                source: "transcript".into(),
                priced_by: "table".into(),
                estimated: e.estimated,
                via_ccb: false,
            });
        }
        out.marks.push((key, m.dev() as i64, m.ino() as i64, end as i64));
    }
    out.sessions = sessions.into_values().collect();
    Ok(out)
}
