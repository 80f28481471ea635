//! `ccb prices`: the table in force, so a user can see what a model costs and what to override.

use crate::pricing::PriceTable;

pub fn load_table(cfg: &crate::config::Config) -> anyhow::Result<PriceTable> {
    let user = cfg.prices_file.clone().or_else(|| {
        let p = crate::paths::config_dir()?.join("prices.toml");
        p.exists().then_some(p)
    });
    PriceTable::load(user.as_deref()).map_err(|e| crate::exit::Exit::usage(e).into())
}

pub fn run(json: bool) -> anyhow::Result<i32> {
    let cfg = crate::config::load()?;
    let t = load_table(&cfg)?;
    let per_m = |n: i64| n as f64 / 1000.0;
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
                })
            })
            .collect();
        let v = serde_json::json!({"updated": t.updated, "unit": "USD per million tokens", "web_search_per_1000": t.web_search_nanos as f64 / 1e6, "models": models});
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "USD per million tokens (table of {}); web search ${:.2} per 1,000",
            t.updated,
            t.web_search_nanos as f64 / 1e6
        );
        println!(
            "{:<28} {:>8} {:>8} {:>9} {:>9} {:>8}  fast",
            "model", "input", "output", "write 5m", "write 1h", "read"
        );
        for m in t.models() {
            println!(
                "{:<28} {:>8} {:>8} {:>9} {:>9} {:>8}  {}",
                m.id,
                per_m(m.rates.input),
                per_m(m.rates.output),
                per_m(m.rates.cache_write_5m),
                per_m(m.rates.cache_write_1h),
                per_m(m.rates.cache_read),
                m.fast_milli.map(|x| format!("×{}", x as f64 / 1000.0)).unwrap_or_default()
            );
        }
        println!("\nA model not listed is priced at its family's highest rates. Override or add models in a TOML\nfile of the same format: $XDG_CONFIG_HOME/ccb/prices.toml, or [prices] file in config.toml.");
    }
    Ok(0)
}
