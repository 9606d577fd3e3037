//! NVMe commands a host sends over fabrics: submission queue entries for Fabrics Connect,
//! Property Get/Set, Identify, Get Log Page, Set Features (Asynchronous Event Configuration),
//! Asynchronous Event Request, Keep Alive, Read, Write and Flush, the status codes it reads,
//! and the decoding of an asynchronous event ([`AsyncEvent`]).
//!
//! Builders return a 64-byte SQE without CID and data pointer: the [`Connection`] fills those
//! in when it sends the command.
//!
//! [`Connection`]: crate::Connection

use crate::wire::Sqe;
use crate::wire::capsule_cmd::{SQE_FLAGS_SGL, SQE_LEN};

/// Admin opcode: Get Log Page.
pub const OPC_GET_LOG_PAGE: u8 = 0x02;
/// Admin opcode: Identify.
pub const OPC_IDENTIFY: u8 = 0x06;
/// Admin opcode: Abort.
pub const OPC_ABORT: u8 = 0x08;
/// Admin opcode: Set Features.
pub const OPC_SET_FEATURES: u8 = 0x09;
/// Admin opcode: Asynchronous Event Request.
pub const OPC_ASYNC_EVENT_REQUEST: u8 = 0x0C;
/// Admin opcode: Keep Alive.
pub const OPC_KEEP_ALIVE: u8 = 0x18;
/// Opcode of every Fabrics command.
pub const OPC_FABRICS: u8 = 0x7F;
/// I/O opcode: Flush.
pub const OPC_FLUSH: u8 = 0x00;
/// I/O opcode: Write.
pub const OPC_WRITE: u8 = 0x01;
/// I/O opcode: Read.
pub const OPC_READ: u8 = 0x02;

/// Fabrics command type: Property Set.
pub const FCTYPE_PROPERTY_SET: u8 = 0x00;
/// Fabrics command type: Connect.
pub const FCTYPE_CONNECT: u8 = 0x01;
/// Fabrics command type: Property Get.
pub const FCTYPE_PROPERTY_GET: u8 = 0x04;

/// Controller register: Controller Capabilities (8 bytes).
pub const REG_CAP: u32 = 0x00;
/// Controller register: Version.
pub const REG_VS: u32 = 0x08;
/// Controller register: Controller Configuration.
pub const REG_CC: u32 = 0x14;
/// Controller register: Controller Status.
pub const REG_CSTS: u32 = 0x1C;

/// CC value that enables the controller: IOCQES 4, IOSQES 6, EN 1 (what Linux writes).
pub const CC_ENABLE: u32 = 0x0046_0001;
/// CC with a normal shutdown notification (CC.SHN = 01b) on top of [`CC_ENABLE`].
pub const CC_SHUTDOWN: u32 = CC_ENABLE | (1 << 14);
/// CSTS.SHST: the shutdown status field (bits 3:2).
pub const CSTS_SHST_MASK: u64 = 0b11 << 2;
/// CSTS.SHST = 10b: shutdown processing complete.
pub const CSTS_SHST_COMPLETE: u64 = 0b10 << 2;

/// Identify CNS: namespace.
pub const CNS_NAMESPACE: u8 = 0x00;
/// Identify CNS: controller.
pub const CNS_CONTROLLER: u8 = 0x01;
/// Identify CNS: active namespace list.
pub const CNS_ACTIVE_NS_LIST: u8 = 0x02;

/// Identify Controller CNTRLTYPE: I/O controller.
pub const CNTRLTYPE_IO: u8 = 1;
/// Identify Controller CNTRLTYPE: discovery controller.
pub const CNTRLTYPE_DISCOVERY: u8 = 2;
/// Identify Controller CNTRLTYPE: administrative controller.
pub const CNTRLTYPE_ADMIN: u8 = 3;

/// Log page identifier: Changed Namespace List (what a Namespace Attribute Changed notice
/// points to; reading it without RAE re-arms the notice).
pub const LID_CHANGED_NS_LIST: u8 = 0x04;
/// Log page identifier: Discovery (NVMe over Fabrics; read from a discovery controller,
/// parsed by [`DiscoveryLog`](crate::discovery::DiscoveryLog)).
pub const LID_DISCOVERY: u8 = 0x70;
/// The well-known NQN of the discovery subsystem: an admin Connect that names it sets up an
/// association with a discovery controller.
pub const DISCOVERY_NQN: &str = "nqn.2014-08.org.nvmexpress.discovery";

/// Feature identifier: Asynchronous Event Configuration.
pub const FID_ASYNC_EVENT_CONFIG: u8 = 0x0B;
/// Asynchronous Event Configuration bit: SMART / Health critical warnings (bits 7:0, one per
/// warning).
pub const AEC_SMART_WARNINGS: u32 = 0xFF;
/// Asynchronous Event Configuration bit: Namespace Attribute Notices.
pub const AEC_NAMESPACE_ATTRIBUTE: u32 = 1 << 8;
/// Asynchronous Event Configuration bit: Firmware Activation Notices.
pub const AEC_FIRMWARE_ACTIVATION: u32 = 1 << 9;
/// Asynchronous Event Configuration bit: Telemetry Log Notices.
pub const AEC_TELEMETRY_LOG: u32 = 1 << 10;
/// Asynchronous Event Configuration bit: Asymmetric Namespace Access Change Notices.
pub const AEC_ANA_CHANGE: u32 = 1 << 11;
/// Asynchronous Event Configuration bit: Discovery Log Page Change Notices (discovery
/// controllers).
pub const AEC_DISCOVERY_LOG_CHANGE: u32 = 1 << 31;

/// Length of the Connect command's data.
pub const CONNECT_DATA_LEN: usize = 1024;
/// Length of an Identify data structure.
pub const IDENTIFY_LEN: usize = 4096;

/// Generic status: success.
pub const SC_SUCCESS: u16 = 0x00;
/// Generic status: Invalid Command Opcode.
pub const SC_INVALID_OPCODE: u16 = 0x01;
/// Generic status: Invalid Field in Command.
pub const SC_INVALID_FIELD: u16 = 0x02;
/// Generic status: Data Transfer Error (what the host reports for a data digest error).
pub const SC_DATA_TRANSFER_ERROR: u16 = 0x04;
/// Generic status: Invalid Namespace or Format.
pub const SC_INVALID_NS: u16 = 0x0B;
/// Generic status: Data SGL Length Invalid.
pub const SC_SGL_INVALID: u16 = 0x0F;
/// Generic status: LBA Out of Range.
pub const SC_LBA_OUT_OF_RANGE: u16 = 0x80;
/// Command-specific status type (1), Connect: Invalid Parameters.
pub const SC_CONNECT_INVALID_PARAM: u16 = 0x82;
/// Command-specific status type (1), Asynchronous Event Request: Asynchronous Event Request
/// Limit Exceeded (more outstanding than Identify Controller AERL + 1).
pub const SC_AER_LIMIT_EXCEEDED: u16 = 0x05;
/// Command-specific status type (1), Get Log Page: Invalid Log Page.
pub const SC_INVALID_LOG_PAGE: u16 = 0x09;

