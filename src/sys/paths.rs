//! Where things live: XDG directories, Claude Code's config directory, owner-only files, and the
//! session's private files and tokens (what claude is told that no other local user may learn).

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

pub fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from)
}

fn xdg(var: &str, fallback: &str) -> Option<PathBuf> {
    match std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from) {
        Some(p) if p.is_absolute() => Some(p),
        _ => home().map(|h| h.join(fallback)),
    }
}

/// `$XDG_CONFIG_HOME/ccb`, default `~/.config/ccb`.
pub fn config_dir() -> Option<PathBuf> {
    xdg("XDG_CONFIG_HOME", ".config").map(|p| p.join("ccb"))
}

/// `$XDG_DATA_HOME/ccb`, default `~/.local/share/ccb`.
pub fn data_dir() -> Option<PathBuf> {
    xdg("XDG_DATA_HOME", ".local/share").map(|p| p.join("ccb"))
}

/// `$XDG_CACHE_HOME/ccb`, default `~/.cache/ccb`.
pub fn cache_dir() -> Option<PathBuf> {
    xdg("XDG_CACHE_HOME", ".cache").map(|p| p.join("ccb"))
}

/// The directory Claude Code itself uses for this process: `$CLAUDE_CONFIG_DIR`, else `~/.claude`.
pub fn claude_config_dir(env_value: Option<&str>) -> Option<PathBuf> {
    match env_value.filter(|v| !v.is_empty()) {
        Some(v) => Some(expand_tilde(v)),
        None => home().map(|h| h.join(".claude")),
    }
}

pub fn expand_tilde(s: &str) -> PathBuf {
    match s.strip_prefix("~/") {
        Some(rest) => home().map(|h| h.join(rest)).unwrap_or_else(|| PathBuf::from(s)),
        None => PathBuf::from(s),
    }
}

/// Claude Code's project directory name for a working directory (its real path): every UTF-16
/// unit that is not an ASCII letter or digit becomes '-'; past 200 characters the name is cut
/// and a base-36 hash of the whole path (Java's string hash) is appended.
pub fn project_slug(cwd: &Path) -> String {
    const MAX: usize = 200;
    let path = cwd.to_string_lossy();
    let units: Vec<u16> = path.encode_utf16().collect();
    let slug: String = units
        .iter()
        .map(|&u| if u < 128 && (u as u8).is_ascii_alphanumeric() { u as u8 as char } else { '-' })
        .collect();
    if slug.len() <= MAX {
        return slug;
    }
    let hash = units.iter().fold(0i32, |h, &u| h.wrapping_mul(31).wrapping_add(u as i32));
    let mut n = (hash as i64).unsigned_abs();
    let mut digits = Vec::new();
    loop {
        digits.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    digits.reverse();
    format!("{}-{}", &slug[..MAX], String::from_utf8_lossy(&digits))
}

/// A short reason for an I/O error, without the "(os error N)" noise.
pub fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file or directory".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => {
            let s = e.to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_lowercase(),
                None => s,
            }
        }
    }
}

/// Create a directory (and parents) readable by its owner only.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Write a file readable by its owner only, atomically (temp file + rename).
pub fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        create_private_dir(parent)?;
    }
    let mut tmp: OsString = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    f.write_all(contents)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// An unguessable token: 128 bits from the kernel's random source, as 32 hex digits. It goes
/// into the loopback endpoints claude reaches ccb on (the gate, the telemetry receiver), so that
/// other local users, who can find the ports but not read claude's settings file or
/// environment, are turned away.
pub fn random_token() -> io::Result<String> {
    // getrandom: the getrandom(2) system call, retried on EINTR, /dev/urandom on kernels
    // without it (the loop this replaced did the same by hand).
    let mut buf = [0u8; 16];
    getrandom::fill(&mut buf).map_err(|e| match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::other(e),
    })?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Compare a token in time independent of where the first difference is.
pub fn token_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// Make `dir` (and its parents) and check that it is a directory of ours that no one else can
/// enter: created 0700, an existing one of ours set to 0700, anything else refused.
fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    create_private_dir(dir)?;
    let m = std::fs::symlink_metadata(dir)?;
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    if !m.is_dir() || m.uid() != me {
        return Err(io::Error::new(io::ErrorKind::PermissionDenied, "not a directory of this user"));
    }
    if m.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Where a session's private files may go, best first: `$XDG_RUNTIME_DIR/ccb` when that is set
