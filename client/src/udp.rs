//! Small runners that drive one [`Client`] over a real UDP socket: [`run_blocking`] on the
//! caller's thread, [`spawn_driver`] on a thread of its own while the caller reads the
//! shared client's stats.
//!
//! Good enough for tests (one thread per client, a read timeout as the timer). They own no
//! state beyond one receive buffer; they must never be used where many clients share a
//! thread (the bench harness has its own loop for that).

use std::io::ErrorKind;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
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

/// Drives `client` on `socket` on a new thread until `stop` is set, so a test can read (or
/// renegotiate) the shared client while media flows. The lock is held only for one turn;
/// the socket waits at most 5 ms for a datagram, which is also the timer's resolution.
/// The caller sets `stop` and joins the handle to end it.
pub fn spawn_driver(
    client: Arc<Mutex<Client>>,
    socket: UdpSocket,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let Ok(local) = socket.local_addr() else {
            return;
        };
        if socket
            .set_read_timeout(Some(Duration::from_millis(5)))
            .is_err()
        {
            return;
        }
        let mut buf = vec![0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            {
                let Ok(mut c) = client.lock() else { return };
                c.handle_timeout(Instant::now());
                while let ClientOutput::Transmit {
                    destination,
                    contents,
                    ..
                } = c.poll_output()
                {
                    let _ = socket.send_to(&contents, destination);
                }
            }
            if let Ok((n, source)) = socket.recv_from(&mut buf) {
                let Ok(mut c) = client.lock() else { return };
                c.handle_datagram(Instant::now(), source, local, &buf[..n]);
            }
        }
    })
}
