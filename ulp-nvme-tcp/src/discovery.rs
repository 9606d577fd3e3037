//! NVMe over Fabrics discovery: the Discovery Log Page (log identifier 70h) a discovery
//! controller returns, parsed and checked ([`DiscoveryLog::parse`]), shown as `nvme discover`
//! shows it, and the reading procedure the specification asks of a host ([`LogReader`]).
//!
//! A host finds a fabric's subsystems by connecting an admin queue to the discovery subsystem
//! ([`DISCOVERY_NQN`](crate::nvme::DISCOVERY_NQN)), enabling the controller (CC.EN), and
//! reading this log with Get Log Page ([`nvme::get_log_page`]).
//! Each entry names a subsystem (or another discovery service) and how to reach it: transport,
//! address, service id, NQN.
//!
//! Layout (NVM Express over Fabrics, Discovery Log Page), little-endian:
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | GENCTR, the generation counter (incremented on every change of the log) |
//! | 8..16 | NUMREC, the number of records |
//! | 16..18 | RECFMT, the record format (0) |
//! | 18..1024 | reserved |
//! | 1024 + 1024 × i .. | entry i |
//!
//! and each 1024-byte entry:
//!
//! | bytes | field |
//! |---|---|
//! | 0 | TRTYPE, transport type ([`TransportType`]) |
//! | 1 | ADRFAM, address family ([`AddressFamily`]) |
//! | 2 | SUBTYPE, subsystem type ([`SubsystemType`]) |
//! | 3 | TREQ, transport requirements ([`TransportRequirements`]) |
//! | 4..6 | PORTID |
//! | 6..8 | CNTLID (0xFFFF: dynamic controller model) |
//! | 8..10 | ASQSZ, the largest admin submission queue |
//! | 10..12 | EFLAGS, entry flags |
//! | 32..64 | TRSVCID, transport service id (for TCP the port), ASCII |
//! | 256..512 | SUBNQN, UTF-8, NUL-terminated |
//! | 512..768 | TRADDR, transport address, ASCII |
//! | 768..1024 | TSAS, transport specific address subtype (TCP: byte 0 SECTYPE) |
//!
//! Text fields end at their first NUL and lose trailing white space (as libnvme trims them
//! before `nvme discover` prints them), so NUL-padded and space-padded fields read the same.
//!
//! # Reading the log
//!
//! The log's length depends on NUMREC, and the log may change while a host reads it in several
//! commands, so the host reads the header first ([`HEADER_READ_LEN`] bytes: GENCTR and
//! NUMREC), then the whole page ([`page_len`]`(numrec)` bytes), then the header again, and
//! starts over when GENCTR changed. [`LogReader`] does exactly that and says which Get Log Page
//! to send next; the driver sends it and feeds the data back:
//!
//! ```
//! use ulp_nvme_tcp::discovery::{LogReader, ReadStep};
//! # fn page(offset: u64, len: u32) -> Vec<u8> {
//! #     let mut p = vec![0u8; len as usize]; p[0] = 7; p // GENCTR 7, no records
//! # }
//! let mut reader = LogReader::new(1024); // at most 1024 records
//! let mut step = reader.start();
//! let log = loop {
//!     match step {
//!         ReadStep::Read { offset, len } => {
//!             // Send `step.command()` (Get Log Page 70h) with a read buffer of `len` bytes:
//!             let data = page(offset, len);
//!             step = reader.feed(&data)?;
//!         }
//!         ReadStep::Done(log) => break log,
//!     }
//! };
//! assert_eq!((log.genctr, log.entries.len()), (7, 0));
//! # Ok::<(), ulp_nvme_tcp::discovery::DiscoveryError>(())
//! ```

use core::fmt;

use crate::nvme;
use crate::wire::capsule_cmd::SQE_LEN;

/// Length of the log page header (GENCTR, NUMREC, RECFMT and reserved bytes).
pub const HEADER_LEN: usize = 1024;
/// Length of one Discovery Log Page entry.
pub const ENTRY_LEN: usize = 1024;
/// Bytes of the header a host reads first: GENCTR, NUMREC and RECFMT, rounded up to whole
/// dwords (Get Log Page transfers dwords), as libnvme reads it.
pub const HEADER_READ_LEN: u32 = 20;
/// The header's fields end here: a shorter read cannot be parsed.
const HEADER_FIELDS_LEN: usize = 18;

/// Length in bytes of a Discovery Log Page with `numrec` entries: the header and the entries
/// (`1024 + 1024 × numrec`), saturating at `usize::MAX` for a NUMREC no memory could hold
/// (check NUMREC against a limit first, as [`LogReader`] does).
pub const fn page_len(numrec: u64) -> usize {
    let entries = if numrec > (usize::MAX / ENTRY_LEN) as u64 {
        usize::MAX
    } else {
        numrec as usize * ENTRY_LEN
    };
    entries.saturating_add(HEADER_LEN)
}

/// Transport Type (TRTYPE).
#[derive(Clone, Copy, Debug, Eq, PartialEq, Hash)]
pub enum TransportType {
    /// 1: RDMA.
    Rdma,
    /// 2: Fibre Channel.
    FibreChannel,
    /// 3: TCP.
    Tcp,
    /// 254: intra-host transport (loopback; Linux's `loop`).
    Loop,
    /// A value the specification does not define (or reserves).
    Other(u8),
}

impl TransportType {
    /// The type of code `code`.
    pub const fn from_code(code: u8) -> Self {
        match code {
            1 => Self::Rdma,
            2 => Self::FibreChannel,
            3 => Self::Tcp,
            254 => Self::Loop,
            other => Self::Other(other),
        }
    }

    /// Its code.
    pub const fn code(self) -> u8 {
        match self {
            Self::Rdma => 1,
            Self::FibreChannel => 2,
            Self::Tcp => 3,
            Self::Loop => 254,
            Self::Other(code) => code,
        }
    }
}

/// As `nvme discover` says it: `rdma`, `fc`, `tcp`, `loop`, otherwise `unrecognized`.
impl fmt::Display for TransportType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Rdma => "rdma",
            Self::FibreChannel => "fc",
            Self::Tcp => "tcp",
            Self::Loop => "loop",
            Self::Other(_) => "unrecognized",
        })
    }
}

