//! The report's figures as hand-written SVG: latency CDFs (like the paper's
//! Figure 11) and grouped bar charts, drawn as small multiples: a panel per
//! balancer, one legend for the whole figure. Text is plain SVG `<text>`,
//! drawn in whatever sans-serif font the viewer has; its width is estimated
//! ([`text_width`]) so that labels wrap or turn before they run into each
//! other, and the canvas grows to hold them.

use std::fmt::Write;

use crate::stats::percentile;

/// Font sizes (px) of ticks, labels and the legend; of a panel's title; of
/// the figure's title.
const FONT: f64 = 12.0;
const PANEL_FONT: f64 = 13.0;
const TITLE_FONT: f64 = 15.0;
/// Lines of a wrapped label are this many font sizes apart.
const LINE: f64 = 1.2;
/// Category labels too long to wrap are turned by this many degrees.
const TURN: f64 = 40.0;
/// A plot area's size (px) when it is the figure's only panel, and when it
/// is one of several.
const ALONE: (f64, f64) = (460.0, 300.0);
const SMALL: (f64, f64) = (240.0, 160.0);
/// Room (px) for the figure's title, above the panels.
const TOP: f64 = 40.0;
/// Room (px) at the figure's left for the y axis's label.
const Y_LABEL: f64 = 26.0;
/// Room (px) between columns and between rows of panels.
const GAP: (f64, f64) = (20.0, 12.0);
/// A legend entry's swatch length and the entries' spacing (px).
const SWATCH: f64 = 28.0;
const ENTRY: f64 = 18.0;
/// Okabe-Ito's colour-blind-safe colours, one per series, without its yellow
/// (too faint for a line on white). Past the seventh series the colours come
/// round again with another dash (lines) or a lighter fill (bars), so
/// 21 series look different.
const COLOURS: [&str; 7] = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"];
const DASHES: [&str; 3] = ["", "7 4", "2 3"];
const OPACITIES: [f64; 3] = [1.0, 0.45, 0.15];
/// A CDF is drawn through this many quantiles.
const CDF_POINTS: usize = 200;
/// The CDF's x axis ends at this percentile of the slowest series, so one
/// outlier does not squash the curves.
const CDF_X_PERCENTILE: f64 = 99.5;

/// One panel of a figure: its title (none if empty) and its series, each
/// `(name, values)`. A series' name picks its colour, the same in every
/// panel.
pub struct Panel {
    pub title: String,
    pub series: Vec<(String, Vec<f64>)>,
}

/// The estimated width (px) of `text` in a sans-serif font of `size` px.
/// The widths per character are DejaVu Sans's (the widest of the common sans
/// fonts) rounded up, so the estimate errs wide: by a tenth or less on
/// lower-case names, more on capitals.
pub fn text_width(text: &str, size: f64) -> f64 {
    let em = |c: char| match c {
        'i' | 'j' | 'l' | 'I' | '.' | ',' | ':' | ';' | '\'' | '|' => 0.34,
        'f' | 't' | 'r' | ' ' | '-' | '(' | ')' | '[' | ']' | '/' | '\\' | '!' => 0.42,
        '#' | '&' | '+' | '<' | '=' | '>' | '~' | '^' => 0.85,
        'm' | 'w' | 'M' | 'W' | '%' | '@' => 1.0,
        'A'..='Z' => 0.79,
        c if c.is_ascii() => 0.64,
        _ => 1.0,
    };
    text.chars().map(em).sum::<f64>() * size
}

/// `text` in lines no wider than `width` px, broken after a '-' or at a
/// space (a word wider than `width` stays whole).
fn wrap(text: &str, width: f64) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_inclusive(['-', ' ']) {
        let line = lines.last_mut().expect("one line at least");
        if !line.is_empty() && text_width(format!("{line}{word}").trim_end(), FONT) > width {
            *line = line.trim_end().to_string();
            lines.push(String::new());
        }
        lines.last_mut().expect("one line at least").push_str(word);
    }
    lines.into_iter().map(|line| line.trim_end().to_string()).collect()
}

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

