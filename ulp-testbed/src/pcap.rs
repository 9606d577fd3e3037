//! The one pcap writer: captured byte streams of one or more TCP connections, wrapped in
//! Ethernet/IPv4/TCP frames with a handshake, consistent sequence and acknowledgement numbers,
//! correct lengths and checksums, so that Wireshark (`tshark`) can dissect them.
//!
//! ```
//! use ulp_testbed::pcap::Pcap;
//!
//! let mut p = Pcap::new();
//! let c = p.connection(40000, 3260);
//! p.push(c, true, &[1; 3000]);
//! p.push(c, false, &[2; 10]);
//! assert_eq!(p.frames(), 3 + 3 + 1);
//! let file = p.finish();
//! assert_eq!(&file[..4], &0xa1b2_c3d4u32.to_le_bytes());
//! ```

/// Largest TCP payload per frame by default.
pub const MSS: usize = 1460;

#[derive(Debug)]
struct Conn {
    client: u16,
    server: u16,
    client_seq: u32,
    server_seq: u32,
}

/// A pcap file being written.
#[derive(Debug)]
pub struct Pcap {
    out: Vec<u8>,
    frames: u32,
    mss: usize,
    conns: Vec<Conn>,
}

impl Default for Pcap {
    fn default() -> Self {
        Self::new()
    }
}

impl Pcap {
    /// An empty capture (Ethernet link type), frames of at most [`MSS`] payload bytes.
    pub fn new() -> Self {
        let mut out = Vec::new();
        out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(&4u16.to_le_bytes());
        out.extend_from_slice(&0i32.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&262_144u32.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        Self {
            out,
            frames: 0,
            mss: MSS,
            conns: Vec::new(),
        }
    }

    /// The same capture with frames of at most `mss` payload bytes (large segments, as a
    /// loopback interface with offloads would show them).
    #[must_use]
    pub fn with_mss(mut self, mss: usize) -> Self {
        self.mss = mss.max(1);
        self
    }

    /// Opens a connection between 127.0.0.1:`client_port` and 127.0.0.1:`server_port` (the
    /// three-way handshake is written); returns its index for [`push`](Self::push).
    pub fn connection(&mut self, client_port: u16, server_port: u16) -> usize {
        let mut c = Conn {
            client: client_port,
            server: server_port,
            client_seq: 1000,
            server_seq: 5000,
        };
        self.frame(c.client, c.server, c.client_seq, None, 0x02, &[]);
        c.client_seq = c.client_seq.wrapping_add(1);
        self.frame(
            c.server,
            c.client,
            c.server_seq,
            Some(c.client_seq),
            0x12,
            &[],
        );
        c.server_seq = c.server_seq.wrapping_add(1);
        self.frame(
            c.client,
            c.server,
            c.client_seq,
            Some(c.server_seq),
            0x10,
            &[],
        );
        self.conns.push(c);
        self.conns.len() - 1
    }

    /// Bytes sent on connection `conn` by the client (`from_client`) or the server, split into
    /// frames of at most the capture's MSS.
    pub fn push(&mut self, conn: usize, from_client: bool, bytes: &[u8]) {
        let Some(c) = self.conns.get(conn) else {
            return;
        };
        let (mut client_seq, mut server_seq) = (c.client_seq, c.server_seq);
        let (client, server) = (c.client, c.server);
        for chunk in bytes.chunks(self.mss) {
            if from_client {
                self.frame(client, server, client_seq, Some(server_seq), 0x18, chunk);
                client_seq = client_seq.wrapping_add(chunk.len() as u32);
            } else {
                self.frame(server, client, server_seq, Some(client_seq), 0x18, chunk);
                server_seq = server_seq.wrapping_add(chunk.len() as u32);
            }
        }
        if let Some(c) = self.conns.get_mut(conn) {
            c.client_seq = client_seq;
            c.server_seq = server_seq;
        }
    }

    /// Frames written so far.
    pub fn frames(&self) -> usize {
        self.frames as usize
    }

    /// The pcap file.
    pub fn finish(self) -> Vec<u8> {
        self.out
    }

    fn frame(&mut self, src: u16, dst: u16, seq: u32, ack: Option<u32>, flags: u8, payload: &[u8]) {
        let ip_len = 20 + 20 + payload.len();
        let mut f = Vec::with_capacity(14 + ip_len);
        f.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1, 0x08, 0x00]);
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&(self.frames as u16).to_be_bytes());
        ip[6] = 0x40;
        ip[8] = 64;
        ip[9] = 6;
        ip[12..16].copy_from_slice(&[127, 0, 0, 1]);
        ip[16..20].copy_from_slice(&[127, 0, 0, 1]);
        let sum = checksum(&ip);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        f.extend_from_slice(&ip);
        let mut tcp = [0u8; 20];
        tcp[0..2].copy_from_slice(&src.to_be_bytes());
        tcp[2..4].copy_from_slice(&dst.to_be_bytes());
        tcp[4..8].copy_from_slice(&seq.to_be_bytes());
        if let Some(ack) = ack {
            tcp[8..12].copy_from_slice(&ack.to_be_bytes());
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
        self.frames += 1;
        let n = self.frames;
        // One millisecond apart, so that the frames keep their order in any tool.
        self.out.extend_from_slice(&(n / 1000).to_le_bytes());
        self.out
            .extend_from_slice(&((n % 1000) * 1000).to_le_bytes());
        self.out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        self.out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        self.out.extend_from_slice(&f);
    }
}

