//! The report's figures as hand-written SVG: a latency CDF (like the
//! paper's Figure 11) and grouped bar charts. Text is plain SVG `<text>`,
//! drawn in whatever sans-serif font the viewer has.

use std::fmt::Write;

use crate::stats::percentile;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 420.0;
/// Plot area margins: left, right, top, bottom.
const MARGIN: (f64, f64, f64, f64) = (70.0, 190.0, 40.0, 50.0);
/// Colour-blind-safe (Okabe-Ito), one per series; past the eighth series
/// they repeat with another dash (lines) or a lighter fill (bars).
const COLOURS: [&str; 8] = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"];
/// Dash patterns of lines, one per round of the colours.
const DASHES: [&str; 3] = ["", "7 4", "2 3"];

/// Series `i`'s colour, and which round of the colours it is in.
fn style(i: usize) -> (&'static str, usize) {
    (COLOURS[i % COLOURS.len()], i / COLOURS.len())
}

/// A line's dash attribute for round `round` of the colours.
fn dash(round: usize) -> String {
    match DASHES[round % DASHES.len()] {
        "" => String::new(),
        pattern => format!(" stroke-dasharray=\"{pattern}\""),
    }
}

/// A bar's fill attributes for round `round` of the colours: solid, then
/// lighter with an outline.
fn fill(colour: &str, round: usize) -> String {
    match round {
        0 => format!("fill=\"{colour}\""),
        _ => format!("fill=\"{colour}\" fill-opacity=\"0.4\" stroke=\"{colour}\" stroke-width=\"1.5\""),
    }
}
/// A CDF is drawn through this many quantiles.
const CDF_POINTS: usize = 200;
/// The CDF's x axis ends at this percentile of the slowest series, so one
/// outlier does not squash the curves.
const CDF_X_PERCENTILE: f64 = 99.5;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A round step that splits `0..max` into about five ticks.
pub fn tick_step(max: f64) -> f64 {
    if !(max > 0.0 && max.is_finite()) {
        return 1.0;
    }
    let raw = max / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * magnitude).find(|s| *s >= raw);
    step.unwrap_or(10.0 * magnitude)
}

/// A tick label without float noise.
fn label(value: f64) -> String {
    let rounded = (value * 1000.0).round() / 1000.0;
    if rounded.fract() == 0.0 {
        format!("{rounded:.0}")
    } else {
        format!("{rounded}")
    }
}

/// The frame shared by every figure: title, axes, ticks, axis labels.
struct Frame {
    out: String,
    x_max: f64,
    y_max: f64,
}

