//! Every setting of every runtime, with its default and what it does: the one table the docs show
//! (`docs/settings.md` is generated from [`markdown`], and a test holds the two together and to
//! the names the code reads).

/// Which runtimes read a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtimes {
    /// The local server, Fastly and Lambda.
    All,
    /// The local server only.
    Local,
    /// The local server and Lambda (the native driver and store).
    Native,
    /// Lambda only.
    Lambda,
}

impl Runtimes {
    fn label(self) -> &'static str {
        match self {
            Runtimes::All => "all",
            Runtimes::Local => "local server",
            Runtimes::Native => "local server, Lambda",
            Runtimes::Lambda => "Lambda",
        }
    }
}

/// One row of the table.
pub struct Setting {
    pub name: &'static str,
    pub default: &'static str,
    pub runtimes: Runtimes,
    pub meaning: &'static str,
}

const fn row(
    name: &'static str,
    default: &'static str,
    runtimes: Runtimes,
    meaning: &'static str,
) -> Setting {
    Setting {
        name,
        default,
        runtimes,
        meaning,
    }
}

use Runtimes::{All, Lambda, Local, Native};

/// Every setting. An empty value counts as unset everywhere.
pub const TABLE: &[Setting] = &[
    row("LISTEN", "`127.0.0.1:5000`", Local, "address to serve on (also `--listen ADDR`); `[::]:5000` serves IPv6 and IPv4"),
    row("REGISTRIES", "all nine", All, "the built-in registries to serve, comma-separated"),
    row("UPSTREAM_<NAME>", "each registry's own", All, "a registry's upstream (`UPSTREAM_DOCKER_IO`, `UPSTREAM_GHCR_IO`): `https://host[:port]`, to chain to another mirror, or a registry of your own"),
    row("REGISTRY_<NAME>", "unset", All, "the mirror host name that serves one registry alone (`REGISTRY_GHCR`, `REGISTRY_QUAY`, …)"),
    row("UPSTREAM_SEARCH", "`https://index.docker.io`", All, "where `/v1/search` goes"),
    row("WHITE_LIST", "unset", All, "comma-separated Docker Hub users allowed to pull; unset means anyone may"),
    row("TOKEN_SECRET", "unset", All, "signs the mirror's tokens; required with `WHITE_LIST`, at least 16 characters; on an open mirror it signs anonymous clients' tokens (for stale answers on every instance)"),
    row("ALLOW_NETWORKS", "unset", All, "networks (`10.0.0.0/8`) or addresses, comma-separated, whose clients pull without credentials past `WHITE_LIST`; refused without `WHITE_LIST` (an open mirror lets every network in)"),
    row("UPSTREAM_AUTH_<NAME>", "unset", All, "`user:token,…`: the mirror's own accounts at that registry, for clients without credentials"),
    row("PUBLIC_URL", "unset", All, "`https://host[:port]` clients use; the realm of the mirror's challenge behind a TLS terminator"),
    row("TRUST_FORWARDED_HEADERS", "`false`", All, "behind a proxy you run: scheme and host from `X-Forwarded-Proto` / `-Host`, the client's address from the last `X-Forwarded-For` entry (one that does not parse: an unknown client)"),
    row("BLOB_REDIRECTS", "`follow` (Lambda: `large`)", All, "`follow`: the mirror fetches a blob's storage redirect and streams it; `pass`: the client gets the redirect; `large`: stream up to `LARGE_BLOB_BYTES`, redirect larger ones (Lambda takes `large` or `pass`)"),
    row("LARGE_BLOB_BYTES", "`4194304`", All, "with `BLOB_REDIRECTS=large`, the largest blob streamed (at most 4194304 on Lambda)"),
    row("STORAGE_RELAY", "unset", All, "`host=https://relay/prefix` (or `host=/prefix`, on the mirror's own address), comma-separated: redirects to storage on `host`, and the store's signed URLs on it, are rewritten to the relay"),
    row("CACHE", "local server: `$XDG_CACHE_HOME/registry-mirror`; Lambda: the template's bucket; Fastly: its cache", All, "the content store: `file:///absolute/path`, `s3://bucket/prefix` (with the `AWS_*` variables), or `none`"),
    row("CACHE_MAX_BYTES", "`10737418240` (10 GiB)", Local, "the most a directory store holds: past it the least recently served go, down to 90 %; an object over a quarter of it is not stored"),
    row("TAG_STALE_MAX_SECS", "`604800` (7 days)", All, "with a store: how long after the registry last showed it a tag's digest (and public content) is served when the registry fails; `0`: never"),
    row("TAG_TTL_SECS", "`0`", All, "with a store: how long an anonymous client's tag is served from its record without asking the registry; `0`: always ask (with a `HEAD`)"),
    row("HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY", "unset", Local, "an HTTP proxy for `https://` and `http://` upstreams (either case, as curl reads them); `NO_PROXY` lists hosts, domains or networks dialled directly (the store's bucket, say)"),
    row("COPY_TIMEOUT_SECS", "`50`", Lambda, "the longest a blob's copy into the bucket keeps its client waiting (a copy that will not end in time is given up early): then the client goes to the upstream's storage; under CloudFront's 60 s origin read timeout"),
    row("UPSTREAM_TIMEOUT_SECS", "`30`", Native, "the longest wait for an upstream's answer; then `503 UNAVAILABLE`"),
    row("AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "AWS's", Native, "the bucket of `CACHE=s3://…` (an `http://` endpoint is spoken to in plain HTTP); without `AWS_ACCESS_KEY_ID`, the AWS CLI's chain (`AWS_PROFILE`, the shared files, SSO, web identity, container, instance)"),
    row("TOKEN_SECRET_ARN, UPSTREAM_AUTH_<NAME>_ARN", "unset", Lambda, "the secret's value from Secrets Manager, when the setting itself is unset"),
    row("TLS_CERT, TLS_KEY", "unset", Local, "PEM files of the certificate (chain) and its key: HTTPS with HTTP/2 and HTTP/1.1; reloaded on `SIGHUP`"),
    row("ACME_DOMAINS", "unset", Local, "names to get a certificate for by ACME (TLS-ALPN-01 on the server's port, which must be 443 to the world)"),
    row("ACME_CONTACT", "unset", Local, "e-mail addresses for the ACME account"),
    row("ACME_DIRECTORY", "Let's Encrypt", Local, "the ACME server's directory URL"),
    row("ACME_CA_ROOT", "unset", Local, "a PEM root to trust for the ACME server's API"),
    row("METRICS_LISTEN", "unset", Local, "the address (`127.0.0.1:9090`) that serves Prometheus metrics at `/metrics`"),
    row("SHUTDOWN_GRACE_SECS", "`30`", Local, "on `SIGTERM`, how long transfers in flight may take to finish"),
    row("CLIENT_IDLE_TIMEOUT_SECS", "`60`", Local, "a client that takes no bytes of a response for this long loses its connection"),
    row("MAX_CONNECTIONS_PER_IP", "`128`", Local, "the most open connections from one address (IPv6: its /64); with `TRUST_FORWARDED_HEADERS`, the most requests at once from one forwarded address (more get `429`)"),
    row("RUST_LOG", "`info`", Native, "log filter: a level (`error`, `warn`, `info`, `debug`, `trace`, `off`), or targets and levels (`warn,registry_mirror::native::store=debug`; the commands default to `warn`)"),
    row("LOG_FORMAT", "`text` (Lambda: `json`)", Native, "`text` or `json` (one JSON object a line)"),
];

/// The table as Markdown, as `docs/settings.md` shows it.
pub fn markdown() -> String {
    let mut out =
        String::from("| setting | default | runtimes | meaning |\n| --- | --- | --- | --- |\n");
    for s in TABLE {
        let names: Vec<String> = s.name.split(", ").map(|n| format!("`{n}`")).collect();
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            names.join(", "),
            s.default,
            s.runtimes.label(),
            s.meaning
        ));
    }
    out
}

/// Every name in the table, one by one.
pub fn names() -> impl Iterator<Item = &'static str> {
    TABLE.iter().flat_map(|s| s.name.split(", "))
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_setting_the_core_reads_is_in_the_table() {
        let names: Vec<&str> = super::names().collect();
        for setting in super::super::SETTINGS {
            assert!(names.contains(setting), "{setting} is not in the table");
        }
    }
}
