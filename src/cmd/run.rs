//! `ccb [options] [claude args…]`: plan, then run claude under supervision, then account.

use crate::core::args::{self, ClaudeFlags, Invocation};
use crate::core::config::{Config, OpusWithoutReason};
use crate::core::exit::{self, Exit};
use crate::session::follow::Spec;
use crate::ledger::{now_ms, Ledger, SessionEnd, SessionStart, Store, UsageRow};
use crate::ledger::writer::{Msg, Writer};
use crate::core::money::Usd;
use crate::core::plan::{self, Plan, Terminal};
use crate::session::supervisor::{self, ChildEnd, StopCause};
use crate::core::transcript::UsageEvent;
use crate::core::human;
use crate::session::settings;
use crate::sys::{alert, locate, paths, tty};
use serde_json::json;
use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

/// Everything decided before launch.
pub struct Prepared {
    pub inv: Invocation,
    pub config: Config,
    pub plan: Plan,
    pub claude: PathBuf,
    pub args: Vec<OsString>,
    pub session_id: Option<String>,
    pub env: plan::Env,
    pub claude_dir: Option<PathBuf>,
    pub cwd: PathBuf,
    /// Where usage is heard from: `gate`, `telemetry`, `transcript`.
    pub sources: Vec<&'static str>,
    /// The prices in force (those of the claude release being run).
    pub prices: Arc<crate::core::pricing::PriceTable>,
    /// That release, when it can be told from where claude is installed.
    pub claude_version: Option<String>,
    /// The session `--resume ID` continues (not a fork).
    pub resumed: Option<String>,
    /// This invocation: one run of the session (`CCB_RUN_ID`).
    pub run_id: String,
    /// The first-party path: the switch, or why the gate stays out.
    pub first_party: crate::session::first_party::FirstParty,
    /// Claude takes and gives stream-json (the Agent SDK's way).
    pub stream_json: bool,
}

/// The sources of usage for a plan: the gate where the billing mode lets ccb stand in the
/// request path (cloud providers sign requests for their own hosts) and, on the first-party
/// path, unless this claude ignores the switch that keeps its requests first-party; telemetry
/// unless the user exports their own; and always the transcripts.
pub fn sources(
    plan: &Plan,
    config: &Config,
    env: &plan::Env,
    first_party: &crate::session::first_party::FirstParty,
) -> Vec<&'static str> {
    let mut v = Vec::new();
    if plan.passthrough {
        return v;
    }
    use plan::BillingMode::*;
    if config.metering.gate
        && matches!(plan.billing_mode, Oauth | ApiKey | AuthToken | CustomEndpoint)
        && first_party.gate_allowed()
    {
        v.push("gate");
    }
    if config.metering.telemetry && !crate::session::telemetry::user_exports(env) {
        v.push("telemetry");
    }
    v.push("transcript");
    v
}

/// Claude's arguments and ccb's settings for it: `env` entries that point claude at the gate and
/// the telemetry receiver. Claude takes one `--settings` (a file or a JSON string), and it beats
/// an `env` block in the user's settings files, so a user's own `--settings` is merged (ccb's
/// entries win) and otherwise one is added in front.
///
/// The merged settings go to claude in a file, never on its command line, which every local user
/// can read (`ps`, `/proc/PID/cmdline`): they hold the endpoints' tokens, and the user's file may
/// hold a key. [`Merged::args`] gives the arguments with that file's path.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    args: Vec<OsString>,
    /// Where the path goes: the index in `args`, and whether it is the `--settings=` form.
    slot: usize,
    joined: bool,
    /// What to write to the file.
    pub settings: serde_json::Value,
    /// The user's own `--settings`, as given (a path, or `inline JSON`), for the plan.
    pub from_user: Option<String>,
}

impl Merged {
    /// Claude's arguments, with `--settings PATH`.
    pub fn args(&self, path: &std::ffi::OsStr) -> Vec<OsString> {
        let mut out = self.args.clone();
        out[self.slot] = if self.joined {
            let mut a = OsString::from("--settings=");
            a.push(path);
            a
        } else {
            path.to_owned()
        };
        out
    }
}

/// Merge ccb's `env` entries into the user's `--settings` (read from its file when it names
/// one), or into new settings. None when ccb has nothing to add: the arguments stay as they are.
pub fn merge_settings(
    args: &[OsString],
    cwd: &std::path::Path,
    env_block: serde_json::Map<String, serde_json::Value>,
) -> Result<Option<Merged>, String> {
    if env_block.is_empty() {
        return Ok(None);
    }
    let mut at: Option<(usize, bool, String)> = None;
    for (i, a) in args.iter().enumerate() {
        let Some(a) = a.to_str() else { continue };
        if a == "--" {
            break;
        }
        if a == "--settings" {
            if let Some(v) = args.get(i + 1).and_then(|v| v.to_str()) {
                at = Some((i + 1, false, v.to_string()));
            }
            break;
        }
        if let Some(v) = a.strip_prefix("--settings=") {
            at = Some((i, true, v.to_string()));
            break;
        }
    }
    let merge = |mut base: serde_json::Value| -> serde_json::Value {
        if !base.is_object() {
            base = serde_json::json!({});
        }
        let env = base.as_object_mut().expect("object").entry("env").or_insert_with(|| serde_json::json!({}));
        if !env.is_object() {
            *env = serde_json::json!({});
        }
        for (k, v) in &env_block {
            env.as_object_mut().expect("object").insert(k.clone(), v.clone());
        }
        base
    };
    Ok(Some(match at {
        None => {
            let mut args = args.to_vec();
            args.splice(0..0, [OsString::from("--settings"), OsString::new()]);
            Merged { args, slot: 1, joined: false, settings: merge(serde_json::json!({})), from_user: None }
        }
        Some((slot, joined, value)) => {
            let (user, from_user) = if value.trim_start().starts_with('{') {
                let v = serde_json::from_str(&value).map_err(|e| format!("--settings is not valid JSON ({e})"))?;
                (v, "inline JSON".to_string())
            } else {
                let path = cwd.join(&value);
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    format!("cannot read --settings {}: {}", human::path_excerpt(&path), paths::io_reason(&e))
                })?;
                let v = serde_json::from_str(&text)
                    .map_err(|e| format!("--settings {} is not valid JSON ({e})", human::path_excerpt(&path)))?;
                (v, value)
            };
            Merged { args: args.to_vec(), slot, joined, settings: merge(user), from_user: Some(from_user) }
        }
    }))
}

/// The merged settings, written where only the user can read them; the file goes when the
/// session does (see [`paths::PrivateFile`]). Claude is told the file's path as an argument,
/// which it reads as UTF-8: a directory whose path is not UTF-8 (`XDG_DATA_HOME` in Latin-1)
/// would name a file claude cannot find, so such a place is passed over, and the user told why.
fn write_settings(settings: &serde_json::Value) -> std::io::Result<paths::PrivateFile> {
    let (dirs, passed_over) = paths::private_run_dirs_utf8();
    let f = paths::PrivateFile::create(&dirs, SETTINGS_PREFIX, "json", settings.to_string().as_bytes())?;
    if let Some(d) = passed_over.first() {
        crate::note!(
            "ccb: note: {} is not UTF-8, which claude cannot read in a path: its settings file is in {} instead (set XDG_RUNTIME_DIR to a UTF-8 directory to choose where)",
            human::path_excerpt(d),
            human::path_excerpt(f.path().parent().unwrap_or(f.path()))
        );
    }
    Ok(f)
}

