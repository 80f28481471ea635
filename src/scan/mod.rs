//! Building a report's dataset from the ledger and from every local Claude Code transcript,
//! each response counted once across both (by its `message.id:requestId`).
//!
//! **Each file is read once.** What a report learns of a transcript file is kept in the ledger
//! database (migration 2): how far it was read (to the end of its last complete line), its identity
//! (device, inode, size, modification time, a hash of its first and last 4 KB read), the identities
//! of its responses, and its partial sums per (15-minute slot, session and branch, model). The next report
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
//!
//! The parts: finding the files (`files.rs`), one file's cached sums and their encoding
//! (`sums.rs`), reading a file (`read.rs`); here, the report's pass over them all and the cache.
//! Over 600 lines with its tests (about 40%), which exercise the whole pass.

pub mod attrib;
pub mod dataset;
pub mod limits;
pub mod pool;
pub mod share;
pub mod team;

use crate::core::plan::Class;
use crate::core::pricing::PriceTable;
use crate::core::report::{Agg, Dataset, SessionAttr};
use crate::core::transcript::{key_hash, parse_line, Line, UsageEvent};
use crate::ledger::{CachedFile, CachedKeys, Ledger, ScanWrite, Store};
use jiff::tz::TimeZone;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The time resolution of cached sums: a day in any time zone starts on a slot boundary.
pub const SLOT_MS: i64 = 15 * 60 * 1000;
/// Bumped whenever what is cached, or how a line is read, changes: older caches are dropped.
const CACHE_VERSION: i64 = 3;
/// How much of a file's start and of the end of what was read is checked before reading on.
const CHECK_BYTES: u64 = 4096;

pub fn parse_ts_ms(s: &str) -> Option<i64> {
    s.parse::<jiff::Timestamp>().ok().map(|t| t.as_millisecond())
}

pub fn day_of(ms: i64, tz: &TimeZone) -> jiff::civil::Date {
    let ts = jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    tz.to_datetime(ts).date()
}

/// A session's class from its transcript's `entrypoint`: `cli` is a terminal, `sdk-*` the
/// Agent SDK; anything else does not say.
pub fn class_of_entrypoint(e: Option<&str>) -> Class {
    match e {
        Some("cli") => Class::Interactive,
        Some(x) if x.starts_with("sdk") => Class::Programmatic,
        _ => Class::NotRecorded,
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
            payer: u.payer.clone(),
            reason: u.reason.clone(),
            ccb: true,
            user: u.user.clone(),
            host: u.host.clone(),
            branch: u.branch.clone().unwrap_or_default(),
        });
        let m = ds.model(&u.row.model);
        if u.row.estimated {
            ds.estimated.insert(u.row.model.clone());
        }
        let mut agg = Agg::default();
        agg.add(&u.row.usage, u.row.cost, u.row.ts_ms);
        ds.add_slot(u.row.ts_ms.div_euclid(SLOT_MS), day_of(u.row.ts_ms, tz), s, m, &agg);
    }
    Ok(())
}

mod files;
mod read;
mod sums;
pub use files::*;
use read::*;
use sums::*;

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

/// How a file is read in this report (its fate).
enum ReadMode {
    /// Not read: the cache holds all of it.
    Cached,
    /// Read on from the cached state (its offset), if the file still starts and ends as it did.
    Resume,
    /// Read from the start.
    Full,
}

