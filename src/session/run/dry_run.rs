//! `ccb --dry-run`: the plan, shown (as words or JSON), with nothing launched and nothing
//! written; secrets redacted.

use super::claude_settings::{env_block, merge_settings, settings_error, DRY_RUN_SETTINGS};
use super::Prepared;
use crate::core::args;
use crate::core::exit::Exit;
use crate::core::plan;
use crate::core::recorded::Source;
use serde_json::json;

fn credentials(env: &plan::Env) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    for k in plan::SECRET_VARS {
        if let Some(v) = env.get(*k).filter(|v| !v.is_empty()) {
            m.insert(k.to_string(), json!(plan::redact(v)));
        }
    }
    m
}

pub(super) fn dry_run(p: &Prepared) -> Result<i32, Exit> {
    let plan = &p.plan;
    let gate = p.sources.contains(&Source::Gate).then_some("http://127.0.0.1:<gate-port>/<token>");
    let tel = p.sources.contains(&Source::Telemetry).then_some("http://127.0.0.1:<telemetry-port>/v1/logs/<token>");
    let switch = p.first_party.switch(gate.is_some());
    // The user's --settings is never shown as given either: inline, it may hold a key.
    let mut block = env_block(gate, switch, tel);
    if gate.is_none() && !plan.passthrough {
        block.extend(super::routing_env(p).into_iter().map(|(k, v)| (k.to_string(), serde_json::Value::String(v))));
    }
    let merged = merge_settings(&p.args, &p.cwd, block, p.status_line.as_ref()).map_err(settings_error)?;
    let upstream =
        gate.map(|_| crate::session::gate::Upstream::new(p.env.get("ANTHROPIC_BASE_URL").map(String::as_str)).base);
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
    let rule = (plan.model_source == Some(plan::ModelSource::Routing))
        .then(|| p.config.routing.rules.iter().find(|r| plan.model.as_deref() == Some(r.model.as_str())))
        .flatten();
    let routing = if plan.passthrough {
        Vec::new()
    } else {
        crate::core::routing::describe(&p.config.routing, gate.is_some(), rule)
    };
    if p.inv.json {
        let v = json!({
            "class": plan.class,
            "print_mode": plan.print_mode,
            "model": plan.model,
            "model_source": plan.model_source,
            "reason": plan.reason,
            "billing_mode": plan.billing_mode,
            "meter": plan.payer,
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
            // Header names only: their values are secrets.
            "export": p.config.export.describe(),
            // Which status line claude gets (its command is not shown: it may be the user's).
            "statusline": p.status_line.as_ref().map(|v| {
                if v["command"].as_str().is_some_and(|c| c.contains(" statusline --theirs ")) { "prefix" } else { "ccb" }
            }),
            "prices": {
                "claude_version": p.claude_version,
                "release": p.prices.release,
                "release_from": if p.config.prices_release.is_some() { "config" } else if p.claude_version.is_some() { "claude" } else { "newest" },
                "premium_at": p.config.premium_at,
                "premium": plan.premium,
            },
            "pending_reason": plan.pending_reason,
            "routing": routing,
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
            "team_ledger": p.config.team.url.as_ref().map(|u| json!({
                "url": u.to_string(),
                "user": p.config.team.user.clone().unwrap_or_else(crate::sys::whoami::login_name),
                "host": crate::sys::whoami::host_name(),
                "offline": p.config.team.offline.as_str(),
                "offline_text": team_offline_text(p),
                "last_problem": crate::ledger::default_path().and_then(|l| crate::session::sync::last_problem(&l)),
                "notes": crate::session::team::disagreements(&p.config),
            })),
        });
        crate::out!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(0);
    }
    let model = match (&plan.model, plan.model_source) {
        (Some(m), Some(plan::ModelSource::CcbDefault)) => {
            format!("{m} (ccb's default_model, passed as --model {m})")
        }
        (Some(m), Some(plan::ModelSource::Routing)) => format!("{m} (a [[routing.rule]], passed as --model {m})"),
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
    row("meter", plan.payer.to_string());
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
        if let Some(u) = &p.config.team.url {
            let user = p.config.team.user.clone().unwrap_or_else(crate::sys::whoami::login_name);
            let last = crate::ledger::default_path().and_then(|l| crate::session::sync::last_problem(&l));
            row(
                "team ledger",
                format!(
                    "{u} as {user}@{}; recorded here first, delivered in the background; {}{}",
                    crate::sys::whoami::host_name(),
                    team_offline_text(p),
                    last.map(|l| format!("; last sync failed: {l}")).unwrap_or_default()
                ),
            );
            for line in crate::session::team::disagreements(&p.config) {
                row("note", line.trim_start_matches("ccb: note: ").to_string());
            }
        }
    }
    if !plan.passthrough {
        row("routing", if routing.is_empty() { "off".into() } else { routing.join("; ") });
    }
    row("terminal", if plan.pty { "pty".into() } else { "pipes".into() });
    row("claude", p.claude.display().to_string());
    let sources: Vec<&str> = p.sources.iter().map(Source::as_str).collect();
    row("sources", if sources.is_empty() { "-".into() } else { sources.join(", ") });
    if let Some(u) = &upstream {
        let fp =
            if switch { format!(" (first party: {}=1)", crate::session::first_party::SWITCH) } else { String::new() };
        row("gate", format!("forwards to {u}{fp}"));
    } else if let Some(why) = &gate_off {
        row("gate", format!("off: {why}"));
    }
    if !p.sources.contains(&Source::Telemetry) && !plan.passthrough && crate::session::telemetry::user_exports(&p.env) {
        row("", "telemetry: you export your own; ccb leaves your settings alone".into());
    }
    if merged.is_some() {
        let from = from_user
            .as_deref()
            .map(|f| format!("your --settings ({}) and ", crate::core::human::excerpt(f, crate::core::human::EXCERPT)))
            .unwrap_or_default();
        let what: Vec<&str> = [gate.map(|_| "the gate"), tel.map(|_| "telemetry")].into_iter().flatten().collect();
        let mut parts = Vec::new();
        if !what.is_empty() {
            parts.push(format!("ccb's env entries for {}", what.join(" and ")));
        }
        if let Some(v) = &p.status_line {
            let prefix = v["command"].as_str().is_some_and(|c| c.contains(" statusline --theirs "));
            parts.push(if prefix { "ccb's status line before yours".into() } else { "ccb's status line".into() });
        }
        row(
            "settings",
            format!("{DRY_RUN_SETTINGS}: {from}{}; owner-only, removed when the session ends", parts.join(", ")),
        );
    }
    if let Some(e) = p.config.export.describe() {
        row("export", e);
    }
    row("args", args::display(&shown));
    Ok(0)
}

