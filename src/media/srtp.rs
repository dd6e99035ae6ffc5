//! SRTP (RFC 3711) for one call, sans-I/O: protects the RTP packets we send
//! and unprotects the ones we receive, with the keys SDES settled
//! ([`crate::media::sdes`]), and counts what failed to authenticate or was
//! replayed. The cipher work is `rtc-srtp`'s (webrtc-rs's sans-I/O line).

use rtc_shared::error::Error as SrtpLibError;
use rtc_srtp::context::Context;
use rtc_srtp::option::srtp_replay_protection;
use rtc_srtp::protection_profile::ProtectionProfile;

use crate::media::sdes::{CryptoSuite, MasterKey, SrtpParams};

/// Packets remembered for replay detection (RFC 3711 §3.3.2 asks for at least 64).
const REPLAY_WINDOW: usize = 128;

/// What SRTP did during the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SrtpStats {
    pub suite: CryptoSuite,
    /// Packets we protected and sent.
    pub protected: u64,
    /// Received packets that authenticated and decrypted.
    pub unprotected: u64,
    /// Received packets whose authentication tag was wrong (tampered, or
    /// protected with another key): dropped, not decoded.
    pub auth_failures: u64,
    /// Received packets with a sequence number already seen (or too old): dropped.
    pub replayed: u64,
    /// Received packets too short for an SRTP packet or otherwise unusable: dropped.
    pub malformed: u64,
}

/// Why SRTP could not be set up or a packet not protected. Never holds a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SRTP: {0}")]
pub struct SrtpError(String);

/// The two SRTP contexts of a call (one per direction) and their counters.
pub struct SrtpSession {
    tx: Context,
    rx: Context,
    stats: SrtpStats,
}

impl std::fmt::Debug for SrtpSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpSession").field("stats", &self.stats).finish_non_exhaustive()
    }
}

fn profile(suite: CryptoSuite) -> ProtectionProfile {
    match suite {
        CryptoSuite::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
        CryptoSuite::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
    }
}

fn context(suite: CryptoSuite, key: &MasterKey, receiving: bool) -> Result<Context, SrtpError> {
    let provider = rtc_srtp::crypto::default_provider().map_err(|e| SrtpError(e.to_string()))?;
    let replay = receiving.then(|| srtp_replay_protection(REPLAY_WINDOW));
    // The library's errors name lengths and profiles, never key bytes.
    Context::new(key.key(), key.salt(), profile(suite), replay, None, provider.crypto())
        .map_err(|e| SrtpError(e.to_string()))
}

impl SrtpSession {
    pub fn new(params: &SrtpParams) -> Result<SrtpSession, SrtpError> {
        Ok(SrtpSession {
            tx: context(params.suite, &params.local, false)?,
            rx: context(params.suite, &params.remote, true)?,
            stats: SrtpStats {
                suite: params.suite,
                protected: 0,
                unprotected: 0,
                auth_failures: 0,
                replayed: 0,
                malformed: 0,
            },
        })
    }

    /// The SRTP packet for an RTP packet of ours.
    pub fn protect(&mut self, rtp: &[u8]) -> Result<Vec<u8>, SrtpError> {
        let out = self.tx.encrypt_rtp(rtp).map_err(|e| SrtpError(e.to_string()))?;
        self.stats.protected += 1;
        Ok(out.to_vec())
    }

    /// The RTP packet inside a received SRTP packet, or `None` (counted)
    /// when it does not authenticate, is a replay or is malformed.
    pub fn unprotect(&mut self, srtp: &[u8]) -> Option<Vec<u8>> {
        match self.rx.decrypt_rtp(srtp) {
            Ok(rtp) => {
                self.stats.unprotected += 1;
                Some(rtp.to_vec())
            }
            Err(SrtpLibError::RtpFailedToVerifyAuthTag | SrtpLibError::ErrFailedToVerifyAuthTag) => {
                self.stats.auth_failures += 1;
                None
            }
            Err(SrtpLibError::SrtpSsrcDuplicated(..) | SrtpLibError::ErrDuplicated) => {
                self.stats.replayed += 1;
                None
            }
            Err(_) => {
                self.stats.malformed += 1;
                None
            }
        }
    }

    pub fn stats(&self) -> SrtpStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::rtp::{build_packet, parse_packet, RtpHeader};