const SETTINGS_PREFIX: &str = "settings";

/// How `--dry-run` shows the settings file's path: nothing is written, and its contents are
/// not shown (they may hold a key).
const DRY_RUN_SETTINGS: &str = "<private file>";

/// ccb's `env` entries for claude, given the gate's URL, whether it stands for Anthropic's own
/// API (the first-party switch), and the telemetry endpoint.
fn env_block(
    gate_url: Option<&str>,
    first_party: bool,
    telemetry_endpoint: Option<&str>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    if let Some(u) = gate_url {
        m.insert("ANTHROPIC_BASE_URL".into(), serde_json::Value::String(u.into()));
        if first_party {
            m.insert(crate::session::first_party::SWITCH.into(), serde_json::Value::String("1".into()));
        }
    }
    if let Some(t) = telemetry_endpoint {
        m.extend(crate::session::telemetry::settings_env(t));
    }
    m
}

pub fn prepare(argv: &[OsString]) -> Result<Prepared, Exit> {
    let mut inv = args::split(argv).map_err(Exit::usage)?;
    args::apply_env(&mut inv, |k| std::env::var(k).ok()).map_err(Exit::usage)?;
    let config = crate::sys::files::load_config()?;
    locate::guard_recursion()?;
    let flags = ClaudeFlags::parse(&inv.claude_args);
    let cwd = std::env::current_dir()
        .map_err(|e| Exit::launch(format!("cannot read the current directory: {}", paths::io_reason(&e))))?;
    let own = std::env::current_exe().ok();
    let claude = locate::find(std::env::var("CCB_CLAUDE").ok().as_deref(), config.claude.as_deref(), own.as_deref())?;
    // The prices follow the claude being run; read alongside the rest of the set-up (a
    // millisecond), since the plan needs them to tell a premium model.
    let prices = {
        let (config, claude) = (config.clone(), claude.clone());
        std::thread::spawn(move || {
            let version = locate::claude_version(&claude);
            crate::cmd::prices::load_table_for(&config, version.as_deref()).map(|t| (t, version))
        })
    };
    let process_env: Vec<(String, String)> =
        std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect();
    let claude_dir_var = process_env.iter().find(|(k, _)| k == "CLAUDE_CONFIG_DIR").map(|(_, v)| v.clone());
    let claude_dir = paths::claude_config_dir(claude_dir_var.as_deref());
    let settings =
        settings::load(claude_dir.as_deref(), &cwd, flags.settings.as_deref(), flags.setting_sources.as_deref());
    let env = plan::env_view(process_env, &settings);
    let term = Terminal { stdin_tty: tty::is_tty(libc::STDIN_FILENO), stdout_tty: tty::is_tty(libc::STDOUT_FILENO) };
    let (prices, claude_version) = match prices.join() {
        Ok(r) => r.map_err(|e| match e.downcast::<Exit>() {
            Ok(x) => x,
            Err(e) => Exit::usage(format!("{e:#}")),
        })?,
        Err(_) => return Err(Exit::launch("the price table could not be read")),
    };
    let plan = match plan::decide(&flags, &env, &settings, term, inv.budget, inv.reason.as_deref(), &config, &prices) {
        Ok(p) => p,
        Err(e) => {
            if e.code == exit::POLICY {
                // A premium model without a reason: nothing is spent, but the refusal is a fact
                // of the ledger (who tried what, from where).
                let mode = plan::billing_mode(&env, &settings);
                let programmatic = flags.print || flags.stream_json_input() || !term.stdout_tty;
                let id = flags.session_id.clone().or(flags.resume_id.clone());
                let start = SessionStart {
                    id: id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
                    started_ms: now_ms(),
                    cwd: cwd.display().to_string(),
                    class: if programmatic { "programmatic" } else { "interactive" }.into(),
                    print_mode: flags.print,
                    model: plan::model(&flags, &env, &settings).map(|m| m.0),
                    reason: inv.reason.clone(),
                    billing_mode: mode.to_string(),
                    meter: plan::meter(mode, programmatic).to_string(),
                    ceiling: None,
                    overage: false,
                };
                let existing = id.is_some()
                    && Ledger::open_default().is_ok_and(|l| l.session_spend(&start.id).is_ok_and(|s| s.is_some()));
                record_refusal(&start, &uuid::Uuid::new_v4().to_string(), existing);
            }
            return Err(e);
        }
    };
    if !plan.passthrough {
        unreadable_env(std::env::vars_os())?;
    }
    // Claude's arguments, unchanged and in order, after what ccb adds in front.
    let mut a: Vec<OsString> = Vec::new();
    let mut session_id = flags.session_id.clone();
    let mut resumed = None;
    if !plan.passthrough {
        if session_id.is_none() {
            if !flags.resume || flags.fork_session {
                // A new session, or a fork of one (a session of its own, with its own ceiling):
                // its id is fixed here, so everything it spends is recorded under it.
                let id = uuid::Uuid::new_v4().to_string();
                a.push("--session-id".into());
                a.push(id.clone().into());
                session_id = Some(id);
            } else if let Some(id) = &flags.resume_id {
                // `--resume ID`: the session goes on, with what it spent so far.
                session_id = Some(id.clone());
                resumed = Some(id.clone());
            }
            // `--continue` or the resume picker: the id is learned from claude's first call.
        }
        if let Some(m) = &plan.inject_model {
            a.push("--model".into());
            a.push(m.into());
        }
    }
    a.extend(inv.claude_args.iter().cloned());
    let first_party = crate::session::first_party::FirstParty::decide(
        !plan.passthrough && config.metering.gate && crate::session::first_party::on_path(plan.billing_mode, &env),
        &claude,
        crate::session::first_party::cache_file(),
        std::env::var_os(crate::session::first_party::TEST_WITHHOLD).is_some_and(|v| v == "1"),
    );
    let sources = sources(&plan, &config, &env, &first_party);
    Ok(Prepared {
        sources,
        inv,
        config,
        plan,
        claude,
        args: a,
        session_id,
        env,
        claude_dir,
        cwd,
        prices: Arc::new(prices),
        claude_version,
        resumed,
        run_id: uuid::Uuid::new_v4().to_string(),
        first_party,
        stream_json: flags.stream_json_input() && flags.output_format.as_deref() == Some("stream-json"),
    })
}

/// Variables that decide where claude's calls go, who pays for them and which model answers.
fn decides_the_plan(name: &str) -> bool {
    name.starts_with("ANTHROPIC_")
        || name.starts_with("CLAUDE_CODE_USE_")
        || matches!(name, "CLAUDE_CODE_OAUTH_TOKEN" | "CLAUDE_CONFIG_DIR")
}

