//! Random TCP segment sequences through the ConnectX-7 model, the mlx5 driver, TCP reassembly
//! and the receive engine (NVMe/TCP framing): segments cut anywhere, in any order, duplicated,
//! overlapping, with bytes changed between retransmissions, or raw garbage.
//!
//! Properties: no panic; the device and the engine never disagree on framing (no
//! `BackendViolation`); every DMA write finds its buffer; every buffer comes back; and when no
//! byte was changed, the buffers hold exactly the reference data with no error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ulp_backend_mlx5::{Model, ModelConfig, Nic};
use ulp_ddp_core::testkit::{KitProtocol, Rng, Workload};
use ulp_ddp_core::{EngineOptions, Error, Event, QueueConfig, QueueId, SgBuffer, TcpSeq};
use ulp_nvme_tcp::{NVME_TCP, NvmeTcpHost};

fuzz_target!(|input: &[u8]| {
    let Some((&control, rest)) = input.split_first() else {
        return;
    };
    let (hd, dd) = (control & 1 != 0, control & 2 != 0);
    let flips = control & 4 != 0;
    let raw = control & 8 != 0;
    let (seed, ops) = if rest.len() >= 8 {
        let (s, o) = rest.split_at(8);
        (u64::from_le_bytes(s.try_into().unwrap_or([0; 8])), o)
    } else {
        (0, rest)
    };
    let mut protocol = <NvmeTcpHost as KitProtocol>::with_digests(hd, dd);
    let workload = Workload::generate(&mut protocol, &mut Rng::new(seed), 3, 70_000, false);
    let mut stream = if raw { ops.to_vec() } else { workload.stream.clone() };
    if stream.is_empty() {
        return;
    }
    let isn = u32::MAX - (seed as u32 % 200_000);
    let config = QueueConfig::new(NVME_TCP, QueueId(1))
        .with_digests(hd, dd)
        .with_queue_depth(16)
        .with_rx_seq(TcpSeq(isn));
    let mut model_config = ModelConfig::default();
    model_config.invalidate_polls = u32::from(control >> 4);
    let model = Model::with_config(model_config);
    let mut nic = Nic::new(protocol, model, config, EngineOptions::default());
    for cmd in &workload.commands {
        let segments = cmd.segments.iter().map(|&n| vec![0xEE; n]).collect();
        assert!(nic.engine_mut().setup(cmd.tag, SgBuffer::from_segments(segments)).is_ok());
    }
    let mut changed = false;
    let mut fatal = None;
    let mut errors = 0usize;
    let drain = |nic: &mut Nic<NvmeTcpHost>, errors: &mut usize| {
        let mut released = 0;
        while let Some(ev) = nic.engine_mut().poll_event() {
            match ev {
                Event::Error(_) => *errors += 1,
                Event::Released { .. } => released += 1,
                _ => {}
            }
        }
        released
    };
    let deliver = |nic: &mut Nic<NvmeTcpHost>, stream: &[u8], a: usize, b: usize| {
        match nic.deliver(TcpSeq(isn.wrapping_add(a as u32)), &stream[a..b]) {
            Ok(()) | Err(Error::Failed) => None,
            Err(e) => Some(e),
        }
    };
    let len = stream.len();
    if !raw {
        for op in ops.chunks_exact(4) {
            let start = (usize::from(op[0]) | usize::from(op[1]) << 8 | usize::from(op[2]) << 16) % len;
            if op[3] == 0 {
                if flips {
                    stream[start] ^= op[0] | 1;
                    changed = true;
                }
                continue;
            }
            let end = (start + 1 + usize::from(op[3]) * 23).min(len);
            if let Some(e) = deliver(&mut nic, &stream, start, end) {
                fatal.get_or_insert(e);
            }
            drain(&mut nic, &mut errors);
        }
    }
    // Then the whole stream in order, as TCP would end up delivering it.
    for a in (0..len).step_by(1448) {
        if let Some(e) = deliver(&mut nic, &stream, a, (a + 1448).min(len)) {
            fatal.get_or_insert(e);
        }
    }
    drain(&mut nic, &mut errors);
    assert!(
        !matches!(fatal, Some(Error::BackendViolation(_))),
        "device and engine disagree: {fatal:?}"
    );
    assert_eq!(nic.stats().dma_missed, 0);
    let total = workload.commands.len();
    let mut buffers = Vec::new();
    nic.engine_mut().teardown_all();
    for _ in 0..32 {
        while let Some(ev) = nic.engine_mut().poll_event() {
            if let Event::Released { tag, buffer, .. } = ev {
                buffers.push((tag, buffer.into_vec()));
            }
        }
    }
    assert_eq!(buffers.len(), total, "every buffer comes back");
    if !raw && !changed {
        assert!(fatal.is_none(), "clean stream failed: {fatal:?}");
        assert_eq!(errors, 0);
        buffers.sort_by_key(|(t, _)| *t);
        for (cmd, (tag, got)) in workload.commands.iter().zip(&buffers) {
            assert_eq!(cmd.tag, *tag);
            assert!(got == &cmd.data, "{tag}: wrong bytes");
        }
    }
});
