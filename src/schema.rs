//! Table definitions: which Log Analytics table a record becomes, its columns and their
//! types, and where each column's value comes from in the raw record.
//!
//! The definitions are the JSON files under `schemas/tables/` (plus `schemas/common.json`,
//! the columns every resource-log table has), embedded at build time by `build.rs`. The
//! parser reads them to build rows; the KQL checker reads them to type queries. Adding a
//! table is adding a file.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;

use crate::value::Type;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/tables.rs"));
}

/// Index of a table in [`Schemas::tables`].
pub type TableId = usize;

/// How records are routed to a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableKind {
    /// Selected by the record's `category`.
    ResourceLog,
    /// Platform metrics: selected by the presence of `metricName`.
    Metric,
    /// The activity log: selected by `category` among the table's categories.
    ActivityLog,
}

/// Values the parser computes rather than looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Derive {
    Time,
    Table,
    ResourceId,
    ResourceIdRaw,
    SubscriptionId,
    ResourceGroup,
    ResourceProvider,
    ResourceName,
    Category,
    TenantId,
}

/// Where a column's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnSource {
    /// The column name, case-insensitively, in `properties` and then at the top level.
    ByName,
    /// Paths tried in order (lower-cased segments; `properties` is the decoded properties).
    Paths(Vec<Vec<String>>),
    Derived(Derive),
}

#[derive(Debug, Clone)]
pub struct Column {
    pub name: Arc<str>,
    pub ty: Type,
    pub source: ColumnSource,
    pub description: String,
}

#[derive(Debug, Clone)]
pub struct Table {
    pub name: Arc<str>,
    pub kind: TableKind,
    pub description: String,
    pub categories: Vec<String>,
    pub columns: Vec<Column>,
    by_name: HashMap<Arc<str>, usize>,
}

