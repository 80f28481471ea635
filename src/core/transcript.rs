//! One line of a Claude Code transcript → one usage event (or nothing).
//!
//! A usage event is the same whatever its source: read from a transcript today, from a metering
//! gate or telemetry tomorrow. Nothing here reads files; `follow.rs` does.
//!
//! Facts this relies on (CLAUDE_CODE_FACTS.md): one API response is written as several lines,
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
    pub model: String,
    pub usage: Usage,
    pub mods: Modifiers,
    /// RFC 3339, as written.
    pub timestamp: Option<String>,
    pub entrypoint: Option<String>,
    pub cwd: Option<String>,
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
        usage,
        mods: Modifiers { fast: u.speed.as_deref() == Some("fast"), geo: u.inference_geo.map(Cow::into_owned) },
        timestamp: raw.timestamp.map(Cow::into_owned),
        entrypoint: raw.entrypoint.map(Cow::into_owned),
        cwd: raw.cwd.map(Cow::into_owned),
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
mod fast {
    use super::*;

    /// Fields of `Raw` and its parts as found in the line.
    #[derive(Default)]
    struct Found<'a> {
        kind: Option<Option<&'a str>>,
        request_id: Option<Option<&'a str>>,
        session_id: Option<Option<&'a str>>,
        agent_id: Option<Option<&'a str>>,
        sidechain: Option<Option<bool>>,
        timestamp: Option<Option<&'a str>>,
        entrypoint: Option<Option<&'a str>>,
        cwd: Option<Option<&'a str>>,
        api_error: Option<Option<bool>>,
        /// `message`: present and an object.
        message: Option<bool>,
        msg_id: Option<Option<&'a str>>,
        model: Option<Option<&'a str>>,
        usage: Option<bool>,
        tokens: [Option<Option<u64>>; 4],
        cache_creation: Option<bool>,
        one_hour: Option<Option<u64>>,
        server_tools: Option<bool>,
        web_search: Option<Option<u64>>,
        speed: Option<Option<&'a str>>,
        geo: Option<Option<&'a str>>,
    }

    #[derive(Clone, Copy, PartialEq)]
    enum Level {
        Top,
        Message,
        Usage,
        CacheCreation,
        ServerTools,
    }

    struct P<'a> {
        b: &'a [u8],
        i: usize,
    }

    /// serde_json's recursion limit is 128; stay well below it.
    const MAX_DEPTH: usize = 100;

    pub fn parse(line: &[u8]) -> Option<Line> {
        // Raw control characters (tabs and carriage returns too): serde's to judge.
        if has_control(line) {
            return None;
        }
        let mut p = P { b: line, i: 0 };
        let mut f = Found::default();
        p.object(Level::Top, &mut f, 1)?;
        if p.i != line.len() {
            return None;
        }
        // What parse_with_serde does with a deserialized `Raw`.
        if f.kind.flatten() != Some("assistant") || f.api_error.flatten() == Some(true) {
            return Some(Line::Other);
        }
        if f.message != Some(true) || f.usage != Some(true) {
            return Some(Line::Other);
        }
        let model = f.model.flatten().unwrap_or("");
        if model == "<synthetic>" {
            return Some(Line::Other);
        }
        if model.is_empty() {
            return None;
        }
        let t = |i: usize| f.tokens[i].flatten().unwrap_or(0);
        let usage = usage_from_api(
            t(0),
            t(1),
            t(2),
            if f.cache_creation == Some(true) { f.one_hour.flatten() } else { None },
            t(3),
            if f.server_tools == Some(true) { f.web_search.flatten() } else { None }.unwrap_or(0),
        );
        if !usage.is_plausible() {
            // Malformed: serde's reading says so the same way.
            return None;
        }
        let request_id = f.request_id.flatten();
        let agent_id = f.agent_id.flatten();
        Some(Line::Usage(Box::new(UsageEvent {
            key: key_of(f.msg_id.flatten(), request_id, line),
            request_id: request_id.filter(|r| !r.is_empty()).map(str::to_string),
            session_id: f.session_id.flatten().map(str::to_string),
            agent_id: if f.sidechain.flatten() == Some(true) || agent_id.is_some() {
                agent_id.map(str::to_string)
            } else {
                None
            },
            model: model.to_string(),
            usage,
            mods: Modifiers { fast: f.speed.flatten() == Some("fast"), geo: f.geo.flatten().map(str::to_string) },
            timestamp: f.timestamp.flatten().map(str::to_string),
            entrypoint: f.entrypoint.flatten().map(str::to_string),
            cwd: f.cwd.flatten().map(str::to_string),
            estimated: false,
        })))
    }

    /// Any byte below 0x20, eight at a time.
    fn has_control(b: &[u8]) -> bool {
        let mut chunks = b.chunks_exact(8);
        for c in &mut chunks {
            let x = u64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
            if x.wrapping_sub(0x2020_2020_2020_2020) & !x & 0x8080_8080_8080_8080 != 0 {
                return true;
            }
        }
        chunks.remainder().iter().any(|&c| c < 0x20)
    }

    /// Set a field once; a second time means a duplicate key, which serde refuses.
    fn once<T>(slot: &mut Option<T>, v: T) -> Option<()> {
        if slot.is_some() {
            return None;
        }
        *slot = Some(v);
        Some(())
    }

    impl<'a> P<'a> {
        fn ws(&mut self) {
            while let Some(b' ') = self.b.get(self.i) {
                self.i += 1;
            }
        }

        fn eat(&mut self, c: u8) -> Option<()> {
            self.ws();
            (self.b.get(self.i) == Some(&c)).then(|| self.i += 1)
        }

        fn peek(&mut self) -> Option<u8> {
            self.ws();
            self.b.get(self.i).copied()
        }

        /// A string's raw contents (between the quotes) and whether it has escapes; escapes are
        /// checked as serde checks them.
        fn string(&mut self) -> Option<(&'a [u8], bool)> {
            self.eat(b'"')?;
            let start = self.i;
            let mut escaped = false;
            loop {
                let k = memchr::memchr2(b'"', b'\\', &self.b[self.i..])?;
                self.i += k;
                if self.b[self.i] == b'"' {
                    let s = &self.b[start..self.i];
                    self.i += 1;
                    return Some((s, escaped));
                }
                escaped = true;
                match *self.b.get(self.i + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 2,
                    b'u' => {
                        let hex = self.b.get(self.i + 2..self.i + 6)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return None;
                        }
                        self.i += 6;
                    }
                    _ => return None,
                }
            }
        }

        /// A string field serde reads as text: no escapes (serde would unescape), valid UTF-8.
        fn text(&mut self) -> Option<Option<&'a str>> {
            if self.peek()? == b'n' {
                return self.null().map(|_| None);
            }
            let (s, escaped) = self.string()?;
            if escaped {
                return None;
            }
            std::str::from_utf8(s).ok().map(Some)
        }

        fn null(&mut self) -> Option<()> {
            self.literal(b"null")
        }

        fn literal(&mut self, w: &[u8]) -> Option<()> {
            self.ws();
            if self.b.get(self.i..self.i + w.len())? != w {
                return None;
            }
            self.i += w.len();
            Some(())
        }

        fn boolean(&mut self) -> Option<Option<bool>> {
            match self.peek()? {
                b't' => self.literal(b"true").map(|_| Some(true)),
                b'f' => self.literal(b"false").map(|_| Some(false)),
                b'n' => self.null().map(|_| None),
                _ => None,
            }
        }

        /// A whole number that fits u64, or null.
        fn count(&mut self) -> Option<Option<u64>> {
            if self.peek()? == b'n' {
                return self.null().map(|_| None);
            }
            let start = self.i;
            let mut v: u64 = 0;
            while let Some(d) = self.b.get(self.i).filter(|c| c.is_ascii_digit()) {
                v = v.checked_mul(10)?.checked_add((d - b'0') as u64)?;
                self.i += 1;
            }
            let digits = self.i - start;
            if digits == 0 || (digits > 1 && self.b[start] == b'0') {
                return None;
            }
            // A fraction or an exponent makes it a float: serde's to judge.
            if matches!(self.b.get(self.i), Some(b'.' | b'e' | b'E')) {
                return None;
            }
            Some(Some(v))
        }

        /// An object at one of the levels `Raw` reads, or null there.
        fn maybe_object(&mut self, level: Level, f: &mut Found<'a>, depth: usize) -> Option<bool> {
            match self.peek()? {
                b'n' => self.null().map(|_| false),
                b'{' => self.object(level, f, depth).map(|_| true),
                _ => None,
            }
        }

        fn object(&mut self, level: Level, f: &mut Found<'a>, depth: usize) -> Option<()> {
            if depth > MAX_DEPTH {
                return None;
            }
            self.eat(b'{')?;
            if self.peek()? == b'}' {
                self.i += 1;
                return Some(());
            }
            loop {
                let (key, escaped) = self.string()?;
                // serde reads these keys as text to match them against field names.
                if escaped || std::str::from_utf8(key).is_err() {
                    return None;
                }
                self.eat(b':')?;
                self.field(level, key, f, depth)?;
                match self.peek()? {
                    b',' => self.i += 1,
                    b'}' => {
                        self.i += 1;
                        return Some(());
                    }
                    _ => return None,
                }
            }
        }

        fn field(&mut self, level: Level, key: &[u8], f: &mut Found<'a>, depth: usize) -> Option<()> {
            match (level, key) {
                (Level::Top, b"type") => once(&mut f.kind, self.text()?),
                (Level::Top, b"message") => {
                    let v = self.maybe_object(Level::Message, f, depth + 1)?;
                    once(&mut f.message, v)
                }
                (Level::Top, b"requestId") => once(&mut f.request_id, self.text()?),
                (Level::Top, b"sessionId") => once(&mut f.session_id, self.text()?),
                (Level::Top, b"agentId") => once(&mut f.agent_id, self.text()?),
                (Level::Top, b"isSidechain") => once(&mut f.sidechain, self.boolean()?),
                (Level::Top, b"timestamp") => once(&mut f.timestamp, self.text()?),
                (Level::Top, b"entrypoint") => once(&mut f.entrypoint, self.text()?),
                (Level::Top, b"cwd") => once(&mut f.cwd, self.text()?),
                (Level::Top, b"isApiErrorMessage") => once(&mut f.api_error, self.boolean()?),
                (Level::Message, b"id") => once(&mut f.msg_id, self.text()?),
                (Level::Message, b"model") => once(&mut f.model, self.text()?),
                (Level::Message, b"usage") => {
                    let v = self.maybe_object(Level::Usage, f, depth + 1)?;
                    once(&mut f.usage, v)
                }
                (Level::Usage, b"input_tokens") => once(&mut f.tokens[0], self.count()?),
                (Level::Usage, b"output_tokens") => once(&mut f.tokens[1], self.count()?),
                (Level::Usage, b"cache_creation_input_tokens") => once(&mut f.tokens[2], self.count()?),
                (Level::Usage, b"cache_read_input_tokens") => once(&mut f.tokens[3], self.count()?),
                (Level::Usage, b"cache_creation") => {
                    let v = self.maybe_object(Level::CacheCreation, f, depth + 1)?;
                    once(&mut f.cache_creation, v)
                }
                (Level::Usage, b"server_tool_use") => {
                    let v = self.maybe_object(Level::ServerTools, f, depth + 1)?;
                    once(&mut f.server_tools, v)
                }
                (Level::Usage, b"speed") => once(&mut f.speed, self.text()?),
                (Level::Usage, b"inference_geo") => once(&mut f.geo, self.text()?),
                (Level::CacheCreation, b"ephemeral_1h_input_tokens") => once(&mut f.one_hour, self.count()?),
                (Level::ServerTools, b"web_search_requests") => once(&mut f.web_search, self.count()?),
                _ => self.value(depth + 1),
            }
        }

        /// Any JSON value, checked and skipped.
        fn value(&mut self, depth: usize) -> Option<()> {
            if depth > MAX_DEPTH {
                return None;
            }
            match self.peek()? {
                b'"' => self.string().map(|_| ()),
                b'{' => {
                    self.i += 1;
                    if self.peek()? == b'}' {
                        self.i += 1;
                        return Some(());
                    }
                    loop {
                        self.string()?;
                        self.eat(b':')?;
                        self.value(depth + 1)?;
                        match self.peek()? {
                            b',' => self.i += 1,
                            b'}' => {
                                self.i += 1;
                                return Some(());
                            }
                            _ => return None,
                        }
                    }
                }
                b'[' => {
                    self.i += 1;
                    if self.peek()? == b']' {
                        self.i += 1;
                        return Some(());
                    }
                    loop {
                        self.value(depth + 1)?;
                        match self.peek()? {
                            b',' => self.i += 1,
                            b']' => {
                                self.i += 1;
                                return Some(());
                            }
                            _ => return None,
                        }
                    }
                }
                b't' => self.literal(b"true"),
                b'f' => self.literal(b"false"),
                b'n' => self.null(),
                b'-' | b'0'..=b'9' => self.number(),
                _ => None,
            }
        }

        /// JSON's number grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
        fn number(&mut self) -> Option<()> {
            let b = self.b;
            let digits = |i: &mut usize| {
                let s = *i;
                while b.get(*i).is_some_and(u8::is_ascii_digit) {
                    *i += 1;
                }
                *i - s
            };
            let mut i = self.i;
            if b.get(i) == Some(&b'-') {
                i += 1;
            }
            let first = *b.get(i)?;
            let n = digits(&mut i);
            if n == 0 || (first == b'0' && n > 1) {
                return None;
            }
            if b.get(i) == Some(&b'.') {
                i += 1;
                if digits(&mut i) == 0 {
                    return None;
                }
            }
            if matches!(b.get(i), Some(b'e' | b'E')) {
                i += 1;
                if matches!(b.get(i), Some(b'+' | b'-')) {
                    i += 1;
                }
                if digits(&mut i) == 0 {
                    return None;
                }
            }
            self.i = i;
            Some(())
        }
    }
}

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
