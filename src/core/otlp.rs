//! Claude Code's telemetry, decoded: the `claude_code.api_request` events of an OTLP/HTTP (JSON)
//! logs export, with claude's own figures checked (a cost that is negative, not a number or
//! absurd is dropped; token counts are read by [`crate::core::tokens`]). The receiver that hears
//! them is [`crate::session::telemetry`].

use crate::core::pricing::Usage;
use crate::core::transcript::UsageEvent;
use serde_json::Value;

/// The most a single model call can be taken to cost. The dearest call in the embedded price
/// table (a 1M-token prompt written to the 1-hour cache and 128k tokens of output, at fast-mode
/// Opus rates of $60 and $150 per million) costs about $80; a figure above this is not claude's.
pub const MAX_CALL_COST_USD: f64 = 1_000.0;

/// One `api_request` event: claude's own figures for one call.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiRequest {
    pub event: UsageEvent,
    /// Claude's own cost for the call, in nano-dollars (from `cost_usd`).
    pub cost_nanos: Option<i64>,
    pub query_source: Option<String>,
}

/// An OTLP `AnyValue` as a string or a number.
fn any_str(v: &Value) -> Option<String> {
    if let Some(s) = v["stringValue"].as_str() {
        return Some(s.to_string());
    }
    if let Some(i) = v["intValue"].as_str() {
        return Some(i.to_string());
    }
    if let Some(i) = v["intValue"].as_i64() {
        return Some(i.to_string());
    }
    v["doubleValue"].as_f64().map(|d| d.to_string())
}

/// The `api_request` events in an OTLP logs export.
pub fn api_requests(export: &Value) -> Vec<ApiRequest> {
    let mut out = Vec::new();
    let empty = Vec::new();
    for rl in export["resourceLogs"].as_array().unwrap_or(&empty) {
        for sl in rl["scopeLogs"].as_array().unwrap_or(&empty) {
            for rec in sl["logRecords"].as_array().unwrap_or(&empty) {
                let mut attrs = std::collections::HashMap::new();
                for a in rec["attributes"].as_array().unwrap_or(&empty) {
                    if let (Some(k), Some(v)) = (a["key"].as_str(), any_str(&a["value"])) {
                        attrs.insert(k.to_string(), v);
                    }
                }
                let body = any_str(&rec["body"]).unwrap_or_default();
                let name = attrs.get("event.name").cloned().unwrap_or_default();
                if !(name == "api_request" || name == "claude_code.api_request" || body == "claude_code.api_request") {
                    continue;
                }
                // One rule for token counts everywhere (crate::core::tokens): an event with a count
                // that cannot be one is malformed, and the call is priced by the other sources.
                let counts: Vec<Option<u64>> =
                    ["input_tokens", "output_tokens", "cache_creation_tokens", "cache_read_tokens"]
                        .iter()
                        .map(|k| attrs.get(*k).map_or(Some(0), |v| crate::core::tokens::from_text(v).or_zero()))
                        .collect();
                let [Some(input), Some(output), Some(cache_write), Some(cache_read)] = counts[..] else { continue };
                let Some(request_id) = attrs.get("request_id").filter(|r| !r.is_empty()).cloned() else { continue };
                let model = attrs.get("model").cloned().unwrap_or_default();
                // Claude's cost, in nano-dollars: `cost_usd` (the double claude adds to its
                // `total_cost_usd`), else `cost_usd_micros`, which is rounded to the micro-dollar
                // per call and would drift from claude's total over a session.
                let nanos = |k: &str, nanos_per_unit: f64| {
                    let v = attrs.get(k).and_then(|v| v.parse::<f64>().ok())?;
                    plausible_cost(v * nanos_per_unit / 1e9).then(|| (v * nanos_per_unit).round() as i64)
                };
                let cost_nanos = nanos("cost_usd", 1e9).or_else(|| nanos("cost_usd_micros", 1e3));
                let usage =
                    Usage { input, output, cache_write_5m: cache_write, cache_write_1h: 0, cache_read, web_search: 0 };
                out.push(ApiRequest {
                    event: UsageEvent {
                        key: format!(":{request_id}"),
                        request_id: Some(request_id),
                        session_id: attrs.get("session.id").cloned(),
                        agent_id: None,
                        model,
                        requested_model: None,
                        usage,
                        mods: crate::core::pricing::Modifiers {
                            fast: attrs.get("speed").is_some_and(|s| s == "fast"),
                            geo: None,
                        },
                        timestamp: attrs.get("event.timestamp").cloned(),
                        entrypoint: None,
                        cwd: None,
                        git_branch: None,
                        estimated: false,
                    },
                    cost_nanos,
                    query_source: attrs.get("query_source").cloned(),
                });
            }
        }
    }
    out
}

/// A cost claude could have reported for one call: a number, not negative, not absurd. Anything
/// else is dropped and the call priced from its tokens.
fn plausible_cost(usd: f64) -> bool {
    usd.is_finite() && (0.0..=MAX_CALL_COST_USD).contains(&usd)
}

/// Does the user export telemetry already? Then ccb leaves their settings alone.
pub fn user_exports(env: &crate::core::plan::Env) -> bool {
    let on = crate::core::plan::truthy(env.get("CLAUDE_CODE_ENABLE_TELEMETRY").map(String::as_str));
    on && [
        "OTEL_LOGS_EXPORTER",
        "OTEL_METRICS_EXPORTER",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
    ]
    .iter()
    .any(|k| env.get(*k).is_some_and(|v| !v.is_empty() && v != "none"))
}

