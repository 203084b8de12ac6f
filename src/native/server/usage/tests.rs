use super::*;

fn summary(user: Option<&str>, repository: &str, store: Option<&'static str>) -> Summary {
    Summary {
        route: "manifest",
        repository: Some(repository.to_string()),
        upstream: Some("docker.io".to_string()),
        user: user.map(str::to_string),
        store,
        ratelimit_remaining: Some("97;w=21600".to_string()),
        ..Summary::default()
    }
}

#[test]
fn pulls_and_bytes_are_kept_by_user_and_repository_and_survive_a_restart() {
    let dir = std::env::temp_dir().join(format!("usage-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("usage.json");
    let _ = std::fs::remove_file(&file);
    let now = SystemTime::now();
    let usage = Usage::new(Some(file.clone()), None);
    usage.count(
        true,
        &summary(Some("alice"), "library/alpine", Some("hit")),
        200,
        Some(1000),
        now,
    );
    usage.count(
        false,
        &summary(None, "library/alpine", Some("miss")),
        200,
        Some(500),
        now,
    );
    // A week and a day ago: gone from the week.
    let old = now - Duration::from_secs(8 * 24 * 3600);
    usage.count(
        true,
        &summary(Some("bob"), "team/app", None),
        200,
        Some(7),
        old,
    );
    usage.save().unwrap();

    let again = Usage::new(Some(file.clone()), None);
    let figures = again.snapshot();
    let day = since(&figures, seconds(now) - 24 * 3600);
    assert_eq!(
        day.users["alice"],
        Tally {
            pulls: 1,
            bytes: 1000
        }
    );
    assert_eq!(
        day.users["anonymous"],
        Tally {
            pulls: 0,
            bytes: 500
        }
    );
    assert_eq!(
        day.repositories["docker.io/library/alpine"],
        Tally {
            pulls: 1,
            bytes: 1500
        }
    );
    assert!(!since(&figures, 0).users.contains_key("bob"));
    assert_eq!(figures.pulls_left["docker.io alice"].left, 97);

    let page = render(&figures, seconds(now), "kept in usage.json");
    assert!(page.contains("docker.io/library/alpine"), "{page}");
    assert!(page.contains("50% (1 hits, 0 stale, 1 misses)"), "{page}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn names_are_escaped_on_the_page() {
    let usage = Usage::new(None, None);
    usage.count(
        true,
        &summary(Some("<script>"), "a", None),
        200,
        None,
        SystemTime::now(),
    );
    let page = render(&usage.snapshot(), seconds(SystemTime::now()), "");
    assert!(!page.contains("<script>") && page.contains("&lt;script&gt;"));
}
