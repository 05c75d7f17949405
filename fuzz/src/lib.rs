//! What the fuzz targets share: cutting one fuzzer input into several records, so a target
//! can feed a sequence of packets (or messages) into the same state, as a peer would.
//!
//! A record is one tag byte, a big-endian 16-bit length and that many bytes (fewer at the
//! end of the input). The layout is easy for libFuzzer to mutate and for a person to write
//! seeds in (`fuzz/seeds.py` writes the seed corpora this way).

/// The records of `data`: `(tag, bytes)` until the input runs out.
pub fn records(data: &[u8]) -> Records<'_> {
    Records { rest: data }
}

pub struct Records<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Records<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let (&tag, rest) = self.rest.split_first()?;
        let (len, rest) = match rest {
            [hi, lo, rest @ ..] => (usize::from(u16::from_be_bytes([*hi, *lo])), rest),
            _ => (rest.len(), &[][..]),
        };
        let (body, rest) = rest.split_at(len.min(rest.len()));
        self.rest = rest;
        Some((tag, body))
    }
}

/// Encodes records the way [`records`] reads them (for seed corpora).
pub fn encode(records: &[(u8, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (tag, body) in records {
        out.push(*tag);
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(body);
    }
    out
}
