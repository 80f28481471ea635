//! ccb's own log, for whoever debugs it: the `log` facade and a small logger of our own.
//!
//! Off unless asked for, and then cheap: without `CCB_LOG` no logger is installed and every
//! `log::debug!` is one comparison against `log`'s maximum level.
//!
//! - `CCB_LOG=error|warn|info|debug|trace` turns it on, at that level, on stderr.
//! - `CCB_LOG_FILE=path` sends it to that file instead (appended; created owner-only, 0600).
//! - A session on a PTY never gets log lines drawn over claude's screen: with `CCB_LOG` set and no
//!   `CCB_LOG_FILE`, [`pty_session`] moves the log to `ccb.log` in ccb's state directory
//!   (`$XDG_STATE_HOME/ccb`, default `~/.local/state/ccb`) before claude starts, and says once
//!   where.
//! - `CCB_SCAN_STATS` (older than this log) still prints what a report read and how long each
//!   phase took: it turns on the debug lines of `scan` alone.
//!
//! Only ccb's own lines are written (targets `ccb` and `ccb::…`): a dependency's log could carry
//! what ccb never writes down, such as request headers. ccb's lines carry no header value, token,
//! key, URL with its token, or prompt: counts, costs, model names, keys of responses, states.
//!
//! Not a dependency such as env_logger: filtering by module, colours and a timestamp format are
//! what it would add, and ccb needs none of them; the state directory, the PTY rule and the
//! alias above are ccb's own either way. The warden (`ccb --ccb-warden`) does not log.

use log::{LevelFilter, Log, Metadata, Record};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

pub const VAR: &str = "CCB_LOG";
pub const FILE_VAR: &str = "CCB_LOG_FILE";
pub const SCAN_STATS_VAR: &str = "CCB_SCAN_STATS";

/// A log file in the state directory past this size is moved aside (`ccb.log.old`) when a new
/// session starts, so that a log left on does not fill the disk.
const ROTATE_AT: u64 = 16 << 20;

static LOGGER: OnceLock<Logger> = OnceLock::new();

struct Logger {
    level: LevelFilter,
    /// `CCB_SCAN_STATS`: the debug lines of `ccb::scan`, whatever `level` says.
    scan_stats: bool,
    sink: Mutex<Sink>,
    start: Instant,
}

enum Sink {
    Stderr,
    /// CCB_LOG_FILE, or the state directory's file of a PTY session.
    File(File),
    /// A file that could not be opened: said once, then nothing.
    Nowhere,
}

/// What `CCB_LOG` asks for: None when unset or empty; an unknown word is `debug` (with a note).
fn level_of(value: &str) -> Option<Result<LevelFilter, ()>> {
    let v = value.trim();
    if v.is_empty() {
        return None;
    }
    Some(match v.to_ascii_lowercase().as_str() {
        "off" | "0" => Ok(LevelFilter::Off),
        "error" => Ok(LevelFilter::Error),
        "warn" | "warning" => Ok(LevelFilter::Warn),
        "info" => Ok(LevelFilter::Info),
        "debug" | "1" => Ok(LevelFilter::Debug),
        "trace" => Ok(LevelFilter::Trace),
        _ => Err(()),
    })
}

/// Install the logger as the environment asks (`CCB_LOG`, `CCB_LOG_FILE`, `CCB_SCAN_STATS`);
/// nothing at all when it asks for nothing. Once, early in `main`.
pub fn init() {
    let level = match std::env::var(VAR).ok().as_deref().and_then(level_of) {
        None => LevelFilter::Off,
        Some(Ok(l)) => l,
        Some(Err(())) => {
            crate::note!("ccb: {VAR} is one of error, warn, info, debug, trace: logging at debug");
            LevelFilter::Debug
        }
    };
    let scan_stats = std::env::var_os(SCAN_STATS_VAR).is_some();
    if level == LevelFilter::Off && !scan_stats {
        return;
    }
    let sink = match std::env::var_os(FILE_VAR).filter(|p| !p.is_empty()) {
        Some(p) if level != LevelFilter::Off => open_or_say(Path::new(&p)),
        _ => Sink::Stderr,
    };
    let logger = Logger { level, scan_stats, sink: Mutex::new(sink), start: Instant::now() };
    if LOGGER.set(logger).is_err() {
        return;
    }
    let Some(l) = LOGGER.get() else { return };
    if log::set_logger(l).is_ok() {
        log::set_max_level(if scan_stats { level.max(LevelFilter::Debug) } else { level });
        if matches!(*l.sink.lock().unwrap_or_else(|e| e.into_inner()), Sink::File(_)) {
            header();
        }
    }
}

/// Where a run begins in a file that many runs append to.
fn header() {
    log::info!(
        target: "ccb",
        "ccb {} (pid {}) logging at {}",
        env!("CARGO_PKG_VERSION"),
        std::process::id(),
        log::max_level().as_str().to_ascii_lowercase()
    );
}

