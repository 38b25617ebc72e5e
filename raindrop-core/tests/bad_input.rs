//! Bad input (issue 6): a clear typed error naming the field, or the
//! documented fallback, and never a panic.

use raindrop_test_support::logs;

use std::str::FromStr;
use std::time::Duration;

use raindrop_core::*;
use raindrop_test_support::{Answer, Capture};
use serde_json::{json, Value};

fn opts(endpoint: String) -> ClientOptions {
    ClientOptions::default()
        .write_key("rk_bad_input")
        .endpoint(endpoint)
        .upload_interval(Duration::from_millis(30))
        .partial_idle_timeout(Duration::from_millis(100))
        // Property counts are exact here; this checkout's commit would add keys.
        .app_git(false)
}

fn client(cap: &Capture) -> Client {
    Client::new(opts(cap.endpoint())).unwrap()
}

/// The error is `InvalidField` for `field`, and its message names the field.
#[track_caller]
fn assert_field<T: std::fmt::Debug>(r: Result<T, Error>, field: &str) {
    match r {
        Err(e @ Error::InvalidField { .. }) => {
            let Error::InvalidField { field: f, .. } = &e else {
                unreachable!()
            };
            assert_eq!(f, field, "{e:?}");
            assert!(
                e.to_string().contains(&format!("`{field}`")),
                "message names the field: {e}"
            );
        }
        other => panic!("expected InvalidField({field}), got {other:?}"),
    }
}

fn props(v: Value) -> Properties {
    v.as_object().unwrap().clone()
}

#[test]
fn empty_or_blank_ids_and_names_are_refused_by_field() {
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    assert_field(c.track_ai(AiEvent::new("", "e").input("q")), "user_id");
    assert_field(c.track_ai(AiEvent::new("  \t", "e").input("q")), "user_id");
    assert_field(c.track_ai(AiEvent::new("u", "").input("q")), "event");
    assert_field(c.track_ai(AiEvent::new("u", "e")), "ai_data");
    assert_field(
        c.track_ai(AiEvent::new("u", "e").input("").output("")),
        "ai_data",
    );
    assert_field(
        c.track_ai(AiEvent::new("u", "e").input("q").event_id(" ")),
        "event_id",
    );
    assert_field(c.track(Event::new("", "e")), "user_id");
    assert_field(c.track(Event::new("u", " ")), "event");
    assert_field(c.identify("", Properties::new()), "user_id");
    assert_field(c.track_signal(Signal::new("", "thumbs_up")), "event_id");
    assert_field(c.track_signal(Signal::new("e-1", "")), "name");
    assert_field(c.begin(Begin::new("u", "")), "event");
    assert_field(
        c.track(
            Event::new("u", "e")
                .attachment(Attachment::text("ok"))
                .attachment(Attachment::text("")),
        ),
        "attachments[1].value",
    );
    assert!(c.flush(Duration::from_secs(5)));
    assert!(cap.requests().is_empty(), "nothing invalid is ever sent");
    assert_eq!(c.stats().dropped(DropReason::Invalid), 13);
    assert_eq!(c.stats().queued, 0);
}

#[test]
fn feedback_needs_a_comment_and_edit_needs_after() {
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    let fb = || Signal::new("e-1", "user_feedback").signal_type(SignalType::Feedback);
    assert_field(c.track_signal(fb()), "comment");
    assert_field(c.track_signal(fb().comment("   ")), "comment");
    assert_field(c.track_signal(fb().property("comment", 5)), "comment");
    assert_field(
        c.track_signal(fb().property("comment", Value::Null)),
        "comment",
    );
    let edit = || Signal::new("e-1", "user_edit").signal_type(SignalType::Edit);
    assert_field(c.track_signal(edit()), "after");
    assert_field(
        c.track_signal(edit().comment("a comment is not the corrected text")),
        "after",
    );
    assert_field(c.track_signal(edit().after("")), "after");
    // The valid forms go through.
    c.track_signal(fb().comment("good")).unwrap();
    c.track_signal(fb().property("comment", "via properties"))
        .unwrap();
    c.track_signal(edit().property("after", "via properties"))
        .unwrap();
    assert!(c.flush(Duration::from_secs(5)));
    assert_eq!(cap.delivered("signals/track").len(), 3);
    assert_eq!(c.stats().dropped(DropReason::Invalid), 7);
}

