//! ccb's config file: every text either loads or is one line of error with exit code 2.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match ccb::core::config::parse(text, std::path::Path::new("/fuzz/config.toml")) {
        Ok(c) => {
            let _ = c.to_toml();
        }
        Err(e) => {
            assert_eq!(e.code, 2);
            assert!(!e.message.contains('\n'), "one line: {:?}", e.message);
        }
    }
});
