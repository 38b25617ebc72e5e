//! The attribute's arguments: parsing, and the checks that need the function.

use proc_macro2::TokenStream as TokenStream2;
use quote::quote;
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{Expr, Ident, LitStr, Signature, Token};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Interaction,
    Task,
    Tool,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Interaction => "interaction",
            Kind::Task => "task",
            Kind::Tool => "tool",
        }
    }
}

#[derive(Default)]
pub(crate) struct Args {
    pub(crate) name: Option<LitStr>,
    pub(crate) event: Option<Expr>,
    pub(crate) user_id: Option<Expr>,
    pub(crate) convo_id: Option<Expr>,
    pub(crate) event_id: Option<Expr>,
    pub(crate) input: Option<Expr>,
    pub(crate) output: Option<Expr>,
    pub(crate) level: Option<TokenStream2>,
    pub(crate) krate: Option<syn::Path>,
    pub(crate) skip: Vec<Ident>,
    pub(crate) skip_all: bool,
    /// `version = N`: the entity version (`traceloop.entity.version`).
    pub(crate) version: Option<syn::LitInt>,
}

const KEYS: &str =
    "name, skip(..), skip_all, input, output, level, crate, version, event, user_id, convo_id, event_id";

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
                    "version" => {
                        input.parse::<Token![=]>()?;
                        let lit: syn::LitInt = input.parse().map_err(|e| {
                            syn::Error::new(e.span(), "`version` must be an integer literal")
                        })?;
                        lit.base10_parse::<u32>().map_err(|_| {
                            syn::Error::new(lit.span(), "`version` must fit in a u32")
                        })?;
                        args.version = Some(lit);
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

impl Args {
    /// Refuses what this kind of attribute or this function cannot take.
    pub(crate) fn check(&self, kind: Kind, sig: &Signature) -> syn::Result<()> {
        if let Some(c) = &sig.constness {
            return Err(syn::Error::new(
                c.span(),
                "a `const fn` cannot be instrumented by raindrop",
            ));
        }
        if kind != Kind::Interaction {
            for (e, key) in [
                (&self.event, "event"),
                (&self.user_id, "user_id"),
                (&self.convo_id, "convo_id"),
                (&self.event_id, "event_id"),
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
        Ok(())
    }
}
