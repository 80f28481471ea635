//! The integration tests, as one test binary (as ripgrep does: `autotests = false` in Cargo.toml).
//!
//! Each file beside this one is a module, so a test is named `<file>::<test>`
//! (`scripts/test ceiling::` runs tests/ceiling.rs; `scripts/test gate::` tests/gate.rs). The
//! helpers in `support/` (the mock API, a PTY, a throwaway claude home) and `hardening/` (process
//! trees, tiny file systems, the ledger as SQLite sees it) compile once, not once per file.
//! nextest still runs every test in a process of its own, so tests that start the same things at
//! once do not share statics; under plain `cargo test` they share one process and run as threads.
//!
//! A new test file is a new `mod` line here: cargo no longer finds test files by itself.

// Tests report what they measured and why they skipped on stdout and stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod hardening;
mod support;

mod architecture;
mod bad_input;
mod bench_smoke;
mod ceiling;
mod ci_recipes;
mod first_party;
mod first_run;
mod gate;
mod hostile;
mod interactive;
mod launcher;
mod ledger_faults;
mod ledger_reports;
mod limits;
mod logging;
mod mock_smoke;
mod orphans;
mod otlp;
mod prices;
mod reliability;
mod resume;
mod robustness;
mod routing;
mod sdk;
mod secrets;
mod spend_reports;
mod statusline;
mod team;
mod usage_views;
