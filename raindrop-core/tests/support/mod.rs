//! A capture server on 127.0.0.1 for tests: records every request and answers
//! from a per-path fault plan. Shared by the core and facade test suites.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// How the server answers one request.
#[derive(Debug, Clone)]
pub enum Answer {
    /// A status with an optional `Retry-After` and body.
    Status(u16, Option<String>, &'static str),
    /// Waits, then answers 204.
    Delay(Duration),
    /// Never answers (holds the connection for up to 30 s).
    Hang,
}

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub at: Instant,
    pub path: String,
    pub headers: HeaderMap,
    pub raw: Bytes,
    pub body: Value,
    pub status: u16,
}

#[derive(Default)]
struct Inner {
    requests: Vec<Recorded>,
    plan: Vec<(String, VecDeque<Answer>)>,
}

/// The running server. Dropping it stops it.
#[derive(Clone)]
pub struct Capture {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    _stop: Arc<tokio::sync::oneshot::Sender<()>>,
}

impl Capture {
    /// Starts a server on an ephemeral loopback port, on its own thread and runtime.
    pub fn start(plan: Vec<(&str, Vec<Answer>)>) -> Capture {
        let inner = Arc::new(Mutex::new(Inner {
            requests: Vec::new(),
            plan: plan
                .into_iter()
                .map(|(p, a)| (p.to_string(), a.into_iter().collect()))
                .collect(),
        }));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let state = inner.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let app = axum::Router::new().fallback(handle).with_state(state);
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stop_rx.await;
                    })
                    .await;
            });
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        Capture { addr, inner, _stop: Arc::new(stop_tx) }
    }

    /// The base URL to give the SDK as endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://{}/v1/", self.addr)
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// Requests whose path ends with `/route`.
    pub fn to(&self, route: &str) -> Vec<Recorded> {
        let suffix = format!("/{route}");
        self.requests().into_iter().filter(|r| r.path.ends_with(&suffix)).collect()
    }

    /// Items in 2xx-answered requests to `route` (array bodies are flattened).
    pub fn delivered(&self, route: &str) -> Vec<Value> {
        self.to(route)
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .flat_map(|r| match r.body {
                Value::Array(a) => a,
                other => vec![other],
            })
            .collect()
    }

    /// Waits until `pred` holds (polling), up to `timeout`.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&Capture) -> bool) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if pred(self) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        pred(self)
    }
}

async fn handle(State(state): State<Arc<Mutex<Inner>>>, uri: Uri, headers: HeaderMap, raw: Bytes) -> Response {
    let path = uri.path().to_string();
    let answer = {
        let mut s = state.lock().unwrap();
        let a = s
            .plan
            .iter_mut()
            .find(|(p, q)| (p == "*" || path.ends_with(&format!("/{p}"))) && !q.is_empty())
            .and_then(|(_, q)| q.pop_front());
        a.unwrap_or(Answer::Status(204, None, ""))
    };
    let status = match &answer {
        Answer::Status(s, _, _) => *s,
        Answer::Delay(_) => 204,
        Answer::Hang => 0,
    };
    let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    state.lock().unwrap().requests.push(Recorded {
        at: Instant::now(),
        path,
        headers,
        raw: raw.clone(),
        body,
        status,
    });
    match answer {
        Answer::Status(s, ra, body) => {
            let mut resp = (StatusCode::from_u16(s).unwrap(), body.to_string()).into_response();
            if let Some(ra) = ra {
                resp.headers_mut().insert("retry-after", ra.parse().unwrap());
            }
            resp
        }
        Answer::Delay(d) => {
            tokio::time::sleep(d).await;
            StatusCode::NO_CONTENT.into_response()
        }
        Answer::Hang => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            StatusCode::NO_CONTENT.into_response()
        }
    }
}
