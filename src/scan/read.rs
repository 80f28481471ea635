//! Reading a transcript file: from where the last report stopped to its last complete line,
//! memory-mapped when large, each response priced and added to the file's sums.

use super::sums::*;
use super::*;
use crate::core::pricing::{ModelPrice, PriceTable};
use crate::core::transcript::{key_hash, parse_line, Line, UsageEvent};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

// ---------------------------------------------------------------- reading a file

/// What reading a file found, while and after reading it (cached between reports).
#[derive(Debug, Default, Clone)]
pub(super) struct FileRead {
    pub(super) sum: FileSum,
    /// Every response identity of the complete lines read, owned or not.
    pub(super) keys: KeySet,
    /// Those not owned here (the ledger's, or an earlier file's).
    pub(super) lost: Vec<u64>,
    pub(super) uses_mtime: bool,
    /// End of the last complete line read.
    pub(super) offset: u64,
}

/// The last line of a file that has no newline yet: counted, but not cached (it may still grow).
#[derive(Debug, Clone)]
pub(super) struct Tail {
    pub(super) key: Option<u64>,
    pub(super) sum: FileSum,
}

/// A file's place in the tree, for responses that do not name their session.
pub(super) struct FileCtx {
    pub(super) session: String,
    pub(super) slug: String,
    pub(super) mtime_ms: i64,
}

impl FileCtx {
    pub(super) fn of(path: &Path, mtime_ms: i64) -> FileCtx {
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
pub(super) struct PriceCache<'a> {
    pub(super) table: &'a PriceTable,
    pub(super) seen: Vec<(String, ModelPrice)>,
}

impl PriceCache<'_> {
    pub(super) fn cost(&mut self, e: &UsageEvent) -> crate::core::money::Usd {
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

pub(super) fn count(sum: &mut FileSum, e: &UsageEvent, ts: i64, ctx: &FileCtx, prices: &mut PriceCache) {
    let sid = e.session_id.as_deref().unwrap_or(&ctx.session);
    let branch = e.git_branch.as_deref().unwrap_or("");
    let s = sum.session(sid, branch, || FileSession {
        id: sid.to_string(),
        project: e.cwd.clone().unwrap_or_else(|| ctx.slug.clone()),
        class: class_of_entrypoint(e.entrypoint.as_deref()),
        branch: branch.to_string(),
    });
    let m = sum.model(&e.model);
    let cost = prices.cost(e);
    sum.buckets.entry((ts.div_euclid(SLOT_MS), s, m)).or_default().add(&e.usage, cost, ts);
}

/// Read `[from, to)` of a file, one complete line at a time; returns the end of the last complete
/// line and what follows it (a last line without its newline).
pub(super) fn for_each_line(
    f: &File,
    from: u64,
    to: u64,
    buf: &mut Vec<u8>,
    mut each: impl FnMut(&[u8]),
) -> (u64, Vec<u8>) {
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
pub(super) const RELEASE_EVERY: usize = 2 << 20;

/// Below this, reading into a buffer costs less than mapping.
pub(super) const MAP_AT_LEAST: u64 = 32 << 10;

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
    // SAFETY: the same: nothing behind the pointers is ever written after they are built.
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
    pub(super) fn guard() -> bool {
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
pub(super) fn read_file(
    f: &File,
    to: u64,
    st: &mut FileRead,
    ctx: &FileCtx,
    prices: &mut PriceCache,
    claimed: &dyn Fn(u64) -> bool,
    buf: &mut Vec<u8>,
) -> Option<Tail> {
    let FileRead { sum, keys, lost, uses_mtime, offset } = st;
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

pub(super) fn window_hashes(f: &File, offset: u64) -> Option<(u64, u64)> {
    let n = offset.min(CHECK_BYTES) as usize;
    let mut a = vec![0u8; n];
    let mut b = vec![0u8; n];
    f.read_exact_at(&mut a, 0).ok()?;
    f.read_exact_at(&mut b, offset - n as u64).ok()?;
    Some((fast_hash(&a), fast_hash(&b)))
}
