//! `application/trickle-ice-sdpfrag` bodies (RFC 8840) for WHIP/WHEP `PATCH` (RFC 9725
//! §4.3): read the client's fragment (new ICE credentials and/or candidates), fold it into
//! the session's last offer for the media node, and write the fragment we answer an ICE
//! restart with.
//!
//! Text-level, like `sdp_fixup`: only ICE lines are touched. Must never let a client's line
//! break out of its own line (every value is checked for characters SDP does not allow).

/// What a client's fragment carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frag {
    pub ufrag: Option<String>,
    pub pwd: Option<String>,
    /// `candidate:…` values (without `a=`), in order.
    pub candidates: Vec<String>,
}

/// Most candidates one fragment may carry.
pub const MAX_CANDIDATES: usize = 64;

/// Why a fragment was refused (the message of a `400 bad_sdpfrag`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadFrag(pub String);

fn ice_chars(v: &str) -> bool {
    v.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

pub fn parse(body: &str) -> Result<Frag, BadFrag> {
    let mut frag = Frag::default();
    for line in body.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
        if let Some(v) = line.strip_prefix("a=ice-ufrag:") {
            if !(4..=256).contains(&v.len()) || !ice_chars(v) {
                return Err(BadFrag(format!("ice-ufrag `{v}` is not 4-256 ice-chars")));
            }
            frag.ufrag = Some(v.to_string());
        } else if let Some(v) = line.strip_prefix("a=ice-pwd:") {
            if !(22..=256).contains(&v.len()) || !ice_chars(v) {
                return Err(BadFrag("ice-pwd is not 22-256 ice-chars".into()));
            }
            frag.pwd = Some(v.to_string());
        } else if let Some(v) = line.strip_prefix("a=") {
            if v.starts_with("candidate:") {
                let fields = v.split(' ').count();
                if fields < 8 || v.len() > 512 || v.chars().any(char::is_control) {
                    return Err(BadFrag(format!("not a candidate: `{v}`")));
                }
                if frag.candidates.len() == MAX_CANDIDATES {
                    return Err(BadFrag(format!("more than {MAX_CANDIDATES} candidates")));
                }
                frag.candidates.push(v.to_string());
            }
            // Other attributes (mid, ice-options, end-of-candidates, group) say nothing we use.
        } else if !line.starts_with("m=") {
            return Err(BadFrag(format!("not an sdpfrag line: `{line}`")));
        }
    }
    if frag.ufrag.is_some() != frag.pwd.is_some() {
        return Err(BadFrag("ice-ufrag and ice-pwd come together".into()));
    }
    Ok(frag)
}

/// The first `a=ice-ufrag` of an SDP.
pub fn ufrag(sdp: &str) -> Option<&str> {
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix("a=ice-ufrag:"))
}

/// `offer` with `candidates` added to its first m-section (the bundle's transport), after
/// its `a=mid` line; candidates it already has are not repeated.
pub fn with_candidates(offer: &str, candidates: &[String]) -> String {
    let new: Vec<&String> = candidates
        .iter()
        .filter(|c| !offer.lines().any(|l| l.trim_end() == format!("a={c}")))
        .collect();
    let mut out = String::with_capacity(offer.len() + new.len() * 100);
    let mut done = new.is_empty();
    for line in offer.split_inclusive('\n') {
        out.push_str(line);
        if !done && line.starts_with("a=mid:") {
            for c in &new {
                out.push_str(&format!("a={c}\r\n"));
            }
            done = true;
        }
    }
    out
}

/// `offer` after an ICE restart: new credentials on every ICE line, its old candidates
/// replaced by `candidates`.
pub fn restarted(offer: &str, ufrag: &str, pwd: &str, candidates: &[String]) -> String {
    let mut out = String::with_capacity(offer.len());
    for line in offer.split_inclusive('\n') {
        let text = line.trim_end();
        if text.starts_with("a=ice-ufrag:") {
            out.push_str(&format!("a=ice-ufrag:{ufrag}\r\n"));
        } else if text.starts_with("a=ice-pwd:") {
            out.push_str(&format!("a=ice-pwd:{pwd}\r\n"));
        } else if !(text.starts_with("a=candidate:") || text == "a=end-of-candidates") {
            out.push_str(line);
        }
    }
    with_candidates(&out, candidates)
}

