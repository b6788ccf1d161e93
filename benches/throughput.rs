//! Throughput of the hot paths: chunking, hashing, literal decoding, a copy-heavy apply and the
//! read-back from the medium.
//! `cargo bench -p abdelta` prints MB/s per case.

use abdelta::DEFAULT_CHUNKING;
use abdelta::DiffOptions;
use abdelta::format::Limits;
use abdelta::internals::{boundaries, chunk_and_hash};
use abdelta::no_progress;
use abdelta::storage::{MemBundle, MemTarget};
use abdelta::{SecretKey, VerifiedBundle};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn image(len: usize) -> Vec<u8> {
    let mut s = 0x1234_5678_u64;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        s = s
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        // Half compressible text-like runs, half noise: closer to a filesystem than either.
        if (s >> 62) < 2 {
            out.extend_from_slice(b"station charger relay ocpp firmware ");
        } else {
            out.extend_from_slice(&s.to_le_bytes());
        }
    }
    out.truncate(len);
    out
}

fn throughput(c: &mut Criterion) {
    let data = image(64 << 20);
    let mut g = c.benchmark_group("64MiB");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("fastcdc boundaries", |b| {
        b.iter(|| boundaries(&data, DEFAULT_CHUNKING).len())
    });
    g.bench_function("blake3 one core", |b| {
        b.iter(|| abdelta::internals::chunk_hash(&data))
    });
    g.bench_function("blake3 all cores", |b| {
        b.iter(|| abdelta::internals::hash_large(&data))
    });
    g.bench_function("chunk and hash", |b| {
        b.iter(|| chunk_and_hash(&data, DEFAULT_CHUNKING).len())
    });

    // A copy-heavy apply: the target is the source with a few edits.
    let mut target = data.clone();
    for at in (0..target.len()).step_by(8 << 20) {
        target[at] ^= 1;
    }
    let key = SecretKey::from_seed(&[1; 32]);
    let options = DiffOptions {
        literal_level: 1,
        hardware_compat: vec!["bench".into()],
        ..DiffOptions::default()
    };
    let mut bundle = Vec::new();
    abdelta::diff(&data, &target, &options, &key, &mut bundle, &no_progress).expect("diff");
    let verified =
        VerifiedBundle::open(&MemBundle(&bundle), &[key.public()], &Limits::DEFAULT).expect("open");
    let plan = abdelta::plan(&verified, &data);
    g.bench_function("plan (hash-check the source)", |b| {
        b.iter(|| abdelta::plan(&verified, &data).steps.len())
    });
    // The target is allocated once and rewritten each iteration: a warm partition, not the
    // cost of faulting in fresh memory.
    let mut out = MemTarget {
        bytes: Vec::with_capacity(target.len()),
    };
    let mut apply = |plan: &abdelta::Plan, source: &dyn abdelta::storage::Source| {
        out.bytes.clear();
        abdelta::apply(
            &verified,
            &MemBundle(&bundle),
            source,
            &mut out,
            plan,
            &no_progress,
        )
        .expect("apply");
    };
    g.bench_function("apply copy-heavy into memory", |b| {
        b.iter(|| apply(&plan, &data))
    });
    // The same from a source on disk, as a station reads its running partition.
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("readback");
    std::fs::create_dir_all(&dir).expect("bench dir");
    let source_path = dir.join("source.img");
    std::fs::write(&source_path, &data).expect("write the source");
    let on_disk = abdelta::storage::SourceImage::open(&source_path).expect("open the source");
    g.bench_function("plan from a file source", |b| {
        b.iter(|| abdelta::plan(&verified, &on_disk).steps.len())
    });
    g.bench_function("apply copy-heavy from a file source", |b| {
        b.iter(|| apply(&plan, &on_disk))
    });
    let blank = abdelta::plan(&verified, &[]);
    g.bench_function("apply from literals (blank device)", |b| {
        b.iter(|| apply(&blank, &Vec::new()))
    });
    // The read-back after an apply: the target's cached pages are dropped first, so this is
    // the medium's read speed (under target/, not a tmpfs, whose pages cannot be dropped).
    let path = dir.join("target.img");
    std::fs::write(&path, &target).expect("write the target");
    std::fs::File::open(&path)
        .and_then(|f| f.sync_all())
        .expect("sync the target");
    g.bench_function("read-back from the medium (cache dropped)", |b| {
        b.iter(|| abdelta::verify_path(verified.manifest(), &path).expect("verified"))
    });
    g.finish();
}

criterion_group!(benches, throughput);
criterion_main!(benches);
