//! `cargo xtask bench all`: every benchmark of quality.md in one run. Each
//! benchmark writes `target/bench/<name>.json` with a `figures` array of
//! [`Figure`]s (the image sizes come from `build-images` here); this prints a
//! progress line per benchmark and one line per figure with its target and
//! PASS/MISS, writes `target/bench/summary.json` and `summary.md`, and draws
//! one SVG chart per benchmark (`chart`). A benchmark may also write `plots`
//! (`plot`): how a cost grows with the work, each drawn as a line chart
//! (`line_chart`) and tabled in the summary. `--full` also runs the sizes
//! too slow for every run (relist at 100 000 sessions). `--redraw` runs
//! nothing: it reads the JSON each benchmark last wrote and draws again.
//! `--record` also
//! copies the summary to `BENCHMARKS.md` and the charts to `docs/bench/`.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::chart;
use super::figure::{Better, Figure, number};
use super::line_chart;
use super::plot::Plot;
use crate::images::{self, Options};
use crate::root;

/// The benchmarks `all` runs, in order, with what each measures.
const ALL: &[(&str, &str)] = &[
    (
        "token-exchange",
        "token exchange vs raw RSA decrypts, latency, flood",
    ),
    (
        "session-tokens",
        "session tokens signed, from the cache, verified per second",
    ),
    (
        "reconcile",
        "session created → pod requested, process runtime",
    ),
    (
        "relist",
        "1 000 and 10 000 sessions (--full: 100 000) relisted and reconciled, no-op runtime",
    ),
    (
        "mcp-sidecar",
        "ambient-mcp cold start, idle RSS, tool-call overhead",
    ),
    (
        "credential-bridge",
        "credential-entrypoint vs mcp-proxy RSS, rotation",
    ),
    ("runner-messages", "runner-client push → watch latency"),
    ("gateway", "session gateway push → watch, REST GET overhead"),
    ("image-sizes", "compressed size of every image"),
];

/// One benchmark's outcome.
#[derive(Debug)]
struct Outcome {
    bench: &'static str,
    about: &'static str,
    seconds: f64,
    result: Result<Vec<Figure>>,
    plots: Vec<Plot>,
}

/// `cargo xtask bench all [--record] [--full]`.
pub fn all(args: &[String]) -> Result<()> {
    let (mut record, mut full, mut redraw) = (false, false, false);
    for arg in args {
        match arg.as_str() {
            "--record" => record = true,
            "--full" => full = true,
            "--redraw" => redraw = true,
            other => {
                bail!("bench all takes only --record, --full and --redraw, got {other:?}")
            }
        }
    }
    let dir = root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let started = Instant::now();
    let date = utc_now();
    let load_at_start = load_average();
    let mut outcomes = Vec::new();
    for (i, (bench, about)) in ALL.iter().enumerate() {
        println!("bench all: [{}/{}] {bench}: {about}", i + 1, ALL.len());
        let t0 = Instant::now();
        let (result, plots) = match run_one(bench, &dir, full, redraw) {
            Ok((figures, plots)) => (Ok(figures), plots),
            Err(e) => (Err(e), vec![]),
        };
        let seconds = t0.elapsed().as_secs_f64();
        match &result {
            Ok(figures) => println!(
                "bench all: [{}/{}] {bench}: {} figures in {seconds:.0} s",
                i + 1,
                ALL.len(),
                figures.len()
            ),
            Err(e) => println!(
                "bench all: [{}/{}] {bench}: FAILED after {seconds:.0} s: {e:#}",
                i + 1,
                ALL.len()
            ),
        }
        outcomes.push(Outcome {
            bench,
            about,
            seconds,
            result,
            plots,
        });
    }
    let total = started.elapsed().as_secs_f64();
    println!("\nbench all: {} benchmarks in {total:.0} s", outcomes.len());
    for o in &outcomes {
        for f in o.result.as_deref().unwrap_or_default() {
            println!(
                "{:<4} {:<18} {:<32} {:>12} {:<7} target {}",
                f.verdict(),
                o.bench,
                f.name,
                number(f.value),
                f.unit,
                f.target_text()
            );
        }
    }
    let command = std::iter::once("cargo xtask bench all")
        .chain(args.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ");
    write_summary(&dir, &date, &command, total, &outcomes)?;
    let charts = draw_charts(&dir, &outcomes)?;
    let machine = format!(
        "{}; load average {load_at_start} at the start, {} at the end",
        machine(),
        load_average()
    );
    let markdown = summary_markdown(&date, &command, &machine, total, &outcomes, &charts);
    std::fs::write(dir.join("summary.md"), &markdown)?;
    println!(
        "wrote target/bench/summary.json, summary.md and {} charts",
        charts.len()
    );
    if record {
        let docs = root().join("docs/bench");
        std::fs::create_dir_all(&docs)?;
        for chart in &charts {
            std::fs::copy(dir.join(chart), docs.join(chart))?;
        }
        std::fs::write(root().join("BENCHMARKS.md"), &markdown)?;
        println!("recorded BENCHMARKS.md and docs/bench/");
    }
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.result.is_err())
        .map(|o| o.bench)
        .collect();
    if !failed.is_empty() {
        bail!(
            "benchmarks that did not run to the end: {}",
            failed.join(", ")
        );
    }
    Ok(())
}