#[test]
fn unknown_enum_strings_are_from_str_errors_naming_the_field() {
    assert_field(AttachmentType::from_str("video"), "attachment.type");
    assert_field(AttachmentType::from_str("Code"), "attachment.type");
    assert_field(Role::from_str("system"), "attachment.role");
    assert_field(Role::from_str(""), "attachment.role");
    assert_field(SignalType::from_str("agent"), "signal_type");
    assert_field(Sentiment::from_str("meh"), "sentiment");
    assert_eq!(
        "iframe".parse::<AttachmentType>(),
        Ok(AttachmentType::Iframe)
    );
    assert_eq!("context".parse::<Role>(), Ok(Role::Context));
    assert_eq!(
        "negative".parse::<Sentiment>(),
        Ok(Sentiment::Negative),
        "sentiment is case-insensitive"
    );
    let e = "video".parse::<AttachmentType>().unwrap_err().to_string();
    assert!(
        e.contains("video") && e.contains("code, text, image, iframe"),
        "{e}"
    );
}

#[test]
fn timestamps_parse_keep_offsets_or_are_refused_by_field() {
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    for bad in [
        "yesterday",
        "",
        "2024-13-01T00:00:00Z",
        "2024-05-06T07:08:09+25:00",
        "1715000000",
    ] {
        assert_field(
            c.track_ai(AiEvent::new("u", "e").input("q").timestamp(bad)),
            "timestamp",
        );
        assert_field(
            c.track_signal(Signal::new("e", "s").timestamp(bad)),
            "timestamp",
        );
    }
    let cases = [
        ("2024-05-06T07:08:09Z", "2024-05-06T07:08:09Z"),
        ("2024-05-06T07:08:09+00:00", "2024-05-06T07:08:09Z"),
        ("2024-05-06T07:08:09+02:00", "2024-05-06T07:08:09+02:00"),
        ("2024-05-06T07:08:09.250Z", "2024-05-06T07:08:09.250Z"),
        ("2024-05-06T07:08:09", "2024-05-06T07:08:09"),
        ("2024-05-06 07:08:09", "2024-05-06T07:08:09"),
        (" 2024-05-06T07:08:09Z ", "2024-05-06T07:08:09Z"),
    ];
    for (i, (given, _)) in cases.iter().enumerate() {
        c.track(
            Event::new("u", "ts")
                .event_id(format!("ts-{i}"))
                .timestamp(*given),
        )
        .unwrap();
    }
    // A bad timestamp on finish is ignored with a warning: the final update still ships.
    let it = c
        .begin(Begin::new("u", "run").event_id("ts-finish").input("q"))
        .unwrap();
    it.finish_with(Finish::new().output("a").timestamp("not a time"));
    assert!(c.flush(Duration::from_secs(5)));
    let items = cap.delivered("events/track");
    for (i, (_, want)) in cases.iter().enumerate() {
        let got = items
            .iter()
            .find(|v| v["event_id"] == format!("ts-{i}"))
            .unwrap();
        assert_eq!(got["timestamp"], *want, "case {i}");
    }
    let fin = cap.delivered("events/track_partial");
    assert_eq!(fin.len(), 1);
    assert!(fin[0].get("timestamp").is_none() && fin[0]["is_pending"] == false);
}

#[test]
fn nan_and_infinite_floats_become_null() {
    // serde_json has no NaN or infinity: `Value::from(f64::NAN)` is `null`.
    // That is the documented fallback: the event ships, the value is null.
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    c.track(
        Event::new("u", "floats")
            .property("nan", f64::NAN)
            .property("inf", f64::INFINITY)
            .property("neg_inf", f64::NEG_INFINITY)
            .property("ok", 1.5)
            .property("tiny", f64::MIN_POSITIVE),
    )
    .unwrap();
    c.identify("u", props(json!({"score": Value::from(f64::NAN)})))
        .unwrap();
    assert!(c.flush(Duration::from_secs(5)));
    let e = &cap.delivered("events/track")[0]["properties"];
    assert_eq!(
        (&e["nan"], &e["inf"], &e["neg_inf"]),
        (&Value::Null, &Value::Null, &Value::Null)
    );
    assert_eq!(e["ok"], 1.5);
    assert_eq!(e["tiny"], f64::MIN_POSITIVE);
    assert_eq!(
        cap.delivered("users/identify")[0]["traits"]["score"],
        Value::Null
    );
}

fn deep(levels: usize) -> Value {
    let mut v = Value::from(1);
    // Built by moving (`json!` would serialise `v` again: recursive and quadratic).
    for i in 0..levels {
        v = if i % 2 == 0 {
            let mut m = serde_json::Map::new();
            m.insert("a".into(), v);
            Value::Object(m)
        } else {
            Value::Array(vec![v])
        };
    }
    v
}

