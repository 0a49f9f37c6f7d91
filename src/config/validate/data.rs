//! A scenario's data file, once read: CSV with a header row, or a JSON array of objects, into
//! columns and rows; each column name must be usable as a `${variable}`. No I/O here (the load
//! phase, [`super::load_files`], reads the file), so every rule is tested on text.

use std::path::Path;

/// The rows of a data file, each with one value per column (empty where a JSON object lacks
/// the key).
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// Why a data file's text is not a usable table. `file` is the path as the user gave it,
/// resolved, so the message says which file.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("not a JSON array of objects: {0}")]
    Json(#[from] serde_json::Error),
    #[error("not valid CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("{} has no rows", .0.display())]
    NoRows(std::path::PathBuf),
    #[error("column {column:?} appears twice in {}", .file.display())]
    DuplicateColumn {
        column: String,
        file: std::path::PathBuf,
    },
    #[error("column name {0:?} is not usable as a variable")]
    BadColumn(String),
}

/// Parse `text`, the content of `file`: JSON when the name ends in `.json`, else CSV.
pub fn parse(text: &str, file: &Path) -> Result<Table, DataError> {
    let is_json = file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let table = if is_json { json(text)? } else { csv(text)? };
    if table.rows.is_empty() {
        return Err(DataError::NoRows(file.to_path_buf()));
    }
    for (i, c) in table.columns.iter().enumerate() {
        if table.columns[..i].contains(c) {
            return Err(DataError::DuplicateColumn {
                column: c.clone(),
                file: file.to_path_buf(),
            });
        }
        if !super::valid_label(c) || c.contains('.') {
            return Err(DataError::BadColumn(c.clone()));
        }
    }
    Ok(table)
}

/// The columns are every key of every object, in the order they first appear.
fn json(text: &str) -> Result<Table, DataError> {
    let objs: Vec<serde_json::Map<String, serde_json::Value>> = serde_json::from_str(text)?;
    let mut columns: Vec<String> = Vec::new();
    for o in &objs {
        for k in o.keys() {
            if !columns.contains(k) {
                columns.push(k.clone());
            }
        }
    }
    let rows = objs
        .iter()
        .map(|o| {
            columns
                .iter()
                .map(|c| match o.get(c) {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(v) => v.to_string(),
                    None => String::new(),
                })
                .collect()
        })
        .collect();
    Ok(Table { columns, rows })
}

fn csv(text: &str) -> Result<Table, DataError> {
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    let columns = rdr
        .headers()?
        .iter()
        .map(|s| s.trim().to_string())
        .collect();
    let rows = rdr
        .records()
        .map(|r| r.map(|r| r.iter().map(str::to_string).collect()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Table { columns, rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str, file: &str) -> String {
        parse(text, Path::new(file)).unwrap_err().to_string()
    }

    #[test]
    fn csv_and_json_give_columns_and_rows() {
        let t = parse("user, pass\nal,1\nbo,2\n", Path::new("d.csv")).unwrap();
        assert_eq!(t.columns, vec!["user", "pass"]);
        assert_eq!(t.rows, vec![vec!["al", "1"], vec!["bo", "2"]]);
        let t = parse(r#"[{"a":"x","n":3},{"b":true}]"#, Path::new("d.JSON")).unwrap();
        assert_eq!(t.columns, vec!["a", "n", "b"]);
        assert_eq!(t.rows, vec![vec!["x", "3", ""], vec!["", "", "true"]]);
    }

    #[test]
    fn bad_tables_say_why() {
        assert!(err("{}", "d.json").starts_with("not a JSON array of objects: "));
        assert!(err("a,b\n1,2,3\n", "d.csv").starts_with("not valid CSV: "));
        assert_eq!(err("a,b\n", "d.csv"), "d.csv has no rows");
        assert_eq!(
            err("a,a\n1,2\n", "d.csv"),
            "column \"a\" appears twice in d.csv"
        );
        assert_eq!(
            err("a.b\n1\n", "d.csv"),
            "column name \"a.b\" is not usable as a variable"
        );
        assert_eq!(
            err("[{\"\": 1}]", "d.json"),
            "column name \"\" is not usable as a variable"
        );
    }
}
