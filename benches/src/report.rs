//! The benchmark's records, their medians and ratios, and the JSON, table and chart written
//! from them.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::Options;

/// One workload against one target in one round.
#[derive(Clone, Debug)]
pub struct Record {
    pub workload: String,
    pub subject: String,
    pub round: usize,
    pub requests_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub requests: u64,
    pub errors: u64,
    /// CPU seconds the proxy used per 10,000 requests (none for the direct connection).
    pub cpu_seconds_per_10k: Option<f64>,
    /// Context switches of the proxy's threads per request (none for the direct connection).
    pub switches_per_request: Option<f64>,
    /// The proxy's peak RSS (VmHWM) so far in the round, in KiB.
    pub peak_rss_kib: Option<u64>,
}

/// Idle watches through one target in one round.
#[derive(Clone, Debug)]
pub struct WatchRecord {
    pub subject: String,
    pub round: usize,
    pub watches: usize,
    /// Watches that received the event sent after all were open.
    pub received: usize,
    /// The proxy's RSS with every watch open, in KiB.
    pub rss_kib: u64,
    /// Seconds from the first watch request to the last watch's response head.
    pub open_seconds: f64,
}

/// Slow readers of a 1 MiB list through one proxy in one round (`slow_readers.rs`).
#[derive(Clone, Debug)]
pub struct SlowReadRecord {
    pub subject: String,
    pub round: usize,
    pub readers: usize,
    /// Readers whose `200` arrived.
    pub started: usize,
    /// Bytes the readers had taken when the proxy was weighed.
    pub taken_bytes: u64,
    /// The proxy's RSS before the readers came, and with them mid-response, in KiB.
    pub rss_before_kib: u64,
    pub rss_kib: u64,
}

/// A proxy's start in one round.
#[derive(Clone, Debug)]
pub struct StartRecord {
    pub subject: String,
    pub round: usize,
    /// From spawning the process to its first answered request.
    pub startup_ms: f64,
    pub idle_rss_kib: u64,
}

/// Everything one run measured.
#[derive(Clone, Debug)]
pub struct Report {
    pub rounds: usize,
    pub seconds_per_run: f64,
    pub records: Vec<Record>,
    pub watches: Vec<WatchRecord>,
    pub slow_reads: Vec<SlowReadRecord>,
    pub starts: Vec<StartRecord>,
}

/// The median of `values` (NaN when empty).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.retain(|v| !v.is_nan());
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

/// Medians over rounds of one workload against one target.
#[derive(Clone, Debug)]
pub struct Summary {
    pub workload: String,
    pub subject: String,
    pub requests_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub cpu_seconds_per_10k: f64,
    pub switches_per_request: f64,
    pub peak_rss_mib: f64,
    pub errors: u64,
}

/// Every target that can be measured, in the order tables and charts show them.
pub const SUBJECTS: [&str; 7] = [
    "direct",
    "kprox",
    "kprox pass-through",
    "kubectl proxy",
    "nginx",
    "haproxy",
    "haproxy tcp",
];

impl Report {
    pub fn new(options: &Options) -> Self {
        Self {
            rounds: options.rounds,
            seconds_per_run: options.measure.as_secs_f64(),
            records: Vec::new(),
            watches: Vec::new(),
            slow_reads: Vec::new(),
            starts: Vec::new(),
        }
    }

    /// The targets this run measured (nginx only when it was installed), in [`SUBJECTS`]'
    /// order with kprox's variants (`--variant`) after kprox itself.
    pub fn subjects(&self) -> Vec<&str> {
        let measured = |s: &str| self.records.iter().any(|r| r.subject == s);
        let mut subjects: Vec<&str> = SUBJECTS.into_iter().filter(|s| measured(s)).collect();
        let mut variants: Vec<&str> = Vec::new();
        for record in &self.records {
            let name = record.subject.as_str();
            if !SUBJECTS.contains(&name) && !variants.contains(&name) {
                variants.push(name);
            }
        }
        let after_kprox = subjects
            .iter()
            .position(|s| *s == "kprox")
            .map_or(0, |i| i + 1);
        subjects.splice(after_kprox..after_kprox, variants);
        subjects
    }

