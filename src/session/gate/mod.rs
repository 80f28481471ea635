//! The gate: ccb in the request path. A local HTTP endpoint on 127.0.0.1 that claude uses as its
//! `ANTHROPIC_BASE_URL`; every request is forwarded unchanged (method, path and query, headers,
//! body) to the real upstream, and every response is streamed back chunk by chunk as it arrives.
//!
//! On the way it reads each model response's usage from the stream (`message_start`,
//! `message_delta`), prices it, and counts it in the session's meter before the response ends,
//! so the next call already sees it. A model call that the meter refuses gets HTTP 400 with an
//! Anthropic-style `invalid_request_error`: claude stops at once, retries nothing, and shows the
//! message as given (a 429 or 529 would be retried for minutes, a 403 taken for a login problem).
//!
//! Auth headers pass through untouched and are never stored or printed.
//!
//! Any local user can connect to a loopback port, so claude's base URL carries an unguessable
//! path prefix (`http://127.0.0.1:PORT/<128-bit token>`), which claude learns from its
//! environment and its owner-only settings file. The gate checks it on the request line, before
//! reading anything else, strips it, and forwards the rest; a request without it is answered 404
//! and goes nowhere, so no one else can spend through the gate or read its answers.

use crate::core::pricing::PriceTable;
use crate::core::transcript::UsageEvent;
use crate::session::meter::{Admission, Meter};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub mod route;
mod upstream;
pub use crate::core::endpoint::{endpoint, Endpoint};
use upstream::Tls;
pub use upstream::{cert_stores, proxy_for, root_store, tls_config, SYSTEM_BUNDLES};

/// What the gate tells the session.
#[derive(Debug)]
pub enum GateEvent {
    /// A response was counted (or found counted already) in the meter.
    Usage { event: Box<UsageEvent>, outcome: crate::session::meter::Counted },
    /// A model call was refused at the ceiling.
    Refused,
    /// Something the user should know (an unreadable CA file).
    Problem(String),
    /// On the first-party path, a model call came without `x-client-request-id`: claude did not
    /// take the first-party switch and sends what it sends a third-party gateway (sent once).
    FirstPartyIgnored,
    /// Something the routing did that the user must see (a downgrade started).
    Notice(String),
}

/// Where requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// `https://api.anthropic.com`, or the user's `ANTHROPIC_BASE_URL` without a trailing '/'.
    pub base: String,
    /// The first-party path (see [`crate::session::first_party`]): watch that claude's model calls carry
    /// the header it sends Anthropic's own API only, and say so once when one does not.
    pub first_party: bool,
}

impl Upstream {
    pub fn new(base_url: Option<&str>) -> Upstream {
        let b = base_url.filter(|b| !b.trim().is_empty()).unwrap_or("https://api.anthropic.com");
        Upstream { base: b.trim().trim_end_matches('/').to_string(), first_party: false }
    }

    /// The same upstream, watched as the first-party path or not.
    pub fn first_party(self, yes: bool) -> Upstream {
        Upstream { first_party: yes, ..self }
    }
    fn host(&self) -> &str {
        let rest = self.base.split_once("://").map(|(_, r)| r).unwrap_or(&self.base);
        let hp = rest.split('/').next().unwrap_or("");
        let hp = hp.rsplit_once('@').map(|(_, h)| h).unwrap_or(hp);
        if let Some(h) = hp.strip_prefix('[') {
            return h.split(']').next().unwrap_or("");
        }
        hp.split(':').next().unwrap_or("")
    }
    fn https(&self) -> bool {
        self.base.to_ascii_lowercase().starts_with("https://")
    }
}

pub struct Gate {
    pub port: u16,
    /// `/<token>`: the path prefix every request must carry.
    prefix: String,
    listener: Option<TcpListener>,
    /// `[routing]`, when it has anything for the gate to do.
    router: Option<route::Router>,
}

