//! Choosing cases by tag (`--tags smoke,!slow`): a case matches when it has
//! at least one of the wanted tags (or none are wanted) and none of the
//! excluded (`!tag`) ones. Entries may also be comma-separated lists.

use super::ScenarioCase;

/// Whether `case` is selected by the tag filter `wanted`.
pub fn matches_tags(case: &ScenarioCase, wanted: &[String]) -> bool {
    let entries = wanted.iter().flat_map(|w| w.split(',')).map(str::trim).filter(|t| !t.is_empty());
    let has = |tag: &str| case.tags().iter().any(|t| t == tag);
    let mut includes = 0;
    let mut included = false;
    for entry in entries {
        match entry.strip_prefix('!') {
            Some(excluded) if has(excluded) => return false,
            Some(_) => {}
            None => {
                includes += 1;
                included |= has(entry);
            }
        }
    }
    includes == 0 || included
}
