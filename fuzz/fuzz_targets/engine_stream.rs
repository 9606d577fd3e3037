//! Arbitrary bytes, cut at arbitrary points, through the receive engine (toy framing, software
//! backend): no panic, no byte outside a registered buffer's data range changes, every buffer
//! comes back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ulp_backend_sw::SwBackend;
use ulp_ddp_core::{Engine, EngineOptions, Event, Piece, QueueConfig, QueueId, SgBuffer, Tag};

use ulp_testbed::toy;

fuzz_target!(|input: &[u8]| {
    let Some((&control, rest)) = input.split_first() else {
        return;
    };
    let (hd, dd) = (control & 1 == 1, control & 2 == 2);
    let config = QueueConfig::new(toy::TOY, QueueId(0)).with_digests(hd, dd);
    let mut e = Engine::new(toy::Toy::new(hd, dd), SwBackend::new(), config, EngineOptions::default());
    for t in 0..4u32 {
        let segs = vec![vec![0xEE; 8 + t as usize * 40], vec![0xEE; 16]];
        assert!(e.setup(Tag(t), SgBuffer::from_segments(segs)).is_ok());
    }
    let mut data_ranges = Vec::new();
    // Cut the rest into pieces whose lengths come from the input itself.
    let mut at = 0;
    let step = usize::from(control >> 2).max(1);
    while at < rest.len() {
        let n = step.min(rest.len() - at);
        if e.receive(Piece::bytes(&rest[at..at + n])).is_err() {
            break;
        }
        at += n;
        while let Some(ev) = e.poll_event() {
            if let Event::Data { tag, offset, len, .. } = ev {
                data_ranges.push((tag, offset, u64::from(len)));
            }
        }
    }
    e.teardown_all();
    let mut released = 0;
    while let Some(ev) = e.poll_event() {
        match ev {
            Event::Released { tag, buffer, .. } => {
                released += 1;
                let bytes = buffer.into_vec();
                for (i, b) in bytes.iter().enumerate() {
                    let i = i as u64;
                    let inside = data_ranges
                        .iter()
                        .any(|&(t, o, l)| t == tag && i >= o && i < o + l);
                    // A data PDU cut short by the end of the input wrote part of its range
                    // without an event; every other byte must be explained by one.
                    assert!(inside || *b == 0xEE || e.is_mid_pdu());
                }
            }
            Event::Data { tag, offset, len, .. } => data_ranges.push((tag, offset, u64::from(len))),
            _ => {}
        }
    }
    assert_eq!(released, 4);
});
