//! `callprobe doctor`: a read-only audit of a LiveKit project's inbound SIP
//! configuration against the known failure modes (docs/failure-modes.md). It
//! lists the inbound trunks and dispatch rules and flags what is known to
//! break calls, each finding with its severity, evidence, fix and the
//! failure-mode item it belongs to.
//!
//! The audit is a table of rules ([`AUDIT_RULES`]), each a pure function from
//! the configuration to the evidence of every place it applies. The command
//! only ever lists trunks and rules: it never creates, updates or deletes.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::livekit::sip_config::{is_number_without_e164, normalize_number, DispatchRule, InboundTrunk, SipConfig};
use crate::livekit::{ApiError, ServerApi};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem found in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub code: &'static str,
    pub severity: Severity,
    pub summary: &'static str,
    /// Ids and fields that show the problem.
    pub evidence: String,
    pub fix: &'static str,
    /// The failure-mode item (`docs/failure-modes.md#…`) and upstream issues.
    pub reference: &'static str,
}

/// What the user expects the configuration to do.
#[derive(Debug, Clone, Default)]
pub struct AuditExpectations {
    /// `--agent NAME`: every dispatch rule should dispatch this agent.
    pub agent: Option<String>,
    /// `--number N`: numbers that must reach a trunk and a dispatch rule.
    pub numbers: Vec<String>,
}

struct AuditInput<'a> {
    config: &'a SipConfig,
    expect: &'a AuditExpectations,
}

impl AuditInput<'_> {
    fn trunks(&self) -> &[InboundTrunk] {
        &self.config.trunks
    }
    fn rules(&self) -> &[DispatchRule] {
        &self.config.rules
    }
    /// The trunks a rule applies to (all of them when it names none).
    fn trunks_of<'b>(&'b self, rule: &'b DispatchRule) -> impl Iterator<Item = &'b InboundTrunk> + 'b {
        self.trunks().iter().filter(move |t| rule.applies_to_trunk(&t.id))
    }
}

/// One audit rule: where it applies, with the evidence for each place.
struct AuditRule {
    code: &'static str,
    severity: Severity,
    find: fn(&AuditInput) -> Vec<String>,
    summary: &'static str,
    fix: &'static str,
    reference: &'static str,
}

fn rule_label(r: &DispatchRule) -> String {
    if r.name.is_empty() {
        format!("rule {}", r.id)
    } else {
        format!("rule {} \"{}\"", r.id, r.name)
    }
}

fn trunk_label(t: &InboundTrunk) -> String {
    if t.name.is_empty() {
        format!("trunk {}", t.id)
    } else {
        format!("trunk {} \"{}\"", t.id, t.name)
    }
}

/// Whether two trunks with a common number are told apart by source address
/// or caller number (LiveKit matches on those before the number).
fn trunks_kept_apart(a: &InboundTrunk, b: &InboundTrunk) -> bool {
    let disjoint = |x: &[String], y: &[String]| !x.is_empty() && !y.is_empty() && !x.iter().any(|v| y.contains(v));
    disjoint(&a.allowed_addresses, &b.allowed_addresses) || disjoint(&a.allowed_numbers, &b.allowed_numbers)
}

