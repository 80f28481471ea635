//! A throwaway HOME in which the real Claude Code runs offline against a [`MockApi`], with no
//! onboarding, no trust dialog and no API-key question, and helpers to find its transcripts.
//!
//! [`MockApi`]: super::MockApi

use serde_json::{json, Value};
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The fake API key every test uses. Its last 20 characters are pre-approved in `~/.claude.json`.
pub const FAKE_API_KEY: &str = "sk-ant-api03-ccb-test-key-0000000000000000000000000000-offline-AA";

/// Environment prefixes and names removed from the child's environment so a developer's own
/// setup (model choice, OAuth token, config dir, cloud provider, telemetry, proxies, running
/// the tests from inside Claude Code) cannot leak into a test.
const REMOVED_PREFIXES: &[&str] = &["ANTHROPIC_", "CLAUDE_", "CLAUDECODE", "OTEL_", "AWS_BEARER_TOKEN_BEDROCK"];
const REMOVED_NAMES: &[&str] = &[
    // Named explicitly as well, in case they are not in this process's environment but a
    // caller's Command got them some other way.
    "ANTHROPIC_MODEL",
    "ANTHROPIC_SMALL_FAST_MODEL",
    "ANTHROPIC_DEFAULT_OPUS_MODEL",
    "ANTHROPIC_DEFAULT_SONNET_MODEL",
    "ANTHROPIC_DEFAULT_HAIKU_MODEL",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_CUSTOM_HEADERS",
    "ANTHROPIC_BETAS",
    "CLAUDE_CONFIG_DIR",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "CLAUDE_CODE_USE_BEDROCK",
    "CLAUDE_CODE_USE_VERTEX",
    "CLAUDE_CODE_USE_FOUNDRY",
    "CLAUDE_CODE_SUBAGENT_MODEL",
    "CLAUDE_CODE_ENABLE_TELEMETRY",
    "CLAUDE_CODE_ENTRYPOINT",
    "CLAUDECODE",
    "XDG_CONFIG_HOME",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

/// A temporary HOME for one test. Deleted on drop.
pub struct ClaudeHome {
    dir: tempfile::TempDir,
    /// The realpath of the home directory.
    home: PathBuf,
    /// A project directory inside the home (`<home>/project`), a convenient cwd.
    workdir: PathBuf,
}

impl Default for ClaudeHome {
    fn default() -> Self {
        Self::new()
    }
}

impl ClaudeHome {
    /// Create the home with `~/.claude.json` (onboarding done, [`FAKE_API_KEY`] approved, `/`
    /// trusted) and `~/.claude/settings.json` (`skipDangerousModePermissionPrompt`).
    pub fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("ccb-claude-home-").tempdir().expect("create temp HOME");
        let home = dir.path().canonicalize().expect("canonicalize temp HOME");
        let key_tail: String = {
            let chars: Vec<char> = FAKE_API_KEY.chars().collect();
            chars[chars.len().saturating_sub(20)..].iter().collect()
        };
        let claude_json = json!({
            "hasCompletedOnboarding": true,
            "customApiKeyResponses": { "approved": [key_tail], "rejected": [] },
            "projects": { "/": { "hasTrustDialogAccepted": true } },
        });
        write_json(&home.join(".claude.json"), &claude_json);
        fs::create_dir_all(home.join(".claude")).expect("create ~/.claude");
        write_json(&home.join(".claude/settings.json"), &json!({ "skipDangerousModePermissionPrompt": true }));
        let workdir = home.join("project");
        fs::create_dir_all(&workdir).expect("create project dir");
        ClaudeHome { dir, home, workdir }
    }

    /// The HOME directory (a realpath).
    pub fn path(&self) -> &Path {
        &self.home
    }

    /// `<home>/project`: an empty directory to run claude in.
    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    /// `~/.claude`, Claude Code's config dir.
    pub fn claude_dir(&self) -> PathBuf {
        self.home.join(".claude")
    }

    /// `~/.claude/projects`.
    pub fn projects_dir(&self) -> PathBuf {
        self.claude_dir().join("projects")
    }

    /// Replace `~/.claude/settings.json` (e.g. to add an `env` block or a `model`).
    pub fn write_settings(&self, settings: &Value) {
        write_json(&self.claude_dir().join("settings.json"), settings);
    }

    /// The variables to set for a claude talking to the mock at `base_url`.
    pub fn env_vars(&self, base_url: &str) -> Vec<(String, String)> {
        let home = self.home.to_string_lossy().into_owned();
        [
            ("HOME", home.as_str()),
            ("ANTHROPIC_BASE_URL", base_url),
            ("ANTHROPIC_API_KEY", FAKE_API_KEY),
            ("DISABLE_TELEMETRY", "1"),
            ("DISABLE_AUTOUPDATER", "1"),
            ("DISABLE_ERROR_REPORTING", "1"),
            ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
            ("CLAUDE_CODE_MAX_RETRIES", "2"),
            ("IS_SANDBOX", "1"),
            ("NO_PROXY", "127.0.0.1,localhost"),
            ("no_proxy", "127.0.0.1,localhost"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Names to remove from the inherited environment (see `REMOVED_PREFIXES`).
    pub fn env_removals(&self) -> Vec<OsString> {
        let mut names: Vec<OsString> = REMOVED_NAMES.iter().map(OsString::from).collect();
        for (name, _) in std::env::vars_os() {
            let s = name.to_string_lossy();
            if REMOVED_PREFIXES.iter().any(|p| s.starts_with(p)) && !names.contains(&name) {
                names.push(name);
            }
        }
        names
    }

    /// Clean `cmd`'s environment of the developer's Claude settings and point it at the mock.
    /// Apply your own `.env(…)` after this to override (e.g. remove
    /// `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC` to get the session-title request).
    pub fn apply<'a>(&self, cmd: &'a mut Command, base_url: &str) -> &'a mut Command {
        for name in self.env_removals() {
            cmd.env_remove(name);
        }
        for (k, v) in self.env_vars(base_url) {
            cmd.env(k, v);
        }
        cmd
    }

    /// `claude` (see [`super::claude_bin`]) with [`apply`](Self::apply) done and the working
    /// directory set to [`workdir`](Self::workdir).
    pub fn claude_command(&self, base_url: &str) -> Command {
        let mut cmd = Command::new(super::claude_bin());
        self.apply(&mut cmd, base_url);
        cmd.current_dir(&self.workdir);
        cmd
    }

    /// `~/.claude/projects/<slug of cwd>`; the slug is built from the realpath of `cwd`.
    pub fn project_dir(&self, cwd: &Path) -> PathBuf {
        self.projects_dir().join(project_slug(cwd))
    }

    /// The main transcript of a session run in `cwd`.
    pub fn transcript(&self, cwd: &Path, session_id: &str) -> PathBuf {
        self.project_dir(cwd).join(format!("{session_id}.jsonl"))
    }

    /// `…/<session>/subagents/`: where the session's subagents write.
    pub fn subagents_dir(&self, cwd: &Path, session_id: &str) -> PathBuf {
        self.project_dir(cwd).join(session_id).join("subagents")
    }

    /// The session's subagent transcripts (`agent-*.jsonl`, sorted; not the `.meta.json`).
    pub fn subagent_transcripts(&self, cwd: &Path, session_id: &str) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = fs::read_dir(self.subagents_dir(cwd, session_id))
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| {
                        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                        name.starts_with("agent-") && name.ends_with(".jsonl")
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    /// Every `*.jsonl` under `~/.claude/projects`, sorted.
    pub fn all_transcripts(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        collect_jsonl(&self.projects_dir(), &mut out);
        out.sort();
        out
    }
}

fn collect_jsonl(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for entry in rd.filter_map(Result::ok) {
        let p = entry.path();
        if p.is_dir() {
            collect_jsonl(&p, out);
        } else if p.extension().is_some_and(|e| e == "jsonl") {
            out.push(p);
        }
    }
}

fn write_json(path: &Path, v: &Value) {
    fs::write(path, serde_json::to_string_pretty(v).unwrap())
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Claude Code's project directory name for a cwd: [`slug`] of the cwd's realpath (claude
/// uses getcwd, not `$PWD`, so a symlinked cwd maps to its target).
pub fn project_slug(cwd: &Path) -> String {
    let real = cwd.canonicalize().unwrap_or_else(|_| cwd.to_path_buf());
    slug(&real.to_string_lossy())
}

/// Claude Code 2.1.197's `sanitizePath`: every UTF-16 code unit that is not an ASCII letter or
/// digit becomes `-` (`/tmp/.tmpAbC_x.y` → `-tmp--tmpAbC-x-y`); past 200 characters the slug
/// is cut to 200 and `-<hash>` appended, the hash being the 32-bit `h = h*31 + unit` of the
/// unsanitized path, absolute value, in base 36.
pub fn slug(path: &str) -> String {
    const MAX: usize = 200;
    let units: Vec<u16> = path.encode_utf16().collect();
    let sanitized: String = units
        .iter()
        .map(|&u| match u {
            0x30..=0x39 | 0x41..=0x5a | 0x61..=0x7a => u as u8 as char,
            _ => '-',
        })
        .collect();
    if sanitized.len() <= MAX {
        return sanitized;
    }
    let mut h: i32 = 0;
    for &u in &units {
        h = h.wrapping_shl(5).wrapping_sub(h).wrapping_add(i32::from(u));
    }
    format!("{}-{}", &sanitized[..MAX], base36(i64::from(h).unsigned_abs()))
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    if n == 0 {
        return "0".into();
    }
    let mut out = Vec::new();
    while n > 0 {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
    }
    out.reverse();
    String::from_utf8(out).unwrap()
}

/// Parse a JSONL file into values, skipping lines that are not JSON (e.g. a partial last line).
/// A missing file reads as empty.
pub fn read_jsonl(path: &Path) -> Vec<Value> {
    fs::read_to_string(path).unwrap_or_default().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// The `"type":"assistant"` lines of a transcript that carry a `message.usage`.
pub fn assistant_lines(path: &Path) -> Vec<Value> {
    read_jsonl(path)
        .into_iter()
        .filter(|v| v.get("type").and_then(Value::as_str) == Some("assistant") && v.pointer("/message/usage").is_some())
        .collect()
}

/// A random version-4 UUID (for `--session-id`), from /dev/urandom.
pub fn new_session_id() -> String {
    use std::io::Read;
    let mut b = [0u8; 16];
    match fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)) {
        Ok(()) => {}
        Err(_) => {
            // Fall back to time and a counter: unique enough for tests.
            use std::sync::atomic::{AtomicU64, Ordering};
            static N: AtomicU64 = AtomicU64::new(0);
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
            b[..8].copy_from_slice(&t.to_le_bytes());
            b[8..].copy_from_slice(&(N.fetch_add(1, Ordering::Relaxed) ^ u64::from(std::process::id())).to_le_bytes());
        }
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

impl std::fmt::Debug for ClaudeHome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaudeHome").field("home", &self.home).field("tempdir", &self.dir.path()).finish()
    }
}
