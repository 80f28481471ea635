//! Sending ccb's OpenTelemetry export (`[export] otlp_endpoint`) on a thread of its own, so that a
//! slow or dead collector never slows the session: the session only puts what it records into
//! a bounded queue ([`crate::core::export::Outbox`]; the oldest goes first when it is full,
//! counted in ccb's log), and this thread cuts batches from it and POSTs them to
//! `<endpoint>/v1/logs` and `<endpoint>/v1/metrics`.
//!
//! A batch is retried on OTLP/HTTP's retryable answers (429, 502, 503, 504, honouring
//! `Retry-After`) and on a connection that failed, with exponential backoff, within
//! [`SEND_BOUND`] while the session runs. When it ends, what is left is sent within
//! [`FINAL_WAIT`] in all, and ccb waits no longer than that: a collector that never answers
//! holds ccb's exit for at most that long. What was not delivered is counted in ccb's log and
//! said in one line at the end.
//!
//! The headers of `otlp_headers` are secrets: they go on each request and nowhere else (not in
//! ccb's log, not in a message). The `OTEL_*` variables are claude's: ccb's export reads none.

use crate::core::export::{self, wire, Event, Outbox, Settings};
use crate::ledger::writer::Msg;
use std::io::Read;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// At the end of a session, the most ccb waits for the export's last batches, retries included.
pub const FINAL_WAIT: Duration = Duration::from_secs(1);
/// While the session runs, the most one batch is tried for, retries included.
pub const SEND_BOUND: Duration = Duration::from_secs(10);
/// One attempt, at most.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the thread looks for a batch that is due.
const TICK: Duration = Duration::from_millis(200);
/// The first retry's wait; each next one doubles.
const BACKOFF: Duration = Duration::from_millis(100);

#[derive(Debug, Default)]
struct Counts {
    /// Log records delivered, and not delivered (failed, or left when ccb stopped waiting).
    delivered: u64,
    failed: u64,
    /// Log records of the batch being sent.
    in_flight: u64,
    /// Batches whose metrics were not delivered.
    metrics_failed: u64,
    /// The last reason a batch was not delivered.
    problem: Option<String>,
    done: bool,
}

struct State {
    outbox: Outbox,
    /// Set when the session is over: the time by which the last batch must be sent.
    closing: Option<Instant>,
    counts: Counts,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What became of the export, for the end of the session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub delivered: u64,
    /// Records that did not reach the collector (failed, or still waiting when ccb stopped
    /// waiting), and records dropped because the queue was full.
    pub undelivered: u64,
    pub dropped: u64,
    /// Decreases of a call's figure that `ccb.cost.usd` could not carry.
    pub decreases: u64,
    /// Batches whose metric points were not delivered (their log records may have been).
    pub metrics_failed: u64,
    pub problem: Option<String>,
    /// `host:port` of the collector (never its path, which may be a secret).
    pub collector: String,
}

impl Report {
    /// One line for the user when something was not delivered; None when all was.
    pub fn line(&self) -> Option<String> {
        let lost = self.undelivered + self.dropped;
        let mut what = Vec::new();
        if lost > 0 {
            what.push(format!("{lost} of {} records", self.delivered + lost));
        }
        if self.metrics_failed > 0 {
            let n = self.metrics_failed;
            what.push(format!("the metrics of {n} batch{}", if n == 1 { "" } else { "es" }));
        }
        if what.is_empty() {
            return None;
        }
        let mut s = format!(
            "ccb: OpenTelemetry export: {} not delivered to the collector at {}",
            what.join(" and "),
            self.collector
        );
        if let Some(p) = &self.problem {
            s.push_str(&format!(" ({p})"));
        }
        if self.dropped > 0 {
            s.push_str(&format!("; {} dropped while the queue was full", self.dropped));
        }
        Some(s)
    }
}

