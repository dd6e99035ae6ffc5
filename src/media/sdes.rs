//! SDES keys for SRTP (RFC 4568): the `a=crypto` attributes of our offer,
//! reading the answer's, choosing the SRTP parameters, and keeping the keys
//! out of every log, report and Debug output.
//!
//! Hand-written: no maintained Rust crate parses `a=crypto` into keys except
//! `ezk-sdp-types`, which would bring a second SDP model beside ours
//! (`media::sdp`); the grammar we need is one line.
//!
//! What we offer mirrors what LiveKit SIP v1.0.0 reads
//! (`pkg/media/sdp/offer.go` `parseSRTPProfile`): `<tag> <suite>
//! inline:<base64 key||salt>` and nothing after the key. LiveKit base64-decodes
//! everything after `inline:`, so a lifetime or MKI (`|2^31|1:4`) in our offer
//! would fail its parse. Answers are read with the full RFC 4568 grammar
//! (lifetime, MKI, session parameters).

use std::borrow::Cow;
use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::{CryptoRng, RngCore};
use thiserror::Error;

/// AES-128 master key length.
pub const KEY_LEN: usize = 16;
/// Master salt length of the AES_CM suites.
pub const SALT_LEN: usize = 14;
/// `inline:` carries key || salt.
pub const MASTER_LEN: usize = KEY_LEN + SALT_LEN;

/// Whether the call offers SRTP (`--srtp`, scenario `caller.srtp`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SrtpMode {
    /// Plain RTP/AVP, no crypto lines.
    #[default]
    Off,
    /// RTP/AVP with crypto lines ("best effort SRTP"): SRTP when the answer
    /// has a crypto line, plain RTP otherwise.
    Optional,
    /// RTP/SAVP with crypto lines: an answer without SRTP fails the call.
    Required,
}

impl SrtpMode {
    pub const NAMES: &'static str = "required, optional, off";

    pub fn parse(text: &str) -> Option<SrtpMode> {
        match text.trim().to_ascii_lowercase().as_str() {
            "off" => Some(SrtpMode::Off),
            "optional" => Some(SrtpMode::Optional),
            "required" => Some(SrtpMode::Required),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SrtpMode::Off => "off",
            SrtpMode::Optional => "optional",
            SrtpMode::Required => "required",
        }
    }
}

/// The SRTP crypto suites callprobe offers and can run (RFC 4568 §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CryptoSuite {
    AesCm128HmacSha1_80,
    AesCm128HmacSha1_32,
}

impl CryptoSuite {
    /// In the order we offer them (tags 1, 2): LiveKit SIP v1.0.0 picks the
    /// first of its own list (`_80`, `_32`, AES-256 ones) that we offered.
    pub const OFFERED: [CryptoSuite; 2] = [CryptoSuite::AesCm128HmacSha1_80, CryptoSuite::AesCm128HmacSha1_32];

    pub fn name(self) -> &'static str {
        match self {
            CryptoSuite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            CryptoSuite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
        }
    }

    pub fn from_name(name: &str) -> Option<CryptoSuite> {
        CryptoSuite::OFFERED.into_iter().find(|s| s.name() == name)
    }
}

impl fmt::Display for CryptoSuite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A 30-byte SRTP master key and salt. Never printed: `Debug` shows `***`;
/// the bytes leave only through [`MasterKey::expose_base64`] (the SDP we
/// send) and [`keylog_lines`].
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey([u8; MASTER_LEN]);

impl MasterKey {
    /// A fresh key and salt from `rng`, which must be a CSPRNG (the OS's).
    pub fn random<R: RngCore + CryptoRng>(rng: &mut R) -> MasterKey {
        let mut bytes = [0u8; MASTER_LEN];
        rng.fill_bytes(&mut bytes);
        MasterKey(bytes)
    }

    pub fn from_bytes(bytes: [u8; MASTER_LEN]) -> MasterKey {
        MasterKey(bytes)
    }

    pub fn key(&self) -> &[u8] {
        &self.0[..KEY_LEN]
    }

    pub fn salt(&self) -> &[u8] {
        &self.0[KEY_LEN..]
    }