struct Job {
    mode: ReadMode,
    state: FileRead,
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
            let full = Job { mode: ReadMode::Full, state: FileRead::default(), tail: None, dirty: true };
            let Some(c) = &cache else { return full };
            let Some(r) = c.of_file[i].map(|r| &c.rows[r]) else { return full };
            let Some(k) = cached_keys.remove(f.path.as_os_str().as_bytes()) else { return full };
            let (Some(sum), Some(keys), Some(lost)) = (FileSum::decode(&r.sums), keys_of(&k.keys), keys_of(&k.lost))
            else {
                return full;
            };
            let state =
                FileRead { sum, keys: keys.into_iter().collect(), lost, uses_mtime: r.uses_mtime, offset: r.offset };
            if unchanged(r, f) {
                let mode = if r.offset == f.size { ReadMode::Cached } else { ReadMode::Resume };
                return Job { mode, state, tail: None, dirty: false };
            }
            let grown = r.dev == f.dev && r.ino == f.ino && f.size > r.size && !r.uses_mtime;
            if grown {
                Job { mode: ReadMode::Resume, state, tail: None, dirty: true }
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
        if !matches!(j.mode, ReadMode::Full) {
            for &k in &j.state.keys {
                held.entry(k).or_insert(i as u32);
            }
        }
    }
    let claimed_first = |i: usize| {
        let (held, ledger_keys) = (&held, &ledger_keys);
        move |k: u64| ledger_keys.contains(&k) || held.get(&k).is_some_and(|&j| (j as usize) < i)
    };
    let mut todo: Vec<usize> = (0..files.len()).filter(|&i| !matches!(jobs[i].mode, ReadMode::Cached)).collect();
    // Biggest first, so that no thread is left with a large file at the end.
    todo.sort_by_key(|&i| std::cmp::Reverse(files[i].size - jobs[i].state.offset.min(files[i].size)));
    let results = run_parallel(&todo, |i, buf| {
        let f = &files[i];
        let job = &jobs[i];
        let mut state = match job.mode {
            ReadMode::Resume => job.state.clone(),
            _ => FileRead::default(),
        };
        let Ok(file) = File::open(&f.path) else { return None };
        let mut resumed = matches!(job.mode, ReadMode::Resume);
        if resumed && state.offset > 0 && window_hashes(&file, state.offset) != old_windows[i] {
            // Changed in place where it was read: read it all again.
            state = FileRead::default();
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
                j.state = FileRead::default();
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
        let mut state = FileRead::default();
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
    stats.cached = jobs.iter().filter(|j| matches!(j.mode, ReadMode::Cached) && !j.dirty).count();

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
    use crate::core::plan::Payer;
    use crate::core::report::{build, to_json, Period, Split};
    use std::io::Write;
    use std::path::Path;

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
                    payer: u.payer.clone(),
                    billing_mode: crate::core::plan::BillingMode::ApiKey,
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
        assert_eq!(r.rows[0].session.as_ref().unwrap().class, Class::Programmatic);
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
            requested_model: None,
            agent_id: None,
            usage: Default::default(),
            cost: crate::core::money::Usd(5),
            source: crate::core::recorded::Source::Gate,
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
            class: crate::core::plan::Class::Programmatic,
            payer: crate::core::plan::Payer::CreditPool,
            billing_mode: crate::core::plan::BillingMode::Oauth,
            ..Default::default()
        })
        .unwrap();
        f.l.record(&UsageRow {
            key: "m1:r1".into(),
            session_id: "S".into(),
            ts_ms: parse_ts_ms("2026-11-20T10:00:00Z").unwrap(),
            model: "claude-haiku-4-5".into(),
            requested_model: None,
            agent_id: None,
            usage: Default::default(),
            cost: crate::core::money::Usd(1_000_000_000),
            source: crate::core::recorded::Source::Transcript,
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
            assert_eq!(r.rows[0].session.as_ref().unwrap().payer, Payer::CreditPool, "the ledger's attributes win");
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
            class: crate::core::plan::Class::Programmatic,
            payer: crate::core::plan::Payer::Api,
            billing_mode: crate::core::plan::BillingMode::ApiKey,
            ..Default::default()
        })
        .unwrap();
        f.l.record(&UsageRow {
            key: "m2:r2".into(),
            session_id: "S".into(),
            ts_ms: parse_ts_ms("2026-11-20T10:00:00Z").unwrap(),
            model: "claude-haiku-4-5".into(),
            requested_model: None,
            agent_id: None,
            usage: crate::core::pricing::Usage { input: 2_000_000, ..Default::default() },
            cost: crate::core::money::Usd(2_000_000_000),
            source: crate::core::recorded::Source::Transcript,
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
