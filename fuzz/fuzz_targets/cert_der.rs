#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| peerauth_fuzz::filter_checks::cert_der(data));
