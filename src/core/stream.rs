//! Reading a model response's usage as it streams by the gate (server-sent events, or one JSON
//! body; plain, gzip, deflate, brotli or zstd: every encoding claude asks for), pure: bytes in,
//! counts out. zstd is decoded when the body ends (the decoder ccb uses pulls its input); the
//! others as they come.
//!
//! In a well-formed stream `message_start` carries the prompt's counts and `message_delta` the
//! final ones; later figures above zero win, as claude merges them. Everything else is priced
//! from what can be trusted, never below what claude would count, and marked estimated:
//!
//! - **Cut off** (Esc, a kill, a broken upstream): output at least what streamed (about four bytes
//!   of text per token).
//! - **Out of order** (a `message_delta` before `message_start`, a second start): each count is the
//!   largest any event gave, whatever order claude merged them in.
//! - **Missing start**: the prompt from the request's size (about four bytes per token, an
//!   over-estimate), or the delta's own figure when larger.
//! - **Impossible counts** (negative, fractional, above 2^40, not numbers; see
//!   [`crate::core::tokens`]) and **lines that are not JSON**: the count from the request's bound (its
//!   size for the prompt, its `max_tokens` for output).
//! - **Unreadable** (an encoding ccb cannot decode, a body that is not JSON): the request's bound
//!   for the whole call.
//!
//! Over 600 lines because of its tests (a third): each bad-upstream shape has its own.

use crate::core::pricing::{Modifiers, Usage};
use crate::core::tokens::{self, Count};
use serde_json::Value;
use std::io::{self, Write};
use std::sync::{Arc, Mutex};

/// What the request allows a response to cost: its prompt's size and its `max_tokens`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bound {
    pub prompt_bytes: u64,
    pub max_tokens: u64,
}

impl Bound {
    /// Prompt tokens at most: about four bytes of JSON per token.
    pub fn prompt_tokens(&self) -> u64 {
        self.prompt_bytes.div_ceil(4)
    }
}

/// The encodings the watcher reads, as `accept-encoding` names them.
pub const READABLE_ENCODINGS: &[&str] = &["gzip", "x-gzip", "deflate", "br", "zstd", "identity"];

/// The longest server-sent event line kept (a `message_start` is a few kilobytes).
const MAX_LINE: usize = 4 * 1024 * 1024;
/// The largest JSON body kept (a whole non-streamed response).
const MAX_JSON: usize = 32 * 1024 * 1024;
/// The most decoded bytes one chunk may expand to (a compression bomb stops here).
const MAX_EXPANSION: usize = 16 * 1024 * 1024;
/// Usage objects kept; a stream with more is out of order.
const MAX_USAGES: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Start,
    Delta,
}

/// A response's counts, and whether they are an estimate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    pub usage: Usage,
    pub estimated: bool,
}

pub struct UsageWatch {
    sse: bool,
    bound: Bound,
    decoder: Option<Box<dyn Write + Send>>,
    decoded: Arc<Mutex<Sink>>,
    /// A zstd body, kept compressed until it ends.
    zstd: Option<Vec<u8>>,
    line: Vec<u8>,
    line_too_long: bool,
    json: Vec<u8>,
    pub message_id: Option<String>,
    pub response_model: Option<String>,
    usages: Vec<(Kind, Value)>,
    /// Events came in an order claude's API never sends.
    out_of_order: bool,
    /// A line of the stream that is not JSON, or too long to read.
    bad_lines: bool,
    /// The body cannot be read (an unknown encoding, a decoding error, a body that is not JSON).
    unreadable: bool,
    /// Any byte of the body came.
    any: bool,
    stopped: bool,
    streamed_bytes: u64,
    mods: Modifiers,
    /// For the gate: the response was counted.
    pub counted: bool,
}

#[derive(Default)]
struct Sink {
    out: Vec<u8>,
    overflow: bool,
}

