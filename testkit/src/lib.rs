//! Test support shared by the library's and the CLI's tests: a real static-file HTTP server
//! (tower-http's ServeDir, with Range and ETag support) and a scripted fault proxy, both on
//! loopback only, and a storage medium mounted through FUSE that loses power and fails on
//! cue ([`medium`]). Not part of the product.
#![allow(clippy::unwrap_used, missing_docs)]

pub mod medium;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Serves `dir` with tower-http's ServeDir on a loopback port, in a background runtime.
pub fn serve(dir: &Path) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_io()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let app =
                axum::Router::new().fallback_service(tower_http::services::ServeDir::new(dir));
            axum::serve(listener, app).await.unwrap();
        });
    });
    addr
}

/// What the proxy does to one request.
#[derive(Clone)]
pub enum Fault {
    Pass,
    /// Send the head and this many body bytes, then drop the connection.
    CutBodyAfter(usize),
    /// Send this many body bytes, pause, then the rest.
    StallAfter(usize, Duration),
    /// Answer with this raw response instead of asking the server.
    Respond(&'static str),
    /// Rewrite the response head.
    Head(fn(String) -> String),
    /// Drop Content-Length and keep sending bytes after the body.
    Endless,
    /// Flip every bit of the body byte at this index (a carrier proxy or a bad CDN node).
    FlipByte(usize),
    /// Send the body at this many bytes per second, in small writes, so that socket buffers
    /// hold little and what the proxy counts is what a slow link would carry.
    Throttle(u64),
}

/// What went through a proxy.
#[derive(Debug, Default)]
pub struct Counters {
    /// Requests received.
    pub requests: AtomicUsize,
    /// Response body bytes sent to clients.
    pub body_bytes: AtomicU64,
}

/// A loopback proxy in front of `upstream` that applies `fault(request_index)`.
pub fn proxy(
    upstream: SocketAddr,
    fault: impl Fn(usize) -> Fault + Send + Sync + 'static,
) -> (SocketAddr, Arc<Counters>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(Counters::default());
    let fault = Arc::new(fault);
    let counter = count.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let (fault, counter) = (fault.clone(), counter.clone());
            std::thread::spawn(move || {
                let _ = handle(conn, upstream, &*fault, &counter);
            });
        }
    });
    (addr, count)
}

fn read_head(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    Ok(head)
}

fn with_connection_close(head: &str) -> String {
    let mut lines: Vec<&str> = head
        .trim_end()
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    lines.push("Connection: close");
    format!("{}\r\n\r\n", lines.join("\r\n"))
}

fn handle(
    mut client: TcpStream,
    upstream: SocketAddr,
    fault: &dyn Fn(usize) -> Fault,
    count: &Counters,
) -> std::io::Result<()> {
    let request = String::from_utf8_lossy(&read_head(&mut client)?).into_owned();
    let fault = fault(count.requests.fetch_add(1, Ordering::SeqCst));
    if let Fault::Respond(raw) = fault {
        client.write_all(raw.as_bytes())?;
        return Ok(());
    }
    let mut server = TcpStream::connect(upstream)?;
    server.write_all(with_connection_close(&request).as_bytes())?;
    let head = String::from_utf8_lossy(&read_head(&mut server)?).into_owned();
    let mut body = Vec::new();
    server.read_to_end(&mut body)?;
    let head = with_connection_close(&head);
    match fault {
        Fault::Pass | Fault::Respond(_) => {
            client.write_all(head.as_bytes())?;
            client.write_all(&body)?;
            count
                .body_bytes
                .fetch_add(body.len() as u64, Ordering::SeqCst);
        }
        Fault::CutBodyAfter(n) => {
            client.write_all(head.as_bytes())?;
            client.write_all(&body[..n.min(body.len())])?;
            count
                .body_bytes
                .fetch_add(n.min(body.len()) as u64, Ordering::SeqCst);
            return Ok(());
        }
        Fault::StallAfter(n, pause) => {
            client.write_all(head.as_bytes())?;
            client.write_all(&body[..n.min(body.len())])?;
            client.flush()?;
            std::thread::sleep(pause);
            client.write_all(&body[n.min(body.len())..])?;
        }
        Fault::FlipByte(at) => {
            if let Some(b) = body.get_mut(at) {
                *b = !*b;
            }
            client.write_all(head.as_bytes())?;
            client.write_all(&body)?;
            count
                .body_bytes
                .fetch_add(body.len() as u64, Ordering::SeqCst);
        }
        Fault::Head(rewrite) => {
            client.write_all(rewrite(head).as_bytes())?;
            client.write_all(&body)?;
        }
        Fault::Throttle(rate) => {
            client.write_all(head.as_bytes())?;
            let started = std::time::Instant::now();
            let mut sent = 0usize;
            for piece in body.chunks(4096) {
                client.write_all(piece)?;
                sent += piece.len();
                count
                    .body_bytes
                    .fetch_add(piece.len() as u64, Ordering::SeqCst);
                let due = Duration::from_secs_f64(sent as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        }
        Fault::Endless => {
            let head: String = head
                .split("\r\n")
                .filter(|l| !l.to_ascii_lowercase().starts_with("content-length"))
                .collect::<Vec<_>>()
                .join("\r\n");
            client.write_all(head.as_bytes())?;
            client.write_all(&body)?;
            for _ in 0..10_000 {
                client.write_all(&[0u8; 1024])?;
            }
        }
    }
    Ok(())
}
