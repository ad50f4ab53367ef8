//! SQL text for the three dialects: identifier quoting, string literals, JSON paths and the
//! expressions that turn any timestamp shape into Unix seconds.
//!
//! Everything here is pure string building, so every dialect's output is unit tested without a
//! server. Identifiers come from the config file and are validated once at load
//! ([`parse_field`], [`parse_table`]); after that they are always quoted, never spliced raw.
//! Values that come from the database (job ids, status words) are written as escaped literals so
//! that the database coerces them to the column's own type (an `integer`, a `uuid`, an enum)
//! and can use its index; everything else travels as a bound parameter.

use std::fmt;

/// Which SQL dialect a database URL speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    Postgres,
    MySql,
    Sqlite,
}

/// A column, optionally followed by a path into a JSON value it holds (`metadata.phase`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub column: String,
    pub path: Vec<String>,
}

/// A table name, optionally schema-qualified (`public.research_jobs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    pub schema: Option<String>,
    pub name: String,
}

/// How a column stores a point in time, as learned from the database's catalogue. It decides
/// how the column is read as Unix seconds and how "now" is written into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeKind {
    /// `timestamptz`, `timestamp`, `date`, MySQL `DATETIME`/`TIMESTAMP`: converted in SQL.
    Native,
    /// An integer or float column holding Unix seconds (or milliseconds).
    Number,
    /// Text (or a JSON value): parsed by jobwarden, so a malformed value is a warning, not a
    /// failed query.
    Text,
}

/// Longest identifier accepted: PostgreSQL truncates at 63 bytes, MySQL at 64.
const MAX_IDENT: usize = 63;

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.column)?;
        for key in &self.path {
            write!(f, ".{key}")?;
        }
        Ok(())
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

impl Field {
    /// A plain column with no JSON path.
    pub fn is_plain(&self) -> bool {
        self.path.is_empty()
    }
}

/// Splits `a.b."c d"` into segments, honouring double quotes (`""` inside quotes is a quote).
fn split_segments(text: &str) -> Result<Vec<(String, bool)>, String> {
    let mut segments = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let mut segment = String::new();
        let quoted = chars.peek() == Some(&'"');
        if quoted {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        segment.push('"');
                    }
                    Some('"') => break,
                    Some(c) => segment.push(c),
                    None => return Err(format!("unterminated quote in `{text}`")),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                segment.push(c);
                chars.next();
            }
        }
        segments.push((segment, quoted));
        match chars.next() {
            None => return Ok(segments),
            Some('.') => continue,
            Some(c) => return Err(format!("unexpected `{c}` after a quoted name in `{text}`")),
        }
    }
}

/// Checks one identifier. Unquoted ones are `[A-Za-z_][A-Za-z0-9_]*`; quoted ones may hold any
/// printable character. Either way the result is quoted again when spliced into SQL.
fn check_ident(segment: &str, quoted: bool, whole: &str) -> Result<String, String> {
    if segment.is_empty() {
        return Err(format!("empty name in `{whole}`"));
    }
    if segment.len() > MAX_IDENT {
        return Err(format!("`{segment}` is longer than {MAX_IDENT} bytes"));
    }
    if segment.chars().any(char::is_control) {
        return Err(format!("`{whole}` contains a control character"));
    }
    if !quoted {
        let mut chars = segment.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "`{segment}` is not a plain identifier (letters, digits and _, not starting with a digit); write it in double quotes if the column really has that name"
            ));
        }
    }
    Ok(segment.to_string())
}

/// Checks one JSON key: letters, digits, `_` and `-`, so it can sit inside a path literal.
fn check_json_key(key: &str, whole: &str) -> Result<String, String> {
    if key.is_empty()
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!(
            "JSON key `{key}` in `{whole}` may only hold letters, digits, `_` and `-`"
        ));
    }
    Ok(key.to_string())
}

/// Parses a column reference from the config: `status`, `"createdAt"`, `metadata.steps`.
pub fn parse_field(text: &str) -> Result<Field, String> {
    let segments = split_segments(text.trim())?;
    let mut iter = segments.into_iter();
    let (column, quoted) = iter.next().unwrap_or_default();
    let column = check_ident(&column, quoted, text)?;
    let path = iter
        .map(|(key, _)| check_json_key(&key, text))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Field { column, path })
}

