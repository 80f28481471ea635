//! The first-party path: claude talking to Anthropic's own API (an OAuth token, an API key or an
//! auth token; no `ANTHROPIC_BASE_URL` of the user's but Anthropic's own, no cloud provider).
//!
//! Through the gate, claude's base URL is a loopback address, and Claude Code takes any base URL
//! but `api.anthropic.com` for a third-party gateway: it skips the managed settings and policy
//! limits (`/api/claude_code/settings`, `/api/claude_code/policy_limits`), turns tool search off
//! (every tool's full schema in every request), drops the globally shared system-prompt cache
//! block and `x-client-request-id`. A gate must change nothing, so on this path ccb sets
//! [`SWITCH`], Claude Code's internal "this base URL is Anthropic's" variable (2.1.197 to 2.1.332;
//! undocumented, so it may go without notice).
//!
//! Whether it took is checked in every such session: on Anthropic's API, and only there, claude
//! sends [`HEADER`] with each model call. The gate reports a model call without it; the claude
//! executable is then recorded here (its real path, size and modification time, in an
//! owner-only file in ccb's cache directory), and later first-party sessions with it run without
//! the gate, metered from telemetry and transcripts, as in any session without the gate. A new
//! claude (an update) is a new file: it is tried again.

use crate::core::plan::{BillingMode, Env};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The variable that tells Claude Code its base URL is Anthropic's own API.
pub const SWITCH: &str = "_CLAUDE_CODE_ASSUME_FIRST_PARTY_BASE_URL";

/// The header Claude Code sends with each model call on the first-party path, and only there.
pub const HEADER: &str = "x-client-request-id";

/// The variable, for ccb's own tests only, that keeps the switch from claude while the gate
/// still watches: how a test makes a real claude miss it.
pub const TEST_WITHHOLD: &str = "CCB_TEST_NO_FIRST_PARTY_SWITCH";

/// Claude Code's own test of a base URL: its host (with the port, when not the scheme's
/// default) is exactly `api.anthropic.com`.
pub fn is_first_party_url(url: &str) -> bool {
    let url = url.trim();
    let Some((scheme, rest)) = url.split_once("://") else { return false };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "https" => "443",
        "http" => "80",
        _ => return false,
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map(|(_, h)| h).unwrap_or(authority);
    let (host, port) = match host_port.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (host_port, None),
    };
    host.eq_ignore_ascii_case("api.anthropic.com") && port.is_none_or(|p| p.is_empty() || p == default_port)
}

/// Would claude, run without ccb, talk to Anthropic's own API?
pub fn on_path(mode: &BillingMode, env: &Env) -> bool {
    matches!(mode, BillingMode::Oauth | BillingMode::ApiKey | BillingMode::AuthToken)
        && env.get("ANTHROPIC_BASE_URL").filter(|u| !u.trim().is_empty()).is_none_or(|u| is_first_party_url(u))
}

/// One claude executable, as a verdict names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binary {
    /// The real path (symlinks resolved: npm's `claude` is a link to the release's file).
    pub path: String,
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
}

impl Binary {
    pub fn of(exe: &Path) -> Option<Binary> {
        use std::os::unix::fs::MetadataExt;
        let real = std::fs::canonicalize(exe).ok()?;
        let m = std::fs::metadata(&real).ok()?;
        Some(Binary {
            path: real.to_string_lossy().into_owned(),
            size: m.size(),
            mtime_ns: m.mtime().saturating_mul(1_000_000_000).saturating_add(m.mtime_nsec()),
        })
    }
}

/// A claude seen ignoring the switch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    #[serde(flatten)]
    pub binary: Binary,
    /// When (RFC 3339).
    pub seen: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Verdicts {
    #[serde(default)]
    ignored_switch: Vec<Verdict>,
}

/// How many claudes the file remembers (the oldest go first).
const KEEP: usize = 32;

/// `$XDG_CACHE_HOME/ccb/first-party.json`, default `~/.cache/ccb/first-party.json`.
pub fn cache_file() -> Option<PathBuf> {
    crate::sys::paths::cache_dir().map(|d| d.join("first-party.json"))
}

