//! Any UTF-8 text through the YAML/JSON loader: it must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = policy::source::load(text, "fuzz");
    }
});
