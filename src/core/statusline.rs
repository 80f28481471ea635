//! `ccb statusline`: what Claude Code sends a status-line command on stdin, what ccb's ledger
//! knows of the session, and the one short line made of them. Also which status line a session
//! gets (`[statusline] mode` against the user's own).
//!
//! Claude Code runs the command every few hundred milliseconds while a session is on screen, so
//! nothing here may fail: every field of claude's JSON is optional, and a session ccb knows
//! nothing of still gets a line (claude's own figure).

use crate::core::money::Usd;
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// `[statusline] mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mode {
    /// ccb's line when the user has none; ccb's segment before theirs when they have one.
    #[default]
    Auto,
    /// ccb's segment before the user's line (ccb's line alone when they have none).
    Prefix,
    /// ccb's line, whatever the user has.
    Replace,
    /// Leave the status line alone.
    Off,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        Some(match s {
            "auto" => Mode::Auto,
            "prefix" => Mode::Prefix,
            "replace" => Mode::Replace,
            "off" => Mode::Off,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Auto => "auto",
            Mode::Prefix => "prefix",
            Mode::Replace => "replace",
            Mode::Off => "off",
        }
    }
}

/// The `statusLine` a session's settings get, given the mode, the user's own (the object from
/// the settings layer that wins, as claude would use it) and how to run ccb (`ccb_exe`, a path).
/// None: leave claude's settings as they are.
pub fn setting(mode: Mode, user: Option<&serde_json::Value>, ccb_exe: &str) -> Option<serde_json::Value> {
    let theirs = user
        .filter(|v| v.get("type").and_then(|t| t.as_str()).is_none_or(|t| t == "command"))
        .and_then(|v| v.get("command").and_then(|c| c.as_str()))
        .filter(|c| !c.trim().is_empty());
    let ours = format!("{} statusline", sh_quote(ccb_exe));
    let command = match (mode, theirs) {
        (Mode::Off, _) => return None,
        (Mode::Auto | Mode::Prefix, Some(cmd)) => format!("{ours} --theirs {}", sh_quote(cmd)),
        (Mode::Auto | Mode::Prefix | Mode::Replace, _) => ours,
    };
    // Their padding (and any other key of theirs) stays: only the command is ccb's.
    let mut v = match user {
        Some(serde_json::Value::Object(m)) if theirs.is_some() && mode != Mode::Replace => {
            serde_json::Value::Object(m.clone())
        }
        _ => serde_json::json!({"padding": 0}),
    };
    v["type"] = "command".into();
    v["command"] = command.into();
    // Claude runs it on its own events (a message, a mode change), which can come before ccb's
    // ledger has the response that caused them: re-run it every few seconds too, so the figure
    // is never older than that. A user's own interval stays.
    if v.get("refreshInterval").is_none() {
        v["refreshInterval"] = REFRESH_SECONDS.into();
    }
    Some(v)
}

/// How often claude re-runs ccb's status line besides its own events (`refreshInterval`, whole
/// seconds, at least 1; both tested releases take it).
pub const REFRESH_SECONDS: u64 = 2;

/// Single-quoted for a POSIX shell (claude runs the command with one).
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A rate-limit window as claude reports it (`rate_limits.five_hour`, `seven_day`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// Share used, in tenths of a percent.
    pub permille: u32,
    pub resets_at: Option<Timestamp>,
}

/// What claude sent on stdin, as far as ccb uses it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Claude {
    pub session_id: Option<String>,
    pub model_id: Option<String>,
    /// claude's release (`version`), for its price table.
    pub version: Option<String>,
    /// `cost.total_cost_usd`: claude's own figure for the session.
    pub cost: Option<Usd>,
    pub five_hour: Option<Window>,
}

