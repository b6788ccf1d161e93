//! Every time and version rule of the device policy, at its boundary: the value the rule
//! still accepts and the first one it refuses. (The threat-row tests in `threats.rs` show
//! each rule refusing what it must; these pin where it starts to.)
#![cfg(feature = "generator")]
#![allow(clippy::unwrap_used)]

mod common;

use abdelta::DiffOptions;
use abdelta::format::Keyset;
use abdelta::policy::{DeviceState, Policy, PolicyError};
use abdelta::sign::sign_keyset;
use abdelta::{BundleError, SecretKey};
use common::*;

/// A keyset (version `version`) vouching for `signer` over `[not_before, not_after]`,
/// expiring at `expires_at`, signed by the device's root.
fn keyset_file(version: u64, signer: &SecretKey, window: (u64, u64), expires_at: u64) -> Vec<u8> {
    let (root, _) = roots();
    let ks = Keyset {
        expires_at,
        ..keyset(version, &[(signer, window.0, window.1)], None)
    };
    sign_keyset(&[&root], &ks).unwrap()
}

/// Release `version`, created at `created_at`, expiring at `expires_at`.
fn release_at(version: u64, created_at: u64, expires_at: u64) -> DiffOptions {
    DiffOptions {
        created_at,
        expires_at: Some(expires_at),
        ..release(version)
    }
}

fn accepted(
    result: Result<abdelta::policy::Authorized, BundleError>,
) -> abdelta::policy::Authorized {
    result.unwrap_or_else(|e| panic!("expected acceptance, got {e}"))
}

#[test]
fn the_accepted_keyset_again_is_neither_a_rollback_nor_accepted_twice() {
    let signer = other_key();
    let ks = keyset_file(2, &signer, (0, u64::MAX), NOW + 365 * DAY);
    let mut state = DeviceState::default();
    let first = check(
        &bundle(&with_keyset(release(2), ks.clone()), &signer),
        &rooted(),
        &mut state,
        NOW,
    );
    assert_eq!(accepted(first).keyset_accepted, Some(2));
    let again = check(
        &bundle(&with_keyset(release(3), ks), &signer),
        &rooted(),
        &mut state,
        NOW,
    );
    assert_eq!(accepted(again).keyset_accepted, None);
    assert_eq!(state.keyset_version, 2);
    assert_eq!(state.highest_seen, 3);
}

#[test]
fn a_keyset_is_valid_up_to_and_including_its_expiry() {
    let signer = other_key();
    // Offered in a bundle: expiring at the trusted time is still valid, a second before not.
    for (expires_at, valid) in [(NOW, true), (NOW - 1, false)] {
        let ks = keyset_file(2, &signer, (0, u64::MAX), expires_at);
        let r = check(
            &bundle(&with_keyset(release(2), ks), &signer),
            &rooted(),
            &mut DeviceState::default(),
            NOW,
        );
        match valid {
            true => assert_eq!(accepted(r).keyset_accepted, Some(2)),
            false => assert_eq!(
                policy_error(r),
                PolicyError::KeysetExpired {
                    expires_at,
                    floor: NOW
                }
            ),
        }
    }
    // Stored from an earlier bundle: it vouches until its expiry, then for nothing.
    let mut state = DeviceState::default();
    let ks = keyset_file(2, &signer, (0, u64::MAX), NOW + DAY);
    let first = check(
        &bundle(&with_keyset(release(2), ks), &signer),
        &rooted(),
        &mut state,
        NOW,
    );
    accepted(first);
    let later = bundle(&release(3), &signer);
    accepted(check(&later, &rooted(), &mut state.clone(), NOW + DAY));
    assert_eq!(
        policy_error(check(&later, &rooted(), &mut state, NOW + DAY + 1)),
        PolicyError::KeysetExpired {
            expires_at: NOW + DAY,
            floor: NOW + DAY + 1
        }
    );
}

#[test]
fn a_release_is_valid_up_to_its_expiry_its_validity_and_the_clock_skew() {
    let skewed = Policy {
        max_clock_skew: Some(DAY),
        ..device()
    };
    let at = |created_at| bundle(&release_at(2, created_at, created_at + DAY), &key());
    accepted(check(
        &at(NOW + DAY),
        &skewed,
        &mut DeviceState::default(),
        NOW,
    ));
    assert_eq!(
        policy_error(check(
            &at(NOW + DAY + 1),
            &skewed,
            &mut DeviceState::default(),
            NOW
        )),
        PolicyError::CreatedInFuture {
            created_at: NOW + DAY + 1,
            now: NOW
        }
    );

    let expiring = bundle(&release_at(2, NOW - DAY, NOW), &key());
    accepted(check(
        &expiring,
        &device(),
        &mut DeviceState::default(),
        NOW,
    ));
    assert_eq!(
        policy_error(check(
            &expiring,
            &device(),
            &mut DeviceState::default(),
            NOW + 1
        )),
        PolicyError::Expired {
            expires_at: NOW,
            floor: NOW + 1
        }
    );

    let limited = Policy {
        max_validity: Some(30 * DAY),
        ..device()
    };
    let valid_for = |seconds| bundle(&release_at(2, NOW, NOW + seconds), &key());
    accepted(check(
        &valid_for(30 * DAY),
        &limited,
        &mut DeviceState::default(),
        NOW,
    ));
    assert_eq!(
        policy_error(check(
            &valid_for(30 * DAY + 1),
            &limited,
            &mut DeviceState::default(),
            NOW
        )),
        PolicyError::ValidityTooLong {
            validity: 30 * DAY + 1,
            max: 30 * DAY
        }
    );
}

#[test]
fn a_keyset_key_signs_only_inside_its_window_by_the_clock_and_by_the_signed_time() {
    let signer = other_key();
    let window = (NOW - DAY, NOW + DAY);
    let ks = keyset_file(2, &signer, window, NOW + 365 * DAY);
    let not_valid = PolicyError::KeyNotValid {
        key_id: signer.public().key_id().to_string(),
        not_before: window.0,
        not_after: window.1,
    };
    // (created_at, device clock, accepted): the window's ends are inside it.
    for (created_at, now, ok) in [
        (NOW, NOW, true),
        (NOW + DAY, NOW, true),
        (NOW - DAY, NOW - DAY, true),
        // The signed creation time outside, the clock inside.
        (NOW + DAY + 1, NOW, false),
        // The signed creation time inside, the clock past the window.
        (NOW, NOW + DAY + 1, false),
    ] {
        let opts = with_keyset(release_at(2, created_at, created_at + 30 * DAY), ks.clone());
        let r = check(
            &bundle(&opts, &signer),
            &rooted(),
            &mut DeviceState::default(),
            now,
        );
        match ok {
            true => drop(accepted(r)),
            false => assert_eq!(policy_error(r), not_valid, "{created_at} at {now}"),
        }
    }
    // A directly trusted key beside the keyset does not lift the keyset key's window.
    let both = Policy {
        release_keys: vec![key().public()],
        ..rooted()
    };
    let opts = with_keyset(release_at(2, NOW + 2 * DAY, NOW + 30 * DAY), ks);
    let r = check(
        &bundle(&opts, &signer),
        &both,
        &mut DeviceState::default(),
        NOW,
    );
    assert_eq!(policy_error(r), not_valid);
}
