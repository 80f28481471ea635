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

/// How a session, or one run of it, ended (`end_kind` in the ledger's `sessions` and `runs`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ending {
    /// Claude exited by itself (`exited`), whatever its code.
    Exited,
    /// Claude died of a signal ccb did not send (`signaled`).
    Killed,
    /// ccb stopped the session at its ceiling, or claude ended after the gate refused a call
    /// there (`ceiling`).
    StoppedAtCeiling,
    /// ccb stopped the session because a premium model answered without a reason, with
    /// `opus_without_reason = "stop"` (`policy`).
    StoppedForPolicy,
    /// Refused before launch: nothing ran (`refused`).
    Refused,
    /// ccb was told to stop (TERM, HUP, INT) and stopped the session (`signal`).
    Interrupted,
    /// A name written by a newer ccb, kept verbatim.
    Unknown(String),
}

crate::core::recorded::recorded!(Ending {
    Exited => "exited",
    Killed => "signaled",
    StoppedAtCeiling => "ceiling",
    StoppedForPolicy => "policy",
    Refused => "refused",
    Interrupted => "signal",
});

/// The exit code for an `anyhow::Error`: ours if it carries an [`Exit`], else a launch failure.
pub fn code_of(err: &anyhow::Error) -> i32 {
    err.downcast_ref::<Exit>().map(|e| e.code).unwrap_or(LAUNCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endings_round_trip_and_keep_names_from_the_future() {
        let table = [
            (Ending::Exited, "exited"),
            (Ending::Killed, "signaled"),
            (Ending::StoppedAtCeiling, "ceiling"),
            (Ending::StoppedForPolicy, "policy"),
            (Ending::Refused, "refused"),
            (Ending::Interrupted, "signal"),
            (Ending::Unknown("something-new".into()), "something-new"),
        ];
        for (e, name) in table {
            assert_eq!((e.as_str(), e.to_string()), (name, name.to_string()));
            assert_eq!(Ending::parse(name), e, "{name}");
        }
        assert_eq!(Ending::KNOWN.len(), 6, "every known ending is in the table above");
    }
}
