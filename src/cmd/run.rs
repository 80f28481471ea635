//! `ccb [options] [claude args…]`: plan, then run claude under supervision, then account.

use crate::args::{self, ClaudeFlags, Invocation};
use crate::config::{Config, OpusWithoutReason};
use crate::exit::{self, Exit};
use crate::follow::Spec;
use crate::ledger::{now_ms, Ledger, SessionEnd, SessionStart, Store, UsageRow};
use crate::money::Usd;
use crate::plan::{self, Plan, Terminal};
use crate::supervisor::{self, ChildEnd, StopCause};
use crate::transcript::UsageEvent;
use crate::{alert, locate, paths, settings, tty};
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
}

pub fn prepare(argv: &[OsString]) -> Result<Prepared, Exit> {
    let inv = args::split(argv).map_err(Exit::usage)?;
    let config = crate::config::load()?;
    locate::guard_recursion()?;
    let flags = ClaudeFlags::parse(&inv.claude_args);
    let cwd = std::env::current_dir()
        .map_err(|e| Exit::launch(format!("cannot read the current directory: {}", paths::io_reason(&e))))?;
    let process_env: Vec<(String, String)> =
        std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect();
    let claude_dir_var = process_env.iter().find(|(k, _)| k == "CLAUDE_CONFIG_DIR").map(|(_, v)| v.clone());
    let claude_dir = paths::claude_config_dir(claude_dir_var.as_deref());
    let settings =
        settings::load(claude_dir.as_deref(), &cwd, flags.settings.as_deref(), flags.setting_sources.as_deref());
    let env = plan::env_view(process_env, &settings);
    let term = Terminal { stdin_tty: tty::is_tty(libc::STDIN_FILENO), stdout_tty: tty::is_tty(libc::STDOUT_FILENO) };
    let plan = plan::decide(&flags, &env, &settings, term, inv.budget, inv.reason.as_deref(), &config)?;
    let own = std::env::current_exe().ok();
    let claude = locate::find(std::env::var("CCB_CLAUDE").ok().as_deref(), config.claude.as_deref(), own.as_deref())?;

    // Claude's arguments, unchanged and in order, after what ccb adds in front.
    let mut a: Vec<OsString> = Vec::new();
    let mut session_id = flags.session_id.clone();
    if !plan.passthrough {
        if session_id.is_none() && !flags.resume {
            let id = uuid::Uuid::new_v4().to_string();
            a.push("--session-id".into());
            a.push(id.clone().into());
            session_id = Some(id);
        }
        if let Some(m) = &plan.inject_model {
            a.push("--model".into());
            a.push(m.into());
        }
    }
    a.extend(inv.claude_args.iter().cloned());
    Ok(Prepared { inv, config, plan, claude, args: a, session_id, env, claude_dir, cwd })
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

fn dry_run(p: &Prepared) -> i32 {
    let plan = &p.plan;
    let args: Vec<String> = p.args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
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
            "claude": p.claude.display().to_string(),
            "args": args,
            "pty": plan.pty,
            "passthrough": plan.passthrough,
            "session_id": p.session_id,
            "sources": if plan.passthrough { json!([]) } else { json!(["transcript"]) },
            "credentials": credentials(&p.env),
            "config": p.config.path.as_ref().map(|c| c.display().to_string()),
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return 0;
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
    println!("ccb plan (dry run: nothing launched)");
    let row = |k: &str, v: String| println!("  {k:<9} {v}");
    row("class", format!("{}{}", plan.class, if plan.print_mode { " (print mode)" } else { "" }));
    row("model", model);
    row("reason", plan.reason.clone().unwrap_or_else(|| "-".into()));
    row("billing", billing);
    row("meter", plan.meter.to_string());
    row("ceiling", plan.ceiling.map(|c| c.to_string()).unwrap_or_else(|| "none (passed through, not metered)".into()));
    row("terminal", if plan.pty { "pty".into() } else { "pipes".into() });
    row("claude", p.claude.display().to_string());
    row("args", args::display(&p.args));
    0
}

fn record_refusal(start: &SessionStart) {
    if let Ok(l) = Ledger::open_default() {
        let _ = l.begin(start);
        let _ = l.end(&SessionEnd {
            id: start.id.clone(),
            ended_ms: now_ms(),
            end: "refused".into(),
            exit_code: Some(exit::POLICY),
            thresholds: vec![],
        });
    }
}

/// Records the session as it goes, and sends its alerts.
struct Recorder {
    ledger: Option<Ledger>,
    start: SessionStart,
    /// Session ids begun in the ledger (a `/clear` or a resumed session adds one).
    ids: Vec<String>,
    alerts: alert::Dispatcher,
    failed: bool,
}

impl Recorder {
    fn fail(&mut self, e: anyhow::Error) {
        if !self.failed {
            self.failed = true;
            eprintln!(
                "ccb: cannot record this session in the ledger ({e:#}); it goes on, metered and bounded as before"
            );
        }
        self.ledger = None;
    }
    fn begin(&mut self, id: &str) {
        if self.ids.iter().any(|i| i == id) {
            return;
        }
        self.ids.push(id.to_string());
        let start = SessionStart { id: id.to_string(), ..self.start.clone() };
        if let Some(l) = &self.ledger {
            if let Err(e) = l.begin(&start) {
                self.fail(e);
            }
        }
    }
}

impl supervisor::Observer for Recorder {
    fn usage(&mut self, e: &UsageEvent, cost: Usd, _total: Usd) {
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
            source: "transcript".into(),
        };
        if let Some(l) = &self.ledger {
            if let Err(err) = l.record(&row) {
                self.fail(err);
            }
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
            eprintln!("ccb: cannot check the credit pool ({e:#}); launching anyway");
            return Ok(false);
        }
    };
    if !s.exhausted {
        return Ok(false);
    }
    match pc.overage {
        crate::pool::Overage::Reject => Err(Exit::policy(format!(
            "the credit pool is spent ({} of {} this cycle) and overage is \"reject\": it resets on {}; use an API key, or set [pool] overage = \"allow\"",
            s.spent, s.amount, s.end
        ))),
        crate::pool::Overage::Allow => {
            eprintln!("ccb: the credit pool is spent ({} of {}): this session bills at API rates until {}", s.spent, s.amount, s.end);
            Ok(true)
        }
    }
}