/// A call that is invalid in another field too must not drop its deep value
/// recursively on the way out (that overflowed the caller's stack).
#[test]
fn deep_properties_beside_another_invalid_field_do_not_overflow() {
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    let deep_props = || {
        let mut m = serde_json::Map::new();
        m.insert("d".into(), deep(100_000));
        m
    };
    assert_field(
        c.track_ai(AiEvent::new("", "e").properties(deep_props())),
        "properties",
    );
    assert_field(
        c.track(Event::new("u", "").properties(deep_props())),
        "properties",
    );
    assert_field(c.identify("", deep_props()), "traits");
    assert_field(
        c.track_signal(Signal::new("", "s").properties(deep_props())),
        "properties",
    );
    assert_field(
        c.begin(Begin::new("u", "").properties(deep_props())),
        "properties",
    );
    assert_eq!(c.stats().dropped(DropReason::Invalid), 5);
}

#[test]
fn properties_nested_1000_deep_are_refused_naming_the_field() {
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    // Up to 512 levels (the properties map is level 1) ship intact.
    c.track(
        Event::new("u", "deep-ok")
            .event_id("deep-ok")
            .property("d", deep(511)),
    )
    .unwrap();
    // Deeper would overflow the serialiser's stack (it aborted the process
    // at 10,000 levels before the limit): refused with a typed error.
    assert_field(
        c.track(Event::new("u", "deep").property("d", deep(1_000))),
        "properties",
    );
    assert_field(
        c.track_ai(
            AiEvent::new("u", "deep")
                .input("q")
                .property("d", deep(100_000)),
        ),
        "properties",
    );
    assert_field(c.identify("u", props(json!({"d": deep(1_000)}))), "traits");
    assert_field(
        c.track_signal(Signal::new("e", "s").property("d", deep(1_000))),
        "properties",
    );
    assert_field(
        c.begin(Begin::new("u", "run").property("d", deep(1_000))),
        "properties",
    );
    // Interaction mutators return nothing: the update is dropped and counted.
    let it = c
        .begin(Begin::new("u", "run").event_id("deep-i").input("q"))
        .unwrap();
    it.set_property("d", deep(10_000));
    it.finish("a");
    assert!(c.flush(Duration::from_secs(5)));
    let ok = cap.delivered("events/track");
    assert_eq!(ok.len(), 1);
    // The capture server's parser stops at 128 levels: count the depth on the raw bytes.
    let raw = &cap.to("events/track")[0].raw;
    let depth = raw.iter().fold((0i32, 0i32), |(d, m), b| match b {
        b'{' | b'[' => (d + 1, m.max(d + 1)),
        b'}' | b']' => (d - 1, m),
        _ => (d, m),
    });
    assert!(
        depth.1 >= 513,
        "the 511-level value arrived whole (depth {})",
        depth.1
    );
    assert_eq!(c.stats().dropped(DropReason::Invalid), 6);
    // The rest of the interaction ships (in one delta or two, as the
    // worker's timing has it): its input, one final, never the deep value.
    let deltas = cap.delivered("events/track_partial");
    assert_eq!(
        deltas.iter().filter(|d| d["is_pending"] == false).count(),
        1
    );
    assert!(deltas.iter().any(|d| d["ai_data"]["input"] == "q"));
    assert!(deltas.iter().any(|d| d["ai_data"]["output"] == "a"));
    assert!(deltas.iter().all(|d| d["properties"].get("d").is_none()));
}

#[test]
fn one_hundred_thousand_properties_are_sent_or_counted_oversize() {
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    let big: Properties = (0..100_000)
        .map(|i| (format!("prop-{i:06}"), Value::from(i)))
        .collect();
    let small: Properties = (0..30_000)
        .map(|i| (format!("k{i}"), Value::from(i)))
        .collect();
    c.track(Event::new("u", "wide").event_id("wide-big").properties(big))
        .unwrap();
    c.track(
        Event::new("u", "wide")
            .event_id("wide-small")
            .properties(small),
    )
    .unwrap();
    c.identify(
        "u",
        (0..100_000)
            .map(|i| (format!("t{i}"), Value::from(true)))
            .collect::<Properties>(),
    )
    .unwrap();
    assert!(c.flush(Duration::from_secs(10)));
    let items = cap.delivered("events/track");
    assert_eq!(
        items.len(),
        1,
        "the ~2 MB event is dropped, the ~400 KB one ships"
    );
    assert_eq!(
        items[0]["properties"].as_object().unwrap().len(),
        30_001,
        "all keys plus $context"
    );
    assert!(
        cap.delivered("users/identify").is_empty(),
        "100,000 traits are ~1.4 MB: dropped"
    );
    assert_eq!(c.stats().dropped(DropReason::Oversize), 2);
}

