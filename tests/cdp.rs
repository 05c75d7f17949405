//! A minimal blocking Chrome DevTools Protocol client for one page target.
//!
//! Commands are sent with increasing ids and answered in order; events that arrive in
//! between are kept (console messages, uncaught exceptions) so tests can report them.
//! Never: drive more than one target per connection, or hide a protocol error.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{self, stream::MaybeTlsStream, Message, WebSocket};

pub struct Cdp {
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    /// Uncaught exceptions reported by the page (Runtime.exceptionThrown), as text.
    pub exceptions: Vec<String>,
    /// Console messages (Runtime.consoleAPICalled), newest last, at most `MAX_CONSOLE`.
    pub console: Vec<String>,
}

const MAX_CONSOLE: usize = 500;

impl Cdp {
    /// Connects to a target's `webSocketDebuggerUrl` and enables the Runtime domain.
    pub fn connect(url: &str) -> anyhow::Result<Self> {
        let (ws, _) = tungstenite::connect(url).with_context(|| format!("connect {url}"))?;
        if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            // A read that never returns would hang the test instead of failing it.
            s.set_read_timeout(Some(Duration::from_secs(30)))?;
        }
        let mut cdp = Self {
            ws,
            next_id: 1,
            exceptions: Vec::new(),
            console: Vec::new(),
        };
        cdp.call("Runtime.enable", json!({}))?;
        Ok(cdp)
    }

    /// Sends one command and waits for its result.
    pub fn call(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({ "id": id, "method": method, "params": params });
        self.ws.send(Message::text(msg.to_string()))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if Instant::now() > deadline {
                bail!("no answer to {method} within 60 s");
            }
            let text = match self
                .ws
                .read()
                .with_context(|| format!("read answer to {method}"))?
            {
                Message::Text(t) => t.to_string(),
                Message::Close(_) => bail!("DevTools socket closed while waiting for {method}"),
                _ => continue,
            };
            let v: Value = serde_json::from_str(&text)?;
            if v.get("id").and_then(Value::as_u64) == Some(id) {
                if let Some(err) = v.get("error") {
                    bail!("{method} failed: {err}");
                }
                return Ok(v.get("result").cloned().unwrap_or(Value::Null));
            }
            self.record_event(&v);
        }
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns its JSON value.
    pub fn evaluate(&mut self, expression: &str) -> anyhow::Result<Value> {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "awaitPromise": true, "returnByValue": true }),
        )?;
        if let Some(ex) = r.get("exceptionDetails") {
            let text = ex
                .pointer("/exception/description")
                .or_else(|| ex.get("text"))
                .map(|v| v.to_string())
                .unwrap_or_else(|| ex.to_string());
            return Err(anyhow!(
                "page threw while evaluating `{expression}`: {text}"
            ));
        }
        Ok(r.pointer("/result/value").cloned().unwrap_or(Value::Null))
    }

    fn record_event(&mut self, v: &Value) {
        match v.get("method").and_then(Value::as_str) {
            Some("Runtime.exceptionThrown") => {
                let d = v.pointer("/params/exceptionDetails");
                let text = d
                    .and_then(|d| {
                        d.pointer("/exception/description")
                            .or_else(|| d.get("text"))
                    })
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| v.to_string());
                self.exceptions.push(text);
            }
            Some("Runtime.consoleAPICalled") => {
                let args = v
                    .pointer("/params/args")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .map(|x| match x.get("value") {
                                Some(Value::String(s)) => s.clone(),
                                Some(other) => other.to_string(),
                                None => x
                                    .get("description")
                                    .map(|d| d.to_string())
                                    .unwrap_or_default(),
                            })
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_default();
                // The page logs its stats every second; keep them out of failure reports.
                if !args.starts_with("SHARDCAST_STATS") {
                    if self.console.len() == MAX_CONSOLE {
                        self.console.remove(0);
                    }
                    self.console.push(args);
                }
            }
            _ => {}
        }
    }
}
