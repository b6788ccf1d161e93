//! A strict, streaming parser of `multipart/byteranges` replies (RFC 9110 §14.6): the answer
//! to one request for several ranges. Every part must be one of the ranges asked for, exactly,
//! at most once; its bytes are streamed to a sink and never buffered whole; header lines and
//! their count are bounded. Anything else is an error, never a guess (zchunk and SWUpdate have
//! both shipped overflows in this code).

use std::io::{BufRead, Read};
use std::ops::Range;

/// Why a multipart reply was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartError(pub String);

impl std::fmt::Display for MultipartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bad multipart/byteranges reply: {}", self.0)
    }
}

impl std::error::Error for MultipartError {}

/// Longest header line accepted inside a part.
const MAX_LINE: u64 = 1024;
/// Most header lines in one part.
const MAX_HEADERS: usize = 16;

fn line(reader: &mut impl BufRead) -> Result<String, MultipartError> {
    let mut buf = Vec::new();
    reader
        .by_ref()
        .take(MAX_LINE + 1)
        .read_until(b'\n', &mut buf)
        .map_err(|e| MultipartError(format!("reading: {e}")))?;
    if buf.len() as u64 > MAX_LINE || !buf.ends_with(b"\r\n") {
        return Err(MultipartError(
            "header line too long, unterminated, or truncated".into(),
        ));
    }
    buf.truncate(buf.len() - 2);
    String::from_utf8(buf).map_err(|_| MultipartError("header line is not UTF-8".into()))
}

/// Parses a reply for `asked` (sorted, disjoint ranges) of a file of `total` bytes, streaming
/// each part's bytes to `sink(offset, bytes)`. Returns the ranges delivered whole, in reply
/// order, even when it then fails (so a caller can ask again for only the rest).
pub fn parse(
    reader: &mut impl BufRead,
    boundary: &str,
    asked: &[Range<u64>],
    total: u64,
    sink: &mut dyn FnMut(u64, &[u8]) -> std::io::Result<()>,
) -> (Vec<Range<u64>>, Result<(), MultipartError>) {
    let mut delivered: Vec<Range<u64>> = Vec::new();
    let result = parse_parts(reader, boundary, asked, total, sink, &mut delivered);
    (delivered, result)
}

fn parse_parts(
    reader: &mut impl BufRead,
    boundary: &str,
    asked: &[Range<u64>],
    total: u64,
    sink: &mut dyn FnMut(u64, &[u8]) -> std::io::Result<()>,
    delivered: &mut Vec<Range<u64>>,
) -> Result<(), MultipartError> {
    let open = format!("--{boundary}");
    let close = format!("--{boundary}--");
    // An optional empty preamble line (nginx starts with CRLF), then the first delimiter.
    let mut first = line(reader)?;
    if first.is_empty() {
        first = line(reader)?;
    }
    if first != open {
        return Err(MultipartError("missing the opening boundary".into()));
    }
    loop {
        let mut range: Option<Range<u64>> = None;
        for n in 0.. {
            if n > MAX_HEADERS {
                return Err(MultipartError("too many part headers".into()));
            }
            let header = line(reader)?;
            if header.is_empty() {
                break;
            }
            let Some((name, value)) = header.split_once(':') else {
                return Err(MultipartError("malformed part header".into()));
            };
            if name.trim().eq_ignore_ascii_case("content-range") {
                if range.is_some() {
                    return Err(MultipartError(
                        "two Content-Range headers in one part".into(),
                    ));
                }
                let r = super::response::content_range(value.trim())
                    .filter(|&(_, _, t)| t == total)
                    .map(|(a, b, _)| a..b + 1)
                    .ok_or_else(|| MultipartError(format!("bad part Content-Range {value:?}")))?;
                range = Some(r);
            }
        }
        let range = range.ok_or_else(|| MultipartError("part without Content-Range".into()))?;
        if !asked.contains(&range) || delivered.contains(&range) {
            return Err(MultipartError(format!(
                "part {range:?} was not asked for, or came twice"
            )));
        }
        let mut left = range.end - range.start;
        let mut at = range.start;
        let mut buf = vec![0u8; 64 << 10];
        while left > 0 {
            let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
            let piece = buf.get_mut(..want).unwrap_or(&mut []);
            let n = reader
                .read(piece)
                .map_err(|e| MultipartError(format!("reading: {e}")))?;
            if n == 0 {
                return Err(MultipartError("reply ended inside a part".into()));
            }
            sink(at, piece.get(..n).unwrap_or(&[]))
                .map_err(|e| MultipartError(format!("storing: {e}")))?;
            at += n as u64;
            left -= n as u64;
        }
        delivered.push(range);
        if !line(reader)?.is_empty() {
            return Err(MultipartError("part data longer than its range".into()));
        }
        let delimiter = line(reader)?;
        if delimiter == close {
            return Ok(());
        }
        if delimiter != open {
            return Err(MultipartError("missing the boundary after a part".into()));
        }
    }
}

