//! Following a session's transcripts as they grow: the main file, every subagent file as it
//! appears, and (interactive sessions) the new file `/clear` starts.
//!
//! inotify (through `notify`) wakes a thread when a file changes; the thread reads from where it
//! stopped to the end, keeps a partial last line for the next read, and sends each usage event
//! on. No polling. A file that shrinks or is replaced is read again from the start (the tally
//! counts each response once, so nothing is double-counted).

use crate::core::transcript::{parse_line, Line, UsageEvent};
use notify::{EventKind, RecursiveMode, Watcher};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

/// What the follower reports.
#[derive(Debug)]
pub enum Feed {
    Usage(Box<UsageEvent>),
    Malformed,
    /// A main transcript of this session was found (its id, when ccb did not know it in advance,
    /// or after `/clear`).
    Session {
        id: String,
    },
}

/// Which transcripts belong to the session.
#[derive(Debug, Clone)]
pub struct Spec {
    /// `<claude config dir>/projects/<slug>`.
    pub project_dir: PathBuf,
    /// Known in advance (ccb passed `--session-id`); else learnt from another source (telemetry
    /// names it) or, with `guess`, taken to be the first transcript written after launch
    /// (`--resume`, `--continue`).
    pub session_id: Option<String>,
    /// Guess which transcripts are this session's when no other source says: the first one to
    /// grow after launch, and (interactive sessions) new ones, as `/clear` starts one. A guess can
    /// take another claude's session in the same directory, so ccb guesses only when neither the
    /// gate nor telemetry runs (they hear every call of this claude, `/clear` or not).
    pub guess: bool,
    pub interactive: bool,
}

enum Msg {
    Fs(notify::Result<notify::Event>),
    /// Another source named a session id of this claude: follow its transcript from here on.
    Adopt(String),
    Finish(mpsc::Sender<()>),
}

