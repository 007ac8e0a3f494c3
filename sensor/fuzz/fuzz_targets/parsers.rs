//! `cargo xtask fuzz parsers`: see `podtap::fuzz::parsers`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| podtap::fuzz::parsers(data));
