//! Building a report's dataset from the ledger and from every local Claude Code transcript,
//! each response counted once across both (by its `message.id:requestId`).
//!
//! **Each file is read once.** What a report learns of a transcript file is kept in the ledger
//! database (migration 2): how far it was read (to the end of its last complete line), its identity
//! (device, inode, size, modification time, a hash of its first and last 4 KB read), the identities
//! of its responses, and its partial sums per (15-minute slot, session, model). The next report
//! reads only what changed:
//! - a file that did not change is not opened: its sums come from the cache;
//! - a file that grew (same inode, larger, the same first and last 4 KB where reading stopped) is
//!   read from where the last report stopped;
//! - a file changed in place, shrunk or replaced (another inode), or one whose responses lack
//!   timestamps (they take the file's modification time), is read again from the start;
//! - a file that disappeared drops out.
//!
//! **Each response counts once, whoever reads it first.** A response may be in the ledger (a
//! session run through ccb) and in transcripts, or in several transcripts (a resumed session starts
//! with a copy of the old one). The rule is deterministic, so a report is the same whether it was
//! made from scratch or from the cache: the ledger owns every response it recorded; otherwise the
//! first file in path order that holds the response owns it, at its first line there. A file's
//! cached sums cover exactly the responses it owns; the identities it holds but does not own are
//! kept beside them. When anything changed, ownership is worked out again over every file's
//! identities, and a file whose owned set changed is read again.
//!
//! Slots are 15 minutes of UTC, so one cache serves every time zone (every zone's offset is a
//! multiple of 15 minutes) and every `--since` (a day starts on a slot).
//!
//! Memory grows with the number of buckets and with 16 bytes per response (its identity and file,
//! during the ownership pass), not with the size of the history.

use crate::ledger::{CachedFile, CachedKeys, Ledger, ScanWrite, Store};
use crate::core::pricing::{ModelPrice, PriceTable};
use crate::core::report::{Agg, Dataset, SessionAttr};
use crate::core::transcript::{key_hash, parse_line, Line, UsageEvent};
use jiff::tz::TimeZone;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The time resolution of cached sums: a day in any time zone starts on a slot boundary.
pub const SLOT_MS: i64 = 15 * 60 * 1000;
/// Bumped whenever what is cached, or how a line is read, changes: older caches are dropped.
const CACHE_VERSION: i64 = 2;
/// How much of a file's start and of the end of what was read is checked before reading on.
const CHECK_BYTES: u64 = 4096;

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
    fn of(path: PathBuf, m: &std::fs::Metadata) -> FileId {
        FileId {
            path,
            dev: m.dev(),
            ino: m.ino(),
            size: m.len(),
            mtime_ns: m.mtime().saturating_mul(1_000_000_000).saturating_add(m.mtime_nsec()),
        }
    }
    fn mtime_ms(&self) -> i64 {
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
type Entry = (Vec<u8>, bool);

/// A listing is only trusted when it was made this long after the directory last changed: a
/// change in the same clock tick as the listing would not change the modification time.
const RACY_NS: i64 = 2_000_000_000;

impl Listings {
    fn load(l: &Ledger) -> Listings {
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

    fn encode(entries: &[(Vec<u8>, bool)]) -> Vec<u8> {
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
type ListingRow = crate::ledger::DirRow;

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

fn is_jsonl(name: &[u8]) -> bool {
    name.len() > 6 && name.ends_with(b".jsonl")
}

pub fn parse_ts_ms(s: &str) -> Option<i64> {
    s.parse::<jiff::Timestamp>().ok().map(|t| t.as_millisecond())
}

pub fn day_of(ms: i64, tz: &TimeZone) -> jiff::civil::Date {
    let ts = jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    tz.to_datetime(ts).date()
}

pub fn class_of_entrypoint(e: Option<&str>) -> &'static str {
    match e {
        Some("cli") => "interactive",
        Some(x) if x.starts_with("sdk") => "programmatic",
        _ => "unknown",
    }
}

/// The session id reports give rows an older ccb recorded without one (resumed sessions, before
/// runs were recorded).
pub const UNATTRIBUTED: &str = "resumed-before-ccb-recorded-runs";

/// Ledger usage with `ts >= since_ms` into the dataset; marks each response as seen.
pub fn add_ledger(
    ds: &mut Dataset,
    store: &dyn Store,
    since_ms: i64,
    tz: &TimeZone,
    seen: &mut HashSet<u64>,
) -> anyhow::Result<()> {
    for u in store.usage_between(since_ms, i64::MAX)? {
        if !seen.insert(key_hash(&u.row.key)) {
            continue;
        }
        // An older ccb recorded resumed sessions under an empty id: say what they are.
        let id = if u.row.session_id.is_empty() { UNATTRIBUTED.to_string() } else { u.row.session_id.clone() };
        let s = ds.session(SessionAttr {
            id,
            project: u.cwd.clone(),
            class: u.class.clone(),
            meter: u.meter.clone(),
            reason: u.reason.clone(),
            ccb: true,
        });
        let m = ds.model(&u.row.model);
        if u.row.estimated {
            ds.estimated.insert(u.row.model.clone());
        }
        let mut agg = Agg::default();
        agg.add(&u.row.usage, u.row.cost, u.row.ts_ms);
        ds.add(day_of(u.row.ts_ms, tz), s, m, &agg);
    }
    Ok(())
}

// ---------------------------------------------------------------- one file's partial sums

/// A session as its file first shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileSession {
    pub id: String,
    pub project: String,
    pub class: String,
}

/// The responses a file owns, summed per (slot, session, model).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileSum {
    pub sessions: Vec<FileSession>,
    pub models: Vec<String>,
    pub buckets: HashMap<(i64, u32, u32), Agg>,
    pub malformed: u64,
}

impl FileSum {
    fn session(&mut self, id: &str, make: impl FnOnce() -> FileSession) -> u32 {
        // Files hold one session or a few: a linear search beats hashing.
        match self.sessions.iter().position(|s| s.id == id) {
            Some(i) => i as u32,
            None => {
                self.sessions.push(make());
                (self.sessions.len() - 1) as u32
            }
        }
    }

    fn model(&mut self, m: &str) -> u32 {
        match self.models.iter().position(|x| x == m) {
            Some(i) => i as u32,
            None => {
                self.models.push(m.to_string());
                (self.models.len() - 1) as u32
            }
        }
    }

    fn add_to(&self, ds: &mut Dataset, since_ms: i64, days: &mut DayCache) {
        let smap: Vec<u32> = self
            .sessions
            .iter()
            .map(|s| {
                ds.session(SessionAttr {
                    id: s.id.clone(),
                    project: s.project.clone(),
                    class: s.class.clone(),
                    meter: "unknown".to_string(),
                    reason: None,
                    ccb: false,
                })
            })
            .collect();
        let mmap: Vec<u16> = self.models.iter().map(|m| ds.model(m)).collect();
        for (&(slot, s, m), agg) in &self.buckets {
            let start = slot * SLOT_MS;
            if start < since_ms {
                continue;
            }
            ds.add(days.day(start), smap[s as usize], mmap[m as usize], agg);
        }
        ds.malformed += self.malformed;
    }

    fn encode(&self) -> Vec<u8> {
        let mut e = Enc(Vec::with_capacity(64 + self.buckets.len() * 24));
        e.u(1);
        e.u(self.malformed);
        e.u(self.sessions.len() as u64);
        for s in &self.sessions {
            e.s(&s.id);
            e.s(&s.project);
            e.s(&s.class);
        }
        e.u(self.models.len() as u64);
        for m in &self.models {
            e.s(m);
        }
        let mut b: Vec<_> = self.buckets.iter().collect();
        b.sort_unstable_by_key(|(k, _)| **k);
        e.u(b.len() as u64);
        let mut prev = 0i64;
        for (&(slot, s, m), a) in b {
            e.i(slot - prev);
            prev = slot;
            e.u(s as u64);
            e.u(m as u64);
            let u = &a.usage;
            for v in [u.input, u.output, u.cache_write_5m, u.cache_write_1h, u.cache_read, u.web_search, a.responses] {
                e.u(v);
            }
            e.i(a.cost.nanos());
            e.i(a.first_ms - slot * SLOT_MS);
            e.i(a.last_ms - a.first_ms);
        }
        e.0
    }

    fn decode(b: &[u8]) -> Option<FileSum> {
        let mut f = FileSum::default();
        let mut buckets = Vec::new();
        f.malformed = decode_with(b, |s| f.sessions.push(s), |m| f.models.push(m), |k, a| buckets.push((k, a)))?;
        f.buckets = buckets.into_iter().collect();
        Some(f)
    }
}

/// Walk an encoded [`FileSum`]: its sessions, models and buckets in order; returns its malformed
/// line count, or `None` (having called back for part of it) when it does not decode.
fn decode_with(
    b: &[u8],
    mut session: impl FnMut(FileSession),
    mut model: impl FnMut(String),
    mut bucket: impl FnMut((i64, u32, u32), Agg),
) -> Option<u64> {
    let mut d = Dec { b, i: 0 };
    if d.u()? != 1 {
        return None;
    }
    let malformed = d.u()?;
    let sessions = d.u()?;
    for _ in 0..sessions {
        session(FileSession { id: d.s()?, project: d.s()?, class: d.s()? });
    }
    let models = d.u()?;
    for _ in 0..models {
        model(d.s()?);
    }
    let n = d.u()?;
    let mut slot = 0i64;
    for _ in 0..n {
        slot += d.i()?;
        let (s, m) = (d.u()?, d.u()?);
        if s >= sessions || m >= models {
            return None;
        }
        let mut a = Agg::default();
        a.usage.input = d.u()?;
        a.usage.output = d.u()?;
        a.usage.cache_write_5m = d.u()?;
        a.usage.cache_write_1h = d.u()?;
        a.usage.cache_read = d.u()?;
        a.usage.web_search = d.u()?;
        a.responses = d.u()?;
        a.cost = crate::core::money::Usd(d.i()?);
        a.first_ms = slot.checked_mul(SLOT_MS)?.checked_add(d.i()?)?;
        a.last_ms = a.first_ms.checked_add(d.i()?)?;
        bucket((slot, s as u32, m as u32), a);
    }
    (d.i == b.len()).then_some(malformed)
}

/// Add an encoded [`FileSum`] to a dataset, all of it or (when it does not decode) none of it.
fn add_encoded(b: &[u8], ds: &mut Dataset, since_ms: i64, days: &mut DayCache, scratch: &mut Scratch) -> bool {
    scratch.sessions.clear();
    scratch.models.clear();
    scratch.buckets.clear();
    let Some(malformed) = decode_with(
        b,
        |s| scratch.sessions.push(s),
        |m| scratch.models.push(m),
        |k, a| {
            if k.0 * SLOT_MS >= since_ms {
                scratch.buckets.push((k, a));
            }
        },
    ) else {
        return false;
    };
    let smap: Vec<u32> = scratch
        .sessions
        .drain(..)
        .map(|s| {
            ds.session(SessionAttr {
                id: s.id,
                project: s.project,
                class: s.class,
                meter: "unknown".to_string(),
                reason: None,
                ccb: false,
            })
        })
        .collect();
    let mmap: Vec<u16> = scratch.models.iter().map(|m| ds.model(m)).collect();
    for &((slot, s, m), ref a) in &scratch.buckets {
        ds.add(days.day(slot * SLOT_MS), smap[s as usize], mmap[m as usize], a);
    }
    ds.malformed += malformed;
    true
}

#[derive(Default)]
struct Scratch {
    sessions: Vec<FileSession>,
    models: Vec<String>,
    buckets: Vec<((i64, u32, u32), Agg)>,
}

/// Dates of slots in the report's time zone, each worked out once.
struct DayCache<'a> {
    tz: &'a TimeZone,
    /// The last day seen, as [start, end) in milliseconds.
    last: Option<(i64, i64, jiff::civil::Date)>,
}

