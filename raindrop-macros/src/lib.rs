//! Attribute macros of the Raindrop Rust SDK: `#[raindrop::interaction]`,
//! `#[raindrop::task]` and `#[raindrop::tool]`. Use them through the
//! `raindrop` facade; the generated code refers only to `::raindrop::__private`.
//!
//! Each attribute wraps a function (sync or `async`, free function or method)
//! in a span marked with `raindrop.kind`, which the raindrop tracing layer
//! turns into an interaction (`#[interaction]`) or an exported task/tool span.
//!
//! Arguments (all optional):
//!
//! * a string literal or `name = "..."`: the name (default: the function name);
//! * `skip(a, b)`: arguments not captured as input; `skip_all`: capture none;
//! * `input = expr`: the input, instead of the arguments;
//! * `output = expr`: the output, instead of the return value: a closure is
//!   called with a reference to the return value (the `Ok` value of a
//!   `Result`), e.g. `output = |r| r.answer.clone()`; any other expression
//!   is the output as it stands;
//! * `level = "debug"` (or `Level::DEBUG`; default INFO): the span's level;
//! * `version = 2` (an integer literal): the entity version, sent as
//!   `traceloop.entity.version` (the Python decorators' `version=`);
//! * `crate = path`: where the SDK is (default `::raindrop`), for a renamed
//!   dependency or a re-export, e.g. `crate = my_facade::raindrop`;
//! * on `#[interaction]` only: `event = expr` (event name, default the name),
//!   `user_id = expr`, `convo_id = expr`, `event_id = expr`. These
//!   expressions may use the function's arguments, including bindings of
//!   destructuring patterns such as `Json(req): Json<ChatRequest>`; their
//!   values must implement `tracing::Value` (`&str`, `String`, `Option<_>`,
//!   integers, ...).
//!
//! Arguments are captured as JSON when they implement `serde::Serialize`,
//! else with `Debug`, else as their type name; one argument is captured as its
//! own value, several as a JSON object keyed by name. A string is sent
//! unquoted. By default the input is the request body when there is one (the
//! inner value of `Json(..)` / `Form(..)` arguments of an axum handler), else
//! every argument but context extractors (`State`, `Extension`, `HeaderMap`,
//! `ConnectInfo`, ...), which are never captured. The return value is the
//! output (none for `()` or `None`); an `Err` of a function returning `Result` marks the span failed
//! (and finishes the interaction with the error). Nothing is captured when no
//! raindrop layer sees the span.
//!
//! **Content stays out of your logs.** The input, output, error, user,
//! conversation and event ids reach the raindrop layer through the span's
//! extensions, never as span fields: a log layer sees the span as
//! `chat{raindrop.kind="interaction"}` and nothing else.
//!
//! **Setup mistakes are loud.** When no raindrop layer sees an interaction's
//! span (no subscriber, a subscriber without the raindrop layer, a global
//! filter that disables it), the first such call logs one WARN naming the
//! cause and the fix (on stderr when the subscriber would not show it); an
//! interaction that finishes without a user id warns once, naming the function.
//!
//! The span is at level INFO (or `level = ..`) with your module path as its target (like
//! `#[tracing::instrument]`), named after the function (or the given name),
//! and declares every `raindrop.*` field it may receive (empty), so
//! `tracing::Span::current().record("raindrop.user_id", ..)` works inside;
//! a value recorded that way is an ordinary span field, visible to every
//! layer.
//! `async fn`s are instrumented (the span is current on every poll); a panic
//! ends the span with the error `panicked`, and a future dropped before it
//! completes ends it with `cancelled`. A plain fn whose body ends in
//! `async move { .. }` or `Box::pin(async move { .. })` (what
//! `#[async_trait]` writes) is instrumented the same way: the span starts at
//! the call and is current while the returned future runs. A plain fn that
//! returns a future any other way is a compile error saying so. On a
//! `#[track_caller]` fn the body is not wrapped in a closure (the caller's
//! location is kept); there, an early `return` or `?` ends the span without
//! an output or error.
//!
//! Captured values are written into one buffer that stops at the client's
//! `max_text_field_chars`: a huge argument costs O(cap), not O(its size).
//!
//! When the function returns while its span stays open (a clone of it lives
//! on in an instrumented `tokio::spawn`), spans created later under it still
//! join its trace and link to its interaction, and `resume_interaction()`
//! there still returns the interaction (already finished: later updates are
//! ignored, its `event_id()` still works).

//!
//! The expansion, by concern: `args` parses the attribute, `capture`
//! records input and outcome, `span` opens the span, `body` wraps the
//! function's body (sync, `async`, or a returned future).

mod args;
mod body;
mod capture;
mod span;

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::quote;
use syn::ItemFn;

use args::{Args, Kind};

