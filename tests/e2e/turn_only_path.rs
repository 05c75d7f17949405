//! A user whose network reaches the web server and a TURN server but not the media node
//! (issue: TURN). A Chromium page of the demo runs in a network namespace: it loads the page
//! and signals over the host end of its veth link, where coturn listens too, while the media
//! shards listen on the host's loopback, which nothing in the namespace can reach. The page
//! is not told to use relays (no `?relay=1`): its host candidates simply find no path, and
//! the call must connect through coturn with the credentials the server handed out in
//! `joined`. Once with UDP to coturn, once with every UDP packet between the namespace and
//! the host dropped by nftables, so only TURN over TCP is left.

use std::net::IpAddr;
use std::time::Duration;

use shardcast_tests::chromium::{frames_decoded, Browser};
use shardcast_tests::netns::NetNs;
use shardcast_tests::server::Server;
use shardcast_tests::turn::Coturn;

/// The selected pair's local candidate: its type and how it reaches the TURN server.
const SELECTED_LOCAL: &str = r#"(async () => {
  if (!S.pc) return null;
  const r = await S.pc.getStats();
  let out = null;
  r.forEach((s) => {
    if (s.type !== "transport" || !s.selectedCandidatePairId) return;
    const p = r.get(s.selectedCandidatePairId);
    const l = p && r.get(p.localCandidateId);
    if (!l) return;
    out = { type: l.candidateType, relayProtocol: l.relayProtocol || null, url: l.url || null };
  });
  return out;
})()"#;

fn report(server: &Server, coturn: &Coturn, browsers: &[&Browser]) -> String {
    let mut out = format!(
        "--- server log:\n{}\n--- coturn log:\n{}\n",
        server.log_tail(30),
        coturn.log_tail(30)
    );
    for b in browsers {
        out.push_str(&b.diagnostics());
        out.push('\n');
    }
    out
}

fn call_through_turn(block_udp: bool) -> anyhow::Result<()> {
    // Declared first, dropped last: the processes stop before the link goes.
    let mut ns = NetNs::create()?;
    if block_udp {
        ns.block_udp_to_host()?;
    }
    let host = ns.host_ip();
    let coturn = Coturn::start_on(host)?;
    let config = coturn.dir().join("shardcast.toml");
    std::fs::write(
        &config,
        format!(
            "[turn]\nurls = [\"turn:{host}:{p}?transport=udp\", \"turn:{host}:{p}?transport=tcp\"]\nsecret = \"{}\"\n",
            coturn.secret,
            p = coturn.port,
        ),
    )?;
    let server = Server::start_split(
        IpAddr::V4(host),
        IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        &["--config", &config.display().to_string()],
    )?;
    let room = if block_udp {
        "turn-tcp-only"
    } else {
        "turn-only"
    };
    let mut alice = Browser::launch("alice", &server.page_url(room, "alice", "Alice"))?;
    let mut walt = Browser::launch_in("walt", &server.page_url(room, "walt", "Walt"), &ns)?;
    for (me, other) in [(&mut walt, "alice"), (&mut alice, "walt")] {
        let r = me.wait_stats(
            &format!("decoding {other}'s video"),
            Duration::from_secs(60),
            |s| frames_decoded(s, other) > 30.0,
        );
        if let Err(e) = r {
            return Err(e.context(report(&server, &coturn, &[me])));
        }
    }
    let local = walt.eval(SELECTED_LOCAL)?;
    let want = if block_udp { "tcp" } else { "udp" };
    anyhow::ensure!(
        local["type"] == "relay" && local["relayProtocol"] == want,
        "walt's selected candidate is not a TURN/{want} relay: {local}\n{}",
        report(&server, &coturn, &[&walt])
    );
    if block_udp {
        anyhow::ensure!(ns.udp_dropped()? > 0, "no UDP packet hit the drop rules");
    }
    Ok(())
}

#[test]
fn a_browser_that_reaches_only_the_web_and_turn_calls_through_turn_udp() -> anyhow::Result<()> {
    call_through_turn(false)
}

#[test]
fn with_udp_blocked_too_it_calls_through_turn_tcp() -> anyhow::Result<()> {
    call_through_turn(true)
}