/// A CQE status field (without the phase bit): status code type and status code.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq, Hash)]
pub struct Status {
    /// Status Code Type (0 generic, 1 command specific, 3 path related).
    pub sct: u8,
    /// Status Code.
    pub sc: u8,
    /// Do Not Retry.
    pub dnr: bool,
}

impl Status {
    /// Success.
    pub const SUCCESS: Self = Self {
        sct: 0,
        sc: 0,
        dnr: false,
    };
    /// Data Transfer Error (generic 0x04), as the Linux host reports a data digest error.
    pub const DATA_TRANSFER_ERROR: Self = Self {
        sct: 0,
        sc: SC_DATA_TRANSFER_ERROR as u8,
        dnr: false,
    };

    /// Command Aborted due to SQ Deletion (generic 0x08): what the host reports for commands
    /// outstanding when the connection ends.
    pub const ABORTED: Self = Self {
        sct: 0,
        sc: 0x08,
        dnr: false,
    };

    /// Decodes the 16-bit CQE status field (phase bit included).
    pub const fn from_cqe(status: u16) -> Self {
        Self {
            sc: ((status >> 1) & 0xFF) as u8,
            sct: ((status >> 9) & 0x7) as u8,
            dnr: status & 0x8000 != 0,
        }
    }

    /// Encodes the 16-bit CQE status field (phase bit 0).
    pub const fn to_cqe(self) -> u16 {
        ((self.sc as u16) << 1) | (((self.sct & 7) as u16) << 9) | if self.dnr { 0x8000 } else { 0 }
    }

    /// A generic status with DNR set.
    pub const fn generic(sc: u16) -> Self {
        Self {
            sct: 0,
            sc: sc as u8,
            dnr: true,
        }
    }

    /// Whether this is success.
    pub const fn is_success(self) -> bool {
        self.sct == 0 && self.sc == 0
    }
}

impl Status {
    /// The status's name in the NVMe Base and Fabrics specifications, when it is a generic,
    /// media or path status a host meets on fabrics. Command-specific statuses (SCT 1h) mean
    /// different things for different commands: see [`name_for`](Self::name_for).
    pub const fn name(self) -> Option<&'static str> {
        Some(match (self.sct, self.sc) {
            (0, 0x00) => "Successful Completion",
            (0, 0x01) => "Invalid Command Opcode",
            (0, 0x02) => "Invalid Field in Command",
            (0, 0x03) => "Command ID Conflict",
            (0, 0x04) => "Data Transfer Error",
            (0, 0x05) => "Commands Aborted due to Power Loss Notification",
            (0, 0x06) => "Internal Error",
            (0, 0x07) => "Command Abort Requested",
            (0, 0x08) => "Command Aborted due to SQ Deletion",
            (0, 0x0A) => "Command Aborted due to Missing Fused Command",
            (0, 0x0B) => "Invalid Namespace or Format",
            (0, 0x0C) => "Command Sequence Error",
            (0, 0x0D) => "Invalid SGL Segment Descriptor",
            (0, 0x0E) => "Invalid Number of SGL Descriptors",
            (0, 0x0F) => "Data SGL Length Invalid",
            (0, 0x10) => "Metadata SGL Length Invalid",
            (0, 0x11) => "SGL Descriptor Type Invalid",
            (0, 0x16) => "SGL Offset Invalid",
            (0, 0x1D) => "Command Interrupted",
            (0, 0x80) => "LBA Out of Range",
            (0, 0x81) => "Capacity Exceeded",
            (0, 0x82) => "Namespace Not Ready",
            (0, 0x83) => "Reservation Conflict",
            (2, 0x80) => "Write Fault",
            (2, 0x81) => "Unrecovered Read Error",
            (2, 0x82) => "End-to-end Guard Check Error",
            (2, 0x83) => "End-to-end Application Tag Check Error",
            (2, 0x84) => "End-to-end Reference Tag Check Error",
            (2, 0x85) => "Compare Failure",
            (2, 0x86) => "Access Denied",
            (3, 0x00) => "Internal Path Error",
            (3, 0x01) => "Asymmetric Access Persistent Loss",
            (3, 0x02) => "Asymmetric Access Inaccessible",
            (3, 0x03) => "Asymmetric Access Transition",
            (3, 0x60) => "Controller Pathing Error",
            (3, 0x70) => "Host Pathing Error",
            (3, 0x71) => "Command Aborted By Host",
            _ => return None,
        })
    }
}

impl Status {
    /// The status's name when `command` (a name from [`command_name`]) returned it: the
    /// command-specific statuses of Connect, Asynchronous Event Request, Get Log Page and Set
    /// Features by name, the others as [`name`](Self::name).
    pub fn name_for(self, command: &str) -> Option<&'static str> {
        match (self.sct, self.sc, command) {
            (1, 0x80, "Connect") => Some("Incompatible Format"),
            (1, 0x81, "Connect") => Some("Controller Busy"),
            (1, 0x82, "Connect") => Some("Connect Invalid Parameters"),
            (1, 0x83, "Connect") => Some("Connect Restart Discovery"),
            (1, 0x84, "Connect") => Some("Connect Invalid Host"),
            (1, 0x05, "Asynchronous Event Request") => {
                Some("Asynchronous Event Request Limit Exceeded")
            }
            (1, 0x09, "Get Log Page") => Some("Invalid Log Page"),
            (1, 0x0D, "Set Features") => Some("Feature Identifier Not Saveable"),
            (1, 0x0E, "Set Features") => Some("Feature Not Changeable"),
            (1, 0x0F, "Set Features") => Some("Feature Not Namespace Specific"),
            _ => self.name(),
        }
    }

    /// The status in words for `command`: its name when known, with its codes.
    pub fn describe(self, command: &str) -> impl core::fmt::Display {
        Described {
            status: self,
            name: self.name_for(command),
        }
    }
}

struct Described {
    status: Status,
    name: Option<&'static str>,
}

impl core::fmt::Display for Described {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let s = self.status;
        match self.name {
            Some(name) => write!(f, "{name} (")?,
            None if s.sct == 1 => f.write_str("command-specific status (")?,
            None => f.write_str("status (")?,
        }
        // The specification's notation: hexadecimal with an h suffix.
        write!(f, "SCT {:X}h SC {:02X}h", s.sct, s.sc)?;
        if s.dnr {
            f.write_str(" DNR")?;
        }
        f.write_str(")")
    }
}

impl core::fmt::Display for Status {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        Described {
            status: *self,
            name: self.name(),
        }
        .fmt(f)
    }
}

/// The name of the command `sqe` holds (on the admin queue when `admin`), for messages.
pub fn command_name(sqe: &[u8; SQE_LEN], admin: bool) -> &'static str {
    match (sqe[0], admin) {
        (OPC_FABRICS, _) => match sqe[4] {
            FCTYPE_PROPERTY_SET => "Property Set",
            FCTYPE_CONNECT => "Connect",
            FCTYPE_PROPERTY_GET => "Property Get",
            _ => "Fabrics command",
        },
        (OPC_GET_LOG_PAGE, true) => "Get Log Page",
        (OPC_IDENTIFY, true) => "Identify",
        (OPC_ABORT, true) => "Abort",
        (OPC_SET_FEATURES, true) => "Set Features",
        (OPC_ASYNC_EVENT_REQUEST, true) => "Asynchronous Event Request",
        (OPC_KEEP_ALIVE, true) => "Keep Alive",
        (_, true) => "admin command",
        (OPC_FLUSH, false) => "Flush",
        (OPC_WRITE, false) => "Write",
        (OPC_READ, false) => "Read",
        (_, false) => "I/O command",
    }
}

