//! The team ledger's settings, pure: the PostgreSQL URL (parsed, checked, shown without its
//! password), the `~/.pgpass` rules, and what a session does when the server cannot be reached.
//!
//! The URL's grammar is libpq's URI form (`postgresql://[user[:password]@][host][:port][/dbname]
//! [?param=value&…]`), the subset a team ledger needs: one host, TCP or a Unix socket directory
//! (`host=/run/postgresql` as a parameter), and the TLS modes listed in [`SslMode`].

use std::fmt;

/// How the connection is encrypted and checked, as libpq's `sslmode` (`allow` is not offered:
/// it tries plain text first, which a ledger of who spent what should not do quietly).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// Plain text.
    Disable,
    /// TLS when the server offers it, without checking its certificate; plain text otherwise
    /// (libpq's default).
    #[default]
    Prefer,
    /// TLS always, without checking the certificate (libpq's meaning when no root certificate
    /// is given).
    Require,
    /// TLS, the certificate checked against the roots (`sslrootcert`, else the web's roots);
    /// any host name.
    VerifyCa,
    /// TLS, the certificate checked and the host named in it.
    VerifyFull,
}

impl SslMode {
    pub const NAMES: &'static str = "disable, prefer, require, verify-ca, verify-full";
    pub fn parse(s: &str) -> Option<SslMode> {
        Some(match s {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// A team ledger's address. The password is a secret: [`fmt::Display`] and [`fmt::Debug`] show
/// that one is set, never its value.
#[derive(Clone, PartialEq, Eq)]
pub struct LedgerUrl {
    pub user: Option<String>,
    password: Option<String>,
    /// A host name, an IP address, or a directory holding the server's Unix socket.
    pub host: Option<String>,
    pub port: Option<u16>,
    pub dbname: Option<String>,
    pub sslmode: SslMode,
    /// A file of root certificates (PEM) for `verify-ca` / `verify-full`.
    pub sslrootcert: Option<String>,
    /// Seconds to wait for a connection (`connect_timeout`); None: ccb's own bound.
    pub connect_timeout: Option<u32>,
    pub application_name: Option<String>,
}

impl LedgerUrl {
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }
    pub fn with_password(mut self, p: Option<String>) -> Self {
        self.password = p;
        self
    }
    /// The host as libpq names it for `.pgpass` matching: `localhost` for a socket directory or
    /// no host.
    pub fn pgpass_host(&self) -> &str {
        match self.host.as_deref() {
            None => "localhost",
            Some(h) if h.starts_with('/') => "localhost",
            Some(h) => h,
        }
    }
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(5432)
    }
}

impl fmt::Display for LedgerUrl {
    /// `postgresql://user:…@host:port/db?sslmode=…`: the password is `…` when set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("postgresql://")?;
        if let Some(u) = &self.user {
            f.write_str(&encode(u))?;
            if self.password.is_some() {
                f.write_str(":…")?;
            }
            f.write_str("@")?;
        } else if self.password.is_some() {
            f.write_str(":…@")?;
        }
        let socket = self.host.as_deref().is_some_and(|h| h.starts_with('/'));
        if let Some(h) = self.host.as_deref().filter(|_| !socket) {
            if h.contains(':') {
                write!(f, "[{h}]")?;
            } else {
                f.write_str(h)?;
            }
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        if let Some(d) = &self.dbname {
            write!(f, "/{}", encode(d))?;
        }
        let mut params = Vec::new();
        if socket {
            params.push(format!("host={}", encode(self.host.as_deref().unwrap_or(""))));
        }
        if self.sslmode != SslMode::Prefer {
            params.push(format!("sslmode={}", self.sslmode.as_str()));
        }
        if let Some(r) = &self.sslrootcert {
            params.push(format!("sslrootcert={}", encode(r)));
        }
        if let Some(t) = self.connect_timeout {
            params.push(format!("connect_timeout={t}"));
        }
        if !params.is_empty() {
            write!(f, "?{}", params.join("&"))?;
        }
        Ok(())
    }
}

impl fmt::Debug for LedgerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LedgerUrl({self})")
    }
}

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or("a '%' not followed by two hex digits")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| "a '%' not followed by two hex digits")?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "percent-encoded bytes that are not UTF-8".to_string())
}

