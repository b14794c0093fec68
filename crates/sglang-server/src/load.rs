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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use serde::Deserialize;

use crate::client::Client;
use crate::error::Error;
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
    let mut urls: Vec<(&'static str, reqwest::Url)> = Vec::new();
    for idx in 0..n {
        let path = requests.path(idx);
        if !urls.iter().any(|(known, _)| *known == path) {
            urls.push((path, client.endpoint(path)?));
        }
    }
    let start = clock.now();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Sent)>();
    let dispatcher = tokio::spawn(dispatch(
        client.clone(),
        *clock,
        start,
        requests,
        Arc::new(urls),
        options,
        tx,
    ));
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

async fn dispatch(
    client: Client,
    clock: Clock,
    start: Duration,
    requests: Arc<dyn Requests>,
    urls: Arc<Vec<(&'static str, reqwest::Url)>>,
    options: LoadOptions,
    tx: tokio::sync::mpsc::UnboundedSender<(usize, Sent)>,
) {
    let semaphore = options
        .max_concurrency
        .map(|cap| Arc::new(tokio::sync::Semaphore::new(cap.max(1))));
    let slots = Arc::new(Mutex::new(Slots::default()));
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
        let (client, urls, slots, tx) = (client.clone(), urls.clone(), slots.clone(), tx.clone());
        tasks.spawn(async move {
            let slot = slots.lock().map_or(0, |mut it| it.take());
            let url = urls
                .iter()
                .find(|(path, _)| *path == request.path)
                .map(|(_, url)| url)
                .expect("send_load parsed every path");
            let mut sent = send_one(&client, &clock, &request, url).await;
            if let Ok(mut it) = slots.lock() {
                it.give_back(slot);
            }
            drop(permit);
            sent.slot = slot;
            sent.due = due;
            let _ = tx.send((idx, sent));
        });
        // Reap finished tasks as we go, so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

/// One `data:` event of a streamed `/generate` answer, or a whole
/// non-streamed answer: only what the metrics need, the text borrowed.
#[derive(Deserialize)]
struct Event<'a> {
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
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

async fn send_one(
    client: &Client,
    clock: &Clock,
    request: &LoadRequest,
    url: &reqwest::Url,
) -> Sent {
    let start = clock.now();
    let mut sent = Sent {
        start,
        ..Sent::default()
    };
    let response = client.post_bytes(url, request.body.clone()).await;
    let mut response = match response {
        Ok(response) => response,
        Err(err) => {
            sent.end = clock.now();
            sent.error = Some(one_line(&err));
            return sent;
        }
    };
    if !request.stream {
        let body = response.bytes().await;
        sent.end = clock.now();
        match body {
            Ok(body) => match serde_json::from_slice::<Event<'_>>(&body) {
                Ok(event) => {
                    if let Some(meta) = event.meta_info {
                        meta.store(&mut sent.meta);
                    }
                }
                Err(err) => {
                    sent.error = Some(format!(
                        "POST {} answered with unexpected content: {err}",
                        request.path
                    ));
                }
            },
            Err(err) => sent.error = Some(format!("POST {} failed: {err}", request.path)),
        }
        return sent;
    }
    // Bytes of events not complete yet; `search_from` skips what was
    // already searched for the blank line that ends an event.
    let mut pending: Vec<u8> = Vec::new();
    let mut search_from = 0;
    let mut last_tokens = 0u32;
    loop {
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => {
                sent.end = clock.now();
                sent.error = Some(format!(
                    "POST {} stream ended before data: [DONE]",
                    request.path
                ));
                return sent;
            }
            Err(err) => {
                sent.end = clock.now();
                sent.error = Some(format!("POST {} failed mid-stream: {err}", request.path));
                return sent;
            }
        };
        // Every event in this chunk arrived now.
        let at = clock.now();
        pending.extend_from_slice(&chunk);
        let mut event_start = 0;
        while let Some(pos) = find_blank_line(&pending[search_from..]) {
            let end = search_from + pos;
            let event = &pending[event_start..end];
            event_start = end + 2;
            search_from = event_start;
            let Some(data) = event.strip_prefix(b"data:").map(<[u8]>::trim_ascii) else {
                continue;
            };
            if data == b"[DONE]" {
                sent.end = at;
                return sent;
            }
            let event: Event<'_> = match serde_json::from_slice(data) {
                Ok(event) => event,
                Err(err) => {
                    sent.end = at;
                    sent.error = Some(format!(
                        "POST {} stream event is not JSON: {err}",
                        request.path
                    ));
                    return sent;
                }
            };
            let has_text = event.text.as_deref().is_some_and(|t| !t.is_empty());
            if let Some(meta) = event.meta_info {
                meta.store(&mut sent.meta);
            }
            if !has_text {
                continue;
            }
            let tokens = sent.meta.completion_tokens.unwrap_or(last_tokens);
            let since_start = (at - start).as_micros().min(u32::MAX as u128) as u32;
            if sent.first_token.is_none() || tokens > last_tokens {
                sent.first_token.get_or_insert(at);
                sent.chunks.push([since_start, tokens]);
                last_tokens = tokens;
            }
        }
        pending.drain(..event_start);
        // A blank line may straddle this chunk and the next.
        search_from = pending.len().saturating_sub(1);
    }
}

/// Where the first `\n\n` starts.
fn find_blank_line(bytes: &[u8]) -> Option<usize> {
    bytes.windows(2).position(|w| w == b"\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_the_lowest_free_ones() {
        let mut slots = Slots::default();
        assert_eq!((slots.take(), slots.take(), slots.take()), (0, 1, 2));
        slots.give_back(1);
        slots.give_back(0);
        assert_eq!((slots.take(), slots.take(), slots.take()), (0, 1, 3));
    }
}
