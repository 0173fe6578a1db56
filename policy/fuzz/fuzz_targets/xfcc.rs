//! Any bytes: parsing must not panic, and whatever parses must serialize to a
//! header that parses back to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use policy::xfcc;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parsed) = xfcc::parse(text) {
        let header = parsed.to_header();
        assert_eq!(xfcc::parse(&header), Ok(parsed), "header: {header:?}");
    }
});
