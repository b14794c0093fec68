//! The open-loop sender: requests sent when they are due, at most
//! `max_concurrency` in flight, each answer read as it streams with a
//! timestamp per chunk.
//!
//! A dispatcher task waits for each request's due time, then for a free
//! concurrency slot (first come, first served), and spawns the request; the
//! caller's task collects the outcomes and polls the server's [`Liveness`]
//! every 200 ms, so a server that dies ends the load at once. A request
//! that fails, mid-stream or not, is recorded with its error and the load
//! goes on. Nothing here draws progress: the caller gets a callback.
//!
//! Times are [`Duration`]s since the [`Clock`]'s base, one monotonic clock
//! that the caller shares between phases (and with the profiler window),
//! and that [`Clock::epoch_ns`] turns into wall-clock nanoseconds.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use hyper::body::Body;
use serde::Deserialize;

use crate::client::{Client, error_chain};
use crate::error::{Error, snippet};
use crate::h1;
use crate::supervisor::Liveness;

/// A monotonic clock anchored once to the wall clock.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    base: Instant,
    base_epoch_ns: u64,
}

impl Clock {
    pub fn new() -> Clock {
        let base = Instant::now();
        let base_epoch_ns = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Clock {
            base,
            base_epoch_ns,
        }
    }

    /// Time since the base.
    pub fn now(&self) -> Duration {
        self.base.elapsed()
    }

    /// A time since the base as nanoseconds since the Unix epoch.
    pub fn epoch_ns(&self, since_base: Duration) -> u64 {
        self.base_epoch_ns + since_base.as_nanos() as u64
    }

    fn instant(&self, since_base: Duration) -> Instant {
        self.base + since_base
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::new()
    }
}

/// One request of a load.
#[derive(Clone, Debug)]
pub struct LoadRequest {
    /// `/generate` or `/v1/score`.
    pub path: &'static str,
    /// The JSON body, sent as is.
    pub body: Bytes,
    /// Read the answer as server-sent events.
    pub stream: bool,
    /// When it is due, from the start of the load.
    pub due: Duration,
}

/// The requests of a load, each made when the sender needs it: a source
/// may hold every body ([`Vec<LoadRequest>`]) or render each one from
/// what it is made of, so that a load of many requests does not hold
/// every body for the whole run.
pub trait Requests: Send + Sync {
    /// How many requests there are.
    fn len(&self) -> usize;

    /// Whether there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The endpoint of request `idx`.
    fn path(&self, idx: usize) -> &'static str;

    /// When request `idx` is due, from the start of the load.
    fn due(&self, idx: usize) -> Duration;

    /// Request `idx`, body included.
    fn request(&self, idx: usize) -> LoadRequest;
}

impl Requests for Vec<LoadRequest> {
    fn len(&self) -> usize {
        self.as_slice().len()
    }

    fn path(&self, idx: usize) -> &'static str {
        self[idx].path
    }

    fn due(&self, idx: usize) -> Duration {
        self[idx].due
    }

    fn request(&self, idx: usize) -> LoadRequest {
        self[idx].clone()
    }
}

/// What the server said about a request in `meta_info`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct AnswerMeta {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub prompt_tokens: Option<u32>,
    #[serde(default)]
    pub completion_tokens: Option<u32>,
    #[serde(default)]
    pub cached_tokens: Option<u32>,
    /// Seconds, measured by the server.
    #[serde(default)]
    pub e2e_latency: Option<f64>,
}

/// One request as it went. Times are since the clock's base.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sent {
    pub slot: u32,
    pub due: Duration,
    pub start: Duration,
    /// The first chunk with generated text (streamed answers only).
    pub first_token: Option<Duration>,
    pub end: Duration,
    /// For each chunk that added tokens (the first one included):
    /// microseconds since `start` and `completion_tokens` after it.
    pub chunks: Vec<[u32; 2]>,
    /// The last `meta_info` seen.
    pub meta: AnswerMeta,
    /// One line; `None` when the request succeeded.
    pub error: Option<String>,
}

