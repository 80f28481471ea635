//! Routing, pure: which model serves a call nothing named on purpose (`[routing]`), when a
//! premium call goes a tier down before the ceiling (`downgrade_at`), and how a request is
//! rewritten for the model that serves it. The gate (`session::gate::route`) applies these
//! decisions to each request; the plan applies the rules at launch.
//!
//! Nothing here is on until configured: an empty `[routing]` routes nothing.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// `[routing]`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    /// The model for subagents (the Task/Agent tool) that do not name one.
    pub subagent_model: Option<String>,
    /// The model for claude's background calls (the session title, calls to the haiku alias).
    pub background_model: Option<String>,
    /// Narrower rules for the session's own model, first match wins.
    pub rules: Vec<Rule>,
    /// Percent of the session ceiling from which premium calls go a tier down; None: off.
    pub downgrade_at: Option<u32>,
    /// Where a premium family goes down to (`opus = "sonnet"`).
    pub downgrade_to: BTreeMap<String, String>,
}

impl Default for Routing {
    fn default() -> Self {
        Routing {
            subagent_model: None,
            background_model: None,
            rules: Vec::new(),
            downgrade_at: None,
            downgrade_to: [("opus", "sonnet"), ("fable", "opus"), ("mythos", "opus")]
                .into_iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        }
    }
}

impl Routing {
    /// Anything for the gate to do on a call.
    pub fn routes_calls(&self) -> bool {
        self.subagent_model.is_some() || self.background_model.is_some() || self.downgrade_at.is_some()
    }
}

/// `[[routing.rule]]`: the session's model when nothing names one, for sessions that match every
/// key given.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rule {
    pub class: Option<String>,
    pub meter: Option<String>,
    /// A working directory at or below this path.
    pub project: Option<PathBuf>,
    pub model: String,
    /// The reason recorded when the rule's model is premium and the session gave none.
    pub reason: Option<String>,
}

/// `[advice]`: when a report hints that a cheaper tier would usually do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advice {
    /// Output tokens per response at or below which answers count as short.
    pub short_output_tokens: u64,
    /// Responses a session needs before a hint about its answers is given.
    pub min_responses: u64,
}

impl Default for Advice {
    fn default() -> Self {
        Advice { short_output_tokens: 400, min_responses: 5 }
    }
}

/// The first rule that matches a session (its class before any premium choice: `interactive`
/// or `programmatic`; its meter; its working directory).
pub fn rule_for<'a>(r: &'a Routing, class: &str, meter: &str, cwd: &std::path::Path) -> Option<&'a Rule> {
    r.rules.iter().find(|rule| {
        rule.class.as_deref().is_none_or(|c| c == class)
            && rule.meter.as_deref().is_none_or(|m| m == meter)
            && rule.project.as_deref().is_none_or(|p| cwd.starts_with(p))
    })
}

/// What a model call is, for routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// The session's own loop.
    Main,
    /// A subagent's call (`x-claude-code-agent-id`, or `cc_is_subagent=true` in its system prompt).
    Subagent,
    /// A call claude makes on its own behalf.
    Background(Background),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Background {
    /// The session-title call: no tools, JSON-schema output.
    Title,
    /// A call to claude's small, fast model (the haiku alias) without tools: summaries,
    /// command checks.
    Haiku,
    /// Compaction (`/compact`, or near the context limit): the session's own model, with its
    /// whole conversation and prompt cache; no setting of claude's moves it, and routing leaves
    /// it there (only a downgrade changes it).
    Compaction,
}

impl CallKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CallKind::Main => "main",
            CallKind::Subagent => "subagent",
            CallKind::Background(Background::Title) => "title",
            CallKind::Background(Background::Haiku) => "haiku",
            CallKind::Background(Background::Compaction) => "compaction",
        }
    }
}

/// Tell a call's kind from its headers' `x-claude-code-agent-id` and its JSON body.
pub fn classify(agent_header: bool, body: &Value) -> CallKind {
    let system = system_text(body);
    if agent_header || system.contains("cc_is_subagent=true") {
        return CallKind::Subagent;
    }
    if last_user_text(body).contains(COMPACTION_MARKER) {
        return CallKind::Background(Background::Compaction);
    }
    let no_tools = body.get("tools").and_then(Value::as_array).is_none_or(|t| t.is_empty());
    let schema = body.pointer("/output_config/format/type").and_then(Value::as_str) == Some("json_schema");
    if no_tools && (schema || system.contains("Generate a concise, sentence-case title")) {
        return CallKind::Background(Background::Title);
    }
    // Claude's own small, fast calls carry no tools; a session whose loop runs on Haiku does.
    let model = body.get("model").and_then(Value::as_str).unwrap_or("");
    if no_tools && crate::core::pricing::family_of(model) == "haiku" {
        return CallKind::Background(Background::Haiku);
    }
    CallKind::Main
}

