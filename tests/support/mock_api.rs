//! A local mock of the Anthropic Messages API, good enough for the real Claude Code.
//!
//! `MockApi::start(script)` binds 127.0.0.1:0 and serves, one thread per connection,
//! HTTP/1.1 with keep-alive:
//!
//! - `HEAD /` (Claude Code's connectivity probe at start): 200.
//! - `POST /v1/messages[?beta=true]`: the script's [`Reply`], streamed as server-sent events in
//!   the shape Anthropic's API uses (or plain JSON when the request has no `"stream": true`).
//! - `POST /v1/messages/count_tokens[?beta=true]`: `{"input_tokens": N}`.
//! - anything else: 404 with an Anthropic-style error body; or, after [`MockApi::answer_all`],
//!   what Anthropic's API answers the other calls Claude Code makes on the first-party path.
//!
//! [`MockApi::start_tls`] serves HTTPS instead, on a given address (127.0.0.1:443 in a network
//! namespace where `api.anthropic.com` is 127.0.0.1), and can end its connections the way some
//! servers do ([`MockApi::set_unclean_end`]). A request body sent with `content-encoding: gzip`
//! (Claude Code 2.1.332 on the first-party path) is decoded for [`Request::body`].
//!
//! Every request is recorded (arrival time, method, path, headers, parsed body) before the
//! script sees it, so tests can count model calls and see which model was asked for.
//! A client that hangs up mid-stream only ends its connection's thread; nothing panics.

use serde_json::{json, Value};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Claude Code 2.1.197 names its subagent tool `Agent` (older releases said `Task`).
pub const SUBAGENT_TOOL_NAMES: &[&str] = &["Agent", "Task"];

/// The opening of the main loop's system prompt in `-p` mode ("You are a Claude agent, built
/// on Anthropic's Claude Agent SDK.") is shared with subagents and the title request. A
/// subagent's request carries an `x-claude-code-agent-id` header and `cc_is_subagent=true` in
/// the billing line of its system prompt, whose next block starts with this marker. The title
/// request has no tools and asks for JSON-schema output with this system prompt.
const SUBAGENT_SYSTEM_MARKER: &str = "You are an agent for Claude Code";
const TITLE_SYSTEM_MARKER: &str = "Generate a concise, sentence-case title";

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

/// One HTTP request as the mock received it.
#[derive(Clone, Debug)]
pub struct Request {
    /// Order of arrival among all requests to this mock, from 0.
    pub index: usize,
    /// When the whole request (head and body) had been read.
    pub received_at: Instant,
    /// The same moment on the wall clock (to compare with transcript timestamps).
    pub received_wall: SystemTime,
    pub method: String,
    /// Path with query, e.g. `/v1/messages?beta=true`.
    pub path: String,
    /// Header names lower-cased, values as sent, in order.
    pub headers: Vec<(String, String)>,
    pub raw_body: Vec<u8>,
    /// The body parsed as JSON; `Value::Null` when empty or not JSON.
    pub body: Value,
    /// Filled after the reply: the `request-id` header sent back (also on errors).
    pub request_id: Option<String>,
    /// Filled after the reply: the message id of a successful message reply.
    pub message_id: Option<String>,
    /// Filled after the reply: the HTTP status sent.
    pub status: Option<u16>,
    /// Filled after the reply: when the last byte of the response was written.
    pub completed_at: Option<Instant>,
    /// Filled after the reply: the client went away before the response was complete (or the
    /// reply was deliberately cut off with [`Reply::cut_after_events`]).
    pub aborted: bool,
}

/// What a request to the mock is, as far as a test cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    /// A model call of the main agent loop.
    Main,
    /// A model call made by a subagent (its own system prompt).
    Subagent,
    /// The small session-title call: no tools, JSON-schema output, a haiku model.
    Title,
    /// `POST /v1/messages/count_tokens`.
    CountTokens,
    /// `HEAD /` and anything else.
    Other,
}

/// A `tool_result` block found in a request's conversation.
#[derive(Clone, Debug)]
pub struct ToolResult {
    pub tool_use_id: String,
    /// The result's text (text blocks joined with newlines).
    pub content: String,
    pub is_error: bool,
}

/// A `tool_use` block found in a request's conversation (an earlier assistant turn).
#[derive(Clone, Debug)]
pub struct ToolUse {
    pub id: String,
    pub name: String,
    pub input: Value,
}

