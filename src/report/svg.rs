//! Small server-side SVG line charts (no JavaScript, no external assets), so report.html is one
//! self-contained file that renders anywhere, including in headless chromium tests.

use std::fmt::Write;

use super::format::{escape, trim_rounded as trim};

const W: f64 = 560.0;
const H: f64 = 330.0;
const LEFT: f64 = 72.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 46.0;

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Measured values: a solid line with a dot on every point.
    Measured,
    /// A fitted model: a dashed line without dots.
    Fitted,
}

#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub color: &'static str,
    pub style: Style,
    pub points: Vec<(f64, f64)>,
}

/// A labelled reference line.
#[derive(Debug, Clone)]
pub struct Marker {
    pub at: f64,
    pub label: String,
    pub color: &'static str,
}

pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Vertical lines (e.g. the knee).
    pub x_markers: Vec<Marker>,
    /// Horizontal lines (limits, SLA).
    pub y_markers: Vec<Marker>,
    pub y_unit: Unit,
}

/// How y values are shown: divided by `scale`, then `suffix` appended (seconds as `ms`, bytes
/// as `GiB`), so ticks fall on round numbers of the shown unit.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    pub scale: f64,
    pub suffix: String,
}

impl Unit {
    pub fn plain() -> Self {
        Self {
            scale: 1.0,
            suffix: String::new(),
        }
    }

    /// `MiB` or `GiB`, whichever keeps `max` readable.
    pub fn bytes(max: f64) -> Self {
        let (scale, suffix) = if max >= 1024.0 * 1024.0 * 1024.0 {
            (1024.0 * 1024.0 * 1024.0, " GiB")
        } else {
            (1024.0 * 1024.0, " MiB")
        };
        Self {
            scale,
            suffix: suffix.into(),
        }
    }

    pub fn milliseconds() -> Self {
        Self {
            scale: 1e-3,
            suffix: " ms".into(),
        }
    }

    fn format(&self, v: f64) -> String {
        format!("{}{}", trim(v / self.scale), self.suffix)
    }
}

/// A "nice" tick step (1, 2 or 5 × 10ⁿ) giving about `target` ticks over `range`.
fn nice_step(range: f64, target: f64) -> f64 {
    let raw = (range / target).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    let n = raw / mag;
    let f = if n <= 1.0 {
        1.0
    } else if n <= 2.0 {
        2.0
    } else if n <= 5.0 {
        5.0
    } else {
        10.0
    };
    f * mag
}

/// Axis maximum and step: from 0 to a nice value above `max`.
fn axis(max: f64) -> (f64, f64) {
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    let step = nice_step(max, 5.0);
    // The epsilon keeps 1.0 / 0.2 = 5.000000001 from adding a whole empty tick.
    (((max / step) - 1e-9).ceil().max(1.0) * step, step)
}

