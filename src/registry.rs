//! The table of upstream registries, and how a client's repository name maps onto one of them.
//!
//! A registry is data: a name, an upstream URL and its quirks (Docker Hub's `library/` namespace for
//! official images). Adding a registry adds a row, not code. The upstream URL is the only host the
//! mirror dials for that registry, besides the token realm and storage hosts that upstream names.

use std::fmt;

/// Where an upstream registry is: `scheme://host[:port]`, nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    scheme: String,
    authority: String,
}

impl UpstreamUrl {
    /// Accepts `http(s)://host[:port]` with an optional trailing `/`; refuses paths, queries and
    /// user info, which would make the table say more than where to connect.
    pub fn parse(text: &str) -> Result<UpstreamUrl, String> {
        let uri: http::Uri = text
            .parse()
            .map_err(|e| format!("{text:?} is not a URL: {e}"))?;
        let scheme = match uri.scheme_str() {
            Some("http") => "http",
            Some("https") => "https",
            _ => return Err(format!("{text:?} must start with http:// or https://")),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| format!("{text:?} has no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!("{text:?} must not carry user info"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(format!("{text:?} must have no path or query"));
        }
        Ok(UpstreamUrl {
            scheme: scheme.to_string(),
            authority: authority.as_str().to_ascii_lowercase(),
        })
    }

    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// `host[:port]`.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The absolute URL of `path_and_query` (which starts with `/`) on this upstream.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}://{}{}", self.scheme, self.authority, path_and_query)
    }
}

impl fmt::Display for UpstreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.authority)
    }
}

/// One upstream registry.
#[derive(Debug, Clone)]
pub struct Registry {
    /// The registry's own host name as users write it in image names: `docker.io`.
    pub name: String,
    pub upstream: UpstreamUrl,
    /// The namespace of single-component names (`alpine` is `library/alpine` on Docker Hub).
    pub official_namespace: Option<String>,
}

impl Registry {
    /// Docker Hub: `registry-1.docker.io`, where `alpine` means `library/alpine`.
    pub fn docker_hub(upstream: UpstreamUrl) -> Registry {
        Registry {
            name: "docker.io".to_string(),
            upstream,
            official_namespace: Some("library".to_string()),
        }
    }

    /// The URL of Docker Hub's registry API.
    pub const DOCKER_HUB_UPSTREAM: &'static str = "https://registry-1.docker.io";

    /// The repository name as the upstream knows it: `alpine` → `library/alpine` on Docker Hub,
    /// done here rather than by a 301 round trip.
    pub fn upstream_name(&self, name: &str) -> String {
        match &self.official_namespace {
            Some(namespace) if !name.contains('/') => format!("{namespace}/{name}"),
            _ => name.to_string(),
        }
    }
}

/// A client's repository name resolved to a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Index into the table.
    pub registry: usize,
    /// The name within that registry, as the upstream knows it (`library/alpine`).
    pub upstream_name: String,
}

/// The configured registries; the first is the one names without a registry prefix go to.
#[derive(Debug, Clone)]
pub struct Registries {
    entries: Vec<Registry>,
}

impl Registries {
    pub fn new(entries: Vec<Registry>) -> Registries {
        assert!(!entries.is_empty(), "at least one registry");
        Registries { entries }
    }

    pub fn get(&self, index: usize) -> &Registry {
        &self.entries[index]
    }

    pub fn iter(&self) -> impl Iterator<Item = &Registry> {
        self.entries.iter()
    }

    /// Which registry a (grammar-checked) repository name is for. A first component that is a
    /// configured registry's name selects it (`docker.io/library/alpine`); any other name is the
    /// default registry's. Names are lookup keys here, never hosts to dial.
    pub fn resolve(&self, name: &str) -> Resolved {
        if let Some((first, rest)) = name.split_once('/') {
            if let Some(index) = self.entries.iter().position(|r| r.name == first) {
                return Resolved {
                    registry: index,
                    upstream_name: self.entries[index].upstream_name(rest),
                };
            }
        }
        Resolved {
            registry: 0,
            upstream_name: self.entries[0].upstream_name(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub() -> Registries {
        Registries::new(vec![Registry::docker_hub(
            UpstreamUrl::parse(Registry::DOCKER_HUB_UPSTREAM).unwrap(),
        )])
    }

    #[test]
    fn upstream_urls() {
        let u = UpstreamUrl::parse("https://Registry-1.docker.io/").unwrap();
        assert_eq!(u.url("/v2/"), "https://registry-1.docker.io/v2/");
        assert_eq!(
            UpstreamUrl::parse("http://127.0.0.1:5000")
                .unwrap()
                .authority(),
            "127.0.0.1:5000"
        );
        for bad in [
            "ftp://x",
            "registry-1.docker.io",
            "https://x/path",
            "https://u:p@x",
            "https://x/?q",
            "",
        ] {
            assert!(UpstreamUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn docker_hub_names_get_library() {
        let registries = hub();
        assert_eq!(registries.resolve("alpine").upstream_name, "library/alpine");
        assert_eq!(
            registries.resolve("library/alpine").upstream_name,
            "library/alpine"
        );
        assert_eq!(
            registries.resolve("bitnami/redis").upstream_name,
            "bitnami/redis"
        );
        let prefixed = registries.resolve("docker.io/alpine");
        assert_eq!(prefixed.registry, 0);
        assert_eq!(prefixed.upstream_name, "library/alpine");
        assert_eq!(
            registries.resolve("docker.io/bitnami/redis").upstream_name,
            "bitnami/redis"
        );
    }
}
