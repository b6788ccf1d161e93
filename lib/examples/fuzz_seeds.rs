//! Writes the fuzz seed corpus (`fuzz/corpus/<target>/`) from the test vectors and from small
//! bundles made here within the fuzz hooks' limits (so the `apply` target starts from bundles
//! it accepts: copies, patch groups, alternates, zero runs and literals against the hook's own
//! source), so
//! no opaque binary seeds are committed: `cargo run -p abdelta --example fuzz_seeds`.

use std::path::{Path, PathBuf};

use abdelta::format::{ENVELOPE_LEN, Envelope, Fallback, Limits, Manifest};

fn main() -> std::io::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let vectors = root.join("testdata/vectors");
    let corpus = root.join("fuzz/corpus");
    let mut n = 0;
    let mut names: Vec<PathBuf> = std::fs::read_dir(&vectors)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "abd"))
        .collect();
    names.sort();
    let mut bundles: Vec<(String, Vec<u8>)> = Vec::new();
    for path in names {
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("seed");
        bundles.push((stem.to_string(), std::fs::read(&path)?));
    }
    bundles.extend(small_bundles()?);
    for (stem, bytes) in &bundles {
        let stem = stem.as_str();
        write(
            &corpus.join("envelope"),
            stem,
            bytes.get(..ENVELOPE_LEN).unwrap_or(bytes),
        )?;
        write(&corpus.join("envelope"), &format!("{stem}-whole"), bytes)?;
        let Ok(envelope) =
            Envelope::decode(bytes.get(..ENVELOPE_LEN).unwrap_or(&[]), &Limits::DEFAULT)
        else {
            continue;
        };
        let m_end = ENVELOPE_LEN + envelope.manifest_len as usize;
        let p_start = usize::try_from(envelope.payload_offset()).unwrap_or(usize::MAX);
        let (Some(stored), Some(payload)) = (bytes.get(ENVELOPE_LEN..m_end), bytes.get(p_start..))
        else {
            continue;
        };
        // The manifest hook reads both spellings; the apply hook, plain manifests.
        write(&corpus.join("manifest"), &format!("{stem}-stored"), stored)?;
        let Ok(plain) = abdelta::format::manifest::unpack(stored, &Limits::DEFAULT) else {
            continue;
        };
        write(&corpus.join("manifest"), stem, &plain)?;
        if let (Ok(len), Ok(m)) = (
            u16::try_from(plain.len()),
            Manifest::decode_plain(&plain, &Limits::DEFAULT),
        ) {
            let mut seed = len.to_le_bytes().to_vec();
            seed.extend_from_slice(&plain);
            seed.extend_from_slice(payload);
            write(&corpus.join("apply"), stem, &seed)?;
            for (i, c) in m.chunks.iter().enumerate().take(8) {
                if let Fallback::Literal { blob, .. } = c.fallback {
                    let start = usize::try_from(blob.offset).unwrap_or(usize::MAX);
                    if let Some(b) = payload.get(start..start + blob.len as usize) {
                        let mut seed = c.len.to_le_bytes()[..3].to_vec();
                        seed.extend_from_slice(&[0; 6]);
                        seed.extend_from_slice(b);
                        write(&corpus.join("codec"), &format!("{stem}-{i}"), &seed)?;
                    }
                }
            }
            for (i, (blob, layout)) in m.groups().into_iter().enumerate() {
                let start = usize::try_from(blob.offset).unwrap_or(usize::MAX);
                if let Some(b) = payload.get(start..start + blob.len as usize) {
                    let mut seed = Vec::new();
                    for n in [layout.len, layout.gaps_at, layout.extra_at] {
                        seed.extend_from_slice(&n.to_le_bytes()[..3]);
                    }
                    seed.extend_from_slice(b);
                    write(&corpus.join("codec"), &format!("{stem}-group-{i}"), &seed)?;
                }
            }
        }
        n += 1;
    }
    // Keysets: a document and a signed file, made here from fixed keys.
    let root = abdelta::SecretKey::from_seed(&[1; 32]);
    let release = abdelta::SecretKey::from_seed(&[2; 32]);
    let keyset = abdelta::format::Keyset {
        version: 3,
        created_at: 1_800_000_000,
        expires_at: 1_900_000_000,
        version_floor_reset: Some(7),
        release_keys: vec![abdelta::format::ReleaseKey {
            public_key: release.public().to_bytes(),
            not_before: 0,
            not_after: u64::MAX,
        }],
    };
    write(&corpus.join("keyset"), "document", &keyset.encode())?;
    if let Ok(file) = abdelta::sign::sign_keyset(&[&root], &keyset) {
        write(&corpus.join("keyset"), "file", &file)?;
    }
    // Multipart replies for the ranges the `multipart` hook asks for (selector 3: 0..4).
    let mut reply = vec![3u8];
    reply.extend_from_slice(b"\r\n--XYZ\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes 0-3/10000\r\n\r\nabcd\r\n");
    reply.extend_from_slice(b"--XYZ\r\nContent-Range: bytes 100-163/10000\r\n\r\n");
    reply.extend_from_slice(&[b'x'; 64]);
    reply.extend_from_slice(b"\r\n--XYZ--\r\n");
    write(&corpus.join("multipart"), "two-parts", &reply)?;
    // Resume journals for the `journal` hook: bundle length ÷ 17, then (flag, offset, length)
    // records; two neighbouring pieces, one far piece, and a damaged record.
    let mut journal = 20_000u32.to_le_bytes().to_vec();
    for (flag, offset, len) in [
        (0u8, 0u64, 65_536u64),
        (0, 65_536, 100),
        (0, 200_000, 7),
        (1, 9, 9),
    ] {
        journal.push(flag);
        journal.extend_from_slice(&offset.to_le_bytes());
        journal.extend_from_slice(&len.to_le_bytes());
    }
    write(&corpus.join("journal"), "pieces", &journal)?;
    // A device-state file, written by the library itself.
    let dir = std::env::temp_dir().join(format!("abdelta-seed-state-{}", std::process::id()));
    let state = abdelta::policy::DeviceState {
        installed: Some(41),
        highest_seen: 42,
        time_floor: 1_800_000_000,
        keyset_version: 3,
        keyset_file: abdelta::sign::sign_keyset(&[&root], &keyset).unwrap_or_default(),
        slots: vec![
            abdelta::policy::SlotRecord {
                name: "A".into(),
                release: Some(41),
                state: abdelta::policy::SlotState::Good,
                boot_id: String::new(),
            },
            abdelta::policy::SlotRecord {
                name: "B".into(),
                release: Some(42),
                state: abdelta::policy::SlotState::Pending,
                boot_id: "5f0c2d1e-8a8b-4c1e-9d0e-0f2b3c4d5e6f".into(),
            },
        ],
        boot_failures: Some((40, 1)),
    };
    state
        .save(&dir)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let file = std::fs::read(abdelta::policy::DeviceState::path(&dir))?;
    std::fs::remove_dir_all(&dir)?;
    write(&corpus.join("state"), "file", &file)?;
    write(
        &corpus.join("state"),
        "body",
        file.get(..file.len() - 32).unwrap_or(&[]),
    )?;
    println!("wrote seeds from {n} bundles into {}", corpus.display());
    Ok(())
}

