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

/// Refused answers add no row, and no hour keeps more than `MAX_ROWS` names of each kind: a
/// client sending invented users and repositories cannot grow the figures.
#[test]
fn nobody_grows_the_figures_without_bound() {
    let usage = Usage::new(None, None);
    let now = SystemTime::now();
    for n in 0..2000 {
        let junk = summary(Some(&format!("user{n}")), &format!("junk/{n}"), None);
        usage.count(true, &junk, 401, None, now);
    }
    let figures = usage.snapshot();
    let all = since(&figures, 0);
    assert!(
        all.users.is_empty() && all.repositories.is_empty(),
        "{all:?}"
    );
    for n in 0..(MAX_ROWS + 100) {
        let name = format!("{n}{}", "x".repeat(1000));
        usage.count(true, &summary(Some(&name), &name, None), 200, Some(1), now);
    }
    let all = since(&usage.snapshot(), 0);
    assert_eq!(all.users.len(), MAX_ROWS + 1);
    assert_eq!(all.repositories.len(), MAX_ROWS + 1);
    assert_eq!(all.users[OTHERS].pulls, 100);
    assert!(all.users.keys().all(|name| name.len() <= 256));
}

/// An hour ahead of the clock (a clock that was once ahead) does not make the present's figures
/// look a week old: it is dropped, and what is counted now is kept.
#[test]
fn an_hour_ahead_of_the_clock_discards_nothing_counted_now() {
    let dir = std::env::temp_dir().join(format!("usage-future-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("usage.json");
    let now = SystemTime::now();
    let ahead = now + Duration::from_secs(30 * 24 * 3600);
    let usage = Usage::new(Some(file.clone()), None);
    usage.count(
        true,
        &summary(Some("alice"), "a", None),
        200,
        Some(1),
        ahead,
    );
    usage.count(true, &summary(Some("bob"), "b", None), 200, Some(1), now);
    assert!(since(&usage.snapshot(), 0).users.contains_key("bob"));
    usage.save().unwrap();
    let usage = Usage::new(Some(file.clone()), None);
    usage.count(true, &summary(Some("carol"), "b", None), 200, Some(1), now);
    let all = since(&usage.snapshot(), 0);
    assert!(
        all.users.contains_key("bob") && all.users.contains_key("carol"),
        "{all:?}"
    );
    // Read back, the hour ahead of the clock is gone.
    assert!(!all.users.contains_key("alice"), "{all:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A `usage.json` that cannot be read is set aside, not replaced without a word.
#[test]
fn an_unreadable_file_is_set_aside() {
    let dir = std::env::temp_dir().join(format!("usage-corrupt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("usage.json");
    std::fs::write(&file, b"{not json").unwrap();
    let usage = Usage::new(Some(file.clone()), None);
    assert!(usage.snapshot().hours.is_empty());
    let aside: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("usage.json.unreadable-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(std::fs::read(dir.join(&aside[0])).unwrap(), b"{not json");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The picture: each hour's pulls split into those the upstream counted and those it did not,
/// bytes into the store's and the upstream's, and the week's pulls saved said in words.
#[test]
fn the_page_draws_the_week_and_the_pulls_saved() {
    let usage = Usage::new(None, None);
    let now = SystemTime::now();
    let counted = Summary {
        counted_get: true,
        ..summary(None, "library/alpine", Some("miss"))
    };
    // One pull Docker Hub counted (a manifest fetched upstream), three it did not (from the
    // store), and a blob of 4000 bytes from the store two hours ago.
    usage.count(true, &counted, 200, Some(100), now);
    for _ in 0..3 {
        usage.count(
            true,
            &summary(None, "library/alpine", Some("hit")),
            200,
            Some(100),
            now,
        );
    }
    let blob = Summary {
        route: "blob",
        ..summary(None, "library/alpine", Some("hit"))
    };
    usage.count(
        true,
        &blob,
        200,
        Some(4000),
        now - Duration::from_secs(2 * 3600),
    );
    // Refused answers add nothing to the picture either.
    usage.count(true, &counted, 401, Some(50), now);
    let figures = usage.snapshot();
    let hour = &figures.hours[&(seconds(now) / 3600)];
    assert_eq!(
        (hour.all.pulls, hour.counted, hour.from_store.pulls),
        (4, 1, 3)
    );
    assert_eq!((hour.all.bytes, hour.from_store.bytes), (400, 300));
    let page = usage.page();
    assert!(
        page.contains("Docker Hub pulls saved, the last week: 3</b> of 4 pulls (75%)"),
        "{page}"
    );
    assert!(
        page.contains("Bytes served from the store: 4.30 kB of 4.40 kB (98%)"),
        "{page}"
    );
    assert_eq!(
        page.matches("<svg class=chart data-hours=168").count(),
        2,
        "{page}"
    );
    // This hour's bars: 1 counted and 3 saved pulls; two hours ago, 4000 bytes from the store.
    assert!(
        page.contains("0 h ago: 1 pulls counted by the upstream"),
        "{page}"
    );
    assert!(
        page.contains("0 h ago: 3 pulls saved (not counted)"),
        "{page}"
    );
    assert!(page.contains("2 h ago: 4.00 kB from the store"), "{page}");
}
