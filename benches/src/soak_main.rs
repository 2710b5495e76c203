//! `kprox-soak`: a million mixed requests through kprox while its apiservers fail in turn;
//! reports lost requests, RSS over time and descriptors, and fails if anything was lost or
//! leaked. `benches/soak` builds kprox and runs it.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "a long mixed load through kprox with faults injected on its apiservers")]
struct Args {
    /// The kprox binary (a release build).
    #[arg(long, default_value = "target/release/kprox")]
    kprox: PathBuf,
    /// Requests in all.
    #[arg(long, default_value_t = 1_000_000)]
    requests: u64,
    /// Client connections at once.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Seconds between two faults.
    #[arg(long, default_value_t = 1.5)]
    fault_every: f64,
    /// Where to write soak.json and soak.md.
    #[arg(long, default_value = "benches/results")]
    out: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.kprox.is_file(),
        "no kprox binary at {} (build it with scripts/build-release, or pass --kprox)",
        args.kprox.display()
    );
    let options = kprox_bench::soak::SoakOptions {
        kprox: args.kprox,
        requests: args.requests,
        connections: args.connections.max(1),
        fault_every: Duration::from_secs_f64(args.fault_every),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(kprox_bench::soak::soak(&options))?;
    kprox_bench::report::write_results(
        &args.out,
        "soak",
        &report.to_json(),
        &report.to_markdown(),
    )?;
    let verdict = kprox_bench::soak::verdict(&report);
    anyhow::ensure!(
        verdict.is_empty(),
        "the soak failed: {}",
        verdict.join("; ")
    );
    Ok(())
}
