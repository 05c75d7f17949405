//! WHEP answers: a viewer's recvonly m-lines bound to published tracks are answered
//! `sendonly`; the ones no track fills are answered `inactive`, never `sendonly` with
//! nothing behind them.

mod support;

use std::time::Duration;

use shardcast_sfu::{CreatePeer, PeerId, PeerRole, RoomId, ShardId};
use str0m::media::{Direction, MediaKind};
use support::World;

/// The direction attribute of each m-section, in SDP order.
fn directions(sdp: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in sdp.lines() {
        if let Some(m) = line.strip_prefix("m=") {
            out.push((m.split(' ').next().unwrap_or("").into(), String::new()));
        }
        if let ("a=sendonly" | "a=recvonly" | "a=sendrecv" | "a=inactive", Some(last)) =
            (line, out.last_mut())
        {
            last.1 = line[2..].into();
        }
    }
    out
}

#[test]
fn unbound_recvonly_lines_are_answered_inactive() {
    let mut w = World::new(41);
    let alice = w.add_publisher("alice", &[(None, 300)]);
    assert!(w.run_until(Duration::from_secs(5), |w| w.all_connected()));
    let tracks = w.published(alice);
    assert_eq!(tracks.len(), 2, "audio + video published");

    // The viewer asks for audio and two videos; only one video exists.
    let mut viewer = str0m::Rtc::new(w.now);
    let mut api = viewer.sdp_api();
    for kind in [MediaKind::Audio, MediaKind::Video, MediaKind::Video] {
        api.add_media(kind, Direction::RecvOnly, None, None, None);
    }
    let (offer, _pending) = api.apply().expect("offer");
    let subs_before = w.core.stats().subscriptions;
    let answer = w
        .core
        .create_peer(
            w.now,
            PeerId::new(ShardId(0), 900),
            CreatePeer {
                room: RoomId::new("room"),
                identity: "viewer".into(),
                role: PeerRole::Subscribe,
                offer: offer.to_sdp_string(),
                bind_tracks: tracks,
                can_send_data: true,
                video_codecs: Vec::new(),
            },
        )
        .expect("answer");
    let dirs = directions(&answer);
    let media: Vec<(&str, &str)> = dirs
        .iter()
        .filter(|(k, _)| k == "audio" || k == "video")
        .map(|(k, d)| (k.as_str(), d.as_str()))
        .collect();
    assert_eq!(
        media,
        [
            ("audio", "sendonly"),
            ("video", "sendonly"),
            ("video", "inactive")
        ],
        "answer:\n{answer}"
    );
    assert_eq!(
        w.core.stats().subscriptions,
        subs_before + 2,
        "both tracks bound"
    );
}
