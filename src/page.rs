//! The page a person sees at `/`: how to point each client at this mirror, with the mirror's own
//! host filled in, in English or Chinese, and a search box over Docker Hub's search.
//!
//! One self-contained HTML document (no external fonts, scripts or CDNs), made here from the
//! configuration, so that it is right for the deployment it is served by.

use crate::config::Config;

/// The languages of the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    English,
    Chinese,
}

impl Language {
    /// `?lang=` wins; then the first of `Accept-Language` that is Chinese or English.
    pub fn choose(query_lang: Option<&str>, accept_language: Option<&str>) -> Language {
        match query_lang {
            Some(l) if l.starts_with("zh") => return Language::Chinese,
            Some(l) if l.starts_with("en") => return Language::English,
            _ => {}
        }
        for tag in accept_language.unwrap_or("").split(',') {
            let tag = tag
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if tag.starts_with("zh") {
                return Language::Chinese;
            }
            if tag.starts_with("en") {
                return Language::English;
            }
        }
        Language::English
    }

    fn code(self) -> &'static str {
        match self {
            Language::English => "en",
            Language::Chinese => "zh-CN",
        }
    }
}

/// The page's words in one language.
struct Words {
    title: &'static str,
    intro: &'static str,
    docker: &'static str,
    docker_note: &'static str,
    /// For a plain-HTTP mirror: what dockerd needs too.
    plain_http: &'static str,
    /// For an HTTPS mirror: where a private CA goes (HOST is the mirror's address).
    private_ca: &'static str,
    explicit: &'static str,
    podman: &'static str,
    containerd: &'static str,
    containerd_ns: &'static str,
    containerd_other: &'static str,
    k3s: &'static str,
    registries: &'static str,
    registry: &'static str,
    by_host: &'static str,
    by_prefix: &'static str,
    by_ns: &'static str,
    login_needed: &'static str,
    login_open: &'static str,
    search: &'static str,
    search_button: &'static str,
    no_results: &'static str,
    switch: &'static str,
}

const ENGLISH: Words = Words {
    title: "Docker Hub mirror",
    intro: "A pull-through mirror of Docker Hub and other registries. Point your client at it and pull as usual.",
    docker: "Docker: /etc/docker/daemon.json, then restart Docker",
    docker_note: "dockerd uses registry-mirrors for Docker Hub images only.",
    plain_http: "This mirror speaks plain HTTP: dockerd also needs it in insecure-registries (podman: insecure = true; containerd: a http:// server).",
    private_ca: "With a certificate from a private CA: /etc/docker/certs.d/HOST/ca.crt for dockerd, /etc/containers/certs.d/HOST/ca.crt for podman, ca = \"...\" in containerd's hosts.toml.",
    explicit: "Or pull through the mirror by name",
    podman: "podman: /etc/containers/registries.conf",
    containerd: "containerd: /etc/containerd/certs.d/docker.io/hosts.toml (containerd adds ?ns=docker.io itself)",
    containerd_ns: "containerd, other registries: /etc/containerd/certs.d/REGISTRY/hosts.toml (with ns)",
    containerd_other: "or with the path prefix (override_path)",
    k3s: "k3s: /etc/rancher/k3s/registries.yaml",
    registries: "Registries",
    registry: "registry",
    by_host: "own host",
    by_prefix: "path prefix",
    by_ns: "containerd ns",
    login_needed: "This mirror is private: run docker login with your Docker Hub account first.",
    login_open: "No login is needed.",
    search: "Search Docker Hub",
    search_button: "Search",
    no_results: "No results.",
    switch: "中文",
};

const CHINESE: Words = Words {
    title: "Docker Hub 镜像加速",
    intro: "Docker Hub 及其他镜像仓库的拉取代理。把客户端指向它，照常拉取即可。",
    docker: "Docker：编辑 /etc/docker/daemon.json，然后重启 Docker",
    docker_note: "dockerd 的 registry-mirrors 只用于 Docker Hub 的镜像。",
    plain_http: "本镜像站使用明文 HTTP：dockerd 还需要把它加入 insecure-registries（podman：insecure = true；containerd：使用 http:// 地址）。",
    private_ca: "若证书来自私有 CA：dockerd 放在 /etc/docker/certs.d/HOST/ca.crt，podman 放在 /etc/containers/certs.d/HOST/ca.crt，containerd 在 hosts.toml 中写 ca = \"...\"。",
    explicit: "也可以通过镜像站的地址直接拉取",
    podman: "podman：/etc/containers/registries.conf",
    containerd: "containerd：/etc/containerd/certs.d/docker.io/hosts.toml（containerd 会自动加上 ?ns=docker.io）",
    containerd_ns: "containerd 其他仓库：/etc/containerd/certs.d/REGISTRY/hosts.toml（使用 ns）",
    containerd_other: "或使用路径前缀（override_path）",
    k3s: "k3s：/etc/rancher/k3s/registries.yaml",
    registries: "支持的仓库",
    registry: "仓库",
    by_host: "独立域名",
    by_prefix: "路径前缀",
    by_ns: "containerd ns",
    login_needed: "这是私有镜像站：请先用你的 Docker Hub 账号执行 docker login。",
    login_open: "无需登录。",
    search: "搜索 Docker Hub",
    search_button: "搜索",
    no_results: "没有结果。",
    switch: "English",
};

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI','PingFang SC','Microsoft YaHei',sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;color:#1d2430;line-height:1.5}\
h1{font-size:1.6rem}h2{font-size:1.1rem;margin-top:1.6rem}pre{background:#f3f5f8;border:1px solid #dde2ea;border-radius:6px;padding:.7rem;overflow-x:auto}\
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #dde2ea;padding:.35rem;text-align:left;font-size:.9rem}\
.note{color:#55606f}.lang{float:right}#results li{margin:.4rem 0}code{background:#f3f5f8;padding:0 .2rem}input{padding:.3rem;width:60%}";

