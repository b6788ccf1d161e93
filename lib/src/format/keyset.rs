//! The keyset document (SPEC.md §Keyset): which release keys an offline root key authorises,
//! for which time windows, and the signed file that carries it. Pure encode/decode.

use super::cursor::put_varint;
use super::{Cursor, FormatError, SignatureRecord};

/// First eight bytes of a signed keyset file.
pub const KEYSET_MAGIC: [u8; 8] = [0x89, b'A', b'B', b'K', b'\r', b'\n', 0x1a, b'\n'];
/// Format version of keyset documents.
pub const KEYSET_VERSION: u16 = 1;
/// Most release keys in one keyset.
pub const MAX_RELEASE_KEYS: u64 = 16;
/// Most root signatures on one keyset.
pub const MAX_KEYSET_SIGNATURES: u16 = 8;
/// Largest keyset document: 16 keys × 52 bytes plus the header, rounded up.
pub const MAX_KEYSET_DOC_LEN: u32 = 4096;

/// A release key and the time window (Unix seconds, inclusive) it may sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReleaseKey {
    /// The Ed25519 public key (validated as a key by the sign layer).
    pub public_key: [u8; 32],
    /// First second the key is valid.
    pub not_before: u64,
    /// Last second the key is valid.
    pub not_after: u64,
}

/// The keyset document: signed by a root key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyset {
    /// Monotonic version: devices refuse a lower one.
    pub version: u64,
    /// Creation time, Unix seconds.
    pub created_at: u64,
    /// Expiry, Unix seconds: devices refuse an expired keyset.
    pub expires_at: u64,
    /// When set, devices lower their highest-seen release version to this value: the one way
    /// to recover from a compromised key that signed a huge release version.
    pub version_floor_reset: Option<u64>,
    /// Authorised release keys, strictly ascending by public key bytes.
    pub release_keys: Vec<ReleaseKey>,
}

impl Keyset {
    /// Decodes and validates a keyset document.
    pub fn decode(bytes: &[u8]) -> Result<Keyset, FormatError> {
        let mut c = Cursor::new(bytes);
        let version = c.u16_le("keyset format version")?;
        if version != KEYSET_VERSION {
            return Err(FormatError::UnsupportedVersion { found: version });
        }
        let keyset_version = c.varint_in("keyset version", 1, u64::MAX)?;
        let created_at = c.varint("keyset creation time")?;
        let expires_at = c.varint("keyset expiry")?;
        if expires_at < created_at {
            return Err(FormatError::Malformed {
                field: "keyset expiry",
                rule: "a keyset must not expire before it is created",
            });
        }
        let version_floor_reset = match c.u8("version floor reset flag")? {
            0 => None,
            1 => Some(c.varint("version floor reset")?),
            v => {
                return Err(FormatError::Unsupported {
                    field: "version floor reset flag",
                    value: v.into(),
                });
            }
        };
        let count = c.varint_in("release key count", 1, MAX_RELEASE_KEYS)?;
        let mut release_keys: Vec<ReleaseKey> = Vec::new();
        for _ in 0..count {
            let key = ReleaseKey {
                public_key: c.array("release key")?,
                not_before: c.varint("release key not before")?,
                not_after: c.varint("release key not after")?,
            };
            if key.not_before > key.not_after {
                return Err(FormatError::Malformed {
                    field: "release key",
                    rule: "not_before <= not_after",
                });
            }
            if release_keys
                .last()
                .is_some_and(|prev| prev.public_key >= key.public_key)
            {
                return Err(FormatError::Malformed {
                    field: "release key",
                    rule: "keys must be strictly ascending (sorted, no duplicates)",
                });
            }
            release_keys.push(key);
        }
        c.finish("keyset")?;
        Ok(Keyset {
            version: keyset_version,
            created_at,
            expires_at,
            version_floor_reset,
            release_keys,
        })
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = KEYSET_VERSION.to_le_bytes().to_vec();
        put_varint(&mut out, self.version);
        put_varint(&mut out, self.created_at);
        put_varint(&mut out, self.expires_at);
        match self.version_floor_reset {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                put_varint(&mut out, v);
            }
        }
        put_varint(&mut out, self.release_keys.len() as u64);
        for key in &self.release_keys {
            out.extend_from_slice(&key.public_key);
            put_varint(&mut out, key.not_before);
            put_varint(&mut out, key.not_after);
        }
        out
    }
}

/// A keyset file split into its document bytes and root signature records (not yet verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedKeyset<'a> {
    /// The keyset document bytes (what the roots signed, after the domain prefix).
    pub document: &'a [u8],
    /// Root signatures.
    pub records: Vec<SignatureRecord>,
}

impl<'a> SignedKeyset<'a> {
    /// Splits a signed keyset file: magic, u32 document length, document, u16 signature count,
    /// records; nothing after.
    pub fn decode(bytes: &'a [u8]) -> Result<SignedKeyset<'a>, FormatError> {
        let mut c = Cursor::new(bytes);
        if c.array::<8>("keyset magic")? != KEYSET_MAGIC {
            return Err(FormatError::BadMagic);
        }
        let len = c.u32_le("keyset document length")?;
        if len == 0 || len > MAX_KEYSET_DOC_LEN {
            return Err(FormatError::OutOfRange {
                field: "keyset document length",
                value: len.into(),
                min: 1,
                max: MAX_KEYSET_DOC_LEN.into(),
            });
        }
        let document = c.take(len as usize, "keyset document")?;
        let count = c.u16_le("keyset signature count")?;
        if count == 0 || count > MAX_KEYSET_SIGNATURES {
            return Err(FormatError::OutOfRange {
                field: "keyset signature count",
                value: count.into(),
                min: 1,
                max: MAX_KEYSET_SIGNATURES.into(),
            });
        }
        let records = SignatureRecord::decode_all(
            c.take(usize::from(count) * 72, "keyset signatures")?,
            count,
        )?;
        c.finish("keyset file")?;
        Ok(SignedKeyset { document, records })
    }

    /// Encodes a signed keyset file.
    pub fn encode(document: &[u8], records: &[SignatureRecord]) -> Vec<u8> {
        let mut out = KEYSET_MAGIC.to_vec();
        out.extend_from_slice(&(document.len() as u32).to_le_bytes()); // ≤ MAX_KEYSET_DOC_LEN
        out.extend_from_slice(document);
        out.extend_from_slice(&(records.len() as u16).to_le_bytes()); // ≤ MAX_KEYSET_SIGNATURES
        for r in records {
            r.encode_into(&mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyset_round_trips_and_rejects_unsorted_keys() {
        let k = |b: u8| ReleaseKey {
            public_key: [b; 32],
            not_before: 10,
            not_after: 20,
        };
        let keyset = Keyset {
            version: 3,
            created_at: 5,
            expires_at: 99,
            version_floor_reset: Some(7),
            release_keys: vec![k(1), k(2)],
        };
        let bytes = keyset.encode();
        assert_eq!(Keyset::decode(&bytes).unwrap(), keyset);
        let unsorted = Keyset {
            release_keys: vec![k(2), k(1)],
            ..keyset
        };
        assert!(matches!(
            Keyset::decode(&unsorted.encode()),
            Err(FormatError::Malformed { .. })
        ));
    }
}