/// A pcap of one connection between 127.0.0.1:`client_port` and 127.0.0.1:`server_port`
/// carrying `segments` in order (`true`: from the client).
pub fn write<'a>(
    segments: impl IntoIterator<Item = (bool, &'a [u8])>,
    client_port: u16,
    server_port: u16,
) -> Vec<u8> {
    let mut p = Pcap::new();
    let c = p.connection(client_port, server_port);
    for (from_client, bytes) in segments {
        p.push(c, from_client, bytes);
    }
    p.finish()
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

    fn frames(p: &[u8]) -> Vec<Vec<u8>> {
        let mut at = 24;
        let mut frames = Vec::new();
        while at < p.len() {
            let len = u32::from_le_bytes(p[at + 8..at + 12].try_into().unwrap()) as usize;
            frames.push(p[at + 16..at + 16 + len].to_vec());
            at += 16 + len;
        }
        frames
    }

    #[test]
    fn lengths_and_sequence_numbers() {
        let p = write(
            [(true, &[1u8; 3000][..]), (false, &[2u8; 10][..])],
            40000,
            3260,
        );
        assert_eq!(&p[..4], &0xa1b2_c3d4u32.to_le_bytes());
        // 3 handshake frames + 3 frames for 3000 bytes + 1 frame.
        let frames = frames(&p);
        assert_eq!(frames.len(), 7);
        let seq = |f: &Vec<u8>| u32::from_be_bytes(f[38..42].try_into().unwrap());
        assert_eq!(seq(&frames[4]), seq(&frames[3]) + MSS as u32);
        assert_eq!(
            u16::from_be_bytes([frames[3][16], frames[3][17]]) as usize,
            40 + MSS
        );
        // The server's data acknowledges everything the client sent.
        let ack = u32::from_be_bytes(frames[6][42..46].try_into().unwrap());
        assert_eq!(ack, seq(&frames[5]) + (3000 - 2 * MSS) as u32);
        assert_eq!(checksum(&frames[3][14..34]), 0);
    }

    #[test]
    fn connections_keep_their_own_sequence_numbers() {
        let mut p = Pcap::new().with_mss(16 * 1024);
        let a = p.connection(40000, 4420);
        let b = p.connection(40001, 4420);
        p.push(a, true, &[1; 100]);
        p.push(b, true, &[2; 20_000]);
        p.push(a, true, &[3; 10]);
        assert_eq!(p.frames(), 3 + 3 + 1 + 2 + 1);
        let frames = frames(&p.finish());
        let seq = |f: &Vec<u8>| u32::from_be_bytes(f[38..42].try_into().unwrap());
        // Connection a: 100 bytes at 1001, then 10 more at 1101.
        assert_eq!(seq(&frames[6]), 1001);
        assert_eq!(seq(&frames[9]), 1101);
        // Connection b: a 16 KiB frame, then the rest.
        assert_eq!(seq(&frames[8]), 1001 + 16 * 1024);
    }
}