/// Address Family (ADRFAM): how to read TRADDR.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Hash)]
pub enum AddressFamily {
    /// 0: PCI (what Linux's loop target reports; reserved in the specification).
    Pci,
    /// 1: IPv4.
    Ipv4,
    /// 2: IPv6.
    Ipv6,
    /// 3: InfiniBand.
    InfiniBand,
    /// 4: Fibre Channel.
    FibreChannel,
    /// 254: intra-host transport.
    IntraHost,
    /// A value the specification does not define (or reserves).
    Other(u8),
}

impl AddressFamily {
    /// The family of code `code`.
    pub const fn from_code(code: u8) -> Self {
        match code {
            0 => Self::Pci,
            1 => Self::Ipv4,
            2 => Self::Ipv6,
            3 => Self::InfiniBand,
            4 => Self::FibreChannel,
            254 => Self::IntraHost,
            other => Self::Other(other),
        }
    }

    /// Its code.
    pub const fn code(self) -> u8 {
        match self {
            Self::Pci => 0,
            Self::Ipv4 => 1,
            Self::Ipv6 => 2,
            Self::InfiniBand => 3,
            Self::FibreChannel => 4,
            Self::IntraHost => 254,
            Self::Other(code) => code,
        }
    }

    /// `nvme discover`'s word: `pci`, `ipv4`, `ipv6`, `infiniband`, `fibre-channel`, and
    /// `unrecognized` for anything else (intra-host included: nvme-cli has no word for it).
    fn nvme_cli(self) -> &'static str {
        match self {
            Self::Pci => "pci",
            Self::Ipv4 => "ipv4",
            Self::Ipv6 => "ipv6",
            Self::InfiniBand => "infiniband",
            Self::FibreChannel => "fibre-channel",
            Self::IntraHost | Self::Other(_) => "unrecognized",
        }
    }
}

/// As `nvme discover` says it (`ipv4`, `ipv6`, `infiniband`, `fibre-channel`, `pci`,
/// `unrecognized`), except that the intra-host family, which nvme-cli calls `unrecognized`, is
/// `intra-host`.
impl fmt::Display for AddressFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::IntraHost => f.write_str("intra-host"),
            other => f.write_str(other.nvme_cli()),
        }
    }
}

/// Subsystem Type (SUBTYPE): what the entry describes.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Hash)]
pub enum SubsystemType {
    /// 1: a referral to another discovery service.
    Referral,
    /// 2: an NVM subsystem (with namespaces).
    Nvm,
    /// 3: this discovery subsystem itself (current discovery subsystem).
    CurrentDiscovery,
    /// A value the specification does not define (or reserves).
    Other(u8),
}

impl SubsystemType {
    /// The type of code `code`.
    pub const fn from_code(code: u8) -> Self {
        match code {
            1 => Self::Referral,
            2 => Self::Nvm,
            3 => Self::CurrentDiscovery,
            other => Self::Other(other),
        }
    }

    /// Its code.
    pub const fn code(self) -> u8 {
        match self {
            Self::Referral => 1,
            Self::Nvm => 2,
            Self::CurrentDiscovery => 3,
            Self::Other(code) => code,
        }
    }
}

/// As `nvme discover` says it: `discovery subsystem referral`, `nvme subsystem`,
/// `current discovery subsystem`, otherwise `unrecognized`.
impl fmt::Display for SubsystemType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Referral => "discovery subsystem referral",
            Self::Nvm => "nvme subsystem",
            Self::CurrentDiscovery => "current discovery subsystem",
            Self::Other(_) => "unrecognized",
        })
    }
}

/// Secure channel requirement of TREQ (bits 1:0).
#[derive(Clone, Copy, Debug, Eq, PartialEq, Hash)]
pub enum SecureChannel {
    /// 00b: not specified.
    NotSpecified,
    /// 01b: a secure channel is required.
    Required,
    /// 10b: a secure channel is not required.
    NotRequired,
    /// 11b: reserved.
    Reserved,
}

/// Transport Requirements (TREQ): the secure channel requirement, and whether the subsystem
/// supports disabling SQ flow control (bit 2). Bits 7:3 are reserved.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Hash)]
pub struct TransportRequirements(pub u8);

impl TransportRequirements {
    /// Bit 2: SQ flow control disable supported.
    pub const SQ_FLOW_CONTROL_DISABLE: u8 = 1 << 2;

    /// The secure channel requirement.
    pub const fn secure_channel(self) -> SecureChannel {
        match self.0 & 3 {
            0 => SecureChannel::NotSpecified,
            1 => SecureChannel::Required,
            2 => SecureChannel::NotRequired,
            _ => SecureChannel::Reserved,
        }
    }

    /// Whether the subsystem supports disabling SQ flow control (Connect CATTR bit 2).
    pub const fn sq_flow_control_disable(self) -> bool {
        self.0 & Self::SQ_FLOW_CONTROL_DISABLE != 0
    }
}

/// As `nvme discover` says it: `not specified`, `required`, `not required`, each optionally
/// followed by `, sq flow control disable supported`; `unrecognized` for a reserved secure
/// channel value or any reserved bit set.
impl fmt::Display for TransportRequirements {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let channel = match self.secure_channel() {
            _ if self.0 & !7 != 0 => return f.write_str("unrecognized"),
            SecureChannel::NotSpecified => "not specified",
            SecureChannel::Required => "required",
            SecureChannel::NotRequired => "not required",
            SecureChannel::Reserved => return f.write_str("unrecognized"),
        };
        f.write_str(channel)?;
        if self.sq_flow_control_disable() {
            f.write_str(", sq flow control disable supported")?;
        }
        Ok(())
    }
}

/// Security type of an NVMe/TCP entry (TSAS byte 0, SECTYPE).
#[derive(Clone, Copy, Debug, Eq, PartialEq, Hash)]
pub enum TcpSecurity {
    /// 0: no security: a plain TCP connection.
    None,
    /// 1: TLS 1.2.
    Tls12,
    /// 2: TLS 1.3 or later.
    Tls13,
    /// A value the specification does not define (or reserves).
    Other(u8),
}