impl Gate {
    /// Bind 127.0.0.1 on a free port (before claude starts: the port goes into its environment).
    pub fn bind() -> io::Result<Gate> {
        let prefix = format!("/{}", crate::sys::paths::random_token()?);
        let l = TcpListener::bind("127.0.0.1:0")?;
        Ok(Gate { port: l.local_addr()?.port(), prefix, listener: Some(l), router: None })
    }

    /// Claude's `ANTHROPIC_BASE_URL`; it holds the token: never print it.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}{}", self.port, self.prefix)
    }

    /// The path prefix requests must start with (the token): for tests and benchmarks that
    /// talk to the gate themselves.
    pub fn path_prefix(&self) -> &str {
        &self.prefix
    }

    /// Route model calls by `[routing]` (set before [`Gate::serve`]).
    pub fn route_with(&mut self, router: route::Router) {
        self.router = Some(router);
    }

    /// Serve until the process ends.
    pub fn serve(
        &mut self,
        upstream: Upstream,
        meter: Arc<Meter>,
        prices: Arc<PriceTable>,
        events: impl Fn(GateEvent) + Send + Sync + 'static,
    ) -> io::Result<Vec<String>> {
        let env = |k: &str| std::env::var(k).ok();
        let mut b = ureq::AgentBuilder::new()
            .redirects(0)
            .timeout_connect(Duration::from_secs(30))
            .timeout_read(Duration::from_secs(900));
        if let Some(p) = proxy_for(upstream.host(), upstream.https(), &env) {
            match ureq::Proxy::new(&p) {
                Ok(proxy) => b = b.proxy(proxy),
                Err(_) => return Err(io::Error::other("HTTPS_PROXY/HTTP_PROXY is not a proxy URL ccb can use")),
            }
        }
        // Reading the CA files (SSL_CERT_FILE is often a whole system bundle) takes milliseconds
        // of CPU: done at the first call upstream, not while claude starts, and only for HTTPS.
        let agent = if upstream.https() { Lazy::Pending(Mutex::new(Some(b))) } else { Lazy::Ready(b.build()) };
        let problems = Vec::new();
        let ctx = Arc::new(Ctx {
            agent,
            ready: std::sync::OnceLock::new(),
            upstream,
            meter,
            prices,
            events: Box::new(events),
            refusals: AtomicU64::new(0),
            first_party_ignored: std::sync::atomic::AtomicBool::new(false),
            router: self.router.take(),
        });
        let listener = self.listener.take().ok_or_else(|| io::Error::other("gate already serving"))?;
        // The port, never the URL: its path is the token.
        log::debug!(
            "source gate: on port {}, upstream {} over {}{}",
            listener.local_addr().map(|a| a.port()).unwrap_or(0),
            ctx.upstream.host(),
            if ctx.upstream.https() { "https" } else { "http" },
            if ctx.upstream.first_party { ", first-party path" } else { "" }
        );
        let guard = crate::sys::http::Guard::Prefix(self.prefix.clone());
        let handler: Arc<crate::sys::http::Handler> = Arc::new(move |req, w: &mut TcpStream| handle(req, w, &ctx));
        crate::sys::http::serve(
            listener,
            "ccb-gate",
            guard,
            crate::sys::http::Limits::GATE,
            crate::sys::http::Style::AnthropicJson,
            handler,
        )?;
        Ok(problems)
    }
}

/// The upstream client, built on a thread of its own when TLS roots must be read.
#[allow(clippy::large_enum_variant, reason = "one per gate, built once")]
enum Lazy {
    Ready(ureq::Agent),
    Pending(Mutex<Option<ureq::AgentBuilder>>),
}

struct Ctx {
    agent: Lazy,
    ready: std::sync::OnceLock<ureq::Agent>,
    upstream: Upstream,
    meter: Arc<Meter>,
    prices: Arc<PriceTable>,
    events: Box<dyn Fn(GateEvent) + Send + Sync>,
    refusals: AtomicU64,
    /// [`GateEvent::FirstPartyIgnored`] was sent.
    first_party_ignored: std::sync::atomic::AtomicBool,
    router: Option<route::Router>,
}

