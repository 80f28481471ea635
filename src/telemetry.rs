//! The telemetry feed: a loopback OTLP/HTTP (JSON) logs receiver for Claude Code's
//! `claude_code.api_request` events, which arrive 10–25 ms after each response ends, before
//! claude's next request, in every billing mode (cloud providers included).
//!
//! It answers every export at once, with TCP_NODELAY: claude sends exports one at a time over one
//! keep-alive connection, so a slow answer would delay every later event and claude's exit.

use crate::pricing::Usage;
use crate::transcript::UsageEvent;
use serde_json::Value;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};

pub struct Receiver {
    pub port: u16,
    listener: Option<TcpListener>,
}

/// One `api_request` event: claude's own figures for one call.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiRequest {
    pub event: UsageEvent,
    /// Claude's own cost for the call, in nano-dollars (from `cost_usd`).
    pub cost_nanos: Option<i64>,
    pub query_source: Option<String>,
}

impl Receiver {
    pub fn bind() -> io::Result<Receiver> {
        let l = TcpListener::bind("127.0.0.1:0")?;
        Ok(Receiver { port: l.local_addr()?.port(), listener: Some(l) })
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/v1/logs", self.port)
    }

    pub fn serve(&mut self, on_event: impl Fn(ApiRequest) + Send + Sync + 'static) -> io::Result<()> {
        let listener = self.listener.take().ok_or_else(|| io::Error::other("telemetry receiver already serving"))?;
        let on_event = std::sync::Arc::new(on_event);
        std::thread::Builder::new().name("ccb-telemetry".into()).spawn(move || {
            for conn in listener.incoming().flatten() {
                let on_event = on_event.clone();
                let _ = std::thread::Builder::new().name("ccb-telemetry-conn".into()).spawn(move || {
                    let _ = serve_connection(conn, &*on_event);
                });
            }
        })?;
        Ok(())
    }
}

fn serve_connection(conn: TcpStream, on_event: &dyn Fn(ApiRequest)) -> io::Result<()> {
    conn.set_nodelay(true)?;
    let mut w = conn.try_clone()?;
    let mut r = BufReader::new(conn);
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if line.trim().is_empty() {
            continue;
        }
        let mut len = 0usize;
        let mut chunked = false;
        loop {
            line.clear();
            if r.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                let k = k.trim().to_ascii_lowercase();
                if k == "content-length" {
                    len = v.trim().parse().unwrap_or(0);
                } else if k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
                    chunked = true;
                }
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                r.read_line(&mut line)?;
                let n = usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
                if n == 0 {
                    line.clear();
                    r.read_line(&mut line)?;
                    break;
                }
                let s = body.len();
                body.resize(s + n, 0);
                r.read_exact(&mut body[s..])?;
                line.clear();
                r.read_line(&mut line)?;
            }
        } else {
            body.resize(len.min(64 * 1024 * 1024), 0);
            r.read_exact(&mut body)?;
        }
        // Answer first: claude waits for it before its next export.
        w.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")?;
        w.flush()?;
        if let Ok(v) = serde_json::from_slice::<Value>(&body) {
            for e in api_requests(&v) {
                on_event(e);
            }
        }
    }
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
                let n =
                    |k: &str| attrs.get(k).and_then(|v| v.parse::<f64>().ok()).map(|f| f.max(0.0) as u64).unwrap_or(0);
                let Some(request_id) = attrs.get("request_id").filter(|r| !r.is_empty()).cloned() else { continue };
                let model = attrs.get("model").cloned().unwrap_or_default();
                let cost_nanos = attrs
                    .get("cost_usd_micros")
                    .and_then(|v| v.parse::<f64>().ok())
                    .map(|m| (m * 1000.0).round() as i64)
                    .or_else(|| {
                        attrs.get("cost_usd").and_then(|v| v.parse::<f64>().ok()).map(|d| (d * 1e9).round() as i64)
                    });
                let usage = Usage {
                    input: n("input_tokens"),
                    output: n("output_tokens"),
                    cache_write_5m: n("cache_creation_tokens"),
                    cache_write_1h: 0,
                    cache_read: n("cache_read_tokens"),
                    web_search: 0,
                };
                out.push(ApiRequest {
                    event: UsageEvent {
                        key: format!(":{request_id}"),
                        request_id: Some(request_id),
                        session_id: attrs.get("session.id").cloned(),
                        agent_id: None,
                        model,
                        usage,
                        mods: crate::pricing::Modifiers {
                            fast: attrs.get("speed").is_some_and(|s| s == "fast"),
                            geo: None,
                        },
                        timestamp: attrs.get("event.timestamp").cloned(),
                        entrypoint: None,
                        cwd: None,
                    },
                    cost_nanos,
                    query_source: attrs.get("query_source").cloned(),
                });
            }
        }
    }
    out
}

/// Does the user export telemetry already? Then ccb leaves their settings alone.
pub fn user_exports(env: &crate::plan::Env) -> bool {
    let on = crate::plan::truthy(env.get("CLAUDE_CODE_ENABLE_TELEMETRY").map(String::as_str));
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

    #[test]
    fn a_users_own_exporter_is_left_alone() {
        let env =
            |p: &[(&str, &str)]| p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<crate::plan::Env>();
        assert!(user_exports(&env(&[("CLAUDE_CODE_ENABLE_TELEMETRY", "1"), ("OTEL_LOGS_EXPORTER", "otlp")])));
        assert!(!user_exports(&env(&[("OTEL_LOGS_EXPORTER", "otlp")])), "not enabled");
        assert!(!user_exports(&env(&[("CLAUDE_CODE_ENABLE_TELEMETRY", "1")])));
    }
}
