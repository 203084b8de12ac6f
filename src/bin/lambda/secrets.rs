//! Reads `TOKEN_SECRET` from AWS Secrets Manager at start, so that the secret never sits in the
//! function's configuration: one `GetSecretValue` call, signed with Signature Version 4 under the
//! function's own role credentials (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`, `AWS_REGION`, all set by Lambda). `AWS_ENDPOINT_URL_SECRETS_MANAGER`
//! overrides the endpoint, as it does for the AWS SDKs.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::time::{Duration, SystemTime};

/// The role credentials and region Lambda gives a function.
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    pub region: String,
}

impl Credentials {
    pub fn from_env() -> Result<Credentials, String> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Ok(Credentials {
            access_key_id: var("AWS_ACCESS_KEY_ID").ok_or("AWS_ACCESS_KEY_ID is not set")?,
            secret_access_key: var("AWS_SECRET_ACCESS_KEY")
                .ok_or("AWS_SECRET_ACCESS_KEY is not set")?,
            session_token: var("AWS_SESSION_TOKEN"),
            region: var("AWS_REGION")
                .or_else(|| var("AWS_DEFAULT_REGION"))
                .ok_or("AWS_REGION is not set")?,
        })
    }
}

/// The `SecretString` of the secret `secret_id` (an ARN or a name).
pub async fn get_secret_string(secret_id: &str) -> Result<String, String> {
    let credentials = Credentials::from_env()?;
    let endpoint = std::env::var("AWS_ENDPOINT_URL_SECRETS_MANAGER")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| {
            format!(
                "https://secretsmanager.{}.amazonaws.com",
                credentials.region
            )
        });
    let endpoint = endpoint.trim_end_matches('/').to_string();
    let host = endpoint
        .split_once("://")
        .map(|(_, rest)| rest)
        .ok_or_else(|| format!("bad Secrets Manager endpoint {endpoint:?}"))?
        .to_string();
    let body = serde_json::to_vec(&serde_json::json!({ "SecretId": secret_id })).expect("JSON");
    let signed = sign(&credentials, &host, &body, SystemTime::now());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let mut request = client
        .post(format!("{endpoint}/"))
        .header("content-type", CONTENT_TYPE)
        .header("x-amz-target", TARGET)
        .header("x-amz-date", &signed.amz_date)
        .header("authorization", &signed.authorization)
        .body(body);
    if let Some(token) = &credentials.session_token {
        request = request.header("x-amz-security-token", token);
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("Secrets Manager unreachable: {e}"))?;
    let status = response.status();
    let text = response.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        // The error names the problem (AccessDenied, ResourceNotFound); it holds no secret.
        return Err(format!("Secrets Manager answered {status}: {text}"));
    }
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|_| "Secrets Manager answered no JSON".to_string())?;
    value["SecretString"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| "the secret has no SecretString".to_string())
}

const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
const TARGET: &str = "secretsmanager.GetSecretValue";
const SERVICE: &str = "secretsmanager";

pub struct Signed {
    pub amz_date: String,
    pub authorization: String,
}

/// Signature Version 4 of a `GetSecretValue` POST to `host`.
pub fn sign(credentials: &Credentials, host: &str, body: &[u8], now: SystemTime) -> Signed {
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let stamp = registry_mirror::token::rfc3339(secs); // YYYY-MM-DDTHH:MM:SSZ
    let amz_date: String = stamp
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect(); // YYYYMMDDTHHMMSSZ
    let date = &amz_date[..8];

    let mut headers = vec![
        ("content-type", CONTENT_TYPE.to_string()),
        ("host", host.to_string()),
        ("x-amz-date", amz_date.clone()),
        ("x-amz-target", TARGET.to_string()),
    ];
    if let Some(token) = &credentials.session_token {
        headers.push(("x-amz-security-token", token.clone()));
    }
    headers.sort();
    let canonical_headers: String = headers
        .iter()
        .map(|(k, v)| format!("{k}:{}\n", v.trim()))
        .collect();
    let signed_headers = headers
        .iter()
        .map(|(k, _)| *k)
        .collect::<Vec<_>>()
        .join(";");
    let canonical_request = format!(
        "POST\n/\n\n{canonical_headers}\n{signed_headers}\n{}",
        hex(&Sha256::digest(body))
    );
    let scope = format!("{date}/{}/{SERVICE}/aws4_request", credentials.region);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()))
    );
    let key = [credentials.region.as_str(), SERVICE, "aws4_request"]
        .iter()
        .fold(
            hmac(
                format!("AWS4{}", credentials.secret_access_key).as_bytes(),
                date.as_bytes(),
            ),
            |key, part| hmac(&key, part.as_bytes()),
        );
    let signature = hex(&hmac(&key, string_to_sign.as_bytes()));
    Signed {
        authorization: format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            credentials.access_key_id
        ),
        amz_date,
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials() -> Credentials {
        Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
            region: "us-east-1".into(),
        }
    }

    /// The signing key derivation, checked against the example in AWS's Signature Version 4 guide
    /// ("Examples of how to derive a signing key"): secret, 20120215, us-east-1, iam.
    #[test]
    fn signing_key_matches_the_aws_example() {
        let key = ["us-east-1", "iam", "aws4_request"].iter().fold(
            hmac(b"AWS4wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", b"20120215"),
            |key, part| hmac(&key, part.as_bytes()),
        );
        assert_eq!(
            hex(&key),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
    }

    #[test]
    fn authorization_names_the_scope_and_headers() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_083_199);
        let signed = sign(
            &credentials(),
            "secretsmanager.us-east-1.amazonaws.com",
            b"{}",
            now,
        );
        assert_eq!(signed.amz_date, "20261130T235959Z");
        assert!(signed.authorization.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261130/us-east-1/secretsmanager/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature="
        ));
        let again = sign(
            &credentials(),
            "secretsmanager.us-east-1.amazonaws.com",
            b"{}",
            now,
        );
        assert_eq!(signed.authorization, again.authorization);
        let other = sign(
            &credentials(),
            "secretsmanager.us-east-1.amazonaws.com",
            b"{ }",
            now,
        );
        assert_ne!(signed.authorization, other.authorization);
    }
}
