//! Prices as data, and `usage × rate → nano-dollars` in integers.
//!
//! The rates a session is priced with follow the Claude Code being run, since claude's own
//! `total_cost_usd` is the figure users compare with, and each release prices its own set of
//! models. Where a price comes from, strongest first:
//!
//! 1. the user's price file (negotiated rates win over everything);
//! 2. claude's own cost for each call, from its telemetry (applied by the meter, not here);
//! 3. claude's server-sent price cache (`additionalModelCostsCache` in its `.claude.json`), for
//!    models its release does not price itself, as claude does;
//! 4. the table derived from that Claude Code release (`src/prices/claude-*.toml`, written by
//!    `scripts/derive-prices`, which runs the release against a mock API and checks every model);
//! 5. a per-model factor learned from claude's own figures for a model none of the above knows
//!    (estimates before a call only);
//! 6. the dearest rates of the model's family (of all models when the family is unknown).
//!
//! A model priced by 5 or 6 is never free and never under-priced; the figure is marked as an
//! estimate and the caller says once which model.
//!
//! Longer than 600 lines on purpose: parsing, merging (release, claude's cache, the user's
//! file, learned factors) and lookup share the table's private types; about a fifth is tests.

use crate::core::money::Usd;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Mutex;

/// The tables derived from Claude Code releases, oldest first: (release, TOML). Made by build.rs
/// from `src/prices/claude-<version>.toml`.
pub const RELEASES: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/releases.rs"));

/// The newest release's table: what a claude of unknown version is priced with.
pub const EMBEDDED: &str = RELEASES[RELEASES.len() - 1].1;

/// `"2.1.332"` → (2, 1, 332); anything after the numbers (` (Claude Code)`, `-beta`) is ignored.
pub fn parse_version(v: &str) -> Option<(u32, u32, u32)> {
    let v = v.trim().trim_start_matches('v');
    let end = v.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(v.len());
    let mut it = v[..end].split('.').map(|p| p.parse::<u32>().ok());
    Some((it.next()??, it.next()??, it.next().flatten().unwrap_or(0)))
}

/// The embedded table for a claude release: the newest release at or below it (the oldest when it
/// is older than all; the newest when the version is unknown), and that release's number.
pub fn release_table(version: Option<&str>) -> (&'static str, &'static str) {
    let newest = RELEASES[RELEASES.len() - 1];
    let Some(want) = version.and_then(parse_version) else { return newest };
    let mut pick = RELEASES[0];
    for r in RELEASES {
        if parse_version(r.0).is_some_and(|v| v <= want) {
            pick = *r;
        }
    }
    pick
}

/// Where a model's rates came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PriceSource {
    /// The table derived from the Claude Code release being run.
    #[default]
    Release,
    /// Claude's server-sent price cache (`additionalModelCostsCache`).
    ClaudeCache,
    /// The user's price file.
    User,
    /// A factor learned from claude's own figures, over the family's dearest rates.
    Learned,
}

impl PriceSource {
    pub fn as_str(self) -> &'static str {
        match self {
            PriceSource::Release => "claude-release",
            PriceSource::ClaudeCache => "claude-cache",
            PriceSource::User => "user-file",
            PriceSource::Learned => "learned",
        }
    }
    /// Does claude itself price a model with rates from here?
    pub fn is_claudes(self) -> bool {
        matches!(self, PriceSource::Release | PriceSource::ClaudeCache)
    }
}

/// Token counts of one API response, by kind.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
    pub cache_write_5m: u64,
    pub cache_write_1h: u64,
    pub cache_read: u64,
    pub web_search: u64,
}

impl Usage {
    // Sums saturate: counts come from files and streams ccb does not control, and a sum that
    // wrapped would report a small number for an absurd one.
    pub fn cache_write(&self) -> u64 {
        self.cache_write_5m.saturating_add(self.cache_write_1h)
    }
    /// Every token of the prompt: what long-context bands are measured against.
    pub fn prompt_tokens(&self) -> u64 {
        self.input.saturating_add(self.cache_write()).saturating_add(self.cache_read)
    }
    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens().saturating_add(self.output)
    }
    pub fn add(&mut self, o: &Usage) {
        self.input = self.input.saturating_add(o.input);
        self.output = self.output.saturating_add(o.output);
        self.cache_write_5m = self.cache_write_5m.saturating_add(o.cache_write_5m);
        self.cache_write_1h = self.cache_write_1h.saturating_add(o.cache_write_1h);
        self.cache_read = self.cache_read.saturating_add(o.cache_read);
        self.web_search = self.web_search.saturating_add(o.web_search);
    }

    /// Could one response have these counts? None has a trillion tokens (2^40): a count
    /// above that is a corrupted or crafted record, not usage.
    pub fn is_plausible(&self) -> bool {
        [self.input, self.output, self.cache_write_5m, self.cache_write_1h, self.cache_read, self.web_search]
            .iter()
            .all(|&n| n <= crate::core::tokens::MAX_TOKENS)
    }
}

