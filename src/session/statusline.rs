//! The status line of an interactive session (`ccb statusline`, run by claude with its JSON on
//! stdin): the session's figures from ccb's ledger ([`crate::ledger::status`]), the tightest
//! spend limit, the user's own status line when ccb's goes in front of it, and the line made of
//! them ([`crate::core::statusline`]). It never fails: whatever is missing, the line is made
//! of what is there.

use crate::core::config::Config;
use crate::core::limits::{Facts as ScopeFacts, Limit, Period};
use crate::core::statusline::{self, Claude, Facts, Tightest};
use crate::ledger::status::SessionStatus;
use crate::ledger::Ledger;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long the user's own status-line command may take before ccb's segment goes alone.
const THEIRS_TIMEOUT: Duration = Duration::from_secs(5);

/// The line for what claude sent; `theirs`: the user's own command, whose first line follows
/// ccb's segment.
pub fn line(input: &[u8], theirs: Option<&str>, colour: bool) -> String {
    // The user's command runs while ccb reads the ledger.
    let theirs = theirs.and_then(|cmd| run_theirs(cmd, input));
    let claude = statusline::parse(input);
    let config = crate::sys::files::load_config().ok();
    let facts = config.as_ref().and_then(|cfg| facts(cfg, &claude));
    // The zone only shows the 5-hour window's reset time.
    let tz = match claude.five_hour.and_then(|w| w.resets_at) {
        // Read from its TZif file, as reports do (jiff's system zone indexes all of zoneinfo).
        Some(_) => crate::cmd::usage::time_zone(None).unwrap_or(jiff::tz::TimeZone::UTC),
        None => jiff::tz::TimeZone::UTC,
    };
    let ours = statusline::render(&claude, facts.as_ref(), colour, &tz);
    match theirs.and_then(|t| t.finish()) {
        Some(text) => statusline::prefix(&ours, &text, colour),
        None => ours,
    }
}

/// What the ledger knows of claude's session; None when it knows nothing of it.
fn facts(cfg: &Config, claude: &Claude) -> Option<Facts> {
    let id = claude.session_id.as_deref()?;
    let ledger = Ledger::open_to_read(&crate::ledger::default_path()?).ok()??;
    let s = ledger.session_status(id).ok()??;
    // The price table only when a question needs it: a session without a reason that a model
    // answered (is it premium?), or a limit scoped to a tier.
    let needs_prices =
        (s.reason.is_none() && !s.models.is_empty()) || cfg.limits.limits.iter().any(|l| l.scope.tier.is_some());
    let prices = needs_prices.then(|| prices(cfg, claude.version.as_deref())).flatten();
    let floor = prices.as_ref().map(|p| p.premium_floor(&cfg.premium_at));
    let premium_without_reason = match (&prices, floor, &s.reason) {
        (Some(p), Some(f), None) => s.models.iter().find(|m| p.is_premium(m, f)).cloned(),
        _ => None,
    };
    let tightest = if ledger.has_limits() { tightest(cfg, &ledger, &s, prices.as_ref(), floor) } else { None };
    Some(Facts {
        spent: s.spent,
        ceiling: s.ceiling,
        alerts: cfg.session_alerts.clone(),
        premium_without_reason,
        tightest,
    })
}

/// The prices that tell a premium model: the table of claude's release and the user's price
/// file. Not claude's price cache (its `.claude.json` can be megabytes, read on every run) nor
/// learned factors: a model only they know is judged by its family, as the plan judges one.
fn prices(cfg: &Config, version: Option<&str>) -> Option<crate::core::pricing::PriceTable> {
    let t = crate::core::pricing::PriceTable::release(cfg.prices_release.as_deref().or(version)).ok()?;
    match crate::sys::prices::user_file(cfg) {
        Some(f) => crate::sys::files::with_price_file(t, &f).ok(),
        None => Some(t),
    }
}

