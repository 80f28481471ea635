//! Where things live: XDG directories, Claude Code's config directory, owner-only files.

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

#[cfg(test)]
mod tests {
    use super::*;
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
