//! TLS for the load client, with rustls (no OpenSSL): the `target.tls` keys, the root store,
//! the client certificate, and the handshake with its failures described in plain words.
//!
//! One [`TlsClient`] is made per validated config and shared by every VU: its rustls
//! `ClientConfig` holds the session cache, so a VU that reconnects resumes its session
//! (TLS 1.3 tickets, TLS 1.2 session ids) instead of a full handshake. Roots are the system's
//! store (`rustls-native-certs`), or webpki's bundled roots when the system has none, plus
//! the certificates of `ca_file`: a private CA is trusted beside the public ones, because a
//! plan may send some steps elsewhere (an S3 upload beside a private API).

use std::collections::HashSet;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// A PEM file larger than this is refused (a CA bundle of the whole web is about 250 KiB).
pub const MAX_PEM_BYTES: u64 = 1 << 20;
/// Distinct failure causes logged per [`TlsClient`]; later new ones are counted, not logged.
const MAX_LOGGED_CAUSES: usize = 32;

/// `[target.tls]` as written in the config file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificates of a private CA, trusted beside the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate (self-signed, expired, other name). Off by default; when on,
    /// the log and the report say so.
    pub insecure_skip_verify: bool,
    /// The name sent as SNI and checked against the certificate, instead of the URL's host.
    pub server_name: Option<String>,
    /// PEM certificate chain for mutual TLS; needs `client_key`.
    pub client_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `client_cert`.
    pub client_key: Option<PathBuf>,
}

/// A `target.tls` key that cannot be used, with the reason.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct TlsSetupError {
    /// The key's path, e.g. `target.tls.ca_file`.
    pub field: String,
    pub reason: String,
}

/// Why a TLS handshake gave no connection, in plain words (the `tls` failure's cause).
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// Neither the `server_name` override nor the URL's host is a DNS name or an IP address.
    #[error("{0:?} is not a name TLS can verify")]
    NotAName(String),
    /// The handshake itself failed; see [`describe`].
    #[error("{}", describe(.error, .name))]
    Failed { error: io::Error, name: String },
}

/// The ALPN protocol ids a connection offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    Http1,
    H2,
}

/// The TLS side of every https connection of a run.
pub struct TlsClient {
    connector: TlsConnector,
    server_name: Option<ServerName<'static>>,
    insecure: bool,
    logged: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("server_name", &self.server_name)
            .field("insecure", &self.insecure)
            .finish_non_exhaustive()
    }
}

/// aws-lc-rs rather than ring: its AES-GCM (AVX-512 where the CPU has it) costs less per byte,
/// and encrypting the body is the largest single item of a TLS upload's CPU (measured in
/// docs/tls.md, "Crypto provider").
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The contents of the PEM files `[target.tls]` names, each as the config's load phase read it
/// (at most [`MAX_PEM_BYTES`]) or why it could not; None where the key is not set. Reading them
/// apart from [`TlsClient::new`] keeps every config-time file read in that one phase.
#[derive(Debug, Clone, Default)]
pub struct TlsPems {
    pub ca_file: Option<Result<Vec<u8>, TlsSetupError>>,
    pub client_cert: Option<Result<Vec<u8>, TlsSetupError>>,
    pub client_key: Option<Result<Vec<u8>, TlsSetupError>>,
}

/// The PEM text of a key that is set, or the read error recorded for it.
fn pem<'a>(
    read: &'a Option<Result<Vec<u8>, TlsSetupError>>,
    field: &str,
) -> Result<&'a [u8], TlsSetupError> {
    match read {
        Some(Ok(text)) => Ok(text),
        Some(Err(e)) => Err(e.clone()),
        // Only a caller that skipped the load phase gets here.
        None => Err(TlsSetupError {
            field: field.to_string(),
            reason: "was not read before the TLS client was built".into(),
        }),
    }
}

fn certs(
    pem: &[u8],
    path: &Path,
    field: &str,
) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem).collect();
    match certs {
        Ok(c) if !c.is_empty() => Ok(c),
        Ok(_) => Err(TlsSetupError {
            field: field.to_string(),
            reason: format!("{} holds no PEM certificate", path.display()),
        }),
        Err(e) => Err(TlsSetupError {
            field: field.to_string(),
            reason: format!("{} is not valid PEM: {e}", path.display()),
        }),
    }
}

/// The system's roots, or webpki's when the system store is empty or unreadable.
fn system_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(native.certs);
    if added == 0 {
        tracing::debug!("no system certificate store; using the bundled webpki roots");
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    roots
}