/// How to send a load.
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    /// Requests in flight at most; `None` for no cap.
    pub max_concurrency: Option<usize>,
}

/// Sends `requests` against the server behind `client`, each body made
/// when the request is dispatched; the due times count from "now" on
/// `clock`. `progress(done, total)` is called after each answer. Returns
/// every request's outcome, in request order, or the liveness error of a
/// server that died. [`send_load_each`] does the same without holding the
/// outcomes.
pub async fn send_load(
    client: &Client,
    clock: &Clock,
    requests: Arc<dyn Requests>,
    options: LoadOptions,
    liveness: &dyn Liveness,
    what: &str,
    progress: &(dyn Fn(usize, usize) + Send + Sync),
) -> Result<Vec<Sent>, Error> {
    let mut res = Vec::with_capacity(requests.len());
    let mut keep = |_: usize, sent: Sent| res.push(sent);
    send_load_each(
        client, clock, requests, options, liveness, what, progress, &mut keep,
    )
    .await?;
    Ok(res)
}

/// [`send_load`], handing each outcome to `each(idx, sent)` in request
/// order as soon as it and every request before it are answered, so that
/// a load of many requests holds only the outcomes that wait for an
/// earlier one. After an error, `each` has seen a prefix of the requests.
#[allow(clippy::too_many_arguments)]
pub async fn send_load_each(
    client: &Client,
    clock: &Clock,
    requests: Arc<dyn Requests>,
    options: LoadOptions,
    liveness: &dyn Liveness,
    what: &str,
    progress: &(dyn Fn(usize, usize) + Send + Sync),
    each: &mut (dyn FnMut(usize, Sent) + Send),
) -> Result<(), Error> {
    let n = requests.len();
    let mut routes: Vec<Route> = Vec::new();
    let mut target: Option<Option<h1::Target>> = None;
    for idx in 0..n {
        let path = requests.path(idx);
        if routes.iter().any(|known| known.path == path) {
            continue;
        }
        let url = client.endpoint(path)?;
        // Every path is on the one server: its target is made once.
        let target = match &mut target {
            Some(target) => target,
            None => target.insert(
                h1::Target::new(&url, client.config().api_key.as_deref())
                    .map_err(Error::Invalid)?,
            ),
        };
        let direct = match target {
            Some(target) => Some(target.endpoint(&url).map_err(Error::Invalid)?),
            None => None,
        };
        routes.push(Route { path, url, direct });
    }
    let sender = Arc::new(Sender {
        client: client.clone(),
        target: target.flatten(),
        routes,
        timeout: client.config().request_timeout,
    });
    let start = clock.now();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Sent)>();
    let dispatcher = tokio::spawn(dispatch(sender, *clock, start, requests, options, tx));
    // Abort the dispatcher (and with it every request in flight) on every
    // way out of this function.
    struct AbortOnDrop(tokio::task::AbortHandle);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let _guard = AbortOnDrop(dispatcher.abort_handle());
    // Outcomes answered before an earlier request, by index.
    let mut early: std::collections::BTreeMap<usize, Sent> = std::collections::BTreeMap::new();
    let mut next = 0;
    let mut done = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while done < n {
        tokio::select! {
            received = rx.recv() => {
                let Some((idx, sent)) = received else { break };
                done += 1;
                progress(done, n);
                if idx != next {
                    early.insert(idx, sent);
                    continue;
                }
                each(idx, sent);
                next += 1;
                while let Some(sent) = early.remove(&next) {
                    each(next, sent);
                    next += 1;
                }
            }
            _ = tick.tick() => {
                liveness.check(&format!("during {what}"))?;
            }
        }
    }
    // Requests the dispatcher never answered for.
    for idx in next..n {
        let sent = early.remove(&idx).unwrap_or_else(|| Sent {
            error: Some("not sent".to_owned()),
            ..Sent::default()
        });
        each(idx, sent);
    }
    Ok(())
}

