//! Login text key negotiation (RFC 7143 §6.2, §13): what the initiator offers, how it checks
//! the target's answers, and how it answers keys the target proposes (LIO does).

use core::fmt;
use std::collections::HashSet;

/// How a key's result is computed (RFC 7143 §13).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Kind {
    /// HeaderDigest / DataDigest: a list, the responder picks the first value it supports.
    Digest,
    /// Numeric, result is the minimum (responder may not exceed the offer).
    Min(u32, u32),
    /// Numeric, result is the maximum (responder may not go below the offer).
    Max(u32, u32),
    /// Boolean, result is the OR.
    Or,
    /// Boolean, result is the AND.
    And,
    /// Declared by each side for itself; never answered (MaxRecvDataSegmentLength, aliases).
    Declarative,
    /// Obsoleted by RFC 7143 §13.25 (markers): never offered; a proposal is answered Reject.
    Obsolete,
}

fn kind(key: &str) -> Option<Kind> {
    Some(match key {
        "HeaderDigest" | "DataDigest" => Kind::Digest,
        "MaxConnections" => Kind::Min(1, 65535),
        "MaxBurstLength" | "FirstBurstLength" => Kind::Min(512, MAX_DATA_SEGMENT_LEN),
        "DefaultTime2Wait" => Kind::Max(0, 3600),
        "DefaultTime2Retain" => Kind::Min(0, 3600),
        "MaxOutstandingR2T" => Kind::Min(1, 65535),
        "ErrorRecoveryLevel" => Kind::Min(0, 2),
        "InitialR2T" | "DataPDUInOrder" | "DataSequenceInOrder" => Kind::Or,
        "ImmediateData" => Kind::And,
        "IFMarker" | "OFMarker" | "IFMarkInt" | "OFMarkInt" => Kind::Obsolete,
        "MaxRecvDataSegmentLength"
        | "TargetAlias"
        | "TargetPortalGroupTag"
        | "TargetAddress"
        | "TargetName" => Kind::Declarative,
        _ => return None,
    })
}

/// The values RFC 7143 §6.2 reserves for answers; never a proposal.
fn is_reserved_answer(value: &str) -> bool {
    matches!(value, "Reject" | "Irrelevant" | "NotUnderstood")
}

/// A numerical value: a decimal constant or a `0x` hex constant (RFC 7143 §6.1).
fn parse_num(v: &str) -> Option<u32> {
    match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}

/// Which digest the initiator wants.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub enum DigestPref {
    /// Offer `None` only.
    #[default]
    Off,
    /// Offer `CRC32C,None`: CRC32C if the target supports it.
    Prefer,
    /// Offer `CRC32C` only.
    Require,
}

impl DigestPref {
    fn offer(self) -> &'static str {
        match self {
            Self::Off => "None",
            Self::Prefer => "CRC32C,None",
            Self::Require => "CRC32C",
        }
    }

    fn accepts(self, v: &str) -> bool {
        match self {
            Self::Off => v == "None",
            Self::Prefer => v == "None" || v == "CRC32C",
            Self::Require => v == "CRC32C",
        }
    }
}

/// The operational parameters of a session and connection, as negotiated (RFC 7143 defaults
/// until then).
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct Params {
    /// HeaderDigest=CRC32C.
    pub header_digest: bool,
    /// DataDigest=CRC32C.
    pub data_digest: bool,
    /// The initiator's declared MaxRecvDataSegmentLength (limits Data-In segments).
    pub max_recv_data_segment_len: u32,
    /// The target's declared MaxRecvDataSegmentLength (limits what the initiator sends).
    pub max_xmit_data_segment_len: u32,
    /// MaxBurstLength.
    pub max_burst_len: u32,
    /// FirstBurstLength (never above MaxBurstLength; when it is irrelevant, RFC 7143 §13.14,
    /// whatever was agreed, kept within MaxBurstLength).
    pub first_burst_len: u32,
    /// InitialR2T.
    pub initial_r2t: bool,
    /// ImmediateData.
    pub immediate_data: bool,
    /// MaxOutstandingR2T.
    pub max_outstanding_r2t: u32,
    /// DataPDUInOrder.
    pub data_pdu_in_order: bool,
    /// DataSequenceInOrder.
    pub data_sequence_in_order: bool,
    /// ErrorRecoveryLevel.
    pub error_recovery_level: u32,
    /// MaxConnections.
    pub max_connections: u32,
    /// DefaultTime2Wait.
    pub default_time2wait: u32,
    /// DefaultTime2Retain.
    pub default_time2retain: u32,
    /// TargetAlias, if the target declared one.
    pub target_alias: Option<String>,
    /// TargetPortalGroupTag, if declared.
    pub target_portal_group_tag: Option<u16>,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            header_digest: false,
            data_digest: false,
            max_recv_data_segment_len: 8192,
            max_xmit_data_segment_len: 8192,
            max_burst_len: 262_144,
            first_burst_len: 65536,
            initial_r2t: true,
            immediate_data: true,
            max_outstanding_r2t: 1,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
            error_recovery_level: 0,
            max_connections: 1,
            default_time2wait: 2,
            default_time2retain: 20,
            target_alias: None,
            target_portal_group_tag: None,
        }
    }
}

