//! Telling the user things while claude has the screen: a line on stderr in pipe mode, a line
//! above the progress bar in print mode, and a desktop notification (OSC 9) in a full-screen
//! session, placed between claude's escape sequences. Others' notices (the ledger's writer)
//! reach the loop through a [`Notifier`].

use super::progress::Progress;
use super::pumps::OutState;
use super::Ev;
use crate::core::human;
use crate::core::money::Usd;
use std::io::Write;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

/// Notices from outside the session's loop (the ledger's writer): while the session runs they
/// are shown as the loop shows its own (never over claude's screen); before it starts and once it
/// has ended, as a line on stderr. Nothing said in between is lost: a notice is handed over under
/// the lock that the end of the session takes to stop handing them over.
#[derive(Clone, Default)]
pub struct Notifier(Arc<Mutex<Option<mpsc::Sender<Ev>>>>);

impl Notifier {
    pub fn say(&self, text: &str) {
        let loop_tx = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = loop_tx.as_ref() {
            if tx.send(Ev::Source(super::Event::Problem(text.to_string()))).is_ok() {
                return;
            }
        }
        eprint_notice(&human::printable(text));
    }

    pub(super) fn attach(&self, tx: mpsc::Sender<Ev>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
    }

    pub(super) fn detach(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

pub(super) fn eprint_notice(text: &str) {
    crate::note!("ccb: {text}");
}

/// Where the loop's notices go.
pub(super) struct Screen {
    /// The progress line of a print-mode session on a terminal (see [`Progress`]).
    pub bar: Option<Arc<Progress>>,
    pub pty: bool,
    pub out_state: Arc<Mutex<OutState>>,
}

impl Screen {
    pub fn new(progress: bool, pty: bool, label: &str, ceiling: Option<Usd>) -> Screen {
        let bar = (progress && pty).then(|| {
            Arc::new(Progress::new(format!(
                "ccb {label} · $0.00 of {}",
                ceiling.map(|c| c.to_string()).unwrap_or_else(|| "no ceiling".into())
            )))
        });
        Screen { bar, pty, out_state: Arc::new(Mutex::new(OutState { mid_sequence: false, pending: Vec::new() })) }
    }

    /// A notice that does not draw over claude.
    pub fn notice(&self, text: &str) {
        // Notices quote model ids from transcripts and requests: no control character of
        // theirs may reach the terminal.
        let text = human::printable(text);
        if let Some(b) = &self.bar {
            b.notice(&text);
        } else if self.pty {
            let osc = format!("\x1b]9;ccb: {}\x07", text.replace(['\x07', '\x1b'], "")).into_bytes();
            let mut st = self.out_state.lock().unwrap_or_else(|e| e.into_inner());
            if st.mid_sequence {
                st.pending.push(osc);
            } else {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(&osc);
                let _ = out.flush();
            }
        } else {
            eprint_notice(&text);
        }
    }

    /// The progress line, after a counted call.
    pub fn progress(&self, label: &str, total: Usd, ceiling: Option<Usd>, tokens: u64) {
        if let Some(b) = &self.bar {
            b.set(format!(
                "ccb {label} · {total} of {} · {} tokens",
                ceiling.map(|c| c.to_string()).unwrap_or_else(|| "no ceiling".into()),
                human::tokens(tokens)
            ));
        }
    }

    pub fn clear(&self) {
        if let Some(b) = &self.bar {
            b.finish();
        }
    }
}
