//! A control-plane instance killed (SIGKILL) while a publisher and a subscriber are connected
//! to it: their sockets drop; they reconnect through another instance (as a load balancer
//! would send them), join as new sessions there, offer from fresh peer connections, and media
//! flows again; the room lists each of them once.

use std::time::{Duration, Instant};

use shardcast_tests::cluster::{ControlPlane, MediaNodeProcess, Rest};
use shardcast_tests::etcd::Etcd;
use shardcast_tests::participant::{pump_until, Participant};

#[test]
fn clients_of_a_killed_control_plane_rejoin_through_another() -> anyhow::Result<()> {
    let etcd = Etcd::start()?;
    let _node = MediaNodeProcess::start(&etcd, "node-a", 10)?;
    let mut doomed = ControlPlane::start(&etcd)?;
    let other = ControlPlane::start(&etcd)?;
    let mut rest = Rest::new(&other.base_url)?;
    rest.create_tenant("acme")?;
    rest.create_room("room")?;
    let mut sub = Participant::join(&doomed.base_url, &rest.token("room", "sub")?, "sub", false)?;
    let mut publ = Participant::join(&doomed.base_url, &rest.token("room", "pub")?, "pub", true)?;
    pump_until(
        &mut [&mut publ, &mut sub],
        "media through the first instance",
        Duration::from_secs(30),
        |p| p[1].received() > 50,
    )?;

    doomed.kill();
    let killed = Instant::now();
    // Each client notices its socket is gone.
    for p in [&mut publ, &mut sub] {
        let dropped = p.pump(Duration::from_secs(5));
        assert!(dropped.is_err(), "{}: socket still open", p.identity);
    }
    sub.rejoin_via(&other.base_url, &rest.token("room", "sub")?)?;
    publ.rejoin_via(&other.base_url, &rest.token("room", "pub")?)?;
    pump_until(
        &mut [&mut publ, &mut sub],
        "media through the other instance",
        Duration::from_secs(20),
        |p| p[1].received_by_current_client() > 50,
    )
    .map_err(|e| e.context(other.log_tail(30)))?;
    println!("media again {:?} after the kill", killed.elapsed());
    let mut ids: Vec<String> = rest
        .participants("room")?
        .iter()
        .filter_map(|p| p["identity"].as_str().map(str::to_string))
        .collect();
    ids.sort();
    assert_eq!(ids, ["pub", "sub"]);
    Ok(())
}
