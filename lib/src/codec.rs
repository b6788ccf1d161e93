//! Blob codecs: zstd literals and zstd patches against a source range (the range is the frame's
//! reference prefix). Decoding is single-shot into a buffer of exactly the declared chunk
//! length, so a blob can never produce more than the manifest allows and no window buffer is
//! allocated whatever the frame header claims.
//!
//! Two patch codecs, chosen per chunk by the generator (whichever is smaller):
//! - **zstd-ref**: the base range is the frame's reference prefix. Best where new data repeats
//!   old data exactly (text, data files, shifted blocks).
//! - **bsdiff-class**: bsdiff's approximate matches (via `bidiff`'s suffix-array matcher)
//!   stored as control records, byte-wise differences against the base and extra bytes, all in
//!   one zstd frame. Best on executables: when code moves, the addresses inside it change by
//!   the same amount, so the differences are runs of a few repeated values that compress to
//!   almost nothing. Measured on real libcrypto.so.3 releases: about half the size of zstd-ref.

use zstd::zstd_safe::{self, CCtx, CParameter, DCtx};

use crate::format::cursor::put_varint;
use crate::format::{Cursor, PatchCodec};

/// The first four bytes of a zstd frame.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// Largest window a frame may declare (128 MiB); frames declaring more are refused.
const WINDOW_LOG_MAX: u32 = 27;

/// Why a blob did not decode: each variant names the rule that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodecError {
    /// The blob is not exactly one zstd frame (bad magic, skippable or concatenated frames,
    /// trailing bytes, or truncated).
    NotOneFrame,
    /// The frame decodes to more bytes than the manifest declares for the chunk.
    TooLong,
    /// The frame decodes to fewer bytes than the manifest declares.
    TooShort {
        /// Bytes produced.
        got: usize,
    },
    /// The frame declares a window above 2^27 bytes.
    WindowTooLarge,
    /// zstd rejected the frame.
    Corrupt(&'static str),
    /// A bsdiff-class patch's records break a rule (they must stay inside the base and
    /// produce exactly the chunk).
    BadPatch(&'static str),
}

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CodecError::NotOneFrame => write!(f, "blob is not exactly one zstd frame"),
            CodecError::TooLong => write!(f, "blob decodes to more than the declared chunk length"),
            CodecError::TooShort { got } => {
                write!(f, "blob decodes to {got} bytes, fewer than declared")
            }
            CodecError::WindowTooLarge => write!(f, "zstd frame window larger than 128 MiB"),
            CodecError::Corrupt(why) => write!(f, "corrupt zstd frame: {why}"),
            CodecError::BadPatch(why) => write!(f, "malformed bsdiff-class patch: {why}"),
        }
    }
}

impl std::error::Error for CodecError {}

fn window_log_for(len: usize) -> u32 {
    let bits = usize::BITS - len.saturating_sub(1).leading_zeros();
    bits.clamp(10, WINDOW_LOG_MAX)
}

fn compress(prefix: Option<&[u8]>, data: &[u8], level: i32) -> Vec<u8> {
    let mut cctx = CCtx::create();
    // Frame header trimmed to what a manifest does not already say: the declared chunk length
    // and hash make the content size and checksum redundant.
    let window = window_log_for(prefix.map_or(0, <[u8]>::len) + data.len());
    let params = [
        CParameter::CompressionLevel(level),
        CParameter::ContentSizeFlag(false),
        CParameter::ChecksumFlag(false),
        CParameter::DictIdFlag(false),
        CParameter::WindowLog(window),
    ];
    for p in params {
        // Every value above is within zstd's documented bounds.
        let _ = cctx.set_parameter(p);
    }
    if let Some(prefix) = prefix {
        let _ = cctx.ref_prefix(prefix);
    }
    let mut out = Vec::with_capacity(zstd_safe::compress_bound(data.len()));
    match cctx.compress2(&mut out, data) {
        Ok(_) => out,
        // compress_bound guarantees room; fall back to an empty frame never happens in practice,
        // but must not panic: callers compare sizes and keep the literal.
        Err(_) => Vec::new(),
    }
}

/// Compresses a chunk into a self-contained literal blob.
pub fn encode_literal(data: &[u8], level: i32) -> Vec<u8> {
    compress(None, data, level)
}

