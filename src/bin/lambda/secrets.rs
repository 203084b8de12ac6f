//! Reads `TOKEN_SECRET` from AWS Secrets Manager at start, so that the secret never sits in the
//! function's configuration: one `GetSecretValue` call, signed with Signature Version 4 (the
//! `aws-sigv4` crate) under the function's own role credentials (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`, `AWS_REGION`, all set by Lambda). `AWS_ENDPOINT_URL_SECRETS_MANAGER`
//! overrides the endpoint, as it does for the AWS SDKs.

use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
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
    let body = serde_json::to_vec(&serde_json::json!({ "SecretId": secret_id })).expect("JSON");
    let url = format!("{endpoint}/");
    let headers = [("content-type", CONTENT_TYPE), ("x-amz-target", TARGET)];
    let signed = signed_headers(&credentials, &url, &headers, &body, SystemTime::now())?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let mut request = client.post(url).body(body);
    for (name, value) in headers
        .iter()
        .copied()
        .chain(signed.iter().map(|(n, v)| (n.as_str(), v.as_str())))
    {
        request = request.header(name, value);
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

/// The headers Signature Version 4 adds to a `POST` of `body` to `url` (`authorization`,
/// `x-amz-date`, and `x-amz-security-token` with a session token).
pub fn signed_headers(
    credentials: &Credentials,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    now: SystemTime,
) -> Result<Vec<(String, String)>, String> {
    let identity = aws_credential_types::Credentials::new(
        &credentials.access_key_id,
        &credentials.secret_access_key,
        credentials.session_token.clone(),
        None,
        "lambda-environment",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&credentials.region)
        .name(SERVICE)
        .time(now)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| format!("cannot sign: {e}"))?
        .into();
    let request = SignableRequest::new(
        "POST",
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| format!("cannot sign: {e}"))?;
    let (instructions, _) = sign(request, &params)
        .map_err(|e| format!("cannot sign: {e}"))?
        .into_parts();
    Ok(instructions
        .headers()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials(session_token: Option<&str>) -> Credentials {
        Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: session_token.map(str::to_string),
            region: "us-east-1".into(),
        }
    }

    fn sign_at(credentials: &Credentials, body: &[u8]) -> Vec<(String, String)> {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_083_199);
        let headers = [("content-type", CONTENT_TYPE), ("x-amz-target", TARGET)];
        let url = "https://secretsmanager.us-east-1.amazonaws.com/";
        signed_headers(credentials, url, &headers, body, now).unwrap()
    }

    fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {name} in {headers:?}"))
    }

    #[test]
    fn authorization_names_the_scope_the_headers_and_the_date() {
        let signed = sign_at(&credentials(None), b"{}");
        assert_eq!(header(&signed, "x-amz-date"), "20261130T235959Z");
        let authorization = header(&signed, "authorization");
        assert!(
            authorization.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261130/us-east-1/secretsmanager/aws4_request, \
                 SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature="
            ),
            "{authorization}"
        );
        assert_eq!(sign_at(&credentials(None), b"{}"), signed);
        assert_ne!(
            header(&sign_at(&credentials(None), b"{ }"), "authorization"),
            authorization
        );
    }

    #[test]
    fn a_session_token_is_sent_and_signed() {
        let signed = sign_at(&credentials(Some("session")), b"{}");
        assert_eq!(header(&signed, "x-amz-security-token"), "session");
        assert!(header(&signed, "authorization").contains("x-amz-security-token"));
    }
}
