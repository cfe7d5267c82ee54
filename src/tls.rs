//! TLS configurations (rustls with the ring provider; cargo feature `tls`): the
//! server's certificate and key from PEM, and the client's verifiers for each
//! outbound level (DESIGN.md §4.5, reference/tls-auth-odmr.md §2.4):
//!
//! | level | chain | name | handshake signatures |
//! |---|---|---|---|
//! | `may`, `encrypt` | not checked | not checked | checked |
//! | `fingerprint` | SHA-256 of the server's certificate in `match=` | — | checked |
//! | `verify` | CA roots | the host connected to | checked |
//! | `secure` | CA roots | the next-hop domain, or `match=` names | checked |
//!
//! The transport that drives a connection lives in the event loop; this module
//! only builds configurations and describes sessions.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

pub use rustls::{ClientConnection, Connection, ServerConnection};

/// Where system root bundles live (Debian, Fedora, FreeBSD, OpenBSD/macOS).
pub const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/usr/local/share/certs/ca-root-nss.crt",
    "/etc/ssl/cert.pem",
];

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server configuration from PEM texts; errors name the file.
pub fn server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_name: &str,
    key_name: &str,
) -> Result<Arc<ServerConfig>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{cert_name}: bad PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{cert_name}: no CERTIFICATE block found"));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
        format!("{key_name}: no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}")
    })?;
    let cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("{cert_name}, {key_name}: {e}"))?;
    Ok(Arc::new(cfg))
}

/// Loads PEM roots from `path`, or from the first system bundle found.
pub fn roots(path: Option<&std::path::Path>) -> Result<Arc<RootCertStore>, String> {
    let p = match path {
        Some(p) => p.to_path_buf(),
        None => SYSTEM_BUNDLES
            .iter()
            .map(std::path::PathBuf::from)
            .find(|p| p.exists())
            .ok_or("no system CA bundle found: set TLS_CA_FILE")?,
    };
    let text = std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    let mut store = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&text) {
        let c = c.map_err(|e| format!("{}: bad PEM: {e}", p.display()))?;
        // A bundle may hold certificates webpki cannot use; skip those.
        let _ = store.add(c);
    }
    if store.is_empty() {
        return Err(format!("{}: no usable CA certificate", p.display()));
    }
    Ok(Arc::new(store))
}

/// What the client checks of the server's certificate.
#[derive(Debug, Clone)]
pub enum Check {
    /// Nothing but the handshake signatures (`may`, `encrypt`).
    None,
    /// The certificate's SHA-256 is one of these (lower-case hex, no colons).
    Fingerprint(Vec<String>),
    /// A CA-verified chain for one of these names.
    Names(Arc<RootCertStore>, Vec<String>),
}

#[derive(Debug)]
struct Verifier {
    check: Check,
    provider: Arc<CryptoProvider>,
}

