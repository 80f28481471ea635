//! One line of a Claude Code transcript → one usage event (or nothing).
//!
//! A usage event is the same whatever its source: read from a transcript today, from a metering
//! gate or telemetry tomorrow. Nothing here reads files; `follow.rs` does.
//!
//! Facts this relies on (CLAUDE_CODE_FACTS.md): one API response is written as several lines,
//! one per content block, all with the same `message.id` and `requestId` and the full final
//! usage; API errors are assistant lines with model `<synthetic>` and zero usage; lines are
//! compact JSON and some are very large.

use crate::pricing::{Modifiers, Usage};
use serde::Deserialize;
use std::borrow::Cow;

/// One priced-to-be API response, from any source.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageEvent {
    /// Counts the response once across lines and sources: `message.id:requestId`.
    pub key: String,
    pub request_id: Option<String>,
    pub session_id: Option<String>,
    /// Set for a subagent's response.
    pub agent_id: Option<String>,
    pub model: String,
    pub usage: Usage,
    pub mods: Modifiers,
    /// RFC 3339, as written.
    pub timestamp: Option<String>,
    pub entrypoint: Option<String>,
    pub cwd: Option<String>,
}

#[derive(Debug, PartialEq)]
pub enum Line {
    Usage(Box<UsageEvent>),
    /// A valid line with nothing to price (a user turn, a tool result, an API error line, …).
    Other,
    /// Not JSON, or a usage line of the wrong shape: skipped and counted.
    Malformed,
}

#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    message: Option<RawMessage<'a>>,
    #[serde(rename = "requestId", borrow)]
    request_id: Option<Cow<'a, str>>,
    #[serde(rename = "sessionId", borrow)]
    session_id: Option<Cow<'a, str>>,
    #[serde(rename = "agentId", borrow)]
    agent_id: Option<Cow<'a, str>>,
    #[serde(rename = "isSidechain")]
    sidechain: Option<bool>,
    #[serde(borrow)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(borrow)]
    entrypoint: Option<Cow<'a, str>>,
    #[serde(borrow)]
    cwd: Option<Cow<'a, str>>,
    #[serde(rename = "isApiErrorMessage")]
    api_error: Option<bool>,
}

#[derive(Deserialize)]
struct RawMessage<'a> {
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    usage: Option<RawUsage<'a>>,
}

#[derive(Deserialize, Default)]
struct RawUsage<'a> {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    cache_creation: Option<RawCacheCreation>,
    #[serde(default)]
    server_tool_use: Option<RawServerTools>,
    #[serde(default, borrow)]
    speed: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    inference_geo: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
struct RawCacheCreation {
    #[serde(default)]
    ephemeral_1h_input_tokens: Option<u64>,
}

#[derive(Deserialize, Default)]
struct RawServerTools {
    #[serde(default)]
    web_search_requests: Option<u64>,
}

/// Token counts from an API `usage` object, as Claude Code prices them: every cache write that is
/// not a 1-hour write is a 5-minute write.
pub fn usage_from_api(
    input: u64,
    output: u64,
    cache_creation: u64,
    cache_1h: Option<u64>,
    cache_read: u64,
    web_search: u64,
) -> Usage {
    let h = cache_1h.unwrap_or(0).min(cache_creation);
    Usage { input, output, cache_write_5m: cache_creation - h, cache_write_1h: h, cache_read, web_search }
}

const USAGE_NEEDLE: &[u8] = b"\"usage\"";

/// Parse one line (without its newline).
pub fn parse_line(line: &[u8]) -> Line {
    let trimmed = line.trim_ascii();
    if trimmed.is_empty() {
        return Line::Other;
    }
    // Most lines (user turns, tool results, file contents) carry no usage: a substring test is far
    // cheaper than parsing them. They still have to look like one JSON object.
    if memchr::memmem::find(trimmed, USAGE_NEEDLE).is_none() {
        return if trimmed.first() == Some(&b'{') && trimmed.last() == Some(&b'}') {
            Line::Other
        } else {
            Line::Malformed
        };
    }
    let raw: Raw = match serde_json::from_slice(trimmed) {
        Ok(r) => r,
        Err(_) => return Line::Malformed,
    };
    if raw.kind.as_deref() != Some("assistant") || raw.api_error == Some(true) {
        return Line::Other;
    }
    let Some(msg) = raw.message else {
        return Line::Other;
    };
    let Some(u) = msg.usage else {
        return Line::Other;
    };
    let model = msg.model.as_deref().unwrap_or("");
    if model == "<synthetic>" {
        return Line::Other;
    }
    if model.is_empty() {
        return Line::Malformed;
    }
    let usage = usage_from_api(
        u.input_tokens.unwrap_or(0),
        u.output_tokens.unwrap_or(0),
        u.cache_creation_input_tokens.unwrap_or(0),
        u.cache_creation.and_then(|c| c.ephemeral_1h_input_tokens),
        u.cache_read_input_tokens.unwrap_or(0),
        u.server_tool_use.and_then(|s| s.web_search_requests).unwrap_or(0),
    );
    let key = match (msg.id.as_deref(), raw.request_id.as_deref()) {
        (Some(m), Some(r)) => format!("{m}:{r}"),
        (Some(m), None) => m.to_string(),
        (None, Some(r)) => format!(":{r}"),
        // No id at all: unique by content, so identical repeated lines still count once.
        (None, None) => format!("line:{:016x}", fnv1a(trimmed)),
    };
    Line::Usage(Box::new(UsageEvent {
        key,
        request_id: raw.request_id.map(Cow::into_owned),
        session_id: raw.session_id.map(Cow::into_owned),
        agent_id: if raw.sidechain == Some(true) || raw.agent_id.is_some() {
            raw.agent_id.map(Cow::into_owned)
        } else {
            None
        },
        model: model.to_string(),
        usage,
        mods: Modifiers { fast: u.speed.as_deref() == Some("fast"), geo: u.inference_geo.map(Cow::into_owned) },
        timestamp: raw.timestamp.map(Cow::into_owned),
        entrypoint: raw.entrypoint.map(Cow::into_owned),
        cwd: raw.cwd.map(Cow::into_owned),
    }))
}

