//! Line charts as plain SVG: axes (linear or log), series with markers, reference lines.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 440.0;
const LEFT: f64 = 80.0;
const TOP: f64 = 46.0;
const PLOT_W: f64 = 560.0;
const PLOT_H: f64 = 330.0;
const PALETTE: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// How a series is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// Solid line with round markers.
    Line,
    /// Dashed line with round markers.
    Dashed,
    /// Markers only (diamonds): reference figures.
    Points,
}

/// One series.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// (x, y) points; non-finite values break the line.
    pub points: Vec<(f64, f64)>,
    /// Drawing style.
    pub style: Style,
}

/// A horizontal or vertical reference line.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Legend text.
    pub label: String,
    /// Position on its axis.
    pub at: f64,
    /// Vertical (an x value) rather than horizontal (a y value).
    pub vertical: bool,
}

/// A chart.
#[derive(Clone, Debug, Default)]
pub struct Chart {
    /// Title on top.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// Logarithmic x axis.
    pub x_log: bool,
    /// Logarithmic y axis.
    pub y_log: bool,
    /// Start the y axis at zero (linear axes only).
    pub y_zero: bool,
    /// Data.
    pub series: Vec<Series>,
    /// Reference lines.
    pub rules: Vec<Rule>,
}

struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
}

impl Axis {
    fn fit(values: impl Iterator<Item = f64>, log: bool, zero: bool) -> Self {
        let mut lo = f64::INFINITY;
        let mut hi = f64::NEG_INFINITY;
        for v in values.filter(|v| v.is_finite() && (!log || *v > 0.0)) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if !lo.is_finite() {
            (lo, hi) = (1.0, 10.0);
        }
        if log {
            lo = 10f64.powf(lo.log10().floor());
            hi = 10f64.powf(hi.log10().ceil().max(lo.log10() + 1.0));
        } else {
            if zero {
                lo = lo.min(0.0);
            }
            if hi <= lo {
                hi = lo + 1.0;
            }
            let step = nice_step((hi - lo) / 6.0);
            lo = (lo / step).floor() * step;
            hi = (hi / step).ceil() * step;
        }
        Self { lo, hi, log }
    }

    /// Position in [0, 1].
    fn frac(&self, v: f64) -> f64 {
        if self.log {
            (v.log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        }
    }

    fn ticks(&self) -> Vec<f64> {
        if self.log {
            let mut t = Vec::new();
            let (a, b) = (
                self.lo.log10().round() as i32,
                self.hi.log10().round() as i32,
            );
            let few = b - a <= 2;
            for e in a..=b {
                let base = 10f64.powi(e);
                t.push(base);
                if few && e < b {
                    t.push(2.0 * base);
                    t.push(5.0 * base);
                }
            }
            t
        } else {
            let step = nice_step((self.hi - self.lo) / 6.0);
            let n = ((self.hi - self.lo) / step).round() as usize;
            (0..=n).map(|i| self.lo + step * i as f64).collect()
        }
    }
}

fn nice_step(raw: f64) -> f64 {
    let mag = 10f64.powf(raw.log10().floor());
    let r = raw / mag;
    let m = if r <= 1.0 {
        1.0
    } else if r <= 2.0 {
        2.0
    } else if r <= 5.0 {
        5.0
    } else {
        10.0
    };
    m * mag
}

fn label(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if a >= 1e4 {
        format!("{}k", trim(v / 1e3))
    } else {
        trim(v)
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Chart {
    /// The SVG document.
    pub fn render(&self) -> String {
        let xs = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0));
        let xr = self.rules.iter().filter(|r| r.vertical).map(|r| r.at);
        let x = Axis::fit(xs.chain(xr), self.x_log, false);
        let ys = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1));
        let yr = self.rules.iter().filter(|r| !r.vertical).map(|r| r.at);
        let y = Axis::fit(ys.chain(yr), self.y_log, self.y_zero);
        let px = |v: f64| LEFT + x.frac(v) * PLOT_W;
        let py = |v: f64| TOP + PLOT_H - y.frac(v) * PLOT_H;
        let mut o = String::new();
        let _ = write!(
            o,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
        );
        let _ = write!(o, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = write!(
            o,
            r#"<text x="{}" y="24" font-size="15" font-weight="bold">{}</text>"#,
            LEFT,
            esc(&self.title)
        );
        self.axes(&mut o, &x, &y, &px, &py);
        self.draw_rules(&mut o, &px, &py, &x, &y);
        for (i, s) in self.series.iter().enumerate() {
            draw_series(&mut o, s, PALETTE[i % PALETTE.len()], &px, &py, &x, &y);
        }
        self.legend(&mut o);
        o.push_str("</svg>\n");
        o
    }

