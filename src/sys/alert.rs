//! Where notices go besides the terminal: a command (argv, never through a shell, the facts in
//! `CCB_ALERT_*` variables) and a Slack-compatible webhook (`{"text": …}`). A failing command or
//! webhook is reported and never breaks the session. The webhook URL is a secret: it is never
//! printed, not even in an error.

use crate::core::money::Usd;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const TIMEOUT: Duration = Duration::from_secs(10);

pub use crate::core::config::Sinks;

#[derive(Debug, Clone)]
pub struct Alert {
    /// `session`, `pool` or `limit`.
    pub kind: &'static str,
    pub threshold: u32,
    pub spent: Usd,
    pub limit: Usd,
    pub session_id: Option<String>,
    pub text: String,
}

/// Deliver to every sink, waiting at most [`TIMEOUT`] for each; returns what went wrong.
pub fn deliver(sinks: &Sinks, a: &Alert) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(argv) = sinks.command.as_ref().filter(|v| !v.is_empty()) {
        if let Err(e) = run_command(argv, a) {
            problems.push(format!("alert command '{}' {e}", argv[0]));
        }
    }
    if let Some(url) = &sinks.webhook {
        if let Err(e) = post(url, a) {
            problems.push(format!("alert webhook {e}"));
        }
    }
    problems
}

fn run_command(argv: &[String], a: &Alert) -> Result<(), String> {
    let mut cmd = Command::new(&argv[0]);
    // An alert command notifies; it has no use for the user's API credentials.
    for k in crate::core::plan::SECRET_VARS {
        cmd.env_remove(k);
    }
    cmd.args(&argv[1..])
        .env("CCB_ALERT_KIND", a.kind)
        .env("CCB_ALERT_THRESHOLD", a.threshold.to_string())
        .env("CCB_ALERT_SPENT", format!("{:.6}", a.spent.as_f64()))
        .env("CCB_ALERT_LIMIT", format!("{:.6}", a.limit.as_f64()))
        .env("CCB_ALERT_SESSION_ID", a.session_id.clone().unwrap_or_default())
        .env("CCB_ALERT_MESSAGE", &a.text)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = crate::sys::procs::spawn_own(&mut cmd)
        .map_err(|e| format!("could not start: {}", crate::sys::paths::io_reason(&e)))?;
    let pid = child.id();
    let r = wait_for(&mut child);
    crate::sys::procs::release_own(pid);
    r
}

fn wait_for(child: &mut std::process::Child) -> Result<(), String> {
    let t0 = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(st)) if st.success() => return Ok(()),
            Ok(Some(st)) => return Err(format!("failed ({st})")),
            Ok(None) if t0.elapsed() > TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("timed out after {} s", TIMEOUT.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(e.to_string()),
        }
    }
}

fn post(url: &str, a: &Alert) -> Result<(), String> {
    let agent = ureq::AgentBuilder::new().timeout(TIMEOUT).build();
    match agent.post(url).send_json(serde_json::json!({ "text": a.text })) {
        Ok(_) => Ok(()),
        Err(ureq::Error::Status(code, _)) => Err(format!("failed: HTTP {code}")),
        // ureq's transport errors name the URL; say only what kind of failure it was.
        Err(ureq::Error::Transport(t)) => Err(format!("failed: {}", t.kind())),
    }
}

/// Alerts delivered on a thread of their own, so a slow webhook never holds up a session.
pub struct Dispatcher {
    tx: Option<mpsc::Sender<Alert>>,
    thread: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl Dispatcher {
    pub fn new(sinks: Sinks) -> Dispatcher {
        if sinks.is_empty() {
            return Dispatcher { tx: None, thread: None };
        }
        let (tx, rx) = mpsc::channel::<Alert>();
        let thread = std::thread::Builder::new()
            .name("ccb-alerts".into())
            .spawn(move || {
                let mut problems = Vec::new();
                for a in rx {
                    problems.extend(deliver(&sinks, &a));
                }
                problems
            })
            .ok();
        Dispatcher { tx: Some(tx), thread }
    }

    pub fn send(&self, a: Alert) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(a);
        }
    }

    /// Wait for what was sent (at most `timeout`) and return the problems.
    pub fn finish(mut self, timeout: Duration) -> Vec<String> {
        drop(self.tx.take());
        let Some(t) = self.thread.take() else { return Vec::new() };
        let t0 = Instant::now();
        while !t.is_finished() && t0.elapsed() < timeout {
            std::thread::sleep(Duration::from_millis(5));
        }
        if t.is_finished() {
            t.join().unwrap_or_default()
        } else {
            vec!["alerts still being delivered when ccb exited".into()]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert() -> Alert {
        Alert {
            kind: "session",
            threshold: 50,
            spent: Usd(1_500_000_000),
            limit: Usd(3_000_000_000),
            session_id: Some("s1".into()),
            text: "50% of $3.00".into(),
        }
    }

    #[test]
    fn command_gets_the_facts_in_its_environment_without_a_shell() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out");
        let script = format!("echo \"$CCB_ALERT_KIND $CCB_ALERT_THRESHOLD $CCB_ALERT_SPENT $CCB_ALERT_LIMIT $CCB_ALERT_SESSION_ID $1\" > {}", out.display());
        // The argument `$(touch pwned)` stays a literal argument: no shell parses the argv.
        let sinks = Sinks {
            command: Some(vec!["sh".into(), "-c".into(), script, "arg".into(), "$(touch pwned)".into()]),
            webhook: None,
        };
        assert!(deliver(&sinks, &alert()).is_empty());
        assert_eq!(std::fs::read_to_string(&out).unwrap().trim(), "session 50 1.500000 3.000000 s1 $(touch pwned)");
        let bad = Sinks { command: Some(vec!["false".into()]), webhook: None };
        assert!(deliver(&bad, &alert())[0].contains("failed"));
        let missing = Sinks { command: Some(vec!["/nonexistent/notify".into()]), webhook: None };
        assert!(deliver(&missing, &alert())[0].contains("could not start"));
    }

    #[test]
    fn webhook_errors_never_show_the_url() {
        let secret = "http://127.0.0.1:9/services/T000/B000/SECRETPATH";
        let p = deliver(&Sinks { command: None, webhook: Some(secret.into()) }, &alert());
        assert_eq!(p.len(), 1);
        assert!(!p[0].contains("SECRETPATH") && !p[0].contains("127.0.0.1"), "{}", p[0]);
    }
}
