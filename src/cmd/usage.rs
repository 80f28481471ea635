//! `ccb usage [daily|weekly|monthly|session|blocks]`: what was spent, on what, from which meter;
//! `--html FILE` writes the same history as one page with charts.

use crate::core::exit::Exit;
use crate::core::report::{self, Period, Split};
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::ToSpan;
use std::io::IsTerminal;

/// `2026-11-20`, `20261120`, `today`, `yesterday`, `7d` (the last 7 days, today included).
pub fn parse_day(s: &str, today: Date, flag: &str) -> Result<Date, Exit> {
    let bad = || {
        Exit::usage(format!(
            "{flag} '{}' is not a date: use YYYY-MM-DD, YYYYMMDD, today, yesterday or Nd (e.g. 7d)",
            crate::core::human::excerpt(s, crate::core::human::EXCERPT)
        ))
    };
    let t = s.trim();
    match t {
        "today" => return Ok(today),
        "yesterday" => return today.checked_sub(1.day()).map_err(|_| bad()),
        _ => {}
    }
    if let Some(n) = t.strip_suffix('d') {
        let n: i64 = n.parse().map_err(|_| bad())?;
        if !(1..=3650).contains(&n) {
            return Err(bad());
        }
        return today.checked_sub((n - 1).days()).map_err(|_| bad());
    }
    if t.len() == 8 && t.bytes().all(|b| b.is_ascii_digit()) {
        let (y, m, d) = (
            t[0..4].parse().map_err(|_| bad())?,
            t[4..6].parse().map_err(|_| bad())?,
            t[6..8].parse().map_err(|_| bad())?,
        );
        return Date::new(y, m, d).map_err(|_| bad());
    }
    t.parse::<Date>().map_err(|_| bad())
}

pub fn time_zone(name: Option<&str>) -> Result<TimeZone, Exit> {
    match name {
        None => Ok(system_time_zone()),
        Some(n) => tzif(n).map(Ok).unwrap_or_else(|| {
            TimeZone::get(n).map_err(|_| {
                Exit::usage(format!(
                    "--timezone '{}' is not a time zone: use an IANA name like Europe/Berlin, or UTC",
                    crate::core::human::excerpt(n, crate::core::human::EXCERPT)
                ))
            })
        }),
    }
}

/// The system's time zone (`$TZ`, else /etc/localtime) read straight from its TZif file.
/// jiff's own `TimeZone::system()` and `TimeZone::get()` first index the whole zoneinfo database
/// (a few milliseconds, on every report; status lines run one every few seconds); a report needs
/// only the zone's rules. Anything else (a POSIX `TZ` rule, no zoneinfo) goes through jiff.
fn system_time_zone() -> TimeZone {
    let from_env = std::env::var("TZ").ok().filter(|v| !v.is_empty());
    let tz = match from_env.as_deref() {
        Some(v) => tzif(v.strip_prefix(':').unwrap_or(v)),
        None => std::fs::read("/etc/localtime").ok().and_then(|b| TimeZone::tzif("localtime", &b).ok()),
    };
    tz.unwrap_or_else(TimeZone::system)
}

/// A zone by IANA name or TZif path, from the zoneinfo files.
fn tzif(name: &str) -> Option<TimeZone> {
    let path = if name.starts_with('/') {
        std::path::PathBuf::from(name)
    } else {
        if name.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
            return None;
        }
        let dir = std::env::var_os("TZDIR").filter(|d| !d.is_empty()).unwrap_or_else(|| "/usr/share/zoneinfo".into());
        std::path::Path::new(&dir).join(name)
    };
    let bytes = std::fs::read(path).ok()?;
    TimeZone::tzif(name, &bytes).ok()
}

pub struct Args {
    pub period: Period,
    pub since: Option<String>,
    pub until: Option<String>,
    pub split: Split,
    pub timezone: Option<String>,
    pub json: bool,
    /// Everyone's usage, from the team ledger.
    pub team: bool,
    /// `ccb usage blocks`: 5-hour windows instead of periods.
    pub blocks: bool,
    pub since_ref: Option<String>,
    pub branch: Option<String>,
    pub breakdown: bool,
    /// Newest first.
    pub desc: bool,
    pub compact: bool,
    pub html: Option<std::path::PathBuf>,
    /// `ccb usage top`, and what it ranks.
    pub top: Option<crate::core::advice::TopBy>,
    /// `--by` was given (it goes with `top` only).
    pub by_given: bool,
    /// `--what-if MODEL`.
    pub what_if: Option<String>,
    /// `--limit N` (top).
    pub limit: usize,
}

