//! SCSI block commands an initiator needs (SPC/SBC): CDB builders and parsers of their data.

/// A command descriptor block of up to 16 bytes.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Cdb {
    /// The CDB, zero-padded to 16 bytes.
    pub bytes: [u8; 16],
    /// Its length (6, 10, 12 or 16).
    pub len: u8,
}

impl Cdb {
    fn new(len: u8, f: impl FnOnce(&mut [u8; 16])) -> Self {
        let mut bytes = [0u8; 16];
        f(&mut bytes);
        Self { bytes, len }
    }

    /// The opcode.
    pub fn opcode(&self) -> u8 {
        self.bytes[0]
    }
}

/// SCSI opcodes used here.
pub mod op {
    /// TEST UNIT READY.
    pub const TEST_UNIT_READY: u8 = 0x00;
    /// INQUIRY.
    pub const INQUIRY: u8 = 0x12;
    /// READ CAPACITY(10).
    pub const READ_CAPACITY_10: u8 = 0x25;
    /// READ(10).
    pub const READ_10: u8 = 0x28;
    /// WRITE(10).
    pub const WRITE_10: u8 = 0x2A;
    /// SYNCHRONIZE CACHE(10).
    pub const SYNCHRONIZE_CACHE_10: u8 = 0x35;
    /// READ(16).
    pub const READ_16: u8 = 0x88;
    /// WRITE(16).
    pub const WRITE_16: u8 = 0x8A;
    /// SYNCHRONIZE CACHE(16).
    pub const SYNCHRONIZE_CACHE_16: u8 = 0x91;
    /// SERVICE ACTION IN(16) (READ CAPACITY(16) with service action 0x10).
    pub const SERVICE_ACTION_IN_16: u8 = 0x9E;
    /// REPORT LUNS.
    pub const REPORT_LUNS: u8 = 0xA0;
}

/// TEST UNIT READY.
pub fn test_unit_ready() -> Cdb {
    Cdb::new(6, |_| {})
}

/// Standard INQUIRY with `alloc` bytes of allocation length.
pub fn inquiry(alloc: u16) -> Cdb {
    Cdb::new(6, |b| {
        b[0] = op::INQUIRY;
        b[3..5].copy_from_slice(&alloc.to_be_bytes());
    })
}

/// READ CAPACITY(16), 32 bytes of allocation length.
pub fn read_capacity_16() -> Cdb {
    Cdb::new(16, |b| {
        b[0] = op::SERVICE_ACTION_IN_16;
        b[1] = 0x10;
        b[10..14].copy_from_slice(&32u32.to_be_bytes());
    })
}

/// READ CAPACITY(10).
pub fn read_capacity_10() -> Cdb {
    Cdb::new(10, |b| b[0] = op::READ_CAPACITY_10)
}

/// READ(10) of `blocks` blocks at `lba`.
pub fn read_10(lba: u32, blocks: u16) -> Cdb {
    rw10(op::READ_10, lba, blocks)
}

/// WRITE(10) of `blocks` blocks at `lba`.
pub fn write_10(lba: u32, blocks: u16) -> Cdb {
    rw10(op::WRITE_10, lba, blocks)
}

/// READ(16) of `blocks` blocks at `lba`.
pub fn read_16(lba: u64, blocks: u32) -> Cdb {
    rw16(op::READ_16, lba, blocks)
}

/// WRITE(16) of `blocks` blocks at `lba`.
pub fn write_16(lba: u64, blocks: u32) -> Cdb {
    rw16(op::WRITE_16, lba, blocks)
}

fn rw10(opcode: u8, lba: u32, blocks: u16) -> Cdb {
    Cdb::new(10, |b| {
        b[0] = opcode;
        b[2..6].copy_from_slice(&lba.to_be_bytes());
        b[7..9].copy_from_slice(&blocks.to_be_bytes());
    })
}

fn rw16(opcode: u8, lba: u64, blocks: u32) -> Cdb {
    Cdb::new(16, |b| {
        b[0] = opcode;
        b[2..10].copy_from_slice(&lba.to_be_bytes());
        b[10..14].copy_from_slice(&blocks.to_be_bytes());
    })
}

/// SYNCHRONIZE CACHE(10) of the whole medium.
pub fn synchronize_cache_10() -> Cdb {
    Cdb::new(10, |b| b[0] = op::SYNCHRONIZE_CACHE_10)
}

/// SYNCHRONIZE CACHE(16) of the whole medium.
pub fn synchronize_cache_16() -> Cdb {
    Cdb::new(16, |b| b[0] = op::SYNCHRONIZE_CACHE_16)
}

/// REPORT LUNS with `alloc` bytes of allocation length (at least 16).
pub fn report_luns(alloc: u32) -> Cdb {
    Cdb::new(12, |b| {
        b[0] = op::REPORT_LUNS;
        b[6..10].copy_from_slice(&alloc.max(16).to_be_bytes());
    })
}

/// Decoded sense data (fixed or descriptor format).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Sense {
    /// Sense key (0x6 = UNIT ATTENTION).
    pub key: u8,
    /// Additional sense code.
    pub asc: u8,
    /// Additional sense code qualifier.
    pub ascq: u8,
}

/// Sense key UNIT ATTENTION.
pub const UNIT_ATTENTION: u8 = 0x6;
/// Sense key ILLEGAL REQUEST.
pub const ILLEGAL_REQUEST: u8 = 0x5;

impl Sense {
    /// Parses sense data (SPC-5 §4.4): fixed format (response code 70h current, 71h
    /// deferred: key in byte 2, ASC and ASCQ in bytes 12 and 13 when the additional sense
    /// length reaches them) or descriptor format (72h, 73h: key, ASC and ASCQ in bytes 1 to
    /// 3). `None` if too short for the key or of another format.
    pub fn parse(b: &[u8]) -> Option<Self> {
        match b.first()? & 0x7F {
            0x70 | 0x71 => {
                // Bytes present: 8 + the additional sense length (byte 7), and the buffer.
                let end = b.len().min(8 + usize::from(*b.get(7).unwrap_or(&0)));
                let at = |i: usize| if i < end { b[i] } else { 0 };
                Some(Self {
                    key: b.get(2)? & 0x0F,
                    asc: at(12),
                    ascq: at(13),
                })
            }
            0x72 | 0x73 => Some(Self {
                key: b.get(1)? & 0x0F,
                asc: *b.get(2)?,
                ascq: *b.get(3)?,
            }),
            _ => None,
        }
    }

    /// Fixed-format sense bytes (18 bytes) for this key/ASC/ASCQ (used by the embedded target).
    pub fn to_fixed(self) -> [u8; 18] {
        let mut s = [0u8; 18];
        s[0] = 0x70;
        s[2] = self.key;
        s[7] = 10;
        s[12] = self.asc;
        s[13] = self.ascq;
        s
    }
}