const AUDIT_RULES: &[AuditRule] = &[
    AuditRule {
        code: "no_inbound_trunks",
        severity: Severity::Error,
        find: |i| if i.trunks().is_empty() { vec!["ListSIPInboundTrunk returned no trunks".into()] } else { vec![] },
        summary: "There is no inbound trunk: LiveKit SIP cannot accept any call",
        fix: "Create an inbound trunk with the carrier's numbers in +E.164 form and credential auth (`lk sip inbound create`)",
        reference: "docs/failure-modes.md#1-404-no-trunk-found-the-trunk-does-not-match (runbook item 1)",
    },
    AuditRule {
        code: "no_dispatch_rules",
        severity: Severity::Error,
        find: |i| {
            if i.rules().is_empty() {
                vec!["ListSIPDispatchRule returned no rules: every call is dropped".into()]
            } else {
                vec![]
            }
        },
        summary: "There is no dispatch rule: calls are never put in a room",
        fix: "Create a dispatch rule through the SIPDispatchRuleInfo wrapper with room_config.agents = [your agent]",
        reference: "docs/failure-modes.md#11-no-dispatch-rule-takes-the-call (runbook item 11); docs/livekit-sip.md#dispatch-rules",
    },
    AuditRule {
        code: "dispatch_rule_without_agents",
        severity: Severity::Error,
        find: |i| {
            i.rules()
                .iter()
                .filter(|r| r.agents.is_empty())
                .map(|r| format!("{}: room_config.agents = {}", rule_label(r), r.agents_text()))
                .collect()
        },
        summary: "A dispatch rule dispatches no agent: rooms are created, the agent never joins (the deprecated-fields trap: room_config silently ignored)",
        fix: "Update the rule in place with the SIPDispatchRuleInfo wrapper: room_config=RoomConfiguration(agents=[RoomAgentDispatch(agent_name=...)]) (`lk.sip.update_sip_dispatch_rule(rule_id, SIPDispatchRuleInfo(...))`); never delete-then-recreate",
        reference: "docs/failure-modes.md#2-the-agent-never-joins-no-agent-in-the-dispatch-rule (runbook item 2); livekit/sip#401, livekit/livekit#3690",
    },
    AuditRule {
        code: "agent_name_mismatch",
        severity: Severity::Error,
        find: |i| match i.expect.agent.as_deref() {
            Some(want) => i
                .rules()
                .iter()
                .filter(|r| !r.agents.is_empty() && !r.agents.iter().any(|a| a == want))
                .map(|r| format!("{} dispatches {}, expected \"{want}\"", rule_label(r), r.agents_text()))
                .collect(),
            None => vec![],
        },
        summary: "A dispatch rule dispatches a different agent_name than the agent that should answer",
        fix: "Use the same explicit agent_name on @server.rtc_session(agent_name=...) and in the rule's RoomAgentDispatch(agent_name=...)",
        reference: "docs/failure-modes.md#4-agent_name-mismatch (runbook item 4); livekit/agents#3202",
    },
    AuditRule {
        code: "dispatch_rule_agent_without_name",
        severity: Severity::Warning,
        find: |i| {
            i.rules()
                .iter()
                .filter(|r| r.agents.iter().any(String::is_empty))
                .map(|r| format!("{} has a RoomAgentDispatch with an empty agent_name", rule_label(r)))
                .collect()
        },
        summary: "A dispatch rule relies on implicit agent matching (empty agent_name), which is unreliable for SIP calls",
        fix: "Set an explicit agent_name on both the agent (@server.rtc_session(agent_name=...)) and the rule",
        reference: "docs/failure-modes.md#4-agent_name-mismatch (runbook item 4); livekit/agents#3202",
    },
    AuditRule {
        code: "trunk_without_credentials",
        severity: Severity::Error,
        find: |i| {
            i.trunks()
                .iter()
                .filter(|t| t.auth_username.is_empty() && !t.auth_password_set && t.allowed_addresses.is_empty())
                .map(|t| format!("{}: no auth_username/auth_password and no allowed_addresses", trunk_label(t)))
                .collect()
        },
        summary: "An inbound trunk has neither credentials nor allowed addresses: in a shared environment (LiveKit Cloud) INVITEs cannot be matched to it reliably (\"404 No trunk found\")",
        fix: "Set the same user/password on the carrier and on the trunk (`lk sip inbound update --id <trunk> --auth-user U --auth-pass P`)",
        reference: "docs/failure-modes.md#1-404-no-trunk-found-the-trunk-does-not-match (runbook item 1); docs/failure-modes.md#authentication-strategy; livekit/sip#592",
    },
    AuditRule {
        code: "trunk_incomplete_credentials",
        severity: Severity::Error,
        find: |i| {
            i.trunks()
                .iter()
                .filter(|t| t.auth_username.is_empty() == t.auth_password_set)
                .map(|t| {
                    if t.auth_username.is_empty() {
                        format!("{}: auth_password set, auth_username empty", trunk_label(t))
                    } else {
                        format!("{}: auth_username \"{}\", auth_password empty", trunk_label(t), t.auth_username)
                    }
                })
                .collect()
        },
        summary: "An inbound trunk has only half of its digest credentials",
        fix: "Set both auth_username and auth_password, equal to the carrier's user_name/password",
        reference: "docs/failure-modes.md#6-credentials-rejected (runbook item 6)",
    },
    AuditRule {
        code: "trunk_ip_auth_only",
        severity: Severity::Warning,
        find: |i| {
            i.trunks()
                .iter()
                .filter(|t| !t.has_credentials() && !t.allowed_addresses.is_empty() && t.auth_username.is_empty())
                .map(|t| format!("{}: allowed_addresses {:?}, no credentials", trunk_label(t), t.allowed_addresses))
                .collect()
        },
        summary: "An inbound trunk relies on IP allow-listing only; carriers share IP ranges, so this is the fallback, not the primary",
        fix: "Add credential auth (auth_username/auth_password) matching the carrier",
        reference: "docs/failure-modes.md#9-trunk-trusted-by-source-address-only (runbook item 9); docs/failure-modes.md#authentication-strategy",
    },
    AuditRule {
        code: "number_not_e164",
        severity: Severity::Warning,
        find: |i| {
            let mut out = Vec::new();
            for t in i.trunks() {
                for n in t.numbers.iter().filter(|n| is_number_without_e164(n)) {
                    out.push(format!("{} number \"{n}\" (LiveKit normalises it to {})", trunk_label(t), normalize_number(n)));
                }
                for n in t.allowed_numbers.iter().filter(|n| is_number_without_e164(n)) {
                    out.push(format!("{} allowed_numbers \"{n}\"", trunk_label(t)));
                }
            }
            for r in i.rules() {
                for n in r.numbers.iter().chain(&r.inbound_numbers).filter(|n| is_number_without_e164(n)) {
                    out.push(format!("{} number \"{n}\" (dispatch rule numbers are compared exactly)", rule_label(r)));
                }
            }
            out
        },
        summary: "A number is not in +E.164 form; carriers send different formats (ani/dnis_number_format), and rule numbers must match exactly",
        fix: "Write every number as +E.164 (+14144007103); set the carrier's ani_number_format \"+E.164\" and dnis_number_format \"+e164\"",
        reference: "docs/failure-modes.md#5-numbers-not-in-e164-form (runbook item 5)",
    },
    AuditRule {
        code: "number_on_two_trunks",
        severity: Severity::Error,
        find: |i| {
            let mut by_number: BTreeMap<String, Vec<&InboundTrunk>> = BTreeMap::new();
            for t in i.trunks() {
                let mut seen = Vec::new();
                for n in &t.numbers {
                    let key = normalize_number(n);
                    if !seen.contains(&key) {
                        by_number.entry(key.clone()).or_default().push(t);
                        seen.push(key);
                    }
                }
            }
            by_number
                .into_iter()
                .filter(|(_, ts)| {
                    ts.len() > 1
                        && ts.iter().enumerate().any(|(k, a)| ts[k + 1..].iter().any(|b| !trunks_kept_apart(a, b)))
                })
                .map(|(n, ts)| {
                    format!("{n} is on {}", ts.iter().map(|t| trunk_label(t)).collect::<Vec<_>>().join(" and "))
                })
                .collect()
        },
        summary: "The same number is on two inbound trunks that nothing else tells apart: LiveKit cannot pick one (503 or the wrong trunk)",
        fix: "Keep each number on one trunk, or separate the trunks by allowed_addresses / allowed_numbers",
        reference: "docs/failure-modes.md#10-503-two-trunks-match-or-dispatch-failed (runbook item 10); docs/livekit-sip.md#trunk-matching",
    },
    AuditRule {
        code: "rule_trunk_unknown",
        severity: Severity::Error,
        find: |i| {
            i.rules()
                .iter()
                .flat_map(|r| {
                    r.trunk_ids
                        .iter()
                        .filter(|id| i.config.trunk(id).is_none())
                        .map(move |id| format!("{} names trunk {id}, which does not exist", rule_label(r)))
                })
                .collect()
        },
        summary: "A dispatch rule points at a trunk that does not exist (deleted or recreated under a new id)",
        fix: "Update the rule's trunk_ids to the live trunk ids (`lk sip inbound list`); update in place, never delete-then-recreate",
        reference: "docs/failure-modes.md#12-a-dispatch-rule-names-a-trunk-that-is-gone (runbook item 12); docs/failure-modes.md#changing-trunks-and-rules-safely",
    },
    AuditRule {
        code: "rule_number_not_on_trunk",
        severity: Severity::Error,
        find: |i| {
            i.rules()
                .iter()
                .flat_map(|r| {
                    r.numbers
                        .iter()
                        .filter(|n| !i.trunks_of(r).any(|t| t.accepts_number(n)))
                        .map(move |n| format!("{} applies to number \"{n}\", which none of its trunks accepts", rule_label(r)))
                })
                .collect()
        },
        summary: "A dispatch rule applies to a number that no trunk of the rule accepts: that part of the rule never matches",
        fix: "Add the number to the trunk, or correct the rule's numbers (same +E.164 spelling as the carrier sends)",
        reference: "docs/failure-modes.md#5-numbers-not-in-e164-form (runbook item 5); docs/livekit-sip.md#dispatch-rules",
    },
    AuditRule {
        code: "trunk_without_dispatch_rule",
        severity: Severity::Warning,
        find: |i| {
            if i.rules().is_empty() {
                return vec![];
            }
            i.trunks()
                .iter()
                .filter(|t| !i.rules().iter().any(|r| r.applies_to_trunk(&t.id)))
                .map(|t| format!("no dispatch rule applies to {}", trunk_label(t)))
                .collect()
        },
        summary: "Calls on this trunk match no dispatch rule: LiveKit drops them",
        fix: "Add the trunk id to a dispatch rule's trunk_ids (or use a rule without trunk_ids)",
        reference: "docs/failure-modes.md#11-no-dispatch-rule-takes-the-call (runbook item 11); docs/livekit-sip.md#dispatch-rules",
    },
    AuditRule {
        code: "number_not_on_trunk",
        severity: Severity::Error,
        find: |i| {
            i.expect
                .numbers
                .iter()
                .filter(|n| !i.trunks().is_empty() && i.config.trunks_for_number(n).is_empty())
                .map(|n| {
                    let on: Vec<String> = i.trunks().iter().flat_map(|t| t.numbers.clone()).collect();
                    format!("{n} is on no inbound trunk (trunk numbers: {})", on.join(", "))
                })
                .collect()
        },
        summary: "A number that should reach the agent is on no inbound trunk (\"404 No trunk found\" on LiveKit Cloud, a dropped INVITE on a self-hosted server)",
        fix: "Add the number in +E.164 form to the inbound trunk (`lk sip inbound update --id <trunk> --numbers ...`)",
        reference: "docs/failure-modes.md#1-404-no-trunk-found-the-trunk-does-not-match (runbook item 1)",
    },
    AuditRule {
        code: "number_without_dispatch_rule",
        severity: Severity::Error,
        find: |i| {
            let mut out = Vec::new();
            for n in &i.expect.numbers {
                for t in i.config.trunks_for_number(n) {
                    if !i.rules().is_empty() && !i.rules().iter().any(|r| r.applies_to_trunk(&t.id) && r.applies_to_number(n)) {
                        out.push(format!("{n} reaches {} but no dispatch rule applies to that trunk and number", trunk_label(t)));
                    }
                }
            }
            out
        },
        summary: "A number reaches a trunk but no dispatch rule takes the call",
        fix: "Add the trunk (and, if the rule lists numbers, the number exactly as sent) to a dispatch rule",
        reference: "docs/failure-modes.md#11-no-dispatch-rule-takes-the-call (runbook item 11); docs/livekit-sip.md#dispatch-rules",
    },
];