/// How a load's requests reach the server: straight over HTTP/1.1 with a
/// connection per slot ([`h1`]) for an `http://` server, through the
/// [`Client`] otherwise.
struct Sender {
    client: Client,
    target: Option<h1::Target>,
    routes: Vec<Route>,
    /// For one request, its answer read to the end included.
    timeout: Duration,
}

/// One endpoint of the load, its URL parsed once.
struct Route {
    path: &'static str,
    url: reqwest::Url,
    /// The same for [`h1`], when the server is reached that way.
    direct: Option<h1::Endpoint>,
}

impl Sender {
    fn route(&self, path: &str) -> &Route {
        self.routes
            .iter()
            .find(|route| route.path == path)
            .expect("send_load made a route for every path")
    }
}

/// The lowest free slot numbers, handed out and taken back.
#[derive(Default)]
struct Slots {
    free: BinaryHeap<Reverse<u32>>,
    next: u32,
}

impl Slots {
    fn take(&mut self) -> u32 {
        match self.free.pop() {
            Some(Reverse(slot)) => slot,
            None => {
                self.next += 1;
                self.next - 1
            }
        }
    }

    fn give_back(&mut self, slot: u32) {
        self.free.push(Reverse(slot));
    }
}

/// The slots and the connection each keeps between its requests.
#[derive(Default)]
struct Pool {
    slots: Slots,
    conns: Vec<h1::Conn>,
}

impl Pool {
    fn take(&mut self) -> (u32, h1::Conn) {
        let slot = self.slots.take();
        let conn = self
            .conns
            .get_mut(slot as usize)
            .map(std::mem::take)
            .unwrap_or_default();
        (slot, conn)
    }

    fn give_back(&mut self, slot: u32, conn: h1::Conn) {
        let at = slot as usize;
        if self.conns.len() <= at {
            self.conns.resize_with(at + 1, h1::Conn::default);
        }
        self.conns[at] = conn;
        self.slots.give_back(slot);
    }
}

async fn dispatch(
    sender: Arc<Sender>,
    clock: Clock,
    start: Duration,
    requests: Arc<dyn Requests>,
    options: LoadOptions,
    tx: tokio::sync::mpsc::UnboundedSender<(usize, Sent)>,
) {
    let semaphore = options
        .max_concurrency
        .map(|cap| Arc::new(tokio::sync::Semaphore::new(cap.max(1))));
    let pool = Arc::new(Mutex::new(Pool::default()));
    let mut tasks = tokio::task::JoinSet::new();
    for idx in 0..requests.len() {
        let due = start + requests.due(idx);
        tokio::time::sleep_until(clock.instant(due).into()).await;
        let permit = match &semaphore {
            Some(semaphore) => match semaphore.clone().acquire_owned().await {
                Ok(permit) => Some(permit),
                Err(_) => return,
            },
            None => None,
        };
        // The body is made now, and dropped once it is sent.
        let request = requests.request(idx);
        let (sender, pool, tx) = (sender.clone(), pool.clone(), tx.clone());
        tasks.spawn(async move {
            let (slot, mut conn) = pool
                .lock()
                .map_or((0, h1::Conn::default()), |mut it| it.take());
            let mut sent = Sent {
                slot,
                due,
                ..Sent::default()
            };
            send_one(&sender, &mut conn, &clock, request, &mut sent).await;
            if let Ok(mut it) = pool.lock() {
                it.give_back(slot, conn);
            }
            drop(permit);
            let _ = tx.send((idx, sent));
        });
        // Reap finished tasks as we go, so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

/// One `data:` event of a streamed `/generate` answer, or a whole
/// non-streamed answer, read for its `meta_info`.
#[derive(Deserialize)]
struct Event<'a> {
    #[serde(borrow, default)]
    meta_info: Option<EventMeta<'a>>,
}

/// An event's `meta_info`, its id borrowed: a stream repeats it in every
/// chunk, and only the last one is kept.
#[derive(Deserialize)]
struct EventMeta<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(default)]
    prompt_tokens: Option<u32>,
    #[serde(default)]
    completion_tokens: Option<u32>,
    #[serde(default)]
    cached_tokens: Option<u32>,
    #[serde(default)]
    e2e_latency: Option<f64>,
}

