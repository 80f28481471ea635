//! The session plan: class, model, billing mode, payer and ceiling, decided before anything is
//! spawned, as pure functions of the claude arguments, the environment (with Claude Code's
//! settings `env` block applied over it), the settings and ccb's config.
//!
//! Over 600 lines with its tests (a third): the plan's enums, read back from the ledger, live
//! with the decisions that make them.

use crate::core::args::ClaudeFlags;
use crate::core::config::Config;
use crate::core::exit::Exit;
use crate::core::money::Usd;
use crate::core::pricing::PriceTable;
use crate::core::recorded::recorded;
use serde::Serialize;
use std::collections::BTreeMap;

/// What kind of session this is, which picks its default ceiling (`sessions.class`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Class {
    /// Claude in a terminal, with a person at it.
    Interactive,
    /// Print mode, stream-json, output not to a terminal, or the Agent SDK.
    Programmatic,
    /// A premium model (Opus's price tier or above), with an allowed `--reason`.
    OpusWithReason,
    /// ccb did not decide it: a session seen only in its transcript, whose entrypoint does not
    /// say (`unknown`).
    #[default]
    NotRecorded,
    /// A name written by a newer ccb, kept verbatim.
    Unknown(String),
}

/// Who claude's credentials bill, following Claude Code's precedence (`sessions.billing_mode`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum BillingMode {
    /// The `/login` subscription, or `CLAUDE_CODE_OAUTH_TOKEN`.
    Oauth,
    /// `ANTHROPIC_API_KEY` or `apiKeyHelper`.
    ApiKey,
    /// `ANTHROPIC_AUTH_TOKEN`.
    AuthToken,
    /// `ANTHROPIC_BASE_URL` pointing elsewhere than Anthropic: a gateway decides.
    CustomEndpoint,
    Bedrock,
    Vertex,
    Foundry,
    /// ccb did not record it: a session rebuilt by `ccb ledger repair` (`unknown`).
    #[default]
    NotRecorded,
    /// A name written by a newer ccb, kept verbatim.
    Unknown(String),
}

/// Who pays for a session's usage (`sessions.meter`, and `meter` in reports and `--by meter`).
///
/// Called `Payer`, not `Meter`: [`crate::session::meter::Meter`] is the live counter of a
/// running session, which this is not; this only says whose money or allowance the usage
/// draws on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Payer {
    /// The subscription's own interactive limits.
    Subscription,
    /// The plan's monthly dollar credit pool for programmatic use.
    CreditPool,
    /// Billed per token (API key, gateway, cloud provider).
    Api,
    /// ccb did not record it: a session seen only in its transcript, or rebuilt by
    /// `ccb ledger repair` (`unknown`).
    #[default]
    NotRecorded,
    /// A name written by a newer ccb, kept verbatim.
    Unknown(String),
}

recorded!(Class {
    Interactive => "interactive",
    Programmatic => "programmatic",
    OpusWithReason => "opus-with-reason",
    NotRecorded => "unknown",
});
recorded!(BillingMode {
    Oauth => "oauth", ApiKey => "api-key", AuthToken => "auth-token", CustomEndpoint => "custom-endpoint",
    Bedrock => "bedrock", Vertex => "vertex", Foundry => "foundry", NotRecorded => "unknown",
});
recorded!(Payer { Subscription => "subscription", CreditPool => "credit-pool", Api => "api", NotRecorded => "unknown" });

/// What happens when a premium model answers a session started without one (`/model opus`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PremiumAction {
    /// A `--reason` was given although the session needed none then: record it from the first
    /// premium answer, and let the session go on.
    RecordReason(String),
    /// No reason: tell the user, once (`opus_without_reason = "warn"`).
    Warn,
    /// No reason: stop the session (`opus_without_reason = "stop"`).
    Stop,
}

/// The premium action for a plan; `None` when premium models are allowed (the session started
/// with one, and its reason).
pub fn premium_action(plan: &Plan, policy: crate::core::config::OpusWithoutReason) -> Option<PremiumAction> {
    use crate::core::config::OpusWithoutReason;
    if plan.premium {
        return None;
    }
    Some(match (&plan.pending_reason, policy) {
        (Some(r), _) => PremiumAction::RecordReason(r.clone()),
        (None, OpusWithoutReason::Warn) => PremiumAction::Warn,
        (None, OpusWithoutReason::Stop) => PremiumAction::Stop,
    })
}

