//! `cargo xtask fuzz pcap_reader`: see `podtap::fuzz::pcap_reader`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| podtap::fuzz::pcap_reader(data));
