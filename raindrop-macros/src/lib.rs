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

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{Expr, FnArg, Ident, ItemFn, LitStr, Pat, ReturnType, Token, Type};

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
/// let subscriber = tracing_subscriber::registry().with(raindrop::layer(&client));
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Interaction,
    Task,
    Tool,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Interaction => "interaction",
            Kind::Task => "task",
            Kind::Tool => "tool",
        }
    }
}

#[derive(Default)]
struct Args {
    name: Option<LitStr>,
    event: Option<Expr>,
    user_id: Option<Expr>,
    convo_id: Option<Expr>,
    event_id: Option<Expr>,
    input: Option<Expr>,
    output: Option<Expr>,
    level: Option<TokenStream2>,
    krate: Option<syn::Path>,
    skip: Vec<Ident>,
    skip_all: bool,
}

const KEYS: &str =
    "name, skip(..), skip_all, input, output, level, crate, event, user_id, convo_id, event_id";

/// `level = "debug"`, `level = Level::DEBUG`, `level = tracing::Level::WARN`,
/// as the path of a `tracing::Level` constant under `private`'s re-export.
fn parse_level(input: ParseStream<'_>) -> syn::Result<TokenStream2> {
    let bad = |span: proc_macro2::Span| {
        syn::Error::new(
            span,
            "`level` must be one of \"trace\", \"debug\", \"info\", \"warn\", \"error\" \
             (or `Level::DEBUG`, ...)",
        )
    };
    let (text, span) = if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        (lit.value(), lit.span())
    } else if input.peek(syn::LitInt) {
        let lit: syn::LitInt = input.parse()?;
        (lit.base10_digits().to_owned(), lit.span())
    } else {
        let path: syn::Path = input.parse()?;
        let last = path.segments.last().ok_or_else(|| bad(path.span()))?;
        (last.ident.to_string(), path.span())
    };
    let level = match text.to_ascii_lowercase().as_str() {
        "trace" | "5" => "TRACE",
        "debug" | "4" => "DEBUG",
        "info" | "3" => "INFO",
        "warn" | "2" => "WARN",
        "error" | "1" => "ERROR",
        _ => return Err(bad(span)),
    };
    let ident = Ident::new(level, span);
    Ok(quote!(#ident))
}

impl Parse for Args {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut args = Args::default();
        let mut seen: Vec<String> = Vec::new();
        let mut first = true;
        while !input.is_empty() {
            if input.peek(LitStr) {
                let lit: LitStr = input.parse()?;
                if !first || args.name.is_some() {
                    return Err(syn::Error::new(
                        lit.span(),
                        "the name may only be given once, as the first argument",
                    ));
                }
                args.name = Some(lit);
            } else {
                let key: Ident = input.call(Ident::parse_any)?;
                let k = key.to_string();
                if seen.contains(&k) {
                    return Err(syn::Error::new(
                        key.span(),
                        format!("duplicate argument `{k}`"),
                    ));
                }
                seen.push(k.clone());
                match k.as_str() {
                    "skip_all" => args.skip_all = true,
                    "skip" => {
                        let content;
                        syn::parenthesized!(content in input);
                        let names = content.parse_terminated(Ident::parse_any, Token![,])?;
                        args.skip.extend(names);
                    }
                    "name" => {
                        input.parse::<Token![=]>()?;
                        let lit: LitStr = input.parse().map_err(|e| {
                            syn::Error::new(e.span(), "`name` must be a string literal")
                        })?;
                        if args.name.is_some() {
                            return Err(syn::Error::new(lit.span(), "the name is already given"));
                        }
                        args.name = Some(lit);
                    }
                    "level" => {
                        input.parse::<Token![=]>()?;
                        args.level = Some(parse_level(input)?);
                    }
                    "crate" => {
                        input.parse::<Token![=]>()?;
                        args.krate = Some(input.call(syn::Path::parse_mod_style)?);
                    }
                    "event" | "user_id" | "convo_id" | "event_id" | "input" | "output" => {
                        input.parse::<Token![=]>()?;
                        let e: Expr = input.parse()?;
                        let slot = match k.as_str() {
                            "event" => &mut args.event,
                            "user_id" => &mut args.user_id,
                            "convo_id" => &mut args.convo_id,
                            "event_id" => &mut args.event_id,
                            "output" => &mut args.output,
                            _ => &mut args.input,
                        };
                        *slot = Some(e);
                    }
                    _ => {
                        return Err(syn::Error::new(
                            key.span(),
                            format!("unknown argument `{k}`; expected one of: {KEYS}"),
                        ))
                    }
                }
            }
            first = false;
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(args)
    }
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

/// Every identifier a pattern binds.
fn bindings(pat: &Pat, out: &mut Vec<Ident>) {
    match pat {
        Pat::Ident(p) => {
            out.push(p.ident.clone());
            if let Some((_, sub)) = &p.subpat {
                bindings(sub, out);
            }
        }
        Pat::TupleStruct(p) => p.elems.iter().for_each(|e| bindings(e, out)),
        Pat::Tuple(p) => p.elems.iter().for_each(|e| bindings(e, out)),
        Pat::Struct(p) => p.fields.iter().for_each(|f| bindings(&f.pat, out)),
        Pat::Reference(p) => bindings(&p.pat, out),
        Pat::Slice(p) => p.elems.iter().for_each(|e| bindings(e, out)),
        Pat::Type(p) => bindings(&p.pat, out),
        Pat::Paren(p) => bindings(&p.pat, out),
        _ => {}
    }
}

/// What an argument is, for the default input.
enum ArgClass {
    /// A request body extractor (`Json(..)`, `Form(..)`): its inner value is the input.
    Body,
    /// A context extractor (`State`, `Extension`, headers, ...): never captured.
    Context,
    /// Anything else.
    Plain,
}

/// The last path segment of a type (through references and parentheses).
fn type_name(ty: &Type) -> Option<String> {
    match ty {
        Type::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()),
        Type::Reference(r) => type_name(&r.elem),
        Type::Paren(p) => type_name(&p.elem),
        Type::Group(g) => type_name(&g.elem),
        _ => None,
    }
}

fn arg_class(pat: &Pat, ty: &Type) -> ArgClass {
    const BODY: &[&str] = &["Json", "Form"];
    const CONTEXT: &[&str] = &[
        "State",
        "Extension",
        "Extensions",
        "HeaderMap",
        "TypedHeader",
        "ConnectInfo",
        "Method",
        "Uri",
        "OriginalUri",
        "MatchedPath",
        "Request",
        "Parts",
        "Data",
        "HttpRequest",
    ];
    let pat_name = match pat {
        Pat::TupleStruct(p) => p.path.segments.last().map(|s| s.ident.to_string()),
        _ => None,
    };
    let name = type_name(ty).or(pat_name);
    match name.as_deref() {
        Some(n) if BODY.contains(&n) => ArgClass::Body,
        Some(n) if CONTEXT.contains(&n) => ArgClass::Context,
        _ => ArgClass::Plain,
    }
}

/// Replaces `impl Trait` in a type with `_`, for `let` annotations.
struct EraseImpl;
impl VisitMut for EraseImpl {
    fn visit_type_mut(&mut self, ty: &mut Type) {
        if let Type::ImplTrait(it) = ty {
            *ty = Type::Infer(syn::TypeInfer {
                underscore_token: Token![_](it.span()),
            });
            return;
        }
        syn::visit_mut::visit_type_mut(self, ty);
    }
}

/// Whether a return type is syntactically a `Result` (`Result<..>`, `io::Result<..>`, ...).
fn is_result(ty: &Type) -> bool {
    match ty {
        Type::Path(p) => p.path.segments.last().is_some_and(|s| s.ident == "Result"),
        Type::Paren(p) => is_result(&p.elem),
        Type::Group(g) => is_result(&g.elem),
        _ => false,
    }
}

fn expand_fn(kind: Kind, args: Args, func: ItemFn) -> syn::Result<TokenStream2> {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = func;
    if let Some(c) = &sig.constness {
        return Err(syn::Error::new(
            c.span(),
            "a `const fn` cannot be instrumented by raindrop",
        ));
    }
    if kind != Kind::Interaction {
        for (e, key) in [
            (&args.event, "event"),
            (&args.user_id, "user_id"),
            (&args.convo_id, "convo_id"),
            (&args.event_id, "event_id"),
        ] {
            if let Some(e) = e {
                return Err(syn::Error::new(
                    e.span(),
                    format!(
                        "`{key}` is only allowed on #[raindrop::interaction], not on #[raindrop::{}]",
                        kind.as_str()
                    ),
                ));
            }
        }
    }

    // Argument bindings, in order, and which of them make the default input:
    // the request body (the inner value of `Json(..)` / `Form(..)`
    // arguments) when there is one, else every argument but context
    // extractors (`State`, `Extension`, headers, ...).
    let mut params: Vec<Ident> = Vec::new();
    let mut body_params: Vec<Ident> = Vec::new();
    let mut plain_params: Vec<Ident> = Vec::new();
    for input in &sig.inputs {
        if let FnArg::Typed(pt) = input {
            let mut b = Vec::new();
            bindings(&pt.pat, &mut b);
            match arg_class(&pt.pat, &pt.ty) {
                ArgClass::Body => body_params.extend(b.iter().cloned()),
                ArgClass::Context => {}
                ArgClass::Plain => plain_params.extend(b.iter().cloned()),
            }
            params.extend(b);
        }
    }
    let default_input = if body_params.is_empty() {
        plain_params
    } else {
        body_params
    };
    for s in &args.skip {
        // `self` is never captured; `skip(self)` is accepted as in `#[instrument]`.
        if s != "self" && !params.iter().any(|p| p == s) {
            return Err(syn::Error::new(
                s.span(),
                format!("`skip({s})`: the function has no argument named `{s}`"),
            ));
        }
    }

    let private = match &args.krate {
        Some(path) => quote!(#path::__private),
        None => quote!(::raindrop::__private),
    };
    let level = match &args.level {
        Some(l) => quote!(#private::tracing::Level::#l),
        None => quote!(#private::tracing::Level::INFO),
    };
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| LitStr::new(&sig.ident.unraw().to_string(), sig.ident.span()));
    let kind_str = kind.as_str();
    let empty = quote!(#private::tracing::field::Empty);
    let span = format_ident!("__rd_span");
    let on = format_ident!("__rd_on");
    let imports = quote! {
        #[allow(unused_imports)]
        use #private::{
            CaptureDebug as _, CaptureDerefJson as _, CaptureJson as _, CaptureOpaque as _, ErrorDebug as _,
            ErrorDisplay as _, ErrorOpaque as _,
        };
    };
    // The interaction's values go to the raindrop layer through a side
    // channel, never as span fields: other layers (logs) would print them.
    // The fields stay declared (empty) so a hand-written `record` still works.
    let (interaction_fields, begin_init, end_init) = if kind == Kind::Interaction {
        let text = |e: &Option<Expr>| match e {
            Some(e) => quote_spanned! {e.span()=> {
                let __rd_v = &(#e);
                let _ = #private::field_value(__rd_v);
                let mut __rd_b = #private::Capped::unbounded();
                (&&&&#private::Wrap(__rd_v)).__rd_capture(&mut __rd_b, true);
                #private::value_text(__rd_b)
            }},
            None => quote!(::core::option::Option::None),
        };
        let (event, user_id, convo_id, event_id) = (
            text(&args.event),
            text(&args.user_id),
            text(&args.convo_id),
            text(&args.event_id),
        );
        let fn_name = LitStr::new(&sig.ident.unraw().to_string(), sig.ident.span());
        (
            quote! {
                raindrop.event = #empty,
                raindrop.user_id = #empty,
                raindrop.convo_id = #empty,
                raindrop.event_id = #empty,
                raindrop.model = #empty,
            },
            quote! {
                #imports
                #private::begin_init(#name, #fn_name, #user_id, #convo_id, #event, #event_id);
            },
            quote! {
                #private::end_init();
                if !#on {
                    #private::untracked(&#span, #fn_name, ::core::module_path!(), #level);
                }
            },
        )
    } else {
        (quote!(), quote!(), quote!())
    };

    let ret = format_ident!("__rd_ret");

    // Captured values are written into one buffer that stops at the
    // client's `max_text_field_chars` (`__rd_max`): a huge argument costs
    // O(cap), and no intermediate JSON tree is built.
    let capture_top = |v: TokenStream2| {
        quote! {{
            let mut __rd_b = #private::Capped::new(__rd_max);
            (&&&&#private::Wrap(#v)).__rd_capture(&mut __rd_b, true);
            __rd_b
        }}
    };
    let capture_input = if let Some(e) = &args.input {
        let b = capture_top(quote!(&(#e)));
        quote!(#private::record_input(&#span, #b);)
    } else if args.skip_all {
        quote!()
    } else {
        let mut captured: Vec<&Ident> = default_input
            .iter()
            .filter(|p| !args.skip.iter().any(|s| s == *p))
            .collect();
        // Keys in name order (as a JSON object of the arguments always was).
        captured.sort_by_key(|p| p.unraw().to_string());
        match captured.as_slice() {
            [] => quote!(),
            [one] => {
                let b = capture_top(quote!(&#one));
                // `_b` is the user's "unused" argument, captured all the same.
                quote! {
                    #[allow(clippy::used_underscore_binding)]
                    let __rd_b = #b;
                    #private::record_input(&#span, __rd_b);
                }
            }
            many => {
                let names = many
                    .iter()
                    .map(|p| LitStr::new(&p.unraw().to_string(), p.span()));
                let first = (0..many.len()).map(|i| i == 0);
                quote! {
                    #[allow(clippy::used_underscore_binding)]
                    let __rd_b = {
                        let mut __rd_b = #private::Capped::new(__rd_max);
                        __rd_b.open_object();
                        #(
                            __rd_b.key(#names, #first);
                            (&&&&#private::Wrap(&#many)).__rd_capture(&mut __rd_b, false);
                        )*
                        __rd_b.close_object();
                        __rd_b
                    };
                    #private::record_input(&#span, __rd_b);
                }
            }
        }
    };

    // What the function's value is: the declared return type, or for a
    // non-`async` fn returning an `async` block, the future's `Output`.
    let shape = shape_of(&attrs, &sig, &block)?;
    let value_ty: Option<Type> = match (&shape, &sig.output) {
        (Shape::AsyncBlock { output, .. }, _) => output.clone(),
        (_, ReturnType::Type(_, ty)) => Some((**ty).clone()),
        (_, ReturnType::Default) => None,
    };
    let value_is_result = value_ty.as_ref().is_some_and(is_result);
    let has_value = !matches!(shape, Shape::Never)
        && (value_ty.is_some() || matches!(shape, Shape::AsyncBlock { .. }));
    // `output = |r| ..` is applied to the return value (the `Ok` value of
    // a `Result`); any other expression is the output as it stands.
    let output_of = |v: TokenStream2| -> TokenStream2 {
        match &args.output {
            Some(Expr::Closure(c)) => capture_top(quote!(&#private::output_with(#v, #c))),
            Some(e) => capture_top(quote!(&(#e))),
            None => capture_top(v),
        }
    };
    let outcome_on = |span: &Ident| -> TokenStream2 {
        if !has_value {
            return match &args.output {
                Some(_) => {
                    let out = output_of(quote!(&()));
                    quote!(#private::record_output(&#span, #out);)
                }
                None => quote!(),
            };
        }
        if value_is_result {
            let out = output_of(quote!(__rd_v));
            quote! {
                match &#ret {
                    ::core::result::Result::Ok(__rd_v) => #private::record_output(&#span, #out),
                    ::core::result::Result::Err(__rd_e) => #private::record_error(
                        &#span, (&&&#private::Wrap(__rd_e)).__rd_error_text()),
                }
            }
        } else {
            let out = output_of(quote!(&#ret));
            quote!(#private::record_output(&#span, #out);)
        }
    };
    let erased = |ty: &Type| {
        let mut erased = ty.clone();
        EraseImpl.visit_type_mut(&mut erased);
        erased.into_token_stream()
    };
    let ret_ty = match &sig.output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, ty) => erased(ty),
    };
    let inner = format_ident!("__rd_inner");
    let record_outcome = outcome_on(&span);
    let record_outcome_async = outcome_on(&inner);

    let make_span = quote! {
        #begin_init
        let #span = #private::tracing::span!(
            target: ::core::module_path!(),
            #level,
            #name,
            raindrop.kind = #kind_str,
            #interaction_fields
            raindrop.input = #empty,
            raindrop.output = #empty,
            raindrop.error = #empty,
            raindrop.properties = #empty,
        );
        let __rd_cap = #private::tracked(&#span);
        let #on = __rd_cap.is_some();
        let __rd_max = __rd_cap.unwrap_or(0);
        #end_init
        if #on {
            #capture_input
        }
    };

    // The body's statements are spliced, not its block: a one-expression
    // body `{ format!(..) }` inside another block would be "unnecessary
    // braces" (`unused_braces`) in the caller's crate.
    let stmts = &block.stmts;
    // Awaits `__rd_fut` in the span, recording the outcome.
    let instrumented = |value: TokenStream2| {
        quote! {{
            let #inner = #span.clone();
            // A function may return a future (a `JoinHandle`): fine here.
            #[allow(clippy::async_yields_async)]
            let __rd_wrapped = async move {
                let __rd_guard = #private::SpanGuard::new(&#inner, #on);
                let #ret #value = __rd_fut.await;
                if #on {
                    #record_outcome_async
                }
                __rd_guard.done();
                #ret
            };
            #private::tracing::Instrument::instrument(__rd_wrapped, #span)
        }}
    };
    let body = match &shape {
        Shape::Async => {
            let wrapped = instrumented(quote!(: #ret_ty));
            quote! {
                #imports
                #make_span
                #[allow(clippy::async_yields_async)]
                let __rd_fut = async move {
                    #[allow(
                        unknown_lints, unreachable_code, clippy::diverging_sub_expression,
                        clippy::let_unit_value, clippy::unreachable, clippy::empty_loop,
                        clippy::needless_return
                    )]
                    if false {
                        let __rd_fake: #ret_ty = loop {};
                        return __rd_fake;
                    }
                    #(#stmts)*
                };
                if !#on && #span.is_disabled() {
                    return __rd_fut.await;
                }
                #wrapped.await
            }
        }
        Shape::AsyncBlock { boxed, output } => {
            // `fn f(..) -> impl Future { async move {..} }` and what
            // `#[async_trait]` makes (`Box::pin(async move {..})`): the span
            // is created at the call (arguments captured then) and is
            // current while the returned future runs, as for an `async fn`.
            let (before, last) = stmts.split_at(stmts.len() - 1);
            let Some(syn::Stmt::Expr(last, None)) = last.first() else {
                unreachable!("shape_of checked the last statement");
            };
            let fut = match last {
                Expr::Call(c) => c.args.first().unwrap_or(last),
                other => other,
            };
            let (fut, value) = match output {
                Some(t) => {
                    let t = erased(t);
                    (quote!(#private::expect_output::<#t, _>(#fut)), quote!(: #t))
                }
                None => (quote!(#fut), quote!()),
            };
            let wrapped = instrumented(value);
            let wrapped = if *boxed {
                quote!(::std::boxed::Box::pin(#wrapped))
            } else {
                wrapped
            };
            // `#[async_trait]` rebinds every argument inside its block
            // (`let user = user;`); one used only by this attribute's
            // arguments (`user_id = user`) is then unused in there.
            let allow = if *boxed {
                quote!(#[allow(unused_variables)])
            } else {
                quote!()
            };
            quote! {
                #imports
                #make_span
                #(#before)*
                #allow
                let __rd_fut = #fut;
                #wrapped
            }
        }
        Shape::Never => quote! {
            #imports
            #make_span
            let __rd_guard = #private::SpanGuard::new_sync(&#span, #on);
            let __rd_entered = #span.enter();
            #(#stmts)*
        },
        Shape::SyncInline => {
            // `#[track_caller]`: no closure (it would hide the caller's
            // location); an early `return` or `?` ends the span without
            // an output.
            quote! {
                #imports
                #make_span
                let __rd_guard = #private::SpanGuard::new_sync(&#span, #on);
                #[allow(clippy::let_unit_value)]
                let #ret: #ret_ty = {
                    let __rd_entered = #span.enter();
                    #(#stmts)*
                };
                if #on {
                    #record_outcome
                }
                __rd_guard.done();
                #ret
            }
        }
        Shape::Sync => quote! {
            #imports
            #make_span
            let __rd_guard = #private::SpanGuard::new(&#span, #on);
            #[allow(clippy::redundant_closure_call, clippy::let_unit_value)]
            let #ret: #ret_ty = {
                let __rd_entered = #span.enter();
                (move || -> #ret_ty { #(#stmts)* })()
            };
            if #on {
                #record_outcome
            }
            __rd_guard.done();
            #ret
        },
    };

    Ok(quote! {
        #(#attrs)*
        #vis #sig {
            #body
        }
    })
}

/// How a function is wrapped.
#[allow(clippy::large_enum_variant)] // one per macro call
enum Shape {
    /// `async fn`.
    Async,
    /// A plain fn whose last expression is `async move {..}` (`boxed`:
    /// `Box::pin(async move {..})`, as `#[async_trait]` writes it);
    /// `output`: the future's `Output` type when the signature names it.
    AsyncBlock { boxed: bool, output: Option<Type> },
    /// `-> !`: nothing to record on return.
    Never,
    /// A `#[track_caller]` fn: the body is inlined, not put in a closure.
    SyncInline,
    /// Any other plain fn.
    Sync,
}

fn shape_of(
    attrs: &[syn::Attribute],
    sig: &syn::Signature,
    block: &syn::Block,
) -> syn::Result<Shape> {
    if sig.asyncness.is_some() {
        return Ok(Shape::Async);
    }
    let ret = match &sig.output {
        ReturnType::Type(_, ty) => Some(&**ty),
        ReturnType::Default => None,
    };
    if matches!(ret, Some(Type::Never(_))) {
        return Ok(Shape::Never);
    }
    let future = ret.and_then(future_output);
    if let Some(syn::Stmt::Expr(last, None)) = block.stmts.last() {
        let boxed = match last {
            Expr::Async(_) => Some(false),
            Expr::Call(c)
                if c.args.len() == 1
                    && matches!(c.args.first(), Some(Expr::Async(_)))
                    && is_box_pin(&c.func) =>
            {
                Some(true)
            }
            _ => None,
        };
        if let Some(boxed) = boxed {
            return Ok(Shape::AsyncBlock {
                boxed,
                output: future.flatten(),
            });
        }
    }
    if future.is_some() {
        return Err(syn::Error::new(
            sig.output.span(),
            "raindrop: this fn returns a future but its body does not end in `async move { .. }` \
             or `Box::pin(async move { .. })`, so the span would end before the work runs. \
             Fix: make it an `async fn`, or end the body with `async move { .. }` \
             (`Box::pin(async move { .. })` for a boxed future)",
        ));
    }
    let track_caller = attrs.iter().any(|a| a.path().is_ident("track_caller"));
    Ok(if track_caller {
        Shape::SyncInline
    } else {
        Shape::Sync
    })
}

/// `Box::pin` (any path ending in `Box::pin`).
fn is_box_pin(e: &Expr) -> bool {
    let Expr::Path(p) = e else { return false };
    let segs: Vec<String> = p
        .path
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect();
    segs.len() >= 2 && segs[segs.len() - 2] == "Box" && segs[segs.len() - 1] == "pin"
}

/// Whether `ty` is a future (`impl Future<..>`, `Pin<Box<dyn Future<..>>>`,
/// `BoxFuture<'_, T>`): `Some(output type, when the type names it)`.
fn future_output(ty: &Type) -> Option<Option<Type>> {
    fn in_bounds<'a>(
        bounds: impl IntoIterator<Item = &'a syn::TypeParamBound>,
    ) -> Option<Option<Type>> {
        for b in bounds {
            let syn::TypeParamBound::Trait(t) = b else {
                continue;
            };
            let Some(seg) = t.path.segments.last() else {
                continue;
            };
            if seg.ident != "Future" {
                continue;
            }
            if let syn::PathArguments::AngleBracketed(a) = &seg.arguments {
                for arg in &a.args {
                    if let syn::GenericArgument::AssocType(at) = arg {
                        if at.ident == "Output" {
                            return Some(Some(at.ty.clone()));
                        }
                    }
                }
            }
            return Some(None);
        }
        None
    }
    match ty {
        Type::ImplTrait(it) => in_bounds(&it.bounds),
        Type::TraitObject(to) => in_bounds(&to.bounds),
        Type::Paren(p) => future_output(&p.elem),
        Type::Group(g) => future_output(&g.elem),
        Type::Path(p) => {
            let seg = p.path.segments.last()?;
            let syn::PathArguments::AngleBracketed(a) = &seg.arguments else {
                return None;
            };
            let types = a.args.iter().filter_map(|g| match g {
                syn::GenericArgument::Type(t) => Some(t),
                _ => None,
            });
            match seg.ident.to_string().as_str() {
                "Pin" | "Box" => types.into_iter().next().and_then(future_output),
                "BoxFuture" | "LocalBoxFuture" => Some(types.into_iter().next().cloned()),
                _ => None,
            }
        }
        _ => None,
    }
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
