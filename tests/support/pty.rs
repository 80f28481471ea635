//! A pseudo-terminal harness: run a command as if a user sat at a terminal, type at it, resize
//! it, read its screen, and check that it leaves the terminal's settings as it found them.
//!
//! ```ignore
//! let mut t = Pty::spawn(&mut cmd, 24, 80);
//! let before = t.termios();
//! t.expect("ready", Duration::from_secs(10));
//! t.send(b"hello\r");
//! let status = t.wait(Duration::from_secs(10));
//! assert_eq!(t.termios(), before);
//! ```
//!
//! The harness keeps its own descriptor of the slave side open for the whole run, so the
//! terminal (and its settings) outlives the child: a pty whose last slave descriptor is closed
//! has its settings reset by the kernel, which would hide a child that forgot to restore them.
//! All descriptors are opened close-on-exec, so tests spawning in parallel do not leak them into
//! each other's children.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The settings of a terminal, as `tcgetattr` reports them, comparable field by field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TermiosSnapshot {
    pub iflag: libc::tcflag_t,
    pub oflag: libc::tcflag_t,
    pub cflag: libc::tcflag_t,
    pub lflag: libc::tcflag_t,
    pub line: libc::cc_t,
    pub cc: Vec<libc::cc_t>,
    pub ispeed: libc::speed_t,
    pub ospeed: libc::speed_t,
}

impl TermiosSnapshot {
    pub fn of(fd: RawFd) -> TermiosSnapshot {
        // SAFETY: tcgetattr fills the struct we pass; cfget*speed only read it.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            assert_eq!(libc::tcgetattr(fd, &mut t), 0, "tcgetattr: {}", std::io::Error::last_os_error());
            TermiosSnapshot {
                iflag: t.c_iflag,
                oflag: t.c_oflag,
                cflag: t.c_cflag,
                lflag: t.c_lflag,
                line: t.c_line,
                cc: t.c_cc.to_vec(),
                ispeed: libc::cfgetispeed(&t),
                ospeed: libc::cfgetospeed(&t),
            }
        }
    }

    /// Canonical mode with echo: a terminal as a shell leaves it (not raw).
    pub fn is_cooked(&self) -> bool {
        self.lflag & libc::ICANON != 0 && self.lflag & libc::ECHO != 0
    }
}

/// What the reader thread has collected.
struct Output {
    bytes: Vec<u8>,
    /// The same bytes fed to a terminal emulator: what a user would see. A TUI that redraws
    /// only the cells that changed (as Claude Code's renderer does) leaves words split across
    /// cursor moves in the byte stream; the rendered screen has them whole.
    term: vt100::Parser,
    /// The rendered screen at each offset handed out by [`Pty::mark`], so that a wait "after
    /// the mark" does not match text that was already on the screen then.
    marks: Vec<(usize, String)>,
    /// Incremented each time a poll of the master found nothing to read for its whole timeout.
    idle_polls: u64,
}

struct Shared {
    out: Mutex<Output>,
    changed: Condvar,
    stop: AtomicBool,
}

/// A child running on the slave side of a new pty, with its controlling terminal there.
pub struct Pty {
    master: File,
    /// The harness's own slave descriptor: keeps the terminal alive and lets us read its settings.
    slave: OwnedFd,
    child: Option<Child>,
    pid: i32,
    status: Option<ExitStatus>,
    shared: Arc<Shared>,
    reader: Option<JoinHandle<()>>,
    /// What the test ran, for messages.
    pub label: String,
    initial: TermiosSnapshot,
}

fn cvt(r: libc::c_int, what: &str) -> libc::c_int {
    assert!(r >= 0, "{what}: {}", std::io::Error::last_os_error());
    r
}

fn winsize(rows: u16, cols: u16) -> libc::winsize {
    libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 }
}

/// Open a new pty pair, both ends close-on-exec, the slave not made anyone's controlling tty.
fn open_pair(rows: u16, cols: u16) -> (File, OwnedFd) {
    // SAFETY: plain libc calls on descriptors we own; ptsname_r writes into our buffer.
    unsafe {
        let m = cvt(libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC), "posix_openpt");
        let master = File::from_raw_fd(m);
        cvt(libc::grantpt(m), "grantpt");
        cvt(libc::unlockpt(m), "unlockpt");
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(m, name.as_mut_ptr(), name.len()), 0, "ptsname_r");
        let s = cvt(libc::open(name.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC), "open pty slave");
        let slave = OwnedFd::from_raw_fd(s);
        let ws = winsize(rows, cols);
        cvt(libc::ioctl(m, libc::TIOCSWINSZ, &ws), "TIOCSWINSZ");
        (master, slave)
    }
}

