//! Property-based tests (issue 6) over arbitrary events, signals and
//! interaction updates, end to end through the public API and the local sink
//! (which writes every request the SDK would send, one JSON line each):
//!
//! - no input makes a call panic; a call either queues or returns
//!   `Error::InvalidField`;
//! - every request is valid JSON, under 1 MiB, with AI text within the cap;
//! - interaction deltas merged in order give the same event as applying every
//!   update in order: merging is associative, the last write wins per field.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use raindrop_core::*;
use serde_json::{json, Map, Value};

const CAP: usize = 30;

fn sink_path() -> std::path::PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "raindrop-prop-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// A local-sink client; returns it and the sink's path.
fn sink_client(idle: Duration) -> (Client, std::path::PathBuf) {
    let path = sink_path();
    let _ = std::fs::remove_file(&path);
    let c = Client::new(
        ClientOptions::default()
            .local_sink(LocalSink::File(path.clone()))
            .max_text_field_chars(CAP)
            .upload_interval(Duration::from_millis(20))
            .partial_idle_timeout(idle)
            // The merged properties are compared exactly; no provenance keys.
            .app_git(false),
    )
    .unwrap();
    (c, path)
}

/// Every line the sink got, as `(path, body)`.
fn sink_lines(path: &std::path::Path) -> Vec<(String, Value, usize)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let _ = std::fs::remove_file(path);
    text.lines()
        .map(|l| {
            let v: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("invalid JSON ({e}): {l}"));
            let body_len = serde_json::to_vec(&v["body"]).unwrap().len();
            (
                v["path"].as_str().unwrap().to_owned(),
                v["body"].clone(),
                body_len,
            )
        })
        .collect()
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::collection::vec(any::<char>(), 0..12).prop_map(String::from_iter),
        1 => prop::collection::vec(any::<char>(), 25..60).prop_map(String::from_iter),
        1 => Just(String::new()),
        1 => Just("  ".to_owned()),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(text(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn properties() -> impl Strategy<Value = Properties> {
    prop::collection::btree_map(text(), json_value(), 0..4).prop_map(|m| m.into_iter().collect())
}

fn attachment() -> impl Strategy<Value = Attachment> {
    (
        prop_oneof![Just("code"), Just("text"), Just("image"), Just("iframe")],
        text(),
        proptest::option::of(text()),
        proptest::option::of(prop_oneof![
            Just(Role::Input),
            Just(Role::Output),
            Just(Role::Context)
        ]),
    )
        .prop_map(|(k, v, name, role)| {
            let mut a = Attachment::new(k.parse().unwrap(), v);
            if let Some(n) = name {
                a = a.name(n);
            }
            if let Some(r) = role {
                a = a.role(r);
            }
            a
        })
}

fn timestamp() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(prop_oneof![
        Just("2024-05-06T07:08:09Z".to_owned()),
        Just("2024-05-06T07:08:09.5+02:00".to_owned()),
        Just("2024-05-06 07:08:09".to_owned()),
        text(),
    ])
}

#[derive(Debug, Clone)]
enum Call {
    TrackAi(AiEvent),
    Track(Event),
    Identify(String, Properties),
    Signal(Signal),
}

fn call() -> impl Strategy<Value = Call> {
    let ai = (
        text(),
        text(),
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::option::of(text()),
        properties(),
        prop::collection::vec(attachment(), 0..3),
        timestamp(),
    )
        .prop_map(|(u, e, input, output, model, props, atts, ts)| {
            let mut ev = AiEvent::new(u, e).properties(props).attachments(atts);
            if let Some(i) = input {
                ev = ev.input(i);
            }
            if let Some(o) = output {
                ev = ev.output(o);
            }
            if let Some(m) = model {
                ev = ev.model(m);
            }
            if let Some(t) = ts {
                ev = ev.timestamp(t);
            }
            Call::TrackAi(ev)
        });
    let plain = (
        text(),
        text(),
        properties(),
        prop::collection::vec(attachment(), 0..2),
        timestamp(),
    )
        .prop_map(|(u, e, props, atts, ts)| {
            let mut ev = Event::new(u, e).properties(props).attachments(atts);
            if let Some(t) = ts {
                ev = ev.timestamp(t);
            }
            Call::Track(ev)
        });
    let identify = (text(), properties()).prop_map(|(u, t)| Call::Identify(u, t));
    let signal = (
        text(),
        text(),
        prop_oneof![
            Just(SignalType::Default),
            Just(SignalType::Feedback),
            Just(SignalType::Edit)
        ],
        proptest::option::of(text()),
        proptest::option::of(text()),
        properties(),
        timestamp(),
        proptest::option::of(prop_oneof![
            Just(Sentiment::Positive),
            Just(Sentiment::Negative)
        ]),
    )
        .prop_map(|(id, name, ty, comment, after, props, ts, sentiment)| {
            let mut s = Signal::new(id, name).signal_type(ty).properties(props);
            if let Some(c) = comment {
                s = s.comment(c);
            }
            if let Some(a) = after {
                s = s.after(a);
            }
            if let Some(t) = ts {
                s = s.timestamp(t);
            }
            if let Some(x) = sentiment {
                s = s.sentiment(x);
            }
            Call::Signal(s)
        });
    prop_oneof![ai, plain, identify, signal]
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROP_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(64),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Checks one text field against the cap.
fn within_cap(v: &Value) -> bool {
    v.as_str().is_none_or(|s| s.chars().count() <= CAP)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_calls_never_panic_and_every_request_is_valid_json_within_caps(
        calls in prop::collection::vec(call(), 1..12)
    ) {
        let (c, path) = sink_client(Duration::from_secs(60));
        let mut accepted = 0u64;
        for call in calls {
            let r = match call {
                Call::TrackAi(e) => c.track_ai(e).map(|_| ()),
                Call::Track(e) => c.track(e).map(|_| ()),
                Call::Identify(u, t) => c.identify(u, t),
                Call::Signal(s) => c.track_signal(s),
            };
            match r {
                Ok(()) => accepted += 1,
                Err(Error::InvalidField { field, .. }) => prop_assert!(!field.is_empty()),
                Err(e) => prop_assert!(false, "unexpected error {e:?}"),
            }
        }
        let report = c.shutdown(Duration::from_secs(10));
        prop_assert!(report.completed);
        prop_assert_eq!(report.stats.delivered, accepted);
        let mut items = 0u64;
        for (route, body, len) in sink_lines(&path) {
            prop_assert!(len <= 1024 * 1024);
            let arr = body.as_array().expect("batched routes carry arrays");
            prop_assert!(!arr.is_empty() && arr.len() <= 10);
            items += arr.len() as u64;
            for item in arr {
                if route == "events/track" {
                    prop_assert!(within_cap(&item["ai_data"]["input"]) && within_cap(&item["ai_data"]["output"]), "{item}");
                    prop_assert!(!item["user_id"].as_str().unwrap().trim().is_empty());
                    prop_assert!(item["properties"]["$context"].is_object());
                    prop_assert!(item["attachments"].is_null() || item["attachments"].is_array());
                }
                if route == "signals/track" {
                    match item["signal_type"].as_str().unwrap() {
                        "feedback" => prop_assert!(item["properties"]["comment"].as_str().is_some_and(|s| !s.trim().is_empty())),
                        "edit" => prop_assert!(item["properties"]["after"].as_str().is_some_and(|s| !s.trim().is_empty())),
                        t => prop_assert_eq!(t, "default"),
                    }
                }
            }
        }
        prop_assert_eq!(items, accepted);
    }
}

/// One interaction update, as the caller makes it.
#[derive(Debug, Clone)]
enum Op {
    Input(String),
    Output(String),
    Model(String),
    Convo(String),
    UserId(String),
    EventName(String),
    Property(String, Value),
    Properties(Properties),
    Attach(String),
    /// Ships everything buffered so far (splits the deltas).
    Flush,
}

/// Small key and value sets, so updates collide: objects over scalars over
/// objects, at the top level and nested.
fn small_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        (0..3i64).prop_map(Value::from),
        Just(json!("s")),
        Just(json!([1])),
    ];
    let object = |inner: BoxedStrategy<Value>| {
        prop::collection::btree_map(prop_oneof![Just("x"), Just("y")], inner, 0..3)
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
    };
    let nested = object(leaf.clone().boxed()).boxed();
    // About half objects, half not, at the top and one level down.
    prop_oneof![leaf, object(prop_oneof![leaf_again(), nested].boxed())]
}

