//! One table file's entry in the template's `changes.tables`: its two versions compared.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::{cut, Column, Table, TableError, TableFormat, NAME_CHARS};

/// At most this many columns in each of `added`, `removed` and `retyped`; `*_more` counts the
/// rest.
pub const COLUMNS_LISTED: usize = 200;

/// Whether the file is new in this revision or changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableStatus {
    /// Only the current revision has it.
    Added,
    /// Both have it, with different content.
    Modified,
}

impl TableStatus {
    /// The template's `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "added",
            Self::Modified => "modified",
        }
    }
}

/// A table file that was added or modified, with what each version said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableChange {
    /// The logical key.
    pub path: String,
    /// Its format.
    pub format: TableFormat,
    /// The previous version (none for an added file).
    pub before: Option<Result<Table, TableError>>,
    /// The current version.
    pub after: Result<Table, TableError>,
}

impl TableChange {
    /// Added or modified: whether there was a previous version.
    pub fn status(&self) -> TableStatus {
        if self.before.is_some() {
            TableStatus::Modified
        } else {
            TableStatus::Added
        }
    }

    /// The template's entry:
    ///
    /// ```json
    /// {"path": "data/readings.parquet", "format": "parquet", "status": "modified",
    ///  "rows": {"before": 1200, "after": 1300},
    ///  "columns": {"count": 14,
    ///              "added": [{"name": "station_id", "type": "int64"}], "added_more": 0,
    ///              "removed": [{"name": "note", "type": "string"}], "removed_more": 0,
    ///              "retyped": [{"name": "value", "before": "int32", "after": "double"}],
    ///              "retyped_more": 0},
    ///  "error": null}
    /// ```
    /// Lists hold at most [`COLUMNS_LISTED`] columns, in file order (`removed`: the previous
    /// version's); `*_more` counts the others. An added file lists nothing (`count` says how
    /// many columns it has). CSV/TSV types are null. When a version could not be read, `error`
    /// says why, its `rows` (and, for the current one, `count`) are null and nothing is listed.
    pub fn to_json(&self) -> Value {
        let before = self.before.as_ref().and_then(|b| b.as_ref().ok());
        let after = self.after.as_ref().ok();
        let lists = match (&self.before, after) {
            (Some(Ok(b)), Some(a)) => ColumnChanges::between(b, a),
            _ => ColumnChanges::default(),
        };
        json!({
            "path": self.path,
            "format": self.format.name(),
            "status": self.status().as_str(),
            "rows": {
                "before": before.and_then(|t| t.rows),
                "after": after.and_then(|t| t.rows),
            },
            "columns": {
                "count": after.map(|t| t.columns.len()),
                "added": lists.added.values,
                "added_more": lists.added.more,
                "removed": lists.removed.values,
                "removed_more": lists.removed.more,
                "retyped": lists.retyped.values,
                "retyped_more": lists.retyped.more,
            },
            "error": self.error(),
        })
    }

    /// Why a version could not be read, if one could not.
    fn error(&self) -> Option<String> {
        let previous = match &self.before {
            Some(Err(e)) => Some(format!("the previous version: {e}")),
            _ => None,
        };
        match (&self.after, previous) {
            (Err(e), Some(p)) => Some(format!("{e}; {p}")),
            (Err(e), None) => Some(e.to_string()),
            (Ok(_), p) => p,
        }
    }
}

/// The first [`COLUMNS_LISTED`] columns of one kind of change, and how many others.
#[derive(Debug, Default)]
struct Listed {
    values: Vec<Value>,
    more: usize,
}

impl Listed {
    /// Adds one; `value` is only made while the list has room.
    fn push(&mut self, value: impl FnOnce() -> Value) {
        if self.values.len() < COLUMNS_LISTED {
            self.values.push(value());
        } else {
            self.more += 1;
        }
    }
}

/// Columns added, removed and retyped, as template values.
#[derive(Debug, Default)]
struct ColumnChanges {
    added: Listed,
    removed: Listed,
    retyped: Listed,
}

/// Columns by name; a repeated name (CSV allows it) is told apart by its occurrence.
fn keyed(columns: &[Column]) -> Vec<((&str, usize), &Column)> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    columns
        .iter()
        .map(|column| {
            let n = seen.entry(column.name.as_str()).or_insert(0);
            let key = (column.name.as_str(), *n);
            *n += 1;
            (key, column)
        })
        .collect()
}

fn shown(data_type: Option<&String>) -> Value {
    data_type.map_or(Value::Null, |t| Value::String(cut(t, NAME_CHARS)))
}

impl ColumnChanges {
    fn between(before: &Table, after: &Table) -> Self {
        let old = keyed(&before.columns);
        let new = keyed(&after.columns);
        let old_by_key: HashMap<_, _> = old.iter().copied().collect();
        let new_by_key: HashMap<_, _> = new.iter().copied().collect();
        let mut changes = Self::default();
        for (key, column) in &new {
            match old_by_key.get(key) {
                None => changes.added.push(|| {
                    json!({
                        "name": cut(&column.name, NAME_CHARS),
                        "type": shown(column.data_type.as_ref()),
                    })
                }),
                Some(was) if was.data_type != column.data_type => changes.retyped.push(|| {
                    json!({
                        "name": cut(&column.name, NAME_CHARS),
                        "before": shown(was.data_type.as_ref()),
                        "after": shown(column.data_type.as_ref()),
                    })
                }),
                Some(_) => {}
            }
        }
        for (key, column) in &old {
            if !new_by_key.contains_key(key) {
                changes.removed.push(|| {
                    json!({
                        "name": cut(&column.name, NAME_CHARS),
                        "type": shown(column.data_type.as_ref()),
                    })
                });
            }
        }
        changes
    }
}