use crate::sys::http::Request;

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "expect",
];

/// What a model call asks for, from its JSON body.
struct Call {
    model: String,
    max_tokens: u64,
    /// The size of its JSON body.
    bytes: u64,
    /// What its bound needs (session::limits): fast mode, region, web searches.
    limits: crate::session::limits::CallFacts,
    /// Routed: what claude asked for, and why another model serves it (`model` is the served).
    routed: Option<route::Routed>,
}

/// The session id claude sends with each model call.
fn session_header(req: &Request) -> Option<&str> {
    req.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("x-claude-code-session-id"))
        .map(|(_, v)| v.trim())
        .filter(|v| crate::core::args::is_session_id(v))
}

/// A model call: what it asks for, from its JSON body.
fn model_call(req: &Request) -> Call {
    #[derive(serde::Deserialize, Default)]
    struct Body {
        model: Option<String>,
        max_tokens: Option<u64>,
        speed: Option<String>,
        inference_geo: Option<String>,
        tools: Option<Vec<crate::session::limits::Tool>>,
    }
    let body = request_body(req);
    let b: Body = serde_json::from_slice(&body).unwrap_or_default();
    let limits = crate::session::limits::CallFacts::new(b.speed.as_deref(), b.inference_geo, b.tools.as_deref());
    Call {
        model: b.model.unwrap_or_default(),
        max_tokens: b.max_tokens.unwrap_or(0),
        bytes: body.len() as u64,
        limits,
        routed: None,
    }
}

/// A request's body as JSON text: Claude Code compresses large ones on the first-party path
/// (`content-encoding: gzip`, 2.1.332). Forwarded as sent; decoded here only to be read, at most
/// 64 MiB of it. An encoding ccb cannot read leaves the body as it is (it then parses as
/// nothing, and the call is priced by the model the response names).
fn request_body(req: &Request) -> std::borrow::Cow<'_, [u8]> {
    const MAX: u64 = 64 * 1024 * 1024;
    let encoding = req.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-encoding")).map(|(_, v)| v.trim());
    let mut out = Vec::new();
    let read = match encoding.map(str::to_ascii_lowercase).as_deref() {
        Some("gzip" | "x-gzip") => flate2::read::MultiGzDecoder::new(&req.body[..]).take(MAX).read_to_end(&mut out),
        Some("deflate") => flate2::read::ZlibDecoder::new(&req.body[..]).take(MAX).read_to_end(&mut out),
        _ => return std::borrow::Cow::Borrowed(&req.body),
    };
    match read {
        Ok(_) => std::borrow::Cow::Owned(out),
        Err(_) => std::borrow::Cow::Borrowed(&req.body),
    }
}

/// Answer a call the meter cannot follow.
fn refuse_unmetered(w: &mut TcpStream, what: &str) -> io::Result<()> {
    let msg = format!("ccb: {what}: not metered by ccb's gate, so refused in a metered session; call it without ccb");
    w.write_all(&crate::sys::http::refusal(
        crate::sys::http::Style::AnthropicJson,
        400,
        "invalid_request_error",
        &msg,
    ))?;
    w.flush()?;
    // The answer said `connection: close`.
    Err(io::Error::new(io::ErrorKind::PermissionDenied, "unmetered endpoint"))
}

fn refuse(
    w: &mut TcpStream,
    ctx: &Ctx,
    spent: crate::core::money::Usd,
    ceiling: crate::core::money::Usd,
) -> io::Result<()> {
    refuse_with(w, ctx, &format!(
        "ccb: session ceiling reached: {spent} of the {ceiling} ceiling spent; resume the session with --budget <USD>, a larger total, to go on"
    ))
}

