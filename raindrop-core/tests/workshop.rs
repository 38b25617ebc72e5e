//! The local Workshop mirror: two capture servers on 127.0.0.1, one as the
//! API and one as the Workshop.

use std::time::{Duration, Instant};

use raindrop_core::*;
use raindrop_test_support::{refusing_addr, Capture};

fn traffic(c: &Client) {
    let id = c
        .track_ai(AiEvent::new("u", "chat").input("q").output("a"))
        .unwrap();
    c.track_signal(Signal::new(&id, "thumbs_up")).unwrap();
    c.identify("u", Properties::new()).unwrap();
    c.begin(Begin::new("u", "run").input("q"))
        .unwrap()
        .finish("a");
}

#[test]
fn the_workshop_gets_every_request_the_api_gets_without_the_key() {
    let api = Capture::start(vec![]);
    let workshop = Capture::start(vec![]);
    let c = Client::new(
        ClientOptions::default()
            .write_key("rk_secret_key")
            .project_id("my-project")
            .endpoint(api.endpoint())
            .workshop(Workshop::At(workshop.endpoint())),
    )
    .unwrap();
    traffic(&c);
    assert!(c.flush(Duration::from_secs(5)));
    let report = c.shutdown(Duration::from_secs(5));
    let (a, w) = (api.requests(), workshop.requests());
    assert_eq!(a.len(), 4);
    assert_eq!(w.len(), a.len(), "every request mirrored");
    for r in &a {
        assert!(
            w.iter().any(|m| m.path == r.path && m.raw == r.raw),
            "{} not mirrored byte for byte",
            r.path
        );
    }
    for m in &w {
        assert!(
            m.headers.get("authorization").is_none(),
            "the key stays home"
        );
        assert_eq!(m.headers["x-raindrop-project-id"], "my-project");
    }
    assert!(a.iter().all(|r| r.headers.get("authorization").is_some()));
    assert_eq!(report.stats.workshop_sent, 4);
    assert_eq!(report.stats.workshop_failures, 0);
}

#[test]
fn a_dead_workshop_changes_nothing_for_the_api() {
    let api = Capture::start(vec![]);
    let dead = format!("http://{}/v1/", refusing_addr());
    let c = Client::new(
        ClientOptions::default()
            .write_key("rk")
            .endpoint(api.endpoint())
            .workshop(Workshop::At(dead)),
    )
    .unwrap();
    traffic(&c);
    assert!(c.flush(Duration::from_secs(5)));
    let report = c.shutdown(Duration::from_secs(5));
    assert_eq!(api.requests().len(), 4);
    assert_eq!(report.stats.delivered, 5);
    assert_eq!(report.stats.dropped_total(), 0);
    assert_eq!(report.stats.workshop_failures, 4);
}

#[test]
fn without_a_key_only_the_workshop_receives() {
    let workshop = Capture::start(vec![]);
    let c =
        Client::new(ClientOptions::default().workshop(Workshop::At(workshop.endpoint()))).unwrap();
    assert!(c.is_enabled());
    traffic(&c);
    assert!(c.flush(Duration::from_secs(5)));
    assert_eq!(workshop.requests().len(), 4);
    assert!(workshop
        .requests()
        .iter()
        .all(|r| r.headers.get("authorization").is_none()));
    assert_eq!(c.stats().delivered, 5);
}

#[test]
fn probing_never_slows_client_creation() {
    // Auto probes 127.0.0.1:5899 on the worker thread; `new` must not wait
    // for it. The fastest of five creations each way, so a loaded machine's
    // noise does not decide the result.
    let api = Capture::start(vec![]);
    let fastest = |workshop: Workshop| {
        (0..5)
            .map(|_| {
                let t = Instant::now();
                let c = Client::new(
                    ClientOptions::default()
                        .write_key("rk")
                        .endpoint(api.endpoint())
                        .workshop(workshop.clone()),
                )
                .unwrap();
                let took = t.elapsed();
                c.track_ai(AiEvent::new("u", "e").input("q")).unwrap();
                assert!(c.flush(Duration::from_secs(5)));
                c.shutdown(Duration::from_secs(1));
                took
            })
            .min()
            .unwrap()
    };
    let (auto, off) = (fastest(Workshop::Auto), fastest(Workshop::Off));
    println!("Client::new: {auto:?} with the probe, {off:?} without");
    assert!(
        auto < off + Duration::from_millis(20),
        "{auto:?} vs {off:?}"
    );
}

