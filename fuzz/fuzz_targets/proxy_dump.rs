#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| peerauth_fuzz::certgen_checks::proxy_dump(data));