/// Marks a function as one Raindrop interaction (one AI event).
///
/// `#[raindrop::interaction("chat")]`,
/// `#[raindrop::interaction(name = "chat", user_id = req.user_id, convo_id = req.convo_id, input = req.message)]`.
/// The interaction begins when the function is called and finishes when it
/// returns: with the return value as output, or with the error of an `Err`
/// or a panic (which then propagates unchanged). Inside,
/// `raindrop::resume_interaction()` returns it.
///
/// ```
/// # let path = std::env::temp_dir().join(format!("raindrop-macros-doc-{}", std::process::id()));
/// use raindrop::{Client, ClientOptions, LocalSink};
/// use tracing_subscriber::prelude::*;
///
/// #[raindrop::interaction("chat", user_id = user)]
/// fn chat(user: &str, question: &str) -> String {
///     raindrop::resume_interaction().set_property("lang", "en");
///     let sum = add(2, 2);
///     format!("{question} {sum}")
/// }
///
/// #[raindrop::tool("calculator")]
/// fn add(a: i64, b: i64) -> i64 {
///     a + b
/// }
///
/// let client = Client::new(ClientOptions::default().local_sink(LocalSink::File(path.clone())))?;
/// let subscriber = tracing_subscriber::registry().with(raindrop::layer_for(&client));
/// tracing::subscriber::with_default(subscriber, || chat("user-1", "2+2 ="));
/// client.shutdown(std::time::Duration::from_secs(5));
/// let sent = std::fs::read_to_string(&path).unwrap();
/// assert!(sent.contains(r#""user_id":"user-1""#) && sent.contains("calculator.tool"));
/// # let _ = std::fs::remove_file(path);
/// # Ok::<(), raindrop::Error>(())
/// ```
#[proc_macro_attribute]
pub fn interaction(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(Kind::Interaction, args, item)
}

/// Marks a function as a task: exported as a `<name>.task` span linked to
/// the enclosing interaction. `#[raindrop::task]`, `#[raindrop::task("rank")]`.
///
/// ```
/// #[raindrop::task("rank")]
/// async fn rank(hits: Vec<String>) -> Vec<String> {
///     let mut hits = hits;
///     hits.sort();
///     hits
/// }
/// # drop(rank(vec![]));
/// ```
#[proc_macro_attribute]
pub fn task(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(Kind::Task, args, item)
}

/// Marks a function as a tool call: exported as a `<name>.tool` span linked
/// to the enclosing interaction. `#[raindrop::tool]`, `#[raindrop::tool("search")]`.
///
/// ```
/// #[derive(Debug)]
/// struct NotFound;
/// impl std::fmt::Display for NotFound {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         f.write_str("no hits")
///     }
/// }
///
/// // An `Err` marks the tool span failed with the error's text.
/// #[raindrop::tool("search", skip(limit))]
/// fn search(query: &str, limit: usize) -> Result<Vec<String>, NotFound> {
///     if query.is_empty() { Err(NotFound) } else { Ok(vec![query.to_owned(); limit]) }
/// }
/// assert!(search("", 3).is_err());
/// ```
#[proc_macro_attribute]
pub fn tool(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(Kind::Tool, args, item)
}

fn expand(kind: Kind, args: TokenStream, item: TokenStream) -> TokenStream {
    let args = match syn::parse::<Args>(args) {
        Ok(a) => a,
        Err(e) => return e.to_compile_error().into(),
    };
    let func = match syn::parse::<ItemFn>(item) {
        Ok(f) => f,
        Err(e) => {
            return syn::Error::new(
                e.span(),
                format!("#[raindrop::{}] applies to functions: {e}", kind.as_str()),
            )
            .to_compile_error()
            .into()
        }
    };
    match expand_fn(kind, args, func) {
        Ok(ts) => ts.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn expand_fn(kind: Kind, args: Args, func: ItemFn) -> syn::Result<TokenStream2> {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = func;
    args.check(kind, &sig)?;
    let params = capture::Params::of(&sig);
    params.check_skip(&args.skip)?;
    let names = span::Names::new(&args, &sig);
    let shape = body::shape_of(&attrs, &sig, &block)?;
    let returned = body::Returned::of(&shape, &sig);
    let open = span::open(
        &names,
        kind,
        &args,
        &sig,
        capture::input(&names, &args, &params),
    );
    let outcome = capture::outcome(&names, &args, &returned);
    let body = body::wrap(&names, &shape, &sig, &block, open, outcome);
    Ok(quote! {
        #(#attrs)*
        #vis #sig {
            #body
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expanded(kind: Kind, args: TokenStream2, item: TokenStream2) -> String {
        let args: Args = syn::parse2(args).unwrap();
        let func: ItemFn = syn::parse2(item).unwrap();
        expand_fn(kind, args, func).unwrap().to_string()
    }

    #[test]
    fn crate_argument_replaces_every_path_to_the_sdk() {
        for (kind, item) in [
            (
                Kind::Interaction,
                quote!(
                    fn chat(q: &str) -> String {
                        q.to_owned()
                    }
                ),
            ),
            (
                Kind::Tool,
                quote!(
                    async fn t(q: u32) -> Result<u32, String> {
                        Ok(q)
                    }
                ),
            ),
            (
                Kind::Task,
                quote!(
                    fn f(x: u32) -> impl std::future::Future<Output = u32> {
                        async move { x }
                    }
                ),
            ),
        ] {
            let args = quote!(crate = ::my_sdk::reexport, user_id = "u");
            let args = if kind == Kind::Interaction {
                args
            } else {
                quote!(crate = ::my_sdk::reexport)
            };
            let out = expanded(kind, args, item.clone());
            assert!(out.contains(":: my_sdk :: reexport :: __private"), "{out}");
            assert!(!out.contains("raindrop ::"), "a hard-coded path in: {out}");
            // Without the argument, the facade's path.
            let out = expanded(kind, quote!(), item);
            assert!(out.contains(":: raindrop :: __private"), "{out}");
        }
    }
}