/// Parse a team ledger URL. The error says what is wrong in words a user can act on, and never
/// repeats the URL (it may hold a password).
pub fn parse_url(s: &str) -> Result<LedgerUrl, String> {
    let rest = s
        .strip_prefix("postgresql://")
        .or_else(|| s.strip_prefix("postgres://"))
        .ok_or("it must start with postgresql:// (e.g. postgresql://ccb@db.example.com/ccb)")?;
    let (main, query) = match rest.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (rest, None),
    };
    if main.contains('#') || query.is_some_and(|q| q.contains('#')) {
        return Err("a '#' has no meaning in a ledger URL: percent-encode it (%23)".into());
    }
    let (authority, path) = match main.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (main, None),
    };
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let mut url = LedgerUrl {
        user: None,
        password: None,
        host: None,
        port: None,
        dbname: None,
        sslmode: SslMode::Prefer,
        sslrootcert: None,
        connect_timeout: None,
        application_name: None,
    };
    if let Some(ui) = userinfo {
        let (u, p) = match ui.split_once(':') {
            Some((u, p)) => (u, Some(p)),
            None => (ui, None),
        };
        if !u.is_empty() {
            url.user = Some(decode(u).map_err(|e| format!("the user name has {e}"))?);
        }
        if let Some(p) = p {
            url.password = Some(decode(p).map_err(|e| format!("the password has {e}"))?);
        }
    }
    if hostport.contains(',') {
        return Err("several hosts are not supported: name one host".into());
    }
    let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
        let (h, after) = h.split_once(']').ok_or("an IPv6 address must be closed with ']'")?;
        (h.to_string(), after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (decode(h).map_err(|e| format!("the host has {e}"))?, Some(p)),
            None => (decode(hostport).map_err(|e| format!("the host has {e}"))?, None),
        }
    };
    if !host.is_empty() {
        url.host = Some(host);
    }
    if let Some(p) = port {
        url.port = Some(port_number(p)?);
    }
    if let Some(p) = path.filter(|p| !p.is_empty()) {
        url.dbname = Some(decode(p).map_err(|e| format!("the database name has {e}"))?);
    }
    for kv in query.unwrap_or("").split('&').filter(|kv| !kv.is_empty()) {
        let (k, v) =
            kv.split_once('=').ok_or_else(|| format!("parameter '{}' has no value (use name=value)", excerpt(kv)))?;
        let v = decode(v).map_err(|e| format!("parameter {k} has {e}"))?;
        match k {
            "sslmode" => {
                url.sslmode = SslMode::parse(&v).ok_or_else(|| {
                    format!("sslmode '{}' is not supported: use one of {}", excerpt(&v), SslMode::NAMES)
                })?
            }
            "sslrootcert" => url.sslrootcert = Some(v),
            "host" => url.host = Some(v),
            "port" => url.port = Some(port_number(&v)?),
            "dbname" => url.dbname = Some(v),
            "user" => url.user = Some(v),
            "password" => url.password = Some(v),
            "application_name" => url.application_name = Some(v),
            "connect_timeout" => {
                url.connect_timeout = Some(
                    v.parse::<u32>()
                        .ok()
                        .filter(|t| (1..=3600).contains(t))
                        .ok_or_else(|| format!("connect_timeout '{}' must be whole seconds from 1 to 3600", excerpt(&v)))?,
                )
            }
            other => {
                return Err(format!(
                    "parameter '{}' is not supported (supported: sslmode, sslrootcert, host, port, dbname, user, password, application_name, connect_timeout)",
                    excerpt(other)
                ))
            }
        }
    }
    if url.sslrootcert.is_some() && matches!(url.sslmode, SslMode::Disable) {
        return Err("sslrootcert is given with sslmode=disable: drop one of them".into());
    }
    if url.host.as_deref().is_some_and(|h| h.starts_with('/'))
        && matches!(url.sslmode, SslMode::VerifyCa | SslMode::VerifyFull)
    {
        return Err("a Unix socket connection has no TLS: use sslmode=disable or prefer with host=/dir".into());
    }
    Ok(url)
}

fn port_number(p: &str) -> Result<u16, String> {
    p.parse::<u16>()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("port '{}' must be a number from 1 to 65535", excerpt(p)))
}

fn excerpt(s: &str) -> String {
    crate::core::human::excerpt(s, 40)
}

/// The password for `url` in a `.pgpass` file's text (libpq's rules: `host:port:db:user:pass`,
/// `*` matches anything, `\:` and `\\` are escapes, the first matching line wins). `user` and
/// `db` are the ones the connection will use.
pub fn pgpass_lookup(text: &str, host: &str, port: u16, db: &str, user: &str) -> Option<String> {
    let port = port.to_string();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields = split_pgpass(line);
        if fields.len() < 5 {
            continue;
        }
        let want = [host, port.as_str(), db, user];
        if fields[..4].iter().zip(want).all(|(f, w)| f == "*" || f == w) {
            return Some(fields[4..].join(":"));
        }
    }
    None
}