/// A session is about to run claude on a PTY: log lines written to stderr would draw over its
/// screen, so they go to the state directory's `ccb.log` from now on, and ccb says where, once.
/// Nothing changes when logging is off or already goes to a file (`CCB_LOG_FILE`).
pub fn pty_session() {
    let Some(l) = LOGGER.get() else { return };
    let mut sink = l.sink.lock().unwrap_or_else(|e| e.into_inner());
    // CCB_SCAN_STATS alone: reports print their statistics; a session has none to move.
    if l.level == LevelFilter::Off || !matches!(*sink, Sink::Stderr) {
        return;
    }
    let Some(path) = default_file() else {
        crate::note!("ccb: {VAR}: no home directory for a log file; not logging during this session");
        *sink = Sink::Nowhere;
        return;
    };
    if let Some(dir) = path.parent() {
        let _ = crate::sys::paths::create_private_dir(dir);
    }
    if std::fs::metadata(&path).is_ok_and(|m| m.len() > ROTATE_AT) {
        let _ = std::fs::rename(&path, path.with_extension("log.old"));
    }
    *sink = open_or_say(&path);
    if matches!(*sink, Sink::File(_)) {
        crate::note!("ccb: logging to {} during this session ({FILE_VAR} chooses another file)", path.display());
        drop(sink);
        header();
    }
}

/// `ccb.log` in ccb's state directory: `$XDG_STATE_HOME/ccb`, default `~/.local/state/ccb`.
pub fn default_file() -> Option<PathBuf> {
    let state = match std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()).map(PathBuf::from) {
        Some(p) if p.is_absolute() => p,
        _ => crate::sys::paths::home()?.join(".local/state"),
    };
    Some(state.join("ccb").join("ccb.log"))
}

/// Open `path` for appending, owner-only when ccb creates it (and made so when it is a regular
/// file of ours that others could read); on failure, say so once and log nothing.
fn open_or_say(path: &Path) -> Sink {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
    let opened = std::fs::OpenOptions::new().append(true).create(true).mode(0o600).open(path).and_then(|f| {
        let m = f.metadata()?;
        // SAFETY: geteuid cannot fail and touches no memory.
        if m.is_file() && m.uid() == unsafe { libc::geteuid() } && m.permissions().mode() & 0o077 != 0 {
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        Ok(f)
    });
    match opened {
        Ok(f) => Sink::File(f),
        Err(e) => {
            crate::note!(
                "ccb: cannot write the log to {} ({}); not logging",
                path.display(),
                crate::sys::paths::io_reason(&e)
            );
            Sink::Nowhere
        }
    }
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata) -> bool {
        let ours = m.target() == "ccb" || m.target().starts_with("ccb::");
        ours && (m.level() <= self.level
            || (self.scan_stats && m.level() <= log::Level::Debug && m.target().starts_with("ccb::scan")))
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let target = r.target().strip_prefix("ccb::").unwrap_or(r.target());
        let t = self.start.elapsed();
        let line = format!(
            "ccb[{}] {:>4}.{:03} {:<5} {target}: {}\n",
            std::process::id(),
            t.as_secs(),
            t.subsec_millis(),
            r.level(),
            r.args()
        );
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        // A log line lost is never an error of the session's: write errors are ignored.
        match &mut *sink {
            Sink::Stderr => {
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
            Sink::File(f) => {
                let _ = f.write_all(line.as_bytes());
            }
            Sink::Nowhere => {}
        }
    }

    fn flush(&self) {
        if let Sink::File(f) = &mut *self.sink.lock().unwrap_or_else(|e| e.into_inner()) {
            let _ = f.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_read_leniently() {
        assert_eq!(level_of(""), None);
        assert_eq!(level_of("  "), None);
        assert_eq!(level_of("debug"), Some(Ok(LevelFilter::Debug)));
        assert_eq!(level_of("TRACE"), Some(Ok(LevelFilter::Trace)));
        assert_eq!(level_of("1"), Some(Ok(LevelFilter::Debug)));
        assert_eq!(level_of("warning"), Some(Ok(LevelFilter::Warn)));
        assert_eq!(level_of("off"), Some(Ok(LevelFilter::Off)));
        assert_eq!(level_of("loud"), Some(Err(())));
    }

    #[test]
    fn only_ccb_lines_and_scan_stats_alone() {
        let l = Logger {
            level: LevelFilter::Off,
            scan_stats: true,
            sink: Mutex::new(Sink::Nowhere),
            start: Instant::now(),
        };
        let m = |target: &'static str, level| log::MetadataBuilder::new().target(target).level(level).build();
        assert!(l.enabled(&m("ccb::scan", log::Level::Debug)));
        assert!(!l.enabled(&m("ccb::scan", log::Level::Trace)));
        assert!(!l.enabled(&m("ccb::session::gate", log::Level::Debug)));
        let l = Logger {
            level: LevelFilter::Trace,
            scan_stats: false,
            sink: Mutex::new(Sink::Nowhere),
            start: Instant::now(),
        };
        assert!(l.enabled(&m("ccb::session::gate", log::Level::Trace)));
        assert!(l.enabled(&m("ccb", log::Level::Info)));
        // A dependency's lines could carry request headers: never written.
        assert!(!l.enabled(&m("ureq::unit", log::Level::Error)));
        assert!(!l.enabled(&m("rustls::client", log::Level::Error)));
        assert!(!l.enabled(&m("ccbx", log::Level::Error)));
    }
}
