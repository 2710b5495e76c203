//! The status page's charts, drawn on the server as inline SVG (no script, no external asset):
//! request rate, watches open, and each apiserver's p50 and p99, over the last minutes, with
//! every failover marked where it happened.

use std::fmt::Write as _;

use crate::history::{ChartData, HealthEvent};
use crate::html::escape;

const WIDTH: f64 = 560.0;
const HEIGHT: f64 = 140.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 8.0;
const BOTTOM: f64 = 20.0;

/// Colours of the apiservers' lines, in the order they joined.
const PALETTE: [&str; 6] = [
    "#1f6feb", "#d9480f", "#2f9e44", "#9c36b5", "#e8590c", "#0c8599",
];

/// A line: points as (seconds ago, value); `None` breaks it.
struct Line<'a> {
    points: Vec<(f64, Option<f64>)>,
    colour: &'a str,
    dashed: bool,
    label: String,
}

/// A value's y position, the plot spanning `0..=top`.
fn y_of(value: f64, top: f64) -> f64 {
    let plot = HEIGHT - TOP - BOTTOM;
    HEIGHT - BOTTOM - plot * (value / top).clamp(0.0, 1.0)
}

fn x_of(seconds_ago: f64, span: f64) -> f64 {
    let plot = WIDTH - LEFT - RIGHT;
    LEFT + plot * (1.0 - (seconds_ago / span).clamp(0.0, 1.0))
}

/// A round top for the y axis: 1, 2 or 5 times a power of ten, at least `max`.
fn nice_top(max: f64) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|top| *top >= max)
        .unwrap_or(10.0 * magnitude)
}