impl Frame {
    fn new(title: &str, x_label: &str, y_label: &str, x_max: f64, y_max: f64, x_ticks: bool) -> Frame {
        let (l, r, t, b) = MARGIN;
        let mut out = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
             font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        );
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">{}</text>",
            WIDTH / 2.0,
            escape(title)
        );
        let frame = Frame { out: String::new(), x_max, y_max };
        let (x0, x1, y0, y1) = (l, WIDTH - r, HEIGHT - b, t);
        let _ = writeln!(out, "<path d=\"M{x0} {y1} V{y0} H{x1}\" fill=\"none\" stroke=\"black\"/>");
        let y_step = tick_step(y_max);
        let mut v = 0.0;
        while v <= y_max * 1.0001 {
            let y = frame.y(v);
            let _ = writeln!(out, "<line x1=\"{x0}\" x2=\"{x1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>");
            let _ =
                writeln!(out, "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>", x0 - 6.0, y + 4.0, label(v));
            v += y_step;
        }
        if x_ticks {
            let x_step = tick_step(x_max);
            let mut v = 0.0;
            while v <= x_max * 1.0001 {
                let x = frame.x(v);
                let _ = writeln!(
                    out,
                    "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{y0}\" y2=\"{}\" stroke=\"black\"/>",
                    y0 + 5.0
                );
                let _ =
                    writeln!(out, "<text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>", y0 + 18.0, label(v));
                v += x_step;
            }
        }
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            (x0 + x1) / 2.0,
            HEIGHT - 10.0,
            escape(x_label)
        );
        let _ = writeln!(
            out,
            "<text transform=\"translate(18 {}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
            (y0 + y1) / 2.0,
            escape(y_label)
        );
        Frame { out, ..frame }
    }

    fn x(&self, v: f64) -> f64 {
        MARGIN.0 + (v / self.x_max).clamp(0.0, 1.0) * (WIDTH - MARGIN.0 - MARGIN.1)
    }

    fn y(&self, v: f64) -> f64 {
        HEIGHT - MARGIN.3 - (v / self.y_max).clamp(0.0, 1.0) * (HEIGHT - MARGIN.2 - MARGIN.3)
    }

    /// One entry per series, drawn as its lines (`lines`) or bars are.
    fn legend(&mut self, names: &[String], lines: bool) {
        for (i, name) in names.iter().enumerate() {
            let (x, y) = (WIDTH - MARGIN.1 + 14.0, MARGIN.2 + 10.0 + 18.0 * i as f64);
            let (colour, round) = style(i);
            let _ = match lines {
                true => writeln!(
                    self.out,
                    "<line x1=\"{x}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"{colour}\" stroke-width=\"2\"{}/>",
                    x + 16.0,
                    y - 4.0,
                    y - 4.0,
                    dash(round)
                ),
                false => writeln!(
                    self.out,
                    "<rect x=\"{x}\" y=\"{}\" width=\"14\" height=\"10\" {}/>",
                    y - 9.0,
                    fill(colour, round)
                ),
            };
            let _ = writeln!(self.out, "<text x=\"{}\" y=\"{y}\">{}</text>", x + 20.0, escape(name));
        }
    }

    fn finish(mut self) -> String {
        self.out.push_str("</svg>\n");
        self.out
    }
}

/// The cumulative distribution of each series' latencies (ascending,
/// paper-scale ms), one line each.
pub fn latency_cdf(title: &str, series: &[(String, Vec<f64>)]) -> String {
    let x_max =
        series.iter().filter(|(_, v)| !v.is_empty()).map(|(_, v)| percentile(v, CDF_X_PERCENTILE)).fold(0.0, f64::max);
    let x_max = if x_max > 0.0 { x_max } else { 1.0 };
    let mut frame = Frame::new(title, "latency (ms, paper scale)", "fraction of calls", x_max, 1.0, true);
    for (i, (_, sorted)) in series.iter().enumerate().filter(|(_, (_, v))| !v.is_empty()) {
        let points: Vec<String> = (0..=CDF_POINTS)
            .map(|k| {
                let q = k as f64 / CDF_POINTS as f64;
                format!("{:.1},{:.1}", frame.x(percentile(sorted, q * 100.0)), frame.y(q))
            })
            .collect();
        let (colour, round) = style(i);
        let _ = writeln!(
            frame.out,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"{}/>",
            points.join(" "),
            dash(round)
        );
    }
    let names: Vec<String> = series.iter().map(|(n, _)| n.clone()).collect();
    frame.legend(&names, true);
    frame.finish()
}

