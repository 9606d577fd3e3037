//! A strict in-process iSCSI target with a RAM LUN, for tests, the CLI and hostile-peer tests.
//!
//! It listens on 127.0.0.1 (an ephemeral port), serves each connection on its own thread, checks
//! every digest and sequence number it receives (closing the connection on a bad one, as tgtd
//! and LIO do), negotiates like LIO when asked ([`TargetConfig::propose_keys`]: it proposes the
//! session keys the initiator did not offer and replies T=0), and can misbehave on purpose
//! ([`Misbehave`]) to exercise the initiator's defences.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::chap;
use crate::scsi::{Sense, op};
use crate::wire::bhs::{self, BHS_LEN};
use crate::wire::data_in::{DataInRepr, DataInStatus};
use crate::wire::login::{LoginRequestRepr, LoginResponseRepr, Stage, Stages};
use crate::wire::logout::{LogoutResponse, LogoutResponseRepr};
use crate::wire::nop::NopInRepr;
use crate::wire::r2t::R2tRepr;
use crate::wire::reject::{RejectReason, RejectRepr};
use crate::wire::scsi_cmd::ScsiCmdRepr;
use crate::wire::scsi_rsp::ScsiRspRepr;
use crate::wire::text::{TextIter, TextResponseRepr};
use crate::wire::{Digests, Itt, Lun, Pdu, Ttt};

/// A deliberate protocol violation, applied to READ commands (or writes, where it says so).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub enum Misbehave {
    /// Behave.
    #[default]
    None,
    /// Data-In at a Buffer Offset past the end of the command's buffer.
    OffsetOutsideCommand,
    /// Data-In whose data runs past the end of the command's buffer.
    LengthOutsideCommand,
    /// Data-In for an ITT the initiator never used.
    UnknownItt,
    /// DataSN skips a value.
    DataSnGap,
    /// The same data twice (same offset, next DataSN).
    DuplicateData,
    /// A corrupt data digest (needs DataDigest=CRC32C).
    BadDataDigest,
    /// A corrupt header digest (needs HeaderDigest=CRC32C).
    BadHeaderDigest,
    /// Reject every READ (reason Invalid PDU Field).
    RejectReads,
    /// A Data-In segment longer than the initiator's MaxRecvDataSegmentLength.
    OversizedSegment,
    /// Data-In with S set and F clear.
    StatusWithoutFinal,
    /// A PDU with an initiator opcode (SCSI Command).
    InitiatorOpcode,
    /// Data-In for a WRITE command's ITT.
    DataInForWrite,
    /// An R2T asking for bytes beyond the write.
    R2tBeyondWrite,
    /// Close the connection in the middle of a Data-In.
    TruncatedPdu,
}

/// The embedded target's configuration.
#[derive(Clone, Debug)]
pub struct TargetConfig {
    /// Target IQN.
    pub iqn: String,
    /// LUN number.
    pub lun: u8,
    /// Size of the RAM LUN in bytes (a multiple of `block_len`).
    pub size: u64,
    /// Logical block length.
    pub block_len: u32,
    /// CHAP user and secret the initiator must present.
    pub chap: Option<(String, Vec<u8>)>,
    /// Propose un-offered session keys with T=0 and omit the answer to InitialR2T=Yes (LIO).
    pub propose_keys: bool,
    /// Answer the first command with UNIT ATTENTION (tgtd).
    pub unit_attention: bool,
    /// The target's MaxRecvDataSegmentLength (tgtd: 8192).
    pub max_recv_data_segment_len: u32,
    /// Largest MaxBurstLength accepted.
    pub max_burst_len: u32,
    /// Largest FirstBurstLength accepted.
    pub first_burst_len: u32,
    /// The target's InitialR2T (OR with the initiator's).
    pub initial_r2t: bool,
    /// The target's ImmediateData (AND with the initiator's).
    pub immediate_data: bool,
    /// Deliberate violations.
    pub misbehave: Misbehave,
}

impl Default for TargetConfig {
    fn default() -> Self {
        Self {
            iqn: "iqn.2024-01.io.ulp-ddp:embedded".into(),
            lun: 0,
            size: 16 << 20,
            block_len: 512,
            chap: None,
            propose_keys: false,
            unit_attention: true,
            max_recv_data_segment_len: 8192,
            max_burst_len: 262_144,
            first_burst_len: 65536,
            initial_r2t: false,
            immediate_data: true,
            misbehave: Misbehave::None,
        }
    }
}

/// A running embedded target; stopped (threads joined) on drop.
#[derive(Debug)]
pub struct EmbeddedTarget {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    disk: Arc<Mutex<Vec<u8>>>,
    thread: Option<JoinHandle<()>>,
    iqn: String,
    lun: u8,
}

