//! The load sender's HTTP/1.1 connections against a tiny server on
//! loopback written here, which answers each request the way a test asks
//! (streamed in pieces, then kept alive or closed, a non-2xx status, a
//! stream cut short, no answer at all) and counts the connections it was
//! given; and the API key against the crate's stub server.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sglang_server::stub::{Stub, StubOptions};
use sglang_server::{
    Client, ClientConfig, Clock, LoadOptions, LoadRequest, NoLiveness, Sent, send_load,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the tiny server does with each request.
#[derive(Clone, Copy, Debug)]
enum Answer {
    /// A whole streamed answer of `tokens` events with its length, the
    /// connection kept.
    Stream { tokens: u32 },
    /// The same, then the connection closed (no `Connection: close`
    /// header: the client learns it only from the socket).
    StreamThenClose { tokens: u32 },
    /// The first request of a connection answered and kept alive; the
    /// second read and not answered, the connection closed instead (a
    /// server that closed an idle connection as the request came).
    ClosedUnderTheSecond { tokens: u32 },
    /// A chunked stream: the first event, a pause, the rest and `[DONE]`,
    /// then the empty chunk that ends the body, as uvicorn sends it.
    ChunkedWithPause { pause: Duration },
    /// `503` with a two-line body.
    Unavailable,
    /// Half of a streamed answer's declared length, then the connection
    /// closed.
    CutShort,
    /// An event that is not JSON.
    NotJson,
    /// Nothing: the request is read and never answered.
    Silent,
}

/// A server on loopback giving `answer` to every request.
struct Tiny {
    url: String,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

impl Tiny {
    async fn start(answer: Answer) -> Tiny {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (conns, reqs) = (connections.clone(), requests.clone());
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                conns.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(socket, answer, reqs.clone()));
            }
        });
        Tiny {
            url,
            connections,
            requests,
        }
    }
}

/// Reads requests off one connection and answers each one.
async fn serve(mut socket: TcpStream, answer: Answer, requests: Arc<AtomicUsize>) {
    let mut buf: Vec<u8> = Vec::new();
    for on_this in 0.. {
        // The head, then as many body bytes as it announces.
        let head_end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let mut more = [0u8; 4096];
            match socket.read(&mut more).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&more[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + length {
            let mut more = [0u8; 4096];
            match socket.read(&mut more).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&more[..n]),
            }
        }
        buf.drain(..head_end + length);
        let number = requests.fetch_add(1, Ordering::SeqCst);
        let keep = match answer {
            Answer::Stream { tokens } => {
                let body = events(number, 1..=tokens, true);
                write(&mut socket, &streamed_head(Some(body.len())), &body).await;
                true
            }
            Answer::StreamThenClose { tokens } => {
                let body = events(number, 1..=tokens, true);
                write(&mut socket, &streamed_head(Some(body.len())), &body).await;
                false
            }
            Answer::ClosedUnderTheSecond { .. } if on_this > 0 => false,
            Answer::ClosedUnderTheSecond { tokens } => {
                let body = events(number, 1..=tokens, true);
                write(&mut socket, &streamed_head(Some(body.len())), &body).await;
                true
            }
            Answer::ChunkedWithPause { pause } => {
                let first = events(number, 1..=1, false);
                let rest = events(number, 2..=3, true);
                let mut out = streamed_head(None).into_bytes();
                out.extend_from_slice(&chunk(&first));
                let _ = socket.write_all(&out).await;
                tokio::time::sleep(pause).await;
                let mut out = chunk(&rest);
                out.extend_from_slice(b"0\r\n\r\n");
                let _ = socket.write_all(&out).await;
                true
            }
            Answer::Unavailable => {
                let body = b"server overloaded\nretry later\n";
                let head = format!(
                    "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n\
                     content-length: {}\r\n\r\n",
                    body.len()
                );
                write(&mut socket, &head, body).await;
                true
            }
            Answer::CutShort => {
                let body = events(number, 1..=4, true);
                let head = streamed_head(Some(body.len()));
                write(&mut socket, &head, &body[..body.len() / 2]).await;
                false
            }
            Answer::NotJson => {
                let body =
                    b"data: {\"text\": \"a\", \"meta_info\": {\"completion_tokens\": 1}}\n\n\
                             data: not json\n\ndata: [DONE]\n\n";
                write(&mut socket, &streamed_head(Some(body.len())), body).await;
                true
            }
            Answer::Silent => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                false
            }
        };
        if !keep {
            return;
        }
    }
}