/// What claude's compaction request asks for, in its last user message (2.1.197 and 2.1.332).
const COMPACTION_MARKER: &str = "Your task is to create a detailed summary of the conversation so far";

/// The text blocks of the last message, when it is the user's.
fn last_user_text(body: &Value) -> String {
    let Some(last) = body.get("messages").and_then(Value::as_array).and_then(|m| m.last()) else {
        return String::new();
    };
    if last.get("role").and_then(Value::as_str) != Some("user") {
        return String::new();
    }
    match last.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn system_text(body: &Value) -> String {
    match body.get("system") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => {
            blocks.iter().filter_map(|b| b.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n")
        }
        _ => String::new(),
    }
}

/// Why a call is served by another model than the one claude asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// `[routing] subagent_model`.
    Subagent,
    /// `[routing] background_model`.
    Background(Background),
    /// `[routing] downgrade_at`: the session had spent this share of its ceiling (percent).
    Downgrade { pct: u32 },
}

/// A routing decision: serve the call with `to` (an id, resolved) for `why`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub to: String,
    pub why: Why,
}

/// What the gate knows when it decides.
pub struct Facts<'a> {
    pub kind: CallKind,
    /// The model the call asks for, as claude sent it.
    pub requested: &'a str,
    /// The model of the session's own loop, as last seen by the gate (a subagent that asks for
    /// another named one).
    pub main_model: Option<&'a str>,
    /// The session's spend as a share of its ceiling, percent (None: no ceiling).
    pub spent_pct: Option<u32>,
    /// Is a model (an alias or an id) premium: resolved as claude resolves it.
    pub premium: &'a dyn Fn(&str) -> bool,
    /// Resolve an alias (`haiku`) to the id claude would send.
    pub resolve: &'a dyn Fn(&str) -> String,
}

/// Decide a call's model. Subagents that named no model of their own (they ask for the main
/// loop's) and background calls go to their configured model; from `downgrade_at`, a call for a
/// premium model goes to its family's `downgrade_to`, whatever routed it. None: unchanged.
pub fn route(r: &Routing, f: &Facts) -> Option<Route> {
    let same = |a: &str, b: &str| crate::core::pricing::normalize(a) == crate::core::pricing::normalize(b);
    let mut chosen: Option<Route> = match f.kind {
        CallKind::Subagent => r
            .subagent_model
            .as_deref()
            .filter(|_| f.main_model.is_none_or(|m| same(m, f.requested)))
            .map(|m| Route { to: (f.resolve)(m), why: Why::Subagent }),
        CallKind::Background(Background::Compaction) => None,
        CallKind::Background(b) => {
            r.background_model.as_deref().map(|m| Route { to: (f.resolve)(m), why: Why::Background(b) })
        }
        CallKind::Main => None,
    };
    if let (Some(at), Some(pct)) = (r.downgrade_at, f.spent_pct) {
        let target = chosen.as_ref().map(|c| c.to.as_str()).unwrap_or(f.requested);
        if pct >= at && (f.premium)(target) {
            let family = crate::core::pricing::family_of(&(f.resolve)(target));
            if let Some(down) = r.downgrade_to.get(family) {
                chosen = Some(Route { to: (f.resolve)(down), why: Why::Downgrade { pct } });
            }
        }
    }
    chosen.filter(|c| !same(&c.to, f.requested) && !same(&c.to, &(f.resolve)(f.requested)))
}

/// What a target model is known to accept, by family: only these fields are changed by a
/// rewrite; a call that needs more (a 1M-token context on a model without one) passes
/// unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepts {
    /// The largest `max_tokens` known valid on every model of the family.
    pub max_tokens: u64,
    /// `output_config.effort`.
    pub effort: bool,
    /// `thinking: {"type": "adaptive"}`.
    pub adaptive_thinking: bool,
    /// `speed: "fast"`.
    pub fast: bool,
    /// The 1M-token context beta.
    pub long_context: bool,
}