/// Why negotiation failed: the target answered outside what the rules allow.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum NegotiationError {
    /// The answer to `key` is not allowed (out of range, not in the offer, breaks the result
    /// function).
    BadAnswer {
        /// The key.
        key: String,
        /// The value received.
        value: String,
    },
    /// The target answered Reject (or Irrelevant) to a digest offer: no digest both sides
    /// accept was agreed, and the two sides would frame PDUs differently (istgt rejects
    /// `HeaderDigest=None` when it wants digests, and completes the login anyway).
    DigestRefused {
        /// HeaderDigest or DataDigest.
        key: String,
        /// What the initiator offered.
        offered: String,
        /// The target's answer (`Reject`, `Irrelevant`, `None`, or `unanswered`).
        answer: String,
    },
    /// The target proposed keys in its final Login Response (there is no round left to answer).
    LateProposal {
        /// The key.
        key: String,
    },
    /// FirstBurstLength ended up above MaxBurstLength while unsolicited data is allowed.
    FirstBurstAboveMaxBurst {
        /// FirstBurstLength.
        first: u32,
        /// MaxBurstLength.
        max: u32,
    },
    /// Malformed text data.
    Text(crate::wire::text::TextError),
    /// The target sent a key a second time in one login (RFC 7143 §6.3: a renegotiation or
    /// redeclaration the initiator must detect, and drop the connection).
    Duplicate {
        /// The key.
        key: String,
    },
    /// The target left an offered key unanswered where RFC 7143 §6.2.1 requires an answer
    /// (everything except an OR key offered as Yes and an AND key offered as No).
    Unanswered {
        /// The key.
        key: String,
        /// What the initiator offered.
        offered: String,
    },
    /// The target answered NotUnderstood to a key of RFC 7143, which every implementation must
    /// understand (§6.2).
    NotUnderstood {
        /// The key.
        key: String,
    },
    /// The target proposed a value RFC 7143 §6.2 reserves for answers (Reject, Irrelevant,
    /// NotUnderstood).
    ReservedValue {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
}

impl fmt::Display for NegotiationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadAnswer { key, value } => write!(f, "bad answer {key}={value}"),
            Self::DigestRefused {
                key,
                offered,
                answer,
            } => {
                let answered = if answer == "unanswered" {
                    format!("the target did not answer {key}={offered}")
                } else {
                    format!("the target answered {key}={answer} to {key}={offered}")
                };
                if offered == "None" {
                    write!(
                        f,
                        "{answered}: it will not work without a digest, and the host is set \
                         for none (DigestPref::Off; allow CRC32C with DigestPref::Prefer); no \
                         {key} was agreed"
                    )
                } else if offered.contains("None") {
                    write!(f, "{answered}: no {key} both sides accept was agreed")
                } else {
                    write!(
                        f,
                        "{answered}: the host requires CRC32C (DigestPref::Require)"
                    )
                }
            }
            Self::LateProposal { key } => write!(f, "target proposed {key} in its final response"),
            Self::FirstBurstAboveMaxBurst { first, max } => write!(
                f,
                "FirstBurstLength {first} exceeds MaxBurstLength {max} (RFC 7143 §13.14)"
            ),
            Self::Text(e) => write!(f, "text: {e}"),
            Self::Duplicate { key } => write!(
                f,
                "the target sent {key} twice (RFC 7143 §6.3: a key is negotiated or declared \
                 at most once per login)"
            ),
            Self::Unanswered { key, offered } => write!(
                f,
                "the target did not answer {key}={offered} (RFC 7143 §6.2.1: only an OR key \
                 offered as Yes or an AND key offered as No may go unanswered)"
            ),
            Self::NotUnderstood { key } => write!(
                f,
                "the target answered NotUnderstood to {key}, a key every RFC 7143 \
                 implementation must understand"
            ),
            Self::ReservedValue { key, value } => write!(
                f,
                "the target proposed {key}={value}: {value} is an answer, never a proposal \
                 (RFC 7143 §6.2)"
            ),
        }
    }
}

impl std::error::Error for NegotiationError {}

/// What the initiator asks for: start from `Wanted::default()` and assign fields (the struct
/// may grow).
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct Wanted {
    /// Header digest preference.
    pub header_digest: DigestPref,
    /// Data digest preference.
    pub data_digest: DigestPref,
    /// MaxRecvDataSegmentLength the initiator declares. The default is the largest RFC 7143
    /// allows ([`MAX_DATA_SEGMENT_LEN`]): the reader path reads Data-In payload straight into
    /// the command's buffer, so no receive buffer bounds it, and a target may then answer a
    /// read in few large PDUs (tgtd, 1 MiB reads: 1.03-1.08x the throughput of declaring
    /// 256 KiB, with less CPU on both sides; docs/PERFORMANCE.md). Control PDUs stay bounded
    /// by the engine's `max_control_data`.
    pub max_recv_data_segment_len: u32,
    /// MaxBurstLength offered.
    pub max_burst_len: u32,
    /// FirstBurstLength offered.
    pub first_burst_len: u32,
    /// InitialR2T offered.
    pub initial_r2t: bool,
    /// ImmediateData offered.
    pub immediate_data: bool,
    /// Offer every session key (MaxConnections, DefaultTime2Wait/Retain, MaxOutstandingR2T,
    /// DataPDUInOrder, DataSequenceInOrder) in the first operational Login Request, as
    /// libiscsi and open-iscsi do (the default): LIO then needs one operational exchange.
    /// `false` leaves them to the target, which (LIO) proposes them in an extra round.
    pub offer_all: bool,
    /// DefaultTime2Wait offered (open-iscsi: 2).
    pub default_time2wait: u32,
    /// DefaultTime2Retain offered (open-iscsi: 0; at ErrorRecoveryLevel 0 nothing is
    /// reassigned after a connection is lost).
    pub default_time2retain: u32,
    /// MaxOutstandingR2T offered (open-iscsi: 1).
    pub max_outstanding_r2t: u32,
}