pub struct Follower {
    ctl: mpsc::Sender<Msg>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// This process's inotify descriptors.
fn inotify_fds() -> Vec<std::os::fd::RawFd> {
    let Ok(rd) = std::fs::read_dir("/proc/self/fd") else { return Vec::new() };
    rd.flatten()
        .filter(|e| std::fs::read_link(e.path()).is_ok_and(|t| t.as_os_str() == "anon_inode:inotify"))
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .collect()
}

impl Follower {
    /// Start following. Events go to `out` (a closure, so the caller picks the channel).
    pub fn start(spec: Spec, out: impl FnMut(Feed) + Send + 'static) -> std::io::Result<Follower> {
        // It will hold the session's whole conversation: what ccb creates is owner-only
        // (claude writes into whatever exists).
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&spec.project_dir)?;
        }
        let (tx, rx) = mpsc::channel();
        let fs_tx = tx.clone();
        let before = inotify_fds();
        let mut watcher = notify::recommended_watcher(move |res| {
            let _ = fs_tx.send(Msg::Fs(res));
        })
        .map_err(std::io::Error::other)?;
        // The last close of an inotify instance is slow (see `warden`): the warden keeps a copy.
        for fd in inotify_fds().into_iter().filter(|fd| !before.contains(fd)) {
            // SAFETY: the watcher just opened it and holds it open until it is dropped.
            crate::session::warden::hand_over(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) });
        }
        watcher.watch(&spec.project_dir, RecursiveMode::NonRecursive).map_err(std::io::Error::other)?;
        log::debug!(
            "source transcripts: following {} ({}{})",
            spec.project_dir.display(),
            spec.session_id
                .as_deref()
                .map(|id| format!("session {id}"))
                .unwrap_or_else(|| "session not known yet".into()),
            if spec.guess { ", guessing which files are this session's" } else { "" }
        );
        let mut state = Tracker::new(spec, Box::new(out));
        state.initial_scan();
        let thread = std::thread::Builder::new().name("ccb-follow".into()).spawn(move || {
            let mut watcher = watcher;
            state.run(&rx, &mut watcher);
        })?;
        Ok(Follower { ctl: tx, thread: Some(thread) })
    }

    /// Follow the transcripts of a session id another source reported (what was written before
    /// launch does not count).
    pub fn adopt(&self, id: &str) {
        let _ = self.ctl.send(Msg::Adopt(id.to_string()));
    }

    /// Read every followed file to its end one last time, then stop.
    pub fn finish(mut self, timeout: Duration) {
        let (done_tx, done_rx) = mpsc::channel();
        if self.ctl.send(Msg::Finish(done_tx)).is_ok() {
            let _ = done_rx.recv_timeout(timeout);
        }
        if let Some(t) = self.thread.take() {
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

/// A transcript being followed: where reading stopped, and a line not yet complete.
struct FollowedFile {
    offset: u64,
    inode: u64,
    partial: Vec<u8>,
}

/// What the follower's thread keeps: the sessions it follows, each file's read position, the
/// directories it watches.
struct Tracker {
    spec: Spec,
    out: Box<dyn FnMut(Feed) + Send>,
    sessions: HashSet<String>,
    files: HashMap<PathBuf, FollowedFile>,
    /// Top-level transcripts that existed at launch, with their size then.
    preexisting: HashMap<PathBuf, u64>,
    watched: HashSet<PathBuf>,
}

impl Tracker {
    fn new(spec: Spec, out: Box<dyn FnMut(Feed) + Send>) -> Tracker {
        let sessions = spec.session_id.iter().cloned().collect();
        Tracker { spec, out, sessions, files: HashMap::new(), preexisting: HashMap::new(), watched: HashSet::new() }
    }

    fn initial_scan(&mut self) {
        let dir = self.spec.project_dir.clone();
        for p in list(&dir) {
            if is_jsonl(&p) && !self.is_session_file(&p) {
                if let Ok(m) = std::fs::metadata(&p) {
                    self.preexisting.insert(p, m.len());
                }
            }
        }
    }

    fn run(&mut self, rx: &mpsc::Receiver<Msg>, watcher: &mut notify::RecommendedWatcher) {
        // A session whose id is known may already have written (ccb started late); read it.
        self.rescan(watcher);
        while let Ok(msg) = rx.recv() {
            match msg {
                Msg::Fs(Ok(ev)) => {
                    if matches!(ev.kind, EventKind::Access(_)) {
                        continue;
                    }
                    for p in ev.paths {
                        self.touch(&p, watcher);
                    }
                }
                Msg::Fs(Err(_)) => self.rescan(watcher),
                Msg::Adopt(id) => {
                    if self.sessions.insert(id.clone()) {
                        let file = self.spec.project_dir.join(format!("{id}.jsonl"));
                        if let (Some(&size), Ok(meta)) = (self.preexisting.get(&file), std::fs::metadata(&file)) {
                            self.files.insert(
                                file.clone(),
                                FollowedFile { offset: size, inode: meta.ino(), partial: Vec::new() },
                            );
                        }
                        self.touch(&file, watcher);
                        self.touch(&self.spec.project_dir.join(&id), watcher);
                    }
                }
                Msg::Finish(done) => {
                    self.rescan(watcher);
                    self.flush_partials();
                    let _ = done.send(());
                    return;
                }
            }
        }
    }

    fn is_session_file(&self, p: &Path) -> bool {
        p.parent() == Some(&self.spec.project_dir)
            && p.file_stem().and_then(|s| s.to_str()).is_some_and(|s| self.sessions.contains(s))
    }

    /// Look at everything again (at the end, and if inotify overflowed).
    fn rescan(&mut self, watcher: &mut notify::RecommendedWatcher) {
        let dir = self.spec.project_dir.clone();
        for p in list(&dir) {
            self.touch(&p, watcher);
        }
        for id in self.sessions.clone() {
            let sdir = dir.join(&id);
            self.touch(&sdir, watcher);
        }
    }

    fn touch(&mut self, p: &Path, watcher: &mut notify::RecommendedWatcher) {
        let dir = &self.spec.project_dir;
        let Some(parent) = p.parent() else { return };
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if parent == dir {
            if is_jsonl(p) {
                let id = p.file_stem().and_then(|s| s.to_str()).unwrap_or("").to_string();
                if !self.sessions.contains(&id) && !self.claim(p, &id) {
                    return;
                }
                self.read(p);
            } else if self.sessions.contains(name) && p.is_dir() {
                self.watch_dir(p, watcher);
                self.touch(&p.join("subagents"), watcher);
            }
        } else if parent.parent() == Some(dir.as_path()) && name == "subagents" {
            let owner = parent.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if self.sessions.contains(owner) && p.is_dir() {
                self.watch_dir(p, watcher);
                for f in list(p) {
                    self.touch(&f, watcher);
                }
            }
        } else if parent.parent().and_then(|g| g.parent()) == Some(dir.as_path())
            && parent.file_name().is_some_and(|n| n == "subagents")
            && is_jsonl(p)
            && name.starts_with("agent-")
        {
            let owner = parent.parent().and_then(|g| g.file_name()).and_then(|n| n.to_str()).unwrap_or("");
            if self.sessions.contains(owner) {
                self.read(p);
            }
        } else if parent.file_name().and_then(|n| n.to_str()).is_some_and(|n| self.sessions.contains(n))
            && name == "subagents"
        {
            self.touch(p, watcher);
        }
    }

    /// Does a transcript this session did not know belong to it?
    fn claim(&mut self, p: &Path, id: &str) -> bool {
        let Ok(meta) = std::fs::metadata(p) else {
            return false;
        };
        if !self.spec.guess {
            return false;
        }
        let unknown = self.spec.session_id.is_none() && self.sessions.is_empty();
        let ok = match self.preexisting.get(p) {
            // `--resume`/`--continue`: the first existing transcript that grows is the session's.
            Some(&size) => unknown && meta.len() > size,
            // A new file: the session's own when its id was not known, or after `/clear`.
            None => unknown || self.spec.interactive,
        };
        if !ok {
            return false;
        }
        self.sessions.insert(id.to_string());
        if let Some(&size) = self.preexisting.get(p) {
            // Only what was written after launch belongs to this run.
            self.files.insert(p.to_path_buf(), FollowedFile { offset: size, inode: meta.ino(), partial: Vec::new() });
        }
        (self.out)(Feed::Session { id: id.to_string() });
        true
    }

    fn watch_dir(&mut self, p: &Path, watcher: &mut notify::RecommendedWatcher) {
        if self.watched.insert(p.to_path_buf()) && watcher.watch(p, RecursiveMode::NonRecursive).is_err() {
            self.watched.remove(p);
        }
    }

    fn read(&mut self, p: &Path) {
        let Ok(mut f) = File::open(p) else { return };
        let Ok(meta) = f.metadata() else { return };
        if !meta.is_file() {
            return;
        }
        let st = self.files.entry(p.to_path_buf()).or_insert(FollowedFile {
            offset: 0,
            inode: meta.ino(),
            partial: Vec::new(),
        });
        if st.inode != meta.ino() || meta.len() < st.offset {
            // Replaced or truncated: start over (duplicates are counted once downstream).
            *st = FollowedFile { offset: 0, inode: meta.ino(), partial: Vec::new() };
        }
        if meta.len() == st.offset {
            return;
        }
        if f.seek(SeekFrom::Start(st.offset)).is_err() {
            return;
        }
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match f.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            st.offset += n as u64;
            let mut chunk = &buf[..n];
            while let Some(i) = memchr::memchr(b'\n', chunk) {
                let line: &[u8] = if st.partial.is_empty() {
                    &chunk[..i]
                } else {
                    st.partial.extend_from_slice(&chunk[..i]);
                    &st.partial
                };
                let feed = match parse_line(line) {
                    Line::Usage(e) => Some(Feed::Usage(e)),
                    Line::Malformed => Some(Feed::Malformed),
                    Line::Other => None,
                };
                st.partial.clear();
                if let Some(feed) = feed {
                    (self.out)(feed);
                }
                chunk = &chunk[i + 1..];
            }
            st.partial.extend_from_slice(chunk);
        }
    }

    /// At the end, a last line without its newline is still a line.
    fn flush_partials(&mut self) {
        let mut feeds = Vec::new();
        for st in self.files.values_mut() {
            if st.partial.is_empty() {
                continue;
            }
            match parse_line(&st.partial) {
                Line::Usage(e) => feeds.push(Feed::Usage(e)),
                Line::Malformed => feeds.push(Feed::Malformed),
                Line::Other => {}
            }
            st.partial.clear();
        }
        for f in feeds {
            (self.out)(f);
        }
    }
}

fn is_jsonl(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "jsonl")
}