/// The search box's script: `/v1/search` on this mirror, results as pull commands.
const SCRIPT: &str = r#"(function(){
var form=document.getElementById('search'),input=document.getElementById('q'),out=document.getElementById('results');
var host=document.body.getAttribute('data-host'),empty=document.body.getAttribute('data-empty');
function show(items){out.textContent='';if(!items.length){var p=document.createElement('li');p.textContent=empty;out.appendChild(p);return;}
items.forEach(function(r){var li=document.createElement('li');var b=document.createElement('b');b.textContent=r.name;li.appendChild(b);
var d=document.createElement('span');d.textContent=' '+(r.description||'')+' ';li.appendChild(d);
var c=document.createElement('code');var name=r.name.indexOf('/')<0?'library/'+r.name:r.name;c.textContent='docker pull '+host+'/'+name;li.appendChild(c);out.appendChild(li);});}
function search(q){fetch('/v1/search?n=25&q='+encodeURIComponent(q)).then(function(r){return r.json();}).then(function(j){show(j.results||[]);}).catch(function(){show([]);});}
form.addEventListener('submit',function(e){e.preventDefault();search(input.value);});
var q=new URLSearchParams(location.search).get('q');if(q){input.value=q;search(q);}
})();"#;

/// The page, for clients that reach the mirror at `scheme://host`.
pub fn render(config: &Config, scheme: &str, host: &str, language: Language) -> String {
    let w = match language {
        Language::English => &ENGLISH,
        Language::Chinese => &CHINESE,
    };
    let h = escape(host);
    let url = escape(&format!("{scheme}://{host}"));
    let switch = match language {
        Language::English => "zh",
        Language::Chinese => "en",
    };
    let login = if config.whitelist.is_some() {
        format!(
            "<p><b>{}</b></p><pre>docker login {h}</pre>",
            w.login_needed
        )
    } else {
        format!("<p class=\"note\">{}</p>", w.login_open)
    };
    let transport = if scheme == "https" {
        format!("<p class=\"note\">{}</p>", w.private_ca.replace("HOST", &h))
    } else {
        format!(
            "<p class=\"note\">{}</p><pre>{{\n  \"insecure-registries\": [\"{h}\"]\n}}</pre>",
            w.plain_http
        )
    };
    let mut rows = String::new();
    for r in config.registries.iter() {
        let name = escape(&r.name);
        let own = r
            .mirror_host
            .as_deref()
            .map(|m| format!("<code>{}</code>", escape(m)))
            .unwrap_or_else(|| "-".to_string());
        rows.push_str(&format!(
            "<tr><td>{name}</td><td>{own}</td><td><code>{h}/{name}/…</code></td><td><code>?ns={name}</code></td></tr>"
        ));
    }
    let other = config
        .registries
        .iter()
        .find(|r| r.name != "docker.io")
        .map(|r| escape(&r.name))
        .unwrap_or_else(|| "ghcr.io".to_string());
    format!(
        r#"<!doctype html>
<html lang="{lang}">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{title} · {h}</title><style>{STYLE}</style></head>
<body data-host="{h}" data-empty="{no_results}">
<a class="lang" href="?lang={switch}">{switch_label}</a>
<h1>{title}: <code id="host">{h}</code></h1>
<p>{intro}</p>
{login}
<h2>{docker}</h2>
<pre>{{
  "registry-mirrors": ["{url}"]
}}</pre>
<p class="note">{docker_note}</p>
{transport}
<h2>{explicit}</h2>
<pre>docker pull {h}/library/alpine:latest
docker pull {h}/alpine:latest
docker pull {h}/{other}/owner/image:tag</pre>
<h2>{podman}</h2>
<pre>[[registry]]
prefix = "docker.io"
location = "registry-1.docker.io"

[[registry.mirror]]
location = "{h}"

[[registry]]
prefix = "{other}"
location = "{other}"

[[registry.mirror]]
location = "{h}/{other}"</pre>
<h2>{containerd}</h2>
<pre>server = "https://registry-1.docker.io"

[host."{url}"]
  capabilities = ["pull", "resolve"]</pre>
<h2>{containerd_ns}</h2>
<pre>server = "https://{other}"

[host."{url}"]
  capabilities = ["pull", "resolve"]</pre>
<p class="note">{containerd_other}</p>
<pre>[host."{url}/v2/{other}"]
  capabilities = ["pull", "resolve"]
  override_path = true</pre>
<h2>{k3s}</h2>
<pre>mirrors:
  docker.io:
    endpoint:
      - "{url}"
  {other}:
    endpoint:
      - "{url}"</pre>
<h2>{registries}</h2>
<table><tr><th>{registry}</th><th>{by_host}</th><th>{by_prefix}</th><th>{by_ns}</th></tr>{rows}</table>
<h2>{search}</h2>
<form id="search"><input id="q" name="q" placeholder="nginx"> <button type="submit">{search_button}</button></form>
<ul id="results"></ul>
<script>{SCRIPT}</script>
</body>
</html>
"#,
        lang = language.code(),
        title = w.title,
        no_results = w.no_results,
        switch_label = w.switch,
        intro = w.intro,
        docker = w.docker,
        docker_note = w.docker_note,
        transport = transport,
        explicit = w.explicit,
        podman = w.podman,
        containerd = w.containerd,
        containerd_ns = w.containerd_ns.replace("REGISTRY", &other),
        containerd_other = w.containerd_other,
        k3s = w.k3s,
        registries = w.registries,
        registry = w.registry,
        by_host = w.by_host,
        by_prefix = w.by_prefix,
        by_ns = w.by_ns,
        search = w.search,
        search_button = w.search_button,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Config {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned()).unwrap()
    }

    #[test]
    fn languages() {
        assert_eq!(
            Language::choose(None, Some("zh-CN,zh;q=0.9,en;q=0.8")),
            Language::Chinese
        );
        assert_eq!(
            Language::choose(None, Some("en-US,en;q=0.9")),
            Language::English
        );
        assert_eq!(
            Language::choose(None, Some("fr-FR, zh-TW;q=0.5")),
            Language::Chinese
        );
        assert_eq!(Language::choose(None, None), Language::English);
        assert_eq!(
            Language::choose(Some("en"), Some("zh-CN")),
            Language::English
        );
        assert_eq!(Language::choose(Some("zh"), None), Language::Chinese);
    }

    #[test]
    fn the_page_names_this_mirror_and_its_registries() {
        let page = render(
            &config(&[("REGISTRY_GHCR", "ghcr.mirror.example")]),
            "https",
            "hub.example",
            Language::English,
        );
        assert!(page.contains(r#""registry-mirrors": ["https://hub.example"]"#));
        assert!(page.contains("docker pull hub.example/alpine:latest"));
        assert!(page.contains("<code>ghcr.mirror.example</code>"));
        assert!(page.contains("override_path = true"));
        assert!(page.contains("No login is needed."));
        // Each hosts.toml path names its registry (a `<registry>` would vanish as a tag).
        assert!(page.contains("/etc/containerd/certs.d/ghcr.io/hosts.toml"));
        assert!(page.contains("/etc/docker/certs.d/hub.example/ca.crt"));
        assert!(!page.contains("insecure-registries"));
        let plain = render(&config(&[]), "http", "10.0.0.5:5000", Language::English);
        assert!(plain.contains(r#""insecure-registries": ["10.0.0.5:5000"]"#));
        assert!(!page.contains("certs.d//"));
        for external in [
            "http://",
            "<link",
            "src=\"http",
            "@import",
            "fonts.googleapis",
        ] {
            let count = page.matches(external).count();
            assert_eq!(count, 0, "the page refers outside itself: {external}");
        }
        let private = render(
            &config(&[("WHITE_LIST", "a"), ("TOKEN_SECRET", "0123456789abcdef")]),
            "https",
            "hub.example",
            Language::Chinese,
        );
        assert!(private.contains("docker login hub.example"));
        assert!(private.contains("私有镜像站"));
        assert!(private.contains(r#"lang="zh-CN""#));
    }

    #[test]
    fn hosts_are_escaped() {
        let page = render(&config(&[]), "http", "a<b>\"c", Language::English);
        assert!(!page.contains("a<b>"));
        assert!(page.contains("a&lt;b&gt;&quot;c"));
    }
}
