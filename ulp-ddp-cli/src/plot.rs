//! `perf-compare --plot FILE.svg`: the comparison as a picture, drawn with plotters' SVG
//! backend: throughput (GB/s) above, host CPU seconds per GB below, one line per mode (tcp,
//! tcp-rr, nvme-tcp, iscsi ...) over the block sizes run.
//!
//! Each mode's marks are in their own group, `<g id="series-MODE" class="series"
//! data-mode="MODE">`, so that a script (or the test suite) can find them: every mode is drawn
//! in a layer of its own with the same layout, and the layers are stacked over the axes.

use plotters::prelude::*;

/// One measured point: a mode at a block size.
#[derive(Clone, Debug, PartialEq)]
pub struct PlotPoint {
    /// The mode (`tcp`, `tcp-rr`, `nvme-tcp`, `iscsi`).
    pub mode: String,
    /// Bytes per command.
    pub bs: usize,
    /// Payload GB/s (median of the rounds).
    pub gbps: f64,
    /// Host CPU seconds per GB (median), when the platform tells.
    pub cpu_per_gb: Option<f64>,
}

const WIDTH: u32 = 900;
const PANEL: u32 = 330;
const TITLE: u32 = 40;
const COLORS: [RGBColor; 8] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
];

/// A block size as fio writes one: `4k`, `128k`, `1M`, or bytes.
pub fn size_label(bs: usize) -> String {
    match bs {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{}M", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{}k", b >> 10),
        b => b.to_string(),
    }
}

/// What to draw: the block sizes (increasing), the modes (first-seen order), the axis tops.
struct Layout {
    sizes: Vec<usize>,
    modes: Vec<String>,
    gbps_top: f64,
    cpu_top: f64,
}

impl Layout {
    fn new(points: &[PlotPoint]) -> Self {
        let mut sizes: Vec<usize> = points.iter().map(|p| p.bs).collect();
        sizes.sort_unstable();
        sizes.dedup();
        let mut modes: Vec<String> = Vec::new();
        for p in points {
            if !modes.contains(&p.mode) {
                modes.push(p.mode.clone());
            }
        }
        let top = |v: &mut dyn Iterator<Item = f64>| {
            v.filter(|x| x.is_finite()).fold(0.0f64, f64::max).max(1e-6) * 1.15
        };
        Self {
            gbps_top: top(&mut points.iter().map(|p| p.gbps)),
            cpu_top: top(&mut points.iter().filter_map(|p| p.cpu_per_gb)),
            sizes,
            modes,
        }
    }

    fn x(&self, bs: usize) -> f64 {
        self.sizes.iter().position(|&s| s == bs).unwrap_or(0) as f64
    }

    fn x_range(&self) -> std::ops::Range<f64> {
        -0.5..self.sizes.len() as f64 - 0.5
    }
}

type Result<T> = std::result::Result<T, String>;

/// What a panel shows of a point.
type Value = fn(&PlotPoint) -> Option<f64>;

fn err(e: impl std::fmt::Display) -> String {
    format!("drawing the plot: {e}")
}