/// (a tmpfs of the user's, emptied at logout), then `<data dir>/run`. See [`PrivateFile::create`].
pub fn private_run_dirs() -> Vec<PathBuf> {
    let runtime = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from).filter(|p| p.is_absolute() && p.is_dir());
    [runtime.map(|r| r.join("ccb")), data_dir().map(|d| d.join("run"))].into_iter().flatten().collect()
}

/// [`private_run_dirs`] whose paths are UTF-8 (what claude can be told in an argument), and
/// those passed over because they are not.
pub fn private_run_dirs_utf8() -> (Vec<PathBuf>, Vec<PathBuf>) {
    private_run_dirs().into_iter().partition(|d| d.to_str().is_some())
}

/// How old a private file left by a killed ccb may get before the next session removes it.
pub const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// A file only its owner can read (0600, in a 0700 directory), removed when dropped: on every
/// way out of the session, a panic included. Only a SIGKILL of ccb leaves it behind, for
/// [`sweep_stale`] to remove a day later (its name is unique: a stale one is never in the way).
#[derive(Debug)]
pub struct PrivateFile {
    path: PathBuf,
    /// A directory made for this file alone (the temp-directory fallback): removed with it.
    own_dir: Option<PathBuf>,
}

impl PrivateFile {
    /// Write `contents` to a new file `<prefix>-<pid>-<random>.<ext>` in the first of `dirs` that
    /// can be made private and takes it (removing what a killed ccb left there a day ago), else
    /// in a fresh directory of its own under the temp directory (`ccb-<uid>-<random>`): a
    /// read-only or full home does not stop a session. The error is the first directory's.
    pub fn create(dirs: &[PathBuf], prefix: &str, ext: &str, contents: &[u8]) -> io::Result<PrivateFile> {
        let mut first = None;
        for d in dirs {
            let made = ensure_private_dir(d).and_then(|()| {
                sweep_stale(d, prefix, STALE_AFTER);
                Self::write_new(d, None, prefix, ext, contents)
            });
            match made {
                Ok(f) => return Ok(f),
                Err(e) => first = first.or(Some(e)),
            }
        }
        Self::in_temp_dir(prefix, ext, contents).map_err(|e| first.unwrap_or(e))
    }

    fn in_temp_dir(prefix: &str, ext: &str, contents: &[u8]) -> io::Result<PrivateFile> {
        use std::os::unix::fs::DirBuilderExt;
        // SAFETY: geteuid cannot fail.
        let uid = unsafe { libc::geteuid() };
        sweep_stale_temp_dirs(&format!("ccb-{uid}-"), STALE_AFTER);
        let d = temp_dir().join(format!("ccb-{uid}-{}", random_token()?));
        // Not recursive: fails if anything, a symlink included, is already there.
        std::fs::DirBuilder::new().mode(0o700).create(&d)?;
        Self::write_new(&d, Some(d.clone()), prefix, ext, contents)
    }

