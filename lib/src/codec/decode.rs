//! The device's decoders: every blob a bundle carries meets these before any of its bytes
//! reach the target, so each refuses what breaks a rule of SPEC.md §6, bounded by the lengths
//! the signed manifest declares.

use liblzma::stream::{Action, Status, Stream};
use zstd::zstd_safe::{self, DCtx};

use super::{
    CodecError, ExtraFilter, PLAIN_BITS, PatchParts, WINDOW_LOG_MAX, ZSTD_MAGIC, group_filters,
    varints,
};
use crate::format::cursor::unzigzag;
use crate::format::{Cursor, GroupLayout};

/// Reads the differences (sparse or dense) back in order, in spans.
struct Differences<'a> {
    gaps: Cursor<'a>,
    values: std::slice::Iter<'a, u8>,
    dense: bool,
    /// Sparse: zero differences before the next value (after the last value: all the rest).
    zeros: u64,
    /// Sparse: the next value, if any.
    next: Option<u8>,
}

impl<'a> Differences<'a> {
    /// `total` differences from `gaps` and `values`: dense when there are no gaps and the
    /// values are all the differences (a sparse spelling has a gap per value), else sparse.
    fn new(gaps: &'a [u8], values: &'a [u8], total: usize) -> Result<Self, CodecError> {
        let mut d = Differences {
            gaps: Cursor::new(gaps),
            values: values.iter(),
            dense: gaps.is_empty() && values.len() == total && total > 0,
            zeros: 0,
            next: None,
        };
        if !d.dense {
            d.advance()?;
        }
        Ok(d)
    }

    /// Sparse: loads the next value and the zeros before it; after the last, zeros never
    /// run out.
    fn advance(&mut self) -> Result<(), CodecError> {
        self.next = self.values.next().copied();
        self.zeros = match self.next {
            Some(_) => self
                .gaps
                .varint("gap")
                .map_err(|_| CodecError::BadPatch("every difference value needs its gap"))?,
            None => u64::MAX,
        };
        Ok(())
    }

    /// Adds the next `out.len()` differences to `old` (as long as `out`) into `out`.
    fn apply(&mut self, old: &[u8], out: &mut [u8]) -> Result<(), CodecError> {
        if self.dense {
            for ((d, &o), &a) in out.iter_mut().zip(old).zip(self.values.by_ref()) {
                *d = o.wrapping_add(a);
            }
            return Ok(()); // the caller counts differences against the total
        }
        let mut at = 0;
        while at < out.len() {
            let room = out.len() - at;
            let run = usize::try_from(self.zeros).map_or(room, |z| z.min(room));
            if let (Some(dest), Some(src)) = (out.get_mut(at..at + run), old.get(at..at + run)) {
                dest.copy_from_slice(src);
            }
            at += run;
            self.zeros -= run as u64; // run <= zeros
            if at < out.len() {
                // zeros is 0 here and a value is next (after the last value, zeros never end).
                let value = self.next.ok_or(CodecError::BadPatch("difference values"))?;
                if let (Some(d), Some(&o)) = (out.get_mut(at), old.get(at)) {
                    *d = o.wrapping_add(value);
                }
                at += 1;
                self.advance()?;
            }
        }
        Ok(())
    }

    /// Whether every gap and value was used.
    fn finished(&self) -> bool {
        self.values.len() == 0 && self.next.is_none() && self.gaps.remaining() == 0
    }
}

/// Rebuilds a chunk from its bsdiff-class content and `base` into `out` (exactly the declared
/// chunk length).
pub fn decode_bsdiff_content(
    base: &[u8],
    parts: PatchParts<'_>,
    out: &mut [u8],
) -> Result<(), CodecError> {
    let bad = CodecError::BadPatch;
    let PatchParts {
        ctrl,
        gaps,
        values,
        extra,
    } = parts;
    let diff_total = out
        .len()
        .checked_sub(extra.len())
        .ok_or(bad("extra bytes must fit the chunk"))?;
    let mut diff = Differences::new(gaps, values, diff_total)?;
    let (mut ctrl, mut extra) = (Cursor::new(ctrl), Cursor::new(extra));
    let mut diff_done = 0usize;
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
        diff_done = diff_done
            .checked_add(diff_n)
            .filter(|&n| n <= diff_total)
            .ok_or(bad("difference count"))?;
        let dest = at
            .checked_add(diff_n)
            .and_then(|end| out.get_mut(at..end))
            .ok_or(bad("differences write past the chunk"))?;
        diff.apply(old_bytes, dest)?;
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
    if at != out.len() || diff_done != diff_total || !diff.finished() || extra.remaining() != 0 {
        return Err(bad("records must produce exactly the chunk"));
    }
    Ok(())
}

fn decompress(blob: &[u8], out: &mut [u8]) -> Result<(), CodecError> {
    let want = out.len();
    match decompress_at_most(blob, out)? {
        n if n == want => Ok(()),
        n => Err(CodecError::TooShort { got: n }),
    }
}