impl TcpSecurity {
    /// The type of code `code`.
    pub const fn from_code(code: u8) -> Self {
        match code {
            0 => Self::None,
            1 => Self::Tls12,
            2 => Self::Tls13,
            other => Self::Other(other),
        }
    }
}

/// As `nvme discover` says it: `none`, `tls`, `tls13`, otherwise `unrecognized`.
impl fmt::Display for TcpSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Tls12 => "tls",
            Self::Tls13 => "tls13",
            Self::Other(_) => "unrecognized",
        })
    }
}

/// One Discovery Log Page entry, every field decoded.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct DiscoveryEntry {
    /// Transport type (TRTYPE).
    pub trtype: TransportType,
    /// Address family (ADRFAM).
    pub adrfam: AddressFamily,
    /// Subsystem type (SUBTYPE).
    pub subtype: SubsystemType,
    /// Transport requirements (TREQ).
    pub treq: TransportRequirements,
    /// Port id (PORTID).
    pub portid: u16,
    /// Controller id (CNTLID; 0xFFFF: the dynamic controller model, any controller).
    pub cntlid: u16,
    /// Admin submission queue size (ASQSZ): the most admin queue entries the host may use.
    pub asqsz: u16,
    /// Entry flags (EFLAGS: bit 0 duplicate returned information, bit 1 explicit persistent
    /// connections for discovery, bit 2 no CDC connectivity).
    pub eflags: u16,
    /// Transport service id (TRSVCID; for TCP and RDMA the port number), trimmed.
    pub trsvcid: String,
    /// Subsystem NQN (SUBNQN), trimmed.
    pub subnqn: String,
    /// Transport address (TRADDR; for IPv4 and IPv6 the address in text), trimmed.
    pub traddr: String,
    /// Transport specific address subtype (TSAS), raw: see [`tcp_security`](Self::tcp_security).
    pub tsas: [u8; 256],
}

impl DiscoveryEntry {
    /// The security type of an NVMe/TCP entry (TSAS SECTYPE); meaningful when `trtype` is TCP.
    pub fn tcp_security(&self) -> TcpSecurity {
        TcpSecurity::from_code(self.tsas[0])
    }

    /// Decodes entry `index` from its 1024 bytes.
    fn parse(index: usize, e: &[u8; ENTRY_LEN]) -> Result<Self, DiscoveryError> {
        let le16 = |at: usize| u16::from_le_bytes([e[at], e[at + 1]]);
        let mut tsas = [0u8; 256];
        tsas.copy_from_slice(&e[768..1024]);
        Ok(Self {
            trtype: TransportType::from_code(e[0]),
            adrfam: AddressFamily::from_code(e[1]),
            subtype: SubsystemType::from_code(e[2]),
            treq: TransportRequirements(e[3]),
            portid: le16(4),
            cntlid: le16(6),
            asqsz: le16(8),
            eflags: le16(10),
            trsvcid: text(index, "TRSVCID", &e[32..64])?,
            subnqn: text(index, "SUBNQN", &e[256..512])?,
            traddr: text(index, "TRADDR", &e[512..768])?,
            tsas,
        })
    }
}

/// A text field: up to its first NUL, trailing white space removed (C's `isspace`, as
/// libnvme trims), UTF-8.
fn text(entry: usize, field: &'static str, bytes: &[u8]) -> Result<String, DiscoveryError> {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let mut s = &bytes[..end];
    while let [rest @ .., last] = s
        && matches!(last, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
    {
        s = rest;
    }
    core::str::from_utf8(s)
        .map(str::to_owned)
        .map_err(|_| DiscoveryError::NotUtf8 { entry, field })
}

/// The header's fields: what a host reads first.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq, Hash)]
pub struct LogHeader {
    /// Generation counter (GENCTR).
    pub genctr: u64,
    /// Number of records (NUMREC).
    pub numrec: u64,
    /// Record format (RECFMT; 0 is the only one defined).
    pub recfmt: u16,
}

impl LogHeader {
    /// Decodes the header's fields from the first 18 bytes of `bytes` (or more: a read of
    /// [`HEADER_READ_LEN`] bytes, or the whole page).
    ///
    /// # Errors
    ///
    /// [`DiscoveryError::ShortHeader`] when `bytes` is shorter than 18 bytes;
    /// [`DiscoveryError::RecordFormat`] when RECFMT is not 0 (the entries would be laid out
    /// otherwise).
    pub fn parse(bytes: &[u8]) -> Result<Self, DiscoveryError> {
        let Some(h) = bytes.get(..HEADER_FIELDS_LEN) else {
            return Err(DiscoveryError::ShortHeader { len: bytes.len() });
        };
        let le64 = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&h[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let header = Self {
            genctr: le64(0),
            numrec: le64(8),
            recfmt: u16::from_le_bytes([h[16], h[17]]),
        };
        if header.recfmt != 0 {
            return Err(DiscoveryError::RecordFormat {
                recfmt: header.recfmt,
            });
        }
        Ok(header)
    }

    /// The length of the whole page it announces ([`page_len`]).
    pub const fn page_len(&self) -> usize {
        page_len(self.numrec)
    }
}

/// A Discovery Log Page, every entry decoded. Its `Display` is what `nvme discover` prints
/// (nvme-cli 2.x and 3.0, `stdout_discovery_log`), byte for byte, its leading empty line
/// included: write it with `print!`, not `println!`.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct DiscoveryLog {
    /// Generation counter (GENCTR).
    pub genctr: u64,
    /// The entries, NUMREC of them.
    pub entries: Vec<DiscoveryEntry>,
}

impl DiscoveryLog {
    /// Parses a Discovery Log Page: its header, then the NUMREC entries that follow it.
    /// Bytes after the last entry are ignored (a host may read more than the log holds); when
    /// NUMREC is 0 the header's 18 bytes of fields suffice.
    ///
    /// # Errors
    ///
    /// A header shorter than its fields, a record format other than 0, fewer bytes than
    /// NUMREC entries need (a read that took only part of the log), a text field that is not
    /// UTF-8; each names what is wrong ([`DiscoveryError`]). Never panics, whatever the bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, DiscoveryError> {
        let header = LogHeader::parse(bytes)?;
        let available = (bytes.len().saturating_sub(HEADER_LEN) / ENTRY_LEN) as u64;
        if header.numrec > available {
            return Err(DiscoveryError::Truncated {
                numrec: header.numrec,
                len: bytes.len(),
            });
        }
        // At most `available` entries: bounded by the bytes given.
        let entries = bytes[HEADER_LEN.min(bytes.len())..]
            .chunks_exact(ENTRY_LEN)
            .take(header.numrec as usize)
            .enumerate()
            .map(|(i, e)| match <&[u8; ENTRY_LEN]>::try_from(e) {
                Ok(e) => DiscoveryEntry::parse(i, e),
                Err(_) => Err(DiscoveryError::Truncated {
                    numrec: header.numrec,
                    len: bytes.len(),
                }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            genctr: header.genctr,
            entries,
        })
    }
}

/// `nvme discover`'s EFLAGS words (nvme-cli's table, indexed by the whole field).
fn eflags_str(eflags: u16) -> &'static str {
    const EPCSD: &str = "explicit discovery connections";
    const DUP: &str = "duplicate discovery information";
    const NCC: &str = "no cdc connectivity";
    match eflags {
        0 => "none",
        1 => DUP,
        2 => EPCSD,
        3 => "explicit discovery connections, duplicate discovery information",
        4 => NCC,
        5 => "duplicate discovery information, no cdc connectivity",
        6 => "explicit discovery connections, no cdc connectivity",
        7 => "explicit discovery connections, duplicate discovery information, no cdc connectivity",
        _ => "unrecognized",
    }
}

