//! A throwaway certificate authority for TLS tests: made per test, written only where the test
//! says, never installed anywhere.

use std::sync::Arc;

/// A throwaway CA and a certificate it signed for `host`: (the CA, the leaf, the leaf's key).
pub fn ca_and_leaf(host: &str) -> (rcgen::Certificate, rcgen::Certificate, rcgen::KeyPair) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "ccb test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf =
        rcgen::CertificateParams::new(vec![host.to_string()]).unwrap().signed_by(&leaf_key, &ca, &ca_key).unwrap();
    (ca, leaf, leaf_key)
}

/// A CA (its PEM, for a client to trust) and a server configuration whose certificate it signed
/// for `host`.
pub fn throwaway_ca(host: &str) -> (String, Arc<rustls::ServerConfig>) {
    let (ca, leaf, leaf_key) = ca_and_leaf(host);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    (ca.pem(), Arc::new(cfg))
}
