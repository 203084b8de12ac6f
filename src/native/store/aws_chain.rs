//! The credentials and region of a bucket store, found the way every AWS tool finds them.
//!
//! `object_store` alone reads the `AWS_*` variables and an instance's credentials: an operator who
//! ran `aws configure` or `aws sso login` on a laptop, and then `warm` on the Lambda's bucket, was
//! refused. When `AWS_ACCESS_KEY_ID` is not set, the store takes its credentials from aws-config's
//! default chain instead, the one the AWS CLI and SDKs follow: the shared `credentials` and
//! `config` files (`AWS_PROFILE`, `credential_process`, SSO), web identity (EKS), the container's
//! endpoint (ECS) and the instance's (EC2). The region likewise: `AWS_REGION`,
//! `AWS_DEFAULT_REGION`, then the profile's `region`.
//!
//! The chain is built on its first use, on the runtime that uses it (its HTTP client, for SSO,
//! STS and the metadata endpoints, is rustls over ring, as the rest of the mirror), and what it
//! gives is kept until five minutes before it expires.

use async_trait::async_trait;
use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_config::profile::ProfileFileRegionProvider;
use aws_config::provider_config::ProviderConfig;
use aws_config::Region;
use aws_credential_types::provider::ProvideCredentials;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use object_store::aws::AwsCredential;
use object_store::CredentialProvider;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{Mutex, OnceCell};

/// Credentials are asked again this long before they expire.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);

/// Whether the chain is needed: the variables `object_store` reads name no key.
pub fn wanted() -> bool {
    std::env::var_os("AWS_ACCESS_KEY_ID").is_none()
}

/// The region the variables name, else the selected profile's (`AWS_PROFILE`, or `default`), as
/// the AWS CLI resolves it; `None` when neither says.
pub fn region() -> Option<String> {
    for name in ["AWS_REGION", "AWS_DEFAULT_REGION"] {
        if let Ok(region) = std::env::var(name) {
            return Some(region);
        }
    }
    // Reading the profile is async in aws-config; a thread of its own keeps this callable from
    // inside and outside a runtime.
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .ok()?;
                runtime.block_on(async {
                    let profile = ProfileFileRegionProvider::builder().build();
                    aws_config::meta::region::ProvideRegion::region(&profile)
                        .await
                        .map(|r| r.to_string())
                })
            })
            .join()
            .ok()
            .flatten()
    })
}

/// aws-config's default credential chain, as `object_store` asks for credentials.
#[derive(Debug)]
pub struct Chain {
    region: Option<String>,
    chain: OnceCell<DefaultCredentialsChain>,
    kept: Mutex<Option<(Arc<AwsCredential>, Option<SystemTime>)>>,
}

impl Chain {
    pub fn new(region: Option<String>) -> Chain {
        Chain {
            region,
            chain: OnceCell::new(),
            kept: Mutex::new(None),
        }
    }

    async fn chain(&self) -> &DefaultCredentialsChain {
        self.chain
            .get_or_init(|| async {
                let http = aws_smithy_http_client::Builder::new()
                    .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
                    .build_https();
                let config = ProviderConfig::default().with_http_client(http);
                let mut builder = DefaultCredentialsChain::builder().configure(config);
                // A region given here spares the chain asking the instance's metadata for one.
                if let Some(region) = &self.region {
                    builder = builder.region(Region::new(region.clone()));
                }
                builder.build().await
            })
            .await
    }
}

#[async_trait]
impl CredentialProvider for Chain {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        let mut kept = self.kept.lock().await;
        if let Some((credential, expiry)) = kept.as_ref() {
            let fresh = expiry.is_none_or(|at| {
                at.duration_since(SystemTime::now())
                    .is_ok_and(|left| left > REFRESH_BEFORE_EXPIRY)
            });
            if fresh {
                return Ok(credential.clone());
            }
        }
        let found = self
            .chain()
            .await
            .provide_credentials()
            .await
            .map_err(|e| object_store::Error::Generic {
                store: "S3",
                source: format!(
                    "no AWS credentials: {} (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
                     or AWS_PROFILE, or run `aws configure` or `aws sso login`)",
                    with_causes(&e)
                )
                .into(),
            })?;
        let credential = Arc::new(AwsCredential {
            key_id: found.access_key_id().to_string(),
            secret_key: found.secret_access_key().to_string(),
            token: found.session_token().map(str::to_string),
        });
        *kept = Some((credential.clone(), found.expiry()));
        Ok(credential)
    }
}

/// An error and what caused it, as one line: the chain says which source it tried last in the
/// error's causes.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        line.push_str(": ");
        line.push_str(&c.to_string());
        cause = c.source();
    }
    line
}
