//! A user whose firewall drops UDP (issue: ICE-TCP). A Chromium page of the demo runs in a
//! network namespace whose nftables rules drop every UDP packet to and from the host end of
//! its veth link, where the server and its media shards listen; a second page publishes from
//! the host. The firewalled page must still join, decode the other's video and have its own
//! video decoded, over the passive TCP candidate each shard offers after its UDP one: its
//! selected candidate pair is TCP (both ends), and the rules did drop UDP (the browser tried).

use std::time::Duration;

use shardcast_tests::chromium::{frames_decoded, Browser};
use shardcast_tests::netns::NetNs;
use shardcast_tests::server::Server;

/// The page's selected candidate pair, from its own RTCPeerConnection (`S.pc` in app.js).
const SELECTED_PAIR: &str = r#"(async () => {
  if (!S.pc) return null;
  const r = await S.pc.getStats();
  let out = null;
  r.forEach((s) => {
    if (s.type !== "transport" || !s.selectedCandidatePairId) return;
    const p = r.get(s.selectedCandidatePairId);
    const l = p && r.get(p.localCandidateId);
    const m = p && r.get(p.remoteCandidateId);
    if (!l || !m) return;
    out = { state: p.state, local: l.protocol, localType: l.candidateType,
            remote: m.protocol, remoteType: m.candidateType, remoteTcpType: m.tcpType || null,
            remoteAddress: m.address, remotePort: m.port };
  });
  return out;
})()"#;

fn report(server: &Server, browsers: &[&Browser]) -> String {
    let mut out = format!("--- server log (last 40):\n{}\n", server.log_tail(40));
    for b in browsers {
        out.push_str(&b.diagnostics());
        out.push('\n');
    }
    out
}

#[test]
fn a_browser_behind_a_udp_blocking_firewall_calls_over_ice_tcp() -> anyhow::Result<()> {
    // Declared first, dropped last: the browsers and the server stop before the link goes.
    let mut ns = NetNs::create()?;
    ns.block_udp_to_host()?;
    let server = Server::start_on(ns.host_ip().into(), &[])?;
    let mut alice = Browser::launch("alice", &server.page_url("tcp-only", "alice", "Alice"))?;
    let mut walt = Browser::launch_in("walt", &server.page_url("tcp-only", "walt", "Walt"), &ns)?;

    for (me, other) in [(&mut walt, "alice"), (&mut alice, "walt")] {
        let r = me.wait_stats(
            &format!("decoding {other}'s video"),
            Duration::from_secs(60),
            |s| frames_decoded(s, other) > 30.0,
        );
        if let Err(e) = r {
            return Err(e.context(report(&server, &[me])));
        }
    }
    let pair = walt.eval(SELECTED_PAIR)?;
    let host = ns.host_ip().to_string();
    anyhow::ensure!(
        pair["local"] == "tcp"
            && pair["remote"] == "tcp"
            && pair["remoteType"] == "host"
            && pair["remoteTcpType"] == "passive"
            && pair["remoteAddress"] == host.as_str(),
        "walt's selected pair is not ICE-TCP to the server's passive candidate: {pair}\n{}",
        report(&server, &[&walt])
    );
    // The publisher on the host has nothing in its way: it stays on UDP.
    let alice_pair = alice.eval(SELECTED_PAIR)?;
    anyhow::ensure!(alice_pair["local"] == "udp", "alice: {alice_pair}");
    // The firewall was in the way: the browser's UDP checks were dropped.
    let dropped = ns.udp_dropped()?;
    anyhow::ensure!(dropped > 0, "no UDP packet hit the drop rules");
    Ok(())
}
