#![no_main]
//! Fuzz target: see abdelta::fuzz_hooks::keyset.
libfuzzer_sys::fuzz_target!(|data: &[u8]| abdelta::fuzz_hooks::keyset(data));