/// SHA-256 of `data`, lower-case hex.
pub fn sha256_hex(data: &[u8]) -> String {
    let suite = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256;
    let hash = suite
        .tls13()
        .expect("a TLS 1.3 suite")
        .common
        .hash_provider
        .hash(data);
    hash.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.check {
            Check::None => Ok(ServerCertVerified::assertion()),
            Check::Fingerprint(fps) => {
                let fp = sha256_hex(end_entity.as_ref());
                if fps.contains(&fp) {
                    Ok(ServerCertVerified::assertion())
                } else {
                    Err(rustls::Error::General(format!(
                        "certificate fingerprint sha256:{fp} is not in the policy's match list"
                    )))
                }
            }
            Check::Names(roots, names) => {
                let inner = WebPkiServerVerifier::builder_with_provider(
                    roots.clone(),
                    self.provider.clone(),
                )
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
                let mut last = rustls::Error::General("no name to verify".into());
                for n in names {
                    let Ok(name) = ServerName::try_from(n.clone()) else {
                        continue;
                    };
                    match inner.verify_server_cert(end_entity, intermediates, &name, ocsp, now) {
                        Ok(v) => return Ok(v),
                        Err(e) => last = e,
                    }
                }
                Err(last)
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client configuration that checks what `check` says.
pub fn client_config(check: Check) -> Arc<ClientConfig> {
    let provider = provider();
    let cfg = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Verifier { check, provider }))
        .with_no_client_auth();
    Arc::new(cfg)
}

/// A client connection to `sni` (an IP address literal sends no SNI).
pub fn client_connection(cfg: Arc<ClientConfig>, sni: &str) -> Result<ClientConnection, String> {
    let name = ServerName::try_from(sni.to_string())
        .map_err(|_| format!("'{sni}' is not a name TLS can use"))?;
    ClientConnection::new(cfg, name).map_err(|e| e.to_string())
}

/// A server connection.
pub fn server_connection(cfg: &Arc<ServerConfig>) -> Result<ServerConnection, String> {
    ServerConnection::new(cfg.clone()).map_err(|e| e.to_string())
}

/// `TLSv1.3 with cipher TLS_AES_256_GCM_SHA384`, once the handshake is done: the
/// suite's IANA name, as Postfix, Exim and OpenSSL write it (rustls calls the TLS
/// 1.3 ones `TLS13_…`).
pub fn describe(conn: &rustls::CommonState) -> Option<String> {
    let v = match conn.protocol_version()? {
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_string(),
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_string(),
        other => format!("{other:?}"),
    };
    let s = conn.negotiated_cipher_suite()?.suite();
    let name = s.as_str().map_or_else(|| format!("{s:?}"), str::to_string);
    Some(format!("{v} with cipher {}", iana_name(&name)))
}

/// The IANA name of a cipher suite rustls names: its TLS 1.3 suites are
/// `TLS13_AES_256_GCM_SHA384` there and `TLS_AES_256_GCM_SHA384` in the registry;
/// the TLS 1.2 ones already carry their registry names.
pub fn iana_name(rustls_name: &str) -> String {
    match rustls_name.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => rustls_name.to_string(),
    }
}

/// The certificate check and the name to send for a connection at `level`
/// (`None` for level `none`): `host` is the route host (the next-hop domain),
/// `hop` the name of the host connected to; `roots` are needed for
/// `verify`/`secure` (without them nothing verifies, so the mail waits).
pub fn plan(
    level: crate::vocab::TlsLevel,
    matches: &[String],
    host: &str,
    hop: &str,
    roots: Option<Arc<RootCertStore>>,
) -> Option<(Check, String)> {
    use crate::vocab::TlsLevel;
    let hop = hop.trim_end_matches('.').to_ascii_lowercase();
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let check = match level {
        TlsLevel::None => return None,
        TlsLevel::May | TlsLevel::Encrypt => Check::None,
        TlsLevel::Fingerprint => Check::Fingerprint(matches.to_vec()),
        TlsLevel::Verify | TlsLevel::Secure => {
            let names = if level == TlsLevel::Verify && matches.is_empty() {
                vec![hop.clone()]
            } else {
                let wanted: Vec<String> = if matches.is_empty() {
                    vec!["nexthop".into(), "dot-nexthop".into()]
                } else {
                    matches.to_vec()
                };
                cert_names(&wanted, &host, &hop)
            };
            let roots = roots.unwrap_or_else(|| Arc::new(RootCertStore::empty()));
            Check::Names(roots, names)
        }
    };
    // An address literal is a valid server name too: rustls sends no SNI then.
    let sni = if hop.is_empty() { host } else { hop };
    Some((check, sni))
}

/// The names a `secure`/`verify` certificate may carry, from `match=` words:
/// `nexthop` (the route host), `dot-nexthop` (the hop's name when it is under the
/// route host), `hostname` (the hop's name), `.suffix` (the hop's name when under
/// it), or a literal name.
fn cert_names(wanted: &[String], host: &str, hop: &str) -> Vec<String> {
    let mut out = Vec::new();
    for w in wanted {
        let name = match w.as_str() {
            "nexthop" => Some(host.to_string()),
            "hostname" => Some(hop.to_string()),
            "dot-nexthop" => hop.ends_with(&format!(".{host}")).then(|| hop.to_string()),
            s if s.starts_with('.') => hop.ends_with(s).then(|| hop.to_string()),
            s => Some(s.to_string()),
        };
        if let Some(n) = name {
            if !n.is_empty() && !out.contains(&n) {
                out.push(n);
            }
        }
    }
    out
}
