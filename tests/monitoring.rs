//! The monitoring that ships (`deploy/monitoring/`): every query of the Grafana dashboard and of
//! the Prometheus alert rules parses as PromQL (by `promql-parser`, a parser of Prometheus's
//! grammar) and names only metrics the server exports, read off a real scrape of its `/metrics`.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use promql_parser::parser::{parse, Expr};
use promql_parser::util::{walk_expr, ExprVisitor};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use support::commands::set_up;
use support::faults::Fault;
use support::images::V2S2;
use support::mirrors::{LocalServer, Runtime};
use support::process::{free_port, run};
use support::suite::assert_same_as_direct;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The sample names a scrape of the server's `/metrics` shows, from its `# TYPE` lines: a
/// counter's `_total`, a gauge's own name. A family shows only once it has a sample, so the
/// server first serves a pull through a store, from a Docker Hub that announces pulls left.
fn exported() -> BTreeSet<String> {
    let listen = format!("127.0.0.1:{}", free_port());
    let hub = set_up("monitoring");
    hub.front.set(Fault::PullLimit { left: 50 });
    let mut settings = hub.settings.clone();
    settings.push(("METRICS_LISTEN".to_string(), listen.clone()));
    let mirror = LocalServer.start("monitoring", &settings);
    assert_same_as_direct(&mirror, V2S2, &[], None);
    hub.front.set(Fault::None);
    let mut curl = Command::new("curl");
    curl.args(["-sf", &format!("http://{listen}/metrics")]);
    let text = run(curl);
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let (Some(name), Some(kind)) = (words.next(), words.next()) else {
            continue;
        };
        match kind {
            "counter" => {
                names.insert(format!("{name}_total"));
                names.insert(format!("{name}_created"));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            _ => {
                names.insert(name.to_string());
            }
        }
    }
    assert!(names.len() >= 8, "a scrape with few metrics: {text}");
    names
}

/// The metric names an expression selects.
fn selected(expr: &Expr) -> Vec<String> {
    struct Names(Vec<String>);
    impl ExprVisitor for Names {
        type Error = ();
        fn pre_visit(&mut self, expr: &Expr) -> Result<bool, ()> {
            match expr {
                Expr::VectorSelector(v) => self.0.extend(v.name.clone()),
                Expr::MatrixSelector(m) => self.0.extend(m.vs.name.clone()),
                _ => {}
            }
            Ok(true)
        }
    }
    let mut names = Names(Vec::new());
    let _ = walk_expr(&mut names, expr);
    names.0
}

/// Prometheus's own metrics a rule may use besides the server's.
const PROMETHEUS_OWN: &[&str] = &["up"];

/// What is wrong with `query` against `exported`, if anything.
fn check(query: &str, exported: &BTreeSet<String>) -> Result<(), String> {
    // Grafana's variable, as Grafana substitutes it before Prometheus sees the query.
    let query = query.replace("$__rate_interval", "5m");
    let expr = parse(&query).map_err(|e| format!("{query}: does not parse: {e}"))?;
    let names = selected(&expr);
    if !names
        .iter()
        .any(|n| n.starts_with("registry_mirror_") || PROMETHEUS_OWN.contains(&n.as_str()))
    {
        return Err(format!("{query}: names no metric of the server"));
    }
    for name in names {
        if !exported.contains(&name) && !PROMETHEUS_OWN.contains(&name.as_str()) {
            return Err(format!(
                "{query}: {name} is not a metric the server exports"
            ));
        }
    }
    Ok(())
}

/// The alert rules' expressions, read by the PyYAML that kubernetes-validate brings.
fn alert_queries() -> Vec<String> {
    let python = root().join("target/k8s-venv/bin/python");
    let script = "import sys, json, yaml\n\
                  d = yaml.safe_load(open(sys.argv[1]))\n\
                  print(json.dumps([r['expr'] for g in d['groups'] for r in g['rules']]))";
    let mut command = Command::new(python);
    command
        .args(["-c", script])
        .arg(root().join("deploy/monitoring/alerts.yml"));
    serde_json::from_str(&run(command)).unwrap()
}

fn dashboard_queries() -> Vec<String> {
    let text =
        std::fs::read_to_string(root().join("deploy/monitoring/grafana-dashboard.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            queries.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    queries
}

#[test]
fn every_query_of_the_dashboard_and_the_alerts_names_an_exported_metric() {
    let exported = exported();
    let (alerts, dashboard) = (alert_queries(), dashboard_queries());
    assert!(alerts.len() >= 6 && dashboard.len() >= 10);
    let wrong: Vec<String> = alerts
        .iter()
        .chain(&dashboard)
        .filter_map(|q| check(q, &exported).err())
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // The alerts cover what an owner must hear of: upstream errors, 429s, store failures, the
    // hit ratio.
    let all = alerts.join("\n");
    for needed in [
        "registry_mirror_upstream_requests_total{status=~\"5..|error\"}",
        "registry_mirror_upstream_requests_total{status=\"429\"}",
        "registry_mirror_store_failures_total",
        "registry_mirror_store_total{result=~\"hit|stale\"}",
    ] {
        assert!(all.contains(needed), "no alert on {needed}");
    }
    // The check can fail: a misspelled metric, and a query that does not parse.
    assert!(check("rate(registry_mirror_request_total[5m])", &exported).is_err());
    assert!(check("sum(rate(registry_mirror_requests_total[5m])", &exported).is_err());
}
