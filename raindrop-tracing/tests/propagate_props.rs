//! Property tests of the extractor (issue 12): headers are hostile input.
//! Arbitrary bytes never panic, and only a well-formed `traceparent` yields a
//! context.

use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use raindrop_core::{Client, ClientOptions};
use raindrop_tracing::propagate;
use tracing_subscriber::prelude::*;

const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// An independent reading of the W3C rules for a version-00-shaped value.
fn well_formed(v: &str) -> bool {
    let v = v.trim_matches([' ', '\t']);
    let b = v.as_bytes();
    let hex = |s: &[u8]| s.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    if b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return false;
    }
    let (ver, trace, span, flags) = (&b[0..2], &b[3..35], &b[36..52], &b[53..55]);
    hex(ver)
        && hex(trace)
        && hex(span)
        && hex(flags)
        && ver != b"ff"
        && (b.len() == 55 || (ver != b"00" && b[55] == b'-'))
        && trace.iter().any(|c| *c != b'0')
        && span.iter().any(|c| *c != b'0')
}

/// Bytes near a valid header: one byte replaced, or cut, or extended.
fn near_valid() -> impl Strategy<Value = Vec<u8>> {
    (0usize..70, any::<u8>(), 0u8..3).prop_map(|(at, byte, how)| {
        let mut v = VALID.as_bytes().to_vec();
        match how {
            0 => {
                let i = at % v.len();
                v[i] = byte;
            }
            1 => v.truncate(at.min(v.len())),
            _ => v.extend(std::iter::repeat_n(byte, at)),
        }
        v
    })
}

fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        near_valid(),
        Just(VALID.as_bytes().to_vec()),
    ]
}

fn baggage_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        "(raindrop\\.(event_id|user_id|convo_id|event|properties)=[ -~]{0,40},?){0,6}"
            .prop_map(String::into_bytes),
        (0usize..3000).prop_map(|n| format!("raindrop.event_id={}", "e".repeat(n)).into_bytes()),
    ]
}

fn headers(tp: &[Vec<u8>], bg: &[Vec<u8>]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, values) in [("traceparent", tp), ("baggage", bg)] {
        for v in values {
            // Bytes an HTTP stack would refuse never reach a handler.
            if let Ok(v) = HeaderValue::from_bytes(v) {
                h.append(HeaderName::from_static(name), v);
            }
        }
    }
    h
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn extract_never_panics_nor_trusts_invalid_headers(
        tp in proptest::collection::vec(header_bytes(), 0..3),
        bg in proptest::collection::vec(baggage_bytes(), 0..3),
    ) {
        let h = headers(&tp, &bg);
        let got = propagate::extract(&h);
        let lines: Vec<&HeaderValue> = h.get_all("traceparent").iter().collect();
        let valid = lines.len() == 1
            && lines[0].to_str().is_ok_and(well_formed);
        prop_assert_eq!(got.is_some(), valid, "{:?}", lines);
        if let Some(remote) = got {
            // The ids are the header's.
            let text = lines[0].to_str().unwrap();
            let tp = remote.parent.to_header();
            prop_assert_eq!(&tp[3..52], &text.trim()[3..52]);
            let b = &remote.baggage;
            for v in [&b.event_id, &b.user_id, &b.convo_id, &b.event].into_iter().flatten() {
                prop_assert!(!v.is_empty() && v.chars().count() <= 1024);
            }
            // A baggage that never names a raindrop key sets nothing.
            let raw: Vec<u8> = bg.concat();
            if !raw.windows(9).any(|w| w == b"raindrop.") {
                prop_assert!(b.is_empty());
            }
        }
    }

    #[test]
    fn a_remote_span_from_any_headers_is_safe_to_use(
        tp in header_bytes(),
        bg in baggage_bytes(),
    ) {
        let client = Client::new(ClientOptions::default()).unwrap(); // disabled: no key
        let subscriber = tracing_subscriber::registry().with(raindrop_tracing::layer_for(&client));
        tracing::subscriber::with_default(subscriber, || {
            let h = headers(&[tp], &[bg]);
            if let Some(remote) = propagate::extract(&h) {
                remote.span().in_scope(|| {
                    let i = raindrop_tracing::resume_interaction();
                    prop_assert_eq!(i.event_id(), remote.baggage.event_id.as_deref());
                    let tool = tracing::info_span!("t", raindrop.kind = "tool");
                    let mut out = HeaderMap::new();
                    tool.in_scope(|| propagate::inject(&mut out));
                    let again = propagate::extract(&out).unwrap();
                    prop_assert_eq!(again.parent.trace_id, remote.parent.trace_id);
                    prop_assert_eq!(again.baggage.event_id, remote.baggage.event_id);
                    Ok::<(), TestCaseError>(())
                })?;
            }
            Ok::<(), TestCaseError>(())
        })?;
    }
}
