//! `ulp-ddp iscsi discover|report-luns|inquiry|readcap`: SendTargets discovery, REPORT LUNS,
//! standard INQUIRY and READ CAPACITY(16), printed as the libiscsi tools (`iscsi-ls`,
//! `iscsi-inq`, `iscsi-readcapacity16`) and sg3_utils' `sg_luns` print them.

use std::fmt::Write as _;

use ulp_ddp_core::Digests;
use ulp_iscsi::blocking::{Options, Session};
use ulp_iscsi::connection::DiscoveredTarget;
use ulp_iscsi::scsi::{self, Capacity, Inquiry};
use ulp_iscsi::url::IscsiUrl;
use ulp_testbed::iscsi::{Target, TargetConfig};

use crate::iscsi_cli::{Opened, Recovery, Verbose};

/// One information command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InfoCommand {
    /// SendTargets=All on a discovery session (`iscsi-ls`).
    Discover,
    /// REPORT LUNS (`sg_luns`).
    ReportLuns,
    /// Standard INQUIRY (`iscsi-inq`).
    Inquiry,
    /// READ CAPACITY(16) (`iscsi-readcapacity16`).
    ReadCap,
}

impl InfoCommand {
    /// The command's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Discover => "discover",
            Self::ReportLuns => "report-luns",
            Self::Inquiry => "inquiry",
            Self::ReadCap => "readcap",
        }
    }

    /// The command named `name`, if it is one.
    pub fn from_name(name: &str) -> Option<Self> {
        [
            Self::Discover,
            Self::ReportLuns,
            Self::Inquiry,
            Self::ReadCap,
        ]
        .into_iter()
        .find(|c| c.name() == name)
    }
}

/// Discovered targets as `iscsi-ls` lists them: `Target:IQN Portal:HOST:PORT,TPGT`, one line
/// per portal (a target without TargetAddress is listed with `Portal:` and the address asked).
pub fn format_targets(targets: &[DiscoveredTarget], asked: &str) -> String {
    let mut o = String::new();
    for t in targets {
        if t.addresses.is_empty() {
            let _ = writeln!(o, "Target:{} Portal:{asked}", t.name);
        }
        for a in &t.addresses {
            let _ = writeln!(o, "Target:{} Portal:{a}", t.name);
        }
    }
    o
}

/// REPORT LUNS as `sg_luns` prints it: the list length, then each LUN's 8 bytes in hex.
pub fn format_luns(luns: &[[u8; 8]]) -> String {
    let n = luns.len();
    let mut o = format!(
        "Lun list length = {} which implies {n} lun entr{}\nReport luns [select_report=0x0]:\n",
        n * 8,
        if n == 1 { "y" } else { "ies" }
    );
    for l in luns {
        let hex: String = l.iter().map(|b| format!("{b:02x}")).collect();
        let _ = writeln!(o, "    {hex}");
    }
    o
}

/// Standard INQUIRY as `iscsi-inq` prints it.
pub fn format_inquiry(i: &Inquiry) -> String {
    let qualifier = match i.qualifier {
        0 => "CONNECTED",
        1 => "DISCONNECTED",
        3 => "NOT_SUPPORTED",
        _ => "RESERVED",
    };
    let version = match i.version {
        0 => "NO STANDARD CLAIMED",
        3 => "SPC",
        4 => "SPC-2",
        5 => "SPC-3",
        6 => "SPC-4",
        7 => "SPC-5",
        _ => "unknown",
    };
    let b = u8::from;
    format!(
        "Peripheral Qualifier:{qualifier}\nPeripheral Device Type:{}\nRemovable:{}\n\
         Version:{} {version}\nNormACA:{} HiSup:{}\nResponseDataFormat:{}\n\
         SCCS:{} ACC:{} TPGS:{} 3PC:{} Protect:{}\nEncServ:{} MultiP:{}\nCmdQue:{}\n\
         Vendor:{}\nProduct:{}\nRevision:{}\n",
        scsi::device_type_name(i.device_type),
        b(i.removable),
        i.version,
        b(i.normaca),
        b(i.hisup),
        i.response_data_format,
        b(i.sccs),
        b(i.acc),
        i.tpgs,
        b(i.three_pc),
        b(i.protect),
        b(i.encserv),
        b(i.multip),
        b(i.cmdque),
        i.vendor,
        i.product,
        i.revision
    )
}

/// READ CAPACITY(16) as `iscsi-readcapacity16` prints it: the parameter data's fields by
/// their SBC names, bits as 0 or 1, then the total size in bytes.
pub fn format_capacity(c: &Capacity) -> String {
    format!(
        "RETURNED LOGICAL BLOCK ADDRESS:{}\nLOGICAL BLOCK LENGTH IN BYTES:{}\n\
         P_TYPE:{} PROT_EN:{}\n\
         P_I_EXPONENT:{} LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT:{}\n\
         LBPME:{} LBPRZ:{}\nLOWEST ALIGNED LOGICAL BLOCK ADDRESS:{}\nTotal size:{}\n",
        c.last_lba,
        c.block_len,
        c.p_type,
        u8::from(c.prot_en),
        c.p_i_exponent,
        c.lbppb_exponent,
        u8::from(c.lbpme),
        u8::from(c.lbprz),
        c.lowest_aligned_lba,
        c.bytes()
    )
}

