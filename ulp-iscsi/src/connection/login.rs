//! Login (RFC 7143 §6): the security stage (with CHAP), the operational stage (the
//! [`Negotiator`](crate::keys::Negotiator)), and the move to full feature phase with the
//! negotiated digests applied from exactly the next PDU.

use ulp_ddp_core::{DdpBackend, QueueConfig};

use super::{
    Connection, ConnectionError, Event, Phase, TxPayload, Violation, encode_text, stage_number,
};
use crate::chap;
use crate::keys::NegotiationError;
use crate::wire::bhs::BHS_LEN;
use crate::wire::login::{LoginRequestRepr, Stage, Stages};
use crate::wire::text::TextIter;
use crate::wire::{self, Digests, Itt, Opcode};

/// Most login rounds before the initiator gives up on a target that never transits.
const MAX_LOGIN_ROUNDS: u32 = 16;
/// Most bytes of text accumulated across continued (C bit) responses.
pub(super) const MAX_TEXT: usize = 64 * 1024;

/// The Version-max and Version-min the initiator offers (RFC 7143: version 0x00).
const VERSION_MAX: u8 = 0;
const VERSION_MIN: u8 = 0;

#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum ChapStep {
    Offered,
    SentAlgorithm,
    SentResponse,
}

#[derive(Debug)]
pub(super) struct LoginState {
    pub(super) stage: Stage,
    chap: Option<ChapStep>,
    rounds: u32,
    /// Operational-stage Login Responses (the exchanges of operational negotiation).
    operational_rounds: u32,
    text: Vec<u8>,
    pub(super) itt: u32,
    /// Answers owed to keys the target proposed, sent with the next Login Request.
    owed: Vec<(String, String)>,
}

/// Where the PDU being received during login ends. While logging in,
/// [`Connection::handle_bytes`]
/// feeds the engine one PDU at a time, so that the settings the final Login Response
/// negotiates (header and data digests, MaxRecvDataSegmentLength) frame exactly the PDUs after
/// it, also those that arrived in the same read.
#[derive(Debug, Default)]
pub(super) struct LoginFramer {
    /// The current PDU's BHS, as far as received.
    bhs: Vec<u8>,
    /// Bytes of the current PDU after its BHS not yet fed.
    rest: usize,
}

impl LoginFramer {
    /// How many of `data`'s first bytes belong to the current PDU (at least one).
    pub(super) fn take(&mut self, data: &[u8]) -> usize {
        if self.bhs.len() < BHS_LEN {
            let n = (BHS_LEN - self.bhs.len()).min(data.len());
            self.bhs.extend_from_slice(&data[..n]);
            if self.bhs.len() == BHS_LEN {
                // Login-phase PDUs carry no digests. A BHS that does not frame is refused by
                // the engine too (and fails the connection); treat it as header-only here.
                self.rest = wire::bhs::frame(&self.bhs, Digests::NONE)
                    .map_or(0, |f| f.total_len.saturating_sub(BHS_LEN));
                if self.rest == 0 {
                    self.bhs.clear();
                }
            }
            return n;
        }
        let n = self.rest.min(data.len());
        self.rest -= n;
        if self.rest == 0 {
            self.bhs.clear();
        }
        n
    }
}

impl<B: DdpBackend> Connection<B> {
    /// Starts the login: queues the first Login Request (security stage).
    ///
    /// # Errors
    ///
    /// [`ConnectionError::NotReady`] unless the connection is new.
    pub fn start_login(&mut self) -> Result<(), ConnectionError> {
        if self.phase != Phase::Idle {
            return Err(ConnectionError::NotReady);
        }
        let itt = self
            .free_tags
            .pop_front()
            .ok_or(ConnectionError::NotReady)?;
        self.phase = Phase::Login;
        let chap = self.config.chap.is_some();
        self.login = Some(LoginState {
            stage: Stage::Security,
            chap: chap.then_some(ChapStep::Offered),
            rounds: 0,
            operational_rounds: 0,
            text: Vec::new(),
            itt,
            owed: Vec::new(),
        });
        if let Some(why) = self.mutual_chap_config_error() {
            self.fail(ConnectionError::Chap(why));
            return Ok(());
        }
        let mut keys: Vec<(String, String)> =
            vec![("InitiatorName".into(), self.config.initiator_name.clone())];
        match &self.config.target_name {
            Some(t) => {
                keys.push(("SessionType".into(), "Normal".into()));
                keys.push(("TargetName".into(), t.clone()));
            }
            None => keys.push(("SessionType".into(), "Discovery".into())),
        }
        keys.push((
            "AuthMethod".into(),
            if chap { "CHAP" } else { "None" }.into(),
        ));
        let next = if chap { None } else { Some(Stage::Operational) };
        self.send_login(Stage::Security, next, &keys);
        Ok(())
    }

