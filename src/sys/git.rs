//! Which branch and commit a directory is on, read from the repository's files (no `git`
//! process: a session's start must not wait for one). Handles linked worktrees and submodules
//! (`.git` as a file naming the git directory), packed refs and detached heads.

use std::path::{Path, PathBuf};

/// Where a working directory stands in its repository.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Head {
    /// The branch checked out; None on a detached HEAD.
    pub branch: Option<String>,
    /// The commit checked out (hex); None on a branch with no commit yet.
    pub commit: Option<String>,
    /// The top of the working tree.
    pub top: PathBuf,
}

/// The repository `dir` is in, and its HEAD; None outside a repository or when its files cannot
/// be read (a report then has no branch for the session, nothing else changes).
pub fn head(dir: &Path) -> Option<Head> {
    let (top, git_dir) = find(dir)?;
    let common = common_dir(&git_dir);
    let text = std::fs::read_to_string(git_dir.join("HEAD")).ok()?;
    let text = text.trim();
    if let Some(r) = text.strip_prefix("ref:") {
        let r = r.trim();
        let branch = r.strip_prefix("refs/heads/").unwrap_or(r).to_string();
        let commit = resolve(&git_dir, &common, r);
        Some(Head { branch: Some(branch), commit, top })
    } else if is_hex_id(text) {
        Some(Head { branch: None, commit: Some(text.to_string()), top })
    } else {
        None
    }
}

/// The working tree's top and its git directory, from `dir` up.
fn find(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let mut at = Some(dir);
    while let Some(d) = at {
        let dot = d.join(".git");
        if let Ok(m) = std::fs::metadata(&dot) {
            if m.is_dir() {
                return Some((d.to_path_buf(), dot));
            }
            // A linked worktree or a submodule: `gitdir: PATH`, relative to this directory.
            let text = std::fs::read_to_string(&dot).ok()?;
            let target = text.trim().strip_prefix("gitdir:")?.trim();
            return Some((d.to_path_buf(), d.join(target)));
        }
        at = d.parent();
    }
    None
}

/// A linked worktree keeps its HEAD in its own git directory and its refs in the common one.
fn common_dir(git_dir: &Path) -> PathBuf {
    match std::fs::read_to_string(git_dir.join("commondir")) {
        Ok(t) => git_dir.join(t.trim()),
        Err(_) => git_dir.to_path_buf(),
    }
}

fn resolve(git_dir: &Path, common: &Path, name: &str) -> Option<String> {
    for base in [git_dir, common] {
        if let Ok(t) = std::fs::read_to_string(base.join(name)) {
            let t = t.trim();
            if is_hex_id(t) {
                return Some(t.to_string());
            }
        }
    }
    let packed = std::fs::read_to_string(common.join("packed-refs")).ok()?;
    packed_ref(&packed, name)
}

/// A ref's commit in a `packed-refs` file's text.
fn packed_ref(text: &str, name: &str) -> Option<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('^'))
        .filter_map(|l| l.split_once(' '))
        .find(|(_, r)| r.trim() == name)
        .map(|(id, _)| id.to_string())
        .filter(|id| is_hex_id(id))
}

/// A SHA-1 or SHA-256 object id.
fn is_hex_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Where `ccb usage --since-ref REF` starts: the commit's committer time, and every working tree
/// of its repository (a piece of work often happens in a linked worktree). Reports run `git`
/// for this (a session's start never does): resolving any revision (`HEAD~3`, `origin/main`,
/// a tag, a short id) is git's own grammar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefStart {
    pub commit: String,
    /// Committer time, in milliseconds since the epoch.
    pub time_ms: i64,
    pub trees: Vec<PathBuf>,
}