/// What a response was priced with besides its tokens.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Modifiers {
    /// `usage.speed == "fast"`.
    pub fast: bool,
    /// `usage.inference_geo`, e.g. "us".
    pub geo: Option<String>,
}

/// Nano-dollars per token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rates {
    pub input: i64,
    pub output: i64,
    pub cache_write_5m: i64,
    pub cache_write_1h: i64,
    pub cache_read: i64,
}

impl Rates {
    fn max(self, o: Rates) -> Rates {
        Rates {
            input: self.input.max(o.input),
            output: self.output.max(o.output),
            cache_write_5m: self.cache_write_5m.max(o.cache_write_5m),
            cache_write_1h: self.cache_write_1h.max(o.cache_write_1h),
            cache_read: self.cache_read.max(o.cache_read),
        }
    }
    /// Scale by a multiplier given in thousandths.
    fn scaled(self, milli: i64) -> Rates {
        // Rounded, not truncated: 1.1 × 0.125 $/M is 137.5 nano-dollars a token, and claude
        // multiplies in floating point.
        let s = |r: i64| ((r as i128 * milli as i128 + 500) / 1000) as i64;
        Rates {
            input: s(self.input),
            output: s(self.output),
            cache_write_5m: s(self.cache_write_5m),
            cache_write_1h: s(self.cache_write_1h),
            cache_read: s(self.cache_read),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelPrice {
    pub id: String,
    pub family: String,
    pub rates: Rates,
    /// (prompt tokens strictly above, rates)
    pub bands: Vec<(u64, Rates)>,
    /// Thousandths.
    pub fast_milli: Option<i64>,
    pub geo_milli: BTreeMap<String, i64>,
    pub source: PriceSource,
}

/// How a model was priced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    Known,
    /// Unknown to every table: the family's highest rates scaled by a factor learned from
    /// claude's own figures for this model (an estimate).
    Learned,
    /// Unknown model, priced at its family's highest rates.
    Family,
    /// Unknown model and family, priced at the highest rates of all.
    Highest,
}

#[derive(Debug)]
pub struct PriceTable {
    pub updated: String,
    /// The Claude Code release the base table was derived from.
    pub release: String,
    /// What claude's model aliases resolve to in that release (`sonnet` → `claude-sonnet-5-5`).
    pub aliases: BTreeMap<String, String>,
    pub web_search_nanos: i64,
    /// Factors (thousandths) learned for models no table knows, over the family's dearest rates.
    learned: HashMap<String, i64>,
    models: Vec<ModelPrice>,
    by_name: HashMap<String, usize>,
    /// Unknown models priced so far (for "priced as …" notices and speed).
    fallback_cache: Mutex<HashMap<String, (ModelPrice, Match)>>,
}

// ---- the file format ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTable {
    #[serde(default)]
    schema: Option<u32>,
    #[serde(default)]
    updated: Option<String>,
    #[serde(default)]
    web_search_per_1000: Option<f64>,
    /// The Claude Code release a derived table was read from.
    #[serde(default)]
    claude: Option<String>,
    #[serde(default)]
    aliases: BTreeMap<String, String>,
    #[serde(default, rename = "model")]
    models: Vec<FileModel>,
}

struct FileRates {
    input: f64,
    output: f64,
    cache_write_5m: f64,
    cache_write_1h: f64,
    cache_read: f64,
}

macro_rules! rates_of {
    ($x:expr) => {
        FileRates {
            input: $x.input,
            output: $x.output,
            cache_write_5m: $x.cache_write_5m,
            cache_write_1h: $x.cache_write_1h,
            cache_read: $x.cache_read,
        }
    };
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileModel {
    id: String,
    #[serde(default)]
    family: Option<String>,
    #[serde(default, rename = "match")]
    matches: Vec<String>,
    input: f64,
    output: f64,
    cache_write_5m: f64,
    cache_write_1h: f64,
    cache_read: f64,
    #[serde(default)]
    fast_multiplier: Option<f64>,
    #[serde(default)]
    geo_multiplier: BTreeMap<String, f64>,
    #[serde(default, rename = "band")]
    bands: Vec<FileBand>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBand {
    above_input_tokens: u64,
    input: f64,
    output: f64,
    cache_write_5m: f64,
    cache_write_1h: f64,
    cache_read: f64,
}

fn per_mtok_to_nanos(v: f64, what: &str) -> Result<i64, String> {
    if !v.is_finite() || !(0.0..=100_000.0).contains(&v) {
        return Err(format!("{what} = {v} must be a price in USD per million tokens from 0 to 100000"));
    }
    Ok((v * 1000.0).round() as i64)
}

fn milli(v: f64, what: &str) -> Result<i64, String> {
    if !v.is_finite() || !(0.0..=1000.0).contains(&v) {
        return Err(format!("{what} = {v} must be a multiplier from 0 to 1000"));
    }
    Ok((v * 1000.0).round() as i64)
}

impl FileRates {
    fn to_rates(&self, id: &str) -> Result<Rates, String> {
        Ok(Rates {
            input: per_mtok_to_nanos(self.input, &format!("{id} input"))?,
            output: per_mtok_to_nanos(self.output, &format!("{id} output"))?,
            cache_write_5m: per_mtok_to_nanos(self.cache_write_5m, &format!("{id} cache_write_5m"))?,
            cache_write_1h: per_mtok_to_nanos(self.cache_write_1h, &format!("{id} cache_write_1h"))?,
            cache_read: per_mtok_to_nanos(self.cache_read, &format!("{id} cache_read"))?,
        })
    }
}

/// The family a model id belongs to, from its name.
pub fn family_of(id: &str) -> &'static str {
    let id = id.to_ascii_lowercase();
    for f in ["opus", "sonnet", "haiku", "fable", "mythos"] {
        if id.contains(f) {
            return f;
        }
    }
    "other"
}

/// The name a model id is looked up by: lowercase, without a context-size suffix (`[1m]`), a
/// cloud provider's prefix or version suffix (`us.anthropic.…-v1:0`, `…@20250514`), a date
/// suffix (`-20250514`) or `-latest`.
pub fn normalize(id: &str) -> String {
    let mut s = id.trim().to_ascii_lowercase();
    if let Some(i) = s.find('[') {
        s.truncate(i);
    }
    if let Some(i) = s.find('@') {
        s.truncate(i);
    }
    if let Some(i) = s.find("anthropic.") {
        s.replace_range(..i + "anthropic.".len(), "");
    }
    // Bedrock version suffix: -v1:0, -v2
    if let Some(i) = s.rfind("-v") {
        let tail = &s[i + 2..];
        if !tail.is_empty() && tail.chars().all(|c| c.is_ascii_digit() || c == ':') {
            s.truncate(i);
        }
    }
    if let Some(rest) = s.strip_suffix("-latest") {
        s = rest.to_string();
    }
    // A date suffix: "-20250929". Sliced only on a character boundary (an id may hold any
    // character; one from a transcript or a request is not checked before it gets here).
    let cut = s.len().saturating_sub(9);
    if s.len() > 9 && s.is_char_boundary(cut) {
        let (head, tail) = s.split_at(cut);
        if tail.starts_with('-') && tail[1..].chars().all(|c| c.is_ascii_digit()) {
            s = head.to_string();
        }
    }
    s
}

impl PriceTable {
    /// Parse a table. `base` is merged under it (a user file overrides the embedded table model
    /// by model); a table with a base is the user's.
    pub fn parse(text: &str, base: Option<PriceTable>) -> Result<PriceTable, String> {
        let source = if base.is_some() { PriceSource::User } else { PriceSource::Release };
        PriceTable::parse_as(text, base, source)
    }

    fn parse_as(text: &str, base: Option<PriceTable>, source: PriceSource) -> Result<PriceTable, String> {
        let file: FileTable = toml::from_str(text).map_err(|e| {
            let msg = e.message().lines().next().unwrap_or("invalid TOML").to_string();
            match e.span() {
                Some(s) => format!("line {}: {msg}", text[..s.start.min(text.len())].matches('\n').count() + 1),
                None => msg,
            }
        })?;
        if let Some(v) = file.schema {
            if v != 1 {
                return Err(format!("schema = {v}: this ccb reads price tables of schema 1"));
            }
        }
        let mut models: Vec<ModelPrice> = Vec::new();
        let mut names: Vec<(String, usize)> = Vec::new();
        let (mut updated, mut web_search_nanos) = (String::new(), 10_000_000);
        let (mut release, mut aliases, mut learned) = (String::new(), BTreeMap::new(), HashMap::new());
        if let Some(b) = base {
            updated = b.updated;
            web_search_nanos = b.web_search_nanos;
            release = b.release;
            aliases = b.aliases;
            learned = b.learned;
            let mut by_idx: Vec<(String, usize)> = b.by_name.into_iter().collect();
            by_idx.sort_by_key(|(_, i)| *i);
            models = b.models;
            names = by_idx;
        }
        if let Some(u) = file.updated {
            updated = u;
        }
        if let Some(c) = file.claude {
            release = c;
        }
        for (k, v) in file.aliases {
            aliases.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
        if let Some(w) = file.web_search_per_1000 {
            if !w.is_finite() || !(0.0..=100_000.0).contains(&w) {
                return Err(format!("web_search_per_1000 = {w} must be a price in USD from 0 to 100000"));
            }
            web_search_nanos = (w * 1_000_000.0).round() as i64;
        }
        for m in file.models {
            let id = m.id.trim().to_ascii_lowercase();
            if id.is_empty() {
                return Err("a [[model]] has an empty id".into());
            }
            let mut bands = Vec::new();
            for b in &m.bands {
                bands.push((b.above_input_tokens, rates_of!(b).to_rates(&id)?));
            }
            bands.sort_by_key(|(t, _)| *t);
            let mut geo_milli = BTreeMap::new();
            for (k, v) in &m.geo_multiplier {
                geo_milli.insert(k.to_ascii_lowercase(), milli(*v, &format!("{id} geo_multiplier.{k}"))?);
            }
            let price = ModelPrice {
                family: m.family.map(|f| f.to_ascii_lowercase()).unwrap_or_else(|| family_of(&id).to_string()),
                rates: rates_of!(m).to_rates(&id)?,
                bands,
                fast_milli: m.fast_multiplier.map(|f| milli(f, &format!("{id} fast_multiplier"))).transpose()?,
                geo_milli,
                id: id.clone(),
                source,
            };
            let idx = match models.iter().position(|p| p.id == id) {
                Some(i) => {
                    models[i] = price;
                    i
                }
                None => {
                    models.push(price);
                    models.len() - 1
                }
            };
            names.push((id.clone(), idx));
            names.push((normalize(&id), idx));
            for alias in &m.matches {
                names.push((normalize(alias), idx));
            }
        }
        if models.is_empty() {
            return Err("the price table has no [[model]]".into());
        }
        Ok(PriceTable {
            updated,
            release,
            aliases,
            learned,
            web_search_nanos,
            by_name: names.into_iter().collect(),
            models,
            fallback_cache: Mutex::new(HashMap::new()),
        })
    }

    /// The newest release's table.
    pub fn newest() -> Result<PriceTable, String> {
        PriceTable::release(None)
    }

    /// The table derived from the claude release at or below `version` (see [`release_table`]).
    pub fn release(version: Option<&str>) -> Result<PriceTable, String> {
        let (v, text) = release_table(version);
        let mut t = PriceTable::parse_as(text, None, PriceSource::Release)
            .map_err(|e| format!("embedded price table of Claude Code {v}: {e}"))?;
        if t.release.is_empty() {
            t.release = v.to_string();
        }
        Ok(t)
    }

    /// This table with the user's price file over it (`text`, read from `p`).
    pub fn with_user_text(self, text: &str, p: &Path) -> Result<PriceTable, String> {
        PriceTable::parse_as(text, Some(self), PriceSource::User).map_err(|e| format!("price file {} {e}", p.display()))
    }

    /// Add the models of claude's server-sent price cache (`additionalModelCostsCache` of its
    /// `.claude.json`) that this table does not price: claude consults that cache only for models
    /// its release has no price for, and so does ccb. Entries that are not a rate set are skipped.
    pub fn with_claude_cache(mut self, cache: &serde_json::Value) -> PriceTable {
        let Some(map) = cache.as_object() else { return self };
        for (id, v) in map {
            let id = id.trim().to_ascii_lowercase();
            if id.is_empty() || self.by_name.contains_key(&id) || self.by_name.contains_key(&normalize(&id)) {
                continue;
            }
            let Some(rates) = cache_rates(v) else { continue };
            let fast_milli = v
                .get("fast")
                .and_then(cache_rates)
                .and_then(|f| (rates.output > 0).then(|| (f.output as i128 * 1000 / rates.output as i128) as i64));
            let idx = self.models.len();
            self.models.push(ModelPrice {
                family: family_of(&id).to_string(),
                rates,
                bands: Vec::new(),
                fast_milli,
                geo_milli: BTreeMap::new(),
                id: id.clone(),
                source: PriceSource::ClaudeCache,
            });
            self.by_name.insert(normalize(&id), idx);
            self.by_name.insert(id, idx);
        }
        self.fallback_cache.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self
    }

    /// Factors learned from claude's own figures for models no table prices (thousandths of the
    /// family's dearest rates): used for estimates only, never below the learned figure's basis.
    pub fn with_learned(mut self, learned: impl IntoIterator<Item = (String, i64)>) -> PriceTable {
        for (id, milli) in learned {
            if (1..=1000).contains(&milli) {
                self.learned.insert(normalize(&id), milli);
            }
        }
        self.fallback_cache.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self
    }

    /// The learned factors (model, thousandths).
    pub fn learned(&self) -> impl Iterator<Item = (&str, i64)> {
        self.learned.iter().map(|(k, v)| (k.as_str(), *v))
    }

    pub fn models(&self) -> &[ModelPrice] {
        &self.models
    }

    /// The price of a model id, and how it was found.
    pub fn lookup(&self, model: &str) -> (ModelPrice, Match) {
        if let Some(&i) = self.by_name.get(model).or_else(|| self.by_name.get(&normalize(model))) {
            return (self.models[i].clone(), Match::Known);
        }
        let mut cache = self.fallback_cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(hit) = cache.get(model) {
            return hit.clone();
        }
        let (mut p, mut how) = self.dearest(model);
        if let Some(&f) = self.learned.get(&normalize(model)) {
            p.rates = p.rates.scaled(f);
            p.source = PriceSource::Learned;
            how = Match::Learned;
        }
        // Bounded: a history (or a fuzzer) full of distinct unknown names must not grow it forever.
        if cache.len() >= 1024 {
            cache.clear();
        }
        cache.insert(model.to_string(), (p.clone(), how));
        (p, how)
    }

    /// The dearest rates of a model's family (of all models when no model of the family is
    /// known): what a model no table prices is charged, so that it is never under-priced.
    pub fn dearest(&self, model: &str) -> (ModelPrice, Match) {
        let fam = family_of(model);
        let same: Vec<&ModelPrice> = self.models.iter().filter(|m| m.family == fam).collect();
        let (pool, how) =
            if same.is_empty() { (self.models.iter().collect(), Match::Highest) } else { (same, Match::Family) };
        let mut p = ModelPrice {
            id: model.to_string(),
            family: fam.to_string(),
            rates: Rates::default(),
            bands: Vec::new(),
            fast_milli: None,
            geo_milli: BTreeMap::new(),
            source: PriceSource::Release,
        };
        for m in pool {
            p.rates = p.rates.max(m.rates);
            for (_, r) in &m.bands {
                p.rates = p.rates.max(*r);
            }
            p.fast_milli = match (p.fast_milli, m.fast_milli) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            for (k, v) in &m.geo_milli {
                let e = p.geo_milli.entry(k.clone()).or_insert(*v);
                *e = (*e).max(*v);
            }
        }
        (p, how)
    }

    /// The cost of one response at the dearest rates of its model's family.
    pub fn dearest_cost(&self, model: &str, usage: &Usage, mods: &Modifiers) -> Usd {
        price(&self.dearest(model).0, usage, mods, self.web_search_nanos)
    }

    /// What claude resolves a model name to in this release: an alias (`sonnet`, `opus[1m]`,
    /// `best`…) through `ANTHROPIC_DEFAULT_*_MODEL` or the release's alias table; an id as is.
    pub fn resolve(&self, model: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
        let m = model.trim();
        let lower = m.to_ascii_lowercase();
        let base = lower.strip_suffix("[1m]").unwrap_or(&lower);
        let family_var = match base {
            "sonnet" => Some("ANTHROPIC_DEFAULT_SONNET_MODEL"),
            "haiku" => Some("ANTHROPIC_DEFAULT_HAIKU_MODEL"),
            "opus" | "opusplan" | "best" => Some("ANTHROPIC_DEFAULT_OPUS_MODEL"),
            _ => None,
        };
        if let Some(v) = family_var.and_then(env).filter(|v| !v.trim().is_empty()) {
            return v.trim().to_string();
        }
        if let Some(id) = self.aliases.get(base) {
            return id.clone();
        }
        match base {
            // An alias this release's table does not list: the newest model of that family.
            "opus" | "opusplan" | "best" | "default" => self.newest_of("opus"),
            "sonnet" | "haiku" | "fable" | "mythos" => self.newest_of(base),
            _ => m.to_string(),
        }
    }

    fn newest_of(&self, family: &str) -> String {
        // Ids sort by version within a family (claude-opus-4-8 < claude-opus-5 < claude-opus-5-5).
        self.models
            .iter()
            .filter(|p| p.family == family && p.source != PriceSource::User)
            .map(|p| p.id.clone())
            .max_by(|a, b| version_key(a).cmp(&version_key(b)))
            .unwrap_or_else(|| format!("claude-{family}"))
    }

    /// The output rate from which a model is premium: the cheapest output rate of the family
    /// named (`opus`: the cheapest current Opus), or of the model named.
    pub fn premium_floor(&self, at: &str) -> i64 {
        let at = at.trim().to_ascii_lowercase();
        let family: Vec<i64> = self.models.iter().filter(|m| m.family == at).map(|m| m.rates.output).collect();
        if let Some(min) = family.iter().min() {
            return *min;
        }
        match self.lookup(&at) {
            (p, Match::Known) => p.rates.output,
            // Not a family or a model: Opus's tier.
            _ => self.models.iter().filter(|m| m.family == "opus").map(|m| m.rates.output).min().unwrap_or(0),
        }
    }

    /// Is this (resolved) model at or above the premium floor? A model no table knows takes its
    /// family's tier (the family's cheapest output rate); a model of no known family is premium.
    pub fn is_premium(&self, model: &str, floor: i64) -> bool {
        match self.lookup(model) {
            (p, Match::Known) => p.rates.output >= floor,
            (_, Match::Highest) => true,
            (_, Match::Family | Match::Learned) => {
                let fam = family_of(model);
                self.models.iter().filter(|m| m.family == fam).map(|m| m.rates.output).min().is_none_or(|o| o >= floor)
            }
        }
    }

    /// The cost of one response.
    pub fn cost(&self, model: &str, usage: &Usage, mods: &Modifiers) -> (Usd, Match) {
        let (p, how) = self.lookup(model);
        (price(&p, usage, mods, self.web_search_nanos), how)
    }
}

/// A rate set of claude's price cache, in USD per million tokens (`inputTokens`, `outputTokens`,
/// `promptCacheWriteTokens`, optional `promptCacheWrite1hTokens`, `promptCacheReadTokens`).
/// Without a 1-hour rate claude prices every cache write at the 5-minute rate.
fn cache_rates(v: &serde_json::Value) -> Option<Rates> {
    let r = |k: &str| -> Option<i64> { per_mtok_to_nanos(v.get(k)?.as_f64()?, k).ok() };
    let write = r("promptCacheWriteTokens")?;
    Some(Rates {
        input: r("inputTokens")?,
        output: r("outputTokens")?,
        cache_write_5m: write,
        cache_write_1h: r("promptCacheWrite1hTokens").unwrap_or(write),
        cache_read: r("promptCacheReadTokens")?,
    })
}

/// Sort key for model ids by their version numbers: `claude-opus-4-8` → [4, 8].
fn version_key(id: &str) -> Vec<u32> {
    id.split(['-', '.']).filter_map(|p| p.parse::<u32>().ok()).filter(|n| *n < 1000).collect()
}

/// `usage × rate` for one response, in nano-dollars.
pub fn price(p: &ModelPrice, u: &Usage, mods: &Modifiers, web_search_nanos: i64) -> Usd {
    let prompt = u.prompt_tokens();
    let mut rates = p.rates;
    for (above, r) in &p.bands {
        if prompt > *above {
            rates = *r;
        }
    }
    if mods.fast {
        if let Some(m) = p.fast_milli {
            rates = rates.scaled(m);
        }
    }
    if let Some(g) = mods.geo.as_deref().and_then(|g| p.geo_milli.get(&g.to_ascii_lowercase())) {
        rates = rates.scaled(*g);
    }
    // Each product fits i128 (u64 × i64); their sum saturates, and a negative rate (a price
    // file cannot hold one) would count as zero: money never wraps or turns negative.
    let t = |n: u64, r: i64| n as i128 * r.max(0) as i128;
    let total = [
        t(u.input, rates.input),
        t(u.output, rates.output),
        t(u.cache_write_5m, rates.cache_write_5m),
        t(u.cache_write_1h, rates.cache_write_1h),
        t(u.cache_read, rates.cache_read),
        t(u.web_search, web_search_nanos),
    ]
    .iter()
    .fold(0i128, |a, b| a.saturating_add(*b));
    Usd(total.clamp(0, i64::MAX as i128) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_takes_any_text() {
        // The cut for a date suffix would fall inside "é".
        assert_eq!(normalize("claude-h\u{e9}12345678"), "claude-h\u{e9}12345678");
        assert_eq!(normalize("claude-sonnet-4-5-20250929"), "claude-sonnet-4-5");
        assert_eq!(normalize("\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}"), "\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}");
        assert_eq!(normalize("x-\u{e9}-v1:0"), "x-\u{e9}");
    }

    #[test]
    fn token_sums_saturate_and_absurd_counts_are_implausible() {
        let mut u = Usage { input: u64::MAX, cache_read: 1, ..Default::default() };
        assert_eq!(u.prompt_tokens(), u64::MAX);
        assert_eq!(u.total_tokens(), u64::MAX);
        u.add(&Usage { input: 5, ..Default::default() });
        assert_eq!(u.input, u64::MAX);
        assert!(!u.is_plausible());
        assert!(Usage { input: 1 << 40, output: 200_000, ..Default::default() }.is_plausible());
        assert!(!Usage { cache_read: (1 << 40) + 1, ..Default::default() }.is_plausible());
        // Every count at its largest, at the largest rates: the figure saturates, never wraps.
        let max = Usage {
            input: u64::MAX,
            output: u64::MAX,
            cache_write_5m: u64::MAX,
            cache_write_1h: u64::MAX,
            cache_read: u64::MAX,
            web_search: u64::MAX,
        };
        let r = i64::MAX;
        let p = ModelPrice {
            id: "m".into(),
            family: "m".into(),
            rates: Rates { input: r, output: r, cache_write_5m: r, cache_write_1h: r, cache_read: r },
            bands: Vec::new(),
            fast_milli: None,
            geo_milli: BTreeMap::new(),
            source: PriceSource::Release,
        };
        assert_eq!(price(&p, &max, &Modifiers::default(), r), Usd(i64::MAX));
    }

    const T: &str = r#"
schema = 1
updated = "test"
web_search_per_1000 = 10.0
[[model]]
id = "claude-sonnet-4-5"
family = "sonnet"
match = ["claude-sonnet-4-5", "sonnet-4.5"]
input = 3.0
output = 15.0
cache_write_5m = 3.75
cache_write_1h = 6.0
cache_read = 0.3
geo_multiplier = { us = 1.1 }
[[model.band]]
above_input_tokens = 200000
input = 6.0
output = 22.5
cache_write_5m = 7.5
cache_write_1h = 12.0
cache_read = 0.6
[[model]]
id = "claude-opus-4-8"
input = 5.0
output = 25.0
cache_write_5m = 6.25
cache_write_1h = 10.0
cache_read = 0.5
fast_multiplier = 6.0
[[model]]
id = "claude-opus-4-1"
input = 15.0
output = 75.0
cache_write_5m = 18.75
cache_write_1h = 30.0
cache_read = 1.5
[[model]]
id = "claude-haiku-4-5"
input = 1.0
output = 5.0
cache_write_5m = 1.25
cache_write_1h = 2.0
cache_read = 0.1
"#;

    fn t() -> PriceTable {
        PriceTable::parse(T, None).unwrap()
    }
    fn u(input: u64, output: u64, w5: u64, w1: u64, read: u64) -> Usage {
        Usage { input, output, cache_write_5m: w5, cache_write_1h: w1, cache_read: read, web_search: 0 }
    }

    #[test]
    fn every_token_kind_at_its_rate() {
        let t = t();
        let none = Modifiers::default();
        // 1000 input at $3/M = $0.003; 100 output at $15/M = $0.0015; 2000 5m writes at 3.75 =
        // 0.0075; 1000 1h writes at 6 = 0.006; 10000 reads at 0.3 = 0.003.
        let (c, how) = t.cost("claude-sonnet-4-5-20250929", &u(1000, 100, 2000, 1000, 10_000), &none);
        assert_eq!(how, Match::Known);
        assert_eq!(c, Usd(3_000_000 + 1_500_000 + 7_500_000 + 6_000_000 + 3_000_000));
        // A single cache-read token is a fraction of a micro-dollar, and is kept.
        assert_eq!(t.cost("claude-sonnet-4-5", &u(0, 0, 0, 0, 1), &none).0, Usd(300));
    }

    #[test]
    fn ids_are_normalized() {
        let t = t();
        for id in [
            "claude-sonnet-4-5",
            "claude-sonnet-4-5-20250929",
            "claude-sonnet-4-5[1m]",
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "claude-sonnet-4-5@20250929",
            "Claude-Sonnet-4-5",
            "sonnet-4.5",
        ] {
            assert_eq!(t.lookup(id).1, Match::Known, "{id}");
            assert_eq!(t.lookup(id).0.id, "claude-sonnet-4-5", "{id}");
        }
    }

    #[test]
    fn bands_fast_geo_and_web_search() {
        let t = t();
        let none = Modifiers::default();
        let big = u(150_000, 1000, 0, 0, 60_000); // prompt 210k > 200k: the band's rates
        assert_eq!(t.cost("claude-sonnet-4-5", &big, &none).0, Usd(150_000 * 6000 + 1000 * 22_500 + 60_000 * 600));
        let at = u(200_000, 0, 0, 0, 0); // exactly at the threshold: base rates
        assert_eq!(t.cost("claude-sonnet-4-5", &at, &none).0, Usd(200_000 * 3000));
        let fast = Modifiers { fast: true, geo: None };
        assert_eq!(t.cost("claude-opus-4-8", &u(1000, 1000, 0, 0, 0), &fast).0, Usd(6 * (1000 * 5000 + 1000 * 25_000)));
        assert_eq!(t.cost("claude-sonnet-4-5", &u(1000, 0, 0, 0, 0), &fast).0, Usd(1000 * 3000), "no fast mode: base");
        let us = Modifiers { fast: false, geo: Some("us".into()) };
        assert_eq!(t.cost("claude-sonnet-4-5", &u(1000, 0, 0, 0, 1000), &us).0, Usd(1000 * 3300 + 1000 * 330));
        let global = Modifiers { fast: false, geo: Some("global".into()) };
        assert_eq!(t.cost("claude-sonnet-4-5", &u(1000, 0, 0, 0, 0), &global).0, Usd(1000 * 3000));
        let ws = Usage { web_search: 3, ..Usage::default() };
        assert_eq!(t.cost("claude-haiku-4-5", &ws, &none).0, Usd(30_000_000));
    }

    #[test]
    fn unknown_models_are_never_free() {
        let t = t();
        let none = Modifiers::default();
        let (p, how) = t.lookup("claude-opus-9-9");
        assert_eq!(how, Match::Family);
        assert_eq!(p.rates.input, 15_000, "the family's highest input rate (Opus 4.1)");
        let (p, how) = t.lookup("gpt-7");
        assert_eq!(how, Match::Highest);
        assert_eq!(p.rates.output, 75_000);
        assert!(t.cost("mystery", &u(1, 1, 1, 1, 1), &none).0 > Usd::ZERO);
        let (p, how) = t.lookup("claude-sonnet-9");
        assert_eq!(how, Match::Family);
        assert_eq!(p.rates.input, 6000, "a band's rate counts as the family's highest");
    }

    #[test]
    fn user_file_overrides_and_adds() {
        let base = t();
        let user = "[[model]]\nid = \"claude-haiku-4-5\"\ninput = 2.0\noutput = 10.0\ncache_write_5m = 2.5\ncache_write_1h = 4.0\ncache_read = 0.2\n[[model]]\nid = \"my-model\"\nfamily = \"other\"\ninput = 1.0\noutput = 1.0\ncache_write_5m = 1.0\ncache_write_1h = 1.0\ncache_read = 1.0\n";
        let t = PriceTable::parse(user, Some(base)).unwrap();
        assert_eq!(t.lookup("claude-haiku-4-5").0.rates.input, 2000);
        assert_eq!(t.lookup("my-model").1, Match::Known);
        assert_eq!(t.lookup("claude-opus-4-8").1, Match::Known, "the base is kept");
    }

    #[test]
    fn bad_price_files_say_where() {
        for (text, want) in [
            ("[[model]]\nid = \"x\"\ninput = -1.0\noutput = 1.0\ncache_write_5m = 1.0\ncache_write_1h = 1.0\ncache_read = 1.0\n", "x input = -1"),
            ("[[model]]\nid = \"x\"\n", "missing field"),
            ("schema = 2\n", "schema = 2"),
            ("[[model]]\nid = \"x\"\ninput = 1.0\noutput = 1.0\ncache_write_5m = 1.0\ncache_write_1h = 1.0\ncache_read = 1.0\nspeed = 2\n", "unknown field"),
        ] {
            let e = PriceTable::parse(text, None).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn the_embedded_table_parses_and_knows_the_current_models() {
        let t = PriceTable::newest().unwrap();
        for id in ["claude-opus-4-8", "claude-sonnet-4-6", "claude-haiku-4-5", "claude-sonnet-4-5-20250929"] {
            assert_eq!(t.lookup(id).1, Match::Known, "{id}");
        }
        for m in t.models() {
            assert!(m.rates.input > 0 && m.rates.output > 0, "{} has a zero rate", m.id);
            assert!(m.rates.cache_write_1h >= m.rates.cache_write_5m, "{}: 1h writes cost at least 5m", m.id);
        }
    }
}