impl Request {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The path without its query string.
    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or("")
    }

    /// `POST /v1/messages` (with or without `?beta=true`): a model call.
    pub fn is_messages(&self) -> bool {
        self.method == "POST" && self.path_only() == "/v1/messages"
    }

    pub fn is_count_tokens(&self) -> bool {
        self.method == "POST" && self.path_only() == "/v1/messages/count_tokens"
    }

    pub fn kind(&self) -> RequestKind {
        if self.is_count_tokens() {
            return RequestKind::CountTokens;
        }
        if !self.is_messages() {
            return RequestKind::Other;
        }
        let system = self.system_text();
        let schema_output =
            self.body.pointer("/output_config/format/type").and_then(Value::as_str) == Some("json_schema");
        if self.tool_names().is_empty() && (schema_output || system.contains(TITLE_SYSTEM_MARKER)) {
            RequestKind::Title
        } else if self.agent_id().is_some()
            || system.contains("cc_is_subagent=true")
            || system.contains(SUBAGENT_SYSTEM_MARKER)
        {
            RequestKind::Subagent
        } else {
            RequestKind::Main
        }
    }

    pub fn is_main(&self) -> bool {
        self.kind() == RequestKind::Main
    }
    pub fn is_subagent(&self) -> bool {
        self.kind() == RequestKind::Subagent
    }
    pub fn is_title(&self) -> bool {
        self.kind() == RequestKind::Title
    }

    /// The `model` the request asked for.
    pub fn model(&self) -> Option<&str> {
        self.body.get("model").and_then(Value::as_str)
    }

    /// Whether the reply must be streamed (`"stream": true`).
    pub fn stream(&self) -> bool {
        self.body.get("stream").and_then(Value::as_bool).unwrap_or(false)
    }

    /// The `X-Claude-Code-Session-Id` header: the session (subagents share the parent's).
    pub fn session_id(&self) -> Option<&str> {
        self.header("x-claude-code-session-id")
    }

    /// The `x-claude-code-agent-id` header, sent only by subagents: the `<agentId>` of their
    /// `subagents/agent-<agentId>.jsonl` transcript.
    pub fn agent_id(&self) -> Option<&str> {
        self.header("x-claude-code-agent-id")
    }

    /// Names of the tools offered to the model, in order.
    pub fn tool_names(&self) -> Vec<&str> {
        self.body
            .get("tools")
            .and_then(Value::as_array)
            .map(|tools| tools.iter().filter_map(|t| t.get("name").and_then(Value::as_str)).collect())
            .unwrap_or_default()
    }

    pub fn has_tool(&self, name: &str) -> bool {
        self.tool_names().contains(&name)
    }

    /// The full definition of one offered tool (`name`, `description`, `input_schema`).
    pub fn tool(&self, name: &str) -> Option<&Value> {
        self.body
            .get("tools")
            .and_then(Value::as_array)?
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some(name))
    }

    /// The subagent tool's name if it is offered (`Agent` in 2.1.197, `Task` before).
    pub fn subagent_tool(&self) -> Option<&str> {
        let names = self.tool_names();
        SUBAGENT_TOOL_NAMES.iter().copied().find(|n| names.contains(n))
    }

    /// The system prompt's text, blocks joined with newlines.
    pub fn system_text(&self) -> String {
        match self.body.get("system") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(blocks)) => {
                blocks.iter().filter_map(|b| b.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n")
            }
            _ => String::new(),
        }
    }

    /// The conversation (`messages`), empty when absent.
    pub fn messages(&self) -> &[Value] {
        self.body.get("messages").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The text of the first user message: the prompt, or a subagent's task. Claude Code puts
    /// a `<system-reminder>` block before it, so match with `contains`.
    pub fn first_user_text(&self) -> String {
        self.messages()
            .iter()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
            .map(|m| content_text(m.get("content")))
            .unwrap_or_default()
    }

    /// Whether any message of the conversation contains `needle` in its text.
    pub fn conversation_contains(&self, needle: &str) -> bool {
        self.messages()
            .iter()
            .any(|m| content_text(m.get("content")).contains(needle) || m.to_string().contains(needle))
    }

    /// Every `tool_result` block in the conversation, oldest first.
    pub fn tool_results(&self) -> Vec<ToolResult> {
        self.messages().iter().flat_map(message_tool_results).collect()
    }

    /// The `tool_result` blocks of the last user message: non-empty when this request continues
    /// after tools ran. (Claude Code may put `role: "system"` messages after it, so this looks
    /// at the last message whose role is `user`.)
    pub fn last_tool_results(&self) -> Vec<ToolResult> {
        self.messages()
            .iter()
            .rev()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
            .map(message_tool_results)
            .unwrap_or_default()
    }

    /// Every `tool_use` block of earlier assistant turns, oldest first.
    pub fn tool_uses(&self) -> Vec<ToolUse> {
        let mut out = Vec::new();
        for m in self.messages() {
            if m.get("role").and_then(Value::as_str) != Some("assistant") {
                continue;
            }
            if let Some(blocks) = m.get("content").and_then(Value::as_array) {
                for b in blocks {
                    if b.get("type").and_then(Value::as_str) == Some("tool_use") {
                        out.push(ToolUse {
                            id: str_field(b, "id"),
                            name: str_field(b, "name"),
                            input: b.get("input").cloned().unwrap_or(Value::Null),
                        });
                    }
                }
            }
        }
        out
    }

    /// Number of assistant turns so far in this conversation.
    pub fn assistant_turns(&self) -> usize {
        self.messages().iter().filter(|m| m.get("role").and_then(Value::as_str) == Some("assistant")).count()
    }
}

fn str_field(v: &Value, k: &str) -> String {
    v.get(k).and_then(Value::as_str).unwrap_or_default().to_string()
}