/// The largest data segment length a key may declare (RFC 7143: 2^24 - 1).
pub const MAX_DATA_SEGMENT_LEN: u32 = 0xFF_FFFF;

impl Default for Wanted {
    fn default() -> Self {
        Self {
            header_digest: DigestPref::Off,
            data_digest: DigestPref::Off,
            max_recv_data_segment_len: MAX_DATA_SEGMENT_LEN,
            max_burst_len: 262_144,
            first_burst_len: 65536,
            initial_r2t: false,
            immediate_data: true,
            offer_all: true,
            default_time2wait: 2,
            default_time2retain: 0,
            max_outstanding_r2t: 1,
        }
    }
}

/// The negotiation state of one login.
#[derive(Clone, Debug)]
pub struct Negotiator {
    wanted: Wanted,
    discovery: bool,
    params: Params,
    /// Keys offered and not answered yet, with the value offered.
    offered: Vec<(String, String)>,
    /// Every key the target sent in this login (each at most once, RFC 7143 §6.3).
    received: HashSet<String>,
    /// Keys the target answered Irrelevant.
    irrelevant: HashSet<String>,
}

fn yes_no(b: bool) -> &'static str {
    if b { "Yes" } else { "No" }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "Yes" => Some(true),
        "No" => Some(false),
        _ => None,
    }
}

impl Negotiator {
    /// A negotiation for a normal (`discovery == false`) or discovery session.
    pub fn new(wanted: Wanted, discovery: bool) -> Self {
        let params = Params {
            max_recv_data_segment_len: wanted.max_recv_data_segment_len,
            ..Params::default()
        };
        Self {
            wanted,
            discovery,
            params,
            offered: Vec::new(),
            received: HashSet::new(),
            irrelevant: HashSet::new(),
        }
    }

    /// The parameters negotiated so far.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The operational keys of the first operational-stage Login Request: by default the
    /// full set ([`Wanted::offer_all`]), so that no target has a key left to propose.
    pub fn offer(&mut self) -> Vec<(String, String)> {
        let w = &self.wanted;
        let mut keys: Vec<(&str, String)> = vec![
            ("HeaderDigest", w.header_digest.offer().into()),
            ("DataDigest", w.data_digest.offer().into()),
            (
                "MaxRecvDataSegmentLength",
                w.max_recv_data_segment_len.to_string(),
            ),
        ];
        if !self.discovery {
            keys.extend([
                ("InitialR2T", yes_no(w.initial_r2t).into()),
                ("ImmediateData", yes_no(w.immediate_data).into()),
                ("MaxBurstLength", w.max_burst_len.to_string()),
                ("FirstBurstLength", w.first_burst_len.to_string()),
                ("ErrorRecoveryLevel", "0".into()),
            ]);
            if w.offer_all {
                keys.extend([
                    ("MaxConnections", "1".into()),
                    ("DefaultTime2Wait", w.default_time2wait.to_string()),
                    ("DefaultTime2Retain", w.default_time2retain.to_string()),
                    ("MaxOutstandingR2T", w.max_outstanding_r2t.to_string()),
                    ("DataPDUInOrder", "Yes".into()),
                    ("DataSequenceInOrder", "Yes".into()),
                ]);
            }
        }
        // A key the target already proposed (in the security stage) was answered then; offering
        // it again would negotiate it twice.
        let keys: Vec<(String, String)> = keys
            .into_iter()
            .filter(|(k, _)| !self.received.contains(*k))
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        self.offered = keys
            .iter()
            .filter(|(k, _)| k != "MaxRecvDataSegmentLength")
            .cloned()
            .collect();
        keys
    }

    /// The initiator's own value for a key the target proposes.
    fn ours(&self, key: &str) -> Option<String> {
        let w = &self.wanted;
        Some(match key {
            "HeaderDigest" => w.header_digest.offer().into(),
            "DataDigest" => w.data_digest.offer().into(),
            "MaxConnections" => "1".into(),
            "MaxBurstLength" => w.max_burst_len.to_string(),
            "FirstBurstLength" => w.first_burst_len.to_string(),
            "DefaultTime2Wait" => w.default_time2wait.to_string(),
            "DefaultTime2Retain" => w.default_time2retain.to_string(),
            "MaxOutstandingR2T" => w.max_outstanding_r2t.to_string(),
            "ErrorRecoveryLevel" => "0".into(),
            "InitialR2T" => yes_no(w.initial_r2t).into(),
            "ImmediateData" => yes_no(w.immediate_data).into(),
            "DataPDUInOrder" | "DataSequenceInOrder" => "Yes".into(),
            _ => return None,
        })
    }

    /// Records that the target sent `key` in this login. Each key at most once (RFC 7143
    /// §6.3), across every Login Response of the login, security stage included; the one key
    /// RFC 7143 lets repeat in a Login Response is TargetAddress (a redirection may list
    /// several).
    ///
    /// # Errors
    ///
    /// [`NegotiationError::Duplicate`] the second time.
    pub fn note_received(&mut self, key: &str) -> Result<(), NegotiationError> {
        if key == "TargetAddress" {
            return Ok(());
        }
        if !self.received.insert(key.to_string()) {
            return Err(NegotiationError::Duplicate { key: key.into() });
        }
        Ok(())
    }

