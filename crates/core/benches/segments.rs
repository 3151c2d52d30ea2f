//! Segment counting throughput on mixed GSM, extended and emoji text.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// A corpus of typical bodies: plain GSM, GSM with extension characters, and UCS-2 with
/// emoji, curly quotes and accents, of short and long lengths.
fn corpus() -> Vec<String> {
    let bases = [
        "Hi Ana, this is Sam from Acme. Are you free for a quick call tomorrow at 10am?",
        "Your code is [4821] {valid 10 min} ~ reply STOP to opt out | costs 5€ ^_^",
        "Great news 🎉 — your order’s shipped! “See you soon” 😀 Café ümlaut ç",
        "Réunion à 15h, n’oubliez pas le dossier. 谢谢! 👍🏽",
    ];
    let mut out = Vec::new();
    for base in bases {
        for reps in [1, 3, 12] {
            out.push(base.repeat(reps));
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let corpus = corpus();
    let bytes: usize = corpus.iter().map(String::len).sum();
    let mut group = c.benchmark_group("segments");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("count", |b| {
        b.iter(|| {
            for body in &corpus {
                black_box(sms_core::count(black_box(body)));
            }
        })
    });
    group.bench_function("analyze", |b| {
        b.iter(|| {
            for body in &corpus {
                black_box(sms_core::analyze(black_box(body)));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
