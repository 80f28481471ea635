//! ccb's own OpenTelemetry export (it *sends*; [`crate::core::otlp`] decodes what claude sends
//! ccb): each session and each priced call as an OTLP log record, and the metrics `ccb.cost.usd`
//! (a monotonic sum, delta temporality, a double in US dollars) and `gen_ai.client.token.usage`
//! (a histogram of tokens per call by kind, delta temporality), with names from the OpenTelemetry
//! semantic conventions [`SEMCONV`] where they fit and `ccb.*` where none does. Never a prompt,
//! an answer or a secret: only what the ledger records, less what `[export] attributes` keeps
//! on the machine.
//!
//! [`Outbox`] is the export's state: what the session recorded, in order, bounded (the oldest
//! goes first, counted), and cut into batches. A call is sent once its figure is final: claude's
//! own (or the user's price file), or when no later figure can come (the session hears no
//! telemetry), or after [`SETTLE_NS`]. A figure that changes after its call was sent is sent as a
//! `ccb.api_request.repriced` record, and an increase is added to `ccb.cost.usd`; a monotonic sum
//! cannot go down, so a decrease is in that record only. The session's thread that sends the
//! batches is [`crate::session::export`]; the two encodings are in [`wire`].
//!
//! Over 600 lines: the outbox's order, settling and bound and the records it builds are one
//! state machine, read together when a figure is questioned; a third is its tests.

pub mod settings;
pub mod wire;

pub use settings::{Allow, FileExport, Protocol, Settings};

use crate::core::money::Usd;
use crate::core::pricing::Usage;
use std::collections::{BTreeMap, HashMap, VecDeque};

/// The version of the semantic conventions whose names ccb uses (`gen_ai.*`, `vcs.*`,
/// `user.name`, `host.name`, `session.id`), sent as the schema URL of every payload.
pub const SEMCONV: &str = "1.41.0";
pub const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.41.0";

/// Records waiting to be sent, at most. Beyond it the oldest is dropped (counted).
pub const QUEUE: usize = 4096;
/// Records in one request, at most.
pub const MAX_BATCH: usize = 512;
/// A batch goes out when its oldest record has waited this long (or it is full, or the session
/// ended).
pub const BATCH_DELAY_NS: u64 = 2_000_000_000;
/// How long a call priced provisionally waits for claude's own figure before it is sent as is.
/// Claude's figure comes 10–25 ms after the response.
pub const SETTLE_NS: u64 = 10_000_000_000;
/// Sent calls whose figure is remembered, for a late correction.
const KEEP_SENT: usize = 10_000;

/// The explicit bucket bounds the semantic conventions advise for `gen_ai.client.token.usage`.
pub const TOKEN_BOUNDS: [f64; 14] = [
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0,
    67108864.0,
];

/// An attribute's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Double(f64),
    Bool(bool),
}

pub type Attrs = Vec<(&'static str, Value)>;

fn s(v: impl Into<String>) -> Value {
    Value::Str(v.into())
}

/// A session as ccb planned it (the ledger's session row, as plain values).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Session {
    pub id: String,
    pub started_ms: i64,
    pub class: String,
    pub meter: String,
    pub billing_mode: String,
    pub model: Option<String>,
    pub reason: Option<String>,
    pub ceiling: Option<Usd>,
    pub project: String,
    pub branch: Option<String>,
    pub commit: Option<String>,
    pub user: Option<String>,
    pub host: Option<String>,
}

/// One priced call (the ledger's usage row).
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub key: String,
    pub session_id: String,
    pub ts_ms: i64,
    pub model: String,
    pub subagent: bool,
    pub usage: Usage,
    pub cost: Usd,
    pub source: String,
    pub priced_by: String,
    pub estimated: bool,
}

/// How a session's run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Ended {
    pub id: String,
    pub ended_ms: i64,
    pub ending: String,
    pub exit_code: Option<i32>,
}

/// What the session tells the export, in the order it happens.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Begin(Session),
    Call(Call),
    /// Claude's own figure for a call sent or queued at a provisional one.
    Amend {
        key: String,
        cost: Usd,
        priced_by: String,
        estimated: bool,
    },
    Reason {
        id: String,
        reason: String,
    },
    End(Ended),
}

