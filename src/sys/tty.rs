//! The user's terminal: raw mode held by a guard that restores the saved settings in `Drop`, so
//! every way out (return, early exit, panic) gives the shell back its terminal as it was.

use nix::sys::termios::{self, SetArg, Termios};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::Mutex;

/// The settings to restore, reachable from the panic hook and from exit paths that skip `Drop`.
static SAVED: Mutex<Option<(RawFd, Termios)>> = Mutex::new(None);

pub fn is_tty(fd: RawFd) -> bool {
    // SAFETY: isatty only inspects the descriptor number.
    unsafe { libc::isatty(fd) == 1 }
}

fn fd(raw: RawFd) -> BorrowedFd<'static> {
    // SAFETY: the standard descriptors stay open for the life of the process.
    unsafe { BorrowedFd::borrow_raw(raw) }
}

/// Restore the saved terminal settings, if raw mode is on. Idempotent.
pub fn restore() {
    let saved = SAVED.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some((raw, t)) = saved {
        let _ = termios::tcsetattr(fd(raw), SetArg::TCSADRAIN, &t);
    }
}

/// Raw mode on the terminal at `raw` until dropped.
pub struct RawGuard {
    raw: RawFd,
    orig: Termios,
}

impl RawGuard {
    pub fn enter(raw: RawFd) -> nix::Result<RawGuard> {
        let orig = termios::tcgetattr(fd(raw))?;
        *SAVED.lock().unwrap_or_else(|e| e.into_inner()) = Some((raw, orig.clone()));
        let g = RawGuard { raw, orig };
        g.set_raw()?;
        Ok(g)
    }

    pub fn set_raw(&self) -> nix::Result<()> {
        let mut t = self.orig.clone();
        termios::cfmakeraw(&mut t);
        *SAVED.lock().unwrap_or_else(|e| e.into_inner()) = Some((self.raw, self.orig.clone()));
        termios::tcsetattr(fd(self.raw), SetArg::TCSANOW, &t)
    }

    /// Back to the user's settings (before ccb stops itself for job control).
    pub fn suspend(&self) {
        let _ = termios::tcsetattr(fd(self.raw), SetArg::TCSADRAIN, &self.orig);
    }
}

impl Drop for RawGuard {
    fn drop(&mut self) {
        restore();
    }
}

/// Restore the terminal before the default panic message, so it is readable and the shell works.
///
/// A panic on the main thread (where the session loop runs) ends ccb, and with it the meter and
/// the ceiling: nothing of the session may outlive it. Claude gets its parent-death signal, but
/// its tools and anything it double-forked (reparented to ccb, the subreaper) would run on
/// under init, so they are ended here, before ccb goes.
pub fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        if std::thread::current().name() == Some("main") {
            crate::sys::procs::end_all_descendants();
        }
        default(info);
    }));
}

pub fn window_size(raw: RawFd) -> Option<libc::winsize> {
    // SAFETY: winsize is plain data; all zeroes is a valid value.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes a winsize into the pointed-to struct, which lives on our stack.
    let r = unsafe { libc::ioctl(raw, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_col > 0).then_some(ws)
}

pub fn set_window_size(master: &impl AsRawFd, ws: &libc::winsize) {
    // SAFETY: TIOCSWINSZ reads a winsize from the pointer; the kernel then signals SIGWINCH to the
    // pty's foreground process group.
    unsafe {
        libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, ws);
    }
}

/// Ask the user at the terminal a yes/no question (on stderr), reading one line from stdin:
/// true only for an answer starting with `y`. Callers ask only when stdin and stderr are
/// terminals.
pub fn ask_yes(question: &str) -> bool {
    use std::io::{BufRead, Write};
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "{question} [y/N] ");
    let _ = err.flush();
    drop(err);
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        return false;
    }
    line.trim_start().to_ascii_lowercase().starts_with('y')
}