/// The width a table must fit: the terminal's, else `$COLUMNS`, else none (a pipe gets it whole).
fn table_width() -> Option<usize> {
    if std::io::stdout().is_terminal() {
        if let Some(ws) = crate::sys::tty::window_size(1) {
            return Some(ws.ws_col as usize);
        }
    }
    std::env::var("COLUMNS").ok().and_then(|c| c.trim().parse().ok()).filter(|&c: &usize| c >= 20)
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    let cfg = crate::sys::files::load_config()?;
    let prices = crate::sys::prices::load_table(&cfg)?;
    let tz = time_zone(a.timezone.as_deref())?;
    let now = jiff::Timestamp::now();
    let today = tz.to_datetime(now).date();
    let since = a.since.as_deref().map(|s| parse_day(s, today, "--since")).transpose()?;
    let until = a.until.as_deref().map(|s| parse_day(s, today, "--until")).transpose()?;
    if let (Some(s), Some(u)) = (since, until) {
        if s > u {
            return Err(Exit::usage(format!("--since {s} is after --until {u}")).into());
        }
    }
    // A piece of work: from its first commit's time, in its repository's working trees.
    let start = match a.since_ref.as_deref() {
        None => None,
        Some(r) => {
            let cwd =
                std::env::current_dir().map_err(|e| Exit::usage(format!("--since-ref: no working directory ({e})")))?;
            let quoted = crate::core::human::excerpt(r, crate::core::human::EXCERPT);
            Some(crate::sys::git::ref_start(&cwd, r).map_err(|e| Exit::usage(format!("--since-ref '{quoted}' {e}")))?)
        }
    };
    let since_ms = if let Some(s) = &start {
        // From the quarter hour of the commit: reports keep sums per 15 minutes.
        crate::core::blocks::slot_of(s.time_ms) * crate::scan::SLOT_MS
    } else if a.blocks {
        // Blocks as ccusage makes them: from the whole history, then chosen by their start day.
        i64::MIN
    } else {
        // Start a day early: a file's responses are bucketed by their own time zone day below.
        since
            .and_then(|d| d.checked_sub(1.day()).ok())
            .and_then(|d| d.to_zoned(tz.clone()).ok())
            .map(|z| z.timestamp().as_millisecond())
            .unwrap_or(i64::MIN)
    };
    if a.by_given && a.top.is_none() {
        return Err(Exit::usage(
            "--by goes with `ccb usage top` (session, branch, subagent, tool); a report splits with --by-model, --by-reason, --by-meter or --by-project",
        )
        .into());
    }
    // Before reading anything: an unknown model exits 2 at once.
    let what_if = a.what_if.as_deref().map(|m| crate::core::advice::WhatIf::new(m, &prices)).transpose()?;
    let mut ds = if a.team {
        let mut c = crate::cmd::team::connect(&cfg)?;
        crate::cmd::team::deliver_own(&cfg, &mut c);
        crate::scan::team::dataset(&mut c, since_ms.max(0), &tz, a.blocks || start.is_some()).map_err(|e| Exit {
            code: crate::core::exit::LEDGER_FAULT,
            message: format!("cannot read the team ledger: {e}"),
        })?
    } else {
        crate::scan::dataset::dataset_with(since_ms, &tz, &prices, a.blocks)?
    };
    if a.branch.is_some() || start.is_some() {
        let trees: Vec<String> = start
            .iter()
            .flat_map(|s| s.trees.iter().map(|t| t.to_string_lossy().trim_end_matches('/').to_string()))
            .collect();
        ds.retain(|s| {
            a.branch.as_ref().is_none_or(|b| *b == s.branch)
                && (trees.is_empty()
                    || trees.iter().any(|t| {
                        s.project == *t || s.project.strip_prefix(t.as_str()).is_some_and(|r| r.starts_with('/'))
                    }))
        });
    }
    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let width = table_width();
    if a.blocks {
        let now_ms = now.as_millisecond();
        let mut blocks = crate::core::blocks::blocks(&ds, now_ms);
        blocks.retain(|b| {
            let day = crate::scan::day_of(b.start_ms, &tz);
            since.is_none_or(|s| day >= s) && until.is_none_or(|u| day <= u)
        });
        if a.desc {
            blocks.reverse();
        }
        let estimated: Vec<String> = ds.estimated.iter().cloned().collect();
        if a.json {
            crate::out!(
                "{}",
                serde_json::to_string_pretty(&crate::core::blocks::to_json(&blocks, now_ms, &estimated))?
            );
        } else if blocks.is_empty() {
            crate::out!("No usage found{}.", if since.is_some() || until.is_some() { " in that range" } else { "" });
        } else {
            let t = crate::core::blocks::to_table(&blocks, now_ms, &tz, width.unwrap_or(120), color);
            use std::io::Write as _;
            let _ = write!(std::io::stdout(), "{t}");
        }
        notes(ds.malformed, &estimated, a.json);
        return Ok(0);
    }
    let floor = prices.premium_floor(&cfg.premium_at);
    let cheap = prices.premium_floor("haiku");
    let premium = |m: &str| prices.is_premium(m, floor);
    let cheapest = |m: &str| prices.lookup(m).0.rates.output <= cheap;
    if let Some(by) = a.top {
        let w = match what_if {
            Some(w) => w,
            // The cheapest current tier, unless the user names another.
            None => crate::core::advice::WhatIf::new("haiku", &prices)?,
        };
        let rows =
            top_rows(by, &ds, since, until, since_ms, &tz, &prices, &premium, &cheapest, &cfg.advice, a.limit, &w)?;
        if a.json {
            crate::out!("{}", serde_json::to_string_pretty(&crate::core::advice::top_json(by, &rows, &w))?);
        } else if rows.is_empty() {
            crate::out!("No usage found{}.", if since.is_some() || until.is_some() { " in that range" } else { "" });
        } else {
            use std::io::Write as _;
            let _ = write!(std::io::stdout(), "{}", crate::core::advice::top_table(by, &rows, &w));
        }
        return Ok(0);
    }
    let mut r = report::build(&ds, a.period, a.split, since, until);
    // `--by-model`: the sessions of the range a cheaper choice would likely have served.
    let hints = if a.split == report::Split::Model {
        crate::core::advice::session_hints(&ds, since, until, &premium, &cheapest, &cfg.advice)
    } else {
        Vec::new()
    };
    if a.desc {
        r.rows.reverse();
    }
    if let Some(path) = &a.html {
        write_html(path, &cfg, &ds, since, until, start.as_ref(), &tz, now)?;
        crate::out!("Wrote {}", crate::core::human::path_excerpt(path));
    } else if a.json {
        let mut v = report::to_json(&r, a.split);
        if let Some(w) = &what_if {
            crate::core::advice::add_what_if(&mut v, &r, w);
        }
        if a.split == report::Split::Model {
            if let Some(o) = v.as_object_mut() {
                let list =
                    hints.iter().map(|(s, h)| serde_json::json!({"sessionId": s, "kind": h.kind, "text": h.text}));
                o.insert("hints".into(), serde_json::Value::Array(list.collect()));
            }
        }
        crate::out!("{}", serde_json::to_string_pretty(&v)?);
    } else if r.rows.is_empty() {
        crate::out!(
            "No usage found{}.",
            if since.is_some() || until.is_some() || start.is_some() { " in that range" } else { "" }
        );
    } else {
        let o = crate::core::table::Opts { color, width, compact: a.compact, breakdown: a.breakdown, tz: tz.clone() };
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), "{}", crate::core::table::render(&r, &o));
        if let Some(w) = &what_if {
            let _ = write!(std::io::stdout(), "\n{}", crate::core::advice::what_if_table(&r, w));
        }
        for (s, h) in &hints {
            let text = crate::core::human::printable(&h.text);
            let id = crate::core::human::printable(s);
            let mut line = format!("hint: session {id}: {text}");
            // Fitted like the table above it: a line never wraps at the terminal's width (the
            // session's id shortened first, as the session table does, then the line cut).
            if let Some(w) = width.filter(|&w| line.chars().count() > w) {
                let short: String = id.chars().take(8).collect();
                line = format!("hint: session {short}…: {text}");
                if line.chars().count() > w {
                    line = line.chars().take(w.saturating_sub(1)).chain(std::iter::once('…')).collect();
                }
            }
            let _ = writeln!(std::io::stdout(), "{line}");
        }
    }
    notes(r.malformed, &r.estimated, a.json);
    Ok(0)
}

