//! One small HTTP/1.1 server for ccb's two loopback listeners, the gate and the telemetry
//! receiver, with every size and time bounded.
//!
//! Any local process, and any other local user, can connect to a loopback port, for the whole of
//! every session. So nothing a client sends may crash ccb, grow it without bound, or keep the
//! session's own calls from being served:
//!
//! - **The token first.** A new connection is not given a thread. One thread per listener
//!   watches every new connection with `poll(2)` and reads only the first bytes of its request
//!   line, at most [`GUARD_BYTES`], until the path shows the listener's secret token (compared in
//!   constant time) or shows that it does not carry it. Only then is the connection handed to a
//!   worker thread; a stranger's headers and body are never read. At most `pending` connections
//!   wait to show their token, for at most `token_time`; when more arrive, the one that has waited
//!   longest is closed. 10,000 idle connections cost ccb a bounded table of small buffers, not
//!   10,000 threads.
//! - **Bounded workers.** At most `workers` connections that carry the token are served at once.
//!   When all are taken, the one idle longest between requests is closed to make room (claude
//!   opens another when it needs one); when none is idle, the new connection is answered 503.
//! - **Bounded requests.** The head (request line and headers) is at most `max_head` bytes and
//!   `max_headers` headers, read within `head_time`; the body at most `max_body` bytes (refused
//!   before any of it is read when its length says more), read within `body_time`. Memory per
//!   connection is therefore at most about `max_head + max_body`.
//! - **Cheap refusals.** A refusal is one short answer, then the connection is closed after
//!   draining at most 256 KiB for at most a second (so the answer is not lost to a reset).
//!
//! Handlers get whole requests ([`Request`]) and write their answer to the connection
//! themselves (the gate streams responses through). Reading a request's body within its bounds
//! (framing, chunked decoding, deadlines) is in `request.rs`.
//!
//! Over 600 lines: the acceptor, the workers and the per-request bounds share the server's
//! state and are read together when a limit is questioned; the body's framing is apart, in
//! `request.rs`.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod request;
use request::{framing, Conn, Framing, Refuse};

/// The bounds of one listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Request line and headers, in bytes.
    pub max_head: usize,
    /// Headers per request.
    pub max_headers: usize,
    /// Body, in bytes (after chunked decoding).
    pub max_body: usize,
    /// Time for a new connection to show its token.
    pub token_time: Duration,
    /// Time to send a whole head once its first byte came.
    pub head_time: Duration,
    /// Time to send a whole body once its head came.
    pub body_time: Duration,
    /// How long a connection may sit idle between requests.
    pub idle: Duration,
    /// Connections waiting to show their token.
    pub pending: usize,
    /// Connections served at once (each a thread).
    pub workers: usize,
}

impl Limits {
    /// The gate: bodies as large as Anthropic's Messages API takes (32 MB: images, 1M-token
    /// prompts); Node's own server caps a head at 16 KiB, claude's are 2–5 KiB.
    pub const GATE: Limits = Limits {
        max_head: 64 * 1024,
        max_headers: 128,
        max_body: 32 * 1024 * 1024,
        token_time: Duration::from_secs(5),
        head_time: Duration::from_secs(30),
        body_time: Duration::from_secs(120),
        idle: Duration::from_secs(300),
        pending: 256,
        workers: 64,
    };
    /// The telemetry receiver: claude's exports are a few kilobytes, sent one at a time.
    pub const TELEMETRY: Limits = Limits {
        max_head: 16 * 1024,
        max_headers: 64,
        max_body: 4 * 1024 * 1024,
        token_time: Duration::from_secs(5),
        head_time: Duration::from_secs(30),
        body_time: Duration::from_secs(60),
        idle: Duration::from_secs(300),
        pending: 64,
        workers: 8,
    };
}

/// How a request line must start to be served.
#[derive(Debug, Clone)]
pub enum Guard {
    /// The target starts with this path prefix, then `/`, `?` or its end (the gate:
    /// `/<token>/v1/messages`); the prefix is taken off before the handler sees the target.
    Prefix(String),
    /// A `POST` to exactly this path, with or without a query (the receiver:
    /// `/v1/logs/<token>`).
    Post(String),
}

