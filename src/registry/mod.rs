//! The table of upstream registries, and how a client's repository name maps onto one of them.
//!
//! A registry is data: a name, an upstream URL and its quirks (Docker Hub's `library/` namespace for
//! official images). Adding a registry adds a row, not code. The upstream URL is the only host the
//! mirror dials for that registry, besides the token realm and storage hosts that upstream names.

pub mod errors;
pub mod reference;
pub mod route;
pub mod upstream;

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
    /// The mirror host name that serves this registry alone (`REGISTRY_GHCR=ghcr.mirror.example`).
    pub mirror_host: Option<String>,
    /// `UPSTREAM_AUTH_<NAME>`: the mirror's own accounts, for clients without credentials.
    pub accounts: Vec<crate::auth::BasicCredentials>,
}

/// A registry the mirror knows, as data: its name, where it is, its quirks, and the names of the
/// settings that override its upstream and give it a host of its own.
pub struct Builtin {
    pub name: &'static str,
    pub upstream: &'static str,
    pub official_namespace: Option<&'static str>,
    /// The setting naming the mirror host that serves this registry (the original project's names
    /// for the first five).
    pub host_setting: &'static str,
    /// The hosts a pull from it dials besides its API, as far as they are fixed: its token service
    /// and the storage its blob redirects lead to. Fastly needs a backend for each (`fastly.toml`
    /// declares them all; a test holds the two together).
    pub fixed_hosts: &'static [&'static str],
    /// Where its blobs come from when that is not a fixed list (regional or per-image hosts),
    /// which Fastly reaches only with dynamic backends; `None` when `fixed_hosts` covers them.
    pub varying_storage: Option<&'static str>,
}

/// Where Docker Hub redirects blob downloads: the pull hosts of Docker's own allow-list (docker/docs,
/// `content/manuals/desktop/setup/allow-list.md`, as of docker/docs #25122; anonymous and Personal
/// pulls go to the R2 bucket). Fastly has a static backend for each (`fastly.toml`), the CloudFront
/// relay a route (`template.yaml`), the README a line; tests hold all three to this list.
pub const DOCKER_HUB_STORAGE_HOSTS: &[&str] = &[
    "production.cloudflare.docker.com",
    "production.cloudfront.docker.com",
    "docker-images-prod.6aa30f8b08e16409b46e0173d6de2f56.r2.cloudflarestorage.com",
];

/// The registries built in. `REGISTRIES` picks some of them (default: all).
pub const BUILTIN: &[Builtin] = &[
    Builtin {
        name: "docker.io",
        upstream: "https://registry-1.docker.io",
        official_namespace: Some("library"),
        host_setting: "REGISTRY_DOCKER",
        fixed_hosts: &["auth.docker.io", "index.docker.io", "production.cloudflare.docker.com", "production.cloudfront.docker.com", "docker-images-prod.6aa30f8b08e16409b46e0173d6de2f56.r2.cloudflarestorage.com"],
        varying_storage: None,
    },
    Builtin {
        name: "ghcr.io",
        upstream: "https://ghcr.io",
        official_namespace: None,
        host_setting: "REGISTRY_GHCR",
        fixed_hosts: &["pkg-containers.githubusercontent.com"],
        varying_storage: None,
    },
    Builtin {
        name: "quay.io",
        upstream: "https://quay.io",
        official_namespace: None,
        host_setting: "REGISTRY_QUAY",
        fixed_hosts: &["cdn.quay.io", "cdn01.quay.io", "cdn02.quay.io", "cdn03.quay.io"],
        varying_storage: None,
    },
    Builtin {
        name: "gcr.io",
        upstream: "https://gcr.io",
        official_namespace: None,
        host_setting: "REGISTRY_GCR",
        fixed_hosts: &["storage.googleapis.com"],
        varying_storage: None,
    },
    Builtin {
        name: "registry.k8s.io",
        upstream: "https://registry.k8s.io",
        official_namespace: None,
        host_setting: "REGISTRY_K8S_IO",
        fixed_hosts: &[],
        varying_storage: Some("regional mirrors chosen per client: `*-docker.pkg.dev` (Artifact Registry) and `prod-registry-k8s-io-*.s3.dualstack.*.amazonaws.com`"),
    },
    Builtin {
        name: "k8s.gcr.io",
        upstream: "https://k8s.gcr.io",
        official_namespace: None,
        host_setting: "REGISTRY_K8S_GCR",
        fixed_hosts: &[],
        varying_storage: Some("redirected to registry.k8s.io and its regional mirrors"),
    },
    Builtin {
        name: "nvcr.io",
        upstream: "https://nvcr.io",
        official_namespace: None,
        host_setting: "REGISTRY_NVCR",
        fixed_hosts: &["authn.nvidia.com"],
        varying_storage: Some("a CDN host its redirects name, not published"),
    },
    Builtin {
        name: "public.ecr.aws",
        upstream: "https://public.ecr.aws",
        official_namespace: None,
        host_setting: "REGISTRY_ECR_PUBLIC",
        fixed_hosts: &[],
        varying_storage: Some("CloudFront hosts (`*.cloudfront.net`) its redirects name"),
    },
    Builtin {
        name: "mcr.microsoft.com",
        upstream: "https://mcr.microsoft.com",
        official_namespace: None,
        host_setting: "REGISTRY_MCR",
        fixed_hosts: &[],
        varying_storage: Some("regional `*.data.mcr.microsoft.com` hosts"),
    },
];

