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
    /// Parses sense data; `None` if too short or of an unknown format.
    pub fn parse(b: &[u8]) -> Option<Self> {
        match b.first()? & 0x7F {
            0x70 | 0x71 => Some(Self {
                key: b.get(2)? & 0x0F,
                asc: *b.get(12).unwrap_or(&0),
                ascq: *b.get(13).unwrap_or(&0),
            }),
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
    /// The sense key's name (SPC-5 table 52).
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
            0xD => "VOLUME OVERFLOW",
            0xE => "MISCOMPARE",
            _ => "RESERVED",
        }
    }

    /// The name of the additional sense code and qualifier, for the common ones (SPC-5
    /// annex F).
    pub const fn asc_name(&self) -> Option<&'static str> {
        Some(match (self.asc, self.ascq) {
            (0x00, 0x00) => "no additional sense information",
            (0x04, 0x00) => "logical unit not ready, cause not reportable",
            (0x04, 0x01) => "logical unit is in process of becoming ready",
            (0x04, 0x02) => "logical unit not ready, initializing command required",
            (0x0C, 0x00) => "write error",
            (0x11, 0x00) => "unrecovered read error",
            (0x1A, 0x00) => "parameter list length error",
            (0x20, 0x00) => "invalid command operation code",
            (0x21, 0x00) => "logical block address out of range",
            (0x24, 0x00) => "invalid field in CDB",
            (0x25, 0x00) => "logical unit not supported",
            (0x26, 0x00) => "invalid field in parameter list",
            (0x27, 0x00) => "write protected",
            (0x28, 0x00) => "not ready to ready change, medium may have changed",
            (0x29, 0x00) => "power on, reset, or bus device reset occurred",
            (0x29, 0x01) => "power on occurred",
            (0x29, 0x02) => "SCSI bus reset occurred",
            (0x29, 0x03) => "bus device reset function occurred",
            (0x29, 0x07) => "I_T nexus loss occurred",
            (0x2A, 0x01) => "mode parameters changed",
            (0x2A, 0x09) => "capacity data has changed",
            (0x3A, 0x00) => "medium not present",
            (0x3F, 0x0E) => "reported LUNs data has changed",
            (0x44, 0x00) => "internal target failure",
            (0x47, 0x03) => "information unit iuCRC error detected",
            (0x4B, 0x00) => "data phase error",
            (0x55, 0x03) => "insufficient resources",
            _ => return None,
        })
    }
}

impl core::fmt::Display for Sense {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.key_name())?;
        if let Some(name) = self.asc_name() {
            write!(f, ", {name}")?;
        }
        write!(f, " (ASC {:#04x} ASCQ {:#04x})", self.asc, self.ascq)
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

/// READ CAPACITY(16) data.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Capacity {
    /// Last logical block address.
    pub last_lba: u64,
    /// Block length in bytes.
    pub block_len: u32,
}

impl Capacity {
    /// Parses READ CAPACITY(16) data (at least 12 bytes).
    pub fn parse_16(b: &[u8]) -> Option<Self> {
        let lba = b.get(0..8)?;
        let len = b.get(8..12)?;
        Some(Self {
            last_lba: u64::from_be_bytes(lba.try_into().ok()?),
            block_len: u32::from_be_bytes(len.try_into().ok()?),
        })
    }

    /// Parses READ CAPACITY(10) data (8 bytes).
    pub fn parse_10(b: &[u8]) -> Option<Self> {
        let lba = b.get(0..4)?;
        let len = b.get(4..8)?;
        Some(Self {
            last_lba: u64::from(u32::from_be_bytes(lba.try_into().ok()?)),
            block_len: u32::from_be_bytes(len.try_into().ok()?),
        })
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

/// The identifying part of standard INQUIRY data.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Inquiry {
    /// Peripheral device type (0 = direct access block device).
    pub device_type: u8,
    /// T10 vendor identification (trimmed).
    pub vendor: String,
    /// Product identification (trimmed).
    pub product: String,
    /// Product revision level (trimmed).
    pub revision: String,
}

impl Inquiry {
    /// Parses standard INQUIRY data (at least 36 bytes).
    pub fn parse(b: &[u8]) -> Option<Self> {
        let text = |r: core::ops::Range<usize>| {
            b.get(r)
                .map(|s| String::from_utf8_lossy(s).trim().to_string())
        };
        Some(Self {
            device_type: b.first()? & 0x1F,
            vendor: text(8..16)?,
            product: text(16..32)?,
            revision: text(32..36)?,
        })
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
    fn data_parsers() {
        let mut rc = [0u8; 32];
        rc[7] = 0xFF;
        rc[10] = 2;
        let c = Capacity::parse_16(&rc).unwrap();
        assert_eq!((c.blocks(), c.block_len, c.bytes()), (256, 512, 131072));
        assert_eq!(Capacity::parse_16(&rc[..11]), None);
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
