//! Finding the real Claude Code: `$CCB_CLAUDE`, else the config's `claude`, else PATH, skipping
//! ccb itself (`claude` may be a symlink or hard link to ccb when it stands in for claude).

use crate::core::exit::Exit;
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
    let meta = std::fs::metadata(path).map_err(|e| {
        Exit::usage(format!(
            "{what} {}: {}; {fix}",
            crate::core::human::path_excerpt(path),
            crate::sys::paths::io_reason(&e)
        ))
    })?;
    if !meta.is_file() {
        return Err(Exit::usage(format!("{what} {} is not a file; {fix}", crate::core::human::path_excerpt(path))));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(Exit::usage(format!(
            "{what} {} is not executable; chmod +x it or {fix}",
            crate::core::human::path_excerpt(path)
        )));
    }
    Ok(path.to_path_buf())
}

/// Where the real claude is. `own_exe` is ccb's own binary.
pub fn find(env_value: Option<&str>, config_value: Option<&Path>, own_exe: Option<&Path>) -> Result<PathBuf, Exit> {
    let is_self = |p: &Path| own_exe.is_some_and(|me| same_file(p, me));
    let self_msg = |p: &Path, what: &str| {
        // `CCB_CLAUDE=/path`, `config claude = /path`
        let sep = if what.ends_with('=') && !what.ends_with(" =") { "" } else { " " };
        Exit::usage(format!(
            "{what}{sep}{} is ccb itself; point it at the real Claude Code",
            crate::core::human::path_excerpt(p)
        ))
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
    let gpid = crate::sys::procs::parents().get(&ppid).copied();
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
                crate::core::human::excerpt(&interp, crate::core::human::PATH_EXCERPT)
            );
        }
    }
    crate::sys::paths::io_reason(e)
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

/// The Claude Code release of an executable, from where it is installed, without running it
/// (`claude --version` takes 100 ms): npm's `…/@anthropic-ai/claude-code/bin/claude.exe` (or the
/// native package beside it) has a `package.json` a level or two up; the native installer keeps
/// releases as `…/claude/versions/2.1.332`. None when neither says.
pub fn claude_version(claude: &Path) -> Option<String> {
    let real = std::fs::canonicalize(claude).ok()?;
    let name = real.file_name()?.to_str()?;
    if crate::core::pricing::parse_version(name).is_some() && name.starts_with(|c: char| c.is_ascii_digit()) {
        return Some(name.to_string());
    }
    for dir in real.ancestors().skip(1).take(3) {
        let Ok(text) = std::fs::read_to_string(dir.join("package.json")) else { continue };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
        if v["name"].as_str().is_some_and(|n| n.starts_with("@anthropic-ai/claude-code")) {
            return v["version"].as_str().map(str::to_string);
        }
    }
    None
}

/// The model ids a claude executable mentions: its release's model tables are compiled into it,
/// so a model it names is one it knows. Read once, in 8 MiB pieces (the native binary is a few
/// hundred MB; about 0.1 s from the page cache), and only when claude's figure for a model none
/// of ccb's tables knows must be judged.
pub fn mentioned_models(claude: &Path) -> std::collections::HashSet<String> {
    use std::io::Read;
    let mut found = std::collections::HashSet::new();
    let Ok(mut f) = std::fs::File::open(claude) else { return found };
    let finder = memchr::memmem::Finder::new(b"claude-");
    const KEEP: usize = 64;
    let mut buf = vec![0u8; 8 << 20];
    let mut have = 0usize;
    loop {
        let n = match f.read(&mut buf[have..]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        have += n;
        if have < buf.len() {
            continue;
        }
        collect_ids(&buf[..have - KEEP], &buf[..have], &finder, &mut found);
        buf.copy_within(have - KEEP..have, 0);
        have = KEEP;
    }
    collect_ids(&buf[..have], &buf[..have], &finder, &mut found);
    found
}

/// Every `claude-<family>-…` id starting in `starts` (a prefix of `all`, which holds the bytes
/// after it too, so an id across the cut is read whole).
fn collect_ids(
    starts: &[u8],
    all: &[u8],
    finder: &memchr::memmem::Finder,
    found: &mut std::collections::HashSet<String>,
) {
    for at in finder.find_iter(starts) {
        let tail = &all[at..];
        let len =
            tail.iter().take(64).take_while(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || **b == b'-').count();
        let id = std::str::from_utf8(&tail[..len]).unwrap_or("").trim_end_matches('-');
        if crate::core::pricing::family_of(id) != "other" && id.bytes().any(|b| b.is_ascii_digit()) {
            found.insert(crate::core::pricing::normalize(id));
        }
    }
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
