//! `raindrop-view`: see what the Raindrop SDK records while you develop.
//!
//! The `raindrop-view` binary reads a local-sink file (JSON lines
//! `{"path": ..., "body": ...}`, what the SDK writes instead of sending when
//! it has no write key) or, with `--listen`, acts as a local ingest endpoint
//! the SDK sends to (`RAINDROP_ENDPOINT=http://127.0.0.1:5898/v1/`). It
//! serves a page on 127.0.0.1 listing the interactions (merged from their
//! partial updates), each with its span tree and signals, updated live; or,
//! with `--text`, prints the same tree to stdout.
//!
//! This library is that tool's parts, for the examples and tests:
//! [`Recorded`] merges requests the way the backend would,
//! [`Recorded::render`] is the text tree, [`to_json`] the page's data and
//! [`Viewer`] the web server.

mod held;
mod server;
mod view;

pub use raindrop_core::testing::short;
pub use raindrop_core::testing::{Recorded, RecordedEvent, RecordedSpan};
pub use server::{
    is_loopback_host, is_loopback_origin, serve, spawn, Options, Viewer, INGEST_PATHS,
};
pub use view::{to_json, tokens_of, Tokens};

/// The default port of the page (and, with `--listen`, of the ingest
/// endpoint).
pub const DEFAULT_PORT: u16 = 5898;
