//! Reads 1 MiB from an NVMe/TCP namespace into a buffer of your own (blocking driver).
//!
//! `cargo run -p ulp-ddp-examples --example nvme_read -- nvme-tcp://127.0.0.1:4420/NQN`
//! (or `-- 127.0.0.1:4420 NQN`)
use ulp_nvme_tcp::{Controller, Options, SgBuffer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (addr, nqn) = ulp_ddp_examples::nvme_args()?;
    let mut ctrl = Controller::connect(addr, &Options::new(&nqn))?;
    let buffer = SgBuffer::zeroed(1 << 20); // yours: the data is read straight into it
    let data = ctrl.read(0, buffer)?.into_vec(); // LBA 0, 1 MiB; the buffer comes back
    println!("read {} bytes at LBA 0 of {nqn}", data.len());
    println!("first 16: {:02x?}", &data[..16]);
    ctrl.close()?; // clean shutdown (CC.SHN)
    Ok(())
}