fn split_pgpass(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    out.last_mut().unwrap_or(&mut String::new()).push(n);
                }
            }
            ':' if out.len() < 5 => out.push(String::new()),
            c => {
                if let Some(l) = out.last_mut() {
                    l.push(c)
                }
            }
        }
    }
    out
}

/// What a session does when the team ledger cannot answer within the admission bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Offline {
    /// Enforce team limits with what this machine knows (its own ledger).
    #[default]
    Local,
    /// Refuse calls that a team limit covers.
    Refuse,
}

impl Offline {
    pub fn as_str(self) -> &'static str {
        match self {
            Offline::Local => "local",
            Offline::Refuse => "refuse",
        }
    }
}

/// The project a session's working directory names: its last component. Only this leaves the
/// machine, never the path.
pub fn project_name(cwd: &str) -> String {
    let t = cwd.trim_end_matches('/');
    match t.rsplit_once('/') {
        Some((_, last)) if !last.is_empty() => last.to_string(),
        _ if t.is_empty() => "/".into(),
        _ => t.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_show_without_their_password() {
        let u = parse_url("postgresql://ada:s3cr%40t@db.example.com:6543/ccb?sslmode=verify-full").unwrap();
        assert_eq!(u.user.as_deref(), Some("ada"));
        assert_eq!(u.password(), Some("s3cr@t"));
        assert_eq!(u.host.as_deref(), Some("db.example.com"));
        assert_eq!(u.port, Some(6543));
        assert_eq!(u.dbname.as_deref(), Some("ccb"));
        assert_eq!(u.sslmode, SslMode::VerifyFull);
        let shown = u.to_string();
        assert_eq!(shown, "postgresql://ada:…@db.example.com:6543/ccb?sslmode=verify-full");
        assert!(!format!("{u:?}").contains("s3cr"));

        let u = parse_url("postgres://[::1]:5432/team").unwrap();
        assert_eq!((u.host.as_deref(), u.port, u.user.as_deref()), (Some("::1"), Some(5432), None));
        assert_eq!(u.to_string(), "postgresql://[::1]:5432/team");

        let u = parse_url("postgresql:///ccb?host=/run/postgresql&user=bob&password=pw").unwrap();
        assert_eq!(
            (u.host.as_deref(), u.user.as_deref(), u.password()),
            (Some("/run/postgresql"), Some("bob"), Some("pw"))
        );
        assert_eq!(u.to_string(), "postgresql://bob:…@/ccb?host=/run/postgresql");
        assert_eq!(u.pgpass_host(), "localhost");
    }

    #[test]
    fn bad_urls_say_what_is_wrong_without_the_password() {
        for (s, want) in [
            ("mysql://x@y/z", "must start with postgresql://"),
            ("postgresql://u:hunter2@h:99999/d", "port '99999'"),
            ("postgresql://u:hunter2@h/d?sslmode=allow", "sslmode 'allow' is not supported"),
            ("postgresql://u:hunter2@h/d?sslmode=verify", "disable, prefer, require, verify-ca, verify-full"),
            ("postgresql://u:hunter2@h/d?pool=3", "parameter 'pool' is not supported"),
            ("postgresql://u:hunter2@a,b/d", "several hosts"),
            ("postgresql://u:hunter2%zz@h/d", "the password has"),
            ("postgresql://u:hunter2@h/d?connect_timeout=0", "connect_timeout"),
            ("postgresql://u:hunter2@h/d?sslmode", "has no value"),
        ] {
            let e = parse_url(s).unwrap_err();
            assert!(e.contains(want), "{s}: {e}");
            assert!(!e.contains("hunter2"), "{s}: {e}");
        }
    }

    #[test]
    fn pgpass_follows_libpqs_rules() {
        let text = "# comment\nother:5432:*:ada:nope\ndb.example.com:5432:ccb:ada:pa\\:ss:word\n*:*:*:*:fallback\n";
        assert_eq!(pgpass_lookup(text, "db.example.com", 5432, "ccb", "ada").as_deref(), Some("pa:ss:word"));
        assert_eq!(pgpass_lookup(text, "db.example.com", 5433, "ccb", "ada").as_deref(), Some("fallback"));
        assert_eq!(pgpass_lookup("h:1:d:u\n", "h", 1, "d", "u"), None);
    }

    #[test]
    fn the_project_is_the_last_component() {
        assert_eq!(project_name("/home/ada/src/shop"), "shop");
        assert_eq!(project_name("/home/ada/src/shop/"), "shop");
        assert_eq!(project_name("/"), "/");
        assert_eq!(project_name("rel"), "rel");
    }
}
