//! The load's own HTTP/1.1 client: one kept-alive connection per
//! concurrency slot, over hyper's connection API.
//!
//! A load sends thousands of requests a second to one server, so it skips
//! what a general client does per request (a pool to search, a URL to
//! parse and re-check against a redirect policy, a map of default
//! headers): the target's address and headers are made once per load, and
//! each slot keeps its connection between requests. The request timeout is
//! the sender's (`load::send_one`). A connection is opened when its
//! slot first sends, and again after it failed or the server closed it.
//! A request that a reused connection could not carry because the server
//! had closed it (hyper gives the request back, or the connection ended or
//! was reset where the answer's head was due) is sent once more on a new
//! connection; a fresh connection that fails is an error.
//!
//! Only `http://` servers go this way; [`Target::new`] declines any other
//! scheme, and the load then sends through the [`crate::Client`].

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Request, Response, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::client::error_chain;
pub(crate) use crate::stamped::Arrivals;
use crate::stamped::Stamped;

/// How long a connection may take to open, as for the [`crate::Client`].
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A server the load sends to, and the headers every request carries.
#[derive(Debug)]
pub(crate) struct Target {
    /// The host to connect to: a name, or an IP address without brackets.
    host: String,
    port: u16,
    /// `host[:port]`, as the URL has it.
    host_header: HeaderValue,
    /// `Bearer <key>` when the client has an API key.
    authorization: Option<HeaderValue>,
}

/// One endpoint of a [`Target`].
#[derive(Debug)]
pub(crate) struct Endpoint {
    /// The whole URL, for messages.
    pub(crate) url: String,
    /// The path and query sent on the request line.
    target: Uri,
}

/// A slot's connection, if it has one that may still carry a request, and
/// when the bytes of its latest read arrived.
#[derive(Debug, Default)]
pub(crate) struct Conn(Option<SendRequest<Full<Bytes>>>, Arrivals);

impl Conn {
    /// Forgets the connection: the next request opens a new one. Called
    /// when an answer was not read to its end.
    pub(crate) fn close(&mut self) {
        self.0 = None;
    }

    /// When the bytes of the connection's latest read reached this
    /// machine, as the kernel stamps them.
    pub(crate) fn arrivals(&self) -> Arrivals {
        self.1.clone()
    }
}

impl Target {
    /// The target of `url`, or `None` when it is not a plain `http://` URL
    /// with a host; an API key that cannot be a header value is refused.
    pub(crate) fn new(url: &reqwest::Url, api_key: Option<&str>) -> Result<Option<Target>, String> {
        if url.scheme() != "http" {
            return Ok(None);
        }
        let (Some(host_str), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            return Ok(None);
        };
        // An IPv6 address is bracketed in a URL, and not when connecting.
        let host = host_str
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host_str)
            .to_owned();
        let host_header = match url.port() {
            Some(port) => format!("{host_str}:{port}"),
            None => host_str.to_owned(),
        };
        let host_header = HeaderValue::try_from(host_header)
            .map_err(|err| format!("bad host in {url}: {err}"))?;
        let authorization = match api_key {
            Some(key) => {
                let mut value = HeaderValue::try_from(format!("Bearer {key}"))
                    .map_err(|_| "the API key cannot be sent in a header".to_owned())?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        Ok(Some(Target {
            host,
            port,
            host_header,
            authorization,
        }))
    }

    /// The endpoint of `url`, a URL on this target.
    pub(crate) fn endpoint(&self, url: &reqwest::Url) -> Result<Endpoint, String> {
        let mut target = url.path().to_owned();
        if let Some(query) = url.query() {
            target.push('?');
            target.push_str(query);
        }
        let target = Uri::try_from(target).map_err(|err| format!("bad URL {url}: {err}"))?;
        Ok(Endpoint {
            url: url.to_string(),
            target,
        })
    }

    /// `POST`s `body` (JSON) to `endpoint` on `conn`, opening a connection
    /// first when it has none; returns the answer's head, its body still to
    /// be read. The error is the cause, for the caller's message.
    pub(crate) async fn post(
        &self,
        conn: &mut Conn,
        endpoint: &Endpoint,
        body: &Bytes,
    ) -> Result<Response<hyper::body::Incoming>, String> {
        let mut retried = false;
        loop {
            let reused = match &conn.0 {
                Some(sender) if !sender.is_closed() => true,
                _ => {
                    conn.0 = None;
                    let (sender, arrivals) = self.connect().await?;
                    *conn = Conn(Some(sender), arrivals);
                    false
                }
            };
            let may_retry = reused && !retried;
            let sender = conn.0.as_mut().expect("a connection was just opened");
            if let Err(err) = sender.ready().await {
                conn.0 = None;
                if may_retry {
                    retried = true;
                    continue;
                }
                return Err(error_chain(&err));
            }
            match sender.try_send_request(self.request(endpoint, body)).await {
                Ok(response) => return Ok(response),
                Err(mut err) => {
                    conn.0 = None;
                    let unsent = err.take_message().is_some();
                    let err = err.into_error();
                    if may_retry && (unsent || closed_under(&err)) {
                        retried = true;
                        continue;
                    }
                    return Err(error_chain(&err));
                }
            }
        }
    }

    fn request(&self, endpoint: &Endpoint, body: &Bytes) -> Request<Full<Bytes>> {
        let mut request = Request::post(endpoint.target.clone())
            .body(Full::new(body.clone()))
            .expect("a POST with a valid URI is a valid request");
        let headers = request.headers_mut();
        headers.insert(HOST, self.host_header.clone());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(value) = &self.authorization {
            headers.insert(AUTHORIZATION, value.clone());
        }
        request
    }

    /// Opens a connection and hands it to a task of its own, which reads
    /// and writes it until it closes.
    async fn connect(&self) -> Result<(SendRequest<Full<Bytes>>, Arrivals), String> {
        let stream = tokio::time::timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|_| {
            format!(
                "cannot connect: no connection after {} s",
                CONNECT_TIMEOUT.as_secs()
            )
        })?
        .map_err(|err| format!("cannot connect: {err}"))?;
        // Requests are small and written at once: waiting to fill a
        // packet only delays them.
        let _ = stream.set_nodelay(true);
        let stream = Stamped::new(stream);
        let arrivals = stream.arrivals();
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|err| error_chain(&err))?;
        // An error of the connection reaches the request it breaks.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok((sender, arrivals))
    }
}

/// Whether `err` says that the server had closed the connection under the
/// request, before any answer: the end of the stream or a reset where an
/// answer's head was due. On a reused connection, that is a server that
/// closed it while it was idle, and had not read the request.
fn closed_under(err: &hyper::Error) -> bool {
    if err.is_incomplete_message() || err.is_canceled() {
        return true;
    }
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionAborted
            );
        }
        source = cause.source();
    }
    false
}
