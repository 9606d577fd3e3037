//! Writes 4 MiB to an iSCSI target and reads it back from 8 tokio tasks at once over one
//! session, then prints the throughput: `iscsi_tokio iscsi://HOST[:PORT]/IQN/LUN`.
use std::time::Instant;

use ulp_iscsi::tokio::Session;
use ulp_iscsi::{ConnectionConfig, Error, IscsiUrl, Lun, Options, SgBuffer};

const TOTAL: usize = 4 << 20;
const TASKS: usize = 8;
const CHUNK: usize = TOTAL / TASKS;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .ok_or("usage: iscsi_tokio iscsi://HOST[:PORT]/IQN/LUN")?;
    let u = IscsiUrl::parse(&url)?;
    let lun = Lun::single_level(u8::try_from(u.lun)?);
    let config = ConnectionConfig::normal("iqn.2024-01.io.ulp-ddp:example", &u.target);
    let session = Session::connect(u.addr(), config, Options::default()).await?;
    let block_len = session.block_len(lun).await? as usize;
    let pattern = |i: usize| {
        (0..CHUNK)
            .map(|j| (i * 31 + j / 512) as u8)
            .collect::<Vec<u8>>()
    };

    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..TASKS {
        let (session, data) = (session.clone(), pattern(i));
        tasks.push(tokio::spawn(async move {
            let lba = (i * CHUNK / block_len) as u64;
            session.write(lun, lba, SgBuffer::from_vec(data)).await?;
            Ok::<_, Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let wrote = started.elapsed();

    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..TASKS {
        let session = session.clone();
        tasks.push(tokio::spawn(async move {
            let lba = (i * CHUNK / block_len) as u64;
            let back = session.read(lun, lba, SgBuffer::zeroed(CHUNK)).await?;
            Ok::<_, Error>(back.into_vec())
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        if t.await?? != pattern(i) {
            return Err(format!("chunk {i} read back differs from what was written").into());
        }
    }
    let read = started.elapsed();

    let mib = TOTAL as f64 / f64::from(1 << 20);
    println!(
        "wrote {mib} MiB in {:.1} ms ({:.0} MiB/s), read it back in {:.1} ms ({:.0} MiB/s) from {TASKS} tasks: identical",
        wrote.as_secs_f64() * 1e3,
        mib / wrote.as_secs_f64(),
        read.as_secs_f64() * 1e3,
        mib / read.as_secs_f64(),
    );
    session.logout().await?;
    Ok(())
}
