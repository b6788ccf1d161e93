//! Keys and signatures: who may sign a manifest, and the only way to obtain a
//! [`VerifiedManifest`].
//!
//! Pure Ed25519 (`verify_strict` only) over `b"abdelta/manifest/v1\0" || manifest bytes`. The
//! signature is checked over the raw manifest bytes *before* they are decoded, so the decoder
//! only ever sees authenticated input. This module does no file or network I/O.

mod keys;

pub use keys::{KeyId, PublicKey, SecretKey};

use crate::format::{FormatError, Keyset, Limits, Manifest, SignatureRecord, SignedKeyset};

/// Domain-separation prefix of manifest signatures. Other signed documents get other prefixes,
/// so a signature over one kind is never valid as another.
pub const MANIFEST_DOMAIN: &[u8] = b"abdelta/manifest/v1\0";
/// Domain-separation prefix of keyset signatures (by root keys).
pub const KEYSET_DOMAIN: &[u8] = b"abdelta/keyset/v1\0";

/// Why a manifest is not trusted: each variant names the rule that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignError {
    /// No signature record names a key in the trusted set.
    UnknownKey,
    /// A trusted key's signature record does not verify over these manifest bytes.
    BadSignature,
    /// The manifest names a different signing key than the one whose signature verified.
    KeyIdMismatch,
    /// A public key is a weak (small-order) point or a non-canonical encoding.
    WeakKey,
    /// A key file could not be read.
    BadKeyFile(String),
    /// The authenticated manifest bytes do not decode (a generator bug, or a signed bad file).
    Format(FormatError),
    /// The operating system's random source failed.
    Random(String),
}

impl std::fmt::Display for SignError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignError::UnknownKey => write!(f, "untrusted key: no signature is by a trusted key"),
            SignError::BadSignature => write!(
                f,
                "bad signature: the manifest is not signed by the trusted key"
            ),
            SignError::KeyIdMismatch => {
                write!(f, "key id mismatch: the manifest names another signing key")
            }
            SignError::WeakKey => write!(
                f,
                "weak key: small-order or non-canonical public key rejected"
            ),
            SignError::BadKeyFile(why) => write!(f, "bad key file: {why}"),
            SignError::Format(e) => write!(f, "signed manifest is invalid: {e}"),
            SignError::Random(why) => write!(f, "no randomness: {why}"),
        }
    }
}

// No `source()`: the Display of `Format` already includes the inner error.
impl std::error::Error for SignError {}

/// A manifest whose signature verified under a trusted key. Only [`verify_manifest`] makes one.
#[derive(Debug, Clone)]
pub struct VerifiedManifest {
    manifest: Manifest,
    manifest_hash: [u8; 32],
    key_id: KeyId,
}

impl VerifiedManifest {
    /// The authenticated manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// BLAKE3 of the signed manifest bytes: the identity of this release (never the signature,
    /// which is malleable in principle).
    pub fn manifest_hash(&self) -> &[u8; 32] {
        &self.manifest_hash
    }

    /// Fuzzing only: skips the signature so the fuzzer can reach the apply path.
    #[cfg(fuzzing)]
    pub(crate) fn fuzz_unsigned(
        manifest_bytes: &[u8],
        limits: &Limits,
    ) -> Option<VerifiedManifest> {
        // Plain manifest bytes: the fuzzer reaches the chunk table without building frames.
        let manifest = Manifest::decode_plain(manifest_bytes, limits).ok()?;
        Some(VerifiedManifest {
            manifest,
            manifest_hash: [0; 32],
            key_id: KeyId([0; 8]),
        })
    }

    /// Id of the key whose signature verified.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }
}

fn domain_message(domain: &[u8], document: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(domain.len() + document.len());
    message.extend_from_slice(domain);
    message.extend_from_slice(document);
    message
}

/// Ids of the trusted keys whose record verifies over `domain ‖ document`; errors name why
/// none did.
fn verifying_keys(
    domain: &[u8],
    document: &[u8],
    records: &[SignatureRecord],
    trusted: &[PublicKey],
) -> Result<Vec<KeyId>, SignError> {
    let message = domain_message(domain, document);
    let mut saw_trusted = false;
    let mut verified: Vec<KeyId> = Vec::new();
    for record in records {
        let Some(key) = trusted.iter().find(|k| k.key_id().0 == record.key_id) else {
            continue;
        };
        saw_trusted = true;
        if key.verify_strict(&message, &record.signature) && !verified.contains(&key.key_id()) {
            verified.push(key.key_id());
        }
    }
    if verified.is_empty() {
        return Err(if saw_trusted {
            SignError::BadSignature
        } else {
            SignError::UnknownKey
        });
    }
    Ok(verified)
}

/// A keyset whose root signature verified. Only [`verify_keyset`] makes one.
#[derive(Debug, Clone)]
pub struct VerifiedKeyset {
    keyset: Keyset,
    release_keys: Vec<PublicKey>,
}

impl VerifiedKeyset {
    /// The authenticated keyset.
    pub fn keyset(&self) -> &Keyset {
        &self.keyset
    }

    /// The release keys it lists, validated as keys, in the keyset's order.
    pub fn release_keys(&self) -> &[PublicKey] {
        &self.release_keys
    }
}

