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

use crate::meter::{Admission, Meter};
use crate::pricing::{PriceTable, Usage};
use crate::transcript::{usage_from_api, UsageEvent};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the gate tells the session.
#[derive(Debug)]
pub enum GateEvent {
    /// A response was counted (or found counted already) in the meter.
    Usage { event: Box<UsageEvent>, outcome: crate::meter::Outcome },
    /// A model call was refused at the ceiling.
    Refused,
    /// Something the user should know (an unreadable CA file).
    Problem(String),
    /// On the first-party path, a model call came without `x-client-request-id`: claude did not
    /// take the first-party switch and sends what it sends a third-party gateway (sent once).
    FirstPartyIgnored,
}

/// Where requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// `https://api.anthropic.com`, or the user's `ANTHROPIC_BASE_URL` without a trailing '/'.
    pub base: String,
    /// The first-party path (see [`crate::first_party`]): watch that claude's model calls carry
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

/// The proxy for a host, from `HTTPS_PROXY`/`HTTP_PROXY` (and lower-case forms), unless
/// `NO_PROXY` names the host (exact, a domain suffix, or `*`).
pub fn proxy_for(host: &str, https: bool, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let get = |k: &str| env(k).or_else(|| env(&k.to_ascii_lowercase())).filter(|v| !v.trim().is_empty());
    let proxy = if https {
        get("HTTPS_PROXY").or_else(|| get("ALL_PROXY"))
    } else {
        get("HTTP_PROXY").or_else(|| get("ALL_PROXY"))
    }?;
    if let Some(no) = get("NO_PROXY") {
        let host = host.to_ascii_lowercase();
        for entry in no.split(',').map(|e| e.trim().to_ascii_lowercase()) {
            let entry = entry.split(':').next().unwrap_or("").trim_start_matches('.').to_string();
            if entry == "*" || (!entry.is_empty() && (host == entry || host.ends_with(&format!(".{entry}")))) {
                return None;
            }
        }
    }
    Some(proxy)
}

/// Where Linux distributions keep the system's CA bundle (what OpenSSL, Go and Claude Code's
/// runtime read): Debian, Ubuntu, Arch, Gentoo; Fedora and RHEL; openSUSE; OpenELEC; CentOS and
/// RHEL 7+; Alpine. The first that exists is the system store; a CA that an administrator
/// installs system-wide (`update-ca-certificates`, `update-ca-trust`) lands in it.
pub const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/tls/cacert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// Which stores claude trusts, from `CLAUDE_CODE_CERT_STORE` as Claude Code reads it (a
/// comma-separated list of `bundled` and `system`; unknown words ignored; both when unset or
/// when nothing is left): (bundled, system).
pub fn cert_stores(value: Option<&str>) -> (bool, bool) {
    let mut stores = (false, false);
    for w in value.unwrap_or("").split(',').map(|w| w.trim().to_ascii_lowercase()) {
        match w.as_str() {
            "bundled" => stores.0 = true,
            "system" => stores.1 = true,
            _ => {}
        }
    }
    if stores == (false, false) {
        (true, true)
    } else {
        stores
    }
}

/// TLS roots, the ones claude trusts: the bundled web PKI roots, the system's CA bundle (the
/// first of [`SYSTEM_BUNDLES`]), as `CLAUDE_CODE_CERT_STORE` selects, plus the PEM files named by
/// `SSL_CERT_FILE` and `NODE_EXTRA_CA_CERTS` (what a corporate proxy's CA is usually given to
/// claude with).
pub fn tls_config(env: &dyn Fn(&str) -> Option<String>) -> (Arc<rustls::ClientConfig>, Vec<String>) {
    let bundles: Vec<&std::path::Path> = SYSTEM_BUNDLES.iter().map(std::path::Path::new).collect();
    let (roots, problems) = root_store(env, &bundles);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(cfg), problems)
}

