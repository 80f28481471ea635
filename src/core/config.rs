//! ccb's configuration: one TOML file, every key optional with a documented default, validated
//! whole before anything is spawned. The key names are a contract (users and scripts write them).
//!
//! Errors name the file, the line and what to fix, and end ccb with exit code 2.
//!
//! Just over 600 lines: one schema, its defaults and its messages, read in one pass so that
//! every error names its line; a sixth is tests.

use crate::core::exit::Exit;
use crate::core::money::Usd;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Where alerts go: a command, a webhook (its URL is a secret: never shown).
#[derive(Debug, Clone, Default)]
pub struct Sinks {
    pub command: Option<Vec<String>>,
    pub webhook: Option<String>,
}

impl Sinks {
    pub fn is_empty(&self) -> bool {
        self.command.is_none() && self.webhook.is_none()
    }
}

/// The commented default written by `ccb config init`.
pub const DEFAULT_FILE: &str = include_str!("config.default.toml");

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpusWithoutReason {
    Warn,
    Stop,
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it was read from (None: no file, all defaults).
    pub path: Option<PathBuf>,
    pub claude: Option<PathBuf>,
    pub default_model: String,
    pub ceilings: Ceilings,
    pub opus_reasons: Vec<String>,
    pub opus_without_reason: OpusWithoutReason,
    /// Percentages of the session ceiling at which a notice fires, ascending.
    pub session_alerts: Vec<u32>,
    /// Percentages of the credit pool at which `ccb pool check` alerts, ascending.
    pub pool_alerts: Vec<u32>,
    pub alert_sinks: Sinks,
    pub prices_file: Option<PathBuf>,
    /// Price as this Claude Code release (`[prices] release`), when claude's own cannot be told.
    pub prices_release: Option<String>,
    /// From which tier a model is premium and needs a reason: a family (`opus`, `fable`, …) or a
    /// model id (`[premium] at`).
    pub premium_at: String,
    /// The credit pool; None when the config has no `[pool]`.
    pub pool: Option<crate::core::pool::PoolConfig>,
    pub metering: Metering,
    /// Spend limits over many sessions (`[limits]`; the pool's is added where it applies).
    pub limits: crate::core::limits::Settings,
    /// `[team]`: who this machine's sessions are recorded as.
    pub team: Team,
    /// `[export]`: ccb's own OpenTelemetry export.
    pub export: crate::core::export::Settings,
    /// `[statusline] mode`: ccb's status line in interactive sessions.
    pub statusline: crate::core::statusline::Mode,
    /// `[routing]`: cheaper models where nothing names one, downgrades before the ceiling.
    pub routing: crate::core::routing::Routing,
    /// `[advice]`: the thresholds of reports' hints.
    pub advice: crate::core::routing::Advice,
    /// Where `default_model` came from: the config's key, or the `[[routing.rule]]` that
    /// replaced it for this session (set at launch, never read from the file).
    pub default_model_from: crate::core::plan::ModelSource,
}

/// `[team]`: the shared ledger's view of this machine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Team {
    /// The user name recorded with each session (`[team] user`); None: the login name.
    pub user: Option<String>,
    /// The shared ledger (`[ledger] url`, or `CCB_LEDGER_URL`); None: this machine's alone.
    pub url: Option<crate::core::team::LedgerUrl>,
    /// When the server does not answer a team limit's admission in time (`[team] offline`).
    pub offline: crate::core::team::Offline,
    /// Also share the responses read from transcripts of sessions not run through ccb.
    pub share_unmetered: bool,
}

/// Where usage is heard from, and what happens at the ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metering {
    /// Serve claude's API calls through ccb's gate, where the billing mode allows it.
    pub gate: bool,
    /// Receive claude's api_request telemetry events.
    pub telemetry: bool,
    pub reserve: crate::core::budget::Reserve,
    /// At the ceiling an interactive claude stays open showing the refusal (`block`), or the
    /// session is stopped (`stop`).
    pub block: bool,
}