/// Audits trunks and dispatch rules; errors first, then warnings, in table order.
pub fn audit(config: &SipConfig, expect: &AuditExpectations) -> Vec<Finding> {
    let input = AuditInput { config, expect };
    let mut findings: Vec<Finding> = AUDIT_RULES
        .iter()
        .flat_map(|rule| {
            (rule.find)(&input).into_iter().map(|evidence| Finding {
                code: rule.code,
                severity: rule.severity,
                summary: rule.summary,
                evidence,
                fix: rule.fix,
                reference: rule.reference,
            })
        })
        .collect();
    findings.sort_by_key(|f| f.severity);
    findings
}

/// Reads the trunks and rules (two list requests, nothing else) and audits them.
pub async fn run(api: &ServerApi, expect: &AuditExpectations) -> Result<DoctorReport, ApiError> {
    let config = api.fetch_sip_config().await?;
    Ok(DoctorReport::new(api.url(), config, expect))
}

/// The whole doctor result, as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct DoctorReport {
    pub livekit_url: String,
    pub trunks: Vec<InboundTrunk>,
    pub dispatch_rules: Vec<DispatchRule>,
    pub findings: Vec<Finding>,
    pub errors: usize,
    pub warnings: usize,
}

impl DoctorReport {
    pub fn new(livekit_url: &str, config: SipConfig, expect: &AuditExpectations) -> DoctorReport {
        let findings = audit(&config, expect);
        let errors = findings.iter().filter(|f| f.severity == Severity::Error).count();
        DoctorReport {
            livekit_url: livekit_url.to_string(),
            warnings: findings.len() - errors,
            errors,
            findings,
            trunks: config.trunks,
            dispatch_rules: config.rules,
        }
    }

