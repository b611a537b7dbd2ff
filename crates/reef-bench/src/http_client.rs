//! The benchmark's HTTP/1.1 client: hyper's connection API over TCP or a
//! Unix domain socket, with a pool of kept-alive connections (one per
//! request in flight).
//!
//! A request and its answer cross only the caller's task and the
//! connection's task: no per-request tasks, timeouts or redirect layers.
//! On an idle host every task hand-off is a scheduling round, and an
//! inference's round trip is what issue 4 weighs against the in-process
//! scheduler.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderName, HeaderValue, HOST};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::path::PathBuf;
use std::sync::Mutex;

/// Where the server listens.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// `HOST:PORT` over TCP.
    Tcp(String),
    /// A Unix domain socket.
    Unix(PathBuf),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Tcp(a) => f.write_str(a),
            Target::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// The server at `url` (`http://HOST:PORT[/]` or `unix:PATH` /
/// `unix://PATH`) and the `Host` header's value for it.
pub(crate) fn parse_url(url: &str) -> Result<(Target, String), HttpError> {
    if let Some(path) = url
        .strip_prefix("unix://")
        .or_else(|| url.strip_prefix("unix:"))
    {
        return Ok((Target::Unix(PathBuf::from(path)), "localhost".to_string()));
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(HttpError::Url(url.to_string()));
    };
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') {
        return Err(HttpError::Url(url.to_string()));
    }
    Ok((Target::Tcp(authority.to_string()), authority.to_string()))
}