/// Parses a table reference from the config: `research_jobs`, `public.research_jobs`.
pub fn parse_table(text: &str) -> Result<TableName, String> {
    let segments = split_segments(text.trim())?;
    let mut checked = segments
        .iter()
        .map(|(s, q)| check_ident(s, *q, text))
        .collect::<Result<Vec<_>, _>>()?;
    match checked.len() {
        1 => Ok(TableName {
            schema: None,
            name: checked.remove(0),
        }),
        2 => {
            let name = checked.remove(1);
            Ok(TableName {
                schema: Some(checked.remove(0)),
                name,
            })
        }
        _ => Err(format!(
            "`{text}` has too many dots: write `table` or `schema.table`"
        )),
    }
}

impl Dialect {
    /// The dialect a database URL names, by its scheme.
    pub fn from_url(url: &str) -> Option<Dialect> {
        let scheme = url.split_once(':')?.0.to_ascii_lowercase();
        match scheme.as_str() {
            "postgres" | "postgresql" => Some(Dialect::Postgres),
            "mysql" | "mariadb" => Some(Dialect::MySql),
            "sqlite" => Some(Dialect::Sqlite),
            _ => None,
        }
    }

    /// Quotes one identifier.
    pub fn quote(self, ident: &str) -> String {
        match self {
            Dialect::MySql => format!("`{}`", ident.replace('`', "``")),
            Dialect::Postgres | Dialect::Sqlite => format!("\"{}\"", ident.replace('"', "\"\"")),
        }
    }

    /// The quoted, possibly schema-qualified table.
    pub fn table(self, table: &TableName) -> String {
        match &table.schema {
            Some(schema) => format!("{}.{}", self.quote(schema), self.quote(&table.name)),
            None => self.quote(&table.name),
        }
    }

    /// A string literal. PostgreSQL gets the `E''` form when a backslash is present, so the
    /// result does not depend on `standard_conforming_strings`; MySQL escapes backslashes too.
    pub fn literal(self, value: &str) -> String {
        let quoted = value.replace('\'', "''");
        match self {
            Dialect::Postgres if value.contains('\\') => {
                format!("E'{}'", quoted.replace('\\', "\\\\"))
            }
            Dialect::MySql => format!("'{}'", quoted.replace('\\', "\\\\")),
            Dialect::Postgres | Dialect::Sqlite => format!("'{quoted}'"),
        }
    }

