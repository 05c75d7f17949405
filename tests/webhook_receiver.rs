//! A webhook receiver: a small HTTP/1.1 server on 127.0.0.1 (std sockets, one thread per
//! connection) that records every request it gets and answers as told — `200`, `500` for
//! the first N requests, or nothing at all (it holds the connection open until dropped).
//!
//! Hand-written rather than a framework so a test sees each request exactly as it arrived
//! (headers and raw body bytes, which the signature covers). Never: bind anything but loopback.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;

/// How the receiver answers.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    /// `200 OK` to everything.
    Ok,
    /// `500` to the first `n` requests, then `200`.
    FailFirst(usize),
    /// Reads the request and never answers.
    Silent,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    /// What the receiver answered (0: nothing).
    pub answered: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body).context("webhook body is not JSON")
    }
}

pub struct Receiver {
    pub url: String,
    requests: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    port: u16,
}

impl Receiver {
    pub fn start(answer: Answer) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let requests: Arc<Mutex<Vec<Received>>> = Arc::default();
        let stop: Arc<AtomicBool> = Arc::default();
        let (reqs, halt) = (requests.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if halt.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (reqs, halt) = (reqs.clone(), halt.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, answer, &reqs, &halt);
                });
            }
        });
        Ok(Self {
            url: format!("http://127.0.0.1:{port}/hooks/shardcast"),
            requests,
            stop,
            port,
        })
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Received> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(
    conn: TcpStream,
    answer: Answer,
    requests: &Mutex<Vec<Received>>,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut writer = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let path = parts.next().unwrap_or_default().to_string();
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        let status = {
            let mut all = requests.lock().unwrap();
            let status = match answer {
                Answer::Ok => 200,
                Answer::FailFirst(n) if all.len() < n => 500,
                Answer::FailFirst(_) => 200,
                Answer::Silent => 0,
            };
            all.push(Received {
                method,
                path,
                headers,
                body,
                answered: status,
            });
            status
        };
        if status == 0 {
            // Hold the connection, answering nothing, until the sender gives up.
            while !stop.load(Ordering::Relaxed) {
                let mut buf = [0u8; 1024];
                match reader.read(&mut buf) {
                    Ok(0) => return Ok(()),
                    Ok(_) => {}
                    Err(_) => return Ok(()),
                }
            }
            return Ok(());
        }
        let reason = if status == 200 {
            "OK"
        } else {
            "Internal Server Error"
        };
        write!(
            writer,
            "HTTP/1.1 {status} {reason}\r\ncontent-length: 0\r\n\r\n"
        )?;
        writer.flush()?;
    }
}
