//! Login and negotiation by RFC 7143 §6, sans-IO: the test plays the target, byte by byte
//! scripted Login Responses, and reads the Login Requests the connection sends. Nothing here
//! waits on a clock (the login has no timer of its own in this crate's state machine).

use std::time::Instant;

use ulp_backend_sw::SwBackend;
use ulp_ddp_core::{QueueId, SansIo, SgBuffer};
use ulp_iscsi::connection::{ChapCredentials, Phase};
use ulp_iscsi::keys::{DigestPref, NegotiationError};
use ulp_iscsi::wire::login::{LoginResponseRepr, Stage, Stages};
use ulp_iscsi::wire::text::TextIter;
use ulp_iscsi::wire::{Digests, Itt, Lun};
use ulp_iscsi::{
    Command, Connection, ConnectionConfig, ConnectionError, Data, Event, Violation, chap, scsi,
};

/// Answers to every key of the default offer, as a target that answers all (tgtd).
const ANSWERS: &[(&str, &str)] = &[
    ("HeaderDigest", "None"),
    ("DataDigest", "None"),
    ("MaxRecvDataSegmentLength", "8192"),
    ("InitialR2T", "Yes"),
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
];

/// `ANSWERS` with `changes` applied: a value replaced, or the key left out (`None`), or a key
/// added.
fn answers(changes: &[(&str, Option<&str>)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in ANSWERS {
        match changes.iter().find(|(c, _)| c == k) {
            Some((_, None)) => {}
            Some((_, Some(v))) => out.push(((*k).into(), (*v).into())),
            None => out.push(((*k).into(), (*v).into())),
        }
    }
    for (k, v) in changes {
        if let Some(v) = v
            && !ANSWERS.iter().any(|(a, _)| a == k)
        {
            out.push(((*k).into(), (*v).into()));
        }
    }
    out
}

fn text(pairs: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in pairs {
        out.extend_from_slice(format!("{k}={v}\0").as_bytes());
    }
    out
}

/// A Login Response; `next` is `None` for T=0.
struct Rsp<'a> {
    current: Stage,
    next: Option<Stage>,
    text: &'a [u8],
    version_active: u8,
    exp_cmd_sn: u32,
    max_cmd_sn: u32,
    status: u16,
}

impl<'a> Rsp<'a> {
    fn new(current: Stage, next: Option<Stage>, text: &'a [u8]) -> Self {
        Self {
            current,
            next,
            text,
            version_active: 0,
            exp_cmd_sn: 1,
            max_cmd_sn: 8,
            status: 0,
        }
    }

    fn bytes(&self, itt: u32, stat_sn: u32) -> Vec<u8> {
        let r = LoginResponseRepr {
            stages: Stages {
                cont: false,
                current: self.current,
                next: self.next,
            },
            version_max: 0,
            version_active: self.version_active,
            isid: [0x80, 0x12, 0x34, 0x56, 0, 1],
            tsih: if self.next == Some(Stage::FullFeature) {
                7
            } else {
                0
            },
            itt: Itt(itt),
            stat_sn,
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn,
            status_class: (self.status >> 8) as u8,
            status_detail: self.status as u8,
            data: self.text,
        };
        let mut b = vec![0; r.buffer_len(Digests::NONE)];
        r.emit(&mut b, Digests::NONE).unwrap();
        b
    }
}

/// The scripted target's side of one login.
struct Login {
    c: Connection<SwBackend>,
    itt: u32,
    stat_sn: u32,
}

/// A Login Request as sent: its header and its keys.
struct Req {
    header: Vec<u8>,
    keys: Vec<(String, String)>,
}

