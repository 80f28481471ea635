//! The gate's client to the real API: the proxy it goes through (as claude would) and the TLS
//! roots it trusts (the ones claude trusts), with one difference from ureq's own TLS: a TCP end
//! without `close_notify` is judged by the HTTP framing, as claude judges it.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

/// The proxy for a host, from `HTTPS_PROXY`/`HTTP_PROXY` (and lower-case forms), unless
/// `NO_PROXY` names the host (exact, a domain suffix, or `*`).
pub fn proxy_for(host: &str, https: bool, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let get = |k: &str| env(k).or_else(|| env(&k.to_ascii_lowercase())).filter(|v| !v.trim().is_empty());
    let proxy = if https {
        get("HTTPS_PROXY").or_else(|| get("ALL_PROXY"))
    } else {
        get("HTTP_PROXY").or_else(|| get("ALL_PROXY"))
    }?;
    if let Some(no) = get("NO_PROXY") {
        let host = host.to_ascii_lowercase();
        for entry in no.split(',').map(|e| e.trim().to_ascii_lowercase()) {
            let entry = entry.split(':').next().unwrap_or("").trim_start_matches('.').to_string();
            if entry == "*" || (!entry.is_empty() && (host == entry || host.ends_with(&format!(".{entry}")))) {
                return None;
            }
        }
    }
    Some(proxy)
}

/// Where Linux distributions keep the system's CA bundle (what OpenSSL, Go and Claude Code's
/// runtime read): Debian, Ubuntu, Arch, Gentoo; Fedora and RHEL; openSUSE; OpenELEC; CentOS and
/// RHEL 7+; Alpine. The first that exists is the system store; a CA that an administrator
/// installs system-wide (`update-ca-certificates`, `update-ca-trust`) lands in it.
pub const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/tls/cacert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// Which stores claude trusts, from `CLAUDE_CODE_CERT_STORE` as Claude Code reads it (a
/// comma-separated list of `bundled` and `system`; unknown words ignored; both when unset or
/// when nothing is left): (bundled, system).
pub fn cert_stores(value: Option<&str>) -> (bool, bool) {
    let mut stores = (false, false);
    for w in value.unwrap_or("").split(',').map(|w| w.trim().to_ascii_lowercase()) {
        match w.as_str() {
            "bundled" => stores.0 = true,
            "system" => stores.1 = true,
            _ => {}
        }
    }
    if stores == (false, false) {
        (true, true)
    } else {
        stores
    }
}

/// TLS roots, the ones claude trusts: the bundled web PKI roots, the system's CA bundle (the
/// first of [`SYSTEM_BUNDLES`]), as `CLAUDE_CODE_CERT_STORE` selects, plus the PEM files named by
/// `SSL_CERT_FILE` and `NODE_EXTRA_CA_CERTS` (what a corporate proxy's CA is usually given to
/// claude with).
pub fn tls_config(env: &dyn Fn(&str) -> Option<String>) -> (Arc<rustls::ClientConfig>, Vec<String>) {
    let bundles: Vec<&std::path::Path> = SYSTEM_BUNDLES.iter().map(std::path::Path::new).collect();
    let (roots, problems) = root_store(env, &bundles);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(cfg), problems)
}

