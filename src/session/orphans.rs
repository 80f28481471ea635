//! Abandoned sessions: processes of a run whose ccb and warden are both gone.
//!
//! ccb ends its session's processes itself, and the warden ends them if ccb is SIGKILLed. When
//! both are killed (a SIGKILL of the warden first, then of ccb; an OOM killer taking both), a
//! tool claude was running can outlive them, reparented to init. It still carries the run's
//! `CCB_RUN_ID` and the `CCB_PARENT_PID` of the ccb that started it, so the next session's warden
//! looks for such processes when it starts ([`sweep`]) and ends them, as the dead warden would
//! have.
//!
//! A run is abandoned when nothing guards it any more:
//!
//! - no live warden says it guards it (`CCB_WARDEN_OF=<run>` in its environment), and
//! - its ccb is gone: no live process with that pid, or only one started after the run's oldest
//!   process (the pid was reused by something else).
//!
//! Only processes of this user (real and effective uid) are looked at, never the run this
//! process belongs to (one of its ancestors carries it), and a process that cleared its
//! environment carries nothing to find it by.

use std::collections::{HashMap, HashSet};

/// The variable a warden carries: the run it guards.
pub const WARDEN_VAR: &str = "CCB_WARDEN_OF";

/// One process, as far as abandoned runs are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub pid: i32,
    /// When it started (clock ticks since boot, `/proc/PID/stat` field 22).
    pub start: u64,
    /// Its `CCB_RUN_ID`: the run it belongs to.
    pub run: Option<String>,
    /// Its `CCB_PARENT_PID`: the ccb that started the run.
    pub owner: Option<i32>,
    /// Its `CCB_WARDEN_OF`: the run it guards (a warden).
    pub warden_of: Option<String>,
}

/// The processes to end: every member of a run that no warden guards and whose ccb is gone.
/// `alive_since(pid)` is when a live (not zombie) process `pid` started, None when there is none.
/// Runs holding a pid of `spare` (this process and its ancestors) are never abandoned.
pub fn abandoned(seen: &[Seen], spare: &HashSet<i32>, alive_since: impl Fn(i32) -> Option<u64>) -> Vec<i32> {
    let guarded: HashSet<&str> = seen.iter().filter_map(|s| s.warden_of.as_deref()).collect();
    let mut runs: HashMap<&str, Vec<&Seen>> = HashMap::new();
    for s in seen {
        if let Some(r) = s.run.as_deref().filter(|r| crate::session::warden::valid_marker(r)) {
            runs.entry(r).or_default().push(s);
        }
    }
    let mut out = Vec::new();
    for (run, members) in runs {
        if guarded.contains(run) || members.iter().any(|m| spare.contains(&m.pid)) {
            continue;
        }
        let owners: HashSet<i32> = members.iter().filter_map(|m| m.owner).collect();
        // Without an owner to ask about, nothing says the run is over: leave it.
        if owners.is_empty() {
            continue;
        }
        let oldest = members.iter().map(|m| m.start).min().unwrap_or(0);
        // The run's ccb started before every process of the run; a process with its pid that
        // started later is another one (the pid was reused).
        let owner_alive = owners.iter().any(|&o| alive_since(o).is_some_and(|t| t <= oldest));
        if owner_alive {
            continue;
        }
        out.extend(members.iter().map(|m| m.pid));
    }
    out.sort_unstable();
    out
}

/// `/proc/PID/stat`: (start time, zombie), for a process that exists.
fn stat(pid: i32) -> Option<(u64, bool)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    // After the command: field 3 (state) is index 0, so field 22 (starttime) is index 19.
    Some((fields.get(19)?.parse().ok()?, fields.first() == Some(&"Z")))
}

/// When live process `pid` started (None for no such process, or a zombie).
fn alive_since(pid: i32) -> Option<u64> {
    stat(pid).filter(|(_, zombie)| !zombie).map(|(t, _)| t)
}

/// Is this process this user's (real and effective uid both ours)? `/proc/PID/status` has
/// `Uid: real effective saved fs`.
fn ours(pid: i32, uid: u32, euid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return false };
    let Some(line) = status.lines().find(|l| l.starts_with("Uid:")) else { return false };
    let ids: Vec<u32> = line[4..].split_ascii_whitespace().filter_map(|v| v.parse().ok()).collect();
    ids.len() >= 2 && ids[0] == uid && ids[1] == euid
}