#[test]
fn invalid_project_ids_warn_and_omit_the_header() {
    logs::install();
    let cap = Capture::start(vec![]);
    for (given, header) in [
        ("Support_Agent", None),
        ("-leading", None),
        ("trailing-", None),
        ("x".repeat(64).as_str(), None),
        ("a.b", None),
        ("", None),
        ("   ", None),
        ("  support-agent  ", Some("support-agent")),
        ("a", Some("a")),
    ] {
        let before = cap.requests().len();
        let c = Client::new(opts(cap.endpoint()).project_id(given)).unwrap();
        c.track_ai(AiEvent::new("u", "e").input("q")).unwrap();
        assert!(c.flush(Duration::from_secs(5)));
        let reqs = cap.requests();
        let got = reqs[before]
            .headers
            .get("x-raindrop-project-id")
            .map(|h| h.to_str().unwrap().to_owned());
        assert_eq!(got.as_deref(), header, "project_id {given:?}");
        c.shutdown(Duration::from_secs(1));
        if header.is_none() && !given.trim().is_empty() {
            assert!(
                logs::text().contains(&format!(
                    "project_id `{}` is not a valid slug",
                    given.trim()
                )),
                "a warning for {given:?}"
            );
        }
    }
}

#[test]
fn invalid_endpoints_are_config_errors_naming_endpoint() {
    for bad in [
        "not a url",
        "",
        "ftp://example.invalid/v1/",
        "http://",
        "://x",
        "file:///etc/passwd",
        "http://[::1/v1",
    ] {
        match Client::new(ClientOptions::default().write_key("k").endpoint(bad)) {
            Err(
                e @ Error::Config {
                    field: "endpoint", ..
                },
            ) => {
                assert!(e.to_string().contains("`endpoint`"), "{e}")
            }
            other => panic!("{bad:?}: expected Config(endpoint), got {other:?}"),
        }
    }
    // Normalisation: with or without the trailing slash, same routes.
    for ok in [
        "http://127.0.0.1:9/v1",
        "http://127.0.0.1:9/v1/",
        "  http://127.0.0.1:9/v1//  ",
    ] {
        let c = Client::new(ClientOptions::default().endpoint(ok)).unwrap();
        assert_eq!(c.options().endpoint, "http://127.0.0.1:9/v1/");
    }
}

#[test]
fn non_2xx_with_garbage_bodies_are_classified_not_parsed() {
    let garbage: &'static str = "\u{0}\u{1}<<<not json>>>\u{fffd}{{{{";
    let cap = Capture::start(vec![(
        "events/track",
        vec![
            Answer::Status(500, None, garbage),
            Answer::Status(200, None, garbage),
            Answer::Status(400, None, garbage),
            Answer::Status(413, None, "<html>too large</html>"),
            Answer::Status(401, None, garbage),
            Answer::Status(404, None, garbage),
            Answer::Status(301, None, garbage),
        ],
    )]);
    let c = Client::new(opts(cap.endpoint()).upload_size(1)).unwrap();
    c.track_ai(AiEvent::new("u", "e").event_id("g-0").input("q"))
        .unwrap();
    assert!(c.flush(Duration::from_secs(5)));
    for i in 1..6 {
        c.track_ai(AiEvent::new("u", "e").event_id(format!("g-{i}")).input("q"))
            .unwrap();
        assert!(c.flush(Duration::from_secs(5)));
    }
    let s = c.stats();
    assert_eq!(s.delivered, 1, "a 2xx is success whatever its body: {s:?}");
    assert_eq!(
        s.dropped(DropReason::Rejected),
        5,
        "400/413/401/404/3xx are permanent: {s:?}"
    );
    assert_eq!(s.retries, 1, "only the 500 was retried");
    assert_eq!(cap.to("events/track").len(), 7);
}

#[test]
fn a_write_key_unfit_for_a_header_does_not_panic() {
    let cap = Capture::start(vec![]);
    let c = Client::new(
        ClientOptions::default()
            .write_key("rk_bad\nkey")
            .endpoint(cap.endpoint())
            .upload_interval(Duration::from_millis(30)),
    )
    .unwrap();
    c.track_ai(AiEvent::new("u", "e").input("q")).unwrap();
    assert!(c.flush(Duration::from_secs(5)));
    let r = &cap.requests()[0];
    assert!(
        r.headers.get("authorization").is_none(),
        "never a broken header"
    );
}

