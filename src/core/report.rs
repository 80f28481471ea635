//! Reports, pure: usage folded into (day, session, model) buckets, then rows per period with
//! optional splits, and renderers (table, ccusage-compatible JSON) behind one interface.

use crate::core::money::Usd;
use crate::core::plan::{Class, Payer};
use crate::core::pricing::Usage;
use jiff::civil::Date;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};

/// What is known of a session, from the ledger (run through ccb) or its transcript.
#[derive(Debug, Clone, Default)]
pub struct SessionAttr {
    pub id: String,
    pub project: String,
    pub class: Class,
    /// Who paid (`meter` in reports): [`Payer::NotRecorded`] for a session not run through ccb.
    pub payer: Payer,
    pub reason: Option<String>,
    /// Run through ccb (in the ledger).
    pub ccb: bool,
    /// Who ran it and where (None: not recorded, e.g. a transcript not run through ccb).
    pub user: Option<String>,
    pub host: Option<String>,
    /// The git branch its responses were made on ("" when not known): a session that changed
    /// branch is one `SessionAttr` per branch in a [`Dataset`].
    pub branch: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Agg {
    pub usage: Usage,
    pub cost: Usd,
    pub responses: u64,
    pub first_ms: i64,
    pub last_ms: i64,
}

impl Agg {
    pub fn add(&mut self, u: &Usage, cost: Usd, ts_ms: i64) {
        if self.responses == 0 || ts_ms < self.first_ms {
            self.first_ms = ts_ms;
        }
        if self.responses == 0 || ts_ms > self.last_ms {
            self.last_ms = ts_ms;
        }
        self.usage.add(u);
        self.cost += cost;
        self.responses += 1;
    }
    pub fn merge(&mut self, o: &Agg) {
        if o.responses == 0 {
            return;
        }
        if self.responses == 0 {
            *self = *o;
            return;
        }
        self.first_ms = self.first_ms.min(o.first_ms);
        self.last_ms = self.last_ms.max(o.last_ms);
        self.usage.add(&o.usage);
        self.cost += o.cost;
        self.responses += o.responses;
    }
}

/// Everything a report is made from.
#[derive(Debug, Default, Clone)]
pub struct Dataset {
    pub sessions: Vec<SessionAttr>,
    /// Session id → the index of its first branch; its other branches (a session that changed
    /// branch: rare) in `branch_idx`, by that first index.
    session_idx: HashMap<String, u32>,
    branch_idx: HashMap<(u32, String), u32>,
    pub models: Vec<String>,
    model_idx: HashMap<String, u16>,
    pub buckets: HashMap<(Date, u32, u16), Agg>,
    pub malformed: u64,
    pub files: u64,
    /// Models whose figures are estimates (nobody priced them: the family's dearest rates).
    pub estimated: std::collections::BTreeSet<String>,
    /// The same sums per 15-minute slot of UTC (slot = ms / 15 min), kept only when asked for
    /// ([`Dataset::with_slots`]): 5-hour blocks and `--since-ref` need finer times than a day.
    pub slots: Option<HashMap<(i64, u32, u16), Agg>>,
}

impl Dataset {
    /// A dataset that keeps sums per 15-minute slot too.
    pub fn with_slots() -> Dataset {
        Dataset { slots: Some(HashMap::new()), ..Dataset::default() }
    }
    pub fn session(&mut self, attr: SessionAttr) -> u32 {
        let first = self.session_idx.get(attr.id.as_str()).copied();
        let found = match first {
            Some(f) if self.sessions[f as usize].branch == attr.branch => Some(f),
            Some(f) => self.branch_idx.get(&(f, attr.branch.clone())).copied(),
            None => None,
        };
        if let Some(i) = found {
            // The ledger knows more than a transcript: let it win.
            if attr.ccb && !self.sessions[i as usize].ccb {
                self.sessions[i as usize] = attr;
            }
            return i;
        }
        let i = self.sessions.len() as u32;
        match first {
            Some(f) => {
                self.branch_idx.insert((f, attr.branch.clone()), i);
            }
            None => {
                self.session_idx.insert(attr.id.clone(), i);
            }
        }
        self.sessions.push(attr);
        i
    }
    pub fn model(&mut self, m: &str) -> u16 {
        if let Some(&i) = self.model_idx.get(m) {
            return i;
        }
        let i = self.models.len() as u16;
        self.model_idx.insert(m.to_string(), i);
        self.models.push(m.to_string());
        i
    }
    pub fn add(&mut self, day: Date, session: u32, model: u16, agg: &Agg) {
        self.buckets.entry((day, session, model)).or_default().merge(agg);
    }
    /// [`Dataset::add`], for sums of one 15-minute slot (kept as such when slots are kept).
    pub fn add_slot(&mut self, slot: i64, day: Date, session: u32, model: u16, agg: &Agg) {
        self.add(day, session, model, agg);
        if let Some(slots) = &mut self.slots {
            slots.entry((slot, session, model)).or_default().merge(agg);
        }
    }
    /// Keep only the sums of sessions `keep` accepts (`--branch`, `--since-ref`'s repository).
    pub fn retain(&mut self, keep: impl Fn(&SessionAttr) -> bool) {
        let ok: Vec<bool> = self.sessions.iter().map(keep).collect();
        self.buckets.retain(|&(_, s, _), _| ok[s as usize]);
        if let Some(slots) = &mut self.slots {
            slots.retain(|&(_, s, _), _| ok[s as usize]);
        }
    }
    /// Merge another dataset (a scan thread's) into this one.
    pub fn absorb(&mut self, other: Dataset) {
        let smap: Vec<u32> = other.sessions.into_iter().map(|s| self.session(s)).collect();
        let mmap: Vec<u16> = other.models.iter().map(|m| self.model(m)).collect();
        for ((day, s, m), agg) in other.buckets {
            self.add(day, smap[s as usize], mmap[m as usize], &agg);
        }
        if let (Some(mine), Some(theirs)) = (&mut self.slots, other.slots) {
            for ((slot, s, m), agg) in theirs {
                mine.entry((slot, smap[s as usize], mmap[m as usize])).or_default().merge(&agg);
            }
        }
        self.malformed += other.malformed;
        self.files += other.files;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Daily,
    Weekly,
    Monthly,
    Session,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    None,
    Model,
    Reason,
    Meter,
    Project,
    User,
    Host,
    /// The git branch (`-` when not known).
    Branch,
}

/// One row of a report: a period (and a split value), with per-model breakdowns.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub key: String,
    pub split: Option<String>,
    pub total: Agg,
    pub models: BTreeMap<String, Agg>,
    pub meters: BTreeMap<String, Usd>,
    pub classes: BTreeMap<String, Usd>,
    pub reasons: BTreeMap<String, Usd>,
    /// Session rows: the session's attributes.
    pub session: Option<SessionAttr>,
}

#[derive(Debug, Default)]
pub struct Report {
    pub period: Option<Period>,
    pub rows: Vec<Row>,
    pub totals: Agg,
    pub malformed: u64,
    /// Models of the report whose figures are estimates.
    pub estimated: Vec<String>,
}

/// A session's branch as reports show it: `-` when not known.
pub fn branch_name(s: &SessionAttr) -> String {
    if s.branch.is_empty() {
        "-".into()
    } else {
        s.branch.clone()
    }
}

/// The Monday of a date's ISO week.
pub fn week_start(d: Date) -> Date {
    let back = d.weekday().to_monday_zero_offset() as i64;
    d.checked_sub(jiff::Span::new().days(back)).unwrap_or(d)
}

pub fn build(ds: &Dataset, period: Period, split: Split, since: Option<Date>, until: Option<Date>) -> Report {
    let mut rows: BTreeMap<(String, Option<String>), Row> = BTreeMap::new();
    let mut totals = Agg::default();
    for (&(day, s, m), agg) in &ds.buckets {
        if since.is_some_and(|d| day < d) || until.is_some_and(|d| day > d) {
            continue;
        }
        let sess = &ds.sessions[s as usize];
        let model = &ds.models[m as usize];
        let key = match period {
            Period::Daily => day.to_string(),
            Period::Weekly => week_start(day).to_string(),
            Period::Monthly => format!("{:04}-{:02}", day.year(), day.month()),
            Period::Session => sess.id.clone(),
        };
        let split_val = match split {
            Split::None => None,
            Split::Model => Some(model.clone()),
            Split::Reason => Some(sess.reason.clone().unwrap_or_else(|| "-".into())),
            Split::Meter => Some(sess.payer.to_string()),
            Split::Project => Some(sess.project.clone()),
            Split::User => Some(sess.user.clone().unwrap_or_else(|| "-".into())),
            Split::Host => Some(sess.host.clone().unwrap_or_else(|| "-".into())),
            Split::Branch => Some(branch_name(sess)),
        };
        let row = rows.entry((key.clone(), split_val.clone())).or_insert_with(|| Row {
            key,
            split: split_val,
            session: (period == Period::Session).then(|| sess.clone()),
            ..Row::default()
        });
        row.total.merge(agg);
        row.models.entry(model.clone()).or_default().merge(agg);
        *row.meters.entry(sess.payer.to_string()).or_default() += agg.cost;
        *row.classes.entry(sess.class.to_string()).or_default() += agg.cost;
        *row.reasons.entry(sess.reason.clone().unwrap_or_else(|| "-".into())).or_default() += agg.cost;
        totals.merge(agg);
    }
    let mut rows: Vec<Row> = rows.into_values().collect();
    if period == Period::Session {
        rows.sort_by(|a, b| a.total.last_ms.cmp(&b.total.last_ms).then(a.key.cmp(&b.key)));
    }
    let estimated = ds.estimated.iter().filter(|m| rows.iter().any(|r| r.models.contains_key(*m))).cloned().collect();
    Report { period: Some(period), rows, totals, malformed: ds.malformed, estimated }
}

fn tokens_json(u: &Usage) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("inputTokens".into(), json!(u.input));
    m.insert("outputTokens".into(), json!(u.output));
    m.insert("cacheCreationTokens".into(), json!(u.cache_write()));
    m.insert("cacheReadTokens".into(), json!(u.cache_read));
    m.insert("totalTokens".into(), json!(u.total_tokens()));
    m
}