    /// The workloads in the order they ran.
    pub fn workloads(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for record in &self.records {
            if !names.contains(&record.workload) {
                names.push(record.workload.clone());
            }
        }
        names
    }

    pub fn summary(&self, workload: &str, subject: &str) -> Summary {
        let mine: Vec<&Record> = self
            .records
            .iter()
            .filter(|r| r.workload == workload && r.subject == subject)
            .collect();
        let of = |f: &dyn Fn(&Record) -> f64| median(mine.iter().map(|r| f(r)).collect());
        Summary {
            workload: workload.to_owned(),
            subject: subject.to_owned(),
            requests_per_second: of(&|r| r.requests_per_second),
            p50_ms: of(&|r| r.p50_ms),
            p99_ms: of(&|r| r.p99_ms),
            cpu_seconds_per_10k: of(&|r| r.cpu_seconds_per_10k.unwrap_or(f64::NAN)),
            switches_per_request: of(&|r| r.switches_per_request.unwrap_or(f64::NAN)),
            peak_rss_mib: of(&|r| r.peak_rss_kib.map_or(f64::NAN, |k| k as f64 / 1024.0)),
            errors: mine.iter().map(|r| r.errors).sum(),
        }
    }

    fn start_median(&self, subject: &str, f: &dyn Fn(&StartRecord) -> f64) -> f64 {
        median(
            self.starts
                .iter()
                .filter(|s| s.subject == subject)
                .map(f)
                .collect(),
        )
    }

    /// RSS MiB, watches opened, watches that received the event, seconds to open them.
    fn watch_median(&self, subject: &str) -> (f64, usize, usize, f64) {
        let mine: Vec<&WatchRecord> = self
            .watches
            .iter()
            .filter(|w| w.subject == subject)
            .collect();
        let rss = median(mine.iter().map(|w| w.rss_kib as f64 / 1024.0).collect());
        let opened = mine.iter().map(|w| w.watches).min().unwrap_or(0);
        let received = mine.iter().map(|w| w.received).min().unwrap_or(0);
        let open_seconds = median(mine.iter().map(|w| w.open_seconds).collect());
        (rss, opened, received, open_seconds)
    }

    /// Slow readers through `subject`: (median RSS MiB, median MiB added by the readers,
    /// fewest readers started, median MiB taken), or `None` when not measured.
    pub fn slow_read_median(&self, subject: &str) -> Option<(f64, f64, usize, f64)> {
        let mine: Vec<&SlowReadRecord> = self
            .slow_reads
            .iter()
            .filter(|r| r.subject == subject)
            .collect();
        if mine.is_empty() {
            return None;
        }
        let mib = |kib: u64| kib as f64 / 1024.0;
        Some((
            median(mine.iter().map(|r| mib(r.rss_kib)).collect()),
            median(
                mine.iter()
                    .map(|r| mib(r.rss_kib) - mib(r.rss_before_kib))
                    .collect(),
            ),
            mine.iter().map(|r| r.started).min().unwrap_or(0),
            median(
                mine.iter()
                    .map(|r| r.taken_bytes as f64 / 1048576.0)
                    .collect(),
            ),
        ))
    }