    /// The key as it goes into `inline:`: only for the SDP we send and the keylog.
    pub fn expose_base64(&self) -> String {
        STANDARD.encode(self.0)
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        // Best effort: do not leave key bytes in freed memory.
        self.0.fill(0);
    }
}

/// RFC 4568 §6.1 MKI: the index value and its length in bytes on each packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mki {
    pub value: u64,
    pub length: u8,
}

/// One `a=crypto` attribute as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoAttribute {
    pub tag: u32,
    /// The suite as written.
    pub suite_name: String,
    /// The suite, when callprobe knows it.
    pub suite: Option<CryptoSuite>,
    /// The first key's key||salt, decoded for a known suite (`None` for an
    /// unknown suite, whose key length we do not know).
    pub key: Option<MasterKey>,
    /// `|2^20` or `|1048576`, as written.
    pub lifetime: Option<String>,
    pub mki: Option<Mki>,
    /// Session parameters after the key parameters (`KDR=1`, `UNENCRYPTED_SRTP` …).
    pub session_params: Vec<String>,
}

/// Why an `a=crypto` value cannot be read. Never carries the key.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CryptoParseError {
    #[error("expected a=crypto:<tag> <suite> inline:<key>")]
    Shape,
    #[error("tag '{0}' is not a number of at most 9 digits")]
    Tag(String),
    #[error("key method '{0}' is not inline:")]
    KeyMethod(String),
    #[error("the inline key is not valid base64")]
    Base64,
    #[error("the inline key of {suite} has {got} bytes, expected {MASTER_LEN} (16-byte key, 14-byte salt)")]
    KeyLength { suite: &'static str, got: usize },
    #[error("lifetime '{0}' is not a number or 2^<n>")]
    Lifetime(String),
    #[error("MKI '{0}' is not <value>:<length 1-128>")]
    Mki(String),
    #[error("too many '|' fields after the inline key")]
    KeyInfo,
}

/// Reads an `a=crypto` attribute value (after `a=crypto:`), e.g.
/// `1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32`.
/// Of several `;`-separated keys the first is taken.
pub fn parse_crypto(value: &str) -> Result<CryptoAttribute, CryptoParseError> {
    let mut fields = value.split_whitespace();
    let (Some(tag), Some(suite_name), Some(key_params)) = (fields.next(), fields.next(), fields.next()) else {
        return Err(CryptoParseError::Shape);
    };
    let session_params: Vec<String> = fields.map(str::to_string).collect();
    if tag.is_empty() || tag.len() > 9 || !tag.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CryptoParseError::Tag(tag.to_string()));
    }
    let tag: u32 = tag.parse().map_err(|_| CryptoParseError::Tag(tag.to_string()))?;
    let first = key_params.split(';').next().unwrap_or(key_params);
    let Some((method, info)) = first.split_once(':') else {
        // Not echoed: without a method, the field may be a bare key.
        return Err(CryptoParseError::KeyMethod("(none)".into()));
    };
    if method != "inline" {
        return Err(CryptoParseError::KeyMethod(method.to_string()));
    }
    let mut parts = info.split('|');
    let key_salt = parts.next().unwrap_or("");
    let rest: Vec<&str> = parts.collect();
    let (lifetime, mki) = match rest.as_slice() {
        [] => (None, None),
        [one] if one.contains(':') => (None, Some(*one)),
        [one] => (Some(*one), None),
        [lifetime, mki] => (Some(*lifetime), Some(*mki)),
        _ => return Err(CryptoParseError::KeyInfo),
    };
    if let Some(l) = lifetime {
        let digits = l.strip_prefix("2^").unwrap_or(l);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CryptoParseError::Lifetime(l.to_string()));
        }
    }
    let mki = mki
        .map(|m| {
            let bad = || CryptoParseError::Mki(m.to_string());
            let (value, length) = m.split_once(':').ok_or_else(bad)?;
            let value: u64 = value.parse().map_err(|_| bad())?;
            let length: u8 = length.parse().map_err(|_| bad())?;
            if !(1..=128).contains(&length) {
                return Err(bad());
            }
            Ok(Mki { value, length })
        })
        .transpose()?;
    let suite = CryptoSuite::from_name(suite_name);
    let key = match suite {
        None => None,
        Some(s) => {
            let bytes = STANDARD.decode(key_salt).map_err(|_| CryptoParseError::Base64)?;
            let array: [u8; MASTER_LEN] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| CryptoParseError::KeyLength { suite: s.name(), got: bytes.len() })?;
            Some(MasterKey(array))
        }
    };
    Ok(CryptoAttribute {
        tag,
        suite_name: suite_name.to_string(),
        suite,
        key,
        lifetime: lifetime.map(str::to_string),
        mki,
        session_params,
    })
}