impl Sense {
    /// The sense key's name (SPC-5 table 52; 0xC, once EQUAL, is obsolete).
    pub const fn key_name(&self) -> &'static str {
        match self.key {
            0x0 => "NO SENSE",
            0x1 => "RECOVERED ERROR",
            0x2 => "NOT READY",
            0x3 => "MEDIUM ERROR",
            0x4 => "HARDWARE ERROR",
            0x5 => "ILLEGAL REQUEST",
            0x6 => "UNIT ATTENTION",
            0x7 => "DATA PROTECT",
            0x8 => "BLANK CHECK",
            0x9 => "VENDOR SPECIFIC",
            0xA => "COPY ABORTED",
            0xB => "ABORTED COMMAND",
            0xC => "OBSOLETE SENSE KEY 0xC",
            0xD => "VOLUME OVERFLOW",
            0xE => "MISCOMPARE",
            0xF => "COMPLETED",
            _ => "INVALID SENSE KEY",
        }
    }

    /// The T10 name of the additional sense code and qualifier (SPC-5 annex F, the T10
    /// asc-num list), for the codes block devices and iSCSI targets report (the not-ready
    /// family 04h/xx, medium and CRC errors, the ILLEGAL REQUEST and UNIT ATTENTION codes,
    /// RFC 7143 §11.4.7.2's iSCSI conditions); `None` for the rest.
    pub const fn asc_name(&self) -> Option<&'static str> {
        Some(match (self.asc, self.ascq) {
            (0x00, 0x00) => "NO ADDITIONAL SENSE INFORMATION",
            (0x00, 0x06) => "I/O PROCESS TERMINATED",
            (0x00, 0x16) => "OPERATION IN PROGRESS",
            (0x00, 0x17) => "CLEANING REQUESTED",
            (0x01, 0x00) => "NO INDEX/SECTOR SIGNAL",
            (0x02, 0x00) => "NO SEEK COMPLETE",
            (0x03, 0x00) => "PERIPHERAL DEVICE WRITE FAULT",
            (0x04, 0x00) => "LOGICAL UNIT NOT READY, CAUSE NOT REPORTABLE",
            (0x04, 0x01) => "LOGICAL UNIT IS IN PROCESS OF BECOMING READY",
            (0x04, 0x02) => "LOGICAL UNIT NOT READY, INITIALIZING COMMAND REQUIRED",
            (0x04, 0x03) => "LOGICAL UNIT NOT READY, MANUAL INTERVENTION REQUIRED",
            (0x04, 0x04) => "LOGICAL UNIT NOT READY, FORMAT IN PROGRESS",
            (0x04, 0x05) => "LOGICAL UNIT NOT READY, REBUILD IN PROGRESS",
            (0x04, 0x06) => "LOGICAL UNIT NOT READY, RECALCULATION IN PROGRESS",
            (0x04, 0x07) => "LOGICAL UNIT NOT READY, OPERATION IN PROGRESS",
            (0x04, 0x08) => "LOGICAL UNIT NOT READY, LONG WRITE IN PROGRESS",
            (0x04, 0x09) => "LOGICAL UNIT NOT READY, SELF-TEST IN PROGRESS",
            (0x04, 0x0A) => "LOGICAL UNIT NOT ACCESSIBLE, ASYMMETRIC ACCESS STATE TRANSITION",
            (0x04, 0x0B) => "LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN STANDBY STATE",
            (0x04, 0x0C) => "LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN UNAVAILABLE STATE",
            (0x04, 0x0D) => "LOGICAL UNIT NOT READY, STRUCTURE CHECK REQUIRED",
            (0x04, 0x10) => "LOGICAL UNIT NOT READY, AUXILIARY MEMORY NOT ACCESSIBLE",
            (0x04, 0x11) => "LOGICAL UNIT NOT READY, NOTIFY (ENABLE SPINUP) REQUIRED",
            (0x04, 0x12) => "LOGICAL UNIT NOT READY, OFFLINE",
            (0x04, 0x13) => "LOGICAL UNIT NOT READY, SA CREATION IN PROGRESS",
            (0x04, 0x14) => "LOGICAL UNIT NOT READY, SPACE ALLOCATION IN PROGRESS",
            (0x04, 0x1B) => "LOGICAL UNIT NOT READY, SANITIZE IN PROGRESS",
            (0x05, 0x00) => "LOGICAL UNIT DOES NOT RESPOND TO SELECTION",
            (0x08, 0x00) => "LOGICAL UNIT COMMUNICATION FAILURE",
            (0x08, 0x01) => "LOGICAL UNIT COMMUNICATION TIME-OUT",
            (0x08, 0x02) => "LOGICAL UNIT COMMUNICATION PARITY ERROR",
            (0x0C, 0x00) => "WRITE ERROR",
            (0x0C, 0x02) => "WRITE ERROR - AUTO REALLOCATION FAILED",
            (0x0C, 0x03) => "WRITE ERROR - RECOMMEND REASSIGNMENT",
            (0x0C, 0x0C) => "UNEXPECTED UNSOLICITED DATA",
            (0x0C, 0x0D) => "NOT ENOUGH UNSOLICITED DATA",
            (0x10, 0x00) => "ID CRC OR ECC ERROR",
            (0x10, 0x01) => "LOGICAL BLOCK GUARD CHECK FAILED",
            (0x10, 0x02) => "LOGICAL BLOCK APPLICATION TAG CHECK FAILED",
            (0x10, 0x03) => "LOGICAL BLOCK REFERENCE TAG CHECK FAILED",
            (0x11, 0x00) => "UNRECOVERED READ ERROR",
            (0x11, 0x01) => "READ RETRIES EXHAUSTED",
            (0x11, 0x04) => "UNRECOVERED READ ERROR - AUTO REALLOCATE FAILED",
            (0x11, 0x13) => "READ ERROR - FAILED RETRANSMISSION REQUEST",
            (0x11, 0x14) => "READ ERROR - LBA MARKED BAD BY APPLICATION CLIENT",
            (0x14, 0x01) => "RECORD NOT FOUND",
            (0x15, 0x00) => "RANDOM POSITIONING ERROR",
            (0x1A, 0x00) => "PARAMETER LIST LENGTH ERROR",
            (0x1B, 0x00) => "SYNCHRONOUS DATA TRANSFER ERROR",
            (0x1D, 0x00) => "MISCOMPARE DURING VERIFY OPERATION",
            (0x20, 0x00) => "INVALID COMMAND OPERATION CODE",
            (0x20, 0x01) => "ACCESS DENIED - INITIATOR PENDING-ENROLLED",
            (0x20, 0x02) => "ACCESS DENIED - NO ACCESS RIGHTS",
            (0x21, 0x00) => "LOGICAL BLOCK ADDRESS OUT OF RANGE",
            (0x21, 0x01) => "INVALID ELEMENT ADDRESS",
            (0x24, 0x00) => "INVALID FIELD IN CDB",
            (0x25, 0x00) => "LOGICAL UNIT NOT SUPPORTED",
            (0x26, 0x00) => "INVALID FIELD IN PARAMETER LIST",
            (0x26, 0x01) => "PARAMETER NOT SUPPORTED",
            (0x26, 0x02) => "PARAMETER VALUE INVALID",
            (0x27, 0x00) => "WRITE PROTECTED",
            (0x27, 0x01) => "HARDWARE WRITE PROTECTED",
            (0x27, 0x02) => "LOGICAL UNIT SOFTWARE WRITE PROTECTED",
            (0x27, 0x07) => "SPACE ALLOCATION FAILED WRITE PROTECT",
            (0x28, 0x00) => "NOT READY TO READY CHANGE, MEDIUM MAY HAVE CHANGED",
            (0x29, 0x00) => "POWER ON, RESET, OR BUS DEVICE RESET OCCURRED",
            (0x29, 0x01) => "POWER ON OCCURRED",
            (0x29, 0x02) => "SCSI BUS RESET OCCURRED",
            (0x29, 0x03) => "BUS DEVICE RESET FUNCTION OCCURRED",
            (0x29, 0x04) => "DEVICE INTERNAL RESET",
            (0x29, 0x05) => "TRANSCEIVER MODE CHANGED TO SINGLE-ENDED",
            (0x29, 0x06) => "TRANSCEIVER MODE CHANGED TO LVD",
            (0x29, 0x07) => "I_T NEXUS LOSS OCCURRED",
            (0x2A, 0x00) => "PARAMETERS CHANGED",
            (0x2A, 0x01) => "MODE PARAMETERS CHANGED",
            (0x2A, 0x02) => "LOG PARAMETERS CHANGED",
            (0x2A, 0x03) => "RESERVATIONS PREEMPTED",
            (0x2A, 0x04) => "RESERVATIONS RELEASED",
            (0x2A, 0x05) => "REGISTRATIONS PREEMPTED",
            (0x2A, 0x06) => "ASYMMETRIC ACCESS STATE CHANGED",
            (0x2A, 0x07) => "IMPLICIT ASYMMETRIC ACCESS STATE TRANSITION FAILED",
            (0x2A, 0x08) => "PRIORITY CHANGED",
            (0x2A, 0x09) => "CAPACITY DATA HAS CHANGED",
            (0x2C, 0x00) => "COMMAND SEQUENCE ERROR",
            (0x2F, 0x00) => "COMMANDS CLEARED BY ANOTHER INITIATOR",
            (0x2F, 0x01) => "COMMANDS CLEARED BY POWER LOSS NOTIFICATION",
            (0x2F, 0x02) => "COMMANDS CLEARED BY DEVICE SERVER",
            (0x30, 0x00) => "INCOMPATIBLE MEDIUM INSTALLED",
            (0x31, 0x00) => "MEDIUM FORMAT CORRUPTED",
            (0x31, 0x01) => "FORMAT COMMAND FAILED",
            (0x32, 0x00) => "NO DEFECT SPARE LOCATION AVAILABLE",
            (0x37, 0x00) => "ROUNDED PARAMETER",
            (0x38, 0x07) => "THIN PROVISIONING SOFT THRESHOLD REACHED",
            (0x39, 0x00) => "SAVING PARAMETERS NOT SUPPORTED",
            (0x3A, 0x00) => "MEDIUM NOT PRESENT",
            (0x3A, 0x01) => "MEDIUM NOT PRESENT - TRAY CLOSED",
            (0x3A, 0x02) => "MEDIUM NOT PRESENT - TRAY OPEN",
            (0x3E, 0x00) => "LOGICAL UNIT HAS NOT SELF-CONFIGURED YET",
            (0x3E, 0x01) => "LOGICAL UNIT FAILURE",
            (0x3E, 0x02) => "TIMEOUT ON LOGICAL UNIT",
            (0x3F, 0x00) => "TARGET OPERATING CONDITIONS HAVE CHANGED",
            (0x3F, 0x01) => "MICROCODE HAS BEEN CHANGED",
            (0x3F, 0x03) => "INQUIRY DATA HAS CHANGED",
            (0x3F, 0x04) => "COMPONENT DEVICE ATTACHED",
            (0x3F, 0x05) => "DEVICE IDENTIFIER CHANGED",
            (0x3F, 0x0E) => "REPORTED LUNS DATA HAS CHANGED",
            (0x3F, 0x0F) => "ECHO BUFFER OVERWRITTEN",
            (0x43, 0x00) => "MESSAGE ERROR",
            (0x44, 0x00) => "INTERNAL TARGET FAILURE",
            (0x45, 0x00) => "SELECT OR RESELECT FAILURE",
            (0x47, 0x00) => "SCSI PARITY ERROR",
            (0x47, 0x01) => "DATA PHASE CRC ERROR DETECTED",
            (0x47, 0x02) => "SCSI PARITY ERROR DETECTED DURING ST DATA PHASE",
            (0x47, 0x03) => "INFORMATION UNIT iuCRC ERROR DETECTED",
            (0x47, 0x04) => "ASYNCHRONOUS INFORMATION PROTECTION ERROR DETECTED",
            (0x47, 0x05) => "PROTOCOL SERVICE CRC ERROR",
            (0x48, 0x00) => "INITIATOR DETECTED ERROR MESSAGE RECEIVED",
            (0x49, 0x00) => "INVALID MESSAGE ERROR",
            (0x4A, 0x00) => "COMMAND PHASE ERROR",
            (0x4B, 0x00) => "DATA PHASE ERROR",
            (0x4B, 0x01) => "INVALID TARGET PORT TRANSFER TAG RECEIVED",
            (0x4B, 0x02) => "TOO MUCH WRITE DATA",
            (0x4B, 0x03) => "ACK/NAK TIMEOUT",
            (0x4B, 0x04) => "NAK RECEIVED",
            (0x4B, 0x05) => "DATA OFFSET ERROR",
            (0x4B, 0x06) => "INITIATOR RESPONSE TIMEOUT",
            (0x4C, 0x00) => "LOGICAL UNIT FAILED SELF-CONFIGURATION",
            (0x4E, 0x00) => "OVERLAPPED COMMANDS ATTEMPTED",
            (0x53, 0x00) => "MEDIA LOAD OR EJECT FAILED",
            (0x55, 0x00) => "SYSTEM RESOURCE FAILURE",
            (0x55, 0x03) => "INSUFFICIENT RESOURCES",
            (0x5D, 0x00) => "FAILURE PREDICTION THRESHOLD EXCEEDED",
            (0x5E, 0x00) => "LOW POWER CONDITION ON",
            _ => return None,
        })
    }
}

