//! Matrix expansion: a scenario with `[matrix]` axes becomes one case per
//! combination of their values (axes in file order, the last one varying
//! fastest), and each `[[case]]` applies to the combinations its `when`
//! matches. `when` values are compared with the axis values as written
//! (before `${VAR}` substitution).

use std::collections::BTreeMap;
use std::ops::Range;

use toml::Spanned;

use super::env::is_variable_name;
use super::error::{ScenarioError, Source};
use super::format::{RawCase, Text};

/// More cases than this from one file is almost certainly a mistake.
pub const MAX_CASES_PER_FILE: usize = 256;

/// One `[matrix]` axis.
#[derive(Debug)]
pub struct Axis {
    pub name: String,
    pub name_span: Range<usize>,
    /// The values as written (substitution happens per case).
    pub values: Vec<Text>,
}

/// One combination: for each axis (in [`axes`] order), the index of its value.
pub type Combination = Vec<usize>;

/// The axes in file order, checked: variable-like names, at least one
/// value, no value twice, not too many combinations.
pub fn axes(matrix: &BTreeMap<Text, Spanned<Vec<Text>>>, src: &Source, errors: &mut Vec<ScenarioError>) -> Vec<Axis> {
    let mut axes: Vec<Axis> = matrix
        .iter()
        .map(|(name, values)| Axis {
            name: name.get_ref().clone(),
            name_span: name.span(),
            values: values.get_ref().clone(),
        })
        .collect();
    axes.sort_by_key(|a| a.name_span.start);
    for (name, values) in matrix {
        if !is_variable_name(name.get_ref()) {
            errors.push(src.error(
                name.span(),
                format!("matrix axis '{}' cannot be used as ${{{}}}", name.get_ref(), name.get_ref()),
                Some("a name of letters, digits and _, not starting with a digit"),
            ));
        }
        if values.get_ref().is_empty() {
            errors.push(src.error(
                values.span(),
                format!("matrix axis {} has no values", name.get_ref()),
                Some("a list of at least one string"),
            ));
        }
        for (i, value) in values.get_ref().iter().enumerate() {
            if values.get_ref()[..i].iter().any(|earlier| earlier.get_ref() == value.get_ref()) {
                errors.push(src.error(
                    value.span(),
                    format!("matrix axis {} lists '{}' twice", name.get_ref(), value.get_ref()),
                    None,
                ));
            }
        }
    }
    let count = axes.iter().map(|a| a.values.len().max(1)).fold(1usize, |n, len| n.saturating_mul(len));
    if count > MAX_CASES_PER_FILE {
        if let Some(first) = axes.first() {
            errors.push(src.error(
                first.name_span.clone(),
                format!("the matrix expands to {count} cases"),
                Some(&format!("at most {MAX_CASES_PER_FILE} cases per file")),
            ));
        }
    }
    axes
}

/// Every combination of axis values; one (empty) combination without axes.
pub fn combinations(axes: &[Axis]) -> Vec<Combination> {
    let mut all: Vec<Combination> = vec![Vec::new()];
    for axis in axes {
        all = all
            .into_iter()
            .flat_map(|prefix| {
                (0..axis.values.len()).map(move |i| {
                    let mut next = prefix.clone();
                    next.push(i);
                    next
                })
            })
            .collect();
    }
    all
}

/// Checks each `[[case]]`'s `when`: a matrix exists, and every key is an
/// axis and every value one of its values.
pub fn check_cases(cases: &[RawCase], axes: &[Axis], src: &Source, errors: &mut Vec<ScenarioError>) {
    let axis_names = || axes.iter().map(|a| a.name.as_str()).collect::<Vec<_>>().join(", ");
    for case in cases {
        if axes.is_empty() {
            errors.push(src.error(
                case.when.span(),
                "[[case]] overrides matrix cases, but this file has no [matrix]",
                Some("a [matrix] table with the axes `when` refers to"),
            ));
            continue;
        }
        if case.when.get_ref().is_empty() {
            errors.push(src.error(
                case.when.span(),
                "`when` is empty",
                Some(&format!("at least one axis = value pair (axes: {})", axis_names())),
            ));
        }
        for (key, value) in case.when.get_ref() {
            match axes.iter().find(|a| a.name == *key.get_ref()) {
                None => errors.push(src.error(
                    key.span(),
                    format!("`when` names '{}', which is not a matrix axis", key.get_ref()),
                    Some(&format!("one of: {}", axis_names())),
                )),
                Some(axis) if !axis.values.iter().any(|v| v.get_ref() == value.get_ref()) => {
                    let values = axis.values.iter().map(|v| format!("\"{}\"", v.get_ref())).collect::<Vec<_>>();
                    errors.push(src.error(
                        value.span(),
                        format!("'{}' is not a value of matrix axis {}", value.get_ref(), axis.name),
                        Some(&format!("one of: {}", values.join(", "))),
                    ))
                }
                Some(_) => {}
            }
        }
    }
}

/// Whether `case` applies to `combination`.
pub fn case_matches(case: &RawCase, axes: &[Axis], combination: &[usize]) -> bool {
    case.when.get_ref().iter().all(|(key, value)| {
        axes.iter()
            .zip(combination)
            .any(|(axis, &i)| axis.name == *key.get_ref() && axis.values[i].get_ref() == value.get_ref())
    })
}

/// The axis values of `combination`, as written: `[(axis, value)]`.
pub fn assignments(axes: &[Axis], combination: &[usize]) -> Vec<(String, Text)> {
    axes.iter().zip(combination).map(|(axis, &i)| (axis.name.clone(), axis.values[i].clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn axis(name: &str, n: usize) -> Axis {
        Axis { name: name.into(), name_span: 0..0, values: (0..n).map(|i| Spanned::new(0..0, i.to_string())).collect() }
    }

    #[test]
    fn cartesian_product_in_order() {
        assert_eq!(combinations(&[]), vec![Vec::<usize>::new()]);
        let all = combinations(&[axis("A", 2), axis("B", 3)]);
        assert_eq!(all.len(), 6);
        assert_eq!(all[0], vec![0, 0]);
        assert_eq!(all[1], vec![0, 1]);
        assert_eq!(all[5], vec![1, 2]);
    }
}