/// The session's handle on its export.
pub struct Exporter {
    shared: Arc<Shared>,
    collector: String,
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// `host:port` of a URL, for messages.
fn collector(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    rest.split('/').next().unwrap_or("").to_string()
}

impl Exporter {
    /// Start the export, when `[export] otlp_endpoint` is set. `repricable`: the session hears
    /// claude's telemetry, whose figure can replace a provisional one.
    pub fn start(settings: &Settings, repricable: bool) -> Option<Exporter> {
        let endpoint = settings.endpoint.clone()?;
        let origin = export::Origin { service_version: env!("CARGO_PKG_VERSION").to_string() };
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                outbox: Outbox::new(origin, settings.allow, repricable),
                closing: None,
                counts: Counts::default(),
            }),
            wake: Condvar::new(),
        });
        let here = shared.clone();
        let owned = settings.clone();
        let spawned = std::thread::Builder::new().name("ccb-export".into()).spawn(move || run(&here, &owned));
        if let Err(e) = spawned {
            log::warn!("cannot start its thread: {e}");
            return None;
        }
        log::debug!("OTLP {} to {}", settings.protocol.as_str(), collector(&endpoint));
        Some(Exporter { shared, collector: collector(&endpoint) })
    }

    /// What the ledger is told, told to the export too (what it does not export is ignored).
    pub fn send(&self, m: &Msg) {
        let Some(e) = event(m) else { return };
        let mut st = self.shared.lock();
        let before = st.outbox.dropped;
        st.outbox.push(e, now_ns());
        if st.outbox.dropped > before && before == 0 {
            log::warn!("the queue is full ({} records): the oldest are dropped from now on", export::QUEUE);
        }
        if st.outbox.len() >= export::MAX_BATCH {
            self.shared.wake.notify_all();
        }
    }

    /// The session is over: send what is left, within [`FINAL_WAIT`] from now. Returns at once.
    pub fn close(&self) {
        let mut st = self.shared.lock();
        if st.closing.is_none() {
            st.closing = Some(Instant::now() + FINAL_WAIT);
        }
        self.shared.wake.notify_all();
    }

    /// Wait for the last batches (no longer than [`FINAL_WAIT`] after [`Exporter::close`]) and
    /// say what became of the export.
    pub fn finish(self) -> Report {
        self.close();
        let mut st = self.shared.lock();
        let deadline = st.closing.unwrap_or_else(Instant::now) + Duration::from_millis(50);
        while !st.counts.done {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = self.shared.wake.wait_timeout(st, left).map(|(g, _)| g).unwrap_or_else(|e| e.into_inner().0);
        }
        let c = &st.counts;
        let mut undelivered = c.failed;
        if !c.done {
            undelivered += c.in_flight + st.outbox.len() as u64;
        }
        let r = Report {
            delivered: c.delivered,
            undelivered,
            dropped: st.outbox.dropped,
            decreases: st.outbox.decreases,
            metrics_failed: c.metrics_failed,
            problem: c.problem.clone(),
            collector: self.collector.clone(),
        };
        if r.dropped > 0 {
            log::warn!(
                "{} records dropped ({} of them calls): the queue of {} was full",
                r.dropped,
                st.outbox.dropped_calls,
                export::QUEUE
            );
        }
        if r.decreases > 0 {
            log::info!(
                "{} calls' figures went down after they were sent; ccb.cost.usd cannot, their ccb.api_request.repriced records carry it",
                r.decreases
            );
        }
        log::debug!("{} records delivered, {} not", r.delivered, r.undelivered);
        r
    }
}

/// The ledger's message as the export's event.
fn event(m: &Msg) -> Option<Event> {
    Some(match m {
        Msg::Begin(s) => Event::Begin(export::Session {
            id: s.id.clone(),
            started_ms: s.started_ms,
            class: s.class.as_str().to_string(),
            meter: s.payer.as_str().to_string(),
            billing_mode: s.billing_mode.as_str().to_string(),
            model: s.model.clone(),
            reason: s.reason.clone(),
            ceiling: s.ceiling,
            project: s.cwd.clone(),
            branch: s.branch.clone(),
            commit: s.commit.clone(),
            user: s.user.clone(),
            host: s.host.clone(),
        }),
        Msg::Record(u) => Event::Call(export::Call {
            key: u.key.clone(),
            session_id: u.session_id.clone(),
            ts_ms: u.ts_ms,
            model: u.model.clone(),
            subagent: u.agent_id.is_some(),
            usage: u.usage,
            cost: u.cost,
            source: u.source.as_str().to_string(),
            priced_by: u.priced_by.clone(),
            estimated: u.estimated,
        }),
        Msg::Amend { key, cost, priced_by, estimated } => {
            Event::Amend { key: key.clone(), cost: *cost, priced_by: priced_by.to_string(), estimated: *estimated }
        }
        Msg::Reason { id, reason } => Event::Reason { id: id.clone(), reason: reason.clone() },
        Msg::End(e) => Event::End(export::Ended {
            id: e.id.clone(),
            ended_ms: e.ended_ms,
            ending: e.end.as_str().to_string(),
            exit_code: e.exit_code,
        }),
        Msg::BeginRun(_) | Msg::EndRun(_) => return None,
    })
}

