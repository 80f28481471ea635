//! Which endpoint a request reaches upstream, whatever the spelling of its path: the gate meters
//! every spelling of a model call and refuses the endpoints whose spend it cannot follow.

/// What a request reaches upstream, whatever the spelling of its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/messages`: a model call when POSTed.
    Messages,
    /// `/v1/messages/count_tokens`: free.
    CountTokens,
    /// Spend the gate cannot meter as it happens (message batches, the legacy completions
    /// API): refused when POSTed, so that no call of the session escapes its ceiling.
    Unmetered(&'static str),
    Other,
}

/// The endpoint a request target reaches, and the target to forward: paths that reach a
/// messages endpoint upstream are forwarded in their plain spelling (`/v1//messages/`,
/// `/v1/./messages`, `/v1/%6Dessages` and `/V1/Messages` all become `/v1/messages`, query
/// kept), so that what is metered is what is sent; other targets go as they came.
pub fn endpoint(target: &str) -> (Endpoint, Option<String>) {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let decoded = percent_decode(path);
    let mut segs: Vec<&str> = Vec::new();
    for s in decoded.split('/') {
        match s {
            "" | "." => {}
            ".." => {
                segs.pop();
            }
            s => segs.push(s),
        }
    }
    let lower: Vec<String> = segs.iter().map(|s| s.to_ascii_lowercase()).collect();
    let ends = |tail: &[&str]| lower.len() >= tail.len() && lower[lower.len() - tail.len()..].iter().eq(tail.iter());
    let has = |win: &[&str]| lower.windows(win.len()).any(|w| w.iter().eq(win.iter()));
    let plain = |tail: &[&str]| {
        let mut p = String::new();
        for s in segs[..segs.len() - tail.len()].iter().chain(tail.iter()) {
            p.push('/');
            p.push_str(s);
        }
        if let Some(q) = query {
            p.push('?');
            p.push_str(q);
        }
        p
    };
    if ends(&["v1", "messages"]) {
        (Endpoint::Messages, Some(plain(&["v1", "messages"])))
    } else if ends(&["v1", "messages", "count_tokens"]) {
        (Endpoint::CountTokens, Some(plain(&["v1", "messages", "count_tokens"])))
    } else if has(&["v1", "messages", "batches"]) {
        (Endpoint::Unmetered("message batches"), None)
    } else if ends(&["v1", "complete"]) {
        (Endpoint::Unmetered("the legacy completions API"), None)
    } else {
        (Endpoint::Other, None)
    }
}

/// `%XX` escapes decoded (for reading a path, not for forwarding it); bytes that are not
/// UTF-8 afterwards are replaced.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = ((b[i + 1] as char).to_digit(16), (b[i + 2] as char).to_digit(16)) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_a_messages_path_is_a_model_call() {
        for t in [
            "/v1/messages",
            "/v1/messages?beta=true",
            "/v1/messages/",
            "/v1//messages",
            "//v1/messages",
            "/v1/./messages",
            "/x/../v1/messages",
            "/v1/%6Dessages",
            "/v1%2Fmessages",
            "/V1/Messages",
            "/anthropic/v1/messages",
        ] {
            let (ep, plain) = endpoint(t);
            assert_eq!(ep, Endpoint::Messages, "{t}");
            let plain = plain.unwrap();
            assert!(plain.ends_with("/v1/messages") || plain.ends_with("/v1/messages?beta=true"), "{t} -> {plain}");
        }
        assert_eq!(endpoint("/v1/messages?beta=true").1.as_deref(), Some("/v1/messages?beta=true"));
        assert_eq!(endpoint("/v1//messages/").1.as_deref(), Some("/v1/messages"));
        assert_eq!(endpoint("/anthropic//v1/messages").1.as_deref(), Some("/anthropic/v1/messages"));
        assert_eq!(endpoint("/v1/messages/count_tokens?beta=true").0, Endpoint::CountTokens);
        for t in
            ["/v1/messages/batches", "/v1/messages/batches/msgbatch_1/cancel", "/v1//messages/batches/", "/v1/complete"]
        {
            assert!(matches!(endpoint(t).0, Endpoint::Unmetered(_)), "{t}");
        }
        for t in ["/api/claude_code/settings", "/v1/models", "/v1/messagesX", "/", "", "/%", "/%zz/v1"] {
            assert_eq!(endpoint(t), (Endpoint::Other, None), "{t}");
        }
    }
}
