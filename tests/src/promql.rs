//! Which metrics a PromQL expression reads, and the expressions of the shipped alert rules and
//! dashboard (deploy/prometheus/), so a test can check them against a node's `/metrics`.

use std::collections::BTreeSet;
use std::path::Path;

/// Words of PromQL that look like identifiers but are not metric names (besides [`GROUPING`]).
const KEYWORDS: &[&str] = &["and", "or", "unless", "bool", "offset", "inf", "nan"];

/// Keywords followed by a list of label names in parentheses.
const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The metric names `expr` selects: identifiers outside strings, label matchers, ranges and
/// grouping clauses that are not function calls or keywords.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let cleaned = strip_grouping(&strip_enclosed(&strip_strings(expr)));
    let chars: Vec<char> = cleaned.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() || c == '.' {
            // A number (or a duration such as 5m): skip the whole token.
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            continue;
        }
        if !(c.is_ascii_alphabetic() || c == '_' || c == ':') {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len()
            && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
        {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        let next = chars[i..].iter().find(|c| !c.is_whitespace());
        let is_call = next == Some(&'(');
        let lower = word.to_ascii_lowercase();
        let keyword = KEYWORDS.contains(&lower.as_str()) || GROUPING.contains(&lower.as_str());
        if !is_call && !keyword {
            names.insert(word);
        }
    }
    names
}

fn strip_strings(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut quote = None;
    let mut escaped = false;
    for c in expr.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None if matches!(c, '"' | '\'' | '`') => quote = Some(c),
            None => out.push(c),
        }
    }
    out
}

/// Removes `{...}` (label matchers) and `[...]` (ranges, subqueries).
fn strip_enclosed(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut depth = 0usize;
    for c in expr.chars() {
        match c {
            '{' | '[' => depth += 1,
            '}' | ']' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// Removes the label lists of the [`GROUPING`] keywords: `by (...)`, `on (...)`, ...
fn strip_grouping(expr: &str) -> String {
    let mut out = expr.to_owned();
    for kw in GROUPING {
        let mut from = 0;
        while let Some(pos) = find_word(&out[from..], kw).map(|p| p + from) {
            let after = pos + kw.len();
            let rest = &out[after..];
            let trimmed = rest.trim_start();
            if trimmed.starts_with('(')
                && let Some(close) = trimmed.find(')')
            {
                let end = after + (rest.len() - trimmed.len()) + close + 1;
                out.replace_range(pos..end, " ");
                from = pos;
            } else {
                from = after;
            }
        }
    }
    out
}

fn find_word(hay: &str, word: &str) -> Option<usize> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut from = 0;
    while let Some(p) = hay[from..].find(word).map(|p| p + from) {
        let before = hay[..p].chars().next_back();
        let after = hay[p + word.len()..].chars().next();
        if !before.is_some_and(is_ident) && !after.is_some_and(is_ident) {
            return Some(p);
        }
        from = p + word.len();
    }
    None
}

/// A rules file read for its expressions and the names it records.
#[derive(Debug, Default)]
pub struct Rules {
    /// Every `expr:` value, multi-line blocks joined.
    pub exprs: Vec<String>,
    /// Names defined by `record:`.
    pub recorded: BTreeSet<String>,
    /// How many rules (`- alert:` or `- record:`) the file has.
    pub rules: usize,
}

/// Reads `expr:` values (one line, or a `|`/`>` block) and `record:` names from a Prometheus
/// rules file. Enough for our own file, whose header says to keep this shape; the caller
/// checks that every rule yielded one expression.
pub fn read_rules(path: &Path) -> Rules {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let lines: Vec<&str> = text.lines().collect();
    let mut rules = Rules::default();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix("- record:") {
            rules.recorded.insert(rest.trim().to_owned());
            rules.rules += 1;
        } else if t.starts_with("- alert:") {
            rules.rules += 1;
        } else if let Some(rest) = t.strip_prefix("expr:") {
            let rest = rest.trim();
            if rest.starts_with('|') || rest.starts_with('>') {
                let own = indent(line);
                let mut block = Vec::new();
                while i + 1 < lines.len()
                    && (lines[i + 1].trim().is_empty() || indent(lines[i + 1]) > own)
                {
                    i += 1;
                    block.push(lines[i].trim());
                }
                rules.exprs.push(block.join(" "));
            } else {
                rules
                    .exprs
                    .push(rest.trim_matches(|c| c == '"' || c == '\'').to_owned());
            }
        }
        i += 1;
    }
    rules
}

/// Every PromQL query of a Grafana dashboard: panel `expr`s, and the metric of each
/// `label_values(metric, label)` variable query (returned as that metric).
pub fn dashboard_queries(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let dash: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    let mut out = Vec::new();
    collect_exprs(&dash["panels"], &mut out);
    for var in dash["templating"]["list"].as_array().into_iter().flatten() {
        let query = var["query"]["query"].as_str().or(var["query"].as_str());
        if let Some(inner) = query
            .and_then(|q| q.strip_prefix("label_values("))
            .and_then(|q| q.strip_suffix(')'))
        {
            let metric = inner.rsplit_once(',').map_or(inner, |(m, _)| m);
            out.push(metric.trim().to_owned());
        }
    }
    out
}

fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            if let Some(e) = map.get("expr").and_then(|e| e.as_str()) {
                out.push(e.to_owned());
            }
            map.values().for_each(|v| collect_exprs(v, out));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

/// Sample names in a Prometheus text exposition, and the families its `# TYPE` lines declare.
pub fn exposition_names(text: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut samples = BTreeSet::new();
    let mut declared = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some(name) = rest.split_whitespace().next() {
                declared.insert(name.to_owned());
            }
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            samples.insert(line[..end].to_owned());
        }
    }
    (samples, declared)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(expr: &str) -> Vec<String> {
        metric_names(expr).into_iter().collect()
    }

    #[test]
    fn metric_names_skip_functions_labels_strings_ranges_and_grouping() {
        let e = r#"sum by (service, le) (rate(murmur_request_duration_seconds_bucket{direction="outbound",service=~"$service"}[$__rate_interval])) / on (service) group_left (x) sum without (peer) (murmur_requests_total offset 5m) > bool 14.4 * 0.001 and up == 0"#;
        assert_eq!(
            names(e),
            vec![
                "murmur_request_duration_seconds_bucket",
                "murmur_requests_total",
                "up"
            ]
        );
        assert_eq!(
            names("min(murmur_x) - time() < 14 * 86400"),
            vec!["murmur_x"]
        );
        assert_eq!(
            names("murmur:service_errors:ratio_rate5m > 1e-3"),
            vec!["murmur:service_errors:ratio_rate5m"]
        );
        assert_eq!(
            names(r#"count(count by (digest) (murmur_policy_digest_info{digest!="a\"b"}))"#),
            vec!["murmur_policy_digest_info"]
        );
    }

    #[test]
    fn exposition_names_tell_samples_from_declarations() {
        let text = "# HELP murmur_a_total A.\n# TYPE murmur_a_total counter\n# TYPE murmur_h histogram\nmurmur_h_bucket{le=\"0.1\"} 1\nmurmur_b 3\n";
        let (samples, declared) = exposition_names(text);
        assert_eq!(
            samples.into_iter().collect::<Vec<_>>(),
            vec!["murmur_b", "murmur_h_bucket"]
        );
        assert_eq!(
            declared.into_iter().collect::<Vec<_>>(),
            vec!["murmur_a_total", "murmur_h"]
        );
    }
}
