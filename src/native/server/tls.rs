//! HTTPS for the local server: `TLS_CERT` and `TLS_KEY` (PEM files), TLS 1.2 and 1.3 with rustls,
//! HTTP/2 and HTTP/1.1 offered by ALPN. dockerd refuses a plain-HTTP mirror unless every client
//! lists it under `insecure-registries`; with these two settings it needs nothing but the CA.
//!
//! The certificate is read again on `SIGHUP` (a renewed one from certbot or cert-manager): new
//! handshakes get it, open connections keep theirs, nothing restarts. A file that does not load
//! leaves the old certificate in place (and says so in the log).

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

/// `TLS_CERT` and `TLS_KEY`.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// Both set, or neither (plain HTTP).
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<TlsFiles>, String> {
        let get = |key: &str| lookup(key).filter(|v| !v.trim().is_empty());
        match (get("TLS_CERT"), get("TLS_KEY")) {
            (Some(cert), Some(key)) => Ok(Some(TlsFiles {
                cert: cert.into(),
                key: key.into(),
            })),
            (None, None) => Ok(None),
            _ => Err("TLS_CERT and TLS_KEY go together: set both, or neither".to_string()),
        }
    }
}

/// The certificate the server presents, replaced on reload.
#[derive(Debug)]
pub struct Certificates {
    files: TlsFiles,
    current: RwLock<Arc<CertifiedKey>>,
}

impl Certificates {
    pub fn load(files: TlsFiles) -> Result<Arc<Certificates>, String> {
        let current = RwLock::new(Arc::new(certified_key(&files)?));
        Ok(Arc::new(Certificates { files, current }))
    }

    /// Reads the files again; on an error the certificate in use stays.
    pub fn reload(&self) -> Result<(), String> {
        let key = certified_key(&self.files)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
        Ok(())
    }

    /// The rustls server configuration presenting these certificates.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, String> {
        server_config(self.clone(), false)
    }
}

/// TLS 1.2 and 1.3, ALPN `h2` then `http/1.1` (and ACME's TLS-ALPN-01 when `acme`), with the
/// certificate `resolver` gives.
pub fn server_config(
    resolver: Arc<dyn ResolvesServerCert>,
    acme: bool,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    if acme {
        config
            .alpn_protocols
            .push(crate::native::server::acme::CHALLENGE_ALPN.to_vec());
    }
    Ok(Arc::new(config))
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

fn certified_key(files: &TlsFiles) -> Result<CertifiedKey, String> {
    let cert_path = files.cert.display();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| format!("TLS_CERT {cert_path}: {e}"))?;
    if chain.is_empty() {
        return Err(format!("TLS_CERT {cert_path}: no certificate in it"));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| format!("TLS_KEY {}: {e}", files.key.display()))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("TLS_KEY {}: {e}", files.key.display()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| format!("TLS_CERT and TLS_KEY do not belong together: {e}"))?;
    Ok(certified)
}

/// Reloads the certificate on every `SIGHUP`, for as long as the server runs.
#[cfg(unix)]
pub fn reload_on_hangup(certificates: Arc<Certificates>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!("SIGHUP cannot be watched: the certificate is not reloaded");
        return;
    };
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            match certificates.reload() {
                Ok(()) => tracing::info!("SIGHUP: the certificate was reloaded"),
                Err(e) => tracing::warn!(error = %e, "SIGHUP: the certificate stays as it was"),
            }
        }
    });
}