/// The text of a message `content` (a string, or blocks of which the text and tool_result
/// texts are joined).
fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .map(|b| match b.get("type").and_then(Value::as_str) {
                Some("text") => str_field(b, "text"),
                Some("tool_result") => content_text(b.get("content")),
                _ => String::new(),
            })
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn message_tool_results(m: &Value) -> Vec<ToolResult> {
    let mut out = Vec::new();
    if let Some(blocks) = m.get("content").and_then(Value::as_array) {
        for b in blocks {
            if b.get("type").and_then(Value::as_str) == Some("tool_result") {
                out.push(ToolResult {
                    tool_use_id: str_field(b, "tool_use_id"),
                    content: content_text(b.get("content")),
                    is_error: b.get("is_error").and_then(Value::as_bool).unwrap_or(false),
                });
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Replies
// ---------------------------------------------------------------------------------------------

/// Token usage a reply reports. `message_start` carries the input side with `output_tokens: 1`
/// (as the real API does); `message_delta` carries the final figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// 5-minute cache writes (`cache_creation.ephemeral_5m_input_tokens`).
    pub cache_creation_5m: u64,
    /// 1-hour cache writes (`cache_creation.ephemeral_1h_input_tokens`).
    pub cache_creation_1h: u64,
    pub cache_read: u64,
    /// `usage.speed` (`"fast"` costs more); omitted when `None`.
    pub speed: Option<&'static str>,
    /// `usage.inference_geo` (e.g. `"us"`); omitted when `None`.
    pub inference_geo: Option<&'static str>,
    /// `usage.server_tool_use.web_search_requests`; omitted when 0.
    pub web_search_requests: u64,
}

impl Default for Usage {
    /// Small but non-zero, so that every reply costs something.
    fn default() -> Self {
        Usage { input_tokens: 100, output_tokens: 20, ..Usage::zero() }
    }
}

impl Usage {
    pub fn new(input_tokens: u64, output_tokens: u64) -> Self {
        Usage { input_tokens, output_tokens, ..Usage::zero() }
    }
    pub fn zero() -> Self {
        Usage {
            input_tokens: 0,
            output_tokens: 0,
            cache_creation_5m: 0,
            cache_creation_1h: 0,
            cache_read: 0,
            speed: None,
            inference_geo: None,
            web_search_requests: 0,
        }
    }
    pub fn cache_creation(mut self, five_minutes: u64, one_hour: u64) -> Self {
        self.cache_creation_5m = five_minutes;
        self.cache_creation_1h = one_hour;
        self
    }
    pub fn cache_read(mut self, tokens: u64) -> Self {
        self.cache_read = tokens;
        self
    }
    /// `speed: "fast"`.
    pub fn fast(mut self) -> Self {
        self.speed = Some("fast");
        self
    }
    pub fn inference_geo(mut self, geo: &'static str) -> Self {
        self.inference_geo = Some(geo);
        self
    }
    pub fn web_search_requests(mut self, n: u64) -> Self {
        self.web_search_requests = n;
        self
    }

    /// `cache_creation_input_tokens`: the sum of both cache-write parts.
    pub fn cache_creation_total(&self) -> u64 {
        self.cache_creation_5m + self.cache_creation_1h
    }

    /// The `usage` object as the API sends it, with `output_tokens` given.
    pub fn to_json_with_output(self, output_tokens: u64) -> Value {
        let mut v = json!({
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_creation_total(),
            "cache_read_input_tokens": self.cache_read,
            "cache_creation": {
                "ephemeral_5m_input_tokens": self.cache_creation_5m,
                "ephemeral_1h_input_tokens": self.cache_creation_1h,
            },
            "output_tokens": output_tokens,
            "service_tier": "standard",
        });
        self.add_extras(&mut v);
        v
    }

    fn add_extras(&self, v: &mut Value) {
        if let Some(speed) = self.speed {
            v["speed"] = json!(speed);
        }
        if let Some(geo) = self.inference_geo {
            v["inference_geo"] = json!(geo);
        }
        if self.web_search_requests > 0 {
            v["server_tool_use"] = json!({ "web_search_requests": self.web_search_requests });
        }
    }

    /// The final `usage` object.
    pub fn to_json(self) -> Value {
        self.to_json_with_output(self.output_tokens)
    }

    /// What this usage costs at per-million-token prices (input, 5m write, 1h write, read,
    /// output), in USD: handy to compare with `total_cost_usd`. Tokens only: no fast-mode,
    /// region or web-search charges.
    pub fn cost_usd(&self, prices: [f64; 5]) -> f64 {
        (self.input_tokens as f64 * prices[0]
            + self.cache_creation_5m as f64 * prices[1]
            + self.cache_creation_1h as f64 * prices[2]
            + self.cache_read as f64 * prices[3]
            + self.output_tokens as f64 * prices[4])
            / 1_000_000.0
    }
}

/// One content block of a reply.
#[derive(Clone, Debug)]
pub enum Block {
    Text(String),
    /// A tool call; `id` is generated (`toolu_…`) when `None`.
    ToolUse {
        id: Option<String>,
        name: String,
        input: Value,
    },
}

#[derive(Clone, Debug)]
enum ReplyBody {
    Message { blocks: Vec<Block>, stop_reason: Option<String> },
    Error { status: u16, error_type: String, message: String },
}

/// Rewrites a stream's events (name, data JSON) before they are sent.
pub type EventsHook = fn(&mut Vec<(String, String)>);

/// What the mock answers to one model call.
#[derive(Clone, Debug)]
pub struct Reply {
    body: ReplyBody,
    pub usage: Usage,
    /// Wait this long before sending anything (status line included).
    pub delay: Duration,
    /// Wait this long before each server-sent event after the first.
    pub event_delay: Duration,
    /// Extra response headers, e.g. `retry-after`.
    pub headers: Vec<(String, String)>,
    /// Close the connection after this many SSE events (a response cut off mid-stream).
    pub cut_after_events: Option<usize>,
    /// Force `model` in the reply instead of echoing the request's.
    pub model: Option<String>,
    /// Rewrite the stream's events (name, data JSON) before they are sent: a misbehaving
    /// upstream (events out of order or missing, bad JSON, odd numbers).
    pub events: Option<EventsHook>,
    /// Send the stream compressed with this `content-encoding` (gzip, deflate, br, zstd).
    pub encoding: Option<&'static str>,
}

impl Reply {
    fn with_body(body: ReplyBody) -> Self {
        Reply {
            body,
            usage: Usage::default(),
            delay: Duration::ZERO,
            event_delay: Duration::ZERO,
            headers: Vec::new(),
            cut_after_events: None,
            model: None,
            events: None,
            encoding: None,
        }
    }

    /// A text answer (`stop_reason: end_turn`).
    pub fn text(text: impl Into<String>) -> Self {
        Self::blocks(vec![Block::Text(text.into())])
    }

    /// One tool call (`stop_reason: tool_use`).
    pub fn tool_use(name: impl Into<String>, input: Value) -> Self {
        Self::blocks(vec![Block::ToolUse { id: None, name: name.into(), input }])
    }

    /// Several tool calls in one response: Claude Code runs them in parallel.
    pub fn tool_uses<N: Into<String>>(calls: impl IntoIterator<Item = (N, Value)>) -> Self {
        Self::blocks(
            calls.into_iter().map(|(name, input)| Block::ToolUse { id: None, name: name.into(), input }).collect(),
        )
    }

    /// A Bash tool call running `command`.
    pub fn bash(command: &str) -> Self {
        Self::tool_use("Bash", json!({"command": command, "description": "Run a test command"}))
    }

    /// Any mix of blocks; the stop reason is `tool_use` if there is a tool call, else `end_turn`.
    pub fn blocks(blocks: Vec<Block>) -> Self {
        Self::with_body(ReplyBody::Message { blocks, stop_reason: None })
    }

    /// The answer to the session-title request.
    pub fn title(title: &str) -> Self {
        Self::text(json!({ "title": title }).to_string())
    }

    /// An HTTP error with an Anthropic-style body:
    /// `{"type":"error","error":{"type":error_type,"message":message},"request_id":…}`.
    /// Types: 400 `invalid_request_error`, 401 `authentication_error`, 403 `permission_error`,
    /// 404 `not_found_error`, 413 `request_too_large`, 429 `rate_limit_error`, 500 `api_error`,
    /// 529 `overloaded_error`.
    pub fn error(status: u16, error_type: &str, message: &str) -> Self {
        Self::with_body(ReplyBody::Error { status, error_type: error_type.to_string(), message: message.to_string() })
    }

    pub fn with_usage(mut self, usage: Usage) -> Self {
        self.usage = usage;
        self
    }
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
    pub fn with_event_delay(mut self, delay: Duration) -> Self {
        self.event_delay = delay;
        self
    }
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
    pub fn with_stop_reason(mut self, reason: &str) -> Self {
        if let ReplyBody::Message { stop_reason, .. } = &mut self.body {
            *stop_reason = Some(reason.to_string());
        }
        self
    }
    pub fn with_model(mut self, model: &str) -> Self {
        self.model = Some(model.to_string());
        self
    }
    /// Rewrite the stream's events before they are sent.
    pub fn with_events(mut self, f: EventsHook) -> Self {
        self.events = Some(f);
        self
    }
    /// Compress the stream (`gzip`, `deflate`, `br`, `zstd`).
    pub fn with_encoding(mut self, encoding: &'static str) -> Self {
        self.encoding = Some(encoding);
        self
    }
    /// Send only the first `n` SSE events, then close the connection.
    pub fn cut_after_events(mut self, n: usize) -> Self {
        self.cut_after_events = Some(n);
        self
    }

    pub fn is_error(&self) -> bool {
        matches!(self.body, ReplyBody::Error { .. })
    }
}

// ---------------------------------------------------------------------------------------------
// Ready-made scripts
// ---------------------------------------------------------------------------------------------

/// Scripts for common cases. Each answers the title request with a title and subagents with
/// text, so only the main loop follows the described pattern.
pub mod scripts {
    use super::*;

    /// Always answer `text`.
    pub fn always_text(text: &str) -> impl Fn(&Request) -> Reply + Send + Sync + 'static {
        let text = text.to_string();
        move |req: &Request| {
            if req.is_title() {
                Reply::title("Mock session")
            } else {
                Reply::text(text.clone())
            }
        }
    }

    /// The same, each reply reporting `usage`.
    pub fn always_text_with_usage(text: &str, usage: Usage) -> impl Fn(&Request) -> Reply + Send + Sync + 'static {
        let text = text.to_string();
        move |req: &Request| {
            if req.is_title() {
                Reply::title("Mock session").with_usage(usage)
            } else {
                Reply::text(text.clone()).with_usage(usage)
            }
        }
    }

    /// A tool loop: the main loop is answered with a Bash call running `command` until the
    /// conversation holds `calls` such calls, then with the text "done". Stateless: the count
    /// is read from the conversation itself, so it is per conversation.
    pub fn bash_loop(command: &str, calls: usize) -> impl Fn(&Request) -> Reply + Send + Sync + 'static {
        bash_loop_with(command, calls, Usage::default(), Duration::ZERO)
    }

    /// [`bash_loop`] with a usage for every reply and a delay before each.
    pub fn bash_loop_with(
        command: &str,
        calls: usize,
        usage: Usage,
        delay: Duration,
    ) -> impl Fn(&Request) -> Reply + Send + Sync + 'static {
        let command = command.to_string();
        move |req: &Request| {
            let reply = match req.kind() {
                RequestKind::Title => Reply::title("Mock session"),
                RequestKind::Main if req.tool_uses().len() < calls => Reply::bash(&command),
                _ => Reply::text("done"),
            };
            reply.with_usage(usage).with_delay(delay)
        }
    }

    /// Answer every model call with the same HTTP error.
    pub fn always_error(
        status: u16,
        error_type: &str,
        message: &str,
    ) -> impl Fn(&Request) -> Reply + Send + Sync + 'static {
        let (error_type, message) = (error_type.to_string(), message.to_string());
        move |_req: &Request| Reply::error(status, &error_type, &message)
    }
}

