//! What ccb needs from Claude Code's settings files: `model`, `apiKeyHelper` and the `env` block
//! (which Claude Code applies over the process environment).
//!
//! Precedence, lowest first, as Claude Code documents it: user (`<config dir>/settings.json`),
//! project (`.claude/settings.json`), local (`.claude/settings.local.json`), `--settings`, then
//! managed policy settings. `--setting-sources` limits the first three. A file that does not parse
//! is skipped: claude reports it itself, and ccb must not refuse to launch over it.

use std::path::{Path, PathBuf};

pub use crate::core::plan::Settings;

/// The files to read, lowest precedence first.
pub fn files(claude_dir: Option<&Path>, cwd: &Path, setting_sources: Option<&str>) -> Vec<PathBuf> {
    let allowed = |name: &str| match setting_sources {
        None => true,
        Some(list) => list.split(',').any(|s| s.trim() == name),
    };
    let mut out = Vec::new();
    if allowed("user") {
        if let Some(d) = claude_dir {
            out.push(d.join("settings.json"));
        }
    }
    if allowed("project") {
        out.push(cwd.join(".claude/settings.json"));
    }
    if allowed("local") {
        out.push(cwd.join(".claude/settings.local.json"));
    }
    out
}

/// Managed (policy) settings, highest precedence.
pub const MANAGED: &str = "/etc/claude-code/managed-settings.json";

/// Read the settings that apply to a claude started in `cwd` with the given `--settings` value
/// (a file path or a JSON string) and `--setting-sources`.
pub fn load(
    claude_dir: Option<&Path>,
    cwd: &Path,
    cli_settings: Option<&str>,
    setting_sources: Option<&str>,
) -> Settings {
    let mut s = Settings::default();
    let read = |p: &Path| -> Option<serde_json::Value> { serde_json::from_slice(&std::fs::read(p).ok()?).ok() };
    for f in files(claude_dir, cwd, setting_sources) {
        if let Some(v) = read(&f) {
            s.merge_json(&v);
        }
    }
    if let Some(arg) = cli_settings {
        let v = if arg.trim_start().starts_with('{') { serde_json::from_str(arg).ok() } else { read(&cwd.join(arg)) };
        if let Some(v) = v {
            s.merge_json(&v);
        }
    }
    if let Some(v) = read(Path::new(MANAGED)) {
        s.merge_json(&v);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn later_settings_win_and_env_merges() {
        let mut s = Settings::default();
        s.merge_json(&json!({"model": "sonnet", "env": {"A": "1", "B": "2"}}));
        s.merge_json(&json!({"model": "opus", "env": {"B": "3", "N": 4}, "apiKeyHelper": "/bin/key"}));
        assert_eq!(s.model.as_deref(), Some("opus"));
        assert!(s.api_key_helper);
        assert_eq!(s.env.get("A").map(String::as_str), Some("1"));
        assert_eq!(s.env.get("B").map(String::as_str), Some("3"));
        assert_eq!(s.env.get("N").map(String::as_str), Some("4"));
    }

    #[test]
    fn setting_sources_limit_the_files() {
        let f = files(Some(Path::new("/h/.claude")), Path::new("/w"), Some("project"));
        assert_eq!(f, vec![PathBuf::from("/w/.claude/settings.json")]);
        assert_eq!(files(Some(Path::new("/h/.claude")), Path::new("/w"), None).len(), 3);
    }

    #[test]
    fn reads_files_and_cli_json_and_skips_broken_files() {
        let d = tempfile::tempdir().unwrap();
        let user = d.path().join("user");
        let cwd = d.path().join("proj");
        std::fs::create_dir_all(&user).unwrap();
        std::fs::create_dir_all(cwd.join(".claude")).unwrap();
        std::fs::write(user.join("settings.json"), r#"{"model":"haiku","env":{"ANTHROPIC_MODEL":"x"}}"#).unwrap();
        std::fs::write(cwd.join(".claude/settings.json"), "{ not json").unwrap();
        std::fs::write(cwd.join(".claude/settings.local.json"), r#"{"model":"sonnet"}"#).unwrap();
        let s = load(Some(&user), &cwd, None, None);
        assert_eq!(s.model.as_deref(), Some("sonnet"));
        assert_eq!(s.env.get("ANTHROPIC_MODEL").map(String::as_str), Some("x"));
        let s = load(Some(&user), &cwd, Some(r#"{"model":"opus"}"#), None);
        assert_eq!(s.model.as_deref(), Some("opus"));
    }
}
