//! The README and `docs/` stay true: the settings table is the code's, every setting the server
//! reads is in it, every link leads to a file that exists, every repository path a command names
//! exists, every setting a command sets is one the mirror reads, and the README stays a front page.
#![cfg(not(target_arch = "wasm32"))]

use registry_mirror::config::table;
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The README and every page under `docs/`.
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

const GENERATED: &str = "<!-- generated from src/config/table.rs";
const END: &str = "<!-- end of the generated table -->";

#[test]
fn the_settings_page_shows_the_codes_table() {
    let path = root().join("docs/settings.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find(GENERATED).expect("the generated table's marker");
    let start = start + text[start..].find('\n').unwrap() + 1;
    let end = text.find(END).expect("the end marker");
    let expected = table::markdown();
    if text[start..end] != expected {
        if std::env::var_os("REGENERATE_DOCS").is_some() {
            let updated = format!("{}{expected}{}", &text[..start], &text[end..]);
            std::fs::write(&path, updated).unwrap();
            return;
        }
        panic!(
            "docs/settings.md is not src/config/table.rs; `REGENERATE_DOCS=1 cargo test --test docs` \
             rewrites it. Expected:\n{expected}"
        );
    }
}

/// The setting names the local server's `--help` lists.
fn help_settings() -> Vec<String> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_registry-mirror"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout).to_string();
    let environment = &help[help.find("environment").expect("the settings in --help")..];
    environment
        .split(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || "_<>".contains(c)))
        .filter(|w| w.len() >= 4 && w.chars().any(|c| c.is_ascii_uppercase()))
        .map(str::to_string)
        .collect()
}

/// Whether `key` is a name of the table, or an instance of one (`UPSTREAM_DOCKER_IO` of
/// `UPSTREAM_<NAME>`).
fn in_table(key: &str) -> bool {
    table::names().any(|n| {
        n == key
            || n.split_once("<NAME>").is_some_and(|(a, b)| {
                key.starts_with(a) && key.ends_with(b) && key.len() > a.len() + b.len()
            })
    })
}

#[test]
fn every_setting_the_server_reads_is_in_the_table_and_the_reverse() {
    let names: Vec<&str> = table::names().collect();
    let help = help_settings();
    assert!(help.len() > 20, "{help:?}");
    for setting in &help {
        assert!(
            in_table(setting),
            "{setting} (in --help) is not in the table"
        );
    }
    for setting in registry_mirror::config::SETTINGS {
        assert!(names.contains(setting), "{setting} is not in the table");
    }
    // Each row of the local server's is in its --help; the others are Lambda's or AWS's.
    for row in table::TABLE {
        if row.runtimes == table::Runtimes::Lambda || row.name.starts_with("AWS_") {
            continue;
        }
        for name in row.name.split(", ") {
            assert!(help.iter().any(|h| h == name), "{name} is not in --help");
        }
    }
}

#[test]
fn the_readme_is_a_front_page() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(lines <= 250, "the README has {lines} lines");
    for page in pages().iter().skip(1) {
        let name = page.file_name().unwrap().to_string_lossy();
        assert!(
            readme.contains(&format!("docs/{name}")),
            "the README does not link docs/{name}"
        );
    }
}

/// `[text](target)` links of a Markdown page.
fn links(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("](") {
        let after = &rest[i + 2..];
        let Some(end) = after.find(')') else { break };
        found.push(after[..end].to_string());
        rest = &after[end..];
    }
    found
}

#[test]
fn every_link_leads_to_a_file_that_exists() {
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        let dir = page.parent().unwrap();
        for link in links(&text) {
            if link.starts_with("http://") || link.starts_with("https://") {
                continue;
            }
            let file = link.split('#').next().unwrap();
            if file.is_empty() {
                continue;
            }
            assert!(
                dir.join(file).exists(),
                "{}: {link} leads nowhere",
                page.display()
            );
        }
    }
}

/// The shell commands of a page: the lines of its ```sh blocks.
fn commands(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with("```") {
            inside = line.trim() == "```sh";
            continue;
        }
        if inside {
            found.push(line.to_string());
        }
    }
    found
}

/// Variables of other tools that commands may set.
const OTHER_TOOLS: &[&str] = &[
    "DOCKER_",
    "SAM_",
    "CARGO_",
    "AWS_",
    "FIXTURE_",
    "REGENERATE_",
];

