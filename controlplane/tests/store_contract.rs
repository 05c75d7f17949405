//! One contract for every `Store` backend: the embedded redb store and a real etcd.
//!
//! Each `contract_*` function takes a fresh store; the `backends!` macro runs it against
//! both. Timing-dependent cases (lease expiry) poll with a generous deadline and never assert
//! on speed.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use shardcast_controlplane::auth::PasswordLimiter;
use shardcast_controlplane::ids::{Identity, NodeId, RoomName, TenantId};
use shardcast_controlplane::services::now_unix_ms;
use shardcast_controlplane::services::seats;
use shardcast_controlplane::store::typed::{get_json, update_json};
use shardcast_controlplane::store::{
    keys, nodes, CasOutcome, EmbeddedStore, End, Expect, Store, StoreError, TxnWrite, WatchEvent,
    WatchKind,
};
use support::etcd::EtcdProcess;

/// Holds whatever must outlive the store (temp dir or etcd process).
enum Guard {
    Dir(#[allow(dead_code)] tempfile::TempDir),
    Etcd(#[allow(dead_code)] EtcdProcess),
}

async fn embedded() -> (Arc<dyn Store>, Guard) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).await.unwrap();
    (Arc::new(store), Guard::Dir(dir))
}

async fn etcd() -> (Arc<dyn Store>, Guard) {
    let process = EtcdProcess::start().await;
    let store = process.store().await;
    (Arc::new(store), Guard::Etcd(process))
}

macro_rules! backends {
    ($($name:ident),* $(,)?) => {
        mod on_embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (store, _guard) = super::embedded().await;
                    super::$name(store).await;
                }
            )*
        }
        mod on_etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (store, _guard) = super::etcd().await;
                    super::$name(store).await;
                }
            )*
        }
    };
}

backends!(
    contract_kv_basics,
    contract_prefixes,
    contract_compare_and_swap,
    contract_leases_revoke,
    contract_lease_expiry,
    contract_lease_kept_alive,
    contract_watch,
    contract_typed_update_is_atomic,
    contract_room_binding_first_wins,
    contract_rebinding_a_room_moves_it_once,
    contract_drain_marks_are_seen,
    contract_a_stopping_mark_never_takes_an_operators,
    contract_password_limit_is_shared,
    contract_seats_admit_exactly_max_under_concurrent_joins,
    contract_transactions_are_all_or_nothing,
    contract_limited_listing_reads_either_end,
    contract_updates_keep_the_lease,
);

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn contract_kv_basics(store: Arc<dyn Store>) {
    assert_eq!(store.get("/t/a").await.unwrap(), None);
    let r1 = store.put("/t/a", b"one".to_vec(), None).await.unwrap();
    let r2 = store.put("/t/a", b"two".to_vec(), None).await.unwrap();
    assert!(r2 > r1, "revisions grow: {r1} then {r2}");
    let kv = store.get("/t/a").await.unwrap().unwrap();
    assert_eq!(kv.value, b"two");
    assert_eq!(kv.mod_revision, r2);
    assert_eq!(kv.lease, None);
    assert!(store.delete("/t/a").await.unwrap());
    assert!(!store.delete("/t/a").await.unwrap());
    assert_eq!(store.get("/t/a").await.unwrap(), None);
}

async fn contract_prefixes(store: Arc<dyn Store>) {
    for key in ["/p/a/2", "/p/a/1", "/p/ab/1", "/p/b/1", "/q/a/1"] {
        store.put(key, key.as_bytes().to_vec(), None).await.unwrap();
    }
    let keys: Vec<String> = store
        .list_prefix("/p/a/")
        .await
        .unwrap()
        .into_iter()
        .map(|kv| kv.key)
        .collect();
    assert_eq!(keys, ["/p/a/1", "/p/a/2"], "key order, no /p/ab/ leak");
    assert_eq!(store.delete_prefix("/p/a").await.unwrap(), 3);
    let rest: Vec<String> = store
        .list_prefix("/")
        .await
        .unwrap()
        .into_iter()
        .map(|kv| kv.key)
        .collect();
    assert_eq!(rest, ["/p/b/1", "/q/a/1"]);
}

