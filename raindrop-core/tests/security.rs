//! Security (issue 6): the write key never appears in logs (debug logs on,
//! every failure path exercised), in `Debug` of the client or its options, in
//! errors, or in the local sink; TLS certificates are verified; plain http to
//! a non-loopback host warns.

use raindrop_test_support::logs;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use raindrop_core::*;
use raindrop_test_support::{refusing_addr, Answer, Capture, Raw, RawServer};

const KEY: &str = "rk_live_SECRET_7f3a9c1e5b";

fn assert_no_key(text: &str, what: &str) {
    assert!(!text.contains(KEY), "{what} leaks the write key:\n{text}");
    assert!(
        !text.contains("SECRET_7f3a"),
        "{what} leaks part of the write key"
    );
}

fn opts(endpoint: String) -> ClientOptions {
    ClientOptions::default()
        .write_key(KEY)
        .endpoint(endpoint)
        .debug_logs(true)
        .upload_interval(Duration::from_millis(30))
        .partial_idle_timeout(Duration::from_millis(50))
        .request_timeout(Duration::from_millis(300))
        .max_attempts(2)
}

fn exercise(c: &Client) {
    let _ = c.track_ai(AiEvent::new("u", "e").input("q").output("a"));
    let _ = c.track(Event::new("u", "plain"));
    let _ = c.identify("u", Properties::new());
    let _ = c.track_signal(Signal::new("e", "thumbs_up"));
    let _ = c.track_ai(AiEvent::new("", "e").input("q"));
    if let Ok(i) = c.begin(Begin::new("u", "run").input("q")) {
        i.finish("a");
    }
    c.flush(Duration::from_secs(5));
}

#[test]
fn the_write_key_never_appears_in_logs_even_with_debug_logs() {
    logs::install();
    // Every path that logs: success, 5xx retries, 429, permanent 4xx, hangs
    // (timeouts), refused connections, broken responses, oversize, shutdown.
    let cap = Capture::start(vec![(
        "*",
        vec![
            Answer::Status(500, None, KEY),
            Answer::Status(429, Some("0".into()), ""),
            Answer::Status(401, None, "bad key"),
            Answer::Hang,
            Answer::Status(400, None, ""),
        ],
    )]);
    let c = Client::new(opts(cap.endpoint()).project_id("Bad_Slug")).unwrap();
    exercise(&c);
    let _ = c.track(Event::new("u", "big").property("blob", "x".repeat(1_100_000)));
    c.shutdown(Duration::from_secs(2));

    let refused = Client::new(opts(format!("http://{}/v1/", refusing_addr()))).unwrap();
    exercise(&refused);
    refused.shutdown(Duration::from_millis(200));

    let raw = RawServer::start(vec![Raw::Truncate, Raw::Garbage, Raw::Drop, Raw::Drop]);
    let broken = Client::new(opts(raw.endpoint())).unwrap();
    exercise(&broken);
    broken.shutdown(Duration::from_millis(200));

    let hanging = Capture::start(vec![("*", vec![Answer::Hang; 16])]);
    let h = Client::new(opts(hanging.endpoint()).request_timeout(Duration::from_secs(30))).unwrap();
    exercise(&h);
    h.shutdown(Duration::from_millis(200));

    let text = logs::text();
    assert!(
        text.contains("raindrop"),
        "the capture works: {} bytes",
        text.len()
    );
    assert!(text.contains("DEBUG"), "debug request logs were on");
    assert_no_key(&text, "tracing output");
    // The requests themselves did carry it.
    assert_eq!(
        cap.requests()[0].headers["authorization"],
        format!("Bearer {KEY}")
    );
}

#[test]
fn a_key_unfit_for_a_header_is_not_logged_either() {
    logs::install();
    let odd = format!("{KEY}\n");
    let c = Client::new(
        ClientOptions::default()
            .write_key(odd.clone())
            .endpoint("http://127.0.0.1:9/v1/"),
    )
    .unwrap();
    c.shutdown(Duration::from_millis(100));
    assert_no_key(&logs::text(), "tracing output");
    assert!(logs::text().contains("not allowed in a header"));
}