/// What a family is known to accept (the intersection over its current models, so a rewrite
/// never asks a model for what it cannot give).
pub fn accepts(model: &str) -> Accepts {
    match crate::core::pricing::family_of(model) {
        "haiku" => {
            Accepts { max_tokens: 64_000, effort: false, adaptive_thinking: false, fast: false, long_context: false }
        }
        "sonnet" => {
            Accepts { max_tokens: 64_000, effort: true, adaptive_thinking: true, fast: false, long_context: true }
        }
        "opus" => {
            Accepts { max_tokens: 32_000, effort: true, adaptive_thinking: true, fast: false, long_context: true }
        }
        _ => Accepts { max_tokens: 32_000, effort: false, adaptive_thinking: false, fast: false, long_context: false },
    }
}

/// The `anthropic-beta` names of the 1M-token context.
fn is_long_context_beta(b: &str) -> bool {
    b.trim().to_ascii_lowercase().starts_with("context-1m")
}

/// What a rewrite changed, for the log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rewritten {
    pub changed: Vec<&'static str>,
}

/// Rewrite a request for `to`: its `model`, and only what the target is known not to accept
/// (`speed`, effort, adaptive thinking, `max_tokens` above its cap, with a thinking budget kept
/// below it). `betas` is the request's `anthropic-beta` header. Err (the call passes unchanged):
/// the call uses the 1M-token context and the target has none, or the body is not a JSON object.
pub fn rewrite(body: &mut Value, betas: Option<&str>, to: &str) -> Result<Rewritten, &'static str> {
    let a = accepts(to);
    let long = betas.is_some_and(|b| b.split(',').any(is_long_context_beta));
    if long && !a.long_context {
        return Err("the call uses the 1M-token context, which the target model does not offer");
    }
    let Some(obj) = body.as_object_mut() else { return Err("the request is not a JSON object") };
    let mut out = Rewritten::default();
    obj.insert("model".into(), Value::String(to.to_string()));
    out.changed.push("model");
    if !a.fast && obj.remove("speed").is_some() {
        out.changed.push("speed");
    }
    if !a.effort {
        let removed = obj.get_mut("output_config").and_then(Value::as_object_mut).and_then(|o| o.remove("effort"));
        if removed.is_some() {
            out.changed.push("effort");
        }
        if obj.get("output_config").and_then(Value::as_object).is_some_and(|o| o.is_empty()) {
            obj.remove("output_config");
        }
    }
    if !a.adaptive_thinking
        && obj.get("thinking").and_then(|t| t.get("type")).and_then(Value::as_str) == Some("adaptive")
    {
        obj.remove("thinking");
        out.changed.push("thinking");
    }
    if let Some(m) = obj.get("max_tokens").and_then(Value::as_u64) {
        if m > a.max_tokens {
            obj.insert("max_tokens".into(), Value::from(a.max_tokens));
            out.changed.push("max_tokens");
        }
    }
    let cap = obj.get("max_tokens").and_then(Value::as_u64).unwrap_or(a.max_tokens);
    if let Some(b) = obj.get_mut("thinking").and_then(|t| t.get_mut("budget_tokens")) {
        if b.as_u64().is_some_and(|n| n >= cap) {
            *b = Value::from(cap.saturating_sub(1).max(1024));
            out.changed.push("thinking.budget_tokens");
        }
    }
    Ok(out)
}

/// The `anthropic-beta` header for a routed call: unchanged (a rewrite that needs the 1M
/// context on a target without it is refused by [`rewrite`]).
pub fn betas_for(betas: &str, to: &str) -> String {
    if accepts(to).long_context {
        return betas.to_string();
    }
    betas.split(',').filter(|b| !is_long_context_beta(b)).map(str::trim).collect::<Vec<_>>().join(",")
}