impl EventMeta<'_> {
    /// Updates `meta` to this event's, reusing its id's allocation.
    fn store(self, meta: &mut AnswerMeta) {
        match (&mut meta.id, self.id) {
            (Some(kept), Some(id)) if *kept == id => {}
            (kept, id) => *kept = id.map(Cow::into_owned),
        }
        meta.prompt_tokens = self.prompt_tokens;
        meta.completion_tokens = self.completion_tokens;
        meta.cached_tokens = self.cached_tokens;
        meta.e2e_latency = self.e2e_latency;
    }
}

/// The first line of an error's message.
fn one_line(err: &dyn std::fmt::Display) -> String {
    let text = err.to_string();
    text.lines().next().unwrap_or_default().to_owned()
}

/// Sends `request` and reads its answer into `sent`, within the request
/// timeout; what was read before an error or the timeout stays in `sent`.
async fn send_one(
    sender: &Sender,
    conn: &mut h1::Conn,
    clock: &Clock,
    request: LoadRequest,
    sent: &mut Sent,
) {
    sent.start = clock.now();
    let route = sender.route(request.path);
    let ended = tokio::time::timeout(sender.timeout, async {
        match (&sender.target, &route.direct) {
            (Some(target), Some(endpoint)) => {
                let response = target.post(conn, endpoint, &request.body).await;
                let arrivals = conn.arrivals();
                // The body is not needed once the request is written.
                let stream = request.stream;
                drop(request);
                let response = response.map_err(|detail| Error::Transport {
                    method: "POST",
                    url: endpoint.url.clone(),
                    detail,
                    log_tail: None,
                });
                let at = Arrival {
                    clock,
                    stamps: Some(&arrivals),
                };
                read_answer(response, &route.url, stream, route.path, &at, sent).await
            }
            _ => {
                let response = sender
                    .client
                    .post_bytes(&route.url, request.body.clone())
                    .await
                    .map(hyper::Response::<reqwest::Body>::from);
                let stream = request.stream;
                drop(request);
                let at = Arrival {
                    clock,
                    stamps: None,
                };
                read_answer(response, &route.url, stream, route.path, &at, sent).await
            }
        }
    })
    .await;
    match ended {
        Ok(true) => {}
        Ok(false) => conn.close(),
        Err(_) => {
            conn.close();
            sent.end = clock.now();
            sent.error = Some(one_line(&Error::Timeout {
                method: "POST",
                url: route.url.to_string(),
                after: sender.timeout,
                log_tail: None,
            }));
        }
    }
}

/// When the bytes of an answer arrived.
struct Arrival<'a> {
    clock: &'a Clock,
    /// The kernel's receive times of the connection's reads, when the
    /// answer came over the load's own connection.
    stamps: Option<&'a h1::Arrivals>,
}

impl Arrival<'_> {
    /// When the chunk just read arrived: the kernel's stamp of the latest
    /// read, which took the chunk or came after it, else now.
    fn chunk(&self) -> Duration {
        let now = self.clock.now();
        match self.stamps.and_then(h1::Arrivals::latest) {
            Some(at) => at.saturating_duration_since(self.clock.base).min(now),
            None => now,
        }
    }
}

