//! Room data over data channels (docs/PROTOCOL.md, "Data channels"): str0m clients over real
//! DTLS/SCTP in virtual time. A message on a member's `shardcast` (reliable) or
//! `shardcast-lossy` channel reaches every other member of the room that opened the same
//! label, wrapped in an envelope naming the sender; other labels are never relayed; a sender
//! without the grant, over the size limit or over its budget is dropped and counted; a
//! receiver that stops reading costs the others nothing; members on another shard get it
//! through the shard message.

mod support;

use std::time::Duration;

use shardcast_sfu::data::{open_envelope, DataDrop, DataKind, LOSSY_LABEL, RELIABLE_LABEL};
use shardcast_sfu::{ShardId, ShardMessage};
use support::World;

/// Members `names` (receive-only clients: their offer negotiates SCTP), connected, each with
/// the room-data channels `open(name)` says: (reliable, lossy).
fn room(seed: u64, names: &[&str], open: impl Fn(&str) -> (bool, bool)) -> World {
    let mut w = World::new(seed);
    for n in names {
        w.add_subscriber(n);
    }
    assert!(w.run_until(Duration::from_secs(5), |w| w.all_connected()));
    // SCTP comes up after DTLS.
    w.run_for(Duration::from_millis(500));
    for m in &mut w.members {
        let (reliable, lossy) = open(&m.client.name);
        if reliable {
            m.client.open_channel(RELIABLE_LABEL, false);
        }
        if lossy {
            m.client.open_channel(LOSSY_LABEL, true);
        }
    }
    w.run_for(Duration::from_millis(500));
    w
}

/// What member `idx` received on `label`, opened: (sender, text, payload).
fn got(w: &World, idx: usize, label: &str) -> Vec<(String, bool, Vec<u8>)> {
    w.members[idx]
        .client
        .received_on(label)
        .into_iter()
        .map(|b| {
            let (who, text, payload) = open_envelope(b).expect("an envelope");
            (who.to_string(), text, payload.to_vec())
        })
        .collect()
}

fn text(who: &str, s: &str) -> (String, bool, Vec<u8>) {
    (who.into(), true, s.as_bytes().to_vec())
}