impl DayCache<'_> {
    fn day(&mut self, ms: i64) -> jiff::civil::Date {
        if let Some((a, b, d)) = self.last {
            if ms >= a && ms < b {
                return d;
            }
        }
        let d = day_of(ms, self.tz);
        let bounds = d
            .to_zoned(self.tz.clone())
            .ok()
            .and_then(|z| Some((z.timestamp().as_millisecond(), z.tomorrow().ok()?.timestamp().as_millisecond())));
        if let Some((a, b)) = bounds {
            self.last = Some((a, b, d));
        }
        d
    }
}

struct Enc(Vec<u8>);

impl Enc {
    fn u(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    fn i(&mut self, v: i64) {
        self.u(((v << 1) ^ (v >> 63)) as u64);
    }
    fn s(&mut self, s: &str) {
        self.u(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }
}

struct Dec<'a> {
    b: &'a [u8],
    i: usize,
}

impl Dec<'_> {
    fn u(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let x = *self.b.get(self.i)?;
            self.i += 1;
            v |= ((x & 0x7f) as u64) << shift;
            if x < 0x80 {
                return Some(v);
            }
        }
        None
    }
    fn i(&mut self) -> Option<i64> {
        let u = self.u()?;
        Some((u >> 1) as i64 ^ -((u & 1) as i64))
    }
    fn s(&mut self) -> Option<String> {
        let n = self.u()? as usize;
        let s = self.b.get(self.i..self.i.checked_add(n)?)?;
        self.i += n;
        String::from_utf8(s.to_vec()).ok()
    }
}

fn keys_blob(k: &[u64]) -> Vec<u8> {
    k.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn keys_of(b: &[u8]) -> Option<Vec<u64>> {
    (b.len() % 8 == 0)
        .then(|| b.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default())).collect())
}

/// Response identities are hashes already: sets of them need only mix the bits, not SipHash.
#[derive(Default, Clone, Copy)]
struct KeyHash;

#[derive(Default)]
struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, b: &[u8]) {
        for &x in b {
            self.0 = (self.0.rotate_left(8) ^ x as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = (x ^ (x >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

impl std::hash::BuildHasher for KeyHash {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(0)
    }
}

type KeySet = HashSet<u64, KeyHash>;

/// A quick 64-bit hash of a few KB, eight bytes at a time (change detection, not security).
fn fast_hash(b: &[u8]) -> u64 {
    let mut h = 0x9E37_79B9_7F4A_7C15u64 ^ b.len() as u64;
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let x = u64::from_le_bytes(c.try_into().unwrap_or_default());
        h = (h ^ x).wrapping_mul(0x100_0000_01B3).rotate_left(29);
    }
    for &x in chunks.remainder() {
        h = (h ^ x as u64).wrapping_mul(0x100_0000_01B3);
    }
    h ^ (h >> 31)
}

fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf29ce484222325u64, |h, &x| (h ^ x as u64).wrapping_mul(0x100000001b3))
}

// ---------------------------------------------------------------- reading a file

/// What is known of a file while and after reading it.
#[derive(Debug, Default, Clone)]
struct FileState {
    sum: FileSum,
    /// Every response identity of the complete lines read, owned or not.
    keys: KeySet,
    /// Those not owned here (the ledger's, or an earlier file's).
    lost: Vec<u64>,
    uses_mtime: bool,
    /// End of the last complete line read.
    offset: u64,
}

/// The last line of a file that has no newline yet: counted, but not cached (it may still grow).
#[derive(Debug, Clone)]
struct Tail {
    key: Option<u64>,
    sum: FileSum,
}

/// A file's place in the tree, for responses that do not name their session.
struct FileCtx {
    session: String,
    slug: String,
    mtime_ms: i64,
}

impl FileCtx {
    fn of(path: &Path, mtime_ms: i64) -> FileCtx {
        // The session a file belongs to: its name, or for a subagent file, its session's directory.
        let in_subagents = path.parent().and_then(|p| p.file_name()).is_some_and(|n| n == "subagents");
        let session = if in_subagents {
            path.parent().and_then(|p| p.parent()).and_then(|p| p.file_name())
        } else {
            path.file_stem()
        }
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
        let slug = path
            .ancestors()
            .find(|a| a.parent().and_then(|p| p.file_name()).is_some_and(|n| n == "projects"))
            .and_then(|a| a.file_name())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        FileCtx { session, slug, mtime_ms }
    }
}

/// Prices of the models seen, looked up once each.
struct PriceCache<'a> {
    table: &'a PriceTable,
    seen: Vec<(String, ModelPrice)>,
}

impl PriceCache<'_> {
    fn cost(&mut self, e: &UsageEvent) -> crate::core::money::Usd {
        let i = match self.seen.iter().position(|(m, _)| *m == e.model) {
            Some(i) => i,
            None => {
                self.seen.push((e.model.clone(), self.table.lookup(&e.model).0));
                self.seen.len() - 1
            }
        };
        crate::core::pricing::price(&self.seen[i].1, &e.usage, &e.mods, self.table.web_search_nanos)
    }
}

fn count(sum: &mut FileSum, e: &UsageEvent, ts: i64, ctx: &FileCtx, prices: &mut PriceCache) {
    let sid = e.session_id.as_deref().unwrap_or(&ctx.session);
    let s = sum.session(sid, || FileSession {
        id: sid.to_string(),
        project: e.cwd.clone().unwrap_or_else(|| ctx.slug.clone()),
        class: class_of_entrypoint(e.entrypoint.as_deref()).to_string(),
    });
    let m = sum.model(&e.model);
    let cost = prices.cost(e);
    sum.buckets.entry((ts.div_euclid(SLOT_MS), s, m)).or_default().add(&e.usage, cost, ts);
}