/// The limit with the least left among those that apply to the session (the credit pool's
/// cycle included, for a credit-pool session), from the ledger alone: the status line does not
/// read transcripts.
fn tightest(
    cfg: &Config,
    ledger: &Ledger,
    s: &SessionStatus,
    prices: Option<&crate::core::pricing::PriceTable>,
    floor: Option<i64>,
) -> Option<Tightest> {
    let mut limits = cfg.limits.all(cfg.pool.as_ref());
    // With overage allowed the pool is no limit, but what is left of it is still worth seeing.
    if let Some(p) = &cfg.pool {
        if !limits.iter().any(|l| l.name == crate::core::limits::POOL) {
            limits.push(Limit {
                name: crate::core::limits::POOL.into(),
                scope: crate::core::limits::Scope { meter: Some("credit-pool".into()), ..Default::default() },
                period: Period::Billing { day: p.billing_day },
                amount: p.amount,
            });
        }
    }
    let cwd = Path::new(&s.cwd);
    limits.retain(|l| {
        let any_tier = crate::core::limits::Scope { tier: None, ..l.scope.clone() };
        any_tier.matches(&ScopeFacts { cwd, class: &s.class, meter: &s.meter, family: "", premium: false })
    });
    if limits.is_empty() {
        return None;
    }
    let tz = crate::session::limits::time_zone(cfg);
    let now = jiff::Timestamp::now();
    let windows: Vec<(i64, i64)> = limits
        .iter()
        .map(|l| {
            let (a, b) = l.period.window(now, &tz);
            (a.timestamp().as_millisecond(), b.timestamp().as_millisecond())
        })
        .collect();
    let snap = ledger.limits_snapshot(&windows).ok()?;
    let empty = crate::core::pricing::PriceTable::release(None).ok();
    let prices = prices.or(empty.as_ref())?;
    let floor = floor.unwrap_or_else(|| prices.premium_floor(&cfg.premium_at));
    limits
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            let (spent, reserved) =
                crate::session::limits::counted_against(&l, &snap.spend[i], &snap.holds, prices, floor);
            Tightest { name: l.name, amount: l.amount, used: spent + reserved }
        })
        .min_by_key(|t| t.amount.nanos().saturating_sub(t.used.nanos()))
}

/// The user's own status-line command, running.
struct Theirs {
    child: std::process::Child,
    out: std::sync::mpsc::Receiver<Vec<u8>>,
}

/// Start the user's command with claude's JSON on its stdin, as claude would run it.
fn run_theirs(cmd: &str, input: &[u8]) -> Option<Theirs> {
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    let input = input.to_vec();
    // A command that does not read its stdin must not block ccb: written on a thread of its own.
    let _ = std::thread::Builder::new().name("ccb-statusline-in".into()).spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut stdout = child.stdout.take()?;
    let (tx, out) = std::sync::mpsc::channel();
    let _ = std::thread::Builder::new().name("ccb-statusline-out".into()).spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.by_ref().take(64 * 1024).read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    Some(Theirs { child, out })
}

impl Theirs {
    /// What it printed (its first line is shown), once it is done; None past the timeout.
    fn finish(mut self) -> Option<String> {
        let deadline = Instant::now() + THEIRS_TIMEOUT;
        let got = self.out.recv_timeout(deadline.saturating_duration_since(Instant::now()));
        match got {
            Ok(buf) => {
                let _ = self.child.wait();
                Some(String::from_utf8_lossy(&buf).into_owned())
            }
            Err(_) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                None
            }
        }
    }
}

/// Claude's JSON, from stdin: at most 1 MiB (claude sends a few hundred bytes). Nothing from a
/// terminal: `ccb statusline` typed at a shell answers at once rather than wait for input.
pub fn read_input() -> Vec<u8> {
    if crate::sys::tty::is_tty(libc::STDIN_FILENO) {
        return Vec::new();
    }
    let mut buf = Vec::new();
    let _ = std::io::stdin().lock().take(1 << 20).read_to_end(&mut buf);
    buf
}

/// Colour unless `NO_COLOR` is set: claude renders the status line's ANSI colours, and ccb's
/// stdout there is a pipe, never a terminal.
pub fn colour() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
