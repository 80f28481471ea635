//! ccb as a library: the pure core (plan, pricing, transcripts, budget, reports, pool) and the
//! parts that touch the OS (supervisor, follower, ledger), for the `ccb` binary, its fuzz
//! targets and its benchmarks.

/// `eprintln!` that never panics: when whoever reads ccb's stderr is gone (an Agent SDK host
/// killed while it pipes stderr), a notice is lost, not the session: ccb goes on and finishes
/// the session and its ledger rows as it would have.
#[macro_export]
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `println!` that never panics: a report piped into `head` ends quietly.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

pub mod alert;
pub mod args;
pub mod budget;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod exit;
pub mod first_party;
pub mod follow;
pub mod gate;
pub mod http;
pub mod human;
pub mod ledger;
pub mod ledger_writer;
pub mod locate;
pub mod meter;
pub mod money;
pub mod orphans;
pub mod paths;
pub mod plan;
pub mod pool;
pub mod pricing;
pub mod procs;
pub mod repair;
pub mod report;
pub mod scan;
pub mod settings;
pub mod stream;
pub mod supervisor;
pub mod telemetry;
pub mod tokens;
pub mod transcript;
pub mod tty;
pub mod warden;
