//! The deploy files: `template.yaml` validates with both of AWS's tools, `fastly.toml` declares
//! the backends under the names the Fastly binary looks up, the systemd unit in `deploy/` passes
//! `systemd-analyze verify` and its hardening check. The Kubernetes manifest: `deploy_kubernetes.rs`.
#![cfg(not(target_arch = "wasm32"))]

use registry_mirror::registry::upstream::backend_name;
use registry_mirror::registry::{BUILTIN, DOCKER_HUB_STORAGE_HOSTS};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The virtual environment `scripts/install-test-tools` makes for the AWS tools.
fn aws_tool(name: &str) -> PathBuf {
    let venv = std::env::var("AWS_TOOLS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("target/aws-venv"));
    let tool = venv.join("bin").join(name);
    assert!(
        tool.exists(),
        "{} is missing: scripts/install-test-tools installs the AWS tools (PyPI aws-sam-cli) there",
        tool.display()
    );
    tool
}

fn run(command: &mut Command) -> (bool, String) {
    let output = command.output().expect("run a validation tool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "registry-mirror-deploy-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// cfn-lint on the CloudFormation that aws-sam-translator makes of `template`.
fn lint_translated(template: &Path, dir: &Path) -> (bool, String) {
    let translated = dir.join("translated.json");
    let (ok, out) = run(Command::new(aws_tool("python"))
        .arg(root().join("tests/deploy/sam_transform.py"))
        .arg(template)
        .arg(&translated));
    assert!(ok, "aws-sam-translator: {out}");
    run(Command::new(aws_tool("cfn-lint"))
        .arg("--")
        .arg(&translated))
}

#[test]
fn sam_validate_lint_accepts_the_template() {
    let (ok, out) = run(Command::new(aws_tool("sam"))
        .args(["validate", "--lint", "--region", "us-east-1", "-t"])
        .arg(root().join("template.yaml"))
        .env("SAM_CLI_TELEMETRY", "0"));
    assert!(ok, "sam validate --lint: {out}");
}

#[test]
fn cfn_lint_accepts_the_translated_template() {
    let dir = scratch("ok");
    let (ok, out) = lint_translated(&root().join("template.yaml"), &dir);
    assert!(ok, "cfn-lint on the translated template: {out}");
}

/// The check above can fail: a wrong `InvokeMode`, which cfn-lint alone on the SAM template lets
/// through, is caught on the translation.
#[test]
fn cfn_lint_on_the_translation_catches_a_wrong_invoke_mode() {
    let dir = scratch("bad");
    let text = std::fs::read_to_string(root().join("template.yaml")).unwrap();
    assert!(text.contains("InvokeMode: BUFFERED\n"));
    let broken = dir.join("template.yaml");
    std::fs::write(
        &broken,
        text.replace("InvokeMode: BUFFERED\n", "InvokeMode: STREAMING\n"),
    )
    .unwrap();
    let (ok, out) = lint_translated(&broken, &dir);
    assert!(!ok, "cfn-lint accepted InvokeMode: STREAMING:\n{out}");
    assert!(out.contains("STREAMING"), "{out}");
}

#[test]
fn the_template_serves_an_arm64_function_url_in_the_binarys_invoke_mode() {
    let text = std::fs::read_to_string(root().join("template.yaml")).unwrap();
    for needle in [
        "BuildMethod: rust-cargolambda",
        "Binary: registry-mirror-lambda",
        "Runtime: provided.al2023",
        "Architectures: [arm64]",
        "AuthType: NONE",
        &format!(
            "InvokeMode: {}",
            registry_mirror::platforms::lambda::INVOKE_MODE
        ),
        "AWS::SecretsManager::Secret",
        "GenerateSecretString",
        "TOKEN_SECRET_ARN: !Ref TokenSecret",
        "secretsmanager:GetSecretValue",
    ] {
        assert!(text.contains(needle), "template.yaml lacks {needle:?}");
    }
    assert!(
        !text.contains("TOKEN_SECRET:"),
        "the secret's plaintext must not be in the function's configuration"
    );
}

#[test]
fn fastly_toml_names_each_backend_as_the_binary_looks_it_up() {
    let text = std::fs::read_to_string(root().join("fastly.toml")).unwrap();
    let mut backends = Vec::new();
    let mut current: Option<(String, Option<String>, Option<String>)> = None;
    for line in text.lines().chain(std::iter::once("[end]")) {
        let line = line.trim();
        if line.starts_with('[') {
            if let Some((name, Some(address), Some(port))) = current.take() {
                backends.push((name, address, port));
            }
            current = line
                .strip_prefix("[setup.backends.")
                .and_then(|l| l.strip_suffix(']'))
                .map(|name| (name.to_string(), None, None));
        } else if let Some((_, address, port)) = current.as_mut() {
            if let Some(v) = line.strip_prefix("address = ") {
                *address = Some(v.trim_matches('"').to_string());
            } else if let Some(v) = line.strip_prefix("port = ") {
                *port = Some(v.to_string());
            }
        }
    }
    let mut hosts: Vec<&str> = backends.iter().map(|(_, a, _)| a.as_str()).collect();
    // Every host the registry table knows (each registry's API, token and fixed storage hosts),
    // and no other.
    let mut known: Vec<String> = Vec::new();
    for builtin in BUILTIN {
        let api = builtin.upstream.trim_start_matches("https://").to_string();
        known.push(api);
        known.extend(builtin.fixed_hosts.iter().map(|h| h.to_string()));
    }
    for host in DOCKER_HUB_STORAGE_HOSTS {
        assert!(
            known.iter().any(|k| k == host),
            "{host} is not in docker.io's fixed hosts"
        );
    }
    known.sort();
    hosts.sort();
    assert_eq!(
        hosts, known,
        "fastly.toml's backends are not the registry table's hosts"
    );
    for (name, address, port) in &backends {
        let port: u16 = port.parse().expect("a port number");
        assert_eq!(
            name,
            &backend_name(address, port),
            "backend for {address}:{port}"
        );
    }
    assert!(text.contains("registry_mirror_config") && text.contains("registry_mirror_secrets"));
}

/// Every storage host Docker Hub redirects pulls to has a route in the CloudFront relay (an origin,
/// a cache behaviour and a `STORAGE_RELAY` entry) and a line in the docs (`docs/registries.md`).
#[test]
fn the_relay_and_the_readme_cover_every_docker_hub_storage_host() {
    let template = std::fs::read_to_string(root().join("template.yaml")).unwrap();
    let readme = std::fs::read_to_string(root().join("docs/registries.md")).unwrap();
    let relay = template
        .lines()
        .find(|l| l.contains("=/_storage/"))
        .expect("STORAGE_RELAY in template.yaml");
    for host in DOCKER_HUB_STORAGE_HOSTS {
        assert!(
            template.contains(&format!("DomainName: {host}")),
            "the relay has no origin for {host}"
        );
        let prefix = relay_route(relay, host)
            .unwrap_or_else(|| panic!("STORAGE_RELAY has no route for {host}"));
        let name = prefix.trim_start_matches("/_storage/");
        assert!(
            template.contains(&format!("PathPattern: {prefix}/*")),
            "the relay has no cache behaviour for {prefix}"
        );
        assert!(
            template.contains(&format!("|{name}")) || template.contains(&format!("({name}|")),
            "the relay's viewer function does not strip {prefix}"
        );
        assert!(
            readme.contains(host),
            "docs/registries.md does not list {host}"
        );
    }
}

/// The prefix `STORAGE_RELAY` (one line of the template) gives `host`.
fn relay_route<'a>(relay: &'a str, host: &str) -> Option<&'a str> {
    relay.split(',').find_map(|entry| {
        let entry = entry
            .trim()
            .trim_start_matches("- ")
            .trim_start_matches("!Sub ");
        entry.trim_matches('"').strip_prefix(&format!("{host}="))
    })
}

/// Behind the relay, the store's signed URLs go through it too: they name the bucket's own host
/// (virtual-hosted style), `STORAGE_RELAY` routes that host to a path whose behaviour reaches an
/// origin of that host, caches nothing and forwards the query string, and the viewer function
/// strips the path's prefix.
#[test]
fn the_relay_fronts_the_store_bucket() {
    let template = std::fs::read_to_string(root().join("template.yaml")).unwrap();
    let host = "${StoreBucket}.s3.${AWS::Region}.amazonaws.com";
    assert!(template.contains("AWS_VIRTUAL_HOSTED_STYLE_REQUEST: \"true\""));
    let relay = template
        .lines()
        .find(|l| l.contains("=/_storage/"))
        .expect("STORAGE_RELAY in template.yaml");
    assert_eq!(
        relay_route(relay, host),
        Some("/_storage/bucket"),
        "{relay}"
    );
    assert!(template.contains(&format!("DomainName: !Sub \"{host}\"")));
    let behaviour = template
        .split("- PathPattern: ")
        .find(|b| b.starts_with("/_storage/bucket/*"))
        .expect("a cache behaviour for /_storage/bucket/*");
    assert!(behaviour.contains("TargetOriginId: store-bucket"));
    // Managed-CachingDisabled; Managed-AllViewerExceptHostHeader (all query strings, the
    // origin's own Host).
    assert!(behaviour.contains("CachePolicyId: 4135ea2d-6df8-44a3-9df3-4b5a84be39ad"));
    assert!(behaviour.contains("OriginRequestPolicyId: b689b0a8-53d0-40ab-baf2-68738e2966ac"));
    assert!(
        template.contains("|bucket)"),
        "the viewer function does not strip the prefix"
    );
}

/// The unit with `ExecStart` pointing at the binary this build made (verify checks that the
/// program exists), in a directory of its own.
fn unit_for_this_build(label: &str, unit: &str) -> PathBuf {
    let path = scratch(label).join("registry-mirror.service");
    let unit = unit.replace(
        "/usr/local/bin/registry-mirror",
        env!("CARGO_BIN_EXE_registry-mirror"),
    );
    std::fs::write(&path, unit).unwrap();
    path
}

#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let unit = std::fs::read_to_string(root().join("deploy/registry-mirror.service")).unwrap();
    let path = unit_for_this_build("unit", &unit);
    let (ok, out) = run(Command::new("systemd-analyze").arg("verify").arg(&path));
    assert!(ok && out.trim().is_empty(), "systemd-analyze verify: {out}");
    let (ok, out) = run(Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=20"])
        .arg(&path));
    assert!(ok, "systemd-analyze security: {out}");
    let exposure: f64 = out
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for registry-mirror.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|score| score.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level: {out}"));
    assert!(exposure <= 2.0, "exposure {exposure}: {out}");
    // The check can fail: a directive systemd does not know.
    let broken = unit.replace("ProtectSystem=strict", "ProtectSytem=strict");
    let broken = unit_for_this_build("unit-broken", &broken);
    let (_, out) = run(Command::new("systemd-analyze").arg("verify").arg(&broken));
    assert!(out.contains("ProtectSytem"), "{out}");
}