    /// Processes one key of a Login Response. Returns the answer to send when the key is a
    /// proposal that needs one.
    ///
    /// # Errors
    ///
    /// A [`NegotiationError`] when an answer breaks the rules, or a key comes twice.
    pub fn on_key(
        &mut self,
        key: &str,
        value: &str,
    ) -> Result<Option<(String, String)>, NegotiationError> {
        self.note_received(key)?;
        if let Some(i) = self.offered.iter().position(|(k, _)| k == key) {
            let (_, offered) = self.offered.remove(i);
            self.on_answer(key, &offered, value)?;
            return Ok(None);
        }
        let bad = || NegotiationError::BadAnswer {
            key: key.to_string(),
            value: value.to_string(),
        };
        if is_reserved_answer(value) {
            return Err(NegotiationError::ReservedValue {
                key: key.into(),
                value: value.into(),
            });
        }
        match kind(key) {
            Some(Kind::Declarative) => {
                self.apply_declared(key, value).ok_or_else(bad)?;
                Ok(None)
            }
            // RFC 7143 §13.25: Reject (SHOULD), never NotUnderstood.
            Some(Kind::Obsolete) => Ok(Some((key.into(), "Reject".into()))),
            Some(_) if self.discovery && key != "HeaderDigest" && key != "DataDigest" => {
                Ok(Some((key.into(), "Irrelevant".into())))
            }
            Some(k) => {
                let answer = self.answer_proposal(key, k, value);
                let answer = answer.unwrap_or_else(|| "Reject".into());
                if answer != "Reject" {
                    self.apply_answer(key, &answer, &answer).ok_or_else(bad)?;
                }
                Ok(Some((key.into(), answer)))
            }
            None => Ok(Some((key.into(), "NotUnderstood".into()))),
        }
    }

    /// The target's answer to a key the initiator offered.
    fn on_answer(&mut self, key: &str, offered: &str, value: &str) -> Result<(), NegotiationError> {
        let k = kind(key);
        match value {
            "NotUnderstood" => Err(NegotiationError::NotUnderstood { key: key.into() }),
            // RFC 7143 §6.2: after Reject the key keeps its current (default) value, and after
            // Irrelevant the negotiation has not failed: the key keeps its default. For a
            // digest there is then no agreement (the target refused even the value offered);
            // continuing would frame PDUs differently on the two sides.
            "Reject" | "Irrelevant" if k == Some(Kind::Digest) => {
                Err(NegotiationError::DigestRefused {
                    key: key.into(),
                    offered: offered.into(),
                    answer: value.into(),
                })
            }
            "Reject" | "Irrelevant" => {
                if value == "Irrelevant" {
                    self.irrelevant.insert(key.to_string());
                }
                // A boolean the initiator offered more strictly than the default (ImmediateData=No)
                // stays as strict: what the key permits, the initiator need not use.
                let p = &mut self.params;
                match key {
                    "ImmediateData" => p.immediate_data = p.immediate_data && offered == "Yes",
                    "InitialR2T" => p.initial_r2t = p.initial_r2t || offered == "Yes",
                    _ => {}
                }
                Ok(())
            }
            _ => {
                self.apply_answer(key, offered, value)
                    .ok_or_else(|| NegotiationError::BadAnswer {
                        key: key.to_string(),
                        value: value.to_string(),
                    })
            }
        }
    }

    fn answer_proposal(&self, key: &str, k: Kind, value: &str) -> Option<String> {
        let ours = self.ours(key)?;
        match k {
            Kind::Digest => {
                let pref = if key == "HeaderDigest" {
                    self.wanted.header_digest
                } else {
                    self.wanted.data_digest
                };
                value
                    .split(',')
                    .find(|v| pref.accepts(v))
                    .map(str::to_string)
            }
            Kind::Min(lo, hi) | Kind::Max(lo, hi) => {
                let theirs: u32 = parse_num(value).filter(|n| (lo..=hi).contains(n))?;
                let ours: u32 = ours.parse().ok()?;
                let r = if matches!(k, Kind::Min(..)) {
                    theirs.min(ours)
                } else {
                    theirs.max(ours)
                };
                Some(r.to_string())
            }
            Kind::Or => Some(yes_no(parse_bool(value)? || parse_bool(&ours)?).into()),
            Kind::And => Some(yes_no(parse_bool(value)? && parse_bool(&ours)?).into()),
            Kind::Declarative | Kind::Obsolete => None,
        }
    }

