//! `podtap replay` on every capture format and link type it reads, and on broken files.
//!
//! The captures are written by these tests: the frames of `fixtures/corpus/http1/zeek_http_get.pcap`
//! (one HTTP/1.1 GET over Ethernet, IPv4) re-encapsulated in each link type, carried over IPv6 with
//! extension headers, and written as pcap (both byte orders, micro- and nanoseconds) and pcapng (both
//! byte orders, several interfaces with different link types and timestamp resolutions, several
//! sections, every packet block type). Each must give the same call. Broken files must give an error
//! naming the file and the byte offset, through the library and through the binary.
//!
//! `fixtures/replay/` holds two files made with Wireshark's tools from the same capture, so the reader
//! is not only checked against this file's own writer (see `fixtures/replay/README.md`).

use std::{
    io,
    net::{IpAddr, Ipv6Addr},
    path::{Path, PathBuf},
    process::Command,
};

use podtap::{
    app::{replay, replay_from, AppError, Summary},
    capture::pcap::PcapReadError,
    export::Sink,
    flow::FlowConfig,
    model::{Call, Request, Response},
};

#[derive(Default)]
struct Collect(Vec<Call>);

impl Sink for Collect {
    fn write(&mut self, call: &Call) -> io::Result<()> {
        self.0.push(call.clone());
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A scratch directory for the captures one test writes, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("podtap-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, bytes).expect("write capture");
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

/// One frame of the source capture.
#[derive(Clone)]
struct Frame {
    /// Nanoseconds since the epoch.
    ts: u64,
    /// The IPv4 packet (the Ethernet header removed).
    ip: Vec<u8>,
}

/// The frames of the source capture (little-endian pcap, microseconds, Ethernet, IPv4 only).
fn source_frames() -> Vec<Frame> {
    let bytes = std::fs::read(fixtures().join("corpus/http1/zeek_http_get.pcap")).expect("fixture");
    assert_eq!(&bytes[..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
    assert_eq!(
        u32::from_le_bytes(bytes[20..24].try_into().expect("present")),
        1
    );
    let mut frames = Vec::new();
    let mut at = 24;
    while at < bytes.len() {
        let field =
            |i: usize| u32::from_le_bytes(bytes[at + i..at + i + 4].try_into().expect("present"));
        let (sec, usec, caplen) = (field(0), field(4), field(8) as usize);
        let data = &bytes[at + 16..at + 16 + caplen];
        assert_eq!(&data[12..14], &[0x08, 0x00], "IPv4 over Ethernet");
        frames.push(Frame {
            ts: u64::from(sec) * 1_000_000_000 + u64::from(usec) * 1_000,
            ip: data[14..].to_vec(),
        });
        at += 16 + caplen;
    }
    assert_eq!(frames.len(), 14);
    frames
}

/// What must come out the same, whatever the encapsulation.
#[derive(Debug, PartialEq)]
struct Seen {
    time: u64,
    duration_ms: Option<f64>,
    method: String,
    path: String,
    host: Option<String>,
    status: Option<u16>,
    client: (IpAddr, u16),
    server: (IpAddr, u16),
}

fn seen(call: &Call) -> Seen {
    let Request::Http(request) = &call.request else {
        panic!("not HTTP: {call:?}")
    };
    Seen {
        time: call.time,
        duration_ms: call.duration_ms,
        method: request.method.clone(),
        path: request.path.clone(),
        host: request.host.clone(),
        status: call.response.as_ref().map(|r| match r {
            Response::Http(r) => r.status,
            other => panic!("not HTTP: {other:?}"),
        }),
        client: (call.client.ip, call.client.port),
        server: (call.server.ip, call.server.port),
    }
}

fn replay_path(path: &Path) -> Result<(Vec<Seen>, Summary), AppError> {
    let mut sink = Collect::default();
    let summary = replay(path, FlowConfig::default(), &mut sink)?;
    Ok((sink.0.iter().map(seen).collect(), summary))
}

fn replay_bytes(scratch: &Scratch, name: &str, bytes: &[u8]) -> (Vec<Seen>, Summary) {
    let path = scratch.write(name, bytes);
    replay_path(&path).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The call of the source capture, replayed as it is.
fn expected() -> Vec<Seen> {
    let (calls, _) =
        replay_path(&fixtures().join("corpus/http1/zeek_http_get.pcap")).expect("fixture");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].method, "GET");
    assert_eq!(calls[0].status, Some(200));
    calls
}

// ---- Link-layer encapsulations -------------------------------------------------------------------

const MACS: [u8; 12] = [2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];

fn ethertype(ip: &[u8]) -> [u8; 2] {
    if ip[0] >> 4 == 6 {
        [0x86, 0xdd]
    } else {
        [0x08, 0x00]
    }
}

fn ethernet(ip: &[u8]) -> Vec<u8> {
    [&MACS[..], &ethertype(ip), ip].concat()
}

/// Ethernet with the given VLAN tag types, outermost first (TCI 0x0064 etc.).
fn vlan(tags: &[[u8; 2]], ip: &[u8]) -> Vec<u8> {
    let mut frame = MACS.to_vec();
    for (i, tag) in tags.iter().enumerate() {
        frame.extend_from_slice(tag);
        frame.extend_from_slice(&[0x00, 0x64 + i as u8]);
    }
    frame.extend_from_slice(&ethertype(ip));
    frame.extend_from_slice(ip);
    frame
}

/// Linux cooked capture v1: packet type, ARPHRD_ETHER, address length and address, protocol.
fn sll(ip: &[u8]) -> Vec<u8> {
    let mut frame = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0];
    frame.extend_from_slice(&ethertype(ip));
    frame.extend_from_slice(ip);
    frame
}

/// Linux cooked capture v2: protocol, reserved, interface index, ARPHRD_ETHER, packet type, address.
fn sll2(ip: &[u8]) -> Vec<u8> {
    let mut frame = ethertype(ip).to_vec();
    frame.extend_from_slice(&[0, 0, 0, 0, 0, 3, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
    frame.extend_from_slice(ip);
    frame
}

/// BSD loopback: the address family in the writer's byte order (2 is AF_INET everywhere; AF_INET6 is
/// 10 on Linux, 24/28/30 on the BSDs).
fn null(family: [u8; 4], ip: &[u8]) -> Vec<u8> {
    [&family[..], ip].concat()
}

fn af(ip: &[u8], big: bool) -> [u8; 4] {
    let family: u32 = if ip[0] >> 4 == 6 { 24 } else { 2 };
    if big {
        family.to_be_bytes()
    } else {
        family.to_le_bytes()
    }
}

/// The same TCP segment over IPv6 (2001:db8::<IPv4 address>), behind a hop-by-hop and a destination
/// options header.
fn to_ipv6(ip4: &[u8]) -> Vec<u8> {
    let header_len = usize::from(ip4[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip4[2], ip4[3]]));
    let tcp = &ip4[header_len..total];
    let hop_by_hop = [60, 0, 1, 4, 0, 0, 0, 0]; // next: destination options; PadN
    let destination = [6, 0, 1, 4, 0, 0, 0, 0]; // next: TCP; PadN
    let payload_len = (hop_by_hop.len() + destination.len() + tcp.len()) as u16;
    let mut ip6 = vec![0x60, 0, 0, 0];
    ip6.extend_from_slice(&payload_len.to_be_bytes());
    ip6.extend_from_slice(&[0, 64]); // next header: hop-by-hop; hop limit
    ip6.extend_from_slice(&v6(&ip4[12..16]).octets());
    ip6.extend_from_slice(&v6(&ip4[16..20]).octets());
    ip6.extend_from_slice(&hop_by_hop);
    ip6.extend_from_slice(&destination);
    ip6.extend_from_slice(tcp);
    ip6
}

fn v6(ip4: &[u8]) -> Ipv6Addr {
    let mut octets = [0u8; 16];
    octets[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    octets[12..].copy_from_slice(ip4);
    Ipv6Addr::from(octets)
}

// ---- File writers ---------------------------------------------------------------------------------

struct Record {
    ts: u64,
    data: Vec<u8>,
    /// Length on the wire (more than `data` when the capture cut the frame).
    orig: usize,
}

fn encap_records(frames: &[Frame], encap: impl Fn(&[u8]) -> Vec<u8>) -> Vec<Record> {
    frames
        .iter()
        .map(|f| {
            let data = encap(&f.ip);
            Record {
                ts: f.ts,
                orig: data.len(),
                data,
            }
        })
        .collect()
}

/// Cuts every record at `snaplen` bytes, as a capture with that snapshot length would have.
fn cut(records: Vec<Record>, snaplen: usize) -> Vec<Record> {
    records
        .into_iter()
        .map(|mut r| {
            r.data.truncate(snaplen);
            r
        })
        .collect()
}

fn put16(out: &mut Vec<u8>, big: bool, v: u16) {
    out.extend_from_slice(&if big {
        v.to_be_bytes()
    } else {
        v.to_le_bytes()
    });
}

fn put32(out: &mut Vec<u8>, big: bool, v: u32) {
    out.extend_from_slice(&if big {
        v.to_be_bytes()
    } else {
        v.to_le_bytes()
    });
}

/// A pcap file: byte order, nanosecond or microsecond timestamps, link type.
fn pcap(big: bool, nanos: bool, linktype: u32, records: &[Record]) -> Vec<u8> {
    let mut out = Vec::new();
    put32(&mut out, big, if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 });
    put16(&mut out, big, 2);
    put16(&mut out, big, 4);
    put32(&mut out, big, 0);
    put32(&mut out, big, 0);
    put32(&mut out, big, 262_144);
    put32(&mut out, big, linktype);
    for r in records {
        let sec = r.ts / 1_000_000_000;
        let frac = r.ts % 1_000_000_000;
        put32(&mut out, big, sec as u32);
        put32(
            &mut out,
            big,
            if nanos { frac } else { frac / 1_000 } as u32,
        );
        put32(&mut out, big, r.data.len() as u32);
        put32(&mut out, big, r.orig as u32);
        out.extend_from_slice(&r.data);
    }
    out
}

/// A pcapng writer; blocks are appended in the order they are called.
struct PcapNg {
    big: bool,
    out: Vec<u8>,
}

/// An interface of a pcapng file: link type, `if_tsresol` (None: the default, microseconds) and
/// `if_tsoffset` in seconds.
#[derive(Clone, Copy)]
struct Iface {
    linktype: u16,
    tsresol: Option<u8>,
    tsoffset: i64,
}

impl Iface {
    fn units(&self, ts: u64) -> u64 {
        let ts = ts - (self.tsoffset as u64) * 1_000_000_000;
        match self.tsresol {
            None => ts / 1_000,
            Some(r) if r & 0x80 == 0 => {
                let per_second = 10u128.pow(u32::from(r));
                (u128::from(ts) * per_second / 1_000_000_000) as u64
            }
            Some(r) => ((u128::from(ts) << (r & 0x7f)) / 1_000_000_000) as u64,
        }
    }
}

impl PcapNg {
    fn new(big: bool) -> Self {
        let mut this = Self {
            big,
            out: Vec::new(),
        };
        this.section();
        this
    }

    fn block(&mut self, kind: u32, body: &[u8]) {
        let len = 12 + body.len().div_ceil(4) * 4;
        put32(&mut self.out, self.big, kind);
        put32(&mut self.out, self.big, len as u32);
        self.out.extend_from_slice(body);
        self.out.resize(self.out.len() + (len - 12 - body.len()), 0);
        put32(&mut self.out, self.big, len as u32);
    }

    /// A section header block (a new section: its interfaces start from 0 again).
    fn section(&mut self) {
        let mut body = Vec::new();
        put32(&mut body, self.big, 0x1a2b_3c4d);
        put16(&mut body, self.big, 1);
        put16(&mut body, self.big, 0);
        body.extend_from_slice(&u64::MAX.to_le_bytes()); // section length unknown
                                                         // shb_userappl option, then the end of options.
        self.options(&mut body, &[(4, b"podtap tests".to_vec())]);
        self.block(0x0a0d_0d0a, &body);
    }

    fn options(&self, body: &mut Vec<u8>, options: &[(u16, Vec<u8>)]) {
        for (code, value) in options {
            put16(body, self.big, *code);
            put16(body, self.big, value.len() as u16);
            body.extend_from_slice(value);
            body.resize(body.len().div_ceil(4) * 4, 0);
        }
        if !options.is_empty() {
            body.extend_from_slice(&[0, 0, 0, 0]);
        }
    }

    fn interface(&mut self, iface: Iface) {
        let mut body = Vec::new();
        put16(&mut body, self.big, iface.linktype);
        put16(&mut body, self.big, 0);
        put32(&mut body, self.big, 0);
        let mut options = vec![(2, b"eth0".to_vec())];
        if let Some(r) = iface.tsresol {
            options.push((9, vec![r]));
        }
        if iface.tsoffset != 0 {
            let v = if self.big {
                iface.tsoffset.to_be_bytes()
            } else {
                iface.tsoffset.to_le_bytes()
            };
            options.push((14, v.to_vec()));
        }
        self.options(&mut body, &options);
        self.block(1, &body);
    }

    fn enhanced(&mut self, if_id: u32, iface: &Iface, r: &Record) {
        let units = iface.units(r.ts);
        let mut body = Vec::new();
        put32(&mut body, self.big, if_id);
        put32(&mut body, self.big, (units >> 32) as u32);
        put32(&mut body, self.big, units as u32);
        put32(&mut body, self.big, r.data.len() as u32);
        put32(&mut body, self.big, r.orig as u32);
        body.extend_from_slice(&r.data);
        body.resize(body.len().div_ceil(4) * 4, 0);
        self.options(&mut body, &[(1, b"a comment".to_vec())]);
        self.block(6, &body);
    }

    /// The obsolete packet block (type 2), still written by old tools.
    fn obsolete(&mut self, if_id: u16, iface: &Iface, r: &Record) {
        let units = iface.units(r.ts);
        let mut body = Vec::new();
        put16(&mut body, self.big, if_id);
        put16(&mut body, self.big, 0);
        put32(&mut body, self.big, (units >> 32) as u32);
        put32(&mut body, self.big, units as u32);
        put32(&mut body, self.big, r.data.len() as u32);
        put32(&mut body, self.big, r.orig as u32);
        body.extend_from_slice(&r.data);
        self.block(2, &body);
    }

    fn simple(&mut self, r: &Record) {
        let mut body = Vec::new();
        put32(&mut body, self.big, r.orig as u32);
        body.extend_from_slice(&r.data);
        self.block(3, &body);
    }

    /// Blocks a reader must pass over: name resolution, interface statistics, a custom block.
    fn noise(&mut self) {
        let mut nrb = Vec::new();
        put16(&mut nrb, self.big, 1); // IPv4 record
        put16(&mut nrb, self.big, 13);
        nrb.extend_from_slice(&[192, 150, 187, 43]);
        nrb.extend_from_slice(b"bro.org\0\0");
        nrb.resize(nrb.len().div_ceil(4) * 4, 0);
        nrb.extend_from_slice(&[0, 0, 0, 0]);
        self.block(4, &nrb);
        let mut isb = Vec::new();
        put32(&mut isb, self.big, 0);
        put32(&mut isb, self.big, 0);
        put32(&mut isb, self.big, 0);
        self.block(5, &isb);
        self.block(0x0000_0bad, &[1, 2, 3, 4, 0, 0, 0, 0]);
    }
}

// ---- The same call from every encapsulation -------------------------------------------------------

#[test]
fn every_link_type_gives_the_same_call() {
    let want = expected();
    let frames = source_frames();
    let scratch = Scratch::new("linktypes");
    type Encap = Box<dyn Fn(&[u8]) -> Vec<u8>>;
    let cases: Vec<(&str, u32, Encap)> = vec![
        ("ethernet", 1, Box::new(ethernet)),
        ("vlan-8021q", 1, Box::new(|ip| vlan(&[[0x81, 0x00]], ip))),
        (
            "vlan-8021ad-qinq",
            1,
            Box::new(|ip| vlan(&[[0x88, 0xa8], [0x81, 0x00]], ip)),
        ),
        (
            "vlan-three-tags",
            1,
            Box::new(|ip| vlan(&[[0x88, 0xa8], [0x81, 0x00], [0x81, 0x00]], ip)),
        ),
        (
            "vlan-9100",
            1,
            Box::new(|ip| vlan(&[[0x91, 0x00], [0x81, 0x00]], ip)),
        ),
        ("linux-sll", 113, Box::new(sll)),
        ("linux-sll2", 276, Box::new(sll2)),
        ("raw-101", 101, Box::new(<[u8]>::to_vec)),
        ("ipv4-228", 228, Box::new(<[u8]>::to_vec)),
        (
            "null-little-endian",
            0,
            Box::new(|ip| null(af(ip, false), ip)),
        ),
        ("null-big-endian", 0, Box::new(|ip| null(af(ip, true), ip))),
        ("loop-108", 108, Box::new(|ip| null(af(ip, true), ip))),
    ];
    for (name, linktype, encap) in &cases {
        let records = encap_records(&frames, encap);
        let (calls, summary) = replay_bytes(
            &scratch,
            &format!("{name}.pcap"),
            &pcap(false, false, *linktype, &records),
        );
        assert_eq!(calls, want, "{name}");
        assert_eq!(summary.pcap.frames, 14, "{name}");
        assert_eq!(summary.pcap.tcp_segments, 14, "{name}");
        assert_eq!(summary.pcap.undecodable, 0, "{name}");
        assert_eq!(summary.pcap.not_tcp_udp, 0, "{name}");
        // One connection: the bare ACKs after both FINs do not open another.
        assert_eq!(summary.flow.connections_opened, 1, "{name}");
    }
}

#[test]
fn ipv6_with_extension_headers_gives_the_same_call() {
    let mut want = expected();
    for call in &mut want {
        for end in [&mut call.client, &mut call.server] {
            let IpAddr::V4(v4) = end.0 else { panic!() };
            end.0 = IpAddr::V6(v6(&v4.octets()));
        }
    }
    let frames: Vec<Frame> = source_frames()
        .into_iter()
        .map(|f| Frame {
            ts: f.ts,
            ip: to_ipv6(&f.ip),
        })
        .collect();
    let scratch = Scratch::new("ipv6");
    type Encap = Box<dyn Fn(&[u8]) -> Vec<u8>>;
    let cases: Vec<(&str, u32, Encap)> = vec![
        ("ethernet", 1, Box::new(ethernet)),
        (
            "vlan-qinq",
            1,
            Box::new(|ip| vlan(&[[0x88, 0xa8], [0x81, 0x00]], ip)),
        ),
        ("linux-sll", 113, Box::new(sll)),
        ("linux-sll2", 276, Box::new(sll2)),
        ("raw-101", 101, Box::new(<[u8]>::to_vec)),
        ("ipv6-229", 229, Box::new(<[u8]>::to_vec)),
        (
            "null-little-endian",
            0,
            Box::new(|ip| null(af(ip, false), ip)),
        ),
        ("loop-108", 108, Box::new(|ip| null(af(ip, true), ip))),
    ];
    for (name, linktype, encap) in &cases {
        let records = encap_records(&frames, encap);
        let (calls, summary) = replay_bytes(
            &scratch,
            &format!("ipv6-{name}.pcap"),
            &pcap(false, false, *linktype, &records),
        );
        assert_eq!(calls, want, "{name}");
        assert_eq!(summary.pcap.tcp_segments, 14, "{name}");
    }
}

#[test]
fn pcap_byte_orders_and_nanoseconds() {
    let want = expected();
    let frames = source_frames();
    let scratch = Scratch::new("pcap-variants");
    let records = encap_records(&frames, ethernet);
    for (name, big, nanos) in [
        ("le-us", false, false),
        ("be-us", true, false),
        ("le-ns", false, true),
        ("be-ns", true, true),
    ] {
        let (calls, _) = replay_bytes(
            &scratch,
            &format!("{name}.pcap"),
            &pcap(big, nanos, 1, &records),
        );
        assert_eq!(calls, want, "{name}");
    }
    // Nanoseconds are kept: shift every frame by 789 ns and the call moves by as much.
    let shifted: Vec<Record> = records
        .iter()
        .map(|r| Record {
            ts: r.ts + 789,
            data: r.data.clone(),
            orig: r.orig,
        })
        .collect();
    let (calls, _) = replay_bytes(&scratch, "ns-shift.pcap", &pcap(false, true, 1, &shifted));
    assert_eq!(calls[0].time, want[0].time + 789);
}

#[test]
fn pcapng_interfaces_resolutions_and_sections() {
    let want = expected();
    let frames = source_frames();
    let scratch = Scratch::new("pcapng");
    // Three interfaces, each with its own link type and clock: microseconds (the default), nanoseconds
    // with an offset of 1000 s, and 2^-30 s.
    let ifaces = [
        (
            Iface {
                linktype: 1,
                tsresol: None,
                tsoffset: 0,
            },
            ethernet as fn(&[u8]) -> Vec<u8>,
        ),
        (
            Iface {
                linktype: 101,
                tsresol: Some(9),
                tsoffset: 1000,
            },
            <[u8]>::to_vec as fn(&[u8]) -> Vec<u8>,
        ),
        (
            Iface {
                linktype: 276,
                tsresol: Some(0x80 | 30),
                tsoffset: 0,
            },
            sll2 as fn(&[u8]) -> Vec<u8>,
        ),
    ];
    for big in [false, true] {
        let mut file = PcapNg::new(big);
        for (iface, _) in &ifaces {
            file.interface(*iface);
        }
        file.noise();
        for (i, frame) in frames.iter().enumerate() {
            let (iface, encap) = &ifaces[i % 3];
            let data = encap(&frame.ip);
            let record = Record {
                ts: frame.ts,
                orig: data.len(),
                data,
            };
            if i == 5 {
                file.obsolete((i % 3) as u16, iface, &record);
            } else {
                file.enhanced((i % 3) as u32, iface, &record);
            }
        }
        let name = if big { "be.pcapng" } else { "le.pcapng" };
        let (calls, summary) = replay_bytes(&scratch, name, &file.out);
        assert_eq!(summary.pcap.frames, 14, "{name}");
        // 2^-30 s does not hold every microsecond exactly: allow the call's times one microsecond.
        assert_eq!(calls.len(), 1, "{name}");
        let (mut got, mut want) = (calls, expected());
        assert!(got[0].time.abs_diff(want[0].time) < 1_000, "{name}");
        assert!(
            (got[0].duration_ms.expect("present") - want[0].duration_ms.expect("present")).abs()
                < 0.002,
            "{name}"
        );
        got[0].time = 0;
        got[0].duration_ms = None;
        want[0].time = 0;
        want[0].duration_ms = None;
        assert_eq!(got, want, "{name}");
    }

    // A second section restarts the interface numbering: its interface 0 is raw IP.
    let mut file = PcapNg::new(false);
    file.interface(ifaces[0].0);
    let half = 7;
    for frame in &frames[..half] {
        let data = ethernet(&frame.ip);
        let r = Record {
            ts: frame.ts,
            orig: data.len(),
            data,
        };
        file.enhanced(0, &ifaces[0].0, &r);
    }
    file.section();
    let raw = Iface {
        linktype: 101,
        tsresol: Some(9),
        tsoffset: 0,
    };
    file.interface(raw);
    for frame in &frames[half..] {
        let r = Record {
            ts: frame.ts,
            orig: frame.ip.len(),
            data: frame.ip.clone(),
        };
        file.enhanced(0, &raw, &r);
    }
    let (calls, summary) = replay_bytes(&scratch, "sections.pcapng", &file.out);
    assert_eq!(calls, want, "two sections");
    assert_eq!(summary.pcap.undecodable, 0);

    // Simple packet blocks carry no timestamp: the call is the same but for its time.
    let mut file = PcapNg::new(false);
    file.interface(ifaces[0].0);
    for r in encap_records(&frames, ethernet) {
        file.simple(&r);
    }
    let (calls, _) = replay_bytes(&scratch, "simple.pcapng", &file.out);
    assert_eq!(calls.len(), 1);
    assert_eq!(
        (&calls[0].method, &calls[0].path, calls[0].status),
        (&want[0].method, &want[0].path, want[0].status)
    );

    // A packet naming an interface that was never described is counted, not decoded.
    let mut file = PcapNg::new(false);
    file.interface(ifaces[0].0);
    for r in encap_records(&frames, ethernet) {
        file.enhanced(0, &ifaces[0].0, &r);
    }
    let r = &encap_records(&frames, ethernet)[0];
    file.enhanced(7, &ifaces[0].0, r);
    let (calls, summary) = replay_bytes(&scratch, "no-such-interface.pcapng", &file.out);
    assert_eq!(calls, want);
    assert_eq!(summary.pcap.undecodable, 1);
}

/// Files written by Wireshark's own tools from the same capture (see `fixtures/replay/README.md`).
#[test]
fn files_written_by_editcap() {
    let want = expected();
    for name in ["zeek_http_get.pcapng", "zeek_http_get.nsec.pcap"] {
        let (calls, _) = replay_path(&fixtures().join("replay").join(name)).expect(name);
        assert_eq!(calls, want, "{name}");
    }
}

// ---- Frames the capture cut, frames that do not decode --------------------------------------------

#[test]
fn snaplen_cut_inside_a_skipped_body_loses_nothing() {
    let want = expected();
    let frames = source_frames();
    let scratch = Scratch::new("snaplen");
    // 600 bytes keep both heads (the GET is 202 bytes, the response head fits in its first segment's
    // first 534 payload bytes) and cut only body bytes, which podtap skips anyway.
    let records = cut(encap_records(&frames, ethernet), 600);
    let (calls, summary) = replay_bytes(
        &scratch,
        "snaplen-600.pcap",
        &pcap(false, false, 1, &records),
    );
    assert_eq!(calls, want);
    assert_eq!(summary.pcap.snaplen_cut, 4, "{summary:?}");
    assert_eq!(summary.flow.streams.gaps, 0, "{summary:?}");
}

#[test]
fn snaplen_cut_inside_a_head_is_a_gap_not_invented_bytes() {
    let frames = source_frames();
    let scratch = Scratch::new("snaplen-head");
    // 120 bytes cut the GET's head after 54 of its 136 bytes: the request is lost, and its response
    // must not be paired with anything.
    let records = cut(encap_records(&frames, ethernet), 120);
    let (calls, summary) = replay_bytes(
        &scratch,
        "snaplen-120.pcap",
        &pcap(false, false, 1, &records),
    );
    assert!(calls.is_empty(), "{calls:?}");
    assert_eq!(summary.pcap.snaplen_cut, 5, "{summary:?}");
    // Every byte the capture did not keep is a gap on its side (the response head was cut too).
    let missing: usize = encap_records(&frames, ethernet)
        .iter()
        .map(|r| r.data.len().saturating_sub(120))
        .sum();
    assert_eq!(
        summary.flow.streams.gap_bytes, missing as u64,
        "{summary:?}"
    );
    assert_eq!(summary.flow.parsers.malformed, 0, "{summary:?}");

    // Cut inside the TCP header: the segment cannot be placed in its stream and is counted.
    let records = cut(encap_records(&frames, ethernet), 14 + 20 + 10);
    let (calls, summary) = replay_bytes(
        &scratch,
        "snaplen-44.pcap",
        &pcap(false, false, 1, &records),
    );
    assert!(calls.is_empty());
    assert_eq!(summary.pcap.undecodable, 14, "{summary:?}");
}

#[test]
fn undecodable_and_foreign_frames_are_counted() {
    let want = expected();
    let frames = source_frames();
    let scratch = Scratch::new("undecodable");
    let mut records = encap_records(&frames, ethernet);
    let ts = records[0].ts;
    let extra = [
        // ARP.
        [&MACS[..], &[0x08, 0x06], &[0u8; 28]].concat(),
        // "IPv4" that is not: version 4, header length 2 words.
        [&MACS[..], &[0x08, 0x00, 0x42], &[0xff; 30]].concat(),
        // Too short for an Ethernet header.
        vec![1, 2, 3],
        // UDP.
        [
            &MACS[..],
            &[0x08, 0x00, 0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0],
            &[10, 0, 0, 1, 10, 0, 0, 2],
            &[0, 53, 0, 53, 0, 8, 0, 0],
        ]
        .concat(),
        // TCP whose data offset points past the segment.
        [
            &MACS[..],
            &[0x08, 0x00, 0x45, 0, 0, 44, 0, 0, 0, 0, 64, 6, 0, 0],
            &[10, 0, 0, 1, 10, 0, 0, 2],
            &[
                0, 80, 0, 81, 0, 0, 0, 1, 0, 0, 0, 0, 0xf0, 0x10, 0, 0, 0, 0, 0, 0,
            ],
            &[0; 4],
        ]
        .concat(),
    ];
    for data in extra {
        records.insert(
            1,
            Record {
                ts,
                orig: data.len(),
                data,
            },
        );
    }
    let (calls, summary) = replay_bytes(&scratch, "mixed.pcap", &pcap(false, false, 1, &records));
    assert_eq!(calls, want);
    assert_eq!(summary.pcap.frames, 19);
    assert_eq!(summary.pcap.tcp_segments, 14);
    assert_eq!(summary.pcap.undecodable, 3, "{:?}", summary.pcap);
    // ARP is neither TCP nor UDP; the UDP datagram is read (no protocol in it).
    assert_eq!(summary.pcap.not_tcp_udp, 1, "{:?}", summary.pcap);
    assert_eq!(summary.pcap.udp_datagrams, 1, "{:?}", summary.pcap);

    // A link type this reader does not know (LINKTYPE_IEEE802_11, 105): every frame counted as such.
    let records = encap_records(&frames, ethernet);
    let (calls, summary) = replay_bytes(&scratch, "wifi.pcap", &pcap(false, false, 105, &records));
    assert!(calls.is_empty());
    assert_eq!(summary.pcap.unsupported_link, 14);
}

// ---- Broken files: errors with the file and the byte offset ---------------------------------------

/// (file name, bytes, expected error: offset (None: not a capture at all), words of the reason).
fn broken_files() -> Vec<(&'static str, Vec<u8>, Option<u64>, &'static str)> {
    let frames = source_frames();
    let good = pcap(false, false, 1, &encap_records(&frames, ethernet));
    // Offsets of the records: 24, then each 16 + length.
    let mut offsets = vec![24u64];
    for r in encap_records(&frames, ethernet) {
        let last = *offsets.last().expect("present");
        offsets.push(last + 16 + r.data.len() as u64);
    }
    let mut ng = PcapNg::new(false);
    ng.interface(Iface {
        linktype: 1,
        tsresol: None,
        tsoffset: 0,
    });
    let ng_header_len = ng.out.len() as u64;
    let shb_len = PcapNg::new(false).out.len() as u64;
    let mut garbage_block = ng.out.clone();
    garbage_block.extend_from_slice(&[6, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0]);
    let mut mismatched = ng.out.clone();
    mismatched.extend_from_slice(&[6, 0, 0, 0, 32, 0, 0, 0]);
    mismatched.extend_from_slice(&[0; 20]);
    mismatched.extend_from_slice(&[36, 0, 0, 0]);
    let mut huge_caplen = good[..24].to_vec();
    huge_caplen.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f, 0, 1, 0, 0]);
    vec![
        ("empty.pcap", Vec::new(), None, "empty"),
        (
            "html.pcap",
            b"<!DOCTYPE html><html>not a capture</html>".to_vec(),
            None,
            "unknown magic number 3c21444f at byte offset 0",
        ),
        ("three-bytes.pcap", good[..3].to_vec(), None, "only 3 bytes"),
        (
            "cut-header.pcap",
            good[..10].to_vec(),
            Some(10),
            "ends inside the 24-byte pcap file header",
        ),
        (
            "cut-record-header.pcap",
            good[..offsets[3] as usize + 9].to_vec(),
            Some(offsets[3]),
            "ends inside a record header (9 of 16 bytes)",
        ),
        (
            "cut-last-record.pcap",
            good[..offsets[5] as usize + 100].to_vec(),
            Some(offsets[5]),
            "ends inside the last record (1514 captured bytes announced, 84 present)",
        ),
        (
            "huge-caplen.pcap",
            huge_caplen,
            Some(24),
            "claims 2147483647 captured bytes",
        ),
        (
            "garbage-block.pcapng",
            garbage_block,
            Some(ng_header_len),
            "length 7",
        ),
        (
            "mismatched-block.pcapng",
            mismatched,
            Some(ng_header_len),
            "length 32 at its start but 36 at its end",
        ),
        (
            "cut-block.pcapng",
            ng.out[..ng.out.len() - 6].to_vec(),
            Some(shb_len),
            "ends inside the last block",
        ),
        (
            "version-9.pcap",
            [&good[..4], &[9, 0, 4, 0], &good[8..]].concat(),
            Some(4),
            "unsupported pcap version 9.4",
        ),
    ]
}

#[test]
fn broken_files_are_errors_naming_file_and_offset() {
    let scratch = Scratch::new("broken");
    for (name, bytes, offset, words) in broken_files() {
        let path = scratch.write(name, &bytes);
        let error = replay_path(&path)
            .err()
            .unwrap_or_else(|| panic!("{name}: no error"));
        let message = error.to_string();
        assert!(message.contains(name), "{name}: {message}");
        assert!(message.contains(words), "{name}: {message}");
        match (offset, &error) {
            (None, AppError::Pcap(PcapReadError::Format { .. })) => {}
            (Some(want), AppError::Pcap(PcapReadError::Corrupt { offset, .. })) => {
                assert_eq!(*offset, want, "{name}: {message}");
                assert!(
                    message.contains(&format!("byte offset {want}")),
                    "{name}: {message}"
                );
            }
            _ => panic!("{name}: unexpected error {error:?}"),
        }
    }
}

/// Every prefix of a good capture is either read whole (cut between records) or an error naming the
/// offset of the record it cuts; never a panic, never an offset past the end.
#[test]
fn every_prefix_of_a_capture_is_handled() {
    let frames = source_frames();
    let pcap_bytes = pcap(false, false, 1, &encap_records(&frames, ethernet));
    let mut ng = PcapNg::new(true);
    ng.interface(Iface {
        linktype: 1,
        tsresol: Some(9),
        tsoffset: 0,
    });
    for r in encap_records(&frames, ethernet) {
        ng.enhanced(
            0,
            &Iface {
                linktype: 1,
                tsresol: Some(9),
                tsoffset: 0,
            },
            &r,
        );
    }
    for (kind, bytes) in [("pcap", pcap_bytes), ("pcapng", ng.out)] {
        let path = PathBuf::from(format!("prefix.{kind}"));
        for len in 0..bytes.len() {
            // A small table: the default one allocates room for 65,536 connections, 13,000 times here.
            let config = FlowConfig {
                max_connections: 16,
                ..FlowConfig::default()
            };
            let mut sink = Collect::default();
            match replay_from(&path, &bytes[..len], config, &mut sink, &mut |_| {}) {
                Ok(_) => {}
                Err(AppError::Pcap(PcapReadError::Corrupt { offset, .. })) => {
                    assert!(offset <= len as u64, "{kind} prefix {len}: offset {offset}")
                }
                Err(AppError::Pcap(PcapReadError::Format { .. })) => assert!(len < 4),
                Err(e) => panic!("{kind} prefix {len}: {e}"),
            }
        }
    }
}

// ---- Through the binary -------------------------------------------------------------------------

fn podtap(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_podtap"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run podtap")
}

#[test]
fn binary_exits_1_with_file_and_offset_on_broken_files() {
    let scratch = Scratch::new("binary");
    for (name, bytes, offset, words) in broken_files() {
        let path = scratch.write(name, &bytes);
        let out = podtap(&[
            "replay",
            path.to_str().expect("present"),
            "--output",
            "jsonl",
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(out.stdout.is_empty(), "{name}");
        assert!(
            stderr.contains(path.to_str().expect("present")),
            "{name}: {stderr}"
        );
        assert!(stderr.contains(words), "{name}: {stderr}");
        if let Some(offset) = offset {
            assert!(
                stderr.contains(&format!("byte offset {offset}")),
                "{name}: {stderr}"
            );
        }
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    }
    let missing = scratch.0.join("no-such-file.pcap");
    let out = podtap(&["replay", missing.to_str().expect("present")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no-such-file.pcap"), "{stderr}");
}

#[test]
fn binary_reports_calls_and_counted_skips() {
    let frames = source_frames();
    let scratch = Scratch::new("binary-ok");
    let mut records = cut(encap_records(&frames, ethernet), 600);
    records.insert(
        1,
        Record {
            ts: records[0].ts,
            orig: 3,
            data: vec![1, 2, 3],
        },
    );
    let path = scratch.write("ok.pcap", &pcap(false, false, 1, &records));
    for output in ["jsonl", "pretty"] {
        let out = podtap(&[
            "replay",
            path.to_str().expect("present"),
            "--output",
            output,
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert_eq!(stdout.lines().count(), 1, "{stdout}");
        assert!(stdout.contains("/download/CHANGES.bro-aux.txt"), "{stdout}");
        if output == "jsonl" {
            let record: serde_json::Value = serde_json::from_str(stdout.trim()).expect("JSON");
            assert_eq!(record["response"]["status"], 200);
        }
        let summary = stderr
            .lines()
            .find(|l| l.starts_with("podtap: summary"))
            .unwrap_or_else(|| panic!("no summary: {stderr}"));
        for counter in [
            "calls=1 ",
            "frames=15 ",
            "undecodable_frames=1 ",
            "snaplen_cut_frames=4",
        ] {
            assert!(summary.contains(counter), "{counter}: {summary}");
        }
    }
}