    fn send_login<K: AsRef<str>, V: AsRef<str>>(
        &mut self,
        current: Stage,
        next: Option<Stage>,
        keys: &[(K, V)],
    ) {
        let Some(login) = self.login.as_mut() else {
            return;
        };
        let itt = login.itt;
        let mut text = encode_text(keys);
        text.extend_from_slice(&encode_text(&core::mem::take(&mut login.owed)));
        let repr = LoginRequestRepr {
            stages: Stages {
                cont: false,
                current,
                next,
            },
            version_max: VERSION_MAX,
            version_min: VERSION_MIN,
            isid: self.config.isid,
            tsih: 0,
            itt: Itt(itt),
            cid: 0,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            data: &[],
        };
        if let Err(e) = self.push_pdu(
            Opcode::LoginRequest,
            |b, d, parts| wire::emit_header_parts(&repr, b, d, parts),
            TxPayload::Owned(text),
        ) {
            self.fail(e);
        }
    }

    pub(super) fn on_login_response(&mut self, r: &wire::login::LoginResponseRepr<'_>) {
        let Some(login) = self.login.as_mut() else {
            return self.fail(ConnectionError::Protocol(
                Violation::UnexpectedLoginResponse,
            ));
        };
        if r.itt.0 != login.itt {
            let expected = login.itt;
            return self.fail(ConnectionError::Protocol(Violation::LoginResponseItt {
                expected,
                received: r.itt.0,
            }));
        }
        if r.status_class != 0 {
            return self.fail(ConnectionError::LoginFailed {
                class: r.status_class,
                detail: r.status_detail,
            });
        }
        if !(VERSION_MIN..=VERSION_MAX).contains(&r.version_active) {
            return self.fail(ConnectionError::Protocol(Violation::VersionActive {
                active: r.version_active,
                min: VERSION_MIN,
                max: VERSION_MAX,
            }));
        }
        if r.stages.current != login.stage {
            let expected = stage_number(login.stage);
            return self.fail(ConnectionError::Protocol(Violation::LoginStage {
                expected,
                received: stage_number(r.stages.current),
            }));
        }
        login.rounds += 1;
        if login.stage == Stage::Operational && !r.stages.cont {
            login.operational_rounds += 1;
            self.operational_rounds = login.operational_rounds;
        }
        self.login_rounds = login.rounds;
        if login.rounds > MAX_LOGIN_ROUNDS {
            let rounds = login.rounds;
            return self.fail(ConnectionError::Protocol(Violation::LoginDoesNotConverge {
                rounds,
            }));
        }
        if login.text.len() + r.data.len() > MAX_TEXT {
            return self.fail(ConnectionError::Protocol(Violation::TextTooLong {
                max: MAX_TEXT,
            }));
        }
        login.text.extend_from_slice(r.data);
        let stage = login.stage;
        self.exp_stat_sn = r.stat_sn.wrapping_add(1);
        if r.stages.cont {
            // More text follows: ask for it with an empty request.
            return self.send_login::<&str, &str>(stage, None, &[]);
        }
        let text = core::mem::take(&mut login.text);
        match stage {
            Stage::Security => self.on_security_response(r, &text),
            Stage::Operational => self.on_operational_response(r, &text),
            Stage::FullFeature => self.fail(ConnectionError::Protocol(
                Violation::LoginInFullFeatureStage,
            )),
        }
    }

