//! SRTP cost of one 1200-byte RTP payload, per crypto provider and profile, with Shardcast's
//! own SRTP (`shardcast_rtp::srtp`, what the server runs): *seal* is `SrtpSealer::seal_rtp`
//! of a header as the server writes it for a video copy (transport-wide sequence number,
//! abs-send-time, mid: 28 bytes) into a reused buffer; *open* is `SrtpOpener::open_rtp`
//! (ROC estimate, replay check, tag, decryption) of a fresh packet each iteration (the
//! opener refuses replays; sealing the next one is set-up, not measured).

mod common;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use shardcast_bench::srtp::{providers, session_with, End, Profile};
use shardcast_rtp::rtp::{write_header, ExtIds, HeaderFields, OutExtensions};
use shardcast_rtp::srtp::{SrtpSealer, SEAL_SLACK};
use str0m::rtp::ExtensionMap;

const PAYLOAD: usize = 1200;
const SSRC: u32 = 0x0bad_cafe;
const BUF: usize = 96 + PAYLOAD + 16 + SEAL_SLACK;

/// The header of the copy with extended sequence number `index`, with the extension ids a
/// str0m peer negotiates.
fn header(ids: &ExtIds, index: u64, out: &mut [u8; 96]) -> usize {
    let fields = HeaderFields {
        marker: false,
        payload_type: 96,
        seq: index as u16,
        timestamp: (index * 3000) as u32,
        ssrc: SSRC,
    };
    let ext = OutExtensions {
        mid: Some(b"1"),
        transport_cc: Some(index as u16),
        abs_send_time: Some(0x12_3456),
        ..OutExtensions::default()
    };
    write_header(out, &fields, &ext, ids).expect("fits")
}

fn seal(
    sealer: &mut SrtpSealer,
    ids: &ExtIds,
    index: u64,
    payload: &[u8],
    out: &mut [u8],
) -> usize {
    let mut h = [0u8; 96];
    let n = header(ids, index, &mut h);
    sealer
        .seal_rtp(&h[..n], payload, (index >> 16) as u32, out)
        .expect("sealed")
}

fn srtp(c: &mut Criterion<common::ThreadCpuTime>) {
    let payload = vec![0xa5u8; PAYLOAD];
    let ids = ExtIds::from_str0m(&ExtensionMap::standard());
    let mut group = c.benchmark_group("srtp");
    group.throughput(Throughput::Bytes(PAYLOAD as u64));
    for (provider, crypto) in providers() {
        for profile in Profile::ALL {
            let id = format!("{provider}/{}", profile.name());
            // The forwarder seals what a peer opens, as the server seals for a subscriber.
            let mut forwarder = session_with(crypto, profile, End::Forwarder);
            let mut peer = session_with(crypto, profile, End::Peer);
            let mut out = vec![0u8; BUF];
            let mut hdr = [0u8; 96];
            let mut index = 0u64;
            group.bench_function(BenchmarkId::new("seal_1200", &id), |b| {
                b.iter(|| {
                    index += 1;
                    // The header write is in the loop: the server writes one per copy.
                    let n = header(&ids, index, &mut hdr);
                    forwarder
                        .sealer
                        .seal_rtp(&hdr[..n], &payload, (index >> 16) as u32, &mut out)
                        .expect("sealed")
                })
            });

            let mut next = 0u64;
            let mut plain = vec![0u8; BUF + SEAL_SLACK];
            group.bench_function(BenchmarkId::new("open_1200", &id), |b| {
                b.iter_batched_ref(
                    || {
                        next += 1;
                        let mut sealed = vec![0u8; BUF];
                        let n = seal(&mut peer.sealer, &ids, next, &payload, &mut sealed);
                        sealed.truncate(n);
                        sealed
                    },
                    |sealed| {
                        let opened = forwarder.opener.open_rtp(sealed, &mut plain);
                        assert!(opened.is_ok());
                    },
                    BatchSize::SmallInput,
                )
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = srtp
}
criterion_main!(benches);
