//! Which m-lines of a concluded negotiation carry RFC 2198 RED (`a=rtpmap:<red> red/…` and
//! `a=fmtp:<red> <p>/<p>`, `<red>` among the m-line's formats), read from the answer's text.
//!
//! str0m 0.25 folds RED onto the session's codec parameters once (the first audio m-line
//! negotiated decides) and keeps no per-m-line choice, but browsers decide per transceiver
//! (`setCodecPreferences`): a subscriber may take RED on one audio m-line and not another.
//! The answer is where each m-line's choice is written, whichever side made it.
//!
//! Owns nothing. Must never fail: an SDP it cannot read yields no RED line (plain Opus).

use smallvec::SmallVec;
use str0m::media::Mid;

/// One m-line on which RED was negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedLine {
    pub mid: Mid,
    /// The RED payload type on this m-line.
    pub red: u8,
    /// The payload type its blocks carry (Opus).
    pub primary: u8,
}

/// Every accepted (port not 0) audio m-line of `sdp` with a mid and a RED payload type
/// among its formats whose fmtp names one primary payload type, also among its formats.
pub fn red_lines(sdp: &str) -> SmallVec<[RedLine; 2]> {
    let mut out = SmallVec::new();
    for section in sdp.split("\nm=").skip(1) {
        if let Some(line) = red_line(section) {
            out.push(line);
        }
    }
    out
}

/// One m-section, its `m=` prefix removed.
fn red_line(section: &str) -> Option<RedLine> {
    let mut lines = section.lines().map(str::trim_end);
    let mline = lines.next()?;
    let mut fields = mline.split_ascii_whitespace();
    if fields.next()? != "audio" || fields.next()? == "0" {
        return None;
    }
    let formats: SmallVec<[u8; 16]> = fields.skip(1).filter_map(|f| f.parse().ok()).collect();
    let mut mid = None;
    let mut red = None;
    let mut fmtps: SmallVec<[(u8, &str); 8]> = SmallVec::new();
    for l in lines {
        if let Some(m) = l.strip_prefix("a=mid:") {
            mid = Some(m.trim());
        } else if let Some(map) = l.strip_prefix("a=rtpmap:") {
            let (pt, name) = map.split_once(' ')?;
            let pt: u8 = pt.parse().ok()?;
            let codec = name.split('/').next().unwrap_or("");
            if codec.eq_ignore_ascii_case("red") && formats.contains(&pt) {
                red = Some(pt);
            }
        } else if let Some(f) = l.strip_prefix("a=fmtp:") {
            if let Some((pt, params)) = f.split_once(' ') {
                if let Ok(pt) = pt.parse() {
                    fmtps.push((pt, params.trim()));
                }
            }
        }
    }
    let red = red?;
    let (_, params) = fmtps.iter().find(|(pt, _)| *pt == red)?;
    let mut blocks = params.split('/').map(|p| p.trim().parse::<u8>());
    let primary = blocks.next()?.ok()?;
    if !blocks.all(|b| b == Ok(primary)) || !formats.contains(&primary) {
        return None;
    }
    Some(RedLine {
        mid: Mid::from(mid?),
        red,
        primary,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: &str = "v=0\r\n\
o=- 1 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0 1 2\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 63 111\r\n\
c=IN IP4 0.0.0.0\r\n\
a=mid:0\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=rtpmap:63 red/48000/2\r\n\
a=fmtp:63 111/111\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
c=IN IP4 0.0.0.0\r\n\
a=mid:1\r\n\
a=rtpmap:111 opus/48000/2\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
a=mid:2\r\n\
a=rtpmap:96 VP8/90000\r\n";

    #[test]
    fn finds_red_per_audio_mline() {
        let lines = red_lines(ANSWER);
        assert_eq!(
            lines.as_slice(),
            &[RedLine {
                mid: Mid::from("0"),
                red: 63,
                primary: 111
            }]
        );
    }

    #[test]
    fn red_not_among_the_formats_or_rejected_does_not_count() {
        // The rtpmap without the format in the m= line (an answer that dropped it).
        let dropped = ANSWER.replace("SAVPF 63 111", "SAVPF 111");
        assert!(red_lines(&dropped).is_empty());
        let rejected = ANSWER.replace(
            "m=audio 9 UDP/TLS/RTP/SAVPF 63 111",
            "m=audio 0 UDP/TLS/RTP/SAVPF 63 111",
        );
        assert!(red_lines(&rejected).is_empty());
    }

    #[test]
    fn fmtp_must_name_one_listed_primary() {
        for fmtp in ["111/0", "110/110", "x/y", ""] {
            let sdp = ANSWER.replace("a=fmtp:63 111/111", &format!("a=fmtp:63 {fmtp}"));
            assert!(red_lines(&sdp).is_empty(), "{fmtp}");
        }
        let three = ANSWER.replace("a=fmtp:63 111/111", "a=fmtp:63 111/111/111");
        assert_eq!(red_lines(&three).len(), 1);
    }

    #[test]
    fn garbage_yields_nothing() {
        for s in [
            "",
            "m=",
            "m=audio",
            "v=0\nm=audio 9 X 63\na=rtpmap:63 red\na=fmtp:63 63/63",
        ] {
            assert!(red_lines(s).is_empty(), "{s:?}");
        }
    }
}