/// Read `[from, to)` of a file, one complete line at a time; returns the end of the last complete
/// line and what follows it (a last line without its newline).
fn for_each_line(f: &File, from: u64, to: u64, buf: &mut Vec<u8>, mut each: impl FnMut(&[u8])) -> (u64, Vec<u8>) {
    if to - from >= MAP_AT_LEAST {
        if let Some(m) = mapped::Map::new(f, to as usize) {
            let b = &m.bytes()[from as usize..];
            let mut start = 0usize;
            let mut released = 0usize;
            for nl in memchr::memchr_iter(b'\n', b) {
                each(&b[start..nl]);
                start = nl + 1;
                // Pages read count as this process's memory until they are let go: let them go
                // as the reading moves on, so memory does not grow with the largest file.
                if from as usize + start - released >= RELEASE_EVERY {
                    released = m.release(released, from as usize + start);
                }
            }
            return (from + start as u64, b[start..].to_vec());
        }
    }
    if buf.len() < 1 << 20 {
        buf.resize(1 << 20, 0);
    }
    let mut pos = from; // file offset of buf[0]
    let mut filled = 0usize;
    loop {
        if filled == buf.len() {
            // One line longer than the buffer: make room for it.
            let n = buf.len() * 2;
            buf.resize(n, 0);
        }
        let want = ((to - pos) as usize).saturating_sub(filled).min(buf.len() - filled);
        let n = if want == 0 {
            0
        } else {
            match f.read_at(&mut buf[filled..filled + want], pos + filled as u64) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => 0,
            }
        };
        if n == 0 {
            return (pos, buf[..filled].to_vec());
        }
        let scan_from = filled;
        filled += n;
        let mut start = 0usize;
        for nl in memchr::memchr_iter(b'\n', &buf[scan_from..filled]) {
            let end = scan_from + nl;
            each(&buf[start..end]);
            start = end + 1;
        }
        buf.copy_within(start..filled, 0);
        filled -= start;
        pos += start as u64;
    }
}

/// How much of a mapped file is read before its pages are let go.
const RELEASE_EVERY: usize = 2 << 20;

/// Below this, reading into a buffer costs less than mapping.
const MAP_AT_LEAST: u64 = 32 << 10;

/// Transcripts mapped into memory instead of copied: on a machine whose copies are slow (a VM)
/// this reads a history three times as fast.
///
/// A mapped file that shrinks under the reader raises SIGBUS when the lost pages are touched.
/// Claude Code only appends, but a person may truncate a transcript at any time: then the report
/// starts over, the same command in a fresh process that reads without mapping (nothing has
/// been printed or written yet; the handler does nothing but `execve`, which is
/// async-signal-safe).
mod mapped {
    use std::ffi::CString;
    use std::os::fd::AsRawFd;
    use std::sync::OnceLock;

    pub const NO_MAP_VAR: &str = "CCB_SCAN_NO_MMAP";

    pub struct Map {
        ptr: *mut libc::c_void,
        len: usize,
    }

    impl Map {
        /// The first `len` bytes of `f`, or `None` (then read it instead).
        pub fn new(f: &std::fs::File, len: usize) -> Option<Map> {
            if len == 0 || !guard() {
                return None;
            }
            // SAFETY: a fresh read-only private mapping of an open file; the pointer is only
            // used through `bytes()` while `self` lives, and unmapped once in `Drop`.
            let ptr =
                unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_PRIVATE, f.as_raw_fd(), 0) };
            if ptr == libc::MAP_FAILED {
                return None;
            }
            Some(Map { ptr, len })
        }

        /// Drop the pages before `upto` (rounded down to a page) from this process's memory; they
        /// stay readable (from the page cache) should anything touch them again. Returns where
        /// the released part now ends.
        pub fn release(&self, from: usize, upto: usize) -> usize {
            let start = from & !(4096 - 1);
            let end = upto.min(self.len) & !(4096 - 1);
            if end > start {
                // SAFETY: advice on a page-aligned range inside this mapping; MADV_DONTNEED on a
                // private read-only file mapping only drops page table entries.
                unsafe { libc::madvise(self.ptr.cast::<u8>().add(start).cast(), end - start, libc::MADV_DONTNEED) };
            }
            end.max(start)
        }

        pub fn bytes(&self) -> &[u8] {
            // SAFETY: `ptr` maps `len` readable bytes until `Drop`. If the file shrinks meanwhile,
            // touching the lost pages raises SIGBUS, which `guard` turns into a fresh start.
            unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
        }
    }

    impl Drop for Map {
        fn drop(&mut self) {
            // SAFETY: unmaps exactly what `new` mapped, once.
            unsafe { libc::munmap(self.ptr, self.len) };
        }
    }

    /// What the SIGBUS handler executes, prepared in advance (the handler may not allocate).
    struct Reexec {
        _strings: Vec<CString>,
        argv: Vec<*const libc::c_char>,
        envp: Vec<*const libc::c_char>,
    }
    // SAFETY: the pointers point into `_strings`, which is never changed or dropped once built.
    unsafe impl Send for Reexec {}
    unsafe impl Sync for Reexec {}

    static REEXEC: OnceLock<Option<Reexec>> = OnceLock::new();

    extern "C" fn on_sigbus(_: libc::c_int) {
        if let Some(Some(r)) = REEXEC.get() {
            // SAFETY: execve and _exit are async-signal-safe; argv and envp are NULL-terminated
            // arrays of C strings that live as long as the process.
            unsafe { libc::execve(c"/proc/self/exe".as_ptr(), r.argv.as_ptr(), r.envp.as_ptr()) };
        }
        // SAFETY: async-signal-safe.
        unsafe { libc::_exit(70) };
    }

    /// Mapping is allowed: the SIGBUS handler is in place (installed once).
    fn guard() -> bool {
        REEXEC
            .get_or_init(|| {
                if std::env::var_os(NO_MAP_VAR).is_some() {
                    return None;
                }
                use std::os::unix::ffi::OsStrExt;
                let mut strings: Vec<CString> =
                    std::env::args_os().map(|a| CString::new(a.as_bytes()).ok()).collect::<Option<_>>()?;
                let argc = strings.len();
                for (k, v) in std::env::vars_os() {
                    let mut kv = k.as_bytes().to_vec();
                    kv.push(b'=');
                    kv.extend_from_slice(v.as_bytes());
                    strings.push(CString::new(kv).ok()?);
                }
                strings.push(CString::new(format!("{NO_MAP_VAR}=1")).ok()?);
                let mut argv: Vec<*const libc::c_char> = strings[..argc].iter().map(|s| s.as_ptr()).collect();
                argv.push(std::ptr::null());
                let mut envp: Vec<*const libc::c_char> = strings[argc..].iter().map(|s| s.as_ptr()).collect();
                envp.push(std::ptr::null());
                // SAFETY: installs a handler that only calls async-signal-safe functions.
                let ok = unsafe {
                    let mut sa: libc::sigaction = std::mem::zeroed();
                    sa.sa_sigaction = on_sigbus as *const () as usize;
                    libc::sigemptyset(&mut sa.sa_mask);
                    libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut()) == 0
                };
                ok.then_some(Reexec { _strings: strings, argv, envp })
            })
            .is_some()
    }
}

/// Read a file from `st.offset` (0 for a whole file) to `to`, adding what it owns to `st`;
/// `claimed` tells which responses are owned elsewhere.
fn read_file(
    f: &File,
    to: u64,
    st: &mut FileState,
    ctx: &FileCtx,
    prices: &mut PriceCache,
    claimed: &dyn Fn(u64) -> bool,
    buf: &mut Vec<u8>,
) -> Option<Tail> {
    let FileState { sum, keys, lost, uses_mtime, offset } = st;
    let mut line = |l: &[u8], sum: &mut FileSum, keys: &mut KeySet, lost: &mut Vec<u64>| -> Option<u64> {
        match parse_line(l) {
            Line::Other => None,
            Line::Malformed => {
                sum.malformed += 1;
                None
            }
            Line::Usage(e) => {
                let ts = match e.timestamp.as_deref().and_then(parse_ts_ms) {
                    Some(t) => t,
                    None => {
                        *uses_mtime = true;
                        ctx.mtime_ms
                    }
                };
                let k = key_hash(&e.key);
                if !keys.insert(k) {
                    return None;
                }
                if claimed(k) {
                    lost.push(k);
                } else {
                    count(sum, &e, ts, ctx, prices);
                }
                Some(k)
            }
        }
    };
    let (end, rest) = for_each_line(f, *offset, to, buf, |l| {
        line(l, sum, keys, lost);
    });
    *offset = end;
    if rest.trim_ascii().is_empty() {
        return None;
    }
    // The last line, not yet ended: counted now, read again when it grows.
    let mut tail = Tail { key: None, sum: FileSum::default() };
    let mut tkeys = KeySet::default();
    let mut tlost = Vec::new();
    match parse_line(&rest) {
        Line::Usage(e) if keys.contains(&key_hash(&e.key)) => {}
        _ => tail.key = line(&rest, &mut tail.sum, &mut tkeys, &mut tlost),
    }
    if !tlost.is_empty() {
        tail.key = None;
    }
    Some(tail)
}