fn sqe(opcode: u8) -> [u8; SQE_LEN] {
    let mut b = [0u8; SQE_LEN];
    let mut s = Sqe::new_unchecked(&mut b[..]);
    s.set_opcode(opcode);
    s.set_flags(SQE_FLAGS_SGL);
    b
}

fn fabrics(fctype: u8) -> [u8; SQE_LEN] {
    let mut b = sqe(OPC_FABRICS);
    b[4] = fctype;
    b
}

/// Fabrics Connect for queue `qid` with `sqsize` entries (sent 0's-based), keep-alive timeout
/// `kato_ms` (admin queue only) and connect attributes `cattr`. Its data is [`connect_data`].
pub fn connect(qid: u16, sqsize: u16, kato_ms: u32, cattr: u8) -> [u8; SQE_LEN] {
    let mut b = fabrics(FCTYPE_CONNECT);
    b[40..42].copy_from_slice(&0u16.to_le_bytes());
    b[42..44].copy_from_slice(&qid.to_le_bytes());
    b[44..46].copy_from_slice(&sqsize.saturating_sub(1).to_le_bytes());
    b[46] = cattr;
    b[48..52].copy_from_slice(&kato_ms.to_le_bytes());
    b
}

/// The 1024 bytes of Connect data: host identifier, controller id (0xFFFF on the admin queue),
/// subsystem and host NQNs (truncated to 255 bytes).
pub fn connect_data(hostid: [u8; 16], cntlid: u16, subnqn: &str, hostnqn: &str) -> Vec<u8> {
    let mut d = vec![0u8; CONNECT_DATA_LEN];
    d[..16].copy_from_slice(&hostid);
    d[16..18].copy_from_slice(&cntlid.to_le_bytes());
    let sub = subnqn.as_bytes();
    let n = sub.len().min(255);
    d[256..256 + n].copy_from_slice(&sub[..n]);
    let host = hostnqn.as_bytes();
    let n = host.len().min(255);
    d[512..512 + n].copy_from_slice(&host[..n]);
    d
}

/// Property Get of register `offset`, 8 bytes wide when `wide`.
pub fn property_get(offset: u32, wide: bool) -> [u8; SQE_LEN] {
    let mut b = fabrics(FCTYPE_PROPERTY_GET);
    b[40] = u8::from(wide);
    b[44..48].copy_from_slice(&offset.to_le_bytes());
    b
}

/// Property Set of the 4-byte register `offset` to `value`.
pub fn property_set(offset: u32, value: u32) -> [u8; SQE_LEN] {
    let mut b = fabrics(FCTYPE_PROPERTY_SET);
    b[44..48].copy_from_slice(&offset.to_le_bytes());
    b[48..52].copy_from_slice(&value.to_le_bytes());
    b
}

/// Identify with `cns` for namespace `nsid` (4096 bytes of data to the host).
pub fn identify(cns: u8, nsid: u32) -> [u8; SQE_LEN] {
    let mut b = sqe(OPC_IDENTIFY);
    let mut s = Sqe::new_unchecked(&mut b[..]);
    s.set_nsid(nsid);
    s.set_cdw10(u32::from(cns));
    b
}

/// Keep Alive.
pub fn keep_alive() -> [u8; SQE_LEN] {
    sqe(OPC_KEEP_ALIVE)
}

/// Set Features of feature `fid` (CDW10); the caller fills CDW11 (bytes 44..48) with the value.
pub fn set_features(fid: u8) -> [u8; SQE_LEN] {
    let mut b = sqe(OPC_SET_FEATURES);
    Sqe::new_unchecked(&mut b[..]).set_cdw10(u32::from(fid));
    b
}

/// Feature identifier: Number of Queues (NSQR in CDW11 bits 15:0, NCQR in 31:16, both 0's
/// based; the completion's DW0 says how many were allocated, in the same form).
pub const FID_NUMBER_OF_QUEUES: u8 = 0x07;

/// Abort of command `cid` on submission queue `sqid`. Its completion's DW0 bit 0 is 0 when
/// the command was aborted (it then completes with Command Abort Requested), 1 when not.
pub fn abort(sqid: u16, cid: u16) -> [u8; SQE_LEN] {
    let mut b = sqe(OPC_ABORT);
    Sqe::new_unchecked(&mut b[..]).set_cdw10(u32::from(sqid) | (u32::from(cid) << 16));
    b
}

/// Get Log Page of log `lid` for namespace `nsid` (`0xFFFF_FFFF`: all namespaces; 0 where the
/// log is not namespace specific, as the discovery log), `len` bytes from byte `offset` of the
/// log. Its data is a read of `len` bytes.
///
/// Fields (NVMe Base specification, Get Log Page): CDW10 bits 7:0 LID, 14:8 LSP (0), 15 RAE
/// (0: reading the log re-arms the asynchronous event it answers), 31:16 NUMDL; CDW11 bits
/// 15:0 NUMDU (NUMD, the number of dwords, is 0's based and split in two halves), 31:16 LSI
/// (0); CDW12 LPOL and CDW13 LPOU, the byte offset. `len` should be a multiple of 4 (it is
/// rounded up to whole dwords, at least one); `offset` must be one too, or the controller
/// refuses the command with Invalid Field in Command.
pub fn get_log_page(lid: u8, nsid: u32, len: u32, offset: u64) -> [u8; SQE_LEN] {
    let numd = len.div_ceil(4).saturating_sub(1);
    let mut b = sqe(OPC_GET_LOG_PAGE);
    let mut s = Sqe::new_unchecked(&mut b[..]);
    s.set_nsid(nsid);
    s.set_cdw10(u32::from(lid) | ((numd & 0xFFFF) << 16));
    s.set_cdw11(numd >> 16);
    s.set_cdw12(offset as u32);
    s.set_cdw13((offset >> 32) as u32);
    b
}

/// Asynchronous Event Request: no data, completed by the controller only when an event
/// occurs (decode its completion's DW0 with [`AsyncEvent::from_dw0`]). A controller holds at
/// most Identify Controller AERL + 1 of them outstanding
/// ([`ControllerInfo::aerl`]); one more fails with Asynchronous Event Request Limit Exceeded.
pub fn async_event_request() -> [u8; SQE_LEN] {
    sqe(OPC_ASYNC_EVENT_REQUEST)
}

/// Set Features, Asynchronous Event Configuration (FID 0Bh, not saved): CDW11 is `config`, the
/// `AEC_*` bits of the events the controller may report (a controller refuses bits it does
/// not support, per Identify Controller OAES, with Invalid Field in Command).
pub fn set_async_event_config(config: u32) -> [u8; SQE_LEN] {
    let mut b = sqe(OPC_SET_FEATURES);
    let mut s = Sqe::new_unchecked(&mut b[..]);
    s.set_cdw10(u32::from(FID_ASYNC_EVENT_CONFIG));
    s.set_cdw11(config);
    b
}

