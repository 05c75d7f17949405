//! Checks on what a subscriber received on one m-line: is it one continuous stream?

/// Packets `(extended seq, RTP timestamp, VP8 picture id at a frame start)` of one outgoing
/// stream, in any order with duplicates (retransmissions): after sorting by seq, the seqs
/// have no gap, timestamps never go back, and each frame's picture id is the previous + 1.
pub fn continuous(packets: &[(u64, u32, Option<u16>)]) -> Result<(), String> {
    let mut p = packets.to_vec();
    p.sort_by_key(|x| x.0);
    p.dedup_by_key(|x| x.0);
    for w in p.windows(2) {
        let ((s0, t0, _), (s1, t1, _)) = (w[0], w[1]);
        if s1 != s0 + 1 {
            return Err(format!("sequence gap after {s0} (next {s1})"));
        }
        if (t1.wrapping_sub(t0) as i32) < 0 {
            return Err(format!("timestamp goes back at seq {s1}: {t0} -> {t1}"));
        }
    }
    let pids: Vec<(u64, u16)> = p.iter().filter_map(|x| Some((x.0, x.2?))).collect();
    for w in pids.windows(2) {
        if w[1].1 != (w[0].1 + 1) & 0x7fff {
            return Err(format!(
                "picture id jumps at seq {}: {} -> {}",
                w[1].0, w[0].1, w[1].1
            ));
        }
    }
    Ok(())
}