/// Collects decompressed bytes for the watcher, up to [`MAX_EXPANSION`] per chunk.
struct SinkWriter(Arc<Mutex<Sink>>);
impl Write for SinkWriter {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if s.out.len() + b.len() > MAX_EXPANSION {
            s.overflow = true;
        } else {
            s.out.extend_from_slice(b);
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl UsageWatch {
    /// A watcher for one response: `sse` for `text/event-stream`, `encoding` its
    /// `content-encoding`, `bound` what its request allows.
    pub fn new(sse: bool, encoding: Option<&str>, bound: Bound) -> UsageWatch {
        let decoded = Arc::new(Mutex::new(Sink::default()));
        let mut unreadable = false;
        let mut zstd = None;
        let decoder: Option<Box<dyn Write + Send>> = match encoding.map(|e| e.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") | Some("identity") => None,
            Some("gzip" | "x-gzip") => Some(Box::new(flate2::write::GzDecoder::new(SinkWriter(decoded.clone())))),
            Some("deflate") => Some(Box::new(flate2::write::ZlibDecoder::new(SinkWriter(decoded.clone())))),
            Some("br") => {
                Some(Box::new(brotli_decompressor::DecompressorWriter::new(SinkWriter(decoded.clone()), 4096)))
            }
            Some("zstd") => {
                zstd = Some(Vec::new());
                None
            }
            Some(_) => {
                unreadable = true;
                None
            }
        };
        UsageWatch {
            sse,
            bound,
            decoder,
            decoded,
            zstd,
            line: Vec::new(),
            line_too_long: false,
            json: Vec::new(),
            message_id: None,
            response_model: None,
            usages: Vec::new(),
            out_of_order: false,
            bad_lines: false,
            unreadable,
            any: false,
            stopped: false,
            streamed_bytes: 0,
            mods: Modifiers::default(),
            counted: false,
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.any = true;
        if self.unreadable {
            return;
        }
        if let Some(z) = &mut self.zstd {
            if z.len() + bytes.len() > MAX_JSON {
                self.unreadable = true;
                self.zstd = Some(Vec::new());
            } else {
                z.extend_from_slice(bytes);
            }
            return;
        }
        let plain: Vec<u8> = match &mut self.decoder {
            Some(d) => {
                if d.write_all(bytes).and_then(|_| d.flush()).is_err() {
                    self.unreadable = true;
                    return;
                }
                let mut s = self.decoded.lock().unwrap_or_else(|e| e.into_inner());
                if s.overflow {
                    self.unreadable = true;
                }
                std::mem::take(&mut s.out)
            }
            None => bytes.to_vec(),
        };
        if !self.unreadable {
            self.feed_plain(&plain);
        }
    }

    /// Decoded bytes of the body.
    fn feed_plain(&mut self, plain: &[u8]) {
        if !self.sse {
            if self.json.len() + plain.len() > MAX_JSON {
                self.unreadable = true;
                self.json = Vec::new();
            } else {
                self.json.extend_from_slice(plain);
            }
            return;
        }
        let mut rest = plain;
        while let Some(i) = memchr::memchr(b'\n', rest) {
            self.push_line_part(&rest[..i]);
            let line = std::mem::take(&mut self.line);
            if std::mem::take(&mut self.line_too_long) {
                self.bad_lines = true;
            } else {
                self.sse_line(&line);
            }
            rest = &rest[i + 1..];
        }
        self.push_line_part(rest);
    }

    /// A whole zstd body, decoded: every frame, as far as it goes (a body cut off gives what
    /// came before the cut), at most [`MAX_JSON`] bytes.
    fn decode_zstd(compressed: &[u8]) -> Option<Vec<u8>> {
        use std::io::Read;
        // The decoder is third-party code given bytes from the network: a panic in it is an
        // unreadable body, not the end of the session.
        std::panic::catch_unwind(|| {
            let mut out = Vec::new();
            let mut rest = compressed;
            while !rest.is_empty() && out.len() < MAX_JSON {
                let Ok(mut d) = ruzstd::decoding::StreamingDecoder::new(&mut rest) else { break };
                let left = (MAX_JSON - out.len()) as u64;
                if (&mut d).take(left).read_to_end(&mut out).is_err() {
                    break;
                }
            }
            out
        })
        .ok()
        .filter(|out| !out.is_empty())
    }

    fn push_line_part(&mut self, part: &[u8]) {
        if self.line.len() + part.len() > MAX_LINE {
            self.line_too_long = true;
            self.line.clear();
        } else if !self.line_too_long {
            self.line.extend_from_slice(part);
        }
    }

    fn sse_line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(data) = line.strip_prefix(b"data:") else { return };
        let data = data.trim_ascii();
        if data.is_empty() || data == b"[DONE]" {
            return;
        }
        let Ok(v) = serde_json::from_slice::<Value>(data) else {
            self.bad_lines = true;
            return;
        };
        match v["type"].as_str() {
            Some("message_start") => {
                if let Some(id) = v["message"]["id"].as_str() {
                    self.message_id = Some(id.to_string());
                }
                if let Some(m) = v["message"]["model"].as_str() {
                    self.response_model = Some(m.to_string());
                }
                self.saw(Kind::Start, v["message"]["usage"].clone());
            }
            Some("message_delta") => self.saw(Kind::Delta, v["usage"].clone()),
            Some("message_stop") => self.stopped = true,
            Some("content_block_delta") => {
                let d = &v["delta"];
                for k in ["text", "partial_json", "thinking"] {
                    if let Some(s) = d[k].as_str() {
                        self.streamed_bytes += s.len() as u64;
                    }
                }
            }
            _ => {}
        }
    }

    fn saw(&mut self, kind: Kind, usage: Value) {
        let first = self.usages.is_empty();
        if (first && kind != Kind::Start) || (!first && kind == Kind::Start) || self.usages.len() >= MAX_USAGES {
            self.out_of_order = true;
        }
        if self.usages.len() >= MAX_USAGES {
            return;
        }
        if let Some(s) = usage["speed"].as_str() {
            self.mods.fast = s == "fast";
        }
        if let Some(g) = usage["inference_geo"].as_str() {
            self.mods.geo = Some(g.to_string());
        }
        self.usages.push((kind, usage));
    }

    /// The end of the body: a non-streamed response is parsed whole.
    pub fn finish(&mut self) {
        if self.unreadable {
            return;
        }
        if let Some(z) = self.zstd.take() {
            if !z.is_empty() {
                match UsageWatch::decode_zstd(&z) {
                    Some(plain) => self.feed_plain(&plain),
                    None => {
                        self.unreadable = true;
                        return;
                    }
                }
            }
        }
        if let Some(d) = &mut self.decoder {
            // A gzip member's end is read with its trailer; nothing more to flush but errors.
            if d.flush().is_err() {
                self.unreadable = true;
                return;
            }
        }
        if self.sse {
            if !self.line.is_empty() {
                let line = std::mem::take(&mut self.line);
                self.sse_line(&line);
            }
            return;
        }
        if self.json.is_empty() {
            return;
        }
        match serde_json::from_slice::<Value>(&self.json) {
            Ok(v) if v["type"] == "message" => {
                self.message_id = v["id"].as_str().map(String::from);
                self.response_model = v["model"].as_str().map(String::from);
                self.saw(Kind::Start, v["usage"].clone());
                self.stopped = true;
            }
            // An error body sent as a success: nothing was generated.
            Ok(v) if v["type"] == "error" => {}
            _ => self.unreadable = true,
        }
        self.json = Vec::new();
    }

    /// Something to count came: usage, or a body that cannot be read.
    pub fn started(&self) -> bool {
        !self.usages.is_empty() || (self.any && (self.unreadable || self.bad_lines))
    }

    /// The response is whole: it began and ended.
    pub fn complete(&self) -> bool {
        self.stopped && self.usages.iter().any(|(k, _)| *k == Kind::Start)
    }

    /// The prompt's modifiers (fast mode, inference region) as the usage gave them.
    pub fn mods(&self) -> &Modifiers {
        &self.mods
    }

    /// The response's counts; `cut_off` when the stream ended before its end.
    pub fn reading(&self, cut_off: bool) -> Option<Reading> {
        let b = self.bound;
        if self.unreadable {
            if !self.any {
                return None;
            }
            let usage = Usage { input: b.prompt_tokens(), output: b.max_tokens, ..Usage::default() };
            return Some(Reading { usage, estimated: true });
        }
        if self.usages.is_empty() {
            if !(self.any && self.bad_lines) {
                return None;
            }
            let usage = Usage {
                input: b.prompt_tokens(),
                output: b.max_tokens.max(self.streamed_bytes.div_ceil(4)),
                ..Usage::default()
            };
            return Some(Reading { usage, estimated: true });
        }
        let has_start = self.usages.iter().any(|(k, _)| *k == Kind::Start);
        let mut estimated = cut_off || self.out_of_order || self.bad_lines || !has_start;
        // One count: in order, the last figure above zero (claude's merge); out of order, the
        // largest. A count that cannot be one takes `fallback` and makes the reading an estimate.
        let mut field = |path: &[&str], fallback: u64| -> u64 {
            let mut out = 0u64;
            for (_, u) in &self.usages {
                let v = path.iter().fold(u, |v, k| &v[*k]);
                match tokens::from_json(v) {
                    Count::Absent => {}
                    Count::Valid(n) if self.out_of_order => out = out.max(n),
                    Count::Valid(n) => {
                        if n > 0 || out == 0 {
                            out = n;
                        }
                    }
                    Count::Bad => {
                        estimated = true;
                        return fallback;
                    }
                }
            }
            out
        };
        let mut input = field(&["input_tokens"], b.prompt_tokens());
        let mut output = field(&["output_tokens"], b.max_tokens);
        let cache_creation = field(&["cache_creation_input_tokens"], b.prompt_tokens());
        let one_hour = field(&["cache_creation", "ephemeral_1h_input_tokens"], 0);
        let cache_read = field(&["cache_read_input_tokens"], 0);
        let web = field(&["server_tool_use", "web_search_requests"], 0);
        if !has_start {
            input = input.max(b.prompt_tokens());
        }
        if cut_off || self.bad_lines {
            // About four bytes of text per token; never less than what was reported.
            output = output.max(self.streamed_bytes.div_ceil(4));
        }
        let usage =
            crate::core::transcript::usage_from_api(input, output, cache_creation, Some(one_hour), cache_read, web);
        Some(Reading { usage, estimated })
    }
}

impl std::fmt::Debug for UsageWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageWatch")
            .field("message_id", &self.message_id)
            .field("stopped", &self.stopped)
            .field("out_of_order", &self.out_of_order)
            .field("unreadable", &self.unreadable)
            .finish()
    }
}