fn rw(opcode: u8, nsid: u32, slba: u64, blocks: u32) -> [u8; SQE_LEN] {
    let mut b = sqe(opcode);
    let mut s = Sqe::new_unchecked(&mut b[..]);
    s.set_nsid(nsid);
    s.set_cdw10(slba as u32);
    s.set_cdw11((slba >> 32) as u32);
    s.set_cdw12(blocks.saturating_sub(1) & 0xFFFF);
    b
}

/// Read of `blocks` logical blocks (1..=65536) from `slba`.
pub fn read(nsid: u32, slba: u64, blocks: u32) -> [u8; SQE_LEN] {
    rw(OPC_READ, nsid, slba, blocks)
}

/// Write of `blocks` logical blocks (1..=65536) at `slba`.
pub fn write(nsid: u32, slba: u64, blocks: u32) -> [u8; SQE_LEN] {
    rw(OPC_WRITE, nsid, slba, blocks)
}

/// Flush of namespace `nsid`.
pub fn flush(nsid: u32) -> [u8; SQE_LEN] {
    let mut b = sqe(OPC_FLUSH);
    Sqe::new_unchecked(&mut b[..]).set_nsid(nsid);
    b
}

/// Asynchronous Event Type (bits 2:0 of an Asynchronous Event Request's completion DW0).
#[derive(Clone, Copy, Debug, Eq, PartialEq, Hash)]
pub enum AsyncEventType {
    /// 0h: Error status.
    Error,
    /// 1h: SMART / Health status.
    Smart,
    /// 2h: Notice.
    Notice,
    /// 3h: Immediate.
    Immediate,
    /// 4h: One-Shot.
    OneShot,
    /// 6h: I/O Command specific status (of the I/O command set, e.g. NVM).
    IoCommandSet,
    /// 7h: Vendor specific.
    Vendor,
    /// A reserved type (5h).
    Reserved(u8),
}

impl AsyncEventType {
    /// The type of code `code` (its low three bits).
    pub const fn from_code(code: u8) -> Self {
        match code & 7 {
            0 => Self::Error,
            1 => Self::Smart,
            2 => Self::Notice,
            3 => Self::Immediate,
            4 => Self::OneShot,
            6 => Self::IoCommandSet,
            7 => Self::Vendor,
            other => Self::Reserved(other),
        }
    }

    /// Its code.
    pub const fn code(self) -> u8 {
        match self {
            Self::Error => 0,
            Self::Smart => 1,
            Self::Notice => 2,
            Self::Immediate => 3,
            Self::OneShot => 4,
            Self::IoCommandSet => 6,
            Self::Vendor => 7,
            Self::Reserved(code) => code & 7,
        }
    }

    /// Its name in the NVMe Base specification.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Error => "Error",
            Self::Smart => "SMART / Health Status",
            Self::Notice => "Notice",
            Self::Immediate => "Immediate",
            Self::OneShot => "One-Shot",
            Self::IoCommandSet => "I/O Command Specific Status",
            Self::Vendor => "Vendor Specific",
            Self::Reserved(_) => "Reserved Event Type",
        }
    }
}

impl core::fmt::Display for AsyncEventType {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Reserved(code) => write!(f, "reserved event type {code}h"),
            other => f.write_str(other.name()),
        }
    }
}

/// Asynchronous Event Information of a Notice: Namespace Attribute Changed (log page 04h).
pub const AEI_NOTICE_NS_ATTRIBUTE_CHANGED: u8 = 0x00;
/// Asynchronous Event Information of a Notice: Discovery Log Page Change (log page 70h).
pub const AEI_NOTICE_DISCOVERY_LOG_CHANGE: u8 = 0xF0;

/// An asynchronous event, as the completion of an Asynchronous Event Request reports it in
/// DW0: bits 2:0 the type, 15:8 the information, 23:16 the log page to read (reading it
/// without RAE re-arms events of that kind). Shown in words: `Notice: Namespace Attribute
/// Changed (log page 04h)`.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Hash)]
pub struct AsyncEvent {
    /// Asynchronous Event Type.
    pub kind: AsyncEventType,
    /// Asynchronous Event Information (its meaning depends on the type: [`info_name`](Self::info_name)).
    pub info: u8,
    /// Log Page Identifier of the log that says more.
    pub log_page: u8,
}

impl AsyncEvent {
    /// Notice: Namespace Attribute Changed (log page 04h, the Changed Namespace List).
    pub const NAMESPACE_ATTRIBUTE_CHANGED: Self = Self {
        kind: AsyncEventType::Notice,
        info: AEI_NOTICE_NS_ATTRIBUTE_CHANGED,
        log_page: LID_CHANGED_NS_LIST,
    };
    /// Notice: Discovery Log Page Change (log page 70h).
    pub const DISCOVERY_LOG_CHANGE: Self = Self {
        kind: AsyncEventType::Notice,
        info: AEI_NOTICE_DISCOVERY_LOG_CHANGE,
        log_page: LID_DISCOVERY,
    };

    /// Decodes an Asynchronous Event Request completion's DW0 (reserved bits ignored).
    pub const fn from_dw0(dw0: u32) -> Self {
        Self {
            kind: AsyncEventType::from_code((dw0 & 7) as u8),
            info: (dw0 >> 8) as u8,
            log_page: (dw0 >> 16) as u8,
        }
    }

    /// Encodes it as a completion's DW0 (what a controller sends).
    pub const fn to_dw0(self) -> u32 {
        self.kind.code() as u32 | ((self.info as u32) << 8) | ((self.log_page as u32) << 16)
    }

    /// The information's name in the NVMe Base specification (NVM command set for
    /// I/O Command Specific Status), when it is defined for the type.
    pub const fn info_name(self) -> Option<&'static str> {
        Some(match (self.kind, self.info) {
            (AsyncEventType::Error, 0x00) => "Write to Invalid Doorbell Register",
            (AsyncEventType::Error, 0x01) => "Invalid Doorbell Write Value",
            (AsyncEventType::Error, 0x02) => "Diagnostic Failure",
            (AsyncEventType::Error, 0x03) => "Persistent Internal Error",
            (AsyncEventType::Error, 0x04) => "Transient Internal Error",
            (AsyncEventType::Error, 0x05) => "Firmware Image Load Error",
            (AsyncEventType::Smart, 0x00) => "NVM Subsystem Reliability",
            (AsyncEventType::Smart, 0x01) => "Temperature Threshold",
            (AsyncEventType::Smart, 0x02) => "Spare Below Threshold",
            (AsyncEventType::Notice, 0x00) => "Namespace Attribute Changed",
            (AsyncEventType::Notice, 0x01) => "Firmware Activation Starting",
            (AsyncEventType::Notice, 0x02) => "Telemetry Log Changed",
            (AsyncEventType::Notice, 0x03) => "Asymmetric Namespace Access Change",
            (AsyncEventType::Notice, 0x04) => "Predictable Latency Event Aggregate Log Change",
            (AsyncEventType::Notice, 0x05) => "LBA Status Information Alert",
            (AsyncEventType::Notice, 0x06) => "Endurance Group Event Aggregate Log Page Change",
            (AsyncEventType::Notice, 0xF0) => "Discovery Log Page Change",
            (AsyncEventType::IoCommandSet, 0x00) => "Reservation Log Page Available",
            (AsyncEventType::IoCommandSet, 0x01) => "Sanitize Operation Completed",
            (AsyncEventType::IoCommandSet, 0x02) => {
                "Sanitize Operation Completed With Unexpected Deallocation"
            }
            _ => return None,
        })
    }
}

