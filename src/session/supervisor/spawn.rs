//! Starting claude (under a PTY from a terminal, with the user's own stdio otherwise) and the
//! process operations on it afterwards: reaping, resizing, and those the stop ladder needs
//! ([`super::stop::Tree`]).

use super::stop::Tree;
use super::{ChildEnd, Options};
use crate::sys::procs;
use crate::sys::tty::{self, RawGuard};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// Claude, started: its pid, the PTY's master side and the terminal's raw mode (a PTY
/// session), and how it ended once reaped.
pub(super) struct Claude {
    pub pid: i32,
    pub master: Option<File>,
    pub raw_guard: Option<RawGuard>,
    pub status: Option<ChildEnd>,
    /// ccb is the session's subreaper: orphans of the session are reaped here.
    subreaper: bool,
}

/// Start claude. Its stdout is returned when ccb reads it (stream-json with the gate).
pub(super) fn spawn(opts: &Options, subreaper: bool) -> anyhow::Result<(Claude, Option<ChildStdout>)> {
    let mut raw_guard = None;
    let mut master: Option<File> = None;
    let mut cmd = Command::new(&opts.program);
    cmd.args(&opts.args);
    for k in crate::core::args::OWN_ENV {
        cmd.env_remove(k);
    }
    for (k, v) in &opts.env {
        cmd.env(k, v);
    }
    let ccb_pid = std::process::id() as i32;
    let death_signal = if opts.pty {
        libc::SIGHUP
    } else if opts.print_mode {
        libc::SIGINT
    } else {
        libc::SIGTERM
    };
    if opts.pty {
        let ws = tty::window_size(libc::STDOUT_FILENO).or_else(|| tty::window_size(libc::STDIN_FILENO));
        let pty = nix::pty::openpty(ws.as_ref(), None)?;
        for f in [&pty.master, &pty.slave] {
            nix::fcntl::fcntl(f.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))?;
        }
        let slave = pty.slave;
        cmd.stdin(Stdio::from(slave.try_clone()?));
        cmd.stdout(Stdio::from(slave.try_clone()?));
        cmd.stderr(Stdio::from(slave));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                child_death_signal(ccb_pid, death_signal);
                Ok(())
            });
        }
        master = Some(File::from(pty.master));
        raw_guard = Some(RawGuard::enter(libc::STDIN_FILENO)?);
    } else {
        if opts.stream_json && opts.gate {
            // Read, to see the `result` that carries a refusal; passed on line by line.
            cmd.stdout(Stdio::piped());
        }
        // Plain stdio: claude writes straight to the user's stdout, byte for byte, and stays in
        // ccb's process group, so the terminal's Ctrl-C and Ctrl-Z reach it as before.
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                child_death_signal(ccb_pid, death_signal);
                Ok(())
            });
        }
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            drop(raw_guard);
            return Err(crate::core::exit::Exit::launch(format!(
                "cannot start {}: {}",
                opts.program.display(),
                crate::sys::locate::why_not_started(&opts.program, &e)
            ))
            .into());
        }
    };
    let stdout = child.stdout.take();
    let pid = child.id() as i32;
    // The Command holds our copies of the PTY's slave side: while any stays open the master
    // never reads EOF when claude exits. Only the child keeps the slave now.
    drop(cmd);
    // We reap with waitpid ourselves (the subreaper also inherits orphans); `Child` is not waited.
    drop(child);
    Ok((Claude { pid, master, raw_guard, status: None, subreaper }, stdout))
}

/// In the child before exec: die with the session if ccb dies (even by SIGKILL).
fn child_death_signal(parent: i32, sig: i32) {
    // SAFETY: prctl and getppid are async-signal-safe; _exit ends the child at once.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0);
        if libc::getppid() != parent {
            libc::_exit(128 + sig);
        }
    }
}

impl Claude {
    /// The terminal's size, given to claude's.
    pub fn resize(&self) {
        if let (Some(m), Some(ws)) =
            (&self.master, tty::window_size(libc::STDOUT_FILENO).or_else(|| tty::window_size(libc::STDIN_FILENO)))
        {
            tty::set_window_size(m, &ws);
        }
    }

    /// Reap every child that ended (claude, and orphans inherited as subreaper).
    pub fn reap(&mut self) {
        if self.status.is_none() {
            loop {
                match waitpid(Pid::from_raw(self.pid), Some(WaitPidFlag::WNOHANG | WaitPidFlag::WUNTRACED)) {
                    Ok(WaitStatus::Exited(_, code)) => {
                        self.status = Some(ChildEnd::Code(code));
                        break;
                    }
                    Ok(WaitStatus::Signaled(_, sig, _)) => {
                        self.status = Some(ChildEnd::Signal(sig as i32));
                        break;
                    }
                    Ok(WaitStatus::Stopped(..)) if self.raw_guard.is_some() => {
                        // Claude suspended itself (Ctrl-Z): give the terminal back and stop ccb
                        // too; SIGCONT (the shell's `fg`) brings both back.
                        if let Some(g) = &self.raw_guard {
                            g.suspend();
                        }
                        let _ = kill(Pid::from_raw(0), Signal::SIGSTOP);
                    }
                    Ok(WaitStatus::StillAlive) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        }
        // Orphans of the session, reparented to ccb as subreaper; never ccb's own children
        // (alert commands), whose status their own thread waits for.
        if self.subreaper {
            procs::reap_orphans(self.pid);
        }
    }
}

impl Tree for Claude {
    fn claude(&self) -> i32 {
        self.pid
    }

    fn claude_ended(&self) -> bool {
        self.status.is_some()
    }

    /// Ctrl-C through the terminal in a PTY session, SIGINT to claude in print mode.
    fn interrupt(&mut self) {
        match &mut self.master {
            Some(m) => {
                let _ = m.write_all(b"\x03");
            }
            None => {
                let _ = kill(Pid::from_raw(self.pid), Signal::SIGINT);
            }
        }
    }

    fn signal(&mut self, pids: &[i32], sig: Signal) {
        procs::signal_all(pids, sig);
    }

    fn live(&self) -> Vec<i32> {
        procs::live_descendants_of_self()
    }

    fn reap(&mut self) {
        Claude::reap(self)
    }

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep(&mut self, d: Duration) {
        std::thread::sleep(d)
    }
}
