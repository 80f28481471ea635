//! The user's files, read: ccb's config and price file. Parsing is the core's
//! ([`crate::core::config::parse`], [`crate::core::pricing::PriceTable`]); finding and reading
//! them, and expanding `~/`, is here.

use crate::core::config::{parse, Config};
use crate::core::exit::Exit;
use crate::core::pricing::PriceTable;
use crate::sys::paths::{expand_tilde, io_reason};
use std::path::{Path, PathBuf};

/// Where the config file is: `$CCB_CONFIG`, else `$XDG_CONFIG_HOME/ccb/config.toml`, else
/// `~/.config/ccb/config.toml`. The flag says whether the user named it explicitly.
pub fn config_path() -> Option<(PathBuf, bool)> {
    if let Some(p) = std::env::var_os("CCB_CONFIG").filter(|v| !v.is_empty()) {
        return Some((PathBuf::from(p), true));
    }
    crate::sys::paths::config_dir().map(|d| (d.join("config.toml"), false))
}

/// Load the effective configuration. A missing default file means all defaults; a missing file
/// named by `CCB_CONFIG` is an error.
pub fn load_config() -> Result<Config, Exit> {
    let mut c = load_config_file()?;
    if let Some(v) = std::env::var_os("CCB_LEDGER_URL").filter(|v| !v.is_empty()) {
        let v =
            v.into_string().map_err(|_| Exit::usage("CCB_LEDGER_URL is not UTF-8: set it to a postgresql:// URL"))?;
        c.team.url =
            Some(crate::core::team::parse_url(&v).map_err(|why| Exit::usage(format!("CCB_LEDGER_URL: {why}")))?);
    }
    Ok(c)
}

fn load_config_file() -> Result<Config, Exit> {
    let Some((path, explicit)) = config_path() else {
        return Ok(Config::default());
    };
    let mut c = match std::fs::read_to_string(&path) {
        Ok(text) => parse(&text, &path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => return Ok(Config::default()),
        Err(e) => {
            return Err(Exit::usage(format!(
                "cannot read config {}: {}; fix the file or unset CCB_CONFIG",
                crate::core::human::path_excerpt(&path),
                io_reason(&e)
            )))
        }
    };
    for p in [&mut c.claude, &mut c.prices_file].into_iter().flatten() {
        if let Some(s) = p.to_str() {
            *p = expand_tilde(s);
        }
    }
    for l in &mut c.limits.limits {
        if let Some(p) = &mut l.scope.project {
            if let Some(s) = p.to_str() {
                *p = expand_tilde(s);
            }
        }
    }
    for r in &mut c.routing.rules {
        if let Some(p) = &mut r.project {
            if let Some(s) = p.to_str() {
                *p = expand_tilde(s);
            }
        }
    }
    if let Some((name, line)) = &c.limits.timezone {
        if crate::cmd::usage::time_zone(Some(name)).is_err() {
            return Err(Exit::usage(format!(
                "config {} line {line}: [limits] timezone '{}' is not a time zone: use an IANA name like Europe/Berlin, or UTC",
                crate::core::human::path_excerpt(&path),
                crate::core::human::excerpt(name, crate::core::human::EXCERPT)
            )));
        }
    }
    Ok(c)
}

/// `table` with the user's price file at `p` over it.
pub fn with_price_file(table: PriceTable, p: &Path) -> Result<PriceTable, String> {
    let text =
        std::fs::read_to_string(p).map_err(|e| format!("cannot read price file {}: {}", p.display(), io_reason(&e)))?;
    table.with_user_text(&text, p)
}

/// The newest release's table, with the user's price file over it when one is given.
pub fn price_table(user_file: Option<&Path>) -> Result<PriceTable, String> {
    let base = PriceTable::newest()?;
    match user_file {
        None => Ok(base),
        Some(p) => with_price_file(base, p),
    }
}