/// The thread: cut what is due, send it, until the session is over and all is sent (or the
/// time for it is up).
fn run(shared: &Shared, settings: &Settings) {
    let https = settings.endpoint.as_deref().is_some_and(|e| e.starts_with("https://"));
    let mut b = ureq::AgentBuilder::new().redirects(0).timeout_connect(REQUEST_TIMEOUT);
    if https {
        // The roots claude trusts (the system's bundle, SSL_CERT_FILE, NODE_EXTRA_CA_CERTS).
        let (tls, problems) = crate::session::gate::tls_config(&|k: &str| std::env::var(k).ok());
        for p in problems {
            log::warn!("{p}");
        }
        b = b.tls_config(tls);
    }
    let agent = b.build();
    let json = settings.protocol == export::Protocol::Json;
    let version = env!("CARGO_PKG_VERSION");
    loop {
        let (batch, deadline) = {
            let mut st = shared.lock();
            loop {
                let closing = st.closing.is_some();
                if let Some(b) = st.outbox.cut(now_ns(), closing) {
                    st.counts.in_flight = b.records();
                    let deadline = st.closing.unwrap_or_else(|| Instant::now() + SEND_BOUND);
                    break (b, deadline);
                }
                if closing {
                    st.counts.done = true;
                    shared.wake.notify_all();
                    return;
                }
                st = shared.wake.wait_timeout(st, TICK).map(|(g, _)| g).unwrap_or_else(|e| e.into_inner().0);
            }
        };
        let (logs, metrics) = wire::encode(&batch, json, version);
        let mut failed = [None, None];
        for (i, (signal, body)) in [("logs", logs), ("metrics", metrics)].into_iter().enumerate() {
            let (Some(body), Some(url)) = (body, settings.signal_url(signal)) else { continue };
            if let Err(why) = post(&agent, &url, settings, &body, deadline) {
                log::warn!(
                    "a batch of {signal} not delivered ({} log records, {} calls): {why}",
                    batch.records(),
                    batch.calls
                );
                failed[i] = Some(why);
            }
        }
        let mut st = shared.lock();
        st.counts.in_flight = 0;
        let [logs_failed, metrics_failed] = failed;
        match &logs_failed {
            None => st.counts.delivered += batch.records(),
            Some(_) => st.counts.failed += batch.records(),
        }
        if metrics_failed.is_some() {
            st.counts.metrics_failed += 1;
        }
        if let Some(why) = logs_failed.or(metrics_failed) {
            st.counts.problem = Some(why);
        }
    }
}

/// OTLP/HTTP's retryable statuses.
fn retryable(code: u16) -> bool {
    matches!(code, 429 | 502 | 503 | 504)
}

