//! LiveKit SIP configuration as callprobe sees it: inbound trunks and
//! dispatch rules (only the fields the audit and the diagnoses use; never a
//! password), and how LiveKit matches a called number against them —
//! trunk numbers are normalised (`14144007103` matches `+14144007103`),
//! dispatch rule numbers are compared exactly (docs/livekit-sip.md#trunk-matching,
//! docs/livekit-sip.md#dispatch-rules).

use serde::Serialize;

/// An inbound trunk.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InboundTrunk {
    pub id: String,
    pub name: String,
    /// Called numbers the trunk accepts; empty: any (a default trunk).
    pub numbers: Vec<String>,
    pub allowed_addresses: Vec<String>,
    pub allowed_numbers: Vec<String>,
    pub auth_username: String,
    /// Whether a digest password is set (its value is never read into callprobe).
    pub auth_password_set: bool,
    /// `media_encryption`: whether the trunk takes plain RTP (`disable`,
    /// `allow`) or only SRTP (`require`).
    pub media_encryption: MediaEncryption,
}

/// An inbound trunk's `media_encryption` (LiveKit's `SIPMediaEncryption`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaEncryption {
    /// `SIP_MEDIA_ENCRYPT_DISABLE` (0): plain RTP; an SRTP offer is answered plain.
    #[default]
    Disable,
    /// `SIP_MEDIA_ENCRYPT_ALLOW` (1): SRTP when the offer has it.
    Allow,
    /// `SIP_MEDIA_ENCRYPT_REQUIRE` (2): SRTP only; a plain offer gets 500.
    Require,
}

impl MediaEncryption {
    /// From the protobuf enum's number (unknown numbers: as LiveKit reads them, disabled).
    pub fn from_proto(n: i32) -> MediaEncryption {
        match n {
            1 => MediaEncryption::Allow,
            2 => MediaEncryption::Require,
            _ => MediaEncryption::Disable,
        }
    }
}

impl InboundTrunk {
    pub fn has_credentials(&self) -> bool {
        !self.auth_username.is_empty() && self.auth_password_set
    }

    /// Accepts calls to `number` (LiveKit normalises trunk numbers).
    pub fn accepts_number(&self, number: &str) -> bool {
        self.numbers.is_empty() || self.numbers.iter().any(|n| normalize_number(n) == normalize_number(number))
    }
}

/// A dispatch rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DispatchRule {
    pub id: String,
    pub name: String,
    /// Trunks the rule applies to; empty: all trunks.
    pub trunk_ids: Vec<String>,
    /// Called numbers the rule applies to (matched exactly); empty: all.
    pub numbers: Vec<String>,
    /// Caller numbers the rule accepts; empty: all.
    pub inbound_numbers: Vec<String>,
    /// `individual`, `direct`, `callee` or `none`.
    pub kind: String,
    /// Room prefix (individual, callee) or room name (direct).
    pub room: String,
    /// Whether the rule has a `room_config` at all.
    pub has_room_config: bool,
    /// `room_config.agents[].agent_name`: the agents dispatched into each room.
    pub agents: Vec<String>,
}

impl DispatchRule {
    pub fn applies_to_trunk(&self, trunk_id: &str) -> bool {
        self.trunk_ids.is_empty() || self.trunk_ids.iter().any(|t| t == trunk_id)
    }

    /// Applies to calls to `number` (exact comparison, as LiveKit does).
    pub fn applies_to_number(&self, number: &str) -> bool {
        self.numbers.is_empty() || self.numbers.iter().any(|n| n == number)
    }

    /// The agents as people read them: `[probe-agent]`, `[] (none)`.
    pub fn agents_text(&self) -> String {
        if self.agents.is_empty() {
            if self.has_room_config {
                "[] (room_config has no agents)".into()
            } else {
                "[] (no room_config)".into()
            }
        } else {
            format!(
                "[{}]",
                self.agents.iter().map(|a| if a.is_empty() { "\"\"" } else { a }).collect::<Vec<_>>().join(", ")
            )
        }
    }
}

/// Trunks and rules of one LiveKit project.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SipConfig {
    pub trunks: Vec<InboundTrunk>,
    pub rules: Vec<DispatchRule>,
}

impl SipConfig {
    pub fn trunk(&self, id: &str) -> Option<&InboundTrunk> {
        self.trunks.iter().find(|t| t.id == id)
    }

    pub fn rule(&self, id: &str) -> Option<&DispatchRule> {
        self.rules.iter().find(|r| r.id == id)
    }

    /// The trunks a call to `number` can land on.
    pub fn trunks_for_number(&self, number: &str) -> Vec<&InboundTrunk> {
        self.trunks.iter().filter(|t| t.accepts_number(number)).collect()
    }
}

