//! Everything decided before launch: the plan, claude's arguments, the prices, the sources of
//! usage, and the checks that refuse a session before anything is spent (a spent credit pool, a
//! resumed session at its ceiling).

use super::record::record_refusal;
use crate::core::args::{self, ClaudeFlags, Invocation};
use crate::core::config::Config;
use crate::core::exit::{self, Exit};
use crate::core::money::Usd;
use crate::core::plan::{self, Plan, Terminal};
use crate::core::recorded::Source;
use crate::ledger::{now_ms, Ledger, SessionStart, Store};
use crate::session::settings;
use crate::sys::{locate, paths, tty};
use std::ffi::OsString;
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
    pub sources: Vec<Source>,
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
    /// The `statusLine` ccb puts in claude's settings (`[statusline] mode`), for an
    /// interactive session; None: claude's own settings decide.
    pub status_line: Option<serde_json::Value>,
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
) -> Vec<Source> {
    let mut v = Vec::new();
    if plan.passthrough {
        return v;
    }
    use plan::BillingMode::*;
    if config.metering.gate
        && matches!(plan.billing_mode, Oauth | ApiKey | AuthToken | CustomEndpoint)
        && first_party.gate_allowed()
    {
        v.push(Source::Gate);
    }
    if config.metering.telemetry && !crate::session::telemetry::user_exports(env) {
        v.push(Source::Telemetry);
    }
    v.push(Source::Transcript);
    v
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
            crate::sys::prices::load_table_for(&config, version.as_deref()).map(|t| (t, version))
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
    // `[[routing.rule]]`: the session's model where nothing names one, with the rule's reason
    // for a premium one when the session gives none.
    let rule = launch_rule(&flags, &env, &settings, term, &config, &cwd);
    if let Some(r) = &rule {
        let floor = prices.premium_floor(&config.premium_at);
        if inv.reason.is_none() && r.reason.is_some() && plan::premium(&r.model, &env, &prices, floor).0 {
            inv.reason.clone_from(&r.reason);
            inv.reason_from = Some("[[routing.rule]]");
        }
    }
    let plan_config = match &rule {
        Some(r) => std::borrow::Cow::Owned(Config {
            default_model: r.model.clone(),
            default_model_from: plan::ModelSource::Routing,
            ..config.clone()
        }),
        None => std::borrow::Cow::Borrowed(&config),
    };
    let decided = plan::decide(&flags, &env, &settings, term, inv.budget, inv.reason.as_deref(), &plan_config, &prices)
        .and_then(|p| premium_routes(&p, &config, &env, &prices).map(|_| p));
    let plan = match decided {
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
                    class: if programmatic { plan::Class::Programmatic } else { plan::Class::Interactive },
                    print_mode: flags.print,
                    model: plan::model(&flags, &env, &settings).map(|m| m.0),
                    reason: inv.reason.clone(),
                    payer: plan::payer(&mode, programmatic),
                    billing_mode: mode,
                    ceiling: None,
                    overage: false,
                    ..super::whereabouts(&cwd, &config)
                };
                let existing = id.is_some()
                    && Ledger::open_default().is_ok_and(|l| l.session_spend(&start.id).is_ok_and(|s| s.is_some()));
                record_refusal(&start, &uuid::Uuid::new_v4().to_string(), existing, &config.export);
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
        !plan.passthrough && config.metering.gate && crate::session::first_party::on_path(&plan.billing_mode, &env),
        &claude,
        crate::session::first_party::cache_file(),
        std::env::var_os(crate::session::first_party::TEST_WITHHOLD).is_some_and(|v| v == "1"),
    );
    let sources = sources(&plan, &config, &env, &first_party);
    // The status line is where an interactive session shows ccb's figures and notices (claude
    // runs it only in interactive mode).
    // A path that is not UTF-8 cannot be written into claude's settings: no status line then.
    let status_line = match (
        own.as_deref().and_then(|p| p.to_str()),
        plan.passthrough || plan.print_mode || flags.stream_json_input(),
    ) {
        (Some(exe), false) => crate::core::statusline::setting(config.statusline, settings.status_line.as_ref(), exe),
        _ => None,
    };
    Ok(Prepared {
        status_line,
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

/// The `[[routing.rule]]` for a session that names no model: matched on its class (before any
/// premium choice), its meter and its working directory.
fn launch_rule(
    flags: &ClaudeFlags,
    env: &plan::Env,
    settings: &plan::Settings,
    term: Terminal,
    config: &Config,
    cwd: &std::path::Path,
) -> Option<crate::core::routing::Rule> {
    if config.routing.rules.is_empty() || flags.passthrough || plan::model(flags, env, settings).is_some() {
        return None;
    }
    let sdk = env.get("CLAUDE_CODE_ENTRYPOINT").is_some_and(|e| e.starts_with("sdk"));
    let programmatic = flags.print || flags.stream_json_input() || !term.stdout_tty || sdk;
    let payer = plan::payer(&plan::billing_mode(env, settings), programmatic);
    let class = if programmatic { "programmatic" } else { "interactive" };
    crate::core::routing::rule_for(&config.routing, class, payer.as_str(), cwd).cloned()
}

/// Routing subagents or background calls to a premium model needs a reason, as any premium
/// choice does: refused before launch (exit 4) in a session without one.
fn premium_routes(
    p: &Plan,
    config: &Config,
    env: &plan::Env,
    prices: &crate::core::pricing::PriceTable,
) -> Result<(), Exit> {
    if p.passthrough || p.reason.is_some() || p.pending_reason.is_some() {
        return Ok(());
    }
    let floor = prices.premium_floor(&config.premium_at);
    let r = &config.routing;
    for (key, m) in [("subagent_model", &r.subagent_model), ("background_model", &r.background_model)] {
        if let Some(m) = m.as_deref().filter(|m| plan::premium(m, env, prices, floor).0) {
            return Err(Exit::policy(format!(
                "[routing] {key} '{}' is a premium model (Opus's price tier or above) and needs a reason: add --reason <{}>, or route to a cheaper model",
                crate::core::human::excerpt(m, crate::core::human::EXCERPT),
                config.opus_reasons.join("|")
            )));
        }
    }
    Ok(())
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

/// For `--resume ID`: what the session spent in its earlier runs, and the ceiling this run
/// enforces (a `--budget` is the session's new total; else the ceiling it was recorded with).
pub(super) fn resumed_ceiling(p: &Prepared) -> Result<(Option<crate::ledger::SessionSpend>, Option<Usd>), Exit> {
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

/// Before a credit-pool session: refuse when the pool is spent and overage is rejected.
pub(super) fn check_pool(p: &Prepared) -> Result<bool, Exit> {
    let Some(pc) = p.config.pool.clone() else { return Ok(false) };
    if p.plan.payer != plan::Payer::CreditPool {
        return Ok(false);
    }
    let s = match crate::scan::pool::current(&p.config, &pc) {
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