/// Decodes one frame into `out`, which bounds the output: returns the bytes produced.
fn decompress_at_most(blob: &[u8], out: &mut [u8]) -> Result<usize, CodecError> {
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

/// Decodes a group blob into its content, laid out as `layout` says (from the signed manifest,
/// which bounds the output and the dictionaries), from exactly the blob's bytes: its control
/// records back in record order.
pub fn decode_group(blob: &[u8], layout: &GroupLayout) -> Result<Vec<u8>, CodecError> {
    let bad = CodecError::BadGroup;
    // u32 fits usize on every supported target.
    let [len, gaps_at, extra_at] =
        [layout.len, layout.gaps_at, layout.extra_at].map(|v| v as usize);
    if gaps_at > extra_at {
        return Err(bad("gaps start past the extra bytes"));
    }
    let (&filter, streams) = blob.split_first().ok_or(bad("empty blob"))?;
    let filter = ExtraFilter::from_byte(filter).ok_or(bad("unknown extra-bytes filter"))?;
    if extra_at > len {
        return Err(bad("extra bytes start past the end"));
    }
    // One spare byte after each stream's bytes: a stream that would decode past its length
    // shows itself by filling it (the head's spare is the extra bytes' first, decoded next).
    let mut content = vec![0u8; len.saturating_add(1)];
    let head = content
        .get_mut(..=extra_at)
        .ok_or(bad("extra bytes start"))?;
    let used = inflate(streams, head, ExtraFilter::None)?;
    let rest = streams.get(used..).unwrap_or_default();
    let extra = content
        .get_mut(extra_at..)
        .ok_or(bad("extra bytes start"))?;
    if inflate(rest, extra, filter)? != rest.len() {
        return Err(bad("bytes after the end of the stream"));
    }
    content.truncate(len);
    let records = content.get_mut(..gaps_at).ok_or(bad("gaps start"))?;
    let stored = records.to_vec();
    join_records(&stored, records)?;
    Ok(content)
}

/// Rebuilds control records in record order from their stored form into `out` (as long):
/// the inverse of [`split_records`]. The number of records is a third of the varints, which
/// end at the bytes below `0x80`.
pub(super) fn join_records(stored: &[u8], out: &mut [u8]) -> Result<(), CodecError> {
    let bad = || CodecError::BadGroup("control records");
    let ends = stored.iter().filter(|&&b| b < 0x80).count();
    if ends % 3 != 0 {
        return Err(bad());
    }
    let count = ends / 3;
    let field_len = |varints: &mut dyn Iterator<Item = Option<&[u8]>>| -> Option<usize> {
        varints.take(count).map(|v| v.map(<[u8]>::len)).sum()
    };
    let mut all = varints(stored);
    let d_len = field_len(&mut all).ok_or_else(bad)?;
    let e_len = field_len(&mut all).ok_or_else(bad)?;
    let (ds, rest) = stored.split_at_checked(d_len).ok_or_else(bad)?;
    let (es, rest) = rest.split_at_checked(e_len).ok_or_else(bad)?;
    let (firsts, mut rests) = rest.split_at_checked(count).ok_or_else(bad)?;
    let (mut ds, mut es) = (varints(ds), varints(es));
    let mut free = out;
    let mut put = |bytes: &[u8]| -> Result<(), CodecError> {
        let (to, rest) = std::mem::take(&mut free)
            .split_at_mut_checked(bytes.len())
            .ok_or_else(bad)?;
        to.copy_from_slice(bytes);
        free = rest;
        Ok(())
    };
    for first in firsts.chunks(1) {
        let (Some(Some(d)), Some(Some(e))) = (ds.next(), es.next()) else {
            return Err(bad());
        };
        put(d)?;
        put(e)?;
        put(first)?;
        if first.first().is_some_and(|&b| b >= 0x80) {
            let end = rests.iter().position(|&b| b < 0x80).ok_or_else(bad)?;
            let (k, after) = rests.split_at_checked(end + 1).ok_or_else(bad)?;
            put(k)?;
            rests = after;
        }
    }
    if !rests.is_empty() || !free.is_empty() {
        return Err(bad());
    }
    Ok(())
}

/// Decodes the raw stream at the start of `input` into exactly `out.len() - 1` bytes (the
/// last byte of `out` is spare: a longer stream fills it); returns the input bytes the stream
/// took.
fn inflate(input: &[u8], out: &mut [u8], filter: ExtraFilter) -> Result<usize, CodecError> {
    let bad = CodecError::BadGroup;
    let len = out.len().saturating_sub(1);
    let filters = group_filters(len, 0, filter, PLAIN_BITS).ok_or(bad("LZMA2 options"))?;
    let mut stream = Stream::new_raw_decoder(&filters).map_err(|_| bad("LZMA2 decoder"))?;
    loop {
        let (read, written) = (stream.total_in(), stream.total_out());
        let rest = usize::try_from(read).ok().and_then(|r| input.get(r..));
        let output = usize::try_from(written).ok().and_then(|w| out.get_mut(w..));
        let (Some(rest), Some(output)) = (rest, output) else {
            return Err(bad("stream position"));
        };
        let status = stream
            .process(rest, output, Action::Finish)
            .map_err(|_| bad("corrupt LZMA2 stream"))?;
        if status == Status::StreamEnd {
            break;
        }
        if (stream.total_in(), stream.total_out()) == (read, written) {
            return Err(if stream.total_out() as usize > len {
                bad("content longer than declared")
            } else {
                bad("stream truncated")
            });
        }
    }
    if stream.total_out() != len as u64 {
        return Err(if stream.total_out() > len as u64 {
            bad("content longer than declared")
        } else {
            bad("content shorter than declared")
        });
    }
    // At most the input's length: the decoder never reads past it.
    Ok(usize::try_from(stream.total_in()).unwrap_or(usize::MAX))
}

/// Decodes a literal blob into `out`, which has exactly the declared chunk length.
pub fn decode_literal(blob: &[u8], out: &mut [u8]) -> Result<(), CodecError> {
    decompress(blob, out)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