impl Chart {
    /// The chart as an `<svg>` element.
    pub fn render(&self) -> String {
        let data = self.series.iter().flat_map(|s| s.points.iter()).copied();
        let finite: Vec<(f64, f64)> = data
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        let data_max_x = finite.iter().map(|p| p.0).fold(0.0, f64::max);
        let data_max_y = finite.iter().map(|p| p.1).fold(0.0, f64::max);
        // Reference lines far above the data (an unlimited container's host memory) would
        // squash the data into the bottom; they are left out instead.
        let visible = |m: &&Marker, max: f64| {
            m.at.is_finite() && m.at >= 0.0 && (max <= 0.0 || m.at <= max * 2.0)
        };
        let ym: Vec<&Marker> = self
            .y_markers
            .iter()
            .filter(|m| visible(m, data_max_y))
            .collect();
        let xm: Vec<&Marker> = self
            .x_markers
            .iter()
            .filter(|m| visible(m, data_max_x))
            .collect();
        let (x_max, x_step) = axis(xm.iter().map(|m| m.at).fold(data_max_x, f64::max));
        let scale = self.y_unit.scale;
        let (y_max, y_step) =
            axis(ym.iter().map(|m| m.at).fold(data_max_y, f64::max) * 1.05 / scale);
        let (y_max, y_step) = (y_max * scale, y_step * scale);
        let pw = W - LEFT - RIGHT;
        let ph = H - TOP - BOTTOM;
        let sx = |x: f64| LEFT + x / x_max * pw;
        let sy = |y: f64| TOP + ph - (y / y_max).clamp(-0.05, 1.05) * ph;

        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{t}" class="chart">"#,
            t = escape(&self.title)
        );
        let _ = write!(
            s,
            r##"<rect x="0" y="0" width="{W}" height="{H}" fill="#fff"/><text x="{LEFT}" y="20" class="ct">{}</text>"##,
            escape(&self.title)
        );
        // Grid and ticks.
        let mut v = 0.0;
        while v <= y_max + y_step * 0.01 {
            let y = sy(v);
            let _ = write!(
                s,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e5e7eb"/><text x="{:.1}" y="{:.1}" class="yt">{}</text>"##,
                LEFT + pw,
                LEFT - 6.0,
                y + 4.0,
                escape(&self.y_unit.format(v))
            );
            v += y_step;
        }
        let mut v = 0.0;
        while v <= x_max + x_step * 0.01 {
            let x = sx(v);
            let _ = write!(
                s,
                r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#f1f5f9"/><text x="{x:.1}" y="{:.1}" class="xt">{}</text>"##,
                TOP + ph,
                TOP + ph + 16.0,
                trim(v)
            );
            v += x_step;
        }
        let _ = write!(
            s,
            r##"<line x1="{LEFT}" y1="{b:.1}" x2="{r:.1}" y2="{b:.1}" stroke="#334155"/><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{b:.1}" stroke="#334155"/>"##,
            b = TOP + ph,
            r = LEFT + pw
        );
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" class="xl">{}</text><text transform="translate(14 {:.1}) rotate(-90)" class="yl">{}</text>"#,
            LEFT + pw / 2.0,
            H - 8.0,
            escape(&self.x_label),
            TOP + ph / 2.0,
            escape(&self.y_label)
        );
        for m in &ym {
            let y = sy(m.at);
            let _ = write!(
                s,
                r#"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{c}" stroke-width="1.2" stroke-dasharray="2 3"/><text x="{:.1}" y="{:.1}" class="ml" fill="{c}">{}</text>"#,
                LEFT + pw,
                LEFT + 6.0,
                y - 4.0,
                escape(&m.label),
                c = m.color
            );
        }
        for m in &xm {
            let x = sx(m.at);
            let _ = write!(
                s,
                r#"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="{c}" stroke-width="1.5" stroke-dasharray="6 3"/><text x="{:.1}" y="{:.1}" class="kl" fill="{c}">{}</text>"#,
                TOP + ph,
                x + 4.0,
                TOP + 12.0,
                escape(&m.label),
                c = m.color
            );
        }
        for series in &self.series {
            let pts: Vec<(f64, f64)> = series
                .points
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect();
            if pts.is_empty() {
                continue;
            }
            let path: Vec<String> = pts
                .iter()
                .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
                .collect();
            let dash = match series.style {
                Style::Measured => "",
                Style::Fitted => r#" stroke-dasharray="7 4""#,
            };
            let _ = write!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{dash}/>"#,
                path.join(" "),
                series.color
            );
            if series.style == Style::Measured {
                for &(x, y) in &pts {
                    let _ = write!(
                        s,
                        r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{}"><title>{}: {} VUs → {}</title></circle>"#,
                        sx(x),
                        sy(y),
                        series.color,
                        escape(&series.name),
                        trim(x),
                        escape(&self.y_unit.format(y))
                    );
                }
            }
        }
        // Legend, under the title.
        let mut lx = LEFT;
        for series in &self.series {
            let dash = if series.style == Style::Fitted {
                r#" stroke-dasharray="5 3""#
            } else {
                ""
            };
            let _ = write!(
                s,
                r#"<line x1="{lx:.1}" y1="31" x2="{:.1}" y2="31" stroke="{}" stroke-width="2.5"{dash}/><text x="{:.1}" y="35" class="lg">{}</text>"#,
                lx + 18.0,
                series.color,
                lx + 22.0,
                escape(&series.name)
            );
            lx += 40.0 + 7.0 * series.name.chars().count() as f64;
        }
        s.push_str("</svg>");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_axes() {
        assert_eq!(axis(8.0), (8.0, 2.0));
        assert_eq!(axis(8.5), (10.0, 2.0));
        assert_eq!(axis(41.0), (50.0, 10.0));
        assert_eq!(axis(0.0), (1.0, 0.2));
        assert_eq!(axis(f64::NAN), (1.0, 0.2));
    }

    #[test]
    fn renders_points_and_escapes() {
        let c = Chart {
            title: "A < B".into(),
            x_label: "VUs".into(),
            y_label: "TPS".into(),
            series: vec![Series {
                name: "tps".into(),
                color: "#2563eb",
                style: Style::Measured,
                points: vec![(1.0, 10.0), (2.0, f64::NAN), (3.0, 30.0)],
            }],
            x_markers: vec![],
            y_markers: vec![Marker {
                at: 1e12,
                label: "far away".into(),
                color: "#000",
            }],
            y_unit: Unit::plain(),
        };
        let svg = c.render();
        assert!(svg.contains("A &lt; B"));
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(!svg.contains("far away"));
    }
}
