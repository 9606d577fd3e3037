//! NVMe/TCP codec: every parser on arbitrary bytes, with and without digests, never panics;
//! what parses re-emits to bytes that parse back to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ulp_nvme_tcp::wire::{
    C2hDataRepr, CapsuleCmdRepr, CapsuleRespRepr, Digests, H2cDataRepr, IcReqRepr, IcRespRepr,
    Layout, Pda, R2tRepr, TermReqRepr, pdu_len,
};

fuzz_target!(|data: &[u8]| {
    for digests in [Digests::NONE, Digests::BOTH] {
        let _ = pdu_len(data);
        if let Ok(l) = Layout::parse(data, digests) {
            let _ = l.data(data);
            let _ = l.verify_data_digest(data);
            let _ = l.check_alignment(Pda::MAX);
        }
        let _ = IcReqRepr::parse(data, digests);
        let _ = IcRespRepr::parse(data, digests);
        let _ = TermReqRepr::parse(data, digests);
        let _ = CapsuleCmdRepr::parse(data, digests);
        if let Ok((r, _)) = CapsuleRespRepr::parse(data, digests) {
            let mut out = Vec::new();
            r.emit(&mut out, digests).expect("re-emit CapsuleResp");
            assert_eq!(CapsuleRespRepr::parse(&out, digests).map(|p| p.0), Ok(r));
        }
        if let Ok((r, _)) = R2tRepr::parse(data, digests) {
            let mut out = Vec::new();
            r.emit(&mut out, digests).expect("re-emit R2T");
            assert_eq!(R2tRepr::parse(&out, digests).map(|p| p.0), Ok(r));
        }
        if let Ok((r, l)) = C2hDataRepr::parse(data, digests)
            && let Ok(payload) = l.data(data)
        {
            let mut out = Vec::new();
            r.emit(&mut out, digests, Pda::ZERO, payload).expect("re-emit C2HData");
            let (back, bl) = C2hDataRepr::parse(&out, digests).expect("parse back");
            assert_eq!(back, r);
            assert_eq!(bl.data(&out), Ok(payload));
            bl.verify_data_digest(&out).expect("fresh digest");
        }
        if let Ok((r, l)) = H2cDataRepr::parse(data, digests)
            && let Ok(payload) = l.data(data)
        {
            let mut out = Vec::new();
            r.emit(&mut out, digests, Pda::ZERO, payload).expect("re-emit H2CData");
            assert_eq!(H2cDataRepr::parse(&out, digests).map(|p| p.0), Ok(r));
        }
    }
});