    /// [`Exit::SystemUnderTestFailed`] when an error-level finding exists.
    pub fn exit(&self) -> crate::exit::Exit {
        if self.errors > 0 {
            crate::exit::Exit::SystemUnderTestFailed
        } else {
            crate::exit::Exit::Passed
        }
    }

    /// The report for people: the two lists, then the findings.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "LiveKit {}: {} inbound trunk(s), {} dispatch rule(s)\n",
            self.livekit_url,
            self.trunks.len(),
            self.dispatch_rules.len()
        );
        let trunk_rows: Vec<Vec<String>> = self
            .trunks
            .iter()
            .map(|t| {
                let auth = match (t.auth_username.is_empty(), t.auth_password_set) {
                    (false, true) => format!("user {}, password set", t.auth_username),
                    (false, false) => format!("user {}, NO password", t.auth_username),
                    (true, true) => "password only".into(),
                    (true, false) => "none".into(),
                };
                let addresses =
                    if t.allowed_addresses.is_empty() { "any".into() } else { t.allowed_addresses.join(",") };
                let numbers = if t.numbers.is_empty() { "(any)".into() } else { t.numbers.join(",") };
                vec![t.id.clone(), t.name.clone(), numbers, auth, addresses]
            })
            .collect();
        out.push_str("INBOUND TRUNKS\n");
        out.push_str(&table(&["ID", "NAME", "NUMBERS", "AUTH", "ALLOWED ADDRESSES"], &trunk_rows));
        let rule_rows: Vec<Vec<String>> = self
            .dispatch_rules
            .iter()
            .map(|r| {
                let trunks = if r.trunk_ids.is_empty() { "(all)".into() } else { r.trunk_ids.join(",") };
                let numbers = if r.numbers.is_empty() { "(all)".into() } else { r.numbers.join(",") };
                let kind = if r.room.is_empty() { r.kind.clone() } else { format!("{} {}", r.kind, r.room) };
                vec![r.id.clone(), r.name.clone(), trunks, numbers, kind, r.agents_text()]
            })
            .collect();
        out.push_str("\nDISPATCH RULES\n");
        out.push_str(&table(&["ID", "NAME", "TRUNKS", "NUMBERS", "RULE", "AGENTS"], &rule_rows));
        out.push('\n');
        if self.findings.is_empty() {
            out.push_str("FINDINGS none\n");
        } else {
            out.push_str("FINDINGS\n");
            for f in &self.findings {
                let level = match f.severity {
                    Severity::Error => "ERROR",
                    Severity::Warning => "WARN ",
                };
                let _ = writeln!(out, "  {level} [{}] {}", f.code, f.summary);
                let _ = writeln!(out, "        evidence: {}", f.evidence);
                let _ = writeln!(out, "        fix: {}", f.fix);
                let _ = writeln!(out, "        see: {}", f.reference);
            }
        }
        let _ = writeln!(out, "doctor   {} error(s), {} warning(s)", self.errors, self.warnings);
        out
    }
}

fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    if rows.is_empty() {
        return "  (none)\n".into();
    }
    let widths: Vec<usize> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| rows.iter().map(|r| r[i].chars().count()).chain([h.len()]).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in std::iter::once(headers.iter().map(|h| h.to_string()).collect::<Vec<_>>()).chain(rows.iter().cloned()) {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        let _ = writeln!(out, "  {}", cells.join("  ").trim_end());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean() -> SipConfig {
        let mut config = SipConfig::for_tests(&["+14144007103", "+13658253552"], &["probe-agent"]);
        config.trunks[0].name = "inbound".into();
        config.rules[0].kind = "individual".into();
        config.rules[0].room = "call-".into();
        config
    }

    fn expect(agent: Option<&str>, numbers: &[&str]) -> AuditExpectations {
        AuditExpectations { agent: agent.map(str::to_string), numbers: numbers.iter().map(|n| n.to_string()).collect() }
    }

    fn codes(config: &SipConfig, e: &AuditExpectations) -> Vec<&'static str> {
        audit(config, e).into_iter().map(|f| f.code).collect()
    }

    #[test]
    fn every_reference_points_at_a_docs_heading() {
        crate::doc_links::assert_references("doctor finding", AUDIT_RULES.iter().map(|r| (r.code, r.reference)));
    }

    #[test]
    fn clean_config_has_no_findings() {
        assert!(audit(&clean(), &expect(Some("probe-agent"), &["+14144007103"])).is_empty());
        assert!(audit(&clean(), &AuditExpectations::default()).is_empty());
    }

    #[test]
    fn rule_without_agents() {
        let mut c = clean();
        c.rules[0].agents.clear();
        let f = audit(&c, &AuditExpectations::default());
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].code, f[0].severity), ("dispatch_rule_without_agents", Severity::Error));
        assert!(f[0].evidence.contains("SDR_1"), "{}", f[0].evidence);
        assert!(f[0].reference.starts_with("docs/failure-modes.md#2-"), "{}", f[0].reference);
        // No agents means no mismatch to report for --agent as well.
        assert_eq!(codes(&c, &expect(Some("probe-agent"), &[])), ["dispatch_rule_without_agents"]);
    }

    #[test]
    fn other_agent_name() {
        let mut c = clean();
        c.rules[0].agents = vec!["other-agent".into()];
        assert!(audit(&c, &AuditExpectations::default()).is_empty());
        let f = audit(&c, &expect(Some("probe-agent"), &[]));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].code, "agent_name_mismatch");
        assert!(f[0].evidence.contains("other-agent") && f[0].evidence.contains("probe-agent"));
        c.rules[0].agents = vec![String::new()];
        assert_eq!(codes(&c, &AuditExpectations::default()), ["dispatch_rule_agent_without_name"]);
    }

    #[test]
    fn trunk_credentials() {
        let mut c = clean();
        c.trunks[0].auth_username.clear();
        c.trunks[0].auth_password_set = false;
        assert_eq!(codes(&c, &AuditExpectations::default()), ["trunk_without_credentials"]);
        c.trunks[0].allowed_addresses = vec!["192.0.2.0/24".into()];
        assert_eq!(codes(&c, &AuditExpectations::default()), ["trunk_ip_auth_only"]);
        let mut c = clean();
        c.trunks[0].auth_password_set = false;
        assert_eq!(codes(&c, &AuditExpectations::default()), ["trunk_incomplete_credentials"]);
    }

    #[test]
    fn numbers() {
        let mut c = clean();
        c.trunks[0].numbers = vec!["+13658253552".into()];
        assert_eq!(codes(&c, &expect(None, &["+14144007103"])), ["number_not_on_trunk"]);
        c.trunks[0].numbers = vec!["14144007103".into()];
        // Normalised: the number still reaches the trunk; only the format is flagged.
        assert_eq!(codes(&c, &expect(None, &["+14144007103"])), ["number_not_e164"]);
        let mut c = clean();
        c.rules[0].numbers = vec!["14144007103".into()];
        let found = codes(&c, &expect(None, &["+14144007103"]));
        assert_eq!(found, ["number_without_dispatch_rule", "number_not_e164"]);
        c.rules[0].numbers = vec!["+15550000000".into()];
        assert_eq!(codes(&c, &AuditExpectations::default()), ["rule_number_not_on_trunk"]);
    }

    #[test]
    fn same_number_on_two_trunks() {
        let mut c = clean();
        let mut second = c.trunks[0].clone();
        second.id = "ST_2".into();
        second.numbers = vec!["14144007103".into()];
        c.trunks.push(second);
        let f = audit(&c, &AuditExpectations::default());
        let dup: Vec<_> = f.iter().filter(|f| f.code == "number_on_two_trunks").collect();
        assert_eq!(dup.len(), 1, "{f:?}");
        assert!(dup[0].evidence.contains("ST_1") && dup[0].evidence.contains("ST_2"));
        // Told apart by source addresses: fine.
        c.trunks[0].allowed_addresses = vec!["192.0.2.1".into()];
        c.trunks[1].allowed_addresses = vec!["198.51.100.1".into()];
        assert!(!codes(&c, &AuditExpectations::default()).contains(&"number_on_two_trunks"));
    }

    #[test]
    fn rules_pointing_nowhere() {
        let mut c = clean();
        c.rules[0].trunk_ids = vec!["ST_gone".into()];
        assert_eq!(codes(&c, &AuditExpectations::default()), ["rule_trunk_unknown", "trunk_without_dispatch_rule"]);
        assert_eq!(
            codes(&SipConfig::default(), &AuditExpectations::default()),
            ["no_inbound_trunks", "no_dispatch_rules"]
        );
    }

    #[test]
    fn report_exit_code_and_table() {
        let mut c = clean();
        c.rules[0].agents.clear();
        let r = DoctorReport::new("ws://127.0.0.1:7880", c, &AuditExpectations::default());
        assert_eq!((r.errors, r.warnings, r.exit().code()), (1, 0, 1));
        let t = r.table();
        assert!(t.contains("ST_1") && t.contains("SDR_1") && t.contains("dispatch_rule_without_agents"), "{t}");
        assert!(!t.contains("password\":"), "{t}");
        let ok = DoctorReport::new("ws://x", clean(), &AuditExpectations::default());
        assert_eq!(ok.exit(), crate::exit::Exit::Passed);
        let json = serde_json::to_value(&ok).unwrap();
        assert_eq!(json["trunks"][0]["auth_password_set"], true);
        assert_eq!(json["findings"].as_array().unwrap().len(), 0);
    }
}
