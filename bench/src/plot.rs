//! Latency-by-percentile plots as SVG: x on the log "nines" scale (90%, 99%, 99.9%, ...),
//! y on a log latency scale by default (so a curve 100x below another is still a curve,
//! not a line on the axis), several series overlaid with the first drawn on top. Written
//! by hand: a few hundred bytes of SVG per series need no plotting library.

use std::fmt::Write as _;

/// One line on the plot.
pub struct Series {
    /// Legend text (e.g. the target and its achieved rate).
    pub label: String,
    /// (percentile in 0..=1, latency ms) points, percentile ascending.
    pub points: Vec<(f64, f64)>,
    /// Drawn dashed (service time, or an earlier run).
    pub dashed: bool,
    /// The run failed: the reason, shown in red in the legend; the line is dotted.
    pub failed: Option<String>,
}

impl Series {
    /// A solid, passing series.
    pub fn new(label: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Series {
            label: label.into(),
            points,
            dashed: false,
            failed: None,
        }
    }
}

/// What goes around the series.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// First line (the workload).
    pub title: String,
    /// Second line (target, offered and achieved rates).
    pub subtitle: String,
    /// A red line under the titles (why the run failed).
    pub banner: Option<String>,
    /// Linear latency axis from 0 instead of the log axis.
    pub linear: bool,
}

/// The image width; the height follows from the legend.
pub const W: f64 = 800.0;
const PLOT_H: f64 = 300.0;
const FONT: f64 = 12.0;
const TITLE_FONT: f64 = 15.0;
/// A generous average glyph width for sans-serif text, as a fraction of the font size
/// (digits are 0.556 em in Helvetica/Arial): used to size margins and cut labels to fit.
pub const GLYPH: f64 = 0.6;
const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];
const RED: &str = "#c00000";

/// x position of a percentile: log10(1 / (1 - p)), capped at 6 nines.
fn nines(p: f64) -> f64 {
    (1.0 / (1.0 - p.min(0.999_999))).log10().min(6.0)
}

fn nice_max(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= m * mag * (1.0 + 1e-9) {
            return m * mag;
        }
    }
    10.0 * mag
}

/// A latency in ms with a unit that keeps the number short: `50 µs`, `2.5 ms`, `10 s`.
pub fn latency_label(ms: f64) -> String {
    let (v, unit) = if ms < 1.0 {
        (ms * 1000.0, "µs")
    } else if ms < 1000.0 {
        (ms, "ms")
    } else {
        (ms / 1000.0, "s")
    };
    // Three significant digits: 1.23 ms, 12.3 ms, 123 ms.
    let v = if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        trim_to(v, 1)
    } else {
        trim_to(v, 2)
    };
    format!("{v} {unit}")
}

