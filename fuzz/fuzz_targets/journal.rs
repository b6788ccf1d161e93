#![no_main]
//! Fuzz target: see abdelta::fuzz_hooks::journal.
libfuzzer_sys::fuzz_target!(|data: &[u8]| abdelta::fuzz_hooks::journal(data));