// ---------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------

type Script = dyn Fn(&Request) -> Reply + Send + Sync + 'static;

struct Shared {
    script: Box<Script>,
    log: Mutex<Vec<Request>>,
    /// Signalled whenever a request is recorded or completed.
    changed: Condvar,
    shutdown: AtomicBool,
    /// Panics of the script, as messages (the request got a 500).
    panics: Mutex<Vec<String>>,
    /// Answer for count_tokens; 0 means "estimate from the body size".
    count_tokens: AtomicU64,
    ids: IdGen,
    /// Serve HTTPS with this configuration.
    tls: Option<Arc<rustls::ServerConfig>>,
    /// See [`MockApi::set_unclean_end`].
    unclean_end: AtomicBool,
    /// See [`MockApi::answer_all`].
    answer_all: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Unique ids across mocks and test processes: pid, start time and a counter.
struct IdGen {
    prefix: String,
    counter: AtomicU64,
}

impl IdGen {
    fn new() -> Self {
        static INSTANCE: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let n = INSTANCE.fetch_add(1, Ordering::Relaxed);
        IdGen {
            prefix: format!(
                "{:06x}{:010x}{:02x}",
                std::process::id() & 0xff_ffff,
                (nanos as u64) & 0xff_ffff_ffff,
                n & 0xff
            ),
            counter: AtomicU64::new(0),
        }
    }
    fn next(&self, kind: &str) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{kind}_mock{}{:06x}", self.prefix, n)
    }
}

