//! Plain-text tables and human units for terminal output.

/// A table whose first column is left-aligned and the others right-aligned (numbers), unless
/// marked with [`Table::left`].
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    left: Vec<usize>,
}

impl Table {
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Table {
        Table {
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
            left: vec![0],
        }
    }

    /// Left-align these columns too (text rather than numbers).
    pub fn left(mut self, cols: &[usize]) -> Table {
        self.left.extend_from_slice(cols);
        self
    }

    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self) -> String {
        let cols = self.header.len();
        let mut width = vec![0; cols];
        for r in std::iter::once(&self.header).chain(&self.rows) {
            for (i, c) in r.iter().enumerate().take(cols) {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let mut out = String::new();
        for r in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, w) in width.iter().enumerate() {
                let c = r.get(i).map(String::as_str).unwrap_or("");
                let pad = w - c.chars().count();
                if i > 0 {
                    line.push_str("  ");
                }
                if self.left.contains(&i) {
                    line.push_str(c);
                    line.push_str(&" ".repeat(pad));
                } else {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(c);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Nanoseconds in the largest unit that keeps 3 significant digits.
pub fn ns(v: u64) -> String {
    let f = v as f64;
    if v < 1_000 {
        format!("{v} ns")
    } else if v < 1_000_000 {
        format!("{:.3} µs", f / 1e3)
    } else if v < 1_000_000_000 {
        format!("{:.3} ms", f / 1e6)
    } else {
        format!("{:.3} s", f / 1e9)
    }
}

/// Decimal byte count with a human suffix, keeping the exact value visible.
pub fn bytes(v: u64) -> String {
    if v < 10_000 {
        format!("{v} B")
    } else if v < 10_000_000 {
        format!("{:.1} kB", v as f64 / 1e3)
    } else if v < 10_000_000_000 {
        format!("{:.1} MB", v as f64 / 1e6)
    } else {
        format!("{:.1} GB", v as f64 / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns() {
        let mut t = Table::new(["name", "n"]);
        t.row(["a", "1"]);
        t.row(["long", "100"]);
        assert_eq!(t.render(), "name    n\na       1\nlong  100\n");
    }

    #[test]
    fn text_columns_can_be_left_aligned() {
        let t = Table::new(["a", "b", "c"]).left(&[2]);
        let mut t = t;
        t.row(["x", "1", "long text"]);
        t.row(["y", "22", "t"]);
        assert_eq!(t.render(), "a   b  c\nx   1  long text\ny  22  t\n");
    }

    #[test]
    fn units() {
        assert_eq!(ns(999), "999 ns");
        assert_eq!(ns(1_500), "1.500 µs");
        assert_eq!(ns(2_000_000_000), "2.000 s");
        assert_eq!(bytes(1_000_000), "1000.0 kB");
        assert_eq!(bytes(12), "12 B");
    }
}