/// Compresses a chunk against `base` (a source range) into a patch blob of `codec`; empty when
/// that codec cannot express the chunk more compactly than its control overhead allows.
pub fn encode_patch(codec: PatchCodec, base: &[u8], data: &[u8], level: i32) -> Vec<u8> {
    match codec {
        PatchCodec::ZstdRef => compress(Some(base), data, level),
        PatchCodec::Bsdiff => encode_bsdiff(base, data, level),
    }
}

/// Decodes a patch blob of `codec` against `base` into `out` (exactly the declared chunk
/// length).
pub fn decode_patch(
    codec: PatchCodec,
    base: &[u8],
    blob: &[u8],
    out: &mut [u8],
) -> Result<(), CodecError> {
    match codec {
        PatchCodec::ZstdRef => decompress(Some(base), blob, out),
        PatchCodec::Bsdiff => decode_bsdiff(base, blob, out),
    }
}

/// zigzag: small negative and positive seeks both encode in few bytes.
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// The bsdiff-class content (before zstd): `varint ctrl_len ‖ varint diff_len ‖ ctrl ‖ diff ‖
/// extra`, where ctrl is records `varint diff_n ‖ varint extra_n ‖ zigzag-varint seek`.
fn encode_bsdiff(base: &[u8], data: &[u8], level: i32) -> Vec<u8> {
    let (mut ctrl, mut diff, mut extra) = (Vec::new(), Vec::new(), Vec::new());
    let mut translator = bidiff::Translator::new(base, data, |c: &bidiff::Control<'_>| {
        put_varint(&mut ctrl, c.add.len() as u64);
        put_varint(&mut ctrl, c.copy.len() as u64);
        put_varint(&mut ctrl, zigzag(c.seek));
        diff.extend_from_slice(c.add);
        extra.extend_from_slice(c.copy);
        Ok::<(), std::io::Error>(())
    });
    let matched = bidiff::diff(base, data, &bidiff::DiffParams::default(), |m| {
        translator.translate(m)
    });
    if matched.and_then(|()| translator.close()).is_err() || ctrl.len() > data.len() {
        return Vec::new();
    }
    let mut content = Vec::with_capacity(20 + ctrl.len() + diff.len() + extra.len());
    put_varint(&mut content, ctrl.len() as u64);
    put_varint(&mut content, diff.len() as u64);
    content.extend_from_slice(&ctrl);
    content.extend_from_slice(&diff);
    content.extend_from_slice(&extra);
    compress(Some(base), &content, level)
}

/// Largest bsdiff-class content for a chunk of `len` bytes: two varints, a control stream no
/// longer than the chunk, and the chunk's worth of differences and extra bytes.
fn bsdiff_content_cap(len: usize) -> usize {
    len.saturating_mul(2).saturating_add(20)
}