/// The running mock. Stops accepting when dropped.
pub struct MockApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_thread: Option<thread::JoinHandle<()>>,
}

impl MockApi {
    /// Start a mock on 127.0.0.1 with an ephemeral port; `script` decides each model reply.
    pub fn start<F>(script: F) -> MockApi
    where
        F: Fn(&Request) -> Reply + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").expect("mock API: bind 127.0.0.1:0");
        Self::serve(listener, None, script)
    }

    /// An HTTPS mock on `addr` (e.g. `127.0.0.1:443`) with this TLS configuration.
    pub fn start_tls<F>(addr: &str, tls: Arc<rustls::ServerConfig>, script: F) -> MockApi
    where
        F: Fn(&Request) -> Reply + Send + Sync + 'static,
    {
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("mock API: bind {addr}: {e}"));
        Self::serve(listener, Some(tls), script)
    }

    fn serve<F>(listener: TcpListener, tls: Option<Arc<rustls::ServerConfig>>, script: F) -> MockApi
    where
        F: Fn(&Request) -> Reply + Send + Sync + 'static,
    {
        let addr = listener.local_addr().expect("mock API: local_addr");
        let shared = Arc::new(Shared {
            script: Box::new(script),
            log: Mutex::new(Vec::new()),
            changed: Condvar::new(),
            shutdown: AtomicBool::new(false),
            panics: Mutex::new(Vec::new()),
            count_tokens: AtomicU64::new(0),
            ids: IdGen::new(),
            tls,
            unclean_end: AtomicBool::new(false),
            answer_all: AtomicBool::new(false),
        });
        let accept_shared = shared.clone();
        let accept_thread = thread::Builder::new()
            .name(format!("mock-api-{}", addr.port()))
            .spawn(move || {
                for conn in listener.incoming() {
                    if accept_shared.shutdown.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = conn else { continue };
                    let conn_shared = accept_shared.clone();
                    let _ = thread::Builder::new()
                        .name("mock-api-conn".into())
                        .spawn(move || serve_connection(stream, conn_shared));
                }
            })
            .expect("mock API: spawn accept thread");
        MockApi { addr, shared, accept_thread: Some(accept_thread) }
    }

    /// `http://127.0.0.1:PORT`: the value for `ANTHROPIC_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request so far, in order of arrival.
    pub fn requests(&self) -> Vec<Request> {
        lock(&self.shared.log).clone()
    }

    /// Model calls (`POST /v1/messages`) so far, in order of arrival.
    pub fn message_requests(&self) -> Vec<Request> {
        self.requests().into_iter().filter(Request::is_messages).collect()
    }

    /// Model calls of one kind (main loop, subagent, title).
    pub fn requests_of(&self, kind: RequestKind) -> Vec<Request> {
        self.requests().into_iter().filter(|r| r.kind() == kind).collect()
    }

    /// Number of model calls so far.
    pub fn model_calls(&self) -> usize {
        lock(&self.shared.log).iter().filter(|r| r.is_messages()).count()
    }

    /// Block until at least `n` model calls have arrived, or `timeout` passes.
    /// Returns whether they did.
    pub fn wait_for_model_calls(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |log| log.iter().filter(|r| r.is_messages()).count() >= n)
    }

    /// Block until `pred` holds for the request log, or `timeout` passes.
    pub fn wait_until(&self, timeout: Duration, pred: impl Fn(&[Request]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut log = lock(&self.shared.log);
        loop {
            if pred(&log) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            log = match self.shared.changed.wait_timeout(log, deadline - now) {
                Ok((g, _)) => g,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// Panic messages of the script (each such request was answered with a 500).
    pub fn script_panics(&self) -> Vec<String> {
        lock(&self.shared.panics).clone()
    }

    /// Fix the `input_tokens` that count_tokens answers (0: estimate from the body size).
    pub fn set_count_tokens(&self, n: u64) {
        self.shared.count_tokens.store(n, Ordering::SeqCst);
    }

    /// HTTPS only: from the next connection on, end each connection after one response the way
    /// some servers and load balancers do. The response says `connection: close`, a chunked body
    /// ends with its last chunk (`0\r\n`) but not the empty line after it, and TCP ends without
    /// TLS `close_notify`. Claude Code takes such a response as whole.
    pub fn set_unclean_end(&self, on: bool) {
        self.shared.unclean_end.store(on, Ordering::SeqCst);
    }

    /// Answer what Claude Code asks Anthropic's API besides model calls, as the API answers an
    /// account with nothing special: 404 for the managed settings and the policy limits (none),
    /// 200 `{}` for anything else (bootstrap, profile, event logging, the MCP registry).
    pub fn answer_all(&self) {
        self.shared.answer_all.store(true, Ordering::SeqCst);
    }
}

impl Drop for MockApi {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(t) = self.accept_thread.take() {
            let _ = t.join();
        }
    }
}

type TlsStream = rustls::StreamOwned<rustls::ServerConnection, TcpStream>;

/// One client's connection, plain or TLS. Reading and writing happen on the connection's one
/// thread, one after the other, so the TLS stream is shared behind a lock that never waits.
enum Conn {
    Plain(TcpStream),
    Tls { tls: Arc<Mutex<TlsStream>>, tcp: TcpStream, unclean: bool },
}

impl Conn {
    fn try_clone(&self) -> io::Result<Conn> {
        Ok(match self {
            Conn::Plain(s) => Conn::Plain(s.try_clone()?),
            Conn::Tls { tls, tcp, unclean } => Conn::Tls { tls: tls.clone(), tcp: tcp.try_clone()?, unclean: *unclean },
        })
    }

    /// Ends each connection after one response, uncleanly (see [`MockApi::set_unclean_end`]).
    fn unclean(&self) -> bool {
        matches!(self, Conn::Tls { unclean: true, .. })
    }

    /// Cut the connection now (a response cut off mid-stream): TCP ends, nothing more is sent.
    fn cut(&self) {
        let tcp = match self {
            Conn::Plain(s) => s,
            Conn::Tls { tcp, .. } => tcp,
        };
        let _ = tcp.shutdown(Shutdown::Both);
    }

    /// The connection is done: TLS `close_notify` (unless ending uncleanly), then TCP's end.
    fn finish(&self) {
        if let Conn::Tls { tls, unclean: false, .. } = self {
            let mut t = lock(tls);
            t.conn.send_close_notify();
            let _ = t.flush();
        }
        self.cut();
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls { tls, .. } => lock(tls).read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls { tls, .. } => lock(tls).write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls { tls, .. } => lock(tls).flush(),
        }
    }
}

/// Reads from the connection, waking every 100 ms to notice the mock's shutdown, so idle
/// keep-alive connections do not keep their thread forever.
struct ShutdownAwareStream {
    stream: Conn,
    shared: Arc<Shared>,
}

impl Read for ShutdownAwareStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.stream.read(buf) {
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    if self.shared.shutdown.load(Ordering::SeqCst) {
                        return Ok(0);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }
}

fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let stream = match &shared.tls {
        None => Conn::Plain(stream),
        Some(cfg) => {
            let Ok(server) = rustls::ServerConnection::new(cfg.clone()) else { return };
            let Ok(tcp) = stream.try_clone() else { return };
            let unclean = shared.unclean_end.load(Ordering::SeqCst);
            Conn::Tls { tls: Arc::new(Mutex::new(rustls::StreamOwned::new(server, stream))), tcp, unclean }
        }
    };
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(ShutdownAwareStream { stream, shared: shared.clone() });
    loop {
        if shared.shutdown.load(Ordering::SeqCst) {
            break;
        }
        match read_request(&mut reader, &mut writer) {
            Ok(Some(head)) => {
                let keep_alive = head.keep_alive;
                match handle(head, &shared, &mut writer) {
                    Ok(true) if keep_alive && !writer.unclean() => continue,
                    _ => break,
                }
            }
            // EOF between requests, a malformed request or a broken connection.
            Ok(None) | Err(_) => break,
        }
    }
    writer.finish();
}

