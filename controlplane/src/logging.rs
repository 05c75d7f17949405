//! Log output of every role: human-readable text (the default) or one JSON object per line
//! (`--log-format json`) for log shippers. JSON lines carry the fields of the spans they were
//! logged in — `request_id` of an HTTP request or node API call, the room and participant of
//! a signaling session — so a line can be found by any of its ids.
//!
//! Owns the subscriber set-up only; what is logged is decided where it happens.

use std::io::Write;

use serde::{Deserialize, Serialize};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Installs the global subscriber (a second call is a no-op): `filter` as an `EnvFilter`
/// unless `RUST_LOG` is set, lines to stderr.
pub fn init(filter: &str, format: LogFormat) {
    let env = std::env::var("RUST_LOG").unwrap_or_else(|_| filter.to_string());
    let _ = tracing::subscriber::set_global_default(subscriber(&env, format, std::io::stderr));
}

/// The subscriber `init` installs, writing to `writer` (tests capture lines with it).
pub fn subscriber<W>(
    filter: &str,
    format: LogFormat,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(filter))
        .with_writer(writer);
    match format {
        LogFormat::Text => Box::new(builder.finish()),
        LogFormat::Json => Box::new(
            builder
                .json()
                .with_current_span(true)
                .with_span_list(true)
                .flatten_event(true)
                .finish(),
        ),
    }
}

/// A `MakeWriter` into a shared buffer, for tests that read what was logged.
#[derive(Clone, Default)]
pub struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