#[test]
fn debug_and_display_never_show_the_key() {
    let cap = Capture::start(vec![]);
    let o = opts(cap.endpoint());
    let c = Client::new(o.clone()).unwrap();
    let i = c.begin(Begin::new("u", "run").input("q")).unwrap();
    let texts = [
        format!("{o:?}"),
        format!("{o:#?}"),
        format!("{c:?}"),
        format!("{c:#?}"),
        format!("{:?}", c.options()),
        format!("{i:?}"),
        format!("{:?}", c.stats()),
        format!("{:?}", WriteKey::new(KEY)),
        WriteKey::new(KEY).to_string(),
    ];
    for t in &texts {
        assert_no_key(t, "Debug/Display");
    }
    let report = c.shutdown(Duration::from_secs(2));
    assert_no_key(&format!("{report:?}"), "ShutdownReport");
    let errors = [
        c.track_ai(AiEvent::new("", "e").input("q")).unwrap_err(),
        Client::new(ClientOptions::default().write_key(KEY).endpoint("nope")).unwrap_err(),
        Error::NotInitialized,
        "x".parse::<Role>().unwrap_err(),
    ];
    for e in &errors {
        assert_no_key(&format!("{e} {e:?}"), "Error");
    }
}

#[test]
fn the_local_sink_never_writes_the_key() {
    let path = std::env::temp_dir().join(format!("raindrop-security-sink-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let c = Client::new(
        opts("https://api.raindrop.ai/v1/".into()).local_sink(LocalSink::File(path.clone())),
    )
    .unwrap();
    exercise(&c);
    c.shutdown(Duration::from_secs(2));
    let text = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(
        text.lines().count() >= 4,
        "the sink got the requests: {text}"
    );
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(
            v.as_object().unwrap().len(),
            2,
            "only path and body: {line}"
        );
    }
    assert_no_key(&text, "local sink");
}

#[test]
fn plain_http_to_a_non_loopback_host_warns_and_loopback_does_not() {
    logs::install();
    const WARNING: &str = "plain http to a non-loopback host";
    let count = || logs::text().matches(WARNING).count();
    // Clients are built and shut down without tracking: nothing is ever sent.
    let build = |endpoint: &str| {
        let c = Client::new(ClientOptions::default().write_key(KEY).endpoint(endpoint)).unwrap();
        c.shutdown(Duration::from_millis(100));
    };
    let before = count();
    for quiet in [
        "http://127.0.0.1:9/v1/",
        "http://127.8.9.10:9/v1/",
        "http://localhost:9/v1/",
        "http://[::1]:9/v1/",
        "https://telemetry.example/v1/",
    ] {
        build(quiet);
        assert_eq!(count(), before, "no warning for {quiet}");
    }
    build("http://telemetry.example/v1/");
    assert_eq!(count(), before + 1);
    build("http://10.1.2.3/v1/");
    assert_eq!(count(), before + 2);
    // A local sink sends nothing over the network: no warning.
    let path = std::env::temp_dir().join(format!("raindrop-security-http-{}", std::process::id()));
    let c = Client::new(
        ClientOptions::default()
            .write_key(KEY)
            .endpoint("http://telemetry.example/v1/")
            .local_sink(LocalSink::File(path.clone())),
    )
    .unwrap();
    c.shutdown(Duration::from_millis(100));
    let _ = std::fs::remove_file(path);
    assert_eq!(count(), before + 2);
    assert_no_key(&logs::text(), "tracing output");
}

/// A TLS server on 127.0.0.1 with a self-signed certificate (for `localhost`
/// and `127.0.0.1`, in tests/fixtures/tls). The SDK must refuse it: the
/// handshake fails, no request is ever decrypted, the event is counted.
#[test]
fn tls_certificates_are_verified() {
    let server = TlsServer::start("cert.der", "key.der");
    let (addr, handshakes, completed) = (server.addr, server.handshakes, server.completed);
    for host in [format!("localhost:{}", addr.port()), addr.to_string()] {
        let c = Client::new(
            ClientOptions::default()
                .write_key(KEY)
                .endpoint(format!("https://{host}/v1/"))
                .upload_interval(Duration::from_millis(30))
                .max_attempts(2),
        )
        .unwrap();
        c.track_ai(AiEvent::new("u", "e").input("q")).unwrap();
        assert!(c.flush(Duration::from_secs(10)));
        let s = c.stats();
        assert_eq!(
            (s.delivered, s.dropped(DropReason::RetriesExhausted)),
            (0, 1),
            "{host}: {s:?}"
        );
    }
    assert!(
        handshakes.load(Ordering::SeqCst) >= 2,
        "the client did reach the TLS server"
    );
    assert_eq!(
        completed.load(Ordering::SeqCst),
        0,
        "no handshake with an untrusted certificate completed"
    );
}