fn window_hashes(f: &File, offset: u64) -> Option<(u64, u64)> {
    let n = offset.min(CHECK_BYTES) as usize;
    let mut a = vec![0u8; n];
    let mut b = vec![0u8; n];
    f.read_exact_at(&mut a, 0).ok()?;
    f.read_exact_at(&mut b, offset - n as u64).ok()?;
    Some((fast_hash(&a), fast_hash(&b)))
}

// ---------------------------------------------------------------- the report's transcripts

/// What a scan did, for tests and benchmarks.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ScanStats {
    pub files: usize,
    /// Files served from the cache without being opened.
    pub cached: usize,
    /// Files read from where the last report stopped.
    pub resumed: usize,
    /// Files read from the start (new, changed, or owning other responses than before).
    pub full: usize,
    /// Bytes read from transcripts.
    pub bytes_read: u64,
    /// The cache was written.
    pub wrote: bool,
}

/// One file's fate in this report.
enum Plan {
    Cached,
    /// Read on from the cached state (its offset), if the file still starts and ends as it did.
    Resume,
    Full,
}

struct Job {
    plan: Plan,
    state: FileState,
    tail: Option<Tail>,
    /// The whole state is new (not as cached): write it.
    dirty: bool,
}

/// Every transcript response (each once, ledger's excluded) into the dataset, through the cache in
/// `ledger` when there is one. The ledger's own rows in range are added too, from the same
/// snapshot of the database, so the two agree.
pub fn add_all(
    ds: &mut Dataset,
    ledger: Option<&Ledger>,
    dirs: &[PathBuf],
    since_ms: i64,
    tz: &TimeZone,
    prices: &PriceTable,
) -> anyhow::Result<ScanStats> {
    let t0 = std::time::Instant::now();
    let Some(l) = ledger else {
        let files = transcript_files(dirs);
        return Ok(scan(ds, &files, None, since_ms, tz, prices));
    };
    let (files, listed, gone) = transcript_files_with(dirs, &Listings::load(l));
    let t_list = t0.elapsed();
    let read = l.snapshot(|l| {
        add_ledger(ds, l, since_ms, tz, &mut HashSet::new())?;
        Ok(Cache::read(l, &files, dirs, prices))
    })?;
    let t_read = t0.elapsed();
    let stats = scan(ds, &files, Some((l, read)), since_ms, tz, prices);
    // Listings are remembered apart from the sums: each is checked against its directory.
    let _ = l.write_scan_dirs(&listed, &gone);
    log::debug!("{stats:?}; listed in {t_list:?}, cache read by {t_read:?}, done by {:?}", t0.elapsed());
    Ok(stats)
}

/// The cache as read at the start of a report.
struct Cache {
    valid: bool,
    same_dirs: bool,
    generation: i64,
    usage_fp: (i64, i64),
    prices_fp: i64,
    dirs_fp: i64,
    /// Cached files, in path order.
    rows: Vec<CachedFile>,
    /// Each listed file's row.
    of_file: Vec<Option<usize>>,
    /// Read only when something changed.
    keys: Option<HashMap<Vec<u8>, CachedKeys>>,
    ledger_keys: Option<KeySet>,
    /// The ledger's responses are those the cache was made with.
    same_ledger: bool,
    /// Rows of files under the report's directories that are no longer there.
    gone: Vec<usize>,
}

/// Is this cached path under one of the directories?
fn under(path: &[u8], dirs: &[PathBuf]) -> bool {
    dirs.iter().any(|d| {
        let d = d.as_os_str().as_bytes();
        path.len() > d.len() && path.starts_with(d) && (d.ends_with(b"/") || path[d.len()] == b'/')
    })
}

impl Cache {
    fn read(l: &Ledger, files: &[FileId], dirs: &[PathBuf], prices: &PriceTable) -> Cache {
        let meta = l.scan_meta().unwrap_or_default();
        let prices_fp = fnv(format!("{:?}{}", prices.models(), prices.web_search_nanos).as_bytes()) as i64;
        let mut d: Vec<&[u8]> = dirs.iter().map(|d| d.as_os_str().as_bytes()).collect();
        d.sort();
        let dirs_fp = fnv(&d.join(&0u8)) as i64;
        let usage_fp = l.usage_fingerprint().unwrap_or((-1, -1));
        // Other prices change every cost: start over. Other directories (another
        // CLAUDE_CONFIG_DIR) keep their rows; ownership is only worked out again.
        let valid = meta.get("version") == Some(&CACHE_VERSION) && meta.get("prices") == Some(&prices_fp);
        let same_dirs = meta.get("dirs") == Some(&dirs_fp);
        let rows: Vec<CachedFile> = if valid { l.scan_files().unwrap_or_default() } else { Vec::new() };
        // Both in path order: match them by merging.
        let mut of_file = vec![None; files.len()];
        let (mut i, mut j) = (0, 0);
        while i < files.len() && j < rows.len() {
            match files[i].path.as_os_str().as_bytes().cmp(&rows[j].path) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    of_file[i] = Some(j);
                    i += 1;
                    j += 1;
                }
            }
        }
        let mut c = Cache {
            valid,
            same_dirs,
            generation: meta.get("generation").copied().unwrap_or(0),
            usage_fp,
            prices_fp,
            dirs_fp,
            rows,
            of_file,
            keys: None,
            ledger_keys: None,
            same_ledger: false,
            gone: Vec::new(),
        };
        c.same_ledger = meta.get("usage_rows") == Some(&usage_fp.0) && meta.get("usage_max") == Some(&usage_fp.1);
        let mut matched = vec![false; c.rows.len()];
        c.of_file.iter().flatten().for_each(|&r| matched[r] = true);
        c.gone = (0..c.rows.len()).filter(|&r| !matched[r] && under(&c.rows[r].path, dirs)).collect();
        let quiet = valid
            && same_dirs
            && c.same_ledger
            && c.gone.is_empty()
            && files
                .iter()
                .zip(&c.of_file)
                .all(|(f, r)| r.is_some_and(|r| unchanged(&c.rows[r], f) && c.rows[r].offset == f.size));
        if !quiet {
            // Something changed: ownership is worked out again, from every identity.
            c.keys = Some(if valid { l.scan_keys().unwrap_or_default() } else { HashMap::new() });
            c.ledger_keys = Some(ledger_keys(l));
        }
        c
    }
}

fn ledger_keys(l: &Ledger) -> KeySet {
    let mut lk = KeySet::default();
    let _ = l.usage_keys(|k| {
        lk.insert(key_hash(k));
    });
    lk
}

fn unchanged(r: &CachedFile, f: &FileId) -> bool {
    r.dev == f.dev && r.ino == f.ino && r.size == f.size && r.mtime_ns == f.mtime_ns
}

