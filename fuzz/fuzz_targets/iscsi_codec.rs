//! Arbitrary bytes through the iSCSI codec and the text-level parsers: no panic; whatever
//! parses re-emits to bytes that parse to the same PDU.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ulp_iscsi::keys::{Negotiator, Wanted};
use ulp_iscsi::wire::{Digests, Pdu, bhs};

fuzz_target!(|input: &[u8]| {
    let Some((&control, rest)) = input.split_first() else {
        return;
    };
    let d = Digests {
        header: control & 1 == 1,
        data: control & 2 == 2,
    };
    let _ = bhs::frame(rest, d);
    if let Ok(pdu) = Pdu::parse(rest, d) {
        let mut out = vec![0u8; rest.len() + 64];
        let n = pdu.emit(&mut out, d).expect("a parsed PDU re-emits");
        assert_eq!(Pdu::parse(&out[..n], d).expect("re-parses"), pdu);
    }
    let mut n = Negotiator::new(Wanted::default(), control & 4 == 4);
    n.offer();
    if n.on_response(rest).is_ok() {
        let _ = n.finish();
    }
    if let Ok(s) = core::str::from_utf8(rest) {
        let _ = ulp_iscsi::chap::decode_binary(s);
        let _ = ulp_iscsi::url::IscsiUrl::parse(s);
    }
    let _ = ulp_iscsi::scsi::Sense::parse(rest);
    let _ = ulp_iscsi::scsi::parse_report_luns(rest);
});