impl Pty {
    /// Start `cmd` with the slave as its stdin, stdout, stderr and controlling terminal (in a
    /// new session), in a `rows`×`cols` window.
    pub fn spawn(cmd: &mut Command, rows: u16, cols: u16) -> Pty {
        let (master, slave) = open_pair(rows, cols);
        // The settings the terminal had before anything ran on it: a snapshot taken after the
        // spawn could already see ccb's raw mode on a busy machine.
        let initial = TermiosSnapshot::of(slave.as_raw_fd());
        let dup = || Stdio::from(slave.try_clone().expect("dup pty slave"));
        cmd.stdin(dup()).stdout(dup()).stderr(dup());
        // SAFETY: setsid and ioctl are async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let label = format!("{cmd:?}");
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {label}: {e}"));
        let pid = child.id() as i32;
        let shared = Arc::new(Shared {
            out: Mutex::new(Output {
                bytes: Vec::new(),
                term: vt100::Parser::new(rows, cols, 0),
                marks: Vec::new(),
                idle_polls: 0,
            }),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let reader = {
            let fd = master.as_raw_fd();
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("pty-reader".into())
                .spawn(move || read_loop(fd, &shared))
                .expect("spawn pty reader")
        };
        Pty { master, slave, child: Some(child), pid, status: None, shared, reader: Some(reader), label, initial }
    }

    /// The terminal's settings before the child was started.
    pub fn initial_termios(&self) -> TermiosSnapshot {
        self.initial.clone()
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The terminal's current settings (read on the harness's own slave descriptor).
    pub fn termios(&self) -> TermiosSnapshot {
        TermiosSnapshot::of(self.slave.as_raw_fd())
    }

    /// The window size the terminal has now: (rows, cols).
    pub fn size(&self) -> (u16, u16) {
        let mut ws = winsize(0, 0);
        // SAFETY: TIOCGWINSZ fills our struct.
        cvt(unsafe { libc::ioctl(self.slave.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) }, "TIOCGWINSZ");
        (ws.ws_row, ws.ws_col)
    }

    /// Type bytes at the terminal (as a user would: keys arrive on the master side).
    pub fn send(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).expect("write to pty master");
        self.master.flush().expect("flush pty master");
    }

    /// Type `text` and wait until it shows on the screen, then press Enter (sent separately, so
    /// a TUI does not take text and Enter together for a paste).
    pub fn type_line(&mut self, text: &str, timeout: Duration) {
        let from = self.mark();
        self.send(text.as_bytes());
        self.expect_from(from, text, timeout);
        std::thread::sleep(Duration::from_millis(50));
        self.send(b"\r");
    }

    /// Resize the window: the kernel signals SIGWINCH to the terminal's foreground group.
    pub fn resize(&mut self, rows: u16, cols: u16) {
        let ws = winsize(rows, cols);
        // SAFETY: TIOCSWINSZ reads our struct.
        cvt(unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) }, "TIOCSWINSZ");
        lock(&self.shared.out).term.screen_mut().set_size(rows, cols);
    }

    /// Every byte the child wrote so far, escapes and all.
    pub fn raw_output(&self) -> Vec<u8> {
        lock(&self.shared.out).bytes.clone()
    }

    /// The output so far as text, escape sequences stripped (see [`strip_ansi`]).
    pub fn screen(&self) -> String {
        strip_ansi(&self.raw_output())
    }

    /// The screen as a terminal would show it now, rendered by a terminal emulator.
    pub fn rendered(&self) -> String {
        lock(&self.shared.out).term.screen().contents()
    }

    /// Wait until `want` holds for the output text (escapes stripped) or for the rendered
    /// screen; returns the text that matched. Panics on timeout, showing both, after killing
    /// the child and its descendants.
    pub fn expect(&mut self, want: impl Matcher, timeout: Duration) -> String {
        self.expect_from(0, want, timeout)
    }

    /// [`expect`](Self::expect) on the output after the first `offset` raw bytes, or on a
    /// rendered screen that matches when the screen at the mark did not (use
    /// [`mark`](Self::mark) to take an offset).
    pub fn expect_from(&mut self, offset: usize, want: impl Matcher, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut out = lock(&self.shared.out);
        let before = match offset {
            0 => None,
            _ => out.marks.iter().find(|(at, _)| *at == offset).map(|(_, screen)| screen.clone()),
        };
        loop {
            let text = strip_ansi(&out.bytes[offset.min(out.bytes.len())..]);
            if want.matches(&text) {
                return text;
            }
            let screen = out.term.screen().contents();
            // An offset that did not come from `mark` has no screen to compare with: the byte
            // stream alone decides.
            let fresh = offset == 0 || before.as_ref().is_some_and(|b| !want.matches(b));
            if fresh && want.matches(&screen) {
                return screen;
            }
            let now = Instant::now();
            if now >= deadline {
                drop(out);
                let desc = want.describe();
                self.fail(&format!("timed out after {timeout:?} waiting for {desc}"));
            }
            out = self
                .shared
                .changed
                .wait_timeout(out, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    /// How many raw bytes have arrived so far (remembering the screen as it is now).
    pub fn mark(&self) -> usize {
        let mut out = lock(&self.shared.out);
        let at = out.bytes.len();
        let screen = out.term.screen().contents();
        out.marks.retain(|(m, _)| *m != at);
        out.marks.push((at, screen));
        at
    }

    /// Wait until the reader has seen the master stay quiet for one whole poll after this call,
    /// so that everything written before now (e.g. by a child that has exited) is collected.
    pub fn settle(&self) {
        let mut out = lock(&self.shared.out);
        let start = out.idle_polls;
        let deadline = Instant::now() + Duration::from_secs(5);
        while out.idle_polls < start + 2 && Instant::now() < deadline {
            out = self
                .shared
                .changed
                .wait_timeout(out, Duration::from_millis(50))
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    /// The child's exit status if it has exited (reaping it).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Some(c) = self.child.as_mut() {
                self.status = c.try_wait().expect("wait for child");
            }
        }
        self.status
    }

    /// Wait for the child to exit; then collect the rest of its output. Panics on timeout.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_wait() {
                self.settle();
                return s;
            }
            if Instant::now() >= deadline {
                self.fail(&format!("did not exit within {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Kill the child and everything below it (if it is still running), then panic with the
    /// screen.
    pub fn fail(&mut self, why: &str) -> ! {
        self.kill_tree();
        self.settle();
        panic!(
            "{}: {why}\n--- output (escapes stripped) ---\n{}\n--- rendered screen ---\n{}\n--- end of screen ---",
            self.label,
            self.screen(),
            self.rendered()
        );
    }

    /// SIGKILL the child and all its descendants (found in /proc before the kill), and reap it.
    pub fn kill_tree(&mut self) {
        if self.try_wait().is_some() {
            return;
        }
        kill_tree(self.pid);
        if let Some(c) = self.child.as_mut() {
            self.status = c.wait().ok();
        }
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        self.kill_tree();
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read_loop(fd: RawFd, shared: &Shared) {
    let mut buf = vec![0u8; 64 * 1024];
    while !shared.stop.load(Ordering::SeqCst) {
        let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one pollfd on our stack.
        let r = unsafe { libc::poll(&mut p, 1, 20) };
        if r < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            break;
        }
        if r == 0 {
            lock(&shared.out).idle_polls += 1;
            shared.changed.notify_all();
            continue;
        }
        // SAFETY: reading into our own buffer; the descriptor outlives this thread (joined in
        // Drop before the master is closed).
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if matches!(e.kind(), std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock) {
                continue;
            }
            // EIO: no slave open (cannot happen while the harness holds one).
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        if n == 0 {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        {
            let mut out = lock(&shared.out);
            out.bytes.extend_from_slice(&buf[..n as usize]);
            out.term.process(&buf[..n as usize]);
        }
        shared.changed.notify_all();
    }
}

/// SIGKILL `root` and every descendant of it.
pub fn kill_tree(root: i32) {
    let mut pids = descendants(root);
    pids.push(root);
    for p in pids {
        // SAFETY: kill takes plain integers.
        unsafe {
            libc::kill(p, libc::SIGKILL);
        }
    }
}

/// Every descendant of `root` now (not `root` itself), from the parent links in /proc.
pub fn descendants(root: i32) -> Vec<i32> {
    let mut children: std::collections::HashMap<i32, Vec<i32>> = Default::default();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else { continue };
        let ppid = stat[close + 1..].split_ascii_whitespace().nth(1).and_then(|p| p.parse::<i32>().ok());
        if let Some(ppid) = ppid {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        for &c in children.get(&p).map(Vec::as_slice).unwrap_or(&[]) {
            out.push(c);
            stack.push(c);
        }
    }
    out
}

/// Is `pid` a live (not zombie) process?
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s.rfind(')').is_some_and(|i| s[i + 1..].trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// The exit status as a shell reports it: the code, or 128 + the signal.
pub fn shell_code(s: ExitStatus) -> i32 {
    s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0))
}

/// What [`Pty::expect`] waits for: a substring or a predicate on the text.
pub trait Matcher {
    fn matches(&self, text: &str) -> bool;
    fn describe(&self) -> String;
}

/// A substring, compared with runs of whitespace squashed to one space on both sides (a TUI's
/// spacing between words depends on how it moved the cursor).
impl Matcher for &str {
    fn matches(&self, text: &str) -> bool {
        squash(text).contains(&squash(self))
    }
    fn describe(&self) -> String {
        format!("{self:?}")
    }
}

impl Matcher for String {
    fn matches(&self, text: &str) -> bool {
        Matcher::matches(&self.as_str(), text)
    }
    fn describe(&self) -> String {
        format!("{self:?}")
    }
}

impl Matcher for &String {
    fn matches(&self, text: &str) -> bool {
        Matcher::matches(&self.as_str(), text)
    }
    fn describe(&self) -> String {
        format!("{self:?}")
    }
}

/// Runs of whitespace (including no-break spaces) as one space.
pub fn squash(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for c in s.chars() {
        if c.is_whitespace() {
            space = true;
        } else {
            if space && !out.is_empty() {
                out.push(' ');
            }
            space = false;
            out.push(c);
        }
    }
    out
}

/// A predicate with a description: `Pred("two sizes", |t| …)`.
pub struct Pred<F: Fn(&str) -> bool>(pub &'static str, pub F);

impl<F: Fn(&str) -> bool> Matcher for Pred<F> {
    fn matches(&self, text: &str) -> bool {
        (self.1)(text)
    }
    fn describe(&self) -> String {
        self.0.to_string()
    }
}

/// Terminal output as plain text: CSI sequences removed (a cursor-forward `ESC [ n C` becomes n
/// spaces and a cursor-to-column `ESC [ n G` one, as TUIs use them for blanks), OSC / DCS / APC / PM / SOS strings removed, other
/// two-byte escapes removed, carriage returns dropped; invalid UTF-8 replaced.
pub fn strip_ansi(b: &[u8]) -> String {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == 0x1b {
            match b.get(i + 1) {
                Some(b'[') => {
                    let mut j = i + 2;
                    while j < b.len() && !(0x40..=0x7e).contains(&b[j]) {
                        j += 1;
                    }
                    match b.get(j) {
                        Some(b'C') => {
                            let n: usize =
                                std::str::from_utf8(&b[i + 2..j]).ok().and_then(|s| s.parse().ok()).unwrap_or(1);
                            out.extend(std::iter::repeat_n(b' ', n.min(500)));
                        }
                        // Cursor to a column: Claude Code places each word this way.
                        Some(b'G') => out.push(b' '),
                        _ => {}
                    }
                    i = j + 1;
                }
                Some(b']') | Some(b'P') | Some(b'_') | Some(b'^') | Some(b'X') => {
                    // String until BEL or ST (ESC \).
                    let mut j = i + 2;
                    while j < b.len() {
                        if b[j] == 0x07 {
                            j += 1;
                            break;
                        }
                        if b[j] == 0x1b && b.get(j + 1) == Some(&b'\\') {
                            j += 2;
                            break;
                        }
                        j += 1;
                    }
                    i = j;
                }
                Some(b'(') | Some(b')') | Some(b'*') | Some(b'+') | Some(b'#') => i += 3,
                Some(_) => i += 2,
                None => i += 1,
            }
            continue;
        }
        if c != b'\r' {
            out.push(c);
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How many times `needle` occurs in `hay` (non-overlapping).
pub fn count_bytes(hay: &[u8], needle: &[u8]) -> usize {
    if needle.is_empty() {
        return 0;
    }
    let mut n = 0;
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        if &hay[i..i + needle.len()] == needle {
            n += 1;
            i += needle.len();
        } else {
            i += 1;
        }
    }
    n
}
