//! The benchmark's direct HTTP/1.1 client for RT requests: the thread that
//! submits a request writes it on a kept-alive connection itself (no task
//! hand-off, no client runtime on the way out), and one reader thread
//! polls the connections with a request in flight and hands each
//! answer to its completion: the shape of a latency-minded client on the
//! server's host, where the open-loop thread that owns an RT arrival sends
//! it the moment it is due, as the in-process scheduler's caller submits
//! it (issue 4 weighs the two; docs/PERF.md, Session 31, found it
//! faster where several RT models arrive at once and slower for one).
//!
//! The reader polls (yielding its core between looks) only while answers
//! are outstanding and parks when none is; a request's submission unparks
//! it while the server works on the request, off the request's critical
//! path.

use crate::http_client::{parse_url, HttpError, Target};
use bytes::Bytes;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{self, TryRecvError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The header giving the length of a Triton binary answer's JSON part.
const JSON_LENGTH: &str = reef_server::http::infer::HEADER_LENGTH;

/// How long an idle reader sleeps before it looks for shutdown.
const IDLE_PARK: Duration = Duration::from_millis(50);

/// One connection to the server, non-blocking.
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }

    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
}

/// A connection and the bytes of its answer read so far.
struct Conn {
    stream: Stream,
    buf: Vec<u8>,
}

impl Conn {
    /// Writes all of `bytes`, spinning while the socket is full.
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let mut at = 0;
        while at < bytes.len() {
            match self.stream.write(&bytes[at..]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => at += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => std::hint::spin_loop(),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads what has arrived; the answer once it is whole (its head and
    /// `Content-Length` bytes of body).
    fn poll_answer(&mut self) -> Result<Option<RawAnswer>, String> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                // A server may close right after its answer (`Connection:
                // close`): what came before the end may be whole.
                Ok(0) => {
                    return match parse_answer(&mut self.buf)? {
                        Some(a) => Ok(Some(RawAnswer {
                            keep_alive: false,
                            ..a
                        })),
                        None => Err("the server closed the connection".into()),
                    }
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("reading the answer: {e}")),
            }
        }
        parse_answer(&mut self.buf)
    }
}

/// An answer: status, the JSON part's length of a binary answer, the body,
/// and whether the connection may carry another request.
#[derive(Debug)]
pub(crate) struct RawAnswer {
    pub status: u16,
    pub json_len: Option<usize>,
    pub body: Bytes,
    pub keep_alive: bool,
}

/// The answer at the start of `buf` once all of it is there (then taken
/// out of `buf`); `None` while it is partial.
fn parse_answer(buf: &mut Vec<u8>) -> Result<Option<RawAnswer>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let head = match resp.parse(buf) {
        Ok(httparse::Status::Partial) => return Ok(None),
        Ok(httparse::Status::Complete(n)) => n,
        Err(e) => return Err(format!("a malformed answer head: {e}")),
    };
    let status = resp.code.unwrap_or(0);
    let value = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
    };
    if value("transfer-encoding").is_some() {
        return Err("a chunked answer (the direct client reads Content-Length bodies)".into());
    }
    let len: usize = match value("content-length") {
        Some(v) => v
            .parse()
            .map_err(|_| format!("Content-Length '{v}' is not a byte count"))?,
        None => 0,
    };
    let json_len = value(JSON_LENGTH).and_then(|v| v.parse().ok());
    let keep_alive = !value("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
    if buf.len() < head + len {
        return Ok(None);
    }
    let body = Bytes::copy_from_slice(&buf[head..head + len]);
    buf.drain(..head + len);
    Ok(Some(RawAnswer {
        status,
        json_len,
        body,
        keep_alive,
    }))
}

/// What the reader runs with a request's answer (or why there is none),
/// when the request was sent and when its answer was in.
pub(crate) type Done = Box<dyn FnOnce(Result<RawAnswer, String>, Instant, Instant) + Send>;

/// A request in flight.
struct Pending {
    conn: Conn,
    sent: Instant,
    done: Done,
}

/// A direct client of one server (see the module docs).
pub(crate) struct DirectHttp {
    target: Target,
    host: String,
    idle: Arc<Mutex<Vec<Conn>>>,
    /// The reader thread and its queue, started by the first
    /// [`DirectHttp::post`] (a client that only polls never starts one).
    reader: OnceLock<Reader>,
}

/// The reader thread's handle and the queue of requests it completes.
struct Reader {
    tx: Option<mpsc::Sender<Pending>>,
    thread: std::thread::Thread,
}

