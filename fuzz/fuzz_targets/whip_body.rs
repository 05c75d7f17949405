//! WHIP request bodies: the POST body's checks (`whip::sdp_body`), and PATCH bodies
//! (`application/trickle-ice-sdpfrag`) through `sdpfrag::parse` into what the PATCH handler
//! does with them: trickled candidates to the media node's peer
//! (`ShardCore::add_remote_candidates`) and into the stored offer (`with_candidates`), or an
//! ICE restart (`restarted` offer, `ShardCore::renegotiate`, `answer_frag`). The peer is a
//! real WHIP publisher created from a str0m offer. Records (see `shardcast_fuzz::records`):
//! tag bit 0 clear a POST body, set a PATCH body.
//!
//! Besides no panic: a fragment may never break out of its own line, so every line of an
//! offer the control plane rewrites is a line of the stored offer, one of the fragment's
//! candidates, or one of its ICE credentials.
#![no_main]

use std::cell::RefCell;
use std::time::Instant;

use axum::http::{header, HeaderMap, HeaderValue};
use shardcast_controlplane::sdpfrag::{self, Frag};
use shardcast_controlplane::whip::sdp_body;
use shardcast_fuzz::records;
use shardcast_sfu::{CoreConfig, CreatePeer, Output, PeerId, PeerRole, RoomId, ShardCore, ShardId};
use str0m::media::{Direction, MediaKind};

/// A WHIP session: the node's core with the publisher, and the offer the control plane keeps.
struct Session {
    core: ShardCore,
    now: Instant,
    peer: PeerId,
    offer: String,
    /// PATCHes since the peer was created: it is recreated now and then so trickled
    /// candidates from millions of inputs do not pile up in one peer.
    patches: u32,
}

const PATCHES_PER_PEER: u32 = 2_000;

fn whip_offer(now: Instant) -> String {
    let mut rtc = str0m::Rtc::new(now);
    let mut api = rtc.sdp_api();
    api.add_media(
        MediaKind::Audio,
        Direction::SendOnly,
        Some("s".into()),
        None,
        None,
    );
    api.add_media(
        MediaKind::Video,
        Direction::SendOnly,
        Some("s".into()),
        None,
        None,
    );
    let (offer, _pending) = api.apply().expect("offer");
    offer.to_sdp_string()
}

fn session() -> Session {
    let now = Instant::now();
    let addr = "10.0.0.1:5000".parse().expect("address");
    let mut core = ShardCore::new(CoreConfig::default(), ShardId(0), addr, now);
    let peer = PeerId::new(ShardId(0), 1);
    let offer = whip_offer(now);
    let req = CreatePeer {
        room: RoomId::new("whip"),
        identity: "publisher".into(),
        role: PeerRole::Publish,
        offer: offer.clone(),
        bind_tracks: Vec::new(),
        can_send_data: true,
        video_codecs: Vec::new(),
    };
    core.create_peer(now, peer, req)
        .expect("WHIP offer accepted");
    Session {
        core,
        now,
        peer,
        offer,
        patches: 0,
    }
}

/// Every line of `rewritten` came from `offer`, or is one the fragment may add.
fn only_known_lines(rewritten: &str, offer: &str, frag: &Frag) {
    for line in rewritten.lines() {
        let line = line.trim_end_matches('\r');
        let ok = offer.lines().any(|l| l.trim_end_matches('\r') == line)
            || frag
                .candidates
                .iter()
                .any(|c| line.strip_prefix("a=") == Some(c.as_str()))
            || frag
                .ufrag
                .as_deref()
                .is_some_and(|u| line.strip_prefix("a=ice-ufrag:") == Some(u))
            || frag
                .pwd
                .as_deref()
                .is_some_and(|p| line.strip_prefix("a=ice-pwd:") == Some(p));
        assert!(ok, "a line the client smuggled in: {line:?}");
    }
}

fn patch(s: &mut Session, body: &str) {
    let Ok(frag) = sdpfrag::parse(body) else {
        return;
    };
    assert!(frag.candidates.len() <= sdpfrag::MAX_CANDIDATES);
    let restart = frag
        .ufrag
        .as_deref()
        .is_some_and(|u| Some(u) != sdpfrag::ufrag(&s.offer));
    if let (true, Some(ufrag), Some(pwd)) = (restart, &frag.ufrag, &frag.pwd) {
        let new_offer = sdpfrag::restarted(&s.offer, ufrag, pwd, &frag.candidates);
        only_known_lines(&new_offer, &s.offer, &frag);
        if let Ok(answer) = s.core.renegotiate(s.now, s.peer, &new_offer) {
            let _ = sdpfrag::answer_frag(&answer);
            s.offer = new_offer;
        }
    } else if !frag.candidates.is_empty() {
        if s.core
            .add_remote_candidates(s.now, s.peer, &frag.candidates)
            .is_ok()
        {
            let new_offer = sdpfrag::with_candidates(&s.offer, &frag.candidates);
            only_known_lines(&new_offer, &s.offer, &frag);
            s.offer = new_offer;
        }
    }
    while !matches!(s.core.poll_output(), Output::Timeout(_)) {}
    s.core.drain_datagrams(|_, _| {});
}

thread_local! {
    static SESSION: RefCell<Option<Session>> = const { RefCell::new(None) };
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/sdp"),
    );
    SESSION.with(|cell| {
        let mut slot = cell.borrow_mut();
        let fresh = slot
            .as_ref()
            .is_none_or(|s| s.patches >= PATCHES_PER_PEER || !s.core.has_peer(s.peer));
        if fresh {
            *slot = Some(session());
        }
        let s = slot.as_mut().expect("session");
        for (tag, bytes) in records(data) {
            if tag & 1 == 0 {
                if let Ok(sdp) = sdp_body(&headers, bytes) {
                    assert!(sdp.trim_start().starts_with("v=0"));
                }
            } else if let Ok(body) = std::str::from_utf8(bytes) {
                s.patches += 1;
                patch(s, body);
            }
        }
    });
});