async fn write(socket: &mut TcpStream, head: &str, body: &[u8]) {
    let mut out = head.as_bytes().to_vec();
    out.extend_from_slice(body);
    let _ = socket.write_all(&out).await;
}

fn streamed_head(length: Option<usize>) -> String {
    let framing = match length {
        Some(n) => format!("content-length: {n}"),
        None => "transfer-encoding: chunked".to_owned(),
    };
    format!("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n{framing}\r\n\r\n")
}

/// The events of tokens `done`, each with the request's id, and `[DONE]`
/// after the last one when `last`.
fn events(number: usize, done: std::ops::RangeInclusive<u32>, last: bool) -> Vec<u8> {
    let mut out = String::new();
    for n in done {
        let text = " t".repeat(n as usize);
        out.push_str(&format!(
            "data: {{\"text\": \"{text}\", \"meta_info\": {{\"id\": \"r{number}\", \
             \"prompt_tokens\": 3, \"completion_tokens\": {n}, \"cached_tokens\": 0, \
             \"e2e_latency\": 0.5}}}}\n\n"
        ));
    }
    if last {
        out.push_str("data: [DONE]\n\n");
    }
    out.into_bytes()
}

/// `bytes` as one chunk of a chunked body.
fn chunk(bytes: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", bytes.len()).into_bytes();
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
    out
}

fn client(url: &str, api_key: Option<&str>, timeout: Duration) -> Client {
    Client::new(ClientConfig {
        base_url: url.to_owned(),
        api_key: api_key.map(str::to_owned),
        request_timeout: timeout,
        server_log: None,
    })
    .unwrap()
}

/// `n` streamed `/generate` requests, `gap` apart.
fn requests(n: usize, gap: Duration) -> Vec<LoadRequest> {
    (0..n)
        .map(|i| LoadRequest {
            path: "/generate",
            body: format!(
                r#"{{"text": "p{i}", "sampling_params": {{"max_new_tokens": 4}}, "stream": true}}"#
            )
            .into(),
            stream: true,
            due: gap * i as u32,
        })
        .collect()
}

async fn load(client: &Client, requests: Vec<LoadRequest>, cap: Option<usize>) -> Vec<Sent> {
    send_load(
        client,
        &Clock::new(),
        Arc::new(requests),
        LoadOptions {
            max_concurrency: cap,
        },
        &NoLiveness,
        "load",
        &|_, _| {},
    )
    .await
    .unwrap()
}

/// Every answer read in full, with a chunk time per token.
fn assert_all_answered(sent: &[Sent], tokens: u32) {
    for s in sent {
        assert_eq!(s.error, None, "{s:?}");
        assert_eq!(s.chunks.len(), tokens as usize, "{s:?}");
        assert_eq!(s.meta.completion_tokens, Some(tokens), "{s:?}");
        assert!(s.first_token.is_some() && s.end >= s.start, "{s:?}");
    }
}

