//! A CSV table built in memory.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;

/// One table: a header and rows of cells.
#[derive(Clone, Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

/// A value that becomes one CSV cell.
pub trait Cell {
    /// The cell's text.
    fn cell(&self) -> String;
}

impl Cell for f64 {
    fn cell(&self) -> String {
        if self.is_finite() {
            let s = format!("{self:.4}");
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            String::new()
        }
    }
}

impl Cell for usize {
    fn cell(&self) -> String {
        self.to_string()
    }
}

impl Cell for u64 {
    fn cell(&self) -> String {
        self.to_string()
    }
}

impl Cell for &str {
    fn cell(&self) -> String {
        (*self).to_owned()
    }
}

impl Cell for String {
    fn cell(&self) -> String {
        self.clone()
    }
}

impl Cell for bool {
    fn cell(&self) -> String {
        self.to_string()
    }
}

impl Table {
    /// A table with these columns.
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row (cells in header order).
    pub fn row(&mut self, cells: &[&dyn Cell]) {
        self.rows.push(cells.iter().map(|c| c.cell()).collect());
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The CSV text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.header.join(","));
        for r in &self.rows {
            let _ = writeln!(out, "{}", r.join(","));
        }
        out
    }

    /// Writes `dir/name`.
    pub fn write(&self, dir: &Path, name: &str) -> anyhow::Result<()> {
        let path = dir.join(name);
        std::fs::write(&path, self.render()).with_context(|| format!("writing {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_header_rows_and_empty_nan() {
        let mut t = Table::new(&["n", "t"]);
        t.row(&[&10usize, &1.5f64]);
        t.row(&[&20usize, &f64::NAN]);
        assert_eq!(t.render(), "n,t\n10,1.5\n20,\n");
    }
}
