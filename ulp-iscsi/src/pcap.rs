//! A pcap writer for captured iSCSI byte streams, so that Wireshark/tshark can check them.
//!
//! The two directions of one TCP connection are wrapped in Ethernet/IPv4/TCP frames with a
//! handshake, consistent sequence and acknowledgement numbers and correct lengths.

/// Which way bytes travelled.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Direction {
    /// Initiator to target.
    ToTarget,
    /// Target to initiator.
    FromTarget,
}

/// Largest TCP payload per frame.
pub const MSS: usize = 1460;

struct Side {
    port: u16,
    seq: u32,
}

/// Writes a pcap (Ethernet link type) of one TCP connection between 127.0.0.1:`client_port`
/// and 127.0.0.1:`target_port` carrying `segments` in order.
pub fn write(segments: &[(Direction, Vec<u8>)], client_port: u16, target_port: u16) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&262_144u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    let mut c = Side {
        port: client_port,
        seq: 1000,
    };
    let mut t = Side {
        port: target_port,
        seq: 5000,
    };
    let mut n = 0u32;
    // Handshake: SYN, SYN-ACK, ACK.
    frame(&mut out, &mut n, &c, &t, 0x02, &[], false);
    c.seq = c.seq.wrapping_add(1);
    frame(&mut out, &mut n, &t, &c, 0x12, &[], true);
    t.seq = t.seq.wrapping_add(1);
    frame(&mut out, &mut n, &c, &t, 0x10, &[], true);
    for (dir, bytes) in segments {
        for chunk in bytes.chunks(MSS) {
            let (from, to) = match dir {
                Direction::ToTarget => (&mut c, &t),
                Direction::FromTarget => (&mut t, &c),
            };
            frame(&mut out, &mut n, from, to, 0x18, chunk, true);
            from.seq = from.seq.wrapping_add(chunk.len() as u32);
        }
    }
    out
}

fn frame(
    out: &mut Vec<u8>,
    n: &mut u32,
    from: &Side,
    to: &Side,
    flags: u8,
    payload: &[u8],
    ack: bool,
) {
    let ip_len = 20 + 20 + payload.len();
    let mut f = Vec::with_capacity(14 + ip_len);
    f.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1, 0x08, 0x00]);
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&(*n as u16).to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&[127, 0, 0, 1]);
    ip[16..20].copy_from_slice(&[127, 0, 0, 1]);
    let sum = checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    let mut tcp = [0u8; 20];
    tcp[0..2].copy_from_slice(&from.port.to_be_bytes());
    tcp[2..4].copy_from_slice(&to.port.to_be_bytes());
    tcp[4..8].copy_from_slice(&from.seq.to_be_bytes());
    if ack {
        tcp[8..12].copy_from_slice(&to.seq.to_be_bytes());
    }
    tcp[12] = 5 << 4;
    tcp[13] = flags;
    tcp[14..16].copy_from_slice(&65535u16.to_be_bytes());
    let mut pseudo = Vec::with_capacity(12 + 20 + payload.len());
    pseudo.extend_from_slice(&[127, 0, 0, 1, 127, 0, 0, 1, 0, 6]);
    pseudo.extend_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    pseudo.extend_from_slice(&tcp);
    pseudo.extend_from_slice(payload);
    let sum = checksum(&pseudo);
    tcp[16..18].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&tcp);
    f.extend_from_slice(payload);
    *n += 1;
    // One millisecond apart, so that the frames keep their order in any tool.
    out.extend_from_slice(&(*n / 1000).to_le_bytes());
    out.extend_from_slice(&((*n % 1000) * 1000).to_le_bytes());
    out.extend_from_slice(&(f.len() as u32).to_le_bytes());
    out.extend_from_slice(&(f.len() as u32).to_le_bytes());
    out.extend_from_slice(&f);
}

fn checksum(b: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in b.chunks(2) {
        let w = u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]);
        sum += u32::from(w);
    }
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_and_sequence_numbers() {
        let segs = vec![
            (Direction::ToTarget, vec![1u8; 3000]),
            (Direction::FromTarget, vec![2u8; 10]),
        ];
        let p = write(&segs, 40000, 3260);
        assert_eq!(&p[..4], &0xa1b2_c3d4u32.to_le_bytes());
        // 3 handshake frames + 3 frames for 3000 bytes + 1 frame.
        let mut at = 24;
        let mut frames = Vec::new();
        while at < p.len() {
            let len = u32::from_le_bytes(p[at + 8..at + 12].try_into().unwrap()) as usize;
            frames.push(p[at + 16..at + 16 + len].to_vec());
            at += 16 + len;
        }
        assert_eq!(frames.len(), 7);
        let seq = |f: &Vec<u8>| u32::from_be_bytes(f[38..42].try_into().unwrap());
        assert_eq!(seq(&frames[4]), seq(&frames[3]) + MSS as u32);
        assert_eq!(
            u16::from_be_bytes([frames[3][16], frames[3][17]]) as usize,
            40 + MSS
        );
        // The target's data acknowledges everything the initiator sent.
        let ack = u32::from_be_bytes(frames[6][42..46].try_into().unwrap());
        assert_eq!(ack, seq(&frames[5]) + (3000 - 2 * MSS) as u32);
        assert_eq!(checksum(&frames[3][14..34]), 0);
    }
}
