//! 5-hour billing blocks, pure: a history's sums per 15-minute slot folded into the windows
//! ccusage's `blocks` report shows, by its rules, and rendered as its JSON (plus ccb's fields) or
//! a table.
//!
//! ccusage's rules (its `identify_session_blocks`): responses in time order; the first starts a
//! block at its UTC hour; a response more than 5 hours after its block's start, or more than 5
//! hours after the response before it, closes the block and starts the next at its own hour; a
//! silence of more than 5 hours also leaves a gap block, from 5 hours after the last response to
//! the next one. A block is active while the last response is under 5 hours old and its end has
//! not come.
//!
//! ccb knows a history as sums per 15-minute slot (with each sum's first and last response
//! time), not response by response, and that is enough: a block starts on an hour and lasts 5,
//! so its end is a slot boundary, and responses within one slot are less than 5 hours apart. The
//! one case a slot cannot settle is a response at the very millisecond a block ends, in a slot
//! with later responses: the slot goes to the next block whole.

use crate::core::money::Usd;
use crate::core::report::{Agg, Dataset};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

pub const BLOCK_MS: i64 = 5 * 3_600_000;
const SLOT_MS: i64 = 15 * 60_000;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Block {
    pub start_ms: i64,
    pub end_ms: i64,
    pub gap: bool,
    pub active: bool,
    pub total: Agg,
    /// Per model, in the order of their first response in the block.
    pub models: Vec<(String, Agg)>,
}