/// The most bytes of a request line read before its token is checked: leading empty lines,
/// a method, a space and the token path.
pub const GUARD_BYTES: usize = 256;
const MAX_METHOD: usize = 24;

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    More,
    Pass,
    Fail,
}

impl Guard {
    fn want(&self) -> &str {
        match self {
            Guard::Prefix(p) | Guard::Post(p) => p,
        }
    }

    /// What the first bytes of a request say.
    fn check(&self, buf: &[u8]) -> Verdict {
        let Some(start) = buf.iter().position(|b| !matches!(b, b'\r' | b'\n')) else {
            return if buf.len() > 16 { Verdict::Fail } else { Verdict::More };
        };
        if start > 16 {
            return Verdict::Fail;
        }
        let line = &buf[start..];
        let Some(sp) = line.iter().position(|b| *b == b' ') else {
            return if line.len() > MAX_METHOD || !line.iter().all(|b| is_tchar(*b)) {
                Verdict::Fail
            } else {
                Verdict::More
            };
        };
        let method = &line[..sp];
        if method.is_empty() || method.len() > MAX_METHOD || !method.iter().all(|b| is_tchar(*b)) {
            return Verdict::Fail;
        }
        if matches!(self, Guard::Post(_)) && method != b"POST" {
            return Verdict::Fail;
        }
        let want = self.want().as_bytes();
        let target = &line[sp + 1..];
        if target.len() <= want.len() {
            // A target that already ended this short cannot carry the token.
            return if target.iter().any(|b| matches!(b, b' ' | b'\r' | b'\n')) {
                Verdict::Fail
            } else {
                Verdict::More
            };
        }
        let same = crate::sys::paths::token_eq(&target[..want.len()], want);
        let next = target[want.len()];
        let ends = match self {
            Guard::Prefix(_) => matches!(next, b'/' | b'?' | b' '),
            Guard::Post(_) => matches!(next, b'?' | b' '),
        };
        if same && ends {
            Verdict::Pass
        } else {
            Verdict::Fail
        }
    }
}

/// RFC 9110 `tchar`: what a method may be made of.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// One request, read whole.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The target without the guard's prefix (`/v1/messages?beta=true`); always starts with '/'.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first header of this name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Does the client ask to close the connection after this request?
    fn wants_close(&self) -> bool {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("connection"))
            .any(|(_, v)| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    }
}

/// What a handler does with a request: answer it on the connection. An error closes the
/// connection.
pub type Handler = dyn Fn(Request, &mut TcpStream) -> io::Result<()> + Send + Sync;

/// How refusals read: the gate answers as Anthropic's API does, so that claude shows the
/// message; the receiver needs no body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    AnthropicJson,
    Empty,
}

/// Serve `listener` on threads of its own, named `name`, until the process ends.
pub fn serve(
    listener: TcpListener,
    name: &str,
    guard: Guard,
    limits: Limits,
    style: Style,
    handler: Arc<Handler>,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    // The standard library listens with a backlog of 128: a flood of connects fills it between
    // two wake-ups of the acceptor, and the kernel then drops every new SYN, claude's included,
    // for a second (the client's retransmission time). Linux takes a second listen() as a new
    // backlog; the kernel caps it at net.core.somaxconn.
    // SAFETY: listen on a descriptor we own, already bound and listening.
    unsafe { libc::listen(listener.as_raw_fd(), 4096) };
    let server = Arc::new(Server {
        guard,
        limits,
        style,
        handler,
        name: name.to_string(),
        busy: AtomicUsize::new(0),
        slots: Mutex::new(Vec::new()),
        next_id: AtomicUsize::new(0),
    });
    std::thread::Builder::new().name(name.to_string()).spawn(move || server.accept_loop(listener))?;
    Ok(())
}

struct Server {
    guard: Guard,
    limits: Limits,
    style: Style,
    handler: Arc<Handler>,
    name: String,
    /// Worker threads alive.
    busy: AtomicUsize,
    /// The connections of the workers, and since when each has waited for its next request.
    slots: Mutex<Vec<Slot>>,
    next_id: AtomicUsize,
}

