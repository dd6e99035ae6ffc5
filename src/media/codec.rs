//! Audio codecs used on the call (PCMU, PCMA, G.722): their RTP parameters
//! and per-frame encoders/decoders.
//!
//! [`AudioCodec`] is a plain description (payload type, rates, frame sizes).
//! Encoding and decoding go through [`AudioEncoder`] / [`AudioDecoder`],
//! created from the codec, because G.722 is ADPCM and carries predictor state
//! from one frame to the next (G.711 is stateless). Use one encoder per
//! outgoing stream and one decoder per incoming stream.
//!
//! G.711 is hand-written in [`crate::media::g711`]; G.722 comes from the
//! pure-Rust `audio-codec` crate (64 kbit/s mode, one byte per sample pair).

use std::time::Duration;

use audio_codec::g722::{G722Decoder, G722Encoder};
use audio_codec::{Decoder as _, Encoder as _};

use crate::media::g711;

/// Every RTP frame on the call carries 20 ms of audio (`a=ptime:20`).
pub const FRAME_DURATION: Duration = Duration::from_millis(20);
/// [`FRAME_DURATION`] in milliseconds.
pub const FRAME_MS: u32 = 20;

/// An audio codec we can offer and use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AudioCodec {
    /// G.711 µ-law, static payload type 0.
    Pcmu,
    /// G.711 A-law, static payload type 8.
    Pcma,
    /// G.722 wideband ADPCM at 64 kbit/s, static payload type 9.
    G722,
}

impl AudioCodec {
    /// All supported codecs, in our default order of preference.
    pub const ALL: [AudioCodec; 3] = [AudioCodec::G722, AudioCodec::Pcmu, AudioCodec::Pcma];

    /// Static RTP payload type from RFC 3551.
    pub const fn payload_type(self) -> u8 {
        match self {
            AudioCodec::Pcmu => 0,
            AudioCodec::Pcma => 8,
            AudioCodec::G722 => 9,
        }
    }

    /// The codec with this static payload type, if it is one of ours.
    pub const fn from_payload_type(payload_type: u8) -> Option<AudioCodec> {
        match payload_type {
            0 => Some(AudioCodec::Pcmu),
            8 => Some(AudioCodec::Pcma),
            9 => Some(AudioCodec::G722),
            _ => None,
        }
    }

    /// Encoding name as written in `a=rtpmap` (compare case-insensitively).
    pub const fn encoding_name(self) -> &'static str {
        match self {
            AudioCodec::Pcmu => "PCMU",
            AudioCodec::Pcma => "PCMA",
            AudioCodec::G722 => "G722",
        }
    }

    /// The codec with this `a=rtpmap` encoding name and clock rate, if any.
    pub fn from_rtpmap(encoding_name: &str, clock_rate: u32) -> Option<AudioCodec> {
        Self::ALL.into_iter().find(|codec| {
            codec.encoding_name().eq_ignore_ascii_case(encoding_name) && codec.rtp_clock_rate() == clock_rate
        })
    }

    /// Audio sample rate of the PCM the codec consumes and produces.
    pub const fn sample_rate(self) -> u32 {
        match self {
            AudioCodec::Pcmu | AudioCodec::Pcma => 8_000,
            AudioCodec::G722 => 16_000,
        }
    }

    /// RTP timestamp clock rate. 8000 for G.722 too, although it samples at
    /// 16 kHz: RFC 3551 §4.5.2 kept the value of the original (erroneous) RFC
    /// 1890 entry, and every implementation follows it.
    pub const fn rtp_clock_rate(self) -> u32 {
        8_000
    }

    /// PCM samples in one 20 ms frame (160 or 320).
    pub const fn samples_per_frame(self) -> usize {
        (self.sample_rate() / 1000 * FRAME_MS) as usize
    }

    /// Encoded bytes in one 20 ms frame (160 for all three codecs).
    pub const fn payload_bytes_per_frame(self) -> usize {
        match self {
            AudioCodec::Pcmu | AudioCodec::Pcma => self.samples_per_frame(),
            AudioCodec::G722 => self.samples_per_frame() / 2,
        }
    }

    /// RTP timestamp advance per 20 ms frame (160 for all three codecs).
    pub const fn timestamp_increment_per_frame(self) -> u32 {
        self.rtp_clock_rate() / 1000 * FRAME_MS
    }

    /// A fresh encoder for one outgoing stream.
    pub fn encoder(self) -> AudioEncoder {
        Coder::new(self, G722Encoder::new)
    }

    /// A fresh decoder for one incoming stream.
    pub fn decoder(self) -> AudioDecoder {
        Coder::new(self, G722Decoder::new)
    }
}