impl TlsClient {
    /// Check `cfg` and build the client from the files' contents in `pems`; every unusable key
    /// is reported, named by its path under `prefix` (`target.tls`).
    pub fn new(
        cfg: &TlsConfig,
        prefix: &str,
        pems: &TlsPems,
        alpn: Alpn,
    ) -> Result<Self, Vec<TlsSetupError>> {
        let mut errs = Vec::new();
        let field = |k: &str| format!("{prefix}.{k}");
        let server_name = match cfg.server_name.as_deref() {
            None => None,
            Some(n) => match ServerName::try_from(n.to_string()) {
                Ok(s) => Some(s),
                Err(_) => {
                    errs.push(TlsSetupError {
                        field: field("server_name"),
                        reason: format!("not a DNS name or IP address: {n:?}"),
                    });
                    None
                }
            },
        };
        let mut roots = system_roots();
        if let Some(p) = &cfg.ca_file {
            let f = field("ca_file");
            match pem(&pems.ca_file, &f).and_then(|pem| certs(pem, p, &f)) {
                Ok(cas) => {
                    for c in cas {
                        if let Err(e) = roots.add(c) {
                            errs.push(TlsSetupError {
                                field: f.clone(),
                                reason: format!(
                                    "{} holds an unusable CA certificate: {e}",
                                    p.display()
                                ),
                            });
                        }
                    }
                }
                Err(e) => errs.push(e),
            }
        }
        let client_auth = match (&cfg.client_cert, &cfg.client_key) {
            (None, None) => None,
            (Some(_), None) => {
                errs.push(TlsSetupError {
                    field: field("client_key"),
                    reason: "is required with client_cert".into(),
                });
                None
            }
            (None, Some(_)) => {
                errs.push(TlsSetupError {
                    field: field("client_cert"),
                    reason: "is required with client_key".into(),
                });
                None
            }
            (Some(c), Some(k)) => {
                let (fc, fk) = (field("client_cert"), field("client_key"));
                let chain = pem(&pems.client_cert, &fc).and_then(|pem| certs(pem, c, &fc));
                let key = pem(&pems.client_key, &fk).and_then(|pem| {
                    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsSetupError {
                        field: fk.clone(),
                        reason: format!("{} holds no usable PEM private key: {e}", k.display()),
                    })
                });
                match (chain, key) {
                    (Ok(chain), Ok(key)) => Some((chain, key)),
                    (chain, key) => {
                        errs.extend(chain.err());
                        errs.extend(key.err());
                        None
                    }
                }
            }
        };
        if !errs.is_empty() {
            return Err(errs);
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("the aws-lc-rs provider supports the default versions");
        let builder = if cfg.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCert(provider())))
        } else {
            builder.with_root_certificates(roots)
        };
        let mut config = match client_auth {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => builder.with_client_auth_cert(chain, key).map_err(|e| {
                vec![TlsSetupError {
                    field: field("client_key"),
                    reason: format!("does not fit client_cert: {e}"),
                }]
            })?,
        };
        config.alpn_protocols = match alpn {
            Alpn::Http1 => vec![b"http/1.1".to_vec()],
            Alpn::H2 => vec![b"h2".to_vec()],
        };
        if cfg.insecure_skip_verify {
            tracing::warn!(
                "target.tls.insecure_skip_verify is on: the target's certificate is not \
                 verified, so the results may come from another server"
            );
        }
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
            insecure: cfg.insecure_skip_verify,
            logged: Mutex::default(),
        })
    }

    /// True when certificates are not verified.
    pub fn insecure(&self) -> bool {
        self.insecure
    }

    /// The TLS handshake over `tcp` with `host` (or the `server_name` override). A failure is
    /// described in plain words and logged once per distinct cause; the caller counts it as
    /// reason `tls`.
    pub async fn handshake(
        &self,
        host: &str,
        tcp: TcpStream,
    ) -> Result<TlsStream<TcpStream>, HandshakeError> {
        let name = match &self.server_name {
            Some(n) => n.clone(),
            None => {
                match ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']')) {
                    Ok(n) => n.to_owned(),
                    Err(_) => return Err(self.noted(HandshakeError::NotAName(host.to_string()))),
                }
            }
        };
        match self.connector.connect(name.clone(), tcp).await {
            Ok(s) => Ok(s),
            Err(error) => Err(self.noted(HandshakeError::Failed {
                error,
                name: show_name(&name),
            })),
        }
    }

    /// `e`, its cause logged first (once per distinct cause).
    fn noted(&self, e: HandshakeError) -> HandshakeError {
        self.note(&e.to_string());
        e
    }

    /// Log a failure cause the first time it is seen.
    pub fn note(&self, cause: &str) {
        let mut seen = self.logged.lock().unwrap_or_else(|e| e.into_inner());
        if seen.contains(cause) {
            return;
        }
        if seen.len() < MAX_LOGGED_CAUSES {
            seen.insert(cause.to_string());
            tracing::warn!(reason = "tls", "TLS failure: {cause}");
        } else if seen.len() == MAX_LOGGED_CAUSES {
            seen.insert(String::new());
            tracing::warn!(
                reason = "tls",
                "more distinct TLS failure causes; they are counted but no longer logged"
            );
        }
    }
}

fn show_name(n: &ServerName<'_>) -> String {
    match n {
        ServerName::DnsName(d) => d.as_ref().to_string(),
        ServerName::IpAddress(ip) => IpAddr::from(*ip).to_string(),
        other => format!("{other:?}"),
    }
}

