//! Refusing a session in the Agent SDK's own protocol (stream-json), so the SDK shows ccb's
//! reason rather than a broken pipe.

use crate::core::args::{self, ClaudeFlags};
use serde_json::json;
use std::ffi::OsString;

/// A refusal before launch, told to an Agent SDK in its own protocol. The SDKs start claude
/// with `--input-format stream-json` and first send an `initialize` control request, then wait
/// for its answer: a refusal that only went to stderr (which the TypeScript SDK swallows) and an
/// exit before that write (a broken pipe for the SDK) would reach the user as noise. So the
/// request is read (at most 10 s), answered with an error carrying ccb's one line, and an error
/// result follows, as claude gives one for a refused resume. Not a stream-json session: nothing.
pub(super) fn refuse_in_protocol(argv: &[OsString], message: &str) {
    let Ok(inv) = args::split(argv) else { return };
    let flags = ClaudeFlags::parse(&inv.claude_args);
    if !flags.stream_json_input() {
        return;
    }
    let text = format!("ccb: {message}");
    let request_id = read_initialize(std::time::Duration::from_secs(10));
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if let Some(id) = request_id {
        let answer =
            json!({"type": "control_response", "response": {"subtype": "error", "request_id": id, "error": text}});
        let _ = writeln!(out, "{answer}");
    }
    let result = json!({
        "type": "result", "subtype": "error_during_execution", "is_error": true, "result": text,
        "errors": [text], "duration_ms": 0, "duration_api_ms": 0, "num_turns": 0, "total_cost_usd": 0.0,
        "session_id": flags.session_id.or(flags.resume_id).unwrap_or_default(),
    });
    let _ = writeln!(out, "{result}");
    let _ = out.flush();
}

/// Read stdin until the SDK's `initialize` control request (its id), end of input, or `wait`.
fn read_initialize(wait: std::time::Duration) -> Option<String> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::BorrowedFd;
    let deadline = std::time::Instant::now() + wait;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&line) {
                if v["type"] == "control_request" && v["request"]["subtype"] == "initialize" {
                    return v["request_id"].as_str().map(str::to_string);
                }
            }
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || buf.len() > 16 << 20 {
            return None;
        }
        // SAFETY: fd 0 stays open for the life of the process.
        let stdin = unsafe { BorrowedFd::borrow_raw(libc::STDIN_FILENO) };
        let mut fds = [PollFd::new(stdin, PollFlags::POLLIN)];
        let ms = PollTimeout::try_from(left.as_millis().min(10_000) as i32).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, ms) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return None,
        }
        match nix::unistd::read(libc::STDIN_FILENO, &mut chunk) {
            Ok(0) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return None,
        }
    }
}
