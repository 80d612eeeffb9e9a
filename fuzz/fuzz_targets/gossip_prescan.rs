//! libFuzzer's entry to `murmur_fuzz::targets::gossip_prescan` (fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| murmur_fuzz::targets::gossip_prescan(data));