/// Where the model came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelSource {
    Flag,
    Env,
    Settings,
    CcbDefault,
    /// A `[[routing.rule]]` of ccb's config (nothing named a model).
    Routing,
}

/// The environment as claude will see it: process variables with the settings `env` block over
/// them. Only names are ever printed for secret variables.
pub type Env = BTreeMap<String, String>;

pub fn env_view(process: impl IntoIterator<Item = (String, String)>, settings: &Settings) -> Env {
    let mut env: Env = process.into_iter().collect();
    for (k, v) in &settings.env {
        env.insert(k.clone(), v.clone());
    }
    env
}

fn get<'a>(env: &'a Env, k: &str) -> Option<&'a str> {
    env.get(k).map(String::as_str).filter(|v| !v.is_empty())
}

/// Claude Code's notion of a true environment flag.
pub fn truthy(v: Option<&str>) -> bool {
    matches!(v.map(|s| s.trim().to_ascii_lowercase()).as_deref(), Some("1" | "true" | "yes" | "on"))
}

/// Billing mode, following Claude Code's precedence: cloud provider switches, then a custom
/// endpoint (a gateway decides), then `ANTHROPIC_AUTH_TOKEN`, `ANTHROPIC_API_KEY`,
/// `apiKeyHelper`, `CLAUDE_CODE_OAUTH_TOKEN`, and last the `/login` subscription.
pub fn billing_mode(env: &Env, settings: &Settings) -> BillingMode {
    if truthy(get(env, "CLAUDE_CODE_USE_BEDROCK")) {
        BillingMode::Bedrock
    } else if truthy(get(env, "CLAUDE_CODE_USE_VERTEX")) {
        BillingMode::Vertex
    } else if truthy(get(env, "CLAUDE_CODE_USE_FOUNDRY")) {
        BillingMode::Foundry
    } else if get(env, "ANTHROPIC_BASE_URL").is_some_and(|u| !is_anthropic_url(u)) {
        BillingMode::CustomEndpoint
    } else if get(env, "ANTHROPIC_AUTH_TOKEN").is_some() {
        BillingMode::AuthToken
    } else if get(env, "ANTHROPIC_API_KEY").is_some() || settings.api_key_helper {
        BillingMode::ApiKey
    } else {
        BillingMode::Oauth
    }
}

/// Is this base URL Anthropic's own API?
pub fn is_anthropic_url(url: &str) -> bool {
    let rest = url.trim().split_once("://").map(|(_, r)| r).unwrap_or(url);
    let host_port = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host_port.rsplit_once('@').map(|(_, h)| h).unwrap_or(host_port);
    let host = host.split(':').next().unwrap_or("").to_ascii_lowercase();
    host == "api.anthropic.com" || host == "anthropic.com" || host.ends_with(".anthropic.com")
}

/// Who pays: the subscription's limits or its credit pool for `/login` (OAuth) sessions, per
/// token for everything else.
pub fn payer(mode: &BillingMode, programmatic: bool) -> Payer {
    match mode {
        BillingMode::Oauth if programmatic => Payer::CreditPool,
        BillingMode::Oauth => Payer::Subscription,
        _ => Payer::Api,
    }
}

/// The model claude will use, and where that was decided. `None` when nothing names one.
pub fn model(flags: &ClaudeFlags, env: &Env, settings: &Settings) -> Option<(String, ModelSource)> {
    if let Some(m) = flags.model.as_deref().filter(|m| !m.is_empty()) {
        return Some((m.to_string(), ModelSource::Flag));
    }
    if let Some(m) = get(env, "ANTHROPIC_MODEL") {
        return Some((m.to_string(), ModelSource::Env));
    }
    settings.model.clone().map(|m| (m, ModelSource::Settings))
}

/// Is this model (an alias or a full id) premium, as claude would resolve it with this
/// environment and release: its output rate at or above `floor` (the cheapest current Opus's by
/// default, `[premium] at`). `default` counts as premium: for API keys and Max plans claude's
/// default is Opus. The resolved id is returned too, for messages.
pub fn premium(model: &str, env: &Env, prices: &PriceTable, floor: i64) -> (bool, String) {
    let m = model.trim().to_ascii_lowercase();
    let base = m.strip_suffix("[1m]").unwrap_or(&m);
    let resolved = prices.resolve(model, &|k| get(env, k).map(str::to_string));
    let premium = base == "default" || prices.is_premium(&resolved, floor);
    (premium, resolved)
}