fn decode_bsdiff(base: &[u8], blob: &[u8], out: &mut [u8]) -> Result<(), CodecError> {
    let bad = CodecError::BadPatch;
    let mut content = vec![0u8; bsdiff_content_cap(out.len())];
    let n = decompress_at_most(Some(base), blob, &mut content)?;
    let content = content.get(..n).ok_or(bad("content length"))?;
    let mut c = Cursor::new(content);
    let len = out.len() as u64;
    let ctrl_len = c
        .varint_in("control length", 0, len)
        .map_err(|_| bad("control length"))?;
    let diff_len = c
        .varint_in("difference length", 0, len)
        .map_err(|_| bad("difference length"))?;
    // Both bounded by the chunk length just above.
    let ctrl = c
        .take(ctrl_len as usize, "control")
        .map_err(|_| bad("control stream truncated"))?;
    let diff = c
        .take(diff_len as usize, "differences")
        .map_err(|_| bad("difference stream truncated"))?;
    let extra = c
        .take(c.remaining(), "extra")
        .map_err(|_| bad("extra stream"))?;
    if diff.len() + extra.len() != out.len() {
        return Err(bad(
            "differences and extra bytes must add up to the chunk length",
        ));
    }
    let (mut ctrl, mut diff, mut extra) =
        (Cursor::new(ctrl), Cursor::new(diff), Cursor::new(extra));
    let mut old: u64 = 0;
    let mut at = 0usize;
    while ctrl.remaining() > 0 {
        let diff_n = ctrl
            .varint("difference count")
            .map_err(|_| bad("control record"))?;
        let extra_n = ctrl
            .varint("extra count")
            .map_err(|_| bad("control record"))?;
        let seek = unzigzag(ctrl.varint("seek").map_err(|_| bad("control record"))?);
        let diff_n = usize::try_from(diff_n).map_err(|_| bad("difference count"))?;
        let extra_n = usize::try_from(extra_n).map_err(|_| bad("extra count"))?;
        let from = usize::try_from(old).map_err(|_| bad("base position"))?;
        let old_bytes = from
            .checked_add(diff_n)
            .and_then(|end| base.get(from..end))
            .ok_or(bad("differences read past the base"))?;
        let adds = diff
            .take(diff_n, "differences")
            .map_err(|_| bad("difference count"))?;
        let dest = at
            .checked_add(diff_n)
            .and_then(|end| out.get_mut(at..end))
            .ok_or(bad("differences write past the chunk"))?;
        for ((d, &o), &a) in dest.iter_mut().zip(old_bytes).zip(adds) {
            *d = o.wrapping_add(a);
        }
        at += diff_n;
        let copied = extra
            .take(extra_n, "extra")
            .map_err(|_| bad("extra count"))?;
        at.checked_add(extra_n)
            .and_then(|end| out.get_mut(at..end))
            .ok_or(bad("extra bytes write past the chunk"))?
            .copy_from_slice(copied);
        at += extra_n;
        old = i64::try_from(old)
            .ok()
            .and_then(|o| o.checked_add(i64::try_from(diff_n).ok()?))
            .and_then(|o| o.checked_add(seek))
            .and_then(|o| u64::try_from(o).ok())
            .filter(|&o| o <= base.len() as u64)
            .ok_or(bad("seek leaves the base"))?;
    }
    if at != out.len() || diff.remaining() != 0 || extra.remaining() != 0 {
        return Err(bad("records must produce exactly the chunk"));
    }
    Ok(())
}

fn decompress(prefix: Option<&[u8]>, blob: &[u8], out: &mut [u8]) -> Result<(), CodecError> {
    let want = out.len();
    match decompress_at_most(prefix, blob, out)? {
        n if n == want => Ok(()),
        n => Err(CodecError::TooShort { got: n }),
    }
}

/// Decodes one frame into `out`, which bounds the output: returns the bytes produced.
fn decompress_at_most(
    prefix: Option<&[u8]>,
    blob: &[u8],
    out: &mut [u8],
) -> Result<usize, CodecError> {
    if blob.get(..4) != Some(&ZSTD_MAGIC[..]) {
        return Err(CodecError::NotOneFrame);
    }
    match zstd_safe::find_frame_compressed_size(blob) {
        Ok(n) if n == blob.len() => {}
        _ => return Err(CodecError::NotOneFrame),
    }
    // Single-shot decoding ignores WindowLogMax, so the limit is checked on the frame header:
    // byte 4 is the descriptor; unless Single_Segment (bit 5), byte 5 is the window
    // descriptor: exponent (top five bits, windowLog − 10) and mantissa in eighths (RFC 8878
    // §3.1.1.1.2). Single-segment frames use the content size, which `out` already bounds.
    let descriptor = blob.get(4).copied().ok_or(CodecError::NotOneFrame)?;
    if descriptor & 0x20 == 0 {
        let window = blob.get(5).copied().ok_or(CodecError::NotOneFrame)?;
        let log = 10 + u64::from(window >> 3);
        let size = (1u64 << log) + u64::from(window & 7) * ((1u64 << log) / 8);
        if size > 1 << WINDOW_LOG_MAX {
            return Err(CodecError::WindowTooLarge);
        }
    }
    let mut dctx = DCtx::create();
    if let Some(prefix) = prefix {
        dctx.ref_prefix(prefix)
            .map_err(|c| CodecError::Corrupt(zstd_safe::get_error_name(c)))?;
    }
    // The buffer bounds the output: zstd stops with dstSize_tooSmall when the frame wants
    // more, whatever its header claims.
    match dctx.decompress(out, blob) {
        Ok(n) => Ok(n),
        Err(code)
            if zstd_safe::get_error_name(code).contains("Destination buffer is too small") =>
        {
            Err(CodecError::TooLong)
        }
        Err(code) => Err(CodecError::Corrupt(zstd_safe::get_error_name(code))),
    }
}