/// POST one body, retrying what may succeed later, until `deadline`. The error says what
/// kind of failure it was, never the URL or a header.
fn post(agent: &ureq::Agent, url: &str, settings: &Settings, body: &[u8], deadline: Instant) -> Result<(), String> {
    let mut backoff = BACKOFF;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("no answer in time".into());
        }
        let mut req = agent
            .post(url)
            .timeout(left.min(REQUEST_TIMEOUT))
            .set("content-type", settings.protocol.content_type())
            .set("user-agent", concat!("ccb/", env!("CARGO_PKG_VERSION")));
        for (k, v) in &settings.headers {
            req = req.set(k, v);
        }
        let wait = match req.send_bytes(body) {
            Ok(resp) => {
                // Read the (small) answer so the connection can be used again.
                let _ = resp.into_reader().take(64 * 1024).read_to_end(&mut Vec::new());
                return Ok(());
            }
            Err(ureq::Error::Status(code, resp)) if retryable(code) => {
                let after = resp.header("retry-after").and_then(|v| v.trim().parse::<u64>().ok());
                let why = format!("HTTP {code}");
                (after.map(Duration::from_secs).unwrap_or(backoff), why)
            }
            Err(ureq::Error::Status(code, _)) => return Err(format!("HTTP {code}")),
            Err(ureq::Error::Transport(t)) => (backoff, t.kind().to_string()),
        };
        let (wait, why) = wait;
        let left = deadline.saturating_duration_since(Instant::now());
        if wait >= left {
            return Err(why);
        }
        std::thread::sleep(wait);
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    fn settings(port: u16) -> Settings {
        Settings {
            endpoint: Some(format!("http://127.0.0.1:{port}")),
            headers: vec![("authorization".into(), "Bearer SECRET".into())],
            ..Settings::default()
        }
    }

    /// A server that answers each request with the next status of `statuses`, and tells the
    /// request lines and headers it got.
    fn server(statuses: Vec<u16>) -> (u16, std::sync::mpsc::Receiver<String>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for status in statuses {
                let Ok((s, _)) = l.accept() else { return };
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut head = String::new();
                let mut len = 0;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    head.push_str(&line);
                }
                let mut body = vec![0; len];
                let _ = r.read_exact(&mut body);
                let _ = tx.send(head);
                let _ = (&s).write_all(
                    format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes(),
                );
            }
        });
        (port, rx)
    }

    #[test]
    fn retryable_answers_are_retried_and_others_are_not() {
        let (port, rx) = server(vec![503, 429, 200]);
        let agent = ureq::AgentBuilder::new().build();
        let s = settings(port);
        let url = s.signal_url("logs").unwrap();
        post(&agent, &url, &s, b"x", Instant::now() + Duration::from_secs(5)).unwrap();
        let heads: Vec<String> = rx.try_iter().collect();
        assert_eq!(heads.len(), 3);
        assert!(heads[0].starts_with("POST /v1/logs "), "{}", heads[0]);
        assert!(heads[0].contains("authorization: Bearer SECRET"), "{}", heads[0]);
        assert!(heads[0].contains("content-type: application/x-protobuf"), "{}", heads[0]);
        let (port, rx) = server(vec![400, 200]);
        let e = post(
            &agent,
            &settings(port).signal_url("logs").unwrap(),
            &s,
            b"x",
            Instant::now() + Duration::from_secs(5),
        );
        assert_eq!(e, Err("HTTP 400".into()));
        assert_eq!(rx.try_iter().count(), 1, "400 is not retried");
    }

    #[test]
    fn a_dead_collector_is_given_up_on_at_the_deadline_without_naming_it() {
        // A port nobody listens on: refused at once, retried with backoff until the deadline.
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let s = settings(port);
        let t0 = Instant::now();
        let e = post(&ureq::agent(), &s.signal_url("logs").unwrap(), &s, b"x", t0 + Duration::from_millis(400))
            .unwrap_err();
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
        assert!(!e.contains("127.0.0.1") && !e.contains("SECRET"), "{e}");
        let r = Report {
            undelivered: 3,
            delivered: 1,
            problem: Some(e),
            collector: collector(&s.endpoint.unwrap()),
            ..Report::default()
        };
        let line = r.line().unwrap();
        assert!(line.contains("3 of 4 records not delivered") && line.contains(&format!("127.0.0.1:{port}")), "{line}");
        assert_eq!(Report::default().line(), None);
        let m = Report { delivered: 5, metrics_failed: 1, collector: "h:1".into(), ..Report::default() };
        assert_eq!(
            m.line().unwrap(),
            "ccb: OpenTelemetry export: the metrics of 1 batch not delivered to the collector at h:1"
        );
    }
}