struct RawRequest {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    keep_alive: bool,
}

fn read_line(reader: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    let n = reader.take(64 * 1024).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// Read one request; `Ok(None)` on a clean EOF before it starts.
fn read_request(reader: &mut impl BufRead, writer: &mut Conn) -> io::Result<Option<RawRequest>> {
    // Skip blank lines between requests (tolerated by RFC 9112).
    let request_line = loop {
        match read_line(reader)? {
            None => return Ok(None),
            Some(l) if l.is_empty() => continue,
            Some(l) => break l,
        }
    };
    let mut parts = request_line.split_whitespace();
    let method = parts.next().ok_or_else(|| bad("no method"))?.to_string();
    let path = parts.next().ok_or_else(|| bad("no path"))?.to_string();
    let version = parts.next().unwrap_or("HTTP/1.1").to_string();

    let mut headers = Vec::new();
    loop {
        let line = read_line(reader)?.ok_or_else(|| bad("EOF in headers"))?;
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let get = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());

    if get("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }

    let chunked = get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        let mut body = Vec::new();
        loop {
            let size_line = read_line(reader)?.ok_or_else(|| bad("EOF in chunk size"))?;
            let size_hex = size_line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_hex, 16).map_err(|_| bad("bad chunk size"))?;
            if size == 0 {
                // Trailers, then the blank line.
                while let Some(l) = read_line(reader)? {
                    if l.is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..])?;
            read_line(reader)?; // the CRLF after the chunk
        }
        body
    } else {
        let len: usize = get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        body
    };

    let connection = get("connection").map(str::to_ascii_lowercase);
    let keep_alive = match connection.as_deref() {
        Some(c) if c.contains("close") => false,
        Some(c) if c.contains("keep-alive") => true,
        _ => version != "HTTP/1.0",
    };
    Ok(Some(RawRequest { method, path, headers, body, keep_alive }))
}

