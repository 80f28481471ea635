//! `ccb usage --html FILE`: one self-contained page to look at, pure. Its charts are inline SVG
//! drawn here (no script, no font, no request to any network): daily cost stacked by model, the
//! credit pool's burn-down against its cycle, the spend limits, the most expensive sessions and
//! branches. Every mark carries its value (`data-usd`, and a `<title>` a browser shows on hover),
//! so a test can read the page's DOM; every text from outside (paths, branches, models, session
//! ids) is escaped.

use crate::core::money::Usd;
use crate::core::report::{short_model, Agg, Report};
use jiff::civil::Date;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The credit pool as the page draws it.
#[derive(Debug, Clone)]
pub struct PoolView {
    pub plan: String,
    pub amount: Usd,
    pub spent: Usd,
    pub start: Date,
    /// The day it resets (first day of the next cycle).
    pub end: Date,
    pub per_day: Vec<(Date, Usd)>,
    pub runs_out: Option<Date>,
}

/// One spend limit as the page draws it.
#[derive(Debug, Clone)]
pub struct LimitView {
    pub name: String,
    pub scope: String,
    pub amount: Usd,
    pub spent: Usd,
    pub reserved: Usd,
    pub resets: String,
}

pub struct Page<'a> {
    /// When the page was made, as people read it.
    pub generated: String,
    /// Times are shown in this zone.
    pub tz: jiff::tz::TimeZone,
    /// What it covers (`since 2026-11-01`, `since a1b2c3d`, `all history`).
    pub scope: String,
    /// Rows per day (no split): their per-model sums are the stacks.
    pub daily: &'a Report,
    /// Rows per session.
    pub sessions: &'a Report,
    /// Rows per day split by branch: summed per branch.
    pub by_branch: &'a Report,
    pub pool: Option<PoolView>,
    pub limits: Vec<LimitView>,
}

/// How many sessions and branches the page lists.
pub const TOP: usize = 10;

/// Text and attribute values made safe inside HTML and SVG.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if c.is_control() && c != '\n' => {
                let _ = write!(o, "\\u{{{:x}}}", c as u32);
            }
            c => o.push(c),
        }
    }
    o
}

/// The value a mark carries: dollars to the micro-dollar, as the JSON reports them.
fn usd_attr(v: Usd) -> String {
    format!("{:.6}", v.as_f64())
}

const PALETTE: [&str; 10] =
    ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];