/// A variable the plan reads whose value is not UTF-8 cannot be read as ccb reads the rest (it
/// would be taken as unset: a base URL in Latin-1 silently became Anthropic's own, with the
/// gate forwarding there): refused, naming it, and never showing its value (it may be a key).
fn unreadable_env(vars: impl IntoIterator<Item = (OsString, OsString)>) -> Result<(), Exit> {
    for (k, v) in vars {
        let Some(name) = k.to_str() else { continue };
        if decides_the_plan(name) && v.to_str().is_none() {
            let hint = if name == "ANTHROPIC_BASE_URL" {
                "set it to a URL such as https://api.anthropic.com, or unset it"
            } else {
                "set it in UTF-8, or unset it"
            };
            return Err(Exit::usage(format!(
                "{name} is not valid UTF-8, so ccb cannot tell where claude's calls go or what they cost: {hint}"
            )));
        }
    }
    Ok(())
}

fn credentials(env: &plan::Env) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    for k in plan::SECRET_VARS {
        if let Some(v) = env.get(*k).filter(|v| !v.is_empty()) {
            m.insert(k.to_string(), json!(plan::redact(v)));
        }
    }
    m
}

/// A bad `--settings` is the usage error a session would meet.
fn settings_error(e: String) -> Exit {
    Exit::usage(format!("{e}: fix it, or leave --settings out"))
}

fn dry_run(p: &Prepared) -> Result<i32, Exit> {
    let plan = &p.plan;
    let gate = p.sources.contains(&"gate").then_some("http://127.0.0.1:<gate-port>/<token>");
    let tel = p.sources.contains(&"telemetry").then_some("http://127.0.0.1:<telemetry-port>/v1/logs/<token>");
    let switch = p.first_party.switch(gate.is_some());
    // The user's --settings is never shown as given either: inline, it may hold a key.
    let merged = merge_settings(&p.args, &p.cwd, env_block(gate, switch, tel)).map_err(settings_error)?;
    let upstream = gate.map(|_| crate::session::gate::Upstream::new(p.env.get("ANTHROPIC_BASE_URL").map(String::as_str)).base);
    let gate_off = p.first_party.gate_off_reason();
    let shown = match &merged {
        Some(m) => m.args(DRY_RUN_SETTINGS.as_ref()),
        None => p.args.clone(),
    };
    // What the settings file holds: the names of its `env` entries, never their values.
    let settings_env: Vec<String> = match &merged {
        Some(m) => m.settings["env"].as_object().map(|e| e.keys().cloned().collect()).unwrap_or_default(),
        None => Vec::new(),
    };
    let from_user = merged.as_ref().and_then(|m| m.from_user.clone());
    let args: Vec<String> = shown.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let (limits, guarantee) = limits_plan(p);
    if p.inv.json {
        let v = json!({
            "class": plan.class,
            "print_mode": plan.print_mode,
            "model": plan.model,
            "model_source": plan.model_source,
            "reason": plan.reason,
            "billing_mode": plan.billing_mode,
            "meter": plan.meter,
            "ceiling_usd": plan.ceiling.map(|c| c.as_f64()),
            "ceiling_from": ceiling_from(p),
            "reason_from": p.inv.reason_from,
            "claude": p.claude.display().to_string(),
            "args": args,
            "pty": plan.pty,
            "passthrough": plan.passthrough,
            "session_id": p.session_id,
            "sources": p.sources,
            "upstream": upstream,
            "first_party": p.first_party.path.then(|| json!({
                "gate": gate.is_some(),
                "switch": switch.then_some(crate::session::first_party::SWITCH),
                "gate_off_reason": gate_off,
                "switch_ignored_since": p.first_party.ignored.as_ref().map(|v| v.seen.clone()),
            })),
            "credentials": credentials(&p.env),
            "settings": merged.as_ref().map(|_| json!({
                "file": "private (owner-only, written at launch, removed when the session ends)",
                "merged_from": from_user,
                "env": settings_env,
            })),
            "config": p.config.path.as_ref().map(|c| c.display().to_string()),
            "prices": {
                "claude_version": p.claude_version,
                "release": p.prices.release,
                "release_from": if p.config.prices_release.is_some() { "config" } else if p.claude_version.is_some() { "claude" } else { "newest" },
                "premium_at": p.config.premium_at,
                "premium": plan.premium,
            },
            "pending_reason": plan.pending_reason,
            "limits": limits.iter().map(|l| json!({
                "name": l.name,
                "scope": l.scope.describe(),
                "period": l.period.as_str(),
                "limit": l.amount.as_f64(),
            })).collect::<Vec<_>>(),
            "guarantee": guarantee.0,
            "guarantee_text": guarantee.1,
            "limits_on_ledger_error": match p.config.limits.on_ledger_error {
                crate::core::limits::OnLedgerError::Own => "warn",
                crate::core::limits::OnLedgerError::Refuse => "refuse",
            },
        });
        crate::out!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(0);
    }
    let model = match (&plan.model, plan.model_source) {
        (Some(m), Some(plan::ModelSource::CcbDefault)) => {
            format!("{m} (ccb's default_model, passed as --model {m})")
        }
        (Some(m), Some(src)) => format!(
            "{m} (from {})",
            serde_json::to_value(src).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
        ),
        _ => "-".into(),
    };
    let creds = credentials(&p.env);
    let billing = if creds.is_empty() {
        plan.billing_mode.to_string()
    } else {
        let c: Vec<String> = creds.iter().map(|(k, v)| format!("{k} {}", v.as_str().unwrap_or("set"))).collect();
        format!("{} ({})", plan.billing_mode, c.join(", "))
    };
    crate::out!("ccb plan (dry run: nothing launched)");
    let row = |k: &str, v: String| crate::out!("  {k:<9} {v}");
    row("class", format!("{}{}", plan.class, if plan.print_mode { " (print mode)" } else { "" }));
    row("model", model);
    row(
        "reason",
        match (&plan.reason, &plan.pending_reason) {
            (Some(r), _) => format!("{r} (from {})", p.inv.reason_from.unwrap_or("--reason")),
            (None, Some(r)) => format!(
                "- ('{}' kept: recorded only if a premium model answers)",
                crate::core::human::excerpt(r, crate::core::human::EXCERPT)
            ),
            _ => "-".into(),
        },
    );
    row("prices", prices_line(p));
    row("billing", billing);
    row("meter", plan.meter.to_string());
    row(
        "ceiling",
        match plan.ceiling {
            Some(c) => format!("{c} (from {})", ceiling_from(p)),
            None => "none (passed through, not metered)".into(),
        },
    );
    if !plan.passthrough {
        let names = crate::session::limits::describe(&p.config, &limits);
        row("limits", if names.is_empty() { "none".into() } else { names.join("; ") });
        row("guarantee", guarantee.1.clone());
    }
    row("terminal", if plan.pty { "pty".into() } else { "pipes".into() });
    row("claude", p.claude.display().to_string());
    row("sources", if p.sources.is_empty() { "-".into() } else { p.sources.join(", ") });
    if let Some(u) = &upstream {
        let fp = if switch { format!(" (first party: {}=1)", crate::session::first_party::SWITCH) } else { String::new() };
        row("gate", format!("forwards to {u}{fp}"));
    } else if let Some(why) = &gate_off {
        row("gate", format!("off: {why}"));
    }
    if !p.sources.contains(&"telemetry") && !plan.passthrough && crate::session::telemetry::user_exports(&p.env) {
        row("", "telemetry: you export your own; ccb leaves your settings alone".into());
    }
    if merged.is_some() {
        let from = from_user
            .as_deref()
            .map(|f| format!("your --settings ({}) and ", crate::core::human::excerpt(f, crate::core::human::EXCERPT)))
            .unwrap_or_default();
        let what: Vec<&str> = [gate.map(|_| "the gate"), tel.map(|_| "telemetry")].into_iter().flatten().collect();
        row(
            "settings",
            format!(
                "{DRY_RUN_SETTINGS}: {from}ccb's env entries for {}; owner-only, removed when the session ends",
                what.join(" and ")
            ),
        );
    }
    row("args", args::display(&shown));
    Ok(0)
}

