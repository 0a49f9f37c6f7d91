//! TLS for demo-target (`--tls-cert`, `--tls-key`, `--tls-client-ca`) with rustls, offering
//! HTTP/2 and HTTP/1.1 by ALPN, and [`Pki`]: a throw-away CA made in memory with rcgen that
//! issues server and client certificates, so `loadspec demo --tls` and the tests never need a
//! committed private key.

use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;

fn invalid(what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("{what}: {e}"))
}

/// The server's TLS config from PEM bytes: its certificate chain and key, and when
/// `client_ca` is given, client certificates signed by it are required (mutual TLS).
pub fn server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
    client_ca_pem: Option<&[u8]>,
) -> io::Result<Arc<ServerConfig>> {
    // aws-lc-rs, as the client's (load::tls): one crypto library linked, and ring's slower
    // AES-GCM kept out of the demo's server CPU as well.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| invalid("--tls-cert", e))?;
    if chain.is_empty() {
        return Err(invalid("--tls-cert", "no PEM certificate"));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| invalid("--tls-key", e))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("TLS versions", e))?;
    let builder = match client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(pem) {
                roots
                    .add(c.map_err(|e| invalid("--tls-client-ca", e))?)
                    .map_err(|e| invalid("--tls-client-ca", e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| invalid("--tls-client-ca", e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut cfg = builder
        .with_single_cert(chain, key)
        .map_err(|e| invalid("--tls-key", e))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// [`server_config`] from files.
pub fn server_config_files(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> io::Result<Arc<ServerConfig>> {
    let read = |p: &Path, flag: &str| {
        std::fs::read(p).map_err(|e| invalid(&format!("{flag} {}", p.display()), e))
    };
    let ca = client_ca.map(|p| read(p, "--tls-client-ca")).transpose()?;
    server_config(
        &read(cert, "--tls-cert")?,
        &read(key, "--tls-key")?,
        ca.as_deref(),
    )
}

/// A certificate and its private key, PEM-encoded.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Issued {
    /// Write `<name>.pem` and `<name>.key` into `dir`; returns their paths.
    pub fn write(
        &self,
        dir: &Path,
        name: &str,
    ) -> io::Result<(std::path::PathBuf, std::path::PathBuf)> {
        let (c, k) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, &self.cert_pem)?;
        std::fs::write(&k, &self.key_pem)?;
        Ok((c, k))
    }
}

/// A certificate authority made in memory for one run or one test.
pub struct Pki {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// The CA certificate, PEM: what a client's `ca_file` (or a server's client CA) trusts.
    pub ca_pem: String,
}

impl Pki {
    pub fn new(name: &str) -> Result<Self, rcgen::Error> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            ca_pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        })
    }

    /// A server certificate for `names` (DNS names or IP addresses) signed by this CA.
    pub fn server(&self, names: &[&str]) -> Result<Issued, rcgen::Error> {
        self.leaf(names, rcgen::ExtendedKeyUsagePurpose::ServerAuth, false)
    }

    /// A server certificate that expired in 2021 (for tests of the failure).
    pub fn expired_server(&self, names: &[&str]) -> Result<Issued, rcgen::Error> {
        self.leaf(names, rcgen::ExtendedKeyUsagePurpose::ServerAuth, true)
    }

    /// A client certificate (for mutual TLS) named `name`, signed by this CA.
    pub fn client(&self, name: &str) -> Result<Issued, rcgen::Error> {
        self.leaf(&[name], rcgen::ExtendedKeyUsagePurpose::ClientAuth, false)
    }

    fn leaf(
        &self,
        names: &[&str],
        usage: rcgen::ExtendedKeyUsagePurpose,
        expired: bool,
    ) -> Result<Issued, rcgen::Error> {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names.clone())?;
        if let Some(n) = names.first() {
            params.distinguished_name.push(rcgen::DnType::CommonName, n);
        }
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = rcgen::KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// A certificate that signs itself (no CA): what a test uses for "unknown issuer".
pub fn self_signed(names: &[&str]) -> Result<Issued, rcgen::Error> {
    let c = rcgen::generate_simple_self_signed(
        names.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
    )?;
    Ok(Issued {
        cert_pem: c.cert.pem(),
        key_pem: c.signing_key.serialize_pem(),
    })
}