fn leaf_again() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        (0..3i64).prop_map(Value::from),
        Just(json!("s")),
        Just(json!([1]))
    ]
    .boxed()
}

fn op() -> impl Strategy<Value = Op> {
    let key = || prop_oneof![3 => Just("a".to_owned()), 1 => Just("b".to_owned())];
    let word = || {
        prop_oneof![
            Just("p".to_owned()),
            Just("q".to_owned()),
            Just("".to_owned())
        ]
    };
    prop_oneof![
        1 => word().prop_map(Op::Input),
        1 => word().prop_map(Op::Output),
        1 => word().prop_map(Op::Model),
        1 => word().prop_map(Op::Convo),
        1 => prop_oneof![Just("u2".to_owned()), Just(" ".to_owned())].prop_map(Op::UserId),
        1 => word().prop_map(Op::EventName),
        5 => (key(), small_value()).prop_map(|(k, v)| Op::Property(k, v)),
        3 => prop::collection::btree_map(key(), small_value(), 0..3).prop_map(|m| Op::Properties(m.into_iter().collect())),
        1 => word().prop_map(Op::Attach),
        3 => Just(Op::Flush),
    ]
}

/// The receiver's rule: objects deep-merge, attachments append, anything else is replaced.
fn apply(state: &mut Map<String, Value>, update: &Map<String, Value>) {
    fn deep(dst: &mut Map<String, Value>, newer: &Map<String, Value>) {
        for (k, v) in newer {
            match (dst.get_mut(k), v) {
                (Some(Value::Object(d)), Value::Object(n)) => deep(d, n),
                _ => {
                    dst.insert(k.clone(), v.clone());
                }
            }
        }
    }
    for (k, v) in update {
        match (k.as_str(), state.get_mut(k), v) {
            ("attachments", Some(Value::Array(d)), Value::Array(n)) => d.extend(n.iter().cloned()),
            (_, Some(Value::Object(d)), Value::Object(n)) => deep(d, n),
            _ => {
                state.insert(k.clone(), v.clone());
            }
        }
    }
}