impl DirectHttp {
    /// A client of the server at `url` (`http://HOST:PORT` or `unix:PATH`).
    /// Connects, and starts its reader thread, on first use.
    pub fn new(url: &str) -> Result<DirectHttp, HttpError> {
        let (target, host) = parse_url(url)?;
        Ok(DirectHttp {
            target,
            host,
            idle: Arc::new(Mutex::new(Vec::new())),
            reader: OnceLock::new(),
        })
    }

    /// The reader thread, started on the first call.
    fn reader(&self) -> Result<&Reader, String> {
        if let Some(r) = self.reader.get() {
            return Ok(r);
        }
        let (tx, rx) = mpsc::channel::<Pending>();
        let back = self.idle.clone();
        let thread = std::thread::Builder::new()
            .name("reef-bench-rt-reader".into())
            .spawn(move || read_answers(rx, back))
            .map_err(|e| format!("starting the RT reader thread: {e}"))?
            .thread()
            .clone();
        // A racing first call may have set it: its thread is used and this
        // one, whose queue is dropped here, ends at its next look.
        let _ = self.reader.set(Reader {
            tx: Some(tx),
            thread,
        });
        Ok(self.reader.get().expect("set above or by a racing call"))
    }

    fn connect(&self) -> Result<Conn, String> {
        let stream = match &self.target {
            Target::Tcp(addr) => TcpStream::connect(addr).and_then(|s| {
                s.set_nodelay(true)?;
                s.set_nonblocking(true)?;
                Ok(Stream::Tcp(s))
            }),
            Target::Unix(path) => UnixStream::connect(path).and_then(|s| {
                s.set_nonblocking(true)?;
                Ok(Stream::Unix(s))
            }),
        }
        .map_err(|e| format!("connecting to {}: {e}", self.target))?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
        })
    }

    /// POSTs `body` to `path` with `headers` (besides Host and
    /// Content-Length) on this thread and returns when it is written;
    /// `done` gets the answer on the reader thread. A connection the server
    /// closed while idle is replaced once. Where the request could not be
    /// sent, `done` comes back with the reason.
    pub fn post(
        &self,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
        done: Done,
    ) -> Result<(), (String, Done)> {
        let reader = match self.reader() {
            Ok(r) => r,
            Err(e) => return Err((e, done)),
        };
        let bytes = self.request_bytes(path, headers, body);
        let sent = Instant::now();
        let conn = match self.send(&bytes) {
            Ok(c) => c,
            Err(e) => return Err((e, done)),
        };
        let Some(tx) = &reader.tx else {
            return Err(("the direct client is shut down".into(), done));
        };
        tx.send(Pending { conn, sent, done })
            .map_err(|e| ("the RT reader thread is gone".to_string(), e.0.done))?;
        reader.thread.unpark();
        Ok(())
    }

    /// POSTs as [`DirectHttp::post`] from the calling task, which then
    /// polls its connection for the answer itself, yielding between looks
    /// (no reader thread, no hand-off): the answer, when the request was
    /// written and when its answer was whole.
    pub async fn exchange(
        &self,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> (Result<RawAnswer, String>, Instant, Instant) {
        let bytes = self.request_bytes(path, headers, body);
        let sent = Instant::now();
        let mut conn = match self.send(&bytes) {
            Ok(c) => c,
            Err(e) => return (Err(e), sent, Instant::now()),
        };
        loop {
            match conn.poll_answer() {
                Ok(None) => {
                    // As the reader thread: the core goes to the answer's
                    // producers where the host's cores are all busy, and the
                    // runtime's other tasks run in between.
                    std::thread::yield_now();
                    tokio::task::yield_now().await;
                }
                Ok(Some(answer)) => {
                    let replied = Instant::now();
                    keep_if_alive(&self.idle, conn, &answer);
                    return (Ok(answer), sent, replied);
                }
                Err(e) => return (Err(e), sent, Instant::now()),
            }
        }
    }

    /// The bytes of a POST of `body` to `path` with `headers`.
    fn request_bytes(&self, path: &str, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nhost: {}\r\ncontent-length: {}\r\n",
            self.host,
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body);
        bytes
    }

    /// Writes `bytes` on an idle connection, or a new one; the connection.
    fn send(&self, bytes: &[u8]) -> Result<Conn, String> {
        let reused = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match reused {
            Some(mut c) => match c.write_all(bytes) {
                Ok(()) => Ok(c),
                // The server may have closed an idle connection: nothing of
                // the request reached it, so it goes again on a new one.
                Err(_) => self.fresh(bytes),
            },
            None => self.fresh(bytes),
        }
    }

    /// A new connection with `bytes` written on it.
    fn fresh(&self, bytes: &[u8]) -> Result<Conn, String> {
        let mut c = self.connect()?;
        c.write_all(bytes)
            .map_err(|e| format!("writing to {}: {e}", self.target))?;
        Ok(c)
    }
}

