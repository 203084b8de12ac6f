//! What the commands read in a manifest (an index's children for the platforms asked, an image's
//! config and layers), and the image references and platforms they are given.

use crate::registry::reference::{is_valid_digest, is_valid_name, is_valid_tag};

/// An image to warm: a name as a client would pull it (`alpine`, `ghcr.io/owner/image`), and a
/// tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub name: String,
    pub reference: String,
}

impl std::fmt::Display for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.reference.contains(':') {
            true => write!(f, "{}@{}", self.name, self.reference),
            false => write!(f, "{}:{}", self.name, self.reference),
        }
    }
}

impl Image {
    /// `NAME`, `NAME:TAG` or `NAME@DIGEST` (`latest` when neither is given).
    pub fn parse(text: &str) -> Result<Image, String> {
        let text = text.trim();
        let (name, reference) = match text.split_once('@') {
            Some((name, digest)) => (name, digest.to_string()),
            None => match text.rsplit_once(':') {
                Some((name, tag)) if !tag.contains('/') => (name, tag.to_string()),
                _ => (text, "latest".to_string()),
            },
        };
        let name = name.to_ascii_lowercase();
        if !is_valid_name(&name) {
            return Err(format!(
                "{text:?} is not an image name (such as alpine:3.20)"
            ));
        }
        let valid = match reference.contains(':') {
            true => is_valid_digest(&reference),
            false => is_valid_tag(&reference),
        };
        if !valid {
            return Err(format!("{text:?}: {reference:?} is not a tag or a digest"));
        }
        Ok(Image { name, reference })
    }

    /// The images of a list file: one a line; blank lines and `#` comments skipped.
    pub fn parse_list(text: &str) -> Result<Vec<Image>, String> {
        text.lines()
            .enumerate()
            .map(|(n, line)| (n, line.split('#').next().unwrap_or("").trim()))
            .filter(|(_, line)| !line.is_empty())
            .map(|(n, line)| Image::parse(line).map_err(|e| format!("line {}: {e}", n + 1)))
            .collect()
    }
}

/// Which children of an index to warm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Platforms {
    All,
    /// `os/architecture[/variant]` each.
    These(Vec<String>),
}

impl std::fmt::Display for Platforms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Platforms::All => f.write_str("all"),
            Platforms::These(list) => f.write_str(&list.join(",")),
        }
    }
}

impl Platforms {
    /// `all`, or `linux/amd64,linux/arm64/v8`.
    pub fn parse(text: &str) -> Result<Platforms, String> {
        if text.trim() == "all" {
            return Ok(Platforms::All);
        }
        let list: Vec<String> = text
            .split(',')
            .map(|p| p.trim().to_ascii_lowercase())
            .collect();
        for platform in &list {
            let parts = platform.split('/').count();
            if !(2..=3).contains(&parts) || platform.split('/').any(str::is_empty) {
                return Err(format!(
                    "--platform: {platform:?} is not os/architecture[/variant] (linux/amd64) or all"
                ));
            }
        }
        Ok(Platforms::These(list))
    }

    fn includes(&self, platform: Option<&serde_json::Value>) -> bool {
        let wanted = match self {
            Platforms::All => return true,
            Platforms::These(list) => list,
        };
        let Some(platform) = platform else {
            return false;
        };
        let field = |k: &str| platform.get(k).and_then(|v| v.as_str()).unwrap_or("");
        let (os, arch, variant) = (field("os"), field("architecture"), field("variant"));
        wanted.iter().any(|w| {
            let mut parts = w.split('/');
            let (o, a, v) = (parts.next(), parts.next(), parts.next());
            o == Some(os) && a == Some(arch) && v.is_none_or(|v| v == variant)
        })
    }
}

/// What a manifest refers to.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Refers {
    /// An index's children for the platforms asked (their digests).
    pub manifests: Vec<String>,
    /// An image's config and layers (digest, size), foreign layers left out.
    pub blobs: Vec<(String, u64)>,
}

