//! The warden: a small process that outlives ccb, to end the session if ccb is killed.
//!
//! ccb ends every process of a session itself, whichever way the session ends, except one: a
//! SIGKILL of ccb, which no process can catch. Claude then gets its parent-death signal, but the
//! tools it was running do not (in a terminal no signal to claude ends them), and ccb, the
//! subreaper that knew them, is gone. So at session start ccb re-executes itself as the warden
//! (`ccb --ccb-warden`), in its own session, its stdin a Unix socket whose other end only ccb holds:
//!
//! - ccb writes the session's marker (the `CCB_RUN_ID` every process of the run
//!   inherits) as the first line, then `remove PATH` for each file of ccb's that must not
//!   outlive the session (the private settings file), and `done` when the session is over;
//! - end of input without `done` means ccb died: the warden ends every process whose
//!   environment carries the marker (SIGTERM, then SIGKILL after half a second, rescanning so
//!   a process forking meanwhile is caught), removes those files, says so on stderr, and exits.
//!
//! - should the warden itself die while ccb lives (a SIGKILL, the OOM killer), ccb sees its end
//!   of the socket close and starts another for the same marker at once, silently, and says so
//!   only if that fails;
//! - when it starts, the warden also ends what is left of abandoned runs (see
//!   [`crate::session::orphans`]): processes whose ccb and warden were both killed.
//!
//! The warden never reads the terminal, holds no descriptor but its socket, stderr and what ccb
//! hands it, and sits blocked in `recvmsg` for the whole session: no CPU, about a megabyte of
//! memory.
//!
//! What ccb hands it: descriptors whose last close is slow. The last close of an inotify
//! instance (the transcript follower's) waits for an RCU grace period, 10–20 ms, and a process
//! cannot finish exiting before; so ccb sends the warden a copy (`SCM_RIGHTS`) and ccb's own
//! close at exit is quick. The warden drops its stderr on `done` before it exits and pays that
//! cost itself, waited for by no one.

use std::io::Write;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long after its start a warden looks for abandoned runs (see [`main`]).
const SWEEP_AFTER: Duration = Duration::from_millis(250);

/// The argument that makes `ccb` the warden (alone, as the only argument).
pub const ARG: &str = "--ccb-warden";

/// How long claude gets to act on its parent-death signal (sent by the kernel as ccb's exit
/// completes, a moment after the warden's socket closes) before the warden steps in: the signal
/// chosen per mode ends claude's agent loop the gentlest way, and in print mode its tools too.
const HEAD_START: Duration = Duration::from_millis(100);
/// How long the session's processes get after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_millis(500);
/// The most the warden spends ending a session.
const GIVE_UP: Duration = Duration::from_secs(5);

/// ccb's handle on its warden, whichever process that is now (see [`Warden::start`]).
pub struct Warden {
    current: std::sync::Arc<Mutex<Current>>,
}

/// The warden process of the moment, and whether the session is over.
struct Current {
    child: Child,
    /// ccb's end of the warden's socket; None once dismissed.
    sock: Option<UnixStream>,
}

/// How many times a session's warden is replaced before ccb gives up on it (a warden that dies
/// at once, again and again, is not guarding anything).
const MAX_RESTARTS: u32 = 20;

/// Descriptors for the warden to keep (see the module's notes): sent at once when it is up,
/// held until then. Off (nothing kept) unless [`expect`] said a warden is coming, so that a
/// process without one (a report, a unit test) keeps nothing.
static HANDOFF: Mutex<Handoff> = Mutex::new(Handoff { on: false, sock: None, pending: Vec::new(), kept: Vec::new() });

struct Handoff {
    on: bool,
    sock: Option<UnixStream>,
    pending: Vec<OwnedFd>,
    /// ccb's own copies of what it handed over, for a warden that replaces a dead one.
    kept: Vec<OwnedFd>,
}

fn handoff() -> std::sync::MutexGuard<'static, Handoff> {
    HANDOFF.lock().unwrap_or_else(|e| e.into_inner())
}

/// A warden is about to be started for this process's session: keep what [`hand_over`] gets.
pub fn expect() {
    handoff().on = true;
}

