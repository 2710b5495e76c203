//! A short run of the convergence checker (benches/src/convergence.rs): reflector-like clients
//! of the four kinds (JSON / protobuf × list+watch / WatchList) keep caches through kprox while
//! three fake apiservers fail at random and objects change; every cache must end equal to the
//! store, with nothing lost, no ghost and no event seen twice. `kprox-bench convergence` is the
//! long run (benches/README.md).

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_cache_converges_through_random_apiserver_faults() {
    let options = kprox_bench::convergence::ConvergenceOptions {
        kprox: env!("CARGO_BIN_EXE_kprox").into(),
        watches_per_kind: 8,
        faults: 80,
        fault_every: Duration::from_millis(120),
        mutations_per_second: 25.0,
        settle: Duration::from_secs(30),
    };
    let report = kprox_bench::convergence::run(&options)
        .await
        .expect("the checker runs");
    println!("{}", report.to_markdown());
    assert!(
        report.faults_total() >= 40,
        "too few faults to mean anything: {}",
        report.faults_total()
    );
    for kind in &report.kinds {
        assert!(kind.events > 0, "{}: no event at all", kind.kind);
    }
    assert!(
        report.mutations > 100,
        "too few changes: {}",
        report.mutations
    );
    let verdict = report.verdict();
    assert!(verdict.is_empty(), "{}", verdict.join("; "));
}
