//! The function shapes real services use, under `#![deny(warnings)]` and
//! clippy pedantic: the expansion must compile clean in the caller's crate
//! (this file failing to compile, or clippy failing on it, is the failure)
//! and record the right thing at run time (read back through
//! `raindrop::testing`).

#![deny(warnings)]
#![deny(clippy::pedantic)]

use std::fmt::{Debug, Display};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use raindrop::testing::{with_captured, Capture};
use raindrop::ClientOptions;
use tracing_subscriber::prelude::*;

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

// ---- one-expression bodies on one line -----------------------------------

#[raindrop::interaction("one_line", user_id = user)]
async fn one_line(user: &str, q: &str) -> String {
    format!("{q}!")
}

#[raindrop::tool]
async fn one_line_tool(x: u32) -> u32 {
    x + 1
}

#[raindrop::task]
fn one_line_task(x: u32) -> u32 {
    x * 2
}

#[test]
fn one_expression_bodies_compile_clean_and_record() {
    let (out, r) = with_captured(|| {
        block_on(async {
            let a = one_line("u-1", "hi").await;
            (a, one_line_tool(1).await, one_line_task(2))
        })
    });
    assert_eq!(out, ("hi!".to_owned(), 2, 4));
    let finished = r.finished_interactions();
    assert_eq!(finished.len(), 1, "{}", r.render());
    assert_eq!(r.final_updates(), 1);
    assert_eq!(finished[0].output.as_deref(), Some("hi!"));
    let output = |name: &str| r.span(name).and_then(|s| s.output.as_deref());
    assert_eq!(output("one_line_tool.tool"), Some("2"));
    assert_eq!(output("one_line_task.task"), Some("4"));
}

// ---- #[async_trait] and other plain fns returning futures -----------------

#[async_trait::async_trait]
trait Agent {
    async fn answer(&self, user: String, q: String) -> String;
    async fn calc(&self, x: i64) -> Result<i64, String>;
}

struct Bot {
    prefix: &'static str,
}

#[async_trait::async_trait]
impl Agent for Bot {
    #[raindrop::interaction("agent", user_id = user)]
    async fn answer(&self, user: String, q: String) -> String {
        tokio::task::yield_now().await;
        raindrop::resume_interaction().set_property("resumed", true);
        let n = self.calc(i64::try_from(q.len()).unwrap_or(0)).await;
        format!("{}{q} {n:?}", self.prefix)
    }

    #[raindrop::tool("calc")]
    async fn calc(&self, x: i64) -> Result<i64, String> {
        tokio::task::yield_now().await;
        if x > 100 {
            return Err("too big".to_owned());
        }
        Ok(x * 10)
    }
}

#[raindrop::task("later")]
fn returns_impl_future(x: u32) -> impl Future<Output = Result<u32, String>> {
    let y = x + 1;
    async move {
        tokio::task::yield_now().await;
        let parsed: u32 = format!("{y}").parse().map_err(|_| "nan".to_owned())?;
        Ok(parsed * 3)
    }
}

#[raindrop::tool("boxed")]
fn returns_boxed(x: u32) -> Pin<Box<dyn Future<Output = u32> + Send>> {
    Box::pin(async move {
        tokio::task::yield_now().await;
        raindrop::resume_interaction().set_property("boxed_ran", true);
        x + 5
    })
}

#[raindrop::interaction("futures", user_id = "u-fut")]
async fn futures_inside() -> u32 {
    returns_impl_future(1).await.unwrap_or(0) + returns_boxed(2).await
}

