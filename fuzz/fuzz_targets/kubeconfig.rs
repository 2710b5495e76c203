//! The kubeconfig loader: any YAML gives cluster access or an error; never a panic, and a
//! secret in the input (a token, a key, a password) never appears in the error.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// A token planted in every input, to catch errors that echo credentials.
const PLANTED: &str = "planted-secret-token-4d1f";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Plant the secret where kubeconfigs keep secrets (a token, a key, a password); names and
    // other fields may be quoted back in errors ("use one of: ...").
    let text: String = text
        .split_inclusive('\n')
        .map(|line| {
            let key = line
                .trim_start()
                .trim_start_matches("- ")
                .split(':')
                .next()
                .unwrap_or("");
            if [
                "token",
                "client-key-data",
                "password",
                "id-token",
                "refresh-token",
            ]
            .contains(&key.trim())
            {
                line.replace("TOKEN", PLANTED)
            } else {
                line.to_owned()
            }
        })
        .collect();
    let selection = kprox_config::KubeconfigConfig::default();
    if let Err(error) = kprox_auth::parse(&text, "fuzz-kubeconfig", &selection) {
        let message = error.to_string();
        assert!(
            !message.contains(PLANTED),
            "the error echoes a token: {message}"
        );
    }
});
