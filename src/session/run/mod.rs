//! One metered session, from argv to the ledger: [`prepare`] decides everything before launch
//! (or refuses); [`run`] binds the sources ([`sources`]), writes claude's settings
//! ([`claude_settings`]), starts the warden, begins the ledger's record ([`record`]), hands claude
//! to the [`crate::session::supervisor`], and accounts for the session once it has ended
//! ([`end`]). `ccb --dry-run` shows the plan instead ([`dry_run`]); a refusal is told in the
//! Agent SDK's protocol too ([`protocol`]).

mod claude_settings;
mod dry_run;
mod end;
mod prepare;
mod protocol;
mod record;
mod sources;

pub use claude_settings::{merge_settings, Merged};
pub use prepare::{prepare, sources, Prepared};

use crate::core::recorded::Source;

use crate::core::exit::Exit;
use crate::core::money::Usd;
use crate::ledger::writer::Writer;
use crate::ledger::{now_ms, Ledger, SessionStart, Store};
use crate::session::follow::Spec;
use crate::session::supervisor;
use crate::sys::{alert, locate, paths};
use claude_settings::{env_block, settings_error, write_settings};
use prepare::{check_pool, resumed_ceiling};
use protocol::refuse_in_protocol;
use record::{record_refusal, Recorder};
use std::ffi::OsString;
use std::io::IsTerminal;
use std::sync::Arc;

