//! The hex dump formatter, in MB/s of relayed input: it runs once per byte the proxy logs.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

fn hexdump(c: &mut Criterion) {
    let data: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let mut out = Vec::with_capacity(data.len() * 5);
    let mut g = c.benchmark_group("hexdump");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("dump 64 KiB chunk", |b| {
        b.iter(|| {
            out.clear();
            tcpspy::log::hexdump::dump(black_box(&data), &mut out);
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, hexdump);
criterion_main!(benches);
