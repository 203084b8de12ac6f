//! What the tests of the owner's commands share (`tests/commands.rs`): a Docker Hub and a store
//! of a test's own, the binary run as a command, the mirror's log read for what it fetched, a
//! page read by headless Chromium, and the docs' queries run over log lines.

use super::faults::FaultFront;
use super::fixture::{fixture, run_dir};
use super::mirrors::{with, Mirror};
use std::process::Command;

/// A test's Docker Hub (the fixture behind a fault front of its own), its store directory, and
/// the settings of a server or a command on them.
pub struct Setup {
    pub front: FaultFront,
    pub store: std::path::PathBuf,
    pub settings: Vec<(String, String)>,
}

pub fn set_up(label: &str) -> Setup {
    let f = fixture();
    let front = FaultFront::start(&f.registry, f.token_port, f.storage_port);
    let store = run_dir().join(label);
    let settings = store_settings(&store, &front);
    Setup {
        front,
        store,
        settings,
    }
}

/// The settings of a store in `dir` of its own, whose Docker Hub is `front`.
pub fn store_settings(dir: &std::path::Path, front: &FaultFront) -> Vec<(String, String)> {
    let cache = format!("file://{}", dir.display());
    let upstream = format!("http://{}", front.addr);
    with(&[("CACHE", &cache), ("UPSTREAM_DOCKER_IO", &upstream)])
}

/// `registry-mirror ARGS…` with `settings`: its status, standard output and standard error.
pub fn command(settings: &[(String, String)], args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_registry-mirror"))
        .args(args)
        .envs(settings.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    eprintln!("$ registry-mirror {}\n{stdout}{stderr}", args.join(" "));
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

/// The mirror answered every blob request after the first `logged` lines from its store (the
/// direct pulls the tests compare with go to the fixture too, so its counts would not tell).
pub fn assert_no_blob_fetched(mirror: &Mirror, logged: usize) {
    let blobs: Vec<_> = mirror.requests()[logged..]
        .iter()
        .filter(|r| r["route"] == "blob" && r["method"] == "GET")
        .cloned()
        .collect();
    assert!(!blobs.is_empty(), "no blob was asked");
    let fetched: Vec<_> = blobs.iter().filter(|r| r["cache"] != "hit").collect();
    assert!(fetched.is_empty(), "blobs not from the store: {fetched:?}");
}

/// The page at `url` as headless Chromium renders it (its DOM), and a screenshot of it in `shot`.
pub fn chromium(url: &str, shot: &std::path::Path) -> String {
    let browser = super::process::need("chromium");
    let common = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--window-size=1200,900",
    ];
    let run = |what: &str| {
        let out = Command::new(&browser)
            .args(common)
            .arg(what)
            .arg(url)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "chromium {what}: {said}");
        out
    };
    run(&format!("--screenshot={}", shot.display()));
    let out = run("--dump-dom");
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The fenced blocks of `docs/operations.md` in `language`.
pub fn doc_blocks(language: &str) -> Vec<String> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md"))
        .unwrap();
    let fence = format!("```{language}\n");
    text.split(&fence)
        .skip(1)
        .map(|rest| rest[..rest.find("```").unwrap()].to_string())
        .collect()
}

/// The JSON lines of `log` (any runtime's), written to a file for the queries.
fn json_lines(log: &str) -> (Vec<serde_json::Value>, std::path::PathBuf) {
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(&l[l.find('{')?..]).ok())
        .collect();
    let file = run_dir().join(format!("lines-{}.json", super::process::free_port()));
    let text: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    std::fs::write(&file, text.join("\n")).unwrap();
    (lines, file)
}

/// Every query of docs/operations.md over the JSON lines of `log` (a local server's or the Lambda
/// binary's: their message field is `message`).
pub fn docs_queries_answer_over(log: &str) {
    jq_queries_answer_over(log);
    insights_queries_answer_over(log);
}

/// The `jq` queries of docs/operations.md run over the JSON lines of `log` (any runtime's) and
/// name the repository pulled, or the store's answers.
pub fn jq_queries_answer_over(log: &str) {
    let (_, file) = json_lines(log);
    let jq = doc_blocks("jq");
    assert!(jq.len() >= 2, "no jq query in the docs");
    for query in jq {
        let out = Command::new(super::process::need("jq"))
            .args(["-s", &query])
            .arg(&file)
            .output()
            .unwrap();
        let answer = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{query}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            answer.contains("alpine") || answer.contains("\"hit\"") || answer.contains("\"miss\""),
            "{query} answered nothing useful: {answer}"
        );
    }
}

/// For each Logs Insights query of docs/operations.md, every field it names is in the request
/// lines of `log`, and every value it compares a field with is one of that field's values.
pub fn insights_queries_answer_over(log: &str) {
    let (lines, _) = json_lines(log);
    let insights = doc_blocks("logs-insights");
    assert!(insights.len() >= 3, "no Logs Insights query in the docs");
    let requests: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["message"] == "request").collect();
    assert!(!requests.is_empty(), "no request line in the log");
    let keywords = [
        "filter", "stats", "sort", "by", "as", "and", "or", "desc", "count", "sum", "latest",
    ];
    for query in insights {
        // Fields: the identifiers that are not keywords, names given with `as`, or literals.
        let mut named_as = Vec::new();
        let words: Vec<&str> = query
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '"'))
            .filter(|w| !w.is_empty())
            .collect();
        for pair in words.windows(2) {
            if pair[0] == "as" {
                named_as.push(pair[1]);
            }
        }
        for word in &words {
            let field = !word.starts_with('"')
                && !word.chars().all(|c| c.is_ascii_digit())
                && !keywords.contains(word)
                && !named_as.contains(word);
            if field {
                assert!(
                    requests.iter().any(|l| l.get(*word).is_some()),
                    "{query}: no line has the field {word}"
                );
            }
        }
        // `field = "value"`: some line has that value.
        for part in query.split(" and ").flat_map(|p| p.split("filter ")) {
            if let Some((field, value)) = part.split_once(" = \"") {
                let field = field.trim();
                let value = value.split('"').next().unwrap();
                assert!(
                    lines.iter().any(|l| l[field] == value),
                    "{query}: no line has {field} = {value:?}"
                );
            }
        }
    }
}
