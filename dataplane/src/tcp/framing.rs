//! RFC 4571 framing: each datagram on an ICE-TCP stream is a 2-byte big-endian length and
//! that many bytes. Pure byte handling, no sockets: `Deframer` cuts frames out of what a
//! connection read, `encode` writes one. A zero or over-long length is not something a WebRTC
//! stack sends (no datagram of ours exceeds an MTU): the caller closes the connection.

/// Why a stream stopped making sense.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("zero-length frame")]
    Empty,
    #[error("frame of {0} bytes is longer than the limit")]
    Oversize(usize),
}

/// Appends `payload` as one frame to `out`. `payload` must be at most 65535 bytes (the
/// caller's datagrams are at most an MTU).
pub fn encode(out: &mut Vec<u8>, payload: &[u8]) {
    debug_assert!(payload.len() <= u16::MAX as usize);
    out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    out.extend_from_slice(payload);
}

/// Bytes of one frame on the wire.
pub fn framed_len(payload: usize) -> usize {
    2 + payload
}

/// The receive side of one connection: a fixed buffer that holds at least one whole frame.
#[derive(Debug)]
pub struct Deframer {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    max_frame: usize,
}

impl Deframer {
    pub fn new(max_frame: usize) -> Self {
        let max_frame = max_frame.clamp(1, u16::MAX as usize);
        Deframer {
            // Two frames' worth, so a read usually brings in more than one.
            buf: vec![0; 2 * framed_len(max_frame)].into_boxed_slice(),
            start: 0,
            end: 0,
            max_frame,
        }
    }

    /// Where the next read goes (never empty: a complete frame is always taken out first).
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.buf[self.end..]
    }

    /// `n` bytes were read into `spare()`.
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// Bytes of a partial frame held.
    pub fn pending(&self) -> usize {
        self.end - self.start
    }

    /// The next complete frame, if one is buffered.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, FrameError> {
        let held = &self.buf[self.start..self.end];
        if held.len() < 2 {
            return Ok(None);
        }
        let len = u16::from_be_bytes([held[0], held[1]]) as usize;
        if len == 0 {
            return Err(FrameError::Empty);
        }
        if len > self.max_frame {
            return Err(FrameError::Oversize(len));
        }
        if held.len() < framed_len(len) {
            return Ok(None);
        }
        let at = self.start + 2;
        self.start += framed_len(len);
        Ok(Some(&self.buf[at..at + len]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `bytes` as reads of at most what fits, taking frames out after each read (as
    /// a connection does).
    fn feed(d: &mut Deframer, mut bytes: &[u8], got: &mut Vec<Vec<u8>>) {
        while !bytes.is_empty() {
            let spare = d.spare();
            assert!(!spare.is_empty(), "room for a read once frames are out");
            let n = spare.len().min(bytes.len());
            spare[..n].copy_from_slice(&bytes[..n]);
            d.filled(n);
            bytes = &bytes[n..];
            while let Ok(Some(f)) = d.next_frame() {
                got.push(f.to_vec());
            }
        }
    }

    #[test]
    fn frames_come_out_whole_however_the_stream_is_cut() {
        let mut wire = Vec::new();
        let payloads: Vec<Vec<u8>> = (1..=40).map(|i| vec![i as u8; i * 37]).collect();
        for p in &payloads {
            encode(&mut wire, p);
        }
        for cut in [1, 2, 3, 7, 500, 1502, 4000] {
            let mut d = Deframer::new(1500);
            let mut got = Vec::new();
            for chunk in wire.chunks(cut) {
                feed(&mut d, chunk, &mut got);
            }
            assert_eq!(got, payloads, "cut into {cut}-byte reads");
            assert_eq!(d.pending(), 0);
        }
    }

    #[test]
    fn zero_and_oversize_lengths_are_errors() {
        let mut got = Vec::new();
        let mut d = Deframer::new(1500);
        feed(&mut d, &[0, 0, 1], &mut got);
        assert_eq!(d.next_frame(), Err(FrameError::Empty));
        let mut d = Deframer::new(1500);
        feed(&mut d, &1501u16.to_be_bytes(), &mut got);
        assert_eq!(d.next_frame(), Err(FrameError::Oversize(1501)));
        // "GE" of an HTTP request read as a length.
        let mut d = Deframer::new(1500);
        feed(&mut d, b"GET / HTTP/1.1\r\n", &mut got);
        assert_eq!(d.next_frame(), Err(FrameError::Oversize(0x4745)));
        assert!(got.is_empty());
        let mut d = Deframer::new(1500);
        let mut wire = Vec::new();
        encode(&mut wire, &[9; 1500]);
        feed(&mut d, &wire, &mut got);
        assert_eq!(got, vec![vec![9; 1500]]);
    }
}