/// `UPSTREAM_<NAME>`: the registry's name upper-cased, `.` and `-` as `_` (`UPSTREAM_GHCR_IO`).
pub fn upstream_setting(name: &str) -> String {
    let name: String = name
        .chars()
        .map(|c| {
            if c == '.' || c == '-' {
                '_'
            } else {
                c.to_ascii_uppercase()
            }
        })
        .collect();
    format!("UPSTREAM_{name}")
}

impl Registry {
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
    /// The name that a token scope for it carries, so that the mirror's `/token` finds the same
    /// registry again: the client's name, with the registry in front when only `ns` chose it.
    pub scope_name: String,
}

/// Why no registry serves a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownRegistry {
    /// What the request named (an `ns`, a path prefix), or empty when nothing serves plain names.
    pub asked: String,
    /// The configured registries, for the message.
    pub known: Vec<String>,
}

impl fmt::Display for UnknownRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.asked.is_empty() {
            write!(f, "no registry serves names without a registry prefix here")?;
        } else {
            write!(f, "registry {:?} is not served by this mirror", self.asked)?;
        }
        write!(f, "; it serves: {}", self.known.join(", "))
    }
}

/// Why a token request's scopes select no single registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectError {
    Unknown(UnknownRegistry),
    /// Scopes that name two registries.
    Several,
}

/// The configured registries.
#[derive(Debug, Clone)]
pub struct Registries {
    entries: Vec<Registry>,
}

impl Registries {
    pub fn new(entries: Vec<Registry>) -> Registries {
        Registries { entries }
    }

    pub fn get(&self, index: usize) -> &Registry {
        &self.entries[index]
    }

    pub fn iter(&self) -> impl Iterator<Item = &Registry> {
        self.entries.iter()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn by_name(&self, name: &str) -> Option<usize> {
        self.entries.iter().position(|r| r.name == name)
    }

    fn unknown(&self, asked: &str) -> UnknownRegistry {
        UnknownRegistry {
            asked: asked.chars().take(100).collect(),
            known: self.entries.iter().map(|r| r.name.clone()).collect(),
        }
    }

    /// The registry whose own mirror host `host` is (`Host` without a port also matches).
    pub fn by_mirror_host(&self, host: &str) -> Option<usize> {
        let bare = host.rsplit_once(':').map_or(host, |(h, _)| h);
        self.entries.iter().position(|r| {
            r.mirror_host
                .as_deref()
                .is_some_and(|m| m.eq_ignore_ascii_case(host) || m.eq_ignore_ascii_case(bare))
        })
    }

    /// A name that starts with a registry (`ghcr.io/owner/image`): that registry and the rest.
    /// `Some(Err)` for a first component that looks like a host (it has a `.`, or is `localhost`)
    /// but names no configured registry; `None` for a plain name.
    pub fn explicit<'n>(&self, name: &'n str) -> Option<Result<(usize, &'n str), UnknownRegistry>> {
        let (first, rest) = name.split_once('/')?;
        match self.by_name(first) {
            Some(index) => Some(Ok((index, rest))),
            None if first.contains('.') || first == "localhost" => Some(Err(self.unknown(first))),
            None => None,
        }
    }

