//! Opening a bundle: read the envelope and the signed region with bounded reads, authenticate
//! the manifest, and only then expose it. Reading blobs by their payload ranges.

use crate::error::{BundleError, IoError, io};
use crate::format::{BlobRef, ENVELOPE_LEN, Envelope, Limits, Manifest, SignatureRecord};
use crate::sign::{PublicKey, VerifiedManifest, verify_manifest};
use crate::storage::BundleSource;

/// The signed region of a bundle, read but not yet authenticated.
pub struct UnverifiedBundle {
    envelope: Envelope,
    manifest_bytes: Vec<u8>,
    records: Vec<SignatureRecord>,
    keyset: Vec<u8>,
}

impl UnverifiedBundle {
    /// Reads the envelope, manifest and signature records (never more than the limits allow)
    /// and checks the bundle's length.
    pub fn read(
        source: &dyn BundleSource,
        limits: &Limits,
    ) -> Result<UnverifiedBundle, BundleError> {
        let mut head = [0u8; ENVELOPE_LEN];
        if source.len() < ENVELOPE_LEN as u64 {
            return Err(crate::format::FormatError::Truncated { field: "envelope" }.into());
        }
        source
            .read_at(0, &mut head)
            .map_err(io("reading the bundle envelope"))?;
        let envelope = Envelope::decode(&head, limits)?;
        let declared = envelope.bundle_len().unwrap_or(u64::MAX); // checked by decode
        if declared != source.len() {
            return Err(BundleError::BundleLength {
                declared,
                actual: source.len(),
            });
        }
        // Both lengths are bounded by the limits (16 MiB and 8 × 72 bytes by default).
        let mut manifest_bytes = vec![0u8; envelope.manifest_len as usize];
        source
            .read_at(ENVELOPE_LEN as u64, &mut manifest_bytes)
            .map_err(io("reading the bundle manifest"))?;
        let sig_len = (envelope.keyset_offset() - envelope.signatures_offset()) as usize;
        let mut sig_bytes = vec![0u8; sig_len];
        source
            .read_at(envelope.signatures_offset(), &mut sig_bytes)
            .map_err(io("reading the bundle signatures"))?;
        let records = SignatureRecord::decode_all(&sig_bytes, envelope.signature_count)?;
        // Bounded by MAX_KEYSET_FILE_LEN at envelope decoding.
        let mut keyset = vec![0u8; envelope.keyset_len as usize];
        source
            .read_at(envelope.keyset_offset(), &mut keyset)
            .map_err(io("reading the bundle keyset"))?;
        Ok(UnverifiedBundle {
            envelope,
            manifest_bytes,
            records,
            keyset,
        })
    }

    /// Authenticates the manifest against `trusted` keys.
    pub fn verify(
        self,
        trusted: &[PublicKey],
        limits: &Limits,
    ) -> Result<VerifiedBundle, BundleError> {
        let manifest = verify_manifest(&self.manifest_bytes, &self.records, trusted, limits)?;
        if manifest.manifest().payload_len != self.envelope.payload_len {
            return Err(BundleError::PayloadLengthMismatch);
        }
        Ok(VerifiedBundle {
            envelope: self.envelope,
            manifest,
        })
    }

    /// Decodes the manifest without authenticating it, for display only (`abdelta inspect`
    /// without a key). The result cannot reach `plan` or `apply`, which take a [`VerifiedBundle`].
    pub fn decode_unverified(&self, limits: &Limits) -> Result<Manifest, BundleError> {
        Ok(Manifest::decode(&self.manifest_bytes, limits)?)
    }

    /// The envelope.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// The root-signed keyset file the bundle carries, if any (authenticated by the policy
    /// layer against the device's root keys, never by the manifest's signature).
    pub fn keyset_file(&self) -> Option<&[u8]> {
        (!self.keyset.is_empty()).then_some(self.keyset.as_slice())
    }

    /// The signature records.
    pub fn records(&self) -> &[SignatureRecord] {
        &self.records
    }
}

/// A bundle whose manifest is authenticated.
pub struct VerifiedBundle {
    envelope: Envelope,
    manifest: VerifiedManifest,
}

impl VerifiedBundle {
    /// Reads and authenticates a bundle in one step.
    pub fn open(
        source: &dyn BundleSource,
        trusted: &[PublicKey],
        limits: &Limits,
    ) -> Result<VerifiedBundle, BundleError> {
        UnverifiedBundle::read(source, limits)?.verify(trusted, limits)
    }

    /// The authenticated manifest.
    pub fn manifest(&self) -> &Manifest {
        self.manifest.manifest()
    }

    /// The authenticated manifest with its hash and key id.
    pub fn verified(&self) -> &VerifiedManifest {
        &self.manifest
    }

    /// The envelope.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// Absolute bundle offset of a blob.
    pub fn blob_offset(&self, blob: &BlobRef) -> u64 {
        self.envelope.payload_offset() + blob.offset // bounded: blob lies inside the payload
    }

    /// Fuzzing only: a bundle around unsigned plain manifest bytes, with its full byte image.
    #[cfg(fuzzing)]
    pub fn fuzz_unsigned(
        manifest_bytes: &[u8],
        payload: &[u8],
        limits: &Limits,
    ) -> Option<(VerifiedBundle, Vec<u8>)> {
        let manifest = VerifiedManifest::fuzz_unsigned(manifest_bytes, limits)?;
        let envelope = Envelope {
            manifest_len: u32::try_from(manifest_bytes.len()).ok()?,
            signature_count: 1,
            keyset_len: 0,
            payload_len: payload.len() as u64,
        };
        if manifest.manifest().payload_len != envelope.payload_len {
            return None;
        }
        let mut bytes = envelope.encode().to_vec();
        bytes.extend_from_slice(manifest_bytes);
        bytes.extend_from_slice(&[0u8; 72]);
        bytes.extend_from_slice(payload);
        Some((VerifiedBundle { envelope, manifest }, bytes))
    }

    /// Reads one blob's bytes into `buf` (resized to the blob length).
    pub fn read_blob(
        &self,
        source: &dyn BundleSource,
        blob: &BlobRef,
        buf: &mut Vec<u8>,
    ) -> Result<(), IoError> {
        buf.resize(blob.len as usize, 0);
        source
            .read_at(self.blob_offset(blob), buf)
            .map_err(io("reading a blob from the bundle"))
    }
}