/// Give the warden a copy of `fd` to keep until it exits (when a warden is expected).
pub fn hand_over(fd: BorrowedFd<'_>) {
    let mut h = handoff();
    if !h.on {
        return;
    }
    let Ok(copy) = fd.try_clone_to_owned() else { return };
    match &h.sock {
        Some(sock) => {
            let _ = send_fd(sock, &copy);
            h.kept.push(copy);
        }
        None => h.pending.push(copy),
    }
}

/// Send one descriptor with a `keep` line; the copy in flight holds the file open.
fn send_fd(sock: &UnixStream, fd: &OwnedFd) -> std::io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let fds = [fd.as_raw_fd()];
    let iov = [std::io::IoSlice::new(b"keep\n")];
    sendmsg::<()>(sock.as_raw_fd(), &iov, &[ControlMessage::ScmRights(&fds)], MsgFlags::empty(), None)
        .map(|_| ())
        .map_err(std::io::Error::from)
}

/// The variable every process of a run carries: the warden finds them by it. Per run, not per
/// session: two runs of one resumed session never end each other's tools.
pub const RUN_VAR: &str = "CCB_RUN_ID";

/// Is `marker` usable as a session marker: something `CCB_RUN_ID=` can be matched on?
pub fn valid_marker(marker: &str) -> bool {
    !marker.is_empty()
        && marker.len() <= 200
        && marker.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Does this `/proc/PID/environ` content (NUL-separated `NAME=value`) set `CCB_RUN_ID` to
/// exactly `marker`?
pub fn environ_has(environ: &[u8], marker: &str) -> bool {
    let want = format!("{RUN_VAR}={marker}");
    environ.split(|&b| b == 0).any(|var| var == want.as_bytes())
}

impl Warden {
    /// Start the warden for the session whose processes carry `CCB_RUN_ID=marker`; should
    /// ccb die, it removes `files` too. Should the warden die first, another is started for the
    /// same marker and files; `problem` hears it if that fails (a line for the user).
    pub fn start(
        marker: &str,
        files: &[std::path::PathBuf],
        problem: impl Fn(String) + Send + 'static,
    ) -> std::io::Result<Warden> {
        if !valid_marker(marker) {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a usable session marker"));
        }
        let (child, ours) = spawn(marker, files)?;
        let watch = ours.try_clone();
        {
            let mut h = handoff();
            if h.on {
                if let Ok(copy) = ours.try_clone() {
                    for fd in std::mem::take(&mut h.pending) {
                        let _ = send_fd(&copy, &fd);
                        h.kept.push(fd);
                    }
                    h.sock = Some(copy);
                }
            }
        }
        let current = std::sync::Arc::new(Mutex::new(Current { child, sock: Some(ours) }));
        // Without a watch the warden guards the session all the same, until it dies.
        if let Ok(watch) = watch {
            let (current, marker, files) = (current.clone(), marker.to_string(), files.to_vec());
            let _ = std::thread::Builder::new()
                .name("ccb-warden-watch".into())
                .spawn(move || keep_watch(watch, &current, &marker, &files, &problem));
        }
        Ok(Warden { current })
    }

    /// The pid of the warden process of the moment.
    pub fn pid(&self) -> u32 {
        lock(&self.current).child.id()
    }

    /// The session is over and ccb ended it: the warden exits without doing anything.
    pub fn dismiss(self) {
        self.finish();
    }

    fn finish(&self) {
        let mut cur = lock(&self.current);
        let Some(sock) = cur.sock.take() else { return };
        let _ = (&sock).write_all(b"done\n");
        drop(sock);
        let mut h = handoff();
        h.sock = None;
        h.on = false;
        h.pending.clear();
        h.kept.clear();
        drop(h);
        // It exits at once, but ccb does not wait for that (it is about to exit too, and init
        // reaps what it leaves). Reaped here only if it is already gone.
        if let Ok(Some(_)) = cur.child.try_wait() {
            crate::sys::procs::release_own(cur.child.id());
        }
    }
}

impl Drop for Warden {
    fn drop(&mut self) {
        self.finish();
    }
}

fn lock(m: &Mutex<Current>) -> std::sync::MutexGuard<'_, Current> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Start a warden process for `marker` and tell it its marker and files: (the process, ccb's
/// end of its socket).
fn spawn(marker: &str, files: &[std::path::PathBuf]) -> std::io::Result<(Child, UnixStream)> {
    use std::os::unix::process::CommandExt;
    // /proc/self/exe is this very binary, even if it was replaced on disk since.
    let mut cmd = Command::new("/proc/self/exe");
    let (ours, theirs) = UnixStream::pair()?;
    // ccb's stderr only when it is a terminal, to tell the user if ccb is killed: a pipe
    // held open by the warden would keep whoever reads ccb's stderr waiting for it.
    let stderr = if std::io::IsTerminal::is_terminal(&std::io::stderr()) { Stdio::inherit() } else { Stdio::null() };
    cmd.arg(ARG)
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::null())
        .stderr(stderr)
        .current_dir("/")
        // Not a process of the session itself.
        .env_remove("CCB_SESSION_ID")
        .env_remove(RUN_VAR)
        // But the one guarding it: another ccb's sweep of abandoned runs leaves the run alone
        // while its warden lives (see crate::session::orphans).
        .env(crate::session::orphans::WARDEN_VAR, marker);
    // SAFETY: setsid and setpriority are async-signal-safe. Its own session: Ctrl-C and a
    // hangup of the terminal, meant for ccb and claude, do not reach the warden.
    // A lower priority (nice 10): starting it must not slow claude's own start on a busy
    // machine, and it has nothing to do until ccb is gone (then it still gets its share).
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            libc::setpriority(libc::PRIO_PROCESS, 0, 10);
            Ok(())
        });
    }
    // Its first lines go into the socket before it exists: a warden killed the moment it
    // starts cannot fail its own start (the write would meet a closed socket), it is replaced.
    let mut msg = format!("{marker}\n");
    for f in files {
        // A name with a newline cannot be told on a line: such a file is left to ccb.
        if let Some(f) = f.to_str().filter(|f| !f.contains('\n')) {
            msg.push_str(&format!("remove {f}\n"));
        }
    }
    if let Some(l) = crate::ledger::default_path().and_then(|p| p.to_str().map(String::from)) {
        if !l.contains('\n') {
            msg.push_str(&format!("checkpoint {l}\n"));
        }
    }
    (&ours).write_all(msg.as_bytes())?;
    let child = crate::sys::procs::spawn_spared(&mut cmd)?;
    drop(cmd);
    Ok((child, ours))
}