fn usd_map(m: &BTreeMap<String, Usd>) -> Value {
    Value::Object(m.iter().map(|(k, v)| (k.clone(), json!(v.as_f64()))).collect())
}

fn iso_ms(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map(|t| t.to_string()).unwrap_or_default()
}

/// ccusage's JSON (15–18 field names, plus 20's `period`), with ccb's fields beside them.
pub fn to_json(r: &Report, split: Split) -> Value {
    let period = r.period.unwrap_or(Period::Daily);
    let (top, key_name) = match period {
        Period::Daily => ("daily", "date"),
        Period::Weekly => ("weekly", "week"),
        Period::Monthly => ("monthly", "month"),
        Period::Session => ("sessions", "sessionId"),
    };
    let split_name = match split {
        Split::None => None,
        Split::Model => Some("model"),
        Split::Reason => Some("reason"),
        Split::Meter => Some("meter"),
        Split::Project => Some("project"),
        Split::User => Some("user"),
        Split::Host => Some("host"),
        Split::Branch => Some("branch"),
    };
    let rows: Vec<Value> = r
        .rows
        .iter()
        .map(|row| {
            let mut m = Map::new();
            m.insert(key_name.into(), json!(row.key));
            m.insert("period".into(), json!(row.key));
            if let (Some(n), Some(v)) = (split_name, &row.split) {
                m.insert(n.into(), json!(v));
            }
            m.extend(tokens_json(&row.total.usage));
            m.insert("cacheCreation5mTokens".into(), json!(row.total.usage.cache_write_5m));
            m.insert("cacheCreation1hTokens".into(), json!(row.total.usage.cache_write_1h));
            m.insert("totalCost".into(), json!(row.total.cost.as_f64()));
            m.insert("modelsUsed".into(), json!(row.models.keys().collect::<Vec<_>>()));
            let breakdowns: Vec<Value> = row
                .models
                .iter()
                .map(|(name, a)| {
                    let mut b = Map::new();
                    b.insert("modelName".into(), json!(name));
                    b.extend(tokens_json(&a.usage));
                    b.insert("cost".into(), json!(a.cost.as_f64()));
                    if r.estimated.contains(name) {
                        b.insert("estimated".into(), json!(true));
                    }
                    Value::Object(b)
                })
                .collect();
            m.insert("modelBreakdowns".into(), Value::Array(breakdowns));
            m.insert("estimated".into(), json!(row.models.keys().any(|k| r.estimated.contains(k))));
            m.insert("responses".into(), json!(row.total.responses));
            if let Some(s) = &row.session {
                m.insert("projectPath".into(), json!(s.project));
                m.insert("lastActivity".into(), json!(iso_ms(row.total.last_ms)));
                m.insert("firstActivity".into(), json!(iso_ms(row.total.first_ms)));
                m.insert("meter".into(), json!(s.payer));
                m.insert("class".into(), json!(s.class));
                m.insert("reason".into(), json!(s.reason));
                m.insert("viaCcb".into(), json!(s.ccb));
            } else {
                m.insert("meters".into(), usd_map(&row.meters));
                m.insert("classes".into(), usd_map(&row.classes));
                m.insert("reasons".into(), usd_map(&row.reasons));
            }
            Value::Object(m)
        })
        .collect();
    let mut totals = tokens_json(&r.totals.usage);
    totals.insert("totalCost".into(), json!(r.totals.cost.as_f64()));
    let mut out = Map::new();
    out.insert(top.into(), Value::Array(rows));
    out.insert("totals".into(), Value::Object(totals));
    if r.malformed > 0 {
        out.insert("malformedLines".into(), json!(r.malformed));
    }
    if !r.estimated.is_empty() {
        out.insert("estimatedModels".into(), json!(r.estimated));
    }
    Value::Object(out)
}

