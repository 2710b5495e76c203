//! `kprox config print` and `kprox config check`.

use anyhow::Context as _;

use kprox_config::Config;

/// Prints the effective configuration as TOML, followed by the kubeconfig selection as
/// comments. No secret is ever printed: the configuration holds none, and credentials are
/// described by kind only.
pub fn print(config: anyhow::Result<Config>) -> anyhow::Result<()> {
    let config = config?;
    let text = toml::to_string(&config).context("rendering the configuration")?;
    println!("# effective kprox configuration (defaults < file < KPROX_* environment < flags)");
    print!("{text}");
    match kprox_auth::load(&config.kubeconfig) {
        Ok(access) => {
            println!("\n# kubeconfig: {}", access.source);
            println!(
                "#   context: {}  cluster: {}  user: {}",
                access.context, access.cluster, access.user
            );
            println!(
                "#   servers: {}",
                crate::assembly::servers(&config, &access).join(", ")
            );
            println!(
                "#   credential: {} (value redacted)",
                access.credential.describe()
            );
            if !access.impersonation.is_empty() {
                println!(
                    "#   impersonating: {} groups {:?}",
                    access.impersonation.user.as_deref().unwrap_or(""),
                    access.impersonation.groups
                );
            }
            println!(
                "#   client certificate: {}",
                if access.identity.is_some() {
                    "yes (key redacted)"
                } else {
                    "no"
                }
            );
            println!(
                "#   CA: {}{}",
                access.trust.roots_source,
                if access.trust.insecure {
                    " (insecure-skip-tls-verify!)"
                } else {
                    ""
                }
            );
        }
        Err(error) => println!("\n# kubeconfig: not usable: {error}"),
    }
    Ok(())
}

/// Validates configuration and kubeconfig, reads the credential files they name, and asks
/// each apiserver for `/version` so that a wrong CA or a dead server shows up now.
pub async fn check(config: anyhow::Result<Config>) -> anyhow::Result<()> {
    let config = config?;
    let access = kprox_auth::load(&config.kubeconfig)?;
    if let kprox_auth::CredentialSpec::TokenFile(path) = &access.credential {
        let token = std::fs::read_to_string(path)
            .with_context(|| format!("tokenFile {}", path.display()))?;
        anyhow::ensure!(
            !token.trim().is_empty(),
            "tokenFile {}: the file is empty",
            path.display()
        );
    }
    for server in crate::assembly::servers(&config, &access) {
        kprox_upstream::Endpoint::parse(&server)?;
        let mut one = config.clone();
        one.upstream.servers = vec![server.clone()];
        let parts = crate::assembly::assemble(&one, &access).await?;
        let stack = crate::wiring::build(&one, &access, &parts).await?;
        let status = stack
            .probe("/version")
            .await
            .map_err(|e| anyhow::anyhow!("{server}: {e}"))?;
        anyhow::ensure!(
            status.is_success() || status.as_u16() == 401 || status.as_u16() == 403,
            "{server}: GET /version answered {status}"
        );
        anyhow::ensure!(
            status.as_u16() != 401,
            "{server}: the apiserver rejected kprox's credentials (401); fix: check the kubeconfig user"
        );
        println!("{server}: reachable, certificate verified, GET /version {status}");
    }
    println!(
        "configuration OK: identity from {} (context {}, cluster {}, user {}): {}{}",
        access.source,
        access.context,
        access.cluster,
        access.user,
        access.credential.describe(),
        if access.identity.is_some() {
            " + client certificate"
        } else {
            ""
        }
    );
    Ok(())
}
