//! The gate's request rewrite: `[routing]` applied to one model call. Which model serves it is
//! decided in [`crate::core::routing`]; here the request's body (its `model`, and only the
//! fields the target is known not to accept) and its `anthropic-beta` header are rewritten, and
//! the session is told once when a downgrade starts.
//!
//! A call is rewritten only when the decision says so and the rewrite is known valid for the
//! target; anything else passes byte for byte as claude sent it.

use crate::core::money::Usd;
use crate::core::plan::Env;
use crate::core::pricing::{PriceTable, Usage};
use crate::core::routing::{self, CallKind, Routing, Why};
use crate::session::meter::Meter;
use crate::sys::http::Request;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// `[routing]` for one session's gate.
pub struct Router {
    routing: Routing,
    /// The premium floor (`[premium] at`).
    floor: i64,
    /// The variables claude resolves aliases by (`ANTHROPIC_DEFAULT_*_MODEL`).
    env: Env,
    /// The model of the session's own loop, as last seen: a subagent asking for another one
    /// named its model.
    main_model: Mutex<Option<String>>,
    /// The downgrade's notice was given.
    told: AtomicBool,
}

/// A call the router rewrote.
#[derive(Debug, Clone)]
pub struct Routed {
    /// What claude asked for.
    pub requested: String,
    /// What serves it.
    pub to: String,
    pub why: Why,
    /// What a downgrade's share is of: `the session ceiling` or `a spend limit`.
    pub of: &'static str,
}

impl Router {
    pub fn new(routing: Routing, floor: i64, env: Env) -> Router {
        Router { routing, floor, env, main_model: Mutex::new(None), told: AtomicBool::new(false) }
    }

    /// Route one model call: rewrite `req` and say what was done, or leave it as it is (None).
    /// `body` is the request's JSON (decoded when claude compressed it).
    pub fn apply(&self, req: &mut Request, body: &[u8], meter: &Meter, prices: &PriceTable) -> Option<Routed> {
        let mut json: serde_json::Value = serde_json::from_slice(body).ok()?;
        let requested = json.get("model").and_then(serde_json::Value::as_str)?.to_string();
        let agent = req.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("x-claude-code-agent-id"));
        let kind = routing::classify(agent, &json);
        let main = {
            let mut m = self.main_model.lock().unwrap_or_else(|e| e.into_inner());
            if kind == CallKind::Main {
                *m = Some(requested.clone());
            }
            m.clone()
        };
        // The session ceiling's share, or a limit's (the pool's among them), whichever is higher.
        let ceiling_pct = meter.ceiling().filter(|c| c.nanos() > 0).map(|c| {
            let pct = meter.total().nanos() as i128 * 100 / c.nanos() as i128;
            pct.clamp(0, u32::MAX as i128) as u32
        });
        let limit_pct = meter.limits().map(|l| l.highest_pct()).filter(|p| *p > 0);
        let of = if limit_pct > ceiling_pct { "a spend limit" } else { "the session ceiling" };
        let spent_pct = match (ceiling_pct, limit_pct) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let lookup = |k: &str| self.env.get(k).filter(|v| !v.is_empty()).cloned();
        let resolve = |m: &str| prices.resolve(m, &lookup);
        let premium = |m: &str| crate::core::plan::premium(m, &self.env, prices, self.floor).0;
        let facts = routing::Facts {
            kind,
            requested: &requested,
            main_model: main.as_deref(),
            spent_pct,
            premium: &premium,
            resolve: &resolve,
        };
        let route = routing::route(&self.routing, &facts)?;
        let betas = req.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("anthropic-beta")).map(|(_, v)| v.clone());
        match routing::rewrite(&mut json, betas.as_deref(), &route.to) {
            Ok(w) => log::debug!(
                "gate: {} call for {requested} served by {} ({:?}; changed {})",
                kind.as_str(),
                route.to,
                route.why,
                w.changed.join(", ")
            ),
            Err(why) => {
                log::debug!("gate: {} call for {requested} not routed to {}: {why}", kind.as_str(), route.to);
                return None;
            }
        }
        req.body = serde_json::to_vec(&json).ok()?;
        // The body is sent as rewritten, uncompressed.
        req.headers.retain(|(k, _)| !k.eq_ignore_ascii_case("content-encoding"));
        if let Some(b) = betas {
            let kept = routing::betas_for(&b, &route.to);
            for (k, v) in req.headers.iter_mut() {
                if k.eq_ignore_ascii_case("anthropic-beta") {
                    v.clone_from(&kept);
                }
            }
        }
        Some(Routed { requested, to: route.to, why: route.why, of })
    }

    /// The notice for the first call a downgrade served, once, with what switching models cost
    /// in prompt cache written again (that response's cache writes at the served model's rates).
    pub fn downgrade_notice(&self, r: &Routed, usage: &Usage, prices: &PriceTable) -> Option<String> {
        let Why::Downgrade { .. } = r.why else { return None };
        if self.told.swap(true, Ordering::Relaxed) {
            return None;
        }
        let writes =
            Usage { cache_write_5m: usage.cache_write_5m, cache_write_1h: usage.cache_write_1h, ..Usage::default() };
        let cost: Usd = prices.cost(&r.to, &writes, &Default::default()).0;
        let at = self.routing.downgrade_at.unwrap_or(0);
        Some(routing::downgrade_notice(at, r.of, &r.requested, &r.to, Some((writes.cache_write(), cost))))
    }
}