    fn apply_answer(&mut self, key: &str, offered: &str, value: &str) -> Option<()> {
        let p = &mut self.params;
        match kind(key)? {
            Kind::Digest => {
                if value.contains(',') || !offered.split(',').any(|o| o == value) {
                    return None;
                }
                let on = value == "CRC32C";
                if key == "HeaderDigest" {
                    p.header_digest = on;
                } else {
                    p.data_digest = on;
                }
            }
            k @ (Kind::Min(lo, hi) | Kind::Max(lo, hi)) => {
                let n: u32 = parse_num(value).filter(|n| (lo..=hi).contains(n))?;
                let o: u32 = parse_num(offered)?;
                if matches!(k, Kind::Min(..)) && n > o || matches!(k, Kind::Max(..)) && n < o {
                    return None;
                }
                match key {
                    "MaxConnections" => p.max_connections = n,
                    "MaxBurstLength" => p.max_burst_len = n,
                    "FirstBurstLength" => p.first_burst_len = n,
                    "DefaultTime2Wait" => p.default_time2wait = n,
                    "DefaultTime2Retain" => p.default_time2retain = n,
                    "MaxOutstandingR2T" => p.max_outstanding_r2t = n,
                    "ErrorRecoveryLevel" => p.error_recovery_level = n,
                    _ => return None,
                }
            }
            k @ (Kind::Or | Kind::And) => {
                let v = parse_bool(value)?;
                let o = parse_bool(offered)?;
                // OR: an offered Yes stays Yes; AND: an offered No stays No.
                if k == Kind::Or && o && !v || k == Kind::And && !o && v {
                    return None;
                }
                match key {
                    "InitialR2T" => p.initial_r2t = v,
                    "ImmediateData" => p.immediate_data = v,
                    "DataPDUInOrder" => p.data_pdu_in_order = v,
                    "DataSequenceInOrder" => p.data_sequence_in_order = v,
                    _ => return None,
                }
            }
            Kind::Declarative | Kind::Obsolete => return None,
        }
        Some(())
    }

    fn apply_declared(&mut self, key: &str, value: &str) -> Option<()> {
        match key {
            "MaxRecvDataSegmentLength" => {
                let n: u32 =
                    parse_num(value).filter(|n| (512..=MAX_DATA_SEGMENT_LEN).contains(n))?;
                self.params.max_xmit_data_segment_len = n;
            }
            "TargetAlias" => self.params.target_alias = Some(value.to_string()),
            "TargetPortalGroupTag" => {
                self.params.target_portal_group_tag = Some(value.parse().ok()?);
            }
            _ => {}
        }
        Some(())
    }

    /// Processes a whole Login Response text; returns the answers owed to the target's
    /// proposals.
    ///
    /// # Errors
    ///
    /// A [`NegotiationError`] for malformed text or a bad answer.
    pub fn on_response(&mut self, data: &[u8]) -> Result<Vec<(String, String)>, NegotiationError> {
        let mut answers = Vec::new();
        for pair in crate::wire::text::TextIter::new(data) {
            let (k, v) = pair.map_err(NegotiationError::Text)?;
            if let Some(a) = self.on_key(k, v)? {
                answers.push(a);
            }
        }
        Ok(answers)
    }

    /// Ends the negotiation: the result functions settle the keys the target left
    /// unanswered where RFC 7143 §6.2.1 lets it (an OR key offered as Yes is Yes, LIO omits
    /// InitialR2T=Yes; an AND key offered as No is No, LIO omits ImmediateData=No); any other
    /// unanswered key fails. Then the final consistency checks run.
    ///
    /// # Errors
    ///
    /// [`NegotiationError::Unanswered`], [`NegotiationError::DigestRefused`] (a required digest
    /// not agreed) or [`NegotiationError::FirstBurstAboveMaxBurst`].
    pub fn finish(&mut self) -> Result<Params, NegotiationError> {
        for (key, offered) in core::mem::take(&mut self.offered) {
            let p = &mut self.params;
            match (kind(&key), offered.as_str()) {
                (Some(Kind::Or), "Yes") | (Some(Kind::And), "No") => {
                    let v = offered == "Yes";
                    match key.as_str() {
                        "InitialR2T" => p.initial_r2t = v,
                        "ImmediateData" => p.immediate_data = v,
                        "DataPDUInOrder" => p.data_pdu_in_order = v,
                        "DataSequenceInOrder" => p.data_sequence_in_order = v,
                        _ => {}
                    }
                }
                (Some(Kind::Digest), _) => {
                    return Err(NegotiationError::DigestRefused {
                        key,
                        offered,
                        answer: "unanswered".into(),
                    });
                }
                _ => return Err(NegotiationError::Unanswered { key, offered }),
            }
        }
        for (key, pref, on) in [
            (
                "HeaderDigest",
                self.wanted.header_digest,
                self.params.header_digest,
            ),
            (
                "DataDigest",
                self.wanted.data_digest,
                self.params.data_digest,
            ),
        ] {
            // A required digest that ended None (the target proposed None, say).
            if pref == DigestPref::Require && !on {
                return Err(NegotiationError::DigestRefused {
                    key: key.into(),
                    offered: pref.offer().into(),
                    answer: "None".into(),
                });
            }
        }
        let p = &mut self.params;
        // FirstBurstLength is irrelevant without unsolicited data (InitialR2T=Yes and
        // ImmediateData=No, RFC 7143 §13.14), or when the target said so: then it is only
        // kept within MaxBurstLength.
        let unsolicited = !p.initial_r2t || p.immediate_data;
        if !unsolicited || self.irrelevant.contains("FirstBurstLength") {
            p.first_burst_len = p.first_burst_len.min(p.max_burst_len);
        } else if p.first_burst_len > p.max_burst_len {
            return Err(NegotiationError::FirstBurstAboveMaxBurst {
                first: p.first_burst_len,
                max: p.max_burst_len,
            });
        }
        Ok(self.params.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, val) in v {
            out.extend_from_slice(k.as_bytes());
            out.push(b'=');
            out.extend_from_slice(val.as_bytes());
            out.push(0);
        }
        out
    }

    fn wanted() -> Wanted {
        Wanted {
            header_digest: DigestPref::Prefer,
            data_digest: DigestPref::Prefer,
            ..Wanted::default()
        }
    }

