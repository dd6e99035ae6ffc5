//! `call.pcap`: the call's SIP and RTP as sent and received, in a classic
//! pcap file (Ethernet link type) that Wireshark, tshark and sngrep open.
//!
//! We see payloads, not frames, so the Ethernet/IP/UDP/TCP headers are
//! built here (etherparse): MAC addresses are made up from the IP addresses
//! (locally administered `02:00:…`), and each TCP connection gets a
//! synthesised three-way handshake before its first segment and consistent
//! sequence/acknowledgement numbers per direction, so that Wireshark's
//! stream analysis and SIP-over-TCP reassembly work. One captured TCP
//! payload becomes one segment (split only when it cannot fit one IP packet).

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use etherparse::PacketBuilder;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, Endianness, TsResolution};

use super::model::{self, Call};
use crate::call::{Direction, LoggedMessage};
use crate::sip::Transport;
use crate::time::{duration_from_ms, from_unix_ms};

/// One datagram or TCP payload as it crossed our socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedPacket {
    pub at: SystemTime,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub protocol: CapturedProtocol,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CapturedProtocol {
    Udp,
    Tcp,
}

/// Largest frame we write; bigger than any packet we build.
const SNAPLEN: u32 = 262_144;
const TTL: u8 = 64;
const TCP_WINDOW: u16 = 65_535;
/// The most TCP payload one IPv4 packet carries (65535 − IP and TCP headers).
const MAX_TCP_SEGMENT: usize = 65_495;
/// Initial sequence numbers of the synthesised handshake.
const CLIENT_ISN: u32 = 0x1000_0000;
const SERVER_ISN: u32 = 0x2000_0000;

/// Writes `packets` (in any order; sorted by time here) to a pcap file.
pub fn write_call_pcap(path: &Path, packets: &[CapturedPacket]) -> Result<(), String> {
    let file = std::fs::File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        snaplen: SNAPLEN,
        ts_resolution: TsResolution::MicroSecond,
        endianness: Endianness::native(),
        ..PcapHeader::default()
    };
    let mut writer = PcapWriter::with_header(BufWriter::new(file), header)
        .map_err(|e| format!("cannot write the pcap header to {}: {e}", path.display()))?;
    for frame in frames(packets)? {
        let packet = PcapPacket::new(frame.timestamp, frame.data.len() as u32, &frame.data);
        writer.write_packet(&packet).map_err(|e| format!("cannot write a packet to {}: {e}", path.display()))?;
    }
    writer.into_writer().flush().map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// SIP messages as captured packets: each message's time after `started`,
/// between our `local` address and each message's peer.
pub fn sip_packets(
    messages: &[LoggedMessage],
    local: SocketAddr,
    transport: Transport,
    started: SystemTime,
) -> Vec<CapturedPacket> {
    let messages =
        messages.iter().map(|m| (m.at.since_start(), m.dir == Direction::Out, m.peer.as_str(), m.raw.as_str()));
    packets_of(messages, local, transport, started)
}

/// The SIP part of a call's capture, rebuilt from a report alone
/// (`started_unix_ms` + `t_ms`, `sip.local`, `messages[].peer`), e.g. for a
/// report.json read back later.
pub fn sip_packets_from_report(call: &Call) -> Vec<CapturedPacket> {
    let Some(local) = call.sip.local.as_deref().and_then(|l| l.parse::<SocketAddr>().ok()) else {
        return Vec::new();
    };
    let messages = call
        .sip
        .messages
        .iter()
        .map(|m| (duration_from_ms(m.t_ms), m.dir == model::Direction::Out, m.peer.as_str(), m.raw.as_str()));
    packets_of(messages, local, call.transport.into(), from_unix_ms(call.started_unix_ms))
}

