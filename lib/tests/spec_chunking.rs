//! SPEC.md §6.4 written out as code, from the text alone (the gear table from MD5, the masks
//! from the table there, the two-byte cut loop), against the implementation's boundaries: a
//! compatible writer that follows the text cuts the same chunks.
#![allow(clippy::unwrap_used)]

mod common;

use abdelta::format::Chunking;
use md5::{Digest, Md5};

/// MASKS[7..=23] as SPEC.md §6.4 lists them.
const MASKS: [u64; 17] = [
    0x0000_0000_1803_5100,
    0x0000_0018_0003_5300,
    0x0000_0190_0035_3000,
    0x0000_5900_0353_0000,
    0x0000_d900_0353_0000,
    0x0000_d901_0353_0000,
    0x0000_d903_0353_0000,
    0x0000_d903_1353_0000,
    0x0000_d90f_0353_0000,
    0x0000_d903_0353_7000,
    0x0000_d907_0353_7000,
    0x0000_d907_0753_7000,
    0x0000_d917_0753_7000,
    0x0000_d917_4753_7000,
    0x0000_d917_6753_7000,
    0x0000_d937_6753_7000,
    0x0000_d937_7753_7000,
];

fn mask(k: u32) -> u64 {
    MASKS[(k - 7) as usize]
}

fn gear() -> [u64; 256] {
    let mut out = [0u64; 256];
    for (i, g) in out.iter_mut().enumerate() {
        let digest = Md5::digest([i as u8; 64]);
        *g = u64::from_be_bytes(digest[..8].try_into().unwrap());
    }
    out
}

/// The chunk lengths of `image`, by the text.
fn spec_boundaries(image: &[u8], c: Chunking) -> Vec<u32> {
    let gear = gear();
    let gear_ls: Vec<u64> = gear.iter().map(|g| g << 1).collect();
    let b = f64::from(c.avg).log2().round() as u32;
    let (mask_s, mask_l) = (mask(b + 1), mask(b - 1));
    let (mask_s_ls, mask_l_ls) = (mask_s << 1, mask_l << 1);
    let (min, avg, max) = (c.min as usize, c.avg as usize, c.max as usize);
    let cut = |rest: &[u8]| -> usize {
        let n = rest.len();
        if n <= min {
            return n;
        }
        let end = n.min(max);
        let center = avg.min(end);
        let mut h: u64 = 0;
        let mut j = min / 2;
        for (limit, m_ls, m) in [
            (center / 2, mask_s_ls, mask_s),
            (end / 2, mask_l_ls, mask_l),
        ] {
            while j < limit {
                let a = 2 * j;
                h = (h << 2).wrapping_add(gear_ls[rest[a] as usize]);
                if h & m_ls == 0 {
                    return a;
                }
                h = h.wrapping_add(gear[rest[a + 1] as usize]);
                if h & m == 0 {
                    return a + 1;
                }
                j += 1;
            }
        }
        end
    };
    let mut out = Vec::new();
    let mut at = 0;
    while at < image.len() {
        let len = cut(&image[at..]);
        out.push(len as u32);
        at += len;
    }
    out
}

#[test]
fn the_spec_text_cuts_the_implementations_chunks() {
    let mut rng = common::Rng(64);
    let mut image = rng.bytes(3 << 20);
    image.extend(rng.text(2 << 20));
    image.extend(std::iter::repeat_n(0u8, 300_000));
    image.extend(rng.bytes(77_777));
    for c in [
        abdelta::DEFAULT_CHUNKING,
        abdelta::SMALL_IMAGE_CHUNKING,
        Chunking {
            min: 64,
            avg: 256,
            max: 1024,
        },
        Chunking {
            min: 1 << 20,
            avg: 4 << 20,
            max: 4 << 20,
        },
        Chunking {
            min: 2048,
            avg: 6000,
            max: 40_000,
        },
    ] {
        let want: Vec<u32> = abdelta::internals::boundaries(&image, c)
            .into_iter()
            .map(|(_, len)| len)
            .collect();
        assert_eq!(spec_boundaries(&image, c), want, "{c:?}");
    }
}