/// One crypto line of our offer.
#[derive(Debug, Clone)]
pub struct OfferedCrypto {
    pub tag: u32,
    pub suite: CryptoSuite,
    /// Ours: protects what we send.
    pub key: MasterKey,
}

impl OfferedCrypto {
    /// The attribute value, `1 AES_CM_128_HMAC_SHA1_80 inline:<key>` (holds the key).
    pub fn attribute_value(&self) -> String {
        format!("{} {} inline:{}", self.tag, self.suite.name(), self.key.expose_base64())
    }
}

/// The SRTP part of our offer: the mode and, unless off, one crypto line per
/// suite, each with its own fresh key.
#[derive(Debug, Clone, Default)]
pub struct SdesOffer {
    pub mode: SrtpMode,
    pub crypto: Vec<OfferedCrypto>,
}

/// What the offer and answer settled: the suite and both directions' keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrtpParams {
    pub suite: CryptoSuite,
    /// The tag of the crypto line the answer accepted.
    pub tag: u32,
    /// Ours: protects the RTP we send.
    pub local: MasterKey,
    /// The far end's: unprotects the RTP we receive.
    pub remote: MasterKey,
}

/// Why the answer's SRTP cannot be used: the call fails with this.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SdesError {
    #[error("SRTP is required (--srtp required) but the answer has no a=crypto line (m=audio {protocol}): the far end does not do SDES-SRTP")]
    NoCrypto { protocol: String },
    #[error("SRTP is required (--srtp required) but the answer's m=audio is {protocol}, not RTP/SAVP")]
    PlainProtocol { protocol: String },
    #[error("the answer's m=audio is RTP/SAVP but it has no a=crypto line: no keys to decrypt its media")]
    SavpWithoutCrypto,
    #[error("the answer's m=audio is RTP/SAVP, but callprobe offered plain RTP (--srtp off)")]
    UnofferedSavp,
    #[error("the answer's a=crypto tag(s) {answered:?} match none of the offered tags {offered:?}")]
    UnknownTag { answered: Vec<u32>, offered: Vec<u32> },
    #[error("the answer's a=crypto:{tag} names suite {answered}, but tag {tag} offered {offered}")]
    SuiteMismatch { tag: u32, answered: String, offered: &'static str },
    #[error("the answer's a=crypto:{tag} asks for an MKI on every packet, which callprobe does not support")]
    Mki { tag: u32 },
    #[error("the answer's a=crypto:{tag} has session parameters {params:?}, which callprobe does not support")]
    SessionParams { tag: u32, params: Vec<String> },
}

impl SdesOffer {
    /// No SRTP: plain RTP/AVP.
    pub fn off() -> SdesOffer {
        SdesOffer::default()
    }

    /// The offer for `mode`, with a fresh key per suite from `rng` (a CSPRNG).
    pub fn new<R: RngCore + CryptoRng>(mode: SrtpMode, rng: &mut R) -> SdesOffer {
        let crypto = match mode {
            SrtpMode::Off => Vec::new(),
            SrtpMode::Optional | SrtpMode::Required => CryptoSuite::OFFERED
                .iter()
                .zip(1..)
                .map(|(&suite, tag)| OfferedCrypto { tag, suite, key: MasterKey::random(rng) })
                .collect(),
        };
        SdesOffer { mode, crypto }
    }

