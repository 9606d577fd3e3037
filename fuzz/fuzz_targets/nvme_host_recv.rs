//! The host's receive path: a connected queue with a read and a write outstanding gets
//! arbitrary controller bytes, cut into arbitrary pieces. Never a panic; buffers come back
//! whole; after close every buffer is released.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ulp_backend_sw::SwBackend;
use ulp_ddp_core::SansIo;
use ulp_ddp_core::{QueueId, SgBuffer};
use ulp_nvme_tcp::wire::{IcRespRepr, Pda};
use ulp_nvme_tcp::{Connection, ConnectionConfig, Data, Event, nvme};

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let digests = ulp_nvme_tcp::wire::digests_from_dgst(control & 3);
    let piece = usize::from(control >> 2) + 1;
    let mut cfg = ConnectionConfig::io(QueueId(1), 1, 4, digests);
    cfg.in_capsule_limit = 512;
    let mut q = Connection::new(cfg, SwBackend::new());
    let mut out = Vec::new();
    q.transmit_all(&mut out);
    let mut ic = Vec::new();
    IcRespRepr { cpda: Pda::ZERO, digests, maxh2cdata: 4096 }
        .emit(&mut ic)
        .expect("ICResp");
    q.handle_bytes(&ic);
    let read = q.submit(nvme::read(1, 0, 16), Data::Read(SgBuffer::zeroed(8192)));
    let write = q.submit(nvme::write(1, 0, 16), Data::Write(SgBuffer::from_vec(vec![1; 8192])));
    assert_eq!((read.ok(), write.ok()), (Some(0), Some(1)));
    out.clear();
    q.transmit_all(&mut out);
    for chunk in rest.chunks(piece) {
        q.handle_bytes(chunk);
        out.clear();
        q.transmit_all(&mut out);
    }
    q.close();
    while let Some(e) = q.poll_event() {
        if let Event::Completed(c) = e
            && let Some(b) = c.buffer
        {
            assert_eq!(b.len(), 8192);
        }
    }
    assert_eq!(q.engine().registered(), 0);
    assert_eq!(q.outstanding(), 0);
});
