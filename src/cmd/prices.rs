//! `ccb prices`: the table in force, so a user can see what a model costs and what to override.

use crate::core::pricing::PriceTable;
use std::path::PathBuf;

/// The table for reports: the newest release's (see [`load_table_for`]).
pub fn load_table(cfg: &crate::core::config::Config) -> anyhow::Result<PriceTable> {
    load_table_for(cfg, None)
}

/// The prices in force for a claude of this release (`[prices] release` wins over the version
/// detected): the table derived from that release, claude's own price cache for the models it
/// lacks, factors learned for models nobody lists, and the user's price file over all of them.
pub fn load_table_for(cfg: &crate::core::config::Config, claude_version: Option<&str>) -> anyhow::Result<PriceTable> {
    let release = cfg.prices_release.as_deref().or(claude_version);
    let mut t = PriceTable::release(release).map_err(crate::core::exit::Exit::usage)?;
    if let Some(cache) = claude_price_cache() {
        t = t.with_claude_cache(&cache);
    }
    t = t.with_learned(load_learned());
    if let Some(user) = user_file(cfg) {
        t = crate::sys::files::with_price_file(t, &user).map_err(crate::core::exit::Exit::usage)?;
    }
    Ok(t)
}

fn user_file(cfg: &crate::core::config::Config) -> Option<PathBuf> {
    cfg.prices_file.clone().or_else(|| {
        let p = crate::sys::paths::config_dir()?.join("prices.toml");
        p.exists().then_some(p)
    })
}

/// Claude's global config file: `$CLAUDE_CONFIG_DIR/.claude.json`, else `~/.claude.json`.
fn claude_json() -> Option<PathBuf> {
    match std::env::var_os("CLAUDE_CONFIG_DIR").filter(|v| !v.is_empty()) {
        Some(d) => Some(PathBuf::from(d).join(".claude.json")),
        None => crate::sys::paths::home().map(|h| h.join(".claude.json")),
    }
}

/// The prices claude's server sent for models its release does not know
/// (`additionalModelCostsCache`), when claude has cached any. The file holds much else (projects,
/// history settings): it is parsed only when it names the cache, and nothing else is kept.
pub fn claude_price_cache() -> Option<serde_json::Value> {
    let bytes = std::fs::read(claude_json()?).ok()?;
    memchr::memmem::find(&bytes, b"\"additionalModelCostsCache\"")?;
    let mut v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let cache = v.get_mut("additionalModelCostsCache")?.take();
    cache.is_object().then_some(cache)
}

fn learned_path() -> Option<PathBuf> {
    Some(crate::sys::paths::data_dir()?.join("learned-prices.json"))
}

/// Factors learned from claude's own figures for models no table knows: `{"model": thousandths}`.
pub fn load_learned() -> Vec<(String, i64)> {
    let Some(text) = learned_path().and_then(|p| std::fs::read(p).ok()) else { return Vec::new() };
    let Ok(serde_json::Value::Object(m)) = serde_json::from_slice::<serde_json::Value>(&text) else {
        return Vec::new();
    };
    m.into_iter().filter_map(|(k, v)| Some((k, v.as_i64()?))).collect()
}

/// Keep what a session learned (owner-only, replaced atomically). The largest factor seen for a
/// model is kept: an estimate must not fall below a figure claude gave.
pub fn save_learned(new: &[(String, i64)]) -> std::io::Result<()> {
    let Some(path) = learned_path() else { return Ok(()) };
    let mut all: std::collections::BTreeMap<String, i64> = load_learned().into_iter().collect();
    for (k, v) in new {
        let e = all.entry(crate::core::pricing::normalize(k)).or_insert(*v);
        *e = (*e).max(*v);
    }
    let text = serde_json::to_vec_pretty(&all).unwrap_or_default();
    crate::sys::paths::write_private(&path, &text)
}

pub fn run(json: bool) -> anyhow::Result<i32> {
    let cfg = crate::sys::files::load_config()?;
    // The claude a session would run, for its release's prices; without one, the newest table.
    let own = std::env::current_exe().ok();
    let claude =
        crate::sys::locate::find(std::env::var("CCB_CLAUDE").ok().as_deref(), cfg.claude.as_deref(), own.as_deref()).ok();
    let version = claude.as_deref().and_then(crate::sys::locate::claude_version);
    let t = load_table_for(&cfg, version.as_deref())?;
    let per_m = |n: i64| n as f64 / 1000.0;
    let floor = t.premium_floor(&cfg.premium_at);
    let from = match (&cfg.prices_release, &version) {
        (Some(_), _) => "config",
        (None, Some(_)) => "claude",
        (None, None) => "newest",
    };
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
