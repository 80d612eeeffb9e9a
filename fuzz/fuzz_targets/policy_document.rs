//! libFuzzer's entry to `murmur_fuzz::targets::policy_document` (fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| murmur_fuzz::targets::policy_document(data));