    fn write_new(
        dir: &Path,
        own_dir: Option<PathBuf>,
        prefix: &str,
        ext: &str,
        contents: &[u8],
    ) -> io::Result<PrivateFile> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join(format!("{prefix}-{}-{}.{ext}", std::process::id(), &random_token()?[..16]));
        // Made before the file: on any failure below, its Drop removes what was made.
        let file = PrivateFile { path, own_dir };
        // create_new: O_EXCL, which also refuses to follow a symlink.
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&file.path)?;
        f.write_all(contents)?;
        Ok(file)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PrivateFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        if let Some(d) = &self.own_dir {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// The temp directory for a private file's own directory: `$TMPDIR`, or `/tmp` when that is
/// not UTF-8 (a private file's path may be given to claude, which reads it as UTF-8).
fn temp_dir() -> PathBuf {
    let t = std::env::temp_dir();
    if t.to_str().is_some() {
        t
    } else {
        PathBuf::from("/tmp")
    }
}

/// The temp-directory fallback's leftovers: directories `<prefix>…` of ours, older than `max_age`.
fn sweep_stale_temp_dirs(prefix: &str, max_age: std::time::Duration) {
    use std::os::unix::fs::MetadataExt;
    let Some(cutoff) = std::time::SystemTime::now().checked_sub(max_age) else { return };
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    for e in std::fs::read_dir(temp_dir()).into_iter().flatten().flatten() {
        if !e.file_name().to_str().is_some_and(|n| n.starts_with(prefix)) {
            continue;
        }
        // symlink_metadata: a symlink planted under that name is not followed.
        let Ok(m) = std::fs::symlink_metadata(e.path()) else { continue };
        if m.is_dir() && m.uid() == me && m.modified().is_ok_and(|t| t < cutoff) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Remove files named `<prefix>-…` in `dir` last modified more than `max_age` ago: what a
/// SIGKILLed ccb left. A live session's file is younger (its session started after the cut-off)
/// or, after a day, long read by its claude.
pub fn sweep_stale(dir: &Path, prefix: &str, max_age: std::time::Duration) -> usize {
    let Some(cutoff) = std::time::SystemTime::now().checked_sub(max_age) else { return 0 };
    let mut removed = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name();
        if !name.to_str().is_some_and(|n| n.starts_with(&format!("{prefix}-"))) {
            continue;
        }
        let old = e.metadata().ok().filter(|m| m.is_file()).and_then(|m| m.modified().ok()).is_some_and(|t| t < cutoff);
        if old && std::fs::remove_file(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn tokens_are_128_random_bits() {
        let a = random_token().unwrap();
        let b = random_token().unwrap();
        assert!(a.len() == 32 && a.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()), "{a}");
        assert_ne!(a, b);
        assert!(token_eq(a.as_bytes(), a.clone().as_bytes()));
        assert!(!token_eq(a.as_bytes(), b.as_bytes()));
        assert!(!token_eq(a.as_bytes(), &a.as_bytes()[..31]));
    }

    #[test]
    fn a_private_file_is_owner_only_and_goes_when_dropped() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("run");
        let f = PrivateFile::create(std::slice::from_ref(&dir), "settings", "json", b"{}").unwrap();
        let path = f.path().to_path_buf();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&dir), mode(&path)), (0o700, 0o600));
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        assert!(name.starts_with(&format!("settings-{}-", std::process::id())) && name.ends_with(".json"), "{name}");
        assert_eq!(std::fs::read(&path).unwrap(), b"{}");
        drop(f);
        assert!(!path.exists());
        // An existing directory others can enter is made private again.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        ensure_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        // A symlink is not a private directory.
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(ensure_private_dir(&link).is_err());
        // No directory that can be made private (a file, a symlink): the next, else a fresh
        // one of its own under the temp directory, gone with the file.
        let not_dir = d.path().join("file");
        std::fs::write(&not_dir, "").unwrap();
        let f = PrivateFile::create(&[not_dir.join("run"), link.clone(), dir.clone()], "s", "json", b"{}").unwrap();
        assert_eq!(f.path().parent(), Some(dir.as_path()));
        drop(f);
        let f = PrivateFile::create(&[not_dir.join("run"), link], "settings", "json", b"{}").unwrap();
        let own = f.path().parent().unwrap().to_path_buf();
        assert!(own.starts_with(std::env::temp_dir()), "{}", own.display());
        assert_eq!((mode(&own), mode(f.path())), (0o700, 0o600));
        drop(f);
        assert!(!own.exists());
    }

    #[test]
    fn stale_files_are_swept_and_nothing_else() {
        let d = tempfile::tempdir().unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 24 * 3600);
        for name in ["settings-1-a.json", "settings-2-b.json", "other-1-a.json"] {
            std::fs::write(d.path().join(name), "{}").unwrap();
        }
        for name in ["settings-1-a.json", "other-1-a.json"] {
            std::fs::File::options().write(true).open(d.path().join(name)).unwrap().set_modified(old).unwrap();
        }
        assert_eq!(sweep_stale(d.path(), "settings", STALE_AFTER), 1);
        assert!(!d.path().join("settings-1-a.json").exists());
        assert!(d.path().join("settings-2-b.json").exists() && d.path().join("other-1-a.json").exists());
    }

    #[test]
    fn slug_replaces_every_non_alphanumeric() {
        assert_eq!(project_slug(Path::new("/home/u/my_proj.v2")), "-home-u-my-proj-v2");
        assert_eq!(project_slug(Path::new("/tmp/.tmpAbC")), "-tmp--tmpAbC");
        assert_eq!(project_slug(Path::new("/tmp/日本")), "-tmp---");
        let long = format!("/{}", "a".repeat(250));
        let s = project_slug(Path::new(&long));
        assert!(s.starts_with(&format!("-{}", "a".repeat(199))) && s.len() > 201 && s.as_bytes()[200] == b'-', "{s}");
    }
}