    /// Offers, then answers every offered key with the offer itself (its first list item),
    /// except those in `answers` (answered with the value given, or left out for `None`).
    fn negotiate(
        w: Wanted,
        answers: &[(&str, Option<&str>)],
    ) -> (Negotiator, Result<Params, NegotiationError>) {
        let mut n = Negotiator::new(w, false);
        let offer = n.offer();
        let mut text = Vec::new();
        for (k, v) in &offer {
            if k == "MaxRecvDataSegmentLength" {
                continue;
            }
            let v = match answers.iter().find(|(a, _)| a == k) {
                Some((_, None)) => continue,
                Some((_, Some(v))) => (*v).to_string(),
                None => v.split(',').next().unwrap().to_string(),
            };
            text.push((k.clone(), v));
        }
        for (k, v) in answers {
            if let Some(v) = v
                && !offer.iter().any(|(o, _)| o == k)
            {
                text.push(((*k).to_string(), (*v).to_string()));
            }
        }
        let text: Vec<(&str, &str)> = text.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        if let Err(e) = n.on_response(&pairs(&text)) {
            return (n, Err(e));
        }
        let r = n.finish();
        (n, r)
    }

    #[test]
    fn tgtd_style_single_round() {
        let mut n = Negotiator::new(wanted(), false);
        let offer = n.offer();
        assert!(
            offer
                .iter()
                .any(|(k, v)| k == "HeaderDigest" && v == "CRC32C,None")
        );
        let answers = n
            .on_response(&pairs(&[
                ("HeaderDigest", "CRC32C"),
                ("DataDigest", "None"),
                ("InitialR2T", "Yes"),
                ("ImmediateData", "Yes"),
                ("MaxBurstLength", "131072"),
                ("FirstBurstLength", "65536"),
                ("ErrorRecoveryLevel", "0"),
                ("MaxConnections", "1"),
                ("DefaultTime2Wait", "2"),
                ("DefaultTime2Retain", "0"),
                ("MaxOutstandingR2T", "1"),
                ("DataPDUInOrder", "Yes"),
                ("DataSequenceInOrder", "Yes"),
                ("TargetAlias", "x"),
            ]))
            .unwrap();
        assert!(answers.is_empty());
        let p = n.finish().unwrap();
        assert!(p.header_digest && !p.data_digest && p.initial_r2t);
        assert_eq!(p.max_burst_len, 131072);
        assert_eq!(p.max_xmit_data_segment_len, 8192);
        assert_eq!(p.default_time2retain, 0);
        assert_eq!(p.target_alias.as_deref(), Some("x"));
    }

