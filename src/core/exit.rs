//! ccb's own exit codes, in one place (documented in the README).
//!
//! Everything else ccb exits with is claude's own code, or 128 + N when claude died of signal N.
//! [`ending`] decides, from how a session ended, both the code and the word the ledger records.

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
    /// ccb stopped the session at a spend limit over many sessions, or claude ended after the
    /// gate refused a call there (`limit`).
    StoppedAtLimit,
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
    StoppedAtLimit => "limit",
    StoppedForPolicy => "policy",
    Refused => "refused",
    Interrupted => "signal",
});

/// Why ccb ended a session itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopCause {
    Ceiling,
    /// An Opus answer in a session without an Opus reason, with `opus_without_reason = "stop"`.
    OpusWithoutReason,
    /// ccb received this signal (TERM, HUP).
    Signal(i32),
}

/// How claude ended: its exit code, or the signal that killed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildEnd {
    Code(i32),
    Signal(i32),
}

impl ChildEnd {
    /// The shell's convention: the code, or 128 + the signal number.
    pub fn exit_code(self) -> i32 {
        match self {
            ChildEnd::Code(c) => c,
            ChildEnd::Signal(s) => 128 + s,
        }
    }
}

/// How a session's ending maps to ccb's exit code and to the ending the ledger records
/// (`ceiling`, `policy`, `signal`, `exited`, `signaled`): a stop of ccb's own says both; a
/// session that ended on its own after the gate refused a call at the ceiling (or, with
/// `on_ceiling = "block"`, that the user ended) exits [`CEILING`] but ended as claude did;
/// otherwise ccb exits as claude did.
pub fn ending(stopped: Option<StopCause>, ceiling_reached: bool, claude: ChildEnd) -> (i32, Ending) {
    match stopped {
        Some(StopCause::Ceiling) => (CEILING, Ending::StoppedAtCeiling),
        Some(StopCause::OpusWithoutReason) => (POLICY, Ending::StoppedForPolicy),
        Some(StopCause::Signal(sig)) => (128 + sig, Ending::Interrupted),
        None => {
            let code = if ceiling_reached { CEILING } else { claude.exit_code() };
            match claude {
                ChildEnd::Code(_) => (code, Ending::Exited),
                ChildEnd::Signal(_) => (code, Ending::Killed),
            }
        }
    }
}

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
            (Ending::StoppedAtLimit, "limit"),
            (Ending::StoppedForPolicy, "policy"),
            (Ending::Refused, "refused"),
            (Ending::Interrupted, "signal"),
            (Ending::Unknown("something-new".into()), "something-new"),
        ];
        for (e, name) in table {
            assert_eq!((e.as_str(), e.to_string()), (name, name.to_string()));
            assert_eq!(Ending::parse(name), e, "{name}");
        }
        assert_eq!(Ending::KNOWN.len(), 7, "every known ending is in the table above");
    }

    #[test]
    fn each_ending_has_its_code_and_its_word() {
        use ChildEnd::{Code, Signal as Killed};
        use StopCause::*;
        let table: &[(Option<StopCause>, bool, ChildEnd, i32, &str)] = &[
            // ccb stopped the session: its own code and word, whatever claude died of.
            (Some(Ceiling), true, Killed(15), CEILING, "ceiling"),
            (Some(Ceiling), true, Code(0), CEILING, "ceiling"),
            (Some(OpusWithoutReason), false, Killed(9), POLICY, "policy"),
            (Some(Signal(15)), false, Code(143), 143, "signal"),
            (Some(Signal(1)), true, Code(0), 129, "signal"),
            // Claude ended on its own: its code, unless the ceiling was reached.
            (None, false, Code(0), 0, "exited"),
            (None, false, Code(7), 7, "exited"),
            (None, false, Killed(2), 130, "signaled"),
            (None, true, Code(0), CEILING, "exited"),
            (None, true, Killed(2), CEILING, "signaled"),
        ];
        for &(stopped, reached, claude, code, word) in table {
            let (c, e) = ending(stopped, reached, claude);
            assert_eq!((c, e.as_str()), (code, word), "{stopped:?} {reached} {claude:?}");
        }
    }
}
