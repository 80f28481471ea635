//! The price table in force, from the files that make it: the table derived from claude's
//! release, claude's own price cache, the factors learned from claude's figures (kept here
//! between sessions), and the user's price file over all of them. Used by every command that
//! prices usage (sessions, reports, the pool, the ledger's repair) and by `ccb prices`.

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

/// The user's price file: `[prices] file`, else `$XDG_CONFIG_HOME/ccb/prices.toml` when it exists.
pub fn user_file(cfg: &crate::core::config::Config) -> Option<PathBuf> {
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
