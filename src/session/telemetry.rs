//! The telemetry feed: a loopback OTLP/HTTP (JSON) logs receiver for Claude Code's
//! `claude_code.api_request` events, which arrive 10–25 ms after each response ends, before
//! claude's next request, in every billing mode (cloud providers included).
//!
//! It answers every export at once, with TCP_NODELAY: claude sends exports one at a time over one
//! keep-alive connection, so a slow answer would delay every later event and claude's exit.
//!
//! Any local user can connect to a loopback port, so the receiver listens on an unguessable
//! path (`/v1/logs/<128-bit token>`), which only claude learns (from its settings file, owner-only,
//! never its command line). Every other request is answered 404, its body unread, and ignored.
//! Claude's own figures are checked too: a cost that is negative, not a number or absurd is
//! dropped, and the call is priced from its token counts instead.

pub use crate::core::otlp::{api_requests, settings_env, user_exports, ApiRequest, MAX_CALL_COST_USD};
use serde_json::Value;
use std::io::{self, Write};
use std::net::{TcpListener, TcpStream};

pub struct Receiver {
    pub port: u16,
    /// The secret part of the endpoint's path.
    token: String,
    listener: Option<TcpListener>,
}

impl Receiver {
    pub fn bind() -> io::Result<Receiver> {
        let token = crate::sys::paths::random_token()?;
        let l = TcpListener::bind("127.0.0.1:0")?;
        Ok(Receiver { port: l.local_addr()?.port(), token, listener: Some(l) })
    }

    /// The endpoint for claude's settings; it holds the token: never print it.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}{}", self.port, logs_path(&self.token))
    }

    pub fn serve(&mut self, on_event: impl Fn(ApiRequest) + Send + Sync + 'static) -> io::Result<()> {
        let listener = self.listener.take().ok_or_else(|| io::Error::other("telemetry receiver already serving"))?;
        // The port, never the endpoint: its path is the token.
        log::debug!("source telemetry: on port {}", self.port);
        let guard = crate::sys::http::Guard::Post(logs_path(&self.token));
        let handler: std::sync::Arc<crate::sys::http::Handler> = std::sync::Arc::new(move |req, w: &mut TcpStream| {
            // Answer first: claude waits for it before its next export.
            w.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")?;
            w.flush()?;
            if let Ok(v) = serde_json::from_slice::<Value>(&req.body) {
                for e in api_requests(&v) {
                    on_event(e);
                }
            }
            Ok(())
        });
        crate::sys::http::serve(
            listener,
            "ccb-telemetry",
            guard,
            crate::sys::http::Limits::TELEMETRY,
            crate::sys::http::Style::Empty,
            handler,
        )
    }
}

fn logs_path(token: &str) -> String {
    format!("/v1/logs/{token}")
}
