//! Policy files: TOML holding any number of documents as arrays of tables named by kind
//! (`[[route]]`, `[[retry]]`, ...). Every error names the file, the document and the field.

use std::collections::BTreeSet;
use std::fmt;

use super::spec::{BodyError, PolicyBody};
use super::{Kind, MAX_BODY_BYTES};

/// Why a policy file was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct FileError {
    /// The file, as the user named it.
    pub file: String,
    /// Which document: `route "web-canary"`, or `route #2` when it has no usable name.
    pub document: Option<String>,
    /// The field at fault, as a dotted path.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(d) = &self.document {
            write!(f, ": {d}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field `{field}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Parses and validates every document of a policy file. `file` names it in errors.
pub fn parse_file(file: &str, text: &str) -> Result<Vec<PolicyBody>, FileError> {
    let err = |document: Option<String>, field: Option<String>, message: String| FileError {
        file: file.to_owned(),
        document,
        field,
        message,
    };
    let table: toml::Table =
        toml::from_str(text).map_err(|e| err(None, None, e.to_string().trim_end().to_owned()))?;
    let mut docs = Vec::new();
    let mut seen = BTreeSet::new();
    for (key, value) in &table {
        let kind = Kind::parse(key)
            .filter(|k| Kind::ALL.contains(k))
            .ok_or_else(|| {
                let hint = if Kind::parse(key).is_some() {
                    "; revocations are made with `murmur cert revoke`, token uses by issuers"
                } else {
                    ""
                };
                err(
                    None,
                    None,
                    format!(
                        "unknown kind `{key}`; the kinds are {}{hint}",
                        Kind::names()
                    ),
                )
            })?;
        let toml::Value::Array(items) = value else {
            return Err(err(
                None,
                None,
                format!("`{key}` must be an array of tables: write [[{key}]]"),
            ));
        };
        for (i, item) in items.iter().enumerate() {
            let label = document_label(kind, i, item);
            let body = PolicyBody::from_value(kind, item.clone()).map_err(|e| {
                let (field, message) = split_body_error(&e);
                err(Some(label.clone()), field, message)
            })?;
            let size = body.to_json().len();
            if size > MAX_BODY_BYTES {
                return Err(err(
                    Some(label),
                    None,
                    format!(
                        "document is {size} bytes once encoded; the limit is {MAX_BODY_BYTES} \
                         bytes: split it into several documents"
                    ),
                ));
            }
            if !seen.insert((kind, body.name().clone())) {
                return Err(err(
                    Some(label),
                    Some("name".into()),
                    "appears twice in this file".into(),
                ));
            }
            docs.push(body);
        }
    }
    Ok(docs)
}

fn document_label(kind: Kind, index: usize, item: &toml::Value) -> String {
    match item.get("name").and_then(toml::Value::as_str) {
        Some(name) => format!("{kind} {name:?}"),
        None => format!("{kind} #{}", index + 1),
    }
}

/// Splits a body error into the field it names and the message.
pub fn split_body_error(e: &BodyError) -> (Option<String>, String) {
    match e {
        BodyError::Field(f) => (Some(f.field.clone()), f.message.clone()),
        BodyError::Shape(msg) => shape_field(msg),
    }
}

/// serde messages say "missing field `x`", "unknown field `x`, expected ..." or
/// "invalid type: ..., expected ...", followed by "in `path`" when nested.
fn shape_field(msg: &str) -> (Option<String>, String) {
    let (message, path) = match msg.rsplit_once("\nin `") {
        Some((m, rest)) => (
            m.trim(),
            rest.trim_end().strip_suffix('`').map(str::to_owned),
        ),
        None => (msg.trim(), None),
    };
    // For missing and unknown fields the name is the field; elsewhere the path already is.
    let named = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|p| message.strip_prefix(p))
        .and_then(|rest| rest.split_once('`'))
        .map(|(f, _)| f.to_owned());
    let field = match (path, named) {
        (Some(p), Some(n)) => Some(format!("{p}.{n}")),
        (p, n) => p.or(n),
    };
    (field, message.to_owned())
}

#[cfg(test)]
mod tests;