/// What `[routing]` does in a session, for `--dry-run`: one phrase per part, empty when off.
/// `gate`: the session has the gate (routing in the request path); otherwise Claude Code's own
/// variables route, and a downgrade can only warn.
pub fn describe(r: &Routing, gate: bool, rule: Option<&Rule>) -> Vec<String> {
    let mut out = Vec::new();
    let how = |var: &str| if gate { "in the gate".to_string() } else { format!("through {var}") };
    if let Some(m) = &r.subagent_model {
        out.push(format!("subagents that name no model → {m} ({})", how("CLAUDE_CODE_SUBAGENT_MODEL")));
    }
    if let Some(m) = &r.background_model {
        out.push(format!("background calls (title, the haiku alias) → {m} ({})", how("ANTHROPIC_DEFAULT_HAIKU_MODEL")));
    }
    if let Some(at) = r.downgrade_at {
        let to: Vec<String> = r.downgrade_to.iter().map(|(a, b)| format!("{a} → {b}")).collect();
        if gate {
            out.push(format!("from {at}% of the ceiling premium calls go down: {}", to.join(", ")));
        } else {
            out.push(format!("at {at}% of the ceiling a warning only (no gate to downgrade in)"));
        }
    }
    if let Some(rule) = rule {
        out.push(format!("the session's model from a [[routing.rule]]: {}", rule.model));
    } else if !r.rules.is_empty() {
        out.push(format!("{} [[routing.rule]], none applies here", r.rules.len()));
    }
    out
}

/// The notice for the first call a downgrade served.
pub fn downgrade_notice(
    at: u32,
    of: &str,
    from: &str,
    to: &str,
    rewrite_cost: Option<(u64, crate::core::money::Usd)>,
) -> String {
    let mut s = format!(
        "{at}% of {of} spent: calls for {from} now go to {to} ([routing] downgrade_at = {at}; recorded in the ledger as asked {from}, served {to})"
    );
    if let Some((tokens, cost)) = rewrite_cost.filter(|(t, _)| *t > 0) {
        s.push_str(&format!(
            "; the switch lost the prompt cache: {} tokens written again for {cost}",
            crate::core::human::tokens(tokens)
        ));
    }
    s
}

/// The notice for a session without a gate at `downgrade_at`: it cannot route, only warn.
pub fn downgrade_warning(at: u32) -> String {
    format!(
        "{at}% of the session ceiling spent ([routing] downgrade_at = {at}): this session has no gate, so premium calls are not downgraded; switch with /model sonnet"
    )
}

/// `[routing]` and `[advice]` for `ccb config show`; the result parses back to the same values.
pub fn to_toml(r: &Routing, a: &Advice) -> String {
    let mut out = String::from("\n[routing]\n");
    if let Some(m) = &r.subagent_model {
        out.push_str(&format!("subagent_model = {m:?}\n"));
    }
    if let Some(m) = &r.background_model {
        out.push_str(&format!("background_model = {m:?}\n"));
    }
    match r.downgrade_at {
        Some(at) => out.push_str(&format!("downgrade_at = {at}\n")),
        None => out.push_str("downgrade = \"off\"\n"),
    }
    let to: Vec<String> = r.downgrade_to.iter().map(|(k, v)| format!("{k} = {v:?}")).collect();
    out.push_str(&format!("downgrade_to = {{ {} }}\n", to.join(", ")));
    for rule in &r.rules {
        out.push_str("\n[[routing.rule]]\n");
        for (k, v) in [("class", &rule.class), ("meter", &rule.meter)] {
            if let Some(v) = v {
                out.push_str(&format!("{k} = {v:?}\n"));
            }
        }
        if let Some(p) = &rule.project {
            out.push_str(&format!("project = {:?}\n", p.display().to_string()));
        }
        out.push_str(&format!("model = {:?}\n", rule.model));
        if let Some(v) = &rule.reason {
            out.push_str(&format!("reason = {v:?}\n"));
        }
    }
    out.push_str(&format!(
        "\n[advice]\nshort_output_tokens = {}\nmin_responses = {}\n",
        a.short_output_tokens, a.min_responses
    ));
    out
}