/// The ticks `0, step, 2 step, ...` up to `max`.
fn ticks(max: f64, step: f64) -> Vec<f64> {
    (0..).map(|i| f64::from(i) * step).take_while(|v| *v <= max * 1.0001).collect()
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

/// The widest of `labels` (px) at the default font size.
fn widest<S: AsRef<str>>(labels: impl IntoIterator<Item = S>) -> f64 {
    labels.into_iter().map(|l| text_width(l.as_ref(), FONT)).fold(0.0, f64::max)
}

/// One `<text>` (none if empty), turned by `angle` degrees about its anchor
/// if not zero.
fn text(out: &mut String, (x, y): (f64, f64), anchor: &str, size: f64, angle: f64, body: &str) {
    if body.is_empty() {
        return;
    }
    let size = if size == FONT { String::new() } else { format!(" font-size=\"{size}\"") };
    let turn = if angle == 0.0 { String::new() } else { format!(" transform=\"rotate({angle} {x:.1} {y:.1})\"") };
    let body = escape(body);
    let _ = writeln!(out, "<text x=\"{x:.1}\" y=\"{y:.1}\" text-anchor=\"{anchor}\"{size}{turn}>{body}</text>");
}

/// How the `i`th series of a figure's legend is drawn: its colour, and the
/// round of the colours it is in (a dash for a line, a lighter fill for a
/// bar).
struct Style {
    colour: &'static str,
    round: usize,
}

impl Style {
    fn of(i: usize) -> Style {
        Style { colour: COLOURS[i % COLOURS.len()], round: i / COLOURS.len() }
    }

    /// A line's attributes.
    fn stroke(&self) -> String {
        match DASHES[self.round % DASHES.len()] {
            "" => format!("stroke=\"{}\" stroke-width=\"2\"", self.colour),
            dash => format!("stroke=\"{}\" stroke-width=\"2\" stroke-dasharray=\"{dash}\"", self.colour),
        }
    }

    /// A bar's attributes: solid, then lighter with an outline.
    fn fill(&self) -> String {
        let (colour, opacity) = (self.colour, OPACITIES[self.round % OPACITIES.len()]);
        if opacity == 1.0 {
            return format!("fill=\"{colour}\"");
        }
        format!("fill=\"{colour}\" fill-opacity=\"{opacity}\" stroke=\"{colour}\" stroke-width=\"1.5\"")
    }
}

/// The plot area of one panel (px), and the values at its right and top.
#[derive(Clone, Copy)]
struct Plot {
    left: f64,
    top: f64,
    width: f64,
    height: f64,
    x_max: f64,
    y_max: f64,
}

impl Plot {
    fn x(&self, v: f64) -> f64 {
        self.left + (v / self.x_max).clamp(0.0, 1.0) * self.width
    }

    fn y(&self, v: f64) -> f64 {
        self.top + self.height - (v / self.y_max).clamp(0.0, 1.0) * self.height
    }

    fn bottom(&self) -> f64 {
        self.top + self.height
    }
}

/// What a figure's x axis shows: numbers from 0 to a maximum, or named
/// categories, a slot each.
enum XAxis<'a> {
    Numbers(f64),
    Categories(&'a [String]),
}

/// The labels under an x axis: each label's lines, where they sit, and
/// the angle all of them are turned by.
struct XLabels {
    /// Each label's lines and its x as a fraction of the plot's width.
    labels: Vec<(Vec<String>, f64)>,
    angle: f64,
}

impl XLabels {
    /// Round ticks up to `max`, every other one (or fewer) if their labels
    /// would not fit between them in `width` px.
    fn numbers(max: f64, width: f64) -> XLabels {
        let mut step = tick_step(max);
        while widest(ticks(max, step).into_iter().map(label)) + 10.0 > step / max * width {
            step *= 2.0;
        }
        let labels = ticks(max, step).into_iter().map(|v| (vec![label(v)], v / max)).collect();
        XLabels { labels, angle: 0.0 }
    }

    /// Category labels under slots `slot` px wide: on one line if they fit,
    /// else wrapped after '-' or at spaces, in three lines at most; if even
    /// that does not fit, every label is turned by `TURN` degrees (all alike,
    /// so they read as one axis).
    fn categories(names: &[String], slot: f64) -> XLabels {
        let room = slot - 8.0;
        let at = |c: usize| (c as f64 + 0.5) / names.len() as f64;
        let wrapped: Vec<Vec<String>> = names.iter().map(|name| wrap(name, room)).collect();
        if wrapped.iter().all(|lines| lines.len() <= 3 && widest(lines) <= room) {
            let labels = wrapped.into_iter().enumerate().map(|(c, lines)| (lines, at(c))).collect();
            return XLabels { labels, angle: 0.0 };
        }
        let labels = names.iter().enumerate().map(|(c, name)| (vec![name.clone()], at(c))).collect();
        XLabels { labels, angle: -TURN }
    }

    /// The room (px) the labels take below the axis.
    fn height(&self) -> f64 {
        let lines = self.labels.iter().map(|(lines, _)| lines.len()).max().unwrap_or(1);
        let wide = widest(self.labels.iter().flat_map(|(lines, _)| lines));
        if self.angle == 0.0 {
            return 20.0 + (lines - 1) as f64 * LINE * FONT;
        }
        16.0 + wide * TURN.to_radians().sin() + FONT * TURN.to_radians().cos()
    }

    /// How far (px) the labels reach left of the plot, for a plot `width`
    /// px wide.
    fn overhang(&self, width: f64) -> f64 {
        let reach = |(lines, at): &(Vec<String>, f64)| {
            let wide = widest(lines);
            let left = if self.angle == 0.0 { wide / 2.0 } else { wide * TURN.to_radians().cos() };
            left - at * width
        };
        self.labels.iter().map(reach).fold(0.0, f64::max)
    }

    fn draw(&self, out: &mut String, plot: &Plot) {
        for (lines, at) in &self.labels {
            let x = plot.left + at * plot.width;
            if self.angle != 0.0 {
                // Turned labels end at their slot's centre, reading upwards.
                text(out, (x, plot.bottom() + 12.0), "end", FONT, self.angle, &lines[0]);
                continue;
            }
            let _ = writeln!(
                out,
                "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"black\"/>",
                plot.bottom(),
                plot.bottom() + 4.0
            );
            for (k, line) in lines.iter().enumerate() {
                text(out, (x, plot.bottom() + 17.0 + k as f64 * LINE * FONT), "middle", FONT, 0.0, line);
            }
        }
    }
}

/// What a figure shows on its axes.
struct Axes<'a> {
    x: XAxis<'a>,
    y_max: f64,
    x_label: &'a str,
    y_label: &'a str,
}