/// Draws one SVG: the frame (title, axes, legend) when `mode` is `None`, else only that
/// mode's lines and points, at the same positions.
fn draw(points: &[PlotPoint], l: &Layout, title: &str, mode: Option<usize>) -> Result<String> {
    let mut out = String::new();
    {
        let root =
            SVGBackend::with_string(&mut out, (WIDTH, TITLE + 2 * PANEL)).into_drawing_area();
        let (head, body) = root.split_vertically(TITLE);
        let (upper, lower) = body.split_vertically(PANEL);
        if mode.is_none() {
            root.fill(&WHITE).map_err(err)?;
            head.draw(&Text::new(
                title.to_string(),
                (10, 12),
                ("sans-serif", 16).into_font(),
            ))
            .map_err(err)?;
        }
        let panels: [(_, _, _, Value); 2] = [
            (&upper, "GB/s", l.gbps_top, |p| Some(p.gbps)),
            (&lower, "host CPU s per GB", l.cpu_top, |p| p.cpu_per_gb),
        ];
        for (area, desc, top, value) in panels {
            let mut chart = ChartBuilder::on(area)
                .margin(10)
                .margin_right(150)
                .x_label_area_size(35)
                .y_label_area_size(60)
                .build_cartesian_2d(l.x_range(), 0.0..top)
                .map_err(err)?;
            let Some(m) = mode else {
                let sizes = l.sizes.clone();
                chart
                    .configure_mesh()
                    .x_labels(l.sizes.len().max(2))
                    .x_label_formatter(&move |x| {
                        let i = x.round();
                        if (x - i).abs() < 1e-6 && i >= 0.0 {
                            sizes
                                .get(i as usize)
                                .map(|&b| size_label(b))
                                .unwrap_or_default()
                        } else {
                            String::new()
                        }
                    })
                    .x_desc("block size")
                    .y_desc(desc)
                    .draw()
                    .map_err(err)?;
                // The legend, right of the panel: a colour swatch and the mode per line.
                for (i, name) in l.modes.iter().enumerate() {
                    let color = COLORS[i % COLORS.len()];
                    let y = 20 + 20 * i as i32;
                    let x = WIDTH as i32 - 140;
                    area.draw(&PathElement::new(
                        vec![(x, y), (x + 20, y)],
                        color.stroke_width(3),
                    ))
                    .map_err(err)?;
                    area.draw(&Text::new(
                        name.clone(),
                        (x + 26, y - 6),
                        ("sans-serif", 13).into_font(),
                    ))
                    .map_err(err)?;
                }
                continue;
            };
            let color = COLORS[m % COLORS.len()];
            let mut series: Vec<(f64, f64)> = points
                .iter()
                .filter(|p| p.mode == l.modes[m])
                .filter_map(|p| value(p).filter(|v| v.is_finite()).map(|v| (l.x(p.bs), v)))
                .collect();
            series.sort_by(|a, b| a.0.total_cmp(&b.0));
            chart
                .draw_series(LineSeries::new(series.clone(), color.stroke_width(2)))
                .map_err(err)?;
            chart
                .draw_series(
                    series
                        .iter()
                        .map(|&(x, y)| Circle::new((x, y), 4, color.filled())),
                )
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(out)
}

/// The elements inside an SVG document's root element.
fn inner(svg: &str) -> Result<&str> {
    let start = svg.find("<svg").ok_or_else(|| err("no <svg> element"))?;
    let open_end = start
        + svg[start..]
            .find('>')
            .ok_or_else(|| err("unclosed <svg>"))?
        + 1;
    let close = svg.rfind("</svg>").ok_or_else(|| err("no </svg>"))?;
    svg.get(open_end..close).ok_or_else(|| err("empty <svg>"))
}

/// The comparison as an SVG document: `title` on top, throughput and host CPU per GB panels,
/// one group per mode (`id="series-MODE"`).
///
/// # Errors
///
/// No point to draw, or the drawing failed, as a message.
pub fn comparison_svg(points: &[PlotPoint], title: &str) -> Result<String> {
    if points.is_empty() {
        return Err("nothing to plot".into());
    }
    let l = Layout::new(points);
    let frame = draw(points, &l, title, None)?;
    let close = frame.rfind("</svg>").ok_or_else(|| err("no </svg>"))?;
    let mut svg = frame[..close].to_string();
    for (m, name) in l.modes.iter().enumerate() {
        let id: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let layer = draw(points, &l, title, Some(m))?;
        svg.push_str(&format!(
            "<g id=\"series-{id}\" class=\"series\" data-mode=\"{id}\">\n{}</g>\n",
            inner(&layer)?
        ));
    }
    svg.push_str("</svg>\n");
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points() -> Vec<PlotPoint> {
        let mut v = Vec::new();
        for (i, mode) in ["tcp", "tcp-rr", "nvme-tcp", "iscsi"].iter().enumerate() {
            for (j, bs) in [4096usize, 131072, 1 << 20].iter().enumerate() {
                v.push(PlotPoint {
                    mode: (*mode).into(),
                    bs: *bs,
                    gbps: 1.0 + i as f64 + j as f64,
                    cpu_per_gb: (i != 1).then_some(0.1 * (j + 1) as f64),
                });
            }
        }
        v
    }

    #[test]
    fn one_group_per_mode_in_valid_svg() {
        let svg = comparison_svg(&points(), "perf-compare").expect("svg");
        let doc = roxmltree::Document::parse(&svg).expect("valid XML");
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "svg");
        let groups: Vec<_> = root
            .children()
            .filter(|n| n.attribute("class") == Some("series"))
            .collect();
        let ids: Vec<_> = groups.iter().filter_map(|g| g.attribute("id")).collect();
        assert_eq!(
            ids,
            [
                "series-tcp",
                "series-tcp-rr",
                "series-nvme-tcp",
                "series-iscsi"
            ]
        );
        for g in &groups {
            // Two panels: a line each (tcp-rr has no CPU figure: one line), a mark per size.
            let lines = g
                .descendants()
                .filter(|n| n.has_tag_name("polyline"))
                .count();
            let marks = g.descendants().filter(|n| n.has_tag_name("circle")).count();
            let cpu = g.attribute("id") != Some("series-tcp-rr");
            assert_eq!((lines, marks), if cpu { (2, 6) } else { (1, 3) }, "{g:?}");
        }
        // The axis labels and the legend (tests/info_commands.rs checks them on a real run).
        let texts: Vec<_> = doc.descendants().filter_map(|n| n.text()).collect();
        assert!(texts.iter().any(|t| t.trim() == "1M"), "{texts:?}");
        assert!(comparison_svg(&[], "x").is_err());
        assert_eq!(size_label(1000), "1000");
    }
}