/// `(time after started, outbound, peer, raw)` of each message as a captured packet.
fn packets_of<'a>(
    messages: impl Iterator<Item = (Duration, bool, &'a str, &'a str)>,
    local: SocketAddr,
    transport: Transport,
    started: SystemTime,
) -> Vec<CapturedPacket> {
    let protocol = match transport {
        Transport::Udp => CapturedProtocol::Udp,
        // The messages as they were inside TLS: the capture shows them
        // decrypted, as plain SIP over TCP.
        Transport::Tcp | Transport::Tls => CapturedProtocol::Tcp,
    };
    messages
        .filter_map(|(offset, outbound, peer, raw)| {
            let peer = peer.parse::<SocketAddr>().ok()?;
            let (src, dst) = if outbound { (local, peer) } else { (peer, local) };
            Some(CapturedPacket { at: started + offset, src, dst, protocol, payload: raw.as_bytes().to_vec() })
        })
        .collect()
}

/// One link-layer frame and when it was seen (since the Unix epoch).
struct Frame {
    timestamp: Duration,
    data: Vec<u8>,
}

fn frames(packets: &[CapturedPacket]) -> Result<Vec<Frame>, String> {
    let mut ordered: Vec<&CapturedPacket> = packets.iter().collect();
    ordered.sort_by_key(|p| p.at);
    let mut connections: HashMap<(SocketAddr, SocketAddr), TcpConnection> = HashMap::new();
    let mut out = Vec::new();
    for (index, packet) in ordered.into_iter().enumerate() {
        let describe = |e: String| {
            format!(
                "packet {} ({:?} {} → {}, {} bytes): {e}",
                index + 1,
                packet.protocol,
                packet.src,
                packet.dst,
                packet.payload.len()
            )
        };
        let timestamp = packet.at.duration_since(UNIX_EPOCH).map_err(|_| describe("time before 1970".into()))?;
        let ends = Endpoints::new(packet.src, packet.dst).map_err(describe)?;
        match packet.protocol {
            CapturedProtocol::Udp => {
                let data = ends.udp_frame(&packet.payload).map_err(describe)?;
                out.push(Frame { timestamp, data });
            }
            CapturedProtocol::Tcp => {
                let key = connection_key(packet.src, packet.dst);
                let connection = match connections.get_mut(&key) {
                    Some(c) => c,
                    None => {
                        // The first sender is taken to be the one who connected.
                        for segment in TcpConnection::handshake(&ends) {
                            out.push(Frame { timestamp, data: segment.map_err(describe)? });
                        }
                        connections.entry(key).or_insert(TcpConnection::new(packet.src))
                    }
                };
                for chunk in packet.payload.chunks(MAX_TCP_SEGMENT) {
                    let (seq, ack) = connection.advance(packet.src, chunk.len());
                    let data = ends.tcp_frame(TcpFlags::PshAck { seq, ack }, chunk).map_err(describe)?;
                    out.push(Frame { timestamp, data });
                }
            }
        }
    }
    Ok(out)
}