impl Block {
    /// The last response's time (None for a gap).
    pub fn actual_end_ms(&self) -> Option<i64> {
        (!self.gap && self.total.responses > 0).then_some(self.total.last_ms)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurnRate {
    pub tokens_per_minute: f64,
    pub tokens_per_minute_for_indicator: f64,
    pub cost_per_hour: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Projection {
    pub total_tokens: u64,
    pub total_cost: f64,
    pub remaining_minutes: u64,
}

/// The blocks of a dataset kept with slots ([`Dataset::with_slots`]), oldest first, as of `now_ms`.
pub fn blocks(ds: &Dataset, now_ms: i64) -> Vec<Block> {
    let Some(slots) = &ds.slots else { return Vec::new() };
    // Sessions do not matter here: per slot, per model.
    let mut by_slot: BTreeMap<i64, BTreeMap<u16, Agg>> = BTreeMap::new();
    for (&(slot, _, m), a) in slots {
        if a.responses > 0 {
            by_slot.entry(slot).or_default().entry(m).or_default().merge(a);
        }
    }
    let mut out = Vec::new();
    let mut cur: Option<Block> = None;
    let mut last = 0i64;
    for (_, models) in by_slot {
        let first = models.values().map(|a| a.first_ms).min().unwrap_or(0);
        if let Some(b) = &cur {
            let (since_start, since_last) = (first - b.start_ms, first - last);
            if since_start > BLOCK_MS || since_last > BLOCK_MS {
                out.push(close(cur.take().unwrap_or_default(), now_ms));
                if since_last > BLOCK_MS {
                    out.push(Block { start_ms: last + BLOCK_MS, end_ms: first, gap: true, ..Block::default() });
                }
            }
        }
        let b = cur.get_or_insert_with(|| {
            let start_ms = first.div_euclid(3_600_000) * 3_600_000;
            Block { start_ms, end_ms: start_ms + BLOCK_MS, ..Block::default() }
        });
        let mut order: Vec<(&u16, &Agg)> = models.iter().collect();
        order.sort_by_key(|(m, a)| (a.first_ms, **m));
        for (m, a) in order {
            let name = &ds.models[*m as usize];
            match b.models.iter_mut().find(|(n, _)| n == name) {
                Some((_, x)) => x.merge(a),
                None => b.models.push((name.clone(), *a)),
            }
            b.total.merge(a);
        }
        last = last.max(b.total.last_ms);
    }
    if let Some(b) = cur {
        out.push(close(b, now_ms));
    }
    out
}

fn close(mut b: Block, now_ms: i64) -> Block {
    b.active = now_ms - b.total.last_ms < BLOCK_MS && now_ms < b.end_ms;
    b
}

/// Tokens and cost per minute over the block's responses so far (active blocks only, as ccusage).
pub fn burn_rate(b: &Block) -> Option<BurnRate> {
    if b.gap || !b.active || b.total.responses == 0 {
        return None;
    }
    let minutes = (b.total.last_ms - b.total.first_ms) as f64 / 60_000.0;
    if minutes <= 0.0 {
        return None;
    }
    let u = &b.total.usage;
    Some(BurnRate {
        tokens_per_minute: u.total_tokens() as f64 / minutes,
        tokens_per_minute_for_indicator: (u.input + u.output) as f64 / minutes,
        cost_per_hour: b.total.cost.as_f64() / minutes * 60.0,
    })
}

/// Where the block ends if the burn rate holds until its end.
pub fn projection(b: &Block, now_ms: i64) -> Option<Projection> {
    let r = burn_rate(b)?;
    let remaining = ((b.end_ms - now_ms) as f64 / 60_000.0).round().max(0.0);
    let tokens = b.total.usage.total_tokens() as f64 + r.tokens_per_minute * remaining;
    let cost = b.total.cost.as_f64() + r.cost_per_hour / 60.0 * remaining;
    Some(Projection {
        total_tokens: tokens.round() as u64,
        total_cost: (cost * 100.0).round() / 100.0,
        remaining_minutes: remaining as u64,
    })
}

/// `2026-11-20T10:00:00.000Z`, as ccusage writes times.
pub fn rfc3339_millis(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map(|t| t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()).unwrap_or_default()
}

/// ccusage's `blocks --json` (its field names), with ccb's beside them.
pub fn to_json(blocks: &[Block], now_ms: i64, estimated: &[String]) -> Value {
    let rows: Vec<Value> = blocks
        .iter()
        .map(|b| {
            let u = &b.total.usage;
            let start = rfc3339_millis(b.start_ms);
            let mut m = Map::new();
            m.insert("id".into(), json!(if b.gap { format!("gap-{start}") } else { start.clone() }));
            m.insert("startTime".into(), json!(start));
            m.insert("endTime".into(), json!(rfc3339_millis(b.end_ms)));
            m.insert("actualEndTime".into(), json!(b.actual_end_ms().map(rfc3339_millis)));
            m.insert("isActive".into(), json!(b.active));
            m.insert("isGap".into(), json!(b.gap));
            m.insert("entries".into(), json!(b.total.responses));
            m.insert(
                "tokenCounts".into(),
                json!({
                    "inputTokens": u.input,
                    "outputTokens": u.output,
                    "cacheCreationInputTokens": u.cache_write(),
                    "cacheReadInputTokens": u.cache_read,
                }),
            );
            m.insert("totalTokens".into(), json!(u.total_tokens()));
            m.insert("costUSD".into(), json!(b.total.cost.as_f64()));
            m.insert("models".into(), json!(b.models.iter().map(|(n, _)| n).collect::<Vec<_>>()));
            m.insert(
                "burnRate".into(),
                burn_rate(b).map_or(Value::Null, |r| {
                    json!({
                        "tokensPerMinute": r.tokens_per_minute,
                        "tokensPerMinuteForIndicator": r.tokens_per_minute_for_indicator,
                        "costPerHour": r.cost_per_hour,
                    })
                }),
            );
            m.insert(
                "projection".into(),
                projection(b, now_ms).map_or(Value::Null, |p| {
                    json!({
                        "totalTokens": p.total_tokens,
                        "totalCost": p.total_cost,
                        "remainingMinutes": p.remaining_minutes,
                    })
                }),
            );
            // ccb's own.
            m.insert("cacheCreation5mTokens".into(), json!(u.cache_write_5m));
            m.insert("cacheCreation1hTokens".into(), json!(u.cache_write_1h));
            m.insert(
                "modelBreakdowns".into(),
                Value::Array(
                    b.models
                        .iter()
                        .map(|(n, a)| {
                            json!({
                                "modelName": n,
                                "inputTokens": a.usage.input,
                                "outputTokens": a.usage.output,
                                "cacheCreationTokens": a.usage.cache_write(),
                                "cacheReadTokens": a.usage.cache_read,
                                "totalTokens": a.usage.total_tokens(),
                                "cost": a.cost.as_f64(),
                                "responses": a.responses,
                            })
                        })
                        .collect(),
                ),
            );
            m.insert("estimated".into(), json!(b.models.iter().any(|(n, _)| estimated.contains(n))));
            Value::Object(m)
        })
        .collect();
    json!({ "blocks": rows })
}

/// The blocks as a table no wider than `width` columns; the active block's burn rate and
/// projection below it. Times are shown in `tz`.
pub fn to_table(blocks: &[Block], now_ms: i64, tz: &jiff::tz::TimeZone, width: usize, color: bool) -> String {
    use crate::core::human::{printable, tokens};
    let (bold, dim, green, reset) =
        if color { ("\x1b[1m", "\x1b[2m", "\x1b[32m", "\x1b[0m") } else { ("", "", "", "") };
    let local = |ms: i64| {
        jiff::Timestamp::from_millisecond(ms).map(|t| tz.to_datetime(t).strftime("%Y-%m-%d %H:%M").to_string())
    };
    let hm = |ms: i64| {
        let (h, m) = (ms / 3_600_000, (ms % 3_600_000) / 60_000);
        if h >= 48 {
            format!("{}d{:02}h", h / 24, h % 24)
        } else {
            format!("{h}h{m:02}m")
        }
    };
    // Block start (16) + status (14) + tokens (9) + cost (10) + gaps (8) = 57; models get the rest.
    let models_w = width.saturating_sub(57).max(8);
    let mut out = format!(
        "{bold}{:<16}  {:<14}  {:>9}  {:>10}  {}{reset}\n",
        "Block start", "Status", "Tokens", "Cost", "Models"
    );
    let mut total = Agg::default();
    for b in blocks {
        let start = local(b.start_ms).unwrap_or_default();
        if b.gap {
            out.push_str(&format!(
                "{dim}{start:<16}  {:<14}  {:>9}  {:>10}  -{reset}\n",
                format!("gap {}", hm(b.end_ms - b.start_ms)),
                "-",
                "-"
            ));
            continue;
        }
        total.merge(&b.total);
        let status = if b.active {
            format!("ACTIVE {}", hm((b.end_ms - now_ms).max(0)))
        } else {
            hm(b.total.last_ms - b.start_ms)
        };
        let names: Vec<String> =
            b.models.iter().map(|(n, _)| printable(&crate::core::report::short_model(n))).collect();
        let mut models = names.join(", ");
        if models.chars().count() > models_w {
            models = format!("{}…", crate::core::human::head_chars(&models, models_w - 1));
        }
        let (c0, c1) = if b.active { (green, reset) } else { ("", "") };
        out.push_str(&format!(
            "{c0}{start:<16}  {status:<14}{c1}  {:>9}  {:>10}  {models}\n",
            tokens(b.total.usage.total_tokens()),
            b.total.cost.to_string()
        ));
    }
    out.push_str(&format!(
        "{bold}{:<16}  {:<14}  {:>9}  {:>10}{reset}\n",
        "Total",
        "",
        tokens(total.usage.total_tokens()),
        total.cost.to_string()
    ));
    if let Some(b) = blocks.iter().find(|b| b.active) {
        if let (Some(r), Some(p)) = (burn_rate(b), projection(b, now_ms)) {
            out.push_str(&format!(
                "Active block: {} spent, burning {}/h ({} tokens/min)\nProjected: {} by its end, in {}\n",
                b.total.cost,
                Usd::from_f64(r.cost_per_hour).unwrap_or_default(),
                tokens(r.tokens_per_minute.round() as u64),
                Usd::from_f64(p.total_cost).unwrap_or_default(),
                hm(p.remaining_minutes as i64 * 60_000)
            ));
        } else {
            out.push_str(&format!(
                "Active block: {} spent, ends in {}.\n",
                b.total.cost,
                hm((b.end_ms - now_ms).max(0))
            ));
        }
    }
    out
}

/// The slot a millisecond time falls in (UTC quarter hours, as the scan's cache keeps them).
pub fn slot_of(ms: i64) -> i64 {
    ms.div_euclid(SLOT_MS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::pricing::Usage;
    use crate::core::report::SessionAttr;

    const H: i64 = 3_600_000;
    const T0: i64 = 1_795_000_000_000 / H * H; // an hour

    fn ds(resps: &[(i64, &str, i64)]) -> Dataset {
        let mut d = Dataset::with_slots();
        let s = d.session(SessionAttr { id: "s".into(), ..SessionAttr::default() });
        for &(ts, model, cost) in resps {
            let m = d.model(model);
            let mut a = Agg::default();
            a.add(&Usage { input: 10, output: 5, ..Usage::default() }, Usd(cost), ts);
            d.add_slot(slot_of(ts), jiff::civil::date(2026, 11, 20), s, m, &a);
        }
        d
    }

    #[test]
    fn blocks_start_on_the_hour_and_end_after_five_hours_or_a_silence() {
        let d = ds(&[
            (T0 + 20 * 60_000, "claude-sonnet-4-6", 1),
            (T0 + 4 * H, "claude-opus-4-8", 2),
            // 5h after the block's start, but under 5h after the last: a new block all the same.
            (T0 + 5 * H + 60_000, "claude-sonnet-4-6", 4),
            // More than 5h of silence: a gap, then a block at this response's hour.
            (T0 + 11 * H + 30 * 60_000, "claude-sonnet-4-6", 8),
        ]);
        let b = blocks(&d, T0 + 100 * H);
        let got: Vec<(i64, i64, bool, i64, u64)> = b
            .iter()
            .map(|b| (b.start_ms - T0, b.end_ms - T0, b.gap, b.total.cost.nanos(), b.total.responses))
            .collect();
        assert_eq!(
            got,
            [
                (0, 5 * H, false, 3, 2),
                (5 * H, 10 * H, false, 4, 1),
                (5 * H + 60_000 + 5 * H, 11 * H + 30 * 60_000, true, 0, 0),
                (11 * H, 16 * H, false, 8, 1),
            ]
        );
        assert_eq!(
            b[0].models.iter().map(|m| m.0.as_str()).collect::<Vec<_>>(),
            ["claude-sonnet-4-6", "claude-opus-4-8"]
        );
        assert!(b.iter().all(|b| !b.active));
        let v = to_json(&b, T0 + 100 * H, &[]);
        assert_eq!(v["blocks"][0]["id"], rfc3339_millis(T0));
        assert!(v["blocks"][2]["id"].as_str().unwrap().starts_with("gap-"));
        assert_eq!(v["blocks"][2]["actualEndTime"], Value::Null);
        assert_eq!(v["blocks"][0]["tokenCounts"]["inputTokens"], 20);
        assert_eq!(v["blocks"][0]["totalTokens"], 30);
    }

    #[test]
    fn the_active_block_has_a_burn_rate_and_a_projection() {
        let d = ds(&[
            (T0 + 10 * 60_000, "claude-sonnet-4-6", 1_000_000_000),
            (T0 + 70 * 60_000, "claude-sonnet-4-6", 1_000_000_000),
        ]);
        let now = T0 + 2 * H;
        let b = blocks(&d, now);
        assert!(b[0].active);
        let r = burn_rate(&b[0]).unwrap();
        assert_eq!(r.cost_per_hour, 2.0, "$2 over the hour between the two responses");
        assert_eq!(r.tokens_per_minute, 0.5);
        let p = projection(&b[0], now).unwrap();
        assert_eq!(p.remaining_minutes, 180);
        assert_eq!(p.total_cost, 8.0);
        assert_eq!(p.total_tokens, 30 + 90);
        let t = to_table(&b, now, &jiff::tz::TimeZone::UTC, 80, false);
        assert!(t.contains("ACTIVE") && t.contains("Projected: $8.00"), "{t}");
        assert!(t.lines().all(|l| l.chars().count() <= 80), "{t}");
        // Five hours after its last response a block is over, even before its end.
        assert!(!blocks(&d, T0 + 70 * 60_000 + BLOCK_MS).iter().any(|b| b.active));
    }

    #[test]
    fn millis_like_ccusage() {
        let t: jiff::Timestamp = "2026-11-19T11:06:40Z".parse().unwrap();
        assert_eq!(rfc3339_millis(t.as_millisecond() + 123), "2026-11-19T11:06:40.123Z");
        assert_eq!(rfc3339_millis(t.as_millisecond()), "2026-11-19T11:06:40.000Z");
    }
}