struct Slot {
    id: usize,
    conn: TcpStream,
    idle_since: Option<Instant>,
}

/// A connection that has not shown its token yet, or is being turned away.
struct Waiting {
    conn: TcpStream,
    buf: Vec<u8>,
    since: Instant,
    /// Turned away: drained until this instant, at most `left` more bytes.
    closing: Option<(Instant, usize)>,
}

impl Server {
    fn accept_loop(self: Arc<Self>, listener: TcpListener) {
        let mut waiting: Vec<Waiting> = Vec::new();
        let mut fds: Vec<libc::pollfd> = Vec::new();
        loop {
            fds.clear();
            fds.push(libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 });
            for w in &waiting {
                fds.push(libc::pollfd { fd: w.conn.as_raw_fd(), events: libc::POLLIN, revents: 0 });
            }
            let now = Instant::now();
            let next = waiting
                .iter()
                .map(|w| match w.closing {
                    Some((until, _)) => until,
                    None => w.since + self.limits.token_time,
                })
                .min()
                .map(|t| t.saturating_duration_since(now))
                .unwrap_or(Duration::from_secs(3600));
            let timeout = next.as_millis().min(60_000) as i32 + 1;
            // SAFETY: `fds` is a live slice of pollfd of the given length.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // Nothing else is expected of poll on valid descriptors; do not spin.
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            // Waiting connections first (their indices are those of `fds` minus one), then new ones.
            let now = Instant::now();
            let mut keep = Vec::with_capacity(waiting.len());
            for (i, mut w) in waiting.drain(..).enumerate() {
                let ready = fds[i + 1].revents != 0;
                match self.step(&mut w, ready, now) {
                    Step::Keep => keep.push(w),
                    Step::Drop => {}
                    Step::Serve => self.hand_over(w),
                }
            }
            waiting = keep;
            if fds[0].revents != 0 {
                loop {
                    match listener.accept() {
                        Ok((conn, _)) => {
                            if conn.set_nonblocking(true).is_err() {
                                continue;
                            }
                            let _ = conn.set_nodelay(true);
                            if waiting.len() >= self.limits.pending {
                                // The one that has waited longest goes: a client of the session
                                // shows its token within microseconds of connecting.
                                if let Some(oldest) =
                                    waiting.iter().enumerate().min_by_key(|(_, w)| w.since).map(|(i, _)| i)
                                {
                                    waiting.swap_remove(oldest);
                                }
                            }
                            waiting.push(Waiting { conn, buf: Vec::new(), since: Instant::now(), closing: None });
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        // Out of descriptors (EMFILE) or a connection reset before accept: try
                        // again at the next wake-up, after the waiting list had its chance to shrink.
                        Err(_) => {
                            std::thread::sleep(Duration::from_millis(5));
                            break;
                        }
                    }
                }
            }
        }
    }