/// Both directions of a connection share one key.
fn connection_key(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

/// Sequence numbers of one TCP connection, per direction.
struct TcpConnection {
    client: SocketAddr,
    /// The next sequence number the client, and the server, will send.
    client_next: u32,
    server_next: u32,
}

impl TcpConnection {
    fn new(client: SocketAddr) -> TcpConnection {
        // The SYNs took one sequence number each.
        TcpConnection { client, client_next: CLIENT_ISN.wrapping_add(1), server_next: SERVER_ISN.wrapping_add(1) }
    }

    /// SYN, SYN-ACK, ACK, with `ends` seen from the client.
    fn handshake(ends: &Endpoints) -> [Result<Vec<u8>, String>; 3] {
        let back = ends.reversed();
        [
            ends.tcp_frame(TcpFlags::Syn { seq: CLIENT_ISN }, &[]),
            back.tcp_frame(TcpFlags::SynAck { seq: SERVER_ISN, ack: CLIENT_ISN.wrapping_add(1) }, &[]),
            ends.tcp_frame(TcpFlags::Ack { seq: CLIENT_ISN.wrapping_add(1), ack: SERVER_ISN.wrapping_add(1) }, &[]),
        ]
    }

    /// (seq, ack) for `len` bytes from `sender`, and moves its sequence on.
    fn advance(&mut self, sender: SocketAddr, len: usize) -> (u32, u32) {
        let (mine, theirs) = if sender == self.client {
            (&mut self.client_next, self.server_next)
        } else {
            (&mut self.server_next, self.client_next)
        };
        let seq = *mine;
        *mine = mine.wrapping_add(len as u32);
        (seq, theirs)
    }
}

enum TcpFlags {
    Syn { seq: u32 },
    SynAck { seq: u32, ack: u32 },
    Ack { seq: u32, ack: u32 },
    PshAck { seq: u32, ack: u32 },
}

/// Source and destination of a frame, as one IP family.
#[derive(Clone, Copy)]
struct Endpoints {
    src: SocketAddr,
    dst: SocketAddr,
    ips: IpPair,
}

#[derive(Clone, Copy)]
enum IpPair {
    V4([u8; 4], [u8; 4]),
    V6([u8; 16], [u8; 16]),
}

impl Endpoints {
    fn new(src: SocketAddr, dst: SocketAddr) -> Result<Endpoints, String> {
        let as_v4 = |ip: IpAddr| match ip {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(v6) => v6.to_ipv4_mapped(),
        };
        let ips = match (src.ip(), dst.ip()) {
            (IpAddr::V6(s), IpAddr::V6(d)) => IpPair::V6(s.octets(), d.octets()),
            (s, d) => match (as_v4(s), as_v4(d)) {
                (Some(s), Some(d)) => IpPair::V4(s.octets(), d.octets()),
                _ => return Err("an IPv4 and an IPv6 address cannot share one IP packet".into()),
            },
        };
        Ok(Endpoints { src, dst, ips })
    }

    fn reversed(&self) -> Endpoints {
        let ips = match self.ips {
            IpPair::V4(s, d) => IpPair::V4(d, s),
            IpPair::V6(s, d) => IpPair::V6(d, s),
        };
        Endpoints { src: self.dst, dst: self.src, ips }
    }

    /// Ethernet + IP, ready for a transport header.
    fn ip_builder(&self) -> etherparse::PacketBuilderStep<etherparse::IpHeaders> {
        match self.ips {
            IpPair::V4(s, d) => PacketBuilder::ethernet2(mac_for(&s), mac_for(&d)).ipv4(s, d, TTL),
            IpPair::V6(s, d) => PacketBuilder::ethernet2(mac_for(&s), mac_for(&d)).ipv6(s, d, TTL),
        }
    }

    fn udp_frame(&self, payload: &[u8]) -> Result<Vec<u8>, String> {
        let builder = self.ip_builder().udp(self.src.port(), self.dst.port());
        let mut data = Vec::with_capacity(builder.size(payload.len()));
        builder.write(&mut data, payload).map_err(|e| format!("cannot build the UDP frame: {e}"))?;
        Ok(data)
    }

    fn tcp_frame(&self, flags: TcpFlags, payload: &[u8]) -> Result<Vec<u8>, String> {
        let (sport, dport) = (self.src.port(), self.dst.port());
        let ip = self.ip_builder();
        let builder = match flags {
            TcpFlags::Syn { seq } => ip.tcp(sport, dport, seq, TCP_WINDOW).syn(),
            TcpFlags::SynAck { seq, ack } => ip.tcp(sport, dport, seq, TCP_WINDOW).syn().ack(ack),
            TcpFlags::Ack { seq, ack } => ip.tcp(sport, dport, seq, TCP_WINDOW).ack(ack),
            TcpFlags::PshAck { seq, ack } => ip.tcp(sport, dport, seq, TCP_WINDOW).psh().ack(ack),
        };
        let mut data = Vec::with_capacity(builder.size(payload.len()));
        builder.write(&mut data, payload).map_err(|e| format!("cannot build the TCP frame: {e}"))?;
        Ok(data)
    }
}

/// A locally administered MAC address made from the last four bytes of an IP address.
fn mac_for(ip: &[u8]) -> [u8; 6] {
    let tail = &ip[ip.len().saturating_sub(4)..];
    let mut mac = [0x02, 0x00, 0, 0, 0, 0];
    for (slot, byte) in mac[2..].iter_mut().zip(tail) {
        *slot = *byte;
    }
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> SystemTime {
        from_unix_ms(1_700_000_000_000 + ms)
    }

    fn packet(ms: u64, src: &str, dst: &str, protocol: CapturedProtocol, payload: &[u8]) -> CapturedPacket {
        CapturedPacket {
            at: at(ms),
            src: src.parse().expect("test address"),
            dst: dst.parse().expect("test address"),
            protocol,
            payload: payload.to_vec(),
        }
    }

    fn tcp_of(frame: &Frame) -> etherparse::TcpHeader {
        let sliced = etherparse::SlicedPacket::from_ethernet(&frame.data).expect("parsable frame");
        match sliced.transport {
            Some(etherparse::TransportSlice::Tcp(t)) => t.to_header(),
            other => panic!("not TCP: {other:?}"),
        }
    }

    #[test]
    fn tcp_gets_a_handshake_and_sequence_numbers_per_direction() {
        let us = "10.0.0.1:40000";
        let them = "10.0.0.2:5060";
        let frames = frames(&[
            // Given out of order: the writer sorts by time.
            packet(5, them, us, CapturedProtocol::Tcp, b"SIP/2.0 200 OK\r\n\r\n"),
            packet(1, us, them, CapturedProtocol::Tcp, b"INVITE sip:x SIP/2.0\r\n\r\n"),
            packet(9, us, them, CapturedProtocol::Tcp, b"ACK"),
        ])
        .expect("frames");
        assert_eq!(frames.len(), 6);
        let headers: Vec<_> = frames.iter().map(tcp_of).collect();
        assert!(headers[0].syn && !headers[0].ack);
        assert!(headers[1].syn && headers[1].ack && headers[1].acknowledgment_number == CLIENT_ISN + 1);
        assert!(!headers[2].syn && headers[2].ack);
        let invite_len = b"INVITE sip:x SIP/2.0\r\n\r\n".len() as u32;
        assert_eq!((headers[3].sequence_number, headers[3].acknowledgment_number), (CLIENT_ISN + 1, SERVER_ISN + 1));
        assert_eq!(headers[3].destination_port, 5060);
        assert_eq!(
            (headers[4].sequence_number, headers[4].acknowledgment_number),
            (SERVER_ISN + 1, CLIENT_ISN + 1 + invite_len)
        );
        assert_eq!(headers[5].sequence_number, CLIENT_ISN + 1 + invite_len);
    }

    #[test]
    fn ipv6_and_mapped_addresses_work_and_mixed_families_are_refused() {
        let v6 = frames(&[packet(0, "[::1]:5060", "[::1]:5070", CapturedProtocol::Udp, b"x")]).expect("v6");
        let sliced = etherparse::SlicedPacket::from_ethernet(&v6[0].data).expect("parsable");
        assert!(matches!(sliced.net, Some(etherparse::NetSlice::Ipv6(_))));
        frames_ok(&[packet(0, "[::ffff:10.0.0.1]:1", "10.0.0.2:2", CapturedProtocol::Udp, b"x")]);
        let err = frames(&[packet(0, "[2001:db8::1]:1", "10.0.0.2:2", CapturedProtocol::Udp, b"x")])
            .err()
            .expect("mixed families");
        assert!(err.contains("packet 1") && err.contains("IPv4 and an IPv6"), "{err}");
    }

    fn frames_ok(packets: &[CapturedPacket]) {
        if let Err(e) = frames(packets) {
            panic!("{e}");
        }
    }

    #[test]
    fn an_oversized_datagram_is_an_error_not_a_panic() {
        let err = frames(&[packet(0, "10.0.0.1:1", "10.0.0.2:2", CapturedProtocol::Udp, &vec![0u8; 70_000])])
            .err()
            .expect("too big for UDP");
        assert!(err.contains("70000 bytes"), "{err}");
        // TCP splits it instead.
        let tcp =
            frames(&[packet(0, "10.0.0.1:1", "10.0.0.2:2", CapturedProtocol::Tcp, &vec![0u8; 70_000])]).expect("split");
        assert_eq!(tcp.len(), 3 + 2);
    }
}
