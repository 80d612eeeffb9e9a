//! libFuzzer's entry to `murmur_fuzz::targets::node_config` (fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| murmur_fuzz::targets::node_config(data));