/// `DnsName("localhost")` / `IpAddress(127.0.0.1)` as webpki reports them → `localhost`.
fn show_presented(p: &str) -> &str {
    let inner = p
        .strip_prefix("DnsName(")
        .or_else(|| p.strip_prefix("IpAddress("))
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or(p);
    inner.trim_matches('"')
}

/// The TLS error inside an I/O error from rustls, if it is one.
pub fn tls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
}

/// A handshake or record failure in plain words, e.g. "certificate for 127.0.0.1 is not valid
/// for localhost".
pub fn describe(e: &io::Error, name: &str) -> String {
    let Some(err) = tls_error(e) else {
        return match e.kind() {
            io::ErrorKind::UnexpectedEof => {
                format!("{name} closed the connection during the TLS handshake")
            }
            _ => format!("TLS handshake with {name} failed: {e}"),
        };
    };
    use rustls::AlertDescription as A;
    use rustls::Error as E;
    match err {
        E::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => format!(
                "certificate of {name} is not signed by a trusted CA (trust its CA with \
                 target.tls.ca_file)"
            ),
            CertificateError::NotValidForNameContext { presented, .. } => {
                let names: Vec<&str> = presented.iter().map(|p| show_presented(p)).collect();
                format!(
                    "certificate for {} is not valid for {name}",
                    names.join(", ")
                )
            }
            CertificateError::NotValidForName => format!("certificate is not valid for {name}"),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                format!("certificate of {name} has expired")
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                format!("certificate of {name} is not valid yet")
            }
            CertificateError::Revoked => format!("certificate of {name} is revoked"),
            CertificateError::BadSignature => {
                format!("certificate of {name} has a bad signature")
            }
            // webpki refuses a CA certificate presented as the server's own.
            other if format!("{other:?}").contains("CaUsedAsEndEntity") => format!(
                "certificate of {name} is a CA certificate, which cannot identify a server \
                 (serve a certificate issued by that CA)"
            ),
            other => format!("certificate of {name} was refused: {other:?}"),
        },
        E::AlertReceived(A::CertificateRequired) => format!(
            "{name} requires a client certificate (set target.tls.client_cert and client_key)"
        ),
        E::AlertReceived(A::BadCertificate | A::UnknownCA | A::CertificateUnknown) => {
            format!("{name} refused the client certificate")
        }
        E::AlertReceived(A::NoApplicationProtocol) | E::NoApplicationProtocol => {
            format!(
                "{name} accepts none of the offered application protocols by ALPN (h2 only \
                 with target.http_version = \"2\", http/1.1 only with \"1.1\")"
            )
        }
        E::AlertReceived(a) => format!("{name} ended the TLS handshake: {a:?}"),
        E::InvalidMessage(_) | E::InappropriateMessage { .. } => {
            format!("{name} does not answer in TLS on this port ({err})")
        }
        other => format!("TLS with {name} failed: {other}"),
    }
}

/// `insecure_skip_verify`: any certificate is accepted, but the handshake signatures are
/// still checked, so the peer must hold the key of the certificate it sent.
#[derive(Debug)]
struct AnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presented_names_read_plainly() {
        assert_eq!(show_presented("DnsName(\"localhost\")"), "localhost");
        assert_eq!(show_presented("IpAddress(127.0.0.1)"), "127.0.0.1");
        assert_eq!(show_presented("other"), "other");
    }

    #[test]
    fn bad_keys_are_named() {
        let unread = TlsSetupError {
            field: "target.tls.ca_file".into(),
            reason: "cannot read missing.pem: gone".into(),
        };
        let cfg = TlsConfig {
            ca_file: Some("missing.pem".into()),
            client_cert: Some("c.pem".into()),
            server_name: Some("not a name".into()),
            ..Default::default()
        };
        let pems = TlsPems {
            ca_file: Some(Err(unread.clone())),
            client_cert: Some(Ok(b"unused without a key".to_vec())),
            client_key: None,
        };
        let errs = TlsClient::new(&cfg, "target.tls", &pems, Alpn::Http1).unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "target.tls.server_name",
                "target.tls.ca_file",
                "target.tls.client_key"
            ]
        );
        // The load phase's read error is reported as it was recorded, in the key's place.
        assert_eq!(errs[1], unread);
        let cfg = TlsConfig {
            ca_file: Some("junk.pem".into()),
            ..Default::default()
        };
        let pems = TlsPems {
            ca_file: Some(Ok(b"not pem".to_vec())),
            ..Default::default()
        };
        let errs = TlsClient::new(&cfg, "target.tls", &pems, Alpn::Http1).unwrap_err();
        assert_eq!(errs[0].field, "target.tls.ca_file");
        assert_eq!(errs[0].reason, "junk.pem holds no PEM certificate");
        // A key set in the config but given no contents is an error, not a silent default.
        let errs =
            TlsClient::new(&cfg, "target.tls", &TlsPems::default(), Alpn::Http1).unwrap_err();
        assert_eq!(
            errs[0].reason,
            "was not read before the TLS client was built"
        );
    }
}
