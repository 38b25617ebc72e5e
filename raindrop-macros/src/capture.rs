//! What the span records: the input from the arguments, and the output or
//! error from the return value. Values are written into one buffer capped at
//! the client's `max_text_field_chars` (`__rd_max`): a huge argument costs
//! O(cap), and no intermediate JSON tree is built.

use proc_macro2::TokenStream as TokenStream2;
use quote::{quote, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{Expr, FnArg, Ident, LitStr, Pat, Signature, Token, Type};

use crate::args::Args;
use crate::body::Returned;
use crate::span::Names;

/// The function's argument bindings, in order, and which of them make the
/// default input: the request body (the inner value of `Json(..)` /
/// `Form(..)` arguments) when there is one, else every argument but context
/// extractors (`State`, `Extension`, headers, ...).
pub(crate) struct Params {
    all: Vec<Ident>,
    default_input: Vec<Ident>,
}

impl Params {
    pub(crate) fn of(sig: &Signature) -> Params {
        let mut all: Vec<Ident> = Vec::new();
        let mut body: Vec<Ident> = Vec::new();
        let mut plain: Vec<Ident> = Vec::new();
        for input in &sig.inputs {
            if let FnArg::Typed(pt) = input {
                let mut b = Vec::new();
                bindings(&pt.pat, &mut b);
                match arg_class(&pt.pat, &pt.ty) {
                    ArgClass::Body => body.extend(b.iter().cloned()),
                    ArgClass::Context => {}
                    ArgClass::Plain => plain.extend(b.iter().cloned()),
                }
                all.extend(b);
            }
        }
        let default_input = if body.is_empty() { plain } else { body };
        Params { all, default_input }
    }

    /// Every `skip(..)` name must be an argument (`self` is accepted, as in
    /// `#[instrument]`, and never captured anyway).
    pub(crate) fn check_skip(&self, skip: &[Ident]) -> syn::Result<()> {
        for s in skip {
            if s != "self" && !self.all.iter().any(|p| p == s) {
                return Err(syn::Error::new(
                    s.span(),
                    format!("`skip({s})`: the function has no argument named `{s}`"),
                ));
            }
        }
        Ok(())
    }
}

/// A block capturing the value `v` (an expression of a reference) as the
/// top level of a capped buffer.
pub(crate) fn capture_top(n: &Names, v: TokenStream2) -> TokenStream2 {
    let private = &n.private;
    quote! {{
        let mut __rd_b = #private::Capped::new(__rd_max);
        (&&&&#private::Wrap(#v)).__rd_capture(&mut __rd_b, true);
        __rd_b
    }}
}

/// Records the input on the span: `input = expr`, or the default input's
/// arguments (one as itself, several as an object keyed by name), minus
/// `skip(..)`; nothing with `skip_all`.
pub(crate) fn input(n: &Names, args: &Args, params: &Params) -> TokenStream2 {
    let (private, span) = (&n.private, &n.span);
    if let Some(e) = &args.input {
        let b = capture_top(n, quote!(&(#e)));
        return quote!(#private::record_input(&#span, #b););
    }
    if args.skip_all {
        return quote!();
    }
    let mut captured: Vec<&Ident> = params
        .default_input
        .iter()
        .filter(|p| !args.skip.iter().any(|s| s == *p))
        .collect();
    // Keys in name order (as a JSON object of the arguments always was).
    captured.sort_by_key(|p| p.unraw().to_string());
    match captured.as_slice() {
        [] => quote!(),
        [one] => {
            let b = capture_top(n, quote!(&#one));
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
}

/// The outcome (a `SpanGuard`'s `Outcome`; empty when there is nothing to
/// record), read from the return value `__rd_ret`: the output (`output = ..` applied to it, or the value; the
/// `Ok` value of a `Result`), or the `Err` as the error.
pub(crate) fn outcome(n: &Names, args: &Args, returned: &Returned) -> TokenStream2 {
    let (private, ret) = (&n.private, &n.ret);
    // `output = |r| ..` is applied to the return value (the `Ok` value of
    // a `Result`); any other expression is the output as it stands.
    let output_of = |v: TokenStream2| -> TokenStream2 {
        match &args.output {
            Some(Expr::Closure(c)) => capture_top(n, quote!(&#private::output_with(#v, #c))),
            Some(e) => capture_top(n, quote!(&(#e))),
            None => capture_top(n, v),
        }
    };
    if !returned.has_value {
        return match &args.output {
            Some(_) => {
                let out = output_of(quote!(&()));
                quote!(#private::Outcome::output(#out))
            }
            None => quote!(),
        };
    }
    if returned.is_result {
        let out = output_of(quote!(__rd_v));
        quote! {
            match &#ret {
                ::core::result::Result::Ok(__rd_v) => #private::Outcome::output(#out),
                ::core::result::Result::Err(__rd_e) => #private::Outcome::error(
                    (&&&#private::Wrap(__rd_e)).__rd_error_text()),
            }
        }
    } else {
        let out = output_of(quote!(&#ret));
        quote!(#private::Outcome::output(#out))
    }
}

/// `ty` with every `impl Trait` replaced by `_`, for `let` annotations.
pub(crate) fn erased(ty: &Type) -> TokenStream2 {
    let mut erased = ty.clone();
    EraseImpl.visit_type_mut(&mut erased);
    erased.into_token_stream()
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
pub(crate) fn is_result(ty: &Type) -> bool {
    match ty {
        Type::Path(p) => p.path.segments.last().is_some_and(|s| s.ident == "Result"),
        Type::Paren(p) => is_result(&p.elem),
        Type::Group(g) => is_result(&g.elem),
        _ => false,
    }
}
