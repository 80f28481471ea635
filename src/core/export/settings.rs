//! `[export]`: where ccb sends its OpenTelemetry export, in which encoding, with which headers
//! (secrets: never printed), and which of the machine's attributes may leave it.
//!
//! The endpoint is the collector's base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT` is: ccb appends
//! `/v1/logs` and `/v1/metrics` (after any path the base has: `https://host/otlp` sends to
//! `https://host/otlp/v1/logs`). A full signal path is refused with a one-line fix, so a URL
//! is never quietly sent to `…/v1/logs/v1/logs`. ccb reads none of the `OTEL_*` variables for
//! its own export: those are claude's.

use std::collections::BTreeMap;
use toml::Spanned;

/// How the payload is encoded (OTLP/HTTP's two encodings; gRPC is not spoken).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    Protobuf,
    Json,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Protobuf => "http/protobuf",
            Protocol::Json => "http/json",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Protocol::Protobuf => "application/x-protobuf",
            Protocol::Json => "application/json",
        }
    }
}

/// What of the machine and the session may leave it (`[export] attributes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allow {
    pub host: bool,
    pub project: bool,
    pub branch: bool,
    pub commit: bool,
    pub user: bool,
}

/// The words of `[export] attributes`, in the order `config show` writes them.
pub const ALLOWABLE: &[&str] = &["host", "project", "branch", "commit", "user"];

impl Allow {
    pub const ALL: Allow = Allow { host: true, project: true, branch: true, commit: true, user: true };
    pub const NONE: Allow = Allow { host: false, project: false, branch: false, commit: false, user: false };

    fn set(&mut self, word: &str) -> bool {
        match word {
            "host" => self.host = true,
            "project" => self.project = true,
            "branch" => self.branch = true,
            "commit" => self.commit = true,
            "user" => self.user = true,
            _ => return false,
        }
        true
    }

    pub fn words(&self) -> Vec<&'static str> {
        let on = [self.host, self.project, self.branch, self.commit, self.user];
        ALLOWABLE.iter().zip(on).filter(|(_, on)| *on).map(|(w, _)| *w).collect()
    }
}

impl Default for Allow {
    fn default() -> Self {
        Allow::ALL
    }
}

/// The effective `[export]`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Settings {
    /// The collector's base URL; None: no export.
    pub endpoint: Option<String>,
    pub protocol: Protocol,
    /// Header names and values, in name order. The values are secrets.
    pub headers: Vec<(String, String)>,
    pub allow: Allow,
}

// The values are secrets: a `{:?}` of the configuration must not print them.
impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("endpoint", &self.endpoint)
            .field("protocol", &self.protocol)
            .field("headers", &self.headers.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>())
            .field("allow", &self.allow)
            .finish()
    }
}

impl Settings {
    /// The URL of one signal (`logs`, `metrics`).
    pub fn signal_url(&self, signal: &str) -> Option<String> {
        self.endpoint.as_ref().map(|e| format!("{}/v1/{signal}", e.trim_end_matches('/')))
    }

    /// One line for `--dry-run` and `config show`: the endpoint, the encoding, which headers
    /// are set (never their values).
    pub fn describe(&self) -> Option<String> {
        let e = self.endpoint.as_ref()?;
        let headers = if self.headers.is_empty() {
            String::new()
        } else {
            let names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
            format!(", headers {} set (values not shown)", names.join(", "))
        };
        let attrs = self.allow.words();
        Some(format!(
            "OTLP {} to {e}{headers}; attributes: {}",
            self.protocol.as_str(),
            if attrs.is_empty() { "none".to_string() } else { attrs.join(", ") }
        ))
    }

    /// The `[export]` section of `ccb config show`: header values masked.
    pub fn to_toml(&self) -> String {
        let mut out = String::from("\n[export]\n");
        match &self.endpoint {
            Some(e) => out.push_str(&format!("otlp_endpoint = {e:?}\n")),
            None => out.push_str("# otlp_endpoint: not set (nothing is exported)\n"),
        }
        out.push_str(&format!("otlp_protocol = {:?}\n", self.protocol.as_str()));
        if !self.headers.is_empty() {
            let names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
            out.push_str(&format!("# otlp_headers: {} set (values not shown)\n", names.join(", ")));
        }
        let words: Vec<String> = self.allow.words().iter().map(|w| format!("{w:?}")).collect();
        out.push_str(&format!("attributes = [{}]\n", words.join(", ")));
        out
    }
}