    /// Read what a waiting connection sent and decide.
    fn step(&self, w: &mut Waiting, ready: bool, now: Instant) -> Step {
        if let Some((until, left)) = &mut w.closing {
            let mut buf = [0u8; 8192];
            if ready {
                match w.conn.read(&mut buf) {
                    Ok(0) => return Step::Drop,
                    Ok(n) => *left = left.saturating_sub(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return Step::Drop,
                }
            }
            return if *left == 0 || now >= *until { Step::Drop } else { Step::Keep };
        }
        if ready {
            let mut buf = [0u8; GUARD_BYTES];
            let room = GUARD_BYTES - w.buf.len();
            match w.conn.read(&mut buf[..room]) {
                Ok(0) => return Step::Drop,
                Ok(n) => w.buf.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return Step::Drop,
            }
        }
        match self.guard.check(&w.buf) {
            Verdict::Pass => Step::Serve,
            Verdict::More if w.buf.len() < GUARD_BYTES && now < w.since + self.limits.token_time => Step::Keep,
            Verdict::More if w.buf.is_empty() => Step::Drop,
            Verdict::More | Verdict::Fail => {
                // Not from this session: one short answer, nothing more read than was.
                let _ = w.conn.write_all(&refusal(self.style, 404, "not_found_error", "Not found"));
                let _ = w.conn.shutdown(std::net::Shutdown::Write);
                w.closing = Some((now + Duration::from_secs(1), 256 * 1024));
                Step::Keep
            }
        }
    }

    /// Give a connection that showed its token a worker, making room if need be.
    fn hand_over(self: &Arc<Self>, w: Waiting) {
        let Waiting { conn, buf, .. } = w;
        if conn.set_nonblocking(false).is_err() {
            return;
        }
        if self.busy.load(Ordering::Acquire) >= self.limits.workers && !self.evict_idle() {
            let mut c = conn;
            let _ = c.write_all(&refusal(self.style, 503, "overloaded_error", "ccb: too many connections at once"));
            close_unread(&c);
            return;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let Ok(clone) = conn.try_clone() else { return };
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).push(Slot { id, conn: clone, idle_since: None });
        self.busy.fetch_add(1, Ordering::AcqRel);
        let me = self.clone();
        let spawned = std::thread::Builder::new().name(format!("{}-conn", self.name)).spawn(move || {
            let _done = Done(&me, id);
            me.work(conn, buf, id);
        });
        if spawned.is_err() {
            // The thread never ran: undo what it would have undone.
            self.forget(id);
        }
    }

    /// Close the worker connection idle the longest, if any is idle. Its worker sees the end
    /// and leaves; until then the new one may briefly be one over the limit.
    fn evict_idle(&self) -> bool {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let Some(s) = slots.iter().filter(|s| s.idle_since.is_some()).min_by_key(|s| s.idle_since) else {
            return false;
        };
        let _ = s.conn.shutdown(std::net::Shutdown::Both);
        true
    }

    fn set_idle(&self, id: usize, idle: bool) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = slots.iter_mut().find(|s| s.id == id) {
            s.idle_since = idle.then(Instant::now);
        }
    }