/// The roots of [`tls_config`], with the system bundle looked for in `system_bundles`.
pub fn root_store(
    env: &dyn Fn(&str) -> Option<String>,
    system_bundles: &[&std::path::Path],
) -> (rustls::RootCertStore, Vec<String>) {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let (bundled, system) = cert_stores(env("CLAUDE_CODE_CERT_STORE").as_deref());
    if bundled {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    if system {
        // A system bundle holds a few certificates rustls cannot use (old or odd encodings):
        // skipped, as every TLS stack does.
        if let Some(certs) = system_bundles
            .iter()
            .find(|p| p.is_file())
            .and_then(|p| rustls_pki_types::CertificateDer::pem_file_iter(p).ok())
        {
            roots.add_parsable_certificates(certs.flatten());
        }
    }
    let mut problems = Vec::new();
    for var in ["SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS"] {
        let Some(path) = env(var).filter(|p| !p.is_empty()) else { continue };
        match rustls_pki_types::CertificateDer::pem_file_iter(&path) {
            Ok(certs) => {
                for c in certs.flatten() {
                    if roots.add(c).is_err() {
                        problems.push(format!("{var}: a certificate in {path} is not usable"));
                    }
                }
            }
            Err(_) => problems.push(format!("{var}: cannot read certificates from {path}")),
        }
    }
    (roots, problems)
}

/// TLS to the upstream, through rustls, with one difference from ureq's own: a TCP end without
/// TLS `close_notify` reads as `ConnectionAborted`, not `UnexpectedEof`.
///
/// Many servers and load balancers end TLS that way once a response is complete. What counts is
/// the HTTP framing, and ureq judges it: a length-delimited body ends at its length, and a
/// close-delimited body cut this way is still an error (no framing says it is whole). But ureq's
/// chunked decoder takes only a reset or an aborted connection, not `UnexpectedEof`, as the end
/// after the last chunk (`0\r\n`) when the final empty line does not come: the gate withheld
/// the end of a response that claude, talking to the upstream itself, takes as whole, and claude
/// retried a call already paid for.
struct Tls(Arc<rustls::ClientConfig>);

impl ureq::TlsConnector for Tls {
    fn connect(&self, dns_name: &str, io: Box<dyn ureq::ReadWrite>) -> Result<Box<dyn ureq::ReadWrite>, ureq::Error> {
        let inner = ureq::TlsConnector::connect(&self.0, dns_name, io)?;
        Ok(Box::new(UncleanEnd(inner)))
    }
}

#[derive(Debug)]
struct UncleanEnd(Box<dyn ureq::ReadWrite>);

impl Read for UncleanEnd {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).map_err(unclean_end)
    }
}

/// rustls's `UnexpectedEof` (the peer closed TCP without `close_notify`) as `ConnectionAborted`.
fn unclean_end(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        io::Error::new(io::ErrorKind::ConnectionAborted, "the upstream closed the connection without TLS close_notify")
    } else {
        e
    }
}

impl Write for UncleanEnd {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl ureq::ReadWrite for UncleanEnd {
    fn socket(&self) -> Option<&TcpStream> {
        self.0.socket()
    }
}

pub struct Gate {
    pub port: u16,
    /// `/<token>`: the path prefix every request must carry.
    prefix: String,
    listener: Option<TcpListener>,
}

impl Gate {
    /// Bind 127.0.0.1 on a free port (before claude starts: the port goes into its environment).
    pub fn bind() -> io::Result<Gate> {
        let prefix = format!("/{}", crate::paths::random_token()?);
        let l = TcpListener::bind("127.0.0.1:0")?;
        Ok(Gate { port: l.local_addr()?.port(), prefix, listener: Some(l) })
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
            prefix: self.prefix.clone(),
            agent,
            ready: std::sync::OnceLock::new(),
            upstream,
            meter,
            prices,
            events: Box::new(events),
            refusals: AtomicU64::new(0),
            first_party_ignored: std::sync::atomic::AtomicBool::new(false),
        });
        let listener = self.listener.take().ok_or_else(|| io::Error::other("gate already serving"))?;
        std::thread::Builder::new().name("ccb-gate".into()).spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let ctx = ctx.clone();
                let _ = std::thread::Builder::new().name("ccb-gate-conn".into()).spawn(move || {
                    let _ = serve_connection(conn, &ctx);
                });
            }
        })?;
        Ok(problems)
    }
}

