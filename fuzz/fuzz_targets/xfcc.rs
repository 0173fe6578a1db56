#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| peerauth_fuzz::policy_checks::xfcc(data));
