//! RFC 2198 RED as the forwarding path handles it (`forward::red`): the ingress parse of a
//! publisher's (hostile) RED payload, and for an accepted one both egress forms — the primary
//! block cut out for a subscriber without RED, and the blocks' payload type mapped for one
//! with it. Input: byte 0 the negotiated primary payload type (low 7 bits), byte 1 the
//! subscriber's (low 7 bits), then the RED payload.
#![no_main]

use shardcast_sfu::forward::red::{parse, MAX_RED_BLOCKS};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let [a, b, payload @ ..] = data else {
        return;
    };
    let (primary_pt, sub_pt) = (a & 0x7f, b & 0x7f);
    let Ok(layout) = parse(payload, primary_pt) else {
        return;
    };
    assert!(usize::from(layout.blocks) >= 1);
    assert!(usize::from(layout.blocks) <= MAX_RED_BLOCKS + 1);
    assert!(usize::from(layout.primary) <= payload.len());
    // The primary block is the payload's tail: a sub-slice, nothing copied.
    let primary = layout.primary(payload);
    assert_eq!(
        primary.as_ptr() as usize + primary.len(),
        payload.as_ptr() as usize + payload.len()
    );
    // Mapping the blocks' payload type keeps the layout and the primary bytes.
    let mut scratch = Vec::new();
    let mapped = layout.with_block_pt(payload, sub_pt, &mut scratch).to_vec();
    assert_eq!(mapped.len(), payload.len());
    let again = parse(&mapped, sub_pt).expect("a mapped RED payload parses");
    assert_eq!(
        (again.primary, again.blocks),
        (layout.primary, layout.blocks)
    );
    assert_eq!(again.primary(&mapped), primary);
});
