//! Sealing and opening allocate nothing (Rust heap, counted per thread by a wrapping global
//! allocator; C code allocating through malloc would not show here), for every profile: the
//! keys are made once per session (str0m's provider cipher for AES-CM built an aws-lc key,
//! one allocation, per call; ours does not). What sealing costs is measured in bench/
//! (criterion), never here.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use shardcast_rtp::srtp::{DtlsKeys, Profile, SrtpError, SrtpSession, SEAL_SLACK};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator unchanged; only counts calls on this thread.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(|a| a.get())
}

fn sessions(profile: Profile) -> (SrtpSession, SrtpSession) {
    let provider = str0m::crypto::from_feature_flags();
    let material: Vec<u8> = (0..profile.keying_material_len())
        .map(|i| i as u8)
        .collect();
    let keys = |dtls_client| DtlsKeys {
        profile,
        material: material.clone(),
        dtls_client,
    };
    (
        SrtpSession::new(&provider, &keys(true)).unwrap(),
        SrtpSession::new(&provider, &keys(false)).unwrap(),
    )
}

/// A 12-byte header and a one-byte-form extension block (8 bytes), as the SFU writes.
fn header(seq: u16) -> [u8; 20] {
    let mut h = [
        0x90, 96, 0, 0, 0, 1, 0, 0, 0xab, 0xcd, 0, 1, 0xbe, 0xde, 0, 1, 0x10, 0x42, 0, 0,
    ];
    h[2..4].copy_from_slice(&seq.to_be_bytes());
    h
}

#[test]
fn seal_and_open_do_not_allocate() {
    for profile in Profile::ALL {
        let (mut tx, mut rx) = sessions(profile);
        let payload = [0x5au8; 1200];
        let mut sealed = [0u8; 1300];
        let mut opened = [0u8; 1300 + SEAL_SLACK];
        let rr = [0x80, 201, 0, 1, 0, 0, 0, 9];
        // The first packet of a stream takes a table slot (allocates once per SSRC).
        let n = tx
            .sealer
            .seal_rtp(&header(0), &payload, 0, &mut sealed)
            .unwrap();
        rx.opener.open_rtp(&sealed[..n], &mut opened).unwrap();
        let n = tx.sealer.seal_rtcp(&rr, &mut sealed).unwrap();
        rx.opener.open_rtcp(&sealed[..n], &mut opened).unwrap();

        let before = allocations();
        for seq in 1..1000u16 {
            let n = tx
                .sealer
                .seal_rtp(&header(seq), &payload, 0, &mut sealed)
                .unwrap();
            rx.opener.open_rtp(&sealed[..n], &mut opened).unwrap();
            // Replays and (for AES-CM) forgeries are refused without allocating too.
            assert_eq!(
                rx.opener.open_rtp(&sealed[..n], &mut opened),
                Err(SrtpError::Replayed)
            );
            let n = tx.sealer.seal_rtcp(&rr, &mut sealed).unwrap();
            rx.opener.open_rtcp(&sealed[..n], &mut opened).unwrap();
        }
        assert_eq!(allocations() - before, 0, "{profile:?}");

        if profile == Profile::Aes128CmSha1_80 {
            let n = tx
                .sealer
                .seal_rtp(&header(5000), &payload, 0, &mut sealed)
                .unwrap();
            sealed[n - 1] ^= 1;
            let before = allocations();
            for _ in 0..100 {
                assert_eq!(
                    rx.opener.open_rtp(&sealed[..n], &mut opened),
                    Err(SrtpError::AuthFailed)
                );
            }
            assert_eq!(allocations() - before, 0, "forged AES-CM");
        }
    }
}