/// Signs a keyset document with root keys, returning the signed keyset file. Refuses a keyset
/// that devices would reject (checked by decoding what was encoded) or a root count outside
/// 1..=8.
pub fn sign_keyset(roots: &[&SecretKey], keyset: &Keyset) -> Result<Vec<u8>, SignError> {
    let document = keyset.encode();
    if Keyset::decode(&document).as_ref() != Ok(keyset) {
        return Err(SignError::Format(
            Keyset::decode(&document)
                .err()
                .unwrap_or(FormatError::Malformed {
                    field: "release key",
                    rule: "keys must be strictly ascending (sorted, no duplicates)",
                }),
        ));
    }
    for key in &keyset.release_keys {
        PublicKey::from_bytes(&key.public_key)?;
    }
    if roots.is_empty() || roots.len() > usize::from(crate::format::keyset::MAX_KEYSET_SIGNATURES) {
        return Err(SignError::BadKeyFile(
            "a keyset needs 1 to 8 root signatures".into(),
        ));
    }
    let message = domain_message(KEYSET_DOMAIN, &document);
    let records: Vec<SignatureRecord> = roots
        .iter()
        .map(|root| SignatureRecord {
            key_id: root.public().key_id().0,
            signature: root.sign(&message),
        })
        .collect();
    Ok(SignedKeyset::encode(&document, &records))
}

/// Authenticates a signed keyset file against trusted root keys, then decodes it and checks
/// every release key it lists (weak or non-canonical keys reject the whole keyset).
pub fn verify_keyset(file: &[u8], roots: &[PublicKey]) -> Result<VerifiedKeyset, SignError> {
    let signed = SignedKeyset::decode(file).map_err(SignError::Format)?;
    verifying_keys(KEYSET_DOMAIN, signed.document, &signed.records, roots)?;
    let keyset = Keyset::decode(signed.document).map_err(SignError::Format)?;
    let release_keys = keyset
        .release_keys
        .iter()
        .map(|k| PublicKey::from_bytes(&k.public_key))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(VerifiedKeyset {
        keyset,
        release_keys,
    })
}

/// Signs manifest bytes, returning the record to put in the envelope.
pub fn sign_manifest(key: &SecretKey, manifest_bytes: &[u8]) -> SignatureRecord {
    SignatureRecord {
        key_id: key.public().key_id().0,
        signature: key.sign(&domain_message(MANIFEST_DOMAIN, manifest_bytes)),
    }
}

/// Authenticates `manifest_bytes` with `records` against the `trusted` keys, then decodes them.
///
/// Order (SPEC.md §Verification): select records whose key id is trusted; `verify_strict` each
/// over the domain-separated bytes; only if one verifies, decode; finally the key the manifest
/// names must be one whose signature verified.
pub fn verify_manifest(
    manifest_bytes: &[u8],
    records: &[SignatureRecord],
    trusted: &[PublicKey],
    limits: &Limits,
) -> Result<VerifiedManifest, SignError> {
    let verified = verifying_keys(MANIFEST_DOMAIN, manifest_bytes, records, trusted)?;
    let manifest = Manifest::decode(manifest_bytes, limits).map_err(SignError::Format)?;
    // The manifest names its release key: that key's signature must be among those verified.
    let key_id = KeyId(manifest.key_id);
    if !verified.contains(&key_id) {
        return Err(SignError::KeyIdMismatch);
    }
    Ok(VerifiedManifest {
        manifest,
        manifest_hash: *blake3::hash(manifest_bytes).as_bytes(),
        key_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyset() -> Keyset {
        Keyset {
            version: 1,
            created_at: 10,
            expires_at: 20,
            version_floor_reset: None,
            release_keys: vec![crate::format::ReleaseKey {
                public_key: SecretKey::from_seed(&[2; 32]).public().to_bytes(),
                not_before: 0,
                not_after: 100,
            }],
        }
    }

    #[test]
    fn a_keyset_takes_one_to_eight_root_signatures() {
        let roots: Vec<SecretKey> = (1..=9).map(|i| SecretKey::from_seed(&[i; 32])).collect();
        let refs: Vec<&SecretKey> = roots.iter().collect();
        assert!(matches!(
            sign_keyset(&[], &keyset()),
            Err(SignError::BadKeyFile(_))
        ));
        assert!(sign_keyset(&refs[..1], &keyset()).is_ok());
        assert!(sign_keyset(&refs[..8], &keyset()).is_ok());
        assert!(matches!(
            sign_keyset(&refs, &keyset()),
            Err(SignError::BadKeyFile(_))
        ));
    }

    #[test]
    fn a_verified_manifest_is_identified_by_the_hash_of_its_signed_bytes() {
        let key = SecretKey::from_seed(&[3; 32]);
        let manifest = Manifest {
            key_id: key.public().key_id().0,
            release_version: 1,
            created_at: 0,
            expires_at: None,
            hardware_compat: vec!["x".into()],
            channel: String::new(),
            source: None,
            bases: Vec::new(),
            target: crate::format::ImageId {
                size: 0,
                hash: [0; 32],
            },
            chunking: crate::chunk::DEFAULT_CHUNKING,
            payload_len: 0,
            chunks: Vec::new(),
        };
        let stored = manifest.encode().unwrap();
        let record = sign_manifest(&key, &stored);
        let verified =
            verify_manifest(&stored, &[record], &[key.public()], &Limits::DEFAULT).unwrap();
        assert_eq!(verified.manifest_hash(), blake3::hash(&stored).as_bytes());
        assert_eq!(verified.manifest(), &manifest);
    }

    #[test]
    fn errors_and_key_ids_print_what_they_are() {
        let id = SecretKey::from_seed(&[3; 32]).public().key_id();
        let text = id.to_string();
        assert_eq!(text.len(), 16);
        assert!(text.chars().all(|c| c.is_ascii_hexdigit()));
        for e in [
            SignError::BadSignature,
            SignError::UnknownKey,
            SignError::KeyIdMismatch,
        ] {
            assert!(!e.to_string().is_empty(), "{e:?}");
        }
    }
}
