#![no_main]
//! Fuzz target: see abdelta::fuzz_hooks::state.
libfuzzer_sys::fuzz_target!(|data: &[u8]| abdelta::fuzz_hooks::state(data));