impl std::fmt::Display for AudioCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.encoding_name())
    }
}

/// A stream's encoder ([`AudioEncoder`]) or decoder ([`AudioDecoder`]):
/// its codec and the state it carries from frame to frame.
pub struct Coder<G> {
    codec: AudioCodec,
    state: CodecState<G>,
}

/// Stateful encoder: PCM at [`AudioCodec::sample_rate`] → RTP payload bytes.
pub type AudioEncoder = Coder<G722Encoder>;

/// Stateful decoder: RTP payload bytes → PCM at [`AudioCodec::sample_rate`].
pub type AudioDecoder = Coder<G722Decoder>;

/// G.711 keeps no state; G.722 keeps its ADPCM encoder or decoder `G`.
enum CodecState<G> {
    Pcmu,
    Pcma,
    G722(Box<G>),
}

impl<G> Coder<G> {
    /// A fresh one for `codec`; `g722` makes the G.722 state.
    fn new(codec: AudioCodec, g722: impl FnOnce() -> G) -> Self {
        let state = match codec {
            AudioCodec::Pcmu => CodecState::Pcmu,
            AudioCodec::Pcma => CodecState::Pcma,
            AudioCodec::G722 => CodecState::G722(Box::new(g722())),
        };
        Coder { codec, state }
    }

    /// The codec this encoder produces or this decoder consumes.
    pub fn codec(&self) -> AudioCodec {
        self.codec
    }
}

impl AudioEncoder {
    /// Encodes one frame (normally [`AudioCodec::samples_per_frame`] samples).
    /// For G.722 an odd trailing sample is dropped.
    pub fn encode(&mut self, pcm: &[i16]) -> Vec<u8> {
        match &mut self.state {
            CodecState::Pcmu => pcm.iter().map(|&s| g711::linear_to_ulaw(s)).collect(),
            CodecState::Pcma => pcm.iter().map(|&s| g711::linear_to_alaw(s)).collect(),
            CodecState::G722(encoder) => encoder.encode(&pcm[..pcm.len() & !1]),
        }
    }
}

impl AudioDecoder {
    /// Decodes one RTP payload (any length; 160 bytes for a 20 ms frame).
    pub fn decode(&mut self, payload: &[u8]) -> Vec<i16> {
        match &mut self.state {
            CodecState::Pcmu => payload.iter().map(|&c| g711::ulaw_to_linear(c)).collect(),
            CodecState::Pcma => payload.iter().map(|&c| g711::alaw_to_linear(c)).collect(),
            CodecState::G722(decoder) => decoder.decode(payload),
        }
    }
}

