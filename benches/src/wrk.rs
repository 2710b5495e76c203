//! wrk (Debian `wrk`) as the load generator: the lean, standard one other proxies publish
//! figures with, and a C program that takes less of this 2-core machine than the built-in
//! generator. The same workloads and windows as `load::drive`; the request's method, body and
//! headers go in a Lua script. wrk reports quantiles, not every latency, so the sample carries
//! them as reported.

use std::path::Path;
use std::process::Command;

use crate::load::{RequestSpec, Sample, Target, Window};

/// Runs `connections` connections against `target` with wrk: a warm-up run whose figures are
/// dropped, then the measured one.
pub fn drive(
    wrk: &Path,
    target: &Target,
    spec: &RequestSpec,
    connections: usize,
    window: Window,
) -> anyhow::Result<Sample> {
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("request.lua");
    std::fs::write(&script, lua(target, spec)?)?;
    let url = match target {
        Target::Plain(addr) => format!("http://{addr}{}", spec.path),
        // wrk does not verify certificates; the name only sets SNI.
        Target::Tls { addr, .. } => format!("https://localhost:{}{}", addr.port(), spec.path),
    };
    let threads = connections.clamp(1, 2);
    let run = |seconds: f64| -> anyhow::Result<String> {
        let output = Command::new(wrk)
            .arg(format!("-t{threads}"))
            .arg(format!("-c{connections}"))
            .arg(format!("-d{}s", seconds.max(1.0).round()))
            .arg("--latency")
            .arg("--timeout")
            .arg("10s")
            .arg("-s")
            .arg(&script)
            .arg(&url)
            .output()
            .map_err(|e| anyhow::anyhow!("wrk did not run: {e}"))?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        anyhow::ensure!(
            output.status.success(),
            "wrk failed: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(text)
    };
    if !window.warmup.is_zero() {
        run(window.warmup.as_secs_f64())?;
    }
    parse(&run(window.measure.as_secs_f64())?)
}

/// The Lua script that shapes every request.
fn lua(target: &Target, spec: &RequestSpec) -> anyhow::Result<String> {
    let body = std::str::from_utf8(&spec.body)?;
    anyhow::ensure!(
        !body.contains("]==]"),
        "the request body would end the Lua string"
    );
    let mut script = format!(
        "wrk.method = \"{}\"\nwrk.headers[\"Accept\"] = \"application/json\"\nwrk.headers[\"Host\"] = \"localhost\"\n",
        spec.method
    );
    if !body.is_empty() {
        script.push_str(&format!(
            "wrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.body = [==[{body}]==]\n"
        ));
    }
    if let Target::Tls { token, .. } = target {
        script.push_str(&format!(
            "wrk.headers[\"Authorization\"] = \"Bearer {token}\"\n"
        ));
    }
    Ok(script)
}

/// A duration as wrk prints it (`512.00us`, `1.20ms`, `2.00s`, `1.00m`), in milliseconds.
fn millis(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (value, unit) = text.split_at(split);
    let value: f64 = value.parse().ok()?;
    Some(match unit {
        "us" => value / 1000.0,
        "ms" => value,
        "s" => value * 1000.0,
        "m" => value * 60_000.0,
        _ => return None,
    })
}

/// wrk's report as a sample: answered requests (less non-2xx/3xx and socket errors), seconds,
/// and the latency quantiles it printed.
fn parse(report: &str) -> anyhow::Result<Sample> {
    let mut sample = Sample::default();
    let mut total = None;
    for line in report.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [count, "requests", "in", seconds, ..] => {
                total = count.parse::<u64>().ok();
                sample.seconds = millis(seconds.trim_end_matches(','))
                    .map(|ms| ms / 1000.0)
                    .unwrap_or_default();
            }
            [quantile, value] if quantile.ends_with('%') => {
                if let (Ok(q), Some(ms)) =
                    (quantile.trim_end_matches('%').parse::<f64>(), millis(value))
                {
                    sample.reported_quantiles_ms.push((q / 100.0, ms));
                }
            }
            ["Non-2xx", "or", "3xx", "responses:", n] => {
                sample.errors += n.parse::<u64>().unwrap_or(0);
            }
            ["Socket", "errors:", rest @ ..] => {
                sample.errors += rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>();
            }
            _ => {}
        }
    }
    let total =
        total.ok_or_else(|| anyhow::anyhow!("no request count in wrk's report: {report}"))?;
    sample.requests = total.saturating_sub(sample.errors);
    Ok(sample)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str =
        "Running 5s test @ http://127.0.0.1:8001/api/v1/namespaces/default/configmaps/small
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.03ms    1.17ms  22.32ms   81.45%
    Req/Sec    16.15k     1.02k   18.40k    70.00%
  Latency Distribution
     50%    1.77ms
     75%    2.44ms
     90%    3.36ms
     99%    5.60ms
  160702 requests in 5.00s, 716.84MB read
  Non-2xx or 3xx responses: 2
Requests/sec:  32101.31
Transfer/sec:    143.21MB
";

    #[test]
    fn the_report_becomes_a_sample() {
        let sample = parse(REPORT).expect("parses");
        assert_eq!(sample.requests, 160_700);
        assert_eq!(sample.errors, 2);
        assert!((sample.seconds - 5.0).abs() < 1e-9);
        assert!((sample.quantile_ms(0.99) - 5.60).abs() < 1e-9);
        assert!((sample.quantile_ms(0.50) - 1.77).abs() < 1e-9);
        assert_eq!(millis("512.00us"), Some(0.512));
        assert_eq!(millis("2.00s"), Some(2000.0));
    }
}
