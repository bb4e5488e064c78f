//! pcap and pcapng captures (`tcpdump -w`, Wireshark): packets read with `pcap-parser`, their
//! layers with `etherparse`, each TCP direction reassembled by sequence number, and the HTTP/1.1
//! messages on the given port read with `httparse`. The check is the first POST with an XML
//! body; its reply is the response in the same position on the way back.

use std::collections::HashMap;
use std::net::IpAddr;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use pcap_parser::{PcapBlockOwned, PcapError};
use ucupdate_protocol::dialect::learn::Exchange;

use super::{path_of, Capture, CaptureError};

type FlowKey = (IpAddr, u16, IpAddr, u16);

#[derive(Default)]
struct Flow {
    segments: Vec<(u32, Vec<u8>)>,
    syn: Option<u32>,
    /// A packet of this flow was cut by the snap length.
    clipped: bool,
}

pub fn read(bytes: &[u8], port: u16) -> Result<Capture, CaptureError> {
    let mut notes = Vec::new();
    let mut flows: HashMap<FlowKey, Flow> = HashMap::new();
    let mut tls_seen = false;
    let mut reader = pcap_parser::create_reader(1 << 20, bytes)
        .map_err(|e| CaptureError::Format(format!("not a pcap/pcapng file: {e:?}")))?;
    let mut linktypes: Vec<i32> = Vec::new();
    let mut legacy_link = 1;
    let mut stalled_at = None;
    loop {
        match reader.next() {
            Ok((offset, block)) => {
                let packet: Option<(i32, &[u8], bool)> = match &block {
                    PcapBlockOwned::LegacyHeader(h) => {
                        legacy_link = h.network.0;
                        None
                    }
                    PcapBlockOwned::Legacy(b) => Some((legacy_link, b.data, b.caplen < b.origlen)),
                    PcapBlockOwned::NG(pcap_parser::Block::InterfaceDescription(idb)) => {
                        linktypes.push(idb.linktype.0);
                        None
                    }
                    PcapBlockOwned::NG(pcap_parser::Block::EnhancedPacket(epb)) => {
                        let link = linktypes.get(epb.if_id as usize).copied().unwrap_or(1);
                        let data = &epb.data[..(epb.caplen as usize).min(epb.data.len())];
                        Some((link, data, epb.caplen < epb.origlen))
                    }
                    PcapBlockOwned::NG(pcap_parser::Block::SimplePacket(spb)) => {
                        Some((linktypes.first().copied().unwrap_or(1), spb.data, false))
                    }
                    PcapBlockOwned::NG(_) => None,
                };
                if let Some((link, data, clipped)) = packet {
                    add_packet(&mut flows, link, data, clipped, port, &mut tls_seen);
                }
                reader.consume(offset);
            }
            Err(PcapError::Eof) => break,
            Err(PcapError::Incomplete(_)) => {
                // Everything read: a clean end. Else more may fit after a refill; a second
                // incomplete block at the same place means the file is cut in the middle of it.
                if reader.consumed() >= bytes.len() {
                    break;
                }
                if stalled_at == Some(reader.consumed()) || reader.refill().is_err() {
                    notes.push("the capture file ends in the middle of a packet (cut off)".into());
                    break;
                }
                stalled_at = Some(reader.consumed());
            }
            Err(PcapError::UnexpectedEof) => {
                notes.push("the capture file ends in the middle of a packet (cut off)".into());
                break;
            }
            Err(e) => return Err(CaptureError::Format(format!("bad capture file: {e:?}"))),
        }
    }
    let to_server: Vec<(&FlowKey, &Flow)> = flows.iter().filter(|(k, _)| k.3 == port).collect();
    if to_server.is_empty() {
        let hint = if tls_seen {
            format!(": it holds only encrypted traffic (port 443); capture the phone's plain-HTTP check on port {port}")
        } else {
            format!(": no TCP traffic to port {port} (pass --port for another one)")
        };
        return Err(CaptureError::NoCheck { hint });
    }
    let mut keys: Vec<&FlowKey> = to_server.iter().map(|(k, _)| *k).collect();
    keys.sort_by_key(|k| (k.0, k.1));
    for key in keys {
        let (client_bytes, client_gap) = stream(&flows[key]);
        let requests = requests(&client_bytes);
        let Some(index) = requests.iter().position(|r| {
            r.method.eq_ignore_ascii_case("POST")
                && (r.cut || r.body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<'))
        }) else {
            continue;
        };
        let request = &requests[index];
        if request.cut || client_gap && request.body.is_empty() {
            return Err(CaptureError::Truncated(
                "the check's body is cut off (a packet missing or clipped: capture with `tcpdump -s 0`)".into(),
            ));
        }
        let back = (key.2, key.3, key.0, key.1);
        let Some(flow) = flows.get(&back) else {
            return Err(CaptureError::NoReply);
        };
        let (server_bytes, _) = stream(flow);
        let responses = responses(&server_bytes);
        let Some(response) = responses.get(index) else {
            return Err(CaptureError::NoReply);
        };
        if response.cut {
            return Err(CaptureError::Truncated(
                "the reply's body is cut off (a packet missing or clipped: capture with `tcpdump -s 0`)".into(),
            ));
        }
        if flows.values().any(|f| f.clipped) {
            notes.push("some packets were clipped by the snap length".into());
        }
        for r in &requests {
            if r.method.eq_ignore_ascii_case("GET") && r.path.contains("DeviceUpdateFiles") {
                notes.push(format!("download seen: GET {}", r.path));
            }
        }
        return Ok(Capture {
            exchange: Exchange {
                method: request.method.clone(),
                path: path_of(&request.path),
                headers: request.headers.clone(),
                request: request.body.clone(),
                reply: response.body.clone(),
            },
            notes,
        });
    }
    Err(CaptureError::NoCheck {
        hint: format!(": HTTP on port {port}, but no POST with an XML body"),
    })
}

fn add_packet(
    flows: &mut HashMap<FlowKey, Flow>,
    link: i32,
    data: &[u8],
    clipped: bool,
    port: u16,
    tls_seen: &mut bool,
) {
    let sliced = match link {
        1 => SlicedPacket::from_ethernet(data),
        113 => SlicedPacket::from_linux_sll(data),
        // BSD loopback: a 4-byte address family, then IP.
        0 | 108 => data
            .get(4..)
            .map_or(SlicedPacket::from_ip(&[]), SlicedPacket::from_ip),
        _ => SlicedPacket::from_ip(data),
    };
    let Ok(p) = sliced else { return };
    let (src, dst): (IpAddr, IpAddr) = match &p.net {
        Some(NetSlice::Ipv4(v4)) => (
            v4.header().source_addr().into(),
            v4.header().destination_addr().into(),
        ),
        Some(NetSlice::Ipv6(v6)) => (
            v6.header().source_addr().into(),
            v6.header().destination_addr().into(),
        ),
        None => return,
    };
    let Some(TransportSlice::Tcp(tcp)) = &p.transport else {
        return;
    };
    let (sp, dp) = (tcp.source_port(), tcp.destination_port());
    if sp == 443 || dp == 443 {
        *tls_seen = true;
    }
    if sp != port && dp != port {
        return;
    }
    let flow = flows.entry((src, sp, dst, dp)).or_default();
    flow.clipped |= clipped;
    if tcp.syn() {
        flow.syn = Some(tcp.sequence_number());
    }
    let payload = tcp.payload();
    if !payload.is_empty() {
        flow.segments
            .push((tcp.sequence_number(), payload.to_vec()));
    }
}

/// One direction's bytes in sequence order (retransmissions dropped); `true` when a gap was
/// found (a lost or uncaptured segment).
fn stream(flow: &Flow) -> (Vec<u8>, bool) {
    let base = flow
        .syn
        .map(|s| s.wrapping_add(1))
        .or_else(|| flow.segments.iter().map(|(s, _)| *s).min())
        .unwrap_or(0);
    let mut segments: Vec<(u32, &[u8])> = flow
        .segments
        .iter()
        .map(|(s, d)| (s.wrapping_sub(base), d.as_slice()))
        .collect();
    segments.sort_by_key(|(o, _)| *o);
    let mut out = Vec::new();
    let mut gap = flow.clipped;
    for (offset, data) in segments {
        let offset = offset as usize;
        let next = out.len();
        if offset > next {
            gap = true;
            break;
        }
        let end = offset + data.len();
        if end > next {
            out.extend_from_slice(&data[next - offset..]);
        }
    }
    (out, gap)
}

struct Message {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// The body (or the head) is shorter than it says.
    cut: bool,
}

fn requests(bytes: &[u8]) -> Vec<Message> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&bytes[at..]) {
            Ok(httparse::Status::Complete(n)) => {
                let hs = owned(req.headers);
                let (body, used, cut) = body(&hs, &bytes[at + n..], false);
                out.push(Message {
                    method: req.method.unwrap_or("").to_owned(),
                    path: req.path.unwrap_or("/").to_owned(),
                    headers: hs,
                    body,
                    cut,
                });
                at += n + used;
            }
            _ => break,
        }
    }
    out
}

