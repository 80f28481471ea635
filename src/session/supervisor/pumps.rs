//! The threads that carry bytes and signals: signals to the loop, claude's output to the
//! terminal (placing notices between its escape sequences), the terminal's keys to claude, and
//! claude's stream-json through ccb (to see its `result`).

use super::Ev;
use signal_hook::consts::signal::*;
use signal_hook::iterator::exfiltrator::WithOrigin;
use signal_hook::iterator::{Handle, SignalsInfo};
use signal_hook::low_level::siginfo::Cause;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

/// What the output pump needs to know to place a notice between claude's escape sequences.
pub(super) struct OutState {
    /// Inside an escape sequence or a multi-byte character at the end of the last chunk.
    pub mid_sequence: bool,
    pub pending: Vec<Vec<u8>>,
}

/// Signals to the loop, from now on (so none is lost between spawn and the loop).
pub(super) fn signals(tx: &mpsc::Sender<Ev>) -> anyhow::Result<Handle> {
    let mut signals = SignalsInfo::<WithOrigin>::new([SIGCHLD, SIGWINCH, SIGINT, SIGQUIT, SIGTERM, SIGHUP, SIGCONT])?;
    let handle = signals.handle();
    let tx = tx.clone();
    std::thread::Builder::new().name("ccb-signals".into()).spawn(move || {
        for o in signals.forever() {
            let from_user = matches!(o.cause, Cause::Sent(_));
            if tx.send(Ev::Signal { sig: o.signal, from_user }).is_err() {
                break;
            }
        }
    })?;
    Ok(handle)
}

/// The PTY's pumps: master → stdout (EIO on the master means the slave side closed: EOF), and
/// stdin → master, keys and all (Ctrl-C, Ctrl-Z, Esc are bytes in raw mode).
pub(super) fn terminal(
    master: &File,
    tx: &mpsc::Sender<Ev>,
    state: Arc<Mutex<OutState>>,
    bar: Option<Arc<super::progress::Progress>>,
) -> anyhow::Result<()> {
    let mut reader = master.try_clone()?;
    let tx = tx.clone();
    std::thread::Builder::new().name("ccb-output".into()).spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        let stdout = std::io::stdout();
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut out = stdout.lock();
            let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
            match &bar {
                Some(b) => b.claude_output(&mut out, &buf[..n]),
                None => {
                    let _ = out.write_all(&buf[..n]);
                    let _ = out.flush();
                }
            }
            st.mid_sequence = ends_mid_sequence(&buf[..n]);
            if !st.mid_sequence && !st.pending.is_empty() {
                for p in st.pending.drain(..) {
                    let _ = out.write_all(&p);
                }
                let _ = out.flush();
            }
        }
        let _ = tx.send(Ev::OutputDone);
    })?;
    let mut writer = master.try_clone()?;
    std::thread::Builder::new().name("ccb-input".into()).spawn(move || {
        // SAFETY: fd 0 stays open for the life of the process; ManuallyDrop keeps it open.
        let mut stdin = std::mem::ManuallyDrop::new(unsafe { File::from_raw_fd(libc::STDIN_FILENO) });
        let mut buf = [0u8; 8192];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if writer.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
    })?;
    Ok(())
}

/// Pass claude's stream-json output on, line by line, and say when a `result` has gone out.
pub(super) fn stream_json(out: std::process::ChildStdout, tx: &mpsc::Sender<Ev>) -> anyhow::Result<()> {
    let tx = tx.clone();
    std::thread::Builder::new().name("ccb-stream-json".into()).spawn(move || pass_stream_json(out, &tx))?;
    Ok(())
}

fn pass_stream_json(out: std::process::ChildStdout, tx: &mpsc::Sender<Ev>) {
    use std::io::BufRead;
    let mut r = std::io::BufReader::with_capacity(64 * 1024, out);
    let mut line = Vec::new();
    let stdout = std::io::stdout();
    loop {
        line.clear();
        match r.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let mut o = stdout.lock();
        let _ = o.write_all(&line);
        let _ = o.flush();
        drop(o);
        if line.starts_with(b"{\"type\":\"result\"") {
            let _ = tx.send(Ev::Result);
        }
    }
}

/// Does this chunk end inside an escape sequence or a multi-byte UTF-8 character? A notice
/// written there would corrupt claude's display.
fn ends_mid_sequence(b: &[u8]) -> bool {
    // A UTF-8 lead byte without all its continuation bytes.
    let tail = &b[b.len().saturating_sub(4)..];
    for (i, &c) in tail.iter().enumerate().rev() {
        if c & 0xC0 == 0x80 {
            continue;
        }
        let need = if c >= 0xF0 {
            4
        } else if c >= 0xE0 {
            3
        } else if c >= 0xC0 {
            2
        } else {
            1
        };
        if tail.len() - i < need {
            return true;
        }
        break;
    }
    // The last ESC, if any, and whether its sequence ended.
    let Some(esc) = memchr::memrchr(0x1b, b) else {
        return false;
    };
    let seq = &b[esc + 1..];
    match seq.first() {
        None => true,
        Some(b'[') => !seq[1..].iter().any(|&c| (0x40..=0x7e).contains(&c)),
        Some(b']') | Some(b'P') | Some(b'_') | Some(b'^') => {
            !seq.contains(&0x07) && !seq.windows(2).any(|w| w == b"\x1b\\")
        }
        Some(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::ends_mid_sequence;

    #[test]
    fn knows_when_a_chunk_ends_mid_sequence() {
        for (b, mid) in [
            (&b"hello"[..], false),
            (b"\x1b[31mred\x1b[0m", false),
            (b"text\x1b[3", true),
            (b"text\x1b", true),
            (b"\x1b]0;title", true),
            (b"\x1b]0;title\x07", false),
            ("é".as_bytes(), false),
            (&"é".as_bytes()[..1], true),
            (&"日本".as_bytes()[..5], true),
        ] {
            assert_eq!(ends_mid_sequence(b), mid, "{b:?}");
        }
    }
}