/// What `manifest` (JSON) refers to; an error for a body that is not a manifest.
pub fn refers(manifest: &[u8], platforms: &Platforms) -> Result<Refers, String> {
    let value: serde_json::Value =
        serde_json::from_slice(manifest).map_err(|e| format!("not a manifest: {e}"))?;
    let digest = |v: &serde_json::Value| {
        v.get("digest")
            .and_then(|d| d.as_str())
            .filter(|d| is_valid_digest(d))
            .map(str::to_string)
    };
    let mut refers = Refers::default();
    if let Some(children) = value.get("manifests").and_then(|m| m.as_array()) {
        for child in children {
            if platforms.includes(child.get("platform")) {
                refers.manifests.extend(digest(child));
            }
        }
        return Ok(refers);
    }
    let layers = value.get("layers").and_then(|l| l.as_array());
    let Some(layers) = layers else {
        return Err("neither an index nor an image manifest (schema 1 is not warmed)".into());
    };
    let foreign = |v: &serde_json::Value| {
        v.get("urls").is_some()
            || v.get("mediaType")
                .and_then(|m| m.as_str())
                .is_some_and(|m| m.contains("foreign") || m.contains("nondistributable"))
    };
    for blob in value.get("config").into_iter().chain(layers) {
        if foreign(blob) {
            continue;
        }
        let size = blob.get("size").and_then(|s| s.as_u64()).unwrap_or(0);
        if let Some(digest) = digest(blob) {
            refers.blobs.push((digest, size));
        }
    }
    Ok(refers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_read_as_a_client_writes_them() {
        let image = |n: &str, r: &str| Image {
            name: n.into(),
            reference: r.into(),
        };
        assert_eq!(Image::parse("alpine"), Ok(image("alpine", "latest")));
        assert_eq!(
            Image::parse("library/alpine:3.20"),
            Ok(image("library/alpine", "3.20"))
        );
        assert_eq!(
            Image::parse("ghcr.io/owner/image:v1"),
            Ok(image("ghcr.io/owner/image", "v1"))
        );
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            Image::parse(&format!("alpine@{digest}")),
            Ok(image("alpine", &digest))
        );
        assert!(Image::parse("alpine:bad tag").is_err());
        assert!(Image::parse("alpine@sha256:short").is_err());
        assert!(Image::parse("../etc").is_err());
        assert!(Image::parse("").is_err());
        let list = Image::parse_list("# images\nalpine\n\n  busybox:1.36 # the small one\n");
        assert_eq!(
            list,
            Ok(vec![image("alpine", "latest"), image("busybox", "1.36")])
        );
        assert!(Image::parse_list("alpine\nnot an image\n")
            .unwrap_err()
            .starts_with("line 2"));
    }

    #[test]
    fn an_index_gives_the_children_of_the_platforms_asked() {
        let index = br#"{"manifests":[
            {"digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","platform":{"os":"linux","architecture":"amd64"}},
            {"digest":"sha256:2222222222222222222222222222222222222222222222222222222222222222","platform":{"os":"linux","architecture":"arm64","variant":"v8"}},
            {"digest":"sha256:3333333333333333333333333333333333333333333333333333333333333333","platform":{"os":"unknown","architecture":"unknown"}}]}"#;
        let some = |p: &str| {
            refers(index, &Platforms::parse(p).unwrap())
                .unwrap()
                .manifests
        };
        assert_eq!(
            some("linux/amd64"),
            vec![format!("sha256:{}", "1".repeat(64))]
        );
        assert_eq!(some("linux/arm64").len(), 1);
        assert_eq!(some("linux/arm64/v8").len(), 1);
        assert_eq!(some("linux/arm64/v7").len(), 0);
        assert_eq!(some("linux/amd64,linux/arm64").len(), 2);
        assert_eq!(some("all").len(), 3);
        assert!(Platforms::parse("amd64").is_err());
        assert!(Platforms::parse("linux//x").is_err());
    }

    #[test]
    fn an_image_gives_its_config_and_layers_but_no_foreign_layer() {
        let d = |c: &str| format!("sha256:{}", c.repeat(64));
        let image = format!(
            r#"{{"config":{{"digest":"{}","size":10}},"layers":[{{"digest":"{}","size":20}},
            {{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"{}","size":30,"urls":["https://x"]}}]}}"#,
            d("a"),
            d("b"),
            d("c")
        );
        let found = refers(image.as_bytes(), &Platforms::All).unwrap();
        assert_eq!(found.blobs, vec![(d("a"), 10), (d("b"), 20)]);
        assert!(refers(b"{}", &Platforms::All).is_err());
        assert!(refers(b"not json", &Platforms::All).is_err());
    }
}