#[test]
fn async_trait_methods_are_instrumented_across_awaits() {
    let bot = Bot { prefix: "> " };
    let (out, r) = with_captured(|| {
        block_on(async {
            let a = bot.answer("u-at".to_owned(), "abc".to_owned()).await;
            let big = bot.calc(1000).await;
            (a, big)
        })
    });
    assert_eq!(out.0, "> abc Ok(30)");
    assert_eq!(out.1, Err("too big".to_owned()));
    let finished = r.finished_interactions();
    assert_eq!(finished.len(), 1, "{}", r.render());
    assert_eq!(r.final_updates(), 1);
    let f = finished[0];
    // The real output, not the future's type name; resume found it.
    assert_eq!(f.output.as_deref(), Some("> abc Ok(30)"));
    assert_eq!(f.input.as_deref(), Some(r#"{"q":"abc","user":"u-at"}"#));
    assert_eq!(f.properties["resumed"], true);
    let calls = r.spans_named("calc.tool");
    assert_eq!(calls.len(), 2, "{}", r.render());
    let inner = calls
        .iter()
        .find(|s| s.input.as_deref() == Some("3"))
        .expect("the call inside the interaction");
    assert_eq!(inner.event_id.as_deref(), Some(f.event_id.as_str()));
    assert_eq!(inner.output.as_deref(), Some("30"));
    let wf = r.span("agent.workflow").expect("the workflow span");
    assert!(inner.is_child_of(wf));
    let failed = calls
        .iter()
        .find(|s| s.input.as_deref() == Some("1000"))
        .expect("the call outside");
    assert_eq!(failed.error.as_deref(), Some("too big"));
}

#[test]
fn plain_fns_returning_async_blocks_are_instrumented() {
    let (out, r) = with_captured(|| block_on(futures_inside()));
    assert_eq!(out, 6 + 7);
    let finished = r.finished_interactions();
    assert_eq!(finished.len(), 1, "{}", r.render());
    assert_eq!(r.final_updates(), 1);
    assert_eq!(finished[0].properties["boxed_ran"], true);
    let later = r.span("later.task").expect("later");
    assert_eq!(later.input.as_deref(), Some("1"));
    assert_eq!(later.output.as_deref(), Some("6"));
    let boxed = r.span("boxed.tool").expect("boxed");
    assert_eq!(boxed.output.as_deref(), Some("7"));
    let wf = r.span("futures.workflow").expect("the workflow span");
    for s in [later, boxed] {
        assert!(s.is_child_of(wf), "{s:?} under {wf:?}");
    }
}

// ---- the other shapes -------------------------------------------------------

#[raindrop::tool]
fn diverges(msg: &str) -> ! {
    panic!("{msg}")
}

#[raindrop::tool]
#[track_caller]
fn caller_line() -> u32 {
    std::panic::Location::caller().line()
}

#[raindrop::task]
fn chunks<const N: usize, T>(items: &[T]) -> usize
where
    T: Clone + Debug,
{
    items.len().div_ceil(N)
}

#[raindrop::tool]
fn first<'a>(a: &'a str, _b: &str) -> &'a str {
    a.split(' ').next().unwrap_or(a)
}

#[raindrop::tool]
fn show(x: impl Display, y: impl Debug) -> String {
    format!("{x} {y:?}")
}

struct Shared {
    n: u32,
}

impl Shared {
    #[raindrop::task]
    fn by_arc(self: Arc<Self>, k: u32) -> u32 {
        self.n + k
    }
}

trait Describe {
    fn describe(&self, sep: &str) -> String;
}

struct Wrapper<T>(T);

impl<T: Debug> Describe for Wrapper<T> {
    #[raindrop::tool("describe")]
    fn describe(&self, sep: &str) -> String {
        format!("{sep}{:?}{sep}", self.0)
    }
}