    fn forget(&self, id: usize) {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).retain(|s| s.id != id);
        self.busy.fetch_sub(1, Ordering::AcqRel);
    }

    /// Serve one connection's requests until it closes, errs or idles out.
    fn work(&self, conn: TcpStream, buf: Vec<u8>, id: usize) {
        let mut c = Conn { stream: conn, buf, deadline: None };
        let mut first = true;
        loop {
            if !first {
                self.set_idle(id, true);
                c.deadline = Some(Instant::now() + self.limits.idle);
                let gone = c.buf.is_empty() && !matches!(c.fill(), Ok(n) if n > 0);
                self.set_idle(id, false);
                if gone {
                    return;
                }
            }
            first = false;
            let req = match self.read_request(&mut c) {
                Ok(Some(r)) => r,
                Ok(None) => return,
                Err(Refuse::Close) => return,
                Err(Refuse::Answer(status, kind, msg)) => {
                    let _ = c.stream.write_all(&refusal(self.style, status, kind, msg));
                    close_unread(&c.stream);
                    return;
                }
            };
            let close = req.wants_close();
            let mut w = match c.stream.try_clone() {
                Ok(w) => w,
                Err(_) => return,
            };
            // The handler writes without a deadline of ours: claude reads its answers as they
            // come, and one paused (Ctrl-Z) must find its answer whole when it wakes.
            let _ = c.stream.set_read_timeout(None);
            if (self.handler)(req, &mut w).is_err() || close {
                return;
            }
        }
    }

    /// Read one request: token, head, body, each within its bounds.
    fn read_request(&self, c: &mut Conn) -> Result<Option<Request>, Refuse> {
        let l = &self.limits;
        c.deadline = Some(Instant::now() + l.head_time);
        // The token, again, on every request of the connection.
        loop {
            match self.guard.check(&c.buf) {
                Verdict::Pass => break,
                Verdict::Fail => return Err(Refuse::Answer(404, "not_found_error", "Not found")),
                Verdict::More if c.buf.len() >= GUARD_BYTES => {
                    return Err(Refuse::Answer(404, "not_found_error", "Not found"))
                }
                Verdict::More => match c.fill() {
                    Ok(0) if c.buf.iter().all(|b| matches!(b, b'\r' | b'\n')) => return Ok(None),
                    Ok(0) | Err(_) => return Err(Refuse::Close),
                    Ok(_) => {}
                },
            }
        }
        // The head.
        let skip = c.buf.iter().position(|b| !matches!(b, b'\r' | b'\n')).unwrap_or(0);
        c.buf.drain(..skip);
        let (method, target, headers, head_len) = loop {
            let mut slots = vec![httparse::EMPTY_HEADER; l.max_headers];
            let mut parsed = httparse::Request::new(&mut slots);
            match parsed.parse(&c.buf) {
                Ok(httparse::Status::Complete(n)) => {
                    if n > l.max_head {
                        return Err(Refuse::Answer(431, "invalid_request_error", "request head too large"));
                    }
                    let method = parsed.method.unwrap_or("").to_string();
                    let path = parsed.path.unwrap_or("/");
                    let target = match &self.guard {
                        Guard::Prefix(p) => {
                            let rest = &path[p.len().min(path.len())..];
                            if rest.starts_with('/') {
                                rest.to_string()
                            } else {
                                format!("/{rest}")
                            }
                        }
                        Guard::Post(_) => path.to_string(),
                    };
                    let mut headers = Vec::with_capacity(parsed.headers.len());
                    for h in parsed.headers.iter() {
                        let Ok(v) = std::str::from_utf8(h.value) else {
                            return Err(Refuse::Answer(400, "invalid_request_error", "a header value is not text"));
                        };
                        headers.push((h.name.to_string(), v.trim().to_string()));
                    }
                    break (method, target, headers, n);
                }
                Ok(httparse::Status::Partial) => {
                    if c.buf.len() >= l.max_head {
                        return Err(Refuse::Answer(431, "invalid_request_error", "request head too large"));
                    }
                    match c.fill_upto(l.max_head) {
                        Ok(0) | Err(_) => return Err(Refuse::Close),
                        Ok(_) => {}
                    }
                }
                Err(httparse::Error::TooManyHeaders) => {
                    return Err(Refuse::Answer(431, "invalid_request_error", "too many request headers"))
                }
                Err(_) => return Err(Refuse::Answer(400, "invalid_request_error", "malformed request head")),
            }
        };
        c.buf.drain(..head_len);
        let mut req = Request { method, target, headers, body: Vec::new() };
        // The body.
        let framing = framing(&req.headers, l.max_body)?;
        if !matches!(framing, Framing::None)
            && req.header("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        {
            let _ = c.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        c.deadline = Some(Instant::now() + l.body_time);
        req.body = match framing {
            Framing::None => Vec::new(),
            Framing::Length(n) => c.take(n)?,
            Framing::Chunked => c.chunked(l.max_body, l.max_head)?,
        };
        Ok(Some(req))
    }
}

/// Frees a worker's place when its thread ends, however it ends.
struct Done<'a>(&'a Server, usize);
impl Drop for Done<'_> {
    fn drop(&mut self) {
        self.0.forget(self.1);
    }
}

enum Step {
    Keep,
    Drop,
    Serve,
}