impl Req {
    fn get(&self, key: &str) -> Option<&str> {
        self.keys
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn config() -> ConnectionConfig {
    let mut config = ConnectionConfig::normal("iqn.i:x", "iqn.t:y");
    config.queue_id = QueueId(1);
    config.queue_depth = 8;
    config
}

impl Login {
    fn start(config: ConnectionConfig) -> (Self, Req) {
        let mut c = Connection::new(config, SwBackend::new());
        c.start_login().unwrap();
        let mut l = Self {
            c,
            itt: 0,
            stat_sn: 100,
        };
        let req = l.request().expect("the first Login Request");
        l.itt = u32::from_be_bytes(req.header[16..20].try_into().unwrap());
        (l, req)
    }

    /// The next Login Request the connection sends, if any.
    fn request(&mut self) -> Option<Req> {
        let t = self.c.poll_transmit()?;
        let header = t.parts()[0].to_vec();
        let mut data: Vec<u8> = t.parts()[1..].concat();
        // The data segment, without its pad.
        data.truncate(u32::from_be_bytes([0, header[5], header[6], header[7]]) as usize);
        assert_eq!(header[0] & 0x3F, 0x03, "a Login Request");
        let keys = TextIter::new(&data)
            .map(|kv| {
                let (k, v) = kv.unwrap();
                (k.to_string(), v.to_string())
            })
            .collect();
        Some(Req { header, keys })
    }

    fn respond(&mut self, rsp: &Rsp<'_>) -> Option<Req> {
        let b = rsp.bytes(self.itt, self.stat_sn);
        self.stat_sn += 1;
        self.c.handle_bytes(&b);
        self.request()
    }

    /// Security stage without authentication; returns the first operational request.
    fn to_operational(config: ConnectionConfig) -> (Self, Req) {
        let (mut l, _) = Self::start(config);
        let req = l
            .respond(&Rsp::new(Stage::Security, Some(Stage::Operational), b""))
            .expect("the operational Login Request");
        (l, req)
    }

    /// The failure the connection ended with.
    fn failure(&mut self) -> ConnectionError {
        assert_eq!(self.c.phase(), Phase::Failed);
        let closed = std::iter::from_fn(|| self.c.poll_event())
            .find_map(|e| match e {
                Event::Closed(e) => Some(e),
                _ => None,
            })
            .expect("Closed");
        assert_eq!(Some(&closed), self.c.failure());
        closed
    }

    fn connected(&mut self) {
        assert_eq!(self.c.phase(), Phase::FullFeature, "{:?}", self.c.failure());
        assert!(matches!(self.c.poll_event(), Some(Event::Connected)));
    }
}

/// Rule 5: one operational Login Request carries the whole key set (libiscsi and
/// open-iscsi's values), so a target answering them all completes in one exchange.
#[test]
fn the_first_operational_request_offers_every_key() {
    let (mut l, req) = Login::to_operational(config());
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
        assert_eq!(req.get(k), Some(v), "{k}");
    }
    assert!(req.get("MaxRecvDataSegmentLength").is_some());
    // T=1 towards full feature phase.
    assert_eq!(req.header[1] & 0x83, 0x83);
    let t = text(&answers(&[]));
    assert!(
        l.respond(&Rsp::new(Stage::Operational, Some(Stage::FullFeature), &t))
            .is_none()
    );
    l.connected();
    assert_eq!(l.c.operational_rounds(), 1);
    assert_eq!(l.c.login_rounds(), 2);
    assert_eq!(l.c.params().default_time2retain, 0);
}

/// Rule 1: a key the target sends twice in one login, across responses, drops the
/// connection with a message naming the key.
#[test]
fn a_key_sent_twice_across_responses_fails_the_login() {
    let (mut l, _) = Login::to_operational(config());
    // T=0 with MaxBurstLength answered (and a proposal), then the final response repeats it.
    let first = text(&[
        ("MaxBurstLength".into(), "65536".into()),
        ("X-vendor".into(), "1".into()),
    ]);
    let req = l
        .respond(&Rsp::new(Stage::Operational, None, &first))
        .expect("the answers to the proposals");
    assert_eq!(req.get("X-vendor"), Some("NotUnderstood"));
    assert!(
        req.get("MaxBurstLength").is_none(),
        "the host repeats no key"
    );
    let t = text(&answers(&[("MaxBurstLength", Some("65536"))]));
    l.respond(&Rsp::new(Stage::Operational, Some(Stage::FullFeature), &t));
    let e = l.failure();
    assert_eq!(
        e,
        ConnectionError::Negotiation(NegotiationError::Duplicate {
            key: "MaxBurstLength".into()
        })
    );
    assert!(
        e.to_string()
            .contains("the target sent MaxBurstLength twice"),
        "{e}"
    );
    // The security stage counts too: TargetPortalGroupTag declared there and again later.
    let (mut l, _) = Login::start(config());
    l.respond(&Rsp::new(
        Stage::Security,
        Some(Stage::Operational),
        b"TargetPortalGroupTag=1\0",
    ));
    let mut t = text(&answers(&[]));
    t.extend_from_slice(b"TargetPortalGroupTag=1\0");
    l.respond(&Rsp::new(Stage::Operational, Some(Stage::FullFeature), &t));
    assert!(
        l.failure()
            .to_string()
            .contains("the target sent TargetPortalGroupTag twice")
    );
}

/// A write of `len` bytes; returns the SCSI Command header and whether a data segment
/// followed it (immediate data).
fn write_header(c: &mut Connection<SwBackend>, len: usize) -> (Vec<u8>, usize) {
    c.submit(Command {
        lun: Lun::default(),
        cdb: scsi::write_10(0, (len / 512) as u16),
        data: Data::Write(SgBuffer::from_vec(vec![0x5A; len])),
    });
    let t = c.poll_transmit().expect("SCSI Command");
    let header = t.parts()[0].to_vec();
    let data: usize = t.parts()[1..].iter().map(|p| p.len()).sum();
    (header, data)
}

/// Rule 2: ImmediateData=No offered and left unanswered is No (an AND key: the offer
/// settles it; LIO omits the answer), so a write carries no immediate data. InitialR2T=Yes,
/// DataPDUInOrder=Yes and DataSequenceInOrder=Yes unanswered are Yes (OR keys). A numeric key
/// left unanswered fails.
#[test]
fn unanswered_keys_are_settled_by_their_result_functions() {
    let mut cfg = config();
    cfg.wanted.immediate_data = false;
    cfg.wanted.initial_r2t = true;
    let (mut l, req) = Login::to_operational(cfg.clone());
    assert_eq!(req.get("ImmediateData"), Some("No"));
    let t = text(&answers(&[
        ("ImmediateData", None),
        ("InitialR2T", None),
        ("DataPDUInOrder", None),
        ("DataSequenceInOrder", None),
    ]));
    l.respond(&Rsp::new(Stage::Operational, Some(Stage::FullFeature), &t));
    l.connected();
    let p = l.c.params().clone();
    assert!(!p.immediate_data && p.initial_r2t);
    assert!(p.data_pdu_in_order && p.data_sequence_in_order);
    let (header, data) = write_header(&mut l.c, 4096);
    assert_eq!(header[0] & 0x3F, 0x01);
    assert_eq!(data, 0, "no immediate data");
    assert_eq!(&header[5..8], &[0, 0, 0], "DataSegmentLength 0");

    // MaxOutstandingR2T unanswered: RFC 7143 §6.2.1 requires an answer.
    let (mut l, _) = Login::to_operational(cfg);
    let t = text(&answers(&[
        ("MaxOutstandingR2T", None),
        ("ImmediateData", Some("No")),
    ]));
    l.respond(&Rsp::new(Stage::Operational, Some(Stage::FullFeature), &t));
    assert_eq!(
        l.failure(),
        ConnectionError::Negotiation(NegotiationError::Unanswered {
            key: "MaxOutstandingR2T".into(),
            offered: "1".into()
        })
    );
}

/// Rule 3: FirstBurstLength=Irrelevant (InitialR2T=Yes, ImmediateData=No) against a target
/// whose MaxBurstLength is 16384 logs in; no FirstBurstLength <= MaxBurstLength check.
#[test]
fn first_burst_irrelevant_against_a_small_max_burst() {
    let mut cfg = config();
    cfg.wanted.immediate_data = false;
    cfg.wanted.initial_r2t = true;
    let (mut l, _) = Login::to_operational(cfg);
    let t = text(&answers(&[
        ("InitialR2T", Some("Yes")),
        ("ImmediateData", Some("No")),
        ("FirstBurstLength", Some("Irrelevant")),
        ("MaxBurstLength", Some("16384")),
    ]));
    l.respond(&Rsp::new(Stage::Operational, Some(Stage::FullFeature), &t));
    l.connected();
    let p = l.c.params();
    assert_eq!(p.max_burst_len, 16384);
    assert!(p.first_burst_len <= p.max_burst_len);
}

/// Rule 4: Reject per key. istgt answers Reject to HeaderDigest=None and still completes the
/// login: with the host set for no digests that is a login failure in words (RFC 7143 §6.2:
/// the key stays at its default None, but the target has said it will not work with None;
/// renegotiating is forbidden, so there is no agreement). A required digest rejected fails
/// too; a rejected numeric key keeps its default.
#[test]
fn rejected_digests_fail_the_login_in_words() {
    let (mut l, _) = Login::to_operational(config());
    let t = text(&answers(&[("HeaderDigest", Some("Reject"))]));
    l.respond(&Rsp::new(Stage::Operational, Some(Stage::FullFeature), &t));
    let e = l.failure();
    assert_eq!(
        e.to_string(),
        "negotiation: the target answered HeaderDigest=Reject to HeaderDigest=None: it will \
         not work without a digest, and the host is set for none (DigestPref::Off; allow \
         CRC32C with DigestPref::Prefer); no HeaderDigest was agreed"
    );

    let mut cfg = config();
    cfg.wanted.data_digest = DigestPref::Require;
    let (mut l, req) = Login::to_operational(cfg);
    assert_eq!(req.get("DataDigest"), Some("CRC32C"));
    let t = text(&answers(&[("DataDigest", Some("Reject"))]));
    l.respond(&Rsp::new(Stage::Operational, Some(Stage::FullFeature), &t));
    assert_eq!(
        l.failure().to_string(),
        "negotiation: the target answered DataDigest=Reject to DataDigest=CRC32C: the host \
         requires CRC32C (DigestPref::Require)"
    );

    let (mut l, _) = Login::to_operational(config());
    let t = text(&answers(&[
        ("MaxBurstLength", Some("Reject")),
        ("DefaultTime2Wait", Some("Reject")),
    ]));
    l.respond(&Rsp::new(Stage::Operational, Some(Stage::FullFeature), &t));
    l.connected();
    assert_eq!(l.c.params().max_burst_len, 262_144);
    assert_eq!(l.c.params().default_time2wait, 2);

    // NotUnderstood to an RFC 7143 key is a failure.
    let (mut l, _) = Login::to_operational(config());
    let t = text(&answers(&[("MaxConnections", Some("NotUnderstood"))]));
    l.respond(&Rsp::new(Stage::Operational, Some(Stage::FullFeature), &t));
    assert!(matches!(
        l.failure(),
        ConnectionError::Negotiation(NegotiationError::NotUnderstood { .. })
    ));
}

/// Rule 6: Version-active outside the offered Version-min..Version-max (0..0) fails.
#[test]
fn version_active_outside_the_offered_range_fails() {
    let (mut l, req) = Login::start(config());
    assert_eq!(
        (req.header[2], req.header[3]),
        (0, 0),
        "Version-max, Version-min"
    );
    let mut rsp = Rsp::new(Stage::Security, Some(Stage::Operational), b"");
    rsp.version_active = 2;
    l.respond(&rsp);
    let e = l.failure();
    assert_eq!(
        e,
        ConnectionError::Protocol(Violation::VersionActive {
            active: 2,
            min: 0,
            max: 0
        })
    );
    assert_eq!(
        e.to_string(),
        "protocol violation by the target: Login Response with Version-active 0x02, outside \
         the offered range Version-min 0x00 to Version-max 0x00"
    );
}

/// Rule 7: a final Login Response with MaxCmdSN < ExpCmdSN - 1 carries values RFC 7143
/// §4.2.2.1 says to ignore: not a closed window. The first command goes out at once.
#[test]
fn ignored_max_cmd_sn_in_the_final_login_response() {
    let (mut l, _) = Login::to_operational(config());
    let t = text(&answers(&[]));
    let mut rsp = Rsp::new(Stage::Operational, Some(Stage::FullFeature), &t);
    rsp.exp_cmd_sn = 10;
    rsp.max_cmd_sn = 5;
    l.respond(&rsp);
    l.connected();
    let (cmd_sn, exp, max, _) = l.c.sequence_numbers();
    assert_eq!(
        (cmd_sn, exp, max),
        (1, 1, 1),
        "the login's CmdSN, a window of one"
    );
    let (header, _) = write_header(&mut l.c, 512);
    assert_eq!(header[0] & 0x3F, 0x01, "the command went out");
    assert_eq!(u32::from_be_bytes(header[24..28].try_into().unwrap()), 1);
    // The time that passes does not matter to this rule; a timer tick changes nothing.
    l.c.handle_timeout(Instant::now());
    assert_eq!(l.c.phase(), Phase::FullFeature);
    // A closed window that is valid (MaxCmdSN = ExpCmdSN - 1) is taken as closed.
    let (mut l, _) = Login::to_operational(config());
    let mut rsp = Rsp::new(Stage::Operational, Some(Stage::FullFeature), &t);
    rsp.exp_cmd_sn = 1;
    rsp.max_cmd_sn = 0;
    l.respond(&rsp);
    l.connected();
    l.c.submit(Command {
        lun: Lun::default(),
        cdb: scsi::test_unit_ready(),
        data: Data::None,
    });
    assert!(l.c.poll_transmit().is_none(), "window closed");
}

/// Rule 9: a failed login names its status in words, with the code.
#[test]
fn login_status_in_words() {
    let (mut l, _) = Login::start(config());
    let mut rsp = Rsp::new(Stage::Security, None, b"");
    rsp.status = 0x0203;
    l.respond(&rsp);
    assert_eq!(
        l.failure().to_string(),
        "login failed: Target not found (0203h)"
    );
    assert_eq!(
        ConnectionError::LoginFailed {
            class: 3,
            detail: 1
        }
        .to_string(),
        "login failed: Service unavailable (0301h)"
    );
}

fn chap_config(mutual_secret: &[u8]) -> ConnectionConfig {
    let mut cfg = config();
    cfg.chap = Some(ChapCredentials {
        user: "user1".into(),
        secret: b"initiatorsecret".to_vec(),
    });
    cfg.mutual_chap = Some(ChapCredentials {
        user: "iqn.t:auth".into(),
        secret: mutual_secret.to_vec(),
    });
    // CHAP_I 0x42, a 16-byte CHAP_C: deterministic here, random in the blocking driver.
    cfg.chap_challenge = [[0x42u8].as_slice(), &[7u8; 16]].concat();
    cfg
}

/// Runs the CHAP exchange up to the initiator's response; returns its request.
fn chap_to_response(cfg: ConnectionConfig) -> (Login, Req) {
    let (mut l, req) = Login::start(cfg);
    assert_eq!(req.get("AuthMethod"), Some("CHAP"));
    let req = l
        .respond(&Rsp::new(Stage::Security, None, b"AuthMethod=CHAP\0"))
        .unwrap();
    assert_eq!(req.get("CHAP_A"), Some("5"));
    let req = l
        .respond(&Rsp::new(
            Stage::Security,
            None,
            b"CHAP_A=5\0CHAP_I=9\0CHAP_C=0x0102030405060708090a0b0c0d0e0f10\0",
        ))
        .unwrap();
    (l, req)
}

/// Rule 8: mutual CHAP. The initiator answers the target's challenge and sends its own
/// (CHAP_I, CHAP_C from the configured random bytes); the target's CHAP_N and CHAP_R are
/// verified; a wrong answer is a login failure saying the target failed authentication.
#[test]
fn mutual_chap_verifies_the_target() {
    let target_secret = b"targetsecret123";
    let (mut l, req) = chap_to_response(chap_config(target_secret));
    assert_eq!(req.get("CHAP_N"), Some("user1"));
    let challenge: Vec<u8> = (1..=16).collect();
    let expected = chap::encode_hex(&chap::response(9, b"initiatorsecret", &challenge));
    assert_eq!(req.get("CHAP_R"), Some(expected.as_str()));
    assert_eq!(req.get("CHAP_I"), Some("66"));
    assert_eq!(req.get("CHAP_C"), Some(chap::encode_hex(&[7; 16]).as_str()));
    let good = chap::encode_hex(&chap::response(0x42, target_secret, &[7; 16]));
    let t = format!("CHAP_N=iqn.t:auth\0CHAP_R={good}\0");
    let req = l
        .respond(&Rsp::new(
            Stage::Security,
            Some(Stage::Operational),
            t.as_bytes(),
        ))
        .expect("operational request: the target authenticated");
    assert!(req.get("HeaderDigest").is_some());
    let t = text(&answers(&[]));
    l.respond(&Rsp::new(Stage::Operational, Some(Stage::FullFeature), &t));
    l.connected();

    // A wrong CHAP_R.
    let (mut l, _) = chap_to_response(chap_config(target_secret));
    let bad = chap::encode_hex(&chap::response(0x42, b"someothersecret", &[7; 16]));
    let t = format!("CHAP_N=iqn.t:auth\0CHAP_R={bad}\0");
    l.respond(&Rsp::new(
        Stage::Security,
        Some(Stage::Operational),
        t.as_bytes(),
    ));
    assert_eq!(
        l.failure().to_string(),
        "CHAP: the target failed authentication: its CHAP_R does not answer the challenge \
         with the configured secret"
    );
    // No answer at all, and another name.
    let (mut l, _) = chap_to_response(chap_config(target_secret));
    l.respond(&Rsp::new(Stage::Security, Some(Stage::Operational), b""));
    assert!(
        l.failure()
            .to_string()
            .contains("the target failed authentication: it sent no CHAP_N and CHAP_R")
    );
    let (mut l, _) = chap_to_response(chap_config(target_secret));
    let t = format!("CHAP_N=iqn.t:other\0CHAP_R={good}\0");
    l.respond(&Rsp::new(
        Stage::Security,
        Some(Stage::Operational),
        t.as_bytes(),
    ));
    assert!(l.failure().to_string().contains("CHAP_N"));
}

/// Mutual CHAP refuses what cannot be safe: the same secret both ways (RFC 7143 §9.2.1), no
/// challenge bytes, and a target challenge that reflects the initiator's.
#[test]
fn mutual_chap_configuration_and_reflection() {
    let mut cfg = chap_config(b"initiatorsecret");
    let mut c = Connection::new(cfg.clone(), SwBackend::new());
    c.start_login().unwrap();
    assert!(
        c.failure()
            .unwrap()
            .to_string()
            .contains("must differ from the initiator's")
    );
    cfg = chap_config(b"targetsecret123");
    cfg.chap_challenge.clear();
    let mut c = Connection::new(cfg.clone(), SwBackend::new());
    c.start_login().unwrap();
    assert!(
        c.failure()
            .unwrap()
            .to_string()
            .contains("with_random_chap_challenge")
    );
    // The blocking driver's helper fills 17 random bytes.
    let filled = chap_config(b"targetsecret123")
        .with_random_chap_challenge()
        .unwrap();
    assert_eq!(filled.chap_challenge.len(), 17);
    // The target sends the initiator's own challenge: a reflection.
    let (mut l, _) = Login::start(chap_config(b"targetsecret123"));
    l.respond(&Rsp::new(Stage::Security, None, b"AuthMethod=CHAP\0"));
    let t = format!(
        "CHAP_A=5\0CHAP_I=9\0CHAP_C={}\0",
        chap::encode_hex(&[7; 16])
    );
    l.respond(&Rsp::new(Stage::Security, None, t.as_bytes()));
    assert!(l.failure().to_string().contains("reflection"));
    // CHAP keys count as keys: CHAP_A twice in one login fails.
    let (mut l, _) = Login::start(chap_config(b"targetsecret123"));
    l.respond(&Rsp::new(
        Stage::Security,
        None,
        b"AuthMethod=CHAP\0CHAP_A=5\0",
    ));
    l.respond(&Rsp::new(
        Stage::Security,
        None,
        b"CHAP_A=5\0CHAP_I=9\0CHAP_C=0x01020304\0",
    ));
    assert!(
        l.failure()
            .to_string()
            .contains("the target sent CHAP_A twice")
    );
}

/// A key the target proposes in the security stage is answered in the next Login Request (the
/// first operational one), and not offered a second time there.
#[test]
fn security_stage_proposals_are_answered_once() {
    let (mut l, _) = Login::start(config());
    let req = l
        .respond(&Rsp::new(
            Stage::Security,
            Some(Stage::Operational),
            b"X-vendor=1\0MaxBurstLength=65536\0",
        ))
        .expect("the operational request");
    assert_eq!(req.get("X-vendor"), Some("NotUnderstood"));
    assert_eq!(req.get("MaxBurstLength"), Some("65536"));
    assert_eq!(
        req.keys
            .iter()
            .filter(|(k, _)| k == "MaxBurstLength")
            .count(),
        1
    );
    let t = text(&answers(&[("MaxBurstLength", None)]));
    l.respond(&Rsp::new(Stage::Operational, Some(Stage::FullFeature), &t));
    l.connected();
    assert_eq!(l.c.params().max_burst_len, 65536);
}
