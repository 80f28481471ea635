//! Claude's settings for a metered session: ccb's `env` entries (the gate, the telemetry
//! receiver, the first-party switch) merged into the user's own `--settings`, written to a
//! private file whose path goes on claude's command line.

use crate::core::exit::Exit;
use crate::core::human;
use crate::sys::paths;
use std::ffi::OsString;

/// Claude's arguments and ccb's settings for it: `env` entries that point claude at the gate and
/// the telemetry receiver. Claude takes one `--settings` (a file or a JSON string), and it beats
/// an `env` block in the user's settings files, so a user's own `--settings` is merged (ccb's
/// entries win) and otherwise one is added in front.
///
/// The merged settings go to claude in a file, never on its command line, which every local user
/// can read (`ps`, `/proc/PID/cmdline`): they hold the endpoints' tokens, and the user's file may
/// hold a key. [`Merged::args`] gives the arguments with that file's path.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    args: Vec<OsString>,
    /// Where the path goes: the index in `args`, and whether it is the `--settings=` form.
    slot: usize,
    joined: bool,
    /// What to write to the file.
    pub settings: serde_json::Value,
    /// The user's own `--settings`, as given (a path, or `inline JSON`), for the plan.
    pub from_user: Option<String>,
}

impl Merged {
    /// Claude's arguments, with `--settings PATH`.
    pub fn args(&self, path: &std::ffi::OsStr) -> Vec<OsString> {
        let mut out = self.args.clone();
        out[self.slot] = if self.joined {
            let mut a = OsString::from("--settings=");
            a.push(path);
            a
        } else {
            path.to_owned()
        };
        out
    }
}

/// Merge ccb's `env` entries (and its `statusLine`, when it gives one) into the user's
/// `--settings` (read from its file when it names one), or into new settings. None when ccb has
/// nothing to add: the arguments stay as they are.
pub fn merge_settings(
    args: &[OsString],
    cwd: &std::path::Path,
    env_block: serde_json::Map<String, serde_json::Value>,
    status_line: Option<&serde_json::Value>,
) -> Result<Option<Merged>, String> {
    if env_block.is_empty() && status_line.is_none() {
        return Ok(None);
    }
    let mut at: Option<(usize, bool, String)> = None;
    for (i, a) in args.iter().enumerate() {
        let Some(a) = a.to_str() else { continue };
        if a == "--" {
            break;
        }
        if a == "--settings" {
            if let Some(v) = args.get(i + 1).and_then(|v| v.to_str()) {
                at = Some((i + 1, false, v.to_string()));
            }
            break;
        }
        if let Some(v) = a.strip_prefix("--settings=") {
            at = Some((i, true, v.to_string()));
            break;
        }
    }
    let merge = |mut base: serde_json::Value| -> serde_json::Value {
        if !base.is_object() {
            base = serde_json::json!({});
        }
        let env = base.as_object_mut().expect("object").entry("env").or_insert_with(|| serde_json::json!({}));
        if !env.is_object() {
            *env = serde_json::json!({});
        }
        for (k, v) in &env_block {
            env.as_object_mut().expect("object").insert(k.clone(), v.clone());
        }
        if let Some(sl) = status_line {
            base.as_object_mut().expect("object").insert("statusLine".into(), sl.clone());
        }
        base
    };
    Ok(Some(match at {
        None => {
            let mut args = args.to_vec();
            args.splice(0..0, [OsString::from("--settings"), OsString::new()]);
            Merged { args, slot: 1, joined: false, settings: merge(serde_json::json!({})), from_user: None }
        }
        Some((slot, joined, value)) => {
            let (user, from_user) = if value.trim_start().starts_with('{') {
                let v = serde_json::from_str(&value).map_err(|e| format!("--settings is not valid JSON ({e})"))?;
                (v, "inline JSON".to_string())
            } else {
                let path = cwd.join(&value);
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    format!("cannot read --settings {}: {}", human::path_excerpt(&path), paths::io_reason(&e))
                })?;
                let v = serde_json::from_str(&text)
                    .map_err(|e| format!("--settings {} is not valid JSON ({e})", human::path_excerpt(&path)))?;
                (v, value)
            };
            Merged { args: args.to_vec(), slot, joined, settings: merge(user), from_user: Some(from_user) }
        }
    }))
}

