//! Delivering this machine's ledger to the team ledger: `ccb sync` (once, in the foreground) and
//! the sync daemon a session starts in the background (`ccb sync --daemon`), which delivers rows
//! as they are recorded and stays while any of this ledger's runs is open.
//!
//! Local first: sessions record into the local ledger as always; triggers queue each row's key in
//! the outbox ([`crate::ledger::outbox`]); the sync reads rows as they are when delivered and
//! upserts them by the keys the local ledger uses, so a retry after a lost answer, a restart or a
//! second daemon delivers each response once. What happened last is kept in a small status file
//! beside the ledger, so that the next session or report can say it without a network wait.

use crate::core::config::Config;
use crate::core::team::LedgerUrl;
use crate::ledger::outbox::Me;
use crate::ledger::pg::{self, Problem, Seat};
use crate::ledger::Ledger;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Rows per transaction: large enough that a backlog of a million goes in minutes, small enough
/// that one transaction never holds the server for long.
const BATCH: usize = 2000;
/// How often the daemon looks at the outbox while runs are open.
const POLL: Duration = Duration::from_millis(200);
/// Attempts, a second apart, once no run of this ledger is open, before the rows are left to
/// the next session or `ccb sync` (a transient failure, a deadlock the server broke, a restart,
/// is not worth stranding them for).
const TRIES_ALONE: u32 = 3;
/// The longest wait between two attempts to reach a server that does not answer.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What one delivery did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub sessions: usize,
    pub responses: usize,
    /// Responses of sessions not run through ccb (`share_unmetered`).
    pub unmetered: usize,
}

/// This machine as the team ledger names it, and its seat's pool.
pub fn me(cfg: &Config) -> Me {
    let user = cfg.team.user.clone().unwrap_or_else(crate::sys::whoami::login_name);
    let seat = cfg.pool.as_ref().map(|p| Seat {
        user: user.clone(),
        plan: p.plan.clone(),
        amount_nanos: p.amount.nanos(),
        billing_day: p.billing_day as i32,
        overage: match p.overage {
            crate::core::pool::Overage::Reject => "reject".into(),
            crate::core::pool::Overage::Allow => "allow".into(),
        },
        include_unmetered: p.include_unmetered,
    });
    Me { user, host: crate::sys::whoami::host_name(), share_unmetered: cfg.team.share_unmetered, seat }
}

/// Deliver everything queued, batch by batch; the outbox forgets a batch only once the server
/// has committed it.
pub fn drain(ledger: &Ledger, client: &mut postgres::Client, me: &Me) -> Result<Delivered, Problem> {
    let mut done = Delivered::default();
    let mut seat = me.seat.as_ref();
    loop {
        let b = ledger
            .outbox_take(BATCH, me)
            .map_err(|e| Problem::Server(format!("cannot read the local ledger: {e:#}")))?;
        if b.last == 0 && seat.is_none() {
            return Ok(done);
        }
        pg::deliver(client, &b.sessions, &b.usage, seat).map_err(|e| lost(&e))?;
        seat = None;
        if b.last == 0 {
            return Ok(done);
        }
        ledger.outbox_ack(b.last).map_err(|e| Problem::Server(format!("cannot write the local ledger: {e:#}")))?;
        done.sessions += b.sessions.len();
        done.responses += b.usage.len();
    }
}

fn lost(e: &postgres::Error) -> Problem {
    match e.as_db_error() {
        Some(d) => Problem::Server(format!("the team ledger said: {} ({})", d.message(), d.code().code())),
        None => Problem::Unreachable(format!("lost the team ledger: {e}")),
    }
}

/// With `share_unmetered`: deliver what transcripts show of sessions not run through ccb,
/// since the last share. The number of responses delivered.
pub fn share_unmetered(ledger: &Ledger, client: &mut postgres::Client, me: &Me) -> Result<usize, Problem> {
    if !me.share_unmetered {
        return Ok(0);
    }
    let local = |e: anyhow::Error| Problem::Server(format!("cannot read the local ledger: {e:#}"));
    let cfg = crate::sys::files::load_config().map_err(|e| Problem::Server(e.message))?;
    let prices = crate::sys::prices::load_table(&cfg).map_err(|e| Problem::Server(format!("{e:#}")))?;
    let u = crate::scan::share::read(ledger, &crate::scan::claude_dirs(), &prices, me).map_err(local)?;
    for chunk in u.usage.chunks(BATCH) {
        let ids: std::collections::HashSet<&str> = chunk.iter().map(|r| r.session_id.as_str()).collect();
        let sessions: Vec<_> = u.sessions.iter().filter(|s| ids.contains(s.id.as_str())).cloned().collect();
        pg::deliver_unmetered(client, &sessions, chunk).map_err(|e| lost(&e))?;
    }
    ledger.set_share_marks(&u.marks).map_err(local)?;
    Ok(u.usage.len())
}

/// Connect, check the schema (migrating an older one), enable the outbox and deliver.
pub fn once(ledger: &Ledger, url: &LedgerUrl, me: &Me, timeout: Duration) -> Result<Delivered, Problem> {
    ledger.outbox_enable().map_err(|e| Problem::Server(format!("cannot write the local ledger: {e:#}")))?;
    let mut c = pg::connect(url, timeout)?;
    pg::ready(&mut c, &url.to_string())?;
    let mut d = drain(ledger, &mut c, me)?;
    d.unmetered = share_unmetered(ledger, &mut c, me)?;
    Ok(d)
}

// ------------------------------------------------------------------------------------ status

/// The status file beside a ledger: the last problem with the team ledger (one line), or none.
pub fn status_path(ledger: &Path) -> PathBuf {
    let mut p = ledger.as_os_str().to_owned();
    p.push(".sync-status");
    PathBuf::from(p)
}