/// Reads an answer into `sent`. Returns whether its body was read to the
/// end, so that its connection may carry the next request.
async fn read_answer<B>(
    response: Result<hyper::Response<B>, Error>,
    url: &reqwest::Url,
    stream: bool,
    path: &str,
    arrival: &Arrival<'_>,
    sent: &mut Sent,
) -> bool
where
    B: Body<Data = Bytes>,
    B::Error: std::error::Error,
{
    let clock = arrival.clock;
    let response = match response {
        Ok(response) => response,
        Err(err) => {
            sent.end = clock.now();
            sent.error = Some(one_line(&err));
            return false;
        }
    };
    let (head, body) = response.into_parts();
    let mut body = std::pin::pin!(body);
    if !head.status.is_success() {
        let (text, ended) = read_to_end(body.as_mut()).await;
        sent.end = clock.now();
        sent.error = Some(one_line(&Error::Status {
            method: "POST",
            url: url.to_string(),
            status: head.status.as_u16(),
            body: snippet(&String::from_utf8_lossy(&text)),
            log_tail: None,
        }));
        return ended.is_ok();
    }
    if !stream {
        let (whole, ended) = read_to_end(body.as_mut()).await;
        sent.end = clock.now();
        if let Err(err) = ended {
            sent.error = Some(format!("POST {path} failed: {err}"));
            return false;
        }
        match serde_json::from_slice::<Event<'_>>(&whole) {
            Ok(event) => {
                if let Some(meta) = event.meta_info {
                    meta.store(&mut sent.meta);
                }
            }
            Err(err) => {
                sent.error = Some(format!(
                    "POST {path} answered with unexpected content: {err}"
                ));
            }
        }
        return true;
    }
    let mut events = Events::default();
    loop {
        let chunk = match next_data(body.as_mut()).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => {
                sent.end = clock.now();
                sent.error = Some(format!("POST {path} stream ended before data: [DONE]"));
                // The request has its error already.
                let _ = events.keep_meta(sent);
                return true;
            }
            Err(err) => {
                sent.end = clock.now();
                sent.error = Some(format!("POST {path} failed mid-stream: {err}"));
                let _ = events.keep_meta(sent);
                return false;
            }
        };
        // Every event in this chunk arrived together.
        let at = arrival.chunk();
        let step = events.take(&chunk, at, sent);
        let step = match (step, events.keep_meta(sent)) {
            (Step::Done, Err(err)) => Step::Fail(err),
            (step, _) => step,
        };
        match step {
            Step::More => {}
            Step::Done => {
                sent.end = at;
                // What follows `[DONE]` (the end of a chunked body) is read
                // too, so that the connection can carry the next request.
                return read_to_end(body.as_mut()).await.1.is_ok();
            }
            Step::Fail(err) => {
                sent.end = at;
                sent.error = Some(format!("POST {path} stream event is not JSON: {err}"));
                return false;
            }
        }
    }
}

/// The next piece of a body's data, or `None` at its end; trailers are
/// skipped. An error is given with its causes.
async fn next_data<B>(mut body: Pin<&mut B>) -> Result<Option<Bytes>, String>
where
    B: Body<Data = Bytes>,
    B::Error: std::error::Error,
{
    loop {
        match std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
            None => return Ok(None),
            Some(Err(err)) => return Err(error_chain(&err)),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    return Ok(Some(data));
                }
            }
        }
    }
}

/// The rest of a body, and whether it ended without an error.
async fn read_to_end<B>(mut body: Pin<&mut B>) -> (Vec<u8>, Result<(), String>)
where
    B: Body<Data = Bytes>,
    B::Error: std::error::Error,
{
    let mut whole = Vec::new();
    loop {
        match next_data(body.as_mut()).await {
            Ok(Some(data)) => whole.extend_from_slice(&data),
            Ok(None) => return (whole, Ok(())),
            Err(err) => return (whole, Err(err)),
        }
    }
}

/// What the events of a chunk said.
enum Step {
    /// The stream goes on.
    More,
    /// `data: [DONE]` arrived.
    Done,
    /// An event was not JSON.
    Fail(serde_json::Error),
}

