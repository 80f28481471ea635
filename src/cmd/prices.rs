//! `ccb prices`: the table in force, so a user can see what a model costs and what to override.

use crate::core::pricing::{PriceTable, Rates};
use crate::sys::prices::load_table_for;
use std::fmt::Write as _;

pub fn run(json: bool, toml: bool) -> anyhow::Result<i32> {
    let cfg = crate::sys::files::load_config()?;
    // The claude a session would run, for its release's prices; without one, the newest table.
    let own = std::env::current_exe().ok();
    let claude =
        crate::sys::locate::find(std::env::var("CCB_CLAUDE").ok().as_deref(), cfg.claude.as_deref(), own.as_deref())
            .ok();
    let version = claude.as_deref().and_then(crate::sys::locate::claude_version);
    let t = load_table_for(&cfg, version.as_deref())?;
    let per_m = |n: i64| n as f64 / 1000.0;
    let floor = t.premium_floor(&cfg.premium_at);
    let from = match (&cfg.prices_release, &version) {
        (Some(_), _) => "config",
        (None, Some(_)) => "claude",
        (None, None) => "newest",
    };
    if toml {
        use std::io::Write as _;
        let _ = std::io::stdout().lock().write_all(to_toml(&t).as_bytes());
        return Ok(0);
    }
    if json {
        let models: Vec<_> = t
            .models()
            .iter()
            .map(|m| {
                serde_json::json!({
                    "id": m.id, "family": m.family,
                    "input": per_m(m.rates.input), "output": per_m(m.rates.output),
                    "cache_write_5m": per_m(m.rates.cache_write_5m), "cache_write_1h": per_m(m.rates.cache_write_1h),
                    "cache_read": per_m(m.rates.cache_read),
                    "fast_multiplier": m.fast_milli.map(|x| x as f64 / 1000.0),
                    "source": m.source.as_str(),
                    "premium": m.rates.output >= floor,
                })
            })
            .collect();
        let learned: serde_json::Map<String, serde_json::Value> =
            t.learned().map(|(k, v)| (k.to_string(), serde_json::json!(v as f64 / 1000.0))).collect();
        let v = serde_json::json!({
            "updated": t.updated,
            "release": t.release,
            "release_from": from,
            "claude_version": version,
            "claude": claude.as_ref().map(|c| c.display().to_string()),
            "unit": "USD per million tokens",
            "web_search_per_1000": t.web_search_nanos as f64 / 1e6,
            "aliases": t.aliases,
            "premium_at": cfg.premium_at,
            "premium_output_from": per_m(floor),
            "models": models,
            "learned": learned,
            "precedence": ["user-file", "claude", "claude-cache", "claude-release", "learned", "family-dearest"],
        });
        crate::out!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let whence = match (from, &version) {
            ("config", _) => "chosen by [prices] release in the config".to_string(),
            (_, Some(v)) => format!("the claude found is {v}"),
            _ => "the claude found does not say its release: the newest table".to_string(),
        };
        crate::out!(
            "USD per million tokens: Claude Code {}'s own rates ({whence}); web search ${:.2} per 1,000",
            t.release,
            t.web_search_nanos as f64 / 1e6
        );
        crate::out!(
            "{:<28} {:>8} {:>8} {:>9} {:>9} {:>8}  {:<5} {:<14} premium",
            "model",
            "input",
            "output",
            "write 5m",
            "write 1h",
            "read",
            "fast",
            "source"
        );
        for m in t.models() {
            crate::out!(
                "{:<28} {:>8} {:>8} {:>9} {:>9} {:>8}  {:<5} {:<14} {}",
                m.id,
                per_m(m.rates.input),
                per_m(m.rates.output),
                per_m(m.rates.cache_write_5m),
                per_m(m.rates.cache_write_1h),
                per_m(m.rates.cache_read),
                m.fast_milli.map(|x| format!("×{}", x as f64 / 1000.0)).unwrap_or_default(),
                m.source.as_str(),
                if m.rates.output >= floor { "yes" } else { "" }
            );
        }
        for (k, v) in t.learned() {
            crate::out!(
                "{k:<28} learned: {:.3} × the dearest {} rates (estimates before a call only)",
                v as f64 / 1000.0,
                crate::core::pricing::family_of(k)
            );
        }
        crate::out!(
            "\nWhere a figure comes from, strongest first: your price file; claude's own cost for each call\n\
             (its telemetry); claude's server-sent price cache; the table of the claude release being run;\n\
             a factor learned from claude's figures; the dearest rates of the model's family (an estimate).\n\
             Premium (needs --reason): output at or above ${}/M ([premium] at = \"{}\").\n\
             Override or add models in a TOML file of the same format: $XDG_CONFIG_HOME/ccb/prices.toml,\n\
             or [prices] file in config.toml.",
            per_m(floor),
            cfg.premium_at
        );
    }
    Ok(0)
}