/// One log record.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    pub time_ns: u64,
    pub observed_ns: u64,
    pub event_name: &'static str,
    pub attrs: Attrs,
}

/// One point of `ccb.cost.usd`.
#[derive(Debug, Clone, PartialEq)]
pub struct SumPoint {
    pub attrs: Attrs,
    pub value: f64,
}

/// One point of `gen_ai.client.token.usage`.
#[derive(Debug, Clone, PartialEq)]
pub struct HistPoint {
    pub attrs: Attrs,
    pub count: u64,
    pub sum: f64,
    pub buckets: Vec<u64>,
    pub min: f64,
    pub max: f64,
}

/// What one request to each signal carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub resource: Attrs,
    pub logs: Vec<LogRecord>,
    /// The delta interval of the metric points.
    pub start_ns: u64,
    pub end_ns: u64,
    pub cost: Vec<SumPoint>,
    pub tokens: Vec<HistPoint>,
    /// Calls in this batch (for counting what was delivered).
    pub calls: u64,
}

impl Batch {
    pub fn records(&self) -> u64 {
        self.logs.len() as u64
    }
}

/// Who the export is from: the resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub service_version: String,
}

#[derive(Debug, Clone)]
enum Item {
    Start { id: String, at: u64 },
    Call { call: Call, at: u64, settled: bool },
    Repriced { call: Call, old: Usd, at: u64 },
    End { ended: Ended, at: u64 },
}

impl Item {
    fn at(&self) -> u64 {
        match self {
            Item::Start { at, .. } | Item::Call { at, .. } | Item::Repriced { at, .. } | Item::End { at, .. } => *at,
        }
    }
}

/// A session's totals for this run, for its end record.
#[derive(Debug, Clone, Default)]
struct Totals {
    cost: Usd,
    calls: u64,
    usage: Usage,
}

/// The export's state (see the module's comment).
#[derive(Debug)]
pub struct Outbox {
    origin: Origin,
    allow: Allow,
    /// Can a later figure replace a provisional one (the session hears claude's telemetry)?
    repricable: bool,
    cap: usize,
    sessions: HashMap<String, Session>,
    queue: VecDeque<Item>,
    totals: HashMap<String, Totals>,
    /// Each call's latest figure and its session, and whether it was sent; bounded.
    known: HashMap<String, (String, Usd, bool)>,
    known_order: VecDeque<String>,
    /// Records dropped for room, and calls among them.
    pub dropped: u64,
    pub dropped_calls: u64,
    /// Decreases that a monotonic sum cannot carry (in their repriced records only).
    pub decreases: u64,
    last_cut: Option<u64>,
}

impl Outbox {
    pub fn new(origin: Origin, allow: Allow, repricable: bool) -> Outbox {
        Outbox::with_capacity(origin, allow, repricable, QUEUE)
    }

    pub fn with_capacity(origin: Origin, allow: Allow, repricable: bool, cap: usize) -> Outbox {
        Outbox {
            origin,
            allow,
            repricable,
            cap: cap.max(1),
            sessions: HashMap::new(),
            queue: VecDeque::new(),
            totals: HashMap::new(),
            known: HashMap::new(),
            known_order: VecDeque::new(),
            dropped: 0,
            dropped_calls: 0,
            decreases: 0,
            last_cut: None,
        }
    }

