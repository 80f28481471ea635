//! Where the money went and what it would have cost elsewhere, pure: repricing usage on another
//! model (`ccb usage --what-if MODEL`), ranking sessions, branches, subagents and tools by cost
//! (`ccb usage top`), and hints (a premium model without a reason, answers short enough for a
//! cheaper tier) that are data for a person, never rules.

use crate::core::exit::Exit;
use crate::core::money::Usd;
use crate::core::pricing::{ModelPrice, Modifiers, PriceTable, Usage};
use crate::core::report::{Agg, Dataset, Report};
use crate::core::routing::Advice;
use jiff::civil::Date;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// A model to reprice on: every token kind at its rates.
#[derive(Debug, Clone)]
pub struct WhatIf {
    /// The id, as the price table names it.
    pub model: String,
    price: ModelPrice,
    web_search_nanos: i64,
}

impl WhatIf {
    /// The model named (an id, or an alias as the release resolves it), if a table prices it:
    /// a what-if on an unknown model would be a guess (exit 2).
    pub fn new(name: &str, prices: &PriceTable) -> Result<WhatIf, Exit> {
        let resolved = prices.resolve(name, &|_| None);
        let (mut price, how) = prices.lookup(&resolved);
        if how != crate::core::pricing::Match::Known || name.trim().is_empty() {
            return Err(Exit::usage(format!(
                "--what-if '{}' is not a model ccb has prices for: name one `ccb prices` lists (e.g. claude-haiku-4-5)",
                crate::core::human::excerpt(name, crate::core::human::EXCERPT)
            )));
        }
        // Reports keep a response's tokens, not each prompt's size: long-prompt bands cannot be
        // told apart, so the base rates apply throughout.
        price.bands.clear();
        Ok(WhatIf { model: price.id.clone(), price, web_search_nanos: prices.web_search_nanos })
    }

    /// What `usage` would have cost on this model.
    pub fn cost(&self, usage: &Usage) -> Usd {
        crate::core::pricing::price(&self.price, usage, &Modifiers::default(), self.web_search_nanos)
    }
}

/// `whatIfModel`, `whatIfCost` and `saving` on every row of a report's JSON and on its totals.
/// The rows of `json` are `r`'s, in order (see [`crate::core::report::to_json`]).
pub fn add_what_if(json: &mut Value, r: &Report, w: &WhatIf) {
    let fields = |m: &mut Map<String, Value>, cost: Usd, what_if: Usd| {
        m.insert("whatIfModel".into(), json!(w.model));
        m.insert("whatIfCost".into(), json!(what_if.as_f64()));
        m.insert("saving".into(), json!((cost - what_if).as_f64()));
    };
    let Some(obj) = json.as_object_mut() else { return };
    for key in ["daily", "weekly", "monthly", "sessions"] {
        if let Some(Value::Array(rows)) = obj.get_mut(key) {
            for (row, out) in r.rows.iter().zip(rows.iter_mut()) {
                if let Some(m) = out.as_object_mut() {
                    fields(m, row.total.cost, w.cost(&row.total.usage));
                }
            }
        }
    }
    if let Some(t) = obj.get_mut("totals").and_then(Value::as_object_mut) {
        fields(t, r.totals.cost, w.cost(&r.totals.usage));
    }
}

/// The what-if beside the cost, one line per row of the report and the total.
pub fn what_if_table(r: &Report, w: &WhatIf) -> String {
    let keys: Vec<String> = r
        .rows
        .iter()
        .map(|row| {
            let k = crate::core::human::printable(&row.key);
            match &row.split {
                Some(s) => format!("{k} {}", crate::core::human::printable(s)),
                None => k,
            }
        })
        .map(|k| crate::core::human::head_chars(&k, 60).to_string())
        .collect();
    let key_w = keys.iter().map(|k| k.chars().count()).max().unwrap_or(0).max(5);
    let mut out = format!(
        "What if every token had been {}:\n{:<key_w$}  {:>10}  {:>10}  {:>10}\n",
        crate::core::human::printable(&w.model),
        "",
        "Cost",
        "What if",
        "Saving"
    );
    let mut line = |k: &str, cost: Usd, what_if: Usd| {
        out.push_str(&format!(
            "{k:<key_w$}  {:>10}  {:>10}  {:>10}\n",
            cost.to_string(),
            what_if.to_string(),
            (cost - what_if).to_string()
        ));
    };
    for (row, k) in r.rows.iter().zip(&keys) {
        line(k, row.total.cost, w.cost(&row.total.usage));
    }
    line("Total", r.totals.cost, w.cost(&r.totals.usage));
    out
}