impl Table {
    /// Column index by exact (case-sensitive, as in KQL) name.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// The column whose name matches case-insensitively, for "did you mean" hints.
    pub fn column_ignore_case(&self, name: &str) -> Option<&Column> {
        self.columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// Index of the `TimeGenerated` column; every table has one.
    pub fn time_column(&self) -> usize {
        self.column("TimeGenerated")
            .expect("validated at load: every table has TimeGenerated")
    }
}

/// All tables, with the lookups the parser needs per record.
#[derive(Debug)]
pub struct Schemas {
    pub tables: Vec<Table>,
    by_name: HashMap<String, TableId>,
    /// Lower-cased category → table.
    by_category: HashMap<String, TableId>,
    metric_table: Option<TableId>,
}

#[derive(Debug, thiserror::Error)]
#[error("schema {file}: {message}")]
pub struct SchemaError {
    pub file: String,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TableFile {
    #[serde(rename = "$schema", default)]
    _schema: Option<String>,
    table: String,
    #[serde(default)]
    description: String,
    kind: TableKind,
    #[serde(default)]
    categories: Vec<String>,
    columns: Vec<ColumnFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommonFile {
    #[serde(rename = "$schema", default)]
    _schema: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    description: String,
    columns: Vec<ColumnFile>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct ColumnFile {
    name: String,
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    from: Option<Vec<String>>,
    #[serde(default)]
    derive: Option<Derive>,
}

impl Schemas {
    /// The tables embedded at build time. Panics only if a shipped schema file is invalid,
    /// which a unit test rules out.
    pub fn embedded() -> Arc<Schemas> {
        static CELL: std::sync::OnceLock<Arc<Schemas>> = std::sync::OnceLock::new();
        CELL.get_or_init(|| {
            let files: Vec<(String, String)> = embedded::TABLE_FILES
                .iter()
                .map(|(n, c)| (n.to_string(), c.to_string()))
                .collect();
            Arc::new(
                Schemas::load(embedded::COMMON_FILE, &files).expect("embedded schemas are valid"),
            )
        })
        .clone()
    }

    /// Builds the tables from a `common.json` text and `(file name, text)` table files.
    pub fn load(common: &str, files: &[(String, String)]) -> Result<Schemas, SchemaError> {
        let common: CommonFile = serde_json::from_str(common).map_err(|e| SchemaError {
            file: "common.json".into(),
            message: e.to_string(),
        })?;
        let mut tables = Vec::new();
        let mut by_name = HashMap::new();
        let mut by_category = HashMap::new();
        let mut metric_table = None;
        for (file, text) in files {
            let err = |message: String| SchemaError {
                file: file.clone(),
                message,
            };
            let def: TableFile = serde_json::from_str(text).map_err(|e| err(e.to_string()))?;
            let mut columns: Vec<ColumnFile> = Vec::new();
            if def.kind == TableKind::ResourceLog {
                columns.extend(common.columns.iter().cloned());
            }
            for c in def.columns {
                match columns.iter_mut().find(|x| x.name == c.name) {
                    Some(existing) => *existing = c,
                    None => columns.push(c),
                }
            }
            let mut cols = Vec::with_capacity(columns.len());
            let mut col_by_name = HashMap::new();
            for c in columns {
                let ty = Type::from_schema_name(&c.ty)
                    .ok_or_else(|| err(format!("column {}: unknown type '{}'", c.name, c.ty)))?;
                let source = match (c.derive, c.from) {
                    (Some(_), Some(_)) => {
                        return Err(err(format!("column {}: both 'derive' and 'from'", c.name)))
                    }
                    (Some(d), None) => ColumnSource::Derived(d),
                    (None, Some(paths)) => ColumnSource::Paths(
                        paths
                            .iter()
                            .map(|p| p.split('.').map(|s| s.to_ascii_lowercase()).collect())
                            .collect(),
                    ),
                    (None, None) => ColumnSource::ByName,
                };
                let name: Arc<str> = Arc::from(c.name.as_str());
                if col_by_name.insert(name.clone(), cols.len()).is_some() {
                    return Err(err(format!("column {} defined twice", c.name)));
                }
                cols.push(Column {
                    name,
                    ty,
                    source,
                    description: c.description,
                });
            }
            if !col_by_name.contains_key("TimeGenerated") {
                return Err(err("no TimeGenerated column".into()));
            }
            let id = tables.len();
            if by_name.insert(def.table.clone(), id).is_some() {
                return Err(err(format!("table {} defined twice", def.table)));
            }
            match def.kind {
                TableKind::Metric => metric_table = Some(id),
                TableKind::ResourceLog | TableKind::ActivityLog => {
                    for cat in &def.categories {
                        if let Some(other) = by_category.insert(cat.to_ascii_lowercase(), id) {
                            return Err(err(format!(
                                "category {cat} also feeds table {}",
                                tables.get(other).map(|t: &Table| &*t.name).unwrap_or("?")
                            )));
                        }
                    }
                }
            }
            tables.push(Table {
                name: Arc::from(def.table.as_str()),
                kind: def.kind,
                description: def.description,
                categories: def.categories,
                columns: cols,
                by_name: col_by_name,
            });
        }
        Ok(Schemas {
            tables,
            by_name,
            by_category,
            metric_table,
        })
    }

    /// Table by exact name (KQL table names are case-sensitive).
    pub fn table(&self, name: &str) -> Option<TableId> {
        self.by_name.get(name).copied()
    }

    /// The table whose name matches case-insensitively, for "did you mean" hints.
    pub fn table_ignore_case(&self, name: &str) -> Option<&Table> {
        self.tables
            .iter()
            .find(|t| t.name.eq_ignore_ascii_case(name))
    }

    /// The table a category feeds (case-insensitive).
    pub fn table_for_category(&self, category: &str) -> Option<TableId> {
        if category.bytes().any(|b| b.is_ascii_uppercase()) {
            self.by_category
                .get(&category.to_ascii_lowercase())
                .copied()
        } else {
            self.by_category.get(category).copied()
        }
    }

    pub fn metric_table(&self) -> Option<TableId> {
        self.metric_table
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_schemas_load_and_route_categories() {
        let s = Schemas::embedded();
        let cluster = s
            .table("AmlComputeClusterEvent")
            .expect("AmlComputeClusterEvent");
        assert_eq!(
            s.table_for_category("amlcomputeclusterevent"),
            Some(cluster)
        );
        let t = &s.tables[cluster];
        let tg = t.column("TimeGenerated").unwrap();
        assert_eq!(t.columns[tg].ty, Type::DateTime);
        assert_eq!(
            t.columns[t.column("TargetNodeCount").unwrap()].ty,
            Type::Long
        );
        assert_eq!(
            t.columns[t.column("QuotaAllocated").unwrap()].ty,
            Type::String
        );
        let inst = s.table("AmlComputeInstanceEvent").unwrap();
        assert_eq!(s.table_for_category("ComputeInstanceEvent"), Some(inst));
        let run = s.table("AmlRunEvent").unwrap();
        assert_eq!(s.table_for_category("RunReadEvent"), Some(run));
        assert_eq!(s.table_for_category("RunEvent"), Some(run));
        assert!(s.metric_table().is_some());
        assert!(s.table("AzureActivity").is_some());
    }

    #[test]
    fn table_files_override_common_columns_and_reject_mistakes() {
        let common = r#"{"columns":[{"name":"TimeGenerated","type":"datetime","derive":"time"},
            {"name":"DurationMs","type":"long"}]}"#;
        let t = r#"{"table":"T","kind":"resource_log","categories":["c"],
            "columns":[{"name":"DurationMs","type":"string"}]}"#;
        let s = Schemas::load(common, &[("T.json".into(), t.into())]).unwrap();
        let table = &s.tables[0];
        assert_eq!(
            table.columns[table.column("DurationMs").unwrap()].ty,
            Type::String
        );

        let bad = r#"{"table":"T","kind":"resource_log","columns":[{"name":"X","type":"blob"}]}"#;
        let e = Schemas::load(common, &[("T.json".into(), bad.into())]).unwrap_err();
        assert!(e.to_string().contains("unknown type 'blob'"), "{e}");
    }
}
