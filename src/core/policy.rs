//! What each counted call leads to, and what reaching the ceiling does: the session's rules as
//! pure functions. The supervisor hears a response from a source, the meter counts it (and says
//! whether a threshold or the ceiling was crossed), and [`on_counted`] turns that into a list of
//! [`Action`]s, in the order they are to be carried out; the supervisor only carries them out.

use crate::core::budget::Signal;
use crate::core::exit::StopCause;
use crate::core::human;
use crate::core::money::Usd;
use crate::core::plan::PremiumAction;
use crate::core::pricing::{self, Match, PriceTable};

/// A session started without a premium model: what happens if one answers (`/model opus`).
#[derive(Debug, Clone)]
pub struct PremiumGuard {
    /// Record the reason given at the start (it applies from the first premium answer), warn,
    /// or stop (`opus_without_reason = "stop"`): [`crate::core::plan::premium_action`].
    pub action: PremiumAction,
    /// The output rate (nano-dollars per token) from which a model is premium.
    pub floor: i64,
}

/// What the policy remembers from one call to the next.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// A premium model answered already: the guard has spoken (once per session).
    pub premium_answered: bool,
}

/// A response as the meter counted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted<'a> {
    pub model: &'a str,
    /// What the budget said of the new total.
    pub signal: Option<Signal>,
    /// The first response of a model no table prices, and how it was priced instead (never set
    /// for a repriced response: its model was counted before).
    pub unknown_model: Option<Match>,
    /// A factor learned for a model no table knows (see [`crate::core::budget::Added`]).
    pub learned: Option<i64>,
}

/// What to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The ceiling is reached: first of all, since the next paid call cannot wait (see
    /// [`at_ceiling`]).
    ReachCeiling,
    /// Record the response (or its new figure) in the ledger.
    Record,
    /// A threshold was crossed: alert.
    Threshold { pct: u32, spent: Usd, ceiling: Usd },
    /// Tell the user (never over claude's screen).
    Notice(String),
    /// Keep a factor learned for the response's model.
    Learned(i64),
    /// A premium model answered: the reason the session was started with applies now.
    ReasonUsed(String),
    /// End the session.
    Stop(StopCause),
}

/// The actions for a counted call.
pub fn on_counted(
    state: &mut State,
    guard: Option<&PremiumGuard>,
    prices: &PriceTable,
    call: &Counted<'_>,
) -> Vec<Action> {
    let mut out = Vec::new();
    if matches!(call.signal, Some(Signal::Ceiling { .. })) {
        out.push(Action::ReachCeiling);
    }
    out.push(Action::Record);
    if let Some(Signal::Threshold { pct, spent, ceiling }) = call.signal {
        out.push(Action::Threshold { pct, spent, ceiling });
        out.push(Action::Notice(format!("{pct}% of the {ceiling} session ceiling spent ({spent})")));
    }
    if let Some(milli) = call.learned {
        out.push(Action::Learned(milli));
    }
    if let Some(how) = call.unknown_model {
        out.push(Action::Notice(unknown_model(call.model, how)));
    }
    if let Some(guard) = guard {
        if !state.premium_answered && prices.is_premium(call.model, guard.floor) {
            state.premium_answered = true;
            let model = human::excerpt(call.model, human::EXCERPT);
            if let PremiumAction::RecordReason(r) = &guard.action {
                out.push(Action::ReasonUsed(r.clone()));
            } else if guard.action == PremiumAction::Stop {
                out.push(Action::Notice(format!(
                    "'{model}' (a premium model) answered but this session has no reason: stopping it (opus_without_reason = \"stop\")"
                )));
                out.push(Action::Stop(StopCause::OpusWithoutReason));
            } else {
                out.push(Action::Notice(format!(
                    "'{model}' (a premium model) answered but this session has no reason; start premium sessions with --reason"
                )));
            }
        }
    }
    out
}

/// The notice for the first response of a model no table prices, priced as `how` says.
fn unknown_model(model: &str, how: Match) -> String {
    let basis = match how {
        Match::Learned => {
            format!("a rate learned from claude's own figures over the highest {} rates", pricing::family_of(model))
        }
        Match::Family => format!("the highest {} rates", pricing::family_of(model)),
        _ => "the highest rates of all models".to_string(),
    };
    format!(
        "no price for model '{}': priced at {basis}, marked as an estimate; add it to a price file (see `ccb prices`)",
        human::excerpt(model, human::EXCERPT)
    )
}

/// What reaching the ceiling does (a response crossed it, or the gate refused a call). Every
/// way, no further call goes out (the meter refuses them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtCeiling {
    /// Reached before: nothing more to do.
    Already,
    /// Stream-json with the gate: the gate refuses the next call, claude ends its turn on it
    /// and reports the refusal in its `result`, which ends the session.
    AwaitResult,
    /// `on_ceiling = "block"` in an interactive terminal session: claude stays open, showing
    /// the refusals.
    StayOpen,
    /// Stop the session.
    Stop,
}

/// The notice for [`AtCeiling::StayOpen`].
pub const STAYS_OPEN: &str = "session ceiling reached: claude stays open, every further model call is refused";
/// The same, when a spend limit over many sessions was reached.
pub const STAYS_OPEN_AT_LIMIT: &str = "spend limit reached: claude stays open, every further model call is refused";