/// ccb's watch over its warden, on a thread of its own, blocked in `read` on a copy of ccb's
/// end of the socket (the warden never writes to it): end of input means the warden process is
/// gone. Dismissed, that is the session's end; otherwise the warden died (a SIGKILL, the OOM
/// killer) and another is started for the same marker, handed the same files and descriptors.
fn keep_watch(
    mut watch: UnixStream,
    current: &Mutex<Current>,
    marker: &str,
    files: &[std::path::PathBuf],
    problem: &dyn Fn(String),
) {
    use std::io::Read;
    let mut restarts = 0;
    loop {
        let mut buf = [0u8; 64];
        match watch.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => {}
            Ok(_) => continue,
        }
        let mut cur = lock(current);
        if cur.sock.is_none() {
            return;
        }
        // Reap the dead warden (ccb's own child: the session's reaper leaves it to us).
        let _ = cur.child.wait();
        crate::sys::procs::release_own(cur.child.id());
        if restarts == MAX_RESTARTS {
            problem(format!(
                "the warden died {MAX_RESTARTS} times and is not started again; should ccb be killed, claude's tools may outlive it"
            ));
            return;
        }
        restarts += 1;
        let started = spawn(marker, files).and_then(|(c, o)| o.try_clone().map(|w| (c, o, w)));
        let (child, ours) = match started {
            Ok((c, o, w)) => {
                watch = w;
                (c, o)
            }
            Err(e) => {
                cur.sock = None;
                problem(format!(
                    "the warden died and could not be started again ({e}); should ccb be killed, claude's tools may outlive it"
                ));
                return;
            }
        };
        let mut h = handoff();
        if h.on {
            if let Ok(copy) = ours.try_clone() {
                for fd in &h.kept {
                    let _ = send_fd(&copy, fd);
                }
                h.sock = Some(copy);
            }
        }
        drop(h);
        cur.child = child;
        cur.sock = Some(ours);
    }
}