fn responses(bytes: &[u8]) -> Vec<Message> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&bytes[at..]) {
            Ok(httparse::Status::Complete(n)) => {
                let hs = owned(resp.headers);
                let (body, used, cut) = body(&hs, &bytes[at + n..], true);
                out.push(Message {
                    method: String::new(),
                    path: resp.code.map(|c| c.to_string()).unwrap_or_default(),
                    headers: hs,
                    body,
                    cut,
                });
                at += n + used;
            }
            Ok(httparse::Status::Partial) => {
                out.push(Message {
                    method: String::new(),
                    path: String::new(),
                    headers: Vec::new(),
                    body: Vec::new(),
                    cut: true,
                });
                break;
            }
            Err(_) => break,
        }
    }
    out
}

fn owned(headers: &[httparse::Header<'_>]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|h| {
            (
                h.name.to_owned(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect()
}

/// The body after a head: by Content-Length, chunked, or (a response) to the end.
fn body(headers: &[(String, String)], rest: &[u8], response: bool) -> (Vec<u8>, usize, bool) {
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    };
    if let Some(len) = get("Content-Length").and_then(|v| v.parse::<usize>().ok()) {
        let have = len.min(rest.len());
        return (rest[..have].to_vec(), have, have < len);
    }
    if get("Transfer-Encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut out = Vec::new();
        let mut at = 0;
        loop {
            let Some(line_end) = rest[at..].windows(2).position(|w| w == b"\r\n") else {
                return (out, rest.len(), true);
            };
            let size_text = String::from_utf8_lossy(&rest[at..at + line_end]).into_owned();
            let Ok(size) =
                usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            else {
                return (out, rest.len(), true);
            };
            at += line_end + 2;
            if size == 0 {
                return (out, (at + 2).min(rest.len()), false);
            }
            if at + size > rest.len() {
                out.extend_from_slice(&rest[at..]);
                return (out, rest.len(), true);
            }
            out.extend_from_slice(&rest[at..at + size]);
            at += size + 2;
        }
    }
    if response {
        (rest.to_vec(), rest.len(), false)
    } else {
        (Vec::new(), 0, false)
    }
}
