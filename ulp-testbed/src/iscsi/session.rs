//! One connection's session: its state, reading and sending PDUs, sequence numbers, and
//! dispatching each PDU (NOP, Text, Logout and Reject answered here).

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ulp_iscsi::wire::bhs::{self, BHS_LEN};
use ulp_iscsi::wire::logout::{LogoutResponse, LogoutResponseRepr};
use ulp_iscsi::wire::nop::NopInRepr;
use ulp_iscsi::wire::reject::{RejectReason, RejectRepr};
use ulp_iscsi::wire::task_mgmt::TmfRequestRepr;
use ulp_iscsi::wire::text::{TextIter, TextResponseRepr};
use ulp_iscsi::wire::{Digests, Itt, Lun, Pdu, Ttt};

use super::TargetConfig;
use super::write::WriteTask;

pub(super) struct Session<'a> {
    stream: TcpStream,
    addr: SocketAddr,
    pub(super) config: &'a TargetConfig,
    pub(super) disk: &'a Mutex<Vec<u8>>,
    stop: &'a AtomicBool,
    pub(super) digests: Digests,
    pub(super) pending_digests: Digests,
    pub(super) stat_sn: u32,
    pub(super) exp_cmd_sn: u32,
    pub(super) mrdsl: u32,
    pub(super) max_burst: u32,
    pub(super) first_burst: u32,
    pub(super) initial_r2t: bool,
    pub(super) immediate_data: bool,
    pub(super) discovery: bool,
    pub(super) logged_in: bool,
    pub(super) ua: bool,
    pub(super) proposed: Vec<&'static str>,
    pub(super) proposals_sent: bool,
    pub(super) chap_step: u8,
    pub(super) chap_challenge: (u8, Vec<u8>),
    pub(super) declared: bool,
    /// Every key the initiator sent in this login (each at most once, RFC 7143 §6.3).
    pub(super) keys_seen: Vec<String>,
    pub(super) writes: HashMap<u32, WriteTask>,
    pub(super) next_ttt: u32,
    /// READ commands held without an answer ([`TargetConfig::stall_reads`]): ITT to (CmdSN,
    /// LUN).
    pub(super) held: HashMap<u32, (u32, Lun)>,
    /// READ commands held so far.
    pub(super) stalled: usize,
    /// ITTs of writes ended by task management: their late Data-Out is discarded.
    pub(super) aborted: HashSet<u32>,
    /// Where task management requests are recorded for tests.
    pub(super) tmf_log: Option<Arc<Mutex<Vec<TmfRequestRepr>>>>,
}

pub(super) fn bad() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "protocol violation")
}

impl<'a> Session<'a> {
    pub(super) fn new(
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
            keys_seen: Vec::new(),
            writes: HashMap::new(),
            next_ttt: 0x10,
            held: HashMap::new(),
            stalled: 0,
            aborted: HashSet::new(),
            tmf_log: None,
        }
    }

    pub(super) fn run(&mut self) -> io::Result<()> {
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

    pub(super) fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    pub(super) fn next_stat_sn(&mut self) -> u32 {
        let s = self.stat_sn;
        self.stat_sn = self.stat_sn.wrapping_add(1);
        s
    }

    pub(super) fn max_cmd_sn(&self) -> u32 {
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
            Pdu::TaskMgmtRequest(r) if self.logged_in && !self.discovery => {
                self.on_tmf(r)?;
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

    pub(super) fn reject(&mut self, reason: RejectReason, raw: &[u8]) -> io::Result<()> {
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
}