pub fn run(argv: &[OsString]) -> anyhow::Result<i32> {
    let p = match prepare(argv) {
        Ok(p) => p,
        Err(e) => {
            refuse_in_protocol(argv, &e.message);
            return Err(e.into());
        }
    };
    if p.inv.dry_run {
        return Ok(dry_run::dry_run(&p)?);
    }
    if p.plan.pty {
        // From here on a log line on stderr would draw over claude's screen.
        crate::sys::log::pty_session();
    }
    log::debug!(
        "plan: {} session{}, meter {}, billing {}, model {}, ceiling {}, {}, sources [{}], claude {} ({}){}",
        p.plan.class,
        if p.plan.print_mode { " in print mode" } else { "" },
        p.plan.payer,
        p.plan.billing_mode,
        p.plan.model.as_deref().unwrap_or("claude's default"),
        p.plan.ceiling.map(|c| c.to_string()).unwrap_or_else(|| "none".into()),
        if p.plan.pty { "pty" } else { "pipes" },
        p.sources.iter().map(Source::as_str).collect::<Vec<_>>().join(", "),
        p.claude.display(),
        p.claude_version.as_deref().unwrap_or("version unknown"),
        if p.plan.passthrough { "; passthrough: nothing to meter" } else { "" },
    );
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
        class: p.plan.class.clone(),
        print_mode: p.plan.print_mode,
        model: p.plan.model.clone(),
        reason: p.plan.reason.clone(),
        billing_mode: p.plan.billing_mode.clone(),
        payer: p.plan.payer.clone(),
        ceiling: p.plan.ceiling,
        overage: false,
        ..whereabouts(&p.cwd, &p.config)
    };
    let overage = match check_pool(&p) {
        Ok(o) => o,
        Err(e) => {
            record_refusal(&start, &p.run_id, p.resumed.is_some(), &p.config.export);
            refuse_in_protocol(argv, &e.message);
            return Err(e.into());
        }
    };
    // A resumed session keeps its ceiling and what it spent: at its ceiling it is refused
    // before anything is spent, unless --budget (or CCB_BUDGET) gives it a new total.
    let (resumed_spend, ceiling) = match resumed_ceiling(&p) {
        Ok(r) => r,
        Err(e) => {
            record_refusal(&start, &p.run_id, true, &p.config.export);
            refuse_in_protocol(argv, &e.message);
            return Err(e.into());
        }
    };
    let start = SessionStart { ceiling, ..start };
    // Spend limits across sessions: a limit already reached refuses the session here.
    let limits = match crate::session::limits::Live::prepare(&p.config, p.prices.clone(), &start, run_start(&p, &start))
    {
        Ok(l) => l,
        Err(e) => {
            record_refusal(&start, &p.run_id, p.resumed.is_some(), &p.config.export);
            refuse_in_protocol(argv, &e.message);
            return Err(e.into());
        }
    };
    // Bind before claude starts: the ports go into its settings.
    let bound = sources::bind(&p);
    let gate_url = bound.gate.as_ref().map(|(g, _)| g.url());
    let tel_endpoint = bound.telemetry.as_ref().map(|r| r.endpoint());
    let switch = p.first_party.switch(gate_url.is_some());
    // Before the warden and the ledger: a bad --settings ends here with nothing to undo.
    let mut block = env_block(gate_url.as_deref(), switch, tel_endpoint.as_deref());
    if gate_url.is_none() && !p.plan.passthrough {
        // No gate to route in: Claude Code's own variables route subagents and background calls.
        block.extend(routing_env(&p).into_iter().map(|(k, v)| (k.to_string(), serde_json::Value::String(v))));
    }
    let merged = merge_settings(&p.args, &p.cwd, block, p.status_line.as_ref()).map_err(settings_error)?;
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
    let meter =
        Arc::new(crate::session::meter::Meter::new(ceiling, &p.config.session_alerts, p.config.metering.reserve));
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
        export: crate::session::export::Exporter::start(&p.config.export, p.sources.contains(&Source::Telemetry)),
    };
    if let Some(id) = &p.session_id {
        rec.begin(id);
    }
    let project_dir = p.claude_dir.as_ref().map(|d| d.join("projects").join(paths::project_slug(&p.cwd)));
    let follow = project_dir.map(|project_dir| Spec {
        project_dir,
        session_id: p.session_id.clone(),
        guess: !p.sources.contains(&Source::Gate) && !p.sources.contains(&Source::Telemetry),
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
    // The session starts its sources; the supervisor calls this once claude is spawned, so that
    // their start overlaps claude's (before the spawn it added a millisecond or two to every
    // launch), and their events wait in its inbox until its loop runs.
    let inbox = supervisor::Inbox::default();
    let session_id = follow.as_ref().and_then(|f| f.session_id.clone());
    let gate_planned = bound.gate.is_some();
    let team = p.config.team.url.is_some();
    if team {
        // The last sync's problem, said once at the start (a local read: no network wait).
        if let Some(problem) = crate::ledger::default_path().and_then(|l| crate::session::sync::last_problem(&l)) {
            crate::note!("ccb: warning: {problem}; this session records on this machine and is delivered later");
        }
        for line in crate::session::team::disagreements(&p.config) {
            crate::note!("{line}");
        }
    }
    let start_sources = {
        let (meter, prices, sender) = (meter.clone(), prices.clone(), inbox.sender());
        move || {
            if team {
                // The team ledger's sync runs beside the session, in its own process.
                let _ =
                    std::thread::Builder::new().name("ccb-sync-start".into()).spawn(crate::session::sync::spawn_daemon);
            }
            sources::start(bound, follow, &meter, &prices, &sender, warden_problems)
        }
    };
    let label = p.plan.model.clone().unwrap_or_default();
    let options = supervisor::Options {
        program: p.claude.clone(),
        args: claude_args,
        env: child_env,
        pty: p.plan.pty,
        print_mode: p.plan.print_mode,
        ceiling,
        meter: meter.clone(),
        gate: gate_planned,
        sources: Some(Box::new(start_sources)),
        session_id,
        block_at_ceiling: p.config.metering.block,
        prices,
        claude_knows: claude_knows(&p),
        premium_guard: crate::core::plan::premium_action(&p.plan, p.config.opus_without_reason)
            .map(|action| supervisor::PremiumGuard { action, floor: p.prices.premium_floor(&p.config.premium_at) }),
        downgrade_warn_at: p.config.routing.downgrade_at.filter(|_| !gate_planned),
        progress: p.plan.print_mode && stderr_tty,
        stream_json: !p.plan.pty && p.stream_json,
        label,
        notices,
    };
    // The warden is not waited for: claude starts while it does (a session killed in the
    // millisecond before it is ready has nothing running yet but claude, which its death
    // signal ends).
    let out = supervisor::run(options, inbox, &mut rec);
    drop(settings_file);
    // Every process of the session has ended: nothing for the warden to do.
    if let Ok(Some(w)) = warden.join() {
        w.dismiss();
    }
    let out = out?;
    Ok(end::account(&p, &out, &meter, rec, limits.as_ref(), stderr_tty))
}

/// Claude Code's own variables for `[routing]` in a session without the gate (checked on both
/// releases by tests/routing.rs): `CLAUDE_CODE_SUBAGENT_MODEL` for subagents, and
/// `ANTHROPIC_DEFAULT_HAIKU_MODEL`, the small, fast model of its background calls. A variable the
/// user set is theirs: left as it is.
pub(super) fn routing_env(p: &Prepared) -> Vec<(&'static str, String)> {
    let r = &p.config.routing;
    let lookup = |k: &str| p.env.get(k).filter(|v| !v.is_empty()).cloned();
    [("CLAUDE_CODE_SUBAGENT_MODEL", &r.subagent_model), ("ANTHROPIC_DEFAULT_HAIKU_MODEL", &r.background_model)]
        .into_iter()
        .filter(|(k, _)| lookup(k).is_none())
        .filter_map(|(k, m)| m.as_deref().map(|m| (k, p.prices.resolve(m, &lookup))))
        .collect()
}

/// How to give the session more: where its ceiling came from decides the words.
fn raise_hint(p: &Prepared) -> String {
    match p.inv.budget_from {
        Some("CCB_BUDGET") => "Raise CCB_BUDGET, or resume the session with --budget <USD>, a larger total".into(),
        Some(_) => "Resume the session with --budget <USD>, a larger total".into(),
        None => format!(
            "Resume it with --budget <USD>, or raise {} in {}",
            dry_run::ceiling_from(p),
            crate::sys::files::config_path()
                .map(|(p, _)| p.display().to_string())
                .unwrap_or_else(|| "config.toml".into())
        ),
    }
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
        p.plan.payer
    );
    if t.malformed > 0 {
        s.push_str(&format!(" · {} malformed transcript lines skipped", t.malformed));
    }
    s
}

/// This run, as the ledger records it.
/// Who starts a session, where, and on which branch and commit: the parts of a
/// [`SessionStart`] that come from the machine, not from the plan.
pub(super) fn whereabouts(cwd: &std::path::Path, config: &crate::core::config::Config) -> SessionStart {
    let head = crate::sys::git::head(cwd).unwrap_or_default();
    SessionStart {
        branch: head.branch,
        commit: head.commit,
        user: Some(config.team.user.clone().unwrap_or_else(crate::sys::whoami::login_name)),
        host: Some(crate::sys::whoami::host_name()),
        ..SessionStart::default()
    }
}

fn run_start(p: &Prepared, start: &SessionStart) -> crate::ledger::RunStart {
    crate::ledger::RunStart {
        id: p.run_id.clone(),
        session_id: start.id.clone(),
        started_ms: start.started_ms,
        pid: std::process::id(),
        resumed: p.resumed.is_some() || p.session_id.is_none(),
    }
}