/// Answer one request. `Ok(true)` when the connection can carry another request.
fn handle(raw: RawRequest, shared: &Arc<Shared>, w: &mut Conn) -> io::Result<bool> {
    let gzipped = raw.headers.iter().any(|(k, v)| k == "content-encoding" && v.eq_ignore_ascii_case("gzip"));
    let body = if gzipped {
        let mut json = Vec::new();
        match flate2::read::GzDecoder::new(&raw.body[..]).read_to_end(&mut json) {
            Ok(_) => serde_json::from_slice(&json).unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    } else {
        serde_json::from_slice(&raw.body).unwrap_or(Value::Null)
    };
    let index;
    let req = {
        let mut log = lock(&shared.log);
        index = log.len();
        let req = Request {
            index,
            received_at: Instant::now(),
            received_wall: SystemTime::now(),
            method: raw.method,
            path: raw.path,
            headers: raw.headers,
            raw_body: raw.body,
            body,
            request_id: None,
            message_id: None,
            status: None,
            completed_at: None,
            aborted: false,
        };
        log.push(req.clone());
        req
    };
    shared.changed.notify_all();

    let request_id = shared.ids.next("req");
    let mut outcome = Outcome { request_id: Some(request_id.clone()), ..Outcome::default() };
    let result = respond(&req, shared, w, &request_id, &mut outcome);
    if result.is_err() {
        outcome.aborted = true;
    }
    {
        let mut log = lock(&shared.log);
        if let Some(r) = log.get_mut(index) {
            r.request_id = outcome.request_id;
            r.message_id = outcome.message_id;
            r.status = outcome.status;
            r.completed_at = Some(Instant::now());
            r.aborted = outcome.aborted;
        }
    }
    shared.changed.notify_all();
    result.map(|()| !outcome.aborted)
}

#[derive(Default)]
struct Outcome {
    request_id: Option<String>,
    message_id: Option<String>,
    status: Option<u16>,
    aborted: bool,
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        529 => "Site Overloaded",
        _ => "Status",
    }
}

fn write_head(
    w: &mut Conn,
    status: u16,
    content_type: &str,
    request_id: &str,
    length: Option<usize>,
    extra: &[(String, String)],
) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: {content_type}\r\nrequest-id: {request_id}\r\nconnection: {}\r\n",
        reason_phrase(status),
        if w.unclean() { "close" } else { "keep-alive" }
    );
    match length {
        Some(n) => head.push_str(&format!("content-length: {n}\r\n")),
        None => head.push_str("transfer-encoding: chunked\r\ncache-control: no-cache\r\n"),
    }
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())
}

fn write_json(w: &mut Conn, status: u16, request_id: &str, body: &Value, extra: &[(String, String)]) -> io::Result<()> {
    let bytes = body.to_string().into_bytes();
    write_head(w, status, "application/json", request_id, Some(bytes.len()), extra)?;
    w.write_all(&bytes)?;
    w.flush()
}

fn respond(req: &Request, shared: &Arc<Shared>, w: &mut Conn, request_id: &str, out: &mut Outcome) -> io::Result<()> {
    if req.method == "HEAD" {
        out.status = Some(200);
        write_head(w, 200, "text/plain", request_id, Some(0), &[])?;
        return w.flush();
    }
    if req.is_count_tokens() {
        let fixed = shared.count_tokens.load(Ordering::SeqCst);
        let n = if fixed > 0 { fixed } else { (req.raw_body.len() as u64 / 4).max(1) };
        out.status = Some(200);
        return write_json(w, 200, request_id, &json!({ "input_tokens": n }), &[]);
    }
    if !req.is_messages() && shared.answer_all.load(Ordering::SeqCst) {
        let none = ["/api/claude_code/settings", "/api/claude_code/policy_limits"].contains(&req.path_only());
        let status = if none { 404 } else { 200 };
        out.status = Some(status);
        let body = if none { error_body("not_found_error", "none for this account", request_id) } else { json!({}) };
        return write_json(w, status, request_id, &body, &[]);
    }
    if !req.is_messages() {
        out.status = Some(404);
        let body = error_body("not_found_error", &format!("{} {} is not mocked", req.method, req.path), request_id);
        return write_json(w, 404, request_id, &body, &[]);
    }

    let reply = match catch_unwind(AssertUnwindSafe(|| (shared.script)(req))) {
        Ok(reply) => reply,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "script panicked".into());
            lock(&shared.panics).push(msg.clone());
            Reply::error(500, "api_error", &format!("mock script panicked: {msg}"))
        }
    };
    if !reply.delay.is_zero() {
        thread::sleep(reply.delay);
    }
    let model = reply.model.clone().or_else(|| req.model().map(str::to_string)).unwrap_or_else(|| "claude-mock".into());

    match &reply.body {
        ReplyBody::Error { status, error_type, message } => {
            out.status = Some(*status);
            write_json(w, *status, request_id, &error_body(error_type, message, request_id), &reply.headers)
        }
        ReplyBody::Message { blocks, stop_reason } => {
            let message_id = shared.ids.next("msg");
            out.message_id = Some(message_id.clone());
            out.status = Some(200);
            let blocks: Vec<Block> = blocks
                .iter()
                .map(|b| match b {
                    Block::ToolUse { id: None, name, input } => {
                        Block::ToolUse { id: Some(shared.ids.next("toolu")), name: name.clone(), input: input.clone() }
                    }
                    other => other.clone(),
                })
                .collect();
            let stop_reason = stop_reason.clone().unwrap_or_else(|| {
                if blocks.iter().any(|b| matches!(b, Block::ToolUse { .. })) { "tool_use" } else { "end_turn" }
                    .to_string()
            });
            if req.stream() {
                let mut events = sse_events(&message_id, &model, &blocks, &stop_reason, &reply.usage);
                if let Some(f) = reply.events {
                    f(&mut events);
                }
                if let Some(enc) = reply.encoding {
                    let mut plain = Vec::new();
                    for (name, data) in &events {
                        plain.extend_from_slice(format!("event: {name}\ndata: {data}\n\n").as_bytes());
                    }
                    let body = compress(enc, &plain);
                    let mut headers = reply.headers.clone();
                    headers.push(("content-encoding".into(), enc.into()));
                    write_head(w, 200, "text/event-stream; charset=utf-8", request_id, None, &headers)?;
                    // In a few pieces, as a network delivers them.
                    for piece in body.chunks(body.len().div_ceil(3).max(1)) {
                        write!(w, "{:x}\r\n", piece.len())?;
                        w.write_all(piece)?;
                        w.write_all(b"\r\n")?;
                        w.flush()?;
                    }
                    w.write_all(b"0\r\n\r\n")?;
                    return w.flush();
                }
                write_head(w, 200, "text/event-stream; charset=utf-8", request_id, None, &reply.headers)?;
                w.flush()?;
                for (i, (name, data)) in events.iter().enumerate() {
                    if reply.cut_after_events == Some(i) {
                        out.aborted = true;
                        w.cut();
                        return Ok(());
                    }
                    if i > 0 && !reply.event_delay.is_zero() {
                        thread::sleep(reply.event_delay);
                    }
                    let frame = format!("event: {name}\ndata: {data}\n\n");
                    write!(w, "{:x}\r\n{frame}\r\n", frame.len())?;
                    w.flush()?;
                }
                // Unclean: the last chunk without the empty line that should follow it.
                w.write_all(if w.unclean() { b"0\r\n" } else { b"0\r\n\r\n" })?;
                w.flush()
            } else {
                let content: Vec<Value> = blocks.iter().map(block_json).collect();
                let body = json!({
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": content,
                    "stop_reason": stop_reason,
                    "stop_sequence": null,
                    "usage": reply.usage.to_json(),
                });
                write_json(w, 200, request_id, &body, &reply.headers)
            }
        }
    }
}