/// The merged settings, written where only the user can read them; the file goes when the
/// session does (see [`paths::PrivateFile`]). Claude is told the file's path as an argument,
/// which it reads as UTF-8: a directory whose path is not UTF-8 (`XDG_DATA_HOME` in Latin-1)
/// would name a file claude cannot find, so such a place is passed over, and the user told why.
pub(super) fn write_settings(settings: &serde_json::Value) -> std::io::Result<paths::PrivateFile> {
    let (dirs, passed_over) = paths::private_run_dirs_utf8();
    let f = paths::PrivateFile::create(&dirs, SETTINGS_PREFIX, "json", settings.to_string().as_bytes())?;
    if let Some(d) = passed_over.first() {
        crate::note!(
            "ccb: note: {} is not UTF-8, which claude cannot read in a path: its settings file is in {} instead (set XDG_RUNTIME_DIR to a UTF-8 directory to choose where)",
            human::path_excerpt(d),
            human::path_excerpt(f.path().parent().unwrap_or(f.path()))
        );
    }
    Ok(f)
}

const SETTINGS_PREFIX: &str = "settings";

/// How `--dry-run` shows the settings file's path: nothing is written, and its contents are
/// not shown (they may hold a key).
pub(super) const DRY_RUN_SETTINGS: &str = "<private file>";

/// ccb's `env` entries for claude, given the gate's URL, whether it stands for Anthropic's own
/// API (the first-party switch), and the telemetry endpoint.
pub(super) fn env_block(
    gate_url: Option<&str>,
    first_party: bool,
    telemetry_endpoint: Option<&str>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    if let Some(u) = gate_url {
        m.insert("ANTHROPIC_BASE_URL".into(), serde_json::Value::String(u.into()));
        if first_party {
            m.insert(crate::session::first_party::SWITCH.into(), serde_json::Value::String("1".into()));
        }
    }
    if let Some(t) = telemetry_endpoint {
        m.extend(crate::session::telemetry::settings_env(t));
    }
    m
}