/// Runs one benchmark and reads its figures and plots back.
fn run_one(bench: &str, dir: &Path, full: bool, redraw: bool) -> Result<(Vec<Figure>, Vec<Plot>)> {
    if bench == "image-sizes" && !redraw {
        return Ok((image_sizes(dir)?, vec![]));
    }
    let mut args = vec![bench.to_owned()];
    if full && bench == "relist" {
        args.push("--full".into());
    }
    if !redraw {
        super::bench(&args)?;
    }
    let file = dir.join(format!("{bench}.json"));
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("{bench} wrote no {}", file.display()))?;
    let report: Value = serde_json::from_str(&text)?;
    let figures = report["figures"]
        .as_array()
        .with_context(|| format!("{} has no figures array", file.display()))?
        .iter()
        .map(Figure::from_json)
        .collect::<Result<_>>()?;
    let plots = report["plots"]
        .as_array()
        .into_iter()
        .flatten()
        .map(Plot::from_json)
        .collect::<Result<_>>()
        .with_context(|| format!("{}: plots", file.display()))?;
    Ok((figures, plots))
}

/// Every image built (`build-images`, credential-entrypoint onto the
/// runner-client image as a stand-in base); compressed size each.
fn image_sizes(dir: &Path) -> Result<Vec<Figure>> {
    let out = dir.join("images");
    let mut built = images::build(&Options {
        out: Some(out.clone()),
        ..Options::default()
    })?;
    if let Some(base) = built.iter().find(|b| b.name == "ambient-runner-client") {
        let base = Some(base.layout.clone());
        built.extend(images::build(&Options {
            out: Some(out),
            only: vec!["credential-entrypoint".into()],
            base,
            ..Options::default()
        })?);
    }
    let figures: Vec<Figure> = built
        .iter()
        .map(|b| Figure {
            name: b.name.into(),
            value: b.compressed_bytes as f64 / (1024.0 * 1024.0),
            unit: "MiB".into(),
            // quality.md bounds the sidecar image; the others are context.
            target: (b.name == "ambient-mcp").then_some(20.0),
            better: Better::Lower,
        })
        .collect();
    std::fs::write(
        dir.join("image-sizes.json"),
        serde_json::to_string_pretty(&json!({
            "figures": figures.iter().map(Figure::to_json).collect::<Vec<_>>(),
        }))?,
    )?;
    Ok(figures)
}

fn write_summary(
    dir: &Path,
    date: &str,
    command: &str,
    total: f64,
    outcomes: &[Outcome],
) -> Result<()> {
    let benches: Vec<Value> = outcomes
        .iter()
        .map(|o| match &o.result {
            Ok(figures) => json!({
                "bench": o.bench, "about": o.about, "seconds": o.seconds,
                "figures": figures.iter().map(Figure::to_json).collect::<Vec<_>>(),
                "plots": o.plots.iter().map(Plot::to_json).collect::<Vec<_>>(),
            }),
            Err(e) => json!({
                "bench": o.bench, "about": o.about, "seconds": o.seconds,
                "error": format!("{e:#}"),
            }),
        })
        .collect();
    let summary = json!({
        "date": date,
        "command": command,
        "seconds": total,
        "benches": benches,
    });
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_string_pretty(&summary)? + "\n",
    )?;
    Ok(())
}