/// A response's identity as 64 bits: the dedupe sets of reports hold these, not the strings.
pub fn key_hash(key: &str) -> u64 {
    fnv1a(key.as_bytes())
}

fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf29ce484222325u64, |h, &x| (h ^ x as u64).wrapping_mul(0x100000001b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIN: &str = r#"{"parentUuid":"a","isSidechain":false,"userType":"external","cwd":"/w","sessionId":"s1","version":"2.1.197","gitBranch":"","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-6","content":[{"type":"text","text":"hi \"usage\""}],"stop_reason":"end_turn","usage":{"input_tokens":10,"cache_creation_input_tokens":300,"cache_read_input_tokens":40,"cache_creation":{"ephemeral_5m_input_tokens":100,"ephemeral_1h_input_tokens":200},"output_tokens":5,"service_tier":"standard","server_tool_use":{"web_search_requests":2},"speed":"fast","inference_geo":"us"}},"requestId":"req_1","type":"assistant","uuid":"u1","timestamp":"2026-11-20T10:00:00.000Z","entrypoint":"sdk-cli"}"#;

    #[test]
    fn reads_a_main_thread_response() {
        let Line::Usage(e) = parse_line(MAIN.as_bytes()) else { panic!("not usage") };
        assert_eq!(e.key, "msg_1:req_1");
        assert_eq!(e.model, "claude-sonnet-4-6");
        assert_eq!(e.session_id.as_deref(), Some("s1"));
        assert_eq!(e.agent_id, None);
        assert_eq!(
            e.usage,
            Usage { input: 10, output: 5, cache_write_5m: 100, cache_write_1h: 200, cache_read: 40, web_search: 2 }
        );
        assert!(e.mods.fast);
        assert_eq!(e.mods.geo.as_deref(), Some("us"));
        assert_eq!(e.entrypoint.as_deref(), Some("sdk-cli"));
        assert_eq!(e.timestamp.as_deref(), Some("2026-11-20T10:00:00.000Z"));
    }

    #[test]
    fn subagent_lines_carry_their_agent() {
        let l = MAIN.replace(r#""isSidechain":false"#, r#""isSidechain":true,"agentId":"a7""#);
        let Line::Usage(e) = parse_line(l.as_bytes()) else { panic!() };
        assert_eq!(e.agent_id.as_deref(), Some("a7"));
    }

    #[test]
    fn cache_writes_without_a_split_are_5_minute() {
        let l =
            MAIN.replace(r#""cache_creation":{"ephemeral_5m_input_tokens":100,"ephemeral_1h_input_tokens":200},"#, "");
        let Line::Usage(e) = parse_line(l.as_bytes()) else { panic!() };
        assert_eq!((e.usage.cache_write_5m, e.usage.cache_write_1h), (300, 0));
        // A 1-hour figure larger than the total is clamped, as Claude Code does.
        assert_eq!(usage_from_api(0, 0, 10, Some(50), 0, 0).cache_write_1h, 10);
    }

    #[test]
    fn what_is_not_a_priced_response() {
        let cases = [
            r#"{"type":"user","message":{"role":"user","content":"hi"}}"#,
            r#"{"type":"summary","summary":"x"}"#,
            &MAIN.replace("claude-sonnet-4-6", "<synthetic>"),
            &MAIN.replace(r#""type":"assistant""#, r#""type":"assistant","isApiErrorMessage":true"#),
            r#"{"type":"user","toolUseResult":{"usage":{"input_tokens":5}},"message":{"role":"user"}}"#,
            "",
        ];
        for c in cases {
            assert_eq!(parse_line(c.as_bytes()), Line::Other, "{c}");
        }
    }

    #[test]
    fn malformed_lines_are_flagged_not_fatal() {
        for c in [
            &MAIN[..MAIN.len() / 2],
            "not json",
            "{\"usage\": 12",
            "\u{fffd}\u{fffd}",
            r#"{"type":"assistant","message":{"usage":{"input_tokens":"many"}}}"#,
        ] {
            assert_eq!(parse_line(c.as_bytes()), Line::Malformed, "{c}");
        }
        assert_eq!(parse_line(&[0xff, 0xfe, b'{']), Line::Malformed);
    }
}