#[test]
fn a_message_reaches_every_other_member_on_the_same_label_with_its_sender() {
    let mut w = room(1, &["alice", "bob", "carol"], |n| (true, n != "carol"));
    let (alice, bob, carol) = (0, 1, 2);
    let c = &mut w.members[alice].client;
    assert!(c.send_on_channel(RELIABLE_LABEL, false, b"hello"));
    assert!(c.send_on_channel(RELIABLE_LABEL, true, &[0, 1, 2, 255]));
    assert!(c.send_on_channel(LOSSY_LABEL, false, b"cursor 10 20"));
    assert!(c.send_on_channel("ctl", false, b"not room data"));
    w.run_for(Duration::from_millis(500));

    let binary = ("alice".to_string(), false, vec![0, 1, 2, 255]);
    for who in [bob, carol] {
        assert_eq!(
            got(&w, who, RELIABLE_LABEL),
            [text("alice", "hello"), binary.clone()],
            "member {who}: in order, text and binary told apart, the sender named"
        );
        assert!(w.members[who].client.received_on("ctl").is_empty());
    }
    assert_eq!(got(&w, bob, LOSSY_LABEL), [text("alice", "cursor 10 20")]);
    assert!(
        got(&w, carol, LOSSY_LABEL).is_empty(),
        "carol opened no lossy channel"
    );
    assert!(
        got(&w, alice, RELIABLE_LABEL).is_empty(),
        "never echoed to the sender"
    );
    // Every delivery is a binary message (the envelope), whatever the sender sent.
    assert!(w.members[bob]
        .client
        .channel_data
        .iter()
        .all(|(_, b, _)| *b));

    let s = w.core.stats();
    assert_eq!(s.data_in, 3, "the ctl message is not room data");
    assert_eq!(s.data_out, 5);
    assert_eq!(s.data_drops.iter().sum::<u64>(), 0);
    // Each message also goes once to the node's other shards.
    let kinds: Vec<DataKind> = w
        .to_every_shard
        .iter()
        .filter_map(|m| match m {
            ShardMessage::Data { kind, .. } => Some(*kind),
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds,
        [DataKind::Reliable, DataKind::Reliable, DataKind::Lossy]
    );
}

#[test]
fn a_sender_without_the_grant_too_large_or_over_its_budget_is_dropped_and_counted() {
    let mut w = room(2, &["alice", "bob"], |_| (true, false));
    let (alice, bob) = (0, 1);
    let alice_peer = w.members[alice].peer;

    w.core.set_can_send_data(alice_peer, false).unwrap();
    assert!(w.members[alice]
        .client
        .send_on_channel(RELIABLE_LABEL, false, b"muted"));
    w.run_for(Duration::from_millis(300));
    assert!(got(&w, bob, RELIABLE_LABEL).is_empty());
    assert_eq!(w.core.stats().data_drops_for(DataDrop::NotAllowed), 1);

    w.core.set_can_send_data(alice_peer, true).unwrap();
    let c = &mut w.members[alice].client;
    assert!(c.send_on_channel(RELIABLE_LABEL, false, b"back"));
    assert!(c.send_on_channel(RELIABLE_LABEL, true, &vec![7; 16 * 1024 + 1]));
    w.run_for(Duration::from_millis(300));
    assert_eq!(got(&w, bob, RELIABLE_LABEL), [text("alice", "back")]);
    assert_eq!(w.core.stats().data_drops_for(DataDrop::TooLarge), 1);

    // The budget: a burst of 100 messages (less the one sent), then 50 a second.
    for i in 0..150 {
        let c = &mut w.members[alice].client;
        assert!(c.send_on_channel(RELIABLE_LABEL, false, format!("m{i}").as_bytes()));
    }
    w.run_for(Duration::from_millis(300));
    let limited = w.core.stats().data_drops_for(DataDrop::RateLimited);
    let delivered = got(&w, bob, RELIABLE_LABEL).len() - 1;
    assert_eq!(delivered as u64 + limited, 150);
    assert!(
        (99..=115).contains(&delivered),
        "the burst and what 0.3 s refilled: {delivered}"
    );
    assert_eq!(w.core.stats().data_in, 153);
}

#[test]
fn a_receiver_that_stops_reading_is_skipped_and_costs_the_others_nothing() {
    let mut w = room(3, &["alice", "bob", "carol"], |_| (true, false));
    let (alice, bob, carol) = (0, 1, 2);
    // bob stops reading (and acknowledging): his SCTP send buffer on the server fills.
    w.members[bob].client.alive = false;
    let payload = vec![b'x'; 8 * 1024];
    for _ in 0..30 {
        assert!(w.members[alice]
            .client
            .send_on_channel(RELIABLE_LABEL, true, &payload));
        w.run_for(Duration::from_millis(20));
    }
    w.run_for(Duration::from_secs(1));
    assert_eq!(
        got(&w, carol, RELIABLE_LABEL).len(),
        30,
        "carol gets every message"
    );
    let behind = w.core.stats().data_drops_for(DataDrop::ReceiverBehind);
    assert!(
        (5..30).contains(&behind),
        "bob's buffer took some, then the rest were dropped for him: {behind}"
    );
}

#[test]
fn a_lossy_message_never_waits_behind_more_than_the_lossy_backlog() {
    let mut w = room(5, &["alice", "bob", "carol"], |_| (false, true));
    let (alice, bob, carol) = (0, 1, 2);
    w.members[bob].client.alive = false;
    // Twenty 2-KiB messages, one per 20 ms (cursor updates, say). bob acknowledges nothing,
    // so his lossy channel's buffer keeps what went out for him: once it holds more than
    // 16 KiB, the rest are dropped for him at once — a reliable message would still fit his
    // 128-KiB SCTP buffer — while carol, who acknowledges, gets every one.
    let payload = vec![b'y'; 2 * 1024];
    for _ in 0..20 {
        assert!(w.members[alice]
            .client
            .send_on_channel(LOSSY_LABEL, true, &payload));
        w.run_for(Duration::from_millis(20));
    }
    w.run_for(Duration::from_millis(200));
    let behind = w.core.stats().data_drops_for(DataDrop::ReceiverBehind);
    assert!(
        (10..=12).contains(&behind),
        "bob's channel takes 16 KiB, the rest wait for no one: {behind} dropped"
    );
    assert_eq!(got(&w, carol, LOSSY_LABEL).len(), 20, "carol gets them all");
}

#[test]
fn members_on_another_shard_get_the_message_through_the_shard_message() {
    let start = std::time::Instant::now();
    let mut a = World::with_shard(
        4,
        Default::default(),
        ShardId(0),
        start,
        "10.0.0.1:5000".parse().unwrap(),
    );
    let mut b = World::with_shard(
        5,
        Default::default(),
        ShardId(1),
        start,
        "10.0.0.2:5001".parse().unwrap(),
    );
    let alice = a.add_subscriber("alice");
    let bob = b.add_subscriber("bob");
    for w in [&mut a, &mut b] {
        assert!(w.run_until(Duration::from_secs(5), |w| w.all_connected()));
        w.run_for(Duration::from_millis(500));
    }
    a.members[alice].client.open_channel(RELIABLE_LABEL, false);
    b.members[bob].client.open_channel(RELIABLE_LABEL, false);
    b.run_for(Duration::from_millis(500));
    a.run_for(Duration::from_millis(500));

    assert!(a.members[alice]
        .client
        .send_on_channel(RELIABLE_LABEL, false, b"across"));
    a.run_for(Duration::from_millis(300));
    b.run_for(Duration::from_millis(300));
    assert_eq!(a.to_every_shard.len(), 1);
    for msg in std::mem::take(&mut a.to_every_shard) {
        b.deliver_from_shard(ShardId(0), msg);
    }
    b.run_for(Duration::from_millis(300));
    assert_eq!(got(&b, bob, RELIABLE_LABEL), [text("alice", "across")]);
    assert_eq!(b.core.stats().data_out, 1);
    assert_eq!(b.core.stats().data_in, 0, "counted where it was received");
}