/// What `ccb usage top` ranks by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopBy {
    Session,
    Branch,
    Subagent,
    Tool,
}

impl TopBy {
    pub fn as_str(self) -> &'static str {
        match self {
            TopBy::Session => "session",
            TopBy::Branch => "branch",
            TopBy::Subagent => "subagent",
            TopBy::Tool => "tool",
        }
    }
}

/// A hint: data for a person, never a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hint {
    /// `premium-without-reason`, `short-answers`.
    pub kind: &'static str,
    pub text: String,
}

/// One ranked entry: a session, a branch, a subagent type or a tool.
#[derive(Debug, Clone, Default)]
pub struct TopRow {
    pub key: String,
    pub total: Agg,
    /// Cost by model.
    pub models: BTreeMap<String, Agg>,
    /// Sessions it spans.
    pub sessions: u64,
    pub hints: Vec<Hint>,
    /// The what-if, when it was summed share by share (tools); else repriced from `total`.
    pub what_if: Option<Usd>,
}

impl TopRow {
    fn what_if(&self, w: &WhatIf) -> Usd {
        self.what_if.unwrap_or_else(|| w.cost(&self.total.usage))
    }
}

/// The hints for one session's usage: a premium model and no reason; or answers short enough
/// (output tokens per response, over enough responses) that a cheaper tier usually does.
pub fn hints(
    models: &BTreeMap<String, Agg>,
    reason: Option<&str>,
    premium: &dyn Fn(&str) -> bool,
    cheapest: &dyn Fn(&str) -> bool,
    a: &Advice,
) -> Vec<Hint> {
    let mut out = Vec::new();
    let premium_models: Vec<&str> =
        models.iter().filter(|(m, g)| g.responses > 0 && premium(m)).map(|(m, _)| m.as_str()).collect();
    if reason.is_none() && !premium_models.is_empty() {
        out.push(Hint {
            kind: "premium-without-reason",
            text: format!("ran premium {} without a reason", premium_models.join(", ")),
        });
    }
    let (responses, output) = models
        .iter()
        .filter(|(m, _)| !cheapest(m))
        .fold((0u64, 0u64), |(r, o), (_, g)| (r + g.responses, o + g.usage.output));
    if responses >= a.min_responses && responses > 0 && output / responses <= a.short_output_tokens {
        out.push(Hint {
            kind: "short-answers",
            text: format!(
                "{} output tokens per answer over {responses} answers: a cheaper tier usually does (at most {} in [advice])",
                output / responses,
                a.short_output_tokens
            ),
        });
    }
    out
}

/// The sessions of a dataset in a date range, each with its usage by model; `key` maps a
/// session (by index) to the entry it counts toward (its id, its branch).
fn fold(
    ds: &Dataset,
    since: Option<Date>,
    until: Option<Date>,
    key: &dyn Fn(u32) -> String,
) -> BTreeMap<String, (TopRow, std::collections::BTreeSet<u32>)> {
    let mut rows: BTreeMap<String, (TopRow, std::collections::BTreeSet<u32>)> = BTreeMap::new();
    for (&(day, s, m), agg) in &ds.buckets {
        if since.is_some_and(|d| day < d) || until.is_some_and(|d| day > d) {
            continue;
        }
        let k = key(s);
        let (row, sessions) =
            rows.entry(k.clone()).or_insert_with(|| (TopRow { key: k, ..TopRow::default() }, Default::default()));
        row.total.merge(agg);
        row.models.entry(ds.models[m as usize].clone()).or_default().merge(agg);
        sessions.insert(s);
    }
    rows
}

/// A session's branch, by its id (None: not recorded).
pub type BranchOf<'a> = dyn Fn(&str) -> Option<String> + 'a;

/// The most expensive sessions (or branches: `branch_of` a session's id), dearest first, with
/// hints per session (per branch: those of its sessions, each kind once).
#[allow(clippy::too_many_arguments)]
pub fn top_sessions(
    ds: &Dataset,
    since: Option<Date>,
    until: Option<Date>,
    branch_of: Option<&BranchOf<'_>>,
    premium: &dyn Fn(&str) -> bool,
    cheapest: &dyn Fn(&str) -> bool,
    a: &Advice,
    limit: usize,
) -> Vec<TopRow> {
    let id = |s: u32| ds.sessions[s as usize].id.clone();
    let key = |s: u32| match branch_of {
        Some(b) => b(&ds.sessions[s as usize].id).unwrap_or_else(|| "-".into()),
        None => id(s),
    };
    let per_session = fold(ds, since, until, &id);
    let mut rows: Vec<TopRow> = fold(ds, since, until, &key)
        .into_values()
        .map(|(mut row, sessions)| {
            row.sessions = sessions.len() as u64;
            for s in &sessions {
                let Some((own, _)) = per_session.get(&id(*s)) else { continue };
                let reason = ds.sessions[*s as usize].reason.as_deref();
                for h in hints(&own.models, reason, premium, cheapest, a) {
                    if branch_of.is_none() {
                        row.hints.push(h);
                    } else if !row.hints.iter().any(|x| x.kind == h.kind) {
                        row.hints.push(Hint { text: format!("{}: {}", id(*s), h.text), ..h });
                    }
                }
            }
            row
        })
        .collect();
    rank(&mut rows, limit);
    rows
}