/// The table in force as a `[prices] file` (the embedded tables' format): every model with its
/// rates in USD per million tokens, so a user can keep the ones to override and change them.
fn to_toml(t: &PriceTable) -> String {
    // `{:?}` writes an f64 as TOML reads one (`5.0`, `0.3`, `1e-5`), never as an integer.
    let per_m = |n: i64| format!("{:?}", n as f64 / 1000.0);
    let rates = |out: &mut String, r: &Rates| {
        let _ = writeln!(out, "input = {}", per_m(r.input));
        let _ = writeln!(out, "output = {}", per_m(r.output));
        let _ = writeln!(out, "cache_write_5m = {}", per_m(r.cache_write_5m));
        let _ = writeln!(out, "cache_write_1h = {}", per_m(r.cache_write_1h));
        let _ = writeln!(out, "cache_read = {}", per_m(r.cache_read));
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# ccb price table: USD per million tokens. From `ccb prices --toml`: the rates in force\n\
         # (Claude Code {}'s table, your price file and claude's price cache merged).\n\
         # As a [prices] file, every model listed here wins over claude's own per-call figures:\n\
         # keep only the models whose rates you want to set (negotiated prices), and change them.",
        t.release
    );
    let _ = writeln!(out, "schema = 1");
    let _ = writeln!(out, "updated = {:?}", t.updated);
    let _ = writeln!(out, "web_search_per_1000 = {:?}", t.web_search_nanos as f64 / 1e6);
    for m in t.models() {
        let _ = writeln!(out, "\n[[model]]");
        let _ = writeln!(out, "id = {:?}", m.id);
        let _ = writeln!(out, "family = {:?}", m.family);
        rates(&mut out, &m.rates);
        if let Some(f) = m.fast_milli {
            let _ = writeln!(out, "fast_multiplier = {:?}", f as f64 / 1000.0);
        }
        if !m.geo_milli.is_empty() {
            let geo: Vec<String> =
                m.geo_milli.iter().map(|(k, v)| format!("{k:?} = {:?}", *v as f64 / 1000.0)).collect();
            let _ = writeln!(out, "geo_multiplier = {{ {} }}", geo.join(", "));
        }
        for (above, r) in &m.bands {
            let _ = writeln!(out, "\n[[model.band]]");
            let _ = writeln!(out, "above_input_tokens = {above}");
            rates(&mut out, r);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every release's table, written as TOML and read back as a user's price file, prices every
    /// model exactly as before.
    #[test]
    fn the_toml_is_a_price_file_that_gives_the_same_rates() {
        for (release, _) in crate::core::pricing::RELEASES {
            let t = PriceTable::release(Some(release)).unwrap();
            let text = to_toml(&t);
            let back = PriceTable::release(Some(release))
                .unwrap()
                .with_user_text(&text, std::path::Path::new("prices.toml"))
                .unwrap_or_else(|e| panic!("{release}: {e}\n{text}"));
            assert_eq!(back.models().len(), t.models().len(), "{release}");
            for (a, b) in t.models().iter().zip(back.models()) {
                assert_eq!(
                    (&a.id, &a.family, a.rates, &a.bands, a.fast_milli, &a.geo_milli),
                    (&b.id, &b.family, b.rates, &b.bands, b.fast_milli, &b.geo_milli),
                    "{release}"
                );
                assert_eq!(b.source.as_str(), "user-file");
            }
            assert_eq!(back.web_search_nanos, t.web_search_nanos);
            assert!(
                t.models().iter().any(|m| !m.bands.is_empty()) || release != &"2.1.332",
                "2.1.332 has a banded model"
            );
        }
    }
}
