//! A benchmark's measured figure against its quality.md target, as every
//! benchmark writes it in the `figures` array of its JSON report.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// Whether a smaller or a larger value is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Lower,
    Higher,
}

/// One measured figure: what a benchmark returns.
#[derive(Debug, Clone)]
pub struct Figure {
    pub name: String,
    pub value: f64,
    pub unit: String,
    /// quality.md's bar; figures without one are context only.
    pub target: Option<f64>,
    pub better: Better,
}

impl Figure {
    /// `Some(true)` when the figure meets its target, `None` without one.
    pub fn pass(&self) -> Option<bool> {
        self.target.map(|t| match self.better {
            Better::Lower => self.value <= t,
            Better::Higher => self.value >= t,
        })
    }

    pub fn verdict(&self) -> &'static str {
        match self.pass() {
            Some(true) => "PASS",
            Some(false) => "MISS",
            None => "info",
        }
    }

    pub fn target_text(&self) -> String {
        match (self.target, self.better) {
            (Some(t), Better::Lower) => format!("<= {} {}", number(t), self.unit),
            (Some(t), Better::Higher) => format!(">= {} {}", number(t), self.unit),
            (None, _) => "-".into(),
        }
    }

    pub fn from_json(v: &Value) -> Result<Self> {
        let better = match v["better"].as_str() {
            Some("lower") => Better::Lower,
            Some("higher") => Better::Higher,
            other => bail!("figure {v}: better must be lower or higher, not {other:?}"),
        };
        Ok(Self {
            name: v["name"].as_str().context("figure without a name")?.into(),
            value: v["value"]
                .as_f64()
                .with_context(|| format!("figure {v}: no value"))?,
            unit: v["unit"].as_str().unwrap_or_default().into(),
            target: v["target"].as_f64(),
            better,
        })
    }

    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name, "value": self.value, "unit": self.unit,
            "target": self.target,
            "better": if self.better == Better::Lower { "lower" } else { "higher" },
            "pass": self.pass(),
        })
    }
}

/// A number as a person writes it: 3 significant digits, no trailing zeros.
pub fn number(v: f64) -> String {
    let digits = if v.abs() >= 100.0 {
        0
    } else if v.abs() >= 10.0 {
        1
    } else if v.abs() >= 1.0 {
        2
    } else {
        3
    };
    let s = format!("{v:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').into()
    } else {
        s
    }
}