    /// Records waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Take an event in, heard at `now` (Unix nanoseconds).
    pub fn push(&mut self, e: Event, now: u64) {
        if self.last_cut.is_none() {
            self.last_cut = Some(now);
        }
        match e {
            Event::Begin(s) => {
                let first = !self.sessions.contains_key(&s.id);
                let id = s.id.clone();
                self.sessions.insert(s.id.clone(), s);
                if first {
                    self.enqueue(Item::Start { id, at: now });
                }
            }
            Event::Reason { id, reason } => {
                if let Some(s) = self.sessions.get_mut(&id) {
                    s.reason = Some(reason);
                }
            }
            Event::Call(c) => {
                if self.known.contains_key(&c.key) {
                    return;
                }
                let t = self.totals.entry(c.session_id.clone()).or_default();
                t.cost += c.cost;
                t.calls += 1;
                t.usage.add(&c.usage);
                self.remember(&c.key, &c.session_id, c.cost);
                let settled = !self.repricable || is_final(&c.priced_by);
                self.enqueue(Item::Call { call: c, at: now, settled });
            }
            Event::Amend { key, cost, priced_by, estimated } => {
                let Some((sid, old, sent)) = self.known.get(&key).cloned() else { return };
                if let Some(t) = self.totals.get_mut(&sid) {
                    t.cost = t.cost - old + cost;
                }
                self.known.insert(key.clone(), (sid, cost, sent));
                let queued = self.queue.iter_mut().rev().find_map(|i| match i {
                    Item::Call { call, settled, .. } if call.key == key => Some((call, settled)),
                    _ => None,
                });
                match queued {
                    Some((call, settled)) => {
                        call.cost = cost;
                        call.priced_by = priced_by;
                        call.estimated = estimated;
                        *settled = true;
                    }
                    None if sent => {
                        // Sent already: a record of the change. Its call's other fields are not
                        // kept, so the record carries what identifies it and the figures.
                        let call = Call {
                            key: key.clone(),
                            session_id: self.known.get(&key).map(|k| k.0.clone()).unwrap_or_default(),
                            ts_ms: (now / 1_000_000) as i64,
                            model: String::new(),
                            subagent: false,
                            usage: Usage::default(),
                            cost,
                            source: String::new(),
                            priced_by,
                            estimated,
                        };
                        self.enqueue(Item::Repriced { call, old, at: now });
                    }
                    // Dropped for room: nothing left to correct.
                    None => {}
                }
            }
            Event::End(e) => self.enqueue(Item::End { ended: e, at: now }),
        }
    }

    fn remember(&mut self, key: &str, sid: &str, cost: Usd) {
        while self.known_order.len() >= KEEP_SENT.max(self.cap) {
            if let Some(k) = self.known_order.pop_front() {
                self.known.remove(&k);
            }
        }
        self.known.insert(key.to_string(), (sid.to_string(), cost, false));
        self.known_order.push_back(key.to_string());
    }

    fn enqueue(&mut self, i: Item) {
        while self.queue.len() >= self.cap {
            if let Some(old) = self.queue.pop_front() {
                self.dropped += 1;
                if matches!(old, Item::Call { .. }) {
                    self.dropped_calls += 1;
                }
            }
        }
        self.queue.push_back(i);
    }

    fn ready(&self, i: &Item, now: u64, closing: bool) -> bool {
        match i {
            Item::Call { settled, at, .. } => closing || *settled || now.saturating_sub(*at) >= SETTLE_NS,
            _ => true,
        }
    }

    /// How many records at the front can go now, in order (a session's end never before its
    /// calls).
    fn ready_len(&self, now: u64, closing: bool) -> usize {
        self.queue.iter().take(MAX_BATCH).take_while(|i| self.ready(i, now, closing)).count()
    }

    /// Is a batch due: full, its oldest record waited [`BATCH_DELAY_NS`], or the session is over?
    pub fn due(&self, now: u64, closing: bool) -> bool {
        let n = self.ready_len(now, closing);
        n > 0
            && (closing
                || n >= MAX_BATCH
                || self.queue.front().is_some_and(|i| now.saturating_sub(i.at()) >= BATCH_DELAY_NS))
    }

