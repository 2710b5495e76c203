//! The kubeconfig loader: any YAML gives cluster access or an error; never a panic, and a
//! token in the input never appears in the error.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// A token planted in every input, to catch errors that echo credentials.
const PLANTED: &str = "planted-secret-token-4d1f";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let text = text.replace("TOKEN", PLANTED);
    let selection = kprox_config::KubeconfigConfig::default();
    if let Err(error) = kprox_auth::parse(&text, "fuzz-kubeconfig", &selection) {
        let message = error.to_string();
        assert!(
            !message.contains(PLANTED),
            "the error echoes a token: {message}"
        );
    }
});
