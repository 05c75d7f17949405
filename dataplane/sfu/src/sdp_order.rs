//! The order of video codecs in our answers: the room's preference, then the offerer's.
//!
//! str0m 0.25 writes an answer's formats in the order of its own codec configuration (VP8,
//! H.264, VP9), and an offerer sends with the first codec of the answer it can send: a
//! Chromium publisher that put VP9 first (`setCodecPreferences`; the demo page's
//! `?codec=vp9`) sent VP8, and its `scalabilityMode: "L3T3_KEY"` fell back to VP8's L1T2
//! (tests/e2e/svc.rs). So each accepted video m-section of an answer lists its formats in the
//! order in which the offer's section with the same mid lists those codecs (matched by
//! encoding name, and for VP9 and H.264 by the profile in `a=fmtp`, since the answer may
//! number them differently); an RTX format follows the codec it repairs (`apt`); a format
//! the offer does not name keeps its place after the others. A room that prefers codecs
//! (`CreatePeer::video_codecs`, e.g. `["vp9", "vp8"]`) puts those first, in its order, and
//! the offer's order decides among the rest and among a codec's profiles: a publisher that
//! offers VP8 first sends VP9 in a room that prefers VP9, if it offered VP9 at all. Audio is
//! left alone: there the answer's order (RED before Opus) is what makes libwebrtc send RED
//! (`sdp_red`).
//!
//! Owns nothing. Must never add, drop or change a format, touch any other line, or fail:
//! SDP it cannot read comes back unchanged.

/// `answer` with each accepted video m-section's formats in `offer`'s order (see the module
/// documentation). Idempotent.
#[cfg(test)]
pub fn video_codecs_in_offer_order(offer: &str, answer: &str) -> String {
    order_video_codecs(offer, answer, &[])
}

/// `answer` with each accepted video m-section's formats ordered by `preferred` (lower-case
/// encoding names, most preferred first), then by `offer` (see the module documentation).
/// Idempotent.
pub fn order_video_codecs(offer: &str, answer: &str, preferred: &[String]) -> String {
    let offered = sections(offer);
    let mut out = String::with_capacity(answer.len());
    let mut rest = answer;
    // Copy everything up to each video m-line, and the m-line itself reordered.
    while let Some(at) = find_mline(rest) {
        out.push_str(&rest[..at]);
        let section_end = find_mline(&rest[at + 2..]).map_or(rest.len(), |n| at + 2 + n);
        let section = &rest[at..section_end];
        let line_end = section.find('\n').map_or(section.len(), |n| n + 1);
        let mline = &section[..line_end];
        match reordered(mline, section, &offered, preferred) {
            Some(new_mline) => out.push_str(&new_mline),
            None => out.push_str(mline),
        }
        out.push_str(&section[line_end..]);
        rest = &rest[section_end..];
    }
    out.push_str(rest);
    out
}

/// Byte offset of the next line starting with `m=` (at 0 or after a `\n`).
fn find_mline(s: &str) -> Option<usize> {
    if s.starts_with("m=") {
        return Some(0);
    }
    s.find("\nm=").map(|n| n + 1)
}

/// One offered m-section: its mid and its codecs' keys in order.
struct Offered {
    mid: String,
    keys: Vec<String>,
}

fn sections(sdp: &str) -> Vec<Offered> {
    let mut out = Vec::new();
    let mut rest = sdp;
    while let Some(at) = find_mline(rest) {
        let end = find_mline(&rest[at + 2..]).map_or(rest.len(), |n| at + 2 + n);
        let section = &rest[at..end];
        if let Some(mid) = attr(section, "a=mid:").next() {
            let formats = formats(section.lines().next().unwrap_or(""));
            let keys = formats.iter().map(|pt| key(section, pt)).collect();
            out.push(Offered {
                mid: mid.to_string(),
                keys,
            });
        }
        rest = &rest[end..];
    }
    out
}

/// The new m-line of an answer section, when it is an accepted video section whose mid the
/// offer has and whose formats the offer orders differently.
fn reordered(
    mline: &str,
    section: &str,
    offered: &[Offered],
    preferred: &[String],
) -> Option<String> {
    let text = mline.trim_end_matches(['\r', '\n']);
    let mut fields = text.split(' ');
    let (Some("m=video"), Some(port)) = (fields.next(), fields.next()) else {
        return None;
    };
    if port == "0" {
        return None;
    }
    let mid = attr(section, "a=mid:").next()?;
    let order = &offered.iter().find(|o| o.mid == mid)?.keys;
    let formats = formats(text);
    // (room preference, offer order): a codec the offer does not name stays behind every
    // named one, even one the room prefers (its place in the offer is unknown).
    let rank_of = |pt: &str| {
        let k = key(section, pt);
        let name = k.split(';').next().unwrap_or("");
        let offered = order
            .iter()
            .position(|o| *o == k)
            .or_else(|| order.iter().position(|o| o.split(';').next() == Some(name)));
        let room = preferred
            .iter()
            .position(|p| p == name)
            .unwrap_or(preferred.len());
        offered.map_or((usize::MAX, usize::MAX), |o| (room, o))
    };
    let mut ranked: Vec<(FormatRank, &str)> = formats
        .iter()
        .enumerate()
        .map(|(i, pt)| {
            let rank = if key(section, pt) == "rtx" {
                let apt = fmtp(section, pt).and_then(|f| param(f, "apt"));
                (apt.map_or((usize::MAX, usize::MAX), rank_of), 1, i)
            } else {
                (rank_of(pt), 0, i)
            };
            (rank, *pt)
        })
        .collect();
    ranked.sort_by_key(|(rank, _)| *rank);
    let sorted: Vec<&str> = ranked.iter().map(|(_, pt)| *pt).collect();
    if sorted == formats {
        return None;
    }
    let head: Vec<&str> = text.split(' ').take(3).collect();
    let eol = &mline[text.len()..];
    Some(format!("{} {}{eol}", head.join(" "), sorted.join(" ")))
}