impl core::fmt::Display for Sense {
    /// E.g. "ILLEGAL REQUEST: LOGICAL BLOCK ADDRESS OUT OF RANGE (ASC/ASCQ 21h/00h)"; a code
    /// without a name: "ILLEGAL REQUEST: ASC/ASCQ 80h/01h".
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.asc_name() {
            Some(name) => write!(
                f,
                "{}: {name} (ASC/ASCQ {:02X}h/{:02X}h)",
                self.key_name(),
                self.asc,
                self.ascq
            ),
            None => write!(
                f,
                "{}: ASC/ASCQ {:02X}h/{:02X}h",
                self.key_name(),
                self.asc,
                self.ascq
            ),
        }
    }
}

/// The name of SCSI status `status` (SAM-5 table 48).
pub const fn status_name(status: u8) -> &'static str {
    match status {
        0x00 => "GOOD",
        0x02 => "CHECK CONDITION",
        0x04 => "CONDITION MET",
        0x08 => "BUSY",
        0x18 => "RESERVATION CONFLICT",
        0x28 => "TASK SET FULL",
        0x30 => "ACA ACTIVE",
        0x40 => "TASK ABORTED",
        _ => "reserved status",
    }
}

/// READ CAPACITY data, checked ([`Capacity::parse_16`], [`Capacity::parse_10`]).
///
/// The fields after the block length come from READ CAPACITY(16) parameter data bytes 12 to
/// 15 (SBC-4 5.20.2); READ CAPACITY(10) has none of them, and they are all zero after
/// [`Capacity::parse_10`] (no protection, one logical block per physical block, no
/// logical block provisioning), as they are when a target returns fewer than 16 bytes.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct Capacity {
    /// RETURNED LOGICAL BLOCK ADDRESS: the last logical block address.
    pub last_lba: u64,
    /// LOGICAL BLOCK LENGTH IN BYTES: a power of two from [`MIN_BLOCK_LEN`] to
    /// [`MAX_BLOCK_LEN`].
    pub block_len: u32,
    /// P_TYPE (byte 12 bits 3:1): with [`prot_en`](Self::prot_en) set, the protection type
    /// less one (0 = type 1, 1 = type 2, 2 = type 3; checked); without it, ignored by SBC-4
    /// and kept as received.
    pub p_type: u8,
    /// PROT_EN (byte 12 bit 0): protection information is enabled (type 1 to 3).
    pub prot_en: bool,
    /// P_I_EXPONENT (byte 13 bits 7:4): 2^n protection information intervals per logical
    /// block.
    pub p_i_exponent: u8,
    /// LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT (byte 13 bits 3:0): 2^n logical blocks
    /// per physical block ([`Capacity::logical_blocks_per_physical_block`]).
    pub lbppb_exponent: u8,
    /// LBPME (byte 14 bit 7): logical block provisioning management is enabled (a thin
    /// provisioned LUN; UNMAP and WRITE SAME with UNMAP may be supported).
    pub lbpme: bool,
    /// LBPRZ (byte 14 bit 6): unmapped logical blocks read as zeros.
    pub lbprz: bool,
    /// LOWEST ALIGNED LOGICAL BLOCK ADDRESS (byte 14 bits 5:0 and byte 15): the first LBA at
    /// the start of a physical block; less than 2^[`lbppb_exponent`](Self::lbppb_exponent)
    /// (checked).
    pub lowest_aligned_lba: u16,
}