/// A session refused before launch, as one run that ended `refused`. A session recorded before
/// (a resume refused at its ceiling) keeps its own row as it was: only the refused run is added.
fn record_refusal(start: &SessionStart, run_id: &str, existing: bool) {
    if let Ok(l) = Ledger::open_default() {
        if !existing {
            let _ = l.begin(start);
            let _ = l.end(&SessionEnd {
                id: start.id.clone(),
                ended_ms: now_ms(),
                end: "refused".into(),
                exit_code: Some(exit::POLICY),
                thresholds: vec![],
            });
        }
        let _ = l.begin_run(&crate::ledger::RunStart {
            id: run_id.to_string(),
            session_id: start.id.clone(),
            started_ms: start.started_ms,
            pid: std::process::id(),
            resumed: existing,
        });
        let _ = l.end_run(&crate::ledger::RunEnd {
            id: run_id.to_string(),
            ended_ms: now_ms(),
            end: "refused".into(),
            exit_code: Some(exit::POLICY),
        });
    }
}

/// Records the session as it goes, and sends its alerts.
struct Recorder {
    /// Where a claude that ignores the first-party switch is remembered.
    first_party: crate::session::first_party::FirstParty,
    ledger: Writer,
    start: SessionStart,
    /// Session ids begun in the ledger (a `/clear` or a resumed session adds one).
    ids: Vec<String>,
    alerts: alert::Dispatcher,
    /// Factors learned this session for models no table knows, saved at the end.
    learned: Vec<(String, i64)>,
    /// This run, recorded under the first session it hears of.
    run_id: String,
    resumed: bool,
    /// The session's meter: a session learned after launch takes the ceiling it had.
    meter: Arc<crate::session::meter::Meter>,
}

impl Recorder {
    fn begin(&mut self, id: &str) {
        if self.ids.iter().any(|i| i == id) {
            return;
        }
        self.ids.push(id.to_string());
        let ceiling = self.meter.ceiling().or(self.start.ceiling);
        self.ledger.send(Msg::Begin(SessionStart { id: id.to_string(), ceiling, ..self.start.clone() }));
        if self.ids.len() == 1 {
            self.ledger.send(Msg::BeginRun(crate::ledger::RunStart {
                id: self.run_id.clone(),
                session_id: id.to_string(),
                started_ms: self.start.started_ms,
                pid: std::process::id(),
                resumed: self.resumed,
            }));
        }
    }
}

impl supervisor::Observer for Recorder {
    fn usage(&mut self, e: &UsageEvent, cost: Usd, _total: Usd, source: &str, priced: crate::core::budget::Priced) {
        let sid =
            e.session_id.clone().unwrap_or_else(|| self.ids.first().cloned().unwrap_or_else(|| self.start.id.clone()));
        self.begin(&sid);
        let row = UsageRow {
            key: e.key.clone(),
            session_id: sid,
            ts_ms: e.timestamp.as_deref().and_then(crate::scan::parse_ts_ms).unwrap_or_else(now_ms),
            model: e.model.clone(),
            agent_id: e.agent_id.clone(),
            usage: e.usage,
            cost,
            source: source.into(),
            priced_by: priced.by.as_str().into(),
            estimated: priced.estimated,
            run_id: Some(self.run_id.clone()),
        };
        self.ledger.send(Msg::Record(row));
    }
    fn repriced(&mut self, key: &str, cost: Usd, priced: crate::core::budget::Priced) {
        self.ledger.send(Msg::Amend {
            key: key.to_string(),
            cost,
            priced_by: priced.by.as_str(),
            estimated: priced.estimated,
        });
    }
    fn learned(&mut self, model: &str, milli: i64) {
        self.learned.push((model.to_string(), milli));
    }
    fn reason_used(&mut self, reason: &str) {
        self.start.reason = Some(reason.to_string());
        for id in &self.ids {
            self.ledger.send(Msg::Reason { id: id.clone(), reason: reason.to_string() });
        }
    }
    fn threshold(&mut self, pct: u32, spent: Usd, ceiling: Usd) {
        self.alerts.send(alert::Alert {
            kind: "session",
            threshold: pct,
            spent,
            limit: ceiling,
            session_id: self.ids.first().cloned(),
            text: format!("ccb: {pct}% of the {ceiling} session ceiling spent ({spent}) in {}", self.start.cwd),
        });
    }
    fn session_file(&mut self, id: &str) {
        self.begin(id);
    }
    fn first_party_ignored(&mut self) -> Option<String> {
        Some(self.first_party.record_ignored())
    }
}

/// Before a credit-pool session: refuse when the pool is spent and overage is rejected.
fn check_pool(p: &Prepared) -> Result<bool, Exit> {
    let Some(pc) = p.config.pool.clone() else { return Ok(false) };
    if p.plan.meter != plan::Meter::CreditPool {
        return Ok(false);
    }
    let s = match crate::cmd::pool::current(&p.config, &pc) {
        Ok(s) => s,
        Err(e) => {
            crate::note!("ccb: cannot check the credit pool ({e:#}); launching anyway");
            return Ok(false);
        }
    };
    if !s.exhausted {
        return Ok(false);
    }
    match pc.overage {
        crate::core::pool::Overage::Reject => Err(Exit::policy(format!(
            "the credit pool is spent ({} of {} this cycle) and overage is \"reject\": it resets on {}; use an API key, or set [pool] overage = \"allow\"",
            s.spent, s.amount, s.end
        ))),
        crate::core::pool::Overage::Allow => {
            crate::note!("ccb: the credit pool is spent ({} of {}): this session bills at API rates until {}", s.spent, s.amount, s.end);
            Ok(true)
        }
    }
}

