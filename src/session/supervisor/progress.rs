//! The print-mode progress line (`ccb sonnet · $0.05 of $2.00 · 12.3k tokens`), drawn on the
//! terminal's row below claude's output and redrawn in place.
//!
//! Two facts of a print-mode session decide how. The user's terminal is raw (claude runs on a
//! PTY whose keys pass through), so a newline does not return the cursor to the first column:
//! every line ccb ends is ended with `\r\n`. And claude's output may stop mid-row ("Execution
//! error" at a stop, a `^C` echo): a line drawn there would start mid-row, wrap, and be cleared
//! only in part, leaving copies on the screen. So the line is drawn only while claude's cursor
//! is at the start of a row, never wider than the terminal less one column (no wrap), cleared
//! before claude writes, and a notice that comes while claude is mid-row starts a row of its
//! own.

use std::io::Write;
use std::sync::Mutex;

/// The progress line and what it knows of claude's cursor.
pub(super) struct Progress(Mutex<State>);

struct State {
    msg: String,
    /// The line is on the screen (the cursor is at its end, on its row).
    shown: bool,
    /// Where claude's output left the cursor: at the start of a row, or not.
    at_row_start: bool,
    /// An escape sequence claude's output began and has not ended.
    esc: Esc,
    finished: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Esc {
    None,
    /// ESC seen.
    Start,
    /// ESC [ … up to a final byte.
    Csi,
    /// ESC ] (or P, _, ^) … up to BEL or ESC \.
    Str,
    /// ESC inside a string: `\` ends it.
    StrEnd,
    /// ESC ( and the like: one more byte.
    One,
}

impl Progress {
    pub fn new(msg: String) -> Progress {
        let p = Progress(Mutex::new(State { msg, shown: false, at_row_start: true, esc: Esc::None, finished: false }));
        {
            let mut st = p.lock();
            draw(&mut st, &mut std::io::stderr().lock());
        }
        p
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Claude's output, written to `out` with the line out of its way, and the line back when
    /// claude's cursor is at the start of a row.
    pub fn claude_output(&self, out: &mut impl Write, bytes: &[u8]) {
        let mut st = self.lock();
        let mut err = std::io::stderr().lock();
        erase(&mut st, &mut err);
        let _ = out.write_all(bytes);
        let _ = out.flush();
        track(&mut st, bytes);
        draw(&mut st, &mut err);
    }

    /// A new message (after a counted call).
    pub fn set(&self, msg: String) {
        let mut st = self.lock();
        if st.msg == msg {
            return;
        }
        st.msg = msg;
        let mut err = std::io::stderr().lock();
        erase(&mut st, &mut err);
        draw(&mut st, &mut err);
    }

    /// A notice on a row of its own, above the line.
    pub fn notice(&self, text: &str) {
        let mut st = self.lock();
        let mut err = std::io::stderr().lock();
        erase(&mut st, &mut err);
        if !st.at_row_start {
            let _ = err.write_all(b"\r\n");
        }
        let _ = write!(err, "ccb: {text}\r\n");
        // Claude goes on below the notice.
        st.at_row_start = true;
        draw(&mut st, &mut err);
    }

    /// The session is over: the line goes, and what ccb says next starts on a row of its own.
    pub fn finish(&self) {
        let mut st = self.lock();
        let mut err = std::io::stderr().lock();
        erase(&mut st, &mut err);
        if !st.at_row_start {
            let _ = err.write_all(b"\r\n");
            st.at_row_start = true;
        }
        st.finished = true;
        let _ = err.flush();
    }
}

fn erase(st: &mut State, err: &mut impl Write) {
    if st.shown {
        let _ = err.write_all(b"\r\x1b[2K");
        let _ = err.flush();
        st.shown = false;
    }
}

fn draw(st: &mut State, err: &mut impl Write) {
    if st.finished || st.shown || !st.at_row_start || st.esc != Esc::None {
        return;
    }
    let cols = crate::sys::tty::window_size(libc::STDERR_FILENO).map(|w| w.ws_col as usize).unwrap_or(80);
    let line = crate::core::human::head_chars(&st.msg, cols.saturating_sub(1));
    let _ = err.write_all(line.as_bytes());
    let _ = err.flush();
    st.shown = true;
}

/// Follow claude's cursor through `bytes`: at the start of a row after `\n` or `\r`, not after
/// anything printed; escape sequences move nothing that matters here.
fn track(st: &mut State, bytes: &[u8]) {
    for &b in bytes {
        st.esc = match (st.esc, b) {
            (Esc::None, 0x1b) => Esc::Start,
            (Esc::None, b'\n' | b'\r') => {
                st.at_row_start = true;
                Esc::None
            }
            (Esc::None, c) if c >= 0x20 && c != 0x7f => {
                st.at_row_start = false;
                Esc::None
            }
            (Esc::None, _) => Esc::None,
            (Esc::Start, b'[') => Esc::Csi,
            (Esc::Start, b']' | b'P' | b'_' | b'^') => Esc::Str,
            (Esc::Start, b'(' | b')' | b'*' | b'+' | b'#' | b'%') => Esc::One,
            (Esc::Start, _) => Esc::None,
            (Esc::Csi, c) if (0x40..=0x7e).contains(&c) => Esc::None,
            (Esc::Csi, _) => Esc::Csi,
            (Esc::Str, 0x07) => Esc::None,
            (Esc::Str, 0x1b) => Esc::StrEnd,
            (Esc::Str, _) => Esc::Str,
            (Esc::StrEnd, b'\\') => Esc::None,
            (Esc::StrEnd, _) => Esc::Str,
            (Esc::One, _) => Esc::None,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State { msg: String::new(), shown: false, at_row_start: true, esc: Esc::None, finished: false }
    }

    #[test]
    fn follows_claudes_cursor_through_text_and_escapes() {
        for (bytes, at_start) in [
            (&b"done\n"[..], true),
            (b"Execution error", false),
            (b"text\r\n\x1b[?25h", true),
            (b"\x1b]0;title\x07", true),
            (b"\x1b]0;title\x1b\\", true),
            (b"\x1b(B\x0f", true),
            (b"^C", false),
            (b"a\x1b[2K\r", true),
            ("ünï\n".as_bytes(), true),
            ("ünï".as_bytes(), false),
        ] {
            let mut st = state();
            track(&mut st, bytes);
            assert_eq!(
                (st.at_row_start, st.esc == Esc::None),
                (at_start, true),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        // A sequence split between two reads.
        let mut st = state();
        track(&mut st, b"\x1b[?10");
        assert!(st.esc == Esc::Csi && st.at_row_start);
        track(&mut st, b"06l");
        assert!(st.esc == Esc::None && st.at_row_start, "the sequence's bytes print nothing");
    }

    #[test]
    fn the_line_waits_for_claude_to_end_its_row() {
        let mut st = state();
        st.msg = "ccb sonnet · $0.01 of $1.00".into();
        let mut out = Vec::new();
        track(&mut st, b"Execution error");
        draw(&mut st, &mut out);
        assert!(out.is_empty() && !st.shown, "not drawn mid-row");
        track(&mut st, b"\n");
        draw(&mut st, &mut out);
        assert!(st.shown);
        assert!(String::from_utf8_lossy(&out).starts_with("ccb sonnet · $0.01"));
        erase(&mut st, &mut out);
        assert!(out.ends_with(b"\r\x1b[2K") && !st.shown);
    }
}
