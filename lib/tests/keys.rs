//! Key files and key validation.
// These tests make bundles: they need the generator.
#![cfg(feature = "generator")]
#![allow(clippy::unwrap_used)]

use abdelta::sign::SignError;
use abdelta::{PublicKey, SecretKey};
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{EncodePrivateKey, KeypairBytes, PublicKeyBytes};

#[test]
fn pem_round_trip_keeps_key_id() {
    let key = SecretKey::from_seed(&[3; 32]);
    let again = SecretKey::from_pem(&key.to_pem().unwrap()).unwrap();
    assert_eq!(again.public(), key.public());
    let public = PublicKey::from_pem(&key.public().to_pem().unwrap()).unwrap();
    assert_eq!(public.key_id(), key.public().key_id());
}

#[test]
fn pkcs8_v2_with_a_mismatched_public_key_is_refused() {
    let key = SecretKey::from_seed(&[3; 32]);
    let other = SecretKey::from_seed(&[4; 32]).public();
    let good_v2 = KeypairBytes {
        secret_key: [3; 32],
        public_key: Some(PublicKeyBytes(key.public().to_bytes())),
    };
    assert!(SecretKey::from_pem(&good_v2.to_pkcs8_pem(LineEnding::LF).unwrap()).is_ok());
    let bad_v2 = KeypairBytes {
        secret_key: [3; 32],
        public_key: Some(PublicKeyBytes(other.to_bytes())),
    };
    assert!(matches!(
        SecretKey::from_pem(&bad_v2.to_pkcs8_pem(LineEnding::LF).unwrap()),
        Err(SignError::BadKeyFile(_))
    ));
}

#[test]
fn small_order_and_non_canonical_public_keys_are_rejected() {
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert_eq!(PublicKey::from_bytes(&identity), Err(SignError::WeakKey));
    // y = p + 1: a non-canonical encoding of y = 1 (the identity again).
    let mut non_canonical = [0xffu8; 32];
    non_canonical[0] = 0xee;
    non_canonical[31] = 0x7f;
    assert_eq!(
        PublicKey::from_bytes(&non_canonical),
        Err(SignError::WeakKey)
    );
    let good = SecretKey::from_seed(&[5; 32]).public().to_bytes();
    assert!(PublicKey::from_bytes(&good).is_ok());
}

#[test]
fn openssl_generated_key_loads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.pem");
    let Ok(status) = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "ED25519", "-out"])
        .arg(&path)
        .status()
    else {
        eprintln!("openssl not installed: skipping interop check");
        return;
    };
    assert!(status.success());
    SecretKey::from_pem(&std::fs::read_to_string(&path).unwrap()).unwrap();
}

#[test]
fn any_trusted_record_order_verifies_a_multi_signed_manifest() {
    use abdelta::format::{Limits, Manifest};
    use abdelta::sign::{sign_manifest, verify_manifest};
    let (a, b) = (
        SecretKey::from_seed(&[1; 32]),
        SecretKey::from_seed(&[2; 32]),
    );
    let mut out = Vec::new();
    let options = abdelta::DiffOptions {
        hardware_compat: vec!["x".into()],
        literal_level: 1,
        ..Default::default()
    };
    abdelta::diff(&[], b"image", &options, &a, &mut out, &abdelta::no_progress).unwrap();
    let env = abdelta::format::Envelope::decode(&out[..32], &Limits::DEFAULT).unwrap();
    let manifest = &out[32..32 + env.manifest_len as usize];
    assert_eq!(
        Manifest::decode(manifest, &Limits::DEFAULT).unwrap().key_id,
        a.public().key_id().0
    );
    let records = [sign_manifest(&b, manifest), sign_manifest(&a, manifest)];
    for trusted in [vec![a.public()], vec![b.public(), a.public()]] {
        assert!(verify_manifest(manifest, &records, &trusted, &Limits::DEFAULT).is_ok());
    }
    // Trusting only B: B's signature verifies, but the manifest names A as its release key.
    let only_b = verify_manifest(manifest, &records, &[b.public()], &Limits::DEFAULT);
    assert!(matches!(only_b, Err(SignError::KeyIdMismatch)));
}
