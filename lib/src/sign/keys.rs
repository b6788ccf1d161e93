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

    /// An OpenSSH public-key line: `ssh-ed25519 <base64> [comment]` (the comment is ignored).
    pub fn from_openssh(line: &str) -> Result<PublicKey, SignError> {
        use base64::Engine as _;
        let bad = |why: &str| {
            SignError::BadKeyFile(format!("not an OpenSSH ssh-ed25519 public key ({why})"))
        };
        let mut fields = line.split_whitespace();
        if fields.next() != Some("ssh-ed25519") {
            return Err(bad("type must be ssh-ed25519"));
        }
        let blob = base64::engine::general_purpose::STANDARD
            .decode(fields.next().ok_or_else(|| bad("no key"))?)
            .map_err(|_| bad("bad base64"))?;
        // Wire format: string "ssh-ed25519", string key (32 bytes); strings are u32 BE lengths.
        let mut c = crate::format::Cursor::new(&blob);
        let string = |c: &mut crate::format::Cursor<'_>| -> Result<Vec<u8>, SignError> {
            let len = u32::from_be_bytes(
                c.array::<4>("ssh string length")
                    .map_err(|_| bad("truncated"))?,
            );
            Ok(c.take(len as usize, "ssh string")
                .map_err(|_| bad("truncated"))?
                .to_vec())
        };
        if string(&mut c)? != b"ssh-ed25519" {
            return Err(bad("inner type must be ssh-ed25519"));
        }
        let key: [u8; 32] = string(&mut c)?
            .try_into()
            .map_err(|_| bad("key must be 32 bytes"))?;
        c.finish("ssh key").map_err(|_| bad("trailing bytes"))?;
        PublicKey::from_bytes(&key)
    }

    /// A public key file's text: SPKI PEM or an OpenSSH `ssh-ed25519` line.
    pub fn parse(text: &str) -> Result<PublicKey, SignError> {
        if text.trim_start().starts_with("ssh-ed25519") {
            PublicKey::from_openssh(text.trim())
        } else {
            PublicKey::from_pem(text)
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    /// An OpenSSH line of `key` with the blob's inner type `kind` and `extra` bytes after it.
    fn line(outer: &str, kind: &[u8], key: &[u8], extra: &[u8]) -> String {
        let mut blob = Vec::new();
        for s in [kind, key] {
            blob.extend_from_slice(&(s.len() as u32).to_be_bytes());
            blob.extend_from_slice(s);
        }
        blob.extend_from_slice(extra);
        let b64 = base64::engine::general_purpose::STANDARD.encode(blob);
        format!("{outer} {b64} station@example")
    }

    #[test]
    fn an_openssh_line_holds_exactly_its_two_strings() {
        let key = SecretKey::from_seed(&[4; 32]).public();
        let bytes = key.to_bytes();
        let good = PublicKey::from_openssh(&line("ssh-ed25519", b"ssh-ed25519", &bytes, b""));
        assert_eq!(good.unwrap().to_bytes(), bytes);
        for bad in [
            line("ssh-rsa", b"ssh-ed25519", &bytes, b""),
            line("ssh-ed25519", b"ssh-rsa", &bytes, b""),
            line("ssh-ed25519", b"ssh-ed25519", &bytes[..31], b""),
            line("ssh-ed25519", b"ssh-ed25519", &bytes, b"\x00"),
        ] {
            assert!(
                matches!(PublicKey::from_openssh(&bad), Err(SignError::BadKeyFile(_))),
                "{bad}"
            );
        }
    }
}
