//! `reef serve` as a child process, for the tests that talk to it: its
//! addresses from its first line, HTTP status probes, and a kill on drop.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Lines, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// The status code of `GET path` on `addr` (HTTP/1.1, one connection).
pub fn status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = String::new();
    s.read_to_string(&mut head).ok()?;
    head.split_whitespace().nth(1)?.parse().ok()
}

/// Polls `path` until it answers 200 (true) or `limit` passes (false).
pub fn wait_for_200(addr: SocketAddr, path: &str, limit: Duration) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if status(addr, path) == Some(200) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// The socket address that follows `label` in `line`, up to `end`.
pub fn address_after(line: &str, label: &str, end: char) -> SocketAddr {
    line.split(label)
        .nth(1)
        .and_then(|r| r.split(end).next())
        // A Unix socket may follow: "gRPC 127.0.0.1:PORT, HTTP unix:PATH".
        .and_then(|a| a.trim_end_matches(',').parse().ok())
        .unwrap_or_else(|| panic!("no {label}address in {line:?}"))
}

/// A running `reef serve` on ephemeral loopback ports; killed on drop.
pub struct Serve {
    pub child: Child,
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    /// The first line it printed.
    pub first: String,
    /// The rest of its output.
    pub lines: Lines<BufReader<ChildStdout>>,
}

impl Serve {
    /// Starts `reef serve` with `args` plus loopback ports and reads its
    /// addresses.
    pub fn start(args: &[&str]) -> Serve {
        let mut child = Command::new(env!("CARGO_BIN_EXE_reef"))
            .arg("serve")
            .args(args)
            .args(["--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start reef serve");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first = lines.next().expect("a first line").expect("utf-8");
        // "reef serving: HTTP 127.0.0.1:PORT, gRPC 127.0.0.1:PORT (reset mode); ..."
        let http = address_after(&first, "HTTP ", ',');
        let grpc = address_after(&first, "gRPC ", ' ');
        Serve {
            child,
            http,
            grpc,
            first,
            lines,
        }
    }

    /// Waits until every model of `models` is ready (false after `limit`).
    pub fn wait_ready(&self, models: &[&str], limit: Duration) -> bool {
        wait_for_200(self.http, "/v2/health/ready", limit)
            && models
                .iter()
                .all(|m| wait_for_200(self.http, &format!("/v2/models/{m}/ready"), limit))
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
