//! Reading a request's body within its bounds: how it is framed (a length, chunked, or
//! refused when ambiguous or announced too large), and a connection's read-ahead buffer with a
//! deadline on every read.

use std::io::{self, Read};
use std::net::TcpStream;
use std::time::Instant;

/// Why a request is not served.
#[derive(Debug)]
pub(super) enum Refuse {
    /// Close without a word (the client went away or stalled).
    Close,
    /// Answer with this status, error type and message, then close.
    Answer(u16, &'static str, &'static str),
}

pub(super) enum Framing {
    None,
    Length(usize),
    Chunked,
}

/// How the body is delimited, refused when it is ambiguous or announced too large.
pub(super) fn framing(headers: &[(String, String)], max_body: usize) -> Result<Framing, Refuse> {
    let bad = |m| Err(Refuse::Answer(400, "invalid_request_error", m));
    let too_large = || {
        Err(Refuse::Answer(
            413,
            "request_too_large",
            "request body too large: ccb's gate takes at most what Anthropic's API does",
        ))
    };
    let te: Vec<&str> =
        headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("transfer-encoding")).map(|(_, v)| v.as_str()).collect();
    let cl: Vec<&str> =
        headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("content-length")).map(|(_, v)| v.as_str()).collect();
    if !te.is_empty() {
        if !cl.is_empty() {
            return bad("both content-length and transfer-encoding");
        }
        let last = te.iter().flat_map(|v| v.split(',')).map(str::trim).rfind(|t| !t.is_empty());
        return match last {
            Some(t) if t.eq_ignore_ascii_case("chunked") => Ok(Framing::Chunked),
            _ => bad("a request body must be chunked or have a length"),
        };
    }
    let mut len = None;
    for v in cl.iter().flat_map(|v| v.split(',')).map(str::trim) {
        if v.is_empty() || v.len() > 19 || !v.bytes().all(|b| b.is_ascii_digit()) {
            return bad("content-length is not a number");
        }
        let n: u64 = v.parse().unwrap_or(u64::MAX);
        if len.is_some_and(|l| l != n) {
            return bad("two different content-lengths");
        }
        len = Some(n);
    }
    match len {
        None | Some(0) => Ok(Framing::None),
        Some(n) if n > max_body as u64 => too_large(),
        Some(n) => Ok(Framing::Length(n as usize)),
    }
}

/// A connection with what was read ahead of the current request.
pub(super) struct Conn {
    pub(super) stream: TcpStream,
    pub(super) buf: Vec<u8>,
    pub(super) deadline: Option<Instant>,
}

impl Conn {
    /// Read more into the buffer, up to 64 KiB at a time, before the deadline.
    pub(super) fn fill(&mut self) -> io::Result<usize> {
        self.fill_upto(self.buf.len() + 64 * 1024)
    }

    pub(super) fn fill_upto(&mut self, cap: usize) -> io::Result<usize> {
        let room = cap.saturating_sub(self.buf.len()).clamp(1, 64 * 1024);
        let wait = match self.deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                Some(left)
            }
            None => None,
        };
        self.stream.set_read_timeout(wait)?;
        let mut tmp = [0u8; 16 * 1024];
        let room = room.min(tmp.len());
        loop {
            match self.stream.read(&mut tmp[..room]) {
                Ok(n) => {
                    self.buf.extend_from_slice(&tmp[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The next `n` bytes (`n` already checked against the body limit). The buffer grows with
    /// what arrives, not with what the head announced.
    pub(super) fn take(&mut self, n: usize) -> Result<Vec<u8>, Refuse> {
        while self.buf.len() < n {
            match self.fill_upto(n) {
                Ok(0) | Err(_) => return Err(Refuse::Close),
                Ok(_) => {}
            }
        }
        let rest = self.buf.split_off(n);
        Ok(std::mem::replace(&mut self.buf, rest))
    }

    /// One line (without its CRLF) of at most `max` bytes.
    fn line(&mut self, max: usize) -> Result<Vec<u8>, Refuse> {
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.buf) {
                let mut l: Vec<u8> = self.buf.drain(..=i).collect();
                l.pop();
                if l.last() == Some(&b'\r') {
                    l.pop();
                }
                return Ok(l);
            }
            if self.buf.len() > max {
                return Err(Refuse::Answer(400, "invalid_request_error", "malformed chunked body"));
            }
            match self.fill_upto(max + 2) {
                Ok(0) | Err(_) => return Err(Refuse::Close),
                Ok(_) => {}
            }
        }
    }

    /// A chunked body, at most `max_body` bytes, trailers at most `max_trailers`.
    pub(super) fn chunked(&mut self, max_body: usize, max_trailers: usize) -> Result<Vec<u8>, Refuse> {
        let bad = || Refuse::Answer(400, "invalid_request_error", "malformed chunked body");
        let mut body = Vec::new();
        loop {
            let line = self.line(1024)?;
            let size = line.split(|b| *b == b';').next().unwrap_or(&[]).trim_ascii();
            if size.is_empty() || size.len() > 15 || !size.iter().all(u8::is_ascii_hexdigit) {
                return Err(bad());
            }
            let n = usize::from_str_radix(std::str::from_utf8(size).map_err(|_| bad())?, 16).map_err(|_| bad())?;
            if n == 0 {
                let mut trailers = 0usize;
                loop {
                    let t = self.line(max_trailers)?;
                    trailers += t.len() + 2;
                    if t.is_empty() {
                        return Ok(body);
                    }
                    if trailers > max_trailers {
                        return Err(Refuse::Answer(431, "invalid_request_error", "request trailers too large"));
                    }
                }
            }
            if n > max_body - body.len() {
                return Err(Refuse::Answer(
                    413,
                    "request_too_large",
                    "request body too large: ccb's gate takes at most what Anthropic's API does",
                ));
            }
            body.extend_from_slice(&self.take(n)?);
            if !self.line(2)?.is_empty() {
                return Err(bad());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_framed_once_and_bounded() {
        let h = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
        let ok = |f: Result<Framing, Refuse>| match f {
            Ok(Framing::None) => "none".to_string(),
            Ok(Framing::Length(n)) => format!("len {n}"),
            Ok(Framing::Chunked) => "chunked".into(),
            Err(Refuse::Answer(s, _, _)) => format!("{s}"),
            Err(Refuse::Close) => "close".into(),
        };
        assert_eq!(ok(framing(&h(&[]), 100)), "none");
        assert_eq!(ok(framing(&h(&[("Content-Length", "42")]), 100)), "len 42");
        assert_eq!(ok(framing(&h(&[("content-length", "101")]), 100)), "413");
        assert_eq!(ok(framing(&h(&[("content-length", "1152921504606846976")]), 100)), "413");
        assert_eq!(ok(framing(&h(&[("content-length", "99999999999999999999999")]), 100)), "400");
        assert_eq!(ok(framing(&h(&[("content-length", "-1")]), 100)), "400");
        assert_eq!(ok(framing(&h(&[("content-length", "5"), ("content-length", "6")]), 100)), "400");
        assert_eq!(ok(framing(&h(&[("content-length", "5, 5")]), 100)), "len 5");
        assert_eq!(ok(framing(&h(&[("transfer-encoding", "gzip, chunked")]), 100)), "chunked");
        assert_eq!(ok(framing(&h(&[("transfer-encoding", "chunked, gzip")]), 100)), "400");
        assert_eq!(ok(framing(&h(&[("transfer-encoding", "chunked"), ("content-length", "3")]), 100)), "400");
    }
}
