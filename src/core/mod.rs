//! The pure core: what ccb decides and computes, with no file, environment, clock, thread or
//! socket of its own. Everything here takes its inputs as values and returns its answers as
//! values, so each decision has a table test (and `tests/architecture.rs` fails the build of the
//! suite if a file here reaches for the OS).
//!
//! - money and prices: [`money`], [`pricing`], [`tokens`];
//! - usage decoders for the three sources: [`transcript`] (a transcript line), [`stream`] (the
//!   gate's server-sent events), [`otlp`] (claude's telemetry export);
//! - counting and deciding: [`budget`] (a session's tally), [`policy`] (what each counted call
//!   leads to), [`plan`] (billing mode, payer, class, ceiling), [`exit`] (exit codes and endings);
//! - the user's words: [`args`], [`config`] (parsed, not read), [`human`] (formatting);
//! - reports: [`report`], [`pool`], [`blocks`] (5-hour windows), [`table`] (fitted to a
//!   terminal), [`html`] (one page with charts); the team ledger's settings: [`team`];
//! - ccb's own OpenTelemetry export, built and encoded: [`export`];
//! - what-if repricing, the top of the spend, hints: [`advice`]; which model serves a call,
//!   downgrades and rewrites: [`routing`];
//! - names written down as text (the ledger's columns): [`recorded`], whose enums read back a
//!   name from a newer ccb as `Unknown(name)`, verbatim.

pub mod advice;
pub mod args;
pub mod blocks;
pub mod budget;
pub mod config;
pub mod endpoint;
pub mod exit;
pub mod export;
pub mod html;
pub mod human;
pub mod limits;
pub mod money;
pub mod otlp;
pub mod plan;
pub mod policy;
pub mod pool;
pub mod pricing;
pub mod recorded;
pub mod report;
pub mod routing;
pub mod statusline;
pub mod stream;
pub mod table;
pub mod team;
pub mod tokens;
pub mod transcript;
pub mod typo;
