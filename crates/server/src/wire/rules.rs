//! What each request field accepts, declared once per wire type: numeric bounds (checked by
//! the type's `validate`, quoted in error messages, written into `/openapi.json`) and, for the
//! other fields, the words an error uses for what was expected.

use crate::error::ApiError;

/// A numeric field's allowed values.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub field: &'static str,
    pub lo: f64,
    /// `None`: at most the model's context length (known only at run time).
    pub hi: Option<f64>,
    /// `(lo, hi]` rather than `[lo, hi]`.
    pub lo_open: bool,
    pub integer: bool,
}

impl Bound {
    pub const fn number(field: &'static str, lo: f64, hi: f64) -> Self {
        Self { field, lo, hi: Some(hi), lo_open: false, integer: false }
    }

    /// `(lo, hi]`.
    pub const fn above(field: &'static str, lo: f64, hi: f64) -> Self {
        Self { field, lo, hi: Some(hi), lo_open: true, integer: false }
    }

    pub const fn integer(field: &'static str, lo: f64, hi: f64) -> Self {
        Self { field, lo, hi: Some(hi), lo_open: false, integer: true }
    }

    /// An integer from `lo` up to the model's context length.
    pub const fn tokens(field: &'static str) -> Self {
        Self { field, lo: 1.0, hi: None, lo_open: false, integer: true }
    }

    fn range(&self, context: Option<usize>) -> String {
        let hi = match (self.hi, context) {
            (Some(hi), _) => fmt(hi),
            (None, Some(c)) => c.to_string(),
            (None, None) => "the context length".to_string(),
        };
        let open = if self.lo_open { "(" } else { "[" };
        format!("{open}{}, {hi}]", fmt(self.lo))
    }

    /// "a number in [0, 2]", "an integer in [1, 512]".
    pub fn expected(&self, context: Option<usize>) -> String {
        let kind = if self.integer { "an integer" } else { "a number" };
        format!("{kind} in {}", self.range(context))
    }

    fn contains(&self, x: f64, context: Option<usize>) -> bool {
        let hi = self.hi.unwrap_or(context.map_or(f64::INFINITY, |c| c as f64));
        let lo_ok = if self.lo_open { x > self.lo } else { x >= self.lo };
        lo_ok && x <= hi
    }

    /// Whether `x` is in range (for bounds with a fixed upper end).
    pub fn allows(&self, x: f64) -> bool {
        self.contains(x, None)
    }

    /// A number field: absent, or in range.
    pub fn check(&self, value: Option<f64>) -> Result<Option<f32>, ApiError> {
        let Some(x) = value else { return Ok(None) };
        if !self.contains(x, None) {
            let field = self.field;
            return Err(ApiError::invalid(field, format!("`{field}` must be in {}, got {x}", self.range(None))));
        }
        Ok(Some(x as f32))
    }

    /// An integer field: absent, or in range (`context` bounds token counts).
    pub fn check_int(&self, value: Option<u64>, context: Option<usize>) -> Result<Option<u64>, ApiError> {
        let Some(x) = value else { return Ok(None) };
        if !self.contains(x as f64, context) {
            let field = self.field;
            return Err(ApiError::invalid(field, format!("`{field}` must be {}, got {x}", self.expected(context))));
        }
        Ok(Some(x))
    }
}

/// `2` rather than `2.0`, as the messages have always said.
fn fmt(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        x.to_string()
    }
}

/// One wire type's rules. A request type's rules are its own plus those of the parts it
/// flattens (the sampling fields).
#[derive(Debug)]
pub struct Rules {
    pub bounds: &'static [Bound],
    /// `(path, what it must be)`; `[]` in a path stands for any index: `messages[].role`.
    pub expected: &'static [(&'static str, &'static str)],
    /// OpenAI fields this server knows but does not implement: refused with a 400, not ignored.
    pub refused: &'static [&'static str],
}

impl Rules {
    pub const NONE: Rules = Rules { bounds: &[], expected: &[], refused: &[] };

    pub fn bound(&self, field: &str) -> Option<&Bound> {
        self.bounds.iter().find(|b| b.field == field)
    }

    /// What the field at `path` (`messages[0].role`) must be, if these rules say.
    pub fn expected(&self, path: &str) -> Option<String> {
        let pattern = without_indices(path);
        if let Some(b) = self.bound(&pattern) {
            return Some(b.expected(None));
        }
        self.expected.iter().find(|(p, _)| *p == pattern).map(|(_, e)| e.to_string())
    }
}

/// `messages[3].content` -> `messages[].content`.
fn without_indices(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push('[');
            }
            ']' => {
                in_index = false;
                out.push(']');
            }
            _ if in_index => {}
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_quote_the_range() {
        let t = Bound::number("temperature", 0.0, 2.0);
        assert_eq!(t.expected(None), "a number in [0, 2]");
        let e = t.check(Some(3.0)).unwrap_err();
        assert_eq!(e.message, "`temperature` must be in [0, 2], got 3");
        assert_eq!(
            Bound::above("top_p", 0.0, 1.0).check(Some(0.0)).unwrap_err().message,
            "`top_p` must be in (0, 1], got 0"
        );
        assert_eq!(Bound::above("top_p", 0.0, 1.0).check(Some(1.0)).unwrap(), Some(1.0));
        let m = Bound::tokens("max_tokens");
        assert_eq!(
            m.check_int(Some(101), Some(100)).unwrap_err().message,
            "`max_tokens` must be an integer in [1, 100], got 101"
        );
        assert_eq!(m.check_int(Some(100), Some(100)).unwrap(), Some(100));
        assert_eq!(Bound::number("min_p", 0.0, 0.5).expected(None), "a number in [0, 0.5]");
    }

    #[test]
    fn paths_match_without_indices() {
        const R: Rules = Rules { bounds: &[], expected: &[("messages[].role", "a role")], refused: &[] };
        assert_eq!(R.expected("messages[12].role").as_deref(), Some("a role"));
        assert_eq!(R.expected("messages[1].content"), None);
    }
}
