//! Limits are checked before allocating: with a counting global allocator, the worst inputs of
//! the bad-input catalogue (THREATS.md §5) are decoded and the peak heap growth of each is
//! compared with a bound derived from the input's length and the format's [`Limits`]. One test
//! function, so no other test thread allocates while a peak is measured.
// These tests make bundles: they need the generator.
#![cfg(feature = "generator")]
#![allow(clippy::unwrap_used)]
// The counting allocator forwards to the system one; that forwarding is the only unsafe code.
#![allow(unsafe_code)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use abdelta::format::{ENVELOPE_LEN, Keyset, Limits, Manifest, SignedKeyset};
use abdelta::storage::MemBundle;
use abdelta::{UnverifiedBundle, VerifiedBundle};
use common::*;

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
        PEAK.fetch_max(now, Ordering::SeqCst);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::SeqCst);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Peak heap growth, in bytes, while `f` runs.
fn peak(f: impl FnOnce()) -> usize {
    let base = CURRENT.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    f();
    PEAK.load(Ordering::SeqCst) - base
}

#[test]
fn worst_catalogue_inputs_allocate_within_their_limits() {
    let limits = Limits::DEFAULT;
    let mut rows: Vec<(&str, usize, usize)> = Vec::new();
    let measure = |rows: &mut Vec<(&str, usize, usize)>, name, bound, f: &dyn Fn()| {
        rows.push((name, peak(f), bound));
    };

    // Item 5: an envelope claiming the largest manifest, in a 32-byte file.
    let (a, b) = images();
    let bundle_bytes = bundle(&release(2), &key());
    let mut claim = bundle_bytes[..ENVELOPE_LEN].to_vec();
    claim[12..16].copy_from_slice(&limits.max_manifest_len.to_le_bytes());
    measure(
        &mut rows,
        "05 manifest_len = cap, 32-byte file",
        1024,
        &|| {
            assert!(UnverifiedBundle::read(&MemBundle(&claim), &limits).is_err());
        },
    );

    // Item 26: chunk count 2^32 in a tiny signed manifest (decoded after the signature).
    let (_, manifest, payload) = parts(&bundle_bytes);
    let m = Manifest::decode(&manifest, &limits).unwrap();
    let mut empty = m.clone();
    empty.chunks.clear();
    let mut huge_count = empty.encode_plain();
    huge_count.pop();
    abdelta::format::cursor::put_varint(&mut huge_count, 1 << 32);
    let huge_count = abdelta::format::manifest::pack(&huge_count).unwrap();
    let signed = assemble(
        &huge_count,
        &[abdelta::sign::sign_manifest(&key(), &huge_count)],
        &payload,
    );
    measure(
        &mut rows,
        "26 chunk_count = 2^32, tiny manifest",
        8 * signed.len(),
        &|| {
            assert!(VerifiedBundle::open(&MemBundle(&signed), &trusted(), &limits).is_err());
        },
    );

    // The largest chunk count the bytes allow (4 per entry, SPEC.md §5.1) in front of columns
    // that hold none of them: nothing is reserved for entries that do not decode.
    let mut promising = empty.encode_plain();
    // The empty manifest ends with its chunk count (0) and 15 empty columns.
    promising.truncate(promising.len() - 1 - 15);
    let room = 100_000usize;
    abdelta::format::cursor::put_varint(&mut promising, (room / 4) as u64);
    promising.extend(std::iter::repeat_n(0u8, room));
    measure(
        &mut rows,
        "26 chunk count = remaining / 4",
        8 * promising.len(),
        &|| {
            assert!(matches!(
                Manifest::decode_plain(&promising, &limits),
                Err(abdelta::format::FormatError::Truncated {
                    field: "chunk length"
                })
            ));
        },
    );

    // A valid manifest: unpacking and decoding allocate in proportion to its length.
    measure(
        &mut rows,
        "valid manifest",
        8 * manifest.len() + 4096,
        &|| {
            Manifest::decode(&manifest, &limits).unwrap();
        },
    );

    // Items 37–39 (bomb, 2^31 window, lying content size) are not measured here: zstd
    // allocates through C malloc, which this allocator does not see. The codec decodes into
    // the declared chunk length and refuses large windows from the frame header
    // (catalogue.rs, bad_37–bad_39).

    // Keyset files: a document length at the cap in a short file, and a signature count of
    // 65535.
    let doc = Keyset {
        version: 1,
        created_at: 0,
        expires_at: 1,
        version_floor_reset: None,
        release_keys: vec![],
    }
    .encode();
    let mut keyset_claim = b"\x89ABK\r\n\x1a\n".to_vec();
    keyset_claim.extend_from_slice(&u32::MAX.to_le_bytes());
    keyset_claim.extend_from_slice(&doc);
    let mut many_sigs = b"\x89ABK\r\n\x1a\n".to_vec();
    many_sigs.extend_from_slice(&u32::try_from(doc.len()).unwrap().to_le_bytes());
    many_sigs.extend_from_slice(&doc);
    many_sigs.extend_from_slice(&u16::MAX.to_le_bytes());
    for (name, file) in [
        ("keyset document length = u32::MAX", &keyset_claim),
        ("keyset with 65535 signatures claimed", &many_sigs),
    ] {
        let p = peak(|| assert!(SignedKeyset::decode(file).is_err()));
        rows.push((name, p, 1024));
    }

    // A state file far larger than any valid one: read no further than the bound.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        abdelta::policy::DeviceState::path(dir.path()),
        vec![0u8; 64 << 20],
    )
    .unwrap();
    measure(&mut rows, "64 MiB device-state file", 64 << 10, &|| {
        assert!(abdelta::policy::DeviceState::load(dir.path()).is_err());
    });

    let _ = (a, b);
    println!("{:<44} {:>12} {:>12}", "input", "peak bytes", "bound");
    for (name, p, bound) in &rows {
        println!("{name:<44} {p:>12} {bound:>12}");
    }
    for (name, p, bound) in rows {
        assert!(p <= bound, "{name}: peak {p} bytes exceeds {bound}");
    }
}