/// Dearest first; ties by key, so the order is stable.
pub fn rank(rows: &mut Vec<TopRow>, limit: usize) {
    rows.sort_by(|a, b| b.total.cost.cmp(&a.total.cost).then_with(|| a.key.cmp(&b.key)));
    rows.truncate(limit);
}

/// Cost attributed to a tool: a response's cost split evenly over the tool results in its
/// prompt (the calls that led to it). A response whose prompt holds no tool result counts
/// toward `-` (a person's turn).
pub fn split_evenly(cost: Usd, parts: usize) -> Vec<Usd> {
    if parts == 0 {
        return vec![cost];
    }
    let n = parts as i64;
    let each = cost.nanos() / n;
    let rest = cost.nanos() - each * n;
    (0..n).map(|i| Usd(each + if i < rest { 1 } else { 0 })).collect()
}

/// The tool calls and tool results one transcript line holds: (tool_use id, tool name) of an
/// assistant line's `tool_use` blocks, and the `tool_use_id` of a user line's `tool_result`
/// blocks. Only lines that name either are parsed (the caller looks for the words first).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ToolBlocks {
    pub uses: Vec<(String, String)>,
    pub results: Vec<String>,
}

pub fn tool_blocks(line: &[u8]) -> ToolBlocks {
    let mut out = ToolBlocks::default();
    let Ok(v) = serde_json::from_slice::<Value>(line) else { return out };
    let Some(content) = v.pointer("/message/content").and_then(Value::as_array) else { return out };
    for b in content {
        match b.get("type").and_then(Value::as_str) {
            Some("tool_use") => {
                if let (Some(id), Some(name)) =
                    (b.get("id").and_then(Value::as_str), b.get("name").and_then(Value::as_str))
                {
                    out.uses.push((id.to_string(), name.to_string()));
                }
            }
            Some("tool_result") => {
                if let Some(id) = b.get("tool_use_id").and_then(Value::as_str) {
                    out.results.push(id.to_string());
                }
            }
            _ => {}
        }
    }
    out
}

/// A response's tokens split evenly over `parts`, the first part taking what does not divide.
pub fn split_usage(u: &Usage, parts: usize) -> Vec<Usage> {
    let n = parts.max(1) as u64;
    let part = |x: u64, i: u64| x / n + if i == 0 { x % n } else { 0 };
    (0..n)
        .map(|i| Usage {
            input: part(u.input, i),
            output: part(u.output, i),
            cache_write_5m: part(u.cache_write_5m, i),
            cache_write_1h: part(u.cache_write_1h, i),
            cache_read: part(u.cache_read, i),
            web_search: part(u.web_search, i),
        })
        .collect()
}

/// The JSON of `ccb usage top`: stable for scripts.
pub fn top_json(by: TopBy, rows: &[TopRow], w: &WhatIf) -> Value {
    let key = match by {
        TopBy::Session => "sessionId",
        TopBy::Branch => "branch",
        TopBy::Subagent => "subagent",
        TopBy::Tool => "tool",
    };
    let rows: Vec<Value> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let what_if = r.what_if(w);
            let mut m = Map::new();
            m.insert("rank".into(), json!(i + 1));
            m.insert(key.into(), json!(r.key));
            m.insert("totalCost".into(), json!(r.total.cost.as_f64()));
            m.insert("responses".into(), json!(r.total.responses));
            m.insert("inputTokens".into(), json!(r.total.usage.input));
            m.insert("outputTokens".into(), json!(r.total.usage.output));
            m.insert("cacheCreationTokens".into(), json!(r.total.usage.cache_write()));
            m.insert("cacheReadTokens".into(), json!(r.total.usage.cache_read));
            m.insert("modelsUsed".into(), json!(r.models.keys().collect::<Vec<_>>()));
            if by != TopBy::Session {
                m.insert("sessions".into(), json!(r.sessions));
            }
            m.insert("whatIfModel".into(), json!(w.model));
            m.insert("whatIfCost".into(), json!(what_if.as_f64()));
            m.insert("saving".into(), json!((r.total.cost - what_if).as_f64()));
            m.insert(
                "hints".into(),
                Value::Array(r.hints.iter().map(|h| json!({"kind": h.kind, "text": h.text})).collect()),
            );
            Value::Object(m)
        })
        .collect();
    json!({ "by": by.as_str(), "top": rows })
}