/// The roots of [`tls_config`], with the system bundle looked for in `system_bundles`.
pub fn root_store(
    env: &dyn Fn(&str) -> Option<String>,
    system_bundles: &[&std::path::Path],
) -> (rustls::RootCertStore, Vec<String>) {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let (bundled, system) = cert_stores(env("CLAUDE_CODE_CERT_STORE").as_deref());
    if bundled {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    if system {
        // A system bundle holds a few certificates rustls cannot use (old or odd encodings):
        // skipped, as every TLS stack does.
        if let Some(certs) = system_bundles
            .iter()
            .find(|p| p.is_file())
            .and_then(|p| rustls_pki_types::CertificateDer::pem_file_iter(p).ok())
        {
            roots.add_parsable_certificates(certs.flatten());
        }
    }
    let mut problems = Vec::new();
    for var in ["SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS"] {
        let Some(path) = env(var).filter(|p| !p.is_empty()) else { continue };
        match rustls_pki_types::CertificateDer::pem_file_iter(&path) {
            Ok(certs) => {
                for c in certs.flatten() {
                    if roots.add(c).is_err() {
                        problems.push(format!("{var}: a certificate in {path} is not usable"));
                    }
                }
            }
            Err(_) => problems.push(format!("{var}: cannot read certificates from {path}")),
        }
    }
    (roots, problems)
}

/// TLS to the upstream, through rustls, with one difference from ureq's own: a TCP end without
/// TLS `close_notify` reads as `ConnectionAborted`, not `UnexpectedEof`.
///
/// Many servers and load balancers end TLS that way once a response is complete. What counts is
/// the HTTP framing, and ureq judges it: a length-delimited body ends at its length, and a
/// close-delimited body cut this way is still an error (no framing says it is whole). But ureq's
/// chunked decoder takes only a reset or an aborted connection, not `UnexpectedEof`, as the end
/// after the last chunk (`0\r\n`) when the final empty line does not come: the gate withheld
/// the end of a response that claude, talking to the upstream itself, takes as whole, and claude
/// retried a call already paid for.
pub(super) struct Tls(pub(super) Arc<rustls::ClientConfig>);

impl ureq::TlsConnector for Tls {
    fn connect(&self, dns_name: &str, io: Box<dyn ureq::ReadWrite>) -> Result<Box<dyn ureq::ReadWrite>, ureq::Error> {
        let inner = ureq::TlsConnector::connect(&self.0, dns_name, io)?;
        Ok(Box::new(UncleanEnd(inner)))
    }
}

#[derive(Debug)]
struct UncleanEnd(Box<dyn ureq::ReadWrite>);

impl Read for UncleanEnd {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).map_err(unclean_end)
    }
}

/// rustls's `UnexpectedEof` (the peer closed TCP without `close_notify`) as `ConnectionAborted`.
fn unclean_end(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        io::Error::new(io::ErrorKind::ConnectionAborted, "the upstream closed the connection without TLS close_notify")
    } else {
        e
    }
}

impl Write for UncleanEnd {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl ureq::ReadWrite for UncleanEnd {
    fn socket(&self) -> Option<&TcpStream> {
        self.0.socket()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn proxies_and_no_proxy() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        let e = env(&[("HTTPS_PROXY", "http://proxy:3128")]);
        assert_eq!(proxy_for("api.anthropic.com", true, &e).as_deref(), Some("http://proxy:3128"));
        assert_eq!(proxy_for("api.anthropic.com", false, &e), None, "HTTPS_PROXY is for https");
        let e = env(&[("https_proxy", "http://p:1"), ("no_proxy", "localhost,.anthropic.com")]);
        assert_eq!(proxy_for("api.anthropic.com", true, &e), None);
        assert_eq!(proxy_for("example.com", true, &e).as_deref(), Some("http://p:1"));
        let e = env(&[("HTTPS_PROXY", "http://p:1"), ("NO_PROXY", "*")]);
        assert_eq!(proxy_for("x", true, &e), None);
    }

    #[test]
    fn cert_stores_as_claude_reads_them() {
        for (v, want) in [
            (None, (true, true)),
            (Some(""), (true, true)),
            (Some("bundled"), (true, false)),
            (Some(" System "), (false, true)),
            (Some("system,bundled"), (true, true)),
            (Some("nonsense"), (true, true)),
            (Some("nonsense,system"), (false, true)),
        ] {
            assert_eq!(cert_stores(v), want, "{v:?}");
        }
    }

    /// A throwaway CA and a certificate it signed for `localhost`.
    fn test_ca() -> (rcgen::Certificate, rcgen::Certificate, rcgen::KeyPair) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "ccb unit-test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &ca, &ca_key)
            .unwrap();
        (ca, leaf, leaf_key)
    }