fn lock_path(ledger: &Path) -> PathBuf {
    let mut p = ledger.as_os_str().to_owned();
    p.push(".sync-lock");
    PathBuf::from(p)
}

/// Remember the outcome of the last attempt (an empty file: it went well).
pub fn set_status(ledger: &Path, problem: Option<&Problem>) {
    let text = problem.map(|p| format!("{p}\n")).unwrap_or_default();
    let _ = crate::sys::paths::write_private(&status_path(ledger), text.as_bytes());
}

/// The last problem the sync met, if the last attempt failed.
pub fn last_problem(ledger: &Path) -> Option<String> {
    let text = std::fs::read_to_string(status_path(ledger)).ok()?;
    let line = text.lines().next()?.trim().to_string();
    (!line.is_empty()).then_some(line)
}

// ------------------------------------------------------------------------------------ daemon

/// Start the sync daemon for this ledger, detached, and reap it when it ends (it outlives ccb
/// when there is still something to deliver; then init reaps it). Never waits for it.
pub fn spawn_daemon() {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new("/proc/self/exe");
    cmd.args(["sync", "--daemon", "--while", &std::process::id().to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .current_dir("/")
        // Not a process of the session: the stop at the ceiling and the sweep of abandoned runs
        // leave it alone.
        .env_remove("CCB_SESSION_ID")
        .env_remove(crate::session::warden::RUN_VAR)
        .process_group(0);
    match crate::sys::procs::spawn_spared(&mut cmd) {
        Ok(mut child) => {
            let _ = std::thread::Builder::new().name("ccb-sync-reaper".into()).spawn(move || {
                let pid = child.id();
                let _ = child.wait();
                crate::sys::procs::release_own(pid);
            });
        }
        Err(e) => log::warn!("cannot start the team ledger's sync: {e}"),
    }
}

/// Are any of these pids alive?
fn any_alive(pids: &[i64]) -> bool {
    pids.iter().any(|&p| {
        p > 0 && p <= i32::MAX as i64 && nix::sys::signal::kill(nix::unistd::Pid::from_raw(p as i32), None).is_ok()
    })
}

/// The daemon's life: one per ledger at a time (an exclusive lock; a second waits its turn, so
/// a session that starts just as the running one leaves is never without one). It delivers as
/// rows arrive, backs off while the server does not answer, and ends when no run of this ledger
/// is open and nothing is left to deliver (or nothing can be, for now).
pub fn daemon(while_pid: Option<i64>) -> i32 {
    let Ok(cfg) = crate::sys::files::load_config() else { return 2 };
    let Some(url) = cfg.team.url.clone() else { return 0 };
    let Some(path) = crate::ledger::default_path() else { return 1 };
    let Ok(lock) = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(lock_path(&path)) else {
        return 1;
    };
    {
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor this function owns; released when the process ends.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return 1;
        }
    }
    let Ok(ledger) = Ledger::open(&path) else { return 1 };
    // The outbox first: until its triggers exist it is empty whatever was recorded, and a
    // daemon that starts after its (short) session ended would see nothing to deliver.
    if let Err(e) = ledger.outbox_enable() {
        set_status(&path, Some(&Problem::Server(format!("cannot write the local ledger: {e:#}"))));
        return 1;
    }
    let me = me(&cfg);
    let shown = url.to_string();
    let mut client: Option<postgres::Client> = None;
    let mut backoff = Duration::from_secs(1);
    let mut next_try = Instant::now();
    let mut first = true;
    let mut failures_alone = 0u32;
    loop {
        let open = while_pid.is_some_and(|p| any_alive(&[p]))
            || ledger.open_run_pids(crate::ledger::now_ms()).map(|p| any_alive(&p)).unwrap_or(false);
        let queued = ledger.outbox_len().unwrap_or(0);
        // A daemon that waited its turn behind another and finds its session over and nothing
        // queued has nothing to do: no connection for it.
        if !open && queued == 0 && first {
            return 0;
        }
        if !open && queued == 0 && !first {
            // The session is over: what transcripts show of sessions not run through ccb goes
            // too, once (a share reads only what was appended since the last).
            if let Some(c) = client.as_mut() {
                if let Err(p) = share_unmetered(&ledger, c, &me) {
                    set_status(&path, Some(&p));
                    return 1;
                }
            }
            return 0;
        }
        if Instant::now() >= next_try && (queued > 0 || first) {
            let result = (|| {
                if client.as_ref().is_none_or(|c| c.is_closed()) {
                    ledger
                        .outbox_enable()
                        .map_err(|e| Problem::Server(format!("cannot write the local ledger: {e:#}")))?;
                    let mut c = pg::connect(&url, pg::CONNECT_TIMEOUT)?;
                    pg::ready(&mut c, &shown)?;
                    client = Some(c);
                }
                let c = client.as_mut().expect("connected above");
                drain(&ledger, c, &me)
            })();
            match result {
                Ok(d) => {
                    if first || d.responses > 0 || d.sessions > 0 {
                        set_status(&path, None);
                    }
                    backoff = Duration::from_secs(1);
                    first = false;
                }
                Err(p) => {
                    log::warn!("{p}");
                    set_status(&path, Some(&p));
                    client = None;
                    first = false;
                    failures_alone += u32::from(!open);
                    if !open && failures_alone >= TRIES_ALONE {
                        // Nothing is running here to deliver for, and the server keeps failing:
                        // the next session or `ccb sync` tries again.
                        return 1;
                    }
                    next_try = Instant::now() + if open { backoff } else { Duration::from_secs(1) };
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        std::thread::sleep(POLL);
    }
}
