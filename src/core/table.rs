//! The report as a table for people, fitted to a width: columns that carry text (projects,
//! models, splits) give way first, then the cache and total columns (the compact layout,
//! `--compact` forces it), then the cost bar, so that at 80 columns no row wraps. `--breakdown`
//! adds a sub-row per model under each row, as ccusage's does. Session tables show the day the
//! session started, its last activity and its project.

use crate::core::human::{printable, tokens};
use crate::core::money::Usd;
use crate::core::report::{short_model, Period, Report, Row};
use unicode_width::UnicodeWidthStr;

#[derive(Debug, Clone)]
pub struct Opts {
    pub color: bool,
    /// The terminal's width; None: no limit (the table as wide as its contents).
    pub width: Option<usize>,
    pub compact: bool,
    pub breakdown: bool,
    /// Session tables show times in this zone.
    pub tz: jiff::tz::TimeZone,
}

impl Default for Opts {
    fn default() -> Opts {
        Opts { color: false, width: None, compact: false, breakdown: false, tz: jiff::tz::TimeZone::UTC }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Cut {
    /// Never cut.
    No,
    /// Keep the start (`sonnet-4-6, opus…`).
    End,
    /// Keep the end (`…/work/ccb`).
    Start,
}

struct Col {
    head: &'static str,
    right: bool,
    cut: Cut,
    /// Narrowest it may be cut to.
    min: usize,
    /// Left out of the compact layout.
    wide_only: bool,
    cells: Vec<String>,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Row,
    Sub,
    Total,
}

fn width_of(s: &str) -> usize {
    UnicodeWidthStr::width(s)
}

/// `s` cut to at most `w` columns, the cut marked with `…`.
fn cut(s: &str, w: usize, how: Cut) -> String {
    if width_of(s) <= w || how == Cut::No {
        return s.to_string();
    }
    if w == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut used = 1; // the mark
    let chars: Vec<char> = s.chars().collect();
    let take = |c: char, used: &mut usize| {
        let cw = unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
        if *used + cw > w {
            return false;
        }
        *used += cw;
        true
    };
    match how {
        Cut::End => {
            for &c in &chars {
                if !take(c, &mut used) {
                    break;
                }
                out.push(c);
            }
            out.push('…');
        }
        _ => {
            let mut rev = Vec::new();
            for &c in chars.iter().rev() {
                if !take(c, &mut used) {
                    break;
                }
                rev.push(c);
            }
            out.push('…');
            out.extend(rev.into_iter().rev());
        }
    }
    out
}

fn pad(s: &str, w: usize, right: bool) -> String {
    let n = w.saturating_sub(width_of(s));
    if right {
        format!("{}{s}", " ".repeat(n))
    } else {
        format!("{s}{}", " ".repeat(n))
    }
}

fn local(ms: i64, tz: &jiff::tz::TimeZone, fmt: &str) -> String {
    jiff::Timestamp::from_millisecond(ms).map(|t| tz.to_datetime(t).strftime(fmt).to_string()).unwrap_or_default()
}

/// The report as a table (see the module's doc).
pub fn render(r: &Report, o: &Opts) -> String {
    let period = r.period.unwrap_or(Period::Daily);
    let mut kinds: Vec<Kind> = Vec::new();
    let mut lead: Vec<Col> = Vec::new();
    let text = |head, cut, min| Col { head, right: false, cut, min, wide_only: false, cells: Vec::new() };
    if period == Period::Session {
        lead.push(text("Date", Cut::No, 0));
        lead.push(text("Last activity", Cut::No, 0));
        lead.push(text("Project", Cut::Start, 8));
        lead.push(text("Session", Cut::End, 8));
    } else {
        lead.push(text(
            match period {
                Period::Weekly => "Week of",
                Period::Monthly => "Month",
                _ => "Date",
            },
            Cut::No,
            0,
        ));
    }
    let has_split = r.rows.iter().any(|x| x.split.is_some());
    if has_split {
        lead.push(text("", Cut::Start, 8));
    }
    let num = |head, wide_only| Col { head, right: true, cut: Cut::No, min: 0, wide_only, cells: Vec::new() };
    let mut nums = [
        num("Input", false),
        num("Output", false),
        num("CacheWr", true),
        num("CacheRd", true),
        num("Total", true),
        num("Cost", false),
    ];
    let mut models = text("Models", Cut::End, 10);
    let mut bars: Vec<Usd> = Vec::new();

    let mut push = |kind: Kind, lead_cells: Vec<String>, total: &crate::core::report::Agg, m: String, bar: Usd| {
        kinds.push(kind);
        for (c, v) in lead.iter_mut().zip(lead_cells) {
            c.cells.push(v);
        }
        let u = &total.usage;
        for (c, v) in nums.iter_mut().zip([
            tokens(u.input),
            tokens(u.output),
            tokens(u.cache_write()),
            tokens(u.cache_read),
            tokens(u.total_tokens()),
            total.cost.to_string(),
        ]) {
            c.cells.push(v);
        }
        models.cells.push(m);
        bars.push(bar);
    };
    let n_lead = if period == Period::Session { 4 } else { 1 } + has_split as usize;
    for row in &r.rows {
        let mut cells = key_cells(row, period, &o.tz);
        if has_split {
            cells.push(printable(row.split.as_deref().unwrap_or("")));
        }
        let names: Vec<String> = row.models.keys().map(|m| printable(&short_model(m))).collect();
        push(Kind::Row, cells, &row.total, names.join(", "), row.total.cost);
        if o.breakdown {
            for (m, a) in &row.models {
                let mut cells = vec![String::new(); n_lead];
                cells[0] = format!("  └ {}", printable(&short_model(m)));
                push(Kind::Sub, cells, a, String::new(), Usd(0));
            }
        }
    }
    let mut cells = vec![String::new(); n_lead];
    cells[0] = "Total".into();
    push(Kind::Total, cells, &r.totals, String::new(), Usd(0));
    // Widths: natural, then fitted. A sub-row's model name spans the lead columns: it does
    // not widen the first one.
    let natural = |c: &Col, all: bool| {
        c.cells
            .iter()
            .zip(&kinds)
            .filter(|(_, k)| all || **k != Kind::Sub)
            .map(|(v, _)| width_of(v))
            .chain([width_of(c.head)])
            .max()
            .unwrap_or(0)
    };
    let mut lead_w: Vec<usize> = lead.iter().map(|c| natural(c, false)).collect();
    let lead_total = |w: &[usize]| w.iter().sum::<usize>() + 2 * w.len().saturating_sub(1);
    let sub_w = lead[0].cells.iter().zip(&kinds).filter(|(_, k)| **k == Kind::Sub).map(|(v, _)| width_of(v)).max();
    if let Some(extra) = sub_w.and_then(|w| w.checked_sub(lead_total(&lead_w))) {
        lead_w[0] += extra;
    }
    let nums_w: Vec<usize> = nums.iter().map(|c| natural(c, true)).collect();
    let models_nat = natural(&models, true);
    let max_cost = bars.iter().copied().max().unwrap_or_default();
    let bar_nat = if max_cost.nanos() > 0 { 12 } else { 0 };
    // Everything but the models and the bar.
    let fixed = |compact: bool, lead_w: &[usize]| -> usize {
        let n: usize = nums.iter().zip(&nums_w).filter(|(c, _)| !(compact && c.wide_only)).map(|(_, w)| w + 2).sum();
        lead_total(lead_w) + n
    };
    let with_models = |w: usize| if w > 0 { w + 2 } else { 0 };
    let mut compact = o.compact;
    let mut models_w = models_nat;
    let mut bar_w = bar_nat;
    if let Some(width) = o.width {
        // Shrink the text columns toward their minimum, in the order they give way (the
        // session id, then the models, then projects and splits); false if they cannot.
        let shrink = |lead_w: &mut Vec<usize>, models_w: &mut usize, compact: bool, last: bool| -> bool {
            let min_of = |c: &Col| if last { 1 } else { c.min };
            while fixed(compact, lead_w) + with_models(*models_w) > width {
                let id = lead.iter().position(|c| c.head == "Session").filter(|&i| lead_w[i] > min_of(&lead[i]));
                let text = (0..lead.len())
                    .filter(|&i| lead[i].cut != Cut::No && lead_w[i] > min_of(&lead[i]))
                    .max_by_key(|&i| lead_w[i]);
                if let Some(i) = id {
                    lead_w[i] -= 1;
                } else if *models_w > models.min {
                    *models_w -= 1;
                } else if let Some(i) = text {
                    lead_w[i] -= 1;
                } else {
                    return false;
                }
            }
            true
        };
        // Layouts in the order they are tried, each from the natural widths: as asked, then
        // compact, then without the models (`--breakdown` names them a row each), then with text
        // columns cut to a mark.
        let tries = [(compact, true, false), (true, true, false), (true, false, false), (true, false, true)];
        for (i, &(c, with, last)) in tries.iter().enumerate() {
            let (mut lw, mut mw) = (lead_w.clone(), if with { models_nat } else { 0 });
            if shrink(&mut lw, &mut mw, c, last) || i + 1 == tries.len() {
                (compact, lead_w, models_w) = (c, lw, mw);
                break;
            }
        }
        // The bar only where there is room for it whole.
        if fixed(compact, &lead_w) + with_models(models_w) + 1 + bar_nat > width {
            bar_w = 0;
        }
    }

    let (bold, dim, green, reset) =
        if o.color { ("\x1b[1m", "\x1b[2m", "\x1b[32m", "\x1b[0m") } else { ("", "", "", "") };
    let mut out = String::new();
    let line_of = |i: Option<usize>| -> String {
        let mut parts: Vec<String> = Vec::new();
        let sub = i.is_some_and(|i| kinds[i] == Kind::Sub);
        if sub {
            let name = &lead[0].cells[i.unwrap_or(0)];
            parts.push(pad(&cut(name, lead_total(&lead_w), Cut::End), lead_total(&lead_w), false));
        } else {
            for (c, w) in lead.iter().zip(&lead_w) {
                let v = i.map_or(c.head, |i| c.cells[i].as_str());
                parts.push(pad(&cut(v, *w, c.cut), *w, c.right));
            }
        }
        let mut s = parts.join("  ");
        for (c, w) in nums.iter().zip(&nums_w) {
            if compact && c.wide_only {
                continue;
            }
            let v = i.map_or(c.head, |i| c.cells[i].as_str());
            s.push_str("  ");
            if c.head == "Cost" && i.is_some_and(|i| kinds[i] == Kind::Row) {
                s.push_str(&format!("{green}{}{reset}", pad(v, *w, true)));
            } else {
                s.push_str(&pad(v, *w, true));
            }
        }
        let m = if models_w == 0 { "" } else { i.map_or(models.head, |i| models.cells[i].as_str()) };
        if !m.is_empty() {
            s.push_str("  ");
            s.push_str(&cut(m, models_w, Cut::End));
        }
        if let Some(i) = i.filter(|&i| bar_w > 0 && kinds[i] == Kind::Row) {
            let b = cost_bar(bars[i], max_cost, bar_w);
            if !b.is_empty() {
                s.push_str(&format!(
                    "{}{dim}{b}{reset}",
                    " ".repeat(models_w.saturating_sub(width_of(&cut(m, models_w, Cut::End))) + 1)
                ));
            }
        }
        s.trim_end().to_string()
    };
    out.push_str(&format!("{bold}{}{reset}\n", line_of(None)));
    for (i, kind) in kinds.iter().enumerate() {
        let l = line_of(Some(i));
        match kind {
            Kind::Row => out.push_str(&format!("{l}\n")),
            Kind::Sub => out.push_str(&format!("{dim}{l}{reset}\n")),
            Kind::Total => out.push_str(&format!("{bold}{l}{reset}\n")),
        }
    }
    out
}

fn key_cells(row: &Row, period: Period, tz: &jiff::tz::TimeZone) -> Vec<String> {
    match (period, &row.session) {
        (Period::Session, Some(s)) => vec![
            local(row.total.first_ms, tz, "%Y-%m-%d"),
            local(row.total.last_ms, tz, "%m-%d %H:%M"),
            printable(&s.project),
            printable(&row.key),
        ],
        (Period::Session, None) => vec![String::new(), String::new(), String::new(), printable(&row.key)],
        _ => vec![printable(&row.key)],
    }
}

fn cost_bar(v: Usd, max: Usd, width: usize) -> String {
    if max.nanos() <= 0 || v.nanos() <= 0 || width == 0 {
        return String::new();
    }
    const EIGHTHS: [char; 8] = ['▏', '▎', '▍', '▌', '▋', '▊', '▉', '█'];
    let units = ((v.nanos() as i128 * (width as i128 * 8)) / max.nanos() as i128).max(1) as usize;
    let mut s = "█".repeat(units / 8);
    if units % 8 > 0 {
        s.push(EIGHTHS[units % 8 - 1]);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::pricing::Usage;
    use crate::core::report::{build, Agg, Dataset, SessionAttr, Split};
    use jiff::civil::date;

    fn ds() -> Dataset {
        let mut d = Dataset::default();
        let long = format!("/home/someone/projects/{}/a-rather-long-repository-name", "日本語".repeat(6));
        let a = d.session(SessionAttr { id: "0a1b2c3d-4e5f".into(), project: long, ..SessionAttr::default() });
        let b = d.session(SessionAttr { id: "9f8e7d6c-5b4a".into(), project: "/w".into(), ..SessionAttr::default() });
        let ms = ["claude-sonnet-4-6", "claude-opus-4-8", "claude-haiku-4-5", "claude-fable-1-0-preview"];
        for (i, m) in ms.iter().enumerate() {
            let m = d.model(m);
            let mut x = Agg::default();
            let big = 10u64.pow(i as u32 + 5);
            x.add(
                &Usage { input: big, output: big, cache_read: big * 9, cache_write_5m: big, ..Usage::default() },
                Usd(123_456_789_000 * (i as i64 + 1)),
                1_795_000_000_000 + i as i64 * 3_600_000,
            );
            d.add(date(2026, 11, 16 + i as i8), if i % 2 == 0 { a } else { b }, m, &x);
        }
        d
    }

    fn widest(t: &str) -> usize {
        t.lines().map(width_of).max().unwrap_or(0)
    }

    #[test]
    fn at_80_columns_no_row_wraps() {
        let d = ds();
        for period in [Period::Daily, Period::Session, Period::Monthly] {
            for split in [Split::None, Split::Project, Split::Model] {
                for breakdown in [false, true] {
                    let r = build(&d, period, split, None, None);
                    let o = Opts { width: Some(80), breakdown, ..Opts::default() };
                    let t = render(&r, &o);
                    assert!(widest(&t) <= 80, "{period:?} {split:?} {breakdown}:\n{t}");
                    let wide = render(&r, &Opts { breakdown, ..Opts::default() });
                    assert!(widest(&wide) > 80, "the same table unfitted is wider:\n{wide}");
                    assert_eq!(t.lines().count(), wide.lines().count(), "fitting drops no row");
                }
            }
        }
    }

    #[test]
    fn compact_keeps_input_output_and_cost() {
        let r = build(&ds(), Period::Daily, Split::None, None, None);
        let t = render(&r, &Opts { compact: true, ..Opts::default() });
        let head = t.lines().next().unwrap();
        assert!(head.contains("Input") && head.contains("Output") && head.contains("Cost"), "{t}");
        assert!(!head.contains("CacheRd") && !head.contains("Total"), "{t}");
        assert!(t.contains("$493.83"), "the total: {t}");
        let full = render(&r, &Opts::default());
        assert!(full.lines().next().unwrap().contains("CacheRd"), "{full}");
    }

    #[test]
    fn breakdown_adds_a_row_per_model_and_sessions_show_when_and_where() {
        let r = build(&ds(), Period::Session, Split::None, None, None);
        let t = render(&r, &Opts { breakdown: true, ..Opts::default() });
        assert_eq!(t.lines().count(), 1 + 2 + 4 + 1, "{t}");
        assert!(t.lines().any(|l| l.trim_start().starts_with("└ opus-4-8") && l.contains("$246.91")), "{t}");
        let head = t.lines().next().unwrap();
        for h in ["Date", "Last activity", "Project", "Session"] {
            assert!(head.contains(h), "{h}: {t}");
        }
        assert!(t.contains("2026-11-18  11-18 13:06") && t.contains("a-rather-long-repository-name"), "{t}");
        // Cut paths keep their end.
        let t = render(&r, &Opts { width: Some(80), ..Opts::default() });
        assert!(t.contains("…") && t.contains("name"), "{t}");
    }

    #[test]
    fn cuts_mark_the_cut_and_respect_wide_characters() {
        assert_eq!(cut("abcdef", 4, Cut::End), "abc…");
        assert_eq!(cut("abcdef", 4, Cut::Start), "…def");
        assert_eq!(cut("日本語x", 4, Cut::Start), "…語x");
        assert_eq!(width_of(&cut("日本語日本語", 5, Cut::End)), 5);
        assert_eq!(cut("abc", 4, Cut::End), "abc");
    }
}