    /// A comma-separated list of literals, for `IN (...)`.
    pub fn literal_list<'a>(self, values: impl IntoIterator<Item = &'a str>) -> String {
        values
            .into_iter()
            .map(|v| self.literal(v))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The n-th (1-based) bind parameter.
    pub fn param(self, n: usize) -> String {
        match self {
            Dialect::Postgres => format!("${n}"),
            Dialect::MySql | Dialect::Sqlite => "?".to_string(),
        }
    }

    /// `a` equals `b`, where NULL equals NULL.
    pub fn null_safe_eq(self, a: &str, b: &str) -> String {
        match self {
            Dialect::Postgres => format!("{a} IS NOT DISTINCT FROM {b}"),
            Dialect::MySql => format!("{a} <=> {b}"),
            Dialect::Sqlite => format!("{a} IS {b}"),
        }
    }

    /// Casts an expression to text.
    pub fn text(self, expr: &str) -> String {
        match self {
            Dialect::Postgres => format!("({expr})::text"),
            Dialect::MySql => format!("CAST({expr} AS CHAR)"),
            Dialect::Sqlite => format!("CAST({expr} AS TEXT)"),
        }
    }

    /// Casts an expression to a 64-bit integer.
    pub fn integer(self, expr: &str) -> String {
        match self {
            Dialect::Postgres => format!("CAST({expr} AS BIGINT)"),
            Dialect::MySql => format!("CAST({expr} AS SIGNED)"),
            Dialect::Sqlite => format!("CAST({expr} AS INTEGER)"),
        }
    }

    /// Casts an expression to a double.
    fn double(self, expr: &str) -> String {
        match self {
            Dialect::Postgres => format!("({expr})::float8"),
            Dialect::MySql => format!("CAST({expr} AS DOUBLE)"),
            Dialect::Sqlite => format!("CAST({expr} AS REAL)"),
        }
    }

    /// A NULL of the dialect's text type.
    pub fn null_text(self) -> &'static str {
        match self {
            Dialect::Postgres => "NULL::text",
            Dialect::MySql | Dialect::Sqlite => "NULL",
        }
    }

    /// A NULL of the dialect's double type.
    pub fn null_double(self) -> &'static str {
        match self {
            Dialect::Postgres => "NULL::float8",
            Dialect::MySql | Dialect::Sqlite => "NULL",
        }
    }

    /// The raw value of a field: the quoted column, or the JSON value at its path. JSON
    /// strings come back unquoted; arrays and objects come back as JSON text.
    pub fn value(self, field: &Field) -> String {
        let column = self.quote(&field.column);
        if field.is_plain() {
            return column;
        }
        match self {
            // Casting to jsonb first makes json, jsonb and text columns all work.
            Dialect::Postgres => format!("(({column})::jsonb #>> '{{{}}}')", field.path.join(",")),
            Dialect::MySql => format!(
                "JSON_UNQUOTE(JSON_EXTRACT({column}, '$.{}'))",
                field.path.join(".")
            ),
            Dialect::Sqlite => format!("json_extract({column}, '$.{}')", field.path.join(".")),
        }
    }

    /// A field's value as text: what jobwarden reads and what a guarded write compares.
    pub fn value_text(self, field: &Field) -> String {
        self.text(&self.value(field))
    }

    /// A field's value as Unix seconds when the database can compute it without failing
    /// (native timestamps and numbers); NULL otherwise, when the text form is parsed instead.
    pub fn epoch(self, field: &Field, kind: TimeKind) -> String {
        let value = self.value(field);
        match self {
            Dialect::Sqlite => format!(
                "CASE WHEN typeof({value}) IN ('integer', 'real') THEN CAST({value} AS REAL) END"
            ),
            _ if !field.is_plain() => self.null_double().to_string(),
            _ => self.epoch_of(&value, kind),
        }
    }

    /// An expression of a plain column's kind (`value`, its own type) as Unix seconds, on
    /// PostgreSQL and MySQL: what [`Dialect::epoch`] reads, also applied to an aggregate of
    /// the column (its `MAX`, converted once rather than per row).
    pub fn epoch_of(self, value: &str, kind: TimeKind) -> String {
        match self {
            Dialect::Sqlite => self.double(value),
            Dialect::Postgres => match kind {
                // A naive `timestamp` is read in the session's time zone, like `now()`.
                TimeKind::Native => {
                    self.double(&format!("extract(epoch from ({value})::timestamptz)"))
                }
                TimeKind::Number => self.double(value),
                TimeKind::Text => self.null_double().to_string(),
            },
            Dialect::MySql => match kind {
                TimeKind::Native => self.double(&format!("UNIX_TIMESTAMP({value})")),
                TimeKind::Number => self.double(value),
                TimeKind::Text => self.null_double().to_string(),
            },
        }
    }

    /// The database's clock, as Unix seconds.
    pub fn now_epoch(self) -> &'static str {
        match self {
            Dialect::Postgres => "SELECT extract(epoch from now())::float8",
            Dialect::MySql => "SELECT CAST(UNIX_TIMESTAMP(NOW(6)) AS DOUBLE)",
            Dialect::Sqlite => "SELECT (julianday('now') - 2440587.5) * 86400.0",
        }
    }

    /// The expression of [`Dialect::now_epoch`]: the database clock in Unix seconds, the
    /// same at every use within one statement.
    pub fn now_expr(self) -> &'static str {
        self.now_epoch().trim_start_matches("SELECT ")
    }

    /// "Now" as a naive wall-clock reading `offset` seconds east of UTC, for a `timestamp` or
    /// `DATETIME` column whose values are written in that zone. jobwarden's own session is
    /// UTC, so the UTC reading plus the offset is the zone's reading.
    pub fn now_naive(self, offset: i32) -> String {
        match self {
            Dialect::Postgres if offset == 0 => "LOCALTIMESTAMP".into(),
            Dialect::Postgres => format!("(LOCALTIMESTAMP + INTERVAL '{offset} seconds')"),
            Dialect::MySql if offset == 0 => "UTC_TIMESTAMP(6)".into(),
            Dialect::MySql => format!("(UTC_TIMESTAMP(6) + INTERVAL {offset} SECOND)"),
            Dialect::Sqlite => self.now_value(TimeKind::Text).into(),
        }
    }

    /// Whether a native column type holds a wall-clock reading with no zone: PostgreSQL
    /// `timestamp [without time zone]` and `date`, MySQL `DATETIME` and `DATE`. (MySQL
    /// `TIMESTAMP` is stored as UTC and read in the session's zone, UTC for jobwarden.)
    pub fn is_naive(self, type_name: &str) -> bool {
        let t = type_name.to_ascii_lowercase();
        match self {
            Dialect::Postgres => {
                t == "date" || (t.starts_with("timestamp") && !t.contains("with time zone"))
            }
            Dialect::MySql => t.starts_with("datetime") || t == "date",
            Dialect::Sqlite => false,
        }
    }

    /// Whether a column type holds bytes: PostgreSQL `bytea`, MySQL `BLOB` (any size),
    /// `BINARY` and `VARBINARY`, SQLite `BLOB` (or no declared type, which is a blob's
    /// affinity).
    pub fn is_binary(self, type_name: &str) -> bool {
        let t = type_name.to_ascii_lowercase();
        match self {
            Dialect::Postgres => t == "bytea",
            Dialect::MySql => t.ends_with("blob") || t.contains("binary"),
            Dialect::Sqlite => t.contains("blob"),
        }
    }

    /// The bytes whose hex digits are the text `expr` (a bound parameter): how bytes travel
    /// as text and are written as bytes.
    pub fn from_hex(self, expr: &str) -> String {
        match self {
            Dialect::Postgres => format!("decode({expr}, 'hex')"),
            Dialect::MySql => format!("UNHEX({expr})"),
            // SQLite 3.41 and later (sqlx bundles a later one).
            Dialect::Sqlite => format!("unhex({expr})"),
        }
    }

    /// "Now", written into a column of the given kind.
    pub fn now_value(self, kind: TimeKind) -> &'static str {
        match (self, kind) {
            (Dialect::Postgres, TimeKind::Native) => "now()",
            (Dialect::Postgres, TimeKind::Number) => "extract(epoch from now())::bigint",
            (Dialect::Postgres, TimeKind::Text) => {
                "to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
            }
            (Dialect::MySql, TimeKind::Native) => "NOW(6)",
            (Dialect::MySql, TimeKind::Number) => "UNIX_TIMESTAMP()",
            (Dialect::MySql, TimeKind::Text) => {
                "DATE_FORMAT(UTC_TIMESTAMP(), '%Y-%m-%dT%H:%i:%sZ')"
            }
            (Dialect::Sqlite, TimeKind::Number) => "CAST(strftime('%s', 'now') AS INTEGER)",
            // SQLite's own CURRENT_TIMESTAMP format, read back as UTC.
            (Dialect::Sqlite, _) => "strftime('%Y-%m-%d %H:%M:%S', 'now')",
        }
    }
}