/// Everything about the terminal and invocation the plan depends on.
#[derive(Debug, Clone, Copy, Default)]
pub struct Terminal {
    pub stdin_tty: bool,
    pub stdout_tty: bool,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub class: Class,
    pub print_mode: bool,
    pub programmatic: bool,
    pub model: Option<String>,
    pub model_source: Option<ModelSource>,
    /// `--model` ccb adds because nothing named a model.
    pub inject_model: Option<String>,
    /// The model is premium (Opus's tier or above): it needed, and has, a reason.
    pub premium: bool,
    /// The reason recorded for the session: only a premium session's.
    pub reason: Option<String>,
    /// A `--reason` given to a session that needs none: kept, and recorded only if a premium
    /// model answers later (`/model opus`).
    pub pending_reason: Option<String>,
    pub billing_mode: BillingMode,
    pub payer: Payer,
    pub ceiling: Option<Usd>,
    /// Run claude under a pseudo-terminal (stdin and stdout are terminals).
    pub pty: bool,
    /// A claude subcommand, `--help` or `--version`: run as is, nothing metered.
    pub passthrough: bool,
}

/// Decide the plan. Refusals (a premium model without an allowed reason) are `Exit` errors with
/// code 4.
#[allow(clippy::too_many_arguments)]
pub fn decide(
    flags: &ClaudeFlags,
    env: &Env,
    settings: &Settings,
    term: Terminal,
    budget: Option<Usd>,
    reason: Option<&str>,
    config: &Config,
    prices: &PriceTable,
) -> Result<Plan, Exit> {
    let mode = billing_mode(env, settings);
    let sdk = get(env, "CLAUDE_CODE_ENTRYPOINT").is_some_and(|e| e.starts_with("sdk"));
    let programmatic = flags.print || flags.stream_json_input() || !term.stdout_tty || sdk;
    let pty = term.stdin_tty && term.stdout_tty;
    if flags.passthrough {
        return Ok(Plan {
            class: if programmatic { Class::Programmatic } else { Class::Interactive },
            print_mode: flags.print,
            programmatic,
            model: None,
            model_source: None,
            inject_model: None,
            premium: false,
            reason: reason.map(str::to_string),
            pending_reason: None,
            payer: payer(&mode, programmatic),
            billing_mode: mode,
            ceiling: None,
            pty,
            passthrough: true,
        });
    }
    let (model, source, inject) = match model(flags, env, settings) {
        Some((m, s)) => (m, s, None),
        None => (config.default_model.clone(), config.default_model_from, Some(config.default_model.clone())),
    };
    let floor = prices.premium_floor(&config.premium_at);
    let (premium, resolved) = premium(&model, env, prices, floor);
    if premium {
        let allowed = config.opus_reasons.join(", ");
        let why = match source {
            ModelSource::Flag => "--model",
            ModelSource::Env => "ANTHROPIC_MODEL",
            ModelSource::Settings => "Claude Code's settings",
            ModelSource::CcbDefault => "ccb's default_model",
            ModelSource::Routing => "a [[routing.rule]]",
        };
        // The id claude will call, where the name alone does not say it (`sonnet` remapped).
        let what = if crate::core::pricing::family_of(&resolved) == crate::core::pricing::family_of(&model) {
            format!("'{}' from {why}", crate::core::human::excerpt(&model, crate::core::human::EXCERPT))
        } else {
            format!(
                "'{}' from {why}, claude's {}",
                crate::core::human::excerpt(&model, crate::core::human::EXCERPT),
                crate::core::human::excerpt(&resolved, crate::core::human::EXCERPT)
            )
        };
        match reason {
            None => {
                return Err(Exit::policy(format!(
                    "{what} is a premium model (Opus's price tier or above) and needs a reason: add --reason <{}>, or run with --model sonnet",
                    config.opus_reasons.join("|")
                )))
            }
            Some(r) if !config.opus_reasons.iter().any(|a| a == r) => {
                return Err(Exit::policy(format!(
                    "'{r}' is not an allowed reason for a premium model (allowed: {allowed}; config [opus] reasons); or run with --model sonnet"
                )))
            }
            Some(_) => {}
        }
    }
    let opus = premium;
    let (class, default_ceiling) = if opus {
        (Class::OpusWithReason, config.ceilings.opus)
    } else if programmatic {
        (Class::Programmatic, config.ceilings.programmatic)
    } else {
        (Class::Interactive, config.ceilings.interactive)
    };
    let ceiling = budget.unwrap_or(default_ceiling);
    Ok(Plan {
        class,
        print_mode: flags.print,
        programmatic,
        model: Some(model),
        model_source: Some(source),
        inject_model: inject,
        premium,
        reason: if premium { reason.map(str::to_string) } else { None },
        pending_reason: if premium { None } else { reason.map(str::to_string) },
        payer: payer(&mode, programmatic),
        billing_mode: mode,
        ceiling: Some(ceiling),
        pty,
        passthrough: false,
    })
}