/// What team limits do when the server does not answer a call's admission in time.
fn team_offline_text(p: &Prepared) -> String {
    match p.config.team.offline {
        crate::core::team::Offline::Local => {
            let strict = p.config.limits.guarantee == crate::core::limits::Guarantee::Strict;
            format!(
                "if the server does not answer within 200 ms, team limits are enforced with this machine's spend only{}",
                if strict { " (weaker than strict: other machines' spend is not seen)" } else { "" }
            )
        }
        crate::core::team::Offline::Refuse => {
            "if the server does not answer within 200 ms, calls under a team limit are refused".into()
        }
    }
}

/// The limits a plan is under, and its guarantee (a word and a sentence): strict covers calls
/// through the gate, so a session without it is held to crossing, checked on each response.
fn limits_plan(p: &Prepared) -> (Vec<crate::core::limits::Limit>, (&'static str, String)) {
    if p.plan.passthrough {
        return (Vec::new(), ("none", "none (passed through, not metered)".into()));
    }
    let limits = crate::session::limits::applicable(&p.config, &p.cwd, p.plan.class.as_str(), p.plan.payer.as_str());
    let g = p.config.limits.guarantee;
    let ledger = match p.config.limits.on_ledger_error {
        crate::core::limits::OnLedgerError::Own => {
            "if the ledger cannot be shared, this session's own spend counts, with a warning"
        }
        crate::core::limits::OnLedgerError::Refuse => "if the ledger cannot be shared, the session is refused",
    };
    let gate = p.sources.contains(&Source::Gate);
    let text = if gate || g == crate::core::limits::Guarantee::Crossing {
        format!("{}; {ledger}", g.describe())
    } else {
        format!("crossing (strict needs the gate, off in this session): each response is checked as it is counted; {ledger}")
    };
    let word = if gate { g.as_str() } else { "crossing" };
    (limits, (word, text))
}

/// Where the session's ceiling came from: `--budget`, `CCB_BUDGET`, or the config's ceiling for
/// the class (`[ceilings] programmatic`).
pub(super) fn ceiling_from(p: &Prepared) -> String {
    match p.inv.budget_from {
        Some(f) => f.to_string(),
        None => format!(
            "[ceilings] {}",
            match &p.plan.class {
                plan::Class::OpusWithReason => "opus",
                class => class.as_str(),
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