/// Where a figure's parts go (px): panels in a grid of up to three
/// columns, the legend at the right of it.
struct Layout {
    columns: usize,
    /// A plot area's size, and a grid cell's: the plot and the room around.
    plot: (f64, f64),
    cell: (f64, f64),
    /// The top left corner of the first plot area, and of the legend.
    origin: (f64, f64),
    legend: (f64, f64),
    /// The bottom of the grid, and of the canvas.
    bottom: f64,
    canvas: (f64, f64),
    x_labels: XLabels,
    y_ticks: Vec<f64>,
}

impl Layout {
    fn new(title: &str, axes: &Axes, panels: &[Panel], names: &[String]) -> Layout {
        let (columns, rows) = match panels.len() {
            0 | 1 => (1, 1),
            n @ (2 | 4) => (2, n / 2),
            n => (3, n.div_ceil(3)),
        };
        let (mut width, height) = if panels.len() <= 1 { ALONE } else { SMALL };
        let x_labels = match axes.x {
            XAxis::Numbers(max) => XLabels::numbers(max, width),
            XAxis::Categories(names) => {
                width = slots_width(width, names);
                XLabels::categories(names, width / names.len().max(1) as f64)
            }
        };
        let y_ticks = ticks(axes.y_max, tick_step(axes.y_max));
        let y_room = widest(y_ticks.iter().map(|v| label(*v))) + 10.0;
        // A number centred on the plot's right edge reaches past it.
        let right = match axes.x {
            XAxis::Numbers(_) => widest(x_labels.labels.iter().flat_map(|(l, _)| l)) / 2.0,
            XAxis::Categories(_) => 0.0,
        };
        let above = if panels.iter().any(|p| !p.title.is_empty()) { 24.0 } else { 10.0 };
        let cell = (y_room + width + right + GAP.0, above + height + x_labels.height() + GAP.1);
        let left = Y_LABEL + (x_labels.overhang(width) - y_room).max(0.0);
        let origin = (left + y_room, TOP + above);
        let legend = (left + columns as f64 * cell.0, TOP + above);
        let bottom = TOP + rows as f64 * cell.1 - GAP.1;
        let legend_size = (SWATCH + 6.0 + widest(names) + 10.0, ENTRY * names.len() as f64 + 10.0);
        let canvas = (
            (legend.0 + legend_size.0).max(text_width(title, TITLE_FONT) + 20.0),
            bottom.max(legend.1 + legend_size.1) + if axes.x_label.is_empty() { 6.0 } else { 26.0 },
        );
        Layout { columns, plot: (width, height), cell, origin, legend, bottom, canvas, x_labels, y_ticks }
    }

