//! Tokens: the upstream's token answer, the mirror's token answer, and the mirror's own signed
//! tokens used when `WHITE_LIST` is on.
//!
//! A mirror token is `rm1.<payload>.<mac>`: the payload (base64url JSON) names the user, the
//! registry, the expiry and the upstream token it wraps; the mac is HMAC-SHA256 under
//! `TOKEN_SECRET`. The wrapped upstream token lets every runtime stay stateless (a Fastly or Lambda
//! instance keeps nothing between requests), and the signature means that only tokens the mirror
//! issued, to listed users, open it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::fmt;

const PREFIX: &str = "rm1.";
/// Longer than any token the mirror issues (upstream tokens are a few KiB).
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
/// What clients assume when a token answer has no `expires_in`.
pub const DEFAULT_EXPIRES_IN: u64 = 60;

/// `TOKEN_SECRET`, never shown in `Debug`.
#[derive(Clone)]
pub struct TokenSecret(Vec<u8>);

impl TokenSecret {
    pub const MIN_LEN: usize = 16;

    pub fn new(secret: &str) -> Result<TokenSecret, String> {
        if secret.len() < Self::MIN_LEN {
            return Err(format!(
                "TOKEN_SECRET must be at least {} characters",
                Self::MIN_LEN
            ));
        }
        Ok(TokenSecret(secret.as_bytes().to_vec()))
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length")
    }
}

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSecret(<redacted>)")
    }
}

/// What a mirror token says.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorToken {
    /// The user it was issued to.
    #[serde(rename = "sub")]
    pub user: String,
    /// The registry it is for; it opens no other.
    #[serde(rename = "reg")]
    pub registry: String,
    /// Unix seconds after which it is refused.
    #[serde(rename = "exp")]
    pub expires_at: u64,
    /// The upstream token to send on the user's behalf, if the upstream gave one.
    #[serde(rename = "up", default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// For an anonymous client (`user` empty): the mirror's own account the upstream token was
    /// fetched with (see `accounts`).
    #[serde(rename = "acct", default, skip_serializing_if = "Option::is_none")]
    pub account: Option<usize>,
}

impl fmt::Debug for MirrorToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MirrorToken")
            .field("user", &self.user)
            .field("registry", &self.registry)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Why a presented token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Not a mirror token at all (for instance an upstream token used directly).
    Malformed,
    /// The signature does not match: forged or tampered with.
    BadSignature,
    Expired,
}

impl MirrorToken {
    pub fn sign(&self, secret: &TokenSecret) -> String {
        let payload = serde_json::to_vec(self).expect("a token serializes");
        let signed = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(payload));
        let mut mac = secret.mac();
        mac.update(signed.as_bytes());
        let tag = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signed}.{tag}")
    }

    /// Checks the signature (in constant time) and then the expiry against `now` (Unix seconds).
    pub fn verify(token: &str, secret: &TokenSecret, now: u64) -> Result<MirrorToken, TokenError> {
        if token.len() > MAX_TOKEN_LEN || !token.starts_with(PREFIX) {
            return Err(TokenError::Malformed);
        }
        let (signed, tag) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| TokenError::Malformed)?;
        let mut mac = secret.mac();
        mac.update(signed.as_bytes());
        mac.verify_slice(&tag)
            .map_err(|_| TokenError::BadSignature)?;
        let payload = URL_SAFE_NO_PAD
            .decode(&signed[PREFIX.len()..])
            .map_err(|_| TokenError::Malformed)?;
        let claims: MirrorToken =
            serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
        if claims.expires_at <= now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

/// A token service's answer, as Docker Hub and distribution's token servers give it.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamToken {
    pub token: String,
    pub expires_in: u64,
}

impl fmt::Debug for UpstreamToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamToken")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

impl UpstreamToken {
    /// Reads `{"token"|"access_token", "expires_in"}`; a refresh token, if any, is dropped here.
    pub fn parse(body: &[u8]) -> Option<UpstreamToken> {
        #[derive(Deserialize)]
        struct Answer {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<serde_json::Value>,
        }
        let answer: Answer = serde_json::from_slice(body).ok()?;
        let token = answer
            .token
            .filter(|t| !t.is_empty())
            .or(answer.access_token.filter(|t| !t.is_empty()))?;
        let expires_in = match answer.expires_in {
            Some(serde_json::Value::Number(n)) => n.as_u64().filter(|&n| n > 0),
            _ => None,
        }
        .unwrap_or(DEFAULT_EXPIRES_IN);
        Some(UpstreamToken { token, expires_in })
    }
}