/// The server-sent events of a streamed answer, read as chunks arrive.
///
/// Each event is read for its text and token count only (the other
/// fields are skipped, not converted: the latency's float was a large part
/// of the reading); the last event with a `meta_info` is kept as it came
/// and read in full once its chunk is read.
#[derive(Default)]
struct Events {
    /// The bytes of an event not complete yet.
    pending: Vec<u8>,
    /// `completion_tokens` after the last chunk that added tokens.
    last_tokens: u32,
    /// `completion_tokens` of the last `meta_info` seen.
    tokens_now: Option<u32>,
    /// The JSON of the last event with a `meta_info`, not read in full yet.
    last_meta: Vec<u8>,
}

/// Where the first `\n\n` at or after `from` starts. An event's JSON has
/// no raw line break, so each `\n` found is nearly always the blank
/// line's first.
fn blank_line(bytes: &[u8], mut from: usize) -> Option<usize> {
    while let Some(pos) = memchr::memchr(b'\n', &bytes[from..]) {
        let at = from + pos;
        if bytes.get(at + 1) == Some(&b'\n') {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// What the sender reads of each event.
#[derive(Deserialize)]
struct EventTokens {
    #[serde(default)]
    text: Option<HasText>,
    #[serde(default)]
    meta_info: Option<MetaTokens>,
}

/// Whether an event's `text` is a string that is not empty. It is read
/// as bytes, so not checked for UTF-8: only its length matters here.
struct HasText(bool);

impl<'de> Deserialize<'de> for HasText {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<HasText, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = HasText;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }

            fn visit_bytes<E>(self, text: &[u8]) -> Result<HasText, E> {
                Ok(HasText(!text.is_empty()))
            }

            fn visit_str<E>(self, text: &str) -> Result<HasText, E> {
                Ok(HasText(!text.is_empty()))
            }
        }
        deserializer.deserialize_bytes(Visit)
    }
}

#[derive(Deserialize)]
struct MetaTokens {
    #[serde(default)]
    completion_tokens: Option<u32>,
}

impl Events {
    /// Reads the events that `chunk`, which arrived at `at`, completes.
    /// Complete events are read in place; only an incomplete one is kept.
    fn take(&mut self, chunk: &[u8], at: Duration, sent: &mut Sent) -> Step {
        if self.pending.is_empty() {
            let (used, step) = self.events(chunk, 0, at, sent);
            if matches!(step, Step::More) {
                self.pending.extend_from_slice(&chunk[used..]);
            }
            return step;
        }
        // A blank line may straddle the kept bytes and this chunk.
        let from = self.pending.len() - 1;
        let mut pending = std::mem::take(&mut self.pending);
        pending.extend_from_slice(chunk);
        let (used, step) = self.events(&pending, from, at, sent);
        pending.drain(..used);
        self.pending = pending;
        step
    }

    /// Reads each complete event of `bytes`, the blank line that ends it
    /// searched from `from`; returns how many bytes they took.
    fn events(
        &mut self,
        bytes: &[u8],
        from: usize,
        at: Duration,
        sent: &mut Sent,
    ) -> (usize, Step) {
        let mut used = 0;
        let mut from = from;
        // The last event of these bytes with a `meta_info`, kept when they
        // are read.
        let mut with_meta: Option<&[u8]> = None;
        let step = loop {
            let Some(end) = blank_line(bytes, from) else {
                break Step::More;
            };
            let event = &bytes[used..end];
            used = end + 2;
            from = used;
            let Some(data) = event.strip_prefix(b"data:").map(<[u8]>::trim_ascii) else {
                continue;
            };
            if data == b"[DONE]" {
                break Step::Done;
            }
            let event: EventTokens = match serde_json::from_slice(data) {
                Ok(event) => event,
                Err(err) => break Step::Fail(err),
            };
            if let Some(meta) = event.meta_info {
                self.tokens_now = meta.completion_tokens;
                with_meta = Some(data);
            }
            if !event.text.is_some_and(|t| t.0) {
                continue;
            }
            let tokens = self.tokens_now.unwrap_or(self.last_tokens);
            if sent.first_token.is_none() || tokens > self.last_tokens {
                let since_start = (at - sent.start).as_micros().min(u32::MAX as u128) as u32;
                sent.first_token.get_or_insert(at);
                sent.chunks.push([since_start, tokens]);
                self.last_tokens = tokens;
            }
        };
        if let Some(data) = with_meta {
            self.last_meta.clear();
            self.last_meta.extend_from_slice(data);
        }
        (used, step)
    }

