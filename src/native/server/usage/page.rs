//! The `/usage` page: first the picture an owner wants (the pulls and bytes of each hour of the
//! last week, what the store answered against what the upstream did, and the Docker Hub pulls
//! the mirror saved), then the figures of the last day and week as tables. Inline SVG and HTML
//! only: no script, no asset from elsewhere (the page is for the owner's browser on a private
//! address).

use super::{since, Figures, Hour, Tally, KEPT_HOURS};
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

/// One series of a chart: a name, a colour, and a value per hour.
struct Series<'a> {
    name: &'a str,
    colour: &'a str,
    values: Vec<u64>,
}

/// A bar chart of the hours of the last week, `series` stacked in each hour's bar (the first at
/// the bottom); `unit` says how a value reads.
fn chart(html: &mut String, title: &str, series: &[Series], unit: fn(u64) -> String) {
    const BAR: usize = 5;
    const HEIGHT: u64 = 150;
    let hours = series.first().map_or(0, |s| s.values.len());
    let totals: Vec<u64> = (0..hours)
        .map(|h| series.iter().map(|s| s.values[h]).sum())
        .collect();
    let top = totals.iter().copied().max().unwrap_or(0).max(1);
    let width = hours * BAR;
    let _ = write!(
        html,
        "<figure><figcaption>{title} (highest hour: {})</figcaption>\
         <svg class=chart data-hours={hours} width={width} height={} viewBox=\"0 0 {width} {}\" \
         role=img aria-label=\"{title}\">",
        unit(top),
        HEIGHT + 16,
        HEIGHT + 16
    );
    for day in 0..=hours / 24 {
        let x = width.saturating_sub(day * 24 * BAR);
        let label = match day {
            0 => "now".to_string(),
            d => format!("-{d}d"),
        };
        let _ = write!(
            html,
            "<line x1={x} y1=0 x2={x} y2={HEIGHT} stroke=#ddd />\
             <text x={} y={} font-size=10 text-anchor=end>{label}</text>",
            x.max(24),
            HEIGHT + 12
        );
    }
    for hour in 0..hours {
        let mut base = HEIGHT;
        for s in series {
            let value = s.values[hour];
            if value == 0 {
                continue;
            }
            let height = (value * HEIGHT).div_ceil(top);
            base = base.saturating_sub(height);
            let ago = hours - 1 - hour;
            let _ = write!(
                html,
                "<rect x={} y={base} width={} height={height} fill={}>\
                 <title>{ago} h ago: {} {}</title></rect>",
                hour * BAR,
                BAR - 1,
                s.colour,
                unit(value),
                s.name
            );
        }
    }
    html.push_str("</svg><p class=legend>");
    for s in series {
        let _ = write!(
            html,
            "<span style=\"color:{}\">&#9632;</span> {} ",
            s.colour, s.name
        );
    }
    html.push_str("</p></figure>");
}

/// The hours of the last week, oldest first, ending with the hour of `now`.
fn week(figures: &Figures, now: u64) -> Vec<Option<&Hour>> {
    let this = now / 3600;
    (this.saturating_sub(KEPT_HOURS - 1)..=this)
        .map(|h| figures.hours.get(&h))
        .collect()
}

/// The picture first: pulls by the hour (those Docker Hub counted, and those it did not), bytes
/// by the hour (from the store, from the upstream), and the week's pulls saved.
fn picture(html: &mut String, figures: &Figures, now: u64) {
    let hours = week(figures, now);
    let of = |f: fn(&Hour) -> u64| -> Vec<u64> { hours.iter().map(|h| h.map_or(0, f)).collect() };
    let totals = since(figures, now.saturating_sub(KEPT_HOURS * 3600));
    let (pulls, counted) = (totals.all.pulls, totals.counted);
    let saved = pulls.saturating_sub(counted);
    let share = |part: u64, all: u64| match all {
        0 => "none yet".to_string(),
        all => format!("{:.0}%", 100.0 * part as f64 / all as f64),
    };
    let _ = write!(
        html,
        "<p class=saved><b>Docker Hub pulls saved, the last week: {saved}</b> of {pulls} pulls \
         ({}) were answered without a pull the upstream counts (tags asked with a free HEAD, \
         manifests from the store). Bytes served from the store: {} of {} ({}).</p>",
        share(saved, pulls),
        indicatif::DecimalBytes(totals.from_store.bytes),
        indicatif::DecimalBytes(totals.all.bytes),
        share(totals.from_store.bytes, totals.all.bytes)
    );
    chart(
        html,
        "Pulls by the hour, the last week",
        &[
            Series {
                name: "counted by the upstream",
                colour: "#d9534f",
                values: of(|h| h.counted),
            },
            Series {
                name: "saved (not counted)",
                colour: "#5cb85c",
                values: of(|h| h.all.pulls.saturating_sub(h.counted)),
            },
        ],
        |n| format!("{n} pulls"),
    );
    chart(
        html,
        "Bytes by the hour, the last week",
        &[
            Series {
                name: "fetched from the upstream",
                colour: "#999",
                values: of(|h| h.all.bytes.saturating_sub(h.from_store.bytes)),
            },
            Series {
                name: "from the store",
                colour: "#337ab7",
                values: of(|h| h.from_store.bytes),
            },
        ],
        |n| indicatif::DecimalBytes(n).to_string(),
    );
}

/// The page, for `now` (seconds since the epoch); `kept` says where the figures are kept.
pub fn render(figures: &Figures, now: u64, kept: &str) -> String {
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=utf-8><title>registry-mirror usage</title>\
         <style>body{font:14px sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 2em 1em 0;\
         display:inline-table;vertical-align:top}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}\
         td:first-child{text-align:left}caption{font-weight:bold;text-align:left}\
         figure{margin:1em 0}figcaption{font-weight:bold}.legend{margin:.2em 0}</style></head><body>\
         <h1>registry-mirror usage</h1>",
    );
    picture(&mut html, figures, now);
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