/// The smallest logical block length accepted (bytes).
pub const MIN_BLOCK_LEN: u32 = 512;
/// The largest logical block length accepted (bytes).
pub const MAX_BLOCK_LEN: u32 = 1 << 20;

/// READ CAPACITY data the initiator does not use: the field and its value.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum CapacityError {
    /// Fewer bytes than RETURNED LOGICAL BLOCK ADDRESS and LOGICAL BLOCK LENGTH IN BYTES
    /// take.
    TooShort {
        /// READ CAPACITY(10) or (16).
        command: &'static str,
        /// Bytes received.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// LOGICAL BLOCK LENGTH IN BYTES is not a power of two from [`MIN_BLOCK_LEN`] to
    /// [`MAX_BLOCK_LEN`].
    BlockLength {
        /// READ CAPACITY(10) or (16).
        command: &'static str,
        /// The value.
        block_len: u32,
    },
    /// The capacity in bytes, (RETURNED LOGICAL BLOCK ADDRESS + 1) x LOGICAL BLOCK LENGTH,
    /// does not fit in 64 bits.
    TooLarge {
        /// READ CAPACITY(10) or (16).
        command: &'static str,
        /// RETURNED LOGICAL BLOCK ADDRESS.
        last_lba: u64,
        /// LOGICAL BLOCK LENGTH IN BYTES.
        block_len: u32,
    },
    /// READ CAPACITY(10) returned FFFFFFFFh: the capacity needs READ CAPACITY(16) (SBC-3).
    NeedsReadCapacity16,
    /// READ CAPACITY(16) PROT_EN is set with a reserved P_TYPE (3 to 7; SBC-4 defines
    /// protection types 1 to 3, P_TYPE 0 to 2).
    ProtectionType {
        /// P_TYPE.
        p_type: u8,
    },
    /// READ CAPACITY(16) LOWEST ALIGNED LOGICAL BLOCK ADDRESS is not less than the logical
    /// blocks per physical block, 2^(LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT): no such
    /// LBA is the first at the start of a physical block.
    LowestAlignedLba {
        /// LOWEST ALIGNED LOGICAL BLOCK ADDRESS.
        lowest_aligned_lba: u16,
        /// LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT.
        lbppb_exponent: u8,
    },
}

impl core::fmt::Display for CapacityError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::TooShort { command, len, need } => write!(
                f,
                "{command} data is {len} bytes, fewer than the {need} holding RETURNED LOGICAL \
                 BLOCK ADDRESS and LOGICAL BLOCK LENGTH IN BYTES"
            ),
            Self::BlockLength { command, block_len } => write!(
                f,
                "{command} LOGICAL BLOCK LENGTH IN BYTES is {block_len}: the initiator accepts \
                 a power of two from {MIN_BLOCK_LEN} to {MAX_BLOCK_LEN}"
            ),
            Self::TooLarge {
                command,
                last_lba,
                block_len,
            } => write!(
                f,
                "{command} RETURNED LOGICAL BLOCK ADDRESS {last_lba:#x} with LOGICAL BLOCK \
                 LENGTH IN BYTES {block_len}: the capacity in bytes does not fit in 64 bits"
            ),
            Self::NeedsReadCapacity16 => f.write_str(
                "READ CAPACITY(10) RETURNED LOGICAL BLOCK ADDRESS is FFFFFFFFh: the capacity \
                 needs READ CAPACITY(16)",
            ),
            Self::ProtectionType { p_type } => write!(
                f,
                "READ CAPACITY(16) PROT_EN is set with P_TYPE {p_type}, a reserved value \
                 (protection types 1 to 3 are P_TYPE 0 to 2)"
            ),
            Self::LowestAlignedLba {
                lowest_aligned_lba,
                lbppb_exponent,
            } => write!(
                f,
                "READ CAPACITY(16) LOWEST ALIGNED LOGICAL BLOCK ADDRESS is \
                 {lowest_aligned_lba}, not less than the {} logical blocks per physical block \
                 (LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT {lbppb_exponent})",
                1u32 << lbppb_exponent
            ),
        }
    }
}

