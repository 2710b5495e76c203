//! `kprox-convergence`: the long run of the convergence checker (benches/src/convergence.rs):
//! reflector-like clients of four kinds keep caches through kprox while its three apiservers
//! fail at random; fails unless every cache ends equal to the store with nothing lost, no ghost
//! and no duplicated event. `benches/convergence` builds kprox and runs it.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "watch caches through kprox while its apiservers fail at random")]
struct Args {
    /// The kprox binary (a release build).
    #[arg(long, default_value = "target/release/kprox")]
    kprox: PathBuf,
    /// Clients of each kind (JSON / protobuf × list+watch / WatchList).
    #[arg(long, default_value_t = 200)]
    watches_per_kind: usize,
    /// Faults in all.
    #[arg(long, default_value_t = 1000)]
    faults: usize,
    /// Milliseconds between two faults.
    #[arg(long, default_value_t = 150)]
    fault_every_ms: u64,
    /// Creates, updates and deletes per second.
    #[arg(long, default_value_t = 20.0)]
    mutations_per_second: f64,
    /// Seconds the clients get to catch up once the faults stop.
    #[arg(long, default_value_t = 60)]
    settle: u64,
    /// Where to write convergence.json and convergence.md.
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
    let options = kprox_bench::convergence::ConvergenceOptions {
        kprox: args.kprox,
        watches_per_kind: args.watches_per_kind.max(1),
        faults: args.faults,
        fault_every: Duration::from_millis(args.fault_every_ms),
        mutations_per_second: args.mutations_per_second,
        settle: Duration::from_secs(args.settle),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(kprox_bench::convergence::run(&options))?;
    kprox_bench::report::write_results(
        &args.out,
        "convergence",
        &report.to_json(),
        &report.to_markdown(),
    )?;
    let verdict = report.verdict();
    anyhow::ensure!(
        verdict.is_empty(),
        "the convergence run failed: {}",
        verdict.join("; ")
    );
    Ok(())
}