#[cfg(test)]
#[allow(clippy::type_complexity, clippy::single_range_in_vec_init)]
mod tests {
    use super::*;

    fn reply(parts: &[(Range<u64>, &[u8])], total: u64) -> Vec<u8> {
        let mut out = b"\r\n".to_vec();
        for (r, data) in parts {
            out.extend_from_slice(b"--XYZ\r\nContent-Type: application/octet-stream\r\n");
            out.extend_from_slice(
                format!(
                    "Content-Range: bytes {}-{}/{total}\r\n\r\n",
                    r.start,
                    r.end - 1
                )
                .as_bytes(),
            );
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"--XYZ--\r\n");
        out
    }

    fn run(
        body: &[u8],
        asked: &[Range<u64>],
    ) -> (
        Vec<(u64, Vec<u8>)>,
        Vec<Range<u64>>,
        Result<(), MultipartError>,
    ) {
        let mut got = Vec::new();
        let (delivered, result) = parse(
            &mut std::io::BufReader::new(body),
            "XYZ",
            asked,
            100,
            &mut |o, b| {
                got.push((o, b.to_vec()));
                Ok(())
            },
        );
        (got, delivered, result)
    }

    #[test]
    fn bad_47_boundary_at_buffer_edges_never_panics() {
        // Catalogue item 47: boundaries around buffer sizes ±1, ±6, ±8; and every reader
        // buffer size from 1 byte up, so each delimiter straddles a buffer edge somewhere.
        let asked = [0..3, 10..12];
        let good = reply(&[(0..3, b"abc"), (10..12, b"kl")], 100);
        for capacity in 1..=good.len() + 1 {
            let mut got = Vec::new();
            let (delivered, result) = parse(
                &mut std::io::BufReader::with_capacity(capacity, &good[..]),
                "XYZ",
                &asked,
                100,
                &mut |o, b| {
                    got.extend((o..).zip(b.iter().copied()));
                    Ok(())
                },
            );
            assert!(result.is_ok(), "buffer of {capacity} bytes");
            assert_eq!(delivered, asked.to_vec());
            assert_eq!(got.len(), 5);
        }
        for size in [8usize, 64 << 10] {
            for delta in [-8i64, -6, -1, 0, 1, 6, 8] {
                let len = (size as i64 + delta).max(1) as u64;
                let data = vec![7u8; len as usize];
                let body = reply(&[(0..len, &data)], len + 10);
                let mut n = 0u64;
                let (_, result) = parse(
                    &mut std::io::BufReader::with_capacity(size.max(16), &body[..]),
                    "XYZ",
                    &[0..len],
                    len + 10,
                    &mut |_, b| {
                        n += b.len() as u64;
                        Ok(())
                    },
                );
                assert!(result.is_ok());
                assert_eq!(n, len);
            }
        }
    }

    #[test]
    fn parses_exact_parts_and_rejects_everything_else() {
        let asked = [0..3, 10..12];
        let good = reply(&[(0..3, b"abc"), (10..12, b"kl")], 100);
        let (got, delivered, result) = run(&good, &asked);
        assert!(result.is_ok());
        assert_eq!(delivered, asked.to_vec());
        assert_eq!(got, vec![(0, b"abc".to_vec()), (10, b"kl".to_vec())]);
        // A part not asked for; a duplicate; data longer than its range; truncated.
        assert!(run(&reply(&[(0..4, b"abcd")], 100), &asked).2.is_err());
        assert!(
            run(&reply(&[(0..3, b"abc"), (0..3, b"abc")], 100), &asked)
                .2
                .is_err()
        );
        let mut long = reply(&[(0..3, b"abc")], 100);
        long.splice(long.len() - 11..long.len() - 11, *b"x");
        assert!(run(&long, &asked).2.is_err());
        let cut = &good[..good.len() - 20];
        let (_, delivered, result) = run(cut, &asked);
        assert!(result.is_err());
        assert_eq!(delivered, vec![0..3], "the complete part is still reported");
        // Wrong total, and a header line beyond the limit.
        assert!(run(&reply(&[(0..3, b"abc")], 99), &asked).2.is_err());
        let mut huge = b"\r\n--XYZ\r\nX: ".to_vec();
        huge.extend(std::iter::repeat_n(b'a', 5000));
        assert!(run(&huge, &asked).2.is_err());
    }
}