    fn on_security_response(&mut self, r: &wire::login::LoginResponseRepr<'_>, text: &[u8]) {
        let mut auth = None;
        let (mut chap_a, mut chap_i, mut chap_c) = (None, None, None);
        let (mut chap_n, mut chap_r) = (None, None);
        let mut owed = Vec::new();
        for pair in TextIter::with_max_value_len(text, 8192) {
            let (k, v) = match pair {
                Ok(kv) => kv,
                Err(e) => {
                    return self.fail(ConnectionError::Protocol(Violation::MalformedLoginText(e)));
                }
            };
            let slot = match k {
                "AuthMethod" => &mut auth,
                "CHAP_A" => &mut chap_a,
                "CHAP_I" => &mut chap_i,
                "CHAP_C" => &mut chap_c,
                "CHAP_N" => &mut chap_n,
                "CHAP_R" => &mut chap_r,
                _ => {
                    match self.negotiator.on_key(k, v) {
                        Ok(answer) => owed.extend(answer),
                        Err(e) => return self.fail(ConnectionError::Negotiation(e)),
                    }
                    continue;
                }
            };
            // Authentication keys too: each at most once per login (RFC 7143 §6.3).
            if let Err(e) = self.negotiator.note_received(k) {
                return self.fail(ConnectionError::Negotiation(e));
            }
            *slot = Some(v.to_string());
        }
        if let Some(l) = self.login.as_mut() {
            l.owed.extend(owed);
        }
        let step = self.login.as_ref().and_then(|l| l.chap);
        let transit_op = r.stages.next == Some(Stage::Operational);
        if r.stages.next == Some(Stage::FullFeature) {
            return self.fail(ConnectionError::Protocol(
                Violation::SkippedOperationalStage,
            ));
        }
        match step {
            None => {
                if auth.as_deref().is_some_and(|a| a != "None") {
                    return self.fail(ConnectionError::Chap("target requires authentication"));
                }
                if transit_op {
                    self.begin_operational();
                } else {
                    self.send_login::<&str, &str>(Stage::Security, Some(Stage::Operational), &[]);
                }
            }
            Some(ChapStep::Offered) => {
                if auth.as_deref() != Some("CHAP") {
                    return self.fail(ConnectionError::Chap("target did not select CHAP"));
                }
                self.set_chap(ChapStep::SentAlgorithm);
                self.send_login(Stage::Security, None, &[("CHAP_A", "5")]);
            }
            Some(ChapStep::SentAlgorithm) => {
                let Some(creds) = self.config.chap.clone() else {
                    return self.fail(ConnectionError::Chap("no credentials"));
                };
                if chap_a.as_deref() != Some("5") {
                    return self.fail(ConnectionError::Chap("target did not select MD5"));
                }
                let id = chap_i.as_deref().map(chap::parse_identifier);
                let challenge = chap_c.as_deref().map(chap::decode_binary);
                let (Some(Ok(id)), Some(Ok(challenge))) = (id, challenge) else {
                    return self.fail(ConnectionError::Chap("bad CHAP_I or CHAP_C"));
                };
                let resp = chap::response(id, &creds.secret, &challenge);
                self.set_chap(ChapStep::SentResponse);
                let mut keys = vec![
                    ("CHAP_N".to_string(), creds.user),
                    ("CHAP_R".to_string(), chap::encode_hex(&resp)),
                ];
                if self.config.mutual_chap.is_some() {
                    let (our_id, ours) = self.our_challenge();
                    // RFC 7143 §12.1.3: a challenge that is the one received is a reflection.
                    if ours == &challenge[..] {
                        return self.fail(ConnectionError::Chap(
                            "the target's challenge is the initiator's own (a reflection)",
                        ));
                    }
                    keys.push(("CHAP_I".into(), our_id.to_string()));
                    keys.push(("CHAP_C".into(), chap::encode_hex(ours)));
                }
                self.send_login(Stage::Security, Some(Stage::Operational), &keys);
            }
            Some(ChapStep::SentResponse) => {
                if !transit_op {
                    return self.fail(ConnectionError::Chap(
                        "target did not accept the CHAP response",
                    ));
                }
                if let Some(why) = self.verify_target(chap_n.as_deref(), chap_r.as_deref()) {
                    return self.fail(ConnectionError::Chap(why));
                }
                self.begin_operational();
            }
        }
    }

    /// The initiator's mutual-CHAP identifier and challenge ([`ConnectionConfig::chap_challenge`]).
    fn our_challenge(&self) -> (u8, &[u8]) {
        match self.config.chap_challenge.split_first() {
            Some((id, rest)) => (*id, rest),
            None => (0, &[]),
        }
    }