#[test]
fn other_shapes_compile_and_record() {
    let (line, r) = with_captured(|| {
        let panicked = std::panic::catch_unwind(|| diverges("boom")).is_err();
        assert!(panicked);
        let line = (caller_line(), line!());
        assert_eq!(chunks::<2, u8>(&[1, 2, 3]), 2);
        assert_eq!(first("a b", "c"), "a");
        assert_eq!(show(1, "y"), r#"1 "y""#);
        assert_eq!(Arc::new(Shared { n: 1 }).by_arc(2), 3);
        assert_eq!(Wrapper(5).describe("|"), "|5|");
        line
    });
    // `#[track_caller]` still sees its caller.
    assert_eq!(line.0, line.1);
    let span = |name: &str| {
        r.span(name)
            .unwrap_or_else(|| panic!("no span {name}:\n{}", r.render()))
    };
    assert_eq!(span("diverges.tool").error.as_deref(), Some("panicked"));
    let out = |name: &str| span(name).output.as_deref();
    assert_eq!(out("caller_line.tool"), Some(line.1.to_string().as_str()));
    assert_eq!(out("chunks.task"), Some("2"));
    assert_eq!(out("first.tool"), Some("a"));
    assert_eq!(out("show.tool"), Some(r#"1 "y""#));
    assert_eq!(out("by_arc.task"), Some("3"));
    assert_eq!(out("describe.tool"), Some("|5|"));
    let input = |name: &str| span(name).input.as_deref();
    assert_eq!(input("by_arc.task"), Some("2"));
    assert_eq!(input("first.tool"), Some(r#"{"_b":"c","a":"a b"}"#));
}

// ---- output =, level =, crate = --------------------------------------------

#[derive(Debug, serde::Serialize)]
struct Response {
    event_id: Option<String>,
    answer: String,
}

/// The answer is the output, not the whole response.
#[raindrop::interaction("with_output", user_id = "u-out", output = |r| r.answer.clone())]
fn with_output(q: &str) -> Response {
    let id = raindrop::resume_interaction().event_id().map(str::to_owned);
    Response {
        event_id: id,
        answer: format!("answer to {q}"),
    }
}

/// On a `Result`, the closure gets the `Ok` value; an `Err` is still the error.
#[raindrop::tool(output = |v: &Vec<u32>| v.len())]
fn counted(n: u32) -> Result<Vec<u32>, String> {
    if n == 0 {
        Err("none".to_owned())
    } else {
        Ok((0..n).collect())
    }
}

/// Any other expression is the output as it stands.
#[raindrop::task(output = "redacted")]
fn secret(x: u32) -> u32 {
    x + 1
}

#[raindrop::tool(level = "debug")]
fn quiet(x: u32) -> u32 {
    x
}

#[raindrop::tool(level = Level::WARN)]
fn loud(x: u32) -> u32 {
    x
}

mod sdk {
    //! The SDK re-exported under another path (a renamed dependency or a
    //! facade crate of the user's own).
    pub use raindrop::*;
}

#[raindrop::tool("renamed", crate = crate::sdk)]
fn through_reexport(x: u32) -> u32 {
    x * 3
}

/// Records the level of every span it sees.
struct Levels(Arc<std::sync::Mutex<Vec<(String, tracing::Level)>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Levels {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _id: &tracing::span::Id,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let m = attrs.metadata();
        self.0
            .lock()
            .unwrap()
            .push((m.name().to_owned(), *m.level()));
    }
}

#[test]
fn output_and_crate_arguments() {
    let (resp, r) = with_captured(|| {
        let resp = with_output("q1");
        assert_eq!(counted(3).map(|v| v.len()), Ok(3));
        assert!(counted(0).is_err());
        assert_eq!(secret(1), 2);
        assert_eq!(through_reexport(2), 6);
        resp
    });
    let finished = r.finished_interactions();
    assert_eq!(finished.len(), 1, "{}", r.render());
    assert_eq!(r.final_updates(), 1);
    assert_eq!(finished[0].output.as_deref(), Some("answer to q1"));
    assert_eq!(
        Some(finished[0].event_id.as_str()),
        resp.event_id.as_deref()
    );
    let output = |name: &str| r.span(name).and_then(|s| s.output.as_deref());
    assert_eq!(output("with_output.workflow"), Some("answer to q1"));
    let counted = r.spans_named("counted.tool");
    assert_eq!(counted.len(), 2);
    assert!(counted.iter().any(|s| s.output.as_deref() == Some("3")));
    assert!(counted.iter().any(|s| s.error.as_deref() == Some("none")));
    assert_eq!(output("secret.task"), Some("redacted"));
    assert_eq!(output("renamed.tool"), Some("6"));
}

#[test]
fn level_argument_sets_the_span_level() {
    let capture = Capture::new();
    let levels = Arc::new(std::sync::Mutex::new(Vec::new()));
    let d = tracing::Dispatch::new(
        tracing_subscriber::registry()
            .with(Levels(levels.clone()))
            .with(raindrop::layer_for(capture.client())),
    );
    tracing::dispatcher::with_default(&d, || {
        assert_eq!(quiet(1) + loud(2) + one_line_task(1), 5);
    });
    let levels = levels.lock().unwrap().clone();
    let level_of = |n: &str| levels.iter().find(|(name, _)| name == n).map(|(_, l)| *l);
    assert_eq!(level_of("quiet"), Some(tracing::Level::DEBUG));
    assert_eq!(level_of("loud"), Some(tracing::Level::WARN));
    assert_eq!(level_of("one_line_task"), Some(tracing::Level::INFO));
    // Tracked at any level: the raindrop layer's filter looks at the marker only.
    let r = capture.recorded();
    let mut names: Vec<&str> = r.spans.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["loud.tool", "one_line_task.task", "quiet.tool"]);
}

// ---- children after return --------------------------------------------------

#[raindrop::tool("late_tool")]
async fn late_tool(x: u32) -> u32 {
    tokio::time::sleep(Duration::from_millis(20)).await;
    x + 1
}

#[raindrop::interaction("spawner", user_id = "u-spawn")]
async fn spawner() -> tokio::task::JoinHandle<(u32, Option<String>)> {
    use tracing::Instrument;
    tokio::spawn(
        async {
            // Runs after `spawner` returned (its record is already sent).
            tokio::time::sleep(Duration::from_millis(30)).await;
            let n = late_tool(1).await;
            let id = raindrop::resume_interaction().event_id().map(str::to_owned);
            (n, id)
        }
        .in_current_span(),
    )
}

#[test]
fn children_created_after_the_function_returned_still_link() {
    let ((n, resumed), r) = with_captured(|| {
        block_on(async {
            let handle = spawner().await;
            handle.await.unwrap()
        })
    });
    assert_eq!(n, 2);
    let finished = r.finished_interactions();
    assert_eq!(finished.len(), 1, "{}", r.render());
    assert_eq!(r.final_updates(), 1);
    let event_id = finished[0].event_id.as_str();
    assert_eq!(
        resumed.as_deref(),
        Some(event_id),
        "resume_interaction() in the spawned task"
    );
    let wf = r.span("spawner.workflow").expect("the workflow span");
    let tool = r.span("late_tool.tool").expect("the late tool span");
    assert!(tool.is_child_of(wf), "{tool:?} under {wf:?}");
    assert_eq!(tool.event_id.as_deref(), Some(event_id));
}

// ---- capture is capped -------------------------------------------------------

static SERIALIZED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static FORMATTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A long message history that counts how many of its messages were
/// serialised (or formatted).
struct History(usize);

impl serde::Serialize for History {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.0))?;
        for i in 0..self.0 {
            SERIALIZED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            seq.serialize_element(&format!("message number {i} of the conversation"))?;
        }
        seq.end()
    }
}

struct DebugOnly(usize);

impl Debug for DebugOnly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries((0..self.0).map(Item)).finish()
    }
}