/// The table of `ccb usage top`.
pub fn top_table(by: TopBy, rows: &[TopRow], w: &WhatIf) -> String {
    use crate::core::human::{head_chars, printable, tokens};
    let head = match by {
        TopBy::Session => "Session",
        TopBy::Branch => "Branch",
        TopBy::Subagent => "Subagent",
        TopBy::Tool => "Tool",
    };
    let keys: Vec<String> = rows.iter().map(|r| head_chars(&printable(&r.key), 40).to_string()).collect();
    let key_w = keys.iter().map(|k| k.chars().count()).max().unwrap_or(0).max(head.len());
    let mut out = format!(
        "{:>3}  {head:<key_w$}  {:>10}  {:>9}  {:>8}  {:>10}  {:>10}  Models\n",
        "#", "Cost", "Responses", "Output", "What if", "Saving"
    );
    for (i, (r, k)) in rows.iter().zip(&keys).enumerate() {
        let what_if = r.what_if(w);
        let models: Vec<String> = r.models.keys().map(|m| printable(&crate::core::report::short_model(m))).collect();
        out.push_str(&format!(
            "{:>3}  {k:<key_w$}  {:>10}  {:>9}  {:>8}  {:>10}  {:>10}  {}\n",
            i + 1,
            r.total.cost.to_string(),
            r.total.responses,
            tokens(r.total.usage.output),
            what_if.to_string(),
            (r.total.cost - what_if).to_string(),
            models.join(", ")
        ));
        for h in &r.hints {
            out.push_str(&format!("{:>3}  {:<key_w$}  hint: {}\n", "", "", printable(&h.text)));
        }
    }
    out.push_str(&format!("What if: every token at {}'s rates.\n", printable(&w.model)));
    out
}

