//! ccb's own exit codes, in one place (documented in the README).
//!
//! Everything else ccb exits with is claude's own code, or 128 + N when claude died of signal N.

use std::fmt;

/// An error that ends ccb with a documented exit code and one line on stderr.
#[derive(Debug)]
pub struct Exit {
    pub code: i32,
    pub message: String,
}

/// Bad usage or configuration: nothing was launched.
pub const USAGE: i32 = 2;
/// The session ceiling was reached and ccb stopped the session.
pub const CEILING: i32 = 3;
/// Refused by policy before launch (nothing was spent), or stopped for policy mid-session.
pub const POLICY: i32 = 4;
/// ccb could not start claude or hit an internal error before it ran.
pub const LAUNCH: i32 = 5;
/// `ccb ledger repair` could not read or write the ledger (locked, read-only, full, damaged):
/// nothing was changed. (`ccb pool check` exits 1 too, for a threshold reached.)
pub const LEDGER_FAULT: i32 = 1;

impl Exit {
    pub fn usage(message: impl Into<String>) -> Self {
        Exit { code: USAGE, message: message.into() }
    }
    pub fn policy(message: impl Into<String>) -> Self {
        Exit { code: POLICY, message: message.into() }
    }
    pub fn launch(message: impl Into<String>) -> Self {
        Exit { code: LAUNCH, message: message.into() }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

/// The exit code for an `anyhow::Error`: ours if it carries an [`Exit`], else a launch failure.
pub fn code_of(err: &anyhow::Error) -> i32 {
    err.downcast_ref::<Exit>().map(|e| e.code).unwrap_or(LAUNCH)
}