/// `ccb --version` (and `-v`, `-V`): the real claude's version line, as claude prints it, then
/// ccb's on a line of its own. Tools that run ccb as their claude (the Agent SDK) parse the first.
pub fn version() -> anyhow::Result<i32> {
    let config = crate::sys::files::load_config()?;
    let own = std::env::current_exe().ok();
    let claude = locate::find(std::env::var("CCB_CLAUDE").ok().as_deref(), config.claude.as_deref(), own.as_deref());
    let ccb_line = format!("ccb {}", env!("CARGO_PKG_VERSION"));
    let claude = match claude {
        Ok(c) => c,
        Err(e) => {
            crate::out!("{ccb_line}");
            return Err(e.into());
        }
    };
    let out = std::process::Command::new(&claude)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| Exit::launch(locate::why_not_started(&claude, &e)))?;
    {
        use std::io::Write as _;
        let mut so = std::io::stdout().lock();
        let _ = so.write_all(&out.stdout);
        if !out.stdout.is_empty() && !out.stdout.ends_with(b"\n") {
            let _ = so.write_all(b"\n");
        }
        let _ = writeln!(so, "{ccb_line}");
    }
    Ok(out.status.code().unwrap_or(exit::LAUNCH))
}

/// A refusal before launch, told to an Agent SDK in its own protocol. The SDKs start claude
/// with `--input-format stream-json` and first send an `initialize` control request, then wait
/// for its answer: a refusal that only went to stderr (which the TypeScript SDK swallows) and an
/// exit before that write (a broken pipe for the SDK) would reach the user as noise. So the
/// request is read (at most 10 s), answered with an error carrying ccb's one line, and an error
/// result follows, as claude gives one for a refused resume. Not a stream-json session: nothing.
fn refuse_in_protocol(argv: &[OsString], message: &str) {
    let Ok(inv) = args::split(argv) else { return };
    let flags = ClaudeFlags::parse(&inv.claude_args);
    if !flags.stream_json_input() {
        return;
    }
    let text = format!("ccb: {message}");
    let request_id = read_initialize(std::time::Duration::from_secs(10));
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if let Some(id) = request_id {
        let answer =
            json!({"type": "control_response", "response": {"subtype": "error", "request_id": id, "error": text}});
        let _ = writeln!(out, "{answer}");
    }
    let result = json!({
        "type": "result", "subtype": "error_during_execution", "is_error": true, "result": text,
        "errors": [text], "duration_ms": 0, "duration_api_ms": 0, "num_turns": 0, "total_cost_usd": 0.0,
        "session_id": flags.session_id.or(flags.resume_id).unwrap_or_default(),
    });
    let _ = writeln!(out, "{result}");
    let _ = out.flush();
}

/// Read stdin until the SDK's `initialize` control request (its id), end of input, or `wait`.
fn read_initialize(wait: std::time::Duration) -> Option<String> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::BorrowedFd;
    let deadline = std::time::Instant::now() + wait;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&line) {
                if v["type"] == "control_request" && v["request"]["subtype"] == "initialize" {
                    return v["request_id"].as_str().map(str::to_string);
                }
            }
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || buf.len() > 16 << 20 {
            return None;
        }
        // SAFETY: fd 0 stays open for the life of the process.
        let stdin = unsafe { BorrowedFd::borrow_raw(libc::STDIN_FILENO) };
        let mut fds = [PollFd::new(stdin, PollFlags::POLLIN)];
        let ms = PollTimeout::try_from(left.as_millis().min(10_000) as i32).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, ms) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return None,
        }
        match nix::unistd::read(libc::STDIN_FILENO, &mut chunk) {
            Ok(0) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return None,
        }
    }
}