/// `nvme discover`'s words for the RDMA TSAS fields (RDMA_PRTYPE, RDMA_QPTYPE, RDMA_CMS).
fn rdma_prtype_str(v: u8) -> &'static str {
    match v {
        1 => "not specified",
        2 => "infiniband",
        3 => "roce",
        4 => "roce-v2",
        5 => "iwarp",
        _ => "unrecognized",
    }
}

fn rdma_qptype_str(v: u8) -> &'static str {
    match v {
        1 => "connected",
        2 => "datagram",
        _ => "unrecognized",
    }
}

fn rdma_cms_str(v: u8) -> &'static str {
    match v {
        1 => "rdma-cm",
        _ => "unrecognized",
    }
}

/// C's `%#04x`: `0000` for zero, else `0x` and at least two hex digits.
struct CHex04(u16);

impl fmt::Display for CHex04 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            f.write_str("0000")
        } else {
            write!(f, "{:#04x}", self.0)
        }
    }
}

impl fmt::Display for DiscoveryLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "\nDiscovery Log Number of Records {}, Generation counter {}\n",
            self.entries.len(),
            self.genctr
        )?;
        for (i, e) in self.entries.iter().enumerate() {
            writeln!(f, "=====Discovery Log Entry {i}======")?;
            writeln!(f, "trtype:  {}", e.trtype)?;
            // nvme-cli leaves the family out when there is no address.
            let adrfam = if e.traddr.is_empty() {
                ""
            } else {
                e.adrfam.nvme_cli()
            };
            writeln!(f, "adrfam:  {adrfam}")?;
            writeln!(f, "subtype: {}", e.subtype)?;
            writeln!(f, "treq:    {}", e.treq)?;
            writeln!(f, "portid:  {}", e.portid)?;
            writeln!(f, "trsvcid: {}", e.trsvcid)?;
            writeln!(f, "subnqn:  {}", e.subnqn)?;
            writeln!(f, "traddr:  {}", e.traddr)?;
            writeln!(f, "eflags:  {}", eflags_str(e.eflags))?;
            match e.trtype {
                TransportType::Rdma => {
                    writeln!(f, "rdma_prtype: {}", rdma_prtype_str(e.tsas[1]))?;
                    writeln!(f, "rdma_qptype: {}", rdma_qptype_str(e.tsas[0]))?;
                    writeln!(f, "rdma_cms:    {}", rdma_cms_str(e.tsas[2]))?;
                    let pkey = u16::from_le_bytes([e.tsas[8], e.tsas[9]]);
                    writeln!(f, "rdma_pkey: {}", CHex04(pkey))?;
                }
                TransportType::Tcp => writeln!(f, "sectype: {}", e.tcp_security())?,
                _ => {}
            }
        }
        Ok(())
    }
}

/// Why a Discovery Log Page could not be read.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Hash)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// Fewer bytes than the header's GENCTR, NUMREC and RECFMT (18).
    ShortHeader {
        /// Bytes given.
        len: usize,
    },
    /// NUMREC announces more entries than the bytes hold.
    Truncated {
        /// NUMREC.
        numrec: u64,
        /// Bytes given.
        len: usize,
    },
    /// A record format other than 0: the entries' layout is unknown.
    RecordFormat {
        /// RECFMT.
        recfmt: u16,
    },
    /// A text field that is not UTF-8.
    NotUtf8 {
        /// The entry's index (from 0).
        entry: usize,
        /// The field: `TRSVCID`, `SUBNQN` or `TRADDR`.
        field: &'static str,
    },
    /// NUMREC above the limit the reader was given.
    TooManyRecords {
        /// NUMREC.
        numrec: u64,
        /// The limit.
        max: u64,
    },
    /// The log changed (GENCTR or NUMREC) during every attempt to read it.
    KeptChanging {
        /// How many times the whole page was read.
        attempts: u32,
        /// GENCTR before the last attempt.
        before: u64,
        /// GENCTR after it.
        after: u64,
    },
    /// Data fed to a [`LogReader`] that asked for nothing (it is done, or was not started).
    NotReading,
}

