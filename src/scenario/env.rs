//! `${VAR}` substitution in the string values of a scenario file.
//!
//! `${NAME}` is replaced by the matrix value of axis `NAME` in the case being
//! built, else by the environment variable `NAME`; neither is an error that
//! names the variable. `$$` is a literal `$`; any other `$` is kept as it is.
//! Names are `[A-Za-z_][A-Za-z0-9_]*`. Only string values are substituted
//! (never keys, numbers or comments), so commented-out examples need no
//! variables.

/// Why a string could not be substituted; `offset` is the byte offset of
/// the `$` in the string value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubstitutionError {
    Missing { name: String, offset: usize },
    Unterminated { offset: usize },
    BadName { name: String, offset: usize },
}

impl SubstitutionError {
    pub fn offset(&self) -> usize {
        match self {
            SubstitutionError::Missing { offset, .. }
            | SubstitutionError::Unterminated { offset }
            | SubstitutionError::BadName { offset, .. } => *offset,
        }
    }

    /// The message and what was expected instead.
    pub fn describe(&self) -> (String, &'static str) {
        match self {
            SubstitutionError::Missing { name, .. } => {
                (format!("variable ${{{name}}} is not set"), "a matrix axis or an environment variable of that name")
            }
            SubstitutionError::Unterminated { .. } => {
                ("unterminated ${".to_string(), "${NAME} with a closing brace, or $$ for a literal $")
            }
            SubstitutionError::BadName { name, .. } => (
                format!("'{name}' is not a variable name"),
                "a name of letters, digits and _, not starting with a digit",
            ),
        }
    }
}

/// Whether `name` can be written as `${name}`.
pub fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Replaces every `${NAME}` in `text` by `lookup(NAME)`.
pub fn substitute(text: &str, lookup: &mut dyn FnMut(&str) -> Option<String>) -> Result<String, SubstitutionError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        let offset = text.len() - rest.len() + dollar;
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('{') {
            let close = inner.find('}').ok_or(SubstitutionError::Unterminated { offset })?;
            let name = &inner[..close];
            if !is_variable_name(name) {
                return Err(SubstitutionError::BadName { name: name.to_string(), offset });
            }
            let value = lookup(name).ok_or_else(|| SubstitutionError::Missing { name: name.to_string(), offset })?;
            out.push_str(&value);
            rest = &inner[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Option<String> {
        match name {
            "CALLED" => Some("+14144007103".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn replaces_escapes_and_keeps_lone_dollars() {
        let mut lookup = vars;
        assert_eq!(substitute("sip:${CALLED}@h", &mut lookup).as_deref(), Ok("sip:+14144007103@h"));
        assert_eq!(substitute("a$$b $$${CALLED}", &mut lookup).as_deref(), Ok("a$b $+14144007103"));
        assert_eq!(substitute("cost $5 ${EMPTY}.", &mut lookup).as_deref(), Ok("cost $5 ."));
        assert_eq!(substitute("no vars", &mut lookup).as_deref(), Ok("no vars"));
    }

    #[test]
    fn errors_carry_the_offset_of_the_dollar() {
        let mut lookup = vars;
        assert_eq!(
            substitute("x ${NOPE} y", &mut lookup),
            Err(SubstitutionError::Missing { name: "NOPE".into(), offset: 2 })
        );
        assert_eq!(substitute("ab${CALLED", &mut lookup), Err(SubstitutionError::Unterminated { offset: 2 }));
        assert_eq!(substitute("${1X}", &mut lookup), Err(SubstitutionError::BadName { name: "1X".into(), offset: 0 }));
    }

    #[test]
    fn records_what_was_looked_up() {
        let mut seen = Vec::new();
        let mut lookup = |n: &str| {
            seen.push(n.to_string());
            vars(n)
        };
        assert!(substitute("${CALLED}${CALLED}", &mut lookup).is_ok());
        assert_eq!(seen, ["CALLED", "CALLED"]);
    }
}
