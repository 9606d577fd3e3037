//! NVMe commands a host sends over fabrics: submission queue entries for Fabrics Connect,
//! Property Get/Set, Identify, Keep Alive, Read, Write and Flush, and the status codes it reads.
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
    /// command-specific statuses of Connect by name, the others as [`name`](Self::name).
    pub fn name_for(self, command: &str) -> Option<&'static str> {
        match (self.sct, self.sc, command) {
            (1, 0x80, "Connect") => Some("Incompatible Format"),
            (1, 0x81, "Connect") => Some("Controller Busy"),
            (1, 0x82, "Connect") => Some("Connect Invalid Parameters"),
            (1, 0x83, "Connect") => Some("Connect Restart Discovery"),
            (1, 0x84, "Connect") => Some("Connect Invalid Host"),
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

/// Abort of command `cid` on submission queue `sqid`. Its completion's DW0 bit 0 is 0 when
/// the command was aborted (it then completes with Command Abort Requested), 1 when not.
pub fn abort(sqid: u16, cid: u16) -> [u8; SQE_LEN] {
    let mut b = sqe(OPC_ABORT);
    Sqe::new_unchecked(&mut b[..]).set_cdw10(u32::from(sqid) | (u32::from(cid) << 16));
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

fn le32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// What a host needs from Identify Controller.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct ControllerInfo {
    /// Model number, trimmed.
    pub model: String,
    /// Serial number, trimmed.
    pub serial: String,
    /// Firmware revision, trimmed.
    pub firmware: String,
    /// MDTS (0: no limit).
    pub mdts: u8,
    /// Controller id.
    pub cntlid: u16,
    /// Number of namespaces.
    pub nn: u32,
    /// I/O command capsule size in 16-byte units (0 when not reported).
    pub ioccsz: u32,
    /// Subsystem NQN.
    pub subnqn: String,
}

impl ControllerInfo {
    /// Parses Identify Controller data (missing bytes read as zero).
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
        Self {
            serial: text(4..24),
            model: text(24..64),
            firmware: text(64..72),
            mdts: d.get(77).copied().unwrap_or(0),
            cntlid: d
                .get(78..80)
                .map_or(0, |s| u16::from_le_bytes([s[0], s[1]])),
            nn: le32(d, 516),
            ioccsz: le32(d, 1792),
            subnqn: text(768..1024),
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
    fn identify_parsing() {
        let mut d = vec![0u8; IDENTIFY_LEN];
        d[24..29].copy_from_slice(b"Linux");
        d[1792..1796].copy_from_slice(&1028u32.to_le_bytes());
        let c = ControllerInfo::parse(&d);
        assert_eq!((c.model.as_str(), c.in_capsule_limit()), ("Linux", 16384));
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
