//! One line of a Claude Code transcript → one usage event (or nothing).
//!
//! A usage event is the same whatever its source: read from a transcript today, from a metering
//! gate or telemetry tomorrow. Nothing here reads files; `follow.rs` does.
//!
//! Facts this relies on (docs/CLAUDE_CODE_FACTS.md): one API response is written as several lines,
//! one per content block, all with the same `message.id` and `requestId` and the full final
//! usage; API errors are assistant lines with model `<synthetic>` and zero usage; lines are
//! compact JSON and some are very large.

use crate::core::pricing::{Modifiers, Usage};
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
    /// The model that served the response, and the one it is priced on.
    pub model: String,
    /// The model claude asked for, when the gate's routing served another (set by the gate
    /// alone; a transcript names only the model that answered).
    pub requested_model: Option<String>,
    pub usage: Usage,
    pub mods: Modifiers,
    /// RFC 3339, as written.
    pub timestamp: Option<String>,
    pub entrypoint: Option<String>,
    pub cwd: Option<String>,
    /// The git branch claude's working directory was on (`gitBranch`; None when empty or absent).
    pub git_branch: Option<String>,
    /// The counts are an estimate, not a response's own (a stream cut off, out of order or
    /// unreadable, read by the gate): never below what the response can have cost.
    pub estimated: bool,
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
    #[serde(rename = "gitBranch", borrow)]
    git_branch: Option<Cow<'a, str>>,
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
    #[serde(default, deserialize_with = "crate::core::tokens::de_opt")]
    input_tokens: Option<u64>,
    #[serde(default, deserialize_with = "crate::core::tokens::de_opt")]
    output_tokens: Option<u64>,
    #[serde(default, deserialize_with = "crate::core::tokens::de_opt")]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default, deserialize_with = "crate::core::tokens::de_opt")]
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
    #[serde(default, deserialize_with = "crate::core::tokens::de_opt")]
    ephemeral_1h_input_tokens: Option<u64>,
}

#[derive(Deserialize, Default)]
struct RawServerTools {
    #[serde(default, deserialize_with = "crate::core::tokens::de_opt")]
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
    if let Some(fast) = fast::parse(trimmed) {
        return fast;
    }
    parse_with_serde(trimmed)
}

/// The reference reading of a line with usage: serde, every rule of JSON checked.
fn parse_with_serde(trimmed: &[u8]) -> Line {
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
    if !usage.is_plausible() {
        return Line::Malformed;
    }
    let key = key_of(msg.id.as_deref(), raw.request_id.as_deref(), trimmed);
    Line::Usage(Box::new(UsageEvent {
        key,
        request_id: raw.request_id.filter(|r| !r.is_empty()).map(Cow::into_owned),
        session_id: raw.session_id.map(Cow::into_owned),
        agent_id: if raw.sidechain == Some(true) || raw.agent_id.is_some() {
            raw.agent_id.map(Cow::into_owned)
        } else {
            None
        },
        model: model.to_string(),
        requested_model: None,
        usage,
        mods: Modifiers { fast: u.speed.as_deref() == Some("fast"), geo: u.inference_geo.map(Cow::into_owned) },
        timestamp: raw.timestamp.map(Cow::into_owned),
        entrypoint: raw.entrypoint.map(Cow::into_owned),
        cwd: raw.cwd.map(Cow::into_owned),
        git_branch: raw.git_branch.filter(|b| !b.is_empty()).map(Cow::into_owned),
        estimated: false,
    }))
}

fn key_of(msg_id: Option<&str>, request_id: Option<&str>, trimmed: &[u8]) -> String {
    // An empty id identifies nothing: every such response would share it.
    let msg_id = msg_id.filter(|m| !m.is_empty());
    let request_id = request_id.filter(|r| !r.is_empty());
    match (msg_id, request_id) {
        (Some(m), Some(r)) => format!("{m}:{r}"),
        (Some(m), None) => m.to_string(),
        (None, Some(r)) => format!(":{r}"),
        // No id at all: unique by content, so identical repeated lines still count once.
        (None, None) => format!("line:{:016x}", fnv1a(trimmed)),
    }
}

/// A faster reading of the lines Claude Code writes, for the reports over whole histories.
///
/// It answers only when it is sure to give serde's answer: the line is one JSON object, valid
/// by every rule serde applies (strings without raw control characters and with valid escapes,
/// numbers of JSON's grammar, nesting under serde's limit, nothing after the object), and every
/// field `Raw` reads has the plain shape Claude Code writes (a string without escapes, a whole
/// number that fits, a boolean, an object, or null) and appears once. Anything else, a malformed
/// line included, returns `None` and goes to serde. Strings are skipped with `memchr`, which is
/// what makes it several times faster than a full deserialization on lines of long text.
mod fast;

