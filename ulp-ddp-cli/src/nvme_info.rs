//! `ulp-ddp nvme id-ctrl|list-ns`: Identify Controller and the Active Namespace ID list, printed
//! as nvme-cli prints them (`nvme id-ctrl`, `nvme list-ns`).

use std::fmt::Write as _;

use ulp_ddp_core::{Digests, SgBuffer};
use ulp_nvme_tcp::connection::Data;
use ulp_nvme_tcp::nvme::{self, ControllerInfo};

use crate::nvme_cli::{NvmeUrl as Url, Recovery};

/// C's `%#x`: `0` for zero, else `0x` and lowercase hex (what nvme-cli prints).
fn hex(v: impl Into<u64>) -> String {
    match v.into() {
        0 => "0".into(),
        v => format!("{v:#x}"),
    }
}

/// Identify Controller in `nvme id-ctrl`'s layout: a title line, then `name      : value`
/// with nvme-cli's field names, in its order, hex where it prints hex.
pub fn format_id_ctrl(c: &ControllerInfo) -> String {
    let ieee = format!("{:02x}{:02x}{:02x}", c.ieee[2], c.ieee[1], c.ieee[0]);
    let fields: [(&str, String); 42] = [
        ("vid", hex(c.vid)),
        ("ssvid", hex(c.ssvid)),
        ("sn", c.serial.clone()),
        ("mn", c.model.clone()),
        ("fr", c.firmware.clone()),
        ("rab", c.rab.to_string()),
        ("ieee", ieee),
        ("cmic", hex(c.cmic)),
        ("mdts", c.mdts.to_string()),
        ("cntlid", hex(c.cntlid)),
        ("ver", hex(c.ver)),
        ("rtd3r", hex(c.rtd3r)),
        ("rtd3e", hex(c.rtd3e)),
        ("oaes", hex(c.oaes)),
        ("ctratt", hex(c.ctratt)),
        ("cntrltype", c.cntrltype.to_string()),
        ("oacs", hex(c.oacs)),
        ("acl", c.acl.to_string()),
        ("aerl", c.aerl.to_string()),
        ("frmw", hex(c.frmw)),
        ("lpa", hex(c.lpa)),
        ("elpe", c.elpe.to_string()),
        ("npss", c.npss.to_string()),
        ("kas", c.kas.to_string()),
        ("sqes", hex(c.sqes)),
        ("cqes", hex(c.cqes)),
        ("maxcmd", c.maxcmd.to_string()),
        ("nn", c.nn.to_string()),
        ("oncs", hex(c.oncs)),
        ("fuses", hex(c.fuses)),
        ("fna", hex(c.fna)),
        ("vwc", hex(c.vwc)),
        ("awun", c.awun.to_string()),
        ("awupf", c.awupf.to_string()),
        ("sgls", hex(c.sgls)),
        ("mnan", c.mnan.to_string()),
        ("subnqn", c.subnqn.clone()),
        ("ioccsz", c.ioccsz.to_string()),
        ("iorcsz", c.iorcsz.to_string()),
        ("icdoff", c.icdoff.to_string()),
        ("fcatt", hex(c.fcatt)),
        ("msdbd", c.msdbd.to_string()),
    ];
    let mut o = String::from("NVME Identify Controller:\n");
    for (name, value) in &fields {
        let _ = writeln!(o, "{name:<10}: {value}");
    }
    o
}

/// An Active Namespace ID list as `nvme list-ns` prints it: `[   0]:0x1`, one line per NSID.
pub fn format_ns_list(list: &[u32]) -> String {
    list.iter()
        .enumerate()
        .map(|(i, nsid)| format!("[{i:4}]:{nsid:#x}\n"))
        .collect()
}

/// `nvme id-ctrl`: connects to `url` (or the embedded target) and prints the Identify
/// Controller data the bring-up read.
///
/// # Errors
///
/// Connection failures, as a message.
pub fn id_ctrl(url: Option<&Url>, digests: Digests, recovery: &Recovery) -> Result<String, String> {
    let (embedded, c, _) = crate::nvme_cli::open(
        url,
        1,
        digests,
        recovery,
        1,
        &crate::nvme_cli::TlsArgs::default(),
    )?;
    let text = format_id_ctrl(c.info());
    let _ = c.close();
    drop(embedded);
    Ok(text)
}

/// `nvme list-ns`: connects to `url` (or the embedded target), runs Identify with CNS 02h
/// (Active Namespace ID list, NSIDs above 0) and prints the list.
///
/// # Errors
///
/// Connection failures, an error status, a list out of order, as a message.
pub fn list_ns(url: Option<&Url>, digests: Digests, recovery: &Recovery) -> Result<String, String> {
    let (embedded, mut c, _) = crate::nvme_cli::open(
        url,
        1,
        digests,
        recovery,
        1,
        &crate::nvme_cli::TlsArgs::default(),
    )?;
    let done = c
        .admin()
        .run(
            nvme::identify(nvme::CNS_ACTIVE_NS_LIST, 0),
            Data::Read(SgBuffer::zeroed(nvme::IDENTIFY_LEN)),
        )
        .map_err(|e| format!("Identify (Active Namespace ID list): {e}"))?;
    if !done.status.is_success() {
        return Err(format!(
            "Identify (Active Namespace ID list) failed: {}",
            done.status
        ));
    }
    let data = done.buffer.map(SgBuffer::into_vec).unwrap_or_default();
    let list = nvme::parse_active_ns_list(&data).map_err(|e| e.to_string())?;
    let _ = c.close();
    drop(embedded);
    Ok(format_ns_list(&list))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_ctrl_of_the_embedded_target() {
        let text = id_ctrl(None, Digests::NONE, &Recovery::default()).expect("id-ctrl");
        assert!(text.starts_with("NVME Identify Controller:\n"), "{text}");
        for line in [
            "vid       : 0\n",
            "sn        : 0123456789abcdef\n",
            "mn        : ulp-ddp embedded target\n",
            "fr        : 0.1.0\n",
            "ver       : 0x10300\n",
            "sqes      : 0x66\n",
            "cqes      : 0x44\n",
            "maxcmd    : 1024\n",
            "nn        : 1\n",
            "sgls      : 0x100005\n",
            "cntrltype : 1\n",
        ] {
            assert!(text.contains(line), "{line:?} in\n{text}");
        }
        assert!(text.contains("\nsubnqn    : nqn."), "{text}");
        assert!(text.contains("\ncntlid    : "), "{text}");
    }

    #[test]
    fn list_ns_of_the_embedded_target() {
        let text = list_ns(None, Digests::BOTH, &Recovery::default()).expect("list-ns");
        assert_eq!(text, "[   0]:0x1\n");
        assert_eq!(
            format_ns_list(&[1, 2, 0x10]),
            "[   0]:0x1\n[   1]:0x2\n[   2]:0x10\n"
        );
    }

    #[test]
    fn hex_like_c() {
        assert_eq!((hex(0u8), hex(0x1b36u16)), ("0".into(), "0x1b36".into()));
    }
}