impl fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::ShortHeader { len } => write!(
                f,
                "the discovery log page is {len} bytes, shorter than its header's \
                 {HEADER_FIELDS_LEN} bytes of GENCTR, NUMREC and RECFMT"
            ),
            Self::Truncated { numrec, len } => write!(
                f,
                "the discovery log page announces {numrec} records ({} bytes) but holds {len} \
                 bytes",
                HEADER_LEN as u128 + u128::from(numrec) * ENTRY_LEN as u128
            ),
            Self::RecordFormat { recfmt } => write!(
                f,
                "the discovery log page has record format {recfmt}; only format 0 is defined"
            ),
            Self::NotUtf8 { entry, field } => {
                write!(f, "discovery log entry {entry}: {field} is not UTF-8 text")
            }
            Self::TooManyRecords { numrec, max } => write!(
                f,
                "the discovery log page announces {numrec} records, more than the {max} this \
                 host reads"
            ),
            Self::KeptChanging {
                attempts,
                before,
                after,
            } => write!(
                f,
                "the discovery log changed while it was read, {attempts} times (generation \
                 counter {before}, then {after})"
            ),
            Self::NotReading => f.write_str(
                "discovery log data came in while no Get Log Page was asked for (the reader \
                 is done or was not started)",
            ),
        }
    }
}

impl std::error::Error for DiscoveryError {}

/// What a [`LogReader`] needs next.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum ReadStep {
    /// Send Get Log Page 70h for `len` bytes from byte `offset` ([`command`](Self::command)),
    /// with a read buffer of `len` bytes, and feed what it returns to [`LogReader::feed`].
    Read {
        /// Log page offset (LPO), in bytes.
        offset: u64,
        /// Bytes to read.
        len: u32,
    },
    /// The log, read consistently.
    Done(DiscoveryLog),
}

impl ReadStep {
    /// The Get Log Page command of a [`Read`](Self::Read) step (`None` when done).
    pub fn command(&self) -> Option<[u8; SQE_LEN]> {
        match *self {
            Self::Read { offset, len } => {
                Some(nvme::get_log_page(nvme::LID_DISCOVERY, 0, len, offset))
            }
            Self::Done(_) => None,
        }
    }
}

#[derive(Clone, Debug)]
enum ReadState {
    Idle,
    Header,
    Page(LogHeader),
    Recheck(DiscoveryLog),
}

/// The host's reading of the Discovery Log Page, as the NVMe over Fabrics specification asks
/// for a log that may change while it is read: the header first ([`HEADER_READ_LEN`] bytes at
/// offset 0: GENCTR and NUMREC), then the whole page ([`page_len`]`(NUMREC)` bytes at offset
/// 0), then the header again; when GENCTR (or NUMREC) differs between the reads the entries
/// may be inconsistent, and the page is read again, at most `retries` more times (libnvme's
/// default, 6, unless [`with_retries`](Self::with_retries) says otherwise).
///
/// Sans-IO: [`start`](Self::start) and [`feed`](Self::feed) say which Get Log Page to send
/// next ([`ReadStep::Read`]); the caller sends it, feeds the data back, and gets the log
/// ([`ReadStep::Done`]). See the [module documentation](self) for the loop.
#[derive(Clone, Debug)]
pub struct LogReader {
    max_records: u64,
    retries: u32,
    attempts: u32,
    state: ReadState,
}

impl LogReader {
    /// Re-reads of a changing log before giving up, by default (libnvme's default).
    pub const DEFAULT_RETRIES: u32 = 6;

    /// A reader that accepts at most `max_records` entries (a hostile NUMREC must not make the
    /// host allocate without bound; the page must also fit a 32-bit length).
    pub fn new(max_records: u64) -> Self {
        Self {
            max_records,
            retries: Self::DEFAULT_RETRIES,
            attempts: 0,
            state: ReadState::Idle,
        }
    }

    /// Re-read a changing log at most `retries` times.
    #[must_use]
    pub fn with_retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Starts (or restarts) the reading: the header comes first.
    pub fn start(&mut self) -> ReadStep {
        self.attempts = 0;
        self.state = ReadState::Header;
        ReadStep::Read {
            offset: 0,
            len: HEADER_READ_LEN,
        }
    }

    /// Takes the data of the Get Log Page the last step asked for, and says what comes next.
    ///
    /// # Errors
    ///
    /// The data's own errors ([`DiscoveryLog::parse`]), NUMREC above the limit
    /// ([`DiscoveryError::TooManyRecords`]), a log that kept changing
    /// ([`DiscoveryError::KeptChanging`]), data when nothing was asked for
    /// ([`DiscoveryError::NotReading`]). After an error the reader must be started again.
    pub fn feed(&mut self, data: &[u8]) -> Result<ReadStep, DiscoveryError> {
        let state = core::mem::replace(&mut self.state, ReadState::Idle);
        match state {
            ReadState::Idle => Err(DiscoveryError::NotReading),
            ReadState::Header => {
                let header = LogHeader::parse(data)?;
                self.read_page(header)
            }
            ReadState::Page(expected) => {
                let header = LogHeader::parse(data)?;
                if header.genctr != expected.genctr || header.numrec != expected.numrec {
                    // Changed between the header and the page: read the page it now announces.
                    return self.retry(expected.genctr, header);
                }
                let log = DiscoveryLog::parse(data)?;
                self.state = ReadState::Recheck(log);
                Ok(ReadStep::Read {
                    offset: 0,
                    len: HEADER_READ_LEN,
                })
            }
            ReadState::Recheck(log) => {
                let header = LogHeader::parse(data)?;
                if header.genctr == log.genctr && header.numrec == log.entries.len() as u64 {
                    return Ok(ReadStep::Done(log));
                }
                self.retry(log.genctr, header)
            }
        }
    }

