//! The `/usage` page: the figures of the last day and week as plain HTML tables (no script, no
//! asset from elsewhere: the page is for the owner's browser on a private address).

use super::{since, Figures, Hour, Tally};
use std::fmt::Write;

/// Text made safe for HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn table(html: &mut String, title: &str, rows: &std::collections::BTreeMap<String, Tally>) {
    let mut rows: Vec<_> = rows.iter().collect();
    rows.sort_by(|a, b| b.1.bytes.cmp(&a.1.bytes).then(a.0.cmp(b.0)));
    let _ = write!(
        html,
        "<table><caption>{title}</caption><tr><th></th><th>pulls</th><th>bytes</th></tr>"
    );
    if rows.is_empty() {
        html.push_str("<tr><td colspan=3>none</td></tr>");
    }
    for (name, tally) in rows {
        let bytes = indicatif::DecimalBytes(tally.bytes);
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{bytes}</td></tr>",
            escape(name),
            tally.pulls
        );
    }
    html.push_str("</table>");
}

fn hit_ratio(hour: &Hour) -> String {
    let count = |k: &str| hour.store.get(k).copied().unwrap_or(0);
    let (hits, misses, stale) = (count("hit"), count("miss"), count("stale"));
    let answered = hits + misses + stale;
    match answered {
        0 => "no store answer yet".to_string(),
        _ => format!(
            "{:.0}% ({hits} hits, {stale} stale, {misses} misses)",
            100.0 * (hits + stale) as f64 / answered as f64
        ),
    }
}

/// The page, for `now` (seconds since the epoch); `kept` says where the figures are kept.
pub fn render(figures: &Figures, now: u64, kept: &str) -> String {
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=utf-8><title>registry-mirror usage</title>\
         <style>body{font:14px sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 2em 1em 0;\
         display:inline-table;vertical-align:top}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}\
         td:first-child{text-align:left}caption{font-weight:bold;text-align:left}</style></head><body>\
         <h1>registry-mirror usage</h1>",
    );
    for (label, seconds) in [("last day", 24 * 3600), ("last week", 7 * 24 * 3600)] {
        let totals = since(figures, now.saturating_sub(seconds));
        let _ = write!(
            html,
            "<h2>The {label}</h2><p>Store hit ratio: {}</p>",
            hit_ratio(&totals)
        );
        table(&mut html, &format!("By user, the {label}"), &totals.users);
        table(
            &mut html,
            &format!("By repository, the {label}"),
            &totals.repositories,
        );
    }
    html.push_str(
        "<h2>Pulls left at the upstream</h2><table><tr><th>account</th><th>ratelimit-remaining</th>\
         <th>seen</th></tr>",
    );
    if figures.pulls_left.is_empty() {
        html.push_str("<tr><td colspan=3>no upstream has said yet</td></tr>");
    }
    for (account, left) in &figures.pulls_left {
        let ago = now.saturating_sub(left.seen_at);
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{} min ago</td></tr>",
            escape(account),
            left.left,
            ago / 60
        );
    }
    let _ = write!(
        html,
        "</table><p>A pull is a manifest GET answered 2xx (a multi-platform image is two). Users \
         are named on a mirror with WHITE_LIST, whose tokens carry them; an open mirror passes the \
         registry's own tokens on and counts its clients as anonymous. {}</p></body></html>",
        escape(kept)
    );
    html
}