/// The JSON the mirror's `/token` answers: `{"token","access_token","expires_in","issued_at"}`.
/// There is never a refresh token in it.
pub fn token_answer(token: &str, expires_in: u64, now: u64) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "token": token,
        "access_token": token,
        "expires_in": expires_in,
        "issued_at": rfc3339(now),
    }))
    .expect("a token answer serializes")
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (the civil-from-days algorithm, proleptic Gregorian).
pub fn rfc3339(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> TokenSecret {
        TokenSecret::new("0123456789abcdef-test").unwrap()
    }

    fn token(expires_at: u64) -> MirrorToken {
        MirrorToken {
            user: "alice".into(),
            registry: "docker.io".into(),
            expires_at,
            upstream: Some("upstream.jwt.value".into()),
            account: None,
        }
    }

    #[test]
    fn sign_then_verify() {
        let signed = token(1000).sign(&secret());
        assert_eq!(
            MirrorToken::verify(&signed, &secret(), 999),
            Ok(token(1000))
        );
    }

    #[test]
    fn expired() {
        let signed = token(1000).sign(&secret());
        assert_eq!(
            MirrorToken::verify(&signed, &secret(), 1000),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn other_secret_or_tampering_is_refused() {
        let signed = token(1000).sign(&secret());
        let other = TokenSecret::new("another-secret-of-16").unwrap();
        assert_eq!(
            MirrorToken::verify(&signed, &other, 1),
            Err(TokenError::BadSignature)
        );
        // Swap in a payload for another user, keeping the old signature.
        let (_, tag) = signed.rsplit_once('.').unwrap();
        let mut forged_claims = token(1000);
        forged_claims.user = "mallory".into();
        let forged_payload = forged_claims.sign(&other);
        let (forged_signed, _) = forged_payload.rsplit_once('.').unwrap();
        let forged = format!("{forged_signed}.{tag}");
        assert_eq!(
            MirrorToken::verify(&forged, &secret(), 1),
            Err(TokenError::BadSignature)
        );
        // Flip one character of the payload.
        let mut bytes = signed.clone().into_bytes();
        bytes[6] = if bytes[6] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(bytes).unwrap();
        assert_eq!(
            MirrorToken::verify(&flipped, &secret(), 1),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn not_a_mirror_token() {
        for bad in [
            "",
            "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.sig",
            "rm1.",
            "rm1.abc",
            "rm1.abc.!!!",
            "rm1..",
        ] {
            assert!(
                matches!(
                    MirrorToken::verify(bad, &secret(), 1),
                    Err(TokenError::Malformed | TokenError::BadSignature)
                ),
                "{bad}"
            );
        }
        let huge = format!("rm1.{}", "a".repeat(MAX_TOKEN_LEN));
        assert_eq!(
            MirrorToken::verify(&huge, &secret(), 1),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn short_secret_is_refused() {
        assert!(TokenSecret::new("short").is_err());
        assert!(!format!("{:?}", secret()).contains("0123"));
    }

    #[test]
    fn upstream_answers() {
        let t =
            UpstreamToken::parse(br#"{"token":"abc","expires_in":300,"issued_at":"x"}"#).unwrap();
        assert_eq!(t.token, "abc");
        assert_eq!(t.expires_in, 300);
        let t = UpstreamToken::parse(br#"{"access_token":"xyz","refresh_token":"r"}"#).unwrap();
        assert_eq!(t.token, "xyz");
        assert_eq!(t.expires_in, DEFAULT_EXPIRES_IN);
        assert!(UpstreamToken::parse(br#"{"token":""}"#).is_none());
        assert!(UpstreamToken::parse(b"not json").is_none());
    }

    #[test]
    fn answers_carry_no_refresh_token() {
        let body = token_answer("t", 300, 0);
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["token"], "t");
        assert_eq!(value["access_token"], "t");
        assert_eq!(value["expires_in"], 300);
        assert_eq!(value["issued_at"], "1970-01-01T00:00:00Z");
        assert!(value.get("refresh_token").is_none());
    }

    #[test]
    fn dates() {
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_083_199), "2026-11-30T23:59:59Z");
    }
}
