//! The tokio driver: writes 4 MiB from 8 tasks (512 KiB each, spread over 4 I/O queues),
//! reads it back, checks it, and prints the throughput of each half.
//!
//! `cargo run -p ulp-ddp-examples --example nvme_tokio -- nvme-tcp://127.0.0.1:4420/NQN`
//! (or `-- 127.0.0.1:4420 NQN`)
use std::time::Instant;

use ulp_nvme_tcp::tokio::Controller;
use ulp_nvme_tcp::{Digests, Error, NvmeTcpUrl, Options, SgBuffer};

const TASKS: u64 = 8;
const CHUNK: usize = 512 * 1024;

/// Each task's data: a pattern of its own.
fn pattern(task: u64) -> Vec<u8> {
    (0..CHUNK).map(|i| (i as u64 * 7 + task) as u8).collect()
}

/// Runs one half (write, or read and check) from `TASKS` tasks at once; returns MiB/s.
async fn half(ctrl: &Controller, write: bool) -> Result<f64, Box<dyn std::error::Error>> {
    let blocks = CHUNK as u64 / u64::from(ctrl.namespace().block_size);
    let start = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let ctrl = ctrl.clone();
            tokio::spawn(async move {
                let slba = task * blocks;
                if write {
                    ctrl.write(slba, SgBuffer::from_vec(pattern(task))).await?;
                } else if ctrl.read(slba, SgBuffer::zeroed(CHUNK)).await?.into_vec()
                    != pattern(task)
                {
                    return Err(Error::Setup(format!(
                        "task {task}: the data read back differs"
                    )));
                }
                Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok((TASKS as usize * CHUNK) as f64 / (1 << 20) as f64 / start.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .ok_or("usage: nvme_tokio nvme-tcp://HOST[:PORT]/NQN/NSID")?;
    let url = NvmeTcpUrl::parse(&url)?;
    let mut options = Options::new(&url.subnqn);
    options.nsid = url.nsid;
    options.queues = 4;
    options.digests = Digests::BOTH;
    let ctrl = Controller::connect(url.addr(), &options).await?;
    let written = half(&ctrl, true).await?;
    let read = half(&ctrl, false).await?;
    println!(
        "{TASKS} tasks over {} I/O queues, digests on: wrote 4 MiB at {written:.0} MiB/s, \
         read it back at {read:.0} MiB/s, data identical",
        ctrl.io_queues()
    );
    ctrl.close().await?;
    Ok(())
}
