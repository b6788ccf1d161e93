//! The design names the `bsdiff` crate as the patch matcher; the generator uses `bidiff`.
//! This measures both on image pairs: each matcher's matches over the whole new file, turned
//! into the same bsdiff-class content (`content_of_matches`) and compressed the same way
//! (the generator's LZMA estimate), with the matching time.
//!
//!     cargo run --release -p abdelta --example matchers -- OLD NEW [OLD NEW ...]

use std::time::Instant;

use abdelta::internals as codec;

/// Matches from the `bsdiff` crate: its patch is, per control, add/copy/seek as 8-byte
/// little-endian (seek sign-magnitude), then `add` difference bytes and `copy` extra bytes.
fn bsdiff_matches(old: &[u8], new: &[u8]) -> Vec<bidiff::Match> {
    let mut patch = Vec::new();
    bsdiff::diff(old, new, &mut patch).expect("bsdiff");
    let word = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
    let (mut at, mut old_pos, mut new_pos) = (0usize, 0i64, 0usize);
    let mut out = Vec::new();
    while at + 24 <= patch.len() {
        let add = word(&patch[at..at + 8]) as usize;
        let copy = word(&patch[at + 8..at + 16]) as usize;
        let raw = word(&patch[at + 16..at + 24]);
        let seek = if raw >> 63 == 0 {
            raw as i64
        } else {
            -((raw & !(1 << 63)) as i64)
        };
        out.push(bidiff::Match {
            add_old_start: old_pos as usize,
            add_new_start: new_pos,
            add_length: add,
            copy_end: new_pos + add + copy,
        });
        at += 24 + add + copy;
        new_pos += add + copy;
        old_pos += add as i64 + seek;
    }
    out
}

fn bidiff_matches(old: &[u8], new: &[u8]) -> Vec<bidiff::Match> {
    let mut out = Vec::new();
    bidiff::diff(old, new, &bidiff::DiffParams::default(), |m| {
        out.push(m);
        Ok::<(), std::io::Error>(())
    })
    .expect("bidiff");
    out
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    println!("| pair | matcher | matching time | compressed content | matches |");
    println!("|---|---|--:|--:|--:|");
    for pair in args.chunks(2) {
        let [old, new] = pair else { break };
        let a = std::fs::read(old).expect("old");
        let b = std::fs::read(new).expect("new");
        let name = format!("{old} → {new}");
        for (matcher, find) in [
            (
                "bidiff",
                bidiff_matches as fn(&[u8], &[u8]) -> Vec<bidiff::Match>,
            ),
            ("bsdiff", bsdiff_matches),
        ] {
            let started = Instant::now();
            let matches = find(&a, &b);
            let secs = started.elapsed().as_secs_f64();
            let content = codec::content_of_matches(&a, &b, &matches).expect("content");
            let bytes = codec::estimate_group_len(&content.joined(true));
            println!(
                "| {name} | {matcher} | {secs:.1} s | {bytes} | {} |",
                matches.len()
            );
        }
    }
}