fn notes(malformed: u64, estimated: &[String], json: bool) {
    if malformed > 0 {
        crate::note!("ccb: skipped {} malformed transcript line{}", malformed, if malformed == 1 { "" } else { "s" });
    }
    if !estimated.is_empty() && !json {
        let names: Vec<String> = estimated.iter().map(|m| crate::core::human::printable(m)).collect();
        crate::note!(
            "ccb: figures for {} are estimates: no price known, charged at the dearest rates of the family (see `ccb prices`)",
            names.join(", ")
        );
    }
}

/// `--html FILE`: the page, from the same history as the report, with the pool and the limits.
#[allow(clippy::too_many_arguments)]
fn write_html(
    path: &std::path::Path,
    cfg: &crate::core::config::Config,
    ds: &crate::core::report::Dataset,
    since: Option<Date>,
    until: Option<Date>,
    start: Option<&crate::sys::git::RefStart>,
    tz: &TimeZone,
    now: jiff::Timestamp,
) -> anyhow::Result<()> {
    use crate::core::html;
    let daily = report::build(ds, Period::Daily, Split::None, since, until);
    let sessions = report::build(ds, Period::Session, Split::None, since, until);
    let by_branch = report::build(ds, Period::Daily, Split::Branch, since, until);
    let pool = match &cfg.pool {
        Some(pc) => {
            let s = crate::scan::pool::current(cfg, pc)?;
            Some(html::PoolView {
                plan: pc.plan.clone(),
                amount: s.amount,
                spent: s.spent,
                start: s.start,
                end: s.end,
                per_day: s.per_day,
                runs_out: s.runs_out,
            })
        }
        None => None,
    };
    let limits = crate::scan::limits::rows(cfg)?
        .into_iter()
        .map(|x| html::LimitView {
            name: x.limit.name.clone(),
            scope: x.limit.scope.describe(),
            amount: x.limit.amount,
            spent: x.spent,
            reserved: x.reserved,
            resets: x.resets.strftime("%Y-%m-%d %H:%M %:z").to_string(),
        })
        .collect();
    let scope = match (start, since, until) {
        (Some(s), _, _) => {
            format!("since commit {} (its repository's sessions)", crate::core::human::head_chars(&s.commit, 12))
        }
        (None, None, None) => "all history".to_string(),
        (None, s, u) => format!(
            "{} to {}",
            s.map_or("the start".to_string(), |d| d.to_string()),
            u.map_or("today".to_string(), |d| d.to_string())
        ),
    };
    let page = html::render(&html::Page {
        generated: tz.to_datetime(now).strftime("%Y-%m-%d %H:%M").to_string(),
        tz: tz.clone(),
        scope,
        daily: &daily,
        sessions: &sessions,
        by_branch: &by_branch,
        pool,
        limits,
    });
    std::fs::write(path, page)
        .map_err(|e| Exit::usage(format!("cannot write --html {}: {e}", crate::core::human::path_excerpt(path))))?;
    Ok(())
}

