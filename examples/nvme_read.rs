//! Reads 1 MiB from an NVMe/TCP namespace into a buffer of your own (blocking driver).
//!
//! `cargo run -p ulp-ddp-examples --example nvme_read -- nvme-tcp://127.0.0.1:4420/NQN/1`
use ulp_nvme_tcp::{Controller, NvmeTcpUrl, Options, SgBuffer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .ok_or("usage: nvme_read nvme-tcp://HOST[:PORT]/NQN/NSID")?;
    let url = NvmeTcpUrl::parse(&url)?;
    let mut options = Options::new(&url.subnqn);
    options.nsid = url.nsid;
    let mut ctrl = Controller::connect(url.addr(), &options)?;
    let buffer = SgBuffer::zeroed(1 << 20); // yours: the data is read straight into it
    let data = ctrl.read(0, buffer)?.into_vec(); // LBA 0, 1 MiB; the buffer comes back
    println!("read {} bytes at LBA 0 of {}", data.len(), url.subnqn);
    println!("first 16: {:02x?}", &data[..16]);
    ctrl.close()?; // clean shutdown (CC.SHN)
    Ok(())
}