impl std::error::Error for CapacityError {}

impl Capacity {
    /// Parses and checks READ CAPACITY(16) data (at least 12 bytes; 32 by SBC-4).
    ///
    /// The block length must be a power of two from 512 bytes to 1 MiB. SBC-3 allows other
    /// lengths (520 and 528-byte formats exist), but callers size buffers in blocks (the
    /// CLI allocates by it, a read is a whole number of blocks): a length of 0 would divide
    /// by zero, one of 2 GiB would allocate gigabytes for one block. Linux's sd driver is
    /// stricter still (512 to 4096). The capacity in bytes must fit in a `u64`.
    ///
    /// Bytes 12 to 15 give protection, physical block and provisioning fields; those a
    /// short answer leaves out read as zero. With PROT_EN set, P_TYPE must name a protection
    /// type (0 to 2); LOWEST ALIGNED LOGICAL BLOCK ADDRESS must be less than the logical
    /// blocks per physical block. Bytes 16 to 31 are reserved (SBC-4) and not read.
    ///
    /// # Errors
    ///
    /// [`CapacityError`] naming the field and its value.
    pub fn parse_16(b: &[u8]) -> Result<Self, CapacityError> {
        let command = "READ CAPACITY(16)";
        let (Some(lba), Some(len)) = (b.get(0..8), b.get(8..12)) else {
            return Err(CapacityError::TooShort {
                command,
                len: b.len(),
                need: 12,
            });
        };
        let mut lba8 = [0u8; 8];
        lba8.copy_from_slice(lba);
        let mut len4 = [0u8; 4];
        len4.copy_from_slice(len);
        let c = Self::checked(command, u64::from_be_bytes(lba8), u32::from_be_bytes(len4))?;
        let byte = |i: usize| b.get(i).copied().unwrap_or(0);
        let (b12, b13, b14, b15) = (byte(12), byte(13), byte(14), byte(15));
        let c = Self {
            p_type: (b12 >> 1) & 0x07,
            prot_en: b12 & 0x01 != 0,
            p_i_exponent: b13 >> 4,
            lbppb_exponent: b13 & 0x0F,
            lbpme: b14 & 0x80 != 0,
            lbprz: b14 & 0x40 != 0,
            lowest_aligned_lba: u16::from_be_bytes([b14 & 0x3F, b15]),
            ..c
        };
        if c.prot_en && c.p_type > 2 {
            return Err(CapacityError::ProtectionType { p_type: c.p_type });
        }
        if u32::from(c.lowest_aligned_lba) >= c.logical_blocks_per_physical_block() {
            return Err(CapacityError::LowestAlignedLba {
                lowest_aligned_lba: c.lowest_aligned_lba,
                lbppb_exponent: c.lbppb_exponent,
            });
        }
        Ok(c)
    }

    /// Parses and checks READ CAPACITY(10) data (8 bytes), as
    /// [`parse_16`](Self::parse_16) does.
    ///
    /// # Errors
    ///
    /// [`CapacityError`] naming the field and its value;
    /// [`CapacityError::NeedsReadCapacity16`] for a last LBA of FFFFFFFFh.
    pub fn parse_10(b: &[u8]) -> Result<Self, CapacityError> {
        let command = "READ CAPACITY(10)";
        let (Some(lba), Some(len)) = (b.get(0..4), b.get(4..8)) else {
            return Err(CapacityError::TooShort {
                command,
                len: b.len(),
                need: 8,
            });
        };
        let mut lba4 = [0u8; 4];
        lba4.copy_from_slice(lba);
        let mut len4 = [0u8; 4];
        len4.copy_from_slice(len);
        let last_lba = u32::from_be_bytes(lba4);
        if last_lba == u32::MAX {
            return Err(CapacityError::NeedsReadCapacity16);
        }
        Self::checked(command, u64::from(last_lba), u32::from_be_bytes(len4))
    }

    fn checked(
        command: &'static str,
        last_lba: u64,
        block_len: u32,
    ) -> Result<Self, CapacityError> {
        if !block_len.is_power_of_two() || !(MIN_BLOCK_LEN..=MAX_BLOCK_LEN).contains(&block_len) {
            return Err(CapacityError::BlockLength { command, block_len });
        }
        if last_lba
            .checked_add(1)
            .and_then(|n| n.checked_mul(u64::from(block_len)))
            .is_none()
        {
            return Err(CapacityError::TooLarge {
                command,
                last_lba,
                block_len,
            });
        }
        Ok(Self {
            last_lba,
            block_len,
            p_type: 0,
            prot_en: false,
            p_i_exponent: 0,
            lbppb_exponent: 0,
            lbpme: false,
            lbprz: false,
            lowest_aligned_lba: 0,
        })
    }

    /// Logical blocks per physical block: 2^[`lbppb_exponent`](Self::lbppb_exponent)
    /// (1 to 32768).
    pub fn logical_blocks_per_physical_block(&self) -> u32 {
        1 << self.lbppb_exponent
    }

    /// True when `other` has the same last LBA and block length: the same blocks at the same
    /// addresses (protection and provisioning fields aside).
    pub fn same_geometry(&self, other: &Self) -> bool {
        (self.last_lba, self.block_len) == (other.last_lba, other.block_len)
    }

    /// Number of blocks.
    pub fn blocks(&self) -> u64 {
        self.last_lba.saturating_add(1)
    }

    /// Capacity in bytes.
    pub fn bytes(&self) -> u64 {
        self.blocks().saturating_mul(u64::from(self.block_len))
    }
}

/// Standard INQUIRY data (SPC-4 6.6.2): the identifying part and the capability bits the
/// libiscsi tool `iscsi-inq` prints.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
#[non_exhaustive]
pub struct Inquiry {
    /// Peripheral qualifier (byte 0 bits 7:5; 0 = a device of this type is connected to this
    /// LUN, 1 = not connected now, 3 = not supported on this LUN).
    pub qualifier: u8,
    /// Peripheral device type (byte 0 bits 4:0; 0 = direct access block device, see
    /// [`device_type_name`]).
    pub device_type: u8,
    /// RMB: removable medium (byte 1 bit 7).
    pub removable: bool,
    /// VERSION: the SPC standard claimed (byte 2; 5 = SPC-3, 6 = SPC-4, 7 = SPC-5).
    pub version: u8,
    /// NORMACA (byte 3 bit 5).
    pub normaca: bool,
    /// HISUP: hierarchical LUN addressing (byte 3 bit 4).
    pub hisup: bool,
    /// RESPONSE DATA FORMAT (byte 3 bits 3:0; 2 for current standards).
    pub response_data_format: u8,
    /// SCCS: embedded storage array controller (byte 5 bit 7).
    pub sccs: bool,
    /// ACC: access controls coordinator (byte 5 bit 6).
    pub acc: bool,
    /// TPGS: target port group support (byte 5 bits 5:4).
    pub tpgs: u8,
    /// 3PC: third-party copy (byte 5 bit 3).
    pub three_pc: bool,
    /// PROTECT: protection information (byte 5 bit 0).
    pub protect: bool,
    /// ENCSERV: embedded enclosure services (byte 6 bit 6).
    pub encserv: bool,
    /// MULTIP: multi-port (byte 6 bit 4).
    pub multip: bool,
    /// CMDQUE: command queuing (byte 7 bit 1).
    pub cmdque: bool,
    /// T10 vendor identification (bytes 8..16, trimmed).
    pub vendor: String,
    /// Product identification (bytes 16..32, trimmed).
    pub product: String,
    /// Product revision level (bytes 32..36, trimmed).
    pub revision: String,
}

