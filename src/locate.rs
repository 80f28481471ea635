//! Finding the real Claude Code: `$CCB_CLAUDE`, else the config's `claude`, else PATH, skipping
//! ccb itself (`claude` may be a symlink or hard link to ccb when it stands in for claude).

use crate::exit::Exit;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The environment variable through which ccb tells a child which ccb started it, to notice
/// running itself through a wrapper script.
pub const PARENT_VAR: &str = "CCB_PARENT_PID";

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

fn check(path: &Path, what: &str, fix: &str) -> Result<PathBuf, Exit> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| Exit::usage(format!("{what} {}: {}; {fix}", path.display(), crate::paths::io_reason(&e))))?;
    if !meta.is_file() {
        return Err(Exit::usage(format!("{what} {} is not a file; {fix}", path.display())));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(Exit::usage(format!("{what} {} is not executable; chmod +x it or {fix}", path.display())));
    }
    Ok(path.to_path_buf())
}

/// Where the real claude is. `own_exe` is ccb's own binary.
pub fn find(env_value: Option<&str>, config_value: Option<&Path>, own_exe: Option<&Path>) -> Result<PathBuf, Exit> {
    let is_self = |p: &Path| own_exe.is_some_and(|me| same_file(p, me));
    let self_msg = |p: &Path, what: &str| {
        // `CCB_CLAUDE=/path`, `config claude = /path`
        let sep = if what.ends_with('=') && !what.ends_with(" =") { "" } else { " " };
        Exit::usage(format!("{what}{sep}{} is ccb itself; point it at the real Claude Code", p.display()))
    };
    if let Some(v) = env_value.filter(|v| !v.is_empty()) {
        let p = check(Path::new(v), "CCB_CLAUDE=", "set CCB_CLAUDE to the real Claude Code")
            .map_err(|e| Exit::usage(e.message.replacen("CCB_CLAUDE= ", "CCB_CLAUDE=", 1)))?;
        if is_self(&p) {
            return Err(self_msg(&p, "CCB_CLAUDE="));
        }
        return Ok(p);
    }
    if let Some(p) = config_value {
        let p = check(p, "config claude =", "fix `claude` in ccb's config.toml")?;
        if is_self(&p) {
            return Err(self_msg(&p, "config claude ="));
        }
        return Ok(p);
    }
    if let Ok(all) = which::which_all("claude") {
        for cand in all {
            if !is_self(&cand) {
                return Ok(cand);
            }
        }
    }
    Err(Exit::usage(
        "claude (Claude Code) is not on PATH: install it (npm install -g @anthropic-ai/claude-code) or set CCB_CLAUDE to its path",
    ))
}

/// Refuse to run when the "claude" ccb started is ccb again (through a wrapper script): the
/// variable ccb sets names our parent or grandparent.
pub fn guard_recursion() -> Result<(), Exit> {
    let Some(v) = std::env::var(PARENT_VAR).ok().and_then(|v| v.parse::<i32>().ok()) else {
        return Ok(());
    };
    let ppid = nix::unistd::getppid().as_raw();
    let gpid = crate::procs::parents().get(&ppid).copied();
    if v == ppid || Some(v) == gpid {
        return Err(Exit::usage(
            "the claude ccb started is ccb itself (a wrapper or alias points back at ccb): set CCB_CLAUDE to the real Claude Code",
        ));
    }
    Ok(())
}

/// Why `program` could not be started, in words: for a script whose `#!` interpreter is
/// missing, the kernel says ENOENT as if the script itself were, so that is named.
pub fn why_not_started(program: &Path, e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::NotFound && program.is_file() {
        if let Some(interp) = shebang(program) {
            return format!(
                "its interpreter {} (its #! line) was not found: install it or fix that line",
                interp.escape_debug()
            );
        }
    }
    crate::paths::io_reason(e)
}

/// The interpreter a script's `#!` line names (its first word), if it has one.
fn shebang(program: &Path) -> Option<String> {
    use std::io::Read;
    let mut head = [0u8; 256];
    let n = std::fs::File::open(program).ok()?.read(&mut head).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = &line[..line.iter().position(|&b| b == b'\n').unwrap_or(line.len())];
    let text = String::from_utf8_lossy(line);
    text.split_ascii_whitespace().next().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_interpreter_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("claude");
        std::fs::write(&script, "#!/nonexistent/node --flag\nrest\n").unwrap();
        let enoent = std::io::Error::from(std::io::ErrorKind::NotFound);
        assert_eq!(
            why_not_started(&script, &enoent),
            "its interpreter /nonexistent/node (its #! line) was not found: install it or fix that line"
        );
        assert_eq!(why_not_started(&dir.path().join("absent"), &enoent), "no such file or directory");
        std::fs::write(&script, "\x7fELF").unwrap();
        assert_eq!(why_not_started(&script, &enoent), "no such file or directory");
    }
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn skips_itself_and_checks_paths() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().join("claude-real");
        std::fs::write(&real, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o755)).unwrap();
        let me = d.path().join("ccb");
        std::fs::write(&me, "me").unwrap();
        std::fs::set_permissions(&me, std::fs::Permissions::from_mode(0o755)).unwrap();
        let link = d.path().join("claude");
        std::os::unix::fs::symlink(&me, &link).unwrap();
        assert_eq!(find(Some(real.to_str().unwrap()), None, Some(&me)).unwrap(), real);
        let e = find(Some(link.to_str().unwrap()), None, Some(&me)).unwrap_err();
        assert_eq!(e.message, format!("CCB_CLAUDE={} is ccb itself; point it at the real Claude Code", link.display()));
        let e = find(None, Some(&link), Some(&me)).unwrap_err();
        assert_eq!(
            e.message,
            format!("config claude = {} is ccb itself; point it at the real Claude Code", link.display())
        );
        let e = find(Some("/nonexistent/claude"), None, Some(&me)).unwrap_err();
        assert!(e.message.contains("CCB_CLAUDE=/nonexistent/claude: no such file"), "{}", e.message);
        let noexec = d.path().join("noexec");
        std::fs::write(&noexec, "x").unwrap();
        let e = find(None, Some(&noexec), Some(&me)).unwrap_err();
        assert!(e.message.contains("is not executable"), "{}", e.message);
    }
}