/// Credential variables: their presence matters to the plan, their values are never shown.
pub const SECRET_VARS: &[&str] = &["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN"];

/// How a secret variable is shown: "set", with its last 4 characters when it is long enough that
/// they identify it without giving it away.
pub fn redact(value: &str) -> String {
    let n = value.chars().count();
    if n >= 24 {
        let tail: String = value.chars().skip(n - 4).collect();
        format!("set (…{tail})")
    } else {
        "set".to_string()
    }
}

/// What ccb needs from Claude Code's settings files (read by [`crate::session::settings`]):
/// `model`, `apiKeyHelper` and the `env` block.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Settings {
    pub model: Option<String>,
    pub api_key_helper: bool,
    pub env: BTreeMap<String, String>,
    /// The user's `statusLine` (the object from the layer that wins), for `[statusline] mode`.
    pub status_line: Option<serde_json::Value>,
}

impl Settings {
    /// Merge one settings JSON object over self (later wins; `env` merges key by key).
    pub fn merge_json(&mut self, v: &serde_json::Value) {
        let Some(obj) = v.as_object() else { return };
        if let Some(m) = obj.get("model").and_then(|m| m.as_str()).filter(|m| !m.is_empty()) {
            self.model = Some(m.to_string());
        }
        if obj.get("apiKeyHelper").and_then(|h| h.as_str()).is_some_and(|h| !h.is_empty()) {
            self.api_key_helper = true;
        }
        if let Some(sl) = obj.get("statusLine").filter(|v| v.is_object()) {
            self.status_line = Some(sl.clone());
        }
        if let Some(env) = obj.get("env").and_then(|e| e.as_object()) {
            for (k, val) in env {
                let s = match val {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Null => continue,
                    other => other.to_string(),
                };
                self.env.insert(k.clone(), s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::args::os;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }
    const TERM: Terminal = Terminal { stdin_tty: true, stdout_tty: true };

    #[test]
    fn billing_mode_follows_claude_codes_precedence() {
        let s = Settings::default();
        let helper = Settings { api_key_helper: true, ..Settings::default() };
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a Settings, BillingMode);
        let cases: &[Case] = &[
            (&[], &s, BillingMode::Oauth),
            (&[("CLAUDE_CODE_OAUTH_TOKEN", "t")], &s, BillingMode::Oauth),
            (&[("ANTHROPIC_API_KEY", "k")], &s, BillingMode::ApiKey),
            (&[], &helper, BillingMode::ApiKey),
            (&[("ANTHROPIC_API_KEY", "k"), ("CLAUDE_CODE_OAUTH_TOKEN", "t")], &s, BillingMode::ApiKey),
            (&[("ANTHROPIC_AUTH_TOKEN", "a"), ("ANTHROPIC_API_KEY", "k")], &s, BillingMode::AuthToken),
            (
                &[("ANTHROPIC_BASE_URL", "http://127.0.0.1:8080"), ("ANTHROPIC_API_KEY", "k")],
                &s,
                BillingMode::CustomEndpoint,
            ),
            (
                &[("ANTHROPIC_BASE_URL", "https://api.anthropic.com"), ("ANTHROPIC_API_KEY", "k")],
                &s,
                BillingMode::ApiKey,
            ),
            (&[("ANTHROPIC_BASE_URL", "https://api.anthropic.com.evil.io/v1")], &s, BillingMode::CustomEndpoint),
            (&[("CLAUDE_CODE_USE_BEDROCK", "1"), ("ANTHROPIC_API_KEY", "k")], &s, BillingMode::Bedrock),
            (&[("CLAUDE_CODE_USE_VERTEX", "true")], &s, BillingMode::Vertex),
            (&[("CLAUDE_CODE_USE_FOUNDRY", "yes")], &s, BillingMode::Foundry),
            (&[("CLAUDE_CODE_USE_BEDROCK", "0")], &s, BillingMode::Oauth),
            (&[("ANTHROPIC_API_KEY", "")], &s, BillingMode::Oauth),
        ];
        for (pairs, settings, want) in cases {
            assert_eq!(billing_mode(&env(pairs), settings), *want, "{pairs:?}");
        }
    }

    #[test]
    fn settings_env_block_overrides_the_process() {
        let s = Settings { env: [("ANTHROPIC_API_KEY".to_string(), "k".to_string())].into(), ..Settings::default() };
        let e = env_view([("CLAUDE_CODE_OAUTH_TOKEN".to_string(), "t".to_string())], &s);
        assert_eq!(billing_mode(&e, &s), BillingMode::ApiKey);
    }

    #[test]
    fn payers() {
        assert_eq!(payer(&BillingMode::Oauth, false), Payer::Subscription);
        assert_eq!(payer(&BillingMode::Oauth, true), Payer::CreditPool);
        for m in [
            BillingMode::ApiKey,
            BillingMode::AuthToken,
            BillingMode::CustomEndpoint,
            BillingMode::Bedrock,
            BillingMode::Vertex,
            BillingMode::Foundry,
        ] {
            assert_eq!(payer(&m, true), Payer::Api);
            assert_eq!(payer(&m, false), Payer::Api);
        }
    }

    #[test]
    fn premium_is_by_price_under_every_name() {
        for (release, _) in crate::core::pricing::RELEASES {
            let t = PriceTable::release(Some(release)).unwrap();
            let floor = t.premium_floor("opus");
            let e = Env::new();
            for m in [
                "opus",
                "opus[1m]",
                "Opus",
                "opusplan",
                "best",
                "default",
                "claude-opus-4-7",
                "claude-opus-4-8[1m]",
                "us.anthropic.claude-opus-4-1-20250805-v1:0",
                "claude-fable-5",
                "claude-mythos-5",
                "claude-opus-9-9",
                "gpt-7",
            ] {
                assert!(premium(m, &e, &t, floor).0, "{release}: {m}");
            }
            for m in
                ["sonnet", "sonnet[1m]", "haiku", "claude-sonnet-4-5-20250929", "claude-haiku-4-5", "claude-sonnet-9"]
            {
                assert!(!premium(m, &e, &t, floor).0, "{release}: {m}");
            }
            let remap = env(&[("ANTHROPIC_DEFAULT_SONNET_MODEL", "claude-opus-4-8")]);
            assert_eq!(
                premium("sonnet", &remap, &t, floor),
                (true, "claude-opus-4-8".into()),
                "an alias remapped to Opus"
            );
            let down = env(&[("ANTHROPIC_DEFAULT_OPUS_MODEL", "claude-sonnet-4-6")]);
            assert!(!premium("opus", &down, &t, floor).0, "{release}: `opus` pointed at Sonnet costs Sonnet's price");
            // The tier is configurable.
            let sonnet = t.premium_floor("sonnet");
            assert!(premium("sonnet", &e, &t, sonnet).0 && !premium("haiku", &e, &t, sonnet).0);
            let fable = t.premium_floor("fable");
            assert!(premium("claude-fable-5", &e, &t, fable).0 && !premium("claude-opus-4-8", &e, &t, fable).0);
        }
    }

    #[test]
    fn model_resolution_order() {
        let s = Settings { model: Some("haiku".into()), ..Settings::default() };
        let e = env(&[("ANTHROPIC_MODEL", "claude-sonnet-4-6")]);
        let flag = ClaudeFlags::parse(&os(&["--model", "opus"]));
        let none = ClaudeFlags::default();
        assert_eq!(model(&flag, &e, &s), Some(("opus".into(), ModelSource::Flag)));
        assert_eq!(model(&none, &e, &s), Some(("claude-sonnet-4-6".into(), ModelSource::Env)));
        assert_eq!(model(&none, &Env::new(), &s), Some(("haiku".into(), ModelSource::Settings)));
        assert_eq!(model(&none, &Env::new(), &Settings::default()), None);
    }

    fn plan(args: &[&str], e: &[(&str, &str)], term: Terminal, reason: Option<&str>) -> Result<Plan, Exit> {
        let flags = ClaudeFlags::parse(&os(args));
        decide(
            &flags,
            &env(e),
            &Settings::default(),
            term,
            None,
            reason,
            &Config::default(),
            &PriceTable::newest().unwrap(),
        )
    }

    #[test]
    fn classes() {
        let pipe = Terminal { stdin_tty: false, stdout_tty: false };
        type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], Terminal, Class, bool);
        let cases: &[Case] = &[
            (&[], &[], TERM, Class::Interactive, true),
            (&["-p", "hi"], &[], TERM, Class::Programmatic, true),
            (&["--print", "hi"], &[], pipe, Class::Programmatic, false),
            (&["hi"], &[], Terminal { stdin_tty: true, stdout_tty: false }, Class::Programmatic, false),
            (&["--input-format", "stream-json"], &[], TERM, Class::Programmatic, true),
            (&[], &[("CLAUDE_CODE_ENTRYPOINT", "sdk-ts")], TERM, Class::Programmatic, true),
        ];
        for (args, e, term, class, pty) in cases {
            let p = plan(args, e, *term, None).unwrap();
            assert_eq!(p.class, *class, "{args:?} {e:?}");
            assert_eq!(p.pty, *pty, "{args:?}");
        }
    }

