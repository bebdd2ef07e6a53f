//! Just enough SDP (RFC 8866) to check the audio codecs of an offer. The
//! body is never modified: media flows end to end.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

// An audio codec a trunk may allow (G.711 only: what the seed's trunks carry),
// defined here with the SDP it is read from; the trunk spec (`config`)
// re-exports it. (A `//` comment: a doc comment would enter the CRD schema.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Codec {
    /// G.711 A-law, static RTP payload type 8.
    PCMA,
    /// G.711 µ-law, static RTP payload type 0.
    PCMU,
}

impl Codec {
    pub fn static_payload_type(self) -> u8 {
        match self {
            Codec::PCMA => 8,
            Codec::PCMU => 0,
        }
    }
    pub fn encoding_name(self) -> &'static str {
        match self {
            Codec::PCMA => "PCMA",
            Codec::PCMU => "PCMU",
        }
    }
}

/// One `m=audio` section.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AudioOffer {
    /// Payload types listed on the m= line, in order.
    pub payload_types: Vec<u8>,
    /// `a=rtpmap:<pt> <ENCODING>/…` entries of that section (name uppercased).
    pub rtpmap: Vec<(u8, String)>,
}

impl AudioOffer {
    /// Encoding name for a payload type: the rtpmap entry, else the static
    /// assignment (RFC 3551) for the G.711 types.
    pub fn encoding(&self, pt: u8) -> Option<&str> {
        if let Some((_, name)) = self.rtpmap.iter().find(|(p, _)| *p == pt) {
            return Some(name);
        }
        match pt {
            0 => Some("PCMU"),
            8 => Some("PCMA"),
            _ => None,
        }
    }
}

/// Every `m=audio` section of an SDP body (tolerates CRLF or LF, and other
/// content around it, e.g. a multipart body).
pub fn audio_offers(body: &[u8]) -> Vec<AudioOffer> {
    let mut out: Vec<AudioOffer> = Vec::new();
    let mut in_audio = false;
    for line in body.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let line = String::from_utf8_lossy(line);
        if let Some(m) = line.strip_prefix("m=") {
            let mut parts = m.split_ascii_whitespace();
            in_audio = parts.next() == Some("audio");
            if in_audio {
                // port, proto, then formats
                let pts = parts
                    .skip(2)
                    .filter_map(|p| p.parse::<u8>().ok())
                    .filter(|p| *p < 128)
                    .collect();
                out.push(AudioOffer {
                    payload_types: pts,
                    rtpmap: Vec::new(),
                });
            }
        } else if in_audio && let Some(map) = line.strip_prefix("a=rtpmap:") {
            let mut it = map.trim().splitn(2, [' ', '\t']);
            let pt = it.next().and_then(|p| p.parse::<u8>().ok());
            let name = it
                .next()
                .and_then(|enc| enc.trim().split('/').next())
                .map(|n| n.to_ascii_uppercase());
            if let (Some(pt), Some(name), Some(offer)) = (pt, name, out.last_mut())
                && !name.is_empty()
            {
                offer.rtpmap.push((pt, name));
            }
        }
    }
    out
}

/// Whether the body offers at least one allowed codec in some `m=audio`
/// section. An empty body (late offer: the SDP comes in the 200/ACK) is
/// accepted; a body without any `m=audio` section is not.
pub fn offers_any(body: &[u8], allowed: &[Codec]) -> bool {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return true;
    }
    audio_offers(body).iter().any(|offer| {
        offer.payload_types.iter().any(|&pt| {
            offer.encoding(pt).is_some_and(|enc| {
                allowed
                    .iter()
                    .any(|c| c.encoding_name().eq_ignore_ascii_case(enc))
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDP: &[u8] = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
m=audio 49170 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
m=video 51372 RTP/AVP 31\r\na=rtpmap:31 H261/90000\r\n";

    #[test]
    fn parses_sections() {
        let o = audio_offers(SDP);
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].payload_types, vec![0, 8, 101]);
        assert_eq!(
            o[0].rtpmap,
            vec![
                (0, "PCMU".to_string()),
                (101, "TELEPHONE-EVENT".to_string())
            ]
        );
        assert_eq!(o[0].encoding(8), Some("PCMA"));
    }

    #[test]
    fn allowed_codecs() {
        assert!(offers_any(SDP, &[Codec::PCMA]));
        assert!(offers_any(SDP, &[Codec::PCMU]));
        let opus = b"v=0\r\nm=audio 4000 RTP/AVP 96 101\r\na=rtpmap:96 opus/48000/2\r\n";
        assert!(!offers_any(opus, &[Codec::PCMA, Codec::PCMU]));
        let dyn_pcma = b"v=0\nm=audio 4000 RTP/AVP 96\na=rtpmap:96 pcma/8000\n";
        assert!(offers_any(dyn_pcma, &[Codec::PCMA]));
        assert!(!offers_any(dyn_pcma, &[Codec::PCMU]));
        assert!(offers_any(b"", &[Codec::PCMA]));
        assert!(offers_any(b"\r\n", &[]));
        assert!(!offers_any(
            b"v=0\r\nm=video 1 RTP/AVP 31\r\n",
            &[Codec::PCMA]
        ));
        assert!(!offers_any(SDP, &[]));
        // second audio section with the allowed codec
        let two = b"m=audio 1 RTP/AVP 18\r\nm=audio 2 RTP/AVP 8\r\n";
        assert!(offers_any(two, &[Codec::PCMA]));
    }

    #[test]
    fn garbage_does_not_panic() {
        for b in [
            &b"m="[..],
            b"m=audio",
            b"m=audio 1 RTP/AVP 999 x",
            b"a=rtpmap:",
            b"\xff\xfe",
            b"m=audio 1 2 3\na=rtpmap:3",
        ] {
            let _ = audio_offers(b);
            let _ = offers_any(b, &[Codec::PCMA]);
        }
    }
}
