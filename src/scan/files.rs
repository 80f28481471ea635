//! Finding the transcripts: Claude Code's config directories, every `*.jsonl` under their
//! `projects/`, and the directory listings kept between reports so that unchanged directories
//! are not listed again.

use super::*;
use crate::ledger::Ledger;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Claude Code's config directories: `$CLAUDE_CONFIG_DIR` (a comma-separated list), else
/// `~/.claude` and `$XDG_CONFIG_HOME/claude`, those that exist.
pub fn claude_dirs() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    match std::env::var("CLAUDE_CONFIG_DIR").ok().filter(|v| !v.trim().is_empty()) {
        Some(list) => {
            out.extend(list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(crate::sys::paths::expand_tilde))
        }
        None => {
            if let Some(h) = crate::sys::paths::home() {
                out.push(h.join(".claude"));
            }
            let xdg = std::env::var_os("XDG_CONFIG_HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| crate::sys::paths::home().map(|h| h.join(".config")));
            if let Some(x) = xdg {
                out.push(x.join("claude"));
            }
        }
    }
    let mut seen = HashSet::new();
    out.into_iter()
        .filter(|d| d.join("projects").is_dir())
        .filter(|d| seen.insert(std::fs::canonicalize(d).unwrap_or(d.clone())))
        .collect()
}

/// A transcript file as found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileId {
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
}

impl FileId {
    pub(super) fn of(path: PathBuf, m: &std::fs::Metadata) -> FileId {
        FileId {
            path,
            dev: m.dev(),
            ino: m.ino(),
            size: m.len(),
            mtime_ns: m.mtime().saturating_mul(1_000_000_000).saturating_add(m.mtime_nsec()),
        }
    }
    pub(super) fn mtime_ms(&self) -> i64 {
        self.mtime_ns.div_euclid(1_000_000)
    }
}

/// Every transcript under the given config directories, `projects/<slug>/*.jsonl` and
/// `projects/<slug>/<session>/subagents/*.jsonl`, sorted by path (the order that decides which
/// file owns a response found in several).
pub fn transcript_files(dirs: &[PathBuf]) -> Vec<FileId> {
    transcript_files_with(dirs, &Listings::default()).0
}

/// Directory listings remembered between reports: path → (modification time, when it was
/// listed, its entries: name and whether it is a directory).
#[derive(Default)]
pub struct Listings(HashMap<Vec<u8>, (i64, i64, Vec<Entry>)>);

/// A directory entry: its name, and whether it is a directory.
pub(super) type Entry = (Vec<u8>, bool);

/// A listing is only trusted when it was made this long after the directory last changed: a
/// change in the same clock tick as the listing would not change the modification time.
pub(super) const RACY_NS: i64 = 2_000_000_000;

impl Listings {
    pub(super) fn load(l: &Ledger) -> Listings {
        let rows = l.scan_dirs().unwrap_or_default();
        let mut m = HashMap::with_capacity(rows.len());
        for (path, mtime, listed, blob) in rows {
            let mut d = Dec { b: &blob, i: 0 };
            let mut entries = Vec::new();
            let ok = (|| {
                for _ in 0..d.u()? {
                    let n = d.u()? as usize;
                    let name = d.b.get(d.i..d.i.checked_add(n)?)?.to_vec();
                    d.i += n;
                    entries.push((name, d.u()? == 1));
                }
                Some(())
            })();
            if ok.is_some() {
                m.insert(path, (mtime, listed, entries));
            }
        }
        Listings(m)
    }

    pub(super) fn encode(entries: &[(Vec<u8>, bool)]) -> Vec<u8> {
        let mut e = Enc(Vec::new());
        e.u(entries.len() as u64);
        for (n, is_dir) in entries {
            e.u(n.len() as u64);
            e.0.extend_from_slice(n);
            e.u(*is_dir as u64);
        }
        e.0
    }
}

/// A directory listing made this run, to remember.
pub(super) type ListingRow = crate::ledger::DirRow;