/// Refuse a model call with `msg`, as at the ceiling (a spend limit's refusal too).
fn refuse_with(w: &mut TcpStream, ctx: &Ctx, msg: &str) -> io::Result<()> {
    let n = ctx.refusals.fetch_add(1, Ordering::Relaxed) + 1;
    let body =
        serde_json::json!({"type": "error", "error": {"type": "invalid_request_error", "message": msg}}).to_string();
    let head = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nrequest-id: ccb-refused-{n}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    w.write_all(head.as_bytes())?;
    w.write_all(body.as_bytes())?;
    w.flush()?;
    (ctx.events)(GateEvent::Refused);
    Ok(())
}

fn handle(mut req: Request, w: &mut TcpStream, ctx: &Ctx) -> io::Result<()> {
    let post = req.method.eq_ignore_ascii_case("POST");
    let (ep, plain) = endpoint(&req.target);
    if let Some(t) = plain {
        req.target = t;
    }
    if let (Endpoint::Unmetered(what), true) = (&ep, post) {
        return refuse_unmetered(w, what);
    }
    let mut call = (ep == Endpoint::Messages && post).then(|| model_call(&req));
    if let (Some(c), Some(router)) = (&mut call, &ctx.router) {
        let body = request_body(&req).into_owned();
        if let Some(r) = router.apply(&mut req, &body, &ctx.meter, &ctx.prices) {
            // Admitted, bounded and priced as the model that serves it.
            *c = model_call(&req);
            c.routed = Some(r);
        }
    }
    if call.is_some() {
        // Upstream answers in an encoding the gate reads (claude reads them all).
        for (k, v) in req.headers.iter_mut() {
            if k.eq_ignore_ascii_case("accept-encoding") {
                *v = crate::core::stream::narrow_accept_encoding(v);
            }
        }
    }
    if call.is_some()
        && ctx.upstream.first_party
        && !req.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(crate::session::first_party::HEADER))
        && !ctx.first_party_ignored.swap(true, Ordering::Relaxed)
    {
        (ctx.events)(GateEvent::FirstPartyIgnored);
    }
    let mut admitted = None;
    if let Some(c) = &call {
        // Claude names its session on every call: a session resumed without its id on the
        // command line (`--continue`) is known from here on, and its earlier spend counts.
        if let Some(id) = session_header(&req) {
            ctx.meter.learn_session(id);
        }
        match ctx.meter.admit(&c.model, c.max_tokens, c.bytes, &ctx.prices) {
            Admission::Refuse { spent, ceiling, .. } => return refuse(w, ctx, spent, ceiling),
            Admission::Go { call: id, reserved } => {
                admitted = Some(id);
                // The spend limits, across every session (and the strict ceiling).
                if let Err(msg) = crate::session::limits::gate_admit(
                    &ctx.meter,
                    &c.limits,
                    &c.model,
                    c.max_tokens,
                    c.bytes,
                    session_header(&req),
                    id,
                    reserved,
                ) {
                    ctx.meter.release(id);
                    return refuse_with(w, ctx, &msg);
                }
            }
        }
    }
    let result = forward(&req, w, ctx, call.as_ref());
    if let Some(id) = admitted {
        ctx.meter.release(id);
    }
    if let Some(c) = &call {
        crate::session::limits::gate_done(&ctx.meter, &c.limits);
    }
    result
}

impl Ctx {
    fn agent(&self) -> &ureq::Agent {
        match &self.agent {
            Lazy::Ready(a) => a,
            Lazy::Pending(builder) => self.ready.get_or_init(|| {
                let b =
                    builder.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or_else(ureq::AgentBuilder::new);
                let (tls, problems) = tls_config(&|k: &str| std::env::var(k).ok());
                for p in problems {
                    (self.events)(GateEvent::Problem(p));
                }
                b.tls_connector(Arc::new(Tls(tls))).build()
            }),
        }
    }
}