/// Options as a production service has them (a write key), with `Auto`
/// probing `probe` instead of 127.0.0.1:5899 and the build mode played.
fn production(api: &Capture, probe: std::net::SocketAddr, debug_build: bool) -> ClientOptions {
    let mut o = ClientOptions::default()
        .write_key("rk_live")
        .endpoint(api.endpoint())
        .workshop(Workshop::Auto);
    o.debug_build = debug_build;
    o.workshop_probe_addr = probe;
    o
}

#[test]
fn a_release_build_never_contacts_whatever_listens_on_the_workshop_port() {
    // A plain listener standing in for another tenant on the port: in a
    // release build it is not even probed, so it sees no connection at all.
    let api = Capture::start(vec![]);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let c = Client::new(production(&api, listener.local_addr().unwrap(), false)).unwrap();
    traffic(&c);
    assert!(c.flush(Duration::from_secs(5)));
    let report = c.shutdown(Duration::from_secs(5));
    assert_eq!(api.requests().len(), 4, "the API still gets everything");
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the listener was contacted: {other:?}"),
    }
    assert_eq!(report.stats.workshop_sent, 0);
    assert_eq!(report.stats.workshop_failures, 0);
}

#[test]
fn a_debug_build_finds_the_workshop_and_mirrors_as_before() {
    let api = Capture::start(vec![]);
    let workshop = Capture::start(vec![]);
    let c = Client::new(production(&api, workshop.addr, true)).unwrap();
    traffic(&c);
    assert!(c.flush(Duration::from_secs(5)));
    let report = c.shutdown(Duration::from_secs(5));
    assert_eq!(api.requests().len(), 4);
    assert_eq!(workshop.requests().len(), 4, "every request mirrored");
    assert!(workshop
        .requests()
        .iter()
        .all(|r| r.headers.get("authorization").is_none()));
    assert_eq!(report.stats.workshop_sent, 4);
}

#[test]
fn a_release_build_mirrors_when_the_workshop_is_named() {
    let api = Capture::start(vec![]);
    let workshop = Capture::start(vec![]);
    let c = Client::new(
        production(&api, workshop.addr, false).workshop(Workshop::At(workshop.endpoint())),
    )
    .unwrap();
    traffic(&c);
    assert!(c.flush(Duration::from_secs(5)));
    let report = c.shutdown(Duration::from_secs(5));
    assert_eq!(workshop.requests().len(), 4);
    assert_eq!(report.stats.workshop_sent, 4);
}

#[test]
fn mirror_requests_count_against_max_in_flight_and_never_hold_up_delivery() {
    // A Workshop that takes 400 ms per request, one request in flight
    // allowed: while one mirror request is under way, the next ones are
    // skipped (counted), and the API gets every request without waiting.
    let api = Capture::start(vec![]);
    let workshop = Capture::with_latency(vec![], Duration::from_millis(400), Duration::ZERO);
    let c = Client::new(
        ClientOptions::default()
            .write_key("rk")
            .endpoint(api.endpoint())
            .workshop(Workshop::At(workshop.endpoint()))
            .max_in_flight(1)
            .upload_size(1),
    )
    .unwrap();
    let t = Instant::now();
    for i in 0..5 {
        c.track(Event::new("u", format!("e{i}"))).unwrap();
        assert!(c.flush(Duration::from_secs(5)));
    }
    let took = t.elapsed();
    assert_eq!(api.requests().len(), 5);
    assert!(
        took < Duration::from_millis(1500),
        "delivery waited: {took:?}"
    );
    let settled = |c: &Client| {
        let s = c.stats();
        s.workshop_sent + s.workshop_failures + s.workshop_skipped == 5
    };
    let end = Instant::now() + Duration::from_secs(5);
    while !settled(&c) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    let s = c.stats();
    assert!(settled(&c), "{s:?}");
    assert!(s.workshop_skipped >= 1, "{s:?}");
    assert!(s.workshop_sent >= 1, "{s:?}");
    assert_eq!(workshop.requests().len() as u64, s.workshop_sent);
}

#[test]
fn workshop_settings_parse() {
    assert_eq!(Workshop::parse("off"), Workshop::Off);
    assert_eq!(
        Workshop::parse("1"),
        Workshop::At(Workshop::DEFAULT_URL.to_owned())
    );
    assert_eq!(
        Workshop::parse(" http://127.0.0.1:7000/v1/ "),
        Workshop::At("http://127.0.0.1:7000/v1/".to_owned())
    );
}