/// One entry of [`DebugOnly`]: counts how often it is formatted.
struct Item(usize);

impl Debug for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        FORMATTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Debug::fmt(&self.0, f)
    }
}

#[raindrop::task("summarise")]
fn summarise(history: &History, note: &DebugOnly) -> usize {
    history.0 + note.0
}

#[raindrop::task("inspect")]
fn inspect(note: &DebugOnly) -> usize {
    note.0
}

#[raindrop::tool("long_reply")]
fn long_reply(n: usize) -> String {
    "é".repeat(n)
}

#[test]
fn captured_values_stop_at_the_cap() {
    let capture = Capture::with_options(ClientOptions::default().max_text_field_chars(500));
    capture.run(|| {
        assert_eq!(summarise(&History(100_000), &DebugOnly(100_000)), 200_000);
        assert_eq!(inspect(&DebugOnly(100_000)), 100_000);
        assert_eq!(long_reply(10_000).chars().count(), 10_000);
    });
    let r = capture.recorded();
    // O(cap): the serialisation and the formatting stopped at the cap,
    // long before the 100,000 items.
    let serialized = SERIALIZED.load(std::sync::atomic::Ordering::Relaxed);
    let formatted = FORMATTED.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        serialized < 100,
        "serialised {serialized} messages for a 500-char cap"
    );
    assert!(
        formatted < 500,
        "formatted {formatted} items for a 500-char cap"
    );
    let input = |name: &str| {
        r.span(name)
            .and_then(|s| s.input.clone())
            .unwrap_or_else(|| panic!("no input on {name}:\n{}", r.render()))
    };
    let summarised = input("summarise.task");
    assert_eq!(summarised.chars().count(), 500, "{summarised}");
    assert!(
        summarised.starts_with(r#"{"history":["message number 0 of the conversation","#),
        "{summarised}"
    );
    let debug = input("inspect.task");
    assert_eq!(debug.chars().count(), 500);
    assert!(debug.starts_with("[0, 1, 2, "), "{debug}");
    assert!(formatted > 10, "the Debug text was captured");
    let output = r
        .span("long_reply.tool")
        .and_then(|s| s.output.as_deref())
        .expect("the long reply");
    assert_eq!(output.chars().count(), 500);
    assert!(output.starts_with("éééé"));
}