fn forward(req: &Request, w: &mut TcpStream, ctx: &Ctx, call: Option<&Call>) -> io::Result<()> {
    let url = format!("{}{}", ctx.upstream.base, req.target);
    let mut up = ctx.agent().request(&req.method, &url);
    for (k, v) in &req.headers {
        if !HOP_BY_HOP.iter().any(|h| k.eq_ignore_ascii_case(h)) {
            up = up.set(k, v);
        }
    }
    let sent = if req.body.is_empty() && matches!(req.method.as_str(), "GET" | "HEAD" | "DELETE" | "OPTIONS") {
        up.call()
    } else {
        up.send_bytes(&req.body)
    };
    let resp = match sent {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(ureq::Error::Transport(t)) => {
            let msg = format!("ccb gate: the upstream API could not be reached ({})", t.kind());
            let body = serde_json::json!({"type": "error", "error": {"type": "api_error", "message": msg}}).to_string();
            let head = format!(
                "HTTP/1.1 502 Bad Gateway\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            w.write_all(head.as_bytes())?;
            w.write_all(body.as_bytes())?;
            return w.flush();
        }
    };
    let status = resp.status();
    let mut head = format!("HTTP/1.1 {} {}\r\n", status, resp.status_text());
    for name in resp.headers_names() {
        if HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h)) {
            continue;
        }
        for v in resp.all(&name) {
            head.push_str(&format!("{name}: {v}\r\n"));
        }
    }
    let no_body = req.method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status);
    if !no_body {
        head.push_str("transfer-encoding: chunked\r\n");
    }
    head.push_str("\r\n");
    let request_id = resp.header("request-id").map(String::from);
    let sse = resp.content_type() == "text/event-stream";
    let encoding = resp.header("content-encoding").map(|e| e.to_ascii_lowercase());
    w.write_all(head.as_bytes())?;
    w.flush()?;
    if no_body {
        return Ok(());
    }
    let mut watcher = call.filter(|_| status == 200).map(|c| {
        UsageWatch::new(
            sse,
            encoding.as_deref(),
            crate::core::stream::Bound { prompt_bytes: c.bytes, max_tokens: c.max_tokens },
        )
    });
    let mut reader = resp.into_reader();
    let mut buf = vec![0u8; 64 * 1024];
    let mut client_gone = false;
    let mut upstream_ok = true;
    // The meter learns of a response at once (the next call must see it), the session only once
    // claude has the whole response: a stop must not cut off what is already paid for.
    let mut pending = None;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(_) => {
                upstream_ok = false;
                break;
            }
        };
        if let Some(wt) = &mut watcher {
            wt.feed(&buf[..n]);
            // Count the response as soon as it is complete, before claude has its last bytes:
            // its next call must already see this one's cost.
            if wt.complete() && !wt.counted {
                wt.counted = true;
                pending = count(ctx, wt, call, request_id.as_deref(), session_header(req), false);
            }
        }
        let chunk = format!("{n:x}\r\n");
        if w.write_all(chunk.as_bytes())
            .and_then(|_| w.write_all(&buf[..n]))
            .and_then(|_| w.write_all(b"\r\n"))
            .and_then(|_| w.flush())
            .is_err()
        {
            client_gone = true;
            break;
        }
    }
    if let Some(wt) = &mut watcher {
        wt.finish();
        if !wt.counted && (wt.complete() || wt.started()) {
            // Cut off (Esc, a kill, a broken upstream): charge what was streamed.
            wt.counted = true;
            pending = count(ctx, wt, call, request_id.as_deref(), session_header(req), !wt.complete());
        }
    }
    let tell = |pending: Option<GateEvent>| {
        if let Some(e) = pending {
            (ctx.events)(e);
        }
    };
    if client_gone || !upstream_ok {
        tell(pending.take());
    }
    if client_gone {
        return Err(io::Error::new(io::ErrorKind::BrokenPipe, "client went away"));
    }
    if !upstream_ok {
        return Err(io::Error::other("upstream broke off"));
    }
    let done = w.write_all(b"0\r\n\r\n").and_then(|_| w.flush());
    tell(pending);
    done
}