fn trim_to(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn nines_label(i: usize) -> String {
    match i {
        0 => "0%".to_string(),
        1 => "90%".to_string(),
        2 => "99%".to_string(),
        n => format!("99.{}%", "9".repeat(n - 2)),
    }
}

/// Estimated width of `s` at `size` px.
pub fn text_width(s: &str, size: f64) -> f64 {
    s.chars().count() as f64 * size * GLYPH
}

/// `s` cut (with an ellipsis) to fit `width` px at `size`.
fn fit(s: &str, width: f64, size: f64) -> String {
    let max = (width / (size * GLYPH)).floor().max(1.0) as usize;
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// The latency axis: value -> fraction of the plot height (0 bottom, 1 top), and ticks
/// (value, labelled).
struct YAxis {
    log: bool,
    lo: f64,
    hi: f64,
    ticks: Vec<(f64, bool)>,
}

impl YAxis {
    fn new(values: impl Iterator<Item = f64> + Clone, linear: bool) -> Self {
        let max = values.clone().fold(0.0, f64::max);
        if linear {
            let hi = nice_max(max);
            let ticks = (0..=5).map(|i| (hi * i as f64 / 5.0, true)).collect();
            return YAxis {
                log: false,
                lo: 0.0,
                hi,
                ticks,
            };
        }
        let min = values.filter(|v| *v > 0.0).fold(f64::INFINITY, f64::min);
        let (min, max) = if min.is_finite() {
            (min, max)
        } else {
            (0.01, 1.0)
        };
        let lo_e = min.log10().floor() as i32;
        let mut hi_e = max.log10().ceil() as i32;
        if hi_e <= lo_e {
            hi_e = lo_e + 1;
        }
        let decades = hi_e - lo_e;
        let mut ticks = Vec::new();
        for e in lo_e..=hi_e {
            let base = 10f64.powi(e);
            ticks.push((base, true));
            if e < hi_e {
                for m in 2..=9 {
                    // Few decades: label 2 and 5 as well; always draw the minor lines.
                    let labelled = decades <= 2 && (m == 2 || m == 5);
                    ticks.push((base * m as f64, labelled));
                }
            }
        }
        YAxis {
            log: true,
            lo: 10f64.powi(lo_e),
            hi: 10f64.powi(hi_e),
            ticks,
        }
    }

    fn frac(&self, v: f64) -> f64 {
        let v = v.clamp(self.lo, self.hi);
        if self.log {
            (v.log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        }
    }
}

/// Write a `<text>` element (attributes always in this order, so tests can read them).
fn text(out: &mut String, x: f64, y: f64, anchor: &str, size: f64, fill: &str, s: &str) {
    let _ = writeln!(
        out,
        r#"<text x="{x:.1}" y="{y:.1}" text-anchor="{anchor}" font-size="{size}" fill="{fill}">{}</text>"#,
        escape(s)
    );
}

/// Render `series` (the first is drawn on top and listed first).
pub fn svg(opts: &Options, series: &[Series]) -> String {
    let all = || series.iter().flat_map(|s| s.points.iter());
    let max_x = all()
        .map(|p| nines(p.0))
        .fold(2.0f64, f64::max)
        .ceil()
        .min(6.0);
    let y_axis = YAxis::new(all().map(|p| p.1), opts.linear);
    let y_labels: Vec<(f64, String)> = y_axis
        .ticks
        .iter()
        .filter(|t| t.1)
        .map(|t| (t.0, latency_label(t.0)))
        .collect();
    let widest_y = y_labels
        .iter()
        .map(|l| text_width(&l.1, FONT))
        .fold(0.0, f64::max);
    let left = 30.0 + widest_y + 8.0;
    let right = text_width(&nines_label(max_x as usize), FONT) / 2.0 + 12.0;
    let pw = W - left - right;
    let mut top = 28.0;
    let mut out = String::new();
    let mut head = String::new();
    text(
        &mut head,
        W / 2.0,
        top,
        "middle",
        TITLE_FONT,
        "black",
        &fit(&opts.title, W - 20.0, TITLE_FONT),
    );
    if !opts.subtitle.is_empty() {
        top += 18.0;
        text(
            &mut head,
            W / 2.0,
            top,
            "middle",
            FONT,
            "#333",
            &fit(&opts.subtitle, W - 20.0, FONT),
        );
    }
    if let Some(b) = &opts.banner {
        top += 18.0;
        text(
            &mut head,
            W / 2.0,
            top,
            "middle",
            FONT,
            RED,
            &fit(b, W - 20.0, FONT),
        );
    }
    let top = top + 16.0;
    let bottom_of_plot = top + PLOT_H;
    let legend_top = bottom_of_plot + 56.0;
    let h = legend_top + 18.0 * series.len() as f64 + 8.0;
    let x = |n: f64| left + n / max_x * pw;
    let y = |v: f64| bottom_of_plot - y_axis.frac(v) * PLOT_H;
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" font-family="sans-serif" font-size="{FONT}">"#
    );
    let _ = writeln!(out, r#"<rect width="{W}" height="{h}" fill="white"/>"#);
    out.push_str(&head);
    // Grid and ticks.
    for i in 0..=(max_x as usize) {
        let px = x(i as f64);
        let _ = writeln!(
            out,
            r##"<line x1="{px:.1}" y1="{top:.1}" x2="{px:.1}" y2="{bottom_of_plot:.1}" stroke="#ddd"/>"##
        );
        text(
            &mut out,
            px,
            bottom_of_plot + 18.0,
            "middle",
            FONT,
            "black",
            &nines_label(i),
        );
    }
    for &(v, labelled) in &y_axis.ticks {
        let py = y(v);
        let stroke = if labelled { "#ccc" } else { "#eee" };
        let _ = writeln!(
            out,
            r#"<line x1="{left:.1}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="{stroke}"/>"#,
            left + pw
        );
    }
    for (v, label) in &y_labels {
        text(
            &mut out,
            left - 6.0,
            y(*v) + 4.0,
            "end",
            FONT,
            "black",
            label,
        );
    }
    let _ = writeln!(
        out,
        r##"<rect x="{left:.1}" y="{top:.1}" width="{pw:.1}" height="{PLOT_H}" fill="none" stroke="#999"/>"##
    );
    text(
        &mut out,
        left + pw / 2.0,
        bottom_of_plot + 38.0,
        "middle",
        FONT,
        "black",
        "percentile",
    );
    let mid = top + PLOT_H / 2.0;
    let axis = if y_axis.log {
        "latency (log scale)"
    } else {
        "latency"
    };
    let _ = writeln!(
        out,
        r#"<text x="14" y="{mid:.1}" text-anchor="middle" transform="rotate(-90 14 {mid:.1})">{axis}</text>"#
    );
    // Series: the last drawn first, so the first (the current run) ends up on top.
    for (i, s) in series.iter().enumerate().rev() {
        if s.points.is_empty() {
            continue;
        }
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<String> = s
            .points
            .iter()
            .map(|&(p, v)| format!("{:.1},{:.1}", x(nines(p).min(max_x)), y(v)))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{color}" stroke-width="{}"{} points="{}"/>"#,
            if i == 0 { 2.5 } else { 2.0 },
            dash(s),
            pts.join(" ")
        );
    }
    // Legend, below the plot so it never covers a curve.
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let ly = legend_top + 18.0 * i as f64;
        let _ = writeln!(
            out,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="3"{}/>"#,
            left,
            left + 24.0,
            dash(s)
        );
        let mut label = s.label.clone();
        if s.points.is_empty() {
            label.push_str(" (no replies)");
        }
        let fill = if s.failed.is_some() { RED } else { "black" };
        if let Some(why) = &s.failed {
            // First, so a label cut to fit never loses it.
            label = format!("FAILED ({why}): {label}");
        }
        let lx = left + 30.0;
        text(
            &mut out,
            lx,
            ly + 4.0,
            "start",
            FONT,
            fill,
            &fit(&label, W - lx - 8.0, FONT),
        );
    }
    out.push_str("</svg>\n");
    out
}

fn dash(s: &Series) -> &'static str {
    if s.failed.is_some() {
        r#" stroke-dasharray="2 3""#
    } else if s.dashed {
        r#" stroke-dasharray="7 4""#
    } else {
        ""
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// Every `<text>` element: (x, y, anchor, font size, content) — rotated ones skipped.
    pub fn texts(svg: &str) -> Vec<(f64, f64, String, f64, String)> {
        let attr = |el: &str, name: &str| -> String {
            let key = format!(r#"{name}=""#);
            let start = el.find(&key).map(|i| i + key.len()).unwrap_or(0);
            el[start..]
                .split('"')
                .next()
                .unwrap_or_default()
                .to_string()
        };
        svg.lines()
            .filter(|l| l.starts_with("<text") && !l.contains("rotate("))
            .map(|l| {
                let content = l.split('>').nth(1).unwrap().split('<').next().unwrap();
                let content = content
                    .replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&amp;", "&");
                (
                    attr(l, "x").parse().unwrap(),
                    attr(l, "y").parse().unwrap(),
                    attr(l, "text-anchor"),
                    attr(l, "font-size").parse().unwrap(),
                    content,
                )
            })
            .collect()
    }

    /// The SVG's height from its root element.
    pub fn height(svg: &str) -> f64 {
        let i = svg.find("height=\"").unwrap() + 8;
        svg[i..].split('"').next().unwrap().parse().unwrap()
    }

    /// Every label lies inside the image (by the generous glyph estimate).
    pub fn assert_labels_fit(svg: &str) {
        let h = height(svg);
        for (x, y, anchor, size, s) in texts(svg) {
            let w = text_width(&s, size);
            let (l, r) = match anchor.as_str() {
                "start" => (x, x + w),
                "end" => (x - w, x),
                _ => (x - w / 2.0, x + w / 2.0),
            };
            assert!(
                l >= 0.0 && r <= W && y - size >= 0.0 && y <= h,
                "label {s:?} at {x},{y} ({l:.0}..{r:.0}) does not fit in {W}x{h}"
            );
        }
    }

    /// The y pixel of each polyline's highest-percentile point, and its lowest and highest y.
    fn polylines(svg: &str) -> Vec<Vec<(f64, f64)>> {
        svg.lines()
            .filter(|l| l.starts_with("<polyline"))
            .map(|l| {
                let pts = l
                    .split("points=\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap();
                pts.split(' ')
                    .map(|p| {
                        let (a, b) = p.split_once(',').unwrap();
                        (a.parse().unwrap(), b.parse().unwrap())
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn nines_axis_and_overlay() {
        assert!((nines(0.9) - 1.0).abs() < 1e-9);
        assert!((nines(0.999) - 3.0).abs() < 1e-9);
        let a = Series::new("coreshard", vec![(0.0, 0.1), (0.99, 0.3), (0.999, 0.9)]);
        let b = Series::new("redis <7>", vec![(0.0, 0.1), (0.99, 0.5)]);
        let opts = Options {
            title: "GET p/s".into(),
            ..Options::default()
        };
        let out = svg(&opts, &[a, b]);
        assert!(out.starts_with("<svg") && out.trim_end().ends_with("</svg>"));
        assert_eq!(out.matches("<polyline").count(), 2);
        assert!(out.contains(">99.9%<") && out.contains("redis &lt;7&gt;"));
        assert_eq!(nice_max(0.9), 1.0);
        assert_eq!(nice_max(3.2), 5.0);
        // The first series is drawn last, i.e. on top.
        let blue = out
            .find(r##"stroke="#1f77b4" stroke-width="2.5""##)
            .unwrap();
        let red = out
            .find(r##"<polyline fill="none" stroke="#d62728""##)
            .unwrap();
        assert!(red < blue, "the current run must be drawn over the others");
        assert_labels_fit(&out);
    }

    #[test]
    fn log_axis_keeps_a_curve_100x_smaller_visible() {
        // Service time ~50 µs, corrected latency ~5 ms: a linear axis up to 5 ms would put
        // the service-time curve within 1% of the plot height of the axis.
        let points = |base: f64| -> Vec<(f64, f64)> {
            (0..=60)
                .map(|i| {
                    let p = 1.0 - 10f64.powf(-(i as f64) / 10.0);
                    (p.min(1.0), base * (1.0 + i as f64 / 10.0))
                })
                .collect()
        };
        let series = [
            Series::new("corrected — achieved 38.5k/s of 50.0k/s", points(5.0)),
            Series {
                dashed: true,
                ..Series::new("service time", points(0.05))
            },
        ];
        let out = svg(&Options::default(), &series);
        // Decade ticks with units, and the 99.9999% tick inside the image.
        for label in ["10 µs", "100 µs", "1 ms", "10 ms", "100 ms", "99.9999%"] {
            assert!(
                out.contains(&format!(">{label}<")),
                "{label} missing:\n{out}"
            );
        }
        assert!(out.contains("latency (log scale)"));
        assert_labels_fit(&out);
        let lines = polylines(&out);
        assert_eq!(lines.len(), 2);
        let span = |l: &Vec<(f64, f64)>| {
            let ys = l.iter().map(|p| p.1);
            ys.clone().fold(f64::MIN, f64::max) - ys.fold(f64::MAX, f64::min)
        };
        // Both curves rise over the same number of pixels (same shape, 100x apart).
        let (a, b) = (span(&lines[0]), span(&lines[1]));
        assert!(a > 50.0 && (a - b).abs() < 1.0, "{a} vs {b}");
        // Equal ratios are equal distances: 10 µs -> 100 µs as tall as 1 ms -> 10 ms.
        let tick_y = |label: &str| {
            texts(&out)
                .into_iter()
                .find(|t| t.4 == label)
                .map(|t| t.1)
                .unwrap()
        };
        let d1 = tick_y("10 µs") - tick_y("100 µs");
        let d2 = tick_y("1 ms") - tick_y("10 ms");
        assert!(d1 > 20.0 && (d1 - d2).abs() < 0.2, "{d1} vs {d2}");

        // --plot-linear: starts at 0, the small curve is flat on the axis.
        let lin = svg(
            &Options {
                linear: true,
                ..Options::default()
            },
            &series,
        );
        assert!(!lin.contains("log scale") && lin.contains(">0 µs<"));
        // Drawn in reverse: the service-time curve (second series) comes first.
        let lines = polylines(&lin);
        let (small, big) = (span(&lines[0]), span(&lines[1]));
        assert!(small < 5.0 && big > 150.0, "{small} {big}");
        assert_labels_fit(&lin);
    }

    #[test]
    fn failures_and_long_labels_are_shown_and_fit() {
        let long = "a-very-long-target-name-that-goes-on-and-on.example.internal:6379 ".repeat(3);
        let series = [
            Series {
                failed: Some("open loop achieved 12/s, 1.2% of the offered 1000/s".into()),
                ..Series::new(long.clone(), vec![(0.0, 1.0), (0.999_999, 3000.0)])
            },
            Series::new("empty", vec![]),
        ];
        let opts = Options {
            title: long.clone(),
            subtitle: long.clone(),
            banner: Some(format!("FAILED: {long}")),
            linear: false,
        };
        let out = svg(&opts, &series);
        assert!(out.contains("stroke-dasharray=\"2 3\""));
        assert!(out.contains(&format!(r#"fill="{RED}">FAILED: a-very-long"#)));
        assert!(out.contains(&format!(r#"fill="{RED}">FAILED (open loop achieved 12/s"#)));
        assert!(out.contains("empty (no replies)"));
        assert!(out.contains('…'));
        assert_eq!(out.matches("<polyline").count(), 1);
        assert_labels_fit(&out);
        assert_eq!(latency_label(0.025), "25 µs");
        assert_eq!(latency_label(2.5), "2.5 ms");
        assert_eq!(latency_label(10_000.0), "10 s");
        assert_eq!(latency_label(240.517), "241 ms");
        assert_eq!(latency_label(3.734), "3.73 ms");
        assert_eq!(latency_label(0.0), "0 µs");
    }
}