    /// The m-line's transport protocol.
    pub fn protocol(&self) -> &'static str {
        match self.mode {
            SrtpMode::Required => "RTP/SAVP",
            SrtpMode::Off | SrtpMode::Optional => "RTP/AVP",
        }
    }

    /// Reads the answer's audio stream (`protocol` from its m-line and its
    /// `a=crypto` attributes) against this offer: `None` for plain RTP.
    pub fn negotiate(&self, protocol: &str, answer: &[CryptoAttribute]) -> Result<Option<SrtpParams>, SdesError> {
        let savp = protocol.eq_ignore_ascii_case("RTP/SAVP");
        if self.mode == SrtpMode::Off {
            return if savp { Err(SdesError::UnofferedSavp) } else { Ok(None) };
        }
        if answer.is_empty() {
            return match (self.mode, savp) {
                (SrtpMode::Required, _) => Err(SdesError::NoCrypto { protocol: protocol.to_string() }),
                (_, true) => Err(SdesError::SavpWithoutCrypto),
                _ => Ok(None),
            };
        }
        if self.mode == SrtpMode::Required && !savp {
            return Err(SdesError::PlainProtocol { protocol: protocol.to_string() });
        }
        // RFC 4568 §5.1.2: the answer holds one crypto line, with the tag of
        // the offered line it accepts.
        let Some((chosen, offered)) =
            answer.iter().find_map(|a| self.crypto.iter().find(|o| o.tag == a.tag).map(|o| (a, o)))
        else {
            return Err(SdesError::UnknownTag {
                answered: answer.iter().map(|a| a.tag).collect(),
                offered: self.crypto.iter().map(|o| o.tag).collect(),
            });
        };
        let (Some(suite), Some(remote)) = (chosen.suite.filter(|s| *s == offered.suite), chosen.key.clone()) else {
            return Err(SdesError::SuiteMismatch {
                tag: chosen.tag,
                answered: chosen.suite_name.clone(),
                offered: offered.suite.name(),
            });
        };
        if chosen.mki.is_some() {
            return Err(SdesError::Mki { tag: chosen.tag });
        }
        if !chosen.session_params.is_empty() {
            return Err(SdesError::SessionParams { tag: chosen.tag, params: chosen.session_params.clone() });
        }
        Ok(Some(SrtpParams { suite, tag: chosen.tag, local: offered.key.clone(), remote }))
    }
}

/// The key lines a keylog file gets for one call, one per direction:
/// `SRTP <call-id> <out|in> <suite> <base64 key||salt>` (`out`: what we
/// send, our key; `in`: what we receive, the far end's). For the generic
/// `--keylog` writer; nothing else may print these.
pub fn keylog_lines(call_id: &str, params: &SrtpParams) -> Vec<String> {
    [("out", &params.local), ("in", &params.remote)]
        .into_iter()
        .map(|(direction, key)| format!("SRTP {call_id} {direction} {} {}", params.suite, key.expose_base64()))
        .collect()
}

/// `text` (an SDP body or a whole SIP message) with the key of every
/// `a=crypto` line's `inline:` replaced by `*`s of the same length, so a
/// logged or captured message keeps its Content-Length. Borrowed when there
/// is nothing to hide.
pub fn redact_inline_keys(text: &str) -> Cow<'_, str> {
    match redact_inline_keys_bytes(text.as_bytes()) {
        Cow::Borrowed(_) => Cow::Borrowed(text),
        // Only whole bytes of a key became ASCII `*`s: still UTF-8.
        Cow::Owned(bytes) => {
            Cow::Owned(String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
        }
    }
}

