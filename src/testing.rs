//! Assert in your own tests what your code records (feature `testing`).
//!
//! [`Capture`] is a client that keeps every request it would send in memory
//! (the local sink, so exactly the bytes the API would get) and the tracing
//! subscriber that routes the layer, the macros and
//! [`resume_interaction`](crate::resume_interaction) to it. [`Recorded`]
//! reads those requests back the way the backend does: interactions merged
//! from their partial updates, events, signals, identifies, and spans with
//! their tree.
//!
//! The subscriber is scoped (`tracing::subscriber::with_default`, or
//! `WithSubscriber` for a future), so tests running in parallel do not see
//! each other. The free functions (`raindrop::track_ai`, ...) go to the
//! global client, not to a capture: in a test, call the capture's
//! [`client`](Capture::client) instead.
//!
//! ```
//! #[raindrop::interaction("chat")]
//! fn handle(question: &str) -> String {
//!     lookup(question);
//!     raindrop::resume_interaction().set_property("plan", "pro");
//!     format!("answer to {question}")
//! }
//!
//! #[raindrop::tool]
//! fn lookup(q: &str) -> usize {
//!     q.len()
//! }
//!
//! let (answer, recorded) = raindrop::testing::with_captured(|| handle("why?"));
//! assert_eq!(answer, "answer to why?");
//!
//! let chat = recorded.event("chat").expect("one chat interaction");
//! assert!(chat.finished);
//! assert_eq!(chat.output.as_deref(), Some("answer to why?"));
//! assert_eq!(chat.properties["plan"], "pro");
//! let tool = recorded.span("lookup").expect("the tool span");
//! assert_eq!(tool.event_id.as_deref(), Some(chat.event_id.as_str()));
//! ```

use std::future::Future;
use std::time::Duration;

use raindrop_core::{Client, ClientOptions, LocalSink, MemorySink, Workshop};
use tracing::instrument::WithSubscriber;
use tracing_subscriber::layer::SubscriberExt;

pub use raindrop_core::testing::{Recorded, RecordedEvent, RecordedSpan};

/// How long [`Capture::recorded`] waits for the worker to write everything.
const FLUSH: Duration = Duration::from_secs(30);

/// A client recording in memory what it would send, with a subscriber that
/// routes the raindrop layer to it. Clones share the same records.
#[derive(Clone, Debug)]
pub struct Capture {
    client: Client,
    sink: MemorySink,
}

impl Capture {
    /// A capture with default options.
    pub fn new() -> Capture {
        Capture::with_options(ClientOptions::default())
    }

    /// A capture with these options (sampling, redaction, `before_send`,
    /// ...): the sink is replaced by memory and the Workshop mirror is off;
    /// the write key and endpoint are not used. Application Git detection
    /// is off unless the options turn it on (`AppGit::auto_detect(true)`),
    /// so recorded properties do not depend on the checkout the tests run in.
    pub fn with_options(mut options: ClientOptions) -> Capture {
        let sink = MemorySink::new();
        options.app_git.auto_detect.get_or_insert(false);
        let options = options
            .local_sink(LocalSink::Memory(sink.clone()))
            .workshop(Workshop::Off)
            .upload_interval(Duration::from_millis(10));
        let client = Client::new(options).expect("a local-sink client has no endpoint to refuse");
        Capture { client, sink }
    }

    /// The client: track with it directly, or give it to code under test.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// A `tracing` dispatcher with the raindrop layer for this capture, for
    /// `tracing::dispatcher::with_default` or `WithSubscriber::with_subscriber`.
    pub fn dispatch(&self) -> tracing::Dispatch {
        tracing::Dispatch::new(
            tracing_subscriber::registry().with(raindrop_tracing::layer_for(&self.client)),
        )
    }

    /// Runs `f` with this capture's subscriber as the thread's default.
    pub fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        tracing::dispatcher::with_default(&self.dispatch(), f)
    }

    /// Waits until the worker has written everything tracked so far, then
    /// decodes it. Blocks the thread: in async code use
    /// [`recorded_async`](Capture::recorded_async).
    pub fn recorded(&self) -> Recorded {
        assert!(
            self.client.flush(FLUSH),
            "raindrop::testing: the worker did not finish writing within {FLUSH:?}"
        );
        Recorded::parse(&self.sink.text())
    }

    /// [`recorded`](Capture::recorded) for async code.
    pub async fn recorded_async(&self) -> Recorded {
        assert!(
            self.client.flush_async(FLUSH).await,
            "raindrop::testing: the worker did not finish writing within {FLUSH:?}"
        );
        Recorded::parse(&self.sink.text())
    }

    /// Forgets everything recorded so far (after waiting for the worker).
    pub fn clear(&self) {
        self.client.flush(FLUSH);
        self.sink.clear();
    }
}

impl Default for Capture {
    fn default() -> Self {
        Capture::new()
    }
}

/// Runs `f` under a fresh [`Capture`]'s subscriber and returns its result
/// with everything recorded (interactions whose span closed inside `f` are
/// finished).
pub fn with_captured<R>(f: impl FnOnce() -> R) -> (R, Recorded) {
    let capture = Capture::new();
    let out = capture.run(f);
    (out, capture.recorded())
}

/// [`with_captured`] for a future: the subscriber follows the future across
/// `.await`s and threads.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// #[raindrop::interaction("chat")]
/// async fn handle(q: String) -> String {
///     format!("answer to {q}")
/// }
///
/// let (_, recorded) = raindrop::testing::with_captured_async(handle("why?".into())).await;
/// assert_eq!(recorded.event("chat").unwrap().input.as_deref(), Some("why?"));
/// # }
/// ```
pub async fn with_captured_async<F: Future>(f: F) -> (F::Output, Recorded) {
    let capture = Capture::new();
    let out = f.with_subscriber(capture.dispatch()).await;
    (out, capture.recorded_async().await)
}