/// The upstream client, built on a thread of its own when TLS roots must be read.
enum Lazy {
    Ready(ureq::Agent),
    Pending(Mutex<Option<ureq::AgentBuilder>>),
}

struct Ctx {
    prefix: String,
    agent: Lazy,
    ready: std::sync::OnceLock<ureq::Agent>,
    upstream: Upstream,
    meter: Arc<Meter>,
    prices: Arc<PriceTable>,
    events: Box<dyn Fn(GateEvent) + Send + Sync>,
    refusals: AtomicU64,
    /// [`GateEvent::FirstPartyIgnored`] was sent.
    first_party_ignored: std::sync::atomic::AtomicBool,
}

/// One request as it came from claude.
struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

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

/// The request target without the gate's path prefix, or None when it does not carry it:
/// `/<token>/v1/messages?beta=true` → `/v1/messages?beta=true`, `/<token>` → `/`.
fn strip_prefix<'a>(target: &'a str, prefix: &str) -> Option<std::borrow::Cow<'a, str>> {
    let head = target.get(..prefix.len())?;
    if !crate::paths::token_eq(head.as_bytes(), prefix.as_bytes()) {
        return None;
    }
    let rest = &target[prefix.len()..];
    match rest.as_bytes().first() {
        None => Some("/".into()),
        Some(b'/') => Some(rest.into()),
        Some(b'?') => Some(format!("/{rest}").into()),
        Some(_) => None,
    }
}

/// Answer a request that does not carry the gate's prefix, and close the connection.
fn turn_away(w: &mut TcpStream) -> io::Result<()> {
    let body = r#"{"type":"error","error":{"type":"not_found_error","message":"Not found"}}"#;
    let head = format!(
        "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    w.write_all(head.as_bytes())?;
    w.write_all(body.as_bytes())?;
    w.flush()?;
    close_unread(w);
    Ok(())
}

/// Close a connection whose request was not read: stop writing, then drop what the client
/// still sends (at most 256 KiB, for at most a second), so that the kernel does not answer its
/// unread bytes with a reset that would discard the answer before the client reads it.
pub(crate) fn close_unread(conn: &TcpStream) {
    let _ = conn.shutdown(std::net::Shutdown::Write);
    let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
    let until = std::time::Instant::now() + Duration::from_secs(1);
    let mut buf = [0u8; 8192];
    let mut left = 256 * 1024usize;
    while let Ok(n @ 1..) = (&*conn).read(&mut buf) {
        left = left.saturating_sub(n);
        if left == 0 || std::time::Instant::now() >= until {
            break;
        }
    }
}

fn read_request(r: &mut BufReader<TcpStream>, w: &mut TcpStream, prefix: &str) -> io::Result<Option<Request>> {
    let mut line = String::new();
    // Request line (skipping stray empty lines between requests).
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        if !line.trim().is_empty() {
            break;
        }
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "bad request line"));
    };
    // Checked before anything else is read: a stranger's headers and body are never taken in.
    let Some(target) = strip_prefix(target, prefix) else {
        turn_away(w)?;
        return Err(io::Error::new(io::ErrorKind::PermissionDenied, "no gate token"));
    };
    let (method, target) = (method.to_string(), target.into_owned());
    let mut headers = Vec::new();
    let mut head_bytes = 0usize;
    loop {
        line.clear();
        let n = r.read_line(&mut line)?;
        head_bytes += n;
        if n == 0 || head_bytes > 256 * 1024 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "bad request head"));
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let get = |name: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
    if get("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let mut body = Vec::new();
    if get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk"))?;
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    line.clear();
                    if r.read_line(&mut line)? == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..])?;
            line.clear();
            r.read_line(&mut line)?;
        }
    } else if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(len, 0);
        r.read_exact(&mut body)?;
    }
    Ok(Some(Request { method, target, headers, body }))
}