    /// The next batch, when one is due (see [`Outbox::due`]).
    pub fn cut(&mut self, now: u64, closing: bool) -> Option<Batch> {
        if !self.due(now, closing) {
            return None;
        }
        let n = self.ready_len(now, closing);
        let items: Vec<Item> = self.queue.drain(..n).collect();
        let start = self.last_cut.unwrap_or(now).min(now);
        self.last_cut = Some(now);
        let mut b = Batch {
            resource: self.resource(),
            logs: Vec::new(),
            start_ns: start,
            end_ns: now,
            cost: Vec::new(),
            tokens: Vec::new(),
            calls: 0,
        };
        let mut cost: BTreeMap<Vec<(&'static str, String)>, Usd> = BTreeMap::new();
        let mut tokens: BTreeMap<Vec<(&'static str, String)>, Hist> = BTreeMap::new();
        for i in items {
            match i {
                Item::Start { id, at } => {
                    if let Some(sess) = self.sessions.get(&id) {
                        b.logs.push(self.start_record(sess, at));
                    }
                }
                Item::Call { call, at, .. } => {
                    b.calls += 1;
                    if let Some(k) = self.known.get_mut(&call.key) {
                        k.2 = true;
                    }
                    let sess = self.sessions.get(&call.session_id).cloned().unwrap_or_default();
                    let series = self.series(&sess, &call.model);
                    *cost.entry(series.clone()).or_default() += call.cost;
                    for (kind, n) in token_kinds(&call.usage) {
                        let mut key = series.clone();
                        key.push(("gen_ai.operation.name", "chat".into()));
                        key.push(("gen_ai.token.type", kind.into()));
                        key.sort();
                        tokens.entry(key).or_default().add(n);
                    }
                    b.logs.push(self.call_record(&sess, &call, at));
                }
                Item::Repriced { call, old, at } => {
                    let sess = self.sessions.get(&call.session_id).cloned().unwrap_or_default();
                    if call.cost > old {
                        let model = String::new();
                        *cost.entry(self.series(&sess, &model)).or_default() += call.cost - old;
                    } else if call.cost < old {
                        self.decreases += 1;
                    }
                    b.logs.push(self.repriced_record(&sess, &call, old, at));
                }
                Item::End { ended, at } => {
                    let sess = self.sessions.get(&ended.id).cloned().unwrap_or_default();
                    let t = self.totals.get(&ended.id).cloned().unwrap_or_default();
                    b.logs.push(self.end_record(&sess, &ended, &t, at));
                }
            }
        }
        let attrs = |k: Vec<(&'static str, String)>| k.into_iter().map(|(k, v)| (k, Value::Str(v))).collect();
        b.cost = cost.into_iter().map(|(k, v)| SumPoint { attrs: attrs(k), value: dollars(v) }).collect();
        b.tokens = tokens
            .into_iter()
            .map(|(k, h)| HistPoint {
                attrs: attrs(k),
                count: h.count,
                sum: h.sum as f64,
                buckets: h.buckets.to_vec(),
                min: h.min as f64,
                max: h.max as f64,
            })
            .collect();
        Some(b)
    }

    fn resource(&self) -> Attrs {
        let mut r: Attrs =
            vec![("service.name", s("ccb")), ("service.version", s(self.origin.service_version.clone()))];
        let host = self.sessions.values().find_map(|s| s.host.clone());
        if let (true, Some(h)) = (self.allow.host, host) {
            r.push(("host.name", s(h)));
        }
        r
    }

    /// The attributes that name a metric series: the model, who pays and why, and what
    /// `[export] attributes` lets leave the machine. Never the session's id: one series per
    /// session would grow without bound.
    fn series(&self, sess: &Session, model: &str) -> Vec<(&'static str, String)> {
        let mut k: Vec<(&'static str, String)> = vec![
            ("gen_ai.provider.name", provider(&sess.billing_mode).into()),
            ("ccb.class", sess.class.clone()),
            ("ccb.meter", sess.meter.clone()),
        ];
        if !model.is_empty() {
            k.push(("gen_ai.response.model", model.to_string()));
        }
        if let Some(r) = &sess.reason {
            k.push(("ccb.reason", r.clone()));
        }
        if self.allow.project && !sess.project.is_empty() {
            k.push(("ccb.project", sess.project.clone()));
        }
        if let (true, Some(b)) = (self.allow.branch, &sess.branch) {
            k.push(("vcs.ref.head.name", b.clone()));
        }
        if let (true, Some(u)) = (self.allow.user, &sess.user) {
            k.push(("user.name", u.clone()));
        }
        k.sort();
        k
    }

    /// The session's attributes on each of its records.
    fn session_attrs(&self, sess: &Session, out: &mut Attrs) {
        out.push(("session.id", s(sess.id.clone())));
        out.push(("ccb.class", s(sess.class.clone())));
        out.push(("ccb.meter", s(sess.meter.clone())));
        out.push(("ccb.billing_mode", s(sess.billing_mode.clone())));
        if let Some(r) = &sess.reason {
            out.push(("ccb.reason", s(r.clone())));
        }
        if self.allow.project && !sess.project.is_empty() {
            out.push(("ccb.project", s(sess.project.clone())));
        }
        if let (true, Some(b)) = (self.allow.branch, &sess.branch) {
            out.push(("vcs.ref.head.name", s(b.clone())));
        }
        if let (true, Some(c)) = (self.allow.commit, &sess.commit) {
            out.push(("vcs.ref.head.revision", s(c.clone())));
        }
        if let (true, Some(u)) = (self.allow.user, &sess.user) {
            out.push(("user.name", s(u.clone())));
        }
    }

    fn start_record(&self, sess: &Session, at: u64) -> LogRecord {
        let mut a: Attrs = Vec::new();
        self.session_attrs(sess, &mut a);
        a.push(("gen_ai.provider.name", s(provider(&sess.billing_mode))));
        if let Some(m) = &sess.model {
            a.push(("gen_ai.request.model", s(m.clone())));
        }
        if let Some(c) = sess.ceiling {
            a.push(("ccb.ceiling.usd", Value::Double(dollars(c))));
        }
        LogRecord { time_ns: ms_to_ns(sess.started_ms, at), observed_ns: at, event_name: "ccb.session.start", attrs: a }
    }

    fn call_record(&self, sess: &Session, c: &Call, at: u64) -> LogRecord {
        let mut a: Attrs = vec![
            ("gen_ai.operation.name", s("chat")),
            ("gen_ai.provider.name", s(provider(&sess.billing_mode))),
            ("gen_ai.response.model", s(c.model.clone())),
        ];
        if let Some(id) = response_id(&c.key) {
            a.push(("gen_ai.response.id", s(id)));
        }
        usage_attrs(&c.usage, &mut a);
        cost_attrs(c.cost, &mut a);
        a.push(("ccb.priced_by", s(c.priced_by.clone())));
        a.push(("ccb.estimated", Value::Bool(c.estimated)));
        a.push(("ccb.source", s(c.source.clone())));
        a.push(("ccb.subagent", Value::Bool(c.subagent)));
        self.session_attrs(sess, &mut a);
        LogRecord { time_ns: ms_to_ns(c.ts_ms, at), observed_ns: at, event_name: "ccb.api_request", attrs: a }
    }

    fn repriced_record(&self, sess: &Session, c: &Call, old: Usd, at: u64) -> LogRecord {
        let mut a: Attrs = Vec::new();
        if let Some(id) = response_id(&c.key) {
            a.push(("gen_ai.response.id", s(id)));
        }
        cost_attrs(c.cost, &mut a);
        a.push(("ccb.previous_cost.usd_nanos", Value::Int(old.nanos())));
        a.push(("ccb.priced_by", s(c.priced_by.clone())));
        a.push(("ccb.estimated", Value::Bool(c.estimated)));
        self.session_attrs(sess, &mut a);
        LogRecord { time_ns: at, observed_ns: at, event_name: "ccb.api_request.repriced", attrs: a }
    }

    fn end_record(&self, sess: &Session, e: &Ended, t: &Totals, at: u64) -> LogRecord {
        let mut a: Attrs = vec![("ccb.ending", s(e.ending.clone()))];
        if let Some(c) = e.exit_code {
            a.push(("ccb.exit_code", Value::Int(c as i64)));
        }
        a.push(("ccb.calls", Value::Int(t.calls.min(i64::MAX as u64) as i64)));
        usage_attrs(&t.usage, &mut a);
        cost_attrs(t.cost, &mut a);
        self.session_attrs(sess, &mut a);
        LogRecord { time_ns: ms_to_ns(e.ended_ms, at), observed_ns: at, event_name: "ccb.session.end", attrs: a }
    }
}

/// Claude's own figure and the user's price file are final: nothing replaces them.
fn is_final(priced_by: &str) -> bool {
    priced_by == "claude" || priced_by == "user-file"
}

/// The provider, in the semantic conventions' words: whose API flavour the calls used.
pub fn provider(billing_mode: &str) -> &'static str {
    match billing_mode {
        "bedrock" => "aws.bedrock",
        "vertex" => "gcp.vertex_ai",
        _ => "anthropic",
    }
}

/// The message id of a ledger key (`message.id:requestId`), when there is one.
fn response_id(key: &str) -> Option<String> {
    let (m, _) = key.split_once(':').unwrap_or((key, ""));
    (!m.is_empty()).then(|| m.to_string())
}

fn ms_to_ns(ms: i64, fallback: u64) -> u64 {
    if ms > 0 {
        (ms as u64).saturating_mul(1_000_000)
    } else {
        fallback
    }
}

/// Dollars as a double to the nano-dollar (`Usd::as_f64` rounds to the micro-dollar for
/// reports): `round(x * 1e9)` gives the ledger's figure back below $9M.
pub fn dollars(c: Usd) -> f64 {
    c.nanos() as f64 / 1e9
}

fn int(n: u64) -> Value {
    Value::Int(n.min(i64::MAX as u64) as i64)
}

/// The token counts of a call, as the semantic conventions name them (input includes the
/// cached tokens), and ccb's own split of them.
fn usage_attrs(u: &Usage, a: &mut Attrs) {
    let cache_write = u.cache_write_5m.saturating_add(u.cache_write_1h);
    a.push(("gen_ai.usage.input_tokens", int(u.input.saturating_add(cache_write).saturating_add(u.cache_read))));
    a.push(("gen_ai.usage.output_tokens", int(u.output)));
    a.push(("gen_ai.usage.cache_read.input_tokens", int(u.cache_read)));
    a.push(("gen_ai.usage.cache_creation.input_tokens", int(cache_write)));
    a.push(("ccb.usage.uncached.input_tokens", int(u.input)));
    a.push(("ccb.usage.cache_creation.5m.input_tokens", int(u.cache_write_5m)));
    a.push(("ccb.usage.cache_creation.1h.input_tokens", int(u.cache_write_1h)));
    a.push(("ccb.usage.web_search.requests", int(u.web_search)));
}

/// A figure as a double in dollars (what dashboards sum) and exactly, in nano-dollars (what
/// the ledger holds).
fn cost_attrs(c: Usd, a: &mut Attrs) {
    a.push(("ccb.cost.usd", Value::Double(dollars(c))));
    a.push(("ccb.cost.usd_nanos", Value::Int(c.nanos())));
}

/// The kinds of `gen_ai.token.type` ccb records, disjoint so that they add up: `input` and
/// `output` as the conventions name them (input here is what Anthropic bills at the input
/// rate, without the cache), and ccb's own kinds for the cache, recorded when not zero.
pub fn token_kinds(u: &Usage) -> Vec<(&'static str, u64)> {
    let mut k = vec![("input", u.input), ("output", u.output)];
    for (name, n) in
        [("cache_read", u.cache_read), ("cache_creation.5m", u.cache_write_5m), ("cache_creation.1h", u.cache_write_1h)]
    {
        if n > 0 {
            k.push((name, n));
        }
    }
    k
}

#[derive(Debug, Clone, Default)]
struct Hist {
    count: u64,
    sum: u64,
    buckets: [u64; 15],
    min: u64,
    max: u64,
}

impl Hist {
    fn add(&mut self, n: u64) {
        let i = TOKEN_BOUNDS.iter().position(|b| n as f64 <= *b).unwrap_or(TOKEN_BOUNDS.len());
        self.buckets[i] += 1;
        self.min = if self.count == 0 { n } else { self.min.min(n) };
        self.max = self.max.max(n);
        self.count += 1;
        self.sum = self.sum.saturating_add(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin { service_version: "0.1.0".into() }
    }

    fn session(id: &str) -> Session {
        Session {
            id: id.into(),
            started_ms: 1_000,
            class: "programmatic".into(),
            meter: "api".into(),
            billing_mode: "api-key".into(),
            project: "/work/p".into(),
            branch: Some("main".into()),
            commit: Some("c0ffee".into()),
            user: Some("ada".into()),
            host: Some("box".into()),
            ..Session::default()
        }
    }

    fn call(key: &str, nanos: i64, priced_by: &str) -> Call {
        Call {
            key: key.into(),
            session_id: "s".into(),
            ts_ms: 2_000,
            model: "claude-haiku-4-5".into(),
            subagent: false,
            usage: Usage { input: 10, output: 300, cache_read: 5000, ..Usage::default() },
            cost: Usd(nanos),
            source: "gate".into(),
            priced_by: priced_by.into(),
            estimated: false,
        }
    }

    fn attr<'a>(r: &'a LogRecord, k: &str) -> Option<&'a Value> {
        r.attrs.iter().find(|(n, _)| *n == k).map(|(_, v)| v)
    }

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn a_call_waits_for_claudes_figure_and_goes_at_it() {
        let mut o = Outbox::new(origin(), Allow::ALL, true);
        o.push(Event::Begin(session("s")), 0);
        o.push(Event::Call(call("msg_1:req_1", 100, "claude-release")), 0);
        o.push(
            Event::Amend { key: "msg_1:req_1".into(), cost: Usd(123), priced_by: "claude".into(), estimated: false },
            SEC / 100,
        );
        o.push(Event::Call(call("msg_2:req_2", 7, "claude")), SEC / 100);
        assert!(!o.due(SEC, false), "not full, not old enough");
        let b = o.cut(BATCH_DELAY_NS, false).expect("due");
        let names: Vec<&str> = b.logs.iter().map(|r| r.event_name).collect();
        assert_eq!(names, ["ccb.session.start", "ccb.api_request", "ccb.api_request"]);
        assert_eq!(attr(&b.logs[1], "ccb.cost.usd_nanos"), Some(&Value::Int(123)));
        assert_eq!(attr(&b.logs[1], "ccb.priced_by"), Some(&Value::Str("claude".into())));
        assert_eq!(attr(&b.logs[1], "gen_ai.response.id"), Some(&Value::Str("msg_1".into())));
        assert_eq!(attr(&b.logs[1], "gen_ai.usage.input_tokens"), Some(&Value::Int(5010)), "input includes the cache");
        assert_eq!(b.cost.len(), 1, "one series");
        assert_eq!(Usd::from_f64(b.cost[0].value), Some(Usd(130)));
        assert_eq!((b.start_ns, b.end_ns), (0, BATCH_DELAY_NS));
        let input = b.tokens.iter().find(|p| p.attrs.contains(&("gen_ai.token.type", s("input")))).unwrap();
        assert_eq!((input.count, input.sum, input.min, input.max), (2, 20.0, 10.0, 10.0));
        assert_eq!(input.buckets[2], 2, "10 tokens fall in (4, 16]");
        assert_eq!(b.tokens.len(), 3, "input, output, cache_read: no empty cache kinds");
        o.push(
            Event::End(Ended { id: "s".into(), ended_ms: 3_000, ending: "exited".into(), exit_code: Some(0) }),
            SEC * 3,
        );
        let e = o.cut(SEC * 3, true).unwrap();
        assert_eq!(e.logs[0].event_name, "ccb.session.end");
        assert_eq!(attr(&e.logs[0], "ccb.cost.usd_nanos"), Some(&Value::Int(130)));
        assert_eq!(attr(&e.logs[0], "ccb.calls"), Some(&Value::Int(2)));
        assert!(e.cost.is_empty(), "no calls in the interval: no points");
        assert_eq!((e.start_ns, e.end_ns), (BATCH_DELAY_NS, SEC * 3), "intervals follow each other");
        assert!(o.is_empty() && o.cut(SEC * 9, true).is_none());
    }

    #[test]
    fn a_provisional_figure_goes_after_the_settle_time_and_a_late_one_is_a_correction() {
        let mut o = Outbox::new(origin(), Allow::ALL, true);
        o.push(Event::Begin(session("s")), 0);
        o.push(Event::Call(call("m:r", 100, "claude-release")), 0);
        let first = o.cut(BATCH_DELAY_NS, false).unwrap();
        assert_eq!((first.logs.len(), first.calls), (1, 0), "the start goes; the call waits for claude's figure");
        assert!(o.cut(SETTLE_NS - 1, false).is_none());
        let b = o.cut(SETTLE_NS, false).unwrap();
        assert_eq!(b.calls, 1);
        for (new, point) in [(150, Some(50)), (120, None)] {
            o.push(
                Event::Amend { key: "m:r".into(), cost: Usd(new), priced_by: "claude".into(), estimated: false },
                SETTLE_NS,
            );
            let c = o.cut(SETTLE_NS * 2, false).unwrap();
            assert_eq!(c.logs[0].event_name, "ccb.api_request.repriced");
            assert_eq!(attr(&c.logs[0], "ccb.cost.usd_nanos"), Some(&Value::Int(new)));
            assert_eq!(c.cost.iter().map(|p| Usd::from_f64(p.value).unwrap().nanos()).next(), point);
        }
        assert_eq!(o.decreases, 1, "150 → 120 cannot go down a monotonic sum");
        // Without telemetry, nothing can replace a figure: it goes at once.
        let mut quiet = Outbox::new(origin(), Allow::ALL, false);
        quiet.push(Event::Call(call("x", 1, "claude-release")), 0);
        assert!(quiet.cut(0, true).is_some());
    }

    #[test]
    fn the_allowlist_keeps_the_machine_at_home() {
        for (allow, absent) in [
            (Allow::ALL, vec![]),
            (Allow::NONE, vec!["host.name", "ccb.project", "vcs.ref.head.name", "vcs.ref.head.revision", "user.name"]),
            (Allow { user: true, ..Allow::NONE }, vec!["host.name", "ccb.project", "vcs.ref.head.name"]),
        ] {
            let mut o = Outbox::new(origin(), allow, false);
            o.push(Event::Begin(session("s")), 0);
            o.push(Event::Call(call("k", 1, "claude")), 0);
            let b = o.cut(0, true).unwrap();
            let mut names: Vec<&str> = b.resource.iter().map(|(k, _)| *k).collect();
            for r in &b.logs {
                names.extend(r.attrs.iter().map(|(k, _)| *k));
            }
            for p in &b.cost {
                names.extend(p.attrs.iter().map(|(k, _)| *k));
            }
            for p in &b.tokens {
                names.extend(p.attrs.iter().map(|(k, _)| *k));
            }
            for a in &absent {
                assert!(!names.contains(a), "{a} with {allow:?}");
            }
            assert_eq!(names.contains(&"user.name"), allow.user);
            assert_eq!(names.contains(&"host.name"), allow.host);
            assert!(names.contains(&"service.name") && names.contains(&"session.id"));
        }
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_counts_it() {
        let mut o = Outbox::with_capacity(origin(), Allow::ALL, false, 3);
        o.push(Event::Begin(session("s")), 0);
        for i in 0..4 {
            o.push(Event::Call(call(&format!("k{i}"), 1, "claude")), 0);
        }
        assert_eq!((o.len(), o.dropped, o.dropped_calls), (3, 2, 1));
        let b = o.cut(0, true).unwrap();
        assert_eq!(b.calls, 3);
        // The totals of the session's end still count every call.
        o.push(Event::End(Ended { id: "s".into(), ended_ms: 1, ending: "exited".into(), exit_code: None }), 0);
        let e = o.cut(0, true).unwrap();
        assert_eq!(attr(&e.logs[0], "ccb.calls"), Some(&Value::Int(4)));
    }

    #[test]
    fn batches_are_bounded_and_in_order() {
        let mut o = Outbox::new(origin(), Allow::ALL, true);
        o.push(Event::Begin(session("s")), 0);
        o.push(Event::Call(call("slow", 1, "claude-release")), 0);
        for i in 0..MAX_BATCH + 10 {
            o.push(Event::Call(call(&format!("k{i}"), 1, "claude")), 0);
        }
        assert!(o.cut(SEC * 5, false).unwrap().logs.len() == 1, "the start only: the unsettled call holds the rest");
        let b = o.cut(SETTLE_NS, false).unwrap();
        assert_eq!(b.logs.len(), MAX_BATCH);
        assert_eq!(o.cut(SETTLE_NS, true).unwrap().logs.len(), 11);
    }

    #[test]
    fn token_kinds_are_disjoint_and_bucketed_as_the_conventions_advise() {
        let u =
            Usage { input: 3, output: 70_000_000, cache_write_5m: 1, cache_write_1h: 0, cache_read: 0, web_search: 2 };
        assert_eq!(token_kinds(&u), vec![("input", 3), ("output", 70_000_000), ("cache_creation.5m", 1)]);
        let mut h = Hist::default();
        for n in [0, 1, 2, 67_108_864, 70_000_000] {
            h.add(n);
        }
        assert_eq!((h.buckets[0], h.buckets[1], h.buckets[13], h.buckets[14]), (2, 1, 1, 1));
        assert_eq!(provider("bedrock"), "aws.bedrock");
        assert_eq!(provider("oauth"), "anthropic");
    }
}