/// [`redact_inline_keys`] on bytes (a SIP message, maybe not UTF-8): byte
/// for byte, so the length never changes.
pub fn redact_inline_keys_bytes(bytes: &[u8]) -> Cow<'_, [u8]> {
    const CRYPTO: &[u8] = b"a=crypto:";
    const INLINE: &[u8] = b"inline:";
    if !bytes.windows(CRYPTO.len()).any(|w| w == CRYPTO) {
        return Cow::Borrowed(bytes);
    }
    let mut out = bytes.to_vec();
    let mut start = 0;
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(CRYPTO) {
            let mut i = 0;
            while let Some(at) = line[i..].windows(INLINE.len()).position(|w| w == INLINE) {
                i += at + INLINE.len();
                while i < line.len() && !matches!(line[i], b'|' | b';') && !line[i].is_ascii_whitespace() {
                    out[start + i] = b'*';
                    i += 1;
                }
            }
        }
        start += line.len();
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_keeps_the_length_of_bytes_that_are_not_utf8() {
        let msg = b"SIP/2.0 200 OK\r\nX: \xff\xfe\r\n\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3|2^20\r\n";
        let out = redact_inline_keys_bytes(msg);
        assert_eq!(out.len(), msg.len());
        assert!(out.windows(4).all(|w| w != b"QUJD"), "the key is gone");
        assert!(out.ends_with(b"|2^20\r\n") && out.starts_with(b"SIP/2.0 200 OK\r\nX: \xff\xfe"));
    }

    /// RFC 4568 §4's example line.
    const RFC_EXAMPLE: &str = "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32";

    fn key(byte: u8) -> MasterKey {
        MasterKey::from_bytes([byte; MASTER_LEN])
    }

    fn answer_line(tag: u32, suite: &str, k: &MasterKey, extra: &str) -> CryptoAttribute {
        parse_crypto(&format!("{tag} {suite} inline:{}{extra}", k.expose_base64())).unwrap()
    }

    fn offer(mode: SrtpMode) -> SdesOffer {
        SdesOffer::new(mode, &mut rand::rngs::OsRng)
    }

    #[test]
    fn parses_the_rfc_4568_example_with_lifetime_and_mki() {
        let a = parse_crypto(RFC_EXAMPLE).unwrap();
        assert_eq!((a.tag, a.suite), (1, Some(CryptoSuite::AesCm128HmacSha1_80)));
        assert_eq!(a.lifetime.as_deref(), Some("2^20"));
        assert_eq!(a.mki, Some(Mki { value: 1, length: 32 }));
        let k = a.key.as_ref().unwrap();
        assert_eq!(k.expose_base64(), "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR");
        assert_eq!((k.key().len(), k.salt().len()), (16, 14));
        assert_eq!(&k.key()[..3], &[0x3d, 0x2d, 0x6e]);
    }

    #[test]
    fn parses_other_rfc_4568_forms() {
        // Lifetime alone, MKI alone, several keys, session parameters, an unknown suite (§9.1's example).
        let lifetime =
            parse_crypto("2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj|2^31").unwrap();
        assert_eq!((lifetime.lifetime.as_deref(), lifetime.mki), (Some("2^31"), None));
        let mki =
            parse_crypto("1 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj|1:4").unwrap();
        assert_eq!((mki.lifetime, mki.mki), (None, Some(Mki { value: 1, length: 4 })));
        let two = parse_crypto(
            "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4;inline:QUJjZGVmMTIzNDU2Nzg5QUJDREUwMTIzNDU2Nzg5|2^20|2:4 FEC_ORDER=FEC_SRTP",
        )
        .unwrap();
        assert_eq!(two.key.unwrap().expose_base64(), "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR");
        assert_eq!(two.session_params, vec!["FEC_ORDER=FEC_SRTP".to_string()]);
        let aes256 = parse_crypto("3 AES_256_CM_HMAC_SHA1_80 inline:c2hvcnQ=").unwrap();
        assert_eq!((aes256.suite, aes256.key, aes256.suite_name.as_str()), (None, None, "AES_256_CM_HMAC_SHA1_80"));
    }

    #[test]
    fn malformed_attributes_say_why_without_the_key() {
        let secret = "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR";
        let cases = [
            ("1 AES_CM_128_HMAC_SHA1_80", CryptoParseError::Shape),
            (&format!("x AES_CM_128_HMAC_SHA1_80 inline:{secret}"), CryptoParseError::Tag("x".into())),
            (&format!("1 AES_CM_128_HMAC_SHA1_80 uri:{secret}"), CryptoParseError::KeyMethod("uri".into())),
            (&format!("1 AES_CM_128_HMAC_SHA1_80 {secret}"), CryptoParseError::KeyMethod("(none)".into())),
            ("1 AES_CM_128_HMAC_SHA1_80 inline:not*base64", CryptoParseError::Base64),
            (
                "1 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ=",
                CryptoParseError::KeyLength { suite: "AES_CM_128_HMAC_SHA1_80", got: 5 },
            ),
            (&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{secret}|2^x"), CryptoParseError::Lifetime("2^x".into())),
            (&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{secret}|1:0"), CryptoParseError::Mki("1:0".into())),
            (&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{secret}|2^20|1:4|x"), CryptoParseError::KeyInfo),
        ];
        for (value, want) in cases {
            let got = parse_crypto(value).unwrap_err();
            assert_eq!(got, want, "{value}");
            assert!(!got.to_string().contains(secret) && !format!("{got:?}").contains(secret));
        }
    }

    #[test]
    fn our_offer_lines_parse_back_and_fit_livekit() {
        let o = offer(SrtpMode::Required);
        assert_eq!(o.protocol(), "RTP/SAVP");
        assert_eq!(offer(SrtpMode::Optional).protocol(), "RTP/AVP");
        assert!(offer(SrtpMode::Off).crypto.is_empty());
        let values: Vec<String> = o.crypto.iter().map(OfferedCrypto::attribute_value).collect();
        assert!(values[0].starts_with("1 AES_CM_128_HMAC_SHA1_80 inline:"), "{}", values[0]);
        assert!(values[1].starts_with("2 AES_CM_128_HMAC_SHA1_32 inline:"), "{}", values[1]);
        for (v, c) in values.iter().zip(&o.crypto) {
            // LiveKit's parser: three space-separated fields, all of the third after inline: is base64.
            let b64 = v.rsplit_once("inline:").unwrap().1;
            assert_eq!((b64.len(), v.split(' ').count()), (40, 3));
            let back = parse_crypto(v).unwrap();
            assert_eq!((back.tag, back.suite, back.key.as_ref()), (c.tag, Some(c.suite), Some(&c.key)));
        }
        assert_ne!(o.crypto[0].key, o.crypto[1].key, "a fresh key per line");
        assert_ne!(o.crypto[0].key, offer(SrtpMode::Required).crypto[0].key, "a fresh key per call");
    }

    #[test]
    fn negotiation_takes_the_answered_tag_and_the_far_ends_key() {
        let o = offer(SrtpMode::Required);
        let theirs = key(7);
        let got = o.negotiate("RTP/SAVP", &[answer_line(2, "AES_CM_128_HMAC_SHA1_32", &theirs, "|2^31")]).unwrap();
        let params = got.expect("SRTP");
        assert_eq!((params.suite, params.tag), (CryptoSuite::AesCm128HmacSha1_32, 2));
        assert_eq!((&params.local, &params.remote), (&o.crypto[1].key, &theirs));
        // LiveKit's shape: tag 1, _80, RTP/SAVP.
        let lk = o.negotiate("RTP/SAVP", &[answer_line(1, "AES_CM_128_HMAC_SHA1_80", &theirs, "")]).unwrap().unwrap();
        assert_eq!((lk.suite, lk.local.clone()), (CryptoSuite::AesCm128HmacSha1_80, o.crypto[0].key.clone()));
    }

    #[test]
    fn required_optional_and_off() {
        let theirs = key(9);
        let crypto = [answer_line(1, "AES_CM_128_HMAC_SHA1_80", &theirs, "")];
        let required = offer(SrtpMode::Required);
        assert_eq!(required.negotiate("RTP/AVP", &[]), Err(SdesError::NoCrypto { protocol: "RTP/AVP".into() }));
        assert_eq!(
            required.negotiate("RTP/AVP", &crypto),
            Err(SdesError::PlainProtocol { protocol: "RTP/AVP".into() })
        );
        let optional = offer(SrtpMode::Optional);
        assert_eq!(optional.negotiate("RTP/AVP", &[]), Ok(None));
        assert!(optional.negotiate("RTP/AVP", &crypto).unwrap().is_some(), "best effort: SRTP when answered");
        assert!(optional.negotiate("RTP/SAVP", &crypto).unwrap().is_some());
        assert_eq!(optional.negotiate("RTP/SAVP", &[]), Err(SdesError::SavpWithoutCrypto));
        let off = SdesOffer::off();
        assert_eq!(off.negotiate("RTP/AVP", &crypto), Ok(None), "crypto we did not offer is ignored");
        assert_eq!(off.negotiate("RTP/SAVP", &crypto), Err(SdesError::UnofferedSavp));
    }

    #[test]
    fn answers_that_do_not_fit_the_offer() {
        let o = offer(SrtpMode::Required);
        let theirs = key(3);
        let unknown = o.negotiate("RTP/SAVP", &[answer_line(5, "AES_CM_128_HMAC_SHA1_80", &theirs, "")]);
        assert_eq!(unknown, Err(SdesError::UnknownTag { answered: vec![5], offered: vec![1, 2] }));
        let swapped = o.negotiate("RTP/SAVP", &[answer_line(1, "AES_CM_128_HMAC_SHA1_32", &theirs, "")]);
        assert!(matches!(swapped, Err(SdesError::SuiteMismatch { tag: 1, .. })), "{swapped:?}");
        let aes256 = parse_crypto("1 AES_256_CM_HMAC_SHA1_80 inline:c2hvcnQ=").unwrap();
        assert!(matches!(o.negotiate("RTP/SAVP", &[aes256]), Err(SdesError::SuiteMismatch { .. })));
        let mki = o.negotiate("RTP/SAVP", &[answer_line(1, "AES_CM_128_HMAC_SHA1_80", &theirs, "|2^20|1:4")]);
        assert_eq!(mki, Err(SdesError::Mki { tag: 1 }));
        let with_params =
            o.negotiate("RTP/SAVP", &[answer_line(1, "AES_CM_128_HMAC_SHA1_80", &theirs, " UNENCRYPTED_SRTP")]);
        assert!(matches!(with_params, Err(SdesError::SessionParams { tag: 1, .. })));
    }

    #[test]
    fn keys_never_print() {
        let o = offer(SrtpMode::Required);
        let b64 = o.crypto[0].key.expose_base64();
        let params = SrtpParams {
            suite: CryptoSuite::AesCm128HmacSha1_80,
            tag: 1,
            local: o.crypto[0].key.clone(),
            remote: key(1),
        };
        for shown in [format!("{o:?}"), format!("{params:?}"), format!("{:?}", parse_crypto(RFC_EXAMPLE).unwrap())] {
            assert!(!shown.contains(&b64) && !shown.contains("PS1uQCVe"), "{shown}");
            assert!(shown.contains("MasterKey(***)"), "{shown}");
        }
    }

    #[test]
    fn keylog_lines_name_call_direction_suite_and_key() {
        let params = SrtpParams { suite: CryptoSuite::AesCm128HmacSha1_80, tag: 1, local: key(0), remote: key(0xff) };
        assert_eq!(
            keylog_lines("abc@callprobe", &params),
            vec![
                "SRTP abc@callprobe out AES_CM_128_HMAC_SHA1_80 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_string(),
                "SRTP abc@callprobe in AES_CM_128_HMAC_SHA1_80 ////////////////////////////////////////".to_string(),
            ]
        );
    }

    #[test]
    fn redaction_keeps_lengths_and_everything_else() {
        let sdp = format!(
            "v=0\r\nm=audio 4000 RTP/SAVP 0\r\na=crypto:{RFC_EXAMPLE}\r\na=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj\r\na=x-note:inline:kept\r\n"
        );
        let red = redact_inline_keys(&sdp);
        assert_eq!(red.len(), sdp.len());
        assert!(!red.contains("PS1uQCVe") && !red.contains("NzB4d1BI"), "{red}");
        assert!(red.contains(&format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{}|2^20|1:32\r\n", "*".repeat(40))));
        assert!(red.contains("a=x-note:inline:kept"), "only crypto lines are touched");
        assert!(matches!(redact_inline_keys("v=0\r\n"), Cow::Borrowed(_)));
        assert_eq!(redact_inline_keys_bytes(sdp.as_bytes()).as_ref(), red.as_bytes());
    }
}
