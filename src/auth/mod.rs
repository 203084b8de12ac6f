//! Credentials and challenges: parsing `WWW-Authenticate` and `Authorization`, building the
//! mirror's own challenge, and the `WHITE_LIST` of users.
//!
//! The mirror points every client at its own `/token` endpoint: the upstream's realm is learnt from
//! the upstream's challenge and kept inside the mirror, so clients never need to reach it.

pub mod accounts;
pub mod anonymous_tokens;
pub mod client_address;
pub mod throttle;
pub mod token;

use base64::Engine;
use std::fmt;

/// The parameters of a `Bearer` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub service: Option<String>,
    pub scope: Option<String>,
}

/// Parses `Bearer realm="…",service="…",scope="…"`. Other schemes, and a Bearer challenge without a
/// realm, give `None`.
pub fn parse_challenge(value: &str) -> Option<Challenge> {
    let value = value.trim_start();
    let (scheme, params) = value.split_once(|c: char| c.is_ascii_whitespace())?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut realm = None;
    let mut service = None;
    let mut scope = None;
    for (key, val) in parse_auth_params(params)? {
        match key.to_ascii_lowercase().as_str() {
            "realm" => realm = Some(val),
            "service" => service = Some(val),
            "scope" => scope = Some(val),
            _ => {}
        }
    }
    Some(Challenge {
        realm: realm.filter(|r| !r.is_empty())?,
        service,
        scope,
    })
}

/// `key=value` or `key="quoted \" value"`, separated by commas (RFC 7235 auth-params).
fn parse_auth_params(text: &str) -> Option<Vec<(String, String)>> {
    let mut params = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(c) if c.is_ascii_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Some(params);
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_ascii_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while matches!(chars.peek(), Some(c) if c.is_ascii_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') || key.is_empty() {
            return None;
        }
        while matches!(chars.peek(), Some(c) if c.is_ascii_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => value.push(chars.next()?),
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c.is_ascii_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        params.push((key, value));
    }
}

/// The mirror's own challenge: `Bearer realm="<realm>",service="<service>"[,scope="<scope>"]`.
pub fn challenge_header(realm: &str, service: &str, scope: Option<&str>) -> String {
    let mut value = format!(
        "Bearer realm=\"{}\",service=\"{}\"",
        quote(realm),
        quote(service)
    );
    if let Some(scope) = scope {
        value.push_str(&format!(",scope=\"{}\"", quote(scope)));
    }
    value
}

fn quote(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// A user name and password from `Authorization: Basic`. The password never appears in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct BasicCredentials {
    pub user: String,
    pub password: String,
}

impl fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicCredentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl BasicCredentials {
    /// The `Authorization` header value that sends these credentials on.
    pub fn header_value(&self) -> String {
        let raw = format!("{}:{}", self.user, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// What an `Authorization` header carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorization {
    Basic(BasicCredentials),
    Bearer(String),
}

/// Why an `Authorization` header was not understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorizationError {
    UnknownScheme,
    BadBase64,
    NoColon,
    NotUtf8,
    EmptyToken,
}

/// Parses an `Authorization` header's value.
pub fn parse_authorization(value: &[u8]) -> Result<Authorization, AuthorizationError> {
    let text = std::str::from_utf8(value).map_err(|_| AuthorizationError::NotUtf8)?;
    let text = text.trim();
    let (scheme, rest) = text
        .split_once(' ')
        .ok_or(AuthorizationError::UnknownScheme)?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .map_err(|_| AuthorizationError::BadBase64)?;
        let decoded = String::from_utf8(decoded).map_err(|_| AuthorizationError::NotUtf8)?;
        let (user, password) = decoded.split_once(':').ok_or(AuthorizationError::NoColon)?;
        Ok(Authorization::Basic(BasicCredentials {
            user: user.to_string(),
            password: password.to_string(),
        }))
    } else if scheme.eq_ignore_ascii_case("bearer") {
        if rest.is_empty() {
            return Err(AuthorizationError::EmptyToken);
        }
        Ok(Authorization::Bearer(rest.to_string()))
    } else {
        Err(AuthorizationError::UnknownScheme)
    }
}