#[test]
fn every_command_names_paths_and_settings_that_exist() {
    let mut checked = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for line in commands(&text) {
            for word in line.split_whitespace() {
                let word = word.trim_matches(|c| "\"'`(),;".contains(c));
                let path = word.trim_start_matches("./");
                if ["scripts/", "bench/", "deploy/", "tests/", "docs/"]
                    .iter()
                    .any(|p| path.starts_with(p))
                {
                    let file = path.split(['?', '#', ':']).next().unwrap();
                    assert!(
                        root().join(file).exists(),
                        "{}: `{line}` names {file}, which does not exist",
                        page.display()
                    );
                    checked += 1;
                }
                if let Some((key, _)) = word.split_once('=') {
                    let is_setting = !key.is_empty()
                        && key
                            .chars()
                            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
                    if is_setting && !OTHER_TOOLS.iter().any(|p| key.starts_with(p)) {
                        assert!(
                            in_table(key),
                            "{}: `{line}` sets {key}, which the mirror does not read",
                            page.display()
                        );
                        checked += 1;
                    }
                }
            }
        }
    }
    assert!(checked > 10, "only {checked} names were checked");
}

/// The repository paths a text names in code spans (`src/…`, `tests/…`, …), as written.
fn named_paths(text: &str) -> Vec<String> {
    const TOP: &[&str] = &[
        "src/", "tests/", "deploy/", "scripts/", "bench/", "benches/", "docs/", ".ci/", "fuzz/",
    ];
    let mut found = Vec::new();
    for span in text.split('`').skip(1).step_by(2) {
        for word in span.split_whitespace() {
            let word = word.trim_matches(|c| "\"'(),;:.".contains(c));
            let word = word.trim_start_matches("./");
            // A file (with an extension) or a folder (ending in `/`); not `deploy/registry-mirror`,
            // which is kubectl's name of a Deployment.
            let last = word.rsplit('/').next().unwrap_or("");
            let file_or_folder = word.ends_with('/') || last.contains('.');
            if TOP.iter().any(|t| word.starts_with(t))
                && file_or_folder
                && !word.contains(['*', '<', '{', '$', '…'])
            {
                found.push(word.split(['#', '?']).next().unwrap().to_string());
            }
        }
    }
    found
}

/// Every repository path the docs and Cargo.toml's comments name exists (a file moved into a
/// folder, `suite.rs` into `suite/`, left the docs naming a file that was gone).
#[test]
fn every_path_the_docs_name_exists() {
    let mut texts: Vec<(String, String)> = pages()
        .iter()
        .map(|p| (p.display().to_string(), std::fs::read_to_string(p).unwrap()))
        .collect();
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let comments: String = manifest
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix('#'))
        .map(|c| format!("{c}\n"))
        .collect();
    texts.push(("Cargo.toml".to_string(), comments));
    let (mut checked, mut missing) = (0, Vec::new());
    for (name, text) in &texts {
        for path in named_paths(text) {
            if !root().join(&path).exists() {
                missing.push(format!("{name} names {path}, which does not exist"));
            }
            checked += 1;
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
    assert!(checked > 30, "only {checked} paths were checked");
}

/// docs/how-it-works.md draws every step the core can take (each variant of `Step`) and names
/// every module of `src/` (a module added without a line there fails here).
#[test]
fn how_it_works_names_every_step_and_module() {
    let page = std::fs::read_to_string(root().join("docs/how-it-works.md")).unwrap();
    let steps = std::fs::read_to_string(root().join("src/mirror/step.rs")).unwrap();
    let body = &steps[steps.find("pub enum Step {").expect("the Step enum")..];
    let body = &body[..body.find("\n}").unwrap()];
    let mut variants = 0;
    for line in body.lines().skip(1) {
        let line = line.trim();
        if line.starts_with("///") || line.is_empty() {
            continue;
        }
        let name: String = line
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        if name.is_empty() {
            continue;
        }
        variants += 1;
        assert!(
            page.contains(&format!("── {name} ")),
            "how-it-works.md does not draw the {name} step"
        );
    }
    assert!(variants >= 9, "only {variants} steps found");
    let mut missing = Vec::new();
    let mut stack = vec![root().join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if path.is_dir() {
                if name != "tests" {
                    stack.push(path);
                }
                continue;
            }
            let Some(stem) = name.strip_suffix(".rs") else {
                continue;
            };
            if matches!(stem, "tests" | "lib" | "main") {
                continue;
            }
            let module = match stem {
                "mod" => path
                    .parent()
                    .unwrap()
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .to_string(),
                stem => stem.to_string(),
            };
            let named = [
                format!("`{module}`"),
                format!("`{module}/`"),
                format!("`{module}.rs`"),
            ]
            .iter()
            .any(|n| page.contains(n.as_str()))
                || page.contains(&format!("`native/{module}/`"))
                || page.contains(&format!("`native/{module}.rs`"))
                || page.contains(&format!("`bin/{module}/`"));
            if !named {
                missing.push(path.strip_prefix(root()).unwrap().display().to_string());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "how-it-works.md does not name: {missing:?}"
    );
}