    #[test]
    fn default_model_is_injected_only_when_nothing_names_one() {
        let p = plan(&["-p", "x"], &[], TERM, None).unwrap();
        assert_eq!(p.inject_model.as_deref(), Some("sonnet"));
        assert_eq!(p.model_source, Some(ModelSource::CcbDefault));
        let p = plan(&["-p", "x"], &[("ANTHROPIC_MODEL", "haiku")], TERM, None).unwrap();
        assert_eq!(p.inject_model, None);
    }

    #[test]
    fn opus_needs_an_allowed_reason() {
        let e = plan(&["--model", "opus"], &[], TERM, None).unwrap_err();
        assert_eq!(e.code, crate::core::exit::POLICY);
        assert!(
            e.message.contains("--reason <auth|infra|payments>") && e.message.contains("--model sonnet"),
            "{}",
            e.message
        );
        let e = plan(&["--model", "opus"], &[], TERM, Some("fun")).unwrap_err();
        assert_eq!(e.code, crate::core::exit::POLICY);
        assert!(e.message.contains("'fun' is not an allowed"), "{}", e.message);
        let p =
            plan(&["--model", "claude-opus-4-7", "-p", "x"], &[("CLAUDE_CODE_OAUTH_TOKEN", "t")], TERM, Some("infra"))
                .unwrap();
        assert_eq!(p.class, Class::OpusWithReason);
        assert_eq!(p.payer, Payer::CreditPool);
        assert_eq!(p.ceiling, Some(Config::default().ceilings.opus));
        let e = plan(&[], &[("ANTHROPIC_MODEL", "opus")], TERM, None).unwrap_err();
        assert!(e.message.contains("from ANTHROPIC_MODEL"), "{}", e.message);
        // Dearer than Opus needs one too; a reason on a session that needs none is only kept.
        assert!(plan(&["--model", "claude-fable-5", "-p", "x"], &[], TERM, None).is_err());
        let p = plan(&["--model", "sonnet", "-p", "x"], &[], TERM, Some("infra")).unwrap();
        assert_eq!((p.reason, p.pending_reason.as_deref(), p.class), (None, Some("infra"), Class::Programmatic));
    }