/// This user's live processes that carry a run or guard one.
pub fn scan() -> Vec<Seen> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: getuid and geteuid cannot fail.
    let (uid, euid) = unsafe { (libc::getuid(), libc::geteuid()) };
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        // The directory's owner is the process's effective uid: a cheap first cut (root reads
        // every process's environment, and must not end another user's).
        if pid == me || !e.metadata().is_ok_and(|m| m.uid() == euid) {
            continue;
        }
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else { continue };
        let mut s = Seen { pid, start: 0, run: None, owner: None, warden_of: None };
        for var in env.split(|&b| b == 0) {
            let Ok(var) = std::str::from_utf8(var) else { continue };
            let Some((k, v)) = var.split_once('=') else { continue };
            match k {
                crate::session::warden::RUN_VAR => s.run = Some(v.to_string()),
                crate::sys::locate::PARENT_VAR => s.owner = v.parse().ok(),
                WARDEN_VAR => s.warden_of = Some(v.to_string()),
                _ => {}
            }
        }
        if s.run.is_none() && s.warden_of.is_none() {
            continue;
        }
        let Some((start, false)) = stat(pid) else { continue };
        if !ours(pid, uid, euid) {
            continue;
        }
        s.start = start;
        out.push(s);
    }
    out
}

/// This process and its ancestors, up to init.
fn lineage() -> HashSet<i32> {
    let parents = crate::sys::procs::parents();
    let mut out = HashSet::new();
    let mut p = std::process::id() as i32;
    while p > 1 && out.insert(p) {
        match parents.get(&p) {
            Some(&pp) => p = pp,
            None => break,
        }
    }
    out
}

/// The processes of abandoned runs, now, but for `guarded`: the run the calling warden guards
/// itself (the scan does not see the caller), which is its own to end, its own way.
pub fn find(guarded: &str) -> Vec<i32> {
    let mut seen = scan();
    seen.push(Seen {
        pid: std::process::id() as i32,
        start: 0,
        run: None,
        owner: None,
        warden_of: Some(guarded.into()),
    });
    abandoned(&seen, &lineage(), alive_since)
}

/// End every process of every abandoned run but `guarded` (SIGTERM, SIGKILL after `grace`,
/// rescanning until none is left or `give_up` has passed); returns how many there were.
pub fn sweep(guarded: &str, grace: std::time::Duration, give_up: std::time::Duration) -> usize {
    crate::session::warden::end_processes(|| find(guarded), grace, give_up)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: i32, start: u64, run: Option<&str>, owner: Option<i32>) -> Seen {
        Seen { pid, start, run: run.map(String::from), owner, warden_of: None }
    }

    #[test]
    fn only_runs_without_their_ccb_and_warden_are_abandoned() {
        let none = HashSet::new();
        // Live processes: pid → start.
        let live: HashMap<i32, u64> = [(100, 10), (200, 10), (300, 500), (900, 5)].into();
        let alive = |pid: i32| live.get(&pid).copied();
        let seen = vec![
            // Run a: ccb 100 alive, started before its processes.
            p(101, 20, Some("a"), Some(100)),
            // Run b: ccb 150 gone, no warden: abandoned, every member.
            p(151, 20, Some("b"), Some(150)),
            p(152, 30, Some("b"), Some(150)),
            // Run c: ccb gone, but a warden guards it.
            p(161, 20, Some("c"), Some(160)),
            Seen { pid: 162, start: 15, run: None, owner: Some(160), warden_of: Some("c".into()) },
            // Run d: its ccb's pid (300) was reused by a process started after the run's oldest.
            p(301, 100, Some("d"), Some(300)),
            p(302, 600, Some("d"), Some(300)),
            // Run e: no owner named: left alone.
            p(401, 20, Some("e"), None),
            // Not a usable marker: left alone.
            p(501, 20, Some("a b"), Some(150)),
            // No run at all.
            p(601, 20, None, Some(150)),
        ];
        assert_eq!(abandoned(&seen, &none, alive), vec![151, 152, 301, 302]);
        // A run this process belongs to (an ancestor carries it) is never abandoned.
        let spare: HashSet<i32> = [152].into();
        assert_eq!(abandoned(&seen, &spare, alive), vec![301, 302]);
        // A ccb that is a zombie (dead, not yet reaped) is gone.
        assert_eq!(abandoned(&seen[..1], &none, |_| None), vec![101]);
    }

    #[test]
    fn the_scan_sees_this_process_tree_by_its_variables() {
        // A child carrying a run whose owner is this test process: found, and not abandoned.
        let run = format!("test-{}", std::process::id());
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .env(crate::session::warden::RUN_VAR, &run)
            .env(crate::sys::locate::PARENT_VAR, std::process::id().to_string())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let t0 = std::time::Instant::now();
        let mut seen = None;
        while seen.is_none() && t0.elapsed() < std::time::Duration::from_secs(5) {
            seen = scan().into_iter().find(|s| s.pid == pid);
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let _ = child.kill();
        let _ = child.wait();
        let seen = seen.expect("the child is seen");
        assert_eq!(seen.run.as_deref(), Some(run.as_str()));
        assert_eq!(seen.owner, Some(std::process::id() as i32));
        assert!(alive_since(std::process::id() as i32).is_some_and(|t| t <= seen.start));
        assert!(!abandoned(&[seen], &HashSet::new(), alive_since).contains(&pid));
    }
}
