//! `cargo xtask bench relist [--full]`: the relist series — the release
//! `relist_bench` run once per size (1 000 and 10 000 sessions; 100 000 with
//! `--full`), each in its own devserver and control plane, and the growth
//! exponent of the time to all reconciled fitted over the sizes (quality.md
//! via issue 30: ≤ 1.1, linear). The figures keep the single-size targets
//! (10 000: ≤ 5 s, ≤ 96 MiB; 100 000: ≤ 10 s, ≤ 256 MiB); the `plots` are the
//! curves of seconds and peak RSS against sessions (log x).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::plot::{Axis, Level, Plot, Series, growth_exponent};
use crate::{root, run};

/// The sizes every run measures, and the one `--full` adds.
pub const SIZES: &[u64] = &[1_000, 10_000];
pub const FULL_SIZE: u64 = 100_000;
/// quality.md: the fitted exponent of seconds against sessions.
const EXPONENT_TARGET: f64 = 1.1;

/// One size's result, as `relist_bench` writes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub sessions: f64,
    pub seconds: f64,
    pub rss_mib: f64,
}

pub fn run_series(out: &Path, full: bool) -> Result<()> {
    let release = super::release_build()?;
    let mut sizes = SIZES.to_vec();
    if full {
        sizes.push(FULL_SIZE);
    }
    let mut points = Vec::new();
    let mut runs = Vec::new();
    for n in sizes {
        let one = out.with_file_name(format!("relist-{n}.json"));
        run(Command::new(release.join("examples/relist_bench"))
            .current_dir(root())
            .args(["--sessions", &n.to_string(), "--devserver"])
            .arg(release.join("ambient-devserver"))
            .arg("--out")
            .arg(&one))?;
        let report: Value = serde_json::from_str(
            &std::fs::read_to_string(&one).with_context(|| format!("reading {}", one.display()))?,
        )?;
        points.push(point(&report).with_context(|| format!("{}", one.display()))?);
        runs.push(report);
    }
    let report = series_report(&points, runs);
    println!(
        "relist: growth exponent of seconds against sessions {:.2} (target <= {EXPONENT_TARGET})",
        report["growth_exponent"].as_f64().unwrap_or(f64::NAN)
    );
    std::fs::write(out, serde_json::to_string_pretty(&report)?)?;
    println!("wrote {}", out.display());
    Ok(())
}

fn point(report: &Value) -> Result<Point> {
    Ok(Point {
        sessions: report["sessions"].as_f64().context("no sessions")?,
        seconds: report["seconds_to_reconciled"]
            .as_f64()
            .context("no seconds_to_reconciled")?,
        rss_mib: report["peak_rss_mib"].as_f64().context("no peak_rss_mib")?,
    })
}

/// The series report: figures per size with their targets, the fitted
/// exponent, and the two plots.
pub fn series_report(points: &[Point], runs: Vec<Value>) -> Value {
    let exponent = growth_exponent(&xy(points, |p| p.seconds));
    let mut figures = Vec::new();
    for p in points {
        let target = |at_10k: f64, at_100k: f64| {
            if p.sessions > 10_000.0 {
                json!(at_100k)
            } else if p.sessions >= 10_000.0 {
                json!(at_10k)
            } else {
                Value::Null
            }
        };
        figures.push(json!({"name": format!("{} sessions reconciled", p.sessions), "value": p.seconds, "unit": "s", "target": target(5.0, 10.0), "better": "lower"}));
        figures.push(json!({"name": format!("{} sessions: control-plane peak RSS", p.sessions), "value": p.rss_mib, "unit": "MiB", "target": target(96.0, 256.0), "better": "lower"}));
    }
    if let Some(k) = exponent {
        figures.push(json!({"name": "growth exponent of seconds vs sessions", "value": k, "unit": "", "target": EXPONENT_TARGET, "better": "lower"}));
    }
    let sessions = Axis::new("sessions in the devserver", "", true);
    let plots = [
        Plot {
            id: "relist-seconds".into(),
            title: match exponent {
                Some(k) => format!("relist: start → all reconciled (fitted growth x^{k:.2})"),
                None => "relist: start → all reconciled".into(),
            },
            x: sessions.clone(),
            y: Axis::new("time to all reconciled", "s", true),
            series: vec![Series {
                name: "ambient-control-plane".into(),
                points: xy(points, |p| p.seconds),
            }],
            levels: vec![
                Level {
                    name: "target 10 000:".into(),
                    value: 5.0,
                },
                Level {
                    name: "target 100 000:".into(),
                    value: 10.0,
                },
            ],
        },
        Plot {
            id: "relist-rss".into(),
            title: "relist: control-plane peak RSS".into(),
            x: sessions,
            y: Axis::new("peak RSS", "MiB", true),
            series: vec![Series {
                name: "ambient-control-plane".into(),
                points: xy(points, |p| p.rss_mib),
            }],
            levels: vec![
                Level {
                    name: "target 10 000:".into(),
                    value: 96.0,
                },
                Level {
                    name: "target 100 000:".into(),
                    value: 256.0,
                },
            ],
        },
    ];
    json!({
        "growth_exponent": exponent,
        "runs": runs,
        "figures": figures,
        "plots": plots.iter().map(Plot::to_json).collect::<Vec<_>>(),
    })
}

fn xy(points: &[Point], y: impl Fn(&Point) -> f64) -> Vec<(f64, f64)> {
    points.iter().map(|p| (p.sessions, y(p))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::figure::Figure;

    #[test]
    fn the_series_report_has_targets_per_size_the_exponent_and_two_plots() -> Result<()> {
        let p = |sessions, seconds, rss_mib| Point {
            sessions,
            seconds,
            rss_mib,
        };
        let report = series_report(
            &[p(1e3, 0.12, 14.0), p(1e4, 1.0, 31.0), p(1e5, 11.0, 200.0)],
            vec![],
        );
        let figures = report["figures"]
            .as_array()
            .context("figures")?
            .iter()
            .map(Figure::from_json)
            .collect::<Result<Vec<_>>>()?;
        let verdicts: Vec<(&str, &str)> = figures
            .iter()
            .map(|f| (f.name.as_str(), f.verdict()))
            .collect();
        assert_eq!(
            verdicts,
            [
                ("1000 sessions reconciled", "info"),
                ("1000 sessions: control-plane peak RSS", "info"),
                ("10000 sessions reconciled", "PASS"),
                ("10000 sessions: control-plane peak RSS", "PASS"),
                ("100000 sessions reconciled", "MISS"),
                ("100000 sessions: control-plane peak RSS", "PASS"),
                ("growth exponent of seconds vs sessions", "PASS"),
            ]
        );
        let k = report["growth_exponent"].as_f64().context("exponent")?;
        assert!(k > 0.95 && k < 1.1, "{k}");
        let plots = report["plots"].as_array().context("plots")?;
        let plots = plots
            .iter()
            .map(Plot::from_json)
            .collect::<Result<Vec<_>>>()?;
        assert_eq!(plots.len(), 2);
        assert!(
            plots
                .iter()
                .all(|p| p.x.log && p.series[0].points.len() == 3)
        );
        Ok(())
    }
}
