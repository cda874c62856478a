//! Samples by name, medians, and the report's rows.

use std::collections::BTreeMap;

use kcore_bench::median;

/// Samples keyed like `q35/kcore/ready`.
#[derive(Default)]
pub struct Stats(BTreeMap<String, Vec<f64>>);

impl Stats {
    pub fn add(&mut self, key: impl Into<String>, v: f64) {
        self.0.entry(key.into()).or_default().push(v);
    }

    /// The median of `key`'s samples (NaN when there are none).
    pub fn med(&self, key: &str) -> f64 {
        let mut v = self.0.get(key).cloned().unwrap_or_default();
        median(&mut v)
    }

    /// The keys that start with `prefix`, without it.
    pub fn keys_under(&self, prefix: &str) -> Vec<String> {
        self.0
            .keys()
            .filter_map(|k| k.strip_prefix(prefix).map(str::to_string))
            .collect()
    }
}

/// A number for the tables: "-" when not measured.
pub fn num(v: f64, decimals: usize) -> String {
    if v.is_nan() {
        "-".into()
    } else {
        format!("{v:.decimals$}")
    }
}

/// a / b for the tables: "-" when either is missing.
pub fn ratio(a: f64, b: f64) -> String {
    if a.is_nan() || b.is_nan() || b == 0.0 {
        "-".into()
    } else {
        format!("{:.2}", a / b)
    }
}

/// One row: a label, then right-aligned columns.
pub fn row(label: &str, cols: &[String]) {
    let mut line = format!("{label:<34}");
    for c in cols {
        line.push_str(&format!(" {c:>11}"));
    }
    println!("{}", line.trim_end());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_keys_and_ratios() {
        let mut s = Stats::default();
        for v in [3.0, 1.0, 2.0] {
            s.add("a", v);
        }
        assert_eq!(s.med("a"), 2.0);
        s.add("b/x", 1.0);
        assert_eq!(s.keys_under("b/"), vec!["x".to_string()]);
        assert!(s.med("none").is_nan());
        assert_eq!(ratio(1.0, 4.0), "0.25");
        assert_eq!(ratio(1.0, f64::NAN), "-");
        assert_eq!(num(f64::NAN, 1), "-");
    }
}