impl EmbeddedTarget {
    /// Starts a target on 127.0.0.1 with an ephemeral port.
    ///
    /// # Errors
    ///
    /// If the listener cannot be bound.
    pub fn start(config: TargetConfig) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let len = usize::try_from(config.size).map_err(|_| io::ErrorKind::InvalidInput)?;
        let disk = Arc::new(Mutex::new(vec![0u8; len]));
        let (iqn, lun) = (config.iqn.clone(), config.lun);
        let config = Arc::new(config);
        let thread = {
            let (stop, disk) = (Arc::clone(&stop), Arc::clone(&disk));
            std::thread::spawn(move || accept_loop(&listener, addr, &stop, &disk, &config))
        };
        Ok(Self {
            addr,
            stop,
            disk,
            thread: Some(thread),
            iqn,
            lun,
        })
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The target IQN.
    pub fn iqn(&self) -> &str {
        &self.iqn
    }

    /// `iscsi://127.0.0.1:PORT/IQN/LUN`.
    pub fn url(&self) -> String {
        format!("iscsi://{}/{}/{}", self.addr, self.iqn, self.lun)
    }

    /// A copy of `len` bytes of the LUN at `offset` (empty if out of range).
    pub fn disk(&self, offset: usize, len: usize) -> Vec<u8> {
        let d = self.disk.lock().unwrap_or_else(PoisonError::into_inner);
        d.get(offset..offset.saturating_add(len))
            .map(<[u8]>::to_vec)
            .unwrap_or_default()
    }
}

impl Drop for EmbeddedTarget {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(
    listener: &TcpListener,
    addr: SocketAddr,
    stop: &Arc<AtomicBool>,
    disk: &Arc<Mutex<Vec<u8>>>,
    config: &Arc<TargetConfig>,
) {
    let mut workers = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let (stop, disk, config) = (Arc::clone(stop), Arc::clone(disk), Arc::clone(config));
                workers.push(std::thread::spawn(move || {
                    let mut s = Session::new(stream, addr, &config, &disk, &stop);
                    let _ = s.run();
                }));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    for w in workers {
        let _ = w.join();
    }
}

struct WriteTask {
    lun: Lun,
    offset: u64,
    buf: Vec<u8>,
    got: u64,
    /// Unsolicited data may still come (command without F).
    unsolicited_open: bool,
    unsolicited_sn: u32,
    /// Outstanding R2T: TTT, offset, length, received, next DataSN.
    r2t: Option<(u32, u32, u32, u32, u32)>,
    next_r2t_offset: u32,
    r2t_sn: u32,
}

struct Session<'a> {
    stream: TcpStream,
    addr: SocketAddr,
    config: &'a TargetConfig,
    disk: &'a Mutex<Vec<u8>>,
    stop: &'a AtomicBool,
    digests: Digests,
    pending_digests: Digests,
    stat_sn: u32,
    exp_cmd_sn: u32,
    mrdsl: u32,
    max_burst: u32,
    first_burst: u32,
    initial_r2t: bool,
    immediate_data: bool,
    discovery: bool,
    logged_in: bool,
    ua: bool,
    proposed: Vec<&'static str>,
    proposals_sent: bool,
    chap_step: u8,
    chap_challenge: (u8, Vec<u8>),
    declared: bool,
    writes: std::collections::HashMap<u32, WriteTask>,
    next_ttt: u32,
}

fn bad() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "protocol violation")
}

impl<'a> Session<'a> {
    fn new(
        stream: TcpStream,
        addr: SocketAddr,
        config: &'a TargetConfig,
        disk: &'a Mutex<Vec<u8>>,
        stop: &'a AtomicBool,
    ) -> Self {
        Self {
            stream,
            addr,
            config,
            disk,
            stop,
            digests: Digests::NONE,
            pending_digests: Digests::NONE,
            stat_sn: 0x100,
            exp_cmd_sn: 0,
            mrdsl: 8192,
            max_burst: 262_144,
            first_burst: 65536,
            initial_r2t: true,
            immediate_data: true,
            discovery: false,
            logged_in: false,
            ua: config.unit_attention,
            proposed: Vec::new(),
            proposals_sent: false,
            chap_step: 0,
            chap_challenge: (0, Vec::new()),
            declared: false,
            writes: std::collections::HashMap::new(),
            next_ttt: 0x10,
        }
    }

