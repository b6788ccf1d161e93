//! The chunk table's column layout (SPEC.md §5.2), shared by the encoder and the decoder.

use super::{BlobRef, MAX_EXTRA_BASES};
use crate::format::{Cursor, FormatError};

/// Declares [`Columns`] and the conversions to and from an array in encoding order, from
/// one list of (field, name for errors).
macro_rules! columns {
    ($($field:ident: $name:literal,)*) => {
        /// The chunk table's columns (SPEC.md §5.2), in encoding order: each holds one field
        /// of every chunk entry that has it, so the packer sees lengths next to lengths and
        /// hashes next to hashes. `C` is a column's bytes when encoding and decoding, then a
        /// cursor over them. The chunk and literal lengths are 3-byte values stored in byte
        /// planes ([`planes`]).
        pub(super) struct Columns<C> {
            $(pub(super) $field: C,)*
        }

        /// Column names for errors, in encoding order.
        const COLUMN_NAMES: [&str; COLUMN_COUNT] = [$($name,)*];

        impl<C> Columns<C> {
            pub(super) fn from_order([$($field,)*]: [C; COLUMN_COUNT]) -> Self {
                Columns { $($field,)* }
            }

            pub(super) fn in_order(self) -> [C; COLUMN_COUNT] {
                [$(self.$field,)*]
            }
        }
    };
}

columns! {
    lengths: "lengths column",
    masks: "masks column",
    checks: "checks column",
    copy_offsets: "copy offsets column",
    patch_codecs: "patch codecs column",
    base_counts: "base counts column",
    base_offsets: "base offsets column",
    base_lengths: "base lengths column",
    base_hashes: "base hashes column",
    patch_groups: "patch groups column",
    members: "group members column",
    literal_codecs: "literal codecs column",
    literal_offsets: "literal offsets column",
    literal_lengths: "literal lengths column",
    alternates: "alternates column",
}

/// Columns of the chunk table.
const COLUMN_COUNT: usize = 15;

impl<C: Default> Default for Columns<C> {
    fn default() -> Self {
        Columns::from_order(Default::default())
    }
}

impl<'a> Columns<&'a [u8]> {
    /// The columns that follow the chunk count, each a length-prefixed run of bytes.
    pub(super) fn read(c: &mut Cursor<'a>) -> Result<Self, FormatError> {
        let mut columns = [&[][..]; COLUMN_COUNT];
        for (column, name) in columns.iter_mut().zip(COLUMN_NAMES) {
            *column = c.bytes(name, u64::MAX)?;
        }
        Ok(Columns::from_order(columns))
    }

    /// Cursors over the columns, the planar ones read back into rows held in `rows`.
    pub(super) fn cursors<'b>(
        self,
        rows: &'b mut [Vec<u8>; 2],
    ) -> Result<Columns<Cursor<'b>>, FormatError>
    where
        'a: 'b,
    {
        let [lengths, literal_lengths] = rows;
        *lengths = unplanes(self.lengths, "lengths column")?;
        *literal_lengths = unplanes(self.literal_lengths, "literal lengths column")?;
        let mut columns = Columns::from_order(self.in_order().map(|c: &'b [u8]| Cursor::new(c)));
        columns.lengths = Cursor::new(lengths);
        columns.literal_lengths = Cursor::new(literal_lengths);
        Ok(columns)
    }
}

/// Appends `value` as a 3-byte big-endian row of a planar column. The values stored so
/// (chunk and blob lengths) are below 2^24 within the format's limits; a larger one loses its
/// high byte, which [`Manifest::validate`] reports (the decoded manifest differs).
pub(super) fn put_u24(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(value.to_be_bytes().get(1..).unwrap_or_default());
}

/// A planar column's stored form (SPEC.md §5.2) from its 3-byte rows: the first byte of every
/// row, then every second byte, then every third. Lengths' high bytes take few values and
/// their low bytes many: apart, each plane compresses on its own (the measurements: BENCHMARKS.md, "Tuning record").
pub(super) fn planes(rows: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.len());
    for plane in 0..3 {
        out.extend(rows.iter().skip(plane).step_by(3));
    }
    out
}

/// The rows of a planar column: the inverse of [`planes`].
fn unplanes(stored: &[u8], column: &'static str) -> Result<Vec<u8>, FormatError> {
    let malformed = FormatError::Malformed {
        field: column,
        rule: "3-byte values: a multiple of 3 bytes",
    };
    let n = stored.len() / 3;
    let (high, rest) = stored.split_at_checked(n).ok_or(malformed.clone())?;
    let (middle, low) = rest.split_at_checked(n).ok_or(malformed.clone())?;
    if low.len() != n {
        return Err(malformed);
    }
    Ok(high
        .iter()
        .zip(middle)
        .zip(low)
        .flat_map(|((&a, &b), &c)| [a, b, c])
        .collect())
}

impl Columns<Cursor<'_>> {
    /// Succeeds when the chunk entries consumed every column exactly.
    pub(super) fn finish(self) -> Result<(), FormatError> {
        for (column, name) in self.in_order().into_iter().zip(COLUMN_NAMES) {
            column.finish(name)?;
        }
        Ok(())
    }
}

/// What blob offsets in a chunk entry are relative to (SPEC.md §5.2): the previous patch's
/// group blob, which the next patch may name again with one byte, and the end of the
/// previous literal blob. The reference layout makes nearly every offset 0.
#[derive(Default)]
pub(super) struct Origins {
    /// Per base (0: the source, then the extra bases), its previous patch's group blob.
    pub(super) groups: [Option<BlobRef>; 1 + MAX_EXTRA_BASES as usize],
    pub(super) literal_end: u64,
}