impl Default for Metering {
    fn default() -> Self {
        Metering { gate: true, telemetry: true, reserve: crate::core::budget::Reserve::Expected, block: false }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ceilings {
    pub interactive: Usd,
    pub programmatic: Usd,
    pub opus: Usd,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            path: None,
            claude: None,
            default_model: "sonnet".into(),
            ceilings: Ceilings {
                interactive: Usd(20 * crate::core::money::NANOS_PER_USD),
                programmatic: Usd(5 * crate::core::money::NANOS_PER_USD),
                opus: Usd(20 * crate::core::money::NANOS_PER_USD),
            },
            opus_reasons: vec!["auth".into(), "infra".into(), "payments".into()],
            opus_without_reason: OpusWithoutReason::Warn,
            session_alerts: vec![50, 80],
            pool_alerts: vec![85],
            alert_sinks: Sinks::default(),
            prices_file: None,
            prices_release: None,
            premium_at: "opus".into(),
            pool: None,
            metering: Metering::default(),
            limits: crate::core::limits::Settings { alerts: vec![50, 80], ..Default::default() },
            team: Team::default(),
            export: Default::default(),
            statusline: crate::core::statusline::Mode::default(),
            routing: crate::core::routing::Routing::default(),
            advice: crate::core::routing::Advice::default(),
            default_model_from: crate::core::plan::ModelSource::CcbDefault,
        }
    }
}