async fn contract_compare_and_swap(store: Arc<dyn Store>) {
    let first = store
        .compare_and_swap("/c/k", Expect::Absent, b"v1".to_vec(), None)
        .await
        .unwrap();
    let CasOutcome::Swapped { revision: r1 } = first else {
        panic!("create on an absent key must succeed: {first:?}");
    };
    let again = store
        .compare_and_swap("/c/k", Expect::Absent, b"other".to_vec(), None)
        .await
        .unwrap();
    match again {
        CasOutcome::Conflict { current: Some(kv) } => {
            assert_eq!(kv.value, b"v1");
            assert_eq!(kv.mod_revision, r1);
        }
        other => panic!("second create must conflict with the current value: {other:?}"),
    }
    let stale = store
        .compare_and_swap("/c/k", Expect::Revision(r1 + 1000), b"x".to_vec(), None)
        .await
        .unwrap();
    assert!(!stale.swapped());
    let ok = store
        .compare_and_swap("/c/k", Expect::Revision(r1), b"v2".to_vec(), None)
        .await
        .unwrap();
    let CasOutcome::Swapped { revision: r2 } = ok else {
        panic!("update at the current revision must succeed: {ok:?}");
    };
    assert_eq!(store.get("/c/k").await.unwrap().unwrap().value, b"v2");
    assert!(
        !store
            .compare_and_swap("/c/missing", Expect::Revision(r2), b"x".to_vec(), None)
            .await
            .unwrap()
            .swapped(),
        "a revision compare on a missing key fails"
    );
    assert!(!store.compare_and_delete("/c/k", r1).await.unwrap());
    assert!(store.get("/c/k").await.unwrap().is_some());
    assert!(store.compare_and_delete("/c/k", r2).await.unwrap());
    assert!(store.get("/c/k").await.unwrap().is_none());
}

async fn contract_leases_revoke(store: Arc<dyn Store>) {
    let lease = store.grant_lease(Duration::from_secs(30)).await.unwrap();
    store.put("/l/a", b"x".to_vec(), Some(lease)).await.unwrap();
    store.put("/l/b", b"y".to_vec(), None).await.unwrap();
    assert_eq!(store.get("/l/a").await.unwrap().unwrap().lease, Some(lease));
    store.keep_alive(lease).await.unwrap();
    store.revoke_lease(lease).await.unwrap();
    assert_eq!(
        store.get("/l/a").await.unwrap(),
        None,
        "revoked lease's key is gone"
    );
    assert!(
        store.get("/l/b").await.unwrap().is_some(),
        "unleased key stays"
    );
    let kept = store.keep_alive(lease).await;
    assert!(
        matches!(kept, Err(StoreError::LeaseNotFound(l)) if l == lease),
        "{kept:?}"
    );
    assert!(matches!(
        store.put("/l/c", b"z".to_vec(), Some(lease)).await,
        Err(StoreError::LeaseNotFound(_))
    ));
    // Revoking twice is fine.
    store.revoke_lease(lease).await.unwrap();
}

async fn contract_lease_expiry(store: Arc<dyn Store>) {
    let lease = store.grant_lease(Duration::from_secs(1)).await.unwrap();
    store
        .put("/e/node", b"alive".to_vec(), Some(lease))
        .await
        .unwrap();
    let s = store.clone();
    eventually("the leased key to vanish", move || {
        let s = s.clone();
        async move { s.get("/e/node").await.unwrap().is_none() }
    })
    .await;
    let kept = store.keep_alive(lease).await;
    assert!(
        matches!(kept, Err(StoreError::LeaseNotFound(_))),
        "{kept:?}"
    );
}