fn update_of(op: &Op) -> Option<Value> {
    Some(match op {
        Op::Input(s) => json!({"ai_data": {"input": s}}),
        Op::Output(s) => json!({"ai_data": {"output": s}}),
        Op::Model(s) => json!({"ai_data": {"model": s}}),
        Op::Convo(s) => json!({"ai_data": {"convo_id": s}}),
        Op::UserId(s) if s.trim().is_empty() => return None, // documented: ignored
        Op::UserId(s) => json!({"user_id": s}),
        Op::EventName(s) if s.trim().is_empty() => return None, // documented: ignored
        Op::EventName(s) => json!({"event": s}),
        Op::Property(k, v) => json!({"properties": {k: v}}),
        Op::Properties(m) if m.is_empty() => return None,
        Op::Properties(m) => json!({"properties": m}),
        Op::Attach(s) if s.is_empty() => return None, // an empty attachment value is refused
        Op::Attach(s) => json!({"attachments": [{"type": "text", "value": s}]}),
        Op::Flush => return None,
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn interaction_deltas_merge_to_the_same_event_as_every_update_in_order(
        ops in prop::collection::vec(op(), 2..16),
        idle_ms in prop_oneof![Just(60_000u64), Just(1u64)],
    ) {
        let (c, path) = sink_client(Duration::from_millis(idle_ms));
        let it = c.begin(Begin::new("u1", "run").event_id("prop-1").input("q").property("a", json!({"x": 1}))).unwrap();
        let mut model = json!({"event_id": "prop-1", "user_id": "u1", "event": "run",
                               "ai_data": {"input": "q"}, "properties": {"a": {"x": 1}}, "is_pending": true});
        let model_obj = model.as_object_mut().unwrap();
        for op in &ops {
            match op.clone() {
                Op::Input(s) => it.set_input(s),
                Op::Output(s) => it.set_output(s),
                Op::Model(s) => it.set_model(s),
                Op::Convo(s) => it.set_convo_id(s),
                Op::UserId(s) => it.set_user_id(s),
                Op::EventName(s) => it.set_event(s),
                Op::Property(k, v) => it.set_property(k, v),
                Op::Properties(m) => it.set_properties(m),
                // An empty value is left out of the update (with a warning).
                Op::Attach(s) => it.add_attachments([Attachment::text(s)]),
                Op::Flush => { c.flush(Duration::from_secs(5)); }
            }
            if let Some(u) = update_of(op) {
                apply(model_obj, u.as_object().unwrap());
            }
        }
        it.finish("done");
        apply(model_obj, json!({"ai_data": {"output": "done"}, "is_pending": false}).as_object().unwrap());
        let report = c.shutdown(Duration::from_secs(10));
        prop_assert!(report.completed);
        prop_assert_eq!(report.stats.dropped_total(), 0);

        let mut merged = Map::new();
        let mut finals = 0;
        for (route, body, _) in sink_lines(&path) {
            prop_assert_eq!(route, "events/track_partial");
            prop_assert_eq!(&body["event_id"], "prop-1");
            prop_assert!(body["is_pending"].is_boolean());
            finals += usize::from(body["is_pending"] == false);
            apply(&mut merged, body.as_object().unwrap());
        }
        prop_assert_eq!(finals, 1, "exactly one final delta");
        prop_assert_eq!(Value::Object(merged), model);
    }
}

/// The smallest case of the rule above: an object, shipped; then a scalar and
/// an object in one window. Merged naively the second delta would be
/// `{"a": {"y": 2}}`, which a receiver deep-merges into `{"x": 1, "y": 2}`.
#[test]
fn object_then_scalar_then_object_across_deltas_keeps_the_last_write() {
    let (c, path) = sink_client(Duration::from_secs(60));
    let it = c
        .begin(
            Begin::new("u1", "run")
                .event_id("prop-2")
                .input("q")
                .property("a", json!({"x": 1})),
        )
        .unwrap();
    assert!(c.flush(Duration::from_secs(5)));
    it.set_property("a", 5);
    it.set_property("a", json!({"y": 2}));
    it.finish("done");
    assert!(c.shutdown(Duration::from_secs(5)).completed);
    let mut merged = Map::new();
    for (_, body, _) in sink_lines(&path) {
        apply(&mut merged, body.as_object().unwrap());
    }
    assert_eq!(merged["properties"], json!({"a": {"y": 2}}));
}

/// Text that none of the redaction rules can match: no digits, no `@`, no
/// `:` or `=`, no capitals, and consonants only, so no listed first name,
/// greeting or credential word can form.
fn no_pii_text() -> impl Strategy<Value = String> {
    "[bcdfghjklmnpqrstvwxz ,.!\n]{0,200}"
}

/// Text built to hit the rules: pieces of every kind mixed with noise.
fn pii_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("api_key=abc123".to_owned()),
        Just("4111 1111 1111 1111".to_owned()),
        Just("ann@example.com".to_owned()),
        Just("(415) 555-0123".to_owned()),
        Just("123-45-6789".to_owned()),
        Just("password: x".to_owned()),
        Just("12 Main Street".to_owned()),
        Just("James".to_owned()),
        Just("hello Zed".to_owned()),
        Just("\nBest regards,\nZed Quux\n".to_owned()),
        Just("thanks".to_owned()),
        "\\PC{0,12}",
    ];
    prop::collection::vec(piece, 0..12).prop_map(|v| v.join(" "))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn redaction_leaves_text_without_pii_byte_identical(text in no_pii_text()) {
        let out = redact_pii(&text);
        prop_assert!(matches!(out, std::borrow::Cow::Borrowed(_)));
        prop_assert_eq!(out, text.as_str());
    }

    #[test]
    fn redaction_is_idempotent_and_total(text in prop_oneof![pii_text(), "\\PC{0,300}", any::<String>()]) {
        let once = redact_pii(&text).into_owned();
        let twice = redact_pii(&once).into_owned();
        prop_assert_eq!(&twice, &once, "input: {:?}", text);
    }

    #[test]
    fn redacted_text_is_capped_again(text in pii_text(), cap in 16usize..200) {
        // What the worker does: redact, then the size gate.
        let out = truncate_text(&redact_pii(&text), cap).into_owned();
        prop_assert!(out.chars().count() <= cap);
    }
}

proptest! {
    #![proptest_config(config())]

    /// Whatever arrives in a header: no panic, and bounded results.
    #[test]
    fn propagation_headers_never_panic(header in prop_oneof!["\\PC{0,600}", any::<String>(), "[0-9a-f-]{50,60}"]) {
        let _ = propagation::TraceParent::parse(&header);
        let b = propagation::InteractionBaggage::extract(&header);
        for v in [&b.event_id, &b.user_id, &b.convo_id, &b.event].into_iter().flatten() {
            prop_assert!(v.chars().count() <= 1024);
        }
    }

    /// Any values survive inject then extract, next to foreign members.
    #[test]
    fn baggage_values_round_trip(event_id in "\\PC{1,40}", user_id in "\\PC{1,40}") {
        let b = propagation::InteractionBaggage {
            event_id: Some(event_id),
            user_id: Some(user_id),
            ..Default::default()
        };
        let header = b.inject(Some("foreign=1;p")).unwrap();
        prop_assert!(header.starts_with("foreign=1;p,"));
        prop_assert_eq!(propagation::InteractionBaggage::extract(&header), b);
    }
}
