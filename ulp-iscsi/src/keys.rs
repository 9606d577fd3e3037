//! Login text key negotiation (RFC 7143 §6.2, §13): what the initiator offers, how it checks
//! the target's answers, and how it answers keys the target proposes (LIO does).

use core::fmt;

/// How a key's result is computed.
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
        "ImmediateData" | "IFMarker" | "OFMarker" => Kind::And,
        "MaxRecvDataSegmentLength"
        | "TargetAlias"
        | "TargetPortalGroupTag"
        | "TargetAddress"
        | "TargetName" => Kind::Declarative,
        _ => return None,
    })
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
    /// FirstBurstLength.
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
pub enum NegotiationError {
    /// The answer to `key` is not allowed (out of range, not in the offer, breaks the result
    /// function).
    BadAnswer {
        /// The key.
        key: String,
        /// The value received.
        value: String,
    },
    /// The target rejected a key the initiator cannot do without.
    Refused {
        /// The key.
        key: String,
    },
    /// The target proposed keys in its final Login Response (there is no round left to answer).
    LateProposal {
        /// The key.
        key: String,
    },
    /// FirstBurstLength ended up above MaxBurstLength.
    FirstBurstAboveMaxBurst,
    /// Malformed text data.
    Text(crate::wire::text::TextError),
}

impl fmt::Display for NegotiationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadAnswer { key, value } => write!(f, "bad answer {key}={value}"),
            Self::Refused { key } => write!(f, "target refused {key}"),
            Self::LateProposal { key } => write!(f, "target proposed {key} in its final response"),
            Self::FirstBurstAboveMaxBurst => f.write_str("FirstBurstLength > MaxBurstLength"),
            Self::Text(e) => write!(f, "text: {e}"),
        }
    }
}

impl std::error::Error for NegotiationError {}