/// A readable table, as wide as its contents; `color` adds ANSI colour. `core::table` fits one
/// to a terminal and adds the breakdown and compact layouts.
pub fn to_table(r: &Report, color: bool) -> String {
    crate::core::table::render(r, &crate::core::table::Opts { color, ..Default::default() })
}

/// `claude-sonnet-4-6-20250929` → `sonnet-4-6`.
pub fn short_model(m: &str) -> String {
    let n = crate::core::pricing::normalize(m);
    n.strip_prefix("claude-").unwrap_or(&n).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn ds() -> Dataset {
        let mut d = Dataset::default();
        let a = d.session(SessionAttr {
            id: "A".into(),
            project: "/p1".into(),
            class: crate::core::plan::Class::Programmatic,
            payer: crate::core::plan::Payer::CreditPool,
            reason: None,
            ccb: true,
            user: None,
            host: None,
            branch: String::new(),
        });
        let b = d.session(SessionAttr {
            id: "B".into(),
            project: "/p2".into(),
            class: crate::core::plan::Class::OpusWithReason,
            payer: crate::core::plan::Payer::Api,
            reason: Some("infra".into()),
            ccb: true,
            user: None,
            host: None,
            branch: String::new(),
        });
        let s = d.model("claude-sonnet-4-6");
        let o = d.model("claude-opus-4-8");
        let agg = |cost: i64, input: u64, ts: i64| {
            let mut x = Agg::default();
            x.add(&Usage { input, output: 1, ..Usage::default() }, Usd(cost), ts);
            x
        };
        d.add(date(2026, 11, 16), a, s, &agg(1_000_000_000, 100, 1));
        d.add(date(2026, 11, 17), a, s, &agg(2_000_000_000, 200, 2));
        d.add(date(2026, 11, 17), b, o, &agg(4_000_000_000, 400, 3));
        d.add(date(2026, 12, 1), b, o, &agg(8_000_000_000, 800, 4));
        d
    }

    #[test]
    fn periods_and_totals() {
        let d = ds();
        let r = build(&d, Period::Daily, Split::None, None, None);
        assert_eq!(
            r.rows.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
            ["2026-11-16", "2026-11-17", "2026-12-01"]
        );
        assert_eq!(r.rows[1].total.cost, Usd(6_000_000_000));
        assert_eq!(r.rows[1].models.len(), 2);
        assert_eq!(r.totals.cost, Usd(15_000_000_000));
        let r = build(&d, Period::Monthly, Split::None, None, None);
        assert_eq!(
            r.rows.iter().map(|r| (r.key.as_str(), r.total.cost)).collect::<Vec<_>>(),
            [("2026-11", Usd(7_000_000_000)), ("2026-12", Usd(8_000_000_000))]
        );
        let r = build(&d, Period::Weekly, Split::None, None, None);
        assert_eq!(r.rows[0].key, "2026-11-16", "a Monday");
        assert_eq!(r.rows[0].total.cost, Usd(7_000_000_000));
        let r = build(&d, Period::Session, Split::None, None, None);
        assert_eq!(r.rows.len(), 2);
        assert_eq!(r.rows[1].key, "B");
        assert_eq!(r.rows[1].total.last_ms, 4);
    }

    #[test]
    fn date_range_and_splits() {
        let d = ds();
        let r = build(&d, Period::Daily, Split::None, Some(date(2026, 11, 17)), Some(date(2026, 11, 30)));
        assert_eq!(r.rows.len(), 1);
        assert_eq!(r.totals.cost, Usd(6_000_000_000));
        let r = build(&d, Period::Monthly, Split::Meter, None, None);
        let got: Vec<_> = r
            .rows
            .iter()
            .map(|r| (r.key.as_str(), r.split.as_deref().unwrap(), r.total.cost.nanos() / 1_000_000_000))
            .collect();
        assert_eq!(got, [("2026-11", "api", 4), ("2026-11", "credit-pool", 3), ("2026-12", "api", 8)]);
        let r = build(&d, Period::Monthly, Split::Reason, None, None);
        assert_eq!(r.rows[0].split.as_deref(), Some("-"));
        assert_eq!(r.rows[1].split.as_deref(), Some("infra"));
    }

    /// A session that changed branch is one dataset session per branch; the branches of a day
    /// add up to the day.
    #[test]
    fn a_session_on_two_branches_splits_and_adds_up() {
        let mut d = Dataset::default();
        let on = |b: &str| SessionAttr { id: "S".into(), branch: b.into(), ..SessionAttr::default() };
        let (a, b) = (d.session(on("main")), d.session(on("feat")));
        assert_ne!(a, b);
        assert_eq!((d.session(on("main")), d.session(on("feat")), d.session(on(""))), (a, b, 2));
        let m = d.model("claude-haiku-4-5");
        let mut x = Agg::default();
        x.add(&Usage { input: 1, ..Usage::default() }, Usd(5), 1);
        for s in [a, b, 2] {
            d.add(date(2026, 11, 20), s, m, &x);
        }
        let r = build(&d, Period::Daily, Split::Branch, None, None);
        let got: Vec<_> = r.rows.iter().map(|r| (r.split.as_deref().unwrap(), r.total.cost)).collect();
        assert_eq!(got, [("-", Usd(5)), ("feat", Usd(5)), ("main", Usd(5))]);
        assert_eq!(build(&d, Period::Daily, Split::None, None, None).rows[0].total.cost, Usd(15));
        assert_eq!(build(&d, Period::Session, Split::None, None, None).rows.len(), 1, "one session");
        d.retain(|s| s.branch == "feat");
        assert_eq!(build(&d, Period::Daily, Split::None, None, None).totals.cost, Usd(5));
    }

    #[test]
    fn json_is_a_superset_of_ccusage() {
        let d = ds();
        let v = to_json(&build(&d, Period::Daily, Split::None, None, None), Split::None);
        let row = &v["daily"][1];
        for k in [
            "date",
            "period",
            "inputTokens",
            "outputTokens",
            "cacheCreationTokens",
            "cacheReadTokens",
            "totalTokens",
            "totalCost",
            "modelsUsed",
            "modelBreakdowns",
            "meters",
            "classes",
        ] {
            assert!(row.get(k).is_some(), "missing {k}");
        }
        assert_eq!(row["date"], "2026-11-17");
        assert_eq!(row["totalCost"], 6.0);
        assert_eq!(row["inputTokens"], 600);
        assert_eq!(row["modelBreakdowns"][0]["modelName"], "claude-opus-4-8");
        assert_eq!(row["modelBreakdowns"][0]["cost"], 4.0);
        assert_eq!(row["meters"]["credit-pool"], 2.0);
        assert_eq!(v["totals"]["totalCost"], 15.0);
        let v = to_json(&build(&d, Period::Monthly, Split::None, None, None), Split::None);
        assert_eq!(v["monthly"][0]["month"], "2026-11");
        let v = to_json(&build(&d, Period::Session, Split::None, None, None), Split::None);
        assert_eq!(v["sessions"][1]["sessionId"], "B");
        assert_eq!(v["sessions"][1]["reason"], "infra");
        assert_eq!(v["sessions"][1]["meter"], "api");
    }

    #[test]
    fn table_has_a_row_per_period_and_a_total() {
        let t = to_table(&build(&ds(), Period::Daily, Split::None, None, None), false);
        assert_eq!(t.lines().count(), 5, "{t}");
        assert!(
            t.contains("2026-11-17") && t.contains("$6.00") && t.contains("$15.00") && t.contains("opus-4-8"),
            "{t}"
        );
        assert!(!t.contains('\x1b'), "no colour when asked for none");
        assert!(to_table(&build(&ds(), Period::Daily, Split::None, None, None), true).contains('\x1b'));
    }

    /// Session ids, reasons and model names come from transcripts and users: any text, cut
    /// by characters and printed without control characters.
    #[test]
    fn table_takes_any_text() {
        let mut d = Dataset::default();
        let id = format!("{}\u{1b}]0;title\u{7}", "\u{e9}".repeat(40));
        let a = d.session(SessionAttr {
            id: id.clone(),
            project: "/p".into(),
            class: crate::core::plan::Class::Programmatic,
            payer: crate::core::plan::Payer::Api,
            reason: Some(format!("r\n{}", "\u{e9}".repeat(30))),
            ccb: true,
            user: None,
            host: None,
            branch: String::new(),
        });
        let m = d.model("claude-\u{e9}\u{1b}[2J");
        let mut x = Agg::default();
        x.add(&Usage { input: 1, ..Usage::default() }, Usd(1), 1);
        d.add(date(2026, 11, 16), a, m, &x);
        for split in [Split::None, Split::Reason, Split::Model] {
            let t = to_table(&build(&d, Period::Session, split, None, None), false);
            assert!(!t.chars().any(|c| c.is_control() && c != '\n'), "{t:?}");
            assert_eq!(t.lines().count(), 3, "{t}");
        }
    }
}