/// A package for a registry (`cargo package`) holds the licences, the code and what deploys and
/// documents it, with no warning (a target left out, a missing field) and nothing built.
#[test]
fn the_package_list_is_clean() {
    let (ok, out) = run(Command::new(env!("CARGO"))
        .args(["package", "--list", "--allow-dirty", "--offline"])
        .current_dir(root()));
    assert!(ok, "cargo package --list: {out}");
    assert!(!out.contains("warning"), "{out}");
    let files: Vec<&str> = out.lines().collect();
    for needed in [
        "LICENSE-MIT",
        "LICENSE-APACHE",
        "README.md",
        "Cargo.lock",
        "src/main.rs",
        "fastly.toml",
        "template.yaml",
        "deploy/kubernetes.yaml",
    ] {
        assert!(
            files.contains(&needed),
            "{needed} is not in the package: {out}"
        );
    }
    for file in &files {
        assert!(
            !file.starts_with("target/") && !file.starts_with("bin/") && !file.starts_with("pkg/"),
            "a built file in the package: {file}"
        );
    }
}

/// docs/registries.md says, per registry, what works on Fastly with the static backends: each
/// registry whose storage varies needs dynamic backends, the others work whole.
#[test]
fn the_docs_say_what_each_registry_needs_on_fastly() {
    let docs = std::fs::read_to_string(root().join("docs/registries.md")).unwrap();
    let section = &docs[docs.find("### On Fastly").expect("an On Fastly section")..];
    for builtin in BUILTIN {
        let row = section
            .lines()
            .find(|l| l.starts_with(&format!("| `{}` |", builtin.name)))
            .unwrap_or_else(|| panic!("no row for {} in On Fastly", builtin.name));
        match builtin.varying_storage {
            Some(_) => assert!(row.contains("dynamic backends"), "{row}"),
            None => assert!(row.contains("everything"), "{row}"),
        }
    }
}