    /// The whole page `header` announces (or the log at once, when it has no entries).
    fn read_page(&mut self, header: LogHeader) -> Result<ReadStep, DiscoveryError> {
        if header.numrec > self.max_records {
            return Err(DiscoveryError::TooManyRecords {
                numrec: header.numrec,
                max: self.max_records,
            });
        }
        if header.numrec == 0 {
            // The header read was the whole log: nothing to be inconsistent with.
            return Ok(ReadStep::Done(DiscoveryLog {
                genctr: header.genctr,
                entries: Vec::new(),
            }));
        }
        let Ok(len) = u32::try_from(header.page_len()) else {
            return Err(DiscoveryError::TooManyRecords {
                numrec: header.numrec,
                max: u64::from(u32::MAX) / ENTRY_LEN as u64 - 1,
            });
        };
        self.attempts += 1;
        self.state = ReadState::Page(header);
        Ok(ReadStep::Read { offset: 0, len })
    }

    /// The log changed from generation `before` to `now`: read it again, if retries are left.
    fn retry(&mut self, before: u64, now: LogHeader) -> Result<ReadStep, DiscoveryError> {
        if self.attempts > self.retries {
            return Err(DiscoveryError::KeptChanging {
                attempts: self.attempts,
                before,
                after: now.genctr,
            });
        }
        self.read_page(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// One entry's bytes, built field by field (independently of the parser).
    struct Raw {
        trtype: u8,
        adrfam: u8,
        subtype: u8,
        treq: u8,
        portid: u16,
        cntlid: u16,
        asqsz: u16,
        eflags: u16,
        trsvcid: &'static [u8],
        subnqn: &'static [u8],
        traddr: &'static [u8],
        tsas: &'static [u8],
    }

    impl Default for Raw {
        fn default() -> Self {
            Self {
                trtype: 3,
                adrfam: 1,
                subtype: 2,
                treq: 0,
                portid: 1,
                cntlid: 0xFFFF,
                asqsz: 32,
                eflags: 0,
                trsvcid: b"4420",
                subnqn: b"nqn.2024-01.io.example:disk",
                traddr: b"192.168.1.10",
                tsas: &[],
            }
        }
    }

    impl Raw {
        fn bytes(&self, pad: u8) -> [u8; ENTRY_LEN] {
            let mut e = [0u8; ENTRY_LEN];
            e[0] = self.trtype;
            e[1] = self.adrfam;
            e[2] = self.subtype;
            e[3] = self.treq;
            e[4..6].copy_from_slice(&self.portid.to_le_bytes());
            e[6..8].copy_from_slice(&self.cntlid.to_le_bytes());
            e[8..10].copy_from_slice(&self.asqsz.to_le_bytes());
            e[10..12].copy_from_slice(&self.eflags.to_le_bytes());
            e[32..64].fill(pad);
            e[32..32 + self.trsvcid.len()].copy_from_slice(self.trsvcid);
            e[256..256 + self.subnqn.len()].copy_from_slice(self.subnqn);
            e[512..768].fill(pad);
            e[512..512 + self.traddr.len()].copy_from_slice(self.traddr);
            e[768..768 + self.tsas.len()].copy_from_slice(self.tsas);
            e
        }
    }

    fn page(genctr: u64, numrec: u64, entries: &[[u8; ENTRY_LEN]]) -> Vec<u8> {
        let mut p = vec![0u8; HEADER_LEN];
        p[0..8].copy_from_slice(&genctr.to_le_bytes());
        p[8..16].copy_from_slice(&numrec.to_le_bytes());
        for e in entries {
            p.extend_from_slice(e);
        }
        p
    }

    #[test]
    fn lengths() {
        assert_eq!(page_len(0), 1024);
        assert_eq!(page_len(3), 4096);
        assert_eq!(page_len(u64::MAX), usize::MAX);
        assert_eq!(page_len((usize::MAX / 1024) as u64), usize::MAX);
    }

    #[test]
    fn one_tcp_entry_every_field() {
        let p = page(5, 1, &[Raw::default().bytes(b' ')]);
        let log = DiscoveryLog::parse(&p).unwrap();
        assert_eq!(log.genctr, 5);
        let e = &log.entries[0];
        assert_eq!(
            (e.trtype, e.adrfam, e.subtype, e.treq.secure_channel()),
            (
                TransportType::Tcp,
                AddressFamily::Ipv4,
                SubsystemType::Nvm,
                SecureChannel::NotSpecified
            )
        );
        assert_eq!((e.portid, e.cntlid, e.asqsz, e.eflags), (1, 0xFFFF, 32, 0));
        // Space padding and NUL padding read the same.
        assert_eq!(e.trsvcid, "4420");
        assert_eq!(e.traddr, "192.168.1.10");
        assert_eq!(e.subnqn, "nqn.2024-01.io.example:disk");
        assert_eq!(e.tcp_security(), TcpSecurity::None);
        let nul = DiscoveryLog::parse(&page(5, 1, &[Raw::default().bytes(0)])).unwrap();
        assert_eq!(nul, log);
    }

    #[test]
    fn shown_as_nvme_discover_shows_it() {
        let entries = [
            Raw {
                subtype: 3,
                treq: 4,
                subnqn: nvme::DISCOVERY_NQN.as_bytes(),
                traddr: b"127.0.0.2",
                ..Raw::default()
            }
            .bytes(0),
            Raw {
                treq: 2,
                eflags: 3,
                portid: 4420,
                subnqn: b"disk1",
                tsas: &[2],
                ..Raw::default()
            }
            .bytes(b' '),
            Raw {
                trtype: 1,
                adrfam: 2,
                subtype: 1,
                treq: 1,
                trsvcid: b"4421",
                traddr: b"fe80::1",
                subnqn: b"nqn.2014-08.org.nvmexpress.discovery",
                tsas: &[1, 4, 1, 0, 0, 0, 0, 0, 0xFF, 0xFF],
                ..Raw::default()
            }
            .bytes(0),
            Raw {
                trtype: 254,
                adrfam: 254,
                subtype: 9,
                treq: 8,
                eflags: 8,
                trsvcid: b"",
                traddr: b"",
                subnqn: b"blktests-subsystem-1",
                ..Raw::default()
            }
            .bytes(0),
        ];
        let log = DiscoveryLog::parse(&page(8, 4, &entries)).unwrap();
        let expected = "
Discovery Log Number of Records 4, Generation counter 8
=====Discovery Log Entry 0======
trtype:  tcp
adrfam:  ipv4
subtype: current discovery subsystem
treq:    not specified, sq flow control disable supported
portid:  1
trsvcid: 4420
subnqn:  nqn.2014-08.org.nvmexpress.discovery
traddr:  127.0.0.2
eflags:  none
sectype: none
=====Discovery Log Entry 1======
trtype:  tcp
adrfam:  ipv4
subtype: nvme subsystem
treq:    not required
portid:  4420
trsvcid: 4420
subnqn:  disk1
traddr:  192.168.1.10
eflags:  explicit discovery connections, duplicate discovery information
sectype: tls13
=====Discovery Log Entry 2======
trtype:  rdma
adrfam:  ipv6
subtype: discovery subsystem referral
treq:    required
portid:  1
trsvcid: 4421
subnqn:  nqn.2014-08.org.nvmexpress.discovery
traddr:  fe80::1
eflags:  none
rdma_prtype: roce-v2
rdma_qptype: connected
rdma_cms:    rdma-cm
rdma_pkey: 0xffff
=====Discovery Log Entry 3======
trtype:  loop
adrfam:  
subtype: unrecognized
treq:    unrecognized
portid:  1
trsvcid: 
subnqn:  blktests-subsystem-1
traddr:  
eflags:  unrecognized
";
        assert_eq!(log.to_string(), expected);
        assert_eq!(AddressFamily::IntraHost.to_string(), "intra-host");
        assert_eq!(CHex04(0).to_string(), "0000");
        assert_eq!(CHex04(1).to_string(), "0x01");
        assert_eq!(CHex04(0x123).to_string(), "0x123");
        let empty = DiscoveryLog::parse(&page(0, 0, &[])).unwrap();
        assert_eq!(
            empty.to_string(),
            "\nDiscovery Log Number of Records 0, Generation counter 0\n"
        );
    }

    #[test]
    fn treq_words() {
        let words: Vec<String> = (0..8u8)
            .map(|t| TransportRequirements(t).to_string())
            .collect();
        assert_eq!(
            words,
            [
                "not specified",
                "required",
                "not required",
                "unrecognized",
                "not specified, sq flow control disable supported",
                "required, sq flow control disable supported",
                "not required, sq flow control disable supported",
                "unrecognized",
            ]
        );
        assert!(TransportRequirements(4).sq_flow_control_disable());
        assert_eq!(TransportRequirements(0x10).to_string(), "unrecognized");
        for code in 0..=255u8 {
            assert_eq!(TransportType::from_code(code).code(), code);
            assert_eq!(AddressFamily::from_code(code).code(), code);
            assert_eq!(SubsystemType::from_code(code).code(), code);
        }
    }

    #[test]
    fn hostile_pages_are_errors_in_words() {
        // Shorter than the header's fields.
        let e = DiscoveryLog::parse(&[0u8; 17]).unwrap_err();
        assert_eq!(e, DiscoveryError::ShortHeader { len: 17 });
        assert_eq!(
            e.to_string(),
            "the discovery log page is 17 bytes, shorter than its header's 18 bytes of GENCTR, \
             NUMREC and RECFMT"
        );
        // NUMREC beyond the bytes: one entry missing, and a NUMREC no memory could hold.
        let one = Raw::default().bytes(0);
        let e = DiscoveryLog::parse(&page(1, 2, &[one])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the discovery log page announces 2 records (3072 bytes) but holds 2048 bytes"
        );
        let e = DiscoveryLog::parse(&page(1, u64::MAX, &[one])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the discovery log page announces 18446744073709551615 records \
             (18889465931478580854784 bytes) but holds 2048 bytes"
        );
        // An entry cut short.
        let mut cut = page(1, 1, &[one]);
        cut.truncate(2047);
        assert!(matches!(
            DiscoveryLog::parse(&cut),
            Err(DiscoveryError::Truncated {
                numrec: 1,
                len: 2047
            })
        ));
        // Only the header read: fine when there are no records, truncated otherwise.
        assert!(DiscoveryLog::parse(&page(3, 0, &[])[..20]).is_ok());
        assert!(DiscoveryLog::parse(&page(3, 1, &[])[..20]).is_err());
        // Unknown record format.
        let mut p = page(1, 0, &[]);
        p[16] = 1;
        assert_eq!(
            DiscoveryLog::parse(&p).unwrap_err().to_string(),
            "the discovery log page has record format 1; only format 0 is defined"
        );
        // Text that is not UTF-8, in each field, named.
        for (field, at) in [("TRSVCID", 32), ("SUBNQN", 256), ("TRADDR", 512)] {
            let mut e = one;
            e[at] = 0xFF;
            let err = DiscoveryLog::parse(&page(1, 2, &[one, e])).unwrap_err();
            assert_eq!(err, DiscoveryError::NotUtf8 { entry: 1, field });
            assert_eq!(
                err.to_string(),
                format!("discovery log entry 1: {field} is not UTF-8 text")
            );
        }
        // Text ends at its first NUL; a field without NUL is read whole.
        let mut e = one;
        e[256 + 5] = 0;
        e[256 + 6] = 0xFF;
        e[32..64].fill(b'9');
        let log = DiscoveryLog::parse(&page(1, 1, &[e])).unwrap();
        assert_eq!(log.entries[0].subnqn, "nqn.2");
        assert_eq!(log.entries[0].trsvcid, "9".repeat(32));
        // Extra bytes past NUMREC entries are ignored.
        let mut p = page(1, 1, &[one, one]);
        p.extend_from_slice(&[0xAB; 100]);
        assert_eq!(DiscoveryLog::parse(&p).unwrap().entries.len(), 1);
    }

    /// Feeds a reader from a log that changes `changes` times, each right after the page read.
    fn read_changing(reader: &mut LogReader, changes: u32) -> Result<DiscoveryLog, DiscoveryError> {
        let mut genctr = 1u64;
        let mut numrec = 1u64;
        let mut left = changes;
        let mut step = reader.start();
        let mut reads = Vec::new();
        loop {
            match step {
                ReadStep::Read { offset, len } => {
                    reads.push((offset, len));
                    let entries = vec![Raw::default().bytes(0); numrec as usize];
                    let mut data = page(genctr, numrec, &entries);
                    data.resize(len as usize, 0);
                    step = reader.feed(&data)?;
                    if len > HEADER_READ_LEN && left > 0 {
                        left -= 1;
                        genctr += 1;
                        numrec += 1;
                    }
                }
                ReadStep::Done(log) => {
                    assert_eq!(reads[0], (0, HEADER_READ_LEN));
                    assert_eq!(reads.last(), Some(&(0, HEADER_READ_LEN)));
                    return Ok(log);
                }
            }
        }
    }

    #[test]
    fn reader_reads_header_page_and_header_again() {
        let mut reader = LogReader::new(16);
        let log = read_changing(&mut reader, 0).unwrap();
        assert_eq!((log.genctr, log.entries.len()), (1, 1));
        // The page's read: header, page of 2048, header.
        let mut r = LogReader::new(16);
        let step = r.start();
        assert_eq!(step.command().map(|c| c[0]), Some(nvme::OPC_GET_LOG_PAGE));
        let one = Raw::default().bytes(0);
        assert_eq!(
            r.feed(&page(1, 1, &[one])[..20]).unwrap(),
            ReadStep::Read {
                offset: 0,
                len: 2048
            }
        );
        // A log that changes twice is re-read; the result is the final generation.
        let log = read_changing(&mut LogReader::new(16), 2).unwrap();
        assert_eq!((log.genctr, log.entries.len()), (3, 3));
        // One that keeps changing gives up, in words.
        let err = read_changing(&mut LogReader::new(16).with_retries(1), 5).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the discovery log changed while it was read, 2 times (generation counter 2, then 3)"
        );
        // A NUMREC above the limit is refused before anything is allocated.
        let mut r = LogReader::new(4);
        r.start();
        let err = r.feed(&page(1, u64::MAX, &[])[..20]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the discovery log page announces 18446744073709551615 records, more than the 4 \
             this host reads"
        );
        // Nothing asked for.
        assert_eq!(r.feed(&[0; 20]), Err(DiscoveryError::NotReading));
        // An empty log is done after the header.
        let mut r = LogReader::new(4);
        r.start();
        assert_eq!(
            r.feed(&page(9, 0, &[])[..20]).unwrap(),
            ReadStep::Done(DiscoveryLog {
                genctr: 9,
                entries: Vec::new()
            })
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whatever the bytes, parsing returns (never panics), and what it returns is
        /// consistent with them.
        #[test]
        fn parse_never_panics(
            bytes in prop::collection::vec(any::<u8>(), 0..5000),
            numrec in any::<u64>(),
            small in 0u64..6,
            use_small in any::<bool>(),
        ) {
            let _ = DiscoveryLog::parse(&bytes);
            let mut b = bytes;
            if b.len() >= 18 {
                let n = if use_small { small } else { numrec };
                b[8..16].copy_from_slice(&n.to_le_bytes());
                b[16] = 0;
                b[17] = 0;
            }
            match DiscoveryLog::parse(&b) {
                Ok(log) => {
                    let n = log.entries.len() as u64;
                    prop_assert!(n == 0 || b.len() >= page_len(n));
                    let _ = log.to_string();
                }
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
            let mut r = LogReader::new(8);
            r.start();
            let _ = r.feed(&b);
        }

        /// Well-formed entries with any codes and text decode field for field; the page cut
        /// anywhere is either the entries it still holds whole or a truncation error.
        #[test]
        fn entries_decode_field_for_field(
            codes in prop::collection::vec(any::<[u8; 4]>(), 1..5),
            ids in any::<[u16; 4]>(),
            trsvcid in "[ -~]{0,32}",
            traddr in "[ -~]{0,64}",
            subnqn in "[a-z0-9.:-]{1,223}",
            genctr in any::<u64>(),
            cut in any::<prop::sample::Index>(),
        ) {
            let leak = |s: &str| -> &'static [u8] { Box::leak(s.as_bytes().to_vec().into_boxed_slice()) };
            let entries: Vec<[u8; ENTRY_LEN]> = codes
                .iter()
                .map(|c| Raw {
                    trtype: c[0],
                    adrfam: c[1],
                    subtype: c[2],
                    treq: c[3],
                    portid: ids[0],
                    cntlid: ids[1],
                    asqsz: ids[2],
                    eflags: ids[3],
                    trsvcid: leak(&trsvcid),
                    traddr: leak(&traddr),
                    subnqn: leak(&subnqn),
                    tsas: &[],
                }
                .bytes(0))
                .collect();
            let p = page(genctr, codes.len() as u64, &entries);
            let log = DiscoveryLog::parse(&p).unwrap();
            prop_assert_eq!(log.genctr, genctr);
            prop_assert_eq!(log.entries.len(), codes.len());
            for (e, c) in log.entries.iter().zip(&codes) {
                prop_assert_eq!(
                    (e.trtype.code(), e.adrfam.code(), e.subtype.code(), e.treq.0),
                    (c[0], c[1], c[2], c[3])
                );
                prop_assert_eq!((e.portid, e.cntlid, e.asqsz, e.eflags), (ids[0], ids[1], ids[2], ids[3]));
                prop_assert_eq!(e.trsvcid.as_str(), trsvcid.trim_end());
                prop_assert_eq!(e.traddr.as_str(), traddr.trim_end());
                prop_assert_eq!(e.subnqn.as_str(), subnqn.as_str());
            }
            let shown = log.to_string();
            prop_assert_eq!(shown.matches("=====Discovery Log Entry").count(), codes.len());
            let at = cut.index(p.len());
            match DiscoveryLog::parse(&p[..at]) {
                Ok(_) => prop_assert!(false, "a cut page ({} of {} bytes) parsed", at, p.len()),
                Err(DiscoveryError::ShortHeader { len }) => prop_assert!(len < 18),
                Err(DiscoveryError::Truncated { numrec, len }) => {
                    prop_assert_eq!((numrec, len), (codes.len() as u64, at));
                }
                Err(e) => prop_assert!(false, "unexpected {}", e),
            }
        }
    }
}