/// Read claude's JSON; anything missing or malformed is simply absent.
pub fn parse(input: &[u8]) -> Claude {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(input) else { return Claude::default() };
    let text = |x: Option<&serde_json::Value>| {
        x.and_then(|s| s.as_str()).map(str::trim).filter(|s| !s.is_empty()).map(String::from)
    };
    let window = |w: Option<&serde_json::Value>| -> Option<Window> {
        let w = w?;
        let pct = w.get("used_percentage")?.as_f64().filter(|p| p.is_finite())?;
        let resets_at = match w.get("resets_at") {
            Some(serde_json::Value::Number(n)) => n.as_i64().and_then(|s| Timestamp::from_second(s).ok()),
            Some(serde_json::Value::String(s)) => s.parse::<Timestamp>().ok(),
            _ => None,
        };
        Some(Window { permille: (pct.clamp(0.0, 1000.0) * 10.0).round() as u32, resets_at })
    };
    Claude {
        session_id: text(v.get("session_id")),
        model_id: text(v.pointer("/model/id")),
        version: text(v.get("version")),
        cost: v.pointer("/cost/total_cost_usd").and_then(|c| c.as_f64()).filter(|c| *c >= 0.0).and_then(Usd::from_f64),
        five_hour: window(v.pointer("/rate_limits/five_hour")),
    }
}

/// The spend limit (or the credit pool) with the least left for this session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tightest {
    /// `daily`, `pool`, …
    pub name: String,
    pub amount: Usd,
    /// Spent plus held by calls in flight.
    pub used: Usd,
}

/// What ccb's ledger knows of the session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    pub spent: Usd,
    pub ceiling: Option<Usd>,
    /// The session's thresholds (`[alerts] session`, percent of the ceiling), ascending.
    pub alerts: Vec<u32>,
    /// A premium model that answered a session without a reason.
    pub premium_without_reason: Option<String>,
    pub tightest: Option<Tightest>,
}

