//! The Prometheus text exposition format (version 0.0.4), written by hand: HELP and TYPE
//! lines per family, then `name{label="value",...} value` samples.
//!
//! Owns: escaping (HELP text: backslash and newline; label values: also double quote) and
//! number formatting. Must never: emit a family twice or a sample outside its family — the
//! `family` call is the only way to start one, and the caller passes each family once.

use std::fmt::Write as _;

/// The TYPE of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// A text exposition being written.
#[derive(Debug, Default)]
pub struct Encoder {
    out: String,
}

/// One family being written; samples go through it so they carry the family's name.
pub struct Family<'a> {
    out: &'a mut String,
    name: &'a str,
}

/// Whether `name` is a valid metric or label name (`[a-zA-Z_:][a-zA-Z0-9_:]*`; label names
/// may not use `:` but none of ours do).
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn escape_help(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

impl Encoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a family: its HELP and TYPE lines.
    pub fn family<'a>(&'a mut self, name: &'a str, kind: Kind, help: &str) -> Family<'a> {
        debug_assert!(valid_name(name), "bad metric name {name:?}");
        debug_assert!(
            kind != Kind::Counter || name.ends_with("_total"),
            "counter {name} must end in _total"
        );
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        escape_help(&mut self.out, help);
        self.out.push('\n');
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
        Family {
            out: &mut self.out,
            name,
        }
    }

    pub fn finish(self) -> String {
        self.out
    }
}

impl Family<'_> {
    fn head(&mut self, labels: &[(&str, &str)]) {
        self.out.push_str(self.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                debug_assert!(valid_name(k), "bad label name {k:?}");
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                escape_label_value(self.out, v);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
    }

    /// An integer sample, written exactly (a u64 past 2^53 would lose digits as an f64).
    pub fn int(&mut self, labels: &[(&str, &str)], value: u64) -> &mut Self {
        self.head(labels);
        let _ = writeln!(self.out, "{value}");
        self
    }

    /// A floating-point sample (`NaN`, `+Inf`, `-Inf` spelled as Prometheus parses them).
    pub fn float(&mut self, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.head(labels);
        if value.is_nan() {
            self.out.push_str("NaN\n");
        } else if value.is_infinite() {
            self.out
                .push_str(if value > 0.0 { "+Inf\n" } else { "-Inf\n" });
        } else {
            let _ = writeln!(self.out, "{value}");
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_has_help_type_and_samples() {
        let mut e = Encoder::new();
        e.family("shardcast_x_total", Kind::Counter, "Things.")
            .int(&[], 3)
            .int(&[("shard", "0"), ("reason", "garbage")], u64::MAX);
        e.family("shardcast_y", Kind::Gauge, "Ratio.")
            .float(&[], 0.5)
            .float(&[("a", "b")], f64::INFINITY)
            .float(&[("a", "c")], f64::NAN);
        assert_eq!(
            e.finish(),
            "# HELP shardcast_x_total Things.\n\
             # TYPE shardcast_x_total counter\n\
             shardcast_x_total 3\n\
             shardcast_x_total{shard=\"0\",reason=\"garbage\"} 18446744073709551615\n\
             # HELP shardcast_y Ratio.\n\
             # TYPE shardcast_y gauge\n\
             shardcast_y 0.5\n\
             shardcast_y{a=\"b\"} +Inf\n\
             shardcast_y{a=\"c\"} NaN\n"
        );
    }

    #[test]
    fn label_values_escape_backslash_quote_and_newline() {
        let mut e = Encoder::new();
        e.family("m", Kind::Gauge, "h")
            .int(&[("route", "a\\b\"c\nd")], 1);
        let text = e.finish();
        assert!(text.ends_with("m{route=\"a\\\\b\\\"c\\nd\"} 1\n"), "{text}");
        // Every sample stays on one line.
        assert_eq!(text.lines().count(), 3);
    }

    #[test]
    fn help_escapes_backslash_and_newline_but_not_quotes() {
        let mut e = Encoder::new();
        e.family("m", Kind::Gauge, "a \"b\" c\\d\ne");
        assert_eq!(e.finish(), "# HELP m a \"b\" c\\\\d\\ne\n# TYPE m gauge\n");
    }

    #[test]
    fn names_are_checked() {
        assert!(valid_name("shardcast_rtp_in_total"));
        assert!(valid_name("_x:y"));
        assert!(!valid_name(""));
        assert!(!valid_name("1abc"));
        assert!(!valid_name("a-b"));
        assert!(!valid_name("a b"));
    }
}