impl std::fmt::Debug for AudioEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioEncoder").field("codec", &self.codec).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for AudioDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioDecoder").field("codec", &self.codec).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq_hz: f64, sample_rate: u32, samples: usize, amplitude: f64) -> Vec<i16> {
        (0..samples)
            .map(|n| {
                (amplitude * (2.0 * std::f64::consts::PI * freq_hz * n as f64 / f64::from(sample_rate)).sin()) as i16
            })
            .collect()
    }

    fn round_trip(codec: AudioCodec, input: &[i16]) -> Vec<i16> {
        let mut encoder = codec.encoder();
        let mut decoder = codec.decoder();
        let mut output = Vec::new();
        for frame in input.chunks(codec.samples_per_frame()) {
            let payload = encoder.encode(frame);
            assert_eq!(payload.len(), codec.payload_bytes_per_frame());
            output.extend(decoder.decode(&payload));
        }
        output
    }

    /// SNR in dB of `output` against `input`, trying every delay up to
    /// `max_delay` samples and keeping the best (the codec delays the signal).
    fn best_snr_db(input: &[i16], output: &[i16], max_delay: usize) -> (f64, usize) {
        let skip = 800; // let the adaptive predictor settle
        (0..=max_delay)
            .map(|delay| {
                let (mut signal, mut noise) = (0.0f64, 0.0f64);
                for n in skip..input.len() - max_delay {
                    let x = f64::from(input[n]);
                    let y = f64::from(output[n + delay]);
                    signal += x * x;
                    noise += (x - y) * (x - y);
                }
                (10.0 * (signal / noise.max(1e-9)).log10(), delay)
            })
            .fold((f64::MIN, 0), |best, cur| if cur.0 > best.0 { cur } else { best })
    }

    #[test]
    fn rtp_parameters() {
        assert_eq!(AudioCodec::Pcmu.payload_type(), 0);
        assert_eq!(AudioCodec::Pcma.payload_type(), 8);
        assert_eq!(AudioCodec::G722.payload_type(), 9);
        for codec in AudioCodec::ALL {
            assert_eq!(AudioCodec::from_payload_type(codec.payload_type()), Some(codec));
            assert_eq!(codec.rtp_clock_rate(), 8000);
            assert_eq!(codec.timestamp_increment_per_frame(), 160);
            assert_eq!(codec.payload_bytes_per_frame(), 160);
        }
        assert_eq!(AudioCodec::G722.sample_rate(), 16000);
        assert_eq!(AudioCodec::G722.samples_per_frame(), 320);
        assert_eq!(AudioCodec::Pcma.samples_per_frame(), 160);
        assert_eq!(AudioCodec::from_rtpmap("g722", 8000), Some(AudioCodec::G722));
        assert_eq!(AudioCodec::from_rtpmap("G722", 16000), None);
        assert_eq!(AudioCodec::from_payload_type(101), None);
    }

    #[test]
    fn g711_round_trip_of_a_sine_is_clean() {
        for codec in [AudioCodec::Pcmu, AudioCodec::Pcma] {
            let input = sine(1000.0, 8000, 8000, 10_000.0);
            let output = round_trip(codec, &input);
            let (snr, delay) = best_snr_db(&input, &output, 0);
            assert_eq!(delay, 0);
            assert!(snr > 30.0, "{codec} SNR {snr:.1} dB");
        }
    }

    #[test]
    fn g722_round_trip_of_1khz_sine_has_snr_above_20db() {
        let input = sine(1000.0, 16000, 16000, 10_000.0);
        let output = round_trip(AudioCodec::G722, &input);
        assert_eq!(output.len(), input.len());
        // G.722's QMF delay is 22 samples; for a 16-sample-period sine the
        // search finds it modulo the period (6).
        let (snr, delay) = best_snr_db(&input, &output, 64);
        println!("G.722 1 kHz round trip: SNR {snr:.1} dB at delay {delay} samples");
        assert!(snr > 20.0, "SNR {snr:.1} dB at delay {delay}");
    }

    #[test]
    fn g722_state_carries_across_frames() {
        // Splitting the same audio into 20 ms frames must give the same bytes
        // as encoding it in one go: the encoder keeps its ADPCM state.
        let input = sine(700.0, 16000, 3200, 8_000.0);
        let mut framed = AudioCodec::G722.encoder();
        let by_frame: Vec<u8> = input.chunks(320).flat_map(|f| framed.encode(f)).collect();
        let whole = AudioCodec::G722.encoder().encode(&input);
        assert_eq!(by_frame, whole);
    }

    /// Interoperability: our G.722 (audio-codec) against the SpanDSP-derived
    /// implementation in `ezk-g722`, in both directions.
    #[test]
    fn g722_cross_decodes_with_spandsp_port() {
        use ezk_g722::libg722::{decoder::Decoder, encoder::Encoder, Bitrate};
        // Two non-harmonic tones so the delay search has a unique answer.
        let input: Vec<i16> = sine(1000.0, 16000, 16000, 6_000.0)
            .iter()
            .zip(sine(1330.0, 16000, 16000, 4_000.0))
            .map(|(&a, b)| a + b)
            .collect();
        let mut ours = AudioCodec::G722.encoder();
        let mut theirs_decoder = Decoder::new(Bitrate::Mode1_64000, false, false);
        let ours_to_theirs: Vec<i16> = input.chunks(320).flat_map(|f| theirs_decoder.decode(&ours.encode(f))).collect();
        let mut theirs_encoder = Encoder::new(Bitrate::Mode1_64000, false, false);
        let mut our_decoder = AudioCodec::G722.decoder();
        let theirs_to_ours: Vec<i16> =
            input.chunks(320).flat_map(|f| our_decoder.decode(&theirs_encoder.encode(f))).collect();
        for (label, output) in [("ours->spandsp", ours_to_theirs), ("spandsp->ours", theirs_to_ours)] {
            let (snr, delay) = best_snr_db(&input, &output, 64);
            println!("G.722 {label}: SNR {snr:.1} dB at delay {delay} samples");
            assert!(snr > 20.0, "{label}: SNR {snr:.1} dB");
        }
    }
}
