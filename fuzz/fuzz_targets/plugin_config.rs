#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| peerauth_fuzz::filter_checks::plugin_config(data));