/// `[export]` as written.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct FileExport {
    otlp_endpoint: Option<Spanned<String>>,
    otlp_protocol: Option<Spanned<String>>,
    // Read as any value and checked here: serde's own message for a wrong type quotes the
    // value, and a value here is a secret.
    otlp_headers: Option<Spanned<toml::Value>>,
    attributes: Option<Spanned<Vec<String>>>,
}

/// RFC 9110 `tchar`: what a header name is made of.
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Parse `[export]`; `at(offset, message)` makes the one-line error that names the line.
pub fn parse<E>(f: FileExport, at: &dyn Fn(usize, String) -> E) -> Result<Settings, E> {
    let shown = |s: &str| crate::core::human::excerpt(s, crate::core::human::EXCERPT);
    let mut s = Settings::default();
    if let Some(v) = f.otlp_endpoint {
        let start = v.span().start;
        s.endpoint = Some(endpoint(v.get_ref()).map_err(|m| at(start, format!("[export] otlp_endpoint {m}")))?);
    }
    if let Some(v) = f.otlp_protocol {
        s.protocol = match v.get_ref().as_str() {
            "http/protobuf" => Protocol::Protobuf,
            "http/json" => Protocol::Json,
            other => {
                return Err(at(
                    v.span().start,
                    format!(
                    "[export] otlp_protocol '{}' must be \"http/protobuf\" or \"http/json\" (ccb does not speak gRPC)",
                    shown(other)
                ),
                ))
            }
        };
    }
    if let Some(v) = f.otlp_headers {
        let start = v.span().start;
        let toml::Value::Table(t) = v.into_inner() else {
            return Err(at(
                start,
                "[export] otlp_headers must be a table of header names and values, such as { authorization = \"Bearer …\" }".into(),
            ));
        };
        let mut headers = BTreeMap::new();
        for (name, value) in t {
            if !is_token(&name) || name.len() > 128 {
                return Err(at(start, format!("[export] otlp_headers: '{}' is not a header name", shown(&name))));
            }
            // The value is never repeated in a message: it is a secret.
            let toml::Value::String(value) = value else {
                return Err(at(start, format!("[export] otlp_headers: the value of '{name}' must be a string")));
            };
            if value.len() > 8192 || value.chars().any(|c| c.is_control() && c != '\t') {
                return Err(at(
                    start,
                    format!("[export] otlp_headers: the value of '{name}' must be one line of at most 8 KiB"),
                ));
            }
            let lower = name.to_ascii_lowercase();
            if ["content-type", "content-length", "host", "transfer-encoding", "connection"].contains(&lower.as_str()) {
                return Err(at(start, format!("[export] otlp_headers: '{name}' is set by ccb itself")));
            }
            headers.insert(lower, value);
        }
        s.headers = headers.into_iter().collect();
    }
    if let Some(v) = f.attributes {
        let start = v.span().start;
        let mut allow = Allow::NONE;
        for w in v.get_ref() {
            if !allow.set(w) {
                return Err(at(
                    start,
                    format!("[export] attributes: '{}' is not one of {}", shown(w), ALLOWABLE.join(", ")),
                ));
            }
        }
        s.allow = allow;
    }
    Ok(s)
}