/// The `env` block that makes claude send its api_request events to `endpoint`.
pub fn settings_env(endpoint: &str) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    for (k, v) in [
        ("CLAUDE_CODE_ENABLE_TELEMETRY", "1"),
        ("OTEL_LOGS_EXPORTER", "otlp"),
        ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "http/json"),
        ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", endpoint),
        ("OTEL_LOGS_EXPORT_INTERVAL", "0"),
    ] {
        m.insert(k.into(), Value::String(v.into()));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_api_request_events() {
        let export = json!({"resourceLogs": [{"resource": {}, "scopeLogs": [{"scope": {"name": "com.anthropic.claude_code.events"}, "logRecords": [
            {"body": {"stringValue": "claude_code.api_request"}, "attributes": [
                {"key": "event.name", "value": {"stringValue": "api_request"}},
                {"key": "session.id", "value": {"stringValue": "S"}},
                {"key": "model", "value": {"stringValue": "claude-sonnet-4-6"}},
                {"key": "cost_usd", "value": {"doubleValue": 0.627}},
                {"key": "input_tokens", "value": {"stringValue": "100"}},
                {"key": "output_tokens", "value": {"intValue": "2000"}},
                {"key": "cache_read_tokens", "value": {"stringValue": "5"}},
                {"key": "cache_creation_tokens", "value": {"stringValue": "0"}},
                {"key": "request_id", "value": {"stringValue": "req_1"}},
                {"key": "query_source", "value": {"stringValue": "sdk"}}
            ]},
            {"body": {"stringValue": "claude_code.tool_result"}, "attributes": [{"key": "event.name", "value": {"stringValue": "tool_result"}}]}
        ]}]}]});
        let got = api_requests(&export);
        assert_eq!(got.len(), 1);
        let e = &got[0];
        assert_eq!(e.event.request_id.as_deref(), Some("req_1"));
        assert_eq!(e.event.key, ":req_1");
        assert_eq!(e.event.usage.output, 2000);
        assert_eq!(e.event.usage.cache_read, 5);
        assert_eq!(e.cost_nanos, Some(627_000_000));
        assert_eq!(e.query_source.as_deref(), Some("sdk"));
        assert!(api_requests(&json!({"nope": 1})).is_empty());
    }

    fn one_event(attrs: &[(&str, &str)]) -> Vec<ApiRequest> {
        let mut a = vec![
            json!({"key": "event.name", "value": {"stringValue": "api_request"}}),
            json!({"key": "request_id", "value": {"stringValue": "req_1"}}),
            json!({"key": "model", "value": {"stringValue": "claude-haiku-4-5"}}),
        ];
        a.extend(attrs.iter().map(|(k, v)| json!({"key": k, "value": {"stringValue": v}})));
        api_requests(&json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [{"attributes": a}]}]}]}))
    }

    #[test]
    fn implausible_costs_are_dropped_and_absurd_counts_make_no_event() {
        for (cost, want) in [
            ("0.5", Some(500_000_000)),
            ("0", Some(0)),
            ("1000", Some(1_000_000_000_000)),
            ("-100", None),
            ("-0.000001", None),
            ("NaN", None),
            ("inf", None),
            ("1000.01", None),
            ("1e300", None),
            ("not a number", None),
        ] {
            let got = one_event(&[("cost_usd", cost), ("input_tokens", "10")]);
            assert_eq!(got.len(), 1, "{cost}: the event still counts, priced from its tokens");
            assert_eq!(got[0].cost_nanos, want, "{cost}");
        }
        // cost_usd first (full precision); when it is implausible or missing, cost_usd_micros.
        assert_eq!(one_event(&[("cost_usd_micros", "1500"), ("cost_usd", "0.0015004")])[0].cost_nanos, Some(1_500_400));
        assert_eq!(one_event(&[("cost_usd_micros", "1500"), ("cost_usd", "-9")])[0].cost_nanos, Some(1_500_000));
        assert_eq!(one_event(&[("cost_usd_micros", "1500")])[0].cost_nanos, Some(1_500_000));
        // No response has a trillion tokens: such an event is malformed.
        assert!(one_event(&[("output_tokens", "2000000000000")]).is_empty());
        assert!(one_event(&[("output_tokens", "-5")]).is_empty(), "a negative count is not one");
        assert!(one_event(&[("output_tokens", "2.5")]).is_empty());
        assert_eq!(one_event(&[("output_tokens", "1000.0")])[0].event.usage.output, 1000);
    }

    #[test]
    fn a_users_own_exporter_is_left_alone() {
        let env = |p: &[(&str, &str)]| {
            p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<crate::core::plan::Env>()
        };
        assert!(user_exports(&env(&[("CLAUDE_CODE_ENABLE_TELEMETRY", "1"), ("OTEL_LOGS_EXPORTER", "otlp")])));
        assert!(!user_exports(&env(&[("OTEL_LOGS_EXPORTER", "otlp")])), "not enabled");
        assert!(!user_exports(&env(&[("CLAUDE_CODE_ENABLE_TELEMETRY", "1")])));
    }
}