/// Sessions of a report's range with hints, for `--by-model`: (session id, hint).
pub fn session_hints(
    ds: &Dataset,
    since: Option<Date>,
    until: Option<Date>,
    premium: &dyn Fn(&str) -> bool,
    cheapest: &dyn Fn(&str) -> bool,
    a: &Advice,
) -> Vec<(String, Hint)> {
    let mut rows = top_sessions(ds, since, until, None, premium, cheapest, a, usize::MAX);
    rows.sort_by(|x, y| x.key.cmp(&y.key));
    rows.into_iter().flat_map(|r| r.hints.into_iter().map(move |h| (r.key.clone(), h))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::report::SessionAttr;
    use jiff::civil::date;

    fn prices() -> PriceTable {
        PriceTable::newest().unwrap()
    }

    #[test]
    fn a_what_if_reprices_every_token_kind() {
        let p = prices();
        let w = WhatIf::new("claude-haiku-4-5", &p).unwrap();
        let u = Usage {
            input: 1_000,
            output: 2_000,
            cache_write_5m: 3_000,
            cache_write_1h: 4_000,
            cache_read: 5_000,
            web_search: 0,
        };
        let sonnet = p.cost("claude-sonnet-4-6", &u, &Modifiers::default()).0;
        assert_eq!(w.cost(&u).nanos() * 3, sonnet.nanos(), "Sonnet 4.6's rates are Haiku 4.5's times three");
        assert_eq!(WhatIf::new("haiku", &p).unwrap().model, p.resolve("haiku", &|_| None));
        for bad in ["gpt-7", "claude-sonnet-77", ""] {
            let e = WhatIf::new(bad, &p).unwrap_err();
            assert_eq!(e.code, crate::core::exit::USAGE, "{bad}");
            assert!(e.message.contains("is not a model ccb has prices for"), "{}", e.message);
        }
    }

    fn agg(input: u64, output: u64, responses: u64, cost: i64) -> Agg {
        Agg { usage: Usage { input, output, ..Usage::default() }, cost: Usd(cost), responses, first_ms: 0, last_ms: 0 }
    }

    #[test]
    fn hints_are_data() {
        let a = Advice { short_output_tokens: 400, min_responses: 5 };
        let premium = |m: &str| m.contains("opus");
        let cheapest = |m: &str| m.contains("haiku");
        let models: BTreeMap<String, Agg> = [("claude-opus-4-8".to_string(), agg(10_000, 1_000, 10, 5))].into();
        let h = hints(&models, None, &premium, &cheapest, &a);
        assert_eq!(h.iter().map(|h| h.kind).collect::<Vec<_>>(), ["premium-without-reason", "short-answers"]);
        assert!(h[1].text.starts_with("100 output tokens per answer over 10 answers"), "{}", h[1].text);
        assert!(hints(&models, Some("infra"), &premium, &cheapest, &a)
            .iter()
            .all(|h| h.kind != "premium-without-reason"));
        let long: BTreeMap<String, Agg> = [("claude-sonnet-4-6".to_string(), agg(10_000, 9_000, 10, 5))].into();
        assert!(hints(&long, None, &premium, &cheapest, &a).is_empty());
        let few: BTreeMap<String, Agg> = [("claude-sonnet-4-6".to_string(), agg(10, 10, 4, 5))].into();
        assert!(hints(&few, None, &premium, &cheapest, &a).is_empty(), "too few answers to say");
        let cheap: BTreeMap<String, Agg> = [("claude-haiku-4-5".to_string(), agg(10, 10, 40, 5))].into();
        assert!(hints(&cheap, None, &premium, &cheapest, &a).is_empty(), "already the cheapest tier");
    }

    #[test]
    fn top_ranks_dearest_first_and_folds_branches() {
        let mut d = Dataset::default();
        let s = |d: &mut Dataset, id: &str, reason: Option<&str>| {
            d.session(SessionAttr {
                id: id.into(),
                reason: reason.map(String::from),
                ccb: true,
                ..SessionAttr::default()
            })
        };
        let (a, b, c) = (s(&mut d, "A", None), s(&mut d, "B", None), s(&mut d, "C", Some("infra")));
        let opus = d.model("claude-opus-4-8");
        let sonnet = d.model("claude-sonnet-4-6");
        let day = date(2026, 11, 20);
        d.add(day, a, sonnet, &agg(100, 5_000, 2, 300));
        d.add(day, b, opus, &agg(100, 5_000, 2, 700));
        d.add(date(2026, 11, 21), a, sonnet, &agg(100, 5_000, 2, 300));
        d.add(day, c, opus, &agg(100, 5_000, 2, 500));
        let premium = |m: &str| m.contains("opus");
        let cheapest = |m: &str| m.contains("haiku");
        let adv = Advice::default();
        let rows = top_sessions(&d, None, None, None, &premium, &cheapest, &adv, 10);
        let order: Vec<(&str, i64)> = rows.iter().map(|r| (r.key.as_str(), r.total.cost.nanos())).collect();
        assert_eq!(order, [("B", 700), ("A", 600), ("C", 500)]);
        assert_eq!(rows[0].hints.iter().map(|h| h.kind).collect::<Vec<_>>(), ["premium-without-reason"]);
        assert!(rows[2].hints.is_empty(), "C gave a reason");
        let rows = top_sessions(&d, Some(date(2026, 11, 21)), None, None, &premium, &cheapest, &adv, 10);
        assert_eq!(rows.len(), 1);
        let branch = |id: &str| (id != "C").then(|| "main".to_string());
        let rows = top_sessions(&d, None, None, Some(&branch), &premium, &cheapest, &adv, 1);
        assert_eq!((rows[0].key.as_str(), rows[0].total.cost, rows[0].sessions), ("main", Usd(1300), 2));
        assert_eq!(rows[0].hints.len(), 1);
        assert!(rows[0].hints[0].text.starts_with("B: ran premium"), "{:?}", rows[0].hints);
    }

    #[test]
    fn tool_blocks_of_a_line() {
        let a = br#"{"type":"assistant","message":{"content":[{"type":"text","text":"x"},{"type":"tool_use","id":"t1","name":"Bash","input":{}},{"type":"tool_use","id":"t2","name":"Read","input":{}}]}}"#;
        assert_eq!(tool_blocks(a).uses, [("t1".into(), "Bash".into()), ("t2".into(), "Read".into())]);
        let u = br#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t1","content":"ok"}]}}"#;
        assert_eq!(tool_blocks(u).results, ["t1"]);
        assert_eq!(tool_blocks(b"not json"), ToolBlocks::default());
        assert_eq!(tool_blocks(br#"{"type":"user","message":{"content":"hi"}}"#), ToolBlocks::default());
    }

    #[test]
    fn an_even_split_loses_no_nano_dollar() {
        assert_eq!(split_evenly(Usd(10), 3), [Usd(4), Usd(3), Usd(3)]);
        assert_eq!(split_evenly(Usd(10), 0), [Usd(10)]);
    }
}
