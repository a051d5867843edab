//! Prometheus text expositions, checked against the format's grammar and,
//! when it is installed, by the Prometheus Python client's parser.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};

/// The samples of a Prometheus text exposition, checked line by line
/// against the format's grammar (version 0.0.4):
///
/// ```text
/// # HELP name docstring
/// # TYPE name counter|gauge|histogram|summary|untyped
/// name{label="value",...} value [timestamp]
/// ```
#[derive(Debug)]
pub struct Exposition {
    /// `name{labels}` (labels sorted, as written) → value.
    pub samples: HashMap<String, f64>,
}

fn is_name(s: &str, colon: bool) -> bool {
    let mut chars = s.chars();
    let ok_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':');
    let ok_rest = |c: char| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':');
    matches!(chars.next(), Some(c) if ok_first(c)) && chars.all(ok_rest)
}

fn is_value(s: &str) -> bool {
    matches!(s, "+Inf" | "-Inf" | "NaN") || s.parse::<f64>().is_ok()
}

impl Exposition {
    /// [`Exposition::parse`] followed by [`Exposition::cross_check`].
    #[track_caller]
    pub fn checked(text: &str) -> Exposition {
        let exposition = Exposition::parse(text);
        exposition.cross_check(text);
        exposition
    }

    /// Parses `text`, panicking at the first line that breaks the grammar,
    /// at a sample whose family has no `TYPE` before it, at a second `TYPE`
    /// for a family and at a series given twice.
    #[track_caller]
    pub fn parse(text: &str) -> Exposition {
        assert!(text.ends_with('\n'), "ends with a line feed");
        let mut samples = HashMap::new();
        let mut types: HashMap<String, String> = HashMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# ") {
                let mut parts = rest.splitn(3, ' ');
                let (kind, name) = (parts.next().unwrap(), parts.next().unwrap_or(""));
                assert!(is_name(name, true), "metric name in {line:?}");
                match kind {
                    "HELP" => {}
                    "TYPE" => {
                        let t = parts.next().unwrap_or("");
                        assert!(
                            ["counter", "gauge", "histogram", "summary", "untyped"].contains(&t),
                            "type in {line:?}"
                        );
                        assert!(
                            types.insert(name.to_owned(), t.to_owned()).is_none(),
                            "one TYPE per family: {line:?}"
                        );
                    }
                    _ => panic!("comment lines are HELP or TYPE here: {line:?}"),
                }
                continue;
            }
            assert!(!line.is_empty(), "no empty lines");
            let (series, value) = Exposition::sample(line);
            let name = series.split('{').next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
                })
                .unwrap_or(name);
            assert!(types.contains_key(family), "TYPE before {line:?}");
            assert!(
                samples.insert(series.clone(), value).is_none(),
                "one sample per series: {line:?}"
            );
        }
        Exposition { samples }
    }

    /// `(series, value)` of a sample line.
    #[track_caller]
    fn sample(line: &str) -> (String, f64) {
        let name_end = line
            .find(['{', ' '])
            .unwrap_or_else(|| panic!("no value: {line:?}"));
        let name = &line[..name_end];
        assert!(is_name(name, true), "name in {line:?}");
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(after) = rest.strip_prefix('{') {
            rest = after;
            loop {
                if let Some(after) = rest.strip_prefix('}') {
                    rest = after;
                    break;
                }
                let eq = rest
                    .find('=')
                    .unwrap_or_else(|| panic!("label in {line:?}"));
                let label = &rest[..eq];
                assert!(is_name(label, false), "label name {label:?} in {line:?}");
                rest = rest[eq + 1..]
                    .strip_prefix('"')
                    .unwrap_or_else(|| panic!("quoted label value in {line:?}"));
                let mut value = String::new();
                let mut chars = rest.char_indices();
                let end = loop {
                    match chars.next() {
                        Some((i, '"')) => break i,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) => value.push('\n'),
                            Some((_, c @ ('\\' | '"'))) => value.push(c),
                            other => panic!("escape {other:?} in {line:?}"),
                        },
                        Some((_, '\n')) | None => panic!("unterminated value in {line:?}"),
                        Some((_, c)) => value.push(c),
                    }
                };
                labels.push(format!("{label}=\"{value}\""));
                rest = &rest[end + 1..];
                rest = rest.strip_prefix(',').unwrap_or(rest);
            }
        }
        let mut fields = rest
            .strip_prefix(' ')
            .unwrap_or_else(|| panic!("space before the value in {line:?}"))
            .split(' ');
        let value = fields.next().unwrap();
        assert!(is_value(value), "value {value:?} in {line:?}");
        if let Some(ts) = fields.next() {
            assert!(ts.parse::<i64>().is_ok(), "timestamp in {line:?}");
        }
        assert!(fields.next().is_none(), "trailing fields in {line:?}");
        let series = if labels.is_empty() {
            name.to_owned()
        } else {
            format!("{name}{{{}}}", labels.join(","))
        };
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or(f64::NAN),
        };
        (series, value)
    }

    /// Checks the text with a second, independent parser, the Prometheus
    /// Python client's (`prometheus_client.parser`), when it is installed:
    /// it must find the very same samples. With
    /// `PISTACHIO_REQUIRE_PROMETHEUS_PARSER=1` a missing parser fails.
    #[track_caller]
    pub fn cross_check(&self, text: &str) {
        const SCRIPT: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join('%s="%s"' % (k, v) for k, v in s.labels.items())
        out[s.name + ("{" + labels + "}" if labels else "")] = s.value
print(json.dumps(out))
"#;
        if !crate::tools::has_python_module(
            "prometheus_client.parser",
            "prometheus-client",
            "PISTACHIO_REQUIRE_PROMETHEUS_PARSER",
        ) {
            return;
        }
        let mut child = Command::new("python3")
            .args(["-c", SCRIPT])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "prometheus_client refused the exposition: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        let theirs: HashMap<String, f64> = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(theirs, self.samples, "the two parsers disagree");
    }

    /// The value of `series` (`name{labels}`, labels as written); panics,
    /// listing the series there are, if there is none.
    #[track_caller]
    pub fn get(&self, series: &str) -> f64 {
        match self.samples.get(series) {
            Some(v) => *v,
            None => {
                let mut known: Vec<_> = self.samples.keys().collect();
                known.sort();
                panic!("no sample {series}; have {known:#?}")
            }
        }
    }
}
