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

pub mod cmd;
pub mod core;
pub mod ledger;
pub mod scan;
pub mod session;
pub mod sys;
