//! Regions (issue 16, point 2): media nodes carry an operator's region label, and a room is
//! placed on a node of the region its first participant's token names, else of the control
//! plane's own region — before a less loaded node elsewhere. A real etcd, two media nodes
//! (`node-eu` in eu, `node-us` in us) and a control plane in us, all processes on loopback.
//!
//! The rooms are placed in an order where load alone would choose differently each time (the
//! nodes tie, and ties go to the node with fewer rooms, then to the smaller id, `node-eu`), so
//! every assertion fails if the region is ignored.

use std::time::Duration;

use serde_json::json;
use shardcast_tests::cluster::{ControlPlane, MediaNodeProcess, Rest};
use shardcast_tests::etcd::Etcd;
use shardcast_tests::participant::{pump_until, Participant};

const LEASE_SECS: u64 = 6;

/// `GET /v1/rooms/{room}`'s nodes, once the room is placed.
fn placed_on(rest: &Rest, room: &str) -> anyhow::Result<serde_json::Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let nodes = rest.room(room)?["nodes"].clone();
        if nodes.as_array().is_some_and(|n| !n.is_empty()) {
            return Ok(nodes);
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "room {room} not placed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_room_goes_to_a_node_of_the_region_its_token_names() -> anyhow::Result<()> {
    // Declared in start order: dropped (stopped by PID) in reverse, etcd last.
    let etcd = Etcd::start()?;
    let eu =
        MediaNodeProcess::start_with_config(&etcd, "node-eu", LEASE_SECS, "region = \"eu\"\n")?;
    let us =
        MediaNodeProcess::start_with_config(&etcd, "node-us", LEASE_SECS, "region = \"us\"\n")?;
    let cp = ControlPlane::start_with_config(&etcd, "[cluster]\nregion = \"us\"\n")?;
    let mut rest = Rest::new(&cp.base_url)?;
    rest.create_tenant("acme")?;
    assert_eq!(rest.node(&eu.id)?.unwrap()["region"], "eu");
    assert_eq!(rest.node(&us.id)?.unwrap()["region"], "us");
    for room in ["home", "home-2", "abroad"] {
        rest.create_room(room)?;
    }
    assert_eq!(
        rest.room("home")?["nodes"],
        json!([]),
        "not placed before an offer"
    );

    // No region in the token: the control plane's own (us), although node-eu wins a tie.
    let home = Participant::join(&cp.base_url, &rest.token("home", "ann")?, "ann", true)?;
    let on = placed_on(&rest, "home")?;
    assert_eq!(
        on,
        json!([{ "id": "node-us", "region": "us", "live": true }])
    );
    // Again, although node-eu now has fewer rooms.
    let home2 = Participant::join(&cp.base_url, &rest.token("home-2", "bo")?, "bo", true)?;
    assert_eq!(placed_on(&rest, "home-2")?[0]["id"], "node-us");

    // The token names eu: node-eu, and the call's media flows through it.
    let eu_token = |identity: &str| {
        rest.token_with(
            "abroad",
            json!({ "identity": identity, "role": "host", "region": "eu" }),
        )
    };
    let mut sub = Participant::join(&cp.base_url, &eu_token("sub")?, "sub", false)?;
    let mut publ = Participant::join(&cp.base_url, &eu_token("pub")?, "pub", true)?;
    pump_until(
        &mut [&mut publ, &mut sub],
        "media in room abroad",
        Duration::from_secs(30),
        |p| p[1].received() > 50,
    )?;
    assert_eq!(
        placed_on(&rest, "abroad")?,
        json!([{ "id": "node-eu", "region": "eu", "live": true }])
    );
    assert_eq!(rest.room_node("abroad")?.as_deref(), Some("node-eu"));
    drop((home, home2));
    Ok(())
}