impl TimeKind {
    /// Classifies a column type as the catalogue spells it (`timestamp with time zone`,
    /// `datetime`, `bigint`, `TEXT`, SQLite's declared type...).
    pub fn from_sql_type(type_name: &str) -> TimeKind {
        let t = type_name.to_ascii_lowercase();
        if t.contains("timestamp") || t.contains("date") || t.contains("time") {
            TimeKind::Native
        } else if t.contains("int")
            || t.contains("numeric")
            || t.contains("decimal")
            || t.contains("double")
            || t.contains("float")
            || t.contains("real")
        {
            TimeKind::Number
        } else {
            TimeKind::Text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(s: &str) -> Field {
        parse_field(s).unwrap()
    }

    #[test]
    fn plain_quoted_and_json_fields() {
        assert_eq!(
            field("status"),
            Field {
                column: "status".into(),
                path: vec![]
            }
        );
        assert_eq!(field("\"createdAt\"").column, "createdAt");
        assert_eq!(field("createdAt").column, "createdAt");
        let f = field("metadata.phase");
        assert_eq!(
            (f.column.as_str(), f.path.clone()),
            ("metadata", vec!["phase".to_string()])
        );
        assert_eq!(field("\"my col\".a.b").path, vec!["a", "b"]);
    }

    #[test]
    fn bad_identifiers_are_named() {
        for bad in [
            "", "1abc", "a;drop", "st atus", "a.b c", "a.", "\"open", "x.y'z",
        ] {
            let err = parse_field(bad).unwrap_err();
            assert!(!err.is_empty(), "{bad}");
        }
        assert!(parse_field("a;drop").unwrap_err().contains("`a;drop`"));
        assert!(parse_field(&"x".repeat(64)).unwrap_err().contains("longer"));
    }

    #[test]
    fn tables_may_be_schema_qualified() {
        let t = parse_table("public.research_jobs").unwrap();
        assert_eq!(t.schema.as_deref(), Some("public"));
        assert_eq!(Dialect::Postgres.table(&t), "\"public\".\"research_jobs\"");
        assert_eq!(Dialect::MySql.table(&t), "`public`.`research_jobs`");
        assert!(parse_table("a.b.c").is_err());
    }

    #[test]
    fn quoting_escapes_the_quote_character() {
        assert_eq!(Dialect::Postgres.quote("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(Dialect::MySql.quote("we`ird"), "`we``ird`");
        assert_eq!(Dialect::Sqlite.quote("createdAt"), "\"createdAt\"");
    }

    #[test]
    fn literals_escape_quotes_and_backslashes() {
        assert_eq!(Dialect::Postgres.literal("it's"), "'it''s'");
        assert_eq!(Dialect::Postgres.literal("a\\b'"), "E'a\\\\b'''");
        assert_eq!(Dialect::MySql.literal("a\\b'"), "'a\\\\b'''");
        assert_eq!(Dialect::Sqlite.literal("a\\b'"), "'a\\b'''");
        assert_eq!(Dialect::Sqlite.literal_list(["1", "2"]), "'1', '2'");
    }

    #[test]
    fn json_paths_per_dialect() {
        let f = field("metadata.progress.steps");
        assert_eq!(
            Dialect::Postgres.value(&f),
            "((\"metadata\")::jsonb #>> '{progress,steps}')"
        );
        assert_eq!(
            Dialect::MySql.value(&f),
            "JSON_UNQUOTE(JSON_EXTRACT(`metadata`, '$.progress.steps'))"
        );
        assert_eq!(
            Dialect::Sqlite.value(&f),
            "json_extract(\"metadata\", '$.progress.steps')"
        );
    }

    #[test]
    fn epoch_expressions_follow_the_column_kind() {
        let f = field("updated_at");
        assert_eq!(
            Dialect::Postgres.epoch(&f, TimeKind::Native),
            "(extract(epoch from (\"updated_at\")::timestamptz))::float8"
        );
        assert_eq!(Dialect::Postgres.epoch(&f, TimeKind::Text), "NULL::float8");
        assert_eq!(
            Dialect::MySql.epoch(&f, TimeKind::Native),
            "CAST(UNIX_TIMESTAMP(`updated_at`) AS DOUBLE)"
        );
        // A JSON value is always parsed from text, except in SQLite where it keeps its type.
        assert_eq!(
            Dialect::Postgres.epoch(&field("m.hb"), TimeKind::Native),
            "NULL::float8"
        );
        assert!(Dialect::Sqlite
            .epoch(&field("m.hb"), TimeKind::Text)
            .contains("typeof"));
    }

    #[test]
    fn naive_types_per_dialect() {
        for (d, t, naive) in [
            (Dialect::Postgres, "timestamp without time zone", true),
            (Dialect::Postgres, "timestamp(3) without time zone", true),
            (Dialect::Postgres, "date", true),
            (Dialect::Postgres, "timestamp with time zone", false),
            (Dialect::Postgres, "timestamp(6) with time zone", false),
            (Dialect::MySql, "datetime", true),
            (Dialect::MySql, "timestamp", false),
            (Dialect::Sqlite, "DATETIME", false),
        ] {
            assert_eq!(d.is_naive(t), naive, "{d:?} {t}");
        }
        assert_eq!(
            Dialect::Postgres.now_naive(-18_000),
            "(LOCALTIMESTAMP + INTERVAL '-18000 seconds')"
        );
        assert_eq!(
            Dialect::MySql.now_naive(19_800),
            "(UTC_TIMESTAMP(6) + INTERVAL 19800 SECOND)"
        );
    }

    #[test]
    fn type_names_classify() {
        for (t, k) in [
            ("timestamp with time zone", TimeKind::Native),
            ("timestamp without time zone", TimeKind::Native),
            ("datetime", TimeKind::Native),
            ("DATETIME", TimeKind::Native),
            ("bigint", TimeKind::Number),
            ("INTEGER", TimeKind::Number),
            ("double precision", TimeKind::Number),
            ("text", TimeKind::Text),
            ("character varying(40)", TimeKind::Text),
            ("jsonb", TimeKind::Text),
        ] {
            assert_eq!(TimeKind::from_sql_type(t), k, "{t}");
        }
    }

    #[test]
    fn dialect_from_url() {
        assert_eq!(Dialect::from_url("postgres://x"), Some(Dialect::Postgres));
        assert_eq!(Dialect::from_url("postgresql://x"), Some(Dialect::Postgres));
        assert_eq!(Dialect::from_url("mysql://x"), Some(Dialect::MySql));
        assert_eq!(Dialect::from_url("mariadb://x"), Some(Dialect::MySql));
        assert_eq!(Dialect::from_url("sqlite://x.db"), Some(Dialect::Sqlite));
        assert_eq!(Dialect::from_url("sqlite::memory:"), Some(Dialect::Sqlite));
        assert_eq!(Dialect::from_url("redis://x"), None);
    }
}
