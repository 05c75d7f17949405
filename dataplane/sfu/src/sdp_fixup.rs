//! Text-level fix-up of the SDP str0m writes for us (answers and server offers), so that
//! independent WebRTC stacks accept it.
//!
//! str0m 0.25 puts the `a=candidate` lines only in the first m-section (RFC 8843 lets a
//! BUNDLE answerer do that) and never writes `a=end-of-candidates`. Some stacks read the
//! transport of another bundled section and find no candidate there: aiortc 1.x with
//! `max-bundle` never starts its checks ("Components {1} have no candidate pairs").
//! Chromium, aiortc and most servers repeat the candidates in every bundled section, so we
//! do the same, and say that no more will come (RFC 8840 §8.2): a shard's one host
//! candidate is known before the first answer, and we never trickle.
//!
//! Owns nothing. Must never change anything but those two attributes: no m-section, no
//! direction, no other attribute is added, removed or reordered; rejected sections (port 0)
//! and sections outside the BUNDLE group are left as they are.

/// `sdp` with every candidate line of any m-section present in each bundled m-section,
/// followed by `a=end-of-candidates`. Unchanged when it has no candidate at all (nothing to
/// copy, and "end of candidates" would then promise there are none). Idempotent.
pub fn candidates_in_every_bundled_section(sdp: &str) -> String {
    let lines: Vec<&str> = sdp.split_inclusive('\n').collect();
    let text = |l: &str| l.trim_end_matches(['\r', '\n']).to_string();
    let first_m = lines.iter().position(|l| l.starts_with("m="));
    let Some(first_m) = first_m else {
        return sdp.to_string();
    };
    let bundle: Vec<String> = lines[..first_m]
        .iter()
        .filter_map(|l| text(l).strip_prefix("a=group:BUNDLE").map(str::to_string))
        .flat_map(|mids| {
            mids.split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    let has_group = lines[..first_m]
        .iter()
        .any(|l| l.starts_with("a=group:BUNDLE"));

    let mut candidates: Vec<String> = Vec::new();
    for l in &lines[first_m..] {
        let t = text(l);
        if t.starts_with("a=candidate:") && !candidates.contains(&t) {
            candidates.push(t);
        }
    }
    if candidates.is_empty() {
        return sdp.to_string();
    }

    // Section boundaries: [start, end) for each m-section.
    let mut starts: Vec<usize> = (first_m..lines.len())
        .filter(|i| lines[*i].starts_with("m="))
        .collect();
    starts.push(lines.len());

    let mut out = String::with_capacity(sdp.len() + 256);
    for l in &lines[..first_m] {
        out.push_str(l);
    }
    for w in starts.windows(2) {
        let section = &lines[w[0]..w[1]];
        let eol = if section[0].ends_with("\r\n") {
            "\r\n"
        } else {
            "\n"
        };
        let rejected = text(section[0]).split(' ').nth(1) == Some("0");
        let mid = section
            .iter()
            .find_map(|l| text(l).strip_prefix("a=mid:").map(str::to_string));
        let bundled = if has_group {
            mid.is_some_and(|m| bundle.contains(&m))
        } else {
            true
        };
        if rejected || !bundled {
            section.iter().for_each(|l| out.push_str(l));
            continue;
        }
        // Keep every line but an end-of-candidates (re-added last); make sure the section
        // does not end without a line break before what we append.
        for l in section {
            if text(l) == "a=end-of-candidates" {
                continue;
            }
            out.push_str(l);
        }
        if !out.ends_with('\n') {
            out.push_str(eol);
        }
        let present: Vec<String> = section.iter().map(|l| text(l)).collect();
        for c in &candidates {
            if !present.contains(c) {
                out.push_str(c);
                out.push_str(eol);
            }
        }
        out.push_str("a=end-of-candidates");
        out.push_str(eol);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAND: &str = "a=candidate:1 1 udp 2130706175 10.0.0.1 5000 typ host";

    /// The shape str0m writes: candidates in the first section only.
    fn str0m_like() -> String {
        [
            "v=0",
            "o=- 1 2 IN IP4 0.0.0.0",
            "s=-",
            "t=0 0",
            "a=group:BUNDLE 0 1 2",
            "m=audio 9 UDP/TLS/RTP/SAVPF 111",
            "c=IN IP4 0.0.0.0",
            "a=mid:0",
            CAND,
            "a=ice-ufrag:u",
            "a=sendonly",
            "m=video 9 UDP/TLS/RTP/SAVPF 96",
            "c=IN IP4 0.0.0.0",
            "a=mid:1",
            "a=ice-ufrag:u",
            "a=recvonly",
            "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
            "a=mid:2",
            "a=ice-ufrag:u",
            "",
        ]
        .join("\r\n")
    }

    fn sections(sdp: &str) -> Vec<Vec<&str>> {
        let mut out: Vec<Vec<&str>> = Vec::new();
        for l in sdp.lines() {
            if l.starts_with("m=") {
                out.push(Vec::new());
            }
            if let Some(s) = out.last_mut() {
                s.push(l);
            }
        }
        out
    }

    #[test]
    fn every_bundled_section_gets_the_candidates_then_end_of_candidates() {
        let fixed = candidates_in_every_bundled_section(&str0m_like());
        for s in sections(&fixed) {
            assert_eq!(s.iter().filter(|l| **l == CAND).count(), 1, "{s:?}");
            assert_eq!(s.last(), Some(&"a=end-of-candidates"), "{s:?}");
        }
        assert!(fixed.split_inclusive('\n').all(|l| l.ends_with("\r\n")));
        // Nothing else moved: dropping what was added gives the input back.
        let stripped: String = fixed
            .split_inclusive('\n')
            .enumerate()
            .filter(|(_, l)| !l.starts_with("a=end-of-candidates"))
            .filter(|(i, l)| !(l.starts_with("a=candidate") && *i > 9))
            .map(|(_, l)| l)
            .collect();
        assert_eq!(stripped, str0m_like());
    }

    #[test]
    fn idempotent() {
        let once = candidates_in_every_bundled_section(&str0m_like());
        assert_eq!(candidates_in_every_bundled_section(&once), once);
    }

    #[test]
    fn rejected_and_unbundled_sections_and_candidate_free_sdp_are_left_alone() {
        let sdp = str0m_like()
            .replace("a=group:BUNDLE 0 1 2", "a=group:BUNDLE 0 1")
            .replace("m=video 9", "m=video 0");
        let fixed = candidates_in_every_bundled_section(&sdp);
        let s = sections(&fixed);
        assert!(s[0].contains(&CAND) && s[0].contains(&"a=end-of-candidates"));
        assert!(
            !s[1].contains(&CAND),
            "rejected section untouched: {:?}",
            s[1]
        );
        assert!(!s[2].contains(&CAND), "not in the group: {:?}", s[2]);
        assert_eq!(s[1].len() + s[2].len(), 8, "nothing added");

        let none = str0m_like().replace(&format!("{CAND}\r\n"), "");
        assert_eq!(candidates_in_every_bundled_section(&none), none);
        assert_eq!(candidates_in_every_bundled_section(""), "");
        assert_eq!(candidates_in_every_bundled_section("v=0\r\n"), "v=0\r\n");
    }

    #[test]
    fn without_a_group_every_live_section_counts_and_bare_newlines_work() {
        let sdp = str0m_like()
            .replace("a=group:BUNDLE 0 1 2\r\n", "")
            .replace("\r\n", "\n");
        let sdp = sdp.trim_end().to_string(); // no final line break either
        let fixed = candidates_in_every_bundled_section(&sdp);
        assert!(!fixed.contains('\r'));
        for s in sections(&fixed) {
            assert!(s.contains(&CAND) && s.last() == Some(&"a=end-of-candidates"));
        }
    }

    #[test]
    fn a_str0m_answer_keeps_parsing_and_names_the_candidate_everywhere() {
        use std::time::Instant;
        use str0m::change::{SdpAnswer, SdpOffer};
        use str0m::media::{Direction, MediaKind};
        use str0m::{Candidate, Rtc};
        let now = Instant::now();
        let mut client = Rtc::new(now);
        client
            .add_local_candidate(Candidate::host("10.0.0.2:4000".parse().unwrap(), "udp").unwrap());
        let mut api = client.sdp_api();
        api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        let (offer, pending) = api.apply().unwrap();
        let mut server = Rtc::new(now);
        server
            .add_local_candidate(Candidate::host("10.0.0.1:5000".parse().unwrap(), "udp").unwrap());
        let offer = SdpOffer::from_sdp_string(&offer.to_sdp_string()).unwrap();
        let answer = server
            .sdp_api()
            .accept_offer(offer)
            .unwrap()
            .to_sdp_string();
        let fixed = candidates_in_every_bundled_section(&answer);
        let s = sections(&fixed);
        assert_eq!(s.len(), 2);
        for section in &s {
            let cands = section
                .iter()
                .filter(|l| l.starts_with("a=candidate:"))
                .count();
            assert_eq!(cands, 1, "{section:?}");
            assert!(section.contains(&"a=end-of-candidates"));
        }
        let parsed = SdpAnswer::from_sdp_string(&fixed).expect("str0m parses the fixed answer");
        client
            .sdp_api()
            .accept_answer(pending, parsed)
            .expect("and accepts it");
    }
}