/// A TLS server on 127.0.0.1 for 20 s, with a certificate (and PKCS#8 key)
/// from tests/fixtures/tls, valid for `localhost` and `127.0.0.1`. It counts
/// connections, completed handshakes, and requests it decrypted (each one
/// is answered 200 and the connection closed).
struct TlsServer {
    addr: std::net::SocketAddr,
    handshakes: Arc<AtomicUsize>,
    completed: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

impl TlsServer {
    fn start(cert: &str, key: &str) -> TlsServer {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio_rustls::rustls::{self, pki_types};
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");
        let cert = pki_types::CertificateDer::from(std::fs::read(format!("{dir}/{cert}")).unwrap());
        let key =
            pki_types::PrivateKeyDer::Pkcs8(std::fs::read(format!("{dir}/{key}")).unwrap().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let counters: [Arc<AtomicUsize>; 3] = Default::default();
        let [handshakes, completed, requests] = counters.clone();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let serve = async {
                    loop {
                        let Ok((tcp, _)) = listener.accept().await else {
                            continue;
                        };
                        handshakes.fetch_add(1, Ordering::SeqCst);
                        let Ok(mut tls) = acceptor.accept(tcp).await else {
                            continue;
                        };
                        completed.fetch_add(1, Ordering::SeqCst);
                        // One request per connection: the head and the body it
                        // announces, then 200 and close.
                        let mut buf = Vec::new();
                        let mut chunk = [0u8; 4096];
                        let whole = loop {
                            let n = match tls.read(&mut chunk).await {
                                Ok(0) | Err(_) => break false,
                                Ok(n) => n,
                            };
                            buf.extend_from_slice(&chunk[..n]);
                            let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
                            if let Some(end) = text.find("\r\n\r\n") {
                                let len = text[..end]
                                    .lines()
                                    .find_map(|l| l.strip_prefix("content-length:"))
                                    .and_then(|v| v.trim().parse::<usize>().ok())
                                    .unwrap_or(0);
                                if buf.len() >= end + 4 + len {
                                    break true;
                                }
                            }
                        };
                        if whole {
                            requests.fetch_add(1, Ordering::SeqCst);
                            let _ = tls
                                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                                .await;
                            let _ = tls.shutdown().await;
                        }
                    }
                };
                let _ = tokio::time::timeout(Duration::from_secs(20), serve).await;
            });
        });
        let [handshakes, completed, requests] = counters;
        TlsServer {
            addr: addr_rx.recv_timeout(Duration::from_secs(5)).unwrap(),
            handshakes,
            completed,
            requests,
        }
    }
}

/// A CA the bundled roots do not hold (a TLS-inspecting proxy's, say) is
/// trusted once added, and only then.
#[test]
fn an_added_ca_certificate_is_trusted() {
    let server = TlsServer::start("leaf.der", "leaf-key.der");
    let (addr, requests) = (server.addr, server.requests);
    let ca = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tls/ca.pem"
    ))
    .unwrap();
    let client = |extra: Option<Vec<u8>>| {
        let mut o = ClientOptions::default()
            .write_key(KEY)
            .endpoint(format!("https://localhost:{}/v1/", addr.port()))
            .upload_interval(Duration::from_millis(20))
            .max_attempts(2);
        if let Some(pem) = extra {
            o = o.add_ca_certificate(pem);
        }
        Client::new(o).unwrap()
    };
    let without = client(None);
    without.track_ai(AiEvent::new("u", "e").input("q")).unwrap();
    assert!(without.flush(Duration::from_secs(10)));
    let s = without.stats();
    assert_eq!(
        (s.delivered, s.dropped(DropReason::RetriesExhausted)),
        (0, 1),
        "{s:?}"
    );
    assert_eq!(
        requests.load(Ordering::SeqCst),
        0,
        "no request was decrypted"
    );

    let with = client(Some(ca));
    with.track_ai(AiEvent::new("u", "e").input("q")).unwrap();
    assert!(with.flush(Duration::from_secs(10)));
    let s = with.stats();
    assert_eq!((s.delivered, s.dropped_total()), (1, 0), "{s:?}");
    assert_eq!(requests.load(Ordering::SeqCst), 1);
}

#[test]
fn bad_tls_settings_are_errors_naming_the_option() {
    let err =
        Client::new(ClientOptions::default().add_ca_certificate(b"not a certificate".to_vec()))
            .unwrap_err();
    assert!(err.to_string().contains("ca_certificates"), "{err}");
    if !cfg!(feature = "native-roots") {
        let err = Client::new(ClientOptions::default().tls_roots(TlsRoots::Native)).unwrap_err();
        assert!(err.to_string().contains("native-roots"), "{err}");
    }
}
