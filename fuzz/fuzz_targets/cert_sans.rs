//! libFuzzer's entry to `murmur_fuzz::targets::cert_sans` (fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| murmur_fuzz::targets::cert_sans(data));
