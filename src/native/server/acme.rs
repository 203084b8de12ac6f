//! Certificates by ACME, so that HTTPS on a VPS takes one setting: `ACME_DOMAINS` (the names
//! the server answers to), with `ACME_CONTACT` (`mailto:` addresses), `ACME_DIRECTORY` (Let's
//! Encrypt's by default) and `ACME_CA_ROOT` (a PEM root to trust for the ACME server's own API,
//! besides the public ones: for a private ACME server, or tests). The challenge is TLS-ALPN-01,
//! answered on the server's own port in the TLS handshake (`rustls-acme`), so the port must be
//! the one the names resolve to on 443. The account and certificates are kept in the store's
//! directory (`acme/`), and renewed before they expire.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::server::ResolvesServerCert;
use rustls_acme::caches::DirCache;
use rustls_acme::AcmeConfig;
use std::path::PathBuf;
use std::sync::Arc;

/// The ALPN protocol of TLS-ALPN-01 challenges: such a connection ends after its handshake.
pub const CHALLENGE_ALPN: &[u8] = rustls_acme::acme::ACME_TLS_ALPN_NAME;

/// Let's Encrypt's production directory.
pub const LETS_ENCRYPT: &str = rustls_acme::acme::LETS_ENCRYPT_PRODUCTION_DIRECTORY;

/// The `ACME_*` settings.
#[derive(Debug, Clone)]
pub struct AcmeSettings {
    pub domains: Vec<String>,
    pub contact: Vec<String>,
    pub directory: String,
    pub ca_root: Option<PathBuf>,
    /// Where the account and certificates are kept.
    pub cache_dir: PathBuf,
}

impl AcmeSettings {
    /// `None` without `ACME_DOMAINS`. `cache_dir` is where the account and certificates go.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
        cache_dir: Option<PathBuf>,
    ) -> Result<Option<AcmeSettings>, String> {
        let get = |key: &str| lookup(key).filter(|v| !v.trim().is_empty());
        let list = |value: Option<String>| -> Vec<String> {
            value
                .unwrap_or_default()
                .split(',')
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect()
        };
        let domains = list(get("ACME_DOMAINS"));
        if domains.is_empty() {
            return Ok(None);
        }
        let cache_dir = cache_dir.ok_or(
            "ACME_DOMAINS needs a directory for the account and certificates: a CACHE=file:// \
             store, or a home directory for the default one",
        )?;
        let contact = list(get("ACME_CONTACT"))
            .into_iter()
            .map(|c| match c.starts_with("mailto:") {
                true => c,
                false => format!("mailto:{c}"),
            })
            .collect();
        Ok(Some(AcmeSettings {
            domains,
            contact,
            directory: get("ACME_DIRECTORY").unwrap_or_else(|| LETS_ENCRYPT.to_string()),
            ca_root: get("ACME_CA_ROOT").map(PathBuf::from),
            cache_dir,
        }))
    }

    /// Starts the ACME client (orders a certificate when none is kept or it is due for renewal,
    /// and keeps doing so), and gives the resolver that presents the certificate and answers the
    /// challenges. Runs on the current tokio runtime.
    pub fn start(self) -> Result<Arc<dyn ResolvesServerCert>, String> {
        use futures_util::StreamExt;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = &self.ca_root {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<_, _>>())
                .map_err(|e| format!("ACME_CA_ROOT {}: {e}", path.display()))?;
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("ACME_CA_ROOT {}: {e}", path.display()))?;
            }
        }
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut state = AcmeConfig::new_with_client_config(&self.domains, Arc::new(client))
            .contact(&self.contact)
            .directory(&self.directory)
            .cache(DirCache::new(self.cache_dir.clone()))
            .state();
        let resolver = state.resolver();
        let domains = self.domains.join(",");
        tokio::spawn(async move {
            while let Some(event) = state.next().await {
                match event {
                    Ok(ok) => tracing::info!(domains, event = ?ok, "ACME"),
                    Err(e) => tracing::warn!(domains, error = ?e, "ACME"),
                }
            }
        });
        Ok(resolver)
    }
}