/// `bytes` in a `content-encoding`.
fn compress(encoding: &str, bytes: &[u8]) -> Vec<u8> {
    match encoding {
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(bytes).unwrap();
            e.finish().unwrap()
        }
        "deflate" => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(bytes).unwrap();
            e.finish().unwrap()
        }
        "br" => {
            let mut out = Vec::new();
            {
                let mut e = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                e.write_all(bytes).unwrap();
            }
            out
        }
        "zstd" => ruzstd::encoding::compress_to_vec(bytes, ruzstd::encoding::CompressionLevel::Fastest),
        other => panic!("the mock does not compress with {other}"),
    }
}

fn error_body(error_type: &str, message: &str, request_id: &str) -> Value {
    json!({
        "type": "error",
        "error": { "type": error_type, "message": message },
        "request_id": request_id,
    })
}

fn block_json(b: &Block) -> Value {
    match b {
        Block::Text(t) => json!({ "type": "text", "text": t }),
        Block::ToolUse { id, name, input } => {
            json!({ "type": "tool_use", "id": id, "name": name, "input": input })
        }
    }
}

/// Split `s` into up to `n` pieces on char boundaries (the API streams text in fragments).
fn split_pieces(s: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    if chars.is_empty() {
        return vec![String::new()];
    }
    let per = chars.len().div_ceil(n.max(1));
    chars.chunks(per).map(|c| c.iter().collect()).collect()
}

/// The server-sent events of one streamed message, as (event name, data JSON).
fn sse_events(
    message_id: &str,
    model: &str,
    blocks: &[Block],
    stop_reason: &str,
    usage: &Usage,
) -> Vec<(String, String)> {
    let mut ev: Vec<(String, Value)> = Vec::new();
    ev.push((
        "message_start".into(),
        json!({
            "type": "message_start",
            "message": {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": usage.to_json_with_output(usage.output_tokens.min(1)),
            }
        }),
    ));
    ev.push(("ping".into(), json!({ "type": "ping" })));
    for (index, block) in blocks.iter().enumerate() {
        match block {
            Block::Text(text) => {
                ev.push((
                    "content_block_start".into(),
                    json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}),
                ));
                for piece in split_pieces(text, 3) {
                    ev.push((
                        "content_block_delta".into(),
                        json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}}),
                    ));
                }
            }
            Block::ToolUse { id, name, input } => {
                ev.push((
                    "content_block_start".into(),
                    json!({"type": "content_block_start", "index": index,
                           "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}}),
                ));
                let mut pieces = vec![String::new()];
                pieces.extend(split_pieces(&input.to_string(), 2));
                for piece in pieces {
                    ev.push((
                        "content_block_delta".into(),
                        json!({"type": "content_block_delta", "index": index,
                               "delta": {"type": "input_json_delta", "partial_json": piece}}),
                    ));
                }
            }
        }
        ev.push(("content_block_stop".into(), json!({"type": "content_block_stop", "index": index})));
    }
    // As the API does, the final usage repeats the input side but not the cache_creation
    // breakdown (Claude Code keeps message_start's).
    let mut final_usage = json!({
        "input_tokens": usage.input_tokens,
        "cache_creation_input_tokens": usage.cache_creation_total(),
        "cache_read_input_tokens": usage.cache_read,
        "output_tokens": usage.output_tokens,
    });
    usage.add_extras(&mut final_usage);
    ev.push((
        "message_delta".into(),
        json!({
            "type": "message_delta",
            "delta": { "stop_reason": stop_reason, "stop_sequence": null },
            "usage": final_usage,
        }),
    ));
    ev.push(("message_stop".into(), json!({ "type": "message_stop" })));
    ev.into_iter().map(|(n, v)| (n, v.to_string())).collect()
}