pub fn run(argv: &[OsString]) -> anyhow::Result<i32> {
    let p = match prepare(argv) {
        Ok(p) => p,
        Err(e) => {
            refuse_in_protocol(argv, &e.message);
            return Err(e.into());
        }
    };
    if p.inv.dry_run {
        return Ok(dry_run(&p)?);
    }
    if p.plan.passthrough {
        // Nothing to meter: become claude, with no process in between.
        use std::os::unix::process::CommandExt;
        let e = std::process::Command::new(&p.claude).args(&p.args).exec();
        return Err(Exit::launch(format!("cannot start {}: {}", p.claude.display(), paths::io_reason(&e))).into());
    }
    if let Some(r) = &p.plan.pending_reason {
        crate::note!(
            "ccb: note: --reason '{}' is not needed for '{}' (not a premium model); it is recorded only if a premium model answers",
            crate::core::human::excerpt(r, crate::core::human::EXCERPT),
            crate::core::human::excerpt(p.plan.model.as_deref().unwrap_or("-"), crate::core::human::EXCERPT)
        );
    }
    let start = SessionStart {
        // Until claude names it (`--continue`), the session goes by this run's id: never "".
        id: p.session_id.clone().unwrap_or_else(|| p.run_id.clone()),
        started_ms: now_ms(),
        cwd: p.cwd.display().to_string(),
        class: p.plan.class.to_string(),
        print_mode: p.plan.print_mode,
        model: p.plan.model.clone(),
        reason: p.plan.reason.clone(),
        billing_mode: p.plan.billing_mode.to_string(),
        meter: p.plan.meter.to_string(),
        ceiling: p.plan.ceiling,
        overage: false,
    };
    let overage = match check_pool(&p) {
        Ok(o) => o,
        Err(e) => {
            record_refusal(&start, &p.run_id, p.resumed.is_some());
            refuse_in_protocol(argv, &e.message);
            return Err(e.into());
        }
    };
    // A resumed session keeps its ceiling and what it spent: at its ceiling it is refused
    // before anything is spent, unless --budget (or CCB_BUDGET) gives it a new total.
    let (resumed_spend, ceiling) = match resumed_ceiling(&p) {
        Ok(r) => r,
        Err(e) => {
            record_refusal(&start, &p.run_id, true);
            refuse_in_protocol(argv, &e.message);
            return Err(e.into());
        }
    };
    let start = SessionStart { ceiling, ..start };
    // Spend limits across sessions: a limit already reached refuses the session here.
    let limits = match crate::session::limits::Live::prepare(&p.config, p.prices.clone(), &start, run_start(&p, &start)) {
        Ok(l) => l,
        Err(e) => {
            record_refusal(&start, &p.run_id, p.resumed.is_some());
            refuse_in_protocol(argv, &e.message);
            return Err(e.into());
        }
    };
    // Bind before claude starts: the ports go into its settings.
    let mut gate = None;
    if p.sources.contains(&"gate") {
        match crate::session::gate::Gate::bind() {
            Ok(g) => {
                let up = crate::session::gate::Upstream::new(p.env.get("ANTHROPIC_BASE_URL").map(String::as_str));
                gate = Some((g, up.first_party(p.first_party.path)))
            }
            Err(e) => crate::note!("ccb: the gate could not start ({e}); metering from telemetry and transcripts"),
        }
    }
    let mut telemetry = None;
    if p.sources.contains(&"telemetry") {
        match crate::session::telemetry::Receiver::bind() {
            Ok(r) => telemetry = Some(r),
            Err(e) => crate::note!("ccb: the telemetry receiver could not start ({e})"),
        }
    }
    let gate_url = gate.as_ref().map(|(g, _)| g.url());
    let tel_endpoint = telemetry.as_ref().map(|r| r.endpoint());
    let switch = p.first_party.switch(gate_url.is_some());
    // Before the warden and the ledger: a bad --settings ends here with nothing to undo.
    let merged = merge_settings(&p.args, &p.cwd, env_block(gate_url.as_deref(), switch, tel_endpoint.as_deref()))
        .map_err(settings_error)?;
    // Dropped, and the file removed, once claude is gone, or on any way out of this function.
    let settings_file = match &merged {
        Some(m) => Some(write_settings(&m.settings).map_err(|e| {
            Exit::launch(format!("cannot write claude's settings to a private file: {}", paths::io_reason(&e)))
        })?),
        None => None,
    };
    let claude_args = match (&merged, &settings_file) {
        (Some(m), Some(f)) => m.args(f.path().as_os_str()),
        _ => p.args.clone(),
    };
    // The session's marker, inherited by every process of the session: how the warden finds
    // them if ccb is killed. Started on its own thread: claude need not wait for it.
    // This run's id, not the session's: two runs of one resumed session never end each other's
    // tools.
    let marker = p.run_id.clone();
    let prices = p.prices.clone();
    crate::session::warden::expect();
    // What goes wrong with the warden later (it died and could not be replaced) is a notice of
    // the session's, shown the way every notice is (never over claude's screen).
    let (warden_tx, warden_problems) = std::sync::mpsc::channel::<String>();
    let warden = {
        let marker = marker.clone();
        let files: Vec<std::path::PathBuf> = settings_file.iter().map(|f| f.path().to_path_buf()).collect();
        let problem = move |p: String| {
            let _ = warden_tx.send(p);
        };
        std::thread::spawn(move || match crate::session::warden::Warden::start(&marker, &files, problem) {
            Ok(w) => Some(w),
            Err(e) => {
                crate::note!(
                    "ccb: the warden could not start ({e}); should ccb be killed, claude's tools may outlive it"
                );
                None
            }
        })
    };
    let meter = Arc::new(crate::session::meter::Meter::new(ceiling, &p.config.session_alerts, p.config.metering.reserve));
    if let Some(s) = &resumed_spend {
        meter.resume(s.spent, None);
    }
    if let Some(l) = &limits {
        meter.set_limits(l.clone());
    }
    if let Some(id) = &p.session_id {
        meter.learn_session(id);
    } else {
        // `--continue`, the picker: the session is looked up when claude names it, before the
        // call that names it is admitted.
        let budget = p.inv.budget;
        meter.on_session(Box::new(move |id: &str| {
            let s = Ledger::open_default().ok()?.session_spend(id).ok()??;
            Some((s.spent, if budget.is_some() { None } else { s.ceiling }))
        }));
    }
    let notices = supervisor::Notifier::default();
    let mut rec = Recorder {
        first_party: p.first_party.clone(),
        ledger: Writer::start(crate::ledger::default_path(), notices.clone()),
        start: SessionStart { overage, ..start },
        ids: Vec::new(),
        alerts: alert::Dispatcher::new(p.config.alert_sinks.clone()),
        learned: Vec::new(),
        run_id: p.run_id.clone(),
        resumed: p.resumed.is_some() || p.session_id.is_none(),
        meter: meter.clone(),
    };
    if let Some(id) = &p.session_id {
        rec.begin(id);
    }
    let project_dir = p.claude_dir.as_ref().map(|d| d.join("projects").join(paths::project_slug(&p.cwd)));
    let follow = project_dir.map(|project_dir| Spec {
        project_dir,
        session_id: p.session_id.clone(),
        guess: !p.sources.contains(&"gate") && !p.sources.contains(&"telemetry"),
        interactive: !p.plan.programmatic,
    });
    let stderr_tty = std::io::stderr().is_terminal();
    let mut child_env = vec![
        (locate::PARENT_VAR.to_string(), std::process::id().to_string()),
        ("CCB_SESSION_ID".to_string(), p.session_id.clone().unwrap_or_else(|| p.run_id.clone())),
        (crate::session::warden::RUN_VAR.to_string(), marker),
    ];
    if let Some(u) = &gate_url {
        child_env.push(("ANTHROPIC_BASE_URL".to_string(), u.clone()));
    }
    if switch {
        child_env.push((crate::session::first_party::SWITCH.to_string(), "1".to_string()));
    }
    let label = p.plan.model.clone().unwrap_or_default();
    let opts = supervisor::Options {
        program: p.claude.clone(),
        args: claude_args,
        env: child_env,
        pty: p.plan.pty,
        print_mode: p.plan.print_mode,
        follow,
        ceiling,
        meter: meter.clone(),
        gate,
        telemetry,
        block_at_ceiling: p.config.metering.block,
        prices,
        claude_knows: claude_knows(&p),
        premium_guard: (!p.plan.premium).then(|| supervisor::PremiumGuard {
            stop: p.config.opus_without_reason == OpusWithoutReason::Stop,
            floor: p.prices.premium_floor(&p.config.premium_at),
            reason: p.plan.pending_reason.clone(),
        }),
        progress: p.plan.print_mode && stderr_tty,
        stream_json: !p.plan.pty && p.stream_json,
        label,
        problems: Some(warden_problems),
        notices,
    };
    // The warden is not waited for: claude starts while it does (a session killed in the
    // millisecond before it is ready has nothing running yet but claude, which its death
    // signal ends).
    let out = supervisor::run(opts, &mut rec);
    drop(settings_file);
    // Every process of the session has ended: nothing for the warden to do.
    if let Ok(Some(w)) = warden.join() {
        w.dismiss();
    }
    let out = out?;
    let code = match &out.stopped {
        Some(s) => match s.cause {
            StopCause::Ceiling => exit::CEILING,
            StopCause::OpusWithoutReason => exit::POLICY,
            StopCause::Signal(sig) => 128 + sig,
        },
        // The gate refused a call at the ceiling and claude ended (or, with on_ceiling =
        // "block", the user ended it).
        None if out.ceiling_reached => exit::CEILING,
        None => out.status.exit_code(),
    };
    // A spend limit ended the session (the gate refused a call, or a response reached it).
    let limit = limits.as_ref().and_then(|l| l.reached()).filter(|_| {
        out.ceiling_reached || out.stopped.as_ref().is_some_and(|s| s.cause == StopCause::Ceiling)
    });
    if let Some(s) = &out.stopped {
        let ceiling = meter.ceiling().unwrap_or_default();
        let what = if s.processes > 1 {
            format!("claude and {} more processes", s.processes - 1)
        } else {
            "claude".to_string()
        };
        match s.cause {
            StopCause::Ceiling if limit.is_some() => crate::note!(
                "ccb: session stopped at a spend limit: {}; {} spent this session; {what} stopped in {} ms",
                limit.as_deref().unwrap_or_default().trim_start_matches("ccb: "),
                s.spent,
                s.took.as_millis()
            ),
            StopCause::Ceiling => crate::note!(
                "ccb: session stopped at its {ceiling} ceiling: {} spent; {what} stopped in {} ms. {}",
                s.spent,
                s.took.as_millis(),
                raise_hint(&p)
            ),
            StopCause::OpusWithoutReason => {
                crate::note!("ccb: session stopped: a premium model answered without a reason; {} spent", s.spent)
            }
            StopCause::Signal(_) => {}
        }
    }
    let end = match (&out.stopped, out.status) {
        (_, _) if limit.is_some() => "limit",
        (Some(s), _) => match s.cause {
            StopCause::Ceiling => "ceiling",
            StopCause::OpusWithoutReason => "policy",
            StopCause::Signal(_) => "signal",
        },
        (None, ChildEnd::Code(_)) => "exited",
        (None, ChildEnd::Signal(_)) => "signaled",
    };
    // A run whose session was named but never spent (a `--continue` refused at its ceiling).
    if rec.ids.is_empty() {
        if let Some(id) = meter.session() {
            rec.begin(&id);
        }
    }
    rec.ledger.send(Msg::EndRun(crate::ledger::RunEnd {
        id: p.run_id.clone(),
        ended_ms: now_ms(),
        end: end.into(),
        exit_code: Some(code),
    }));
    for id in &rec.ids {
        let e = SessionEnd {
            id: id.clone(),
            ended_ms: now_ms(),
            end: end.into(),
            exit_code: Some(code),
            thresholds: out.fired.clone(),
        };
        rec.ledger.send(Msg::End(e));
    }
    if !rec.learned.is_empty() {
        if let Err(e) = crate::cmd::prices::save_learned(&rec.learned) {
            crate::note!("ccb: cannot keep the rates learned this session ({})", paths::io_reason(&e));
        }
    }
    let written = rec.ledger.finish();
    let repair = || match rec.ids.first() {
        Some(id) => format!("`ccb ledger repair --session {id}`"),
        None => "`ccb ledger repair`".to_string(),
    };
    if let Some(problem) = &written.problem {
        crate::note!(
            "ccb: cannot record this session in the ledger ({problem}); it ran metered and bounded all the same. Not written: {}; {} adds the responses from claude's transcripts once the ledger can be written",
            written.unwritten.describe(),
            repair()
        );
    }
    if written.missing > 0 {
        crate::note!(
            "ccb: {} response{} of this session ({}) {} not in the ledger: more waited than ccb keeps in memory ({}); {} adds them from claude's transcripts",
            written.missing,
            if written.missing == 1 { "" } else { "s" },
            written.missing_cost,
            if written.missing == 1 { "is" } else { "are" },
            crate::ledger::writer::thousands(crate::ledger::writer::KEEP_RESPONSES as u64),
            repair()
        );
    }
    for problem in std::mem::replace(&mut rec.alerts, alert::Dispatcher::new(Default::default()))
        .finish(std::time::Duration::from_secs(3))
    {
        crate::note!("ccb: {problem}");
    }
    if let Some(l) = &limits {
        for problem in l.finish() {
            crate::note!("ccb: {problem}");
        }
    }
    if let (None, Some(m)) = (&out.stopped, &limit) {
        crate::note!(
            "ccb: model calls past a spend limit were refused: {}; {} spent this session",
            m.trim_start_matches("ccb: "),
            out.tally.total
        );
    } else if out.stopped.is_none() && out.ceiling_reached {
        crate::note!(
            "ccb: session ceiling of {} reached: {} spent; model calls past it were refused. Resume the session with --budget <USD>, a larger total, to go on",
            meter.ceiling().unwrap_or_default(),
            out.tally.total
        );
    }
    if stderr_tty {
        crate::note!("{}", summary(&p, &out, meter.ceiling()));
    }
    Ok(code)
}