/// One bar chart per benchmark that returned figures, `<bench>.svg` in
/// `dir`, then one line chart per plot, `<plot id>.svg`.
fn draw_charts(dir: &Path, outcomes: &[Outcome]) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for o in outcomes {
        let Ok(figures) = &o.result else { continue };
        if figures.is_empty() {
            continue;
        }
        let name = format!("{}.svg", o.bench);
        std::fs::write(dir.join(&name), chart::svg(o.bench, figures))?;
        names.push(name);
    }
    for plot in outcomes.iter().flat_map(|o| &o.plots) {
        let name = format!("{}.svg", plot.id);
        std::fs::write(dir.join(&name), line_chart::svg(plot))?;
        names.push(name);
    }
    Ok(names)
}

/// A plot as a Markdown table: a row per x, a column per series.
fn plot_table(plot: &Plot) -> String {
    let mut md = format!("**{}**\n\n| {} |", plot.title, plot.x.caption());
    for series in &plot.series {
        let _ = write!(md, " {} |", unit_caption(&series.name, &plot.y.unit));
    }
    md.push_str("\n|---|");
    md.push_str(&"---:|".repeat(plot.series.len()));
    md.push('\n');
    for x in plot.xs() {
        let _ = write!(md, "| {} |", number(x));
        for series in &plot.series {
            match series.points.iter().find(|p| p.0 == x) {
                Some((_, y)) => {
                    let _ = write!(md, " {} |", number(*y));
                }
                None => md.push_str(" - |"),
            }
        }
        md.push('\n');
    }
    for level in &plot.levels {
        let _ = writeln!(
            md,
            "\n{} {} {}",
            level.name,
            number(level.value),
            plot.y.unit
        );
    }
    md
}

fn unit_caption(name: &str, unit: &str) -> String {
    if unit.is_empty() {
        name.to_owned()
    } else {
        format!("{name} ({unit})")
    }
}

/// The machine a run measured: cores and memory.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))?
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0);
    format!("{cores} cores, {:.0} GiB", mem_kib as f64 / 1024.0 / 1024.0)
}

/// The 1-minute load average (`/proc/loadavg`), `?` where there is none:
/// other work on the machine shows in every figure.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn summary_markdown(
    date: &str,
    command: &str,
    machine: &str,
    total: f64,
    outcomes: &[Outcome],
    charts: &[String],
) -> String {
    let mut md = String::from("# Benchmarks\n\n");
    let _ = writeln!(
        md,
        "Latest run: {date}, `{command}` on this project's \
         development machine ({machine}), {total:.0} s in all. \
         Targets are quality.md's; ratios are measured side by side in one run. \
         `target/bench/summary.json` has the same figures; each benchmark's own JSON \
         (`target/bench/<name>.json`) has the detail.\n"
    );
    md.push_str("| benchmark | figure | value | target | |\n|---|---|---:|---|---|\n");
    for o in outcomes {
        match &o.result {
            Ok(figures) => {
                for f in figures {
                    let _ = writeln!(
                        md,
                        "| {} | {} | {} {} | {} | {} |",
                        o.bench,
                        f.name,
                        number(f.value),
                        f.unit,
                        f.target_text(),
                        f.verdict()
                    );
                }
            }
            Err(e) => {
                let reason = format!("{e:#}").replace('|', "\\|").replace('\n', " ");
                let _ = writeln!(md, "| {} | did not run: {reason} | | | |", o.bench);
            }
        }
    }
    md.push('\n');
    for chart in charts {
        let _ = writeln!(md, "![{chart}](docs/bench/{chart})\n");
        let id = chart.trim_end_matches(".svg");
        if let Some(plot) = outcomes.iter().flat_map(|o| &o.plots).find(|p| p.id == id) {
            let _ = writeln!(md, "{}", plot_table(plot));
        }
    }
    md
}

/// The current UTC time as `YYYY-MM-DD HH:MM UTC` (no date crate needed).
fn utc_now() -> String {
    civil(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    )
}

