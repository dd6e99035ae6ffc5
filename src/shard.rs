//! A shard: one of `count` stable slices of a numbered list of work (`i/N`,
//! 0-based). Shard `i/N` takes every position `p` with `p % N == i`, so the
//! `N` shards of a list take every position exactly once, whatever the
//! list's length, and the same list always splits the same way. `callprobe
//! run --shard i/N` slices its queue of calls with it; nothing here knows
//! about calls.
//!
//! Written `i/N` (`0/3`, `1/3`, `2/3`), or `auto/N`: the index then comes
//! from the environment variable `JOB_COMPLETION_INDEX`, which Kubernetes
//! sets in each pod of an Indexed Job (`completionMode: Indexed`).

use std::fmt;
use std::str::FromStr;

/// The environment variable `auto/N` takes the index from (set by
/// Kubernetes in an Indexed Job's pods).
pub const INDEX_VAR: &str = "JOB_COMPLETION_INDEX";

/// The most shards a list can be split into.
pub const MAX_COUNT: usize = 10_000;

/// Shard `index` of `count` (0 ≤ `index` < `count`, `count` ≥ 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard {
    index: usize,
    count: usize,
}

/// Why a shard cannot be made or parsed (each message says how to write it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error("'{0}' is not a shard: write i/N, e.g. 0/3 (0-based index i of N shards), or auto/N")]
    Syntax(String),
    #[error("{text}: '{part}' is not a number")]
    NotANumber { text: String, part: String },
    #[error("{0}: the count must be at least 1")]
    ZeroCount(String),
    #[error("{text}: at most {MAX_COUNT} shards")]
    TooMany { text: String },
    #[error("{text}: the index must be below the count (0-based: {})", examples(*count))]
    IndexTooLarge { text: String, count: usize },
    #[error(
        "{text}: {INDEX_VAR} is not set (Kubernetes sets it in the pods of an Indexed Job; \
         elsewhere give the index: 0/{count})"
    )]
    NoIndexVar { text: String, count: usize },
    #[error("{text}: {INDEX_VAR}={value} is not a shard index below {count} (0-based: {})", examples(*count))]
    BadIndexVar { text: String, value: String, count: usize },
}

/// `0/3, 1/3, 2/3`; `0/100, 1/100, …, 99/100` for many.
fn examples(count: usize) -> String {
    match count {
        0 => "none".into(),
        1..=4 => (0..count).map(|i| format!("{i}/{count}")).collect::<Vec<_>>().join(", "),
        _ => format!("0/{count}, 1/{count}, …, {}/{count}", count - 1),
    }
}

impl Shard {
    /// Shard `index` of `count`.
    pub fn new(index: usize, count: usize) -> Result<Shard, ShardError> {
        let text = format!("{index}/{count}");
        if count == 0 {
            return Err(ShardError::ZeroCount(text));
        }
        if count > MAX_COUNT {
            return Err(ShardError::TooMany { text });
        }
        if index >= count {
            return Err(ShardError::IndexTooLarge { text, count });
        }
        Ok(Shard { index, count })
    }

    /// The whole list as one shard (`0/1`).
    pub fn whole() -> Shard {
        Shard { index: 0, count: 1 }
    }

    /// `i/N` or `auto/N`; `env` looks up [`INDEX_VAR`] for `auto`.
    pub fn parse_with(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Shard, ShardError> {
        let trimmed = text.trim();
        let (index, count) = trimmed.split_once('/').ok_or_else(|| ShardError::Syntax(trimmed.to_string()))?;
        let (index, count) = (index.trim(), count.trim());
        if index.is_empty() || count.is_empty() {
            return Err(ShardError::Syntax(trimmed.to_string()));
        }
        let number = |part: &str| {
            part.parse::<usize>()
                .map_err(|_| ShardError::NotANumber { text: trimmed.to_string(), part: part.to_string() })
        };
        let count = number(count)?;
        if count == 0 {
            return Err(ShardError::ZeroCount(trimmed.to_string()));
        }
        if count > MAX_COUNT {
            return Err(ShardError::TooMany { text: trimmed.to_string() });
        }
        let index = if index.eq_ignore_ascii_case("auto") {
            let value = env(INDEX_VAR).ok_or_else(|| ShardError::NoIndexVar { text: trimmed.to_string(), count })?;
            match value.trim().parse::<usize>() {
                Ok(i) if i < count => i,
                _ => return Err(ShardError::BadIndexVar { text: trimmed.to_string(), value, count }),
            }
        } else {
            number(index)?
        };
        if index >= count {
            return Err(ShardError::IndexTooLarge { text: trimmed.to_string(), count });
        }
        Ok(Shard { index, count })
    }

    /// The 0-based index, below [`Shard::count`].
    pub fn index(&self) -> usize {
        self.index
    }

    /// How many shards the list is split into.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Whether this shard takes the item at `position` (0-based) of the list.
    pub fn selects(&self, position: usize) -> bool {
        position % self.count == self.index
    }

    /// The positions of a list of `len` items this shard takes, in order.
    pub fn positions(&self, len: usize) -> impl Iterator<Item = usize> {
        (self.index..len).step_by(self.count)
    }

    /// Every shard of `count`, `0/count` first.
    pub fn all(count: usize) -> Result<Vec<Shard>, ShardError> {
        (0..count.max(1)).map(|i| Shard::new(i, count)).collect()
    }
}

/// `i/N` or `auto/N` (the index from [`INDEX_VAR`]).
impl FromStr for Shard {
    type Err = ShardError;