/// A response's identity as 64 bits: the dedupe sets of reports hold these, not the strings.
pub fn key_hash(key: &str) -> u64 {
    // One response is one request: the gate and the transcript know it as
    // `message.id:requestId`, telemetry as `:requestId`. Hash the request id when there is one,
    // so every source's record of a response is the same identity.
    let id = match key.rsplit_once(':') {
        Some((_, req)) if !req.is_empty() => req,
        _ => key,
    };
    fnv1a(id.as_bytes())
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

    /// `gitBranch` is the branch a response was made on (reports split and filter by it); an
    /// empty one (not in a repository) is none, by both readings.
    #[test]
    fn the_branch_is_read_and_an_empty_one_is_none() {
        let Line::Usage(e) = parse_line(MAIN.as_bytes()) else { panic!() };
        assert_eq!(e.git_branch, None);
        let l = MAIN.replace(r#""gitBranch":"""#, r#""gitBranch":"feat/x""#);
        let Line::Usage(e) = parse_line(l.as_bytes()) else { panic!() };
        assert_eq!(e.git_branch.as_deref(), Some("feat/x"));
        assert_eq!(parse_with_serde(l.as_bytes()), Line::Usage(e), "serde reads it alike");
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

    /// The fast reading answers for the lines Claude Code writes, and whenever it answers, it
    /// gives serde's answer: on real shapes, every cut, and every position hit by each byte that
    /// matters to JSON.
    #[test]
    fn the_fast_reading_agrees_with_serde_wherever_it_answers() {
        let big = MAIN.replace(
            r#""text":"hi \"usage\"""#,
            &format!(r#""text":"{}""#, "fn main() {\\n    crate::out!(\\\"hi\\\");\\n} \\u00e9 é 日本 ".repeat(20)),
        );
        let sub = MAIN.replace(r#""isSidechain":false"#, r#""isSidechain":true,"agentId":"a7""#);
        let error = MAIN.replace(r#""type":"assistant""#, r#""type":"assistant","isApiErrorMessage":true"#);
        let nulls = MAIN.replace(r#""cache_creation":{"#, r#""cache_creation":null,"x":{"#);
        let user = r#"{"type":"user","toolUseResult":{"usage":{"input_tokens":5}},"message":{"role":"user","content":[1,-2.5e-3,true,false,null,{},[]]}}"#;
        let bases = [MAIN.to_string(), big, sub, error, nulls, user.to_string()];
        for b in &bases {
            assert!(fast::parse(b.as_bytes()).is_some(), "the fast reading handles {b}");
            assert_eq!(fast::parse(b.as_bytes()).unwrap(), parse_with_serde(b.as_bytes()), "{b}");
        }
        let mut answered = 0;
        let mut check = |l: &[u8]| {
            let t = l.trim_ascii();
            if t.is_empty() {
                return;
            }
            if let Some(f) = fast::parse(t) {
                answered += 1;
                assert_eq!(f, parse_with_serde(t), "{}", String::from_utf8_lossy(l));
            }
        };
        for b in &bases {
            let b = b.as_bytes();
            for cut in 0..b.len() {
                check(&b[..cut]);
                check(&b[cut..]);
            }
            for i in 0..b.len() {
                for c in [
                    b'"', b'\\', b'{', b'}', b'[', b']', b',', b':', b'0', b'1', b'-', b' ', b'\t', 1, 0xff, 0xc3,
                    b'n', b'e', b'.', b'u', b'x',
                ] {
                    let mut m = b.to_vec();
                    m[i] = c;
                    check(&m);
                    let mut ins = b.to_vec();
                    ins.insert(i, c);
                    check(&ins);
                }
            }
        }
        assert!(answered > 1000, "the fast reading answers most variants ({answered})");
        // Shapes it leaves to serde.
        for l in [
            MAIN.replace(r#""type":"assistant""#, r#""type":"assistant","type":"assistant""#),
            MAIN.replace(r#""input_tokens":10"#, r#""input_tokens":10.0"#),
            MAIN.replace(r#""input_tokens":10"#, r#""input_tokens":99999999999999999999999"#),
            MAIN.replace(r#""cwd":"/w""#, r#""cwd":"C:\\w""#),
            MAIN.replace(r#""model":"claude-sonnet-4-6""#, r#""model":"""#),
            format!("[{MAIN}]"),
        ] {
            assert_eq!(fast::parse(l.as_bytes()), None, "{l}");
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