    /// libsrtp's `srtp_validate` vector (test/srtp_driver.c; also in pion and
    /// webrtc-rs): AES_CM_128_HMAC_SHA1_80, ROC 0, SSRC 0xcafebabe, SEQ 0x1234.
    const VECTOR_KEY: [u8; 30] = [
        0xe1, 0xf9, 0x7a, 0x0d, 0x3e, 0x01, 0x8b, 0xe0, 0xd6, 0x4f, 0xa3, 0x2c, 0x06, 0xde, 0x41, 0x39, // key
        0x0e, 0xc6, 0x75, 0xad, 0x49, 0x8a, 0xfe, 0xeb, 0xb6, 0x96, 0x0b, 0x3a, 0xab, 0xe6, // salt
    ];
    const VECTOR_PLAIN: [u8; 28] = [
        0x80, 0x0f, 0x12, 0x34, 0xde, 0xca, 0xfb, 0xad, 0xca, 0xfe, 0xba, 0xbe, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab,
        0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab,
    ];
    const VECTOR_CIPHER_80: [u8; 38] = [
        0x80, 0x0f, 0x12, 0x34, 0xde, 0xca, 0xfb, 0xad, 0xca, 0xfe, 0xba, 0xbe, 0x4e, 0x55, 0xdc, 0x4c, 0xe7, 0x99,
        0x78, 0xd8, 0x8c, 0xa4, 0xd2, 0x15, 0x94, 0x9d, 0x24, 0x02, 0xb7, 0x8d, 0x6a, 0xcc, 0x99, 0xea, 0x17, 0x9b,
        0x8d, 0xbb,
    ];

    fn params(suite: CryptoSuite, local: [u8; 30], remote: [u8; 30]) -> SrtpParams {
        SrtpParams { suite, tag: 1, local: MasterKey::from_bytes(local), remote: MasterKey::from_bytes(remote) }
    }

    #[test]
    fn known_answer_from_libsrtp() {
        let mut s = SrtpSession::new(&params(CryptoSuite::AesCm128HmacSha1_80, VECTOR_KEY, VECTOR_KEY)).unwrap();
        assert_eq!(s.protect(&VECTOR_PLAIN).unwrap(), VECTOR_CIPHER_80);
        assert_eq!(s.unprotect(&VECTOR_CIPHER_80).unwrap(), VECTOR_PLAIN);
        // The 32-bit tag is the 80-bit tag cut short.
        let mut s32 = SrtpSession::new(&params(CryptoSuite::AesCm128HmacSha1_32, VECTOR_KEY, VECTOR_KEY)).unwrap();
        assert_eq!(s32.protect(&VECTOR_PLAIN).unwrap(), VECTOR_CIPHER_80[..32]);
    }

    #[test]
    fn round_trip_between_two_ends_with_auth_failures_and_replays_counted() {
        for suite in CryptoSuite::OFFERED {
            let (a, b) = ([1u8; 30], [2u8; 30]);
            let mut us = SrtpSession::new(&params(suite, a, b)).unwrap();
            let mut them = SrtpSession::new(&params(suite, b, a)).unwrap();
            let mut sent = Vec::new();
            for seq in 0..50u16 {
                let header = RtpHeader {
                    marker: seq == 0,
                    payload_type: 0,
                    sequence_number: seq,
                    timestamp: 160 * u32::from(seq),
                    ssrc: 42,
                };
                let rtp = build_packet(&header, &[seq as u8; 160]);
                let protected = us.protect(&rtp).unwrap();
                assert_ne!(protected[12..172], rtp[12..], "the payload is encrypted");
                assert_eq!(protected[..12], rtp[..12], "the header stays readable");
                assert_eq!(them.unprotect(&protected).unwrap(), rtp);
                sent.push(protected);
            }
            // Packets never delivered, tampered: payload, tag, sequence number.
            let fresh: Vec<Vec<u8>> = (50..54u16)
                .map(|seq| {
                    let header =
                        RtpHeader { marker: false, payload_type: 0, sequence_number: seq, timestamp: 0, ssrc: 42 };
                    us.protect(&build_packet(&header, &[9; 160])).unwrap()
                })
                .collect();
            let mut tampered = fresh[0].clone();
            tampered[20] ^= 1;
            let mut bad_tag = fresh[1].clone();
            let last = bad_tag.len() - 1;
            bad_tag[last] ^= 0x80;
            let mut forged_seq = fresh[2].clone();
            forged_seq[3] = 60;
            assert_eq!(them.unprotect(&tampered), None);
            assert_eq!(them.unprotect(&bad_tag), None);
            assert_eq!(them.unprotect(&forged_seq), None);
            assert!(them.unprotect(&fresh[3]).is_some(), "failures do not stop the stream");
            // A replay (checked before authentication), our own key's packet, a stub.
            assert_eq!(them.unprotect(&sent[12]), None, "replayed");
            assert_eq!(us.unprotect(&sent[13]), None, "our own key is not theirs");
            assert_eq!(them.unprotect(&sent[0][..8]), None);
            let stats = them.stats();
            assert_eq!((stats.unprotected, stats.auth_failures, stats.replayed, stats.malformed), (51, 3, 1, 1));
            assert_eq!((us.stats().protected, us.stats().auth_failures, stats.suite), (54, 1, suite));
            let rtp = them.unprotect(&sent[12]);
            assert!(rtp.is_none() && parse_packet(&sent[12]).is_ok());
        }
    }

    #[test]
    fn debug_shows_no_key() {
        let s = SrtpSession::new(&params(CryptoSuite::AesCm128HmacSha1_80, VECTOR_KEY, VECTOR_KEY)).unwrap();
        let shown = format!("{s:?}");
        assert!(shown.contains("AesCm128HmacSha1_80") && !shown.contains("225"), "{shown}");
    }
}
