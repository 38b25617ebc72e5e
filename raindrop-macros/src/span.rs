//! The span the attribute opens: its name, level and fields, and for an
//! interaction the values handed to the raindrop layer beside it.

use proc_macro2::TokenStream as TokenStream2;
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Expr, Ident, LitStr, Signature};

use crate::args::{Args, Kind};

/// The paths and generated names every part of the expansion shares.
pub(crate) struct Names {
    /// `::raindrop::__private`, or under `crate = path`.
    pub(crate) private: TokenStream2,
    pub(crate) level: TokenStream2,
    /// The span name: the attribute's, else the function's.
    pub(crate) name: LitStr,
    /// The span (`__rd_span`), its clone inside a future (`__rd_inner`),
    /// whether the layer tracks it (`__rd_on`) and the return value
    /// (`__rd_ret`).
    pub(crate) span: Ident,
    pub(crate) inner: Ident,
    pub(crate) on: Ident,
    pub(crate) ret: Ident,
    /// Brings the capture traits into scope (autoref specialisation picks
    /// JSON, `Display`, `Debug` or an opaque marker per value).
    pub(crate) imports: TokenStream2,
}

impl Names {
    pub(crate) fn new(args: &Args, sig: &Signature) -> Names {
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
        let imports = quote! {
            #[allow(unused_imports)]
            use #private::{
                CaptureDebug as _, CaptureDerefJson as _, CaptureJson as _, CaptureOpaque as _, ErrorDebug as _,
                ErrorDisplay as _, ErrorOpaque as _,
            };
        };
        Names {
            private,
            level,
            name,
            span: format_ident!("__rd_span"),
            inner: format_ident!("__rd_inner"),
            on: format_ident!("__rd_on"),
            ret: format_ident!("__rd_ret"),
            imports,
        }
    }
}

/// Statements creating the span (`__rd_span`), learning whether the layer
/// records it (`__rd_on`, `__rd_max`, from the `SpanOpening` held around
/// its creation) and, if so, recording the input.
pub(crate) fn open(
    n: &Names,
    kind: Kind,
    args: &Args,
    sig: &Signature,
    capture_input: TokenStream2,
) -> TokenStream2 {
    let Names {
        private,
        level,
        name,
        span,
        on,
        ..
    } = n;
    let kind_str = kind.as_str();
    let empty = quote!(#private::tracing::field::Empty);
    // Not content: an ordinary span field, declared only when given.
    let version = match &args.version {
        Some(v) => {
            let n: u32 = v.base10_parse().unwrap_or_default();
            quote!(raindrop.version = #n,)
        }
        None => quote!(),
    };
    let (interaction_fields, opening, untracked) = if kind == Kind::Interaction {
        interaction_parts(n, args, sig)
    } else {
        (
            quote!(),
            quote!(#private::SpanOpening::new(#name)),
            quote!(),
        )
    };
    quote! {
        let __rd_opening = #opening;
        let #span = #private::tracing::span!(
            target: ::core::module_path!(),
            #level,
            #name,
            raindrop.kind = #kind_str,
            #version
            #interaction_fields
            raindrop.input = #empty,
            raindrop.output = #empty,
            raindrop.error = #empty,
            raindrop.properties = #empty,
        );
        let __rd_cap = __rd_opening.close();
        let #on = __rd_cap.is_some();
        let __rd_max = __rd_cap.unwrap_or(0);
        #untracked
        if #on {
            #capture_input
        }
    }
}

/// An interaction's values go to the raindrop layer through a side channel
/// (a `SpanOpening` held while the span is created), never as span fields:
/// other layers (logs) would print them. The fields stay declared (empty)
/// so a hand-written `record` still works.
fn interaction_parts(
    n: &Names,
    args: &Args,
    sig: &Signature,
) -> (TokenStream2, TokenStream2, TokenStream2) {
    let Names {
        private,
        level,
        name,
        span,
        on,
        imports,
        ..
    } = n;
    let empty = quote!(#private::tracing::field::Empty);
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
        quote! {{
            #imports
            #private::SpanOpening::interaction(#name, #fn_name, #user_id, #convo_id, #event, #event_id)
        }},
        quote! {
            if !#on {
                #private::untracked(&#span, #fn_name, ::core::module_path!(), #level);
            }
        },
    )
}
