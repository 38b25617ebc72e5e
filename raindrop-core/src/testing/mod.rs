//! Reading back what the SDK sent (feature `testing`).
//!
//! Not part of the stable API: the decoder `raindrop::testing` and
//! `raindrop-view` share. Use `raindrop::testing`.
//!
//! [`Recorded`] decodes local-sink lines (`{"path": ..., "body": ...}`, what
//! [`LocalSink`](crate::LocalSink) writes instead of sending) the way the
//! backend reads them: `events/track_partial` updates merged into one
//! interaction per `event_id`, spans from the OTLP/JSON `traces` bodies,
//! signals and identifies as sent. It is the one decoder the test kit, the
//! examples and `raindrop-view` share.
//!
//! ```
//! use raindrop_core::testing::Recorded;
//! use raindrop_core::{Begin, Client, ClientOptions, LocalSink, MemorySink};
//! use std::time::Duration;
//!
//! let sink = MemorySink::new();
//! let client = Client::new(ClientOptions::default().local_sink(LocalSink::Memory(sink.clone()))).unwrap();
//! let chat = client.begin(Begin::new("user-1", "chat").input("hi")).unwrap();
//! chat.set_property("plan", "pro");
//! chat.finish("hello");
//! assert!(client.flush(Duration::from_secs(5)));
//!
//! let recorded = Recorded::parse(&sink.text());
//! let chat = recorded.event("chat").unwrap();
//! assert!(chat.finished);
//! assert_eq!(chat.output.as_deref(), Some("hello"));
//! assert_eq!(chat.properties["plan"], "pro");
//! ```

mod record;
mod text;
mod tree;

pub use record::{span_children, span_roots, Recorded, RecordedEvent, RecordedSpan};
pub use text::{short, signal_line};
pub use tree::{span_tree, SpanNode, MAX_DEPTH};