/// Bars grouped by category: `series[s].1[c]` is series `s` in category `c`.
pub fn grouped_bars(title: &str, y_label: &str, categories: &[String], series: &[(String, Vec<f64>)]) -> String {
    let y_max = series.iter().flat_map(|(_, v)| v.iter().copied()).filter(|v| v.is_finite()).fold(0.0, f64::max);
    let y_max = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };
    let mut frame = Frame::new(title, "", y_label, 1.0, y_max, false);
    let slot = 1.0 / categories.len().max(1) as f64;
    let bar = slot * 0.8 / series.len().max(1) as f64;
    for (c, category) in categories.iter().enumerate() {
        let centre = frame.x(slot * (c as f64 + 0.5));
        let _ = writeln!(
            frame.out,
            "<text x=\"{centre:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            HEIGHT - MARGIN.3 + 18.0,
            escape(category)
        );
        for (s, (_, values)) in series.iter().enumerate() {
            let Some(&v) = values.get(c).filter(|v| v.is_finite()) else { continue };
            let left = frame.x(slot * (c as f64 + 0.1) + bar * s as f64);
            let width = frame.x(bar) - frame.x(0.0);
            let (top, bottom) = (frame.y(v), frame.y(0.0));
            let (colour, round) = style(s);
            let _ = writeln!(
                frame.out,
                "<rect x=\"{left:.1}\" y=\"{top:.1}\" width=\"{width:.1}\" height=\"{:.1}\" {}><title>{}</title></rect>",
                bottom - top,
                fill(colour, round),
                label(v)
            );
        }
    }
    let names: Vec<String> = series.iter().map(|(n, _)| n.clone()).collect();
    frame.legend(&names, false);
    frame.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick_step(1.0), 0.2);
        assert_eq!(tick_step(1000.0), 200.0);
        assert_eq!(tick_step(1200.0), 250.0);
        assert_eq!(tick_step(90.0), 20.0);
        assert_eq!(tick_step(0.0), 1.0);
    }

    #[test]
    fn a_cdf_has_one_line_per_series_ending_at_the_top() {
        let series = vec![("a".to_string(), vec![100.0, 200.0, 300.0]), ("b & c".to_string(), vec![50.0, 400.0])];
        let svg = latency_cdf("t", &series);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("b &amp; c"));
        // The last point of a line is at fraction 1: the top of the plot area.
        let last_point = svg.lines().find(|l| l.starts_with("<polyline")).unwrap().split('"').nth(1).unwrap();
        assert!(last_point.ends_with(&format!(",{:.1}", MARGIN.2)), "{last_point}");
    }

    #[test]
    fn series_past_the_colours_are_dashed_or_lighter_and_no_two_look_alike() {
        let series: Vec<(String, Vec<f64>)> = (0..10).map(|i| (format!("s{i}"), vec![f64::from(i) + 1.0])).collect();
        // An element's look: its colour, dash and opacity attributes.
        let look = |line: &str| -> String {
            let value = |key: &str| line.split(&format!(" {key}=\"")).nth(1).and_then(|r| r.split('"').next());
            let keys = ["stroke", "fill", "stroke-dasharray", "fill-opacity"];
            keys.iter().map(|k| format!("{k}={}", value(k).unwrap_or("-"))).collect::<Vec<_>>().join(" ")
        };
        let cdf = latency_cdf("t", &series);
        let bars = grouped_bars("t", "y", &["c".to_string()], &series);
        for (svg, drawn) in [(&cdf, "<polyline"), (&bars, "<title>")] {
            let looks: Vec<String> = svg.lines().filter(|l| l.contains(drawn)).map(look).collect();
            let mut distinct = looks.clone();
            distinct.sort();
            distinct.dedup();
            assert_eq!((looks.len(), distinct.len()), (10, 10), "{looks:?}");
        }
        // The legend draws the ninth line dashed, the ninth bar lighter.
        assert!(cdf.lines().filter(|l| l.starts_with("<line") && l.contains("stroke-dasharray")).count() == 2);
        assert!(bars.lines().filter(|l| l.starts_with("<rect") && l.contains("fill-opacity")).count() == 4);
    }

    #[test]
    fn bars_scale_to_the_largest_value() {
        let categories = vec!["x".to_string(), "y".to_string()];
        let svg = grouped_bars("t", "rps", &categories, &[("s".to_string(), vec![10.0, 5.0])]);
        let heights: Vec<f64> = svg
            .lines()
            .filter(|l| l.starts_with("<rect x=") && l.contains("<title>"))
            .filter_map(|l| l.split("height=\"").nth(1)?.split('"').next()?.parse().ok())
            .collect();
        assert_eq!(heights.len(), 2);
        assert!((heights[0] / heights[1] - 2.0).abs() < 0.02, "{heights:?}");
    }
}