/// A bad `--settings` is the usage error a session would meet.
pub(super) fn settings_error(e: String) -> Exit {
    Exit::usage(format!("{e}: fix it, or leave --settings out"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    fn block() -> serde_json::Map<String, serde_json::Value> {
        env_block(Some("http://127.0.0.1:1/tok"), false, Some("http://127.0.0.1:2/v1/logs/tok"))
    }

    #[test]
    fn the_first_party_switch_goes_with_the_gate_only() {
        let sw = crate::session::first_party::SWITCH;
        let on = env_block(Some("http://127.0.0.1:1/tok"), true, None);
        assert_eq!(on[sw], "1");
        assert_eq!(on["ANTHROPIC_BASE_URL"], "http://127.0.0.1:1/tok");
        assert!(!env_block(Some("http://127.0.0.1:1/tok"), false, None).contains_key(sw));
        assert!(!env_block(None, true, Some("http://127.0.0.1:2/v1/logs/tok")).contains_key(sw));
    }

    #[test]
    fn settings_go_in_a_file_named_on_the_command_line() {
        let cwd = tempfile::tempdir().unwrap();
        let path = std::ffi::OsStr::new("/run/ccb/settings-1-x.json");
        // Nothing to add: claude's arguments as they are.
        assert_eq!(merge_settings(&os(&["-p", "hi"]), cwd.path(), Default::default(), None).unwrap(), None);
        // No --settings of the user's: one in front.
        let m = merge_settings(&os(&["-p", "hi"]), cwd.path(), block(), None).unwrap().unwrap();
        assert_eq!(m.args(path), os(&["--settings", "/run/ccb/settings-1-x.json", "-p", "hi"]));
        assert_eq!(m.settings["env"]["ANTHROPIC_BASE_URL"], "http://127.0.0.1:1/tok");
        assert_eq!(m.from_user, None);
        // A file of the user's: merged, ccb's entries winning, and its place taken by the path.
        let user = json!({"model": "haiku", "env": {"ANTHROPIC_API_KEY": "sk-secret", "ANTHROPIC_BASE_URL": "x"}});
        std::fs::write(cwd.path().join("mine.json"), user.to_string()).unwrap();
        let m =
            merge_settings(&os(&["-p", "--settings", "mine.json", "hi"]), cwd.path(), block(), None).unwrap().unwrap();
        let args = m.args(path);
        assert_eq!(args, os(&["-p", "--settings", "/run/ccb/settings-1-x.json", "hi"]));
        assert!(!args.iter().any(|a| a.to_string_lossy().contains("sk-secret")));
        assert_eq!(m.settings["model"], "haiku");
        assert_eq!(m.settings["env"]["ANTHROPIC_API_KEY"], "sk-secret");
        assert_eq!(m.settings["env"]["ANTHROPIC_BASE_URL"], "http://127.0.0.1:1/tok");
        assert_eq!(m.settings["env"]["OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"], "http://127.0.0.1:2/v1/logs/tok");
        assert_eq!(m.from_user.as_deref(), Some("mine.json"));
        // Inline JSON, in the `--settings=` form: off the command line too.
        let inline = format!("--settings={user}");
        let m = merge_settings(&os(&[&inline, "-p"]), cwd.path(), block(), None).unwrap().unwrap();
        assert_eq!(m.args(path), os(&["--settings=/run/ccb/settings-1-x.json", "-p"]));
        assert_eq!(m.settings["env"]["ANTHROPIC_API_KEY"], "sk-secret");
        assert_eq!(m.from_user.as_deref(), Some("inline JSON"));
        // After `--`, a `--settings` is claude's prompt text, not a flag.
        let m = merge_settings(&os(&["--", "--settings", "mine.json"]), cwd.path(), block(), None).unwrap().unwrap();
        assert_eq!(m.args(path), os(&["--settings", "/run/ccb/settings-1-x.json", "--", "--settings", "mine.json"]));
        // Errors say which --settings and why.
        let e = merge_settings(&os(&["--settings", "missing.json"]), cwd.path(), block(), None).unwrap_err();
        assert!(
            e.starts_with("cannot read --settings ") && e.ends_with("missing.json: no such file or directory"),
            "{e}"
        );
        let e = merge_settings(&os(&["--settings", "{bad"]), cwd.path(), block(), None).unwrap_err();
        assert!(e.starts_with("--settings is not valid JSON"), "{e}");
    }

    #[test]
    fn the_status_line_goes_in_even_without_env_entries_and_wins_over_the_users() {
        let cwd = tempfile::tempdir().unwrap();
        let path = std::ffi::OsStr::new("/run/ccb/settings-1-x.json");
        let ours = json!({"type": "command", "command": "'/bin/ccb' statusline", "padding": 0});
        let m = merge_settings(&os(&["hi"]), cwd.path(), Default::default(), Some(&ours)).unwrap().unwrap();
        assert_eq!(m.args(path), os(&["--settings", "/run/ccb/settings-1-x.json", "hi"]));
        assert_eq!(m.settings["statusLine"], ours);
        let inline = r#"--settings={"statusLine":{"type":"command","command":"mine"},"model":"haiku"}"#;
        let m = merge_settings(&os(&[inline]), cwd.path(), block(), Some(&ours)).unwrap().unwrap();
        assert_eq!(m.settings["statusLine"], ours);
        assert_eq!(m.settings["model"], "haiku");
    }
}