    /// Panel `i`'s plot area, for values up to `x_max` and `y_max`.
    fn plot(&self, i: usize, x_max: f64, y_max: f64) -> Plot {
        let (column, row) = ((i % self.columns) as f64, (i / self.columns) as f64);
        let (left, top) = (self.origin.0 + column * self.cell.0, self.origin.1 + row * self.cell.1);
        Plot { left, top, width: self.plot.0, height: self.plot.1, x_max, y_max }
    }
}

/// A figure being drawn: its SVG so far, and each panel's plot area for the
/// caller to draw the series into.
struct Figure {
    out: String,
    plots: Vec<Plot>,
    /// The legend's names, in the order of their styles.
    names: Vec<String>,
}

impl Figure {
    /// The canvas, title, axes' labels, legend (of lines or of bars) and
    /// each panel's frame. The panels share their scales, so they compare
    /// at a glance.
    fn new(title: &str, axes: &Axes, panels: &[Panel], order: &[String], lines: bool) -> Figure {
        let names = legend_names(order, panels);
        let layout = Layout::new(title, axes, panels, &names);
        let (width, height) = layout.canvas;
        let mut out = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" \
             viewBox=\"0 0 {width:.0} {height:.0}\" font-family=\"sans-serif\" font-size=\"{FONT}\">\n\
             <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        );
        text(&mut out, (width / 2.0, 24.0), "middle", TITLE_FONT, 0.0, title);
        let middle = (layout.origin.1 + layout.bottom - layout.x_labels.height()) / 2.0;
        text(&mut out, (16.0, middle), "middle", FONT, -90.0, axes.y_label);
        let centre = (layout.origin.0 + layout.legend.0) / 2.0;
        text(&mut out, (centre, layout.bottom + 18.0), "middle", FONT, 0.0, axes.x_label);
        legend(&mut out, &names, layout.legend, lines);

        let x_max = match axes.x {
            XAxis::Numbers(max) => max,
            XAxis::Categories(_) => 1.0,
        };
        let mut plots = Vec::new();
        for (i, panel) in panels.iter().enumerate() {
            let plot = layout.plot(i, x_max, axes.y_max);
            frame(&mut out, &plot, &layout.y_ticks, &layout.x_labels);
            text(&mut out, (plot.left + plot.width / 2.0, plot.top - 8.0), "middle", PANEL_FONT, 0.0, &panel.title);
            plots.push(plot);
        }
        Figure { out, plots, names }
    }

    /// The style of the series named `name`.
    fn style(&self, name: &str) -> Style {
        Style::of(self.names.iter().position(|n| n == name).expect("every series in the legend"))
    }

    fn finish(mut self) -> String {
        self.out.push_str("</svg>\n");
        self.out
    }
}