// ---- the config file ----

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct FileRouting {
    subagent_model: Option<toml::Spanned<String>>,
    background_model: Option<toml::Spanned<String>>,
    downgrade_at: Option<toml::Spanned<toml::Value>>,
    downgrade: Option<toml::Spanned<String>>,
    downgrade_to: Option<toml::Spanned<BTreeMap<String, String>>>,
    rule: Vec<toml::Spanned<FileRule>>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRule {
    class: Option<toml::Spanned<String>>,
    meter: Option<toml::Spanned<String>>,
    project: Option<toml::Spanned<String>>,
    model: Option<toml::Spanned<String>>,
    reason: Option<toml::Spanned<String>>,
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct FileAdvice {
    short_output_tokens: Option<toml::Spanned<i64>>,
    min_responses: Option<toml::Spanned<i64>>,
}

fn model_name(v: &toml::Spanned<String>, key: &str, at: &dyn Fn(usize, String) -> String) -> Result<String, String> {
    let s = v.get_ref().trim();
    if s.is_empty() || s.contains(char::is_whitespace) || s.chars().any(char::is_control) {
        return Err(at(
            v.span().start,
            format!(
                "[routing] {key} '{}' must be a model name such as \"haiku\"",
                crate::core::human::excerpt(v.get_ref(), crate::core::human::EXCERPT)
            ),
        ));
    }
    Ok(s.to_string())
}

/// `[routing]` as written → [`Routing`]; errors are `at(offset, message)`.
pub fn parse_routing(f: FileRouting, at: &dyn Fn(usize, String) -> String) -> Result<Routing, String> {
    let shown = |s: &str| crate::core::human::excerpt(s, crate::core::human::EXCERPT);
    let mut r = Routing::default();
    if let Some(v) = &f.subagent_model {
        r.subagent_model = Some(model_name(v, "subagent_model", at)?);
    }
    if let Some(v) = &f.background_model {
        r.background_model = Some(model_name(v, "background_model", at)?);
    }
    let off = match &f.downgrade {
        None => false,
        Some(d) if d.get_ref() == "off" => true,
        Some(d) if d.get_ref() == "on" => false,
        Some(d) => {
            return Err(at(
                d.span().start,
                format!("[routing] downgrade '{}' must be \"off\" or \"on\"", shown(d.get_ref())),
            ))
        }
    };
    if let Some(v) = &f.downgrade_at {
        let pct = match v.get_ref() {
            toml::Value::Integer(n) if (1..=100).contains(n) => *n as u32,
            toml::Value::String(s) if s == "off" => 0,
            other => {
                return Err(at(
                    v.span().start,
                    format!("[routing] downgrade_at = {other} must be a percentage of the session ceiling from 1 to 100, or \"off\""),
                ))
            }
        };
        r.downgrade_at = (pct > 0 && !off).then_some(pct);
    }
    if let Some(v) = &f.downgrade_to {
        for (from, to) in v.get_ref() {
            let fam = from.trim().to_ascii_lowercase();
            if !["opus", "sonnet", "haiku", "fable", "mythos"].contains(&fam.as_str()) {
                return Err(at(
                    v.span().start,
                    format!(
                        "[routing] downgrade_to: '{}' must be a model family (opus, fable, mythos, sonnet, haiku)",
                        shown(from)
                    ),
                ));
            }
            if to.trim().is_empty() || to.contains(char::is_whitespace) {
                return Err(at(
                    v.span().start,
                    format!("[routing] downgrade_to: {fam} = '{}' must be a model name", shown(to)),
                ));
            }
            r.downgrade_to.insert(fam, to.trim().to_string());
        }
    }
    for rule in f.rule {
        let span = rule.span();
        let fr = rule.into_inner();
        let Some(model) = &fr.model else {
            return Err(at(
                span.start,
                "[[routing.rule]] needs model = \"…\" (and class, meter or project to match)".into(),
            ));
        };
        let mut out = Rule { model: model_name(model, "rule model", at)?, ..Rule::default() };
        if let Some(c) = &fr.class {
            if !["interactive", "programmatic"].contains(&c.get_ref().as_str()) {
                return Err(at(
                    c.span().start,
                    format!(
                        "[[routing.rule]] class '{}' must be \"interactive\" or \"programmatic\"",
                        shown(c.get_ref())
                    ),
                ));
            }
            out.class = Some(c.get_ref().clone());
        }
        if let Some(m) = &fr.meter {
            if !crate::core::limits::METERS.contains(&m.get_ref().as_str()) {
                return Err(at(
                    m.span().start,
                    format!(
                        "[[routing.rule]] meter '{}' must be one of {}",
                        shown(m.get_ref()),
                        crate::core::limits::METERS.join(", ")
                    ),
                ));
            }
            out.meter = Some(m.get_ref().clone());
        }
        if let Some(p) = &fr.project {
            if p.get_ref().trim().is_empty() {
                return Err(at(p.span().start, "[[routing.rule]] project must be a directory, not empty".into()));
            }
            out.project = Some(PathBuf::from(p.get_ref().trim_end_matches('/')).components().collect());
        }
        if let Some(reason) = &fr.reason {
            let ok = !reason.get_ref().is_empty()
                && reason.get_ref().chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_');
            if !ok {
                return Err(at(
                    reason.span().start,
                    format!(
                        "[[routing.rule]] reason '{}' must be one word (letters, digits, '-' or '_')",
                        shown(reason.get_ref())
                    ),
                ));
            }
            out.reason = Some(reason.get_ref().clone());
        }
        r.rules.push(out);
    }
    Ok(r)
}

/// `[advice]` as written → [`Advice`].
pub fn parse_advice(f: FileAdvice, at: &dyn Fn(usize, String) -> String) -> Result<Advice, String> {
    let mut a = Advice::default();
    if let Some(v) = &f.short_output_tokens {
        if *v.get_ref() < 1 {
            return Err(at(
                v.span().start,
                format!("[advice] short_output_tokens = {} must be a whole number above 0", v.get_ref()),
            ));
        }
        a.short_output_tokens = *v.get_ref() as u64;
    }
    if let Some(v) = &f.min_responses {
        if *v.get_ref() < 1 {
            return Err(at(
                v.span().start,
                format!("[advice] min_responses = {} must be a whole number above 0", v.get_ref()),
            ));
        }
        a.min_responses = *v.get_ref() as u64;
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(text: &str) -> Result<Routing, String> {
        #[derive(serde::Deserialize)]
        struct F {
            routing: FileRouting,
        }
        let f: F = toml::from_str(text).map_err(|e| e.to_string())?;
        parse_routing(f.routing, &|o, m| format!("@{o}: {m}"))
    }

    fn is_premium(m: &str) -> bool {
        matches!(crate::core::pricing::family_of(m), "opus" | "fable" | "mythos")
    }
    fn resolve(m: &str) -> String {
        match m {
            "haiku" => "claude-haiku-4-5".into(),
            "sonnet" => "claude-sonnet-4-6".into(),
            "opus" => "claude-opus-4-8".into(),
            other => other.into(),
        }
    }
    fn facts<'a>(kind: CallKind, requested: &'a str, main: Option<&'a str>, pct: Option<u32>) -> Facts<'a> {
        Facts { kind, requested, main_model: main, spent_pct: pct, premium: &is_premium, resolve: &resolve }
    }

    #[test]
    fn parses_and_defaults() {
        let r = parse("[routing]\n").unwrap();
        assert_eq!(r, Routing::default());
        assert!(!r.routes_calls() && r.downgrade_at.is_none(), "off until configured");
        assert_eq!(r.downgrade_to.get("opus").map(String::as_str), Some("sonnet"));
        let r = parse(
            "[routing]\nsubagent_model = \"haiku\"\nbackground_model = \"haiku\"\ndowngrade_at = 80\ndowngrade_to = { opus = \"claude-sonnet-4-6\" }\n[[routing.rule]]\nclass = \"programmatic\"\nmodel = \"sonnet\"\n[[routing.rule]]\nproject = \"/w/infra/\"\nmodel = \"opus\"\nreason = \"infra\"\n",
        )
        .unwrap();
        assert_eq!((r.subagent_model.as_deref(), r.downgrade_at), (Some("haiku"), Some(80)));
        assert_eq!(r.downgrade_to["opus"], "claude-sonnet-4-6");
        assert_eq!(r.downgrade_to["fable"], "opus", "the defaults stay for families not named");
        assert_eq!(r.rules.len(), 2);
        assert_eq!(r.rules[1].project.as_deref(), Some(std::path::Path::new("/w/infra")));
        assert_eq!(parse("[routing]\ndowngrade_at = 80\ndowngrade = \"off\"\n").unwrap().downgrade_at, None);
        assert_eq!(parse("[routing]\ndowngrade_at = \"off\"\n").unwrap().downgrade_at, None);
        for (bad, want) in [
            ("[routing]\ndowngrade_at = 0\n", "from 1 to 100"),
            ("[routing]\ndowngrade_at = 120\n", "from 1 to 100"),
            ("[routing]\nsubagent_model = \"\"\n", "must be a model name"),
            ("[routing]\ndowngrade = \"maybe\"\n", "\"off\" or \"on\""),
            ("[routing]\ndowngrade_to = { gpt = \"x\" }\n", "must be a model family"),
            ("[[routing.rule]]\nclass = \"programmatic\"\n", "needs model"),
            ("[[routing.rule]]\nclass = \"ci\"\nmodel = \"haiku\"\n", "\"interactive\" or \"programmatic\""),
            ("[[routing.rule]]\nmeter = \"free\"\nmodel = \"haiku\"\n", "must be one of"),
            ("[[routing.rule]]\nmodel = \"opus\"\nreason = \"two words\"\n", "one word"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(want), "{bad:?}: {e}");
        }
    }

    #[test]
    fn shown_as_it_parses() {
        let text = "[routing]\nsubagent_model = \"haiku\"\ndowngrade_at = 75\n[[routing.rule]]\nclass = \"programmatic\"\nproject = \"/w\"\nmodel = \"opus\"\nreason = \"infra\"\n";
        let r = parse(text).unwrap();
        let shown = to_toml(&r, &Advice::default());
        assert_eq!(parse(&shown).unwrap(), r, "{shown}");
        assert!(to_toml(&Routing::default(), &Advice::default()).contains("downgrade = \"off\""));
    }

    #[test]
    fn the_first_matching_rule_wins() {
        let r = parse("[[routing.rule]]\nclass = \"programmatic\"\nmeter = \"api\"\nmodel = \"haiku\"\n[[routing.rule]]\nproject = \"/w\"\nmodel = \"sonnet\"\n[[routing.rule]]\nclass = \"programmatic\"\nmodel = \"opus\"\n").unwrap();
        let p = std::path::Path::new;
        let m = |c, meter, cwd| rule_for(&r, c, meter, p(cwd)).map(|x| x.model.as_str());
        assert_eq!(m("programmatic", "api", "/w/x"), Some("haiku"));
        assert_eq!(m("programmatic", "credit-pool", "/w/x"), Some("sonnet"));
        assert_eq!(m("programmatic", "credit-pool", "/other"), Some("opus"));
        assert_eq!(m("interactive", "api", "/wx"), None, "a project is a directory, not a prefix of a name");
    }

    #[test]
    fn calls_are_told_apart() {
        let sub = json!({"model": "claude-sonnet-4-6", "tools": [{"name": "Bash"}], "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_is_subagent=true;"}]});
        assert_eq!(classify(false, &sub), CallKind::Subagent);
        assert_eq!(classify(true, &json!({"model": "claude-sonnet-4-6"})), CallKind::Subagent);
        let title = json!({"model": "claude-sonnet-4-6", "output_config": {"format": {"type": "json_schema"}}, "system": "Generate a concise, sentence-case title"});
        assert_eq!(classify(false, &title), CallKind::Background(Background::Title));
        assert_eq!(
            classify(false, &json!({"model": "claude-haiku-4-5", "tools": []})),
            CallKind::Background(Background::Haiku)
        );
        assert_eq!(
            classify(false, &json!({"model": "claude-sonnet-4-6", "tools": [{"name": "Bash"}]})),
            CallKind::Main
        );
        assert_eq!(
            classify(false, &json!({"model": "claude-haiku-4-5", "tools": [{"name": "Bash"}]})),
            CallKind::Main,
            "a session on Haiku"
        );
        let compact = json!({"model": "claude-sonnet-4-6", "tools": [{"name": "Bash"}], "messages": [
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "hi"},
                {"type": "text", "text": "CRITICAL: Respond with TEXT ONLY.\n\nYour task is to create a detailed summary of the conversation so far, paying close attention"}]}]});
        assert_eq!(classify(false, &compact), CallKind::Background(Background::Compaction));
    }

    #[test]
    fn routes_subagents_background_and_downgrades() {
        let r = Routing {
            subagent_model: Some("haiku".into()),
            background_model: Some("haiku".into()),
            downgrade_at: Some(80),
            ..Routing::default()
        };
        let to = |f: &Facts| route(&r, f).map(|x| (x.to, x.why));
        let sonnet = "claude-sonnet-4-6";
        assert_eq!(
            to(&facts(CallKind::Subagent, sonnet, Some(sonnet), None)),
            Some(("claude-haiku-4-5".into(), Why::Subagent))
        );
        assert_eq!(
            to(&facts(CallKind::Subagent, "claude-opus-4-8", Some(sonnet), None)),
            None,
            "a subagent that named its model"
        );
        assert_eq!(to(&facts(CallKind::Main, sonnet, Some(sonnet), Some(99))), None, "not premium: no downgrade");
        assert_eq!(
            to(&facts(CallKind::Background(Background::Title), sonnet, None, None)),
            Some(("claude-haiku-4-5".into(), Why::Background(Background::Title)))
        );
        assert_eq!(
            to(&facts(CallKind::Background(Background::Haiku), "claude-haiku-4-5", None, None)),
            None,
            "already there"
        );
        let compaction = CallKind::Background(Background::Compaction);
        assert_eq!(to(&facts(compaction, sonnet, Some(sonnet), None)), None, "compaction keeps its model and cache");
        let opus = "claude-opus-4-8";
        assert_eq!(to(&facts(CallKind::Main, opus, Some(opus), Some(79))), None);
        assert_eq!(
            to(&facts(CallKind::Main, opus, Some(opus), Some(80))),
            Some((sonnet.into(), Why::Downgrade { pct: 80 }))
        );
        assert_eq!(to(&facts(CallKind::Main, opus, Some(opus), None)), None, "no ceiling, no share of it");
        // Routed to a premium model and past the threshold: the downgrade wins.
        let up = Routing { subagent_model: Some("opus".into()), ..r.clone() };
        assert_eq!(
            route(&up, &facts(CallKind::Subagent, sonnet, Some(sonnet), Some(90))).map(|x| x.to),
            None,
            "opus, downgraded, is sonnet: what was asked"
        );
        let off = Routing { downgrade_at: None, ..r };
        assert_eq!(route(&off, &facts(CallKind::Main, opus, Some(opus), Some(100))), None);
    }

    #[test]
    fn rewrites_only_what_the_target_does_not_accept() {
        let mut b = json!({"model": "claude-opus-4-8", "max_tokens": 128000, "speed": "fast",
            "thinking": {"type": "adaptive"}, "output_config": {"effort": "high"}, "messages": []});
        let w = rewrite(&mut b, Some("claude-code-20250219,effort-2025-11-24"), "claude-haiku-4-5").unwrap();
        assert_eq!(w.changed, ["model", "speed", "effort", "thinking", "max_tokens"]);
        assert_eq!(b, json!({"model": "claude-haiku-4-5", "max_tokens": 64000, "messages": []}));
        let mut b = json!({"model": "claude-opus-4-8", "max_tokens": 32000, "thinking": {"type": "enabled", "budget_tokens": 40000}, "output_config": {"effort": "high"}});
        let w = rewrite(&mut b, None, "claude-sonnet-4-6").unwrap();
        assert_eq!(w.changed, ["model", "thinking.budget_tokens"]);
        assert_eq!(b["output_config"]["effort"], "high", "Sonnet takes effort");
        assert_eq!(b["thinking"]["budget_tokens"], 31999);
        let mut b = json!({"model": "claude-sonnet-4-6", "max_tokens": 1000});
        let before = b.clone();
        assert!(rewrite(&mut b, Some("context-1m-2025-08-07"), "claude-haiku-4-5").is_err());
        assert_eq!(b, before, "refused: unchanged");
        assert!(rewrite(&mut b, Some("context-1m-2025-08-07"), "claude-sonnet-4-6").is_ok());
        assert!(rewrite(&mut json!([1]), None, "claude-haiku-4-5").is_err());
        assert_eq!(betas_for("a, context-1m-2025-08-07,b", "claude-haiku-4-5"), "a,b");
    }

    #[test]
    fn notices_say_what_and_what_it_cost() {
        let n = downgrade_notice(
            80,
            "the session ceiling",
            "claude-opus-4-8",
            "claude-sonnet-4-6",
            Some((45_200, crate::core::money::Usd(169_500_000))),
        );
        assert!(
            n.starts_with("80% of the session ceiling spent: calls for claude-opus-4-8 now go to claude-sonnet-4-6"),
            "{n}"
        );
        assert!(n.contains("45.2k tokens written again for $0.1695"), "{n}");
        assert!(!downgrade_notice(80, "x", "a", "b", Some((0, crate::core::money::Usd(0)))).contains("cache"));
        assert!(downgrade_warning(80).contains("no gate"));
    }
}