#[tokio::test]
async fn each_slot_keeps_its_connection() {
    let tiny = Tiny::start(Answer::Stream { tokens: 4 }).await;
    let client = client(&tiny.url, None, Duration::from_secs(10));
    let sent = load(&client, requests(40, Duration::ZERO), Some(2)).await;
    assert_all_answered(&sent, 4);
    assert!(sent.iter().all(|s| s.slot < 2));
    // The last event's `meta_info`, every field of it.
    for s in &sent {
        let meta = &s.meta;
        assert!(
            meta.id.as_deref().is_some_and(|id| id.starts_with('r')),
            "{s:?}"
        );
        assert_eq!(
            (meta.prompt_tokens, meta.cached_tokens, meta.e2e_latency),
            (Some(3), Some(0), Some(0.5))
        );
    }
    // Each answer's id is the request's number on the server: every
    // request was sent once.
    assert_eq!(tiny.requests.load(Ordering::SeqCst), 40);
    assert_eq!(tiny.connections.load(Ordering::SeqCst), 2);
}

/// Requests apart under a cap take the lowest free slot, so a paced load
/// fills few tracks; the slot's connection is kept whichever track it is.
#[tokio::test]
async fn paced_requests_take_the_lowest_free_slot() {
    let tiny = Tiny::start(Answer::Stream { tokens: 2 }).await;
    let client = client(&tiny.url, None, Duration::from_secs(10));
    let sent = load(&client, requests(10, Duration::from_millis(15)), Some(8)).await;
    assert_all_answered(&sent, 2);
    let slots: Vec<u32> = sent.iter().map(|s| s.slot).collect();
    assert_eq!(slots, vec![0; 10]);
    // Due times are kept: each request starts at or after its own.
    for (i, s) in sent.iter().enumerate() {
        assert!(s.start >= s.due && s.due >= sent[0].due + Duration::from_millis(15) * i as u32);
    }
}

/// A server that closes each connection after its answer: the next
/// request of the slot goes on a new connection, whether the close was
/// seen before it (requests apart) or not (back to back).
#[tokio::test]
async fn a_connection_closed_between_requests_is_opened_again() {
    for gap in [Duration::from_millis(20), Duration::ZERO] {
        let tiny = Tiny::start(Answer::StreamThenClose { tokens: 3 }).await;
        let client = client(&tiny.url, None, Duration::from_secs(10));
        let sent = load(&client, requests(12, gap), Some(1)).await;
        assert_all_answered(&sent, 3);
        assert_eq!(tiny.requests.load(Ordering::SeqCst), 12, "{gap:?}");
        assert_eq!(tiny.connections.load(Ordering::SeqCst), 12, "{gap:?}");
    }
}

/// A server that closes a kept-alive connection as the next request comes:
/// the request is sent again, once, on a new connection.
#[tokio::test]
async fn a_request_the_server_closed_under_is_sent_again() {
    let tiny = Tiny::start(Answer::ClosedUnderTheSecond { tokens: 2 }).await;
    let client = client(&tiny.url, None, Duration::from_secs(10));
    let sent = load(&client, requests(10, Duration::from_millis(5)), Some(1)).await;
    assert_all_answered(&sent, 2);
    // Each connection took two requests and answered the first: every
    // request after the first was sent twice.
    assert_eq!(tiny.connections.load(Ordering::SeqCst), 10);
    assert_eq!(tiny.requests.load(Ordering::SeqCst), 19);
}

/// A chunked stream in two pieces: the first token's time is that of the
/// first piece, the others come after the pause, and the connection
/// carries the next request once the body's end is read.
#[tokio::test]
async fn chunk_times_are_when_each_piece_arrived() {
    let pause = Duration::from_millis(60);
    let tiny = Tiny::start(Answer::ChunkedWithPause { pause }).await;
    let client = client(&tiny.url, None, Duration::from_secs(10));
    let sent = load(&client, requests(3, Duration::ZERO), Some(1)).await;
    assert_all_answered(&sent, 3);
    for s in &sent {
        let [first, second, third] = [s.chunks[0], s.chunks[1], s.chunks[2]];
        assert_eq!([first[1], second[1], third[1]], [1, 2, 3]);
        // Microseconds since the start: the pause lies between the first
        // token and the two that arrived together.
        assert!(second[0] - first[0] >= 50_000, "{s:?}");
        assert_eq!(second[0], third[0], "{s:?}");
        assert!(
            s.end - s.start >= Duration::from_micros(u64::from(third[0])),
            "{s:?}"
        );
        assert!(s.first_token.unwrap() - s.start < Duration::from_micros(u64::from(second[0])));
    }
    assert_eq!(tiny.connections.load(Ordering::SeqCst), 1);
}