/// The endpoint as ccb uses it, or why not (the value is not repeated: a URL may hold a
/// secret, and a message is one line).
fn endpoint(raw: &str) -> Result<String, String> {
    let e = raw.trim();
    let base = "must be the collector's base URL, such as \"http://localhost:4318\"";
    let rest = e.strip_prefix("https://").or_else(|| e.strip_prefix("http://")).ok_or_else(|| base.to_string())?;
    if e.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(base.to_string());
    }
    let authority = rest.split('/').next().unwrap_or("");
    if authority.is_empty() {
        return Err(base.to_string());
    }
    if authority.contains('@') {
        return Err("must not hold a user or password: give credentials with otlp_headers".into());
    }
    if e.contains('?') || e.contains('#') {
        return Err("must not have a query or a fragment: give credentials with otlp_headers".into());
    }
    let trimmed = e.trim_end_matches('/');
    for signal in ["logs", "metrics", "traces"] {
        if trimmed.ends_with(&format!("/v1/{signal}")) {
            return Err(format!(
                "is the collector's base URL: ccb appends /v1/logs and /v1/metrics itself (drop the trailing /v1/{signal})"
            ));
        }
    }
    Ok(trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Settings, String> {
        #[derive(serde::Deserialize)]
        struct F {
            export: FileExport,
        }
        let f: F = toml::from_str(text).map_err(|e| e.to_string())?;
        parse(f.export, &|o, m| format!("@{o}: {m}"))
    }

    #[test]
    fn reads_the_section_and_appends_the_signal_paths() {
        let s = p("[export]\notlp_endpoint = \"https://otel.example:4318/otlp/\"\notlp_protocol = \"http/json\"\notlp_headers = { Authorization = \"Bearer SECRET\", x-team = \"a\" }\nattributes = [\"project\", \"user\"]\n").unwrap();
        assert_eq!(s.signal_url("logs").as_deref(), Some("https://otel.example:4318/otlp/v1/logs"));
        assert_eq!(s.signal_url("metrics").as_deref(), Some("https://otel.example:4318/otlp/v1/metrics"));
        assert_eq!(s.protocol, Protocol::Json);
        assert_eq!(s.headers, vec![("authorization".into(), "Bearer SECRET".into()), ("x-team".into(), "a".into())]);
        assert_eq!(s.allow, Allow { project: true, user: true, ..Allow::NONE });
        for shown in [s.to_toml(), s.describe().unwrap(), format!("{s:?}")] {
            assert!(!shown.contains("SECRET"), "{shown}");
            assert!(shown.contains("authorization"), "{shown}");
        }
        let d = p("[export]\n").unwrap();
        assert_eq!((d.endpoint, d.protocol, d.allow), (None, Protocol::Protobuf, Allow::ALL));
        assert_eq!(p("[export]\nattributes = []\n").unwrap().allow, Allow::NONE);
    }

    #[test]
    fn bad_values_are_one_line_and_never_repeat_a_secret() {
        for (text, want) in [
            ("otlp_endpoint = \"localhost:4318\"", "must be the collector's base URL"),
            ("otlp_endpoint = \"http://\"", "must be the collector's base URL"),
            ("otlp_endpoint = \"http://u:SECRET@h:4318\"", "must not hold a user or password"),
            ("otlp_endpoint = \"http://h:4318/?token=SECRET\"", "must not have a query"),
            ("otlp_endpoint = \"http://h:4318/v1/logs\"", "drop the trailing /v1/logs"),
            ("otlp_endpoint = \"http://h:4318/v1/metrics/\"", "drop the trailing /v1/metrics"),
            ("otlp_protocol = \"grpc\"", "otlp_protocol 'grpc' must be"),
            ("otlp_headers = \"authorization=SECRET\"", "must be a table"),
            ("otlp_headers = { \"a b\" = \"SECRET\" }", "'a b' is not a header name"),
            ("otlp_headers = { a = 5 }", "the value of 'a' must be a string"),
            ("otlp_headers = { a = \"SEC\\nRET\" }", "the value of 'a' must be one line"),
            ("otlp_headers = { Host = \"SECRET\" }", "'Host' is set by ccb itself"),
            ("attributes = [\"hostname\"]", "'hostname' is not one of host, project, branch, commit, user"),
        ] {
            let e = p(&format!("[export]\n{text}\n")).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
            assert!(!e.contains("SECRET") && !e.contains("RET"), "{text}: {e}");
            assert!(e.starts_with("@"), "names its place: {e}");
        }
    }
}
