//! The capture writer, in MB/s of relayed input: every logged chunk becomes TCP segments
//! (headers, checksums over the payload, a copy) and an ACK.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::SystemTime;

use tcpspy::log::pcap::Conversation;
use tcpspy::types::Dir;

fn pcap(c: &mut Criterion) {
    let data: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let mut g = c.benchmark_group("pcap");
    g.throughput(Throughput::Bytes(data.len() as u64));
    for (name, client, target) in [
        ("ipv4", "127.0.0.1:40000", "127.0.0.1:5432"),
        ("ipv6", "[::1]:40000", "[::1]:5432"),
    ] {
        let mut conv = Conversation::new(1, client.parse().unwrap(), target.parse().unwrap());
        let mut out = Vec::with_capacity(data.len() * 2);
        let now = SystemTime::now();
        conv.open(now, "bench", &mut out);
        conv.connected(now, &mut out);
        g.bench_function(format!("64 KiB chunk, {name}"), |b| {
            b.iter(|| {
                out.clear();
                conv.data(Dir::ClientToServer, now, black_box(&data), &mut out);
                black_box(out.len())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, pcap);
criterion_main!(benches);
