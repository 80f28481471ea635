//! The ledger's file on disk: creating it owner-only, knowing which file a connection has
//! open, noticing when it was deleted, replaced or truncated under a session, and setting a
//! truncated one aside.

use super::*;

/// Create the ledger's file, owner-only (SQLite gives its -wal and -shm files the database
/// file's permissions). A `-wal` left beside it by a ledger that was deleted while sessions had it
/// open is not taken in: SQLite deletes a WAL it finds beside an empty database file.
pub(super) fn create_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().write(true).create(true).truncate(false).mode(0o600).open(path)?;
    Ok(())
}

/// `ledger.db` + `-wal` → `ledger.db-wal`.
pub(super) fn side_file(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// An exclusive `flock` on the ledger's directory, for setting aside its files (held while the
/// descriptor is open).
pub(super) struct DirLock {
    _dir: std::fs::File,
}

impl DirLock {
    pub(super) fn take(path: &Path) -> std::io::Result<DirLock> {
        use std::os::fd::AsRawFd;
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let f = std::fs::File::open(dir)?;
        loop {
            // SAFETY: flock on a descriptor this function owns; released when it is closed.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(DirLock { _dir: f });
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// Which file a connection has open: device and inode, read when it was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileIdentity {
    pub dev: u64,
    pub ino: u64,
}

/// What became of the file a connection opened: the ledger's file on disk, compared with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFate {
    /// The same file, with a database header.
    Same,
    /// Nothing at the path: the file was deleted (the connection writes into the void).
    Deleted,
    /// Another file at the path (moved aside and replaced, restored from a backup, or
    /// recreated by another ccb).
    Replaced,
    /// The same file, cut short: smaller than a database page, so without its header.
    Truncated,
}

impl FileFate {
    pub fn word(self) -> &'static str {
        match self {
            FileFate::Same => "unchanged",
            FileFate::Deleted => "deleted",
            FileFate::Replaced => "replaced",
            FileFate::Truncated => "truncated",
        }
    }
}

/// The identity of the file at `path`, if there is one.
pub fn identity(path: &Path) -> Option<FileIdentity> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| FileIdentity { dev: m.dev(), ino: m.ino() })
}

/// What became of the file a connection opened as `opened`, from one `stat` (cheap enough to
/// ask every second). The file is never opened here: closing any descriptor of a file drops every
/// POSIX lock this process holds on it, SQLite's included, and another process would then take
/// this one's connection for gone (it did: a writer's rows vanished with a WAL that a closing
/// reader checkpointed and deleted under it). A database file of ours is never smaller than a
/// page (SQLite writes its header when the ledger is created and switched to WAL), so one that is
/// was truncated.
pub fn file_fate(path: &Path, opened: FileIdentity) -> FileFate {
    use std::os::unix::fs::MetadataExt;
    let m = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return match std::fs::symlink_metadata(path) {
                // A dangling link: something else is at the path.
                Ok(_) => FileFate::Replaced,
                Err(_) => FileFate::Deleted,
            };
        }
        // A stat that failed for another reason (permissions, I/O): the next write will tell.
        Err(_) => return FileFate::Same,
    };
    if (FileIdentity { dev: m.dev(), ino: m.ino() }) != opened {
        return FileFate::Replaced;
    }
    if m.len() < 512 {
        return FileFate::Truncated;
    }
    FileFate::Same
}

/// A ledger cut short under a session (`truncate`, `: > ledger.db`) still has its WAL, which
/// SQLite would replay into the new file: the file and its WAL are moved aside together
/// (`ledger.db.truncated-<ms>` and its `-wal`, for `sqlite3 … .recover`), so that a new ledger
/// can take the path. Does nothing when the file at the path is no longer `opened` (another ccb
/// did it already). Returns where the file went.
pub fn set_aside(path: &Path, opened: FileIdentity) -> std::io::Result<Option<PathBuf>> {
    let _lock = DirLock::take(path)?;
    if identity(path) != Some(opened) {
        return Ok(None);
    }
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".truncated-{}", now_ms()));
    let aside = PathBuf::from(aside);
    std::fs::rename(path, &aside)?;
    let wal = side_file(path, "-wal");
    if wal.exists() {
        std::fs::rename(&wal, side_file(&aside, "-wal"))?;
    }
    let _ = std::fs::remove_file(side_file(path, "-shm"));
    Ok(Some(aside))
}