/// A short, complete answer that closes the connection.
pub fn refusal(style: Style, status: u16, kind: &str, message: &str) -> Vec<u8> {
    let reason = match status {
        400 => "Bad Request",
        404 => "Not Found",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let body = match style {
        Style::AnthropicJson => {
            serde_json::json!({"type": "error", "error": {"type": kind, "message": message}}).to_string()
        }
        Style::Empty => String::new(),
    };
    let ctype = if body.is_empty() { "" } else { "content-type: application/json\r\n" };
    format!("HTTP/1.1 {status} {reason}\r\n{ctype}content-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
        .into_bytes()
}

/// Close a connection whose request was not read: stop writing, then drop what the client
/// still sends (at most 256 KiB, for at most a second), so that the kernel does not answer its
/// unread bytes with a reset that would discard the answer before the client reads it.
pub fn close_unread(conn: &TcpStream) {
    let _ = conn.shutdown(std::net::Shutdown::Write);
    let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
    let until = Instant::now() + Duration::from_secs(1);
    let mut buf = [0u8; 8192];
    let mut left = 256 * 1024usize;
    while let Ok(n @ 1..) = (&*conn).read(&mut buf) {
        left = left.saturating_sub(n);
        if left == 0 || Instant::now() >= until {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_decides_from_the_first_bytes() {
        let g = Guard::Prefix("/abc".into());
        let cases: &[(&[u8], Verdict)] = &[
            (b"", Verdict::More),
            (b"PO", Verdict::More),
            (b"POST ", Verdict::More),
            (b"POST /ab", Verdict::More),
            (b"POST /abc", Verdict::More),
            (b"POST /abc/", Verdict::Pass),
            (b"POST /abc?x", Verdict::Pass),
            (b"GET /abc HTTP/1.1", Verdict::Pass),
            (b"\r\n\r\nPOST /abc/v1", Verdict::Pass),
            (b"POST /abd/", Verdict::Fail),
            (b"POST /abcd", Verdict::Fail),
            (b"POST /a HTTP/1.1", Verdict::Fail),
            (b"PO(T /abc/", Verdict::Fail),
            (b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", Verdict::Fail),
            (b"\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n", Verdict::Fail),
        ];
        for (buf, want) in cases {
            assert_eq!(&g.check(buf), want, "{:?}", String::from_utf8_lossy(buf));
        }
        let t = Guard::Prefix("/0123456789abcdef0123456789abcdef".into());
        for wrong in [
            "/v1/messages",
            "/",
            "/0123456789abcdef0123456789abcde",
            "/0123456789abcdef0123456789abcdeg/v1/messages",
            "/0123456789abcdef0123456789abcdefX/v1/messages",
            "http://127.0.0.1:1/0123456789abcdef0123456789abcdef/v1/messages",
            "/0123456789abcdef0123456789abcde\u{e9}/v1",
        ] {
            assert_eq!(t.check(format!("POST {wrong} HTTP/1.1\r\n").as_bytes()), Verdict::Fail, "{wrong}");
        }
        let p = Guard::Post("/v1/logs/t".into());
        assert_eq!(p.check(b"POST /v1/logs/t HTTP/1.1"), Verdict::Pass);
        assert_eq!(p.check(b"POST /v1/logs/t?x=1 "), Verdict::Pass);
        assert_eq!(p.check(b"GET /v1/logs/t HTTP/1.1"), Verdict::Fail);
        assert_eq!(p.check(b"POST /v1/logs/t/x HTTP/1.1"), Verdict::Fail);
        let p = "/v1/logs/0123456789abcdef0123456789abcdef";
        let g = Guard::Post(p.into());
        for line in [
            "POST /v1/logs HTTP/1.1\r\n".to_string(),
            "POST /v1/logs/ HTTP/1.1\r\n".to_string(),
            format!("GET {p} HTTP/1.1\r\n"),
            format!("POST {p}0 HTTP/1.1\r\n"),
            format!("POST {}X HTTP/1.1\r\n", &p[..p.len() - 1]),
            format!("POST /x{p} HTTP/1.1\r\n"),
            "POST\r\n".to_string(),
        ] {
            assert_eq!(g.check(line.as_bytes()), Verdict::Fail, "{line:?}");
        }
    }

    #[test]
    fn refusals_are_complete_answers() {
        let r = String::from_utf8(refusal(Style::AnthropicJson, 413, "request_too_large", "too big")).unwrap();
        assert!(r.starts_with("HTTP/1.1 413 Payload Too Large\r\n"), "{r}");
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())), "{r}");
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["type"], "request_too_large");
        let e = String::from_utf8(refusal(Style::Empty, 404, "x", "y")).unwrap();
        assert!(e.ends_with("content-length: 0\r\nconnection: close\r\n\r\n"), "{e}");
    }
}