pub fn run(argv: &[OsString]) -> anyhow::Result<i32> {
    let p = prepare(argv)?;
    if p.inv.dry_run {
        return Ok(dry_run(&p));
    }
    if p.plan.passthrough {
        // Nothing to meter: become claude, with no process in between.
        use std::os::unix::process::CommandExt;
        let e = std::process::Command::new(&p.claude).args(&p.args).exec();
        return Err(Exit::launch(format!("cannot start {}: {}", p.claude.display(), paths::io_reason(&e))).into());
    }
    let prices = Arc::new(crate::cmd::prices::load_table(&p.config)?);
    let start = SessionStart {
        id: p.session_id.clone().unwrap_or_default(),
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
            record_refusal(&start);
            return Err(e.into());
        }
    };
    let mut rec = Recorder {
        ledger: None,
        start: SessionStart { overage, ..start },
        ids: Vec::new(),
        alerts: alert::Dispatcher::new(p.config.alert_sinks.clone()),
        failed: false,
    };
    match Ledger::open_default() {
        Ok(l) => rec.ledger = Some(l),
        Err(e) => rec.fail(e),
    }
    if let Some(id) = &p.session_id {
        rec.begin(id);
    }
    let project_dir = p.claude_dir.as_ref().map(|d| d.join("projects").join(paths::project_slug(&p.cwd)));
    let follow = project_dir.map(|project_dir| Spec {
        project_dir,
        session_id: p.session_id.clone(),
        follow_new_files: !p.plan.programmatic,
    });
    let stderr_tty = std::io::stderr().is_terminal();
    let label = p.plan.model.clone().unwrap_or_default();
    let opts = supervisor::Options {
        program: p.claude.clone(),
        args: p.args.clone(),
        env: vec![
            (locate::PARENT_VAR.to_string(), std::process::id().to_string()),
            ("CCB_SESSION_ID".to_string(), p.session_id.clone().unwrap_or_default()),
        ],
        pty: p.plan.pty,
        print_mode: p.plan.print_mode,
        follow,
        ceiling: p.plan.ceiling,
        thresholds: p.config.session_alerts.clone(),
        prices,
        opus_guard: (!p.plan.opus).then_some(p.config.opus_without_reason == OpusWithoutReason::Stop),
        progress: p.plan.print_mode && stderr_tty,
        label,
    };
    let out = supervisor::run(opts, &mut rec)?;
    let code = match &out.stopped {
        Some(s) => match s.cause {
            StopCause::Ceiling => exit::CEILING,
            StopCause::OpusWithoutReason => exit::POLICY,
            StopCause::Signal(sig) => 128 + sig,
        },
        None => out.status.exit_code(),
    };
    if let Some(s) = &out.stopped {
        let ceiling = p.plan.ceiling.unwrap_or_default();
        let what = if s.processes > 1 {
            format!("claude and {} more processes", s.processes - 1)
        } else {
            "claude".to_string()
        };
        match s.cause {
            StopCause::Ceiling => eprintln!(
                "ccb: session stopped at its {ceiling} ceiling: {} spent; {what} stopped in {} ms. Raise it with --budget <USD> or [ceilings] {} in {}",
                s.spent,
                s.took.as_millis(),
                match p.plan.class {
                    plan::Class::Interactive => "interactive",
                    plan::Class::Programmatic => "programmatic",
                    plan::Class::OpusWithReason => "opus",
                },
                crate::config::default_path().map(|(p, _)| p.display().to_string()).unwrap_or_else(|| "config.toml".into())
            ),
            StopCause::OpusWithoutReason => eprintln!("ccb: session stopped: an Opus model answered without an Opus reason; {} spent", s.spent),
            StopCause::Signal(_) => {}
        }
    }
    let end = match (&out.stopped, out.status) {
        (Some(s), _) => match s.cause {
            StopCause::Ceiling => "ceiling",
            StopCause::OpusWithoutReason => "policy",
            StopCause::Signal(_) => "signal",
        },
        (None, ChildEnd::Code(_)) => "exited",
        (None, ChildEnd::Signal(_)) => "signaled",
    };
    if let Some(l) = &rec.ledger {
        for id in &rec.ids {
            let e = SessionEnd {
                id: id.clone(),
                ended_ms: now_ms(),
                end: end.into(),
                exit_code: Some(code),
                thresholds: out.fired.clone(),
            };
            if let Err(e) = l.end(&e) {
                eprintln!("ccb: cannot record the end of the session ({e:#})");
                break;
            }
        }
    }
    for problem in std::mem::replace(&mut rec.alerts, alert::Dispatcher::new(Default::default()))
        .finish(std::time::Duration::from_secs(3))
    {
        eprintln!("ccb: {problem}");
    }
    if stderr_tty {
        eprintln!("{}", summary(&p, &out));
    }
    Ok(code)
}

/// One line: cost, tokens by kind, models, meter.
fn summary(p: &Prepared, out: &supervisor::Outcome) -> String {
    use crate::human::tokens;
    let t = &out.tally;
    let u = &t.usage;
    let models: Vec<&str> = t.by_model.keys().map(String::as_str).collect();
    let mut s = format!(
        "ccb: {}{} · {} in, {} out, {} cache write, {} cache read · {} · meter {}",
        t.total,
        p.plan.ceiling.map(|c| format!(" of {c}")).unwrap_or_default(),
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