async fn contract_lease_kept_alive(store: Arc<dyn Store>) {
    let lease = store.grant_lease(Duration::from_secs(2)).await.unwrap();
    store
        .put("/k/node", b"alive".to_vec(), Some(lease))
        .await
        .unwrap();
    // Keep it alive well past its ttl: it must stay.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        store.keep_alive(lease).await.unwrap();
    }
    assert!(store.get("/k/node").await.unwrap().is_some());
    store.revoke_lease(lease).await.unwrap();
}

async fn next_event(stream: &mut shardcast_controlplane::store::WatchStream) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .expect("a watch event within 20 s")
        .expect("the watch stream ended")
        .expect("a watch error")
}

async fn contract_watch(store: Arc<dyn Store>) {
    let mut watch = store.watch_prefix("/w/").await.unwrap();
    let r1 = store.put("/w/a", b"1".to_vec(), None).await.unwrap();
    store.put("/x/ignored", b"no".to_vec(), None).await.unwrap();
    let r2 = store.put("/w/b", b"2".to_vec(), None).await.unwrap();
    store.delete("/w/a").await.unwrap();
    let lease = store.grant_lease(Duration::from_secs(1)).await.unwrap();
    store
        .put("/w/leased", b"l".to_vec(), Some(lease))
        .await
        .unwrap();

    let e = next_event(&mut watch).await;
    assert_eq!(
        (e.kind, e.key.as_str(), e.value.as_slice(), e.revision),
        (WatchKind::Put, "/w/a", &b"1"[..], r1)
    );
    let e = next_event(&mut watch).await;
    assert_eq!(
        (e.kind, e.key.as_str(), e.revision),
        (WatchKind::Put, "/w/b", r2)
    );
    let e = next_event(&mut watch).await;
    assert_eq!((e.kind, e.key.as_str()), (WatchKind::Delete, "/w/a"));
    assert!(e.revision > r2);
    let e = next_event(&mut watch).await;
    assert_eq!((e.kind, e.key.as_str()), (WatchKind::Put, "/w/leased"));
    let e = next_event(&mut watch).await;
    assert_eq!(
        (e.kind, e.key.as_str()),
        (WatchKind::Delete, "/w/leased"),
        "lease expiry shows up as a delete"
    );
}

async fn contract_typed_update_is_atomic(store: Arc<dyn Store>) {
    store.put("/u/counter", b"0".to_vec(), None).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..5 {
                update_json::<u64, StoreError, _>(s.as_ref(), "/u/counter", |n| {
                    *n += 1;
                    Ok(())
                })
                .await
                .unwrap()
                .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let n = get_json::<u64>(store.as_ref(), "/u/counter")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n.value, 40, "no increment lost");
    let missing = update_json::<u64, StoreError, _>(store.as_ref(), "/u/none", |_| Ok(()))
        .await
        .unwrap();
    assert_eq!(missing, None);
}