impl core::fmt::Display for AsyncEvent {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}: ", self.kind)?;
        match self.info_name() {
            Some(name) => f.write_str(name)?,
            None => write!(f, "information {:02X}h", self.info)?,
        }
        write!(f, " (log page {:02X}h)", self.log_page)
    }
}

fn le32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn le16(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .map_or(0, |s| u16::from_le_bytes([s[0], s[1]]))
}

/// Identify Controller data: what a host needs, and the fields `nvme id-ctrl` prints (NVMe
/// Base Specification, Identify Controller data structure; byte offsets in each field's doc).
#[derive(Clone, Debug, Default, Eq, PartialEq)]
#[non_exhaustive]
pub struct ControllerInfo {
    /// PCI Vendor ID (VID, bytes 1:0).
    pub vid: u16,
    /// PCI Subsystem Vendor ID (SSVID, bytes 3:2).
    pub ssvid: u16,
    /// Serial number (SN, bytes 23:4), trimmed.
    pub serial: String,
    /// Model number (MN, bytes 63:24), trimmed.
    pub model: String,
    /// Firmware revision (FR, bytes 71:64), trimmed.
    pub firmware: String,
    /// Recommended Arbitration Burst (RAB, byte 72).
    pub rab: u8,
    /// IEEE OUI Identifier (IEEE, bytes 75:73), as the wire has it (least significant byte
    /// first).
    pub ieee: [u8; 3],
    /// Controller Multi-Path I/O and Namespace Sharing Capabilities (CMIC, byte 76).
    pub cmic: u8,
    /// MDTS (byte 77; 0: no limit).
    pub mdts: u8,
    /// Controller id (CNTLID, bytes 79:78).
    pub cntlid: u16,
    /// Version (VER, bytes 83:80): major in bits 31:16, minor 15:8, tertiary 7:0.
    pub ver: u32,
    /// RTD3 Resume Latency in microseconds (RTD3R, bytes 87:84).
    pub rtd3r: u32,
    /// RTD3 Entry Latency in microseconds (RTD3E, bytes 91:88).
    pub rtd3e: u32,
    /// Optional Asynchronous Events Supported (OAES, bytes 95:92; bit 8 Namespace Attribute
    /// Notices, bit 31 Discovery Log Page Change Notices, ...).
    pub oaes: u32,
    /// Controller Attributes (CTRATT, bytes 99:96).
    pub ctratt: u32,
    /// Controller type (CNTRLTYPE, byte 111: [`CNTRLTYPE_IO`], [`CNTRLTYPE_DISCOVERY`],
    /// [`CNTRLTYPE_ADMIN`]; 0 when not reported, as before NVMe 1.4).
    pub cntrltype: u8,
    /// Optional Admin Command Support (OACS, bytes 257:256).
    pub oacs: u16,
    /// Abort Command Limit (ACL, byte 258, 0's based).
    pub acl: u8,
    /// Asynchronous Event Request Limit (AERL, byte 259, 0's based: AERL + 1 may be
    /// outstanding).
    pub aerl: u8,
    /// Firmware Updates (FRMW, byte 260).
    pub frmw: u8,
    /// Log Page Attributes (LPA, byte 261; bit 2: offsets and 32-bit lengths in Get Log Page).
    pub lpa: u8,
    /// Error Log Page Entries (ELPE, byte 262, 0's based).
    pub elpe: u8,
    /// Number of Power States Support (NPSS, byte 263, 0's based).
    pub npss: u8,
    /// Keep Alive Support granularity in 100 ms units (KAS, bytes 321:320; 0: no Keep Alive).
    pub kas: u16,
    /// Submission Queue Entry Size (SQES, byte 512: maximum in bits 7:4, required 3:0, as
    /// powers of two).
    pub sqes: u8,
    /// Completion Queue Entry Size (CQES, byte 513).
    pub cqes: u8,
    /// Maximum Outstanding Commands (MAXCMD, bytes 515:514).
    pub maxcmd: u16,
    /// Number of namespaces (NN, bytes 519:516).
    pub nn: u32,
    /// Optional NVM Command Support (ONCS, bytes 521:520).
    pub oncs: u16,
    /// Fused Operation Support (FUSES, bytes 523:522).
    pub fuses: u16,
    /// Format NVM Attributes (FNA, byte 524).
    pub fna: u8,
    /// Volatile Write Cache (VWC, byte 525).
    pub vwc: u8,
    /// Atomic Write Unit Normal (AWUN, bytes 527:526, 0's based, in blocks).
    pub awun: u16,
    /// Atomic Write Unit Power Fail (AWUPF, bytes 529:528).
    pub awupf: u16,
    /// SGL Support (SGLS, bytes 539:536).
    pub sgls: u32,
    /// Maximum Number of Allowed Namespaces (MNAN, bytes 543:540).
    pub mnan: u32,
    /// Subsystem NQN (SUBNQN, bytes 1023:768).
    pub subnqn: String,
    /// I/O command capsule size in 16-byte units (IOCCSZ, bytes 1795:1792; 0 when not
    /// reported).
    pub ioccsz: u32,
    /// I/O response capsule size in 16-byte units (IORCSZ, bytes 1799:1796).
    pub iorcsz: u32,
    /// In Capsule Data Offset in 16-byte units (ICDOFF, bytes 1801:1800).
    pub icdoff: u16,
    /// Fabrics Controller Attributes (FCATT, byte 1802; bit 0: dynamic controller model).
    pub fcatt: u8,
    /// Maximum SGL Data Block Descriptors (MSDBD, byte 1803; 0: no limit).
    pub msdbd: u8,
}

impl ControllerInfo {
    /// Parses Identify Controller data (missing bytes read as zero: a short answer never
    /// panics, it leaves the fields past its end 0 and empty).
    pub fn parse(d: &[u8]) -> Self {
        let text = |r: core::ops::Range<usize>| {
            d.get(r)
                .map(|s| {
                    String::from_utf8_lossy(s)
                        .trim_end_matches(['\0', ' '])
                        .to_string()
                })
                .unwrap_or_default()
        };
        let byte = |at: usize| d.get(at).copied().unwrap_or(0);
        Self {
            vid: le16(d, 0),
            ssvid: le16(d, 2),
            serial: text(4..24),
            model: text(24..64),
            firmware: text(64..72),
            rab: byte(72),
            ieee: [byte(73), byte(74), byte(75)],
            cmic: byte(76),
            mdts: byte(77),
            cntlid: le16(d, 78),
            ver: le32(d, 80),
            rtd3r: le32(d, 84),
            rtd3e: le32(d, 88),
            oaes: le32(d, 92),
            ctratt: le32(d, 96),
            cntrltype: byte(111),
            oacs: le16(d, 256),
            acl: byte(258),
            aerl: byte(259),
            frmw: byte(260),
            lpa: byte(261),
            elpe: byte(262),
            npss: byte(263),
            kas: le16(d, 320),
            sqes: byte(512),
            cqes: byte(513),
            maxcmd: le16(d, 514),
            nn: le32(d, 516),
            oncs: le16(d, 520),
            fuses: le16(d, 522),
            fna: byte(524),
            vwc: byte(525),
            awun: le16(d, 526),
            awupf: le16(d, 528),
            sgls: le32(d, 536),
            mnan: le32(d, 540),
            subnqn: text(768..1024),
            ioccsz: le32(d, 1792),
            iorcsz: le32(d, 1796),
            icdoff: le16(d, 1800),
            fcatt: byte(1802),
            msdbd: byte(1803),
        }
    }