/// Where a format goes: its codec's (room preference, offer order), 1 for an RTX format
/// (after its codec), its place in the answer.
type FormatRank = ((usize, usize), u8, usize);

/// The payload types of an m-line (`m=<media> <port> <proto> <fmt>...`).
fn formats(mline: &str) -> Vec<&str> {
    mline
        .trim_end_matches(['\r', '\n'])
        .split(' ')
        .skip(3)
        .filter(|f| !f.is_empty())
        .collect()
}

/// Values of the attribute lines of `section` that start with `prefix`.
fn attr<'a>(section: &'a str, prefix: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    section
        .lines()
        .filter_map(move |l| l.trim_end().strip_prefix(prefix))
}

/// The `a=fmtp` parameters of `pt`.
fn fmtp<'a>(section: &'a str, pt: &str) -> Option<&'a str> {
    attr(section, "a=fmtp:").find_map(|v| {
        let (p, params) = v.split_once(' ')?;
        (p == pt).then_some(params)
    })
}

/// One `name=value` of fmtp parameters.
fn param<'a>(fmtp: &'a str, name: &str) -> Option<&'a str> {
    fmtp.split(';')
        .filter_map(|kv| kv.trim().split_once('='))
        .find_map(|(k, v)| (k == name).then_some(v))
}