    /// Why the mutual CHAP configuration cannot work, if it cannot.
    fn mutual_chap_config_error(&self) -> Option<&'static str> {
        let mutual = self.config.mutual_chap.as_ref()?;
        let Some(ours) = self.config.chap.as_ref() else {
            return Some("mutual CHAP needs the initiator's CHAP credentials too");
        };
        if mutual.secret == ours.secret {
            return Some("the target's secret must differ from the initiator's (RFC 7143 §9.2.1)");
        }
        if self.config.chap_challenge.len() < 17 {
            return Some(
                "mutual CHAP needs at least 17 random challenge bytes \
                 (ConnectionConfig::with_random_chap_challenge)",
            );
        }
        None
    }

    /// Checks the target's answer to the initiator's challenge (mutual CHAP): `None` when it
    /// authenticated (or mutual CHAP is off), else why it failed.
    fn verify_target(&self, name: Option<&str>, response: Option<&str>) -> Option<&'static str> {
        let mutual = self.config.mutual_chap.as_ref()?;
        let (Some(name), Some(response)) = (name, response) else {
            return Some("the target failed authentication: it sent no CHAP_N and CHAP_R");
        };
        if name != mutual.user {
            return Some(
                "the target failed authentication: its CHAP_N is not the configured target name",
            );
        }
        let Ok(response) = chap::decode_binary(response) else {
            return Some("the target failed authentication: its CHAP_R is not a binary value");
        };
        let (id, challenge) = self.our_challenge();
        if response != chap::response(id, &mutual.secret, challenge) {
            return Some(
                "the target failed authentication: its CHAP_R does not answer the challenge \
                 with the configured secret",
            );
        }
        None
    }

    fn set_chap(&mut self, step: ChapStep) {
        if let Some(l) = self.login.as_mut() {
            l.chap = Some(step);
        }
    }

    fn begin_operational(&mut self) {
        if let Some(l) = self.login.as_mut() {
            l.stage = Stage::Operational;
        }
        let keys = self.negotiator.offer();
        // Data segments up to the declared length are acceptable from now on; login responses
        // may still use the 8192-byte default until the full feature phase.
        let mrdsl = self
            .config
            .wanted
            .max_recv_data_segment_len
            .max(crate::plugin::DEFAULT_MAX_RECV_DATA_SEGMENT_LEN);
        self.engine
            .protocol_mut()
            .set_max_recv_data_segment_len(mrdsl);
        self.send_login(Stage::Operational, Some(Stage::FullFeature), &keys);
    }

    fn on_operational_response(&mut self, r: &wire::login::LoginResponseRepr<'_>, text: &[u8]) {
        let answers = match self.negotiator.on_response(text) {
            Ok(a) => a,
            Err(e) => return self.fail(ConnectionError::Negotiation(e)),
        };
        if r.stages.next != Some(Stage::FullFeature) {
            // The target proposed keys (LIO) or wants another round: answer and transit again.
            return self.send_login(Stage::Operational, Some(Stage::FullFeature), &answers);
        }
        if let Some((key, _)) = answers.into_iter().next() {
            return self.fail(ConnectionError::Negotiation(
                NegotiationError::LateProposal { key },
            ));
        }
        let params = match self.negotiator.finish() {
            Ok(p) => p,
            Err(e) => return self.fail(ConnectionError::Negotiation(e)),
        };
        self.digests = Digests {
            header: params.header_digest,
            data: params.data_digest,
        };
        self.engine.protocol_mut().set_digests(self.digests);
        self.engine
            .protocol_mut()
            .set_max_recv_data_segment_len(params.max_recv_data_segment_len);
        // Re-offer the queue with what was negotiated. Login feeds the engine one PDU at a time
        // and registers no buffer, so the engine is between PDUs and idle; if it were not, the
        // queue would simply keep its first configuration (the engine frames correctly either
        // way).
        let mut negotiated: QueueConfig = *self.engine.config();
        negotiated.header_digest = self.digests.header;
        negotiated.data_digest = self.digests.data;
        let _ = self.engine.reconfigure(negotiated);
        self.params = params;
        self.tsih = r.tsih;
        if crate::serial::lt(r.max_cmd_sn, r.exp_cmd_sn.wrapping_sub(1)) {
            // RFC 7143 §4.2.2.1: MaxCmdSN below ExpCmdSN - 1 means both are ignored. The next
            // CmdSN is the Login Request's (login is immediate), with a window of one: the
            // first command's answer brings a usable window.
            self.exp_cmd_sn = self.cmd_sn;
            self.max_cmd_sn = self.cmd_sn;
        } else {
            self.cmd_sn = r.exp_cmd_sn;
            self.exp_cmd_sn = r.exp_cmd_sn;
            self.max_cmd_sn = r.max_cmd_sn;
        }
        if let Some(l) = self.login.take() {
            self.free_tags.push_back(l.itt);
        }
        self.phase = Phase::FullFeature;
        self.events.push_back(Event::Connected);
    }
}