impl Inquiry {
    /// Parses standard INQUIRY data (at least 36 bytes; `None` when shorter). The text fields
    /// lose the spaces (and NULs, which some targets pad with) around them.
    pub fn parse(b: &[u8]) -> Option<Self> {
        let text = |r: core::ops::Range<usize>| {
            b.get(r).map(|s| {
                String::from_utf8_lossy(s)
                    .trim_matches(|c: char| c == '\0' || c.is_whitespace())
                    .to_string()
            })
        };
        let bit = |at: usize, n: u8| b.get(at).is_some_and(|v| v & (1 << n) != 0);
        let (b3, b5) = (*b.get(3)?, *b.get(5)?);
        Some(Self {
            qualifier: b.first()? >> 5,
            device_type: b.first()? & 0x1F,
            removable: bit(1, 7),
            version: *b.get(2)?,
            normaca: bit(3, 5),
            hisup: bit(3, 4),
            response_data_format: b3 & 0x0F,
            sccs: bit(5, 7),
            acc: bit(5, 6),
            tpgs: (b5 >> 4) & 3,
            three_pc: bit(5, 3),
            protect: bit(5, 0),
            encserv: bit(6, 6),
            multip: bit(6, 4),
            cmdque: bit(7, 1),
            vendor: text(8..16)?,
            product: text(16..32)?,
            revision: text(32..36)?,
        })
    }
}

/// The name of a peripheral device type (SPC-4 table 49), in the words libiscsi uses
/// (`DIRECT_ACCESS`, `SEQUENTIAL_ACCESS`, ...; `UNKNOWN` for reserved values).
pub const fn device_type_name(device_type: u8) -> &'static str {
    match device_type {
        0x00 => "DIRECT_ACCESS",
        0x01 => "SEQUENTIAL_ACCESS",
        0x02 => "PRINTER",
        0x03 => "PROCESSOR",
        0x04 => "WRITE_ONCE",
        0x05 => "MMC",
        0x06 => "SCANNER",
        0x07 => "OPTICAL_MEMORY",
        0x08 => "MEDIA_CHANGER",
        0x09 => "COMMUNICATIONS",
        0x0C => "STORAGE_ARRAY_CONTROLLER",
        0x0D => "ENCLOSURE_SERVICES",
        0x0E => "SIMPLIFIED_DIRECT_ACCESS",
        0x0F => "OPTICAL_CARD_READER",
        0x10 => "BRIDGE_CONTROLLER",
        0x11 => "OSD",
        0x12 => "AUTOMATION",
        0x13 => "SECURITY_MANAGER",
        0x1E => "WELL_KNOWN_LUN",
        _ => "UNKNOWN",
    }
}