    #[test]
    fn ceilings_by_class_and_budget() {
        let c = Config::default();
        assert_eq!(plan(&[], &[], TERM, None).unwrap().ceiling, Some(c.ceilings.interactive));
        assert_eq!(plan(&["-p", "x"], &[], TERM, None).unwrap().ceiling, Some(c.ceilings.programmatic));
        let flags = ClaudeFlags::parse(&os(&["-p"]));
        let t = PriceTable::newest().unwrap();
        let p = decide(&flags, &Env::new(), &Settings::default(), TERM, Some(Usd(42)), None, &c, &t).unwrap();
        assert_eq!(p.ceiling, Some(Usd(42)));
    }

    #[test]
    fn passthrough_is_not_metered_or_refused() {
        let p = plan(&["--model", "opus", "--version"], &[], TERM, None).unwrap();
        assert!(p.passthrough);
        assert_eq!(p.ceiling, None);
    }

    #[test]
    fn recorded_names_round_trip_and_keep_names_from_the_future() {
        let classes = [
            (Class::Interactive, "interactive"),
            (Class::Programmatic, "programmatic"),
            (Class::OpusWithReason, "opus-with-reason"),
            (Class::NotRecorded, "unknown"),
            (Class::Unknown("something-new".into()), "something-new"),
        ];
        for (c, name) in &classes {
            assert_eq!((c.as_str(), c.to_string()), (*name, name.to_string()));
            assert_eq!(Class::parse(name), *c);
            assert_eq!(serde_json::to_value(c).unwrap(), serde_json::json!(name));
        }
        assert_eq!(Class::KNOWN.len() + 1, classes.len());
        let modes = [
            (BillingMode::Oauth, "oauth"),
            (BillingMode::ApiKey, "api-key"),
            (BillingMode::AuthToken, "auth-token"),
            (BillingMode::CustomEndpoint, "custom-endpoint"),
            (BillingMode::Bedrock, "bedrock"),
            (BillingMode::Vertex, "vertex"),
            (BillingMode::Foundry, "foundry"),
            (BillingMode::NotRecorded, "unknown"),
            (BillingMode::Unknown("something-new".into()), "something-new"),
        ];
        for (m, name) in &modes {
            assert_eq!((m.as_str(), m.to_string()), (*name, name.to_string()));
            assert_eq!(BillingMode::parse(name), *m);
            assert_eq!(serde_json::to_value(m).unwrap(), serde_json::json!(name));
        }
        assert_eq!(BillingMode::KNOWN.len() + 1, modes.len());
        let payers = [
            (Payer::Subscription, "subscription"),
            (Payer::CreditPool, "credit-pool"),
            (Payer::Api, "api"),
            (Payer::NotRecorded, "unknown"),
            (Payer::Unknown("something-new".into()), "something-new"),
        ];
        for (p, name) in &payers {
            assert_eq!((p.as_str(), p.to_string()), (*name, name.to_string()));
            assert_eq!(Payer::parse(name), *p);
            assert_eq!(serde_json::to_value(p).unwrap(), serde_json::json!(name));
        }
        assert_eq!(Payer::KNOWN.len() + 1, payers.len());
        // What ccb stores for a value it did not record is what a default row holds.
        assert_eq!(
            (Class::default(), BillingMode::default(), Payer::default()),
            (Class::NotRecorded, BillingMode::NotRecorded, Payer::NotRecorded)
        );
    }

    #[test]
    fn premium_actions() {
        use crate::core::config::OpusWithoutReason::{Stop, Warn};
        let sonnet = plan(&["-p", "x"], &[], TERM, None).unwrap();
        let kept = plan(&["-p", "x"], &[], TERM, Some("infra")).unwrap();
        let opus = plan(&["--model", "opus", "-p", "x"], &[], TERM, Some("infra")).unwrap();
        let cases = [
            (&sonnet, Warn, Some(PremiumAction::Warn)),
            (&sonnet, Stop, Some(PremiumAction::Stop)),
            (&kept, Warn, Some(PremiumAction::RecordReason("infra".into()))),
            (&kept, Stop, Some(PremiumAction::RecordReason("infra".into()))),
            (&opus, Stop, None),
        ];
        for (p, policy, want) in cases {
            assert_eq!(premium_action(p, policy), want, "{:?} {policy:?}", p.pending_reason);
        }
    }

    #[test]
    fn redaction_never_shows_a_short_secret() {
        assert_eq!(redact("sk-short"), "set");
        assert_eq!(redact("sk-ant-api03-abcdefghijklmnopqrstuvwxyz"), "set (…wxyz)");
    }
}
