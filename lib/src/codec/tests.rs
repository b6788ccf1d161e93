//! Round trips through the encoders and decoders, and the rules the decoders keep.

use super::decode::join_records;
use super::encode::{noisy_spans, split_records};
use super::*;
use crate::format::GroupLayout;
use crate::format::cursor::put_varint;

#[test]
fn literal_round_trips_and_is_capped() {
    let data = vec![7u8; 100_000];
    let blob = encode_literal(&data, 3).unwrap();
    let mut out = vec![0u8; data.len()];
    decode_literal(&blob, &mut out).unwrap();
    assert_eq!(out, data);
    let mut small = vec![0u8; 1000];
    assert_eq!(decode_literal(&blob, &mut small), Err(CodecError::TooLong));
    let mut big = vec![0u8; 100_001];
    assert_eq!(
        decode_literal(&blob, &mut big),
        Err(CodecError::TooShort { got: 100_000 })
    );
}

#[test]
fn concatenated_and_trailing_frames_are_rejected() {
    let blob = encode_literal(b"hello", 3).unwrap();
    let mut twice = blob.clone();
    twice.extend_from_slice(&blob);
    let mut out = [0u8; 10];
    assert_eq!(
        decode_literal(&twice, &mut out),
        Err(CodecError::NotOneFrame)
    );
    let mut trailing = blob.clone();
    trailing.push(0);
    assert_eq!(
        decode_literal(&trailing, &mut out[..5]),
        Err(CodecError::NotOneFrame)
    );
    assert_eq!(
        decode_literal(&blob[..blob.len() - 1], &mut out[..5]),
        Err(CodecError::NotOneFrame)
    );
}

/// The group blob of `content`, laid out as `layout` says.
fn group(content: &[u8], layout: &GroupLayout) -> Vec<u8> {
    let (head, extra) = content.split_at(layout.extra_at as usize);
    encode_group(
        head,
        layout.gaps_at as usize,
        &GroupExtra::new(extra).unwrap(),
    )
    .unwrap()
}

fn layout(len: usize, gaps_at: usize, extra_at: usize) -> GroupLayout {
    let [len, gaps_at, extra_at] = [len, gaps_at, extra_at].map(|n| n as u32);
    GroupLayout {
        len,
        gaps_at,
        extra_at,
    }
}

/// Encodes `data` against `base` as a group of one, with the differences spelled each way,
/// checks both decode back to `data`, and returns the smaller blob's length.
fn round_trip(base: &[u8], data: &[u8]) -> usize {
    let content = bsdiff_content(base, data).unwrap();
    let mut sizes = Vec::new();
    for sparse in [false, true] {
        let [c, g, v, _] = content.streams(sparse).map(<[u8]>::len);
        let layout = layout(content.len(sparse), c, c + g + v);
        let blob = group(&content.joined(sparse), &layout);
        let decoded = decode_group(&blob, &layout).unwrap();
        let (ctrl, rest) = decoded.split_at(c);
        let (gaps, rest) = rest.split_at(g);
        let (values, extra) = rest.split_at(v);
        let parts = PatchParts {
            ctrl,
            gaps,
            values,
            extra,
        };
        let mut out = vec![0u8; data.len()];
        decode_bsdiff_content(base, parts, &mut out).unwrap();
        assert_eq!(out, data, "sparse: {sparse}");
        sizes.push(blob.len());
    }
    sizes.into_iter().min().unwrap_or(0)
}

#[test]
fn unrelated_bytes_inside_a_match_become_extra_bytes() {
    let old: Vec<u8> = (0..3000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    // Bytes 1000..2000 agree with the old ones only one time in four: as differences they
    // cost more than as extra bytes. Half agreeing is still cheaper as differences.
    let mut new = old.clone();
    for i in 1000..2000 {
        if i % 4 != 0 {
            new[i] = old[i] ^ 0x5a;
        }
    }
    let spans = noisy_spans(&old, &new);
    assert_eq!(spans.len(), 1, "{spans:?}");
    let (start, end) = spans[0];
    assert!(
        (1000..1004).contains(&start) && (1996..=2000).contains(&end),
        "{spans:?}"
    );
    let mut half = old.clone();
    for i in (1000..2000).step_by(2) {
        half[i] ^= 0x5a;
    }
    assert!(noisy_spans(&old, &half).is_empty());
    assert!(noisy_spans(&old, &old).is_empty());
    // The split patch still rebuilds the data.
    round_trip(&old, &new);
}

#[test]
fn patch_uses_the_base() {
    let base: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let mut data = base[1000..101_000].to_vec();
    data[500] ^= 1;
    let len = round_trip(&base, &data);
    assert!(len < 200, "patch is {len} bytes");
    // Against the wrong base the content rebuilds other bytes of the right length (the
    // chunk hash catches that) or fails; it must not panic.
    let content = bsdiff_content(&base, &data).unwrap();
    let mut out = vec![0u8; data.len()];
    for sparse in [false, true] {
        let _ = decode_bsdiff_content(&base[1..], content.parts(sparse), &mut out);
        let _ = decode_bsdiff_content(&base[..10], content.parts(sparse), &mut out);
    }
    assert_eq!(bsdiff_content(&[], &data), None);
}

#[test]
fn bsdiff_turns_moved_addresses_into_repeated_differences() {
    // "Code" whose 4-byte addresses all grow by 0x40 after an insertion: the differences
    // are one repeated small value, where an LZ77 coder must restart at every address.
    let mut base = Vec::new();
    let mut data = Vec::new();
    let mut x: u32 = 1;
    for i in 0..16_000u32 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let op = (x >> 16) as u8;
        base.extend_from_slice(&[op, 0x8b, 0x05]);
        base.extend_from_slice(&(0x40_0000 + i * 8).to_le_bytes());
        data.extend_from_slice(&[op, 0x8b, 0x05]);
        data.extend_from_slice(&(0x40_0040 + i * 8).to_le_bytes());
    }
    let literal = encode_literal(&data, 19).unwrap();
    let len = round_trip(&base, &data);
    assert!(
        len * 20 < literal.len(),
        "patch {len} vs literal {}",
        literal.len()
    );
}

