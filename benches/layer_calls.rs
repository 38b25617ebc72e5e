//! The layer's caller cost as a fixed workload, for an instruction count
//! that load on the machine does not move (criterion's times in `layer`
//! do, by 2-3x on a shared machine):
//!
//! ```sh
//! cargo bench --bench layer_calls --no-run   # prints the binary's path
//! valgrind --tool=callgrind --callgrind-out-file=cg.out <binary> 8192
//! callgrind_annotate --inclusive=yes cg.out | grep -E 'layer_calls::(add|unrelated)'
//! ```
//!
//! `add` is a sync `#[raindrop::tool]` fn called N times inside an
//! interaction span (registry + fmt to `io::sink` + `raindrop::layer_for`,
//! a file sink; an untimed flush every 2,048 calls); `unrelated_span_*` is
//! one ordinary span (created, entered, closed) on the same stack with and
//! without the raindrop layer. Divide each function's inclusive count by N.

#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use raindrop::{Client, ClientOptions, LocalSink};
use tracing_subscriber::prelude::*;

#[raindrop::tool("calculator")]
fn add(a: i64, b: i64) -> i64 {
    a.wrapping_add(b)
}

#[inline(never)]
fn unrelated_span() {
    let span = tracing::info_span!("db_query", table = "users", rows = 3u64);
    let _entered = span.enter();
    black_box(&span);
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(4096);
    let path = std::env::temp_dir().join(format!("tool-instr-{}", std::process::id()));
    let client =
        Client::new(ClientOptions::default().local_sink(LocalSink::File(path.clone()))).unwrap();
    let fmt = || tracing_subscriber::fmt::layer().with_writer(std::io::sink);
    let stack = tracing_subscriber::registry()
        .with(fmt())
        .with(raindrop::layer_for(&client));
    tracing::subscriber::with_default(stack, || {
        let chat = tracing::info_span!(
            "chat",
            raindrop.kind = "interaction",
            raindrop.user_id = "user-1234",
            raindrop.input = "What is 2 + 40?",
            raindrop.output = tracing::field::Empty,
        );
        let _in_chat = chat.enter();
        let mut left = n;
        while left > 0 {
            let k = left.min(2048);
            for _ in 0..k {
                black_box(add(black_box(2), black_box(40)));
            }
            assert!(client.flush(Duration::from_secs(60)));
            left -= k;
        }
        chat.record("raindrop.output", "42");
    });
    let stack = tracing_subscriber::registry()
        .with(fmt())
        .with(raindrop::layer_for(&client));
    tracing::subscriber::with_default(stack, || {
        for _ in 0..n {
            unrelated_span();
        }
    });
    let stack = tracing_subscriber::registry().with(fmt());
    tracing::subscriber::with_default(stack, || {
        for _ in 0..n {
            unrelated_span();
        }
    });
    client.shutdown(Duration::from_secs(10));
    let _ = std::fs::remove_file(path);
}
