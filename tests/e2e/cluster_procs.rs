//! A distributed deployment as real processes on loopback: etcd, one `shardcast
//! controlplane`, two `shardcast medianode`s (cluster secret, private node API ports).
//! Rooms created over REST land on different nodes and carry media through each (a native
//! publisher and subscriber per room over WebSocket signaling and UDP); a drained node takes
//! no new room while its room keeps flowing; a node killed by PID leaves `/v1/nodes` when its
//! lease ends and the next room goes to the survivor.

use std::time::Duration;

use shardcast_tests::cluster::{ControlPlane, MediaNodeProcess, Rest};
use shardcast_tests::etcd::Etcd;
use shardcast_tests::participant::{pump_until, Participant};
use shardcast_tests::wait_for;

const LEASE_SECS: u64 = 3;

/// A publisher and a subscriber in `room`, once the subscriber receives the publisher's media.
struct Call {
    room: String,
    publisher: Participant,
    subscriber: Participant,
}

fn call(cp: &ControlPlane, rest: &Rest, room: &str) -> anyhow::Result<Call> {
    rest.create_room(room)?;
    // The subscriber first, so it is told about the publisher's tracks as they appear.
    let sub_id = format!("{room}-sub");
    let mut subscriber =
        Participant::join(&cp.base_url, &rest.token(room, &sub_id)?, &sub_id, false)?;
    let pub_id = format!("{room}-pub");
    let mut publisher =
        Participant::join(&cp.base_url, &rest.token(room, &pub_id)?, &pub_id, true)?;
    pump_until(
        &mut [&mut publisher, &mut subscriber],
        &format!("media in {room}"),
        Duration::from_secs(40),
        |p| p[1].received() > 50 && p[1].tracks_seen.len() == 2,
    )
    .map_err(|e| anyhow::anyhow!("{e}\ncontrol plane log:\n{}", cp.log_tail(30)))?;
    for t in &subscriber.tracks_seen {
        assert_eq!(t["identity"], pub_id.as_str(), "{t}");
    }
    Ok(Call {
        room: room.to_string(),
        publisher,
        subscriber,
    })
}

fn node_of(rest: &Rest, room: &str) -> anyhow::Result<String> {
    wait_for(&format!("{room}'s node"), Duration::from_secs(10), || {
        rest.room_node(room)
    })
}

fn live_nodes(rest: &Rest) -> anyhow::Result<Vec<String>> {
    let mut ids: Vec<String> = rest.nodes()?.into_iter().map(|(id, _)| id).collect();
    ids.sort();
    Ok(ids)
}

#[test]
fn rooms_spread_over_media_node_processes_and_survive_a_node_loss() -> anyhow::Result<()> {
    let etcd = Etcd::start()?;
    let mut node_a = MediaNodeProcess::start(&etcd, "node-a", LEASE_SECS)?;
    let mut node_b = MediaNodeProcess::start(&etcd, "node-b", LEASE_SECS)?;
    let cp = ControlPlane::start(&etcd)?;
    let mut rest = Rest::new(&cp.base_url)?;
    rest.create_tenant("acme")?;
    assert_eq!(live_nodes(&rest)?, ["node-a", "node-b"]);

    // Two rooms, two nodes, media through each.
    let mut one = call(&cp, &rest, "room-1")?;
    let two = call(&cp, &rest, "room-2")?;
    let (n1, n2) = (node_of(&rest, &one.room)?, node_of(&rest, &two.room)?);
    assert_ne!(n1, n2, "both rooms on {n1}");
    drop(two);

    // Draining room-1's node: the next room goes elsewhere, room-1 keeps flowing.
    rest.drain(&n1)?;
    assert!(rest.nodes()?.contains(&(n1.clone(), true)));
    let three = call(&cp, &rest, "room-3")?;
    assert_eq!(node_of(&rest, &three.room)?, n2);
    drop(three);
    let before = one.subscriber.received();
    pump_until(
        &mut [&mut one.publisher, &mut one.subscriber],
        "room-1 to keep flowing on the draining node",
        Duration::from_secs(20),
        |p| p[1].received() > before + 100,
    )?;
    drop(one);

    // The drained node dies without deregistering: its lease ends, it leaves the list.
    let (dead, survivor) = if n1 == node_a.id {
        (&mut node_a, &node_b)
    } else {
        (&mut node_b, &node_a)
    };
    let dead_id = dead.id.clone();
    dead.kill();
    wait_for(
        &format!("{dead_id} to leave /v1/nodes after its {LEASE_SECS} s lease"),
        Duration::from_secs(LEASE_SECS + 10),
        || Ok((live_nodes(&rest)? == [survivor.id.clone()]).then_some(())),
    )?;
    let four = call(&cp, &rest, "room-4")?;
    assert_eq!(node_of(&rest, &four.room)?, survivor.id);
    Ok(())
}