/// What names a codec across offer and answer, whatever its payload type: the encoding
/// name (lower case), and for VP9 the profile, for H.264 the profile (`profile-level-id`'s
/// first byte) and packetization mode.
fn key(section: &str, pt: &str) -> String {
    let name = attr(section, "a=rtpmap:")
        .find_map(|v| {
            let (p, enc) = v.split_once(' ')?;
            (p == pt).then(|| enc.split('/').next().unwrap_or("").to_ascii_lowercase())
        })
        .unwrap_or_default();
    let f = fmtp(section, pt);
    match name.as_str() {
        "vp9" => format!(
            "vp9;{}",
            f.and_then(|f| param(f, "profile-id")).unwrap_or("0")
        ),
        "h264" => {
            let profile = f
                .and_then(|f| param(f, "profile-level-id"))
                .map_or(String::new(), |p| {
                    p.get(..2).unwrap_or("").to_ascii_lowercase()
                });
            let mode = f
                .and_then(|f| param(f, "packetization-mode"))
                .unwrap_or("0");
            format!("h264;{profile};{mode}")
        }
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Chromium-like offer whose video prefers VP9 (profile 0, then 2), then VP8, H.264.
    fn offer() -> String {
        [
            "v=0",
            "o=- 1 2 IN IP4 127.0.0.1",
            "s=-",
            "t=0 0",
            "a=group:BUNDLE 0 1",
            "m=audio 9 UDP/TLS/RTP/SAVPF 111 63",
            "a=mid:0",
            "a=rtpmap:111 opus/48000/2",
            "a=rtpmap:63 red/48000/2",
            "m=video 9 UDP/TLS/RTP/SAVPF 98 99 100 101 96 97 109 114",
            "a=mid:1",
            "a=rtpmap:98 VP9/90000",
            "a=fmtp:98 profile-id=0",
            "a=rtpmap:99 rtx/90000",
            "a=fmtp:99 apt=98",
            "a=rtpmap:100 VP9/90000",
            "a=fmtp:100 profile-id=2",
            "a=rtpmap:101 rtx/90000",
            "a=fmtp:101 apt=100",
            "a=rtpmap:96 VP8/90000",
            "a=rtpmap:97 rtx/90000",
            "a=fmtp:97 apt=96",
            "a=rtpmap:109 H264/90000",
            "a=fmtp:109 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
            "a=rtpmap:114 red/90000",
            "",
        ]
        .join("\r\n")
    }

    /// What str0m answers: its own order (VP8, H.264, VP9), its own numbers for some.
    fn answer(video_formats: &str) -> String {
        [
            "v=0",
            "o=- 3 4 IN IP4 0.0.0.0",
            "s=-",
            "t=0 0",
            "a=group:BUNDLE 0 1",
            "m=audio 9 UDP/TLS/RTP/SAVPF 63 111",
            "a=mid:0",
            "a=rtpmap:63 red/48000/2",
            "a=rtpmap:111 opus/48000/2",
            &format!("m=video 9 UDP/TLS/RTP/SAVPF {video_formats}"),
            "a=mid:1",
            "a=recvonly",
            "a=rtpmap:96 VP8/90000",
            "a=rtpmap:97 rtx/90000",
            "a=fmtp:97 apt=96",
            "a=rtpmap:109 H264/90000",
            "a=fmtp:109 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
            "a=rtpmap:45 VP9/90000",
            "a=fmtp:45 profile-id=0",
            "a=rtpmap:46 rtx/90000",
            "a=fmtp:46 apt=45",
            "",
        ]
        .join("\r\n")
    }

    fn video_mline(sdp: &str) -> &str {
        sdp.lines().find(|l| l.starts_with("m=video")).unwrap()
    }

    #[test]
    fn video_follows_the_offers_order_and_only_the_m_line_changes() {
        let a = answer("96 97 109 45 46");
        let out = video_codecs_in_offer_order(&offer(), &a);
        assert_eq!(
            video_mline(&out),
            "m=video 9 UDP/TLS/RTP/SAVPF 45 46 96 97 109"
        );
        // Every other line as it was, in place; line endings kept.
        let (before, after): (Vec<&str>, Vec<&str>) = (a.lines().collect(), out.lines().collect());
        assert_eq!(before.len(), after.len());
        for (b, o) in before.iter().zip(&after) {
            if !b.starts_with("m=video") {
                assert_eq!(b, o);
            }
        }
        assert!(out.contains("\r\n") && !out.contains("\n\n"));
        // Audio keeps RED first; applying it again changes nothing.
        assert!(out.contains("m=audio 9 UDP/TLS/RTP/SAVPF 63 111\r\n"));
        assert_eq!(video_codecs_in_offer_order(&offer(), &out), out);
    }

    #[test]
    fn an_offer_in_the_answers_order_or_unreadable_sdp_changes_nothing() {
        let vp8_first =
            offer().replace("98 99 100 101 96 97 109 114", "96 97 109 98 99 100 101 114");
        let a = answer("96 97 109 45 46");
        assert_eq!(video_codecs_in_offer_order(&vp8_first, &a), a);
        // Rejected sections, unknown mids, garbage.
        let rejected = answer("96 97 109 45 46").replace("m=video 9", "m=video 0");
        assert_eq!(video_codecs_in_offer_order(&offer(), &rejected), rejected);
        let other_mid = a.replace("a=mid:1", "a=mid:7");
        assert_eq!(video_codecs_in_offer_order(&offer(), &other_mid), other_mid);
        for junk in [
            "",
            "m=",
            "m=video",
            "m=video 9",
            "v=0\nm=video 9 RTP\n",
            "\u{0}m=video",
        ] {
            assert_eq!(video_codecs_in_offer_order(&offer(), junk), junk);
            assert_eq!(video_codecs_in_offer_order(junk, &a), a);
        }
    }

    #[test]
    fn a_room_preference_comes_before_the_offers_order() {
        let a = answer("96 97 109 45 46");
        let prefer =
            |names: &[&str]| -> Vec<String> { names.iter().map(|s| s.to_string()).collect() };
        // The offer puts VP9 first; a room that prefers H.264 then VP8 gets those first.
        let out = order_video_codecs(&offer(), &a, &prefer(&["h264", "vp8"]));
        assert_eq!(
            video_mline(&out),
            "m=video 9 UDP/TLS/RTP/SAVPF 109 96 97 45 46"
        );
        assert_eq!(
            order_video_codecs(&offer(), &out, &prefer(&["h264", "vp8"])),
            out
        );
        // A preference for what the offer has first changes nothing; none is the offer's order.
        assert_eq!(
            order_video_codecs(&offer(), &a, &prefer(&["vp9"])),
            video_codecs_in_offer_order(&offer(), &a)
        );
        // Names the answer lacks are skipped.
        let out = order_video_codecs(&offer(), &a, &prefer(&["av1", "vp8"]));
        assert_eq!(
            video_mline(&out),
            "m=video 9 UDP/TLS/RTP/SAVPF 96 97 45 46 109"
        );
    }

    /// A format the offer does not name, and an RTX whose codec is unknown, stay behind.
    #[test]
    fn unknown_formats_keep_their_place_after_the_known_ones() {
        let a = answer("123 96 97 109 45 46 124").replace(
            "a=mid:1",
            "a=mid:1\r\na=rtpmap:123 AV1/90000\r\na=rtpmap:124 rtx/90000\r\na=fmtp:124 apt=123",
        );
        let out = video_codecs_in_offer_order(&offer(), &a);
        assert_eq!(
            video_mline(&out),
            "m=video 9 UDP/TLS/RTP/SAVPF 45 46 96 97 109 123 124"
        );
    }
}
