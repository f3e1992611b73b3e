//! A benchmark's series: how a cost grows with the work, as a benchmark
//! writes it in the optional `plots` array of its JSON report beside its
//! `figures`. One [`Plot`] is one line chart (`line_chart`): named series of
//! (x, y) points sharing two labelled axes, and the horizontal lines they are
//! read against (a target, or a limit such as the raw RSA decrypt rate).
//!
//! Several series share a plot by name, so another variant of the same
//! measurement (e.g. a second exchange protocol) joins a chart by adding one
//! entry to `series`.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// One axis: what it measures, its unit, and whether it is logarithmic.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    pub label: String,
    pub unit: String,
    pub log: bool,
}

/// One named line of points, in the order they are drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A horizontal line at `value` on the y axis: a target or a limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Level {
    pub name: String,
    pub value: f64,
}

/// One line chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Plot {
    /// The chart's file name without `.svg`: `docs/bench/<id>.svg`.
    pub id: String,
    pub title: String,
    pub x: Axis,
    pub y: Axis,
    pub series: Vec<Series>,
    pub levels: Vec<Level>,
}

impl Axis {
    pub fn new(label: &str, unit: &str, log: bool) -> Self {
        Self {
            label: label.into(),
            unit: unit.into(),
            log,
        }
    }

    /// `label (unit)`, or the label alone without a unit.
    pub fn caption(&self) -> String {
        let scale = if self.log { ", log scale" } else { "" };
        if self.unit.is_empty() {
            format!("{}{scale}", self.label)
        } else {
            format!("{} ({}){scale}", self.label, self.unit)
        }
    }

    fn from_json(v: &Value) -> Result<Self> {
        Ok(Self {
            label: v["label"].as_str().context("axis without a label")?.into(),
            unit: v["unit"].as_str().unwrap_or_default().into(),
            log: v["log"].as_bool().unwrap_or(false),
        })
    }

    fn to_json(&self) -> Value {
        json!({"label": self.label, "unit": self.unit, "log": self.log})
    }
}

impl Plot {
    pub fn from_json(v: &Value) -> Result<Self> {
        let id = v["id"].as_str().context("plot without an id")?;
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            bail!("plot id {id:?} is not a file name (letters, digits, - and _)");
        }
        let x = Axis::from_json(&v["x"]).with_context(|| format!("plot {id}: x"))?;
        let y = Axis::from_json(&v["y"]).with_context(|| format!("plot {id}: y"))?;
        let mut series = Vec::new();
        for s in v["series"].as_array().into_iter().flatten() {
            let name = s["name"].as_str().context("series without a name")?;
            let mut points = Vec::new();
            for p in s["points"].as_array().into_iter().flatten() {
                let (Some(px), Some(py)) = (p[0].as_f64(), p[1].as_f64()) else {
                    bail!("plot {id}, series {name}: point {p} is not [x, y]");
                };
                points.push((px, py));
            }
            series.push(Series {
                name: name.into(),
                points,
            });
        }
        let mut levels = Vec::new();
        for l in v["levels"].as_array().into_iter().flatten() {
            levels.push(Level {
                name: l["name"].as_str().context("level without a name")?.into(),
                value: l["value"].as_f64().context("level without a value")?,
            });
        }
        Ok(Self {
            id: id.into(),
            title: v["title"].as_str().unwrap_or(id).into(),
            x,
            y,
            series,
            levels,
        })
    }

    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id, "title": self.title,
            "x": self.x.to_json(), "y": self.y.to_json(),
            "series": self.series.iter().map(|s| json!({
                "name": s.name,
                "points": s.points.iter().map(|(x, y)| json!([x, y])).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "levels": self.levels.iter().map(|l| json!({"name": l.name, "value": l.value})).collect::<Vec<_>>(),
        })
    }

    /// Every x of every series, ascending, once each.
    pub fn xs(&self) -> Vec<f64> {
        let mut xs: Vec<f64> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .collect();
        xs.sort_by(f64::total_cmp);
        xs.dedup();
        xs
    }
}