fn scan(
    ds: &mut Dataset,
    files: &[FileId],
    cache: Option<(&Ledger, Cache)>,
    since_ms: i64,
    tz: &TimeZone,
    prices: &PriceTable,
) -> ScanStats {
    let mut stats = ScanStats { files: files.len(), ..ScanStats::default() };
    let mut days = DayCache { tz, last: None };
    let (ledger, mut cache) = match cache {
        Some((l, c)) => (Some(l), Some(c)),
        None => (None, None),
    };
    // Nothing changed: the cached sums are the answer.
    if let Some(c) = cache.as_ref().filter(|c| c.keys.is_none()) {
        let mut scratch = Scratch::default();
        let before = ds.clone();
        let ok =
            c.of_file.iter().flatten().all(|r| add_encoded(&c.rows[*r].sums, ds, since_ms, &mut days, &mut scratch));
        if !ok {
            // Damaged: forget what it added, and build the cache again below.
            *ds = before;
        } else {
            ds.files += files.len() as u64;
            stats.cached = files.len();
            return stats;
        }
    }
    if let (Some(l), Some(c)) = (ledger, cache.as_mut().filter(|c| c.keys.is_none())) {
        // A row that does not decode: build the cache again.
        c.valid = false;
        c.of_file.iter_mut().for_each(|r| *r = None);
        c.keys = Some(HashMap::new());
        c.ledger_keys = Some(ledger_keys(l));
    }
    let mut t_phase = (std::time::Instant::now(), String::new());
    let ledger_keys = cache.as_mut().and_then(|c| c.ledger_keys.take()).unwrap_or_default();
    let mut cached_keys = cache.as_mut().and_then(|c| c.keys.take()).unwrap_or_default();

    // What to do with each file, and the states to start from.
    let mut jobs: Vec<Job> = files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let full = Job { plan: Plan::Full, state: FileState::default(), tail: None, dirty: true };
            let Some(c) = &cache else { return full };
            let Some(r) = c.of_file[i].map(|r| &c.rows[r]) else { return full };
            let Some(k) = cached_keys.remove(f.path.as_os_str().as_bytes()) else { return full };
            let (Some(sum), Some(keys), Some(lost)) = (FileSum::decode(&r.sums), keys_of(&k.keys), keys_of(&k.lost))
            else {
                return full;
            };
            let state =
                FileState { sum, keys: keys.into_iter().collect(), lost, uses_mtime: r.uses_mtime, offset: r.offset };
            if unchanged(r, f) {
                let plan = if r.offset == f.size { Plan::Cached } else { Plan::Resume };
                return Job { plan, state, tail: None, dirty: false };
            }
            let grown = r.dev == f.dev && r.ino == f.ino && f.size > r.size && !r.uses_mtime;
            if grown {
                Job { plan: Plan::Resume, state, tail: None, dirty: true }
            } else {
                full
            }
        })
        .collect();
    let old_windows: Vec<Option<(u64, u64)>> = files
        .iter()
        .enumerate()
        .map(|(i, _)| cache.as_ref().and_then(|c| c.of_file[i].map(|r| (c.rows[r].head, c.rows[r].tail))))
        .collect();

    phase(&mut t_phase, "0");
    // First pass: read what is new. A response is skipped when the ledger owns it, or an earlier
    // file that is not read again holds it; the ownership pass below checks the rest.
    let mut held: HashMap<u64, u32, KeyHash> = HashMap::default();
    for (i, j) in jobs.iter().enumerate() {
        if !matches!(j.plan, Plan::Full) {
            for &k in &j.state.keys {
                held.entry(k).or_insert(i as u32);
            }
        }
    }
    let claimed_first = |i: usize| {
        let (held, ledger_keys) = (&held, &ledger_keys);
        move |k: u64| ledger_keys.contains(&k) || held.get(&k).is_some_and(|&j| (j as usize) < i)
    };
    let mut todo: Vec<usize> = (0..files.len()).filter(|&i| !matches!(jobs[i].plan, Plan::Cached)).collect();
    // Biggest first, so that no thread is left with a large file at the end.
    todo.sort_by_key(|&i| std::cmp::Reverse(files[i].size - jobs[i].state.offset.min(files[i].size)));
    let results = run_parallel(&todo, |i, buf| {
        let f = &files[i];
        let job = &jobs[i];
        let mut state = match job.plan {
            Plan::Resume => job.state.clone(),
            _ => FileState::default(),
        };
        let Ok(file) = File::open(&f.path) else { return None };
        let mut resumed = matches!(job.plan, Plan::Resume);
        if resumed && state.offset > 0 && window_hashes(&file, state.offset) != old_windows[i] {
            // Changed in place where it was read: read it all again.
            state = FileState::default();
            resumed = false;
        }
        let from = state.offset;
        let ctx = FileCtx::of(&f.path, f.mtime_ms());
        let mut pc = PriceCache { table: prices, seen: Vec::new() };
        let tail = read_file(&file, f.size, &mut state, &ctx, &mut pc, &claimed_first(i), buf);
        Some((state, tail, resumed, f.size - from))
    });
    for (i, r) in todo.iter().zip(results) {
        let j = &mut jobs[*i];
        match r {
            Some((state, tail, resumed, read)) => {
                stats.bytes_read += read;
                if resumed {
                    stats.resumed += 1;
                } else {
                    stats.full += 1;
                }
                j.dirty |= state.offset != j.state.offset || !resumed;
                j.state = state;
                j.tail = tail;
            }
            None => {
                // Gone since it was listed.
                j.state = FileState::default();
                j.tail = None;
                j.dirty = true;
            }
        }
    }
    drop(held);

    phase(&mut t_phase, "1");
    // Ownership: the ledger's, else the first file's in path order that holds it.
    let mut all: Vec<(u64, u32)> = Vec::new();
    for (i, j) in jobs.iter().enumerate() {
        all.extend(j.state.keys.iter().map(|&k| (k, i as u32)));
        if let Some(k) = j.tail.as_ref().and_then(|t| t.key) {
            all.push((k, i as u32));
        }
    }
    all.sort_unstable();
    let mut lost: Vec<Vec<u64>> = vec![Vec::new(); jobs.len()];
    let mut g = 0;
    while g < all.len() {
        let k = all[g].0;
        let mut e = g;
        while e < all.len() && all[e].0 == k {
            e += 1;
        }
        // `all` is sorted by file too, and a file holds a key once: the first entry is the owner.
        let losers = if ledger_keys.contains(&k) { g } else { g + 1 };
        for &(_, f) in &all[losers..e] {
            lost[f as usize].push(k);
        }
        g = e;
    }
    drop(all);
    phase(&mut t_phase, "2");
    // Files whose owned set is not what their sums were made with: read them again, knowing it.
    let mut redo = Vec::new();
    for (i, j) in jobs.iter_mut().enumerate() {
        let mut want = std::mem::take(&mut lost[i]);
        want.sort_unstable();
        want.dedup();
        let mut complete = want.clone();
        if let Some(t) = &mut j.tail {
            if let Some(k) = t.key.filter(|k| want.binary_search(k).is_ok()) {
                // The last line's response is owned elsewhere: it adds nothing here.
                t.sum = FileSum { malformed: t.sum.malformed, ..FileSum::default() };
                complete.retain(|&x| x != k);
            }
        }
        let mut have = j.state.lost.clone();
        have.sort_unstable();
        if have != complete {
            redo.push(i);
        }
        lost[i] = want;
    }
    let results = run_parallel(&redo, |i, buf| {
        let f = &files[i];
        let Ok(file) = File::open(&f.path) else { return None };
        let want = &lost[i];
        let claimed = |k: u64| want.binary_search(&k).is_ok();
        let ctx = FileCtx::of(&f.path, f.mtime_ms());
        let mut pc = PriceCache { table: prices, seen: Vec::new() };
        let mut state = FileState::default();
        let tail = read_file(&file, f.size, &mut state, &ctx, &mut pc, &claimed, buf);
        Some((state, tail))
    });
    for (i, r) in redo.iter().zip(results) {
        let j = &mut jobs[*i];
        stats.full += 1;
        stats.bytes_read += files[*i].size;
        let (state, tail) = r.unwrap_or_default();
        j.state = state;
        j.tail = tail;
        j.dirty = true;
    }
    stats.cached = jobs.iter().filter(|j| matches!(j.plan, Plan::Cached) && !j.dirty).count();

    phase(&mut t_phase, "3");
    // The report, in path order.
    for j in &jobs {
        j.state.sum.add_to(ds, since_ms, &mut days);
        if let Some(t) = &j.tail {
            t.sum.add_to(ds, since_ms, &mut days);
        }
    }
    ds.files += files.len() as u64;

    phase(&mut t_phase, "4");
    // Remember it.
    if let (Some(l), Some(c)) = (ledger, &cache) {
        stats.wrote = write_cache(l, c, files, &jobs);
    }
    phase(&mut t_phase, "written");
    log::debug!("phases{}", t_phase.1);
    stats
}

/// Timing of a report's phases, logged at debug (`CCB_LOG=debug`, or `CCB_SCAN_STATS` for these alone).
fn phase(t: &mut (std::time::Instant, String), name: &str) {
    use std::fmt::Write;
    let _ = write!(t.1, " {name}:{:.1?}", t.0.elapsed());
    t.0 = std::time::Instant::now();
}

fn write_cache(l: &Ledger, c: &Cache, files: &[FileId], jobs: &[Job]) -> bool {
    let mut w = ScanWrite {
        expect_generation: c.generation,
        clear: !c.valid,
        meta: vec![
            ("version", CACHE_VERSION),
            ("prices", c.prices_fp),
            ("dirs", c.dirs_fp),
            ("usage_rows", c.usage_fp.0),
            ("usage_max", c.usage_fp.1),
        ],
        ..ScanWrite::default()
    };
    w.delete = c.gone.iter().map(|&r| c.rows[r].path.clone()).collect();
    for (f, j) in files.iter().zip(jobs) {
        if !j.dirty && c.valid {
            continue;
        }
        let s = &j.state;
        let Ok(file) = File::open(&f.path) else { continue };
        let Some((head, tail)) = window_hashes(&file, s.offset) else { continue };
        let mut keys: Vec<u64> = s.keys.iter().copied().collect();
        keys.sort_unstable();
        let mut lost = s.lost.clone();
        lost.sort_unstable();
        w.upsert.push((
            CachedFile {
                path: f.path.as_os_str().as_bytes().to_vec(),
                dev: f.dev,
                ino: f.ino,
                size: f.size,
                mtime_ns: f.mtime_ns,
                offset: s.offset,
                head,
                tail,
                uses_mtime: s.uses_mtime,
                sums: s.sum.encode(),
            },
            CachedKeys { keys: keys_blob(&keys), lost: keys_blob(&lost) },
        ));
    }
    if c.valid && c.same_ledger && c.same_dirs && w.upsert.is_empty() && w.delete.is_empty() {
        return false;
    }
    l.write_scan(&w).unwrap_or(false)
}