    #[test]
    fn the_system_bundle_is_trusted_as_claude_selects() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, _, _) = test_ca();
        let bundle = dir.path().join("ca-certificates.crt");
        // A system bundle may hold a certificate rustls cannot use: skipped, the rest kept.
        std::fs::write(&bundle, format!("{}-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", ca.pem()))
            .unwrap();
        let missing = dir.path().join("missing.pem");
        let bundles = [missing.as_path(), bundle.as_path()];
        let web = webpki_roots::TLS_SERVER_ROOTS.len();
        let roots = |store: Option<&str>, bundles: &[&std::path::Path]| {
            let store = store.map(String::from);
            let env = move |k: &str| if k == "CLAUDE_CODE_CERT_STORE" { store.clone() } else { None };
            let (r, problems) = root_store(&env, bundles);
            assert!(problems.is_empty(), "{problems:?}");
            r.len()
        };
        assert_eq!(roots(None, &bundles), web + 1, "the first bundle that exists");
        assert_eq!(roots(None, &[missing.as_path()]), web, "no system bundle: the web PKI roots");
        assert_eq!(roots(Some("bundled"), &bundles), web);
        assert_eq!(roots(Some("system"), &bundles), 1);
        // SSL_CERT_FILE and NODE_EXTRA_CA_CERTS still count, and a bad one is said.
        let extra = dir.path().join("extra.pem");
        std::fs::write(&extra, test_ca().0.pem()).unwrap();
        let (extra_s, missing_s) = (extra.display().to_string(), missing.display().to_string());
        let env = move |k: &str| match k {
            "SSL_CERT_FILE" => Some(extra_s.clone()),
            "NODE_EXTRA_CA_CERTS" => Some(missing_s.clone()),
            _ => None,
        };
        let (r, problems) = root_store(&env, &bundles);
        assert_eq!(r.len(), web + 2);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("NODE_EXTRA_CA_CERTS: cannot read certificates from"), "{problems:?}");
    }

    /// An HTTPS server for one request: it answers with `response` and closes TCP without TLS
    /// `close_notify`. The port, and the CA that signed its certificate.
    fn unclean_server(response: &'static [u8]) -> (u16, rustls::RootCertStore) {
        let (ca, leaf, leaf_key) = test_ca();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(
                    vec![leaf.der().clone()],
                    rustls_pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
                )
                .unwrap(),
        );
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (tcp, _) = l.accept().unwrap();
            let mut tls = rustls::StreamOwned::new(rustls::ServerConnection::new(cfg).unwrap(), tcp);
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && tls.read(&mut b).unwrap_or(0) == 1 {
                head.push(b[0]);
            }
            tls.write_all(response).unwrap();
            tls.flush().unwrap();
            // No send_close_notify: TCP just ends.
            let _ = tls.sock.shutdown(std::net::Shutdown::Both);
        });
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        (port, roots)
    }

    fn fetch(response: &'static [u8], ours: bool) -> io::Result<Vec<u8>> {
        let (port, roots) = unclean_server(response);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        );
        let b = ureq::AgentBuilder::new();
        let agent = if ours { b.tls_connector(Arc::new(Tls(cfg))) } else { b.tls_config(cfg) }.build();
        let resp = agent.get(&format!("https://localhost:{port}/")).call().map_err(io::Error::other)?;
        let mut body = Vec::new();
        resp.into_reader().read_to_end(&mut body)?;
        Ok(body)
    }

    #[test]
    fn a_framed_response_is_whole_however_tls_ends() {
        // The last chunk without the final empty line, then TCP's end without close_notify:
        // claude takes the response as whole; ureq's own TLS stream made it an error.
        const LAST_CHUNK_THEN_EOF: &[u8] = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n";
        assert_eq!(fetch(LAST_CHUNK_THEN_EOF, true).unwrap(), b"hello");
        assert!(
            fetch(LAST_CHUNK_THEN_EOF, false).is_err(),
            "ureq's own TLS stream now takes this end as whole: UncleanEnd can go"
        );
        const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        assert_eq!(fetch(CHUNKED, true).unwrap(), b"hello");
        const LENGTH: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello";
        assert_eq!(fetch(LENGTH, true).unwrap(), b"hello");
    }

    #[test]
    fn an_unframed_or_cut_response_is_never_whole() {
        // Close-delimited: nothing says it is whole, and an unclean end may be a truncation.
        const UNFRAMED: &[u8] = b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nhello";
        assert!(fetch(UNFRAMED, true).is_err());
        const SHORT: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nhello";
        assert!(fetch(SHORT, true).is_err());
        const MID_CHUNKS: &[u8] = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n";
        assert!(fetch(MID_CHUNKS, true).is_err());
    }
}