#[test]
fn unicode_arrives_byte_exact() {
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    let texts = [
        "héllo wörld",
        "日本語のテキスト",
        "مرحبا بالعالم \u{202e}rtl\u{202c}",
        "👩‍👩‍👧‍👦🏳️‍🌈",
        "nul\u{0}ctl\u{1b}[0m",
        "\u{10ffff}\u{fffd}",
    ];
    for (i, t) in texts.iter().enumerate() {
        c.track_ai(
            AiEvent::new(*t, *t)
                .event_id(format!("u-{i}"))
                .input(*t)
                .output(*t)
                .property(*t, *t),
        )
        .unwrap();
    }
    assert!(c.flush(Duration::from_secs(5)));
    let items = cap.delivered("events/track");
    for (i, t) in texts.iter().enumerate() {
        let v = items
            .iter()
            .find(|v| v["event_id"] == format!("u-{i}"))
            .unwrap();
        assert_eq!(v["ai_data"]["input"], *t);
        assert_eq!(v["user_id"], *t);
        assert_eq!(v["properties"][*t], *t);
    }
}

#[test]
fn text_caps_count_characters_and_never_split_one() {
    let cap = Capture::start(vec![]);
    let c = Client::new(opts(cap.endpoint()).max_text_field_chars(40)).unwrap();
    let long = "é👍".repeat(100);
    c.track_ai(AiEvent::new("u", "e").input(long.clone()).output("short"))
        .unwrap();
    let it = c.begin(Begin::new("u", "run").input(long.clone())).unwrap();
    it.finish(long);
    assert!(c.flush(Duration::from_secs(5)));
    let e = &cap.delivered("events/track")[0]["ai_data"];
    let input = e["input"].as_str().unwrap();
    assert_eq!(input.chars().count(), 40);
    assert!(input.ends_with(TRUNCATION_MARKER));
    assert_eq!(e["output"], "short");
    let p = &cap.delivered("events/track_partial")[0]["ai_data"];
    assert_eq!(p["input"].as_str().unwrap().chars().count(), 40);
    assert_eq!(p["output"].as_str().unwrap().chars().count(), 40);
}

#[derive(serde::Serialize)]
struct Plan {
    plan: &'static str,
    seats: u32,
    tags: Vec<&'static str>,
}

#[test]
fn properties_and_traits_take_any_serializable_object() {
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    let plan = || Plan {
        plan: "pro",
        seats: 7,
        tags: vec!["beta"],
    };
    c.track(Event::new("u", "struct").event_id("s-1").properties(plan()))
        .unwrap();
    c.identify("u", plan()).unwrap();
    c.identify("v", json!({"plan": "free"})).unwrap();
    let i = c.begin(Begin::new("u", "run").event_id("s-2")).unwrap();
    i.set_properties(plan());
    i.set_properties(json!({"step": 2}));
    i.finish("done");
    // Not objects: refused naming the field, counted.
    assert_field(c.identify("u", "a string"), "traits");
    assert_field(c.identify("u", vec![1, 2]), "traits");
    assert_field(c.track(Event::new("u", "e").properties(42)), "properties");
    assert_field(
        c.track_signal(Signal::new("s-1", "thumbs_up").properties(true)),
        "properties",
    );
    i.set_properties("not an object");
    assert!(c.flush(Duration::from_secs(10)));
    assert_eq!(c.stats().dropped(DropReason::Invalid), 5);
    let ev = &cap.delivered("events/track")[0];
    assert_eq!(ev["properties"]["plan"], "pro");
    assert_eq!(ev["properties"]["tags"], json!(["beta"]));
    let users = cap.delivered("users/identify");
    assert_eq!(
        users[0]["traits"],
        json!({"plan": "pro", "seats": 7, "tags": ["beta"]})
    );
    assert_eq!(users[1]["traits"], json!({"plan": "free"}));
    let partial: Vec<Value> = cap.delivered("events/track_partial");
    assert!(partial.iter().any(|p| p["properties"]["seats"] == 7));
    assert!(partial.iter().any(|p| p["properties"]["step"] == 2));
}

/// A `Serialize` type nested deeper than the limit is refused before it is
/// turned into JSON (which would recurse once per level).
#[test]
fn a_deeply_recursive_struct_is_refused_without_overflow() {
    #[derive(serde::Serialize)]
    struct Node {
        next: Option<Box<Node>>,
    }
    let mut n = Node { next: None };
    for _ in 0..600 {
        n = Node {
            next: Some(Box::new(n)),
        };
    }
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    assert_field(c.identify("u", n), "traits");
}