/// Run `work` on each index, on as many threads as there are cores, biggest jobs first is the
/// caller's business; results come back in the order of `items`.
fn run_parallel<T: Send>(items: &[usize], work: impl Fn(usize, &mut Vec<u8>) -> Option<T> + Sync) -> Vec<Option<T>> {
    if items.is_empty() {
        return Vec::new();
    }
    let next = AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 8).min(items.len());
    let mut out: Vec<Option<T>> = Vec::with_capacity(items.len());
    let parts: Vec<Vec<(usize, Option<T>)>> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                sc.spawn(|| {
                    let mut buf = Vec::new();
                    let mut mine = Vec::new();
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&i) = items.get(n) else { break };
                        mine.push((n, work(i, &mut buf)));
                    }
                    mine
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
    });
    out.resize_with(items.len(), || None);
    for (n, r) in parts.into_iter().flatten() {
        out[n] = r;
    }
    out
}

/// One response as the transcripts tell it, for rebuilding the ledger (`ccb ledger repair`).
#[derive(Debug, Clone)]
pub struct Response {
    pub event: UsageEvent,
    /// The session it belongs to: its line's `sessionId`, else its file's (a subagent's file
    /// belongs to the session whose directory holds it).
    pub session_id: String,
    /// Its time: the line's timestamp, else the file's modification time.
    pub ts_ms: i64,
}

/// Every response in the transcripts under `dirs`, each once, by the rule reports follow: the
/// first file in path order that holds it, at its first line there. Returns how many malformed
/// lines were skipped.
pub fn each_response(dirs: &[PathBuf], mut f: impl FnMut(Response)) -> u64 {
    let mut seen = KeySet::default();
    let mut malformed = 0;
    let mut buf = Vec::new();
    for file in transcript_files(dirs) {
        let Ok(fh) = File::open(&file.path) else { continue };
        let ctx = FileCtx::of(&file.path, file.mtime_ms());
        let mut line = |l: &[u8]| match parse_line(l) {
            Line::Usage(e) => {
                if seen.insert(key_hash(&e.key)) {
                    let ts_ms = e.timestamp.as_deref().and_then(parse_ts_ms).unwrap_or(ctx.mtime_ms);
                    let session_id =
                        e.session_id.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| ctx.session.clone());
                    f(Response { event: *e, session_id, ts_ms });
                }
            }
            Line::Malformed => malformed += 1,
            Line::Other => {}
        };
        let (_, rest) = for_each_line(&fh, 0, file.size, &mut buf, &mut line);
        if !rest.trim_ascii().is_empty() {
            line(&rest);
        }
    }
    malformed
}