/// The exponent `k` of the power law `y = c·x^k` fitted to `points` by least
/// squares on `ln y` against `ln x`: 1 is linear growth, 2 quadratic. `None`
/// with fewer than two usable points (both coordinates positive) or when
/// every x is the same.
pub fn growth_exponent(points: &[(f64, f64)]) -> Option<f64> {
    let logs: Vec<(f64, f64)> = points
        .iter()
        .filter(|(x, y)| *x > 0.0 && *y > 0.0)
        .map(|(x, y)| (x.ln(), y.ln()))
        .collect();
    if logs.len() < 2 {
        return None;
    }
    let n = logs.len() as f64;
    let mx = logs.iter().map(|p| p.0).sum::<f64>() / n;
    let my = logs.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = logs.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = logs.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_growth_exponent_of_power_laws() {
        let linear = [(1e3, 0.1), (1e4, 1.0), (1e5, 10.0)];
        assert!((growth_exponent(&linear).unwrap_or(0.0) - 1.0).abs() < 1e-9);
        let quadratic = [(1.0, 3.0), (2.0, 12.0), (4.0, 48.0)];
        assert!((growth_exponent(&quadratic).unwrap_or(0.0) - 2.0).abs() < 1e-9);
        let flat = [(10.0, 5.0), (100.0, 5.0)];
        assert!(growth_exponent(&flat).unwrap_or(1.0).abs() < 1e-9);
        // A fixed start-up cost makes small sizes look sub-linear.
        let with_setup = [(1e3, 0.3), (1e4, 1.2), (1e5, 10.2)];
        let k = growth_exponent(&with_setup).unwrap_or(0.0);
        assert!(k > 0.7 && k < 1.0, "{k}");
    }

    #[test]
    fn no_exponent_without_two_distinct_positive_points() {
        assert_eq!(growth_exponent(&[]), None);
        assert_eq!(growth_exponent(&[(1e3, 1.0)]), None);
        assert_eq!(growth_exponent(&[(1e3, 1.0), (1e3, 2.0)]), None);
        assert_eq!(growth_exponent(&[(0.0, 1.0), (1e3, 0.0), (1e4, 1.0)]), None);
    }

    #[test]
    fn plots_read_back_what_they_write() -> Result<()> {
        let plot = Plot {
            id: "token-exchange-throughput".into(),
            title: "exchanges/s".into(),
            x: Axis::new("concurrent clients", "", true),
            y: Axis::new("throughput", "/s", false),
            series: vec![Series {
                name: "v2".into(),
                points: vec![(1.0, 200.0), (4.0, 700.0)],
            }],
            levels: vec![Level {
                name: "raw RSA decrypts".into(),
                value: 900.0,
            }],
        };
        assert_eq!(Plot::from_json(&plot.to_json())?, plot);
        assert_eq!(plot.x.caption(), "concurrent clients, log scale");
        assert_eq!(plot.y.caption(), "throughput (/s)");
        Ok(())
    }

    #[test]
    fn malformed_plots_are_refused() {
        let axis = json!({"label": "n", "unit": ""});
        for bad in [
            json!({"id": "../x", "x": axis, "y": axis}),
            json!({"id": "", "x": axis, "y": axis}),
            json!({"x": axis, "y": axis}),
            json!({"id": "p", "y": axis}),
            json!({"id": "p", "x": axis, "y": axis, "series": [{"name": "s", "points": [[1]]}]}),
            json!({"id": "p", "x": axis, "y": axis, "levels": [{"name": "l"}]}),
        ] {
            assert!(Plot::from_json(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn xs_are_the_union_of_every_series() {
        let s = |name: &str, points: Vec<(f64, f64)>| Series {
            name: name.into(),
            points,
        };
        let plot = Plot {
            id: "p".into(),
            title: "p".into(),
            x: Axis::new("n", "", false),
            y: Axis::new("t", "s", false),
            series: vec![
                s("a", vec![(4.0, 1.0), (1.0, 1.0)]),
                s("b", vec![(16.0, 1.0), (4.0, 2.0)]),
            ],
            levels: vec![],
        };
        assert_eq!(plot.xs(), vec![1.0, 4.0, 16.0]);
    }
}