fn read(file: &Path) -> Verdicts {
    std::fs::read(file).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

/// The verdict on this claude, if it ignored the switch before.
pub fn find(file: &Path, binary: &Binary) -> Option<Verdict> {
    read(file).ignored_switch.into_iter().find(|v| v.binary == *binary)
}

/// Remember that this claude ignores the switch (owner-only file, written whole).
pub fn record(file: &Path, binary: &Binary, seen: &str) -> std::io::Result<()> {
    let mut v = read(file);
    v.ignored_switch.retain(|x| x.binary != *binary);
    v.ignored_switch.push(Verdict { binary: binary.clone(), seen: seen.to_string() });
    let extra = v.ignored_switch.len().saturating_sub(KEEP);
    v.ignored_switch.drain(..extra);
    let text = serde_json::to_vec_pretty(&v).map_err(std::io::Error::other)?;
    crate::sys::paths::write_private(file, &text)
}

/// What a session does on the first-party path, decided before launch.
#[derive(Debug, Clone, Default)]
pub struct FirstParty {
    /// Claude, run without ccb, would talk to Anthropic's own API.
    pub path: bool,
    /// The claude to run, as verdicts name it.
    pub binary: Option<Binary>,
    /// Where verdicts are kept.
    pub file: Option<PathBuf>,
    /// This claude ignored the switch before: the gate stays out of its first-party sessions.
    pub ignored: Option<Verdict>,
    /// Keep the switch from claude ([`TEST_WITHHOLD`]).
    pub withhold: bool,
}

impl FirstParty {
    /// Look up the verdict on `claude` when the session is on the first-party path.
    pub fn decide(path: bool, claude: &Path, file: Option<PathBuf>, withhold: bool) -> FirstParty {
        if !path {
            return FirstParty::default();
        }
        let binary = Binary::of(claude);
        let ignored = match (&file, &binary) {
            (Some(f), Some(b)) => find(f, b),
            _ => None,
        };
        FirstParty { path, binary, file, ignored, withhold }
    }

    /// The gate may stand in the request path (the switch is not known to fail).
    pub fn gate_allowed(&self) -> bool {
        self.ignored.is_none()
    }

    /// Tell claude its base URL (the gate) is Anthropic's API, given that the gate is on.
    pub fn switch(&self, gate: bool) -> bool {
        self.path && gate && !self.withhold
    }

    /// Why the gate is off on this path, for the plan.
    pub fn gate_off_reason(&self) -> Option<String> {
        let v = self.ignored.as_ref()?;
        Some(format!(
            "this claude ({}) ignored {SWITCH} on {}: through the gate it would not make the requests it makes to Anthropic's API; metering from telemetry and transcripts (remove {} to try again)",
            v.binary.path,
            v.seen,
            self.file.as_ref().map(|f| f.display().to_string()).unwrap_or_else(|| "ccb's first-party.json".into())
        ))
    }

    /// Record that this claude ignored the switch; the notice for the user.
    pub fn record_ignored(&self) -> String {
        let what = format!(
            "claude did not take {SWITCH}: through the gate it makes the requests of a third-party gateway, not those it makes to Anthropic's API (no managed settings or policy limits, no tool search, larger requests). This session goes on through the gate"
        );
        let (Some(file), Some(binary)) = (&self.file, &self.binary) else {
            return format!("{what}; ccb cannot remember this claude (no cache directory)");
        };
        match record(file, binary, &jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()) {
            Ok(()) => format!(
                "{what}; later sessions with this claude ({}) run without the gate, metered from telemetry and transcripts (remove {} to try again)",
                binary.path,
                file.display()
            ),
            Err(e) => format!("{what}; ccb cannot remember this claude in {}: {}", file.display(), crate::sys::paths::io_reason(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claude_codes_test_of_a_base_url() {
        for yes in [
            "https://api.anthropic.com",
            "https://api.anthropic.com/",
            "https://API.anthropic.com:443/v1",
            "http://api.anthropic.com:80",
            "https://user@api.anthropic.com",
        ] {
            assert!(is_first_party_url(yes), "{yes}");
        }
        for no in [
            "https://api.anthropic.com:8443",
            "https://gw.anthropic.com",
            "https://api.anthropic.com.evil.io",
            "http://127.0.0.1:9/tok",
            "api.anthropic.com",
            "ftp://api.anthropic.com",
        ] {
            assert!(!is_first_party_url(no), "{no}");
        }
    }

    #[test]
    fn the_path_is_anthropics_api_with_anthropics_credentials() {
        let env =
            |pairs: &[(&str, &str)]| -> Env { pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() };
        assert!(on_path(&BillingMode::Oauth, &env(&[])));
        assert!(on_path(&BillingMode::ApiKey, &env(&[("ANTHROPIC_BASE_URL", "")])));
        assert!(on_path(&BillingMode::AuthToken, &env(&[("ANTHROPIC_BASE_URL", "https://api.anthropic.com")])));
        assert!(!on_path(&BillingMode::CustomEndpoint, &env(&[("ANTHROPIC_BASE_URL", "https://gw.corp")])));
        assert!(!on_path(&BillingMode::ApiKey, &env(&[("ANTHROPIC_BASE_URL", "https://eu.anthropic.com")])));
        for cloud in [BillingMode::Bedrock, BillingMode::Vertex, BillingMode::Foundry] {
            assert!(!on_path(&cloud, &env(&[])));
        }
    }

    #[test]
    fn verdicts_are_per_executable_and_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("claude");
        std::fs::write(&exe, b"one").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&exe, &link).unwrap();
        let file = dir.path().join("cache/ccb/first-party.json");
        let fp = FirstParty::decide(true, &link, Some(file.clone()), false);
        assert!(fp.gate_allowed() && fp.switch(true) && !fp.switch(false));
        assert!(fp.record_ignored().contains("later sessions with this claude"));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(file.parent().unwrap()), 0o700);
        // The same file by its link or its real path: known.
        for p in [&link, &exe] {
            let again = FirstParty::decide(true, p, Some(file.clone()), false);
            assert!(!again.gate_allowed());
            assert!(again.gate_off_reason().unwrap().contains("ignored _CLAUDE_CODE_ASSUME_FIRST_PARTY_BASE_URL"));
        }
        // Off the path, nothing is looked up.
        assert!(FirstParty::decide(false, &exe, Some(file.clone()), false).gate_allowed());
        // An update is another claude.
        std::fs::write(&exe, b"two, longer").unwrap();
        assert!(FirstParty::decide(true, &exe, Some(file.clone()), false).gate_allowed());
        // A damaged file forgets, and is rewritten whole.
        std::fs::write(&file, b"{not json").unwrap();
        assert!(FirstParty::decide(true, &exe, Some(file.clone()), false).gate_allowed());
        FirstParty::decide(true, &exe, Some(file.clone()), false).record_ignored();
        assert!(!FirstParty::decide(true, &exe, Some(file), false).gate_allowed());
    }

    #[test]
    fn the_test_switch_withholds_it() {
        let fp = FirstParty { path: true, withhold: true, ..FirstParty::default() };
        assert!(!fp.switch(true));
    }
}