/// Every `fastly …` command the docs give exists in the Fastly CLI that `scripts/install-test-tools`
/// pins (the version docs/fastly.md names), is not one it calls deprecated, and takes each flag
/// the docs pass it.
#[test]
fn the_fastly_steps_are_commands_of_the_pinned_cli() {
    let install = std::fs::read_to_string(root().join("scripts/install-test-tools")).unwrap();
    let pinned = install
        .lines()
        .find_map(|l| l.strip_prefix("FASTLY_CLI_VERSION="))
        .expect("the pinned Fastly CLI");
    let (_, version) = run(Command::new("fastly").arg("version"));
    assert!(version.contains(&format!("v{pinned}")), "{version}");
    let mut commands = Vec::new();
    for page in [
        "docs/fastly.md",
        "docs/operations.md",
        "docs/registries.md",
        "README.md",
    ] {
        let text = std::fs::read_to_string(root().join(page)).unwrap();
        if page == "docs/fastly.md" {
            assert!(
                text.contains(&format!("@fastly/cli@{pinned}")),
                "{page} pins no CLI"
            );
        }
        // Each command: from "fastly " to the end of its code span or line, continuations joined.
        let text = text.replace("\\\n", " ");
        for start in text.match_indices("fastly ").map(|(i, _)| i) {
            let before = text[..start].chars().last().unwrap_or(' ');
            if !matches!(before, '`' | ' ' | '\n' | '|') {
                continue;
            }
            let rest = &text[start..];
            let end = rest.find(['`', '\n']).unwrap_or(rest.len());
            let words: Vec<&str> = rest[..end].split_whitespace().collect();
            if words.len() < 2 || !words[1].chars().all(|c| c.is_ascii_lowercase() || c == '-') {
                continue;
            }
            commands.push(words.iter().map(|w| w.to_string()).collect::<Vec<_>>());
        }
    }
    assert!(
        commands.len() >= 8,
        "too few fastly commands found: {commands:?}"
    );
    for words in commands {
        let path: Vec<&str> = words[1..]
            .iter()
            .take_while(|w| {
                !w.starts_with('-') && w.chars().all(|c| c.is_ascii_lowercase() || c == '-')
            })
            .map(|w| w.as_str())
            .collect();
        let (ok, help) = run(Command::new("fastly").args(&path).arg("--help"));
        assert!(
            ok,
            "fastly {}: not a command of v{pinned}: {help}",
            path.join(" ")
        );
        assert!(
            !help.contains("deprecated"),
            "fastly {} is deprecated: {help}",
            path.join(" ")
        );
        for flag in words.iter().filter(|w| w.starts_with("--")) {
            let name = flag.split('=').next().unwrap();
            assert!(
                help.contains(name),
                "fastly {} takes no {name}",
                path.join(" ")
            );
        }
    }
}
