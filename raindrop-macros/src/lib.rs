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
//! output; an `Err` of a function returning `Result` marks the span failed
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
//! The span is at level INFO with your module path as its target (like
//! `#[tracing::instrument]`), named after the function (or the given name),
//! and declares every `raindrop.*` field it may receive (empty), so
//! `tracing::Span::current().record("raindrop.user_id", ..)` works inside;
//! a value recorded that way is an ordinary span field, visible to every
//! layer.
//! `async fn`s are instrumented (the span is current on every poll); a panic
//! ends the span with the error `panicked`, and a future dropped before it
//! completes ends it with `cancelled`. A function returning `impl Future`
//! without being `async` is treated as a sync function.

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
    skip: Vec<Ident>,
    skip_all: bool,
}

const KEYS: &str = "name, skip(..), skip_all, input, event, user_id, convo_id, event_id";

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
                    "event" | "user_id" | "convo_id" | "event_id" | "input" => {
                        input.parse::<Token![=]>()?;
                        let e: Expr = input.parse()?;
                        let slot = match k.as_str() {
                            "event" => &mut args.event,
                            "user_id" => &mut args.user_id,
                            "convo_id" => &mut args.convo_id,
                            "event_id" => &mut args.event_id,
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

    let private = quote!(::raindrop::__private);
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
                #private::value_text((&&&&#private::Wrap(__rd_v)).__rd_capture())
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
                    #private::untracked(&#span, #fn_name, ::core::module_path!());
                }
            },
        )
    } else {
        (quote!(), quote!(), quote!())
    };

    let ret = format_ident!("__rd_ret");

    let capture_input = if let Some(e) = &args.input {
        quote! {
            #private::record_input_value(&#span, (&&&&#private::Wrap(&(#e))).__rd_capture());
        }
    } else if args.skip_all {
        quote!()
    } else {
        let captured: Vec<&Ident> = default_input
            .iter()
            .filter(|p| !args.skip.iter().any(|s| s == *p))
            .collect();
        if captured.is_empty() {
            quote!()
        } else {
            let names = captured
                .iter()
                .map(|p| LitStr::new(&p.unraw().to_string(), p.span()));
            quote! {
                #private::record_input(&#span, ::std::vec![
                    #( (#names, (&&&&#private::Wrap(&#captured)).__rd_capture()) ),*
                ]);
            }
        }
    };

    let outcome_on = |span: &Ident| -> TokenStream2 {
        match &sig.output {
            ReturnType::Default => quote!(),
            ReturnType::Type(_, ty) if is_result(ty) => quote! {
                match &#ret {
                    ::core::result::Result::Ok(__rd_v) => #private::record_output(
                        &#span, (&&&&#private::Wrap(__rd_v)).__rd_capture()),
                    ::core::result::Result::Err(__rd_e) => #private::record_error(
                        &#span, (&&&#private::Wrap(__rd_e)).__rd_error_text()),
                }
            },
            ReturnType::Type(..) => quote! {
                #private::record_output(&#span, (&&&&#private::Wrap(&#ret)).__rd_capture());
            },
        }
    };
    let ret_ty = match &sig.output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, ty) => {
            let mut erased = (**ty).clone();
            EraseImpl.visit_type_mut(&mut erased);
            erased.into_token_stream()
        }
    };
    let inner = format_ident!("__rd_inner");
    let record_outcome = outcome_on(&span);
    let record_outcome_async = outcome_on(&inner);

    let make_span = quote! {
        #begin_init
        let #span = #private::tracing::span!(
            target: ::core::module_path!(),
            #private::tracing::Level::INFO,
            #name,
            raindrop.kind = #kind_str,
            #interaction_fields
            raindrop.input = #empty,
            raindrop.output = #empty,
            raindrop.error = #empty,
            raindrop.properties = #empty,
        );
        let #on = #private::is_tracked(&#span);
        #end_init
        if #on {
            #capture_input
        }
    };

    let body = if sig.asyncness.is_some() {
        quote! {
            #imports
            #make_span
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
                #block
            };
            if !#on && #span.is_disabled() {
                return __rd_fut.await;
            }
            let #inner = #span.clone();
            #private::tracing::Instrument::instrument(
                async move {
                    let __rd_guard = #private::SpanGuard::new(&#inner, #on);
                    let #ret: #ret_ty = __rd_fut.await;
                    if #on {
                        #record_outcome_async
                    }
                    __rd_guard.done();
                    #ret
                },
                #span,
            )
            .await
        }
    } else {
        quote! {
            #imports
            #make_span
            let __rd_guard = #private::SpanGuard::new(&#span, #on);
            #[allow(clippy::redundant_closure_call, clippy::let_unit_value)]
            let #ret: #ret_ty = {
                let __rd_entered = #span.enter();
                (move || -> #ret_ty #block)()
            };
            if #on {
                #record_outcome
            }
            __rd_guard.done();
            #ret
        }
    };

    Ok(quote! {
        #(#attrs)*
        #vis #sig {
            #body
        }
    })
}