    fn axes(
        &self,
        o: &mut String,
        x: &Axis,
        y: &Axis,
        px: &dyn Fn(f64) -> f64,
        py: &dyn Fn(f64) -> f64,
    ) {
        let (x0, x1, y0, y1) = (LEFT, LEFT + PLOT_W, TOP, TOP + PLOT_H);
        for t in x.ticks() {
            let p = px(t);
            let _ = write!(
                o,
                r##"<line x1="{p:.1}" y1="{y0}" x2="{p:.1}" y2="{y1}" stroke="#e5e5e5"/>"##
            );
            let _ = write!(
                o,
                r#"<text x="{p:.1}" y="{}" text-anchor="middle">{}</text>"#,
                y1 + 16.0,
                label(t)
            );
        }
        for t in y.ticks() {
            let p = py(t);
            let _ = write!(
                o,
                r##"<line x1="{x0}" y1="{p:.1}" x2="{x1}" y2="{p:.1}" stroke="#e5e5e5"/>"##
            );
            let _ = write!(
                o,
                r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
                x0 - 6.0,
                p + 4.0,
                label(t)
            );
        }
        let _ = write!(
            o,
            r##"<rect x="{x0}" y="{y0}" width="{PLOT_W}" height="{PLOT_H}" fill="none" stroke="#333"/>"##
        );
        let _ = write!(
            o,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            x0 + PLOT_W / 2.0,
            y1 + 36.0,
            esc(&self.x_label)
        );
        let _ = write!(
            o,
            r#"<text transform="translate(18,{}) rotate(-90)" text-anchor="middle">{}</text>"#,
            y0 + PLOT_H / 2.0,
            esc(&self.y_label)
        );
    }

    fn draw_rules(
        &self,
        o: &mut String,
        px: &dyn Fn(f64) -> f64,
        py: &dyn Fn(f64) -> f64,
        x: &Axis,
        y: &Axis,
    ) {
        // Labels of vertical rules close to the previous one go lower, so they do not overlap.
        let (mut prev, mut stack) = (f64::NEG_INFINITY, 0.0);
        for r in &self.rules {
            if r.vertical {
                if !in_range(x, r.at) {
                    continue;
                }
                let p = px(r.at);
                stack = if p - prev < 14.0 { stack + 170.0 } else { 0.0 };
                prev = p;
                let _ = write!(
                    o,
                    r##"<line x1="{p:.1}" y1="{TOP}" x2="{p:.1}" y2="{}" stroke="#555" stroke-dasharray="2,4" stroke-width="1.5"/>"##,
                    TOP + PLOT_H
                );
                // Name it along the line too: several vertical rules look alike.
                let _ = write!(
                    o,
                    r##"<text transform="translate({:.1},{}) rotate(90)" font-size="10" fill="#555">{}</text>"##,
                    p + 3.0,
                    TOP + 6.0 + stack,
                    esc(&r.label)
                );
            } else {
                if !in_range(y, r.at) {
                    continue;
                }
                let p = py(r.at);
                let _ = write!(
                    o,
                    r##"<line x1="{LEFT}" y1="{p:.1}" x2="{}" y2="{p:.1}" stroke="#555" stroke-dasharray="8,4" stroke-width="1.5"/>"##,
                    LEFT + PLOT_W
                );
            }
        }
    }

    fn legend(&self, o: &mut String) {
        let x = LEFT + PLOT_W + 16.0;
        let mut yy = TOP + 10.0;
        for (i, s) in self.series.iter().enumerate() {
            let c = PALETTE[i % PALETTE.len()];
            match s.style {
                Style::Points => {
                    let _ = write!(
                        o,
                        r#"<path d="M{} {} l5 5 l-5 5 l-5 -5 z" fill="{c}"/>"#,
                        x + 12.0,
                        yy - 9.0
                    );
                }
                Style::Line | Style::Dashed => {
                    let dash = if s.style == Style::Dashed {
                        r#" stroke-dasharray="6,3""#
                    } else {
                        ""
                    };
                    let _ = write!(
                        o,
                        r#"<line x1="{x}" y1="{}" x2="{}" y2="{}" stroke="{c}" stroke-width="2"{dash}/>"#,
                        yy - 4.0,
                        x + 24.0,
                        yy - 4.0
                    );
                }
            }
            yy = legend_text(o, x + 30.0, yy, &s.name);
        }
        for r in &self.rules {
            let dash = if r.vertical { "2,4" } else { "8,4" };
            let _ = write!(
                o,
                r##"<line x1="{x}" y1="{}" x2="{}" y2="{}" stroke="#555" stroke-width="1.5" stroke-dasharray="{dash}"/>"##,
                yy - 4.0,
                x + 24.0,
                yy - 4.0
            );
            yy = legend_text(o, x + 30.0, yy, &r.label);
        }
    }