fn number(value: f64) -> String {
    if value >= 100.0 || value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

fn chart(
    id: &str,
    title: &str,
    unit: &str,
    lines: &[Line<'_>],
    span: f64,
    failovers: &[HealthEvent],
) -> String {
    let max = lines
        .iter()
        .flat_map(|l| l.points.iter().filter_map(|(_, v)| *v))
        .fold(0.0, f64::max);
    let top = nice_top(max);
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<figure class=\"chart\"><figcaption>{title}</figcaption>\
         <svg id=\"{id}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"{WIDTH}\" height=\"{HEIGHT}\" role=\"img\" aria-label=\"{title}\">"
    );
    // Axes and grid: zero, half, top.
    for fraction in [0.0, 0.5, 1.0] {
        let y = y_of(top * fraction, top);
        let _ = write!(
            svg,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>\
             <text class=\"axis\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}{unit}</text>",
            WIDTH - RIGHT,
            LEFT - 4.0,
            y + 4.0,
            number(top * fraction)
        );
    }
    let minutes = span / 60.0;
    let _ = write!(
        svg,
        "<text class=\"axis\" x=\"{LEFT}\" y=\"{:.1}\">{} ago</text><text class=\"axis\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">now</text>",
        HEIGHT - 4.0,
        if minutes >= 1.0 {
            format!("{} min", number(minutes))
        } else {
            format!("{span:.0} s")
        },
        WIDTH - RIGHT,
        HEIGHT - 4.0
    );
    for event in failovers.iter().filter(|e| (e.seconds_ago as f64) <= span) {
        let x = x_of(event.seconds_ago as f64, span);
        let class = if event.change.contains("back") {
            "recovered"
        } else {
            "failover"
        };
        let _ = write!(
            svg,
            "<line class=\"{class}\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{TOP}\" y2=\"{:.1}\"><title>{} s ago: {} {}</title></line>",
            HEIGHT - BOTTOM,
            event.seconds_ago,
            escape(&event.endpoint),
            escape(&event.change),
        );
    }
    for line in lines {
        let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
        for (ago, value) in &line.points {
            match value {
                Some(v) => {
                    if let Some(run) = runs.last_mut() {
                        run.push((x_of(*ago, span), y_of(*v, top)));
                    }
                }
                None => runs.push(Vec::new()),
            }
        }
        for run in runs.iter().filter(|r| !r.is_empty()) {
            if let [(x, y)] = run.as_slice() {
                // A lone point (the first sample with traffic) would be an invisible line.
                let _ = write!(
                    svg,
                    "<circle class=\"series\" data-series=\"{}\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"2.5\" fill=\"{}\"/>",
                    escape(&line.label),
                    line.colour
                );
                continue;
            }
            let points: Vec<String> = run.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
            let dash = if line.dashed {
                " stroke-dasharray=\"4 3\""
            } else {
                ""
            };
            let _ = write!(
                svg,
                "<polyline class=\"series\" data-series=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.8\"{dash} points=\"{}\"/>",
                escape(&line.label),
                line.colour,
                points.join(" ")
            );
        }
    }
    svg.push_str("</svg>");
    if lines.len() > 1 || lines.iter().any(|l| l.dashed) {
        svg.push_str("<div class=\"legend\">");
        for line in lines {
            let _ = write!(
                svg,
                "<span><i style=\"border-color:{}\" class=\"{}\"></i>{}</span>",
                line.colour,
                if line.dashed { "dashed" } else { "solid" },
                escape(&line.label)
            );
        }
        svg.push_str("</div>");
    }
    svg.push_str("</figure>\n");
    svg
}

/// The three charts, as HTML.
pub fn render(data: &ChartData, failovers: &[HealthEvent]) -> String {
    let span = data.seconds_ago.first().copied().unwrap_or(0.0).max(60.0);
    let along = |values: Vec<Option<f64>>| -> Vec<(f64, Option<f64>)> {
        data.seconds_ago.iter().copied().zip(values).collect()
    };
    let rate = Line {
        points: along(data.requests_per_second.iter().map(|v| Some(*v)).collect()),
        colour: PALETTE[0],
        dashed: false,
        label: "requests/s".to_owned(),
    };
    let watches = Line {
        points: along(data.watches_open.iter().map(|v| Some(*v as f64)).collect()),
        colour: PALETTE[2],
        dashed: false,
        label: "watches open".to_owned(),
    };
    let mut latency = Vec::new();
    for (i, series) in data.latency.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        latency.push(Line {
            points: along(series.p50_ms.clone()),
            colour,
            dashed: false,
            label: format!("{} p50", series.endpoint),
        });
        latency.push(Line {
            points: along(series.p99_ms.clone()),
            colour,
            dashed: true,
            label: format!("{} p99", series.endpoint),
        });
    }
    let mut html = String::from("<div class=\"charts\">\n");
    html.push_str(&chart(
        "chart-rate",
        "Requests per second",
        "",
        &[rate],
        span,
        failovers,
    ));
    html.push_str(&chart(
        "chart-latency",
        "Response time per apiserver (p50 solid, p99 dashed)",
        " ms",
        &latency,
        span,
        failovers,
    ));
    html.push_str(&chart(
        "chart-watches",
        "Watches open",
        "",
        &[watches],
        span,
        failovers,
    ));
    html.push_str("</div>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::LatencySeries;

    #[test]
    fn charts_draw_every_series_and_mark_failovers() {
        let data = ChartData {
            seconds_ago: vec![4.0, 2.0, 0.0],
            requests_per_second: vec![0.0, 12.5, 30.0],
            watches_open: vec![0, 1, 2],
            latency: vec![LatencySeries {
                endpoint: "https://10.0.0.1:6443".into(),
                p50_ms: vec![None, Some(1.2), Some(1.5)],
                p99_ms: vec![None, Some(4.0), Some(9.0)],
            }],
        };
        let failovers = [HealthEvent {
            seconds_ago: 3,
            endpoint: "https://10.0.0.2:6443".into(),
            change: "taken out of rotation".into(),
        }];
        let html = render(&data, &failovers);
        for id in ["chart-rate", "chart-latency", "chart-watches"] {
            assert!(html.contains(&format!("<svg id=\"{id}\"")), "{id}");
        }
        assert_eq!(
            html.matches("class=\"failover\"").count(),
            3,
            "marked on every chart"
        );
        assert!(html.contains("data-series=\"https://10.0.0.1:6443 p99\""));
        assert!(html.contains("<polyline"), "two points make a line");
        let lone = ChartData {
            seconds_ago: vec![2.0, 0.0],
            requests_per_second: vec![0.0, 3.0],
            watches_open: vec![0, 0],
            latency: vec![LatencySeries {
                endpoint: "e".into(),
                p50_ms: vec![None, Some(2.0)],
                p99_ms: vec![None, Some(3.0)],
            }],
        };
        assert!(
            render(&lone, &[]).contains("<circle class=\"series\" data-series=\"e p50\""),
            "a lone point is drawn"
        );
        assert!(html.contains("stroke-dasharray"));
        assert_eq!(nice_top(0.0), 1.0);
        assert_eq!(nice_top(30.0), 50.0);
        assert_eq!(nice_top(7.0), 10.0);
    }
}