/// [`RefStart`] of `rev` in the repository `dir` is in; the error is one line for the user.
pub fn ref_start(dir: &Path, rev: &str) -> Result<RefStart, String> {
    let git = |args: &[&str]| -> Result<String, String> {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("cannot run git ({e})"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            Err(err.lines().find(|l| !l.trim().is_empty()).unwrap_or("git failed").trim().to_string())
        }
    };
    let top = git(&["rev-parse", "--show-toplevel"])
        .map_err(|_| format!("{} is not in a git repository", crate::core::human::path_excerpt(dir)))?;
    let spec = format!("{rev}^{{commit}}");
    let commit = git(&["rev-parse", "--verify", "--quiet", "--end-of-options", &spec])
        .ok()
        .filter(|c| is_hex_id(c))
        .ok_or_else(|| format!("is not a commit in {}", crate::core::human::excerpt(&top, 300)))?;
    let secs: i64 =
        git(&["show", "-s", "--format=%ct", &commit])?.parse().map_err(|_| "git gave no commit time".to_string())?;
    let mut trees: Vec<PathBuf> = git(&["worktree", "list", "--porcelain"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("worktree "))
        .map(PathBuf::from)
        .collect();
    if trees.is_empty() {
        trees.push(PathBuf::from(top));
    }
    Ok(RefStart { commit, time_ms: secs.saturating_mul(1000), trees })
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0123456789abcdef0123456789abcdef01234567";
    const B: &str = "89abcdef0123456789abcdef0123456789abcdef";

    fn repo() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join(".git/refs/heads/feat")).unwrap();
        std::fs::create_dir_all(d.path().join("src/deep")).unwrap();
        d
    }

    #[test]
    fn a_branch_with_a_loose_ref_from_a_subdirectory() {
        let d = repo();
        std::fs::write(d.path().join(".git/HEAD"), "ref: refs/heads/feat/x\n").unwrap();
        std::fs::write(d.path().join(".git/refs/heads/feat/x"), format!("{A}\n")).unwrap();
        let h = head(&d.path().join("src/deep")).unwrap();
        assert_eq!(h.branch.as_deref(), Some("feat/x"));
        assert_eq!(h.commit.as_deref(), Some(A));
        assert_eq!(h.top, d.path());
    }

    #[test]
    fn a_packed_ref_a_detached_head_and_an_unborn_branch() {
        let d = repo();
        std::fs::write(d.path().join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
        std::fs::write(
            d.path().join(".git/packed-refs"),
            format!(
                "# pack-refs with: peeled fully-peeled sorted\n{B} refs/heads/mainline\n{A} refs/heads/main\n^{B}\n"
            ),
        )
        .unwrap();
        assert_eq!(head(d.path()).unwrap().commit.as_deref(), Some(A));
        std::fs::write(d.path().join(".git/HEAD"), "ref: refs/heads/new\n").unwrap();
        let h = head(d.path()).unwrap();
        assert_eq!((h.branch.as_deref(), h.commit), (Some("new"), None));
        std::fs::write(d.path().join(".git/HEAD"), format!("{B}\n")).unwrap();
        let h = head(d.path()).unwrap();
        assert_eq!((h.branch, h.commit.as_deref()), (None, Some(B)));
        std::fs::write(d.path().join(".git/HEAD"), "garbage").unwrap();
        assert_eq!(head(d.path()), None);
    }

    #[test]
    fn a_linked_worktree_reads_its_head_and_the_common_refs() {
        let main = repo();
        let wt = tempfile::tempdir().unwrap();
        let gd = main.path().join(".git/worktrees/wt");
        std::fs::create_dir_all(&gd).unwrap();
        std::fs::write(gd.join("HEAD"), "ref: refs/heads/side\n").unwrap();
        std::fs::write(gd.join("commondir"), "../..\n").unwrap();
        std::fs::write(main.path().join(".git/refs/heads/side"), A).unwrap();
        std::fs::write(wt.path().join(".git"), format!("gitdir: {}\n", gd.display())).unwrap();
        let h = head(wt.path()).unwrap();
        assert_eq!((h.branch.as_deref(), h.commit.as_deref()), (Some("side"), Some(A)));
        assert_eq!(h.top, wt.path());
    }

    #[test]
    fn outside_a_repository_there_is_no_head() {
        let d = tempfile::tempdir().unwrap();
        // A temp directory's parents are not repositories on the machines this runs on; if one
        // is, the answer is still not this directory's own.
        if let Some(h) = head(d.path()) {
            assert_ne!(h.top, d.path());
        }
    }

    /// `--since-ref`: a real repository, a commit's time, its worktrees, and the refusals.
    #[test]
    fn a_refs_start_is_its_committer_time_in_every_worktree() {
        let d = tempfile::tempdir().unwrap();
        let top = std::fs::canonicalize(d.path()).unwrap();
        let git = |args: &[&str]| {
            let ok = std::process::Command::new("git")
                .arg("-C")
                .arg(&top)
                .args(args)
                .env("GIT_COMMITTER_DATE", "2026-11-20T10:00:00Z")
                .env("GIT_AUTHOR_DATE", "2026-11-01T10:00:00Z")
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .output()
                .unwrap();
            assert!(ok.status.success(), "{args:?}: {}", String::from_utf8_lossy(&ok.stderr));
        };
        git(&["init", "-q", "-b", "main"]);
        git(&["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "one"]);
        git(&["worktree", "add", "-q", "wt-side", "-b", "side"]);
        let r = ref_start(&top.join("wt-side"), "main").unwrap();
        assert_eq!(
            r.time_ms,
            "2026-11-20T10:00:00Z".parse::<jiff::Timestamp>().unwrap().as_millisecond(),
            "committer, not author"
        );
        assert_eq!(r.trees, [top.clone(), top.join("wt-side")]);
        assert!(ref_start(&top, "no-such-ref").unwrap_err().contains("is not a commit"));
        assert!(ref_start(&top, "--output=/tmp/x").is_err(), "an option is never one");
        let outside = tempfile::tempdir().unwrap();
        assert!(ref_start(outside.path(), "HEAD").unwrap_err().contains("not in a git repository"));
    }
}