    fn run(&mut self) -> io::Result<()> {
        self.stream
            .set_read_timeout(Some(Duration::from_millis(50)))?;
        self.stream.set_nodelay(true)?;
        loop {
            let Some(buf) = self.read_pdu()? else {
                return Ok(());
            };
            let pdu = Pdu::parse(&buf, self.digests).map_err(|_| bad())?;
            if !self.on_pdu(&pdu, &buf)? {
                return Ok(());
            }
        }
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        let mut at = 0;
        while at < buf.len() {
            match self.stream.read(&mut buf[at..]) {
                Ok(0) => return Ok(false),
                Ok(n) => at += n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if self.stop.load(Ordering::SeqCst) {
                        return Ok(false);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    fn read_pdu(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut buf = vec![0u8; BHS_LEN];
        if !self.read_exact(&mut buf)? {
            return Ok(None);
        }
        let frame = bhs::frame(&buf, self.digests).map_err(|_| bad())?;
        if frame.data_len > 16 << 20 {
            return Err(bad());
        }
        buf.resize(frame.total_len, 0);
        if !self.read_exact(&mut buf[BHS_LEN..])? {
            return Ok(None);
        }
        Ok(Some(buf))
    }

    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    fn next_stat_sn(&mut self) -> u32 {
        let s = self.stat_sn;
        self.stat_sn = self.stat_sn.wrapping_add(1);
        s
    }

    fn max_cmd_sn(&self) -> u32 {
        self.exp_cmd_sn.wrapping_add(31)
    }

    /// Returns false to close the connection.
    fn on_pdu(&mut self, pdu: &Pdu<'_>, raw: &[u8]) -> io::Result<bool> {
        match pdu {
            Pdu::LoginRequest(r) if !self.logged_in => self.on_login(r),
            Pdu::ScsiCommand(r) if self.logged_in && !self.discovery => {
                self.check_cmd_sn(r.immediate, r.cmd_sn)?;
                self.on_command(r, raw)?;
                Ok(true)
            }
            Pdu::DataOut(r) if self.logged_in => {
                self.on_data_out(r)?;
                Ok(true)
            }
            Pdu::NopOut(r) if self.logged_in => {
                self.check_cmd_sn(r.immediate, r.cmd_sn)?;
                if r.itt != Itt::RESERVED {
                    let rsp = NopInRepr {
                        lun: r.lun,
                        itt: r.itt,
                        ttt: Ttt::RESERVED,
                        stat_sn: self.next_stat_sn(),
                        exp_cmd_sn: self.exp_cmd_sn,
                        max_cmd_sn: self.max_cmd_sn(),
                        data: r.data,
                    };
                    let mut b = vec![0u8; rsp.buffer_len(self.digests)];
                    rsp.emit(&mut b, self.digests).map_err(|_| bad())?;
                    self.send(&b)?;
                }
                Ok(true)
            }
            Pdu::TextRequest(r) if self.logged_in => {
                self.check_cmd_sn(r.immediate, r.cmd_sn)?;
                let mut text = Vec::new();
                if TextIter::new(r.data).any(|p| p == Ok(("SendTargets", "All"))) {
                    text = format!(
                        "TargetName={}\0TargetAddress={},1\0",
                        self.config.iqn, self.addr
                    )
                    .into_bytes();
                }
                let rsp = TextResponseRepr {
                    final_: true,
                    cont: false,
                    lun: Lun::default(),
                    itt: r.itt,
                    ttt: Ttt::RESERVED,
                    stat_sn: self.next_stat_sn(),
                    exp_cmd_sn: self.exp_cmd_sn,
                    max_cmd_sn: self.max_cmd_sn(),
                    data: &text,
                };
                let mut b = vec![0u8; rsp.buffer_len(self.digests)];
                rsp.emit(&mut b, self.digests).map_err(|_| bad())?;
                self.send(&b)?;
                Ok(true)
            }
            Pdu::LogoutRequest(r) if self.logged_in => {
                self.check_cmd_sn(r.immediate, r.cmd_sn)?;
                let rsp = LogoutResponseRepr {
                    response: LogoutResponse::Success,
                    itt: r.itt,
                    stat_sn: self.next_stat_sn(),
                    exp_cmd_sn: self.exp_cmd_sn,
                    max_cmd_sn: self.max_cmd_sn(),
                    time2wait: 0,
                    time2retain: 0,
                };
                let mut b = vec![0u8; rsp.buffer_len(self.digests)];
                rsp.emit(&mut b, self.digests).map_err(|_| bad())?;
                self.send(&b)?;
                Ok(false)
            }
            _ => {
                self.reject(RejectReason::ProtocolError, raw)?;
                Ok(false)
            }
        }
    }

    fn check_cmd_sn(&mut self, immediate: bool, cmd_sn: u32) -> io::Result<()> {
        if immediate {
            return Ok(());
        }
        if cmd_sn != self.exp_cmd_sn {
            return Err(bad());
        }
        self.exp_cmd_sn = self.exp_cmd_sn.wrapping_add(1);
        Ok(())
    }

    fn reject(&mut self, reason: RejectReason, raw: &[u8]) -> io::Result<()> {
        let header = raw.get(..BHS_LEN).unwrap_or(&[0u8; BHS_LEN]);
        let rsp = RejectRepr {
            reason,
            stat_sn: self.next_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            data_sn: 0,
            rejected_header: header,
        };
        let mut b = vec![0u8; rsp.buffer_len(self.digests)];
        rsp.emit(&mut b, self.digests).map_err(|_| bad())?;
        self.send(&b)
    }

    // ----- login -----

    fn login_response(
        &mut self,
        r: &LoginRequestRepr<'_>,
        next: Option<Stage>,
        status: u16,
        keys: &[(String, String)],
    ) -> io::Result<()> {
        let mut text = Vec::new();
        for (k, v) in keys {
            text.extend_from_slice(format!("{k}={v}\0").as_bytes());
        }
        let done = next == Some(Stage::FullFeature) && status == 0;
        let rsp = LoginResponseRepr {
            stages: Stages {
                cont: false,
                current: r.stages.current,
                next,
            },
            version_max: 0,
            version_active: 0,
            isid: r.isid,
            tsih: if done { 1 } else { 0 },
            itt: r.itt,
            stat_sn: self.next_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            status_class: (status >> 8) as u8,
            status_detail: status as u8,
            data: &text,
        };
        let mut b = vec![0u8; rsp.buffer_len(Digests::NONE)];
        rsp.emit(&mut b, Digests::NONE).map_err(|_| bad())?;
        self.send(&b)?;
        if done {
            self.logged_in = true;
            self.digests = self.pending_digests;
        }
        Ok(())
    }

    fn on_login(&mut self, r: &LoginRequestRepr<'_>) -> io::Result<bool> {
        self.exp_cmd_sn = r.cmd_sn;
        let mut keys: Vec<(String, String)> = Vec::new();
        for p in TextIter::with_max_value_len(r.data, 8192) {
            let (k, v) = p.map_err(|_| bad())?;
            keys.push((k.to_string(), v.to_string()));
        }
        let get = |k: &str| keys.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str());
        match r.stages.current {
            Stage::Security => {
                if self.chap_step == 0 && get("InitiatorName").is_none() {
                    self.login_response(r, None, 0x0207, &[])?;
                    return Ok(false);
                }
                if self.chap_step == 0 {
                    self.discovery = get("SessionType") == Some("Discovery");
                    if !self.discovery && get("TargetName") != Some(self.config.iqn.as_str()) {
                        self.login_response(r, None, 0x0203, &[])?;
                        return Ok(false);
                    }
                }
                let mut out = Vec::new();
                if let Some((user, secret)) = self.config.chap.clone() {
                    match self.chap_step {
                        0 => {
                            if !get("AuthMethod").is_some_and(|m| m.split(',').any(|x| x == "CHAP"))
                            {
                                self.login_response(r, None, 0x0201, &[])?;
                                return Ok(false);
                            }
                            out.push(("AuthMethod".into(), "CHAP".into()));
                            self.chap_step = 1;
                            self.login_response(r, None, 0, &out)?;
                        }
                        1 => {
                            if !get("CHAP_A").is_some_and(|m| m.split(',').any(|x| x == "5")) {
                                self.login_response(r, None, 0x0201, &[])?;
                                return Ok(false);
                            }
                            let challenge: Vec<u8> = (0..16u8)
                                .map(|i| i.wrapping_mul(37).wrapping_add(11))
                                .collect();
                            self.chap_challenge = (7, challenge.clone());
                            out.push(("CHAP_A".into(), "5".into()));
                            out.push(("CHAP_I".into(), "7".into()));
                            out.push(("CHAP_C".into(), chap::encode_hex(&challenge)));
                            self.chap_step = 2;
                            self.login_response(r, None, 0, &out)?;
                        }
                        _ => {
                            let (id, ch) = self.chap_challenge.clone();
                            let want = chap::encode_hex(&chap::response(id, &secret, &ch));
                            let ok = get("CHAP_N") == Some(user.as_str())
                                && get("CHAP_R").and_then(|v| chap::decode_binary(v).ok())
                                    == chap::decode_binary(&want).ok();
                            if !ok {
                                self.login_response(r, None, 0x0201, &[])?;
                                return Ok(false);
                            }
                            self.login_response(r, r.stages.next, 0, &out)?;
                        }
                    }
                    return Ok(true);
                }
                if get("AuthMethod").is_some() {
                    out.push(("AuthMethod".into(), "None".into()));
                }
                self.login_response(r, r.stages.next, 0, &out)?;
                Ok(true)
            }
            Stage::Operational => self.on_operational(r, &keys),
            Stage::FullFeature => Err(bad()),
        }
    }

    fn on_operational(
        &mut self,
        r: &LoginRequestRepr<'_>,
        keys: &[(String, String)],
    ) -> io::Result<bool> {
        let c = self.config;
        let mut out: Vec<(String, String)> = Vec::new();
        for (k, v) in keys {
            if let Some(i) = self.proposed.iter().position(|p| p == k) {
                self.proposed.remove(i);
                continue;
            }
            let num = |lo: u32, hi: u32| v.parse::<u32>().ok().filter(|n| (lo..=hi).contains(n));
            let answer: Option<String> = match k.as_str() {
                "HeaderDigest" | "DataDigest" => {
                    let pick = v.split(',').find(|x| *x == "CRC32C" || *x == "None");
                    if let Some(p) = pick {
                        if k == "HeaderDigest" {
                            self.pending_digests.header = p == "CRC32C";
                        } else {
                            self.pending_digests.data = p == "CRC32C";
                        }
                    }
                    Some(pick.unwrap_or("Reject").to_string())
                }
                "MaxRecvDataSegmentLength" => {
                    self.mrdsl = num(512, 0xFF_FFFF).ok_or_else(bad)?;
                    None
                }
                "InitialR2T" => {
                    let yes = v == "Yes" || c.initial_r2t;
                    self.initial_r2t = yes;
                    if c.propose_keys && v == "Yes" {
                        None
                    } else {
                        Some(if yes { "Yes" } else { "No" }.into())
                    }
                }
                "ImmediateData" => {
                    let yes = v == "Yes" && c.immediate_data;
                    self.immediate_data = yes;
                    Some(if yes { "Yes" } else { "No" }.into())
                }
                "MaxBurstLength" => {
                    self.max_burst = num(512, 0xFF_FFFF).ok_or_else(bad)?.min(c.max_burst_len);
                    Some(self.max_burst.to_string())
                }
                "FirstBurstLength" => {
                    self.first_burst = num(512, 0xFF_FFFF).ok_or_else(bad)?.min(c.first_burst_len);
                    Some(self.first_burst.to_string())
                }
                "ErrorRecoveryLevel" => Some("0".into()),
                "MaxConnections" | "MaxOutstandingR2T" => Some("1".into()),
                "DefaultTime2Wait" => Some(num(0, 3600).ok_or_else(bad)?.max(2).to_string()),
                "DefaultTime2Retain" => Some(num(0, 3600).ok_or_else(bad)?.min(20).to_string()),
                "DataPDUInOrder" | "DataSequenceInOrder" => Some("Yes".into()),
                _ => Some("NotUnderstood".into()),
            };
            if let Some(a) = answer {
                out.push((k.clone(), a));
            }
        }
        if !self.declared {
            self.declared = true;
            out.push((
                "MaxRecvDataSegmentLength".into(),
                c.max_recv_data_segment_len.to_string(),
            ));
            out.push(("TargetPortalGroupTag".into(), "1".into()));
            if self.first_burst > self.max_burst {
                self.first_burst = self.max_burst;
            }
        }
        if c.propose_keys && !self.proposals_sent && !self.discovery {
            self.proposals_sent = true;
            for (k, v) in [
                ("MaxConnections", "1"),
                ("DefaultTime2Wait", "2"),
                ("DefaultTime2Retain", "20"),
                ("MaxOutstandingR2T", "1"),
                ("DataPDUInOrder", "Yes"),
                ("DataSequenceInOrder", "Yes"),
            ] {
                if !keys.iter().any(|(a, _)| a == k) {
                    self.proposed.push(k);
                    out.push((k.into(), v.into()));
                }
            }
            if !self.proposed.is_empty() {
                self.login_response(r, None, 0, &out)?;
                return Ok(true);
            }
        }
        if !self.proposed.is_empty() {
            // The initiator did not answer every proposal (LIO fails the login).
            self.login_response(r, None, 0x0207, &[])?;
            return Ok(false);
        }
        let next = r.stages.next.filter(|n| *n == Stage::FullFeature);
        self.login_response(r, next, 0, &out)?;
        Ok(true)
    }

    // ----- commands -----

    fn status(
        &mut self,
        itt: Itt,
        status: u8,
        sense: Option<Sense>,
        residual: Option<(bool, u32)>,
    ) -> io::Result<()> {
        let sense_bytes = sense.map(Sense::to_fixed);
        let rsp = ScsiRspRepr {
            bidi_overflow: false,
            bidi_underflow: false,
            overflow: residual.is_some_and(|(u, _)| !u),
            underflow: residual.is_some_and(|(u, _)| u),
            response: 0,
            status,
            itt,
            snack_tag: 0,
            stat_sn: self.next_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            exp_data_sn: 0,
            bidi_residual: 0,
            residual: residual.map_or(0, |(_, n)| n),
            sense: sense_bytes.as_ref().map_or(&[][..], |s| &s[..]),
            response_data: &[],
        };
        let mut b = vec![0u8; rsp.buffer_len(self.digests)];
        rsp.emit(&mut b, self.digests).map_err(|_| bad())?;
        self.send(&b)
    }

    fn check(&mut self, itt: Itt, key: u8, asc: u8) -> io::Result<()> {
        self.status(itt, 2, Some(Sense { key, asc, ascq: 0 }), None)
    }

    fn blocks(&self) -> u64 {
        self.config.size / u64::from(self.config.block_len.max(1))
    }

    fn on_command(&mut self, r: &ScsiCmdRepr<'_>, raw: &[u8]) -> io::Result<()> {
        let cdb = r.cdb;
        let bl = u64::from(self.config.block_len);
        let is_write = matches!(cdb[0], op::WRITE_10 | op::WRITE_16);
        if self.ua && !is_write && !matches!(cdb[0], op::INQUIRY | op::REPORT_LUNS) {
            self.ua = false;
            return self.status(
                r.itt,
                2,
                Some(Sense {
                    key: crate::scsi::UNIT_ATTENTION,
                    asc: 0x29,
                    ascq: 0,
                }),
                None,
            );
        }
        if r.lun != Lun::single_level(self.config.lun)
            && cdb[0] != op::REPORT_LUNS
            && cdb[0] != op::INQUIRY
        {
            return self.check(r.itt, crate::scsi::ILLEGAL_REQUEST, 0x25);
        }
        match cdb[0] {
            op::TEST_UNIT_READY | op::SYNCHRONIZE_CACHE_10 | op::SYNCHRONIZE_CACHE_16 => {
                self.status(r.itt, 0, None, None)
            }
            op::INQUIRY => {
                let mut d = vec![b' '; 36];
                d[0] = 0;
                d[1] = 0;
                d[2] = 6;
                d[3] = 2;
                d[4] = 31;
                d[7] = 0x02;
                d[8..14].copy_from_slice(b"ULPDDP");
                d[16..23].copy_from_slice(b"RAMDISK");
                d[32..36].copy_from_slice(b"0001");
                let alloc = usize::from(u16::from_be_bytes([cdb[3], cdb[4]]));
                d.truncate(alloc);
                self.data_in(r, &d, false)
            }
            op::REPORT_LUNS => {
                let mut d = vec![0, 0, 0, 8, 0, 0, 0, 0];
                d.extend_from_slice(&Lun::single_level(self.config.lun).0);
                self.data_in(r, &d, false)
            }
            op::SERVICE_ACTION_IN_16 if cdb[1] & 0x1F == 0x10 => {
                let mut d = vec![0u8; 32];
                d[0..8].copy_from_slice(&(self.blocks().saturating_sub(1)).to_be_bytes());
                d[8..12].copy_from_slice(&self.config.block_len.to_be_bytes());
                let alloc = u32::from_be_bytes([cdb[10], cdb[11], cdb[12], cdb[13]]) as usize;
                d.truncate(alloc);
                self.data_in(r, &d, false)
            }
            op::READ_CAPACITY_10 => {
                let last = u32::try_from(self.blocks().saturating_sub(1)).unwrap_or(u32::MAX);
                let mut d = last.to_be_bytes().to_vec();
                d.extend_from_slice(&self.config.block_len.to_be_bytes());
                self.data_in(r, &d, false)
            }
            op::READ_10 | op::READ_16 | op::WRITE_10 | op::WRITE_16 => {
                let (lba, n) = if matches!(cdb[0], op::READ_10 | op::WRITE_10) {
                    (
                        u64::from(u32::from_be_bytes([cdb[2], cdb[3], cdb[4], cdb[5]])),
                        u64::from(u16::from_be_bytes([cdb[7], cdb[8]])),
                    )
                } else {
                    let mut l = [0u8; 8];
                    l.copy_from_slice(&cdb[2..10]);
                    (
                        u64::from_be_bytes(l),
                        u64::from(u32::from_be_bytes([cdb[10], cdb[11], cdb[12], cdb[13]])),
                    )
                };
                if lba.saturating_add(n) > self.blocks() {
                    return self.check(r.itt, crate::scsi::ILLEGAL_REQUEST, 0x21);
                }
                let (off, len) = (lba * bl, n * bl);
                if is_write {
                    if u64::from(r.expected_len) != len || !r.write {
                        return self.check(r.itt, crate::scsi::ILLEGAL_REQUEST, 0x24);
                    }
                    return self.start_write(r, off, len);
                }
                if self.config.misbehave == Misbehave::RejectReads {
                    return self.reject(RejectReason::InvalidPduField, raw);
                }
                let data = {
                    let d = self.disk.lock().unwrap_or_else(PoisonError::into_inner);
                    d[off as usize..(off + len) as usize].to_vec()
                };
                self.data_in(r, &data, true)
            }
            _ => self.check(r.itt, crate::scsi::ILLEGAL_REQUEST, 0x20),
        }
    }

    fn emit_data_in(
        &mut self,
        repr: &DataInRepr<'_>,
        tweak: impl FnOnce(&mut Vec<u8>),
    ) -> io::Result<()> {
        let mut b = vec![0u8; repr.buffer_len(self.digests)];
        repr.emit(&mut b, self.digests).map_err(|_| bad())?;
        tweak(&mut b);
        self.send(&b)
    }

    /// Sends `data` as Data-In PDUs (segments within the initiator's MaxRecvDataSegmentLength,
    /// sequences within MaxBurstLength), the last one with the status.
    fn data_in(&mut self, r: &ScsiCmdRepr<'_>, data: &[u8], read: bool) -> io::Result<()> {
        let expected = r.expected_len as usize;
        let send_len = data.len().min(expected);
        let residual = match data.len().cmp(&expected) {
            core::cmp::Ordering::Less => Some((true, (expected - data.len()) as u32)),
            core::cmp::Ordering::Greater => Some((false, (data.len() - expected) as u32)),
            core::cmp::Ordering::Equal => None,
        };
        if send_len == 0 {
            return self.status(r.itt, 0, None, residual);
        }
        let mb = if read {
            self.config.misbehave
        } else {
            Misbehave::None
        };
        let seg = self.mrdsl as usize;
        let mut at = 0usize;
        let mut data_sn = 0u32;
        let mut burst = 0usize;
        while at < send_len {
            let mut end = (at + seg).min(send_len);
            if mb == Misbehave::OversizedSegment {
                end = send_len;
            }
            let last = end == send_len;
            burst += end - at;
            let final_ = last || burst >= self.max_burst as usize;
            if final_ {
                burst = 0;
            }
            let status = if last {
                Some(DataInStatus {
                    status: 0,
                    stat_sn: self.next_stat_sn(),
                    overflow: residual.is_some_and(|(u, _)| !u),
                    underflow: residual.is_some_and(|(u, _)| u),
                    residual: residual.map_or(0, |(_, n)| n),
                })
            } else {
                None
            };
            let mut repr = DataInRepr {
                final_,
                ack: false,
                status,
                lun: Lun::default(),
                itt: r.itt,
                ttt: Ttt::RESERVED,
                exp_cmd_sn: self.exp_cmd_sn,
                max_cmd_sn: self.max_cmd_sn(),
                data_sn,
                buffer_offset: at as u32,
                data: &data[at..end],
            };
            match mb {
                Misbehave::OffsetOutsideCommand => repr.buffer_offset = r.expected_len,
                Misbehave::LengthOutsideCommand => repr.buffer_offset = (at + 1) as u32,
                Misbehave::UnknownItt => repr.itt = Itt(r.itt.0 ^ 0x5A5A),
                Misbehave::DataSnGap if data_sn == 1 => repr.data_sn = 2,
                _ => {}
            }
            let digests = self.digests;
            let tweak = |b: &mut Vec<u8>| match mb {
                Misbehave::BadDataDigest => {
                    if let Some(x) = b.last_mut() {
                        *x ^= 0xFF;
                    }
                }
                Misbehave::BadHeaderDigest if digests.header => b[BHS_LEN] ^= 0xFF,
                Misbehave::StatusWithoutFinal => b[1] = 0x01,
                Misbehave::InitiatorOpcode => b[0] = 0x01,
                _ => {}
            };
            if mb == Misbehave::TruncatedPdu {
                let mut b = vec![0u8; repr.buffer_len(self.digests)];
                repr.emit(&mut b, self.digests).map_err(|_| bad())?;
                self.send(&b[..b.len() / 2])?;
                return Err(bad());
            }
            self.emit_data_in(&repr, tweak)?;
            if mb == Misbehave::DuplicateData && data_sn == 0 {
                data_sn += 1;
                let dup = DataInRepr {
                    status: None,
                    final_: false,
                    data_sn,
                    ..repr
                };
                self.emit_data_in(&dup, |_| {})?;
            }
            data_sn += 1;
            at = end;
        }
        Ok(())
    }

    fn start_write(&mut self, r: &ScsiCmdRepr<'_>, off: u64, len: u64) -> io::Result<()> {
        if self.config.misbehave == Misbehave::DataInForWrite {
            let repr = DataInRepr {
                final_: true,
                ack: false,
                status: None,
                lun: Lun::default(),
                itt: r.itt,
                ttt: Ttt::RESERVED,
                exp_cmd_sn: self.exp_cmd_sn,
                max_cmd_sn: self.max_cmd_sn(),
                data_sn: 0,
                buffer_offset: 0,
                data: &[0u8; 512],
            };
            return self.emit_data_in(&repr, |_| {});
        }
        let imm = r.data.len();
        if imm > 0 && (!self.immediate_data || imm > self.first_burst as usize || imm as u64 > len)
        {
            return Err(bad());
        }
        let mut task = WriteTask {
            lun: r.lun,
            offset: off,
            buf: vec![0u8; len as usize],
            got: imm as u64,
            unsolicited_open: !r.final_,
            unsolicited_sn: 0,
            r2t: None,
            next_r2t_offset: 0,
            r2t_sn: 0,
        };
        task.buf[..imm].copy_from_slice(r.data);
        if task.unsolicited_open && self.initial_r2t {
            return Err(bad());
        }
        task.next_r2t_offset = if self.initial_r2t {
            imm as u32
        } else {
            (len.min(u64::from(self.first_burst))) as u32
        }
        .max(imm as u32);
        self.writes.insert(r.itt.0, task);
        self.advance_write(r.itt.0)
    }

    fn advance_write(&mut self, itt: u32) -> io::Result<()> {
        let Some(task) = self.writes.get_mut(&itt) else {
            return Ok(());
        };
        let total = task.buf.len() as u64;
        if task.unsolicited_open || task.r2t.is_some() {
            return Ok(());
        }
        if task.got >= total && u64::from(task.next_r2t_offset) >= total {
            let task = self.writes.remove(&itt).ok_or_else(bad)?;
            {
                let mut d = self.disk.lock().unwrap_or_else(PoisonError::into_inner);
                let o = task.offset as usize;
                d[o..o + task.buf.len()].copy_from_slice(&task.buf);
            }
            return self.status(Itt(itt), 0, None, None);
        }
        let offset = task.next_r2t_offset;
        let mut desired = ((total - u64::from(offset)).min(u64::from(self.max_burst))) as u32;
        let ttt = self.next_ttt;
        self.next_ttt = self.next_ttt.wrapping_add(1);
        task.r2t = Some((ttt, offset, desired, 0, 0));
        task.next_r2t_offset = offset + desired;
        let r2t_sn = task.r2t_sn;
        task.r2t_sn += 1;
        let lun = task.lun;
        if self.config.misbehave == Misbehave::R2tBeyondWrite {
            desired += 4096;
        }
        let repr = R2tRepr {
            lun,
            itt: Itt(itt),
            ttt: Ttt(ttt),
            stat_sn: self.stat_sn,
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            r2t_sn,
            buffer_offset: offset,
            desired_len: desired,
        };
        let mut b = vec![0u8; repr.buffer_len(self.digests)];
        repr.emit(&mut b, self.digests).map_err(|_| bad())?;
        self.send(&b)
    }

    fn on_data_out(&mut self, r: &crate::wire::data_out::DataOutRepr<'_>) -> io::Result<()> {
        let (mrdsl, first_burst) = (self.config.max_recv_data_segment_len, self.first_burst);
        let task = self.writes.get_mut(&r.itt.0).ok_or_else(bad)?;
        if r.data.len() > mrdsl as usize {
            return Err(bad());
        }
        let off = r.buffer_offset as usize;
        let end = off.checked_add(r.data.len()).ok_or_else(bad)?;
        if r.ttt == Ttt::RESERVED {
            if !task.unsolicited_open
                || r.data_sn != task.unsolicited_sn
                || end > first_burst as usize
            {
                return Err(bad());
            }
            task.unsolicited_sn += 1;
            if r.final_ {
                task.unsolicited_open = false;
            }
        } else {
            let Some((ttt, o, len, got, sn)) = task.r2t.as_mut() else {
                return Err(bad());
            };
            if r.ttt.0 != *ttt
                || r.data_sn != *sn
                || off != (*o + *got) as usize
                || end > (*o + *len) as usize
                || r.lun != task.lun
            {
                return Err(bad());
            }
            *got += r.data.len() as u32;
            *sn += 1;
            let done = *got == *len;
            if r.final_ != done {
                return Err(bad());
            }
            if done {
                task.r2t = None;
            }
        }
        let dst = task.buf.get_mut(off..end).ok_or_else(bad)?;
        dst.copy_from_slice(r.data);
        task.got += r.data.len() as u64;
        self.advance_write(r.itt.0)
    }
}
