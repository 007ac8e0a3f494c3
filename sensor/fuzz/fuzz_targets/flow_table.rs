//! `cargo xtask fuzz flow_table`: see `podtap::fuzz::flow_table`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| podtap::fuzz::flow_table(data));
