//! What an import did, per Node table, and what the operator should know.

use std::collections::BTreeMap;
use std::fmt;

/// The outcome for one Node table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableReport {
    /// The Node table (and what its rows are).
    pub table: &'static str,
    /// Rows written now.
    pub imported: u64,
    /// Rows already in this service's database (an earlier import).
    pub present: u64,
    /// Rows not carried over, per reason.
    pub skipped: BTreeMap<String, u64>,
}

impl TableReport {
    /// An empty outcome for `table`.
    #[must_use]
    pub fn new(table: &'static str) -> Self {
        Self { table, ..Self::default() }
    }

    /// Counts a row as imported (`true`) or already present (`false`).
    pub fn count(&mut self, new: bool) {
        if new {
            self.imported += 1;
        } else {
            self.present += 1;
        }
    }

    /// Counts `rows` rows skipped for `reason`.
    pub fn skip(&mut self, reason: &str, rows: u64) {
        if rows > 0 {
            *self.skipped.entry(reason.to_owned()).or_default() += rows;
        }
    }
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// The source, as named in the record of imports (no password).
    pub source: String,
    /// One line per Node table.
    pub tables: Vec<TableReport>,
    /// What the Node service did wrongly that the import mended or could not carry over.
    pub notes: Vec<String>,
}

impl ImportReport {
    /// An empty report for `source`.
    #[must_use]
    pub fn new(source: &str) -> Self {
        Self { source: source.to_owned(), ..Self::default() }
    }

    /// Adds a note.
    pub fn note(&mut self, note: &str) {
        self.notes.push(note.to_owned());
    }

    /// Rows written now, over every table.
    #[must_use]
    pub fn imported(&self) -> u64 {
        self.tables.iter().map(|table| table.imported).sum()
    }
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "imported from {}:", self.source)?;
        for table in &self.tables {
            write!(f, "  {}: {} imported, {} already present", table.table, table.imported, table.present)?;
            for (reason, rows) in &table.skipped {
                write!(f, "; {rows} skipped: {reason}")?;
            }
            writeln!(f)?;
        }
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        Ok(())
    }
}