/// The limits a plan is under, and its guarantee (a word and a sentence): strict covers calls
/// through the gate, so a session without it is held to crossing, checked on each response.
fn limits_plan(p: &Prepared) -> (Vec<crate::core::limits::Limit>, (&'static str, String)) {
    if p.plan.passthrough {
        return (Vec::new(), ("none", "none (passed through, not metered)".into()));
    }
    let limits = crate::session::limits::applicable(&p.config, &p.cwd, p.plan.class.as_str(), p.plan.meter.as_str());
    let g = p.config.limits.guarantee;
    let ledger = match p.config.limits.on_ledger_error {
        crate::core::limits::OnLedgerError::Own => "if the ledger cannot be shared, this session's own spend counts, with a warning",
        crate::core::limits::OnLedgerError::Refuse => "if the ledger cannot be shared, the session is refused",
    };
    let text = if p.sources.contains(&"gate") || g == crate::core::limits::Guarantee::Crossing {
        format!("{}; {ledger}", g.describe())
    } else {
        format!(
            "crossing (strict needs the gate, off in this session): each response is checked as it is counted; {ledger}"
        )
    };
    let word = if p.sources.contains(&"gate") { g.as_str() } else { "crossing" };
    (limits, (word, text))
}

/// This run, as the ledger records it.
fn run_start(p: &Prepared, start: &SessionStart) -> crate::ledger::RunStart {
    crate::ledger::RunStart {
        id: p.run_id.clone(),
        session_id: start.id.clone(),
        started_ms: start.started_ms,
        pid: std::process::id(),
        resumed: p.resumed.is_some() || p.session_id.is_none(),
    }
}

/// For `--resume ID`: what the session spent in its earlier runs, and the ceiling this run
/// enforces (a `--budget` is the session's new total; else the ceiling it was recorded with).
fn resumed_ceiling(p: &Prepared) -> Result<(Option<crate::ledger::SessionSpend>, Option<Usd>), Exit> {
    let Some(id) = &p.resumed else { return Ok((None, p.plan.ceiling)) };
    let spend = match Ledger::open_default().and_then(|l| l.session_spend(id)) {
        Ok(s) => s,
        Err(e) => {
            crate::note!("ccb: cannot read what session {id} spent before ({e:#}); its ceiling counts this run only");
            None
        }
    };
    let Some(s) = spend else { return Ok((None, p.plan.ceiling)) };
    let ceiling = if p.inv.budget.is_some() { p.plan.ceiling } else { s.ceiling.or(p.plan.ceiling) };
    if let Some(c) = ceiling {
        if s.spent >= c {
            let runs = if s.runs > 1 { format!(" over {} runs", s.runs) } else { String::new() };
            let how = match p.inv.budget_from {
                Some(f) => format!("{f} {c} is not above it: give a larger total"),
                None => format!("resume it with --budget <USD>, a new total for the session above {}", s.spent),
            };
            return Err(Exit::policy(format!(
                "session {id} has reached its {c} ceiling ({} spent{runs}): {how}",
                s.spent
            )));
        }
    }
    Ok((Some(s), ceiling))
}

/// How to give the session more: where its ceiling came from decides the words.
fn raise_hint(p: &Prepared) -> String {
    match p.inv.budget_from {
        Some("CCB_BUDGET") => "Raise CCB_BUDGET, or resume the session with --budget <USD>, a larger total".into(),
        Some(_) => "Resume the session with --budget <USD>, a larger total".into(),
        None => format!(
            "Resume it with --budget <USD>, or raise {} in {}",
            ceiling_from(p),
            crate::sys::files::config_path().map(|(p, _)| p.display().to_string()).unwrap_or_else(|| "config.toml".into())
        ),
    }
}

/// Where the session's ceiling came from: `--budget`, `CCB_BUDGET`, or the config's ceiling for
/// the class (`[ceilings] programmatic`).
fn ceiling_from(p: &Prepared) -> String {
    match p.inv.budget_from {
        Some(f) => f.to_string(),
        None => format!(
            "[ceilings] {}",
            match p.plan.class {
                plan::Class::Interactive => "interactive",
                plan::Class::Programmatic => "programmatic",
                plan::Class::OpusWithReason => "opus",
            }
        ),
    }
}

/// Which prices a session uses, in words.
fn prices_line(p: &Prepared) -> String {
    let from = match (&p.config.prices_release, &p.claude_version) {
        (Some(_), _) => "[prices] release in the config".to_string(),
        (None, Some(v)) => format!("claude {v}"),
        (None, None) => "claude's release unknown: the newest table".to_string(),
    };
    let premium = if p.plan.premium { "; the model is premium" } else { "" };
    format!(
        "Claude Code {}'s table ({from}); claude's own figure per call replaces the table's{premium}",
        p.prices.release
    )
}

/// Whether claude itself prices a model ccb's tables do not know: the claude executable names it.
/// Only asked of a claude newer than the release its table was derived from (or of unknown
/// release), since a release's own table lists exactly what it prices; the executable is read
/// once, on the first such question.
fn claude_knows(p: &Prepared) -> Arc<dyn Fn(&str) -> bool + Send + Sync> {
    let table = crate::core::pricing::parse_version(&p.prices.release);
    let newer = match p.claude_version.as_deref().and_then(crate::core::pricing::parse_version) {
        Some(v) => table.is_none_or(|t| v > t),
        None => true,
    };
    if !newer {
        return Arc::new(|_: &str| false);
    }
    let claude = p.claude.clone();
    let names = Arc::new(std::sync::OnceLock::new());
    Arc::new(move |model: &str| {
        names.get_or_init(|| locate::mentioned_models(&claude)).contains(&crate::core::pricing::normalize(model))
    })
}

/// One line: cost, tokens by kind, models, meter.
fn summary(p: &Prepared, out: &supervisor::Outcome, ceiling: Option<Usd>) -> String {
    use crate::core::human::tokens;
    let t = &out.tally;
    let u = &t.usage;
    let models: Vec<&str> = t.by_model.keys().map(String::as_str).collect();
    let mut s = format!(
        "ccb: {}{} · {} in, {} out, {} cache write, {} cache read · {} · meter {}",
        t.total,
        ceiling.map(|c| format!(" of {c}")).unwrap_or_default(),
        tokens(u.input),
        tokens(u.output),
        tokens(u.cache_write()),
        tokens(u.cache_read),
        if models.is_empty() { "no model calls seen".to_string() } else { models.join(", ") },
        p.plan.meter
    );
    if t.malformed > 0 {
        s.push_str(&format!(" · {} malformed transcript lines skipped", t.malformed));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    fn block() -> serde_json::Map<String, serde_json::Value> {
        env_block(Some("http://127.0.0.1:1/tok"), false, Some("http://127.0.0.1:2/v1/logs/tok"))
    }

    #[test]
    fn the_first_party_switch_goes_with_the_gate_only() {
        let sw = crate::session::first_party::SWITCH;
        let on = env_block(Some("http://127.0.0.1:1/tok"), true, None);
        assert_eq!(on[sw], "1");
        assert_eq!(on["ANTHROPIC_BASE_URL"], "http://127.0.0.1:1/tok");
        assert!(!env_block(Some("http://127.0.0.1:1/tok"), false, None).contains_key(sw));
        assert!(!env_block(None, true, Some("http://127.0.0.1:2/v1/logs/tok")).contains_key(sw));
    }

    #[test]
    fn settings_go_in_a_file_named_on_the_command_line() {
        let cwd = tempfile::tempdir().unwrap();
        let path = std::ffi::OsStr::new("/run/ccb/settings-1-x.json");
        // Nothing to add: claude's arguments as they are.
        assert_eq!(merge_settings(&os(&["-p", "hi"]), cwd.path(), Default::default()).unwrap(), None);
        // No --settings of the user's: one in front.
        let m = merge_settings(&os(&["-p", "hi"]), cwd.path(), block()).unwrap().unwrap();
        assert_eq!(m.args(path), os(&["--settings", "/run/ccb/settings-1-x.json", "-p", "hi"]));
        assert_eq!(m.settings["env"]["ANTHROPIC_BASE_URL"], "http://127.0.0.1:1/tok");
        assert_eq!(m.from_user, None);
        // A file of the user's: merged, ccb's entries winning, and its place taken by the path.
        let user = json!({"model": "haiku", "env": {"ANTHROPIC_API_KEY": "sk-secret", "ANTHROPIC_BASE_URL": "x"}});
        std::fs::write(cwd.path().join("mine.json"), user.to_string()).unwrap();
        let m = merge_settings(&os(&["-p", "--settings", "mine.json", "hi"]), cwd.path(), block()).unwrap().unwrap();
        let args = m.args(path);
        assert_eq!(args, os(&["-p", "--settings", "/run/ccb/settings-1-x.json", "hi"]));
        assert!(!args.iter().any(|a| a.to_string_lossy().contains("sk-secret")));
        assert_eq!(m.settings["model"], "haiku");
        assert_eq!(m.settings["env"]["ANTHROPIC_API_KEY"], "sk-secret");
        assert_eq!(m.settings["env"]["ANTHROPIC_BASE_URL"], "http://127.0.0.1:1/tok");
        assert_eq!(m.settings["env"]["OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"], "http://127.0.0.1:2/v1/logs/tok");
        assert_eq!(m.from_user.as_deref(), Some("mine.json"));
        // Inline JSON, in the `--settings=` form: off the command line too.
        let inline = format!("--settings={user}");
        let m = merge_settings(&os(&[&inline, "-p"]), cwd.path(), block()).unwrap().unwrap();
        assert_eq!(m.args(path), os(&["--settings=/run/ccb/settings-1-x.json", "-p"]));
        assert_eq!(m.settings["env"]["ANTHROPIC_API_KEY"], "sk-secret");
        assert_eq!(m.from_user.as_deref(), Some("inline JSON"));
        // After `--`, a `--settings` is claude's prompt text, not a flag.
        let m = merge_settings(&os(&["--", "--settings", "mine.json"]), cwd.path(), block()).unwrap().unwrap();
        assert_eq!(m.args(path), os(&["--settings", "/run/ccb/settings-1-x.json", "--", "--settings", "mine.json"]));
        // Errors say which --settings and why.
        let e = merge_settings(&os(&["--settings", "missing.json"]), cwd.path(), block()).unwrap_err();
        assert!(
            e.starts_with("cannot read --settings ") && e.ends_with("missing.json: no such file or directory"),
            "{e}"
        );
        let e = merge_settings(&os(&["--settings", "{bad"]), cwd.path(), block()).unwrap_err();
        assert!(e.starts_with("--settings is not valid JSON"), "{e}");
    }
}
