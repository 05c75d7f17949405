//! The bus's background tasks: one per registered room, the interest watch, the lease's
//! keep-alive and the collection of idle links.

use std::sync::Weak;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;

use super::super::interest;
use super::super::seq::RoomKey;
use super::DirectBus;
use crate::store::StoreError;

/// Keeps one room's registration in step with its local sessions (module docs).
pub(super) async fn room_task(
    bus: Weak<DirectBus>,
    room: RoomKey,
    mut wanted: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        // Sessions are here: register (until it works, or they are gone again).
        let Some(b) = bus.upgrade() else { return };
        if *wanted.borrow() {
            match b.register(&room, false).await {
                Ok(()) => {
                    backoff = Duration::from_millis(100);
                    if let Some(r) = b.state.lock().unwrap().rooms.get(&room) {
                        r.ready.send_replace(true);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, tenant = %room.0, room = %room.1,
                        "room bus: cannot register interest; retrying");
                    drop(b);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            }
        }
        let linger = b.opts.linger;
        drop(b);
        // Until the last session leaves, and stays gone for the linger time.
        loop {
            if wanted.wait_for(|w| !*w).await.is_err() {
                return;
            }
            let back = tokio::time::timeout(linger, wanted.wait_for(|w| *w))
                .await
                .is_ok_and(|r| r.is_ok());
            if !back {
                break;
            }
        }
        let Some(b) = bus.upgrade() else { return };
        b.deregister(&room).await;
        let mut st = b.state.lock().unwrap();
        let st = &mut *st;
        let Some(r) = st.rooms.get(&room) else { return };
        if *r.wanted.borrow() {
            // Back meanwhile: register again.
            r.ready.send_replace(false);
            continue;
        }
        st.rooms.remove(&room);
        st.numbering.forget(&room);
        st.tracker.forget_room(&room);
        return;
    }
}

/// The watch on every interest key; after a break, the registered rooms are re-read.
pub(super) async fn watch_interest(bus: Weak<DirectBus>) {
    let mut first = true;
    loop {
        let Some(b) = bus.upgrade() else { return };
        let watch = b.store.watch_prefix(&interest::prefix()).await;
        let mut stream = match watch {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "room bus: interest watch failed, retrying");
                drop(b);
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        if !first {
            b.relist().await;
        }
        first = false;
        drop(b);
        while let Some(item) = stream.next().await {
            let Some(b) = bus.upgrade() else { return };
            match item {
                Ok(ev) => b.on_interest(ev.kind, &ev.key, &ev.value, ev.revision),
                Err(e) => {
                    tracing::warn!(error = %e, "room bus: interest watch broke, re-watching");
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Keeps the bus lease alive. A lease that ran out (a long store outage) is reported to the
/// hub through the inbox: it rewrites its sessions' records first (the session lease most
/// likely ran out too), then has every registered room's key written again on a new lease
/// ([`DirectBus::reregister`]) — in that order, so that no instance resyncs a room from a
/// store that lacks this instance's participants.
pub(super) async fn keep_lease(bus: Weak<DirectBus>) {
    loop {
        let Some(b) = bus.upgrade() else { return };
        let every = (b.opts.lease / 3).max(Duration::from_millis(300));
        let current = *b.lease.lock().await;
        if let Some(lease) = current {
            match b.store.keep_alive(lease).await {
                Ok(()) => {}
                Err(StoreError::LeaseNotFound(_)) => {
                    // Unless replaced meanwhile (a rewrite found it first).
                    if b.forget_lease(lease).await {
                        tracing::warn!("room bus: the interest lease ran out; registering again");
                        b.inbox.lease_lost();
                    }
                }
                Err(e) => tracing::warn!(error = %e, "room bus: lease keep-alive failed"),
            }
        }
        drop(b);
        tokio::time::sleep(every).await;
    }
}

/// Drops links to instances no registered room shares any more, once they are idle.
pub(super) async fn collect_links(bus: Weak<DirectBus>) {
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let Some(b) = bus.upgrade() else { return };
        let mut st = b.state.lock().unwrap();
        let st = &mut *st;
        let rooms = &st.rooms;
        st.links.retain(|instance, link| {
            let used = rooms.values().any(|r| r.peers.contains_key(instance));
            let keep = used || !link.idle();
            if !keep {
                link.close();
            }
            keep
        });
    }
}