/// The rows of `ccb usage top`: sessions and branches from the report's dataset (branches as
/// ccb recorded them at launch), subagent types and tools from the transcripts.
#[allow(clippy::too_many_arguments)]
fn top_rows(
    by: crate::core::advice::TopBy,
    ds: &crate::core::report::Dataset,
    since: Option<Date>,
    until: Option<Date>,
    since_ms: i64,
    tz: &TimeZone,
    prices: &crate::core::pricing::PriceTable,
    premium: &dyn Fn(&str) -> bool,
    cheapest: &dyn Fn(&str) -> bool,
    advice: &crate::core::routing::Advice,
    limit: usize,
    w: &crate::core::advice::WhatIf,
) -> anyhow::Result<Vec<crate::core::advice::TopRow>> {
    use crate::core::advice::{top_sessions, TopBy};
    Ok(match by {
        TopBy::Session => top_sessions(ds, since, until, None, premium, cheapest, advice, limit),
        TopBy::Branch => {
            let branches = crate::scan::dataset::session_branches(since_ms);
            let of = |id: &str| branches.get(id).cloned();
            top_sessions(ds, since, until, Some(&of), premium, cheapest, advice, limit)
        }
        TopBy::Subagent | TopBy::Tool => {
            let mut rows = crate::scan::attrib::attribute(by, since_ms, tz, since, until, prices, w);
            crate::core::advice::rank(&mut rows, limit);
            rows
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn days() {
        let t = date(2026, 11, 23);
        for (s, d) in [
            ("today", t),
            ("yesterday", date(2026, 11, 22)),
            ("7d", date(2026, 11, 17)),
            ("1d", t),
            ("30d", date(2026, 10, 25)),
            ("2026-11-01", date(2026, 11, 1)),
            ("20261101", date(2026, 11, 1)),
        ] {
            assert_eq!(parse_day(s, t, "--since").unwrap(), d, "{s}");
        }
        for s in ["", "tomorrow", "0d", "-3d", "2026-13-01", "20261332", "11/23/2026", "7"] {
            let e = parse_day(s, t, "--since").unwrap_err();
            assert!(e.message.contains("is not a date"), "{s}: {}", e.message);
        }
        assert!(time_zone(Some("Mars/Olympus")).is_err());
        assert!(time_zone(Some("UTC")).is_ok());
    }
}