/// The warden's input: lines, and the descriptors ccb hands over with them.
struct Input {
    buf: Vec<u8>,
    kept: Vec<OwnedFd>,
    /// stdin is not a socket (the warden run by hand): plain reads.
    plain: bool,
}

impl Input {
    /// The next line without its newline; None at end of input.
    fn line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Some(String::from_utf8_lossy(&line[..i]).into_owned());
            }
            let mut chunk = [0u8; 4096];
            let n = if self.plain { self.read_plain(&mut chunk) } else { self.receive(&mut chunk) }?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn read_plain(&mut self, chunk: &mut [u8]) -> Option<usize> {
        loop {
            // SAFETY: reading into our own buffer from stdin.
            let n = unsafe { libc::read(0, chunk.as_mut_ptr().cast(), chunk.len()) };
            if n >= 0 {
                return Some(n as usize);
            }
            if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                return None;
            }
        }
    }

    fn receive(&mut self, chunk: &mut [u8]) -> Option<usize> {
        use nix::errno::Errno;
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        loop {
            let mut space = nix::cmsg_space!([RawFd; 8]);
            let mut iov = [std::io::IoSliceMut::new(chunk)];
            match recvmsg::<()>(0, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC) {
                Ok(msg) => {
                    let n = msg.bytes;
                    if let Ok(cmsgs) = msg.cmsgs() {
                        for c in cmsgs {
                            if let ControlMessageOwned::ScmRights(fds) = c {
                                // SAFETY: the kernel installed these descriptors for us.
                                self.kept.extend(fds.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
                            }
                        }
                    }
                    return Some(n);
                }
                Err(Errno::EINTR) => {}
                Err(Errno::ENOTSOCK) => {
                    self.plain = true;
                    return self.read_plain(chunk);
                }
                Err(_) => return None,
            }
        }
    }
}

/// The warden's main: returns its exit code (0, or 2 for input that is not a marker).
pub fn main() -> i32 {
    close_other_descriptors();
    let mut input = Input { buf: Vec::new(), kept: Vec::new(), plain: false };
    let first = input.line().unwrap_or_default();
    if !valid_marker(&first) {
        let _ = writeln!(
            std::io::stderr(),
            "ccb: {ARG} is ccb's own: it reads a session marker on stdin from ccb, and got none"
        );
        return 2;
    }
    let marker = first;
    // End what is left of runs whose ccb and warden were both killed, on a thread of its own and
    // a moment after the start: reading every process's environment costs a few milliseconds of
    // CPU, which on a small machine competed with claude's and ccb's own start (measured: the
    // launch overhead rose by about 2 ms when the sweep ran here, first); and this thread keeps
    // reading ccb's lines meanwhile, so `done` is never held up by a sweep (a sweep waits up to
    // TERM_GRACE for what it ends). A session over within the moment sweeps nothing: the next
    // one will. Not this warden's own run: should ccb die, that one is ended below.
    {
        let marker = marker.clone();
        let _ = std::thread::Builder::new().name("ccb-warden-sweep".into()).spawn(move || {
            std::thread::sleep(SWEEP_AFTER);
            crate::session::orphans::sweep(&marker, TERM_GRACE, GIVE_UP);
        });
    }
    let mut files = Vec::new();
    let mut ledger: Option<std::path::PathBuf> = None;
    while let Some(line) = input.line() {
        if line == "done" {
            // Whoever reads ccb's stderr must not wait for the warden: let go of it first, then
            // close what ccb handed over, slowly if it must be.
            // SAFETY: closing our own stderr; nothing writes to it after this.
            unsafe {
                libc::close(2);
            }
            // ccb exits without waiting for its ledger connection's close, so SQLite's WAL is
            // never checkpointed away, and every session's first open replayed all of it (a
            // megabyte and more, on the launch path). The warden, which nobody waits for, does it.
            if let Some(l) = ledger {
                crate::ledger::checkpoint(&l);
            }
            return 0;
        }
        if let Some(f) = line.strip_prefix("remove ") {
            files.push(std::path::PathBuf::from(f));
        } else if let Some(l) = line.strip_prefix("checkpoint ") {
            ledger = Some(std::path::PathBuf::from(l));
        }
    }
    // ccb is gone without saying `done`: end what is left of its session.
    std::thread::sleep(HEAD_START);
    let ended = sweep(&marker);
    for f in &files {
        let _ = std::fs::remove_file(f);
    }
    if ended > 0 {
        // Whoever read ccb's stderr may be gone too: a failed write is not the warden's concern.
        let _ = writeln!(
            std::io::stderr(),
            "\r\nccb: ccb was killed; its warden ended {ended} process{} left of session {marker}\r",
            if ended == 1 { "" } else { "es" }
        );
    }
    0
}