#[test]
fn group_round_trips_and_holds_its_length() {
    let content: Vec<u8> = (0..300_000u32)
        .map(|i| (i % 251) as u8 ^ (i >> 12) as u8)
        .collect();
    let (len, at) = (content.len(), 100_000);
    let blob = group(&content, &layout(len, 0, at));
    assert!(!blob.is_empty() && blob.len() < content.len() / 10);
    assert_eq!(decode_group(&blob, &layout(len, 0, at)).unwrap(), content);
    assert_eq!(
        decode_group(&blob, &layout(len - 1, 0, at)),
        Err(CodecError::BadGroup("content longer than declared"))
    );
    assert_eq!(
        decode_group(&blob, &layout(len + 1, 0, at)),
        Err(CodecError::BadGroup("content shorter than declared"))
    );
    // The first stream holds exactly the bytes before the extra bytes.
    for wrong in [at - 1, at + 1] {
        assert!(matches!(
            decode_group(&blob, &layout(len, 0, wrong)),
            Err(CodecError::BadGroup(_))
        ));
    }
    assert_eq!(
        decode_group(&blob, &layout(len, 0, len + 1)),
        Err(CodecError::BadGroup("extra bytes start past the end"))
    );
    assert_eq!(
        decode_group(&blob, &layout(len, at + 1, at)),
        Err(CodecError::BadGroup("gaps start past the extra bytes"))
    );
    let mut trailing = blob.clone();
    trailing.push(0);
    assert_eq!(
        decode_group(&trailing, &layout(len, 0, at)),
        Err(CodecError::BadGroup("bytes after the end of the stream"))
    );
    assert!(decode_group(&blob[..blob.len() - 1], &layout(len, 0, at)).is_err());
    let mut unknown = blob.clone();
    unknown[0] = 4;
    assert_eq!(
        decode_group(&unknown, &layout(len, 0, at)),
        Err(CodecError::BadGroup("unknown extra-bytes filter"))
    );
    assert_eq!(
        decode_group(&[], &layout(0, 0, 0)),
        Err(CodecError::BadGroup("empty blob"))
    );
    for flip in [0, blob.len() / 2, blob.len() - 1] {
        let mut bad = blob.clone();
        bad[flip] ^= 0x55;
        // Corrupt streams fail or decode to other bytes of the declared length (the chunk
        // hashes catch those); they never panic or run past the length.
        if let Ok(out) = decode_group(&bad, &layout(len, 0, at)) {
            assert_eq!(out.len(), len);
        }
    }
    let empty = layout(0, 0, 0);
    assert_eq!(
        decode_group(&group(&[], &empty), &empty).unwrap(),
        Vec::<u8>::new()
    );
}

#[test]
fn control_records_are_stored_field_by_field() {
    // Records (d, e, k): (1, 2, 3), (300, 0, 200), (0, 5, 0): k = 200 takes two bytes.
    let mut records = Vec::new();
    for v in [1u64, 2, 3, 300, 0, 200, 0, 5, 0] {
        put_varint(&mut records, v);
    }
    let stored = split_records(&records).unwrap();
    // Every d, every e, the first byte of every k, then the rest of the ks.
    let expected = [1, 0xac, 0x02, 0, 2, 0, 5, 3, 0xc8, 0, 0x01];
    assert_eq!(stored, expected);
    let mut out = vec![0u8; stored.len()];
    join_records(&stored, &mut out).unwrap();
    assert_eq!(out, records);
    // A group whose head starts with them decodes back to record order.
    let mut content = records.clone();
    content.extend_from_slice(b"gaps and values, then extra");
    let layout = layout(content.len(), records.len(), content.len() - 5);
    assert_eq!(
        decode_group(&group(&content, &layout), &layout).unwrap(),
        content
    );
    // Not whole records: the generator refuses them, a reader fails the group.
    assert_eq!(split_records(&records[..records.len() - 1]), None);
    assert_eq!(split_records(&[0x80]), None);
    for bad in [
        &stored[..stored.len() - 1],
        &[0, 0][..],
        &[0, 0, 0x80, 0x80][..],
    ] {
        let mut out = vec![0u8; bad.len()];
        assert_eq!(
            join_records(bad, &mut out),
            Err(CodecError::BadGroup("control records")),
            "{bad:?}"
        );
    }
    // A seek's first byte says more follow and none do; bytes left over after the seeks.
    for bad in [&[0, 0, 0x80][..], &[0, 0, 0, 0x80][..]] {
        let mut out = vec![0u8; bad.len()];
        assert!(join_records(bad, &mut out).is_err(), "{bad:?}");
    }
    // Any bytes with a third of their varints ending in each field join: the record
    // reader then judges them (here a seek spelled in two bytes, not minimal).
    let mut out = [0u8; 4];
    join_records(&[0, 0, 0x80, 0], &mut out).unwrap();
    assert_eq!(out, [0, 0, 0x80, 0]);
}