/// A delta and a full bundle small enough for the fuzz hooks' limits (chunks of at most 4 KiB,
/// images under 64 KiB), made against the source the `apply` hook builds: byte `i` is
/// `i % 251`. The target keeps most of it, moves a piece, patches scattered bytes, and adds
/// zeros and new data.
fn small_bundles() -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let source: Vec<u8> = (0..60_000u32).map(|i| (i % 251) as u8).collect();
    let mut target = source.clone();
    for i in (1_000..20_000).step_by(97) {
        target[i] = target[i].wrapping_add(3);
    }
    target.splice(30_000..30_000, vec![0u8; 9_000]);
    target.splice(45_000..45_000, source[5_000..8_000].iter().copied());
    let mut x = 1u32;
    target.extend((0..4_000).map(|_| {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        (x >> 16) as u8
    }));
    let options = abdelta::DiffOptions {
        chunking: abdelta::format::Chunking {
            min: 256,
            avg: 1024,
            max: 4096,
        },
        literal_level: 3,
        hardware_compat: vec!["fuzz".into()],
        ..abdelta::DiffOptions::default()
    };
    let key = abdelta::SecretKey::from_seed(&[7; 32]);
    let mut out = Vec::new();
    // A fleet bundle whose source is a later release than the hook's, which it lists as an
    // extra base: the hook's device takes the alternates.
    let mut later = source.clone();
    for i in (2_000..50_000).step_by(1_009) {
        later[i] ^= 0x5a;
    }
    let mut fleet = Vec::new();
    abdelta::diff_bases(
        &later,
        &[&source],
        &target,
        &options,
        &key,
        &mut fleet,
        &abdelta::no_progress,
    )
    .map_err(|e| std::io::Error::other(e.to_string()))?;
    out.push(("small-fleet".to_string(), fleet));
    for (name, from) in [("small-delta", &source[..]), ("small-full", &[][..])] {
        let mut bundle = Vec::new();
        abdelta::diff(
            from,
            &target,
            &options,
            &key,
            &mut bundle,
            &abdelta::no_progress,
        )
        .map_err(|e| std::io::Error::other(e.to_string()))?;
        out.push((name.to_string(), bundle));
    }
    Ok(out)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(name), bytes)
}
