//! The fixed 32-byte envelope that frames manifest, signatures and payload (SPEC.md §Envelope).

use super::{Cursor, FORMAT_VERSION, FormatError, Limits};

/// First eight bytes of every bundle. The high byte and CR LF / ^Z / LF catch transfers that
/// mangle line endings or strip the eighth bit (the PNG trick).
pub const MAGIC: [u8; 8] = [0x89, b'A', b'B', b'D', b'\r', b'\n', 0x1a, b'\n'];

/// Size of the envelope in bytes.
pub const ENVELOPE_LEN: usize = 32;

/// Size of one signature record: key id (8) and ed25519 signature (64).
pub const SIGNATURE_RECORD_LEN: usize = 72;

/// Largest signed keyset file a bundle may carry: magic, length, a maximal document, count,
/// and the maximal number of root signature records.
pub const MAX_KEYSET_FILE_LEN: u32 = 8 + 4 + super::keyset::MAX_KEYSET_DOC_LEN + 2 + 8 * 72;

/// The decoded envelope: where manifest, signatures, keyset and payload lie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope {
    /// Length of the manifest that follows the envelope.
    pub manifest_len: u32,
    /// Number of signature records after the manifest.
    pub signature_count: u16,
    /// Length of the signed keyset file after the signatures (0: none).
    pub keyset_len: u32,
    /// Length of the payload that follows.
    pub payload_len: u64,
}

impl Envelope {
    /// Decodes and bounds the envelope. Nothing is allocated.
    pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Envelope, FormatError> {
        let mut c = Cursor::new(bytes);
        if c.array::<8>("magic")? != MAGIC {
            return Err(FormatError::BadMagic);
        }
        let version = c.u16_le("format version")?;
        if version != FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion { found: version });
        }
        if c.u16_le("flags")? != 0 {
            return Err(FormatError::Malformed {
                field: "flags",
                rule: "reserved flags must be zero",
            });
        }
        let manifest_len = c.u32_le("manifest length")?;
        if manifest_len == 0 || manifest_len > limits.max_manifest_len {
            return Err(FormatError::OutOfRange {
                field: "manifest length",
                value: manifest_len.into(),
                min: 1,
                max: limits.max_manifest_len.into(),
            });
        }
        let signature_count = c.u16_le("signature count")?;
        if signature_count == 0 || signature_count > limits.max_signatures {
            return Err(FormatError::OutOfRange {
                field: "signature count",
                value: signature_count.into(),
                min: 1,
                max: limits.max_signatures.into(),
            });
        }
        let keyset_len = c.u32_le("keyset length")?;
        if keyset_len > MAX_KEYSET_FILE_LEN {
            return Err(FormatError::OutOfRange {
                field: "keyset length",
                value: keyset_len.into(),
                min: 0,
                max: MAX_KEYSET_FILE_LEN.into(),
            });
        }
        if c.array::<2>("reserved")? != [0; 2] {
            return Err(FormatError::Malformed {
                field: "reserved",
                rule: "reserved bytes must be zero",
            });
        }
        let payload_len = c.u64_le("payload length")?;
        c.finish("envelope")?;
        let envelope = Envelope {
            manifest_len,
            signature_count,
            keyset_len,
            payload_len,
        };
        // The whole bundle length must be representable; checked once here so users of the
        // offsets below need no further overflow checks.
        envelope.bundle_len().ok_or(FormatError::OutOfRange {
            field: "payload length",
            value: payload_len,
            min: 0,
            max: u64::MAX - envelope.payload_offset(),
        })?;
        Ok(envelope)
    }

    /// The canonical 32 bytes.
    pub fn encode(&self) -> [u8; ENVELOPE_LEN] {
        let mut out = [0u8; ENVELOPE_LEN];
        let fields: [&[u8]; 8] = [
            &MAGIC,
            &FORMAT_VERSION.to_le_bytes(),
            &0u16.to_le_bytes(),
            &self.manifest_len.to_le_bytes(),
            &self.signature_count.to_le_bytes(),
            &self.keyset_len.to_le_bytes(),
            &[0u8; 2],
            &self.payload_len.to_le_bytes(),
        ];
        let mut at = 0;
        for field in fields {
            for (dst, src) in out.iter_mut().skip(at).zip(field) {
                *dst = *src;
            }
            at += field.len();
        }
        out
    }

    /// Offset of the first signature record.
    pub fn signatures_offset(&self) -> u64 {
        ENVELOPE_LEN as u64 + u64::from(self.manifest_len)
    }

    /// Offset of the keyset file (if `keyset_len` > 0).
    pub fn keyset_offset(&self) -> u64 {
        self.signatures_offset() + u64::from(self.signature_count) * SIGNATURE_RECORD_LEN as u64
    }

    /// Bytes from the start of the file to the end of the keyset: what a device must read
    /// before it can authenticate anything.
    pub fn payload_offset(&self) -> u64 {
        self.keyset_offset() + u64::from(self.keyset_len)
    }

    /// Total bundle length, or `None` if it would overflow.
    pub fn bundle_len(&self) -> Option<u64> {
        self.payload_offset().checked_add(self.payload_len)
    }
}

/// One signature record: which key (by id) signed, and the signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignatureRecord {
    /// Key id of the signing key (SPEC.md §Keys).
    pub key_id: [u8; 8],
    /// Ed25519 signature over the domain-separated manifest.
    pub signature: [u8; 64],
}

impl SignatureRecord {
    /// Decodes exactly `count` records that fill `bytes`.
    pub fn decode_all(bytes: &[u8], count: u16) -> Result<Vec<SignatureRecord>, FormatError> {
        let mut c = Cursor::new(bytes);
        let mut records = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            records.push(SignatureRecord {
                key_id: c.array("signature key id")?,
                signature: c.array("signature")?,
            });
        }
        c.finish("signatures")?;
        Ok(records)
    }

    /// Appends the record's 72 bytes.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.key_id);
        out.extend_from_slice(&self.signature);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trips() {
        let e = Envelope {
            manifest_len: 1234,
            signature_count: 1,
            keyset_len: 0,
            payload_len: 99,
        };
        let bytes = e.encode();
        assert_eq!(Envelope::decode(&bytes, &Limits::DEFAULT).unwrap(), e);
        assert_eq!(e.payload_offset(), 32 + 1234 + 72);
    }

    #[test]
    fn envelope_rejects_huge_manifest_before_allocating() {
        let e = Envelope {
            manifest_len: u32::MAX,
            signature_count: 1,
            keyset_len: 0,
            payload_len: 0,
        };
        assert!(matches!(
            Envelope::decode(&e.encode(), &Limits::DEFAULT),
            Err(FormatError::OutOfRange {
                field: "manifest length",
                ..
            })
        ));
    }
}