// The file as written. Spanned values let a semantic error point at its line.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct File {
    claude: Option<Spanned<String>>,
    default_model: Option<Spanned<String>>,
    opus_without_reason: Option<Spanned<String>>,
    ceilings: FileCeilings,
    opus: FileOpus,
    alerts: FileAlerts,
    prices: FilePrices,
    premium: FilePremium,
    pool: Option<Spanned<FilePool>>,
    metering: FileMetering,
    limits: crate::core::limits::FileLimits,
    team: FileTeam,
    export: crate::core::export::FileExport,
    ledger: FileLedger,
    statusline: FileStatusline,
    routing: crate::core::routing::FileRouting,
    advice: crate::core::routing::FileAdvice,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct FileLedger {
    url: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct FileStatusline {
    mode: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct FileTeam {
    user: Option<Spanned<String>>,
    offline: Option<Spanned<String>>,
    share_unmetered: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct FileMetering {
    gate: Option<bool>,
    telemetry: Option<bool>,
    reserve: Option<Spanned<String>>,
    on_ceiling: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePool {
    plan: Option<Spanned<String>>,
    amount_usd: Option<Spanned<f64>>,
    billing_day: Option<Spanned<i64>>,
    overage: Option<Spanned<String>>,
    include_unmetered: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct FileCeilings {
    interactive: Option<Spanned<f64>>,
    programmatic: Option<Spanned<f64>>,
    opus: Option<Spanned<f64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct FileOpus {
    reasons: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct FileAlerts {
    session: Option<Spanned<Vec<i64>>>,
    pool: Option<Spanned<Vec<i64>>>,
    limits: Option<Spanned<Vec<i64>>>,
    command: Option<Spanned<Vec<String>>>,
    webhook: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct FilePrices {
    file: Option<Spanned<String>>,
    release: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct FilePremium {
    at: Option<Spanned<String>>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1
}

/// A value the user wrote, for a one-line message: control characters (a newline, an escape
/// sequence) escaped, so the message stays one line and cannot drive the terminal, and no
/// more than an excerpt of it (a value may be megabytes long).
fn shown(s: &str) -> String {
    crate::core::human::excerpt(s, crate::core::human::EXCERPT)
}

/// A path the user named, for a one-line message (see [`crate::core::human::path_excerpt`]).
fn shown_path(p: &Path) -> String {
    crate::core::human::path_excerpt(p)
}

/// serde names the Rust type it wanted (`expected f64`, `expected struct FileCeilings`); a user
/// wrote TOML, so say it in TOML's words.
fn plain_types(msg: &str) -> String {
    let Some(i) = msg.find("expected ") else { return msg.to_string() };
    let (head, want) = msg.split_at(i + "expected ".len());
    let plain = match want {
        "f64" | "f32" => "a number",
        "i64" | "u64" | "i32" | "u32" | "u8" | "u16" | "i8" | "i16" | "usize" => "a whole number",
        "a sequence" => "a list",
        "a boolean" => "true or false",
        w if w.starts_with("struct ") => "a table",
        w => w,
    };
    format!("{head}{plain}")
}

/// Parse and validate a config file's text.
pub fn parse(text: &str, path: &Path) -> Result<Config, Exit> {
    let at = |span: std::ops::Range<usize>, msg: String| {
        Exit::usage(format!("config {} line {}: {msg}", shown_path(path), line_of(text, span.start)))
    };
    let file: File = toml::from_str(text).map_err(|e| {
        // toml's message is several lines with a source excerpt; keep its first line.
        let msg = e.message().lines().next().unwrap_or("invalid TOML").to_string();
        let msg = msg.replace("unknown field", "unknown key").replace(", expected one of", "; the keys here are");
        let msg = plain_types(&msg);
        // toml quotes what it could not take (`string "…"`, an unknown key in backticks),
        // whole: an excerpt of each.
        let msg = crate::core::human::shorten_quoted(&msg, &['"', '`'], crate::core::human::EXCERPT);
        match e.span() {
            Some(s) => at(s, msg),
            None => Exit::usage(format!("config {}: {msg}", shown_path(path))),
        }
    })?;
    let mut c = Config { path: Some(path.to_path_buf()), ..Config::default() };

    if let Some(v) = file.claude {
        let span = v.span();
        let s = v.into_inner();
        if s.is_empty() {
            return Err(at(span, "claude must be a path to Claude Code, not empty".into()));
        }
        // `~/` is expanded where the file is read (`sys::files`): the core reads no environment.
        c.claude = Some(PathBuf::from(s));
    }
    if let Some(v) = file.default_model {
        let span = v.span();
        let s = v.into_inner();
        if s.trim().is_empty() || s.contains(char::is_whitespace) {
            return Err(at(span, format!("default_model '{}' must be a model name such as \"sonnet\"", shown(&s))));
        }
        c.default_model = s;
    }
    if let Some(v) = file.opus_without_reason {
        c.opus_without_reason = match v.get_ref().as_str() {
            "warn" => OpusWithoutReason::Warn,
            "stop" => OpusWithoutReason::Stop,
            other => {
                return Err(at(
                    v.span(),
                    format!("opus_without_reason '{}' must be \"warn\" or \"stop\"", shown(other)),
                ))
            }
        };
    }
    let ceiling = |v: Option<Spanned<f64>>, key: &str, default: Usd| -> Result<Usd, Exit> {
        let Some(v) = v else { return Ok(default) };
        let x = *v.get_ref();
        match Usd::from_f64(x) {
            Some(u) if u > Usd::ZERO && u <= crate::core::money::MAX_BUDGET => Ok(u),
            _ => {
                Err(at(v.span(), format!("[ceilings] {key} = {x} must be a dollar amount above 0 and at most 1000000")))
            }
        }
    };
    let d = c.ceilings;
    c.ceilings = Ceilings {
        interactive: ceiling(file.ceilings.interactive, "interactive", d.interactive)?,
        programmatic: ceiling(file.ceilings.programmatic, "programmatic", d.programmatic)?,
        opus: ceiling(file.ceilings.opus, "opus", d.opus)?,
    };
    if let Some(v) = file.opus.reasons {
        let span = v.span();
        let reasons = v.into_inner();
        for r in &reasons {
            if r.is_empty() || !r.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_') {
                return Err(at(
                    span,
                    format!("[opus] reasons: '{}' must be one word (letters, digits, '-' or '_')", shown(r)),
                ));
            }
        }
        c.opus_reasons = reasons;
    }
    let percents = |v: Spanned<Vec<i64>>, key: &str| -> Result<Vec<u32>, Exit> {
        let span = v.span();
        let mut pcts = Vec::new();
        for p in v.into_inner() {
            if !(1..=100).contains(&p) {
                return Err(at(span.clone(), format!("[alerts] {key}: {p} must be a percentage from 1 to 100")));
            }
            pcts.push(p as u32);
        }
        pcts.sort_unstable();
        pcts.dedup();
        Ok(pcts)
    };
    if let Some(v) = file.alerts.session {
        c.session_alerts = percents(v, "session")?;
    }
    if let Some(v) = file.alerts.pool {
        c.pool_alerts = percents(v, "pool")?;
    }
    if let Some(v) = file.team.user {
        let span = v.span();
        let u = v.into_inner();
        if u.trim().is_empty() || u.len() > 128 || u.chars().any(char::is_control) {
            return Err(at(
                span,
                format!("[team] user '{}' must be a name of 1 to 128 printable characters", shown(&u)),
            ));
        }
        c.team.user = Some(u);
    }
    if let Some(v) = file.team.offline {
        c.team.offline = match v.get_ref().as_str() {
            "local" => crate::core::team::Offline::Local,
            "refuse" => crate::core::team::Offline::Refuse,
            other => {
                return Err(at(v.span(), format!("[team] offline '{}' must be \"local\" or \"refuse\"", shown(other))))
            }
        };
    }
    c.team.share_unmetered = file.team.share_unmetered.unwrap_or(false);
    if let Some(v) = file.ledger.url {
        let span = v.span();
        let u = v.into_inner();
        if !u.is_empty() {
            // The message never repeats the URL: it may hold a password.
            c.team.url =
                Some(crate::core::team::parse_url(&u).map_err(|why| at(span, format!("[ledger] url: {why}")))?);
        }
    }
    c.export = crate::core::export::settings::parse(file.export, &|o, m| at(o..o, m))?;
    let routing_at = |o: usize, m: String| format!("config {} line {}: {m}", shown_path(path), line_of(text, o));
    c.routing = crate::core::routing::parse_routing(file.routing, &routing_at).map_err(Exit::usage)?;
    c.advice = crate::core::routing::parse_advice(file.advice, &routing_at).map_err(Exit::usage)?;
    let alerts = c.limits.alerts.clone();
    let admission_named = file.limits.names_admission();
    c.limits = crate::core::limits::parse_settings(file.limits, &|o, m| at(o..o, m), &|o| line_of(text, o))?;
    c.limits.alerts = match file.alerts.limits {
        Some(v) => percents(v, "limits")?,
        None => alerts,
    };
    if let Some(v) = file.alerts.command {
        let span = v.span();
        let argv = v.into_inner();
        if argv.is_empty() || argv[0].is_empty() {
            return Err(at(
                span,
                "[alerts] command must be a program and its arguments, e.g. [\"notify-send\", \"ccb\"]".into(),
            ));
        }
        c.alert_sinks.command = Some(argv);
    }
    if let Some(v) = file.alerts.webhook {
        let url = v.get_ref().trim();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            // The value may be a secret: the message does not repeat it.
            return Err(at(v.span(), "[alerts] webhook must be an http:// or https:// URL".into()));
        }
        c.alert_sinks.webhook = Some(url.to_string());
    }
    if let Some(v) = file.pool {
        let pool_span = v.span();
        let fp = v.into_inner();
        let plans = crate::core::pool::PLANS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ");
        let plan = match &fp.plan {
            Some(p) => {
                if crate::core::pool::plan_amount(p.get_ref()).is_none() {
                    return Err(at(
                        p.span(),
                        format!("[pool] plan '{}' is not a plan: use one of {plans}", shown(p.get_ref())),
                    ));
                }
                p.get_ref().clone()
            }
            None if fp.amount_usd.is_some() => "custom".to_string(),
            None => return Err(at(pool_span, format!("[pool] needs plan = one of {plans} (or amount_usd)"))),
        };
        let amount = match &fp.amount_usd {
            Some(a) => match Usd::from_f64(*a.get_ref()) {
                Some(u) if u > Usd::ZERO && u <= crate::core::money::MAX_BUDGET => u,
                _ => {
                    return Err(at(
                        a.span(),
                        format!("[pool] amount_usd = {} must be a dollar amount above 0", a.get_ref()),
                    ))
                }
            },
            None => crate::core::pool::plan_amount(&plan).unwrap_or_default(),
        };
        let billing_day = match &fp.billing_day {
            Some(d) if (1..=31).contains(d.get_ref()) => *d.get_ref() as u8,
            Some(d) => {
                return Err(at(
                    d.span(),
                    format!("[pool] billing_day = {} must be a day of the month, 1 to 31", d.get_ref()),
                ))
            }
            None => 1,
        };
        let overage = match fp.overage.as_ref().map(|o| (o.get_ref().as_str(), o.span())) {
            None | Some(("reject", _)) => crate::core::pool::Overage::Reject,
            Some(("allow", _)) => crate::core::pool::Overage::Allow,
            Some((other, span)) => {
                return Err(at(span, format!("[pool] overage '{}' must be \"reject\" or \"allow\"", shown(other))))
            }
        };
        c.pool = Some(crate::core::pool::PoolConfig {
            plan,
            amount,
            billing_day,
            overage,
            include_unmetered: fp.include_unmetered.unwrap_or(true),
        });
    }
    let m = file.metering;
    c.metering.gate = m.gate.unwrap_or(true);
    c.metering.telemetry = m.telemetry.unwrap_or(true);
    if let Some(r) = m.reserve {
        c.metering.reserve = match r.get_ref().as_str() {
            "none" => crate::core::budget::Reserve::None,
            "expected" => crate::core::budget::Reserve::Expected,
            "worst" => crate::core::budget::Reserve::Worst,
            other => {
                return Err(at(
                    r.span(),
                    format!("[metering] reserve '{}' must be \"none\", \"expected\" or \"worst\"", shown(other)),
                ))
            }
        };
        // `reserve` is the older name of the admission guarantee: "worst" (hold each call's
        // worst case) is strict admission, the others crossing; `[limits] admission`, when
        // written, wins.
        if !admission_named {
            c.limits.guarantee = if c.metering.reserve == crate::core::budget::Reserve::Worst {
                crate::core::limits::Guarantee::Strict
            } else {
                crate::core::limits::Guarantee::Crossing
            };
        }
    }
    if let Some(o) = m.on_ceiling {
        c.metering.block = match o.get_ref().as_str() {
            "stop" => false,
            "block" => true,
            other => {
                return Err(at(
                    o.span(),
                    format!("[metering] on_ceiling '{}' must be \"stop\" or \"block\"", shown(other)),
                ))
            }
        };
    }
    if let Some(v) = file.prices.file {
        c.prices_file = Some(PathBuf::from(v.get_ref()));
    }
    if let Some(v) = file.prices.release {
        if crate::core::pricing::parse_version(v.get_ref()).is_none() {
            return Err(at(
                v.span(),
                format!("[prices] release '{}' must be a Claude Code version such as \"2.1.332\"", shown(v.get_ref())),
            ));
        }
        c.prices_release = Some(v.get_ref().trim().to_string());
    }
    if let Some(v) = file.premium.at {
        let a = v.get_ref().trim().to_ascii_lowercase();
        if a.is_empty() || a.len() > 64 || !a.chars().all(|ch| ch.is_ascii_alphanumeric() || "-._".contains(ch)) {
            return Err(at(
                v.span(),
                format!("[premium] at '{}' must be a model family (opus, fable, …) or a model id", shown(v.get_ref())),
            ));
        }
        c.premium_at = a;
    }
    if let Some(v) = file.statusline.mode {
        c.statusline = crate::core::statusline::Mode::parse(v.get_ref().trim()).ok_or_else(|| {
            at(
                v.span(),
                format!(
                    "[statusline] mode '{}' must be \"auto\", \"prefix\", \"replace\" or \"off\"",
                    shown(v.get_ref())
                ),
            )
        })?;
    }
    Ok(c)
}

impl Config {
    /// The effective configuration as TOML, for `ccb config show`.
    pub fn to_toml(&self) -> String {
        let usd = |u: Usd| format!("{:.2}", u.as_f64());
        let list = |v: &[String]| v.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ");
        let mut out = String::new();
        match &self.path {
            Some(p) => out.push_str(&format!("# effective configuration, from {} and defaults\n", p.display())),
            None => out.push_str("# effective configuration: defaults (no config file)\n"),
        }
        match &self.claude {
            Some(p) => out.push_str(&format!("claude = {:?}\n", p.display().to_string())),
            None => out.push_str("# claude: found on PATH\n"),
        }
        out.push_str(&format!("default_model = {:?}\n", self.default_model));
        out.push_str(&format!(
            "opus_without_reason = {:?}\n",
            match self.opus_without_reason {
                OpusWithoutReason::Warn => "warn",
                OpusWithoutReason::Stop => "stop",
            }
        ));
        out.push_str(&format!(
            "\n[ceilings]\ninteractive = {}\nprogrammatic = {}\nopus = {}\n",
            usd(self.ceilings.interactive),
            usd(self.ceilings.programmatic),
            usd(self.ceilings.opus)
        ));
        out.push_str(&format!("\n[opus]\nreasons = [{}]\n", list(&self.opus_reasons)));
        let pcts = |v: &[u32]| v.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ");
        out.push_str(&format!(
            "\n[alerts]\nsession = [{}]\npool = [{}]\nlimits = [{}]\n",
            pcts(&self.session_alerts),
            pcts(&self.pool_alerts),
            pcts(&self.limits.alerts)
        ));
        if let Some(cmd) = &self.alert_sinks.command {
            out.push_str(&format!("command = [{}]\n", list(cmd)));
        }
        if self.alert_sinks.webhook.is_some() {
            out.push_str("# webhook: set (not shown)\n");
        }
        out.push_str(&format!(
            "\n[metering]\ngate = {}\ntelemetry = {}\nreserve = {:?}\non_ceiling = {:?}\n",
            self.metering.gate,
            self.metering.telemetry,
            match self.metering.reserve {
                crate::core::budget::Reserve::None => "none",
                crate::core::budget::Reserve::Expected => "expected",
                crate::core::budget::Reserve::Worst => "worst",
            },
            if self.metering.block { "block" } else { "stop" }
        ));
        match &self.pool {
            Some(p) => out.push_str(&format!(
                "\n[pool]\nplan = {:?}\namount_usd = {}\nbilling_day = {}\noverage = {:?}\ninclude_unmetered = {}\n",
                p.plan,
                usd(p.amount),
                p.billing_day,
                match p.overage {
                    crate::core::pool::Overage::Reject => "reject",
                    crate::core::pool::Overage::Allow => "allow",
                },
                p.include_unmetered
            )),
            None => out.push_str("\n# [pool]: not configured (ccb pool needs it)\n"),
        }
        if self.prices_file.is_some() || self.prices_release.is_some() {
            out.push_str("\n[prices]\n");
        }
        if let Some(p) = &self.prices_file {
            out.push_str(&format!("file = {:?}\n", p.display().to_string()));
        }
        if let Some(r) = &self.prices_release {
            out.push_str(&format!("release = {r:?}\n"));
        }
        out.push_str(&format!("\n[premium]\nat = {:?}\n", self.premium_at));
        out.push_str(&self.limits.to_toml());
        match &self.team.url {
            // The password, when the URL has one, is shown as `…`: never its value.
            Some(u) => out.push_str(&format!("\n[ledger]\nurl = {:?}\n", u.to_string())),
            None => out.push_str("\n# [ledger] url: not set (this machine's ledger only)\n"),
        }
        out.push_str("\n[team]\n");
        match &self.team.user {
            Some(u) => out.push_str(&format!("user = {u:?}\n")),
            None => out.push_str("# user: the login name\n"),
        }
        out.push_str(&format!(
            "offline = {:?}\nshare_unmetered = {}\n",
            self.team.offline.as_str(),
            self.team.share_unmetered
        ));
        out.push_str(&self.export.to_toml());
        out.push_str(&format!("\n[statusline]\nmode = {:?}\n", self.statusline.as_str()));
        out.push_str(&crate::core::routing::to_toml(&self.routing, &self.advice));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Config, String> {
        parse(text, Path::new("/c.toml")).map_err(|e| e.message)
    }

    #[test]
    fn the_team_ledger_url_is_checked_and_never_shown_with_its_password() {
        let c =
            p("[ledger]\nurl = \"postgresql://ada:hunter2@db/ccb?sslmode=require\"\n[team]\noffline = \"refuse\"\n")
                .unwrap();
        assert_eq!(c.team.url.as_ref().unwrap().password(), Some("hunter2"));
        assert_eq!(c.team.offline, crate::core::team::Offline::Refuse);
        let shown = c.to_toml();
        assert!(shown.contains("url = \"postgresql://ada:…@db/ccb?sslmode=require\""), "{shown}");
        assert!(!shown.contains("hunter2"));
        let e = p("\n[ledger]\nurl = \"postgresql://ada:hunter2@db/ccb?sslmode=allow\"\n").unwrap_err();
        assert!(e.starts_with("config /c.toml line 3: [ledger] url: sslmode 'allow' is not supported"), "{e}");
        assert!(!e.contains("hunter2"));
        let e = p("[team]\noffline = \"wait\"\n").unwrap_err();
        assert!(e.contains("must be \"local\" or \"refuse\""), "{e}");
    }

    #[test]
    fn defaults_and_the_commented_default_file_agree() {
        let c = p(DEFAULT_FILE).unwrap();
        let d = Config::default();
        assert_eq!(c.default_model, d.default_model);
        assert_eq!(c.ceilings, d.ceilings);
        assert_eq!(c.opus_reasons, d.opus_reasons);
        assert_eq!(c.session_alerts, d.session_alerts);
        assert_eq!(c.export, d.export);
        assert_eq!((c.routing, c.advice), (d.routing, d.advice));
    }

    #[test]
    fn reserve_is_the_older_name_of_the_admission_guarantee() {
        use crate::core::limits::Guarantee::{Crossing, Strict};
        for (text, want) in [
            ("", Crossing),
            ("[metering]\nreserve = \"worst\"\n", Strict),
            ("[metering]\nreserve = \"expected\"\n", Crossing),
            ("[metering]\nreserve = \"none\"\n", Crossing),
            // `[limits] admission`, written, wins.
            ("[metering]\nreserve = \"worst\"\n[limits]\nadmission = \"crossing\"\n", Crossing),
            ("[metering]\nreserve = \"none\"\n[limits]\nadmission = \"strict\"\n", Strict),
        ] {
            assert_eq!(p(text).unwrap().limits.guarantee, want, "{text:?}");
        }
    }

    #[test]
    fn reads_every_key() {
        let c = p("claude = \"/opt/claude\"\ndefault_model = \"haiku\"\nopus_without_reason = \"stop\"\n[ceilings]\ninteractive = 7.5\nprogrammatic = 1\nopus = 30.0\n[opus]\nreasons = [\"perf\"]\n[alerts]\nsession = [90, 25]\n").unwrap();
        assert_eq!(c.claude.as_deref(), Some(Path::new("/opt/claude")));
        assert_eq!(c.default_model, "haiku");
        assert_eq!(c.opus_without_reason, OpusWithoutReason::Stop);
        assert_eq!(c.ceilings.interactive, Usd(7_500_000_000));
        assert_eq!(c.ceilings.programmatic, Usd(1_000_000_000));
        assert_eq!(c.opus_reasons, vec!["perf"]);
        assert_eq!(c.session_alerts, vec![25, 90]);
    }

    #[test]
    fn errors_name_the_line_and_the_fix() {
        let cases = [
            (
                "default_model = \"sonnet\"\n[ceilings]\ninteractive = -1\n",
                "line 3: [ceilings] interactive = -1 must be",
            ),
            ("[ceilings]\nprogramatic = 5\n", "line 2: unknown key `programatic`"),
            ("[ceilings]\ninteractive = \"five\"\n", "line 2: invalid type"),
            ("default_model = \n", "line 1:"),
            ("opus_without_reason = \"kill\"\n", "line 1: opus_without_reason 'kill' must be"),
            ("[opus]\nreasons = [\"two words\"]\n", "line 2: [opus] reasons: 'two words' must be one word"),
            ("[alerts]\nsession = [0, 50]\n", "line 2: [alerts] session: 0 must be a percentage"),
            ("[ceilings]\nopus = nan\n", "line 2: [ceilings] opus = NaN must be"),
            ("\n\n[ceilings]\ninteractive = inf\n", "line 4:"),
            ("[pool]\nplan = \"ultra\"\n", "line 2: [pool] plan 'ultra' is not a plan: use one of pro, max-5x"),
            ("[pool]\nplan = \"pro\"\nbilling_day = 32\n", "line 3: [pool] billing_day = 32 must be"),
            ("[pool]\nplan = \"pro\"\noverage = \"maybe\"\n", "line 3: [pool] overage 'maybe'"),
            ("[pool]\nplan = \"pro\"\namount_usd = 0\n", "line 3: [pool] amount_usd = 0 must be"),
            ("[pool]\nbilling_day = 3\n", "[pool] needs plan"),
            ("[alerts]\nwebhook = \"ftp://secret\"\n", "line 2: [alerts] webhook must be an http"),
            ("[alerts]\ncommand = []\n", "line 2: [alerts] command must be"),
            ("[metering]\nreserve = \"some\"\n", "line 2: [metering] reserve 'some' must be"),
            ("[metering]\non_ceiling = \"pause\"\n", "line 2: [metering] on_ceiling 'pause' must be"),
            ("[metering]\ngate = \"yes\"\n", "line 2: invalid type: string \"yes\", expected true or false"),
            ("[ceilings]\ninteractive = \"ten\"\n", "line 2: invalid type: string \"ten\", expected a number"),
            ("ceilings = 5\n", "line 1: invalid type: integer `5`, expected a table"),
            ("[alerts]\nsession = 50\n", "line 2: invalid type: integer `50`, expected a list"),
            (
                "[pool]\nplan = \"pro\"\nbilling_day = 15.5\n",
                "line 3: invalid type: floating point `15.5`, expected a whole number",
            ),
        ];
        for (text, want) in cases {
            let e = p(text).unwrap_err();
            assert!(e.starts_with("config /c.toml "), "{e}");
            assert!(e.contains(want), "{text:?}: got {e:?}, want {want:?}");
            assert!(!e.contains('\n'), "one line: {e:?}");
        }
    }

    #[test]
    fn pool_and_alerts() {
        let c = p("[pool]\nplan = \"max-5x\"\nbilling_day = 15\noverage = \"allow\"\n[alerts]\npool = [90, 85]\ncommand = [\"notify-send\", \"ccb\"]\nwebhook = \"https://hooks.example/SECRET\"\n").unwrap();
        let pool = c.pool.clone().unwrap();
        assert_eq!(pool.amount, Usd(100 * crate::core::money::NANOS_PER_USD));
        assert_eq!(pool.billing_day, 15);
        assert_eq!(pool.overage, crate::core::pool::Overage::Allow);
        assert_eq!(c.pool_alerts, vec![85, 90]);
        assert!(!c.to_toml().contains("SECRET"), "config show never prints the webhook");
        let again = p(&c.to_toml()).unwrap();
        assert_eq!(again.pool, c.pool);
        let custom = p("[pool]\namount_usd = 42.5\n").unwrap().pool.unwrap();
        assert_eq!((custom.plan.as_str(), custom.amount, custom.billing_day), ("custom", Usd(42_500_000_000), 1));
        let e = p("[alerts]\nwebhook = \"ftp://hooks/SECRET\"\n").unwrap_err();
        assert!(!e.contains("SECRET"), "{e}");
    }

    #[test]
    fn show_round_trips() {
        let c = p("default_model = \"haiku\"\n[ceilings]\ninteractive = 7.5\n[routing]\nsubagent_model = \"haiku\"\ndowngrade_at = 80\n[advice]\nmin_responses = 9\n").unwrap();
        let again = p(&c.to_toml()).unwrap();
        assert_eq!(again.default_model, "haiku");
        let e = p(
            "[export]\notlp_endpoint = \"http://h:4318\"\notlp_headers = { a = \"SECRET\" }\nattributes = [\"user\"]\n",
        )
        .unwrap();
        assert!(!e.to_toml().contains("SECRET"));
        let shown = p(&e.to_toml()).unwrap().export;
        assert_eq!((shown.endpoint, shown.allow), (e.export.endpoint.clone(), e.export.allow));
        assert!(shown.headers.is_empty(), "shown without their values, headers are not read back");
        assert_eq!(again.ceilings, c.ceilings);
        assert_eq!((again.routing, again.advice), (c.routing, c.advice));
    }

    #[test]
    fn statusline_mode_is_read_and_shown() {
        use crate::core::statusline::Mode;
        assert_eq!(p("").unwrap().statusline, Mode::Auto);
        let c = p("[statusline]\nmode = \"prefix\"\n").unwrap();
        assert_eq!(c.statusline, Mode::Prefix);
        assert_eq!(p(&c.to_toml()).unwrap().statusline, Mode::Prefix);
        assert_eq!(
            p("[statusline]\nmode = \"on\"\n").unwrap_err(),
            "config /c.toml line 2: [statusline] mode 'on' must be \"auto\", \"prefix\", \"replace\" or \"off\""
        );
    }
}
