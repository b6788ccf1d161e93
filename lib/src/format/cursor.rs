//! A panic-free reader over hostile bytes, and the matching canonical writer.
//!
//! Every read is checked: no slice indexing, no unchecked casts, and varints must be minimal, so
//! each value has exactly one encoding. The writer produces exactly what the reader accepts.

use super::FormatError;

/// A checked cursor over untrusted bytes. Reads advance it; `finish` rejects trailing bytes.
#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    rest: &'a [u8],
    /// Bytes consumed so far, for error messages.
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Cursor {
            rest: bytes,
            pos: 0,
        }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// Offset of the next byte to read.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], FormatError> {
        let (head, tail) = self
            .rest
            .split_at_checked(n)
            .ok_or(FormatError::Truncated { field })?;
        self.rest = tail;
        self.pos = self.pos.saturating_add(n);
        Ok(head)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], FormatError> {
        let (head, tail) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or(FormatError::Truncated { field })?;
        self.rest = tail;
        self.pos = self.pos.saturating_add(N);
        Ok(*head)
    }

    /// One byte.
    pub fn u8(&mut self, field: &'static str) -> Result<u8, FormatError> {
        Ok(u8::from_le_bytes(self.array::<1>(field)?))
    }

    /// A little-endian u16.
    pub fn u16_le(&mut self, field: &'static str) -> Result<u16, FormatError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    /// A little-endian u32.
    pub fn u32_le(&mut self, field: &'static str) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    /// A little-endian u64.
    pub fn u64_le(&mut self, field: &'static str) -> Result<u64, FormatError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    /// An unsigned LEB128 varint of at most 10 bytes, minimally encoded, fitting in u64.
    pub fn varint(&mut self, field: &'static str) -> Result<u64, FormatError> {
        let mut value: u64 = 0;
        for index in 0..10u32 {
            let byte = self.u8(field)?;
            let bits = u64::from(byte & 0x7f);
            // The tenth byte may carry only the top bit of a u64.
            if index == 9 && bits > 1 {
                return Err(FormatError::Malformed {
                    field,
                    rule: "varint overflows u64",
                });
            }
            value |= bits << (7 * index);
            if byte & 0x80 == 0 {
                if byte == 0 && index > 0 {
                    return Err(FormatError::Malformed {
                        field,
                        rule: "varint is not minimal",
                    });
                }
                return Ok(value);
            }
        }
        Err(FormatError::Malformed {
            field,
            rule: "varint longer than 10 bytes",
        })
    }

    /// A varint that must lie in `min..=max`, returned as usize.
    pub fn varint_in(
        &mut self,
        field: &'static str,
        min: u64,
        max: u64,
    ) -> Result<u64, FormatError> {
        let value = self.varint(field)?;
        in_range(field, value, min, max)
    }

    /// A 3-byte big-endian integer in `min..=max`.
    pub fn u24_in(&mut self, field: &'static str, min: u64, max: u64) -> Result<u64, FormatError> {
        let [a, b, c] = self.array::<3>(field)?;
        in_range(field, u32::from_be_bytes([0, a, b, c]).into(), min, max)
    }

    /// Reads a relative offset: a zigzag varint distance from `origin`; the result must be a
    /// `u64`.
    pub fn relative(&mut self, field: &'static str, origin: u64) -> Result<u64, FormatError> {
        let delta = unzigzag(self.varint(field)?);
        origin
            .checked_add_signed(delta)
            .ok_or(FormatError::Malformed {
                field,
                rule: "relative offset must not leave 0..2^64",
            })
    }

    /// A length-prefixed byte string of at most `max` bytes.
    pub fn bytes(&mut self, field: &'static str, max: u64) -> Result<&'a [u8], FormatError> {
        let len = self.varint_in(field, 0, max)?;
        let len = usize::try_from(len).map_err(|_| FormatError::Truncated { field })?;
        self.take(len, field)
    }

    /// Succeeds only when every byte was read.
    pub fn finish(self, what: &'static str) -> Result<(), FormatError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(FormatError::TrailingBytes {
                what,
                count: self.rest.len(),
            })
        }
    }
}

fn in_range(field: &'static str, value: u64, min: u64, max: u64) -> Result<u64, FormatError> {
    if value < min || value > max {
        return Err(FormatError::OutOfRange {
            field,
            value,
            min,
            max,
        });
    }
    Ok(value)
}

/// Appends the canonical (minimal LEB128) encoding of `value`.
pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let low = (value & 0x7f) as u8; // masked to 7 bits: the cast cannot truncate
        value >>= 7;
        if value == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

/// zigzag: small negative and positive values both encode in few varint bytes.
pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64 // a bit pattern, not a numeric conversion
}

/// The inverse of [`zigzag`].
pub fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64) // v >> 1 < 2^63: the cast cannot wrap
}

/// Appends `value` as a zigzag varint of its distance from `origin` (SPEC.md §1: a relative
/// offset). Every value [`Cursor::relative`] accepts round-trips exactly.
pub fn put_relative(out: &mut Vec<u8>, value: u64, origin: u64) {
    let delta = i128::from(value) - i128::from(origin);
    put_varint(out, zigzag(i64::try_from(delta).unwrap_or(i64::MAX)));
}

/// Appends a length-prefixed byte string.
pub fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64); // usize ≤ u64 on every supported target
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trips_at_boundaries() {
        for value in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            let mut cursor = Cursor::new(&out);
            assert_eq!(cursor.varint("v").unwrap(), value);
            cursor.finish("v").unwrap();
        }
    }

    #[test]
    fn varint_rejects_non_minimal_and_overflow() {
        assert!(matches!(
            Cursor::new(&[0x80, 0x00]).varint("v"),
            Err(FormatError::Malformed {
                rule: "varint is not minimal",
                ..
            })
        ));
        let overflow = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert!(matches!(
            Cursor::new(&overflow).varint("v"),
            Err(FormatError::Malformed {
                rule: "varint overflows u64",
                ..
            })
        ));
        assert!(matches!(
            Cursor::new(&[0x80]).varint("v"),
            Err(FormatError::Truncated { .. })
        ));
    }
}