    /// The proxies the slow readers went through, in [`SUBJECTS`]' order.
    fn slow_read_subjects(&self) -> Vec<&'static str> {
        SUBJECTS
            .into_iter()
            .filter(|s| self.slow_reads.iter().any(|r| r.subject == *s))
            .collect()
    }

    /// Every figure as JSON: the raw records and the medians and ratios.
    pub fn to_json(&self) -> Value {
        let mut summaries = Vec::new();
        for workload in self.workloads() {
            for subject in self.subjects() {
                let s = self.summary(&workload, subject);
                summaries.push(json!({
                    "workload": s.workload, "subject": s.subject,
                    "requests_per_second": finite(s.requests_per_second),
                    "p50_ms": finite(s.p50_ms), "p99_ms": finite(s.p99_ms),
                    "cpu_seconds_per_10k": finite(s.cpu_seconds_per_10k),
                    "switches_per_request": finite(s.switches_per_request),
                    "peak_rss_mib": finite(s.peak_rss_mib), "errors": s.errors,
                }));
            }
        }
        let records: Vec<Value> = self
            .records
            .iter()
            .map(|r| {
                json!({
                    "workload": r.workload, "subject": r.subject, "round": r.round,
                    "requests_per_second": finite(r.requests_per_second),
                    "p50_ms": finite(r.p50_ms), "p99_ms": finite(r.p99_ms),
                    "requests": r.requests, "errors": r.errors,
                    "cpu_seconds_per_10k": r.cpu_seconds_per_10k.and_then(finite),
                    "switches_per_request": r.switches_per_request.and_then(finite),
                    "peak_rss_kib": r.peak_rss_kib,
                })
            })
            .collect();
        let watches: Vec<Value> = self
            .watches
            .iter()
            .map(|w| json!({"subject": w.subject, "round": w.round, "watches": w.watches, "received": w.received, "rss_kib": w.rss_kib, "open_seconds": finite(w.open_seconds)}))
            .collect();
        let slow_reads: Vec<Value> = self
            .slow_reads
            .iter()
            .map(|r| json!({"subject": r.subject, "round": r.round, "readers": r.readers, "started": r.started, "taken_bytes": r.taken_bytes, "rss_before_kib": r.rss_before_kib, "rss_kib": r.rss_kib}))
            .collect();
        let starts: Vec<Value> = self
            .starts
            .iter()
            .map(|s| json!({"subject": s.subject, "round": s.round, "startup_ms": finite(s.startup_ms), "idle_rss_kib": s.idle_rss_kib}))
            .collect();
        json!({
            "rounds": self.rounds,
            "seconds_per_run": self.seconds_per_run,
            "medians": summaries,
            "ratios": self.ratios().into_iter().map(|(what, value)| json!({"ratio": what, "value": finite(value)})).collect::<Vec<_>>(),
            "records": records,
            "watches": watches,
            "slow_reads": slow_reads,
            "starts": starts,
        })
    }

    /// The ratios the targets are stated in.
    pub fn ratios(&self) -> Vec<(String, f64)> {
        let mut ratios = Vec::new();
        let with_nginx = self.subjects().contains(&"nginx");
        let with_haproxy = self.subjects().contains(&"haproxy");
        for workload in self.workloads() {
            let of = |subject| self.summary(&workload, subject);
            let (direct, kprox, kubectl) = (of("direct"), of("kprox"), of("kubectl proxy"));
            let mut push = |what: &str, value: f64| {
                ratios.push((format!("{workload}: {what}"), value));
            };
            let rps = |s: &Summary| s.requests_per_second;
            push("req/s kprox / kubectl proxy", rps(&kprox) / rps(&kubectl));
            push("req/s kprox / direct", rps(&kprox) / rps(&direct));
            push(
                "req/s kprox pass-through / direct",
                rps(&of("kprox pass-through")) / rps(&direct),
            );
            push("p99 kprox / kubectl proxy", kprox.p99_ms / kubectl.p99_ms);
            push(
                "added p50 latency kprox / kubectl proxy",
                (kprox.p50_ms - direct.p50_ms) / (kubectl.p50_ms - direct.p50_ms),
            );
            let cpu = |s: &Summary| s.cpu_seconds_per_10k;
            push(
                "CPU per 10k kprox / kubectl proxy",
                cpu(&kprox) / cpu(&kubectl),
            );
            push(
                "peak RSS kprox / kubectl proxy",
                kprox.peak_rss_mib / kubectl.peak_rss_mib,
            );
            if with_nginx {
                let nginx = of("nginx");
                push("req/s kprox / nginx", rps(&kprox) / rps(&nginx));
                push("p99 kprox / nginx", kprox.p99_ms / nginx.p99_ms);
                push("CPU per 10k kprox / nginx", cpu(&kprox) / cpu(&nginx));
            }
            if with_haproxy {
                let (haproxy, tcp) = (of("haproxy"), of("haproxy tcp"));
                push("req/s kprox / haproxy", rps(&kprox) / rps(&haproxy));
                push("p99 kprox / haproxy", kprox.p99_ms / haproxy.p99_ms);
                push("CPU per 10k kprox / haproxy", cpu(&kprox) / cpu(&haproxy));
                push(
                    "context switches per request kprox / haproxy",
                    kprox.switches_per_request / haproxy.switches_per_request,
                );
                push(
                    "added p50 latency kprox / haproxy",
                    (kprox.p50_ms - direct.p50_ms) / (haproxy.p50_ms - direct.p50_ms),
                );
                push(
                    "peak RSS kprox / haproxy",
                    kprox.peak_rss_mib / haproxy.peak_rss_mib,
                );
                push(
                    "req/s kprox pass-through / haproxy tcp",
                    rps(&of("kprox pass-through")) / rps(&tcp),
                );
            }
        }
        // The RSS itself: what was added is lost in the noise once earlier workloads have
        // grown the heap (the readers run after them).
        if let Some((kprox_rss, _, _, _)) = self.slow_read_median("kprox") {
            for peer in ["nginx", "haproxy"] {
                if let Some((rss, _, _, _)) = self.slow_read_median(peer) {
                    ratios.push((
                        format!("64 slow readers: RSS kprox / {peer}"),
                        kprox_rss / rss,
                    ));
                }
            }
        }
        ratios
    }

    /// The results table in Markdown, as the README shows it.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Medians over {} rounds of {} s per workload and target.\n",
            self.rounds, self.seconds_per_run
        );
        let _ = writeln!(
            out,
            "| workload | target | req/s | p50 ms | p99 ms | CPU s / 10k req | switches / req | peak RSS MiB | errors |"
        );
        let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---:|");
        for workload in self.workloads() {
            for subject in self.subjects() {
                let s = self.summary(&workload, subject);
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.0} | {:.3} | {:.3} | {} | {} | {} | {} |",
                    s.workload,
                    s.subject,
                    s.requests_per_second,
                    s.p50_ms,
                    s.p99_ms,
                    dash(s.cpu_seconds_per_10k, 2),
                    dash(s.switches_per_request, 2),
                    dash(s.peak_rss_mib, 1),
                    s.errors
                );
            }
        }
        if !self.slow_reads.is_empty() {
            let _ = writeln!(
                out,
                "\n| slow readers | target | readers answered | MiB taken | RSS MiB | RSS added MiB |"
            );
            let _ = writeln!(out, "|---|---|---:|---:|---:|---:|");
            for subject in self.slow_read_subjects() {
                if let Some((rss, added, started, taken)) = self.slow_read_median(subject) {
                    let _ = writeln!(
                        out,
                        "| 1 MiB list, 64 slow readers | {subject} | {started} | {} | {} | {} |",
                        dash(taken, 1),
                        dash(rss, 1),
                        dash(added, 1)
                    );
                }
            }
        }
        if !self.watches.is_empty() {
            let _ = writeln!(
                out,
                "\n| idle watches | target | watches open | received the next event | RSS MiB | seconds to open |"
            );
            let _ = writeln!(out, "|---|---|---:|---:|---:|---:|");
            for subject in ["kprox", "kubectl proxy"] {
                let (rss, opened, received, open_seconds) = self.watch_median(subject);
                let _ = writeln!(
                    out,
                    "| idle watches | {subject} | {opened} | {received} | {} | {} |",
                    dash(rss, 1),
                    dash(open_seconds, 2)
                );
            }
        }
        let _ = writeln!(
            out,
            "\n| start | target | spawn to first answer ms | idle RSS MiB |"
        );
        let _ = writeln!(out, "|---|---|---:|---:|");
        for subject in ["kprox", "kubectl proxy"] {
            let _ = writeln!(
                out,
                "| start | {subject} | {:.1} | {:.1} |",
                self.start_median(subject, &|s| s.startup_ms),
                self.start_median(subject, &|s| s.idle_rss_kib as f64 / 1024.0)
            );
        }
        let _ = writeln!(out, "\n| ratio | value |");
        let _ = writeln!(out, "|---|---:|");
        for (what, value) in self.ratios() {
            let _ = writeln!(out, "| {what} | {} |", dash(value, 2));
        }
        out
    }

    /// A grouped bar chart of requests per second, each workload scaled to its fastest target.
    pub fn to_svg(&self) -> String {
        let workloads = self.workloads();
        // One per entry of SUBJECTS.
        let colours: [&str; SUBJECTS.len()] = [
            "#7a869a", "#2f7ed8", "#9b59b6", "#d9822b", "#3a9a5b", "#c0392b", "#e6a0a0",
        ];
        let subjects = self.subjects();
        let bars = subjects.len().max(1) as f64;
        let group_width = 30.0 + 55.0 * bars;
        let width = 80.0 + group_width * workloads.len() as f64;
        let height = 330.0;
        let plot_height = 220.0;
        let mut svg = String::new();
        let _ = writeln!(
            svg,
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">"##
        );
        let _ = writeln!(
            svg,
            r##"<rect width="100%" height="100%" fill="white"/><text x="10" y="18" font-size="14">Requests per second, median of {} rounds (bar height relative to the fastest target)</text>"##,
            self.rounds
        );
        for (g, workload) in workloads.iter().enumerate() {
            let summaries: Vec<Summary> =
                subjects.iter().map(|s| self.summary(workload, s)).collect();
            let best = summaries
                .iter()
                .map(|s| s.requests_per_second)
                .filter(|v| v.is_finite())
                .fold(1.0_f64, f64::max);
            let x0 = 60.0 + group_width * g as f64;
            for (i, s) in summaries.iter().enumerate() {
                let value = if s.requests_per_second.is_finite() {
                    s.requests_per_second
                } else {
                    0.0
                };
                let h = plot_height * value / best;
                let x = x0 + 10.0 + 55.0 * i as f64;
                let y = 40.0 + plot_height - h;
                let _ = writeln!(
                    svg,
                    r##"<rect x="{x:.1}" y="{y:.1}" width="45" height="{h:.1}" fill="{}"/><text x="{:.1}" y="{:.1}" text-anchor="middle">{value:.0}</text>"##,
                    colours[i % colours.len()],
                    x + 22.5,
                    y - 4.0
                );
            }
            let _ = writeln!(
                svg,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                x0 + 10.0 + 55.0 * bars / 2.0 - 5.0,
                40.0 + plot_height + 18.0,
                xml_escape(workload)
            );
        }
        for (i, subject) in subjects.iter().enumerate() {
            let x = 60.0 + 130.0 * i as f64;
            let _ = writeln!(
                svg,
                r##"<rect x="{x}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{}">{subject}</text>"##,
                height - 30.0,
                colours[i % colours.len()],
                x + 16.0,
                height - 20.0
            );
        }
        svg.push_str("</svg>\n");
        svg
    }
}

fn finite(value: f64) -> Option<f64> {
    value.is_finite().then_some(value)
}

fn dash(value: f64, decimals: usize) -> String {
    if value.is_finite() {
        format!("{value:.decimals$}")
    } else {
        "–".to_owned()
    }
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Writes `NAME.json` and `NAME.md` into `out` (created if missing) and prints the Markdown.
pub fn write_results(
    out: &std::path::Path,
    name: &str,
    json: &Value,
    markdown: &str,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    std::fs::write(
        out.join(format!("{name}.json")),
        serde_json::to_string_pretty(json)?,
    )?;
    std::fs::write(out.join(format!("{name}.md")), markdown)?;
    println!("{markdown}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(vec![]).is_nan());
        assert_eq!(median(vec![f64::NAN, 5.0]), 5.0);
    }
}
