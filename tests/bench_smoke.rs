//! The side-by-side benchmark runs end to end (a short smoke mode): every target answers every
//! workload without errors, every idle watch receives the next event, and the JSON, table and
//! chart are produced. Its figures are never asserted: timed thresholds on this machine would
//! be flaky, and the benchmark exists to measure, not to pass.

use std::path::PathBuf;

#[tokio::test(flavor = "multi_thread")]
async fn the_benchmark_runs_every_workload_against_every_target() {
    let kubectl = kprox_bench::which(std::path::Path::new("kubectl"))
        .expect("kubectl must be installed (scripts/test-all installs it)");
    let mut options =
        kprox_bench::Options::smoke(PathBuf::from(env!("CARGO_BIN_EXE_kprox")), kubectl);
    options.nginx = Some(
        kprox_bench::which(std::path::Path::new("nginx"))
            .expect("nginx must be installed (scripts/test-all installs it)"),
    );
    options.haproxy = Some(
        kprox_bench::which(std::path::Path::new("haproxy"))
            .expect("haproxy must be installed (scripts/test-all installs it)"),
    );
    let report = kprox_bench::run(&options).await.expect("benchmark runs");

    let workloads = report.workloads();
    assert_eq!(workloads.len(), kprox_bench::workloads().len());
    for workload in &workloads {
        for subject in kprox_bench::report::SUBJECTS {
            let summary = report.summary(workload, subject);
            assert!(
                summary.requests_per_second > 0.0 && summary.errors == 0,
                "{workload} via {subject}: {summary:?}"
            );
            assert!(summary.p50_ms <= summary.p99_ms, "{summary:?}");
            if subject != "direct" {
                assert!(
                    summary.cpu_seconds_per_10k.is_finite()
                        && summary.switches_per_request > 0.0
                        && summary.peak_rss_mib > 1.0,
                    "{summary:?}"
                );
            }
        }
    }
    for watches in &report.watches {
        assert_eq!(watches.watches, options.watches, "{watches:?}");
        assert_eq!(watches.received, watches.watches, "{watches:?}");
    }
    assert_eq!(
        report.watches.len(),
        2,
        "idle watches run through both proxies"
    );
    assert_eq!(report.starts.len(), 2);
    let through: Vec<&str> = report
        .slow_reads
        .iter()
        .map(|r| r.subject.as_str())
        .collect();
    assert_eq!(
        through,
        ["kprox", "kubectl proxy", "nginx", "haproxy"],
        "slow readers go through every proxy"
    );
    for slow in &report.slow_reads {
        assert_eq!(
            slow.started, slow.readers,
            "every slow reader was answered: {slow:?}"
        );
        assert!(slow.taken_bytes > 0 && slow.rss_kib > 0, "{slow:?}");
    }

    let json = report.to_json();
    assert_eq!(
        json["medians"].as_array().map(Vec::len),
        Some(workloads.len() * kprox_bench::report::SUBJECTS.len())
    );
    let markdown = report.to_markdown();
    assert!(
        markdown.contains("| small GET, 64 connections | kprox |"),
        "{markdown}"
    );
    assert!(
        markdown.contains("req/s kprox / kubectl proxy")
            && markdown.contains("req/s kprox / nginx")
            && markdown.contains("| small GET, 64 connections | nginx |")
            && markdown.contains("req/s kprox / haproxy")
            && markdown.contains("req/s kprox pass-through / haproxy tcp")
            && markdown.contains("| 1 MiB list, 64 slow readers | kprox |")
            && markdown.contains("64 slow readers: RSS kprox / haproxy")
            && markdown.contains("| 1 MiB list, 64 connections | haproxy tcp |"),
        "{markdown}"
    );
    let svg = report.to_svg();
    assert!(
        svg.starts_with("<svg")
            && svg.contains("kubectl proxy")
            && svg.contains("nginx")
            && svg.contains("haproxy"),
        "{svg}"
    );
    let targets = kprox_bench::report::SUBJECTS.len();
    assert_eq!(
        svg.matches("<rect x=").count(),
        workloads.len() * targets + targets
    );
}

// The soak (benches/soak) in small: every request through kprox ends in a response while the
// apiservers fail every 300 ms — no request lost, no body corrupt, no descriptor leaked. The
// full run (1,000,000 requests) is in benches/results/soak.md.
#[tokio::test(flavor = "multi_thread")]
async fn the_soak_loses_nothing_while_apiservers_fail() {
    let options = kprox_bench::soak::SoakOptions {
        kprox: PathBuf::from(env!("CARGO_BIN_EXE_kprox")),
        requests: 20_000,
        connections: 16,
        fault_every: std::time::Duration::from_millis(300),
    };
    let report = kprox_bench::soak::soak(&options).await.expect("soak runs");
    println!("{}", report.to_markdown());
    assert!(
        report.faults.iter().map(|(_, n)| n).sum::<u64>() >= 3,
        "faults were injected: {:?}",
        report.faults
    );
    assert_eq!(
        report.ok + report.deliberate.iter().map(|(_, n)| n).sum::<u64>() + report.cut,
        report.requests,
        "every request is accounted for"
    );
    assert_eq!(report.lost, 0, "{}", report.to_markdown());
    assert_eq!(report.corrupt, 0, "{}", report.to_markdown());
    assert!(
        report.fds_after <= report.fds_before + 8,
        "{}",
        report.to_markdown()
    );
}

/// The same benchmark with wrk generating the load (small GETs only, to stay short): every
/// target answers, and wrk's quantiles reach the report.
#[tokio::test(flavor = "multi_thread")]
async fn the_benchmark_runs_with_wrk_as_the_load_generator() {
    let which = |tool: &str| {
        kprox_bench::which(std::path::Path::new(tool))
            .unwrap_or_else(|_| panic!("{tool} must be installed (scripts/test-all installs it)"))
    };
    let mut options =
        kprox_bench::Options::smoke(PathBuf::from(env!("CARGO_BIN_EXE_kprox")), which("kubectl"));
    options.nginx = Some(which("nginx"));
    options.haproxy = Some(which("haproxy"));
    options.wrk = Some(which("wrk"));
    options.only = Some("small GET".to_owned());
    let report = kprox_bench::run(&options).await.expect("benchmark runs");
    let workloads = report.workloads();
    assert_eq!(workloads.len(), 2, "{workloads:?}");
    for workload in &workloads {
        for subject in kprox_bench::report::SUBJECTS {
            let summary = report.summary(workload, subject);
            assert!(
                summary.requests_per_second > 0.0
                    && summary.errors == 0
                    && summary.p99_ms.is_finite()
                    && summary.p50_ms <= summary.p99_ms,
                "{workload} via {subject} with wrk: {summary:?}"
            );
        }
    }
}
