//! Helpers shared by the examples and by `tests/examples.rs`: where the local
//! sink writes, and the end-of-run report.
//!
//! Nothing here is part of the SDK. Reading the sink back (the tree of users,
//! events, spans and signals) is `raindrop-view`'s job, the workspace's local
//! viewer: `cargo run -p raindrop-view -- target/raindrop-chat.jsonl` shows
//! the same recording live in a browser.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use raindrop::{ClientOptions, LocalSink};
use raindrop_view::Recorded;

/// Options for an example run: the environment's settings when it names a
/// write key or a sink, otherwise the local sink in a fresh file
/// `<target dir>/raindrop-<name>.jsonl`. Returns the file the sink writes to,
/// when it is a file.
pub fn options_for(name: &str) -> (ClientOptions, Option<PathBuf>) {
    let opts = ClientOptions::from_env();
    match &opts.local_sink {
        Some(LocalSink::File(p)) => {
            let p = p.clone();
            (opts, Some(p))
        }
        Some(_) => (opts, None),
        None if opts.write_key.is_some() => (opts, None),
        None => {
            let path = default_sink_path(name);
            let _ = std::fs::remove_file(&path);
            (opts.local_sink(LocalSink::File(path.clone())), Some(path))
        }
    }
}

/// `<target dir>/raindrop-<name>.jsonl`, found from the running executable
/// (`<target>/<profile>/examples/<name>`), or the temp dir.
pub fn default_sink_path(name: &str) -> PathBuf {
    let file = format!("raindrop-{name}.jsonl");
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            let dir = exe.parent()?; // <target>/<profile>/examples
            let target = dir.parent()?.parent()?; // <target>
            target.is_dir().then(|| target.join(&file))
        })
        .unwrap_or_else(|| std::env::temp_dir().join(file))
}

/// A unique file in the temp dir, for tests.
pub fn temp_sink(name: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let p = std::env::temp_dir().join(format!(
        "raindrop-example-{name}-{}-{n}.jsonl",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&p);
    p
}

/// A summary line of [`raindrop::Stats`].
pub fn stats_line(stats: &raindrop::Stats) -> String {
    let drops: Vec<String> = raindrop::DropReason::ALL
        .iter()
        .filter(|r| stats.dropped(**r) > 0)
        .map(|r| format!("{}={}", r.as_str(), stats.dropped(*r)))
        .collect();
    format!(
        "queued={} delivered={} requests={} dropped={}{}",
        stats.queued,
        stats.delivered,
        stats.requests,
        stats.dropped_total(),
        if drops.is_empty() {
            String::new()
        } else {
            format!(" ({})", drops.join(", "))
        }
    )
}

/// Prints [`report_text`].
pub fn print_report(sink: Option<&Path>, stats: &raindrop::Stats) {
    print!("{}", report_text(sink, stats));
}

/// The end-of-run report: the stats, the tree of what was recorded, and
/// where the raw lines are.
pub fn report_text(sink: Option<&Path>, stats: &raindrop::Stats) -> String {
    let mut out = format!("\nraindrop stats: {}\n", stats_line(stats));
    match sink {
        Some(path) => match Recorded::read(path) {
            Ok(rec) => {
                out.push('\n');
                out.push_str(&rec.report());
                let _ = writeln!(out, "Raw JSON lines (one request each): {}", path.display());
                let _ = writeln!(
                    out,
                    "In a browser: cargo run -p raindrop-view -- {}",
                    path.display()
                );
            }
            Err(e) => {
                let _ = writeln!(out, "could not read {}: {e}", path.display());
            }
        },
        None => {
            out.push_str("(events went to the Raindrop API or to stdout/stderr, not to a file)\n")
        }
    }
    out
}