/// Parses REPORT LUNS data: the 8-byte LUNs listed (as many as the data holds).
pub fn parse_report_luns(b: &[u8]) -> Option<Vec<[u8; 8]>> {
    let len = u32::from_be_bytes(b.get(0..4)?.try_into().ok()?) as usize;
    let list = b.get(8..)?;
    let n = (len / 8).min(list.len() / 8);
    Some(
        list.chunks_exact(8)
            .take(n)
            .filter_map(|c| c.try_into().ok())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdbs() {
        let c = read_16(0x0102_0304_0506_0708, 0x10);
        assert_eq!(c.len, 16);
        assert_eq!(c.bytes[0], 0x88);
        assert_eq!(&c.bytes[2..10], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&c.bytes[10..14], &[0, 0, 0, 0x10]);
        let c = write_10(5, 8);
        assert_eq!(&c.bytes[..10], &[0x2A, 0, 0, 0, 0, 5, 0, 0, 8, 0]);
        assert_eq!(read_capacity_16().bytes[1], 0x10);
        assert_eq!(inquiry(96).bytes[..6], [0x12, 0, 0, 0, 96, 0]);
        assert_eq!(report_luns(0).bytes[6..10], [0, 0, 0, 16]);
        assert_eq!(test_unit_ready().opcode(), 0);
        assert_eq!(synchronize_cache_10().opcode(), 0x35);
        assert_eq!(synchronize_cache_16().opcode(), 0x91);
    }

    #[test]
    fn sense_formats() {
        let s = Sense {
            key: 6,
            asc: 0x29,
            ascq: 0,
        };
        assert_eq!(Sense::parse(&s.to_fixed()), Some(s));
        assert_eq!(
            Sense::parse(&[0x72, 0x05, 0x24, 0x01]),
            Some(Sense {
                key: 5,
                asc: 0x24,
                ascq: 1
            })
        );
        assert_eq!(Sense::parse(&[0x70]), None);
        assert_eq!(Sense::parse(&[]), None);
        assert_eq!(Sense::parse(&[0x12, 0, 0]), None);
    }

    #[test]
    fn read_capacity_is_checked() {
        let rc16 = |lba: u64, len: u32| {
            let mut b = lba.to_be_bytes().to_vec();
            b.extend_from_slice(&len.to_be_bytes());
            b.extend_from_slice(&[0; 20]);
            b
        };
        for len in [512, 4096, 1 << 20] {
            assert_eq!(Capacity::parse_16(&rc16(7, len)).unwrap().block_len, len);
        }
        for len in [0, 256, 520, 4097, 2 << 20, 0x8000_0000] {
            let e = Capacity::parse_16(&rc16(7, len)).unwrap_err();
            assert_eq!(
                e,
                CapacityError::BlockLength {
                    command: "READ CAPACITY(16)",
                    block_len: len
                }
            );
        }
        assert_eq!(
            Capacity::parse_16(&rc16(7, 0x8000_0000))
                .unwrap_err()
                .to_string(),
            "READ CAPACITY(16) LOGICAL BLOCK LENGTH IN BYTES is 2147483648: the initiator \
             accepts a power of two from 512 to 1048576"
        );
        // (2^55) blocks of 512 bytes = 2^64 bytes: does not fit; one fewer does.
        assert!(Capacity::parse_16(&rc16((1 << 55) - 2, 512)).is_ok());
        let e = Capacity::parse_16(&rc16((1 << 55) - 1, 512)).unwrap_err();
        assert!(matches!(e, CapacityError::TooLarge { block_len: 512, .. }));
        assert_eq!(
            Capacity::parse_16(&rc16(u64::MAX, 512))
                .unwrap_err()
                .to_string(),
            "READ CAPACITY(16) RETURNED LOGICAL BLOCK ADDRESS 0xffffffffffffffff with LOGICAL \
             BLOCK LENGTH IN BYTES 512: the capacity in bytes does not fit in 64 bits"
        );
        assert_eq!(
            Capacity::parse_10(&[0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 2, 0]),
            Err(CapacityError::NeedsReadCapacity16)
        );
        assert_eq!(
            Capacity::parse_10(&[0, 0, 0, 1, 0, 0, 0, 0]),
            Err(CapacityError::BlockLength {
                command: "READ CAPACITY(10)",
                block_len: 0
            })
        );
    }

    #[test]
    fn read_capacity_16_protection_and_provisioning() {
        let rc16 = |tail: [u8; 4]| {
            let mut b = 7u64.to_be_bytes().to_vec();
            b.extend_from_slice(&512u32.to_be_bytes());
            b.extend_from_slice(&tail);
            b.extend_from_slice(&[0; 16]);
            b
        };
        // Type 2 protection, 2^1 intervals, 8 logical blocks per physical, thin with zeros,
        // lowest aligned LBA 7.
        let c = Capacity::parse_16(&rc16([0b0000_0011, 0x13, 0xC0, 0x07])).unwrap();
        assert_eq!(
            (c.last_lba, c.block_len, c.p_type, c.prot_en),
            (7, 512, 1, true)
        );
        assert_eq!((c.p_i_exponent, c.lbppb_exponent), (1, 3));
        assert_eq!(c.logical_blocks_per_physical_block(), 8);
        assert!(c.lbpme && c.lbprz);
        assert_eq!(c.lowest_aligned_lba, 7);
        // LOWEST ALIGNED LOGICAL BLOCK ADDRESS spans byte 14 bits 5:0 and byte 15.
        let c = Capacity::parse_16(&rc16([0, 0x0F, 0x81, 0x02])).unwrap();
        assert_eq!(c.lowest_aligned_lba, 0x0102);
        assert!(c.lbpme && !c.lbprz);
        // Without PROT_EN, P_TYPE is ignored and kept as received.
        let c = Capacity::parse_16(&rc16([0b0000_1110, 0, 0, 0])).unwrap();
        assert_eq!((c.p_type, c.prot_en), (7, false));
        // Checked: a reserved P_TYPE with PROT_EN; an LBA past the first physical block.
        for p_type in 3..=7u8 {
            assert_eq!(
                Capacity::parse_16(&rc16([(p_type << 1) | 1, 0, 0, 0])),
                Err(CapacityError::ProtectionType { p_type })
            );
        }
        assert_eq!(
            Capacity::parse_16(&rc16([0, 0x03, 0, 8])),
            Err(CapacityError::LowestAlignedLba {
                lowest_aligned_lba: 8,
                lbppb_exponent: 3
            })
        );
        assert_eq!(
            Capacity::parse_16(&rc16([0, 0, 0, 1]))
                .unwrap_err()
                .to_string(),
            "READ CAPACITY(16) LOWEST ALIGNED LOGICAL BLOCK ADDRESS is 1, not less than the 1 \
             logical blocks per physical block (LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT 0)"
        );
        assert_eq!(
            Capacity::parse_16(&rc16([0x07, 0, 0, 0]))
                .unwrap_err()
                .to_string(),
            "READ CAPACITY(16) PROT_EN is set with P_TYPE 3, a reserved value (protection \
             types 1 to 3 are P_TYPE 0 to 2)"
        );
        // READ CAPACITY(10) has none of the fields.
        let c = Capacity::parse_10(&[0, 0, 0, 7, 0, 0, 2, 0]).unwrap();
        assert_eq!(
            (c.prot_en, c.lbppb_exponent, c.lbpme, c.lowest_aligned_lba),
            (false, 0, false, 0)
        );
        assert!(c.same_geometry(&Capacity::parse_16(&rc16([1, 0x13, 0xC0, 0])).unwrap()));
        assert!(!c.same_geometry(&Capacity::parse_10(&[0, 0, 0, 8, 0, 0, 2, 0]).unwrap()));
        assert!(!c.same_geometry(&Capacity::parse_10(&[0, 0, 0, 7, 0, 0, 16, 0]).unwrap()));
    }

    #[test]
    fn read_capacity_short_data_never_panics() {
        let full = {
            let mut b = 7u64.to_be_bytes().to_vec();
            b.extend_from_slice(&4096u32.to_be_bytes());
            b.extend_from_slice(&[0x01, 0x13, 0xC0, 0x07]);
            b.extend_from_slice(&[0xFF; 16]);
            b
        };
        for n in 0..=full.len() {
            let r = Capacity::parse_16(&full[..n]);
            match n {
                0..=11 => assert_eq!(
                    r,
                    Err(CapacityError::TooShort {
                        command: "READ CAPACITY(16)",
                        len: n,
                        need: 12
                    })
                ),
                // The fields a short answer leaves out read as zero; the rest decode.
                12 | 13 => assert_eq!(r.map(|c| (c.prot_en, c.lbppb_exponent)), Ok((n == 13, 0))),
                // Bytes 14 and 15 missing or half there: LBA 7 needs both (0x0007 < 8).
                14 => assert_eq!(r.map(|c| c.lowest_aligned_lba), Ok(0)),
                15 => assert_eq!(r.map(|c| (c.lbpme, c.lowest_aligned_lba)), Ok((true, 0))),
                _ => assert_eq!(r.map(|c| c.lowest_aligned_lba), Ok(7)),
            }
        }
        for n in 0..8 {
            assert!(matches!(
                Capacity::parse_10(&full[..n]),
                Err(CapacityError::TooShort { need: 8, .. })
            ));
        }
    }

    #[test]
    fn sense_by_name() {
        let s = |key, asc, ascq| Sense { key, asc, ascq }.to_string();
        assert_eq!(
            s(5, 0x21, 0),
            "ILLEGAL REQUEST: LOGICAL BLOCK ADDRESS OUT OF RANGE (ASC/ASCQ 21h/00h)"
        );
        assert_eq!(
            s(2, 0x04, 0x0B),
            "NOT READY: LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN STANDBY STATE (ASC/ASCQ 04h/0Bh)"
        );
        assert_eq!(
            s(6, 0x29, 0x07),
            "UNIT ATTENTION: I_T NEXUS LOSS OCCURRED (ASC/ASCQ 29h/07h)"
        );
        assert_eq!(s(5, 0x80, 0x01), "ILLEGAL REQUEST: ASC/ASCQ 80h/01h");
        assert_eq!(
            s(0xF, 0, 0),
            "COMPLETED: NO ADDITIONAL SENSE INFORMATION (ASC/ASCQ 00h/00h)"
        );
        // Every sense key has a name.
        for key in 0..16 {
            assert!(
                !Sense {
                    key,
                    asc: 0,
                    ascq: 0
                }
                .key_name()
                .contains("INVALID")
            );
        }
        // The codes the issue lists all have names.
        for (asc, ascq) in [
            (0x04, 0x00),
            (0x04, 0x01),
            (0x04, 0x02),
            (0x04, 0x03),
            (0x0C, 0x00),
            (0x11, 0x00),
            (0x1A, 0x00),
            (0x20, 0x00),
            (0x21, 0x00),
            (0x24, 0x00),
            (0x25, 0x00),
            (0x26, 0x00),
            (0x27, 0x00),
            (0x28, 0x00),
            (0x29, 0x00),
            (0x29, 0x07),
            (0x2A, 0x01),
            (0x2A, 0x09),
            (0x31, 0x00),
            (0x3A, 0x00),
            (0x3A, 0x02),
            (0x3F, 0x0E),
            (0x44, 0x00),
            (0x47, 0x00),
            (0x47, 0x03),
            (0x49, 0x00),
            (0x4B, 0x00),
            (0x4B, 0x06),
            (0x55, 0x03),
        ] {
            assert!(
                Sense { key: 5, asc, ascq }.asc_name().is_some(),
                "{asc:02x}/{ascq:02x}"
            );
        }
        // Descriptor format (72h) and fixed format whose additional length stops before the
        // ASC.
        let mut d = [0u8; 8];
        d[..4].copy_from_slice(&[0x72, 0x03, 0x11, 0x00]);
        assert_eq!(
            Sense::parse(&d).unwrap().to_string(),
            "MEDIUM ERROR: UNRECOVERED READ ERROR (ASC/ASCQ 11h/00h)"
        );
        let mut f = Sense {
            key: 5,
            asc: 0x24,
            ascq: 0,
        }
        .to_fixed();
        f[7] = 4;
        assert_eq!(
            Sense::parse(&f).unwrap(),
            Sense {
                key: 5,
                asc: 0,
                ascq: 0
            }
        );
    }

    #[test]
    fn data_parsers() {
        let mut rc = [0u8; 32];
        rc[7] = 0xFF;
        rc[10] = 2;
        let c = Capacity::parse_16(&rc).unwrap();
        assert_eq!((c.blocks(), c.block_len, c.bytes()), (256, 512, 131072));
        assert_eq!(
            Capacity::parse_16(&rc[..11]),
            Err(CapacityError::TooShort {
                command: "READ CAPACITY(16)",
                len: 11,
                need: 12
            })
        );
        assert_eq!(
            Capacity::parse_10(&[0, 0, 0, 1, 0, 0, 2, 0])
                .unwrap()
                .blocks(),
            2
        );
        let mut inq = [b' '; 36];
        inq[0] = 0;
        inq[8..11].copy_from_slice(b"IET");
        let i = Inquiry::parse(&inq).unwrap();
        assert_eq!(i.vendor, "IET");
        assert_eq!(Inquiry::parse(&inq[..20]), None);
        let mut rl = vec![0, 0, 0, 16, 0, 0, 0, 0];
        rl.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(parse_report_luns(&rl).unwrap().len(), 2);
        assert_eq!(parse_report_luns(&rl[..3]), None);
    }

    #[test]
    fn inquiry_bits_and_names() {
        let mut d = [0u8; 36];
        d[0] = (1 << 5) | 0x05;
        d[1] = 0x80;
        d[2] = 6;
        d[3] = 0x32;
        d[5] = 0x39;
        d[6] = 0x50;
        d[7] = 0x02;
        d[8..12].copy_from_slice(b"LIO ");
        d[16..22].copy_from_slice(b"rd ram");
        d[32..36].copy_from_slice(b"4.0 ");
        let i = Inquiry::parse(&d).unwrap();
        assert_eq!(
            (i.qualifier, i.device_type, i.removable, i.version),
            (1, 5, true, 6)
        );
        assert_eq!(
            (i.normaca, i.hisup, i.response_data_format),
            (true, true, 2)
        );
        assert_eq!(
            (i.sccs, i.acc, i.tpgs, i.three_pc, i.protect),
            (false, false, 3, true, true)
        );
        assert_eq!((i.encserv, i.multip, i.cmdque), (true, true, true));
        assert_eq!(
            (i.vendor.as_str(), i.product.as_str(), i.revision.as_str()),
            ("LIO", "rd ram", "4.0")
        );
        assert_eq!(device_type_name(i.device_type), "MMC");
        assert_eq!(device_type_name(0), "DIRECT_ACCESS");
        assert_eq!(device_type_name(0x1F), "UNKNOWN");
    }
}

/// Whether a command may be issued again after its first issue's fate is unknown (the
/// connection ended before its status, or it was aborted): commands whose effect is the same
/// however often they run. READ and WRITE (6/10/12/16: a write of the same data to the same
/// blocks), VERIFY, TEST UNIT READY, INQUIRY, READ CAPACITY, REPORT LUNS, MODE SENSE, REQUEST
/// SENSE and SYNCHRONIZE CACHE; not others (e.g. COMPARE AND WRITE, WRITE SAME with UNMAP,
/// reservations, FORMAT), which fail with the cause instead. The SCSI midlayer requeues what a
/// transport disruption interrupted in the same spirit (`DID_TRANSPORT_DISRUPTED`, up to the
/// command's retries).
pub fn is_retry_safe(cdb: &Cdb) -> bool {
    matches!(
        cdb.opcode(),
        op::TEST_UNIT_READY
            | 0x03 // REQUEST SENSE
            | 0x08 // READ(6)
            | 0x0A // WRITE(6)
            | op::INQUIRY
            | 0x1A // MODE SENSE(6)
            | op::READ_CAPACITY_10
            | op::READ_10
            | op::WRITE_10
            | 0x2F // VERIFY(10)
            | op::SYNCHRONIZE_CACHE_10
            | 0x5A // MODE SENSE(10)
            | op::READ_16
            | op::WRITE_16
            | 0x8F // VERIFY(16)
            | op::SYNCHRONIZE_CACHE_16
            | op::SERVICE_ACTION_IN_16 // READ CAPACITY(16) and other reads of state
            | op::REPORT_LUNS
            | 0xA8 // READ(12)
            | 0xAA // WRITE(12)
            | 0xAF // VERIFY(12)
    )
}

#[cfg(test)]
mod retry_tests {
    use super::*;

    #[test]
    fn reads_writes_and_state_queries_are_retry_safe_others_not() {
        for cdb in [
            read_10(0, 1),
            write_10(0, 1),
            read_16(0, 1),
            write_16(0, 1),
            test_unit_ready(),
            inquiry(96),
            read_capacity_16(),
            report_luns(4096),
            synchronize_cache_10(),
        ] {
            assert!(is_retry_safe(&cdb), "{cdb:?}");
        }
        // COMPARE AND WRITE, PERSISTENT RESERVE OUT, FORMAT UNIT.
        for opcode in [0x89, 0x5F, 0x04] {
            let mut cdb = test_unit_ready();
            cdb.bytes[0] = opcode;
            assert!(!is_retry_safe(&cdb), "{opcode:#x}");
        }
    }
}