/// Each failure is one line on its request, and the load goes on.
#[tokio::test]
async fn failures_are_one_line_each() {
    let cases = [
        (
            Answer::Unavailable,
            "/generate answered HTTP 503: server overloaded retry later",
        ),
        (Answer::CutShort, "POST /generate failed mid-stream: "),
        (Answer::NotJson, "POST /generate stream event is not JSON: "),
        (Answer::Silent, "/generate timed out after 0.3 s"),
    ];
    for (answer, expect) in cases {
        let tiny = Tiny::start(answer).await;
        let client = client(&tiny.url, None, Duration::from_millis(300));
        let sent = load(&client, requests(3, Duration::ZERO), Some(1)).await;
        for s in &sent {
            let error = s.error.as_deref().unwrap_or_default();
            assert!(error.contains(expect), "{answer:?}: {s:?}");
            assert!(!error.contains('\n'), "{answer:?}: {error}");
            assert!(s.end >= s.start, "{s:?}");
        }
        assert_eq!(tiny.requests.load(Ordering::SeqCst), 3, "{answer:?}");
        if matches!(answer, Answer::Unavailable) {
            // A refusal read to its end leaves the connection usable.
            assert_eq!(tiny.connections.load(Ordering::SeqCst), 1);
            assert!(
                sent[0]
                    .error
                    .as_deref()
                    .unwrap()
                    .starts_with(&format!("POST {}/generate answered HTTP 503", tiny.url))
            );
        }
    }
    // The text read before the stream broke stays on the request.
    let tiny = Tiny::start(Answer::NotJson).await;
    let client = client(&tiny.url, None, Duration::from_secs(10));
    let sent = load(&client, requests(1, Duration::ZERO), None).await;
    assert_eq!(sent[0].chunks.len(), 1, "{:?}", sent[0]);
    assert!(sent[0].first_token.is_some());
    assert_eq!(sent[0].meta.completion_tokens, Some(1));
}

#[tokio::test]
async fn a_refused_connection_is_one_line() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let client = client(&url, None, Duration::from_secs(10));
    let sent = load(&client, requests(2, Duration::ZERO), Some(2)).await;
    for s in &sent {
        let error = s.error.as_deref().unwrap_or_default();
        assert!(
            error.starts_with(&format!("POST {url}/generate failed: cannot connect: ")),
            "{s:?}"
        );
        assert!(!error.contains('\n'), "{error}");
    }
}

/// The stub refuses a request without the key with a 401; with it, every
/// request of the load is answered.
#[tokio::test]
async fn the_api_key_goes_with_each_request() {
    let args: Vec<String> = [
        "--model-path",
        "/models/m",
        "--port",
        "0",
        "--api-key",
        "sk-load",
    ]
    .map(str::to_owned)
    .to_vec();
    let stub = Stub::start(
        StubOptions {
            args,
            traces: std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../fixtures/jax-cpu-small"),
            version: "0.0.1".to_owned(),
            token_time: Duration::ZERO,
        },
        Box::new(std::io::sink()),
    )
    .await
    .unwrap();
    let keyed = client(&stub.url(), Some("sk-load"), Duration::from_secs(10));
    let sent = load(&keyed, requests(8, Duration::ZERO), Some(3)).await;
    assert_all_answered(&sent, 4);
    let unkeyed = client(&stub.url(), None, Duration::from_secs(10));
    let sent = load(&unkeyed, requests(2, Duration::ZERO), Some(1)).await;
    for s in &sent {
        let error = s.error.as_deref().unwrap_or_default();
        assert!(error.contains("/generate answered HTTP 401"), "{s:?}");
    }
}