const CSS: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fff;max-width:1000px}\
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px}p.sub{color:#666;margin:0}\
table{border-collapse:collapse;width:100%}td,th{padding:3px 8px;text-align:left;border-bottom:1px solid #eee}\
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}.legend span{display:inline-block;margin-right:14px}\
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:middle}\
svg text{font:11px system-ui,sans-serif;fill:#555}.empty{color:#888}";

/// The page.
pub fn render(p: &Page) -> String {
    let mut h = String::with_capacity(32 << 10);
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    h.push_str("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">");
    let _ = writeln!(h, "<title>ccb usage: {}</title><style>{CSS}</style></head><body>", escape(&p.scope));
    let _ = writeln!(
        h,
        "<h1>Claude Code spend</h1><p class=\"sub\">{} · {} in total over {} responses · made {}</p>",
        escape(&p.scope),
        p.daily.totals.cost,
        p.daily.totals.responses,
        escape(&p.generated)
    );
    daily_chart(&mut h, p.daily);
    pool_chart(&mut h, p.pool.as_ref());
    limits_chart(&mut h, &p.limits);
    sessions_table(&mut h, p.sessions, &p.tz);
    branches_chart(&mut h, p.by_branch);
    h.push_str("</body></html>\n");
    h
}

/// Models by total cost, dearest first: their colours.
fn model_order(r: &Report) -> Vec<String> {
    let mut tot: BTreeMap<&str, Usd> = BTreeMap::new();
    for row in &r.rows {
        for (m, a) in &row.models {
            *tot.entry(m).or_default() += a.cost;
        }
    }
    let mut v: Vec<(&str, Usd)> = tot.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    v.into_iter().map(|(m, _)| m.to_string()).collect()
}

/// A model's name in a legend: short, unless another model of the page shortens alike.
fn legend_name(m: &str, all: &[String]) -> String {
    let short = short_model(m);
    if all.iter().filter(|x| short_model(x) == short).count() > 1 {
        m.to_string()
    } else {
        short
    }
}

fn daily_chart(h: &mut String, r: &Report) {
    h.push_str("<h2>Daily cost by model</h2>\n");
    if r.rows.is_empty() {
        h.push_str("<p class=\"empty\">No usage in this range.</p>\n");
        return;
    }
    let models = model_order(r);
    let color = |m: &str| PALETTE[models.iter().position(|x| x == m).unwrap_or(0) % PALETTE.len()];
    h.push_str("<div class=\"legend\">");
    for m in &models {
        let _ = write!(h, "<span><i style=\"background:{}\"></i>{}</span>", color(m), escape(&legend_name(m, &models)));
    }
    h.push_str("</div>\n");
    let (w, ht, left, bottom, top) = (960.0, 280.0, 64.0, 36.0, 10.0);
    let plot_w = w - left - 10.0;
    let plot_h = ht - bottom - top;
    let max = r.rows.iter().map(|x| x.total.cost).max().unwrap_or_default().nanos().max(1) as f64;
    let n = r.rows.len() as f64;
    let step = plot_w / n;
    let bar = (step * 0.8).max(1.0);
    let _ = write!(
        h,
        "<svg id=\"daily\" role=\"img\" width=\"{w}\" height=\"{ht}\" viewBox=\"0 0 {w} {ht}\" xmlns=\"http://www.w3.org/2000/svg\">"
    );
    axis(h, left, top, plot_w, plot_h, max);
    for (i, row) in r.rows.iter().enumerate() {
        let x = left + step * i as f64 + (step - bar) / 2.0;
        let mut y = top + plot_h;
        for m in &models {
            let Some(a) = row.models.get(m) else { continue };
            let bh = a.cost.nanos().max(0) as f64 / max * plot_h;
            y -= bh;
            let _ = write!(
                h,
                "<rect class=\"mark\" data-day=\"{}\" data-model=\"{}\" data-usd=\"{}\" x=\"{x:.2}\" y=\"{y:.2}\" width=\"{bar:.2}\" height=\"{bh:.2}\" fill=\"{}\"><title>{} {}: {}</title></rect>",
                escape(&row.key),
                escape(m),
                usd_attr(a.cost),
                color(m),
                escape(&row.key),
                escape(&legend_name(m, &models)),
                a.cost
            );
        }
        // A label every few days, so they never overlap.
        let every = (n / 12.0).ceil().max(1.0) as usize;
        if i % every == 0 {
            let _ = write!(
                h,
                "<text x=\"{:.2}\" y=\"{:.2}\" text-anchor=\"middle\">{}</text>",
                x + bar / 2.0,
                top + plot_h + 16.0,
                escape(row.key.get(5..).unwrap_or(&row.key))
            );
        }
    }
    h.push_str("</svg>\n");
}

/// The value axis: a few dollar lines.
fn axis(h: &mut String, left: f64, top: f64, plot_w: f64, plot_h: f64, max_nanos: f64) {
    for k in 0..=4 {
        let v = max_nanos * k as f64 / 4.0;
        let y = top + plot_h - plot_h * k as f64 / 4.0;
        let _ = write!(
            h,
            "<line x1=\"{left}\" x2=\"{:.2}\" y1=\"{y:.2}\" y2=\"{y:.2}\" stroke=\"#e5e5e5\"/><text x=\"{:.2}\" y=\"{:.2}\" text-anchor=\"end\">{}</text>",
            left + plot_w,
            left - 6.0,
            y + 4.0,
            Usd(v as i64)
        );
    }
}

fn pool_chart(h: &mut String, pool: Option<&PoolView>) {
    h.push_str("<h2>Credit pool</h2>\n");
    let Some(p) = pool else {
        h.push_str("<p class=\"empty\">No [pool] in the config.</p>\n");
        return;
    };
    let days = (p.end - p.start).get_days().max(1) as usize;
    let _ = writeln!(
        h,
        "<p>{}: {} of {} spent, cycle {} to {}{}.</p>",
        escape(&p.plan),
        p.spent,
        p.amount,
        p.start,
        p.end,
        match p.runs_out {
            Some(d) => format!(", runs out on {d} at this rate"),
            None => String::new(),
        }
    );
    let (w, ht, left, bottom, top) = (960.0, 240.0, 64.0, 30.0, 10.0);
    let plot_w = w - left - 10.0;
    let plot_h = ht - bottom - top;
    let max = p.amount.nanos().max(1) as f64;
    let x_of = |d: usize| left + plot_w * d as f64 / days as f64;
    let y_of = |v: i64| top + plot_h - (v.max(0) as f64 / max * plot_h).min(plot_h);
    let _ = write!(
        h,
        "<svg id=\"pool\" role=\"img\" width=\"{w}\" height=\"{ht}\" viewBox=\"0 0 {w} {ht}\" xmlns=\"http://www.w3.org/2000/svg\">"
    );
    axis(h, left, top, plot_w, plot_h, max);
    // The even pace: all of it at the start, none at the reset.
    let _ = write!(
        h,
        "<line class=\"pace\" x1=\"{:.2}\" y1=\"{:.2}\" x2=\"{:.2}\" y2=\"{:.2}\" stroke=\"#bbb\" stroke-dasharray=\"4 3\"/>",
        x_of(0),
        y_of(p.amount.nanos()),
        x_of(days),
        y_of(0)
    );
    let mut left_now = p.amount.nanos();
    let mut pts = vec![format!("{:.2},{:.2}", x_of(0), y_of(left_now))];
    let mut marks = String::new();
    let spend: BTreeMap<Date, Usd> = p.per_day.iter().copied().collect();
    let last = p.per_day.iter().map(|(d, _)| *d).max();
    for i in 0..days {
        let d = p.start.checked_add(jiff::Span::new().days(i as i64)).unwrap_or(p.start);
        if last.is_none_or(|l| d > l) {
            break;
        }
        left_now -= spend.get(&d).copied().unwrap_or_default().nanos();
        let (x, y) = (x_of(i + 1), y_of(left_now));
        pts.push(format!("{x:.2},{y:.2}"));
        let _ = write!(
            marks,
            "<circle class=\"mark\" data-day=\"{d}\" data-usd=\"{}\" cx=\"{x:.2}\" cy=\"{y:.2}\" r=\"3\" fill=\"#4e79a7\"><title>{d}: {} left</title></circle>",
            usd_attr(Usd(left_now)),
            Usd(left_now)
        );
    }
    let _ = write!(
        h,
        "<polyline points=\"{}\" fill=\"none\" stroke=\"#4e79a7\" stroke-width=\"2\"/>{marks}",
        pts.join(" ")
    );
    let _ = writeln!(
        h,
        "<text x=\"{left}\" y=\"{:.2}\">{}</text><text x=\"{:.2}\" y=\"{:.2}\" text-anchor=\"end\">{}</text></svg>",
        top + plot_h + 18.0,
        p.start,
        left + plot_w,
        top + plot_h + 18.0,
        p.end
    );
}

/// Horizontal bars, one per item: (label, value, of what, extra title text).
fn hbars(h: &mut String, id: &str, items: &[(String, Usd, Usd, String)], class: &str) {
    let (w, row_h, left) = (960.0, 22.0, 300.0);
    let plot_w = w - left - 110.0;
    let ht = row_h * items.len() as f64 + 4.0;
    let max = items.iter().map(|i| i.2.max(i.1)).max().unwrap_or_default().nanos().max(1) as f64;
    let _ = write!(
        h,
        "<svg id=\"{id}\" role=\"img\" width=\"{w}\" height=\"{ht}\" viewBox=\"0 0 {w} {ht}\" xmlns=\"http://www.w3.org/2000/svg\">"
    );
    for (i, (label, v, of, extra)) in items.iter().enumerate() {
        let y = 2.0 + row_h * i as f64;
        let shown: String = if label.chars().count() > 44 {
            format!("…{}", crate::core::human::tail_chars(label, 43))
        } else {
            label.clone()
        };
        if of.nanos() > 0 && of != v {
            let _ = write!(
                h,
                "<rect x=\"{left}\" y=\"{:.2}\" width=\"{:.2}\" height=\"{:.2}\" fill=\"#eee\"/>",
                y + 3.0,
                of.nanos() as f64 / max * plot_w,
                row_h - 6.0
            );
        }
        let bw = (v.nanos().max(0) as f64 / max * plot_w).max(1.0);
        let _ = write!(
            h,
            "<text x=\"{:.2}\" y=\"{:.2}\" text-anchor=\"end\">{}</text><rect class=\"{class}\" data-name=\"{}\" data-usd=\"{}\" x=\"{left}\" y=\"{:.2}\" width=\"{bw:.2}\" height=\"{:.2}\" fill=\"#4e79a7\"><title>{}: {}{}</title></rect><text x=\"{:.2}\" y=\"{:.2}\">{}</text>",
            left - 8.0,
            y + row_h / 2.0 + 4.0,
            escape(&shown),
            escape(label),
            usd_attr(*v),
            y + 3.0,
            row_h - 6.0,
            escape(label),
            v,
            escape(extra),
            left + bw + 6.0,
            y + row_h / 2.0 + 4.0,
            v
        );
    }
    h.push_str("</svg>\n");
}

fn limits_chart(h: &mut String, limits: &[LimitView]) {
    h.push_str("<h2>Spend limits</h2>\n");
    if limits.is_empty() {
        h.push_str("<p class=\"empty\">No spend limits in the config.</p>\n");
        return;
    }
    let items: Vec<(String, Usd, Usd, String)> = limits
        .iter()
        .map(|l| {
            (
                format!("{} ({})", l.name, l.scope),
                l.spent + l.reserved,
                l.amount,
                format!(" of {}, {} held by calls in flight, resets {}", l.amount, l.reserved, l.resets),
            )
        })
        .collect();
    hbars(h, "limits", &items, "mark");
}

fn sessions_table(h: &mut String, r: &Report, tz: &jiff::tz::TimeZone) {
    let mut rows: Vec<&crate::core::report::Row> = r.rows.iter().collect();
    rows.sort_by(|a, b| b.total.cost.cmp(&a.total.cost).then(a.key.cmp(&b.key)));
    rows.truncate(TOP);
    h.push_str("<h2>Most expensive sessions</h2>\n");
    if rows.is_empty() {
        h.push_str("<p class=\"empty\">No sessions in this range.</p>\n");
        return;
    }
    let items: Vec<(String, Usd, Usd, String)> = rows
        .iter()
        .map(|x| {
            let project = x.session.as_ref().map(|s| s.project.as_str()).unwrap_or("");
            (
                format!("{} {}", crate::core::human::head_chars(&x.key, 8), project),
                x.total.cost,
                Usd(0),
                format!(" ({} responses)", x.total.responses),
            )
        })
        .collect();
    hbars(h, "sessions", &items, "mark");
    h.push_str("<table><tr><th>Session</th><th>Project</th><th>Last activity</th><th>Models</th><th class=\"n\">Cost</th></tr>\n");
    for x in rows {
        let project = x.session.as_ref().map(|s| s.project.as_str()).unwrap_or("");
        let models: Vec<String> = x.models.keys().map(|m| escape(&short_model(m))).collect();
        let last = jiff::Timestamp::from_millisecond(x.total.last_ms)
            .map(|t| tz.to_datetime(t).strftime("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_default();
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
            escape(&x.key),
            escape(project),
            escape(&last),
            models.join(", "),
            x.total.cost
        );
    }
    h.push_str("</table>\n");
}

/// Each branch's sum over the report's rows, dearest first.
pub fn branch_totals(r: &Report) -> Vec<(String, Agg)> {
    let mut m: BTreeMap<String, Agg> = BTreeMap::new();
    for row in &r.rows {
        m.entry(row.split.clone().unwrap_or_else(|| "-".into())).or_default().merge(&row.total);
    }
    let mut v: Vec<(String, Agg)> = m.into_iter().collect();
    v.sort_by(|a, b| b.1.cost.cmp(&a.1.cost).then(a.0.cmp(&b.0)));
    v
}

fn branches_chart(h: &mut String, r: &Report) {
    h.push_str("<h2>Most expensive branches</h2>\n");
    let mut all = branch_totals(r);
    if all.is_empty() {
        h.push_str("<p class=\"empty\">No usage in this range.</p>\n");
        return;
    }
    all.truncate(TOP);
    let items: Vec<(String, Usd, Usd, String)> =
        all.into_iter().map(|(b, a)| (b, a.cost, Usd(0), format!(" ({} responses)", a.responses))).collect();
    hbars(h, "branches", &items, "mark");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::pricing::Usage;
    use crate::core::report::{build, Dataset, Period, SessionAttr, Split};
    use jiff::civil::date;

    fn page(ds: &Dataset, pool: Option<PoolView>) -> String {
        let daily = build(ds, Period::Daily, Split::None, None, None);
        let sessions = build(ds, Period::Session, Split::None, None, None);
        let by_branch = build(ds, Period::Daily, Split::Branch, None, None);
        render(&Page {
            generated: "now".into(),
            tz: jiff::tz::TimeZone::UTC,
            scope: "all history".into(),
            daily: &daily,
            sessions: &sessions,
            by_branch: &by_branch,
            pool,
            limits: vec![LimitView {
                name: "daily".into(),
                scope: "all sessions".into(),
                amount: Usd(10_000_000_000),
                spent: Usd(2_000_000_000),
                reserved: Usd(0),
                resets: "tomorrow".into(),
            }],
        })
    }

    fn ds() -> Dataset {
        let mut d = Dataset::default();
        let evil = "<script>alert(1)</script>\"'&";
        let a = d.session(SessionAttr {
            id: "s1".into(),
            project: format!("/w/{evil}"),
            branch: evil.into(),
            ..Default::default()
        });
        let b = d.session(SessionAttr {
            id: "s2".into(),
            project: "/w".into(),
            branch: "main".into(),
            ..Default::default()
        });
        let (m1, m2) = (d.model("claude-sonnet-4-6"), d.model(&format!("claude-{evil}")));
        let mut x = Agg::default();
        x.add(&Usage { input: 1, ..Usage::default() }, Usd(1_500_000_000), 1_795_000_000_000);
        d.add(date(2026, 11, 20), a, m1, &x);
        d.add(date(2026, 11, 20), b, m2, &x);
        d.add(date(2026, 11, 21), b, m1, &x);
        d
    }

    #[test]
    fn one_mark_per_data_point_and_nothing_from_outside_is_markup() {
        let pool = PoolView {
            plan: "max-5x".into(),
            amount: Usd(100_000_000_000),
            spent: Usd(4_500_000_000),
            start: date(2026, 11, 20),
            end: date(2026, 12, 20),
            per_day: vec![(date(2026, 11, 20), Usd(3_000_000_000)), (date(2026, 11, 21), Usd(1_500_000_000))],
            runs_out: None,
        };
        let h = page(&ds(), Some(pool));
        let daily = &h[h.find("id=\"daily\"").unwrap()..h.find("id=\"pool\"").unwrap()];
        assert_eq!(daily.matches("class=\"mark\"").count(), 3, "(day, model) pairs");
        assert!(daily.contains("data-day=\"2026-11-21\" data-model=\"claude-sonnet-4-6\" data-usd=\"1.500000\""));
        let pool = &h[h.find("id=\"pool\"").unwrap()..h.find("id=\"limits\"").unwrap()];
        assert_eq!(pool.matches("class=\"mark\"").count(), 2);
        assert!(pool.contains("data-day=\"2026-11-21\" data-usd=\"95.500000\""), "{pool}");
        assert!(h.contains("id=\"branches\""));
        assert!(!h.contains("<script"), "no markup from outside");
        assert!(h.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;"));
        assert_eq!(
            h.matches("http://").count() + h.matches("https:").count(),
            h.matches("xmlns=\"http://www.w3.org/2000/svg\"").count(),
            "nothing to fetch"
        );
    }

    #[test]
    fn empty_parts_say_so() {
        let h = page(&Dataset::default(), None);
        assert!(h.contains("No usage in this range.") && h.contains("No [pool] in the config."));
    }
}