/// Decodes a literal blob into `out`, which has exactly the declared chunk length.
pub fn decode_literal(blob: &[u8], out: &mut [u8]) -> Result<(), CodecError> {
    decompress(None, blob, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_round_trips_and_is_capped() {
        let data = vec![7u8; 100_000];
        let blob = encode_literal(&data, 3);
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
        let blob = encode_literal(b"hello", 3);
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

    #[test]
    fn window_above_the_limit_is_rejected() {
        // A frame header declaring windowLog 31: magic, descriptor without single segment,
        // window descriptor (31 − 10) << 3, then an empty last raw block.
        let frame = [0x28, 0xb5, 0x2f, 0xfd, 0x00, 21 << 3, 0x01, 0x00, 0x00];
        let mut out = [0u8; 4];
        assert_eq!(
            decode_literal(&frame, &mut out),
            Err(CodecError::WindowTooLarge)
        );
    }

    #[test]
    fn patch_uses_the_base() {
        let base: Vec<u8> = (0..200_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
            .collect();
        let mut data = base[1000..101_000].to_vec();
        data[500] ^= 1;
        for codec in [PatchCodec::ZstdRef, PatchCodec::Bsdiff] {
            let patch = encode_patch(codec, &base, &data, 19);
            assert!(
                patch.len() < 200,
                "{codec:?} patch is {} bytes",
                patch.len()
            );
            let mut out = vec![0u8; data.len()];
            decode_patch(codec, &base, &patch, &mut out).unwrap();
            assert_eq!(out, data);
            // Against the wrong base it may decode to garbage of the right length (the chunk
            // hash catches that) or fail; it must not panic.
            let _ = decode_patch(codec, &base[1..], &patch, &mut out);
            let _ = decode_patch(codec, &base[..10], &patch, &mut out);
        }
    }

    #[test]
    fn bsdiff_turns_moved_addresses_into_repeated_differences() {
        // "Code" whose 4-byte addresses all grow by 0x40 after an insertion: zstd-ref must
        // restart a match at every address, bsdiff stores the same small difference each time.
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
        let zref = encode_patch(PatchCodec::ZstdRef, &base, &data, 19);
        let bsd = encode_patch(PatchCodec::Bsdiff, &base, &data, 19);
        assert!(
            bsd.len() * 4 < zref.len(),
            "bsdiff {} vs zstd-ref {}",
            bsd.len(),
            zref.len()
        );
        let mut out = vec![0u8; data.len()];
        decode_patch(PatchCodec::Bsdiff, &base, &bsd, &mut out).unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn bsdiff_records_outside_the_base_or_the_chunk_are_refused() {
        let frame = |ctrl: &[u8], diff: &[u8], extra: &[u8]| {
            let mut content = Vec::new();
            put_varint(&mut content, ctrl.len() as u64);
            put_varint(&mut content, diff.len() as u64);
            content.extend_from_slice(ctrl);
            content.extend_from_slice(diff);
            content.extend_from_slice(extra);
            compress(None, &content, 3)
        };
        let base = [1u8, 2, 3, 4];
        let mut out = [0u8; 4];
        // Good: 2 differences, 2 extra bytes.
        let ok = frame(&[2, 2, 0], &[1, 1], &[9, 9]);
        decode_patch(PatchCodec::Bsdiff, &base, &ok, &mut out).unwrap();
        assert_eq!(out, [2, 3, 9, 9]);
        for (ctrl, diff, extra) in [
            (&[4u8, 0, 0][..], &[0u8; 4][..], &[][..]), // fine, as a control
            (&[5, 0, 0], &[0; 5], &[]),                 // more than the chunk
            (&[2, 0, 20, 2, 0, 0], &[0; 4], &[]),       // seek past the base
            (&[2, 0, 7, 2, 0, 0], &[0; 4], &[]),        // seek back below 0
            (&[2, 2, 0], &[0; 2], &[0; 1]),             // extra stream too short
            (&[2, 1, 0], &[0; 2], &[0; 2]),             // stream left over
            (&[0x80], &[0; 2], &[0; 2]),                // truncated record
        ] {
            let r = decode_patch(
                PatchCodec::Bsdiff,
                &base,
                &frame(ctrl, diff, extra),
                &mut out,
            );
            if ctrl == [4, 0, 0] {
                assert!(r.is_ok());
            } else {
                assert!(matches!(r, Err(CodecError::BadPatch(_))), "{ctrl:?}: {r:?}");
            }
        }
    }
}
