//! Reads 1 MiB from LUN 0 of an iSCSI target into your own buffer, the data landing in it
//! straight from the socket: `iscsi_read iscsi://HOST[:PORT]/IQN/LUN` or `iscsi_read HOST:PORT IQN`.
use ulp_iscsi::{ConnectionConfig, IscsiUrl, Lun, Options, Session, SgBuffer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (addr, iqn, lun) = match args.as_slice() {
        [url] => {
            let u = IscsiUrl::parse(url)?;
            (u.addr(), u.target, u.lun)
        }
        [addr, iqn] => (addr.clone(), iqn.clone(), 0),
        _ => return Err("usage: iscsi_read iscsi://HOST[:PORT]/IQN/LUN | HOST:PORT IQN".into()),
    };
    let config = ConnectionConfig::normal("iqn.2024-01.io.ulp-ddp:example", &iqn);
    let mut session = Session::connect(addr.as_str(), config, Options::default())?;
    let buffer = SgBuffer::zeroed(1 << 20); // your own buffer: 1 MiB
    let data = session
        .read(Lun::single_level(u8::try_from(lun)?), 0, buffer)?
        .into_vec();
    let nonzero = data.iter().filter(|&&b| b != 0).count();
    println!(
        "read {} bytes from LBA 0 of {iqn} LUN {lun}: {nonzero} non-zero",
        data.len()
    );
    session.logout()?;
    Ok(())
}