/// An HTTP/1.1 client of one server, reusing its connections.
pub(crate) struct HttpClient {
    target: Target,
    /// The `Host` header's value.
    host: HeaderValue,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

/// A failed exchange: what went wrong, for the caller to put in context.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    /// The URL is neither `http://HOST:PORT` nor `unix:PATH`.
    #[error("server URL '{0}': expected http://HOST:PORT or unix:PATH")]
    Url(String),
    /// Connecting failed.
    #[error("connecting to {target}: {source}")]
    Connect {
        target: String,
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("{0}")]
    Http(#[from] hyper::Error),
    /// The request could not be built (a bad path or header).
    #[error("{0}")]
    Request(#[from] hyper::http::Error),
}

/// An answer: status, headers and the whole body.
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl HttpClient {
    /// A client of the server at `url` (`http://HOST:PORT[/]` or
    /// `unix:PATH` / `unix://PATH`). Connects on first use.
    pub fn new(url: &str) -> Result<HttpClient, HttpError> {
        let (target, host) = parse_url(url)?;
        let host = HeaderValue::from_str(&host).map_err(|_| HttpError::Url(url.to_string()))?;
        Ok(HttpClient {
            target,
            host,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Opens a new connection and starts its task.
    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, HttpError> {
        let connect_error = |source| HttpError::Connect {
            target: self.target.to_string(),
            source,
        };
        match &self.target {
            Target::Tcp(addr) => {
                let stream = tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(connect_error)?;
                stream.set_nodelay(true).map_err(connect_error)?;
                handshake(TokioIo::new(stream)).await
            }
            Target::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(connect_error)?;
                handshake(TokioIo::new(stream)).await
            }
        }
    }

    /// An idle connection that is still open, else a new one.
    async fn take(&self) -> Result<SendRequest<Full<Bytes>>, HttpError> {
        loop {
            let next = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            match next {
                Some(mut s) if !s.is_closed() => {
                    if s.ready().await.is_ok() {
                        return Ok(s);
                    }
                }
                Some(_) => {}
                None => return self.connect().await,
            }
        }
    }

    fn give_back(&self, s: SendRequest<Full<Bytes>>) {
        if !s.is_closed() {
            self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(s);
        }
    }

    /// Sends `method path` with `headers` and `body` and reads the whole
    /// answer. A kept-alive connection the server closed before the
    /// request went out is replaced by a new one, once.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
    ) -> Result<Answer, HttpError> {
        let mut retried = false;
        loop {
            let mut sender = self.take().await?;
            let mut req = Request::builder().method(method.clone()).uri(path);
            req = req.header(HOST, self.host.clone());
            for (k, v) in headers {
                req = req.header(k, v);
            }
            let req = req.body(Full::new(body.clone()))?;
            let resp = match sender.send_request(req).await {
                Ok(r) => r,
                // Not sent: the connection was closing as it was taken.
                Err(e) if e.is_canceled() && !retried => {
                    retried = true;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let (parts, incoming) = resp.into_parts();
            let body = incoming.collect().await?.to_bytes();
            self.give_back(sender);
            return Ok(Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            });
        }
    }
}

/// The HTTP/1.1 handshake on `io`; the connection's task runs on the
/// current runtime until the connection closes.
async fn handshake<T>(io: TokioIo<T>) -> Result<SendRequest<Full<Bytes>>, HttpError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) = http1::handshake(io).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("HTTP connection closed: {e}");
        }
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn urls_name_tcp_or_unix_targets_and_bad_ones_are_refused() {
        let c = HttpClient::new("http://127.0.0.1:8000/").unwrap();
        assert!(matches!(&c.target, Target::Tcp(a) if a == "127.0.0.1:8000"));
        assert_eq!(c.host, "127.0.0.1:8000");
        for u in ["unix:/tmp/a.sock", "unix:///tmp/a.sock"] {
            let c = HttpClient::new(u).unwrap();
            assert!(matches!(&c.target, Target::Unix(p) if p == &PathBuf::from("/tmp/a.sock")));
        }
        for bad in ["https://x:1", "x:1", "http://", "http://a:1/v2"] {
            let e = HttpClient::new(bad).err().expect(bad).to_string();
            assert!(e.contains(bad), "{e}");
        }
    }

    /// A server that answers each request on a connection with its count on
    /// that connection, and closes every connection after `per_conn`
    /// answers; returns its address and how many connections it accepted.
    async fn counting_server(
        per_conn: usize,
    ) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    for n in 1..=per_conn {
                        let mut got = Vec::new();
                        // Head, then the Content-Length body.
                        loop {
                            let k = s.read(&mut buf).await.unwrap_or(0);
                            if k == 0 {
                                return;
                            }
                            got.extend_from_slice(&buf[..k]);
                            let Some(h) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
                                continue;
                            };
                            let head = String::from_utf8_lossy(&got[..h]).to_lowercase();
                            let len: usize = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .map_or(0, |v| v.trim().parse().unwrap());
                            if got.len() >= h + 4 + len {
                                break;
                            }
                        }
                        let body = format!("{n}:{}", got.len());
                        let close = if n == per_conn {
                            "connection: close\r\n"
                        } else {
                            ""
                        };
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nx-n: {n}\r\n{close}\r\n{body}",
                            body.len()
                        );
                        if s.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    #[tokio::test]
    async fn connections_are_reused_and_replaced_when_the_server_closes_them() {
        let (addr, accepted) = counting_server(3).await;
        let c = HttpClient::new(&format!("http://{addr}")).unwrap();
        let mut seen = vec![];
        for i in 0..7 {
            let body = Bytes::from(vec![b'x'; 1000 + i]);
            let a = c.send(Method::POST, "/p", &[], body).await.unwrap();
            assert_eq!(a.status, StatusCode::OK);
            seen.push(a.headers["x-n"].to_str().unwrap().to_string());
        }
        // Three answers a connection, then a new one.
        assert_eq!(seen, ["1", "2", "3", "1", "2", "3", "1"]);
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn concurrent_requests_get_their_own_connections() {
        let (addr, accepted) = counting_server(1000).await;
        let c = std::sync::Arc::new(HttpClient::new(&format!("http://{addr}")).unwrap());
        let calls = (0..4).map(|_| {
            let c = c.clone();
            tokio::spawn(async move {
                c.send(Method::GET, "/", &[], Bytes::new())
                    .await
                    .unwrap()
                    .status
            })
        });
        for call in calls {
            assert_eq!(call.await.unwrap(), StatusCode::OK);
        }
        let n = accepted.load(std::sync::atomic::Ordering::SeqCst);
        assert!((1..=4).contains(&n), "{n} connections");
        // Later requests reuse them.
        for _ in 0..5 {
            c.send(Method::GET, "/", &[], Bytes::new()).await.unwrap();
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), n);
    }

    #[tokio::test]
    async fn a_server_that_is_not_there_is_named_in_the_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let c = HttpClient::new(&format!("http://{addr}")).unwrap();
        let e = c
            .send(Method::GET, "/", &[], Bytes::new())
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains(&addr), "{e}");
    }
}