/// What the initiator asks for.
#[derive(Clone, Debug, Eq, PartialEq)]
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
    /// DataPDUInOrder, DataSequenceInOrder) instead of letting the target propose them.
    pub offer_all: bool,
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
            offer_all: false,
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
        }
    }

    /// The parameters negotiated so far.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The operational keys of the first operational-stage Login Request.
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
                    ("DefaultTime2Wait", "2".into()),
                    ("DefaultTime2Retain", "20".into()),
                    ("MaxOutstandingR2T", "1".into()),
                    ("DataPDUInOrder", "Yes".into()),
                    ("DataSequenceInOrder", "Yes".into()),
                ]);
            }
        }
        let keys: Vec<(String, String)> =
            keys.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
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
            "DefaultTime2Wait" => "2".into(),
            "DefaultTime2Retain" => "20".into(),
            "MaxOutstandingR2T" => "1".into(),
            "ErrorRecoveryLevel" => "0".into(),
            "InitialR2T" => yes_no(w.initial_r2t).into(),
            "ImmediateData" => yes_no(w.immediate_data).into(),
            "DataPDUInOrder" | "DataSequenceInOrder" => "Yes".into(),
            "IFMarker" | "OFMarker" => "No".into(),
            _ => return None,
        })
    }

    /// Processes one key of a Login Response. Returns the answer to send when the key is a
    /// proposal that needs one.
    ///
    /// # Errors
    ///
    /// A [`NegotiationError`] when an answer breaks the rules.
    pub fn on_key(
        &mut self,
        key: &str,
        value: &str,
    ) -> Result<Option<(String, String)>, NegotiationError> {
        let bad = || NegotiationError::BadAnswer {
            key: key.to_string(),
            value: value.to_string(),
        };
        if let Some(i) = self.offered.iter().position(|(k, _)| k == key) {
            let (_, offered) = self.offered.remove(i);
            if matches!(value, "Irrelevant" | "NotUnderstood" | "Reject") {
                if key == "HeaderDigest" && self.wanted.header_digest == DigestPref::Require
                    || key == "DataDigest" && self.wanted.data_digest == DigestPref::Require
                    || key == "ErrorRecoveryLevel" && value == "Reject"
                {
                    return Err(NegotiationError::Refused { key: key.into() });
                }
                return Ok(None);
            }
            self.apply_answer(key, &offered, value).ok_or_else(bad)?;
            return Ok(None);
        }
        match kind(key) {
            Some(Kind::Declarative) => {
                self.apply_declared(key, value).ok_or_else(bad)?;
                Ok(None)
            }
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
                let theirs: u32 = value.parse().ok().filter(|n| (lo..=hi).contains(n))?;
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
            Kind::Declarative => None,
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
                let n: u32 = value.parse().ok().filter(|n| (lo..=hi).contains(n))?;
                let o: u32 = offered.parse().ok()?;
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
                    "IFMarker" | "OFMarker" if !v => {}
                    _ => return None,
                }
            }
            Kind::Declarative => return None,
        }
        Some(())
    }

    fn apply_declared(&mut self, key: &str, value: &str) -> Option<()> {
        match key {
            "MaxRecvDataSegmentLength" => {
                let n: u32 = value
                    .parse()
                    .ok()
                    .filter(|n| (512..=MAX_DATA_SEGMENT_LEN).contains(n))?;
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

    /// Ends the negotiation: keys left unanswered keep their defaults (RFC 7143 lets a target
    /// omit the answer to an OR key offered as Yes, which LIO does); the final consistency
    /// checks run.
    ///
    /// # Errors
    ///
    /// [`NegotiationError::FirstBurstAboveMaxBurst`] or a required digest left unanswered.
    pub fn finish(&mut self) -> Result<Params, NegotiationError> {
        for (key, offered) in core::mem::take(&mut self.offered) {
            match key.as_str() {
                "HeaderDigest" | "DataDigest" if offered == "CRC32C" => {
                    return Err(NegotiationError::Refused { key });
                }
                "InitialR2T" => self.params.initial_r2t = true,
                "ImmediateData" => self.params.immediate_data = true,
                _ => {}
            }
        }
        if self.params.first_burst_len > self.params.max_burst_len {
            return Err(NegotiationError::FirstBurstAboveMaxBurst);
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
                ("TargetAlias", "x"),
            ]))
            .unwrap();
        assert!(answers.is_empty());
        let p = n.finish().unwrap();
        assert!(p.header_digest && !p.data_digest && p.initial_r2t);
        assert_eq!(p.max_burst_len, 131072);
        assert_eq!(p.max_xmit_data_segment_len, 8192);
        assert_eq!(p.target_alias.as_deref(), Some("x"));
    }

    #[test]
    fn lio_style_proposals_are_answered() {
        let mut n = Negotiator::new(wanted(), false);
        n.offer();
        let answers = n
            .on_response(&pairs(&[
                ("HeaderDigest", "CRC32C"),
                ("DataDigest", "CRC32C"),
                ("MaxRecvDataSegmentLength", "262144"),
                ("MaxConnections", "1"),
                ("DefaultTime2Wait", "2"),
                ("DefaultTime2Retain", "20"),
                ("MaxOutstandingR2T", "16"),
                ("DataPDUInOrder", "Yes"),
                ("DataSequenceInOrder", "Yes"),
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
        assert_eq!(get("DataPDUInOrder"), Some("Yes"));
        assert_eq!(get("X-vendor"), Some("NotUnderstood"));
        assert_eq!(get("MaxRecvDataSegmentLength"), None);
        let p = n.finish().unwrap();
        assert!(p.header_digest && p.data_digest);
        assert_eq!(p.max_xmit_data_segment_len, 262144);
        // InitialR2T omitted by the target (LIO): default Yes.
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
        assert!(matches!(
            n.on_key("HeaderDigest", "Reject"),
            Err(NegotiationError::Refused { .. })
        ));
        let mut n = Negotiator::new(wanted(), false);
        n.offer();
        n.on_key("FirstBurstLength", "65536").unwrap();
        n.on_key("MaxBurstLength", "4096").unwrap();
        assert_eq!(n.finish(), Err(NegotiationError::FirstBurstAboveMaxBurst));
        let mut n = Negotiator::new(wanted(), false);
        assert!(n.on_key("MaxRecvDataSegmentLength", "100").is_err());
        assert!(n.on_response(b"novalue").is_err());
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
        let mut d = Negotiator::new(wanted(), true);
        assert_eq!(
            d.on_key("MaxBurstLength", "1").unwrap(),
            Some(("MaxBurstLength".into(), "Irrelevant".into()))
        );
    }
}
