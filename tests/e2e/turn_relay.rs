//! Users who can reach only a TURN server: two Chromium pages of the demo with `?relay=1`
//! (`iceTransportPolicy: "relay"`: no host or server-reflexive path is tried, as for a user
//! whose firewall lets nothing but the TURN server through) call each other through a real
//! coturn, using only the `iceServers` and time-limited credentials the server handed out in
//! `joined`. Once over TURN/UDP and once over TURN/TCP; each page must decode the other's
//! video and its selected candidate must be a relay one. With a secret coturn does not share
//! the same pages must not connect: the credentials are what lets them through.

use std::time::Duration;

use shardcast_tests::chromium::{frames_decoded, Browser};
use shardcast_tests::server::Server;
use shardcast_tests::turn::Coturn;

fn with_turn(coturn: &Coturn, transport: &str, secret: &str) -> anyhow::Result<Server> {
    let config = coturn.dir().join(format!("shardcast-{transport}.toml"));
    std::fs::write(
        &config,
        format!(
            "[turn]\nurls = [\"turn:127.0.0.1:{}?transport={transport}\"]\nsecret = \"{secret}\"\n",
            coturn.port
        ),
    )?;
    Server::start_with_args(&["--config", &config.display().to_string()])
}

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

#[test]
fn a_call_connects_through_turn_over_udp_and_tcp() -> anyhow::Result<()> {
    for transport in ["udp", "tcp"] {
        let coturn = Coturn::start()?;
        let server = with_turn(&coturn, transport, &coturn.secret)?;
        let room = format!("relay-{transport}");
        let url = |who: &str| format!("{}&relay=1", server.page_url(&room, who, who));
        let mut alice = Browser::launch("alice", &url("alice"))?;
        let mut bob = Browser::launch("bob", &url("bob"))?;
        for (me, other) in [(&mut alice, "bob"), (&mut bob, "alice")] {
            let r = me.wait_stats(
                &format!("TURN/{transport}: decoding {other}'s video over a relay candidate"),
                Duration::from_secs(30),
                |s| frames_decoded(s, other) > 30.0 && s["candidateType"] == "relay",
            );
            if let Err(e) = r {
                return Err(e.context(report(&server, &coturn, &[me])));
            }
        }
    }
    Ok(())
}

#[test]
fn credentials_made_with_another_secret_are_refused() -> anyhow::Result<()> {
    let coturn = Coturn::start()?;
    let server = with_turn(&coturn, "udp", "a-secret-coturn-does-not-have")?;
    let url = |who: &str| format!("{}&relay=1", server.page_url("refused", who, who));
    let mut alice = Browser::launch("alice", &url("alice"))?;
    let _bob = Browser::launch("bob", &url("bob"))?;
    // Both are joined (signaling works), but no relay allocation succeeds, so the
    // peer connection never connects.
    alice.wait_stats("joined", Duration::from_secs(20), |s| s["joined"] == true)?;
    std::thread::sleep(Duration::from_secs(8));
    let s = alice.stats()?;
    anyhow::ensure!(
        s["connectionState"] != "connected" && frames_decoded(&s, "bob") == 0.0,
        "connected through TURN with wrong credentials: {s}\n{}",
        report(&server, &coturn, &[&alice])
    );
    Ok(())
}
