//! A small blocking runner that drives one [`Client`] over a real UDP socket.
//!
//! Good enough for tests (one thread per client, a read timeout as the timer). It owns no
//! state beyond one receive buffer; it must never be used where many clients share a thread
//! (the bench harness has its own loop for that).

use std::io::ErrorKind;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use crate::client::{Client, ClientOutput};
use crate::error::ClientError;

/// Drives `client` on `socket` until `until(&client)` returns true (checked after every
/// turn) or `deadline` passes. Returns whether `until` was met.
///
/// The socket should be bound to the client's local address; datagrams are fed with the
/// socket's local address as destination.
pub fn run_blocking(
    client: &mut Client,
    socket: &UdpSocket,
    mut until: impl FnMut(&Client) -> bool,
    deadline: Instant,
) -> Result<bool, ClientError> {
    let local = socket.local_addr()?;
    let mut buf = vec![0u8; 2048];
    loop {
        let timeout = drain(client, socket)?;
        if until(client) {
            return Ok(true);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        let wait = timeout.min(deadline).saturating_duration_since(now);
        if wait.is_zero() {
            client.handle_timeout(now);
            continue;
        }
        // A zero read timeout means "block forever" to the OS, hence the floor.
        socket.set_read_timeout(Some(wait.max(Duration::from_micros(100))))?;
        match socket.recv_from(&mut buf) {
            Ok((n, source)) => client.handle_datagram(Instant::now(), source, local, &buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                client.handle_timeout(Instant::now());
            }
            // A previous send to a closed port surfaces here on Linux; not fatal.
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Sends every pending transmit; returns the client's next deadline.
fn drain(client: &mut Client, socket: &UdpSocket) -> Result<Instant, ClientError> {
    loop {
        match client.poll_output() {
            ClientOutput::Transmit {
                destination,
                contents,
                ..
            } => match socket.send_to(&contents, destination) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
                Err(e) => return Err(e.into()),
            },
            ClientOutput::Timeout(at) => return Ok(at),
        }
    }
}