    /// The registry of a token request, and each scope's name as that upstream knows it. The
    /// scopes the mirror's challenges carry name the registry (`ghcr.io/owner/image`) unless the
    /// host chose it; clients may add plain ones of their own (containerd adds `owner/image`),
    /// which are names in the same registry.
    pub fn select_for_token(
        &self,
        host: &str,
        names: &[&str],
    ) -> Result<(usize, Vec<String>), SelectError> {
        let mut chosen = None;
        for name in names {
            if let Some(explicit) = self.explicit(name) {
                let (index, _) = explicit.map_err(SelectError::Unknown)?;
                if chosen.is_some_and(|c| c != index) {
                    return Err(SelectError::Several);
                }
                chosen = Some(index);
            }
        }
        let registry = match chosen.or_else(|| self.by_mirror_host(host)) {
            Some(index) => index,
            None => match names.first() {
                Some(name) => {
                    self.select(host, None, name)
                        .map_err(SelectError::Unknown)?
                        .registry
                }
                // `docker login`, with no repository: Docker Hub, or the first registry.
                None => self.by_name("docker.io").unwrap_or(0),
            },
        };
        let entry = &self.entries[registry];
        let upstream_names = names
            .iter()
            .map(|name| match self.explicit(name) {
                Some(Ok((_, rest))) => entry.upstream_name(rest),
                _ => entry.upstream_name(name),
            })
            .collect();
        Ok((registry, upstream_names))
    }

    /// The name the upstream `registry` knows a client's repository `name` by, for a request the
    /// mirror has already routed there (`alpine` and `docker.io/library/alpine` are both
    /// `library/alpine` on Docker Hub); `name` as it is for a registry not in the table.
    pub fn upstream_repository(&self, registry: &str, name: &str) -> String {
        let Some(index) = self.by_name(registry) else {
            return name.to_string();
        };
        let prefix = format!("{registry}/");
        let bare = name.strip_prefix(&prefix).unwrap_or(name);
        self.entries[index].upstream_name(bare)
    }

    /// Which registry a (grammar-checked) repository name is for, in this order:
    /// 1. `ns` (containerd's mirror parameter), when given; a registry prefix in the name still
    ///    wins, as containerd sends `ns` with `override_path` paths too;
    /// 2. the request's host, when it is a registry's own mirror host (`REGISTRY_GHCR`);
    /// 3. a first component that names a registry (`ghcr.io/owner/image`); a first component
    ///    that looks like a host (it has a `.`, or is `localhost`) but names none is refused;
    /// 4. otherwise Docker Hub, when it is configured.
    ///
    /// Every key is looked up in the table; none is ever a host to dial.
    pub fn select(
        &self,
        host: &str,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Resolved, UnknownRegistry> {
        let plain = |index: usize, scope_name: String| Resolved {
            registry: index,
            upstream_name: self.entries[index].upstream_name(name),
            scope_name,
        };
        let prefixed = |index: usize, rest: &str| Resolved {
            registry: index,
            upstream_name: self.entries[index].upstream_name(rest),
            scope_name: name.to_string(),
        };
        if let Some(ns) = ns {
            let index = self.by_name(ns).ok_or_else(|| self.unknown(ns))?;
            // containerd sends ns with override_path too: a registry prefix in the path wins.
            if let Some(Ok((named, rest))) = self.explicit(name) {
                return Ok(prefixed(named, rest));
            }
            return Ok(plain(index, format!("{}/{name}", self.entries[index].name)));
        }
        if let Some(index) = self.by_mirror_host(host) {
            return Ok(plain(index, name.to_string()));
        }
        if let Some(explicit) = self.explicit(name) {
            let (index, rest) = explicit?;
            return Ok(prefixed(index, rest));
        }
        match self.by_name("docker.io") {
            Some(index) => Ok(plain(index, name.to_string())),
            None => Err(self.unknown("")),
        }
    }
}

#[cfg(test)]
mod tests;