/// Seconds since the Unix epoch as `YYYY-MM-DD HH:MM UTC`.
fn civil(secs: u64) -> String {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fig(value: f64, target: Option<f64>, better: Better) -> Figure {
        Figure {
            name: "f".into(),
            value,
            unit: "ms".into(),
            target,
            better,
        }
    }

    #[test]
    fn pass_and_miss_follow_the_direction_of_better() {
        assert_eq!(fig(4.0, Some(5.0), Better::Lower).verdict(), "PASS");
        assert_eq!(fig(6.0, Some(5.0), Better::Lower).verdict(), "MISS");
        assert_eq!(fig(0.9, Some(0.85), Better::Higher).verdict(), "PASS");
        assert_eq!(fig(0.8, Some(0.85), Better::Higher).verdict(), "MISS");
        assert_eq!(fig(1.0, None, Better::Higher).verdict(), "info");
    }

    #[test]
    fn figures_read_back_from_a_benchmark_report() -> Result<()> {
        let v =
            json!({"name": "p99", "value": 12.5, "unit": "ms", "target": 25.0, "better": "lower"});
        let f = Figure::from_json(&v)?;
        assert_eq!(
            (f.value, f.target, f.better),
            (12.5, Some(25.0), Better::Lower)
        );
        assert_eq!(f.target_text(), "<= 25 ms");
        let no_target =
            json!({"name": "x", "value": 1, "unit": "", "target": null, "better": "higher"});
        assert_eq!(Figure::from_json(&no_target)?.target, None);
        assert!(Figure::from_json(&json!({"name": "x", "value": 1, "better": "up"})).is_err());
        assert!(Figure::from_json(&json!({"name": "x", "better": "lower"})).is_err());
        Ok(())
    }

    #[test]
    fn numbers_are_written_with_three_significant_digits() {
        assert_eq!(number(1234.56), "1235");
        assert_eq!(number(12.34), "12.3");
        assert_eq!(number(0.8512), "0.851");
        assert_eq!(number(20.0), "20");
    }

    #[test]
    fn a_plot_is_tabled_with_a_row_per_x_and_a_column_per_series() {
        use crate::bench::plot::{Axis, Level, Series};
        let plot = Plot {
            id: "token-exchange-throughput".into(),
            title: "exchanges/s".into(),
            x: Axis::new("concurrent clients", "", true),
            y: Axis::new("throughput", "/s", false),
            series: vec![
                Series {
                    name: "v2".into(),
                    points: vec![(1.0, 210.0), (4.0, 700.4)],
                },
                Series {
                    name: "v3".into(),
                    points: vec![(4.0, 9000.0)],
                },
            ],
            levels: vec![Level {
                name: "raw RSA decrypts".into(),
                value: 900.0,
            }],
        };
        let md = plot_table(&plot);
        assert!(
            md.contains("| concurrent clients, log scale | v2 (/s) | v3 (/s) |"),
            "{md}"
        );
        assert!(md.contains("|---|---:|---:|"), "{md}");
        assert!(md.contains("| 1 | 210 | - |\n| 4 | 700 | 9000 |"), "{md}");
        assert!(md.contains("raw RSA decrypts 900 /s"), "{md}");
    }

    #[test]
    fn epoch_seconds_become_calendar_dates() {
        assert_eq!(civil(0), "1970-01-01 00:00 UTC");
        assert_eq!(civil(951_827_696), "2000-02-29 12:34 UTC");
        assert_eq!(civil(1_798_761_599), "2026-12-31 23:59 UTC");
    }

    #[test]
    fn the_summary_says_what_machine_and_load_it_measured_on() {
        let load = load_average();
        assert!(load.parse::<f64>().is_ok(), "{load}");
        let machine = machine();
        assert!(
            machine.contains(" cores, ") && !machine.starts_with("0 "),
            "{machine}"
        );
        let md = summary_markdown(
            "2026-01-01 00:00 UTC",
            "cargo xtask bench all --record",
            "2 cores, 24 GiB; load average 0.5",
            60.0,
            &[],
            &[],
        );
        assert!(md.contains("(2 cores, 24 GiB; load average 0.5)"), "{md}");
    }
}