/// `accept-encoding` narrowed to what the watcher reads: claude's own list without the rest
/// (`br`, `zstd`), or `identity` when nothing is left. Upstream then answers in an encoding
/// ccb can read, and claude, which reads all of them, sees no difference.
pub fn narrow_accept_encoding(value: &str) -> String {
    let all: Vec<&str> = value.split(',').map(str::trim).filter(|t| !t.is_empty()).collect();
    let kept: Vec<&str> = all
        .iter()
        .copied()
        .filter(|t| {
            let name = t.split(';').next().unwrap_or("").trim();
            READABLE_ENCODINGS.iter().any(|e| name.eq_ignore_ascii_case(e)) || name == "*"
        })
        .collect();
    if kept.len() == all.len() && !kept.is_empty() {
        // Nothing to take out: the header goes as claude wrote it, byte for byte.
        value.to_string()
    } else if kept.is_empty() {
        "identity".to_string()
    } else {
        kept.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sse(events: &[Value]) -> Vec<u8> {
        let mut out = Vec::new();
        for e in events {
            out.extend_from_slice(format!("event: {}\ndata: {}\n\n", e["type"].as_str().unwrap_or("x"), e).as_bytes());
        }
        out
    }

    fn start(usage: Value) -> Value {
        json!({"type": "message_start", "message": {"id": "msg_1", "model": "claude-sonnet-4-6", "usage": usage}})
    }
    fn delta(usage: Value) -> Value {
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": usage})
    }
    fn text(t: &str) -> Value {
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}})
    }
    fn stop() -> Value {
        json!({"type": "message_stop"})
    }

    fn stream() -> Vec<Value> {
        vec![
            start(
                json!({"input_tokens": 100, "cache_creation_input_tokens": 30, "cache_read_input_tokens": 7, "cache_creation": {"ephemeral_5m_input_tokens": 10, "ephemeral_1h_input_tokens": 20}, "output_tokens": 1}),
            ),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            text("Hello, world! This is streamed."),
            json!({"type": "content_block_stop", "index": 0}),
            delta(json!({"output_tokens": 42})),
            stop(),
        ]
    }

    const BOUND: Bound = Bound { prompt_bytes: 4000, max_tokens: 8000 };

    fn read(events: &[Value], cut_off: bool) -> (Reading, bool) {
        let mut w = UsageWatch::new(true, None, BOUND);
        w.feed(&sse(events));
        w.finish();
        (w.reading(cut_off).expect("a reading"), w.complete())
    }

    #[test]
    fn reads_usage_from_a_stream_in_any_chunking() {
        let bytes = sse(&stream());
        for chunk in [1, 7, 64, bytes.len()] {
            let mut w = UsageWatch::new(true, None, BOUND);
            for c in bytes.chunks(chunk) {
                w.feed(c);
            }
            w.finish();
            assert!(w.complete(), "chunk {chunk}");
            assert_eq!(w.message_id.as_deref(), Some("msg_1"));
            let r = w.reading(false).unwrap();
            assert_eq!(
                r,
                Reading {
                    usage: Usage {
                        input: 100,
                        output: 42,
                        cache_write_5m: 10,
                        cache_write_1h: 20,
                        cache_read: 7,
                        web_search: 0
                    },
                    estimated: false
                }
            );
        }
    }

    #[test]
    fn a_cut_off_stream_is_charged_for_what_streamed() {
        let mut w = UsageWatch::new(true, None, BOUND);
        w.feed(&sse(&stream()[..3]));
        w.finish();
        assert!(w.started() && !w.complete());
        let r = w.reading(true).unwrap();
        assert_eq!((r.usage.input, r.usage.output, r.estimated), (100, 8, true), "31 bytes of text: about 8 tokens");
    }

    #[test]
    fn reads_a_gzipped_json_response() {
        let body = json!({"type": "message", "id": "msg_9", "model": "claude-haiku-4-5", "usage": {"input_tokens": 5, "output_tokens": 6, "speed": "fast", "inference_geo": "us"}}).to_string();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(body.as_bytes()).unwrap();
        let z = gz.finish().unwrap();
        let mut w = UsageWatch::new(false, Some("gzip"), BOUND);
        for c in z.chunks(5) {
            w.feed(c);
        }
        w.finish();
        assert!(w.complete());
        let r = w.reading(false).unwrap();
        assert_eq!((r.usage.input, r.usage.output, r.estimated), (5, 6, false));
        assert_eq!(w.mods(), &Modifiers { fast: true, geo: Some("us".into()) }, "fast mode and region are priced");
    }

    #[test]
    fn whole_floats_are_counts_and_impossible_counts_take_the_bound() {
        let (r, _) = read(
            &[start(json!({"input_tokens": 1000.0, "output_tokens": 1})), delta(json!({"output_tokens": 5e1})), stop()],
            false,
        );
        assert_eq!((r.usage.input, r.usage.output, r.estimated), (1000, 50, false));
        for bad in [json!(-1), json!(2.5), json!(u64::MAX), json!("many"), json!((1u64 << 40) + 1)] {
            let (r, _) = read(
                &[start(json!({"input_tokens": 10, "output_tokens": 1})), delta(json!({"output_tokens": bad})), stop()],
                false,
            );
            assert_eq!((r.usage.input, r.usage.output, r.estimated), (10, 8000, true), "output {bad}: max_tokens");
            let (r, _) = read(
                &[start(json!({"input_tokens": bad, "output_tokens": 1})), delta(json!({"output_tokens": 3})), stop()],
                false,
            );
            assert_eq!((r.usage.input, r.usage.output, r.estimated), (1000, 3, true), "input {bad}: the prompt's size");
        }
    }

    #[test]
    fn a_stream_out_of_order_takes_the_largest_of_each_count() {
        // The delta first, with a small input figure; the start's larger one must not be lost.
        let (r, complete) = read(
            &[
                delta(json!({"input_tokens": 10, "output_tokens": 50})),
                start(json!({"input_tokens": 12000, "output_tokens": 1})),
                stop(),
            ],
            false,
        );
        assert!(complete);
        assert_eq!((r.usage.input, r.usage.output, r.estimated), (12000, 50, true));
        // Two starts.
        let (r, _) = read(&[start(json!({"input_tokens": 5})), start(json!({"input_tokens": 7})), stop()], false);
        assert_eq!((r.usage.input, r.estimated), (7, true));
    }

    #[test]
    fn a_missing_start_is_priced_from_the_request() {
        let mut w = UsageWatch::new(true, None, BOUND);
        w.feed(&sse(&[text("abcd"), delta(json!({"output_tokens": 30})), stop()]));
        w.finish();
        assert!(w.started() && !w.complete());
        let r = w.reading(true).unwrap();
        assert_eq!((r.usage.input, r.usage.output, r.estimated), (1000, 30, true));
    }

    #[test]
    fn bad_lines_and_unreadable_bodies_are_estimated_never_free() {
        // The delta line is broken: output from what streamed, at least the start's.
        let mut bytes = sse(&[start(json!({"input_tokens": 10, "output_tokens": 1})), text(&"x".repeat(400))]);
        bytes.extend_from_slice(
            b"event: message_delta\ndata: {\"type\": \"message_delta\", \"usage\": {\"output_tok\n\n",
        );
        bytes.extend_from_slice(&sse(&[stop()]));
        let mut w = UsageWatch::new(true, None, BOUND);
        w.feed(&bytes);
        w.finish();
        let r = w.reading(false).unwrap();
        assert_eq!((r.usage.input, r.usage.output, r.estimated), (10, 100, true));
        // Nothing but garbage: the request's bound.
        let mut w = UsageWatch::new(true, None, BOUND);
        w.feed(b"data: {not json\n\n");
        w.finish();
        assert!(w.started());
        let r = w.reading(true).unwrap();
        assert_eq!((r.usage.input, r.usage.output, r.estimated), (1000, 8000, true));
        // Encodings ccb does not read, and br and zstd that are not: the bound.
        for enc in ["br", "zstd", "compress", "x-unknown"] {
            let mut w = UsageWatch::new(true, Some(enc), BOUND);
            w.feed(&[0xff; 64]);
            w.finish();
            assert!(w.started(), "{enc}");
            assert_eq!(w.reading(false).unwrap().usage.output, 8000, "{enc}");
        }
        // gzip that is not gzip.
        let mut w = UsageWatch::new(false, Some("gzip"), BOUND);
        w.feed(b"this is not gzip at all");
        w.finish();
        assert!(w.reading(false).unwrap().estimated);
        // Nothing came at all: nothing to count.
        let mut w = UsageWatch::new(true, Some("br"), BOUND);
        w.finish();
        assert!(!w.started() && w.reading(true).is_none());
        // An error body with status 200: nothing generated.
        let mut w = UsageWatch::new(false, None, BOUND);
        w.feed(br#"{"type":"error","error":{"type":"overloaded_error"}}"#);
        w.finish();
        assert!(w.reading(false).is_none());
    }

    #[test]
    fn brotli_and_zstd_bodies_are_read_in_any_chunking() {
        let plain = sse(&stream());
        let mut br = Vec::new();
        {
            let mut w = brotli::CompressorWriter::new(&mut br, 4096, 5, 22);
            w.write_all(&plain).unwrap();
        }
        let zs = ruzstd::encoding::compress_to_vec(&plain[..], ruzstd::encoding::CompressionLevel::Fastest);
        for (enc, bytes) in [("br", &br), ("zstd", &zs)] {
            for chunk in [1, 13, bytes.len()] {
                let mut w = UsageWatch::new(true, Some(enc), BOUND);
                for c in bytes.chunks(chunk) {
                    w.feed(c);
                }
                w.finish();
                assert!(w.complete(), "{enc} in chunks of {chunk}");
                let r = w.reading(false).unwrap();
                assert_eq!(
                    (r.usage.input, r.usage.output, r.estimated),
                    (100, 42, false),
                    "{enc} in chunks of {chunk}"
                );
            }
            // Cut off halfway: estimated, never nothing.
            let mut w = UsageWatch::new(true, Some(enc), BOUND);
            w.feed(&bytes[..bytes.len() / 2]);
            w.finish();
            assert!(w.started(), "{enc} cut off");
            assert!(w.reading(true).unwrap().estimated, "{enc} cut off");
        }
    }

    #[test]
    fn a_huge_line_is_dropped_not_kept() {
        let mut w = UsageWatch::new(true, None, BOUND);
        w.feed(&sse(&[start(json!({"input_tokens": 10, "output_tokens": 1}))]));
        let junk = vec![b'a'; 1024 * 1024];
        w.feed(b"data: ");
        for _ in 0..6 {
            w.feed(&junk);
        }
        assert!(w.line.len() <= MAX_LINE);
        w.feed(b"\n\n");
        w.feed(&sse(&[stop()]));
        w.finish();
        let r = w.reading(false).unwrap();
        assert!(r.estimated && r.usage.input == 10);
    }

    #[test]
    fn accept_encoding_keeps_only_what_is_read() {
        assert_eq!(narrow_accept_encoding("gzip, deflate, br, zstd"), "gzip, deflate, br, zstd");
        assert_eq!(narrow_accept_encoding("gzip,deflate"), "gzip,deflate", "unchanged when nothing goes");
        assert_eq!(narrow_accept_encoding("compress;q=1.0, gzip;q=0.8"), "gzip;q=0.8");
        assert_eq!(narrow_accept_encoding("compress, x-foo"), "identity");
        assert_eq!(narrow_accept_encoding(""), "identity");
    }
}
