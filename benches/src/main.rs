//! `kprox-bench`: runs the side-by-side benchmark and writes its results.
//!
//! ```sh
//! benches/run                 # release build, 5 rounds, writes benches/results/
//! benches/run --smoke         # seconds; proves it works, figures mean nothing
//! ```

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "kprox vs kubectl proxy vs a direct connection, in interleaved rounds")]
struct Args {
    /// The kprox binary (a release build for real figures).
    #[arg(long, default_value = "target/release/kprox")]
    kprox: PathBuf,
    /// The kubectl binary.
    #[arg(long, default_value = "kubectl")]
    kubectl: PathBuf,
    /// Rounds; every figure is the median over them.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds measured per workload and target.
    #[arg(long, default_value_t = 4.0)]
    seconds: f64,
    /// Warm-up seconds before each measurement, excluded from it.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Idle watches opened at once through each target.
    #[arg(long, default_value_t = 10_000)]
    watches: usize,
    /// Run only the workloads whose name contains this ("idle watches" for the watches, "slow
    /// readers" for the slow readers).
    #[arg(long)]
    only: Option<String>,
    /// Environment for kprox, KEY=VALUE; repeat for more (e.g. a runtime sweep).
    #[arg(long = "kprox-env", value_parser = parse_env)]
    kprox_env: Vec<(String, String)>,
    /// Another kprox configuration to measure beside the default in the same rounds,
    /// `LABEL:KEY=VALUE[,KEY=VALUE...]` (environment; `binary=PATH` runs another kprox build),
    /// shown as `kprox LABEL`; repeat for more.
    #[arg(long = "variant", value_parser = kprox_bench::Variant::parse)]
    variants: Vec<kprox_bench::Variant>,
    /// A command to run kprox under, e.g. "heaptrack -o /tmp/kprox" (split on spaces).
    /// Memory and CPU figures are then the wrapper's process.
    #[arg(long)]
    wrap: Option<String>,
    /// The load generator: `builtin` (this crate's, every latency kept) or `wrk` (Debian's
    /// wrk: lean, and the generator other proxies publish figures with).
    #[arg(long, default_value = "builtin", value_parser = ["builtin", "wrk"])]
    generator: String,
    /// A run of a few seconds that proves the benchmark works.
    #[arg(long)]
    smoke: bool,
    /// Where to write results.json, results.md and chart.svg.
    #[arg(long, default_value = "benches/results")]
    out: PathBuf,
}

fn parse_env(pair: &str) -> Result<(String, String), String> {
    pair.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{pair:?} is not KEY=VALUE"))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let kubectl = kprox_bench::which(&args.kubectl)?;
    let mut options = if args.smoke {
        kprox_bench::Options::smoke(args.kprox.clone(), kubectl)
    } else {
        kprox_bench::Options {
            kprox: args.kprox.clone(),
            kubectl,
            rounds: args.rounds.max(1),
            warmup: Duration::from_secs_f64(args.warmup),
            measure: Duration::from_secs_f64(args.seconds),
            at_least_per_connection: 0,
            watches: args.watches,
            only: None,
            launch: kprox_bench::subject::Launch::default(),
            nginx: None,
            haproxy: None,
            wrk: None,
            variants: Vec::new(),
        }
    };
    options.only = args.only.clone();
    // nginx joins the comparison when it is installed (Debian: apt-get install nginx).
    options.nginx = kprox_bench::which(std::path::Path::new("nginx")).ok();
    // HAProxy likewise (Debian: apt-get install haproxy).
    options.haproxy = kprox_bench::which(std::path::Path::new("haproxy")).ok();
    for (name, found) in [
        ("nginx", options.nginx.is_some()),
        ("haproxy", options.haproxy.is_some()),
    ] {
        if !found {
            eprintln!("{name} is not installed: it is left out of the comparison");
        }
    }
    if args.generator == "wrk" {
        options.wrk = Some(
            kprox_bench::which(std::path::Path::new("wrk")).map_err(|_| {
                anyhow::anyhow!(
                    "--generator wrk: wrk is not installed (Debian: apt-get install wrk)"
                )
            })?,
        );
    }
    options.launch.env = args.kprox_env.clone();
    options.variants = args.variants.clone();
    options.launch.wrap = args
        .wrap
        .iter()
        .flat_map(|w| w.split_whitespace())
        .map(str::to_owned)
        .collect();
    anyhow::ensure!(
        options.kprox.is_file(),
        "no kprox binary at {} (build it with `cargo build --release -p kprox`, or pass --kprox)",
        options.kprox.display()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(kprox_bench::run(&options))?;
    std::fs::create_dir_all(&args.out)?;
    let markdown = report.to_markdown();
    std::fs::write(
        args.out.join("results.json"),
        serde_json::to_string_pretty(&report.to_json())?,
    )?;
    std::fs::write(args.out.join("results.md"), &markdown)?;
    std::fs::write(args.out.join("chart.svg"), report.to_svg())?;
    println!("{markdown}");
    println!("written to {}", args.out.display());
    Ok(())
}
