//! Ed25519 key pairs, key ids and their files: PKCS#8 PEM secret keys (what `openssl genpkey
//! -algorithm ED25519` writes and reads) and SPKI PEM public keys.

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, KeypairBytes,
};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use super::SignError;

/// Domain of key ids, so an id can never collide with another use of the hash.
const KEY_ID_DOMAIN: &[u8] = b"abdelta/keyid/v1\0";

/// Eight bytes that select a key: BLAKE3(domain ‖ public key)[..8]. Used only to pick which
/// trusted key to try, never as proof of anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; 8]);

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// A release signing key.
pub struct SecretKey(SigningKey);

impl SecretKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> Result<SecretKey, SignError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| SignError::Random(e.to_string()))?;
        let key = SecretKey(SigningKey::from_bytes(&seed));
        seed.fill(0);
        Ok(key)
    }

    /// A key from a 32-byte seed (test vectors only: real keys come from [`SecretKey::generate`]).
    pub fn from_seed(seed: &[u8; 32]) -> SecretKey {
        SecretKey(SigningKey::from_bytes(seed))
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Signs a message (already domain-separated by the caller).
    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }

    /// PKCS#8 PEM. A v2 document with an embedded public key is accepted only if that key is
    /// the one derived from the secret (ed25519-dalek checks this; RUSTSEC-2022-0093).
    pub fn from_pem(pem: &str) -> Result<SecretKey, SignError> {
        let key = SigningKey::from_pkcs8_pem(pem).map_err(|e| {
            SignError::BadKeyFile(format!("not an Ed25519 PKCS#8 PEM private key ({e})"))
        })?;
        Ok(SecretKey(key))
    }

    /// PKCS#8 v1 PEM, as OpenSSL writes it (dalek's own encoder writes v2 with the public
    /// key embedded, which OpenSSL 3.0 does not load).
    pub fn to_pem(&self) -> Result<String, SignError> {
        let pair = KeypairBytes {
            secret_key: self.0.to_bytes(),
            public_key: None,
        };
        let doc = pair
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| SignError::BadKeyFile(e.to_string()))?;
        Ok(doc.as_str().to_owned())
    }
}

/// A public key trusted to sign releases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// A public key from its 32-byte encoding; rejects small-order points and non-canonical
    /// encodings (dalek's `from_bytes` alone accepts both under ZIP-215).
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<PublicKey, SignError> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| SignError::WeakKey)?;
        if key.is_weak() || key.to_edwards().compress().to_bytes() != *bytes {
            return Err(SignError::WeakKey);
        }
        Ok(PublicKey(key))
    }

    /// The 32-byte encoding.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The key id.
    pub fn key_id(&self) -> KeyId {
        let mut hasher = blake3::Hasher::new();
        hasher.update(KEY_ID_DOMAIN);
        hasher.update(self.0.as_bytes());
        let mut id = [0u8; 8];
        id.copy_from_slice(hasher.finalize().as_bytes().get(..8).unwrap_or(&[0; 8]));
        KeyId(id)
    }

    /// SPKI PEM (`openssl pkey -pubin` reads it).
    pub fn from_pem(pem: &str) -> Result<PublicKey, SignError> {
        let key = VerifyingKey::from_public_key_pem(pem).map_err(|e| {
            SignError::BadKeyFile(format!("not an Ed25519 SPKI PEM public key ({e})"))
        })?;
        PublicKey::from_bytes(key.as_bytes())
    }

    /// SPKI PEM.
    pub fn to_pem(&self) -> Result<String, SignError> {
        self.0
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| SignError::BadKeyFile(e.to_string()))
    }

    /// `verify_strict`: rejects small-order R and A and S ≥ L.
    pub(crate) fn verify_strict(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let signature = Signature::from_bytes(signature);
        self.0.verify_strict(message, &signature).is_ok()
    }
}
