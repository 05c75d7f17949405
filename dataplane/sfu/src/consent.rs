//! Consent (RFC 7675) on the input side: which STUN messages a peer's ICE agent must
//! authenticate, and asking it before the message is handed over, so a check it rejects is
//! counted (`DropReason::StunAuthFailed`) instead of vanishing inside str0m.
//!
//! Why this exists: str0m 0.25's `Rtc::handle_input` drops a binding request with a wrong
//! MESSAGE-INTEGRITY, or a response to no check of ours, with a `debug!` only, and
//! `Rtc::accepts` waves through *everything* from the nominated remote address without looking
//! at it, so a forged check from a peer's own 5-tuple would be neither answered nor seen.
//!
//! Owns no state. Must never answer, learn a tuple or touch consent itself: the ICE agent in
//! the peer's `Rtc` does all of that for the messages this lets through.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

use str0m::ice::StunMessage;
use str0m::net::{Protocol, Receive};
use str0m::{Input, Rtc};

/// True for a STUN binding request or response: what moves consent, so what must be
/// authenticated. Indications (NAT keep-alives, unauthenticated by design) and anything
/// that does not parse are not.
pub fn is_stun_check(buf: &[u8]) -> bool {
    StunMessage::parse(buf).is_ok_and(|m| {
        m.is_binding_request()
            || m.is_successful_binding_response()
            || m.is_failed_binding_response()
    })
}

/// Whether `rtc`'s ICE agent authenticates this binding request or response: USERNAME with
/// our ufrag (and the remote's, once known) and MESSAGE-INTEGRITY keyed by our password for
/// a request; a transaction id of one of our checks and the remote's password for a
/// response. The source address plays no part (any source would do, which is the point:
/// `Rtc::accepts` skips the check for the nominated address, so it is asked with none).
pub fn authenticates(rtc: &Rtc, now: Instant, destination: SocketAddr, buf: &[u8]) -> bool {
    let Ok(contents) = buf.try_into() else {
        return false;
    };
    let probe = Input::Receive(
        now,
        Receive {
            proto: Protocol::Udp,
            source: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            destination,
            contents,
        },
    );
    rtc.accepts(&probe)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use str0m::change::{SdpAnswer, SdpOffer};
    use str0m::{Candidate, Output, RtcConfig};

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// A client `Rtc` and a server `Rtc` (full agent, as `Peer::new` makes it) that have
    /// exchanged offer and answer, and the client's first binding request to the server.
    fn pair_and_first_check() -> (Rtc, Rtc, Vec<u8>) {
        let now = Instant::now();
        let (client_addr, server_addr) = (addr("10.0.0.2:4000"), addr("10.0.0.1:5000"));
        let mut client = Rtc::new(now);
        client.add_local_candidate(Candidate::host(client_addr, "udp").unwrap());
        let mut server = RtcConfig::new().set_ice_lite(false).build(now);
        server.add_local_candidate(Candidate::host(server_addr, "udp").unwrap());
        let mut api = client.sdp_api();
        api.add_channel("c".into());
        let (offer, pending) = api.apply().unwrap();
        let offer = SdpOffer::from_sdp_string(&offer.to_sdp_string()).unwrap();
        let answer = server.sdp_api().accept_offer(offer).unwrap();
        let answer = SdpAnswer::from_sdp_string(&answer.to_sdp_string()).unwrap();
        client.sdp_api().accept_answer(pending, answer).unwrap();
        let mut t = now;
        for _ in 0..100 {
            client.handle_input(Input::Timeout(t)).unwrap();
            while let Ok(out) = client.poll_output() {
                match out {
                    Output::Transmit(x) if is_stun_check(&x.contents) => {
                        assert_eq!(x.destination, server_addr);
                        return (client, server, x.contents.to_vec());
                    }
                    Output::Timeout(_) => break,
                    _ => {}
                }
            }
            t += Duration::from_millis(50);
        }
        panic!("the client never sent a binding request");
    }

    #[test]
    fn only_binding_requests_and_responses_are_checks() {
        let (_, _, request) = pair_and_first_check();
        assert!(is_stun_check(&request));
        // The same message as an indication (class bits 0b01: 0x0011).
        let mut indication = request.clone();
        indication[0] = 0x00;
        indication[1] = 0x11;
        assert!(!is_stun_check(&indication));
        assert!(!is_stun_check(&[]));
        assert!(!is_stun_check(&[0u8; 20]));
        assert!(!is_stun_check(&request[..request.len() - 9]));
        assert!(!is_stun_check(&[0x80; 40]));
    }

    #[test]
    fn the_servers_agent_decides_whatever_the_source() {
        let (_, server, request) = pair_and_first_check();
        let us = addr("10.0.0.1:5000");
        assert!(authenticates(&server, Instant::now(), us, &request));
        // One bit of the MESSAGE-INTEGRITY value (before the 8-byte FINGERPRINT) flipped:
        // str0m's parser still takes it (the fingerprint is not checked on parse), the agent
        // does not.
        let mut forged = request.clone();
        let at = forged.len() - 8 - 1;
        forged[at] ^= 1;
        assert!(is_stun_check(&forged));
        assert!(!authenticates(&server, Instant::now(), us, &forged));
        // Another server (other credentials) does not take the real one.
        let (_, other, _) = pair_and_first_check();
        assert!(!authenticates(&other, Instant::now(), us, &request));
    }
}