    /// Rule 5: the full operational key set, with open-iscsi's values, in the first request;
    /// never the markers RFC 7143 §13.25 obsoleted.
    #[test]
    fn the_full_key_set_is_offered_up_front() {
        let mut n = Negotiator::new(Wanted::default(), false);
        let offer = n.offer();
        let get = |k: &str| offer.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str());
        for (k, v) in [
            ("HeaderDigest", "None"),
            ("DataDigest", "None"),
            ("InitialR2T", "No"),
            ("ImmediateData", "Yes"),
            ("MaxBurstLength", "262144"),
            ("FirstBurstLength", "65536"),
            ("ErrorRecoveryLevel", "0"),
            ("MaxConnections", "1"),
            ("DefaultTime2Wait", "2"),
            ("DefaultTime2Retain", "0"),
            ("MaxOutstandingR2T", "1"),
            ("DataPDUInOrder", "Yes"),
            ("DataSequenceInOrder", "Yes"),
        ] {
            assert_eq!(get(k), Some(v), "{k}");
        }
        assert!(get("MaxRecvDataSegmentLength").is_some());
        assert!(get("IFMarker").is_none() && get("OFMarker").is_none());
        assert_eq!(offer.len(), 14);
        // A discovery session offers the digests and its receive length only.
        let mut d = Negotiator::new(Wanted::default(), true);
        assert_eq!(d.offer().len(), 3);
    }

    #[test]
    fn lio_style_proposals_are_answered() {
        // offer_all off: the target proposes the session keys and each gets an answer.
        let mut n = Negotiator::new(
            Wanted {
                offer_all: false,
                initial_r2t: true,
                ..wanted()
            },
            false,
        );
        n.offer();
        let answers = n
            .on_response(&pairs(&[
                ("HeaderDigest", "CRC32C"),
                ("DataDigest", "CRC32C"),
                ("ImmediateData", "Yes"),
                ("MaxBurstLength", "262144"),
                ("FirstBurstLength", "65536"),
                ("ErrorRecoveryLevel", "0"),
                ("MaxRecvDataSegmentLength", "262144"),
                ("MaxConnections", "1"),
                ("DefaultTime2Wait", "2"),
                ("DefaultTime2Retain", "20"),
                ("MaxOutstandingR2T", "16"),
                ("DataPDUInOrder", "Yes"),
                ("DataSequenceInOrder", "Yes"),
                ("IFMarker", "No"),
                ("OFMarkInt", "2048~2048"),
                ("X-vendor", "1"),
            ]))
            .unwrap();
        let get = |k: &str| {
            answers
                .iter()
                .find(|(a, _)| a == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("MaxOutstandingR2T"), Some("1"));
        assert_eq!(get("DefaultTime2Retain"), Some("0"));
        assert_eq!(get("DataPDUInOrder"), Some("Yes"));
        assert_eq!(get("X-vendor"), Some("NotUnderstood"));
        // RFC 7143 §13.25: obsolete marker keys are answered Reject, never NotUnderstood.
        assert_eq!(get("IFMarker"), Some("Reject"));
        assert_eq!(get("OFMarkInt"), Some("Reject"));
        assert_eq!(get("MaxRecvDataSegmentLength"), None);
        let p = n.finish().unwrap();
        assert!(p.header_digest && p.data_digest);
        assert_eq!(p.max_xmit_data_segment_len, 262144);
        // InitialR2T=Yes omitted by the target (LIO): an OR key offered as Yes is Yes.
        assert!(p.initial_r2t);
    }

    #[test]
    fn bad_answers_are_errors() {
        for (k, v) in [
            ("HeaderDigest", "CRC32C,None"),
            ("HeaderDigest", "MD5"),
            ("MaxBurstLength", "999999999"),
            ("MaxBurstLength", "300000"),
            ("MaxBurstLength", "abc"),
            ("ErrorRecoveryLevel", "1"),
            ("ImmediateData", "Maybe"),
        ] {
            let mut n = Negotiator::new(wanted(), false);
            n.offer();
            assert!(n.on_key(k, v).is_err(), "{k}={v}");
        }
        let mut n = Negotiator::new(
            Wanted {
                header_digest: DigestPref::Require,
                immediate_data: false,
                ..wanted()
            },
            false,
        );
        n.offer();
        assert!(n.on_key("ImmediateData", "Yes").is_err());
        let (_, r) = negotiate(
            wanted(),
            &[
                ("FirstBurstLength", Some("65536")),
                ("MaxBurstLength", Some("4096")),
            ],
        );
        assert_eq!(
            r,
            Err(NegotiationError::FirstBurstAboveMaxBurst {
                first: 65536,
                max: 4096
            })
        );
        assert_eq!(
            r.unwrap_err().to_string(),
            "FirstBurstLength 65536 exceeds MaxBurstLength 4096 (RFC 7143 §13.14)"
        );
        let mut n = Negotiator::new(wanted(), false);
        assert!(n.on_key("MaxRecvDataSegmentLength", "100").is_err());
        assert!(n.on_response(b"novalue").is_err());
        // Hex constants are numbers too (RFC 7143 §6.1).
        let (_, r) = negotiate(
            wanted(),
            &[
                ("MaxBurstLength", Some("0x8000")),
                ("FirstBurstLength", Some("0x4000")),
            ],
        );
        let p = r.unwrap();
        assert_eq!((p.max_burst_len, p.first_burst_len), (0x8000, 0x4000));
    }

    #[test]
    fn proposals_follow_result_functions() {
        let mut n = Negotiator::new(wanted(), false);
        assert_eq!(
            n.on_key("DefaultTime2Wait", "5").unwrap(),
            Some(("DefaultTime2Wait".into(), "5".into()))
        );
        assert_eq!(
            n.on_key("MaxBurstLength", "1048576").unwrap(),
            Some(("MaxBurstLength".into(), "262144".into()))
        );
        assert_eq!(
            n.on_key("HeaderDigest", "None,CRC32C").unwrap(),
            Some(("HeaderDigest".into(), "None".into()))
        );
        assert_eq!(
            n.on_key("MaxConnections", "0").unwrap(),
            Some(("MaxConnections".into(), "Reject".into()))
        );
        // Reserved constants are answers, never proposals.
        assert_eq!(
            n.on_key("DataPDUInOrder", "Irrelevant"),
            Err(NegotiationError::ReservedValue {
                key: "DataPDUInOrder".into(),
                value: "Irrelevant".into()
            })
        );
        let mut d = Negotiator::new(wanted(), true);
        assert_eq!(
            d.on_key("MaxBurstLength", "1").unwrap(),
            Some(("MaxBurstLength".into(), "Irrelevant".into()))
        );
    }

    /// Rule 1: each key at most once per login from the target (RFC 7143 §6.3), across
    /// responses; TargetAddress may repeat.
    #[test]
    fn a_key_sent_twice_is_detected() {
        let mut n = Negotiator::new(wanted(), false);
        n.offer();
        n.on_response(&pairs(&[("MaxBurstLength", "65536")]))
            .unwrap();
        let e = n
            .on_response(&pairs(&[("MaxBurstLength", "65536")]))
            .unwrap_err();
        assert_eq!(
            e,
            NegotiationError::Duplicate {
                key: "MaxBurstLength".into()
            }
        );
        assert!(
            e.to_string()
                .starts_with("the target sent MaxBurstLength twice"),
            "{e}"
        );
        // A proposal answered, then proposed again; a declaration repeated in one text.
        let mut n = Negotiator::new(wanted(), false);
        n.on_key("X-vendor", "1").unwrap();
        assert!(n.on_key("X-vendor", "1").is_err());
        let mut n = Negotiator::new(wanted(), false);
        assert!(
            n.on_response(&pairs(&[
                ("TargetPortalGroupTag", "1"),
                ("TargetPortalGroupTag", "1")
            ]))
            .is_err()
        );
        let mut n = Negotiator::new(wanted(), false);
        n.on_response(&pairs(&[
            ("TargetAddress", "10.0.0.1:3260,1"),
            ("TargetAddress", "10.0.0.2:3260,1"),
        ]))
        .unwrap();
    }

    /// A key the target proposed before the offer (security stage) is not offered again.
    #[test]
    fn a_key_proposed_early_is_not_offered_again() {
        let mut n = Negotiator::new(wanted(), false);
        assert_eq!(
            n.on_key("MaxBurstLength", "65536").unwrap(),
            Some(("MaxBurstLength".into(), "65536".into()))
        );
        let offer = n.offer();
        assert!(offer.iter().all(|(k, _)| k != "MaxBurstLength"));
        assert!(offer.iter().any(|(k, _)| k == "FirstBurstLength"));
    }

    /// Rule 2: RFC 7143 §6.2.1: an AND key offered as No and an OR key offered as Yes may go
    /// unanswered and keep the offer; every other key needs an answer.
    #[test]
    fn unanswered_keys_follow_the_result_functions() {
        let w = Wanted {
            immediate_data: false,
            initial_r2t: true,
            ..wanted()
        };
        let (_, r) = negotiate(
            w,
            &[
                ("ImmediateData", None),
                ("InitialR2T", None),
                ("DataPDUInOrder", None),
                ("DataSequenceInOrder", None),
            ],
        );
        let p = r.unwrap();
        assert!(!p.immediate_data, "ImmediateData=No unanswered is No");
        assert!(p.initial_r2t && p.data_pdu_in_order && p.data_sequence_in_order);
        // ImmediateData=Yes (AND) and InitialR2T=No (OR) need answers.
        for key in ["ImmediateData", "InitialR2T"] {
            let (_, r) = negotiate(wanted(), &[(key, None)]);
            let offered = if key == "ImmediateData" { "Yes" } else { "No" };
            assert_eq!(
                r,
                Err(NegotiationError::Unanswered {
                    key: key.into(),
                    offered: offered.into()
                })
            );
        }
        let (_, r) = negotiate(wanted(), &[("MaxBurstLength", None)]);
        let e = r.unwrap_err();
        assert_eq!(
            e.to_string(),
            "the target did not answer MaxBurstLength=262144 (RFC 7143 §6.2.1: only an OR key \
             offered as Yes or an AND key offered as No may go unanswered)"
        );
        // A digest left unanswered is no agreement.
        let (_, r) = negotiate(wanted(), &[("DataDigest", None)]);
        assert!(
            matches!(r, Err(NegotiationError::DigestRefused { .. })),
            "{r:?}"
        );
    }

    /// Rule 3: FirstBurstLength=Irrelevant (InitialR2T=Yes, ImmediateData=No) against a
    /// MaxBurstLength of 16384: no FirstBurstLength <= MaxBurstLength check.
    #[test]
    fn irrelevant_first_burst_is_not_checked() {
        let w = Wanted {
            initial_r2t: true,
            immediate_data: false,
            ..wanted()
        };
        let (_, r) = negotiate(
            w.clone(),
            &[
                ("FirstBurstLength", Some("Irrelevant")),
                ("MaxBurstLength", Some("16384")),
            ],
        );
        let p = r.unwrap();
        assert_eq!(p.max_burst_len, 16384);
        assert!(p.first_burst_len <= p.max_burst_len);
        // Without unsolicited data FirstBurstLength is irrelevant even when answered.
        let (_, r) = negotiate(
            w,
            &[
                ("FirstBurstLength", Some("65536")),
                ("MaxBurstLength", Some("16384")),
            ],
        );
        assert_eq!(r.unwrap().first_burst_len, 16384);
        // Irrelevant for other keys: the default, no failure.
        let (_, r) = negotiate(wanted(), &[("MaxOutstandingR2T", Some("Irrelevant"))]);
        assert_eq!(r.unwrap().max_outstanding_r2t, 1);
    }

    /// Rule 4: Reject and NotUnderstood per key.
    #[test]
    fn reject_and_not_understood_per_key() {
        // A digest the host requires, rejected: a failure in words.
        let require = Wanted {
            header_digest: DigestPref::Require,
            ..wanted()
        };
        let (_, r) = negotiate(require, &[("HeaderDigest", Some("Reject"))]);
        let e = r.unwrap_err();
        assert_eq!(
            e.to_string(),
            "the target answered HeaderDigest=Reject to HeaderDigest=CRC32C: the host requires \
             CRC32C (DigestPref::Require)"
        );
        // istgt: Reject to HeaderDigest=None while the host wants no digests.
        let off = Wanted::default();
        let (_, r) = negotiate(off, &[("HeaderDigest", Some("Reject"))]);
        let e = r.unwrap_err();
        assert!(
            matches!(&e, NegotiationError::DigestRefused { offered, .. } if offered == "None"),
            "{e:?}"
        );
        assert!(
            e.to_string().contains("it will not work without a digest"),
            "{e}"
        );
        // Reject of a numeric or boolean key: its default (RFC 7143 §6.2), the host's stricter
        // ImmediateData=No kept.
        let (_, r) = negotiate(
            Wanted {
                immediate_data: false,
                ..wanted()
            },
            &[
                ("MaxBurstLength", Some("Reject")),
                ("ImmediateData", Some("Reject")),
                ("ErrorRecoveryLevel", Some("Reject")),
            ],
        );
        let p = r.unwrap();
        assert_eq!(p.max_burst_len, 262_144);
        assert!(!p.immediate_data);
        assert_eq!(p.error_recovery_level, 0);
        // NotUnderstood to an RFC 7143 key: a failure.
        let (_, r) = negotiate(wanted(), &[("DefaultTime2Wait", Some("NotUnderstood"))]);
        assert_eq!(
            r,
            Err(NegotiationError::NotUnderstood {
                key: "DefaultTime2Wait".into()
            })
        );
    }
}
