//! Reports: a Markdown page (machine, parameters, a summary of ours against
//! the baseline, the tables of every step, what the ratios mean) and the same
//! figures as JSON.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::machine::Machine;
use crate::stats::Stats;

/// A table: a header row and rows of cells.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Table {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows, as many cells as columns.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these columns.
    pub fn new(columns: &[&str]) -> Self {
        Self { columns: columns.iter().map(|c| (*c).to_owned()).collect(), rows: Vec::new() }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.columns.len(), "a row has a cell per column");
        self.rows.push(cells);
    }

    /// The table in Markdown.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "| {} |", self.columns.join(" | "));
        let _ = writeln!(out, "|{}", "---|".repeat(self.columns.len()));
        for row in &self.rows {
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
        out
    }

    /// The usual columns of measured steps.
    pub fn of_steps<'a>(steps: impl IntoIterator<Item = &'a Stats>) -> Self {
        let mut table = Table::new(&[
            "target",
            "concurrency",
            "offered/s",
            "achieved/s",
            "errors",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms",
            "CPU busy (cores)",
        ]);
        for step in steps {
            table.row(vec![
                step.label.clone(),
                step.concurrency.to_string(),
                step.offered_per_sec.map_or_else(|| "max".into(), rate),
                rate(step.per_sec),
                errors(step),
                ms(step.latency.p50_ms),
                ms(step.latency.p90_ms),
                ms(step.latency.p99_ms),
                ms(step.latency.p999_ms),
                ms(step.latency.max_ms),
                format!("{:.2}", step.cpu_busy_cores),
            ]);
        }
        table
    }
}

/// One section of a report.
#[derive(Debug, Clone, Serialize)]
pub struct Section {
    /// Heading.
    pub title: String,
    /// The figures.
    pub table: Table,
    /// Lines under the table.
    pub notes: Vec<String>,
}

/// The report of one scenario run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The scenario's name (and the results' file name).
    pub scenario: String,
    /// One line saying what was measured.
    pub title: String,
    /// Where.
    pub machine: Machine,
    /// When (UTC, RFC 3339).
    pub measured_at: String,
    /// The commit of the workspace, if git knows it (`+` if it has changes).
    pub commit: Option<String>,
    /// The run's parameters.
    pub parameters: Vec<(String, String)>,
    /// Ours against the baseline.
    pub summary: Table,
    /// Further tables.
    pub sections: Vec<Section>,
    /// What the figures mean and how they were made.
    pub notes: Vec<String>,
    /// The raw figures (every step).
    pub raw: serde_json::Value,
}

/// Where a report was written.
#[derive(Debug, Clone)]
pub struct Written {
    /// The Markdown text.
    pub markdown: String,
    /// Its file.
    pub markdown_path: PathBuf,
    /// The JSON file.
    pub json_path: PathBuf,
}

impl Report {
    /// An empty report of `scenario`.
    pub fn new(scenario: &str, title: impl Into<String>, machine: Machine) -> Self {
        Self {
            scenario: scenario.to_owned(),
            title: title.into(),
            machine,
            measured_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            commit: commit(),
            parameters: Vec::new(),
            summary: Table::new(&["measure", "ours", "baseline", "ours / baseline", "goal"]),
            sections: Vec::new(),
            notes: Vec::new(),
            raw: serde_json::Value::Null,
        }
    }

    /// Adds a parameter.
    pub fn parameter(&mut self, name: &str, value: impl ToString) {
        self.parameters.push((name.to_owned(), value.to_string()));
    }

    /// Adds a summary row.
    pub fn compare(&mut self, measure: &str, ours: String, baseline: String, ratio: f64, goal: &str) {
        self.summary.row(vec![measure.to_owned(), ours, baseline, format!("{ratio:.2}"), goal.to_owned()]);
    }

    /// Adds a section.
    pub fn section(&mut self, title: &str, table: Table, notes: Vec<String>) {
        self.sections.push(Section { title: title.to_owned(), table, notes });
    }

    /// The report in Markdown.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# {} — {}\n", self.scenario, self.title);
        let _ = writeln!(out, "Machine: {}.  ", self.machine.describe());
        let commit = self.commit.as_deref().map(|c| format!(", commit {c}")).unwrap_or_default();
        let _ = writeln!(out, "Measured {}{commit}.  ", self.measured_at);
        let parameters: Vec<String> = self.parameters.iter().map(|(k, v)| format!("{k} = {v}")).collect();
        let _ = writeln!(out, "Parameters: {}.\n", parameters.join(", "));
        let _ = writeln!(out, "## Summary\n\n{}", self.summary.markdown());
        for section in &self.sections {
            let _ = writeln!(out, "## {}\n\n{}", section.title, section.table.markdown());
            for note in &section.notes {
                let _ = writeln!(out, "{note}\n");
            }
        }
        if !self.notes.is_empty() {
            let _ = writeln!(out, "## Method\n");
            for note in &self.notes {
                let _ = writeln!(out, "- {note}");
            }
        }
        out
    }

    /// Writes `<scenario>.md` and `<scenario>.json` into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<Written> {
        std::fs::create_dir_all(dir)?;
        let markdown = self.markdown();
        let markdown_path = dir.join(format!("{}.md", self.scenario));
        let json_path = dir.join(format!("{}.json", self.scenario));
        std::fs::write(&markdown_path, &markdown)?;
        std::fs::write(&json_path, serde_json::to_string_pretty(self)? + "\n")?;
        Ok(Written { markdown, markdown_path, json_path })
    }
}

/// The workspace's commit, `+` when the work tree has changes.
fn commit() -> Option<String> {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let head = git(&["rev-parse", "--short", "HEAD"])?;
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(if dirty { format!("{head}+") } else { head })
}

/// A step's failed requests, and those it never sent: `3 (+12 unsent)`.
pub fn errors(stats: &Stats) -> String {
    match stats.unsent {
        0 => stats.errors.to_string(),
        unsent => format!("{} (+{unsent} unsent)", stats.errors),
    }
}

/// A rate, e.g. `12,345`.
pub fn rate(per_sec: f64) -> String {
    thousands(per_sec.round() as u64)
}

/// Milliseconds with two decimals.
pub fn ms(ms: f64) -> String {
    format!("{ms:.2}")
}

/// An integer with thousands separators.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn markdown_tables() {
        let mut table = Table::new(&["a", "b"]);
        table.row(vec!["1".into(), "2".into()]);
        assert_eq!(table.markdown(), "| a | b |\n|---|---|\n| 1 | 2 |\n");
    }
}
