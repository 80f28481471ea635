//! The session's processes: knowing every descendant, and ending them all.
//!
//! Claude Code runs each Bash tool in its own session and process group (docs/CLAUDE_CODE_FACTS.md),
//! so killing claude's process group misses them, and when claude dies they are reparented. ccb
//! makes itself a child subreaper (Linux), so orphans of the session are reparented to ccb, not
//! to init: every process of the session stays a descendant of ccb and can be found in /proc.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// Children ccb started for itself (alert commands): the session's reaper leaves them to their
/// own `wait`. Held across spawn and registration so the reaper cannot take one in between.
static OWN: Mutex<Option<HashSet<i32>>> = Mutex::new(None);

/// Spawn a child of ccb's own that the session reaper must not reap.
pub fn spawn_own(cmd: &mut std::process::Command) -> std::io::Result<std::process::Child> {
    let mut own = OWN.lock().unwrap_or_else(|e| e.into_inner());
    let child = cmd.spawn()?;
    own.get_or_insert_with(HashSet::new).insert(child.id() as i32);
    Ok(child)
}

/// Children ccb started that are not part of the session (the warden): never counted among the
/// session's processes, never signalled when it ends.
static SPARED: Mutex<Option<HashSet<i32>>> = Mutex::new(None);

/// Spawn a child of ccb's own that the session's end must leave alone (see [`SPARED`]).
pub fn spawn_spared(cmd: &mut std::process::Command) -> std::io::Result<std::process::Child> {
    let mut spared = SPARED.lock().unwrap_or_else(|e| e.into_inner());
    let child = spawn_own(cmd)?;
    spared.get_or_insert_with(HashSet::new).insert(child.id() as i32);
    Ok(child)
}

/// After its `wait`: the pid may be reused by anything.
pub fn release_own(pid: u32) {
    if let Some(s) = OWN.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        s.remove(&(pid as i32));
    }
    if let Some(s) = SPARED.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        s.remove(&(pid as i32));
    }
}

/// Reap the dead children of this process that are not ccb's own (orphans the subreaper
/// inherited), by pid; `waitpid(-1)` would take an alert command's status from under it.
pub fn reap_orphans(except: i32) {
    use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
    let own = OWN.lock().unwrap_or_else(|e| e.into_inner());
    // Peek first (WNOWAIT): most of the time no orphan has ended and /proc need not be read.
    loop {
        let peek = waitid(Id::All, WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT);
        let pid = match peek {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(st) => match st.pid() {
                Some(p) => p.as_raw(),
                None => return,
            },
        };
        if pid == except || own.as_ref().is_some_and(|s| s.contains(&pid)) {
            // Not ours to reap here; others may be waiting behind it: look at them all.
            break;
        }
        let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
    }
    let me = std::process::id() as i32;
    for (pid, ppid) in parents() {
        if ppid != me || pid == except || own.as_ref().is_some_and(|s| s.contains(&pid)) || !is_zombie(pid) {
            continue;
        }
        let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), Some(nix::sys::wait::WaitPidFlag::WNOHANG));
    }
}

/// Make orphaned descendants ours (PR_SET_CHILD_SUBREAPER). Returns false where unsupported.
pub fn become_subreaper() -> bool {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes plain integer arguments and touches no memory.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) == 0 }
}

/// pid → parent pid, for every process visible in /proc.
pub fn parents() -> HashMap<i32, i32> {
    let mut map = HashMap::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return map;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        // /proc/PID/stat is "pid (comm) state ppid …"; comm may hold spaces and parentheses,
        // so the fields start after the last ')'.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let mut fields = stat[close + 1..].split_ascii_whitespace();
        let _state = fields.next();
        if let Some(ppid) = fields.next().and_then(|p| p.parse().ok()) {
            map.insert(pid, ppid);
        }
    }
    map
}

/// Every descendant of `root` (not `root` itself), parents before children.
pub fn descendants(root: i32) -> Vec<i32> {
    let map = parents();
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for (&pid, &ppid) in &map {
        children.entry(ppid).or_default().push(pid);
    }
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        if let Some(cs) = children.get(&p) {
            for &c in cs {
                out.push(c);
                stack.push(c);
            }
        }
    }
    out
}

/// Is this process a zombie (dead, waiting to be reaped)?
pub fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 1..].trim_start().starts_with('Z')))
        .unwrap_or(false)
}

/// Send a signal to each pid; returns how many it reached.
pub fn signal_all(pids: &[i32], sig: Signal) -> usize {
    pids.iter().filter(|&&p| kill(Pid::from_raw(p), sig).is_ok()).count()
}

/// End every live descendant of this process at once (SIGKILL, until none is left or half a
/// second has passed, so a process forking meanwhile is caught too). For ccb's last moments
/// (a panic), when there is no time to interrupt claude politely.
pub fn end_all_descendants() {
    let t0 = std::time::Instant::now();
    loop {
        let left = live_descendants_of_self();
        if left.is_empty() || t0.elapsed() > std::time::Duration::from_millis(500) {
            break;
        }
        signal_all(&left, Signal::SIGKILL);
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// The live (non-zombie) descendants of this process, but for the spared ones (the warden).
pub fn live_descendants_of_self() -> Vec<i32> {
    let spared = SPARED.lock().unwrap_or_else(|e| e.into_inner()).clone().unwrap_or_default();
    descendants(std::process::id() as i32).into_iter().filter(|p| !spared.contains(p) && !is_zombie(*p)).collect()
}
