//! `deploy/kubernetes.yaml`: it validates against Kubernetes' schemas (PyPI's
//! `kubernetes-validate --strict`, offline), its settings are ones the server starts with, the
//! metrics port stays off the Service, the nodes' port is the one docs/clients.md gives them, and
//! the nightly warm's command is one the binary takes.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use registry_mirror::config::Config;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::process::try_run;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn manifest() -> PathBuf {
    root().join("deploy/kubernetes.yaml")
}

fn venv_tool(name: &str) -> PathBuf {
    let tool = root().join("target/k8s-venv/bin").join(name);
    assert!(
        tool.exists(),
        "{} is missing: scripts/install-test-tools installs it (PyPI kubernetes-validate)",
        tool.display()
    );
    tool
}

/// The manifest's documents as JSON, read by the PyYAML that kubernetes-validate brings.
fn documents() -> Vec<serde_json::Value> {
    let script = "import sys, json, yaml\n\
                  print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))";
    let mut command = Command::new(venv_tool("python"));
    command.args(["-c", script]).arg(manifest());
    let (ok, out) = try_run(command);
    assert!(ok, "{out}");
    serde_json::from_str(&out).unwrap()
}

fn kind<'a>(documents: &'a [serde_json::Value], kind: &str) -> &'a serde_json::Value {
    documents
        .iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in the manifest"))
}

/// A container's settings as the server reads them: literal values as they are, a required
/// Secret's key as an operator's value for it, an optional one as absent (the manifest's
/// defaults).
fn settings(container: &serde_json::Value) -> Vec<(String, String)> {
    let mut settings = Vec::new();
    for entry in container["env"].as_array().into_iter().flatten() {
        let name = entry["name"].as_str().unwrap().to_string();
        if let Some(value) = entry["value"].as_str() {
            settings.push((name, value.to_string()));
        } else if let Some(secret) = entry["valueFrom"]["secretKeyRef"].as_object() {
            if secret.get("optional") != Some(&serde_json::Value::Bool(true)) {
                settings.push((name, "a-secret-of-at-least-16-characters".to_string()));
            }
        }
    }
    settings
}

#[test]
fn the_kubernetes_manifest_validates() {
    let tool = venv_tool("kubernetes-validate");
    let mut command = Command::new(&tool);
    command.arg("--strict").arg(manifest());
    let (ok, out) = try_run(command);
    assert!(ok, "kubernetes-validate: {out}");
    for kind in [
        "deployment",
        "service",
        "persistentvolumeclaim",
        "networkpolicy",
        "cronjob",
    ] {
        assert!(
            out.contains(&format!("passed for resource {kind}/")),
            "{out}"
        );
    }
    // The check can fail: a field the schema does not have.
    let text = std::fs::read_to_string(manifest()).unwrap();
    let broken = std::env::temp_dir().join(format!("k8s-broken-{}.yaml", std::process::id()));
    let unknown_field = "containerPort: 5000\n              hostPorts: 1";
    std::fs::write(&broken, text.replace("containerPort: 5000", unknown_field)).unwrap();
    let mut command = Command::new(&tool);
    command.arg("--strict").arg(&broken);
    let (ok, out) = try_run(command);
    let _ = std::fs::remove_file(&broken);
    assert!(!ok, "a broken manifest passed: {out}");
}

/// The Deployment's settings start a server (a setting that does nothing, such as
/// ALLOW_NETWORKS without WHITE_LIST, is refused at start), and with the Secret's WHITE_LIST as
/// well.
#[test]
fn the_deployments_settings_start_a_server() {
    let documents = documents();
    let container = &kind(&documents, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    let settings = settings(container);
    let lookup = |extra: &[(&str, &str)]| {
        let mut all = settings.clone();
        all.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Config::from_lookup(move |key| {
            all.iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        })
    };
    if let Err(why) = lookup(&[]) {
        panic!("the manifest's settings are refused: {why}");
    }
    if let Err(why) = lookup(&[("WHITE_LIST", "alice"), ("ALLOW_NETWORKS", "10.0.0.0/8")]) {
        panic!("the private variant is refused: {why}");
    }
    // The check can fail: the manifest's old setting.
    assert!(lookup(&[("ALLOW_NETWORKS", "10.0.0.0/8")]).is_err());
}

/// The metrics port (and `/usage`, which names users) is on no Service, and only the monitoring
/// namespace may reach it; the nodes' port is the one docs/clients.md writes in `hosts.toml`.
#[test]
fn metrics_stay_off_the_service_and_nodes_have_a_port() {
    let documents = documents();
    let service = kind(&documents, "Service");
    let ports = service["spec"]["ports"].as_array().unwrap();
    assert!(
        ports
            .iter()
            .all(|p| p["targetPort"] != "metrics" && p["port"] != 9090),
        "{ports:?}"
    );
    assert_eq!(service["spec"]["type"], "NodePort");
    let node_port = ports[0]["nodePort"].as_u64().expect("a fixed nodePort");
    let clients = std::fs::read_to_string(root().join("docs/clients.md")).unwrap();
    assert!(
        clients.contains(&format!("http://127.0.0.1:{node_port}")),
        "docs/clients.md does not give the nodes port {node_port}"
    );
    let policy = kind(&documents, "NetworkPolicy");
    let rules = policy["spec"]["ingress"].as_array().unwrap();
    let metrics_rule = rules
        .iter()
        .find(|r| r["ports"][0]["port"] == "metrics")
        .expect("a rule for the metrics port");
    assert!(
        metrics_rule["from"]
            .as_array()
            .is_some_and(|f| !f.is_empty()),
        "the metrics port is open to every pod: {metrics_rule}"
    );
    for rule in rules {
        if rule["from"].is_null() {
            assert!(
                rule["ports"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|p| p["port"] == "http"),
                "open to all on more than the registry port: {rule}"
            );
        }
    }
}

/// The CronJob's command is one the binary takes, with its settings: shipped with an empty list
/// it says so; with an image in the list it warms the store (from the tests' Docker Hub).
#[test]
fn the_nightly_warm_runs() {
    let documents = documents();
    let job = kind(&documents, "CronJob");
    let container = &job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    let shipped = kind(&documents, "ConfigMap")["data"]["images.txt"]
        .as_str()
        .unwrap()
        .to_string();
    let hub = support::commands::set_up("k8s-nightly-warm");
    let warm = |list: &str| {
        let dir = &hub.store;
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("images.txt"), list).unwrap();
        let args: Vec<String> = container["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                a.as_str().unwrap().replace(
                    "/warm/images.txt",
                    &dir.join("images.txt").display().to_string(),
                )
            })
            .collect();
        let mut command = Command::new(env!("CARGO_BIN_EXE_registry-mirror"));
        command.args(&args);
        for (name, value) in settings(container) {
            let value = match name.as_str() {
                "CACHE" => format!("file://{}", dir.join("store").display()),
                _ => value,
            };
            command.env(name, value);
        }
        let upstream = hub
            .settings
            .iter()
            .find(|(k, _)| k == "UPSTREAM_DOCKER_IO")
            .unwrap();
        command.env(&upstream.0, &upstream.1);
        try_run(command)
    };
    let (ok, out) = warm(&shipped);
    assert!(!ok && out.contains("no image named"), "{out}");
    let (ok, out) = warm(&format!("{shipped}alpine:v2s2\n"));
    assert!(ok, "{out}");
    assert!(
        out.contains("1 image(s): stored") && out.contains(" 0 failed"),
        "{out}"
    );
}