/// Transcripts only, without a cache or a ledger (tests, and a ledger that cannot be opened).
pub fn add_transcripts(
    ds: &mut Dataset,
    dirs: &[PathBuf],
    since_ms: i64,
    tz: &TimeZone,
    prices: &PriceTable,
) -> ScanStats {
    let files = transcript_files(dirs);
    scan(ds, &files, None, since_ms, tz, prices)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::report::{build, to_json, Period, Split};
    use std::io::Write;

    fn line(session: &str, msg: &str, req: &str, ts: &str, model: &str, input: u64, extra: &str) -> String {
        format!(
            r#"{{"type":"assistant","sessionId":"{session}","cwd":"/w","entrypoint":"sdk-cli","requestId":"{req}","timestamp":"{ts}",{extra}"message":{{"id":"{msg}","model":"{model}","usage":{{"input_tokens":{input},"output_tokens":0}}}}}}"#
        ) + "\n"
    }

    /// Haiku 4.5 at $1 per million input tokens: `usd` dollars in one response.
    fn haiku(session: &str, id: &str, usd: u64, ts: &str) -> String {
        line(session, &format!("m{id}"), &format!("r{id}"), ts, "claude-haiku-4-5", usd * 1_000_000, "")
    }

    fn prices() -> PriceTable {
        PriceTable::newest().unwrap()
    }

    /// Daily and session reports as JSON: what a user sees.
    fn shown(ds: &Dataset) -> String {
        let d = to_json(&build(ds, Period::Daily, Split::None, None, None), Split::None);
        let s = to_json(&build(ds, Period::Session, Split::Project, None, None), Split::Project);
        format!("{d}\n{s}")
    }

    /// A report through the cache in `l`, and what the scan did.
    fn warm(l: &Ledger, dirs: &[PathBuf]) -> (String, ScanStats) {
        let mut ds = Dataset::default();
        let st = add_all(&mut ds, Some(l), dirs, i64::MIN, &TimeZone::UTC, &prices()).unwrap();
        (shown(&ds), st)
    }

    /// The same report from scratch, with a fresh ledger holding the same responses.
    fn cold(l: &Ledger, dirs: &[PathBuf]) -> String {
        let d = tempfile::tempdir().unwrap();
        let fresh = Ledger::open(&d.path().join("cold.db")).unwrap();
        for u in l.usage_between(i64::MIN, i64::MAX).unwrap() {
            fresh
                .begin(&crate::ledger::SessionStart {
                    id: u.row.session_id.clone(),
                    class: u.class.clone(),
                    meter: u.meter.clone(),
                    billing_mode: "api-key".into(),
                    ..Default::default()
                })
                .unwrap();
            fresh.record(&u.row).unwrap();
        }
        let (out, st) = warm(&fresh, dirs);
        assert_eq!(st.cached, 0);
        out
    }

    fn total_nanos(l: &Ledger, dirs: &[PathBuf]) -> i64 {
        let mut ds = Dataset::default();
        add_all(&mut ds, Some(l), dirs, i64::MIN, &TimeZone::UTC, &prices()).unwrap();
        build(&ds, Period::Daily, Split::None, None, None).totals.cost.nanos()
    }

    /// Set a file's modification time, so that a change is seen whatever the clock's resolution.
    fn touch(p: &Path, secs: u64) {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_790_000_000 + secs);
        std::fs::OpenOptions::new().append(true).open(p).unwrap().set_modified(t).unwrap();
    }

    fn append(p: &Path, s: &str, secs: u64) {
        std::fs::OpenOptions::new().append(true).open(p).unwrap().write_all(s.as_bytes()).unwrap();
        touch(p, secs);
    }

    struct Fixture {
        _d: tempfile::TempDir,
        dirs: Vec<PathBuf>,
        proj: PathBuf,
        l: Ledger,
    }

    fn fixture() -> Fixture {
        let d = tempfile::tempdir().unwrap();
        let proj = d.path().join("c/projects/-w");
        std::fs::create_dir_all(proj.join("S1/subagents")).unwrap();
        let l = Ledger::open(&d.path().join("ledger.db")).unwrap();
        Fixture { dirs: vec![d.path().join("c")], proj, l, _d: d }
    }

    #[test]
    fn counts_each_response_once_across_files_and_dirs() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a/projects/-w");
        let b = d.path().join("b/projects/-w");
        std::fs::create_dir_all(a.join("S1/subagents")).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        // Haiku 4.5: $1 per million input tokens.
        let l1 = line("S1", "m1", "r1", "2026-11-20T10:00:00Z", "claude-haiku-4-5", 1_000_000, "");
        std::fs::write(a.join("S1.jsonl"), format!("{l1}{l1}not json\n")).unwrap();
        let sub = line(
            "S1",
            "m2",
            "r2",
            "2026-11-20T23:30:00Z",
            "claude-haiku-4-5",
            2_000_000,
            r#""isSidechain":true,"agentId":"x","#,
        );
        std::fs::write(a.join("S1/subagents/agent-x.jsonl"), sub).unwrap();
        // The same response copied into another directory's history (a resumed session).
        let l3 = line("S2", "m3", "r3", "2026-11-21T01:00:00Z", "claude-haiku-4-5", 4_000_000, "");
        std::fs::write(b.join("S2.jsonl"), format!("{l1}{l3}")).unwrap();
        let prices = prices();
        let mut ds = Dataset::default();
        let dirs = vec![d.path().join("a"), d.path().join("b")];
        add_transcripts(&mut ds, &dirs, 0, &TimeZone::UTC, &prices);
        assert_eq!(ds.malformed, 1);
        let r = build(&ds, Period::Daily, Split::None, None, None);
        assert_eq!(r.totals.cost.nanos(), 7 * 1_000_000_000, "1 + 2 + 4 dollars, duplicates once");
        assert_eq!(r.rows.len(), 2);
        // In UTC+2, the subagent's 23:30 response falls on the next day.
        let mut ds = Dataset::default();
        let tz = TimeZone::fixed(jiff::tz::offset(2));
        add_transcripts(&mut ds, &dirs, 0, &tz, &prices);
        let r = build(&ds, Period::Daily, Split::None, None, None);
        assert_eq!(r.rows.iter().map(|r| r.total.cost.nanos() / 1_000_000_000).collect::<Vec<_>>(), vec![1, 6]);
        let r = build(&ds, Period::Session, Split::None, None, None);
        assert_eq!(
            r.rows.iter().find(|r| r.key == "S1").unwrap().total.cost.nanos(),
            3_000_000_000,
            "subagents count to their session"
        );
        assert_eq!(r.rows[0].session.as_ref().unwrap().class, "programmatic");
        // From a day that starts at 23:00 UTC (UTC+1) on, the 23:30 response counts and the 10:00 one not.
        let mut ds = Dataset::default();
        let tz = TimeZone::fixed(jiff::tz::offset(1));
        let since = jiff::civil::date(2026, 11, 21).to_zoned(tz.clone()).unwrap().timestamp().as_millisecond();
        add_transcripts(&mut ds, &dirs, since, &tz, &prices);
        assert_eq!(build(&ds, Period::Daily, Split::None, None, None).totals.cost.nanos(), 6_000_000_000);
    }

    #[test]
    fn rows_an_older_ccb_recorded_without_a_session_are_named() {
        let f = fixture();
        use crate::ledger::*;
        f.l.record(&UsageRow {
            key: "m9:r9".into(),
            session_id: String::new(),
            ts_ms: parse_ts_ms("2026-11-20T10:00:00Z").unwrap(),
            model: "claude-haiku-4-5".into(),
            agent_id: None,
            usage: Default::default(),
            cost: crate::core::money::Usd(5),
            source: "gate".into(),
            priced_by: "table".into(),
            estimated: false,
            run_id: None,
        })
        .unwrap();
        let mut ds = Dataset::default();
        add_all(&mut ds, Some(&f.l), &f.dirs, i64::MIN, &TimeZone::UTC, &prices()).unwrap();
        let r = build(&ds, Period::Session, Split::None, None, None);
        let ids: Vec<&str> = r.rows.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(ids, [UNATTRIBUTED], "never an empty session id");
    }

    #[test]
    fn ledger_responses_are_not_counted_again_from_transcripts() {
        let f = fixture();
        std::fs::write(f.proj.join("S.jsonl"), haiku("S", "1", 1, "2026-11-20T10:00:00Z")).unwrap();
        use crate::ledger::*;
        f.l.begin(&SessionStart {
            id: "S".into(),
            class: "programmatic".into(),
            meter: "credit-pool".into(),
            billing_mode: "oauth".into(),
            ..Default::default()
        })
        .unwrap();
        f.l.record(&UsageRow {
            key: "m1:r1".into(),
            session_id: "S".into(),
            ts_ms: parse_ts_ms("2026-11-20T10:00:00Z").unwrap(),
            model: "claude-haiku-4-5".into(),
            agent_id: None,
            usage: Default::default(),
            cost: crate::core::money::Usd(1_000_000_000),
            source: "transcript".into(),
            priced_by: "claude-release".into(),
            estimated: false,
            run_id: None,
        })
        .unwrap();
        for _ in 0..2 {
            let mut ds = Dataset::default();
            add_all(&mut ds, Some(&f.l), &f.dirs, i64::MIN, &TimeZone::UTC, &prices()).unwrap();
            let r = build(&ds, Period::Session, Split::None, None, None);
            assert_eq!(r.totals.cost.nanos(), 1_000_000_000);
            assert_eq!(r.totals.responses, 1);
            assert_eq!(r.rows[0].session.as_ref().unwrap().meter, "credit-pool", "the ledger's attributes win");
        }
    }

    #[test]
    fn growth_reads_only_the_new_bytes_and_a_last_line_in_progress_counts() {
        let f = fixture();
        let p = f.proj.join("S1.jsonl");
        std::fs::write(
            &p,
            format!("{}{}", haiku("S1", "1", 1, "2026-11-20T10:00:00Z"), haiku("S1", "2", 2, "2026-11-20T10:01:00Z")),
        )
        .unwrap();
        touch(&p, 1);
        let (first, st) = warm(&f.l, &f.dirs);
        assert!(st.wrote && st.full == 1, "{st:?}");
        assert_eq!(first, cold(&f.l, &f.dirs));
        let (again, st) = warm(&f.l, &f.dirs);
        assert_eq!((st.cached, st.bytes_read, st.wrote), (1, 0, false), "nothing changed: nothing read");
        assert_eq!(again, first);
        // A response and half of the next.
        let more = haiku("S1", "3", 4, "2026-11-21T09:00:00Z");
        let next = haiku("S1", "4", 8, "2026-11-21T09:05:00Z");
        let before = std::fs::metadata(&p).unwrap().len();
        append(&p, &format!("{more}{}", &next[..next.len() - 1]), 2);
        let (grown, st) = warm(&f.l, &f.dirs);
        assert_eq!((st.resumed, st.full), (1, 0), "{st:?}");
        assert_eq!(st.bytes_read, std::fs::metadata(&p).unwrap().len() - before, "only the new bytes");
        assert_eq!(grown, cold(&f.l, &f.dirs));
        assert_eq!(total_nanos(&f.l, &f.dirs), 15_000_000_000, "the line without its newline yet counts");
        // The line ends; a duplicate of an earlier line follows.
        append(&p, &format!("\n{more}"), 3);
        let (done, st) = warm(&f.l, &f.dirs);
        assert_eq!((st.resumed, st.full), (1, 0), "{st:?}");
        assert_eq!(done, cold(&f.l, &f.dirs));
        assert_eq!(total_nanos(&f.l, &f.dirs), 15_000_000_000);
        let (_, st) = warm(&f.l, &f.dirs);
        assert_eq!(st.cached, 1);
    }

    #[test]
    fn changed_shrunk_replaced_or_deleted_files_are_read_again() {
        let f = fixture();
        let p = f.proj.join("S1.jsonl");
        let q = f.proj.join("S2.jsonl");
        let sub = f.proj.join("S1/subagents/agent-a.jsonl");
        std::fs::write(
            &p,
            format!("{}{}", haiku("S1", "1", 1, "2026-11-20T10:00:00Z"), haiku("S1", "2", 2, "2026-11-20T10:01:00Z")),
        )
        .unwrap();
        std::fs::write(&q, haiku("S2", "9", 16, "2026-11-22T10:00:00Z")).unwrap();
        std::fs::write(
            &sub,
            line(
                "S1",
                "m5",
                "r5",
                "2026-11-20T10:02:00Z",
                "claude-haiku-4-5",
                32_000_000,
                r#""isSidechain":true,"agentId":"a","#,
            ),
        )
        .unwrap();
        touch(&p, 1);
        warm(&f.l, &f.dirs);
        assert_eq!(total_nanos(&f.l, &f.dirs), 51_000_000_000);
        // In place, same size: $2 becomes $3.
        let text = std::fs::read_to_string(&p).unwrap().replace("\"input_tokens\":2000000", "\"input_tokens\":3000000");
        std::fs::write(&p, &text).unwrap();
        touch(&p, 2);
        let (out, st) = warm(&f.l, &f.dirs);
        assert_eq!((st.full, st.resumed, st.cached), (1, 0, 2), "{st:?}");
        assert_eq!(out, cold(&f.l, &f.dirs));
        assert_eq!(total_nanos(&f.l, &f.dirs), 52_000_000_000);
        // Changed where it was read, and grown.
        std::fs::write(
            &p,
            text.replacen("\"input_tokens\":1000000", "\"input_tokens\":5000000", 1)
                + &haiku("S1", "3", 64, "2026-11-20T11:00:00Z"),
        )
        .unwrap();
        touch(&p, 3);
        let (out, st) = warm(&f.l, &f.dirs);
        assert_eq!((st.full, st.resumed), (1, 0), "{st:?}");
        assert_eq!(out, cold(&f.l, &f.dirs));
        assert_eq!(total_nanos(&f.l, &f.dirs), (5 + 3 + 64 + 16 + 32) * 1_000_000_000);
        // Shrunk.
        std::fs::write(&p, haiku("S1", "1", 1, "2026-11-20T10:00:00Z")).unwrap();
        touch(&p, 4);
        let (out, st) = warm(&f.l, &f.dirs);
        assert_eq!(st.full, 1, "{st:?}");
        assert_eq!(out, cold(&f.l, &f.dirs));
        assert_eq!(total_nanos(&f.l, &f.dirs), 49_000_000_000);
        // Replaced by another file (a new inode) of the same size and time.
        let tmp = f.proj.join("tmp");
        std::fs::write(&tmp, haiku("S1", "7", 9, "2026-11-20T10:00:00Z")).unwrap();
        touch(&tmp, 4);
        std::fs::rename(&tmp, &p).unwrap();
        let (out, st) = warm(&f.l, &f.dirs);
        assert_eq!(st.full, 1, "{st:?}");
        assert_eq!(out, cold(&f.l, &f.dirs));
        assert_eq!(total_nanos(&f.l, &f.dirs), 57_000_000_000);
        // Gone.
        std::fs::remove_file(&sub).unwrap();
        let (out, st) = warm(&f.l, &f.dirs);
        assert!(st.wrote, "{st:?}");
        assert_eq!(out, cold(&f.l, &f.dirs));
        assert_eq!(total_nanos(&f.l, &f.dirs), 25_000_000_000);
        let (_, st) = warm(&f.l, &f.dirs);
        assert_eq!((st.cached, st.wrote), (2, false));
    }

    #[test]
    fn a_response_in_several_files_counts_once_as_they_come_and_go() {
        let f = fixture();
        let (a, b, early) = (f.proj.join("A.jsonl"), f.proj.join("B.jsonl"), f.proj.join("0.jsonl"));
        let r1 = haiku("A", "1", 1, "2026-11-20T10:00:00Z");
        let r2 = haiku("A", "2", 2, "2026-11-20T11:00:00Z");
        std::fs::write(&a, format!("{r1}{r2}")).unwrap();
        warm(&f.l, &f.dirs);
        // B, a resumed session, starts with a copy of A's first response.
        std::fs::write(&b, format!("{r1}{}", haiku("B", "3", 4, "2026-11-21T10:00:00Z"))).unwrap();
        let (out, st) = warm(&f.l, &f.dirs);
        assert_eq!((st.cached, st.full), (1, 1), "{st:?}");
        assert_eq!(out, cold(&f.l, &f.dirs));
        assert_eq!(total_nanos(&f.l, &f.dirs), 7_000_000_000);
        // A file earlier in path order holds A's second response: it owns it now, and A is read
        // again to give it up.
        std::fs::write(&early, r2.replace("\"sessionId\":\"A\"", "\"sessionId\":\"Z\"")).unwrap();
        let (out, st) = warm(&f.l, &f.dirs);
        assert_eq!(out, cold(&f.l, &f.dirs));
        assert!(st.full >= 2, "{st:?}");
        assert_eq!(total_nanos(&f.l, &f.dirs), 7_000_000_000);
        assert!(out.contains("\"sessionId\":\"Z\""), "{out}");
        // It goes away: A owns it again.
        std::fs::remove_file(&early).unwrap();
        let (out, _) = warm(&f.l, &f.dirs);
        assert_eq!(out, cold(&f.l, &f.dirs));
        assert!(!out.contains("\"sessionId\":\"Z\""));
        // B grows with another copy of a response of A's: still once.
        append(&b, &r2, 9);
        let (out, st) = warm(&f.l, &f.dirs);
        assert_eq!(st.resumed, 1, "{st:?}");
        assert_eq!(out, cold(&f.l, &f.dirs));
        assert_eq!(total_nanos(&f.l, &f.dirs), 7_000_000_000);
    }

    #[test]
    fn a_response_recorded_in_the_ledger_later_moves_there() {
        let f = fixture();
        let p = f.proj.join("S.jsonl");
        std::fs::write(
            &p,
            format!("{}{}", haiku("S", "1", 1, "2026-11-20T10:00:00Z"), haiku("S", "2", 2, "2026-11-20T10:00:00Z")),
        )
        .unwrap();
        warm(&f.l, &f.dirs);
        use crate::ledger::*;
        f.l.begin(&SessionStart {
            id: "S".into(),
            class: "programmatic".into(),
            meter: "api".into(),
            billing_mode: "api-key".into(),
            ..Default::default()
        })
        .unwrap();
        f.l.record(&UsageRow {
            key: "m2:r2".into(),
            session_id: "S".into(),
            ts_ms: parse_ts_ms("2026-11-20T10:00:00Z").unwrap(),
            model: "claude-haiku-4-5".into(),
            agent_id: None,
            usage: crate::core::pricing::Usage { input: 2_000_000, ..Default::default() },
            cost: crate::core::money::Usd(2_000_000_000),
            source: "transcript".into(),
            priced_by: "claude-release".into(),
            estimated: false,
            run_id: None,
        })
        .unwrap();
        let (out, st) = warm(&f.l, &f.dirs);
        assert_eq!(st.full, 1, "the file gives the response up: {st:?}");
        assert_eq!(out, cold(&f.l, &f.dirs));
        let mut ds = Dataset::default();
        add_all(&mut ds, Some(&f.l), &f.dirs, i64::MIN, &TimeZone::UTC, &prices()).unwrap();
        let r = build(&ds, Period::Daily, Split::None, None, None);
        assert_eq!((r.totals.cost.nanos(), r.totals.responses), (3_000_000_000, 2));
        let (_, st) = warm(&f.l, &f.dirs);
        assert_eq!(st.cached, 1);
    }

    #[test]
    fn responses_without_a_time_take_the_files_and_a_damaged_cache_is_rebuilt() {
        let f = fixture();
        let p = f.proj.join("S.jsonl");
        let untimed = haiku("S", "1", 1, "x").replace(",\"timestamp\":\"x\"", "");
        std::fs::write(&p, &untimed).unwrap();
        touch(&p, 0);
        let (out, _) = warm(&f.l, &f.dirs);
        assert!(out.contains("2026-09-21"), "{out}");
        // Growth moves the file's time: the old line moves with it, as a fresh read would.
        append(&p, &haiku("S", "2", 2, "2026-11-20T10:00:00Z"), 86_400 * 30);
        let (out, st) = warm(&f.l, &f.dirs);
        assert_eq!(st.full, 1, "{st:?}");
        assert_eq!(out, cold(&f.l, &f.dirs));
        assert!(out.contains("2026-10-21") && !out.contains("2026-09-21"), "{out}");
        // A cache row that does not decode.
        f.l.snapshot(|_| Ok(())).unwrap();
        let c = rusqlite::Connection::open(f.l.path.clone()).unwrap();
        c.execute("UPDATE scan_files SET sums = x'0102'", []).unwrap();
        let (again, _) = warm(&f.l, &f.dirs);
        assert_eq!(again, out);
        let (again, st) = warm(&f.l, &f.dirs);
        assert_eq!((again, st.cached), (out, 1));
    }

    #[test]
    fn remembered_listings_still_see_new_files() {
        let f = fixture();
        let sub = f.proj.join("S1/subagents");
        std::fs::write(f.proj.join("S1.jsonl"), haiku("S1", "1", 1, "2026-11-20T10:00:00Z")).unwrap();
        std::fs::write(sub.join("agent-a.jsonl"), haiku("S1", "2", 2, "2026-11-20T10:00:00Z")).unwrap();
        // Directories last changed long ago: their listings are trusted from the next report on.
        let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        for d in [&sub, &f.proj.join("S1"), &f.proj, &f.proj.parent().unwrap().to_path_buf()] {
            File::open(d).unwrap().set_modified(old).unwrap();
        }
        warm(&f.l, &f.dirs);
        let (files, made, _) = transcript_files_with(&f.dirs, &Listings::load(&f.l));
        assert_eq!((files.len(), made.len()), (2, 0), "every listing came from memory");
        // A new subagent and a new session change their directories: both are found.
        std::fs::write(sub.join("agent-b.jsonl"), haiku("S1", "3", 4, "2026-11-20T10:00:00Z")).unwrap();
        std::fs::write(f.proj.join("S2.jsonl"), haiku("S2", "4", 8, "2026-11-20T10:00:00Z")).unwrap();
        let (out, st) = warm(&f.l, &f.dirs);
        assert_eq!((st.files, st.full, st.cached), (4, 2, 2), "{st:?}");
        assert_eq!(out, cold(&f.l, &f.dirs));
        assert_eq!(total_nanos(&f.l, &f.dirs), 15_000_000_000);
        // A directory that disappears takes its transcripts with it.
        std::fs::remove_dir_all(f.proj.join("S1")).unwrap();
        assert_eq!(total_nanos(&f.l, &f.dirs), 9_000_000_000);
    }

    #[test]
    fn sums_survive_encoding() {
        let mut s = FileSum { malformed: 3, ..FileSum::default() };
        let e = match parse_line(haiku("S", "1", 1, "2026-11-20T10:00:00.123Z").trim_end().as_bytes()) {
            Line::Usage(e) => e,
            _ => panic!(),
        };
        let ctx = FileCtx::of(Path::new("/c/projects/-w/S.jsonl"), 0);
        let p = prices();
        let mut pc = PriceCache { table: &p, seen: Vec::new() };
        count(&mut s, &e, -5, &ctx, &mut pc);
        count(&mut s, &e, 1_790_000_000_123, &ctx, &mut pc);
        let b = s.encode();
        assert_eq!(FileSum::decode(&b), Some(s));
        assert_eq!(FileSum::decode(&b[..b.len() - 1]), None);
    }
}
