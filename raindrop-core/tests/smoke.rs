//! End-to-end basics against a real loopback HTTP server.

use std::time::Duration;

use raindrop_core::*;
use raindrop_test_support::{Answer, Capture};
use serde_json::json;

fn client(cap: &Capture) -> Client {
    Client::new(
        ClientOptions::default()
            .write_key("rk_test_secret")
            .endpoint(cap.endpoint())
            .project_id("support-agent"),
    )
    .unwrap()
}

#[test]
fn track_ai_ships_a_batched_array_with_headers() {
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    for i in 0..25 {
        c.track_ai(
            AiEvent::new("u-1", "chat")
                .event_id(format!("e-{i}"))
                .input("hi")
                .output("hello"),
        )
        .unwrap();
    }
    assert!(c.flush(Duration::from_secs(5)));
    let reqs = cap.to("events/track");
    assert!(reqs.len() >= 3);
    for r in &reqs {
        assert!(r.body.as_array().unwrap().len() <= 10);
        assert_eq!(r.headers["authorization"], "Bearer rk_test_secret");
        assert_eq!(r.headers["x-raindrop-project-id"], "support-agent");
        assert_eq!(r.headers["content-type"], "application/json");
    }
    let items = cap.delivered("events/track");
    assert_eq!(items.len(), 25);
    assert_eq!(
        items[0]["ai_data"],
        json!({"input": "hi", "output": "hello"})
    );
    assert_eq!(
        items[0]["properties"]["$context"]["library"]["name"],
        "raindrop-sdk-rust"
    );
    assert!(items[0]["attachments"].is_null());
    assert_eq!(c.stats().delivered, 25);
}

#[test]
fn interaction_merges_into_one_final_partial() {
    let cap = Capture::start(vec![]);
    let c = client(&cap);
    let i = c
        .begin(
            Begin::new("u-1", "agent_run")
                .event_id("i-1")
                .input("q")
                .convo_id("c-9")
                .property("stage", "start"),
        )
        .unwrap();
    i.set_property("stage", "tools");
    i.set_properties(json!({"nested": {"x": 1}}));
    i.set_properties(json!({"nested": {"y": 2}}));
    i.add_attachments([Attachment::code("SELECT 1", "sql").role(Role::Input)]);
    i.finish("answer!");
    assert!(c.flush(Duration::from_secs(5)));
    let bodies = cap.delivered("events/track_partial");
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_eq!(
        bodies[0],
        json!({"event_id": "i-1", "user_id": "u-1", "event": "agent_run",
               "ai_data": {"input": "q", "output": "answer!", "convo_id": "c-9"},
               "properties": {"stage": "tools", "nested": {"x": 1, "y": 2}},
               "attachments": [{"type": "code", "value": "SELECT 1", "role": "input", "language": "sql"}],
               "is_pending": false})
    );
    assert_eq!(c.stats().delivered, 6);
}

#[test]
fn retries_500_with_identical_body() {
    let cap = Capture::start(vec![(
        "events/track",
        vec![Answer::Status(500, None, ""), Answer::Status(503, None, "")],
    )]);
    let c = client(&cap);
    c.track_ai(AiEvent::new("u", "e").input("x")).unwrap();
    assert!(c.flush(Duration::from_secs(10)));
    let reqs = cap.to("events/track");
    assert_eq!(reqs.len(), 3);
    assert!(reqs.windows(2).all(|w| w[0].raw == w[1].raw));
    let s = c.stats();
    assert_eq!((s.delivered, s.retries), (1, 2));
}

#[test]
fn shutdown_holds_deadline_against_hanging_server() {
    let cap = Capture::start(vec![("*", vec![Answer::Hang, Answer::Hang, Answer::Hang])]);
    let c = Client::new(
        ClientOptions::default()
            .write_key("rk_smoke")
            .endpoint(cap.endpoint())
            .request_timeout(Duration::from_secs(30)),
    )
    .unwrap();
    c.track_ai(AiEvent::new("u", "e").input("x")).unwrap();
    // Waiting for the 30 s request timeout would be the wrong path.
    let t = std::time::Instant::now();
    let report = c.shutdown(Duration::from_secs(1));
    // The deadline plus a margin for a loaded machine; never the request timeout.
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert!(!report.completed);
    assert_eq!(report.stats.dropped(DropReason::ShutdownTimeout), 1);
    assert!(
        c.track_ai(AiEvent::new("u", "e").input("x")).is_ok(),
        "refused for shutdown: counted, not an error"
    );
    assert_eq!(c.stats().dropped(DropReason::AfterShutdown), 1);
    assert_eq!(
        c.shutdown(Duration::from_secs(1)),
        report,
        "second shutdown is a no-op"
    );
}