/// Count a response in the meter; the event for the session is returned, to send when claude
/// has the response.
fn count(
    ctx: &Ctx,
    wt: &UsageWatch,
    call: Option<&Call>,
    request_id: Option<&str>,
    session: Option<&str>,
    cut_off: bool,
) -> Option<GateEvent> {
    let reading = wt.reading(cut_off)?;
    let message_id = wt.message_id.clone().filter(|m| !m.is_empty());
    let request_id = request_id.filter(|r| !r.is_empty());
    let key = match (&message_id, request_id) {
        (Some(m), Some(r)) => format!("{m}:{r}"),
        (Some(m), None) => m.clone(),
        (None, Some(r)) => format!(":{r}"),
        // No id to count it once by: still counted, once, under a key of its own.
        (None, None) => format!("gate:{}", uuid::Uuid::new_v4()),
    };
    let asked = call.map(|c| c.model.as_str()).unwrap_or("");
    let routed = call.and_then(|c| c.routed.as_ref());
    let event = UsageEvent {
        key,
        request_id: request_id.map(String::from),
        session_id: session.map(String::from),
        agent_id: None,
        // Claude Code prices the model it asked for; so does ccb, or, for a call the routing
        // rewrote, the model that served it.
        model: if asked.is_empty() { wt.response_model.clone().unwrap_or_default() } else { asked.to_string() },
        requested_model: routed.map(|r| r.requested.clone()),
        usage: reading.usage,
        mods: wt.mods().clone(),
        timestamp: Some(jiff::Timestamp::now().to_string()),
        entrypoint: None,
        cwd: None,
        git_branch: None,
        estimated: reading.estimated,
    };
    let outcome = ctx.meter.report(&event, &ctx.prices);
    if let (Some(r), Some(router)) = (routed, &ctx.router) {
        if let Some(n) = router.downgrade_notice(r, &event.usage, &ctx.prices) {
            (ctx.events)(GateEvent::Notice(n));
        }
    }
    if let Some(c) = call {
        crate::session::limits::gate_counted(&ctx.meter, &c.limits, &event, &outcome);
    }
    Some(GateEvent::Usage { event: Box::new(event), outcome })
}

pub use crate::core::stream::UsageWatch;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_hosts() {
        assert_eq!(Upstream::new(None).host(), "api.anthropic.com");
        assert_eq!(Upstream::new(Some("http://127.0.0.1:8080/")).base, "http://127.0.0.1:8080");
        assert_eq!(Upstream::new(Some("https://u:p@gw.corp:8443/anthropic")).host(), "gw.corp");
        assert_eq!(Upstream::new(Some("http://[::1]:9/")).host(), "::1");
    }

    #[test]
    fn a_compressed_request_body_is_read_for_its_model() {
        use std::io::Write;
        let json = br#"{"model":"claude-sonnet-5-5","max_tokens":32000,"stream":true}"#;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(json).unwrap();
        let req = |headers: Vec<(String, String)>, body: Vec<u8>| Request {
            method: "POST".into(),
            target: "/v1/messages?beta=true".into(),
            headers,
            body,
        };
        let gzipped = req(vec![("Content-Encoding".into(), "gzip".into())], gz.finish().unwrap());
        let c = model_call(&gzipped);
        assert_eq!((c.model.as_str(), c.max_tokens, c.bytes), ("claude-sonnet-5-5", 32000, json.len() as u64));
        let plain = model_call(&req(vec![], json.to_vec()));
        assert_eq!((plain.model.as_str(), plain.max_tokens), ("claude-sonnet-5-5", 32000));
        // Not what it says it is: read as nothing, not an error.
        let bad = model_call(&req(vec![("content-encoding".into(), "gzip".into())], b"{}".to_vec()));
        assert_eq!(bad.model, "");
    }
}