/// The fragment answering an ICE restart: our new credentials, then the first m-section's
/// `m=` and `a=mid` lines with our candidates and `a=end-of-candidates`.
pub fn answer_frag(answer: &str) -> String {
    let mut out = String::new();
    for key in ["a=ice-ufrag:", "a=ice-pwd:"] {
        if let Some(l) = answer
            .lines()
            .map(str::trim_end)
            .find(|l| l.starts_with(key))
        {
            out.push_str(l);
            out.push_str("\r\n");
        }
    }
    let first: Vec<&str> = answer
        .lines()
        .map(str::trim_end)
        .skip_while(|l| !l.starts_with("m="))
        .enumerate()
        .take_while(|(i, l)| *i == 0 || !l.starts_with("m="))
        .map(|(_, l)| l)
        .collect();
    for l in first {
        if l.starts_with("m=") || l.starts_with("a=mid:") || l.starts_with("a=candidate:") {
            out.push_str(l);
            out.push_str("\r\n");
        }
    }
    out.push_str("a=end-of-candidates\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
        a=group:BUNDLE 0 1\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=ice-ufrag:oldu\r\n\
        a=ice-pwd:oldpasswordoldpassword00\r\na=candidate:1 1 udp 2122260223 10.0.0.2 5000 typ host\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=ice-ufrag:oldu\r\n\
        a=ice-pwd:oldpasswordoldpassword00\r\n";

    #[test]
    fn a_fragment_gives_credentials_and_candidates() {
        let body = "a=ice-options:trickle\r\na=group:BUNDLE 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
                    a=mid:0\r\na=ice-ufrag:newu\r\na=ice-pwd:newpasswordnewpassword00\r\n\
                    a=candidate:2 1 udp 2122260223 10.0.0.3 6000 typ host\r\na=end-of-candidates\r\n";
        let f = parse(body).unwrap();
        assert_eq!(f.ufrag.as_deref(), Some("newu"));
        assert_eq!(
            f.candidates,
            ["candidate:2 1 udp 2122260223 10.0.0.3 6000 typ host"]
        );
        for bad in [
            "hello",
            "a=ice-ufrag:ab\r\na=ice-pwd:newpasswordnewpassword00",
            "a=ice-ufrag:newu",
            "a=ice-ufrag:new\"u\r\na=ice-pwd:newpasswordnewpassword00",
            "a=candidate:1 1 udp",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let many: String = (0..=MAX_CANDIDATES)
            .map(|i| format!("a=candidate:{i} 1 udp 1 10.0.0.3 {} typ host\r\n", 1000 + i))
            .collect();
        assert!(parse(&many).is_err());
    }

    #[test]
    fn a_restart_replaces_credentials_and_candidates_and_trickle_adds_once() {
        let cands = vec!["candidate:2 1 udp 2122260223 10.0.0.3 6000 typ host".to_string()];
        let r = restarted(OFFER, "newu", "newpasswordnewpassword00", &cands);
        assert_eq!(r.matches("a=ice-ufrag:newu\r\n").count(), 2);
        assert!(!r.contains("oldu") && !r.contains("10.0.0.2"));
        assert_eq!(ufrag(&r), Some("newu"));
        let once = with_candidates(&r, &cands);
        assert_eq!(once, r, "a known candidate is not added again");
        let t = with_candidates(OFFER, &cands);
        let mid0 = t.find("a=mid:0").unwrap();
        let cand = t.find("10.0.0.3").unwrap();
        assert!(cand > mid0 && cand < t.find("m=video").unwrap(), "{t}");
    }

    #[test]
    fn the_answer_fragment_has_credentials_and_the_first_sections_candidates() {
        let answer = OFFER.replace("oldu", "srvu");
        let f = answer_frag(&answer);
        assert_eq!(
            f,
            "a=ice-ufrag:srvu\r\na=ice-pwd:oldpasswordoldpassword00\r\n\
             m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n\
             a=candidate:1 1 udp 2122260223 10.0.0.2 5000 typ host\r\na=end-of-candidates\r\n"
        );
    }
}