    /// The most data one command may transfer (MDTS, in units of the controller's minimum
    /// memory page size `2^(12 + CAP.MPSMIN)`), or `None` when MDTS is 0 (no limit).
    pub fn max_transfer(&self, cap: u64) -> Option<u64> {
        let mpsmin = (cap >> 48) & 0xF;
        (self.mdts != 0).then(|| 1u64 << (12 + mpsmin + u64::from(self.mdts)).min(63))
    }

    /// Bytes of write data that fit in an I/O command capsule.
    pub fn in_capsule_limit(&self) -> usize {
        (self.ioccsz as usize * 16).saturating_sub(SQE_LEN)
    }
}

/// What a host needs from Identify Namespace.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
#[non_exhaustive]
pub struct NamespaceInfo {
    /// Size in logical blocks.
    pub nsze: u64,
    /// Logical block size in bytes.
    pub block_size: u32,
}

impl NamespaceInfo {
    /// Parses Identify Namespace data (missing bytes read as zero).
    pub fn parse(d: &[u8]) -> Self {
        let nsze = d
            .get(..8)
            .map_or(0, |s| u64::from_le_bytes(s.try_into().unwrap_or([0; 8])));
        let flbas = d.get(26).copied().unwrap_or(0);
        let index = usize::from((flbas & 0x0F) | ((flbas >> 1) & 0x30));
        let lbads = d.get(128 + 4 * index + 2).copied().unwrap_or(9);
        let block_size = if (9..=16).contains(&lbads) {
            1u32 << lbads
        } else {
            0
        };
        Self { nsze, block_size }
    }

    /// Parses Identify Namespace data and checks it can be used: NSZE nonzero, FLBAS selecting
    /// one of the NLBAF + 1 formats, LBADS giving a block size of 512 B to 64 KiB.
    ///
    /// # Errors
    ///
    /// [`IdentifyError`], naming the field.
    pub fn check(d: &[u8]) -> Result<Self, IdentifyError> {
        if d.len() < 192 {
            return Err(IdentifyError::Truncated(d.len()));
        }
        let nsze = u64::from_le_bytes(d[..8].try_into().unwrap_or([0; 8]));
        if nsze == 0 {
            return Err(IdentifyError::EmptyNamespace);
        }
        let nlbaf = d[25];
        let flbas = d[26];
        let index = (flbas & 0x0F) | ((flbas >> 1) & 0x30);
        if index > nlbaf || usize::from(index) >= 64 {
            return Err(IdentifyError::FormatOutOfRange { index, nlbaf });
        }
        let lbads = d
            .get(128 + 4 * usize::from(index) + 2)
            .copied()
            .unwrap_or(0);
        if !(9..=16).contains(&lbads) {
            return Err(IdentifyError::BadBlockSize { index, lbads });
        }
        Ok(Self {
            nsze,
            block_size: 1 << lbads,
        })
    }
}

/// Parses an Active Namespace ID list (Identify CNS 02h): the NSIDs in order, up to the first
/// 0 entry or the end of the data (1024 entries in a full answer; a trailing partial entry is
/// ignored).
///
/// # Errors
///
/// [`IdentifyError::NamespaceListOrder`] when an entry is not above the one before it or is
/// FFFFFFFFh.
pub fn parse_active_ns_list(d: &[u8]) -> Result<Vec<u32>, IdentifyError> {
    let mut list = Vec::new();
    let mut previous = 0u32;
    for (index, c) in d.chunks_exact(4).enumerate() {
        let nsid = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        if nsid == 0 {
            break;
        }
        if nsid <= previous || nsid == u32::MAX {
            return Err(IdentifyError::NamespaceListOrder {
                index,
                nsid,
                previous,
            });
        }
        list.push(nsid);
        previous = nsid;
    }
    Ok(list)
}

/// Identify data a host cannot use.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum IdentifyError {
    /// Fewer bytes than the fields read.
    Truncated(usize),
    /// NSZE is 0.
    EmptyNamespace,
    /// FLBAS selects a format beyond NLBAF.
    FormatOutOfRange {
        /// The format FLBAS selects.
        index: u8,
        /// NLBAF (0's based: formats 0..=nlbaf exist).
        nlbaf: u8,
    },
    /// The selected format's LBADS is not a block size of 512 B to 64 KiB.
    BadBlockSize {
        /// The format FLBAS selects.
        index: u8,
        /// Its LBADS (the block size is 2^LBADS).
        lbads: u8,
    },
    /// An Active Namespace ID list entry that is not above the one before it, or is the
    /// broadcast value FFFFFFFFh (the list holds increasing NSIDs, ended by 0).
    NamespaceListOrder {
        /// The entry's position (0-based).
        index: usize,
        /// Its NSID.
        nsid: u32,
        /// The entry before it (0 for the first).
        previous: u32,
    },
}

impl core::fmt::Display for IdentifyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::Truncated(n) => write!(f, "Identify Namespace data is {n} bytes, too short"),
            Self::EmptyNamespace => f.write_str("Identify Namespace: NSZE is 0 (no blocks)"),
            Self::FormatOutOfRange { index, nlbaf } => write!(
                f,
                "Identify Namespace: FLBAS selects LBA format {index}, but NLBAF says only \
                 formats 0 to {nlbaf} exist"
            ),
            Self::BadBlockSize { index, lbads } => write!(
                f,
                "Identify Namespace: LBA format {index} has LBADS {lbads}, not a block size of \
                 512 B to 64 KiB (LBADS 9 to 16)"
            ),
            Self::NamespaceListOrder {
                index,
                nsid,
                previous,
            } => write!(
                f,
                "Active Namespace ID list: entry {index} is NSID {nsid:#x} after {previous:#x} \
                 (the list must hold increasing NSIDs from 1 to 0xfffffffe)"
            ),
        }
    }
}