/// The names a figure's legend lists: `order`'s, then any other series'
/// in the order the panels name them.
fn legend_names(order: &[String], panels: &[Panel]) -> Vec<String> {
    let mut names = order.to_vec();
    for (name, _) in panels.iter().flat_map(|p| &p.series) {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names
}

/// The legend, its top left corner at `(x, top)`: a swatch (a line or a
/// bar) and a name per series.
fn legend(out: &mut String, names: &[String], (x, top): (f64, f64), lines: bool) {
    for (i, name) in names.iter().enumerate() {
        let (style, y) = (Style::of(i), top + 8.0 + ENTRY * i as f64);
        let _ = match lines {
            true => writeln!(
                out,
                "<line x1=\"{x:.1}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" {}/>",
                x + SWATCH,
                y - 4.0,
                y - 4.0,
                style.stroke()
            ),
            false => writeln!(
                out,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{SWATCH}\" height=\"10\" {}/>",
                y - 9.0,
                style.fill()
            ),
        };
        text(out, (x + SWATCH + 6.0, y), "start", FONT, 0.0, name);
    }
}

/// A plot's width for `names` as categories: `width`, widened (up to twice)
/// so that the longest word of any label fits its slot.
fn slots_width(width: f64, names: &[String]) -> f64 {
    let word = widest(names.iter().flat_map(|n| n.split_inclusive(['-', ' '])).map(str::trim_end));
    (names.len() as f64 * (word + 12.0)).clamp(width, 2.0 * width)
}

/// A panel's axes: grid lines and labels of the y ticks, and the x labels.
fn frame(out: &mut String, plot: &Plot, y_ticks: &[f64], x_labels: &XLabels) {
    let (x0, x1, y0) = (plot.left, plot.left + plot.width, plot.bottom());
    for v in y_ticks {
        let y = plot.y(*v);
        let _ = writeln!(out, "<line x1=\"{x0:.1}\" x2=\"{x1:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>");
        text(out, (x0 - 6.0, y + 4.0), "end", FONT, 0.0, &label(*v));
    }
    let _ = writeln!(out, "<path d=\"M{x0:.1} {:.1} V{y0:.1} H{x1:.1}\" fill=\"none\" stroke=\"black\"/>", plot.top);
    x_labels.draw(out, plot);
}

/// The cumulative distribution of each series' latencies (ascending,
/// paper-scale ms), one line each, a panel per `panels`; `order` lists the
/// series' names in the order of their colours.
pub fn latency_cdf(title: &str, order: &[String], panels: &[Panel]) -> String {
    let all = || panels.iter().flat_map(|p| &p.series).filter(|(_, v)| !v.is_empty());
    let x_max = all().map(|(_, v)| percentile(v, CDF_X_PERCENTILE)).fold(0.0, f64::max);
    let x_max = if x_max > 0.0 { x_max } else { 1.0 };
    let axes = Axes {
        x: XAxis::Numbers(x_max),
        y_max: 1.0,
        x_label: "latency (ms, paper scale)",
        y_label: "fraction of calls",
    };
    let mut figure = Figure::new(title, &axes, panels, order, true);
    for (plot, panel) in figure.plots.clone().iter().zip(panels) {
        for (name, sorted) in panel.series.iter().filter(|(_, v)| !v.is_empty()) {
            let points: Vec<String> = (0..=CDF_POINTS)
                .map(|k| {
                    let q = k as f64 / CDF_POINTS as f64;
                    format!("{:.1},{:.1}", plot.x(percentile(sorted, q * 100.0)), plot.y(q))
                })
                .collect();
            let _ = writeln!(
                figure.out,
                "<polyline points=\"{}\" fill=\"none\" {}><title>{}</title></polyline>",
                points.join(" "),
                figure.style(name).stroke(),
                escape(name)
            );
        }
    }
    figure.finish()
}

/// Bars grouped by category, a panel per `panels`: a panel's series
/// `(name, values)` has `values[c]` in category `c` (none if not finite);
/// `order` lists the series' names in the order of their colours.
pub fn grouped_bars(title: &str, y_label: &str, categories: &[String], order: &[String], panels: &[Panel]) -> String {
    let all = panels.iter().flat_map(|p| &p.series).flat_map(|(_, v)| v.iter().copied());
    let y_max = all.filter(|v| v.is_finite()).fold(0.0, f64::max);
    let y_max = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };
    let axes = Axes { x: XAxis::Categories(categories), y_max, x_label: "", y_label };
    let mut figure = Figure::new(title, &axes, panels, order, false);
    let slot = 1.0 / categories.len().max(1) as f64;
    for (plot, panel) in figure.plots.clone().iter().zip(panels) {
        let bar = slot * 0.8 / panel.series.len().max(1) as f64;
        for c in 0..categories.len() {
            for (s, (name, values)) in panel.series.iter().enumerate() {
                let Some(&v) = values.get(c).filter(|v| v.is_finite()) else { continue };
                let left = plot.x(slot * (c as f64 + 0.1) + bar * s as f64);
                let (top, bottom) = (plot.y(v), plot.y(0.0));
                let _ = writeln!(
                    figure.out,
                    "<rect x=\"{left:.1}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{:.1}\" {}><title>{}: {}</title></rect>",
                    plot.x(bar) - plot.x(0.0),
                    bottom - top,
                    figure.style(name).fill(),
                    escape(name),
                    label(v)
                );
            }
        }
    }
    figure.finish()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A `<text>`'s box as four corners (px), after its transform.
    type Corners = [(f64, f64); 4];

    /// The value of attribute `key` in an element's opening tag.
    fn attribute<'a>(tag: &'a str, key: &str) -> Option<&'a str> {
        tag.split(&format!(" {key}=\"")).nth(1)?.split('"').next()
    }

    fn number(tag: &str, key: &str) -> Option<f64> {
        attribute(tag, key).map(|v| v.parse().unwrap_or_else(|_| panic!("{key} in {tag}")))
    }

    /// Where an SVG `transform` (translates and rotates) takes a point.
    fn transform(spec: &str, point: (f64, f64)) -> (f64, f64) {
        let ops = spec.split(')').map(str::trim).filter(|op| !op.is_empty()).map(|op| {
            let (name, args) = op.split_once('(').expect("an SVG transform");
            let args: Vec<f64> = args.split([' ', ',']).filter(|a| !a.is_empty()).map(|a| a.parse().unwrap()).collect();
            (name.trim().to_string(), args)
        });
        let ops: Vec<(String, Vec<f64>)> = ops.collect();
        ops.iter().rev().fold(point, |(x, y), (name, args)| match (name.as_str(), args.as_slice()) {
            ("translate", [dx, dy]) => (x + dx, y + dy),
            ("rotate", [angle, centre @ ..]) => {
                let (cx, cy) = match centre {
                    [cx, cy] => (*cx, *cy),
                    _ => (0.0, 0.0),
                };
                let (sin, cos) = angle.to_radians().sin_cos();
                (cx + (x - cx) * cos - (y - cy) * sin, cy + (x - cx) * sin + (y - cy) * cos)
            }
            other => panic!("transform {other:?}"),
        })
    }

    /// Every non-empty `<text>` of `svg` with its estimated box: as wide as
    /// [`text_width`] says, from 0.8 font sizes above the baseline to 0.25
    /// below, placed by its x, y, text-anchor and transform.
    fn text_boxes(svg: &str) -> Vec<(String, Corners)> {
        let root = svg.split('>').next().unwrap_or_default();
        let default_size = number(root, "font-size").unwrap_or(16.0);
        let mut boxes = Vec::new();
        for element in svg.split("<text").skip(1) {
            let (tag, rest) = element.split_once('>').expect("a closed tag");
            let body = rest.split("</text>").next().unwrap_or_default();
            let body = body.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&");
            if body.is_empty() {
                continue;
            }
            let size = number(tag, "font-size").unwrap_or(default_size);
            let (x, y) = (number(tag, "x").unwrap_or(0.0), number(tag, "y").unwrap_or(0.0));
            let width = text_width(&body, size);
            let left = match attribute(tag, "text-anchor").unwrap_or("start") {
                "middle" => x - width / 2.0,
                "end" => x - width,
                _ => x,
            };
            let (top, bottom) = (y - 0.8 * size, y + 0.25 * size);
            let corners = [(left, top), (left + width, top), (left + width, bottom), (left, bottom)];
            let corners = corners.map(|p| attribute(tag, "transform").map_or(p, |t| transform(t, p)));
            boxes.push((body, corners));
        }
        boxes
    }

    /// Whether two convex quadrilaterals overlap by more than half a pixel
    /// (separating axes: they are apart if, along some edge's normal, their
    /// shadows are).
    fn overlap(a: &Corners, b: &Corners) -> bool {
        let normals = [a, b].into_iter().flat_map(|q| (0..4).map(move |i| (q[i], q[(i + 1) % 4])));
        !normals.map(|(p, q)| (p.1 - q.1, q.0 - p.0)).any(|(nx, ny)| {
            let length = nx.hypot(ny);
            let shadow = |q: &Corners| {
                let along: Vec<f64> = q.iter().map(|(x, y)| (x * nx + y * ny) / length).collect();
                (along.iter().copied().fold(f64::MAX, f64::min), along.iter().copied().fold(f64::MIN, f64::max))
            };
            let ((a0, a1), (b0, b1)) = (shadow(a), shadow(b));
            a1 <= b0 + 0.5 || b1 <= a0 + 0.5
        })
    }

    /// What is wrong with `svg`'s text: two texts whose boxes overlap, and
    /// texts that leave the canvas.
    pub(crate) fn text_problems(svg: &str) -> Vec<String> {
        let root = svg.split('>').next().unwrap_or_default();
        let (width, height) = (number(root, "width").unwrap(), number(root, "height").unwrap());
        let boxes = text_boxes(svg);
        let mut problems = Vec::new();
        for (i, (name, corners)) in boxes.iter().enumerate() {
            if corners.iter().any(|(x, y)| *x < 0.0 || *x > width || *y < 0.0 || *y > height) {
                problems.push(format!("{name:?} leaves the {width}x{height} canvas: {corners:.0?}"));
            }
            for (other, other_corners) in &boxes[i + 1..] {
                if overlap(corners, other_corners) {
                    problems.push(format!("{name:?} overlaps {other:?}"));
                }
            }
        }
        problems
    }

    /// Each drawn series element's name (its `<title>`, up to a ": ") and
    /// look: its colour, dash and opacity.
    pub(crate) fn looks(svg: &str) -> Vec<(String, String)> {
        let keys = ["stroke", "fill", "stroke-dasharray", "fill-opacity"];
        let drawn =
            svg.lines().filter(|l| l.starts_with("<polyline") || (l.starts_with("<rect") && l.contains("<title>")));
        drawn
            .map(|line| {
                let name = line.split("<title>").nth(1).and_then(|t| t.split("</title>").next()).unwrap_or_default();
                let name = name.split(": ").next().unwrap_or_default().to_string();
                let (tag, _) = line.split_once('>').unwrap_or_default();
                let look: Vec<String> =
                    keys.iter().filter_map(|k| Some(format!("{k}={}", attribute(tag, k)?))).collect();
                (name, look.join(" "))
            })
            .collect()
    }

    /// Fails unless `svg`'s text stays apart and on the canvas, and each
    /// series has one look that no other series has.
    pub(crate) fn assert_readable(svg: &str) {
        let problems = text_problems(svg);
        assert!(problems.is_empty(), "{problems:#?}\n{svg}");
        let looks = looks(svg);
        for (name, look) in &looks {
            for (other, other_look) in &looks {
                assert_eq!(name == other, look == other_look, "{name} ({look}) and {other} ({other_look})");
            }
        }
    }

    fn series(names: &[&str], values: impl Fn(usize) -> Vec<f64>) -> Vec<(String, Vec<f64>)> {
        names.iter().enumerate().map(|(i, n)| (n.to_string(), values(i))).collect()
    }

    fn panel(title: &str, series: Vec<(String, Vec<f64>)>) -> Panel {
        Panel { title: title.to_string(), series }
    }

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick_step(1.0), 0.2);
        assert_eq!(tick_step(1000.0), 200.0);
        assert_eq!(tick_step(1200.0), 250.0);
        assert_eq!(tick_step(90.0), 20.0);
        assert_eq!(tick_step(0.0), 1.0);
    }

    #[test]
    fn text_widths_follow_the_letters() {
        // Widths in font sizes as rsvg-convert draws them in DejaVu Sans.
        let drawn = [
            ("least-connections", 8.81),
            ("hiku-go least-connections", 12.83),
            ("abcdefghijklmnopqrstuvwxyz", 14.64),
            ("0123456789", 6.36),
        ];
        for (text, width) in drawn {
            let estimate = text_width(text, 12.0) / 12.0;
            assert!((width..width * 1.1).contains(&estimate), "{text}: {estimate} for {width}");
        }
        assert!(text_width("ABCDEFGHIJKLMNOPQRSTUVWXYZ", 12.0) / 12.0 >= 17.47);
        assert!(text_width("iiii", 12.0) < text_width("mmmm", 12.0) / 2.0);
        assert_eq!(text_width("ab", 24.0), 2.0 * text_width("ab", 12.0));
    }

    #[test]
    fn labels_wrap_after_hyphens_and_at_spaces() {
        assert_eq!(wrap("least-connections", 80.0), ["least-", "connections"]);
        assert_eq!(wrap("hiku-k3-fnhash-restarted", 110.0), ["hiku-k3-fnhash-", "restarted"]);
        assert_eq!(wrap("64 connections", 60.0), ["64", "connections"]);
        assert_eq!(wrap("random", 10.0), ["random"]);
    }

    #[test]
    fn the_check_catches_the_old_cold_start_labels() {
        // The balancers under the old 720 px cold-start figure's bars, and
        // a legend entry that ran past its right edge.
        let svg = "<svg width=\"720\" height=\"420\" font-size=\"12\">\n\
            <text x=\"108.3\" y=\"388\" text-anchor=\"middle\">pull-based</text>\n\
            <text x=\"185.0\" y=\"388\" text-anchor=\"middle\">hashing-bounded</text>\n\
            <text x=\"261.7\" y=\"388\" text-anchor=\"middle\">least-connections</text>\n\
            <text x=\"338.3\" y=\"388\" text-anchor=\"middle\">random</text>\n\
            <text x=\"564\" y=\"194\">hiku-go least-connections</text>\n</svg>\n";
        let problems = text_problems(svg);
        assert_eq!(problems.len(), 4, "{problems:#?}");
        assert!(problems[3].contains("leaves the 720x420 canvas"), "{problems:#?}");
        // Turned about their slots' centres, two of them keep apart.
        let turned = "<svg width=\"720\" height=\"420\" font-size=\"12\">\n\
            <text x=\"185.0\" y=\"300\" text-anchor=\"end\" transform=\"rotate(-40 185.0 300)\">hashing-bounded</text>\n\
            <text x=\"261.7\" y=\"300\" text-anchor=\"end\" transform=\"rotate(-40 261.7 300)\">least-connections</text>\n\
            </svg>\n";
        assert_eq!(text_problems(turned), Vec::<String>::new());
    }

    #[test]
    fn a_cdf_has_one_line_per_series_ending_at_the_top() {
        let series = series(&["a", "b & c"], |i| vec![100.0 * (i + 1) as f64, 400.0]);
        let svg = latency_cdf("t", &[], &[panel("pull-based", series)]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("b &amp; c"));
        // The last point of a line is at fraction 1: the top of the plot area.
        let top = svg.lines().find(|l| l.starts_with("<path")).unwrap().split(' ').nth(2).unwrap().to_string();
        let last_point = svg.lines().find(|l| l.starts_with("<polyline")).unwrap().split('"').nth(1).unwrap();
        assert!(last_point.ends_with(&format!(",{top}")), "{last_point} {top}");
        assert_readable(&svg);
    }

    #[test]
    fn series_past_the_colours_are_dashed_or_lighter_and_no_two_look_alike() {
        let names: Vec<String> = (0..21).map(|i| format!("s{i}")).collect();
        let series: Vec<(String, Vec<f64>)> = names.iter().map(|n| (n.clone(), vec![n.len() as f64])).collect();
        let cdf = latency_cdf("t", &names, &[panel("", series.clone())]);
        let bars = grouped_bars("t", "y", &strings(&["c"]), &names, &[panel("", series)]);
        for svg in [&cdf, &bars] {
            assert_eq!(looks(svg).len(), 21);
            assert_readable(svg);
        }
        // The legend draws lines 8 to 21 dashed, bars 8 to 21 lighter.
        assert_eq!(cdf.lines().filter(|l| l.starts_with("<line") && l.contains("stroke-dasharray")).count(), 14);
        assert_eq!(bars.lines().filter(|l| l.starts_with("<rect") && l.contains("fill-opacity")).count(), 28);
    }

    #[test]
    fn bars_scale_to_the_largest_value() {
        let categories = strings(&["x", "y"]);
        let svg = grouped_bars("t", "rps", &categories, &[], &[panel("", series(&["s"], |_| vec![10.0, 5.0]))]);
        let heights: Vec<f64> = svg
            .lines()
            .filter(|l| l.starts_with("<rect x=") && l.contains("<title>"))
            .filter_map(|l| l.split("height=\"").nth(1)?.split('"').next()?.parse().ok())
            .collect();
        assert_eq!(heights.len(), 2);
        assert!((heights[0] / heights[1] - 2.0).abs() < 0.02, "{heights:?}");
    }

    #[test]
    fn long_categories_wrap_and_too_many_turn() {
        let few = strings(&["pull-based", "hashing-bounded", "least-connections", "random"]);
        let svg = grouped_bars("t", "y", &few, &[], &[panel("", series(&["s"], |_| vec![1.0; 4]))]);
        assert!(svg.contains(">least-</text>") && !svg.contains("rotate(-40"));
        assert_readable(&svg);
        let many: Vec<String> = (0..16).map(|i| format!("a-long-category-name-{i}")).collect();
        let svg = grouped_bars("t", "y", &many, &[], &[panel("", series(&["s"], |_| vec![1.0; 16]))]);
        assert_eq!(svg.matches("rotate(-40").count(), 16);
        assert_readable(&svg);
    }

    #[test]
    fn panels_sit_in_a_grid_and_share_the_legend() {
        let titles = ["a", "b", "c", "d", "e"];
        let panels: Vec<Panel> =
            titles.iter().map(|t| panel(t, series(&["x", "y"], |i| vec![i as f64 + 1.0]))).collect();
        let svg = latency_cdf("t", &[], &panels);
        assert_eq!(svg.matches("font-size=\"13\"").count(), 5);
        // One legend entry per series, however many panels draw it.
        assert_eq!(svg.lines().filter(|l| l.starts_with("<line") && l.contains("stroke-width")).count(), 2);
        assert_readable(&svg);
    }
}