/// [`transcript_files`], through remembered listings: a directory whose modification time is the
/// one it had when it was listed (and that was listed well after that time) is not read again.
/// Every transcript is still stat'ed (growth changes no directory). Runs on every core. Returns
/// the files, the listings made this run, and the remembered directories that are gone.
pub fn transcript_files_with(dirs: &[PathBuf], known: &Listings) -> (Vec<FileId>, Vec<ListingRow>, Vec<Vec<u8>>) {
    let now_ns = jiff::Timestamp::now().as_nanosecond() as i64;
    // A directory's entries (the subdirectories and the transcripts), from memory or from disk.
    let list = |dir: &Path, made: &mut Vec<ListingRow>| -> Option<std::borrow::Cow<'_, [Entry]>> {
        let m = std::fs::metadata(dir).ok().filter(|m| m.is_dir())?;
        let mtime = m.mtime().saturating_mul(1_000_000_000).saturating_add(m.mtime_nsec());
        let key = dir.as_os_str().as_bytes();
        if let Some((t, listed, entries)) = known.0.get(key) {
            if *t == mtime && *listed >= mtime.saturating_add(RACY_NS) {
                return Some(std::borrow::Cow::Borrowed(entries.as_slice()));
            }
        }
        let mut entries = Vec::new();
        for e in std::fs::read_dir(dir).ok()?.flatten() {
            let Ok(t) = e.file_type() else { continue };
            let name = e.file_name();
            // Symlinks to directories are not followed: a loop must not trap the scan.
            if t.is_dir() || is_jsonl(name.as_bytes()) {
                entries.push((name.as_bytes().to_vec(), t.is_dir()));
            }
        }
        made.push((key.to_vec(), mtime, now_ns, Listings::encode(&entries)));
        Some(std::borrow::Cow::Owned(entries))
    };
    // Stat a directory's transcripts; through the directory's descriptor when there are many
    // (one path component to resolve instead of the whole path). A symlinked transcript is
    // followed.
    let stat_all = |dir: &Path, entries: &[(Vec<u8>, bool)], out: &mut Vec<FileId>| {
        let files = entries.iter().filter(|e| !e.1);
        let fd = if entries.len() >= 8 { File::open(dir).ok() } else { None };
        for (name, _) in files {
            let p = dir.join(std::ffi::OsStr::from_bytes(name));
            if let Some(fd) = &fd {
                let Ok(c) = std::ffi::CString::new(name.as_slice()) else { continue };
                // SAFETY: fstatat fills `st` for a NUL-terminated name relative to an open
                // directory; `st` is plain data.
                let mut st: libc::stat = unsafe { std::mem::zeroed() };
                // SAFETY: as above: `c` is NUL-terminated, `fd` an open directory, `st` ours.
                let r = unsafe { libc::fstatat(std::os::fd::AsRawFd::as_raw_fd(fd), c.as_ptr(), &mut st, 0) };
                if r == 0 && st.st_mode & libc::S_IFMT == libc::S_IFREG {
                    out.push(FileId {
                        path: p,
                        dev: st.st_dev,
                        ino: st.st_ino,
                        size: st.st_size as u64,
                        mtime_ns: st.st_mtime.saturating_mul(1_000_000_000).saturating_add(st.st_mtime_nsec),
                    });
                }
            } else if let Some(m) = std::fs::metadata(&p).ok().filter(|m| m.is_file()) {
                out.push(FileId::of(p, &m));
            }
        }
    };
    let mut made = Vec::new();
    let mut seen_dirs: HashSet<Vec<u8>> = HashSet::new();
    let mut projects = Vec::new();
    for dir in dirs {
        let pd = dir.join("projects");
        seen_dirs.insert(pd.as_os_str().as_bytes().to_vec());
        for (name, is_dir) in list(&pd, &mut made).unwrap_or_default().iter() {
            if *is_dir {
                projects.push(pd.join(std::ffi::OsStr::from_bytes(name)));
            }
        }
    }
    let idx: Vec<usize> = (0..projects.len()).collect();
    let found = run_parallel(&idx, |i, _| {
        let (mut files, mut sessions, mut made) = (Vec::new(), Vec::new(), Vec::new());
        let entries = list(&projects[i], &mut made).unwrap_or_default();
        for (name, is_dir) in entries.iter() {
            if *is_dir {
                sessions.push(projects[i].join(std::ffi::OsStr::from_bytes(name)).join("subagents"));
            }
        }
        stat_all(&projects[i], &entries, &mut files);
        Some((files, sessions, made))
    });
    let mut out = Vec::new();
    let mut sessions = Vec::new();
    for (f, s, m) in found.into_iter().flatten() {
        out.extend(f);
        sessions.extend(s);
        made.extend(m);
    }
    seen_dirs.extend(projects.iter().map(|p| p.as_os_str().as_bytes().to_vec()));
    seen_dirs.extend(sessions.iter().map(|p| p.as_os_str().as_bytes().to_vec()));
    let idx: Vec<usize> = (0..sessions.len()).collect();
    for (f, m) in run_parallel(&idx, |i, _| {
        let (mut files, mut made) = (Vec::new(), Vec::new());
        if let Some(entries) = list(&sessions[i], &mut made) {
            stat_all(&sessions[i], &entries, &mut files);
        }
        Some((files, made))
    })
    .into_iter()
    .flatten()
    {
        out.extend(f);
        made.extend(m);
    }
    out.sort_unstable_by(|a, b| a.path.as_os_str().as_bytes().cmp(b.path.as_os_str().as_bytes()));
    // One file reached by two paths (a symlinked directory or transcript, a hard link) is read
    // once, by the first path in order: its responses would count once anyway (by id), but its
    // malformed lines would be reported twice.
    let mut files_seen = HashSet::with_capacity(out.len());
    out.retain(|f| files_seen.insert((f.dev, f.ino)));
    // Remembered directories under these roots that were not met: forget them.
    let gone = known
        .0
        .keys()
        .filter(|p| !seen_dirs.contains(*p) && dirs.iter().any(|d| p.starts_with(d.as_os_str().as_bytes())))
        .cloned()
        .collect();
    (out, made, gone)
}

pub(super) fn is_jsonl(name: &[u8]) -> bool {
    name.len() > 6 && name.ends_with(b".jsonl")
}
