//! The bucket store's three clients of one bucket, each bounded for what it does: lookups
//! (short, one retry: a bucket slower than that is a miss), stored bodies (bounded by inactivity,
//! never by length, and resumed), and writes (room for a part's upload). They share the endpoint
//! (`AWS_ENDPOINT_URL`, plain HTTP when it says `http`), the region and the credentials
//! (`aws_chain`).

use crate::native::store::aws_chain::{self, Chain};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::{BackoffConfig, ClientOptions, RetryConfig};
use std::sync::Arc;
use std::time::Duration;

/// The longest a lookup (a `HEAD`, a record's `GET`, the start of a stored body) may take, retry
/// included, before it counts as a miss.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest one write request (a part of 5 MiB, a record) may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stored body's read may wait for its next bytes before it is asked again from
/// where it stopped. Only waits for the bucket count: a client reading slowly leaves the read
/// unpolled, and that is not a stall.
pub const STALLED_READ: Duration = Duration::from_secs(10);
/// How many times a stored body's read is asked again after a failure or a stall.
const READ_RETRIES: usize = 3;

/// The three clients of a bucket.
pub struct Clients {
    /// For lookups: short timeouts, one retry.
    pub lookups: AmazonS3,
    /// For stored bodies: no bound on the whole request, a bound on inactivity, resumed reads.
    pub bodies: AmazonS3,
    /// For writes: room for a part's upload, a few retries.
    pub writes: AmazonS3,
}

impl Clients {
    /// The clients of `bucket`, with the endpoint, region and credentials the environment gives.
    pub fn open(bucket: &str) -> Result<Clients, String> {
        // rustls needs a process-wide crypto provider; a second install is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let region = aws_chain::region();
        let aws = Aws {
            plain_http: std::env::var("AWS_ENDPOINT_URL")
                .or_else(|_| std::env::var("AWS_ENDPOINT_URL_S3"))
                .is_ok_and(|endpoint| endpoint.starts_with("http://")),
            chain: aws_chain::wanted().then(|| Arc::new(Chain::new(region.clone()))),
            region,
        };
        let half = LOOKUP_TIMEOUT / 2;
        Ok(Clients {
            lookups: client(bucket, &aws, half, 1, LOOKUP_TIMEOUT)?,
            bodies: body_client(bucket, &aws)?,
            writes: client(bucket, &aws, WRITE_TIMEOUT, 3, 2 * WRITE_TIMEOUT)?,
        })
    }
}

/// How the clients reach AWS: what the three share.
struct Aws {
    plain_http: bool,
    region: Option<String>,
    /// The standard chain, when no variable names a key (one for the three clients).
    chain: Option<Arc<Chain>>,
}

/// A client of the bucket whose every request ends within `timeout`, retried at most `retries`
/// times within `retry_window`.
fn client(
    bucket: &str,
    aws: &Aws,
    timeout: Duration,
    retries: usize,
    retry_window: Duration,
) -> Result<AmazonS3, String> {
    let options = ClientOptions::new()
        .with_connect_timeout(timeout.min(Duration::from_secs(2)))
        .with_timeout(timeout);
    with_options(bucket, aws, options, retries, retry_window)
}

/// A client of the bucket for stored bodies: each wait for bytes ends within [`STALLED_READ`],
/// however long the whole body takes; a broken or stalled body is resumed where it stopped.
fn body_client(bucket: &str, aws: &Aws) -> Result<AmazonS3, String> {
    let options = ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout_disabled()
        .with_read_timeout(STALLED_READ);
    // `object_store` counts its retry window from the first request: a slow client's body may
    // fail after an hour and still deserves its retries.
    let window = Duration::from_secs(24 * 3600);
    with_options(bucket, aws, options, READ_RETRIES, window)
}

fn with_options(
    bucket: &str,
    aws: &Aws,
    options: ClientOptions,
    retries: usize,
    retry_window: Duration,
) -> Result<AmazonS3, String> {
    let retry = RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
            base: 2.0,
        },
        max_retries: retries,
        retry_timeout: retry_window,
    };
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_client_options(options)
        .with_allow_http(aws.plain_http)
        .with_retry(retry);
    if let Some(region) = &aws.region {
        builder = builder.with_region(region);
    }
    if let Some(chain) = &aws.chain {
        builder = builder.with_credentials(chain.clone());
    }
    builder
        .build()
        .map_err(|e| format!("CACHE: s3://{bucket}: {e}"))
}