    fn from_str(text: &str) -> Result<Shard, ShardError> {
        Shard::parse_with(text, |var| std::env::var(var).ok())
    }
}

/// `i/N`.
impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse(text: &str) -> Result<Shard, String> {
        Shard::parse_with(text, no_env).map_err(|e| e.to_string())
    }

    #[test]
    fn every_position_is_taken_by_exactly_one_shard() {
        for count in 1..=7 {
            let shards = Shard::all(count).expect("valid count");
            assert_eq!(shards.len(), count);
            for position in 0..50 {
                let takers: Vec<String> = shards.iter().filter(|s| s.selects(position)).map(Shard::to_string).collect();
                assert_eq!(takers.len(), 1, "position {position} of {count} shards: {takers:?}");
            }
            let mut all: Vec<usize> = shards.iter().flat_map(|s| s.positions(23)).collect();
            all.sort_unstable();
            assert_eq!(all, (0..23).collect::<Vec<_>>(), "{count} shards split 0..23 completely");
            for shard in &shards {
                let selected: Vec<usize> = (0..23).filter(|&p| shard.selects(p)).collect();
                assert_eq!(shard.positions(23).collect::<Vec<_>>(), selected, "{shard}");
            }
        }
    }

    #[test]
    fn the_split_is_stable() {
        let shard = parse("1/3").expect("valid");
        assert_eq!(shard.positions(10).collect::<Vec<_>>(), [1, 4, 7]);
        assert_eq!((shard.index(), shard.count()), (1, 3));
        assert_eq!(shard.to_string(), "1/3");
        assert_eq!(parse(" 2 / 5 ").map(|s| s.to_string()), Ok("2/5".into()));
        assert!(Shard::whole().selects(0) && Shard::whole().selects(99));
        assert_eq!(Shard::new(2, 3).map(|s| s.to_string()), Ok("2/3".into()));
    }

    #[test]
    fn parse_errors_say_how_to_write_it() {
        assert_eq!(parse("3/3"), Err("3/3: the index must be below the count (0-based: 0/3, 1/3, 2/3)".into()));
        assert_eq!(
            parse("12/10"),
            Err("12/10: the index must be below the count (0-based: 0/10, 1/10, …, 9/10)".into())
        );
        assert_eq!(parse("0/0"), Err("0/0: the count must be at least 1".into()));
        assert_eq!(parse("1/x"), Err("1/x: 'x' is not a number".into()));
        assert_eq!(parse("-1/3"), Err("-1/3: '-1' is not a number".into()));
        assert_eq!(parse("0/20000"), Err(format!("0/20000: at most {MAX_COUNT} shards")));
        for bad in ["", "3", "/3", "1/", "1-3"] {
            let e = parse(bad).expect_err(bad);
            assert!(e.contains("is not a shard: write i/N"), "{bad}: {e}");
        }
        assert_eq!(Shard::new(3, 3).map_err(|e| e.to_string()), parse("3/3"));
        assert!(Shard::new(0, 0).is_err());
    }

    #[test]
    fn auto_takes_the_index_from_kubernetes() {
        let env = |value: &'static str| move |var: &str| (var == INDEX_VAR).then(|| value.to_string());
        assert_eq!(Shard::parse_with("auto/3", env("2")), Shard::new(2, 3));
        assert_eq!(Shard::parse_with("AUTO/1", env("0")), Ok(Shard::whole()));
        let e = Shard::parse_with("auto/3", env("3")).expect_err("out of range").to_string();
        assert_eq!(e, "auto/3: JOB_COMPLETION_INDEX=3 is not a shard index below 3 (0-based: 0/3, 1/3, 2/3)");
        let e = Shard::parse_with("auto/3", env("one")).expect_err("not a number").to_string();
        assert!(e.contains("JOB_COMPLETION_INDEX=one"), "{e}");
        let e = parse("auto/3").expect_err("unset").to_string();
        assert!(e.starts_with("auto/3: JOB_COMPLETION_INDEX is not set") && e.ends_with("0/3)"), "{e}");
    }
}