    /// Writes `dir/name`.
    pub fn write(&self, dir: &Path, name: &str) -> anyhow::Result<()> {
        let path = dir.join(name);
        std::fs::write(&path, self.render()).with_context(|| format!("writing {}", path.display()))
    }
}

fn in_range(a: &Axis, v: f64) -> bool {
    v.is_finite() && (!a.log || v > 0.0) && v >= a.lo && v <= a.hi
}

/// Writes a legend entry, wrapping long text; returns the next line's y.
fn legend_text(o: &mut String, x: f64, mut y: f64, text: &str) -> f64 {
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + word.len() > 30 {
            let _ = write!(o, r#"<text x="{x}" y="{y}">{}</text>"#, esc(&line));
            y += 15.0;
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    let _ = write!(o, r#"<text x="{x}" y="{y}">{}</text>"#, esc(&line));
    y + 21.0
}

fn draw_series(
    o: &mut String,
    s: &Series,
    c: &str,
    px: &dyn Fn(f64) -> f64,
    py: &dyn Fn(f64) -> f64,
    x: &Axis,
    y: &Axis,
) {
    let ok = |p: &(f64, f64)| in_range(x, p.0) && in_range(y, p.1);
    if s.style != Style::Points {
        let dash = if s.style == Style::Dashed {
            r#" stroke-dasharray="6,3""#
        } else {
            ""
        };
        let mut path = String::new();
        let mut pen_down = false;
        for p in &s.points {
            if ok(p) {
                let _ = write!(
                    path,
                    "{}{:.1} {:.1} ",
                    if pen_down { "L" } else { "M" },
                    px(p.0),
                    py(p.1)
                );
                pen_down = true;
            } else {
                pen_down = false;
            }
        }
        if !path.is_empty() {
            let _ = write!(
                o,
                r#"<path d="{path}" fill="none" stroke="{c}" stroke-width="2"{dash}/>"#
            );
        }
    }
    for p in s.points.iter().filter(|p| ok(p)) {
        let (cx, cy) = (px(p.0), py(p.1));
        match s.style {
            Style::Points => {
                let _ = write!(
                    o,
                    r#"<path d="M{cx:.1} {:.1} l6 6 l-6 6 l-6 -6 z" fill="{c}"/>"#,
                    cy - 6.0
                );
            }
            Style::Line | Style::Dashed if s.points.len() <= 60 => {
                let _ = write!(o, r#"<circle cx="{cx:.1}" cy="{cy:.1}" r="3" fill="{c}"/>"#);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_series_and_rules_in_a_closed_document() {
        let chart = Chart {
            title: "t < 2".into(),
            x_label: "nodes".into(),
            y_label: "s".into(),
            x_log: true,
            series: vec![Series {
                name: "p99".into(),
                points: vec![(10.0, 1.0), (100.0, f64::NAN), (1000.0, 2.0)],
                style: Style::Line,
            }],
            rules: vec![Rule {
                label: "goal".into(),
                at: 2.0,
                vertical: false,
            }],
            ..Chart::default()
        };
        let svg = chart.render();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("t &lt; 2"));
        assert_eq!(
            svg.matches("<circle").count(),
            2,
            "the NaN point is skipped"
        );
        assert!(svg.contains("goal"));
    }

    #[test]
    fn nice_steps_and_log_ticks() {
        assert_eq!(nice_step(0.7), 1.0);
        assert_eq!(nice_step(1.3), 2.0);
        assert_eq!(nice_step(31.0), 50.0);
        let a = Axis::fit([10.0, 1000.0].into_iter(), true, false);
        assert_eq!(
            a.ticks(),
            vec![10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0]
        );
    }
}
