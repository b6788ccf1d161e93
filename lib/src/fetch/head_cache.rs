//! The header cache: the first bytes of a bundle kept with their validator, so that a
//! resumed download revalidates them instead of downloading the header again. Only a header
//! whose signature verified is kept (the updater writes it after authentication).

/// The head grows with contiguous reads (the rest of the signed header) up to this size, so a
/// resumed run can revalidate the whole header instead of downloading it again.
pub(super) const MAX_HEAD: u64 = 17 << 20;
/// Longest ETag kept for revalidation (servers send a few dozen bytes).
const MAX_ETAG: u64 = 1024;

/// The first bytes of a bundle from an earlier run, with the validator they came with: a
/// resumed download revalidates them (`If-None-Match`, answered 304 with no body) instead of
/// downloading the header again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadCache {
    /// The strong ETag the bytes were served with.
    pub etag: String,
    /// The bundle's length.
    pub len: u64,
    /// The first bytes of the bundle.
    pub bytes: Vec<u8>,
}

impl HeadCache {
    /// Serialises with a checksum.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(self.etag.len() as u64).to_le_bytes());
        out.extend_from_slice(self.etag.as_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
        out.extend_from_slice(&self.bytes);
        crate::record::seal::<32>(&mut out);
        out
    }

    /// Reads a cache file written with [`HeadCache::encode`], reading no more than the largest
    /// valid one; anything missing, damaged or oversized is `None` (download again).
    pub fn load(path: &std::path::Path) -> Option<HeadCache> {
        use std::io::Read;
        let max = 8 + MAX_ETAG + 8 + MAX_HEAD + 32;
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(max + 1).read_to_end(&mut bytes))
            .ok()?;
        HeadCache::decode(&bytes)
    }

    /// Parses what [`HeadCache::encode`] wrote; anything damaged is `None` (download again).
    pub fn decode(bytes: &[u8]) -> Option<HeadCache> {
        let mut c = crate::format::Cursor::new(crate::record::unseal::<32>(bytes)?);
        let etag_len = c.u64_le("etag length").ok()?;
        if etag_len > MAX_ETAG {
            return None;
        }
        let etag_len = usize::try_from(etag_len).ok()?;
        let etag = String::from_utf8(c.take(etag_len, "etag").ok()?.to_vec()).ok()?;
        let len = c.u64_le("length").ok()?;
        let rest = c.take(c.remaining(), "head").ok()?.to_vec();
        (rest.len() as u64 <= MAX_HEAD).then_some(HeadCache {
            etag,
            len,
            bytes: rest,
        })
    }
}