fn list(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    fn line(req: &str, input: u64) -> String {
        format!(
            r#"{{"type":"assistant","sessionId":"S","requestId":"{req}","message":{{"id":"m{req}","model":"claude-sonnet-4-6","usage":{{"input_tokens":{input},"output_tokens":1}}}}}}"#
        ) + "\n"
    }

    fn collect() -> (Arc<Mutex<Vec<String>>>, impl FnMut(Feed) + Send + 'static) {
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        (got, move |f: Feed| {
            let s = match f {
                Feed::Usage(e) => format!("usage {} {}", e.key, e.agent_id.unwrap_or_default()),
                Feed::Malformed => "malformed".to_string(),
                Feed::Session { id } => format!("session {id}"),
            };
            g.lock().unwrap().push(s);
        })
    }

    fn wait_for(got: &Arc<Mutex<Vec<String>>>, n: usize) -> Vec<String> {
        let t0 = std::time::Instant::now();
        while got.lock().unwrap().len() < n && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
        got.lock().unwrap().clone()
    }

    #[test]
    fn follows_main_and_subagent_files_with_partial_lines() {
        let d = tempfile::tempdir().unwrap();
        let proj = d.path().join("projects/-w");
        let (got, out) = collect();
        let spec = Spec { project_dir: proj.clone(), session_id: Some("S".into()), guess: true, interactive: false };
        let f = Follower::start(spec, out).unwrap();
        let mut main = std::fs::OpenOptions::new().create(true).append(true).open(proj.join("S.jsonl")).unwrap();
        let l1 = line("r1", 10);
        main.write_all(&l1.as_bytes()[..20]).unwrap();
        main.flush().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(got.lock().unwrap().is_empty(), "half a line is not a line");
        main.write_all(&l1.as_bytes()[20..]).unwrap();
        main.write_all(b"garbage\n").unwrap();
        assert_eq!(wait_for(&got, 2), vec!["usage mr1:r1 ", "malformed"]);
        let sub = proj.join("S/subagents");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(
            sub.join("agent-a1.jsonl"),
            line("r2", 5).replace(r#""type""#, r#""isSidechain":true,"agentId":"a1","type""#),
        )
        .unwrap();
        std::fs::write(proj.join("OTHER.jsonl"), line("r9", 5)).unwrap();
        let v = wait_for(&got, 3);
        assert_eq!(v[2], "usage mr2:r2 a1");
        main.write_all(line("r3", 1).trim_end().as_bytes()).unwrap(); // no newline at the end
        f.finish(Duration::from_secs(5));
        let v = got.lock().unwrap().clone();
        assert_eq!(v.len(), 4, "{v:?}: another session's file is not followed; the last line counts at the end");
        assert_eq!(v[3], "usage mr3:r3 ");
    }

    #[test]
    fn resume_claims_the_transcript_that_grows_and_skips_old_lines() {
        let d = tempfile::tempdir().unwrap();
        let proj = d.path().join("p");
        std::fs::create_dir_all(&proj).unwrap();
        std::fs::write(proj.join("OLD.jsonl"), line("old", 1)).unwrap();
        std::fs::write(proj.join("IDLE.jsonl"), line("idle", 1)).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let (got, out) = collect();
        let spec = Spec { project_dir: proj.clone(), session_id: None, guess: true, interactive: false };
        let f = Follower::start(spec, out).unwrap();
        let mut old = std::fs::OpenOptions::new().append(true).open(proj.join("OLD.jsonl")).unwrap();
        old.write_all(line("new", 1).as_bytes()).unwrap();
        let v = wait_for(&got, 2);
        assert_eq!(v, vec!["session OLD", "usage mnew:new "]);
        f.finish(Duration::from_secs(5));
    }

    #[test]
    fn without_guessing_only_known_or_adopted_sessions_are_followed() {
        let d = tempfile::tempdir().unwrap();
        let proj = d.path().join("p");
        std::fs::create_dir_all(&proj).unwrap();
        std::fs::write(proj.join("RESUMED.jsonl"), line("before", 1)).unwrap();
        let (got, out) = collect();
        let spec = Spec { project_dir: proj.clone(), session_id: None, guess: false, interactive: true };
        let f = Follower::start(spec, out).unwrap();
        // Another claude in the same directory: not this session's.
        std::fs::write(proj.join("NEIGHBOUR.jsonl"), line("n1", 1)).unwrap();
        let mut resumed = std::fs::OpenOptions::new().append(true).open(proj.join("RESUMED.jsonl")).unwrap();
        resumed.write_all(line("r1", 1).as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert!(got.lock().unwrap().is_empty(), "{:?}", got.lock().unwrap());
        // Telemetry names the session: from then on it is followed, from where it was at launch.
        f.adopt("RESUMED");
        assert_eq!(wait_for(&got, 1), vec!["usage mr1:r1 "]);
        f.finish(Duration::from_secs(5));
        assert_eq!(got.lock().unwrap().len(), 1);
    }
}