    /// Reads the last `meta_info` seen into `sent`, if not done yet.
    fn keep_meta(&mut self, sent: &mut Sent) -> Result<(), serde_json::Error> {
        if self.last_meta.is_empty() {
            return Ok(());
        }
        let event: Event<'_> = serde_json::from_slice(&self.last_meta)?;
        if let Some(meta) = event.meta_info {
            meta.store(&mut sent.meta);
        }
        self.last_meta.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream cut into two chunks anywhere reads as the whole: the same
    /// tokens and last `meta_info`, each token timed by the chunk that
    /// completed its event.
    #[test]
    fn events_read_the_same_wherever_the_chunks_are_cut() {
        let stream: &[u8] = b"data: {\"text\": \"\", \"meta_info\": {\"id\": \"a\", \"completion_tokens\": 0}}\n\n\
            : a comment\n\n\
            data: {\"text\": \"x\", \"meta_info\": {\"id\": \"a\", \"prompt_tokens\": 4, \"completion_tokens\": 1, \"e2e_latency\": 0.25}}\n\n\
            data: {\"text\": \"x y\"}\n\n\
            data: {\"text\": \"x y z\", \"meta_info\": {\"id\": \"a\", \"prompt_tokens\": 4, \"completion_tokens\": 3, \"cached_tokens\": 2, \"e2e_latency\": 0.5}}\n\n\
            data: [DONE]\n\n";
        // Where the events that add tokens end (after their blank line).
        let ends: Vec<usize> = stream
            .windows(2)
            .enumerate()
            .filter(|(_, w)| *w == b"\n\n")
            .map(|(at, _)| at + 2)
            .collect();
        let (first, second) = (Duration::from_micros(10), Duration::from_micros(20));
        for cut in 0..=stream.len() {
            let mut events = Events::default();
            let mut sent = Sent::default();
            let mut step = events.take(&stream[..cut], first, &mut sent);
            if matches!(step, Step::More) {
                step = events.take(&stream[cut..], second, &mut sent);
            }
            assert!(matches!(step, Step::Done), "cut at {cut}");
            events.keep_meta(&mut sent).unwrap();
            let when = |end: usize| if end <= cut { 10 } else { 20 };
            assert_eq!(
                sent.chunks,
                vec![[when(ends[2]), 1], [when(ends[4]), 3]],
                "cut at {cut}"
            );
            let meta = AnswerMeta {
                id: Some("a".to_owned()),
                prompt_tokens: Some(4),
                completion_tokens: Some(3),
                cached_tokens: Some(2),
                e2e_latency: Some(0.5),
            };
            assert_eq!(sent.meta, meta, "cut at {cut}");
        }
    }

    #[test]
    fn blank_lines_are_found_after_the_start() {
        let bytes = b"data: 1\n\ndata: 2\nid: x\n\n\n";
        assert_eq!(blank_line(bytes, 0), Some(7));
        assert_eq!(blank_line(bytes, 8), Some(22));
        assert_eq!(blank_line(bytes, 23), Some(23));
        assert_eq!(blank_line(bytes, 24), None);
        assert_eq!(blank_line(b"", 0), None);
    }

    #[test]
    fn slots_are_the_lowest_free_ones() {
        let mut slots = Slots::default();
        assert_eq!((slots.take(), slots.take(), slots.take()), (0, 1, 2));
        slots.give_back(1);
        slots.give_back(0);
        assert_eq!((slots.take(), slots.take(), slots.take()), (0, 1, 3));
    }
}
