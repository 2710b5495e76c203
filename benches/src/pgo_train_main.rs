//! `kprox-pgo-train`: the training run of kprox's profile-guided release build (see
//! scripts/build-release and benches/src/pgo_train.rs).
//!
//! ```sh
//! kprox-pgo-train --kprox path/to/instrumented/kprox
//! ```

use std::path::PathBuf;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "Serves kprox's training traffic through a PGO-instrumented kprox")]
struct Args {
    /// The kprox binary built with -Cprofile-generate.
    #[arg(long)]
    kprox: PathBuf,
    /// Seconds each part of the traffic lasts.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let trained = kprox_bench::pgo_train::train(&args.kprox, args.seconds).await?;
    eprintln!(
        "kprox-pgo-train: {} requests answered, {} watches received their event",
        trained.requests, trained.watches
    );
    Ok(())
}
