//! Findings: what the far end did that callprobe noticed and names, beside
//! (not instead of) the verdict — a late 2xx we hung up, garbage on the
//! wire, an SDP answer that cannot be read, RTP from a stranger.
//!
//! A finding is data: a stable `code` (listed in docs/failure-modes.md), the
//! evidence in words, and whether it breaks the protocol (`violation`). A
//! call with a violation fails the `peer_conduct` check; the others are
//! context (the call may still pass). The sans-I/O cores record the ones they
//! see (the caller in `sip`, the media statistics), the shell adds what only
//! it sees (bytes that never became a message).

/// One thing the far end did, as named in `calls[].findings`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Finding {
    /// Stable name, e.g. `late_2xx_answered_and_hung_up`.
    pub code: String,
    /// What happened, with the numbers.
    pub detail: String,
    /// The far end broke the protocol (the call fails `peer_conduct`).
    pub violation: bool,
}

/// At most this many findings of one code are kept (a flood of garbage must
/// not grow the report without bound); the rest are counted in the last one.
pub const MAX_PER_CODE: usize = 5;

/// A call's findings, bounded per code.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Findings {
    list: Vec<Finding>,
    /// Findings dropped past [`MAX_PER_CODE`], by code.
    #[serde(skip)]
    dropped: Vec<(String, u64)>,
}

impl Findings {
    /// Records a finding unless [`MAX_PER_CODE`] of its code are kept already.
    pub fn add(&mut self, code: &str, violation: bool, detail: impl Into<String>) {
        if self.list.iter().filter(|f| f.code == code).count() >= MAX_PER_CODE {
            match self.dropped.iter_mut().find(|(c, _)| c == code) {
                Some((_, n)) => *n += 1,
                None => self.dropped.push((code.to_string(), 1)),
            }
            return;
        }
        self.list.push(Finding { code: code.to_string(), detail: detail.into(), violation });
    }

    pub fn has(&self, code: &str) -> bool {
        self.list.iter().any(|f| f.code == code)
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Every kept finding, then one line per code whose surplus was dropped.
    pub fn to_vec(&self) -> Vec<Finding> {
        let mut out = self.list.clone();
        for (code, n) in &self.dropped {
            let violation = self.list.iter().any(|f| &f.code == code && f.violation);
            out.push(Finding { code: code.clone(), detail: format!("{n} more like the above"), violation });
        }
        out
    }

    /// Adds everything of `other` (bounded the same way).
    pub fn extend(&mut self, other: &Findings) {
        for f in &other.list {
            self.add(&f.code, f.violation, f.detail.clone());
        }
        for (code, n) in &other.dropped {
            let violation = other.list.iter().any(|f| &f.code == code && f.violation);
            for _ in 0..*n {
                self.add(code, violation, String::new());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_per_code_with_the_surplus_counted() {
        let mut f = Findings::default();
        for i in 0..100 {
            f.add("unparseable_message", true, format!("#{i}"));
        }
        f.add("answer_sdp_changed", false, "x");
        let all = f.to_vec();
        assert_eq!(all.len(), MAX_PER_CODE + 2, "{all:?}");
        assert_eq!(all.last().unwrap().detail, "95 more like the above");
        assert!(all.last().unwrap().violation);
        assert!(f.has("answer_sdp_changed"));
    }
}