/// End every live process carrying `marker`; returns how many there were.
fn sweep(marker: &str) -> usize {
    end_processes(|| session_processes(marker), TERM_GRACE, GIVE_UP)
}

/// End the processes `find` names, rescanning until it names none (SIGTERM and SIGCONT first,
/// SIGKILL to one still there `grace` later), or until `give_up`; returns how many there were.
pub fn end_processes(mut find: impl FnMut() -> Vec<i32>, grace: Duration, give_up: Duration) -> usize {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    use std::collections::HashMap;
    let t0 = Instant::now();
    // pid → when it was sent SIGTERM.
    let mut termed: HashMap<i32, Instant> = HashMap::new();
    loop {
        let found = find();
        if found.is_empty() || t0.elapsed() > give_up {
            break;
        }
        let now = Instant::now();
        for pid in found {
            match termed.get(&pid) {
                None => {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
                    // A stopped process would not act on SIGTERM until continued.
                    let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
                    termed.insert(pid, now);
                }
                Some(&at) if now.duration_since(at) >= grace => {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
                Some(_) => {}
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    termed.len()
}

/// The live processes (not zombies, not this one) whose environment carries `marker`.
fn session_processes(marker: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        // Another user's processes are unreadable here, and not ours to end.
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if environ_has(&env, marker) && !crate::sys::procs::is_zombie(pid) {
            out.push(pid);
        }
    }
    out
}

/// Close every descriptor but stdin, stdout and stderr (ccb's are close-on-exec, but a
/// descriptor ccb itself inherited without that flag would be held open for as long as the
/// warden lives).
fn close_other_descriptors() {
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|rd| rd.flatten().filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok())).collect())
        .unwrap_or_default();
    for fd in fds.into_iter().filter(|&fd| fd > 2) {
        // SAFETY: closing descriptors this process does not use (the directory's own is
        // already closed; closing it again fails harmlessly).
        unsafe {
            libc::close(fd);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_plain_ids() {
        assert!(valid_marker("0f8c2a4e-5b1d-4c7e-9a3f-2d6b8e1c4a70"));
        assert!(valid_marker("my_session.2"));
        assert!(!valid_marker(""));
        assert!(!valid_marker("a b"));
        assert!(!valid_marker("a=b"));
        assert!(!valid_marker("a\0b"));
        assert!(!valid_marker(&"x".repeat(201)));
    }

    #[test]
    fn environ_matches_the_whole_variable_only() {
        let env = b"HOME=/h\0CCB_RUN_ID=abc\0PATH=/bin\0";
        assert!(environ_has(env, "abc"));
        assert!(!environ_has(env, "ab"), "a prefix of the marker is another session");
        assert!(!environ_has(b"CCB_RUN_ID=abcd\0", "abc"));
        assert!(!environ_has(b"XCCB_RUN_ID=abc\0", "abc"));
        assert!(!environ_has(b"OTHER=CCB_RUN_ID=abc\0", "abc"));
        assert!(environ_has(b"CCB_RUN_ID=abc", "abc"), "last variable, no trailing NUL");
    }
}