/// Runs `cmd` against `url` (logging in with `recovery`'s settings and the CHAP `secret`) (`iscsi://HOST[:PORT]` is enough for `discover`), or against the
/// embedded target when `url` is `None`; returns the text to print.
///
/// # Errors
///
/// Connection, login and command failures, as a message.
pub fn run(
    cmd: InfoCommand,
    url: Option<&str>,
    initiator: &str,
    digests: Digests,
    recovery: &Recovery,
    secret: Option<Vec<u8>>,
) -> Result<String, String> {
    if cmd == InfoCommand::Discover {
        let (embedded, addr) = match url {
            Some(u) => (None, IscsiUrl::parse(u).map_err(|e| e.to_string())?.addr()),
            None => {
                let t = Target::start(TargetConfig::default())
                    .map_err(|e| format!("embedded target: {e}"))?;
                let a = t.addr().to_string();
                (Some(t), a)
            }
        };
        let targets = Session::discover(addr.as_str(), initiator, Options::default())
            .map_err(|e| format!("discovery at {addr}: {e}"))?;
        drop(embedded);
        return Ok(format_targets(&targets, &addr));
    }
    let Opened {
        target: embedded,
        client: mut c,
        lun,
        cap,
        ..
    } = crate::iscsi_cli::open(
        url,
        initiator,
        digests,
        1,
        recovery,
        secret,
        Verbose::Silent,
    )
    .map_err(|e| e.to_string())?;
    let text = match cmd {
        InfoCommand::ReportLuns => c.report_luns().map(|l| format_luns(&l)),
        InfoCommand::Inquiry => c.inquiry(lun).map(|i| format_inquiry(&i)),
        _ => Ok(format_capacity(&cap)),
    }
    .map_err(|e| format!("{}: {e}", cmd.name()))?;
    let _ = c.logout();
    drop(embedded);
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const IQN: &str = "iqn.2024-01.io.ulp-ddp:test";

    #[test]
    fn discover_lists_the_embedded_target() {
        let text = run(
            InfoCommand::Discover,
            None,
            IQN,
            Digests::NONE,
            &Recovery::default(),
            None,
        )
        .expect("discover");
        assert!(text.starts_with("Target:iqn."), "{text}");
        assert!(text.contains(" Portal:127.0.0.1:"), "{text}");
    }

    #[test]
    fn readcap_prints_every_field_as_iscsi_readcapacity16() {
        let mut d = 2047u64.to_be_bytes().to_vec();
        d.extend_from_slice(&512u32.to_be_bytes());
        d.extend_from_slice(&[0x03, 0x13, 0xC0, 0x05]);
        d.extend_from_slice(&[0; 16]);
        let c = Capacity::parse_16(&d).expect("valid data");
        assert_eq!(
            format_capacity(&c),
            "RETURNED LOGICAL BLOCK ADDRESS:2047\nLOGICAL BLOCK LENGTH IN BYTES:512\n\
             P_TYPE:1 PROT_EN:1\nP_I_EXPONENT:1 LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT:3\n\
             LBPME:1 LBPRZ:1\nLOWEST ALIGNED LOGICAL BLOCK ADDRESS:5\nTotal size:1048576\n"
        );
    }

    #[test]
    fn report_luns_inquiry_readcap_on_the_embedded_target() {
        let luns = run(
            InfoCommand::ReportLuns,
            None,
            IQN,
            Digests::NONE,
            &Recovery::default(),
            None,
        )
        .expect("report-luns");
        assert!(
            luns.starts_with("Lun list length = 8 which implies 1 lun entry\n"),
            "{luns}"
        );
        assert!(luns.ends_with("\n    0000000000000000\n"), "{luns}");
        let inq = run(
            InfoCommand::Inquiry,
            None,
            IQN,
            Digests::BOTH,
            &Recovery::default(),
            None,
        )
        .expect("inquiry");
        assert!(
            inq.starts_with(
                "Peripheral Qualifier:CONNECTED\nPeripheral Device Type:DIRECT_ACCESS\n"
            ),
            "{inq}"
        );
        assert!(
            inq.contains("\nVendor:") && inq.contains("\nProduct:"),
            "{inq}"
        );
        let cap = run(
            InfoCommand::ReadCap,
            None,
            IQN,
            Digests::NONE,
            &Recovery::default(),
            None,
        )
        .expect("readcap");
        let size = TargetConfig::default().size;
        let bl = TargetConfig::default().block_len;
        assert_eq!(
            cap,
            format!(
                "RETURNED LOGICAL BLOCK ADDRESS:{}\nLOGICAL BLOCK LENGTH IN BYTES:{bl}\n\
                 P_TYPE:0 PROT_EN:0\n\
                 P_I_EXPONENT:0 LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT:0\n\
                 LBPME:0 LBPRZ:0\nLOWEST ALIGNED LOGICAL BLOCK ADDRESS:0\nTotal size:{size}\n",
                size / u64::from(bl) - 1
            )
        );
        assert_eq!(
            InfoCommand::from_name("readcap"),
            Some(InfoCommand::ReadCap)
        );
        assert_eq!(InfoCommand::from_name("read"), None);
    }
}