/// `WHITE_LIST`: the Docker Hub user names allowed to use the mirror.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Whitelist {
    users: Vec<String>,
}

impl Whitelist {
    /// A comma-separated list; blanks around names are ignored, and so is case (Docker Hub user
    /// names are case-insensitive).
    pub fn parse(text: &str) -> Option<Whitelist> {
        let users: Vec<String> = text
            .split(',')
            .map(|u| u.trim().to_ascii_lowercase())
            .filter(|u| !u.is_empty())
            .collect();
        (!users.is_empty()).then_some(Whitelist { users })
    }

    pub fn allows(&self, user: &str) -> bool {
        let user = user.to_ascii_lowercase();
        self.users.contains(&user)
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_challenge() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
        )
        .unwrap();
        assert_eq!(c.realm, "https://auth.docker.io/token");
        assert_eq!(c.service.as_deref(), Some("registry.docker.io"));
        assert_eq!(c.scope.as_deref(), Some("repository:library/alpine:pull"));
    }

    #[test]
    fn challenge_variants() {
        let c = parse_challenge("bearer  realm=\"r\\\"x\" , service=svc").unwrap();
        assert_eq!(c.realm, "r\"x");
        assert_eq!(c.service.as_deref(), Some("svc"));
        assert!(parse_challenge("Basic realm=\"x\"").is_none());
        assert!(parse_challenge("Bearer service=\"x\"").is_none());
        assert!(parse_challenge("Bearer realm=\"unterminated").is_none());
        assert!(parse_challenge("Bearer =x").is_none());
        assert!(parse_challenge("").is_none());
        assert!(parse_challenge("Bearer").is_none());
    }

    #[test]
    fn challenge_round_trip() {
        let header = challenge_header("http://m/token", "m", Some("repository:a:pull"));
        assert_eq!(
            header,
            r#"Bearer realm="http://m/token",service="m",scope="repository:a:pull""#
        );
        let parsed = parse_challenge(&header).unwrap();
        assert_eq!(parsed.scope.as_deref(), Some("repository:a:pull"));
        let tricky = challenge_header("a\"b", "s\\", None);
        assert_eq!(parse_challenge(&tricky).unwrap().realm, "a\"b");
    }

    #[test]
    fn basic_and_bearer() {
        let creds = BasicCredentials {
            user: "alice".into(),
            password: "p:ss".into(),
        };
        let header = creds.header_value();
        assert_eq!(
            parse_authorization(header.as_bytes()),
            Ok(Authorization::Basic(creds.clone()))
        );
        assert!(!format!("{creds:?}").contains("p:ss"));
        assert_eq!(
            parse_authorization(b"Bearer abc"),
            Ok(Authorization::Bearer("abc".into()))
        );
        assert_eq!(
            parse_authorization(b"Basic !!!"),
            Err(AuthorizationError::BadBase64)
        );
        assert_eq!(
            parse_authorization(b"Basic YWxpY2U="),
            Err(AuthorizationError::NoColon)
        );
        assert_eq!(
            parse_authorization(b"Digest x"),
            Err(AuthorizationError::UnknownScheme)
        );
        assert_eq!(
            parse_authorization(b"Bearer "),
            Err(AuthorizationError::UnknownScheme)
        );
        assert_eq!(
            parse_authorization(b"Bearer\xff x"),
            Err(AuthorizationError::NotUtf8)
        );
    }

    #[test]
    fn whitelist() {
        let list = Whitelist::parse(" Alice, bob ,,").unwrap();
        assert!(list.allows("alice"));
        assert!(list.allows("BOB"));
        assert!(!list.allows("carol"));
        assert!(!list.allows(""));
        assert!(Whitelist::parse(" , ").is_none());
    }
}