fn serve_connection(conn: TcpStream, ctx: &Ctx) -> io::Result<()> {
    conn.set_nodelay(true)?;
    let mut w = conn.try_clone()?;
    let mut r = BufReader::new(conn);
    while let Some(req) = read_request(&mut r, &mut w, &ctx.prefix)? {
        let close =
            req.headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close"));
        handle(req, &mut w, ctx)?;
        if close {
            break;
        }
    }
    Ok(())
}

/// What a model call asks for, from its JSON body.
struct Call {
    model: String,
    max_tokens: u64,
    /// The size of its JSON body.
    bytes: u64,
}

/// The session id claude sends with each model call.
fn session_header(req: &Request) -> Option<&str> {
    req.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("x-claude-code-session-id"))
        .map(|(_, v)| v.trim())
        .filter(|v| crate::args::is_session_id(v))
}

fn model_call(req: &Request) -> Option<Call> {
    let path = req.target.split('?').next().unwrap_or("");
    if req.method != "POST" || !path.ends_with("/v1/messages") {
        return None;
    }
    #[derive(serde::Deserialize)]
    struct Body {
        model: Option<String>,
        max_tokens: Option<u64>,
    }
    let body = request_body(req);
    let b: Body = serde_json::from_slice(&body).unwrap_or(Body { model: None, max_tokens: None });
    Some(Call { model: b.model.unwrap_or_default(), max_tokens: b.max_tokens.unwrap_or(0), bytes: body.len() as u64 })
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

fn refuse(w: &mut TcpStream, ctx: &Ctx, spent: crate::money::Usd, ceiling: crate::money::Usd) -> io::Result<()> {
    let n = ctx.refusals.fetch_add(1, Ordering::Relaxed) + 1;
    let msg = format!(
        "ccb: session ceiling reached: {spent} of the {ceiling} ceiling spent; resume the session with --budget <USD>, a larger total, to go on"
    );
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

fn handle(req: Request, w: &mut TcpStream, ctx: &Ctx) -> io::Result<()> {
    let call = model_call(&req);
    if call.is_some()
        && ctx.upstream.first_party
        && !req.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(crate::first_party::HEADER))
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
            Admission::Go { call, .. } => admitted = Some(call),
        }
    }
    let result = forward(&req, w, ctx, call.as_ref());
    if let Some(id) = admitted {
        ctx.meter.release(id);
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
    let mut watcher =
        call.filter(|_| status == 200).map(|c| UsageWatch::new(c.model.clone(), sse, encoding.as_deref()));
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
                pending = count(ctx, wt, request_id.as_deref(), session_header(req), false);
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
            pending = count(ctx, wt, request_id.as_deref(), session_header(req), !wt.complete());
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
    request_id: Option<&str>,
    session: Option<&str>,
    estimated: bool,
) -> Option<GateEvent> {
    let usage = wt.usage(estimated)?;
    let message_id = wt.message_id.clone();
    let key = match (&message_id, request_id) {
        (Some(m), Some(r)) => format!("{m}:{r}"),
        (Some(m), None) => m.clone(),
        (None, Some(r)) => format!(":{r}"),
        (None, None) => return None,
    };
    let event = UsageEvent {
        key,
        request_id: request_id.map(String::from),
        session_id: session.map(String::from),
        agent_id: None,
        // Claude Code prices the model it asked for; so does ccb.
        model: if wt.model.is_empty() { wt.response_model.clone().unwrap_or_default() } else { wt.model.clone() },
        usage,
        mods: crate::pricing::Modifiers { fast: wt.fast, geo: wt.geo.clone() },
        timestamp: Some(jiff::Timestamp::now().to_string()),
        entrypoint: None,
        cwd: None,
    };
    let outcome = ctx.meter.report(&event, &ctx.prices);
    Some(GateEvent::Usage { event: Box::new(event), outcome })
}