async fn contract_room_binding_first_wins(store: Arc<dyn Store>) {
    let tenant = TenantId::parse("acme").unwrap();
    let room = RoomName::parse("standup").unwrap();
    let mut tasks = Vec::new();
    for n in 0..6 {
        let (s, t, r) = (store.clone(), tenant.clone(), room.clone());
        tasks.push(tokio::spawn(async move {
            let node = NodeId::parse(format!("node-{n}")).unwrap();
            nodes::bind_room(s.as_ref(), &t, &r, &node, 0)
                .await
                .unwrap()
                .node
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        winners.push(t.await.unwrap());
    }
    winners.dedup();
    assert_eq!(
        winners.len(),
        1,
        "every placer sees the same node: {winners:?}"
    );
    let stored = nodes::binding(store.as_ref(), &tenant, &room)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.node, winners[0]);
    nodes::unbind_room(store.as_ref(), &tenant, &room)
        .await
        .unwrap();
    assert_eq!(
        nodes::binding(store.as_ref(), &tenant, &room)
            .await
            .unwrap(),
        None
    );
}

/// Instances that re-place one room (its node drained or gone) from the binding they read
/// all end up on the node the first of them chose: the room is never split.
async fn contract_rebinding_a_room_moves_it_once(store: Arc<dyn Store>) {
    let tenant = TenantId::parse("acme").unwrap();
    let room = RoomName::parse("moving").unwrap();
    let old = NodeId::parse("node-old").unwrap();
    nodes::bind_room(store.as_ref(), &tenant, &room, &old, 0)
        .await
        .unwrap();
    let read = nodes::binding_versioned(store.as_ref(), &tenant, &room)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.value.node, old);
    let mut tasks = Vec::new();
    for n in 0..8 {
        let (s, t, r) = (store.clone(), tenant.clone(), room.clone());
        let revision = read.revision;
        tasks.push(tokio::spawn(async move {
            let node = NodeId::parse(format!("node-{n}")).unwrap();
            nodes::rebind_room(s.as_ref(), &t, &r, revision, &node, 1)
                .await
                .unwrap()
                .node
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        winners.push(t.await.unwrap());
    }
    winners.dedup();
    assert_eq!(winners.len(), 1, "one node for the room: {winners:?}");
    assert_ne!(winners[0], old);
    let stored = nodes::binding(store.as_ref(), &tenant, &room)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.node, winners[0]);
    // A rebind from a revision that no longer holds leaves the binding as it is.
    let late = NodeId::parse("node-late").unwrap();
    let held = nodes::rebind_room(store.as_ref(), &tenant, &room, read.revision, &late, 2)
        .await
        .unwrap();
    assert_eq!(held.node, winners[0]);
}

/// A node marked draining before the watch starts, and one marked after, both come out of
/// `drain_marks`; an undrain does not.
async fn contract_drain_marks_are_seen(store: Arc<dyn Store>) {
    let before = NodeId::parse("node-before").unwrap();
    let after = NodeId::parse("node-after").unwrap();
    nodes::set_draining(store.as_ref(), &before, true, 1)
        .await
        .unwrap();
    let mut marks = nodes::drain_marks(store.clone());
    async fn next(marks: &mut tokio::sync::mpsc::Receiver<NodeId>) -> NodeId {
        tokio::time::timeout(Duration::from_secs(10), marks.recv())
            .await
            .expect("a drain mark within 10 s")
            .unwrap()
    }
    assert_eq!(next(&mut marks).await, before);
    nodes::set_draining(store.as_ref(), &before, false, 2)
        .await
        .unwrap();
    nodes::set_draining(store.as_ref(), &after, true, 3)
        .await
        .unwrap();
    assert_eq!(next(&mut marks).await, after);
}

/// A stopping node's own drain mark goes when it clears it; an operator's mark, rewritten by a
/// stopping node, stays the operator's and survives that clearing.
async fn contract_a_stopping_mark_never_takes_an_operators(store: Arc<dyn Store>) {
    let own = NodeId::parse("node-own").unwrap();
    let drained = NodeId::parse("node-drained").unwrap();
    nodes::mark_stopping(store.as_ref(), &own, 1).await.unwrap();
    assert!(nodes::is_draining(store.as_ref(), &own).await.unwrap());
    nodes::clear_stopping(store.as_ref(), &own).await.unwrap();
    assert!(!nodes::is_draining(store.as_ref(), &own).await.unwrap());

    nodes::set_draining(store.as_ref(), &drained, true, 1)
        .await
        .unwrap();
    let mut marks = nodes::drain_marks(store.clone());
    let first = tokio::time::timeout(Duration::from_secs(10), marks.recv()).await;
    assert_eq!(first.unwrap().unwrap(), drained);
    nodes::mark_stopping(store.as_ref(), &drained, 2)
        .await
        .unwrap();
    // Rewritten, so watchers see it again.
    let again = tokio::time::timeout(Duration::from_secs(10), marks.recv()).await;
    assert_eq!(again.unwrap().unwrap(), drained);
    nodes::clear_stopping(store.as_ref(), &drained)
        .await
        .unwrap();
    assert!(nodes::is_draining(store.as_ref(), &drained).await.unwrap());
}

// ---- embedded only: persistence across restarts ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let last_revision;
    {
        let store = EmbeddedStore::open(dir.path()).await.unwrap();
        store.put("/r/kept", b"v".to_vec(), None).await.unwrap();
        let lease = store.grant_lease(Duration::from_secs(600)).await.unwrap();
        last_revision = store
            .put("/r/leased", b"l".to_vec(), Some(lease))
            .await
            .unwrap();
    }
    let store = EmbeddedStore::open(dir.path()).await.unwrap();
    assert_eq!(store.get("/r/kept").await.unwrap().unwrap().value, b"v");
    let leased = store.get("/r/leased").await.unwrap().unwrap();
    let lease = leased.lease.expect("the lease survives too");
    store.keep_alive(lease).await.unwrap();
    let next = store.put("/r/new", b"n".to_vec(), None).await.unwrap();
    assert!(
        next > last_revision,
        "revisions keep growing across restarts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_lease_expires_while_down() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = EmbeddedStore::open(dir.path()).await.unwrap();
        let lease = store.grant_lease(Duration::from_millis(300)).await.unwrap();
        store
            .put("/d/node", b"x".to_vec(), Some(lease))
            .await
            .unwrap();
        assert!(store.get("/d/node").await.unwrap().is_some());
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let store = Arc::new(EmbeddedStore::open(dir.path()).await.unwrap());
    let s = store.clone();
    eventually(
        "the expired lease's key to be swept after restart",
        move || {
            let s = s.clone();
            async move { s.get("/d/node").await.unwrap().is_none() }
        },
    )
    .await;
}

/// The room-password limit is shared by instances: limiters of two control planes on one
/// store count into the same window, concurrent failures are never lost, and the window's
/// key goes away by itself (its lease).
async fn contract_password_limit_is_shared(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let a = PasswordLimiter::new(3, Duration::from_secs(2));
    let b = PasswordLimiter::new(3, Duration::from_secs(2));
    let (t, r) = (TenantId::parse("t").unwrap(), RoomName::parse("r").unwrap());
    let ip: std::net::IpAddr = "192.0.2.9".parse().unwrap();
    let now = now_unix_ms();
    assert_eq!(a.record_failure(s, &t, &r, ip, now).await.unwrap(), 1);
    assert_eq!(b.record_failure(s, &t, &r, ip, now).await.unwrap(), 2);
    assert!(b.check(s, &t, &r, ip, now).await.unwrap().is_ok());
    assert_eq!(a.record_failure(s, &t, &r, ip, now).await.unwrap(), 3);
    assert!(a.check(s, &t, &r, ip, now).await.unwrap().is_err());
    assert!(b.check(s, &t, &r, ip, now).await.unwrap().is_err());
    let key = keys::password_failures(&t, &r, ip);
    assert!(s.get(&key).await.unwrap().unwrap().lease.is_some());
    eventually("the window's key expires with its lease", || async {
        s.get(&key).await.unwrap().is_none()
    })
    .await;
    assert!(a.check(s, &t, &r, ip, now_unix_ms()).await.unwrap().is_ok());

    // Eight failures at once from two instances: compare-and-swap loses none.
    let c = PasswordLimiter::new(100, Duration::from_secs(60));
    let d = PasswordLimiter::new(100, Duration::from_secs(60));
    let other: std::net::IpAddr = "2001:db8::7".parse().unwrap();
    let now = now_unix_ms();
    let attempts = (0..8).map(|i| {
        let l = if i % 2 == 0 { &c } else { &d };
        let (t, r) = (&t, &r);
        async move { l.record_failure(s, t, r, other, now).await.unwrap() }
    });
    let mut counts = futures_util::future::join_all(attempts).await;
    counts.sort_unstable();
    assert_eq!(counts, (1..=8).collect::<Vec<u32>>());
    c.record_success(s, &t, &r, other).await.unwrap();

    // Ten attempts at once against a limit of 3, counted before their passwords are
    // verified: exactly 3 may go on to verification, the rest are refused.
    let e = PasswordLimiter::new(3, Duration::from_secs(60));
    let third: std::net::IpAddr = "198.51.100.3".parse().unwrap();
    let attempts = (0..10).map(|_| {
        let (t, r, e) = (&t, &r, &e);
        async move { e.begin_attempt(s, t, r, third, now).await.unwrap() }
    });
    let verdicts = futures_util::future::join_all(attempts).await;
    let mut allowed: Vec<u32> = verdicts.iter().filter_map(|v| v.ok()).collect();
    allowed.sort_unstable();
    assert_eq!(allowed, [1, 2, 3], "{verdicts:?}");
    assert!(s
        .get(&keys::password_failures(&t, &r, other))
        .await
        .unwrap()
        .is_none());
}

/// `max_participants` = 4 and 16 joins at once (as 16 sockets on several instances would
/// take seats): exactly 4 get one, the rest are `room_full`. A rejoin keeps its seat; a
/// released seat goes to the next join; a seat left behind by a holder that never wrote a
/// joined record is freed once it is older than the grace period.
async fn contract_seats_admit_exactly_max_under_concurrent_joins(store: Arc<dyn Store>) {
    let tenant = TenantId::parse("t").unwrap();
    let room = RoomName::parse("full").unwrap();
    let now = now_unix_ms();
    let joins = (0..16).map(|i| {
        let (store, tenant, room) = (store.clone(), tenant.clone(), room.clone());
        tokio::spawn(async move {
            let who = Identity::parse(format!("p{i}")).unwrap();
            (
                i,
                seats::take(store.as_ref(), &tenant, &room, &who, 4, now).await,
            )
        })
    });
    let mut admitted = Vec::new();
    for join in futures_util::future::join_all(joins).await {
        let (i, result) = join.unwrap();
        match result {
            Ok(()) => admitted.push(i),
            Err(e) => assert_eq!(e.code(), "room_full", "p{i}: {e}"),
        }
    }
    assert_eq!(admitted.len(), 4, "admitted {admitted:?}");
    let stored: seats::Seats = get_json(store.as_ref(), &keys::seats(&tenant, &room))
        .await
        .unwrap()
        .unwrap()
        .value;
    assert_eq!(stored.seats.len(), 4);

    let holder = Identity::parse(format!("p{}", admitted[0])).unwrap();
    let outsider = Identity::parse("late").unwrap();
    // A holder joining again keeps its one seat; an outsider is refused.
    seats::take(store.as_ref(), &tenant, &room, &holder, 4, now)
        .await
        .unwrap();
    let full = seats::take(store.as_ref(), &tenant, &room, &outsider, 4, now).await;
    assert_eq!(full.unwrap_err().code(), "room_full");
    // Released: the outsider gets it.
    seats::release(store.as_ref(), &tenant, &room, &holder)
        .await
        .unwrap();
    seats::take(store.as_ref(), &tenant, &room, &outsider, 4, now)
        .await
        .unwrap();
    // None of the holders has a joined participant record: within the grace period their
    // seats stand, after it they are freed for new joins.
    let next = Identity::parse("next").unwrap();
    let within = now + seats::SEAT_GRACE_MS / 2;
    let refused = seats::take(store.as_ref(), &tenant, &room, &next, 4, within).await;
    assert_eq!(refused.unwrap_err().code(), "room_full");
    let after = now + seats::SEAT_GRACE_MS + 1;
    seats::take(store.as_ref(), &tenant, &room, &next, 4, after)
        .await
        .unwrap();
}

async fn contract_transactions_are_all_or_nothing(store: Arc<dyn Store>) {
    let put = |k: &str, v: &str| TxnWrite::Put {
        key: k.into(),
        value: v.as_bytes().to_vec(),
        lease: None,
    };
    store.put("/x/gone", b"soon".to_vec(), None).await.unwrap();
    let writes = vec![
        put("/x/a", "1"),
        put("/x/b", "2"),
        TxnWrite::Delete {
            key: "/x/gone".into(),
        },
    ];
    assert!(store
        .transaction(vec![("/x/a".into(), Expect::Absent)], writes.clone())
        .await
        .unwrap());
    assert_eq!(store.get("/x/b").await.unwrap().unwrap().value, b"2");
    assert_eq!(store.get("/x/gone").await.unwrap(), None);
    // /x/a exists now: the same transaction writes nothing.
    store.put("/x/gone", b"back".to_vec(), None).await.unwrap();
    let before = store.get("/x/b").await.unwrap().unwrap().mod_revision;
    assert!(!store
        .transaction(
            vec![("/x/a".into(), Expect::Absent)],
            vec![put("/x/b", "3"), writes[2].clone()]
        )
        .await
        .unwrap());
    assert_eq!(
        store.get("/x/b").await.unwrap().unwrap().mod_revision,
        before
    );
    assert!(store.get("/x/gone").await.unwrap().is_some());
    // On a revision; a write on a lease that is gone fails the whole transaction.
    let a = store.get("/x/a").await.unwrap().unwrap().mod_revision;
    let lease = store.grant_lease(Duration::from_secs(30)).await.unwrap();
    store.revoke_lease(lease).await.unwrap();
    let on_dead_lease = vec![
        put("/x/c", "1"),
        TxnWrite::Put {
            key: "/x/d".into(),
            value: b"1".to_vec(),
            lease: Some(lease),
        },
    ];
    let r = store
        .transaction(vec![("/x/a".into(), Expect::Revision(a))], on_dead_lease)
        .await;
    assert!(matches!(r, Err(StoreError::LeaseNotFound(_))), "{r:?}");
    assert_eq!(store.get("/x/c").await.unwrap(), None);
    // Deleting what is not there is no error.
    assert!(store
        .transaction(
            Vec::new(),
            vec![TxnWrite::Delete {
                key: "/x/never".into()
            }]
        )
        .await
        .unwrap());
}

async fn contract_limited_listing_reads_either_end(store: Arc<dyn Store>) {
    for key in [
        "/l/a/1", "/l/a/2", "/l/a/3", "/l/a/4", "/l/ab/1", "/l/b/1", "/l/0",
    ] {
        store.put(key, key.as_bytes().to_vec(), None).await.unwrap();
    }
    let read = |end, limit| {
        let store = store.clone();
        async move {
            store
                .list_prefix_limited("/l/a/", limit, end)
                .await
                .unwrap()
                .into_iter()
                .map(|kv| kv.key)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(read(End::First, 2).await, ["/l/a/1", "/l/a/2"]);
    assert_eq!(read(End::Last, 2).await, ["/l/a/3", "/l/a/4"], "key order");
    assert_eq!(
        read(End::Last, 10).await.len(),
        4,
        "no /l/ab/ or /l/b/ leak"
    );
    assert_eq!(read(End::First, 10).await.len(), 4);
    assert!(read(End::First, 0).await.is_empty());
}

/// A record on a lease (a participant's, on its instance's lease) stays on it when updated.
async fn contract_updates_keep_the_lease(store: Arc<dyn Store>) {
    let lease = store.grant_lease(Duration::from_secs(30)).await.unwrap();
    store
        .put("/u/k", serde_json::to_vec(&1u32).unwrap(), Some(lease))
        .await
        .unwrap();
    update_json::<u32, StoreError, _>(store.as_ref(), "/u/k", |v| {
        *v += 1;
        Ok(())
    })
    .await
    .unwrap();
    let kv = store.get("/u/k").await.unwrap().unwrap();
    assert_eq!(kv.lease, Some(lease));
    store.revoke_lease(lease).await.unwrap();
    assert_eq!(store.get("/u/k").await.unwrap(), None);
}