/// What reaching the ceiling does, given whether it was reached before, whether the session
/// ends on claude's `result` (stream-json with the gate), and whether it may stay open
/// (`on_ceiling = "block"`, a PTY, not print mode).
pub fn at_ceiling(reached_before: bool, ends_on_result: bool, may_stay_open: bool) -> AtCeiling {
    if reached_before {
        AtCeiling::Already
    } else if ends_on_result {
        AtCeiling::AwaitResult
    } else if may_stay_open {
        AtCeiling::StayOpen
    } else {
        AtCeiling::Stop
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::*;
    const D: i64 = crate::core::money::NANOS_PER_USD;

    fn guard(stop: bool, reason: Option<&str>) -> PremiumGuard {
        let prices = PriceTable::newest().unwrap();
        let action = match (reason, stop) {
            (Some(r), _) => PremiumAction::RecordReason(r.to_string()),
            (None, true) => PremiumAction::Stop,
            (None, false) => PremiumAction::Warn,
        };
        PremiumGuard { action, floor: prices.premium_floor("opus") }
    }

    fn call(model: &str, signal: Option<Signal>, unknown: Option<Match>, learned: Option<i64>) -> Counted<'_> {
        Counted { model, signal, unknown_model: unknown, learned }
    }

    #[test]
    fn each_counted_call_leads_to_its_actions_in_order() {
        let prices = PriceTable::newest().unwrap();
        let (ten, five) = (Usd(10 * D), Usd(5 * D));
        let ceiling = Some(Signal::Ceiling { spent: ten, ceiling: ten });
        let half = Some(Signal::Threshold { pct: 50, spent: five, ceiling: ten });
        let half_notice = "50% of the $10.00 session ceiling spent ($5.00)".to_string();
        let warn = "'claude-opus-4-5' (a premium model) answered but this session has no reason; start premium sessions with --reason";
        let stop = "'claude-opus-4-5' (a premium model) answered but this session has no reason: stopping it (opus_without_reason = \"stop\")";
        let unknown = "no price for model 'claude-sonnet-9': priced at the highest sonnet rates, marked as an estimate; add it to a price file (see `ccb prices`)";
        let learned = "no price for model 'claude-sonnet-9': priced at a rate learned from claude's own figures over the highest sonnet rates, marked as an estimate; add it to a price file (see `ccb prices`)";
        let highest = "no price for model 'mystery': priced at the highest rates of all models, marked as an estimate; add it to a price file (see `ccb prices`)";
        let table: Vec<(Counted, Option<PremiumGuard>, Vec<Action>)> = vec![
            // Nothing crossed: record it.
            (call("claude-haiku-4-5", None, None, None), None, vec![Record]),
            // The ceiling comes before recording.
            (call("claude-haiku-4-5", ceiling.clone(), None, None), None, vec![ReachCeiling, Record]),
            // A threshold: record, alert, tell.
            (
                call("claude-haiku-4-5", half.clone(), None, None),
                None,
                vec![Record, Threshold { pct: 50, spent: five, ceiling: ten }, Notice(half_notice.clone())],
            ),
            // A factor learned, a model no table prices (by family, by learned rate, by nothing).
            (
                call("claude-sonnet-9", None, Some(Match::Family), Some(700)),
                None,
                vec![Record, Learned(700), Notice(unknown.into())],
            ),
            (call("claude-sonnet-9", None, Some(Match::Learned), None), None, vec![Record, Notice(learned.into())]),
            (call("mystery", None, Some(Match::Highest), None), None, vec![Record, Notice(highest.into())]),
            // A premium model without a reason: warned, or stopped.
            (call("claude-opus-4-5", None, None, None), Some(guard(false, None)), vec![Record, Notice(warn.into())]),
            (
                call("claude-opus-4-5", None, None, None),
                Some(guard(true, None)),
                vec![Record, Notice(stop.into()), Stop(StopCause::OpusWithoutReason)],
            ),
            // A reason kept for it: it applies now, and nothing is said.
            (
                call("claude-opus-4-5", None, None, None),
                Some(guard(true, Some("review"))),
                vec![Record, ReasonUsed("review".into())],
            ),
            // The guard watches premium models only.
            (call("claude-haiku-4-5", None, None, None), Some(guard(true, None)), vec![Record]),
            // All at once, in order.
            (
                call("claude-opus-4-5", ceiling.clone(), None, None),
                Some(guard(true, None)),
                vec![ReachCeiling, Record, Notice(stop.into()), Stop(StopCause::OpusWithoutReason)],
            ),
        ];
        for (c, g, want) in table {
            let mut st = State::default();
            assert_eq!(on_counted(&mut st, g.as_ref(), &prices, &c), want, "{c:?} {g:?}");
        }
    }

    #[test]
    fn the_premium_guard_speaks_once() {
        let prices = PriceTable::newest().unwrap();
        let mut st = State::default();
        let g = guard(true, None);
        let c = call("claude-opus-4-5", None, None, None);
        assert!(on_counted(&mut st, Some(&g), &prices, &c).contains(&Stop(StopCause::OpusWithoutReason)));
        assert!(st.premium_answered);
        assert_eq!(on_counted(&mut st, Some(&g), &prices, &c), vec![Record]);
    }

    #[test]
    fn reaching_the_ceiling() {
        use AtCeiling::*;
        for (before, on_result, open, want) in [
            (true, false, false, Already),
            (true, true, true, Already),
            (false, true, true, AwaitResult),
            (false, true, false, AwaitResult),
            (false, false, true, StayOpen),
            (false, false, false, Stop),
        ] {
            assert_eq!(at_ceiling(before, on_result, open), want, "{before} {on_result} {open}");
        }
    }
}
