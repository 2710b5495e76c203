//! The TOML config parser and validator: any text gives a config or an error naming the file;
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match kprox_config::parse_toml("fuzz.toml", text) {
        Ok(raw) => {
            let origin = |_: &str| "fuzz.toml".to_owned();
            if let Err(error) = kprox_config::validate(&raw, &origin) {
                assert!(error.to_string().contains("fuzz.toml"), "{error}");
            }
        }
        Err(error) => assert!(error.to_string().contains("fuzz.toml"), "{error}"),
    }
});