impl Drop for DirectHttp {
    fn drop(&mut self) {
        // The reader ends once its outstanding answers are in.
        if let Some(r) = self.reader.get_mut() {
            r.tx = None;
            r.thread.unpark();
        }
    }
}

/// Puts `conn` back among the idle connections where `answer` left it open.
fn keep_if_alive(idle: &Mutex<Vec<Conn>>, conn: Conn, answer: &RawAnswer) {
    if answer.keep_alive {
        idle.lock().unwrap_or_else(|e| e.into_inner()).push(conn);
    }
}

/// The reader thread: polls the requests in flight, completing each
/// as its answer is whole, and parks while none is.
fn read_answers(rx: mpsc::Receiver<Pending>, idle: Arc<Mutex<Vec<Conn>>>) {
    let mut out: Vec<Pending> = Vec::new();
    let mut open = true;
    loop {
        while open {
            match rx.try_recv() {
                Ok(p) => out.push(p),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => open = false,
            }
        }
        if out.is_empty() {
            if !open {
                return;
            }
            std::thread::park_timeout(IDLE_PARK);
            continue;
        }
        let mut i = 0;
        while i < out.len() {
            match out[i].conn.poll_answer() {
                Ok(None) => i += 1,
                Ok(Some(answer)) => {
                    let replied = Instant::now();
                    let p = out.swap_remove(i);
                    keep_if_alive(&idle, p.conn, &answer);
                    (p.done)(Ok(answer), p.sent, replied);
                }
                Err(e) => {
                    let p = out.swap_remove(i);
                    (p.done)(Err(e), p.sent, Instant::now());
                }
            }
        }
        // A yield, not a bare spin: where the host's cores are all busy
        // (a CPU backend's workers), the answer's producers get the core.
        std::thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_parsed_once_whole_and_taken_out_of_the_buffer() {
        let full = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ninference-header-content-length: 3\r\n\r\n{}\nxyHTTP/1.1";
        let mut buf = full[..40].to_vec();
        assert!(parse_answer(&mut buf).unwrap().is_none());
        buf = full.to_vec();
        let a = parse_answer(&mut buf).unwrap().expect("whole");
        assert_eq!((a.status, a.json_len, a.keep_alive), (200, Some(3), true));
        assert_eq!(&a.body[..], b"{}\nxy");
        assert_eq!(&buf[..], b"HTTP/1.1");
        let mut closing =
            b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 2\r\n\r\nno"
                .to_vec();
        let a = parse_answer(&mut closing).unwrap().expect("whole");
        assert_eq!((a.status, a.keep_alive), (400, false));
        let mut chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        assert!(parse_answer(&mut chunked).unwrap_err().contains("chunked"));
        let mut bad = b"HTTP/1.1 200 OK\r\ncontent-length: lots\r\n\r\n".to_vec();
        assert!(parse_answer(&mut bad).unwrap_err().contains("lots"));
    }

    /// A server on a Unix socket, a thread per connection, that answers
    /// each request (read up to its blank line plus the Content-Length
    /// body) with its body echoed, closing the connection after `per_conn`
    /// answers. Raising the flag and connecting once more ends it; it
    /// returns how many connections it served.
    fn echo_server(
        path: &std::path::Path,
        per_conn: usize,
    ) -> (
        std::thread::JoinHandle<usize>,
        Arc<std::sync::atomic::AtomicBool>,
    ) {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let server = std::thread::spawn(move || {
            let mut conns = 0;
            for s in listener.incoming() {
                let Ok(mut s) = s else { break };
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                conns += 1;
                std::thread::spawn(move || echo_conn(&mut s, per_conn));
            }
            conns
        });
        (server, stop)
    }

    fn echo_conn(s: &mut UnixStream, per_conn: usize) {
        let mut buf = Vec::new();
        let mut answered = 0;
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(h) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..h]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if buf.len() >= h + 4 + len {
                    let body = buf[h + 4..h + 4 + len].to_vec();
                    buf.drain(..h + 4 + len);
                    answered += 1;
                    let close = answered == per_conn;
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n{}\r\n",
                        body.len(),
                        if close { "connection: close\r\n" } else { "" }
                    );
                    if s.write_all(head.as_bytes()).is_err() || s.write_all(&body).is_err() || close
                    {
                        return;
                    }
                    continue;
                }
            }
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    #[test]
    fn requests_are_answered_in_flight_together_and_connections_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("echo.sock");
        let (server, stop) = echo_server(&path, 3);
        let client = DirectHttp::new(&format!("unix:{}", path.display())).unwrap();
        let (tx, rx) = mpsc::channel();
        // Two rounds of four requests in flight at once, bodies of every
        // size up to one past the reader's chunk.
        for round in 0..2 {
            for k in 0..4usize {
                let body: Vec<u8> = (0..(k * 7000 + round))
                    .map(|i| (i * 31 + k) as u8)
                    .collect();
                let want = body.clone();
                let tx = tx.clone();
                client
                    .post(
                        "/echo",
                        &[("content-type", "application/octet-stream".into())],
                        &body,
                        Box::new(move |a, sent, replied| {
                            let a = a.expect("an answer");
                            assert!(replied >= sent);
                            tx.send((a.status, a.body == want)).unwrap();
                        }),
                    )
                    .map_err(|(e, _)| e)
                    .unwrap();
            }
            for _ in 0..4 {
                let (status, same) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
                assert_eq!((status, same), (200, true));
            }
        }
        drop(client);
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        drop(UnixStream::connect(&path).unwrap());
        // Eight answers on connections the server closes after three
        // answers: at least three connections, and fewer than eight (the
        // second round found the first round's connections idle; at most
        // one of them had answered three times).
        let conns = server.join().unwrap();
        assert!((3..8).contains(&conns), "{conns} connections");
    }

    #[test]
    fn the_reader_thread_starts_with_the_first_post_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lazy.sock");
        let (server, stop) = echo_server(&path, 100);
        let client = DirectHttp::new(&format!("unix:{}", path.display())).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for k in 0..3u8 {
            let (a, sent, replied) = rt.block_on(client.exchange("/echo", &[], &[k; 5]));
            let a = a.expect("an answer");
            assert_eq!((a.status, &a.body[..]), (200, &[k; 5][..]));
            assert!(replied >= sent);
        }
        assert!(client.reader.get().is_none(), "polling started a reader");
        let (tx, rx) = mpsc::channel();
        client
            .post(
                "/echo",
                &[],
                &[9; 4],
                Box::new(move |a, _, _| tx.send(a.map(|a| a.body)).unwrap()),
            )
            .map_err(|(e, _)| e)
            .unwrap();
        let body = rx.recv_timeout(Duration::from_secs(10)).unwrap().unwrap();
        assert_eq!(&body[..], &[9; 4][..]);
        assert!(client.reader.get().is_some());
        drop(client);
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        drop(UnixStream::connect(&path).unwrap());
        // One kept-alive connection served all four requests.
        assert_eq!(server.join().unwrap(), 1);
    }

    #[test]
    fn an_answer_before_the_server_closes_is_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("once.sock");
        // Every connection closes after its first answer.
        let (server, stop) = echo_server(&path, 1);
        let client = DirectHttp::new(&format!("unix:{}", path.display())).unwrap();
        let (tx, rx) = mpsc::channel();
        for k in 0..5u8 {
            let tx = tx.clone();
            client
                .post(
                    "/echo",
                    &[],
                    &[k; 3],
                    Box::new(move |a, _, _| {
                        tx.send(a.map(|a| (a.body.to_vec(), a.keep_alive))).unwrap();
                    }),
                )
                .map_err(|(e, _)| e)
                .unwrap();
            let got = rx.recv_timeout(Duration::from_secs(10)).unwrap();
            assert_eq!(got, Ok((vec![k; 3], false)));
        }
        drop(client);
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        drop(UnixStream::connect(&path).unwrap());
        assert_eq!(server.join().unwrap(), 5, "a connection per answer");
    }

    #[test]
    fn an_absent_server_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none.sock");
        let client = DirectHttp::new(&format!("unix:{}", path.display())).unwrap();
        let (e, _) = client
            .post("/x", &[], b"", Box::new(|_, _, _| {}))
            .unwrap_err();
        assert!(e.contains("none.sock"), "{e}");
    }
}