impl Facts {
    /// The highest threshold the session's spend has reached (the policy fires each once, as the
    /// total reaches it: the same test).
    pub fn threshold_fired(&self) -> Option<u32> {
        let ceiling = self.ceiling?;
        let pm = self.spent.permille_of(ceiling);
        self.alerts.iter().rev().copied().find(|t| pm >= *t as u64 * 10)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tone {
    Plain,
    Ok,
    Warn,
    Bad,
    Dim,
}

struct Painter(bool);

impl Painter {
    fn paint(&self, tone: Tone, s: &str) -> String {
        let code = match tone {
            Tone::Plain => return s.to_string(),
            Tone::Ok => "32",
            Tone::Warn => "33",
            Tone::Bad => "1;31",
            Tone::Dim => "2",
        };
        if self.0 {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
}

/// Green below the first threshold, yellow from it, red from the last (or at 100%).
fn tone_of(permille: u64, alerts: &[u32]) -> Tone {
    let first = alerts.first().copied().unwrap_or(50) as u64 * 10;
    let last = alerts.last().copied().unwrap_or(80).max(alerts.first().copied().unwrap_or(80)) as u64 * 10;
    if permille >= 1000 || permille >= last {
        Tone::Bad
    } else if permille >= first {
        Tone::Warn
    } else {
        Tone::Ok
    }
}

/// The line: ccb's figures when the ledger knows the session, claude's own figure otherwise.
/// `colour`: ANSI colours (claude renders them); `tz`: for the 5-hour window's reset time.
pub fn render(claude: &Claude, facts: Option<&Facts>, colour: bool, tz: &TimeZone) -> String {
    let p = Painter(colour);
    let sep = p.paint(Tone::Dim, " · ");
    let mut parts: Vec<String> = Vec::new();
    match facts {
        Some(f) => {
            let spend = match f.ceiling {
                Some(c) => {
                    let tone = tone_of(f.spent.permille_of(c), &f.alerts);
                    p.paint(tone, &format!("{}/{}", f.spent, c))
                }
                None => p.paint(Tone::Plain, &f.spent.to_string()),
            };
            parts.push(format!("ccb {spend}"));
            if let Some(t) = &f.tightest {
                let left = Usd(t.amount.nanos().saturating_sub(t.used.nanos()).max(0));
                let tone = tone_of(t.used.permille_of(t.amount), &[50, 80]);
                parts.push(p.paint(tone, &format!("{} {left} left", t.name)));
            }
        }
        None => {
            let figure = claude.cost.unwrap_or_default();
            parts.push(format!("ccb {}", p.paint(Tone::Plain, &figure.to_string())));
        }
    }
    if let Some(w) = claude.five_hour {
        let tone = tone_of(w.permille as u64, &[50, 80]);
        let mut s = format!("5h {}%", (w.permille + 5) / 10);
        if let Some(at) = w.resets_at {
            s.push_str(&format!(" ↻{}", at.to_zoned(tz.clone()).strftime("%H:%M")));
        }
        parts.push(p.paint(tone, &s));
    }
    if let Some(f) = facts {
        // At the ceiling no further call leaves the gate (an interactive claude may stay open,
        // `on_ceiling = "block"`): that, rather than the last threshold.
        if f.ceiling.is_some_and(|c| f.spent >= c) {
            parts.push(p.paint(Tone::Bad, "⛔ ceiling reached"));
        } else if let Some(t) = f.threshold_fired() {
            parts.push(p.paint(Tone::Warn, &format!("⚠ {t}%")));
        }
        if let Some(m) = &f.premium_without_reason {
            let m = crate::core::human::printable(&crate::core::human::excerpt(m, 32));
            parts.push(p.paint(Tone::Bad, &format!("⚠ {m} without --reason")));
        }
    }
    parts.join(&sep)
}

/// ccb's segment in front of the user's own line (its first line only, as claude shows).
pub fn prefix(ours: &str, theirs: &str, colour: bool) -> String {
    let first = theirs.lines().next().unwrap_or("").trim_end();
    if first.is_empty() {
        return ours.to_string();
    }
    format!("{ours}{}{first}", Painter(colour).paint(Tone::Dim, " │ "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn usd(cents: i64) -> Usd {
        Usd(cents * 10_000_000)
    }

    #[test]
    fn reads_what_claude_sends_and_tolerates_the_rest() {
        let c = parse(
            json!({
                "session_id": "s-1", "version": "2.1.332",
                "model": {"id": "claude-opus-5-5", "display_name": "Opus 5.5"},
                "cost": {"total_cost_usd": 0.4213, "total_duration_ms": 1},
                "rate_limits": {"five_hour": {"used_percentage": 42.26, "resets_at": 1764590400},
                                "seven_day": {"used_percentage": 3}}
            })
            .to_string()
            .as_bytes(),
        );
        assert_eq!(c.session_id.as_deref(), Some("s-1"));
        assert_eq!(c.model_id.as_deref(), Some("claude-opus-5-5"));
        assert_eq!(c.version.as_deref(), Some("2.1.332"));
        assert_eq!(c.cost, Some(Usd(421_300_000)));
        assert_eq!(c.five_hour, Some(Window { permille: 423, resets_at: Timestamp::from_second(1764590400).ok() }));
        // An ISO time is read too; junk is absent, never an error.
        let c = parse(br#"{"rate_limits":{"five_hour":{"used_percentage":5,"resets_at":"2026-12-01T15:00:00Z"}}}"#);
        assert_eq!(c.five_hour.unwrap().resets_at, "2026-12-01T15:00:00Z".parse().ok());
        for junk in [&b""[..], b"not json", b"[1,2]", br#"{"session_id": 5, "cost": {"total_cost_usd": "x"}}"#] {
            assert_eq!(parse(junk), Claude::default(), "{}", String::from_utf8_lossy(junk));
        }
        assert_eq!(parse(br#"{"cost":{"total_cost_usd":-1}}"#).cost, None);
    }

    #[test]
    fn the_line_shows_spend_against_the_ceiling_limits_the_window_and_markers() {
        let tz = TimeZone::UTC;
        let claude = Claude {
            session_id: Some("s".into()),
            five_hour: Some(Window { permille: 423, resets_at: "2026-12-01T15:00:00Z".parse().ok() }),
            ..Claude::default()
        };
        let mut f = Facts { spent: usd(42), ceiling: Some(usd(500)), alerts: vec![50, 80], ..Facts::default() };
        assert_eq!(render(&claude, Some(&f), false, &tz), "ccb $0.42/$5.00 · 5h 42% ↻15:00");
        f.spent = usd(410);
        f.tightest = Some(Tightest { name: "daily".into(), amount: usd(1000), used: usd(900) });
        f.premium_without_reason = Some("claude-opus-4-8".into());
        assert_eq!(
            render(&Claude::default(), Some(&f), false, &tz),
            "ccb $4.10/$5.00 · daily $1.00 left · ⚠ 80% · ⚠ claude-opus-4-8 without --reason"
        );
        // Coloured: red past the last threshold, the limit red at 90%, separators dim.
        let coloured = render(&Claude::default(), Some(&f), true, &tz);
        assert!(
            coloured.starts_with("ccb \x1b[1;31m$4.10/$5.00\x1b[0m\x1b[2m · \x1b[0m\x1b[1;31mdaily $1.00 left"),
            "{coloured:?}"
        );
        f.spent = usd(260);
        f.tightest = None;
        f.premium_without_reason = None;
        assert_eq!(
            render(&Claude::default(), Some(&f), true, &tz),
            "ccb \x1b[33m$2.60/$5.00\x1b[0m\x1b[2m · \x1b[0m\x1b[33m⚠ 50%\x1b[0m"
        );
        f.spent = usd(10);
        assert_eq!(render(&Claude::default(), Some(&f), true, &tz), "ccb \x1b[32m$0.10/$5.00\x1b[0m");
        // At the ceiling, that is the notice.
        f.spent = usd(500);
        assert_eq!(render(&Claude::default(), Some(&f), false, &tz), "ccb $5.00/$5.00 · ⛔ ceiling reached");
        f.spent = usd(10);
        // A limit past its amount shows nothing left, not a negative amount.
        f.tightest = Some(Tightest { name: "pool".into(), amount: usd(100), used: usd(130) });
        assert_eq!(render(&Claude::default(), Some(&f), false, &tz), "ccb $0.10/$5.00 · pool $0.00 left");
    }

    #[test]
    fn without_the_ledger_the_line_is_claudes_figure() {
        let tz = TimeZone::UTC;
        let c = Claude { cost: Some(Usd(1_234_000_000)), ..Claude::default() };
        assert_eq!(render(&c, None, false, &tz), "ccb $1.23");
        assert_eq!(render(&Claude::default(), None, false, &tz), "ccb $0.00");
    }

    #[test]
    fn theirs_follows_ours_first_line_only() {
        assert_eq!(prefix("ccb $1.00", "main ✓\nsecond", false), "ccb $1.00 │ main ✓");
        assert_eq!(prefix("ccb $1.00", "", false), "ccb $1.00");
        assert_eq!(prefix("a", "b", true), "a\x1b[2m │ \x1b[0mb");
    }

    #[test]
    fn the_setting_follows_the_mode_and_the_users_own() {
        let exe = "/opt/it's/ccb";
        let ours = "'/opt/it'\\''s/ccb' statusline";
        let theirs = json!({"type": "command", "command": "echo 'hi'", "padding": 2});
        let cmd = |v: Option<serde_json::Value>| v.map(|v| v["command"].as_str().unwrap().to_string());
        for mode in [Mode::Auto, Mode::Prefix, Mode::Replace] {
            assert_eq!(cmd(setting(mode, None, exe)).as_deref(), Some(ours), "{mode:?}");
        }
        let both = format!("{ours} --theirs 'echo '\\''hi'\\'''");
        assert_eq!(cmd(setting(Mode::Auto, Some(&theirs), exe)), Some(both.clone()));
        assert_eq!(cmd(setting(Mode::Prefix, Some(&theirs), exe)), Some(both));
        assert_eq!(setting(Mode::Prefix, Some(&theirs), exe).unwrap()["padding"], 2, "their padding stays");
        assert_eq!(setting(Mode::Prefix, Some(&theirs), exe).unwrap()["refreshInterval"], REFRESH_SECONDS);
        let slow = json!({"command": "x", "refreshInterval": 30});
        assert_eq!(setting(Mode::Auto, Some(&slow), exe).unwrap()["refreshInterval"], 30, "theirs stays");
        assert_eq!(setting(Mode::Auto, None, exe).unwrap()["refreshInterval"], REFRESH_SECONDS);
        assert_eq!(cmd(setting(Mode::Replace, Some(&theirs), exe)).as_deref(), Some(ours));
        assert_eq!(setting(Mode::Off, Some(&theirs), exe), None);
        assert_eq!(setting(Mode::Off, None, exe), None);
        // A status line that is not a command, or an empty one, is none.
        assert_eq!(
            cmd(setting(Mode::Auto, Some(&json!({"type": "other", "command": "x"})), exe)).as_deref(),
            Some(ours)
        );
        assert_eq!(cmd(setting(Mode::Auto, Some(&json!({"command": " "})), exe)).as_deref(), Some(ours));
        for m in ["auto", "prefix", "replace", "off"] {
            assert_eq!(Mode::parse(m).unwrap().as_str(), m);
        }
        assert_eq!(Mode::parse("on"), None);
    }
}
