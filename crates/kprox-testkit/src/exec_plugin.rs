//! A fake exec credential plugin for tests: a small shell script that prints an
//! `ExecCredential` with the token in a file, logs every run, and can be told to hang, fail or
//! give a short-lived credential — all through environment variables the kubeconfig sets.
//!
//! - `FAKE_EXEC_TOKEN_FILE`: file holding the token to hand out (read on every run);
//! - `FAKE_EXEC_LOG`: file that gets one line per run;
//! - `FAKE_EXEC_TTL`: seconds until `expirationTimestamp` (none when unset);
//! - `FAKE_EXEC_HANG`: when set, never finishes;
//! - `FAKE_EXEC_FAIL`: when set, prints it to stderr and exits 1;
//! - `FAKE_EXEC_CERT_FILE` / `FAKE_EXEC_KEY_FILE`: hand out this client certificate instead;
//! - `FAKE_EXEC_INFO_OUT`: write the `KUBERNETES_EXEC_INFO` it was given to this file.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const SCRIPT: &str = r#"#!/bin/sh
# kprox testkit: a fake exec credential plugin (see kprox-testkit/src/exec_plugin.rs).
echo run >> "$FAKE_EXEC_LOG"
if [ -n "$FAKE_EXEC_INFO_OUT" ]; then printf '%s' "$KUBERNETES_EXEC_INFO" > "$FAKE_EXEC_INFO_OUT"; fi
if [ -n "$FAKE_EXEC_HANG" ]; then sleep 600; fi
if [ -n "$FAKE_EXEC_FAIL" ]; then echo "$FAKE_EXEC_FAIL" >&2; exit 1; fi
if [ -n "$FAKE_EXEC_CERT_FILE" ]; then
  cert=$(awk '{printf "%s\\n", $0}' "$FAKE_EXEC_CERT_FILE")
  key=$(awk '{printf "%s\\n", $0}' "$FAKE_EXEC_KEY_FILE")
  printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"clientCertificateData":"%s","clientKeyData":"%s"}}\n' "$cert" "$key"
  exit 0
fi
token=$(cat "$FAKE_EXEC_TOKEN_FILE")
if [ -n "$FAKE_EXEC_TTL" ]; then
  expires=$(date -u -d "+$FAKE_EXEC_TTL seconds" +%Y-%m-%dT%H:%M:%SZ)
  printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s","expirationTimestamp":"%s"}}\n' "$token" "$expires"
else
  printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s"}}\n' "$token"
fi
"#;

/// Writes the plugin into `dir` and returns its path.
pub fn write_exec_plugin(dir: &Path) -> std::io::Result<PathBuf> {
    let path = dir.join("fake-exec-plugin");
    std::fs::write(&path, SCRIPT)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

/// How many times the plugin ran, from its log.
pub fn exec_plugin_runs(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}
