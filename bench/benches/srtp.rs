//! SRTP cost of one 1200-byte RTP payload, per crypto provider and profile, with str0m's own
//! SRTP: protect is `TestSrtp` (str0m's `protect_rtp`), unprotect is the same provider's
//! cipher and HMAC as str0m's `unprotect_rtp` (see `shardcast_bench::srtp`).

mod common;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shardcast_bench::srtp::{providers, Profile, SrtpReceiver, SrtpSender, HEADER_LEN};
use str0m::rtp::{RtpHeader, Ssrc};

const PAYLOAD: usize = 1200;
const SSRC: u32 = 0x0bad_cafe;

fn header(seq: u16) -> RtpHeader {
    RtpHeader {
        sequence_number: seq,
        timestamp: 90_000,
        ssrc: Ssrc::from(SSRC),
        payload_type: 96.into(),
        ..Default::default()
    }
}

fn srtp(c: &mut Criterion<common::ThreadCpuTime>) {
    let payload = vec![0xa5u8; PAYLOAD];
    let mut group = c.benchmark_group("srtp");
    group.throughput(Throughput::Bytes(PAYLOAD as u64));
    for (provider, crypto) in providers() {
        for profile in Profile::ALL {
            let id = format!("{provider}/{}", profile.name());
            let mut sender = SrtpSender::new(&crypto, profile);
            let mut index = 0u64;
            group.bench_function(BenchmarkId::new("protect_1200", &id), |b| {
                b.iter(|| {
                    index += 1;
                    sender.protect(header(index as u16), index, &payload)
                })
            });

            let mut receiver = SrtpReceiver::new(&crypto, profile);
            let sealed = sender.protect(header(5), 5, &payload);
            group.bench_function(BenchmarkId::new("unprotect_1200", &id), |b| {
                b.iter(|| {
                    let opened = receiver.unprotect(&sealed, HEADER_LEN, SSRC, 5);
                    assert!(opened.is_some());
                })
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