/// `(kind, room prefix or name)` from the JSON form of a `SIPDispatchRule`
/// (`{"dispatchRuleIndividual": {"roomPrefix": "call-"}}`).
pub fn rule_kind_from_json(v: &serde_json::Value) -> (String, String) {
    let pick = |key: &str| v.get(key).or_else(|| v.get(to_snake(key).as_str()));
    let field = |inner: &serde_json::Value, camel: &str| -> String {
        inner
            .get(camel)
            .or_else(|| inner.get(to_snake(camel).as_str()))
            .and_then(|x| x.as_str())
            .unwrap_or("")
            .to_string()
    };
    if let Some(inner) = pick("dispatchRuleIndividual") {
        ("individual".into(), field(inner, "roomPrefix"))
    } else if let Some(inner) = pick("dispatchRuleDirect") {
        ("direct".into(), field(inner, "roomName"))
    } else if let Some(inner) = pick("dispatchRuleCallee") {
        ("callee".into(), field(inner, "roomPrefix"))
    } else {
        ("none".into(), String::new())
    }
}

fn to_snake(camel: &str) -> String {
    let mut out = String::new();
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// LiveKit's trunk-number normalisation: drop spaces, `-`, `(`, `)` and `.`, add a `+`.
pub fn normalize_number(n: &str) -> String {
    let digits: String = n.chars().filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.')).collect();
    if digits.starts_with('+') || !looks_like_phone_number(&digits) {
        digits
    } else {
        format!("+{digits}")
    }
}

/// A phone number in some format (digits with optional `+` and separators),
/// as opposed to a SIP user name like `callprobe`.
pub fn looks_like_phone_number(s: &str) -> bool {
    let digits = s.chars().filter(|c| c.is_ascii_digit()).count();
    digits >= 7 && s.chars().all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')' | '.'))
}

/// `+` followed by 7 to 15 digits, the first not 0.
pub fn is_e164(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('+') else { return false };
    (7..=15).contains(&rest.len()) && rest.chars().all(|c| c.is_ascii_digit()) && !rest.starts_with('0')
}

/// A phone number that is not in `+E.164` form (user names are not numbers).
pub fn is_number_without_e164(s: &str) -> bool {
    looks_like_phone_number(s) && !is_e164(s)
}

#[cfg(test)]
impl SipConfig {
    /// A test config: trunk `ST_1` (user `callprobe`, a password set) for
    /// `numbers`, and rule `SDR_1` (`dispatch`) on it, with a room_config
    /// dispatching `agents`.
    pub fn for_tests(numbers: &[&str], agents: &[&str]) -> SipConfig {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        SipConfig {
            trunks: vec![InboundTrunk {
                id: "ST_1".into(),
                numbers: strings(numbers),
                auth_username: "callprobe".into(),
                auth_password_set: true,
                ..Default::default()
            }],
            rules: vec![DispatchRule {
                id: "SDR_1".into(),
                name: "dispatch".into(),
                trunk_ids: vec!["ST_1".into()],
                has_room_config: true,
                agents: strings(agents),
                ..Default::default()
            }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        for (raw, normalised) in
            [("14144007103", "+14144007103"), ("+1 (414) 400-7103", "+14144007103"), ("callprobe", "callprobe")]
        {
            assert_eq!(normalize_number(raw), normalised);
        }
        assert!(is_e164("+14144007103"));
        assert!(!is_e164("14144007103"));
        assert!(is_number_without_e164("4144007103"));
        assert!(is_number_without_e164("+1 414 400 7103"));
        assert!(!is_number_without_e164("callprobe"));
        assert!(!is_number_without_e164("+14144007103"));
    }

    #[test]
    fn trunk_numbers_are_normalised_rule_numbers_are_not() {
        let trunk = InboundTrunk { numbers: vec!["14144007103".into()], ..Default::default() };
        assert!(trunk.accepts_number("+14144007103"));
        let rule = DispatchRule { numbers: vec!["14144007103".into()], ..Default::default() };
        assert!(!rule.applies_to_number("+14144007103"));
        assert!(DispatchRule::default().applies_to_number("+1"));
        assert!(InboundTrunk::default().accepts_number("+1"));
    }

    #[test]
    fn rule_kinds() {
        let v = serde_json::json!({"dispatchRuleIndividual": {"roomPrefix": "call-"}});
        assert_eq!(rule_kind_from_json(&v), ("individual".into(), "call-".into()));
        let v = serde_json::json!({"dispatch_rule_direct": {"room_name": "lobby"}});
        assert_eq!(rule_kind_from_json(&v), ("direct".into(), "lobby".into()));
        assert_eq!(rule_kind_from_json(&serde_json::json!({})).0, "none");
    }
}