#[test]
fn machine_code_extra_bytes_take_their_branch_filter() {
    // x86 calls (E8 rel32) to a few functions from everywhere: relative targets all differ,
    // absolute ones repeat.
    let mut code = Vec::new();
    for i in 0..20_000u32 {
        let at = code.len() as u32;
        let target = 0x40_0000 + (i % 16) * 0x1000;
        code.push(0xe8);
        code.extend_from_slice(&target.wrapping_sub(at + 5).to_le_bytes());
        code.extend_from_slice(&[0x48, 0x89, (i % 7) as u8]);
    }
    let extra = GroupExtra::new(&code).unwrap();
    assert_eq!(extra.filter(), ExtraFilter::X86);
    let blob = encode_group(b"head", 0, &extra).unwrap();
    let content = decode_group(&blob, &layout(4 + code.len(), 0, 4)).unwrap();
    assert_eq!(&content[..4], b"head");
    assert_eq!(&content[4..], &code[..]);
    // Text keeps no filter.
    let text = b"the quick brown fox jumps over the lazy dog. ".repeat(2000);
    assert_eq!(GroupExtra::new(&text).unwrap().filter(), ExtraFilter::None);
}

#[test]
fn bsdiff_records_outside_the_base_or_the_chunk_are_refused() {
    let base = [1u8, 2, 3, 4];
    let mut out = [0u8; 4];
    // Differences given densely here, spelled both ways for the decoder: both must agree.
    let decode = |ctrl: &[u8], diff: &[u8], extra: &[u8], out: &mut [u8]| {
        let content = PatchContent::new(ctrl.to_vec(), diff.to_vec(), extra.to_vec());
        let results = [false, true].map(|sparse| {
            let mut buf = vec![0u8; out.len()];
            decode_bsdiff_content(&base, content.parts(sparse), &mut buf).map(|()| buf)
        });
        let [dense, sparse] = results;
        assert_eq!(dense.is_ok(), sparse.is_ok(), "{ctrl:?} {diff:?}");
        sparse.map(|buf| out.copy_from_slice(&buf))
    };
    // Good: 2 differences, 2 extra bytes.
    decode(&[2, 2, 0], &[1, 1], &[9, 9], &mut out).unwrap();
    assert_eq!(out, [2, 3, 9, 9]);
    decode(&[4, 0, 0], &[0; 4], &[], &mut out).unwrap();
    decode(&[1, 0, 0, 3, 0, 0], &[0, 0, 0, 5], &[], &mut out).unwrap();
    assert_eq!(out, [1, 2, 3, 9], "zeros and values run across records");
    for (ctrl, diff, extra) in [
        (&[5u8, 0, 0][..], &[0u8; 5][..], &[][..]), // more than the chunk
        (&[2, 0, 20, 2, 0, 0], &[0; 4], &[]),       // seek past the base
        (&[2, 0, 7, 2, 0, 0], &[0; 4], &[]),        // seek back below 0
        (&[2, 2, 0], &[0; 2], &[0; 1]),             // extra stream too short
        (&[2, 1, 0], &[0; 2], &[0; 2]),             // stream left over
        (&[2, 1, 0], &[0, 0, 7], &[0]),             // a difference value left over
        (&[0x80], &[0; 2], &[0; 2]),                // truncated record
    ] {
        let r = decode(ctrl, diff, extra, &mut out);
        assert!(matches!(r, Err(CodecError::BadPatch(_))), "{ctrl:?}: {r:?}");
    }
    // A value without its gap, and a gap without its value.
    let ctrl = [4u8, 0, 0];
    for (gaps, values) in [(&[][..], &[1u8][..]), (&[0, 1], &[1])] {
        let parts = PatchParts {
            ctrl: &ctrl,
            gaps,
            values,
            extra: &[],
        };
        let r = decode_bsdiff_content(&base, parts, &mut out);
        assert!(matches!(r, Err(CodecError::BadPatch(_))), "{gaps:?}: {r:?}");
    }
}