impl std::error::Error for IdentifyError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identify_namespace_is_checked() {
        let mut d = vec![0u8; 4096];
        d[..8].copy_from_slice(&1000u64.to_le_bytes());
        d[25] = 1; // two formats
        d[128 + 2] = 9;
        d[132 + 2] = 12;
        d[26] = 1;
        assert_eq!(
            NamespaceInfo::check(&d),
            Ok(NamespaceInfo {
                nsze: 1000,
                block_size: 4096
            })
        );
        d[26] = 2;
        let e = NamespaceInfo::check(&d).unwrap_err();
        assert_eq!(e, IdentifyError::FormatOutOfRange { index: 2, nlbaf: 1 });
        assert!(e.to_string().contains("FLBAS selects LBA format 2"), "{e}");
        d[26] = 0;
        d[128 + 2] = 8;
        assert_eq!(
            NamespaceInfo::check(&d),
            Err(IdentifyError::BadBlockSize { index: 0, lbads: 8 })
        );
        d[128 + 2] = 9;
        d[..8].fill(0);
        assert_eq!(NamespaceInfo::check(&d), Err(IdentifyError::EmptyNamespace));
        assert_eq!(
            NamespaceInfo::check(&d[..100]),
            Err(IdentifyError::Truncated(100))
        );
    }

    #[test]
    fn mdts_is_in_units_of_the_minimum_page_size() {
        let mut info = ControllerInfo::default();
        assert_eq!(info.max_transfer(0), None, "MDTS 0: no limit");
        info.mdts = 5;
        assert_eq!(info.max_transfer(0), Some(128 * 1024));
        assert_eq!(
            info.max_transfer(1 << 48),
            Some(256 * 1024),
            "MPSMIN 1: 8 KiB pages"
        );
    }

    #[test]
    fn abort_names_queue_and_command() {
        let b = abort(1, 0x1234);
        assert_eq!(b[0], OPC_ABORT);
        assert_eq!(
            u32::from_le_bytes([b[40], b[41], b[42], b[43]]),
            0x1234_0001
        );
        assert_eq!(command_name(&b, true), "Abort");
    }

    #[test]
    fn status_round_trip() {
        let s = Status::from_cqe(0x6006 << 1 >> 1);
        assert_eq!(Status::from_cqe(s.to_cqe()), s);
        let s = Status::generic(SC_LBA_OUT_OF_RANGE);
        assert_eq!(Status::from_cqe(s.to_cqe()), s);
        assert_eq!(Status::from_cqe(0x0001), Status::SUCCESS);
        assert!(Status::from_cqe(1).is_success());
        assert_eq!(Status::DATA_TRANSFER_ERROR.to_cqe(), 0x0008);
    }

    #[test]
    fn statuses_in_words() {
        let lba = Status::generic(SC_LBA_OUT_OF_RANGE);
        assert_eq!(lba.to_string(), "LBA Out of Range (SCT 0h SC 80h DNR)");
        assert_eq!(
            lba.describe("Read").to_string(),
            "LBA Out of Range (SCT 0h SC 80h DNR)"
        );
        // Command-specific: named for the command whose codes they are, and only for it.
        let cs = Status {
            sct: 1,
            sc: 0x82,
            dnr: false,
        };
        assert_eq!(
            cs.describe("Connect").to_string(),
            "Connect Invalid Parameters (SCT 1h SC 82h)"
        );
        assert_eq!(
            cs.describe("Write").to_string(),
            "command-specific status (SCT 1h SC 82h)"
        );
        assert_eq!(cs.to_string(), "command-specific status (SCT 1h SC 82h)");
        let unknown = Status {
            sct: 0,
            sc: 0x7F,
            dnr: false,
        };
        assert_eq!(unknown.to_string(), "status (SCT 0h SC 7Fh)");
    }

    #[test]
    fn command_fields() {
        let c = connect(1, 128, 0, 0);
        assert_eq!((c[0], c[4]), (OPC_FABRICS, FCTYPE_CONNECT));
        assert_eq!(u16::from_le_bytes([c[42], c[43]]), 1);
        assert_eq!(u16::from_le_bytes([c[44], c[45]]), 127);
        let r = read(1, 0x1_0000_0002, 8);
        let s = Sqe::new_unchecked(&r[..]);
        assert_eq!(
            (s.opcode(), s.nsid(), s.cdw10(), s.cdw11(), s.cdw12()),
            (2, 1, 2, 1, 7)
        );
        let d = connect_data([7; 16], 0xFFFF, "sub", "host");
        assert_eq!(
            (&d[256..259], &d[512..516], d[16], d[17]),
            (&b"sub"[..], &b"host"[..], 0xFF, 0xFF)
        );
        let p = property_set(REG_CC, CC_ENABLE);
        assert_eq!(le32(&p, 48), CC_ENABLE);
    }

    #[test]
    fn get_log_page_fields() {
        // 4096 bytes: NUMD 1023 (0's based dwords), all in NUMDL.
        let c = get_log_page(LID_DISCOVERY, 0, 4096, 0x1_0000_0400);
        let s = Sqe::new_unchecked(&c[..]);
        assert_eq!((s.opcode(), s.nsid()), (OPC_GET_LOG_PAGE, 0));
        assert_eq!(s.cdw10(), 0x70 | (1023 << 16));
        assert_eq!((s.cdw11(), s.cdw12(), s.cdw13()), (0, 0x400, 1));
        assert_eq!((s.cdw14(), s.cdw15()), (0, 0));
        // 1 MiB: NUMD 0x3FFFF splits into NUMDL 0xFFFF and NUMDU 3.
        let c = get_log_page(LID_CHANGED_NS_LIST, 0xFFFF_FFFF, 1 << 20, 0);
        let s = Sqe::new_unchecked(&c[..]);
        assert_eq!((s.cdw10(), s.cdw11()), (0x04 | (0xFFFF << 16), 3));
        // Lengths round up to whole dwords, at least one.
        let dwords = |len| {
            let c = get_log_page(2, 0, len, 0);
            let s = Sqe::new_unchecked(&c[..]);
            ((s.cdw11() & 0xFFFF) << 16 | s.cdw10() >> 16) + 1
        };
        assert_eq!((dwords(0), dwords(1), dwords(20), dwords(21)), (1, 1, 5, 6));
        assert_eq!(dwords(u32::MAX), 1 << 30);
        assert_eq!(command_name(&c, true), "Get Log Page");
    }

    #[test]
    fn async_events() {
        let c = async_event_request();
        assert_eq!((c[0], &c[1..]), (0x0C, &sqe(0x0C)[1..]));
        assert_eq!(command_name(&c, true), "Asynchronous Event Request");
        // Notice (2), information 00h, log page 04h.
        let e = AsyncEvent::from_dw0(0x0004_0002);
        assert_eq!(e, AsyncEvent::NAMESPACE_ATTRIBUTE_CHANGED);
        assert_eq!(
            e.to_string(),
            "Notice: Namespace Attribute Changed (log page 04h)"
        );
        assert_eq!(e.to_dw0(), 0x0004_0002);
        assert_eq!(
            AsyncEvent::from_dw0(0x0070_F002).to_string(),
            "Notice: Discovery Log Page Change (log page 70h)"
        );
        assert_eq!(AsyncEvent::DISCOVERY_LOG_CHANGE.to_dw0(), 0x0070_F002);
        assert_eq!(
            AsyncEvent::from_dw0(0x0001_0300).to_string(),
            "Error: Persistent Internal Error (log page 01h)"
        );
        assert_eq!(
            AsyncEvent::from_dw0(0x0002_0101).to_string(),
            "SMART / Health Status: Temperature Threshold (log page 02h)"
        );
        assert_eq!(
            AsyncEvent::from_dw0(0x0081_0006).to_string(),
            "I/O Command Specific Status: Reservation Log Page Available (log page 81h)"
        );
        assert_eq!(
            AsyncEvent::from_dw0(0xFFC0_7707).to_string(),
            "Vendor Specific: information 77h (log page C0h)"
        );
        assert_eq!(
            AsyncEvent::from_dw0(5).to_string(),
            "reserved event type 5h: information 00h (log page 00h)"
        );
        let infos: Vec<_> = [0u8, 1, 2, 3, 4, 5, 6, 0xF0]
            .iter()
            .map(|&info| {
                AsyncEvent {
                    kind: AsyncEventType::Notice,
                    info,
                    log_page: 0,
                }
                .info_name()
                .unwrap_or("?")
            })
            .collect();
        assert_eq!(
            infos,
            [
                "Namespace Attribute Changed",
                "Firmware Activation Starting",
                "Telemetry Log Changed",
                "Asymmetric Namespace Access Change",
                "Predictable Latency Event Aggregate Log Change",
                "LBA Status Information Alert",
                "Endurance Group Event Aggregate Log Page Change",
                "Discovery Log Page Change",
            ]
        );
        for dw0 in [0u32, 1, 2, 3, 4, 5, 6, 7, 0x00FF_FF07] {
            assert_eq!(AsyncEvent::from_dw0(dw0).to_dw0(), dw0);
        }
        let limit = Status {
            sct: 1,
            sc: SC_AER_LIMIT_EXCEEDED as u8,
            dnr: true,
        };
        assert_eq!(
            limit.describe("Asynchronous Event Request").to_string(),
            "Asynchronous Event Request Limit Exceeded (SCT 1h SC 05h DNR)"
        );
        let lid = Status {
            sct: 1,
            sc: SC_INVALID_LOG_PAGE as u8,
            dnr: true,
        };
        assert_eq!(
            lid.describe("Get Log Page").to_string(),
            "Invalid Log Page (SCT 1h SC 09h DNR)"
        );
    }

    #[test]
    fn async_event_configuration() {
        let c = set_async_event_config(AEC_NAMESPACE_ATTRIBUTE | AEC_DISCOVERY_LOG_CHANGE);
        let s = Sqe::new_unchecked(&c[..]);
        assert_eq!(
            (s.opcode(), s.cdw10(), s.cdw11()),
            (0x09, 0x0B, 0x8000_0100)
        );
        assert_eq!(command_name(&c, true), "Set Features");
    }

    #[test]
    fn identify_controller_fields_at_their_offsets() {
        let mut d = vec![0u8; IDENTIFY_LEN];
        d[0..2].copy_from_slice(&0x1b36u16.to_le_bytes());
        d[2..4].copy_from_slice(&0x1af4u16.to_le_bytes());
        d[4..12].copy_from_slice(b"SN123   ");
        d[64..70].copy_from_slice(b"6.1.0\0");
        d[72] = 6;
        d[73..76].copy_from_slice(&[0x00, 0x54, 0x52]);
        d[76] = 0x0b;
        d[77] = 5;
        d[78..80].copy_from_slice(&0x21u16.to_le_bytes());
        d[80..84].copy_from_slice(&0x0002_0000u32.to_le_bytes());
        d[256..258].copy_from_slice(&0x000au16.to_le_bytes());
        d[258] = 3;
        d[262] = 127;
        d[320..322].copy_from_slice(&1u16.to_le_bytes());
        d[512] = 0x66;
        d[513] = 0x44;
        d[514..516].copy_from_slice(&128u16.to_le_bytes());
        d[520..522].copy_from_slice(&0x005du16.to_le_bytes());
        d[525] = 1;
        d[536..540].copy_from_slice(&0x0010_0005u32.to_le_bytes());
        d[540..544].copy_from_slice(&1024u32.to_le_bytes());
        d[768..775].copy_from_slice(b"nqn.x:y");
        d[1796..1800].copy_from_slice(&1u32.to_le_bytes());
        d[1802] = 1;
        let c = ControllerInfo::parse(&d);
        assert_eq!(
            (c.vid, c.ssvid, c.rab, c.ieee),
            (0x1b36, 0x1af4, 6, [0, 0x54, 0x52])
        );
        assert_eq!((c.serial.as_str(), c.firmware.as_str()), ("SN123", "6.1.0"));
        assert_eq!(
            (c.cmic, c.mdts, c.cntlid, c.ver),
            (0x0b, 5, 0x21, 0x0002_0000)
        );
        assert_eq!((c.oacs, c.acl, c.elpe, c.kas), (0x0a, 3, 127, 1));
        assert_eq!(
            (c.sqes, c.cqes, c.maxcmd, c.oncs, c.vwc),
            (0x66, 0x44, 128, 0x5d, 1)
        );
        assert_eq!(
            (c.sgls, c.mnan, c.subnqn.as_str()),
            (0x0010_0005, 1024, "nqn.x:y")
        );
        assert_eq!((c.iorcsz, c.icdoff, c.fcatt, c.msdbd), (1, 0, 1, 0));
        // A truncated answer leaves the fields past its end zero, without a panic.
        let short = ControllerInfo::parse(&d[..79]);
        assert_eq!((short.mdts, short.cntlid, short.ver), (5, 0, 0));
        assert_eq!(ControllerInfo::parse(&[]), ControllerInfo::default());
    }

    #[test]
    fn active_namespace_list_is_checked() {
        let mut d = vec![0u8; IDENTIFY_LEN];
        for (i, nsid) in [1u32, 2, 7].iter().enumerate() {
            d[4 * i..4 * i + 4].copy_from_slice(&nsid.to_le_bytes());
        }
        assert_eq!(parse_active_ns_list(&d), Ok(vec![1, 2, 7]));
        assert_eq!(parse_active_ns_list(&d[..10]), Ok(vec![1, 2]));
        assert_eq!(parse_active_ns_list(&[0; 8]), Ok(vec![]));
        d[8..12].copy_from_slice(&2u32.to_le_bytes());
        let e = parse_active_ns_list(&d).unwrap_err();
        assert_eq!(
            e,
            IdentifyError::NamespaceListOrder {
                index: 2,
                nsid: 2,
                previous: 2
            }
        );
        assert!(
            e.to_string().contains("entry 2 is NSID 0x2 after 0x2"),
            "{e}"
        );
        let broadcast = u32::MAX.to_le_bytes();
        assert!(parse_active_ns_list(&broadcast).is_err());
    }

    #[test]
    fn identify_parsing() {
        let mut d = vec![0u8; IDENTIFY_LEN];
        d[24..29].copy_from_slice(b"Linux");
        d[1792..1796].copy_from_slice(&1028u32.to_le_bytes());
        d[92..96].copy_from_slice(&0x8000_0100u32.to_le_bytes());
        d[111] = CNTRLTYPE_DISCOVERY;
        d[259] = 3;
        d[261] = 4;
        let c = ControllerInfo::parse(&d);
        assert_eq!((c.model.as_str(), c.in_capsule_limit()), ("Linux", 16384));
        assert_eq!(
            (c.oaes, c.cntrltype, c.aerl, c.lpa),
            (0x8000_0100, CNTRLTYPE_DISCOVERY, 3, 4)
        );
        let mut n = vec![0u8; IDENTIFY_LEN];
        n[..8].copy_from_slice(&100u64.to_le_bytes());
        n[130] = 12;
        assert_eq!(
            NamespaceInfo::parse(&n),
            NamespaceInfo {
                nsze: 100,
                block_size: 4096
            }
        );
        assert_eq!(NamespaceInfo::parse(&[]).nsze, 0);
    }
}
