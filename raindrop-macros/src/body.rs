//! How the function's body is wrapped: the span entered around a sync body,
//! or carried by the future of an `async fn` or a returned `async` block;
//! the outcome recorded on the way out.

use proc_macro2::TokenStream as TokenStream2;
use quote::quote;
use syn::spanned::Spanned;
use syn::{Expr, ReturnType, Signature, Type};

use crate::capture::{erased, is_result};
use crate::span::Names;

/// What the function returns, for recording the outcome.
pub(crate) struct Returned {
    /// There is a value to record (not `()` with no `output = ..`, not `!`).
    pub(crate) has_value: bool,
    /// The value is syntactically a `Result`: `Err` is the error.
    pub(crate) is_result: bool,
}

impl Returned {
    /// The declared return type, or for a non-`async` fn returning an
    /// `async` block, the future's `Output`.
    pub(crate) fn of(shape: &Shape, sig: &Signature) -> Returned {
        let ty: Option<Type> = match (shape, &sig.output) {
            (Shape::AsyncBlock { output, .. }, _) => output.clone(),
            (_, ReturnType::Type(_, ty)) => Some((**ty).clone()),
            (_, ReturnType::Default) => None,
        };
        Returned {
            is_result: ty.as_ref().is_some_and(is_result),
            has_value: !matches!(shape, Shape::Never)
                && (ty.is_some() || matches!(shape, Shape::AsyncBlock { .. })),
        }
    }
}

/// The new body: `open` (the span, from `span::open`) then the original
/// statements run in it, then the span's guard ended with the `outcome`
/// (an expression of the return value `__rd_ret`) when the layer records it.
pub(crate) fn wrap(
    n: &Names,
    shape: &Shape,
    sig: &Signature,
    block: &syn::Block,
    open: TokenStream2,
    outcome: TokenStream2,
) -> TokenStream2 {
    let Names {
        private,
        span,
        inner,
        on,
        ret,
        imports,
        ..
    } = n;
    let ret_ty = match &sig.output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, ty) => erased(ty),
    };
    // The body's statements are spliced, not its block: a one-expression
    // body `{ format!(..) }` inside another block would be "unnecessary
    // braces" (`unused_braces`) in the caller's crate.
    let stmts = &block.stmts;
    let done = if outcome.is_empty() {
        quote!(__rd_guard.done(#private::Outcome::default());)
    } else {
        quote!(__rd_guard.done(if #on { #outcome } else { #private::Outcome::default() });)
    };
    // Awaits `__rd_fut` in the span, recording the outcome.
    let instrumented = |value: TokenStream2| {
        quote! {{
            let #inner = #span.clone();
            // A function may return a future (a `JoinHandle`): fine here.
            #[allow(clippy::async_yields_async)]
            let __rd_wrapped = async move {
                let __rd_guard = #private::SpanGuard::new(&#inner, #on);
                let #ret #value = __rd_fut.await;
                #done
                #ret
            };
            #private::tracing::Instrument::instrument(__rd_wrapped, #span)
        }}
    };
    match shape {
        Shape::Async => async_fn(n, &ret_ty, stmts, open, &instrumented),
        Shape::AsyncBlock { boxed, output } => {
            async_block(n, stmts, *boxed, output.as_ref(), open, &instrumented)
        }
        Shape::Never => quote! {
            #imports
            #open
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
                #open
                let __rd_guard = #private::SpanGuard::new_sync(&#span, #on);
                #[allow(clippy::let_unit_value)]
                let #ret: #ret_ty = {
                    let __rd_entered = #span.enter();
                    #(#stmts)*
                };
                #done
                #ret
            }
        }
        Shape::Sync => quote! {
            #imports
            #open
            let __rd_guard = #private::SpanGuard::new(&#span, #on);
            #[allow(clippy::redundant_closure_call, clippy::let_unit_value)]
            let #ret: #ret_ty = {
                let __rd_entered = #span.enter();
                (move || -> #ret_ty { #(#stmts)* })()
            };
            #done
            #ret
        },
    }
}

/// The body of an `async fn`: its statements become a future (typed by a
/// never-run `return` of the declared type) awaited in the span.
fn async_fn(
    n: &Names,
    ret_ty: &TokenStream2,
    stmts: &[syn::Stmt],
    open: TokenStream2,
    instrumented: &dyn Fn(TokenStream2) -> TokenStream2,
) -> TokenStream2 {
    let Names {
        span, on, imports, ..
    } = n;
    let wrapped = instrumented(quote!(: #ret_ty));
    quote! {
        #imports
        #open
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

/// The body of a plain fn returning `async move {..}` (`boxed`: as
/// `#[async_trait]` writes it): the span is created at the call (arguments
/// captured then) and is current while the returned future runs, as for an
/// `async fn`. `instrumented` awaits `__rd_fut` in the span.
fn async_block(
    n: &Names,
    stmts: &[syn::Stmt],
    boxed: bool,
    output: Option<&syn::Type>,
    open: TokenStream2,
    instrumented: &dyn Fn(TokenStream2) -> TokenStream2,
) -> TokenStream2 {
    let Names {
        private, imports, ..
    } = n;
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
    let wrapped = if boxed {
        quote!(::std::boxed::Box::pin(#wrapped))
    } else {
        wrapped
    };
    // `#[async_trait]` rebinds every argument inside its block
    // (`let user = user;`); one used only by this attribute's
    // arguments (`user_id = user`) is then unused in there.
    let allow = if boxed {
        quote!(#[allow(unused_variables)])
    } else {
        quote!()
    };
    quote! {
        #imports
        #open
        #(#before)*
        #allow
        let __rd_fut = #fut;
        #wrapped
    }
}

/// How a function is wrapped.
#[allow(clippy::large_enum_variant)] // one per macro call
pub(crate) enum Shape {
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

pub(crate) fn shape_of(
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