/// Reads a model response as it streams by: the usage of `message_start`, merged with the
/// final figures of `message_delta` (a figure above zero wins), and how much text streamed, for
/// an estimate when the stream is cut off.
pub struct UsageWatch {
    model: String,
    sse: bool,
    decoder: Option<Box<dyn Write + Send>>,
    decoded: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    line: Vec<u8>,
    json: Vec<u8>,
    message_id: Option<String>,
    response_model: Option<String>,
    start: Option<serde_json::Value>,
    delta: Option<serde_json::Value>,
    stopped: bool,
    streamed_bytes: u64,
    fast: bool,
    geo: Option<String>,
    counted: bool,
}

/// Collects decompressed bytes for the watcher.
struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl UsageWatch {
    pub fn new(model: String, sse: bool, encoding: Option<&str>) -> UsageWatch {
        let decoded = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let decoder: Option<Box<dyn Write + Send>> = match encoding {
            Some("gzip") => Some(Box::new(flate2::write::GzDecoder::new(Sink(decoded.clone())))),
            Some("deflate") => Some(Box::new(flate2::write::ZlibDecoder::new(Sink(decoded.clone())))),
            _ => None,
        };
        UsageWatch {
            model,
            sse,
            decoder,
            decoded,
            line: Vec::new(),
            json: Vec::new(),
            message_id: None,
            response_model: None,
            start: None,
            delta: None,
            stopped: false,
            streamed_bytes: 0,
            fast: false,
            geo: None,
            counted: false,
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        let plain: Vec<u8> = match &mut self.decoder {
            Some(d) => {
                let _ = d.write_all(bytes);
                let _ = d.flush();
                std::mem::take(&mut *self.decoded.lock().unwrap_or_else(|e| e.into_inner()))
            }
            None => bytes.to_vec(),
        };
        if !self.sse {
            if self.json.len() < 32 * 1024 * 1024 {
                self.json.extend_from_slice(&plain);
            }
            return;
        }
        for &b in &plain {
            if b == b'\n' {
                let line = std::mem::take(&mut self.line);
                self.sse_line(&line);
            } else {
                self.line.push(b);
            }
        }
    }

    fn sse_line(&mut self, line: &[u8]) {
        let Some(data) = line.strip_prefix(b"data:") else { return };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(data.trim_ascii()) else { return };
        match v["type"].as_str() {
            Some("message_start") => {
                self.message_id = v["message"]["id"].as_str().map(String::from);
                self.response_model = v["message"]["model"].as_str().map(String::from);
                self.start = Some(v["message"]["usage"].clone());
            }
            Some("message_delta") => self.delta = Some(v["usage"].clone()),
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

    /// The end of the body: a non-streamed response is parsed whole.
    pub fn finish(&mut self) {
        if self.sse {
            if !self.line.is_empty() {
                let line = std::mem::take(&mut self.line);
                self.sse_line(&line);
            }
            return;
        }
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&self.json) {
            if v["type"] == "message" {
                self.message_id = v["id"].as_str().map(String::from);
                self.response_model = v["model"].as_str().map(String::from);
                self.start = Some(v["usage"].clone());
                self.stopped = true;
            }
        }
    }

    pub fn started(&self) -> bool {
        self.start.is_some()
    }

    pub fn complete(&self) -> bool {
        self.stopped && self.start.is_some()
    }

    /// The response's usage; `estimated` for a cut-off stream (output from what streamed).
    pub fn usage(&self, estimated: bool) -> Option<Usage> {
        let start = self.start.as_ref()?;
        let pick = |k: &str| -> u64 {
            let d = self.delta.as_ref().and_then(|d| d[k].as_u64()).unwrap_or(0);
            if d > 0 {
                d
            } else {
                start[k].as_u64().unwrap_or(0)
            }
        };
        let one_hour = self
            .delta
            .as_ref()
            .and_then(|d| d["cache_creation"]["ephemeral_1h_input_tokens"].as_u64())
            .filter(|n| *n > 0)
            .or_else(|| start["cache_creation"]["ephemeral_1h_input_tokens"].as_u64());
        let web = self
            .delta
            .as_ref()
            .and_then(|d| d["server_tool_use"]["web_search_requests"].as_u64())
            .filter(|n| *n > 0)
            .or_else(|| start["server_tool_use"]["web_search_requests"].as_u64())
            .unwrap_or(0);
        let mut output = pick("output_tokens");
        if estimated {
            // About four bytes of text per token; never less than what was reported.
            output = output.max(self.streamed_bytes.div_ceil(4));
        }
        Some(usage_from_api(
            pick("input_tokens"),
            output,
            pick("cache_creation_input_tokens"),
            one_hour,
            pick("cache_read_input_tokens"),
            web,
        ))
    }
}

impl std::fmt::Debug for UsageWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageWatch").field("message_id", &self.message_id).field("stopped", &self.stopped).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sse(events: &[serde_json::Value]) -> Vec<u8> {
        let mut out = Vec::new();
        for e in events {
            out.extend_from_slice(format!("event: {}\ndata: {}\n\n", e["type"].as_str().unwrap(), e).as_bytes());
        }
        out
    }

    fn stream() -> Vec<serde_json::Value> {
        use serde_json::json;
        vec![
            json!({"type": "message_start", "message": {"id": "msg_1", "model": "claude-sonnet-4-6", "usage": {"input_tokens": 100, "cache_creation_input_tokens": 30, "cache_read_input_tokens": 7, "cache_creation": {"ephemeral_5m_input_tokens": 10, "ephemeral_1h_input_tokens": 20}, "output_tokens": 1}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello, world! This is streamed."}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 42}}),
            json!({"type": "message_stop"}),
        ]
    }

    #[test]
    fn reads_usage_from_a_stream_in_any_chunking() {
        let bytes = sse(&stream());
        for chunk in [1, 7, 64, bytes.len()] {
            let mut w = UsageWatch::new("claude-sonnet-4-6".into(), true, None);
            for c in bytes.chunks(chunk) {
                w.feed(c);
            }
            w.finish();
            assert!(w.complete(), "chunk {chunk}");
            assert_eq!(w.message_id.as_deref(), Some("msg_1"));
            let u = w.usage(false).unwrap();
            assert_eq!(
                u,
                Usage { input: 100, output: 42, cache_write_5m: 10, cache_write_1h: 20, cache_read: 7, web_search: 0 }
            );
        }
    }

    #[test]
    fn a_cut_off_stream_is_charged_for_what_streamed() {
        let bytes = sse(&stream()[..3]);
        let mut w = UsageWatch::new("m".into(), true, None);
        w.feed(&bytes);
        w.finish();
        assert!(w.started() && !w.complete());
        let u = w.usage(true).unwrap();
        assert_eq!(u.input, 100);
        assert_eq!(u.output, 8, "31 bytes of text: about 8 tokens, more than message_start's 1");
    }

    #[test]
    fn reads_a_gzipped_json_response() {
        use std::io::Write;
        let body = serde_json::json!({"type": "message", "id": "msg_9", "model": "claude-haiku-4-5", "usage": {"input_tokens": 5, "output_tokens": 6}}).to_string();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(body.as_bytes()).unwrap();
        let z = gz.finish().unwrap();
        let mut w = UsageWatch::new("claude-haiku-4-5".into(), false, Some("gzip"));
        for c in z.chunks(5) {
            w.feed(c);
        }
        w.finish();
        assert!(w.complete());
        assert_eq!(w.usage(false).unwrap().output, 6);
    }

    #[test]
    fn proxies_and_no_proxy() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        let e = env(&[("HTTPS_PROXY", "http://proxy:3128")]);
        assert_eq!(proxy_for("api.anthropic.com", true, &e).as_deref(), Some("http://proxy:3128"));
        assert_eq!(proxy_for("api.anthropic.com", false, &e), None, "HTTPS_PROXY is for https");
        let e = env(&[("https_proxy", "http://p:1"), ("no_proxy", "localhost,.anthropic.com")]);
        assert_eq!(proxy_for("api.anthropic.com", true, &e), None);
        assert_eq!(proxy_for("example.com", true, &e).as_deref(), Some("http://p:1"));
        let e = env(&[("HTTPS_PROXY", "http://p:1"), ("NO_PROXY", "*")]);
        assert_eq!(proxy_for("x", true, &e), None);
    }

    #[test]
    fn only_requests_with_the_prefix_pass_and_lose_it() {
        let p = "/0123456789abcdef0123456789abcdef";
        let pass = |t: &str| strip_prefix(t, p).map(|c| c.into_owned());
        assert_eq!(pass(&format!("{p}/v1/messages?beta=true")).as_deref(), Some("/v1/messages?beta=true"));
        assert_eq!(pass(p).as_deref(), Some("/"));
        assert_eq!(pass(&format!("{p}?x=1")).as_deref(), Some("/?x=1"));
        assert_eq!(pass(&format!("{p}/")).as_deref(), Some("/"));
        for wrong in [
            "/v1/messages",
            "/",
            "",
            "/0123456789abcdef0123456789abcde",
            "/0123456789abcdef0123456789abcdeg/v1/messages",
            "/0123456789abcdef0123456789abcdefX/v1/messages",
            "http://127.0.0.1:1/0123456789abcdef0123456789abcdef/v1/messages",
            "/0123456789abcdef0123456789abcde\u{e9}/v1",
        ] {
            assert_eq!(pass(wrong), None, "{wrong}");
        }
    }

    #[test]
    fn upstream_hosts() {
        assert_eq!(Upstream::new(None).host(), "api.anthropic.com");
        assert_eq!(Upstream::new(Some("http://127.0.0.1:8080/")).base, "http://127.0.0.1:8080");
        assert_eq!(Upstream::new(Some("https://u:p@gw.corp:8443/anthropic")).host(), "gw.corp");
        assert_eq!(Upstream::new(Some("http://[::1]:9/")).host(), "::1");
    }

    #[test]
    fn cert_stores_as_claude_reads_them() {
        for (v, want) in [
            (None, (true, true)),
            (Some(""), (true, true)),
            (Some("bundled"), (true, false)),
            (Some(" System "), (false, true)),
            (Some("system,bundled"), (true, true)),
            (Some("nonsense"), (true, true)),
            (Some("nonsense,system"), (false, true)),
        ] {
            assert_eq!(cert_stores(v), want, "{v:?}");
        }
    }

    /// A throwaway CA and a certificate it signed for `localhost`.
    fn test_ca() -> (rcgen::Certificate, rcgen::Certificate, rcgen::KeyPair) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "ccb unit-test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &ca, &ca_key)
            .unwrap();
        (ca, leaf, leaf_key)
    }

    #[test]
    fn the_system_bundle_is_trusted_as_claude_selects() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, _, _) = test_ca();
        let bundle = dir.path().join("ca-certificates.crt");
        // A system bundle may hold a certificate rustls cannot use: skipped, the rest kept.
        std::fs::write(&bundle, format!("{}-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", ca.pem()))
            .unwrap();
        let missing = dir.path().join("missing.pem");
        let bundles = [missing.as_path(), bundle.as_path()];
        let web = webpki_roots::TLS_SERVER_ROOTS.len();
        let roots = |store: Option<&str>, bundles: &[&std::path::Path]| {
            let store = store.map(String::from);
            let env = move |k: &str| if k == "CLAUDE_CODE_CERT_STORE" { store.clone() } else { None };
            let (r, problems) = root_store(&env, bundles);
            assert!(problems.is_empty(), "{problems:?}");
            r.len()
        };
        assert_eq!(roots(None, &bundles), web + 1, "the first bundle that exists");
        assert_eq!(roots(None, &[missing.as_path()]), web, "no system bundle: the web PKI roots");
        assert_eq!(roots(Some("bundled"), &bundles), web);
        assert_eq!(roots(Some("system"), &bundles), 1);
        // SSL_CERT_FILE and NODE_EXTRA_CA_CERTS still count, and a bad one is said.
        let extra = dir.path().join("extra.pem");
        std::fs::write(&extra, test_ca().0.pem()).unwrap();
        let (extra_s, missing_s) = (extra.display().to_string(), missing.display().to_string());
        let env = move |k: &str| match k {
            "SSL_CERT_FILE" => Some(extra_s.clone()),
            "NODE_EXTRA_CA_CERTS" => Some(missing_s.clone()),
            _ => None,
        };
        let (r, problems) = root_store(&env, &bundles);
        assert_eq!(r.len(), web + 2);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("NODE_EXTRA_CA_CERTS: cannot read certificates from"), "{problems:?}");
    }

    /// An HTTPS server for one request: it answers with `response` and closes TCP without TLS
    /// `close_notify`. The port, and the CA that signed its certificate.
    fn unclean_server(response: &'static [u8]) -> (u16, rustls::RootCertStore) {
        let (ca, leaf, leaf_key) = test_ca();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(
                    vec![leaf.der().clone()],
                    rustls_pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
                )
                .unwrap(),
        );
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (tcp, _) = l.accept().unwrap();
            let mut tls = rustls::StreamOwned::new(rustls::ServerConnection::new(cfg).unwrap(), tcp);
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && tls.read(&mut b).unwrap_or(0) == 1 {
                head.push(b[0]);
            }
            tls.write_all(response).unwrap();
            tls.flush().unwrap();
            // No send_close_notify: TCP just ends.
            let _ = tls.sock.shutdown(std::net::Shutdown::Both);
        });
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        (port, roots)
    }

    fn fetch(response: &'static [u8], ours: bool) -> io::Result<Vec<u8>> {
        let (port, roots) = unclean_server(response);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        );
        let b = ureq::AgentBuilder::new();
        let agent = if ours { b.tls_connector(Arc::new(Tls(cfg))) } else { b.tls_config(cfg) }.build();
        let resp = agent.get(&format!("https://localhost:{port}/")).call().map_err(io::Error::other)?;
        let mut body = Vec::new();
        resp.into_reader().read_to_end(&mut body)?;
        Ok(body)
    }

    #[test]
    fn a_framed_response_is_whole_however_tls_ends() {
        // The last chunk without the final empty line, then TCP's end without close_notify:
        // claude takes the response as whole; ureq's own TLS stream made it an error.
        const LAST_CHUNK_THEN_EOF: &[u8] = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n";
        assert_eq!(fetch(LAST_CHUNK_THEN_EOF, true).unwrap(), b"hello");
        assert!(
            fetch(LAST_CHUNK_THEN_EOF, false).is_err(),
            "ureq's own TLS stream now takes this end as whole: UncleanEnd can go"
        );
        const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        assert_eq!(fetch(CHUNKED, true).unwrap(), b"hello");
        const LENGTH: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello";
        assert_eq!(fetch(LENGTH, true).unwrap(), b"hello");
    }

    #[test]
    fn an_unframed_or_cut_response_is_never_whole() {
        // Close-delimited: nothing says it is whole, and an unclean end may be a truncation.
        const UNFRAMED: &[u8] = b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nhello";
        assert!(fetch(UNFRAMED, true).is_err());
        const SHORT: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nhello";
        assert!(fetch(SHORT, true).is_err());
        const MID_CHUNKS: &[u8] = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n";
        assert!(fetch(MID_CHUNKS, true).is_err());
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
        let c = model_call(&gzipped).unwrap();
        assert_eq!((c.model.as_str(), c.max_tokens, c.bytes), ("claude-sonnet-5-5", 32000, json.len() as u64));
        let plain = model_call(&req(vec![], json.to_vec())).unwrap();
        assert_eq!((plain.model.as_str(), plain.max_tokens), ("claude-sonnet-5-5", 32000));
        // Not what it says it is: read as nothing, not an error.
        let bad = model_call(&req(vec![("content-encoding".into(), "gzip".into())], b"{}".to_vec())).unwrap();
        assert_eq!(bad.model, "");
        assert!(model_call(&Request { method: "GET".into(), ..req(vec![], vec![]) }).is_none());
    }
}
