//! Digests of read-model rows, computed the same way by PostgreSQL over the stored rows and by
//! the server over a replay: a load compares large tables (the acts of the audit trail, the
//! 公示 boards' entries and objections) by digest, and reads their rows only when the digests
//! differ, to name the first row that does.
//!
//! Each row is a canonical line: its fields in a fixed order, a text as `<bytes>:<text>`, a
//! number as `<decimal>,`, an absent value as `-,`, and `\n` at the end. A text's length
//! comes first and an absent value starts with `-` where a text starts with a digit, so no two
//! rows share a line. The SQL that builds a line is generated from the same field list
//! ([`Field`]) the server writes its lines in.

use sha2::Digest;
use std::io::Write;

/// One column of a canonical line.
#[derive(Clone, Copy, Debug)]
pub enum Field {
    Text(&'static str),
    OptText(&'static str),
    Num(&'static str),
    OptNum(&'static str),
}

/// `SELECT` of the SHA-256 over the canonical lines of `table`'s rows that match `filter`, in
/// `order`; with `group`, one row per value of that column (in `COLLATE "C"` order): the value
/// and the digest of its rows.
pub fn digest_sql(fields: &[Field], table: &str, filter: &str, order: &str, group: Option<&str>) -> String {
    let parts: Vec<String> = fields
        .iter()
        .map(|f| match f {
            // Bytes of UTF-8, as the server counts them, whatever the database's encoding.
            Field::Text(c) => format!("octet_length(convert_to({c}, 'UTF8'))::text || ':' || {c}"),
            Field::OptText(c) => format!("coalesce(octet_length(convert_to({c}, 'UTF8'))::text || ':' || {c}, '-,')"),
            Field::Num(c) => format!("{c}::text || ','"),
            Field::OptNum(c) => format!("coalesce({c}::text, '-') || ','"),
        })
        .collect();
    let digest = format!("sha256(convert_to(coalesce(string_agg(concat({}, E'\\n'), '' ORDER BY {order}), ''), 'UTF8'))", parts.join(", "));
    match group {
        None => format!("SELECT {digest} FROM {table} WHERE {filter}"),
        Some(g) => format!("SELECT {g}, {digest} FROM {table} WHERE {filter} GROUP BY {g} ORDER BY {g} COLLATE \"C\""),
    }
}

/// Canonical lines being hashed, written field by field in [`Field`] order.
pub struct Lines {
    hasher: sha2::Sha256,
    line: Vec<u8>,
}

impl Default for Lines {
    fn default() -> Self {
        Lines { hasher: sha2::Sha256::new(), line: Vec::with_capacity(256) }
    }
}

impl Lines {
    pub fn text(&mut self, t: &str) -> &mut Self {
        let _ = write!(self.line, "{}:{t}", t.len());
        self
    }
    pub fn opt_text(&mut self, t: Option<&str>) -> &mut Self {
        match t {
            Some(t) => self.text(t),
            None => {
                self.line.extend_from_slice(b"-,");
                self
            }
        }
    }
    pub fn num(&mut self, n: impl std::fmt::Display) -> &mut Self {
        let _ = write!(self.line, "{n},");
        self
    }
    pub fn opt_num<N: std::fmt::Display>(&mut self, n: Option<N>) -> &mut Self {
        match n {
            Some(n) => self.num(n),
            None => {
                self.line.extend_from_slice(b"-,");
                self
            }
        }
    }
    /// Ends the line.
    pub fn end(&mut self) {
        self.line.push(b'\n');
        self.hasher.update(&self.line);
        self.line.clear();
    }
    /// The SHA-256 of the lines so far.
    pub fn finish(self) -> [u8; 32] {
        self.hasher.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_values_and_texts_never_share_a_line() {
        let line = |f: &dyn Fn(&mut Lines)| {
            let mut l = Lines::default();
            f(&mut l);
            l.end();
            l.finish()
        };
        // A text that looks like an absent value, an empty text, a negative number.
        let a = line(&|l| {
            l.opt_text(None).num(5);
        });
        let b = line(&|l| {
            l.text("-,").num(5);
        });
        let c = line(&|l| {
            l.opt_num(None::<i64>).num(5);
        });
        let d = line(&|l| {
            l.num(-5);
        });
        let e = line(&|l| {
            l.text("").text("ab");
        });
        let f = line(&|l| {
            l.text("ab").text("");
        });
        let all = [a, b, d, e, f];
        for (i, x) in all.iter().enumerate() {
            for y in &all[i + 1..] {
                assert_ne!(x, y);
            }
        }
        // An absent number and an absent text are the same line: the field list tells them apart.
        assert_eq!(a, c);
    }
}
