//! An estimate of how the call's audio would sound to a listener (MOS, 1 to
//! 4.5) from what the RTP path shows: packet loss, jitter and the codec.
//! The ITU-T G.107 E-model, reduced to those inputs the way network
//! monitoring tools commonly reduce it. Pure functions, no I/O.
//!
//! The model:
//!
//! - `R = (Ro − Is) − Id − Ie,eff + A` with `Ro − Is = 93.2`, the value
//!   G.107's default parameters give (a quiet room, an ideal handset, no
//!   echo), and `A = 0` (no advantage factor: a fixed-line expectation).
//! - `Ie,eff = Ie + (95 − Ie) · Ppl / (Ppl / BurstR + Bpl)` (G.107), `Ppl` the
//!   packet loss in percent and `BurstR` the burst ratio (1: random loss).
//!   `Ie` and `Bpl` per codec from ITU-T G.113 Appendix I: G.711 has `Ie` 0
//!   and `Bpl` 25.1 with the packet loss concealment of G.711 Appendix I,
//!   4.3 without any ([`Concealment`]).
//! - `Id = 0.024·d + 0.11·(d − 177.3)·H(d − 177.3)`, `d` the one-way mouth-to-ear
//!   delay in ms and `H` the step function: the echo-free simplification of
//!   G.107's delay terms by Cole and Rosenbluth ("Voice over IP performance
//!   monitoring", ACM SIGCOMM CCR 31(2), 2001), which the common tools use.
//! - `MOS = 1` for `R < 0`, `4.5` for `R > 100`, else
//!   `1 + 0.035·R + R·(R − 60)·(100 − R)·7·10⁻⁶` (G.107 Annex B), held at
//!   1 or above (the cubic dips to 0.989 for R between 0 and 6.5).
//!
//! What callprobe feeds it, and what it cannot know:
//!
//! - **Delay** ([`assumed_delay_ms`]): one frame of packetisation (20 ms,
//!   `a=ptime:20`) plus a jitter buffer of twice the measured interarrival
//!   jitter but at least one frame (20 ms; adaptive buffers size themselves
//!   to a small multiple of the jitter), plus the network transit time when
//!   it is known. It is not: callprobe measures the RTP path's jitter, not
//!   its one-way delay (that needs RTCP round trips or synchronised clocks),
//!   so the transit is left out and the delay is a lower bound. With
//!   transits below ~100 ms `Id` stays under 4 and this hardly matters;
//!   over long intercontinental paths the estimate is optimistic.
//! - **Loss** is the network loss of RFC 3550 A.3 (packets that never
//!   arrived). Packets a real jitter buffer would drop as too late are not
//!   counted; with the buffer assumed above they are rare.
//! - **Burst ratio**: callprobe's receive statistics count lost packets but
//!   not their pattern, so the loss is taken as random (`BurstR` 1). Loss in
//!   bursts (an outage of a few hundred ms) sounds worse than this says.
//! - **G.722** is a wideband codec, and G.107 is a narrowband model (the
//!   wideband one is G.107.1, on a scale up to R 129). Like most tools,
//!   callprobe scores G.722 as G.711 on the narrowband scale: its extra
//!   audio bandwidth is not credited, so a clean G.722 call gets the same
//!   4.39 as G.711. The report's `model` string says so.
//! - **Concealment**: the received direction (what callprobe heard) is
//!   scored for a listener whose phone conceals lost G.711 frames (Bpl
//!   25.1): what most phones do and what monitoring tools assume. callprobe
//!   itself conceals nothing (a lost frame is silence in `rx.wav`). The sent
//!   direction (what the far end heard) would be scored without concealment
//!   (Bpl 4.3): LiveKit SIP v1.0.0 conceals nothing, a lost frame is silence
//!   to the agent. It can only be scored from the far end's RTCP receiver
//!   reports, which callprobe does not read (and LiveKit SIP v1.0.0 sends
//!   none), so the report leaves it out and says why.

use crate::media::codec::{AudioCodec, FRAME_MS};

/// `Ro − Is` with G.107's default values: R of a perfect narrowband connection.
pub const R_DEFAULT: f64 = 93.2;
/// The smallest jitter buffer assumed, ms (one frame).
pub const MIN_JITTER_BUFFER_MS: f64 = FRAME_MS as f64;
/// The jitter buffer is assumed to hold this many times the measured jitter.
pub const JITTER_BUFFER_FACTOR: f64 = 2.0;

/// How the listener's decoder treats a lost frame (G.113 Appendix I's two G.711 rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concealment {
    /// G.711 Appendix I packet loss concealment: Bpl 25.1.
    G711AppendixI,
    /// None: a lost frame is silence. Bpl 4.3.
    None,
}

/// A codec's impairment values for the E-model (G.113 Appendix I).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CodecImpairment {
    /// Equipment impairment factor without loss.
    pub ie: f64,
    /// Packet-loss robustness factor.
    pub bpl: f64,
}

/// `Ie` and `Bpl` for `codec` heard with `concealment`. G.722 gets G.711's
/// values: scored on the narrowband scale (see the module documentation).
pub fn codec_impairment(codec: AudioCodec, concealment: Concealment) -> CodecImpairment {
    match (codec, concealment) {
        (AudioCodec::Pcmu | AudioCodec::Pcma | AudioCodec::G722, Concealment::G711AppendixI) => {
            CodecImpairment { ie: 0.0, bpl: 25.1 }
        }
        (AudioCodec::Pcmu | AudioCodec::Pcma | AudioCodec::G722, Concealment::None) => {
            CodecImpairment { ie: 0.0, bpl: 4.3 }
        }
    }
}

/// What one direction's RTP path showed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PathQuality {
    /// Packets lost, percent of those expected (0 to 100).
    pub loss_percent: f64,
    /// Burst ratio (G.107): 1 for random loss, above 1 for bursty loss.
    pub burst_ratio: f64,
    /// Interarrival jitter (RFC 3550 A.8), ms.
    pub jitter_ms: f64,
    /// One-way network transit, ms, when known (`None`: not counted).
    pub network_delay_ms: Option<f64>,
}

/// The E-model's answer for one direction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// Transmission rating factor, unbounded (may be below 0).
    pub r: f64,
    /// Mean opinion score (conversational quality, estimated), 1 to 4.5.
    pub mos: f64,
    /// The effective equipment impairment (codec and loss).
    pub ie_eff: f64,
    /// The delay impairment.
    pub id: f64,
    /// The one-way delay the estimate assumed, ms.
    pub delay_ms: f64,
}

/// R and MOS for a stream of `codec`, heard with `concealment`, over `path`.
pub fn estimate(codec: AudioCodec, concealment: Concealment, path: &PathQuality) -> Estimate {
    let impairment = codec_impairment(codec, concealment);
    let ie_eff = effective_equipment_impairment(impairment, path.loss_percent, path.burst_ratio);
    let delay_ms = assumed_delay_ms(path.jitter_ms, path.network_delay_ms);
    let id = delay_impairment(delay_ms);
    let r = R_DEFAULT - id - ie_eff;
    Estimate { r, mos: mos_from_r(r), ie_eff, id, delay_ms }
}

/// `Ie,eff = Ie + (95 − Ie) · Ppl / (Ppl / BurstR + Bpl)`; loss is clamped to
/// 0..=100 % and the burst ratio to at least 1 % of random (inputs that are
/// not numbers count as no loss and random loss).
pub fn effective_equipment_impairment(codec: CodecImpairment, loss_percent: f64, burst_ratio: f64) -> f64 {
    let ppl = finite_or(loss_percent, 0.0).clamp(0.0, 100.0);
    let burst_ratio = finite_or(burst_ratio, 1.0).max(0.01);
    if ppl == 0.0 {
        return codec.ie;
    }
    codec.ie + (95.0 - codec.ie) * ppl / (ppl / burst_ratio + codec.bpl)
}

/// `Id = 0.024·d + 0.11·(d − 177.3)·H(d − 177.3)`, `d` the one-way delay in ms
/// (Cole and Rosenbluth's simplification of G.107's delay terms).
pub fn delay_impairment(delay_ms: f64) -> f64 {
    let d = finite_or(delay_ms, 0.0).max(0.0);
    0.024 * d + if d > 177.3 { 0.11 * (d - 177.3) } else { 0.0 }
}

/// The one-way delay assumed: one frame of packetisation, a jitter buffer
/// of [`JITTER_BUFFER_FACTOR`] × jitter (at least [`MIN_JITTER_BUFFER_MS`]),
/// and the network transit when known.
pub fn assumed_delay_ms(jitter_ms: f64, network_delay_ms: Option<f64>) -> f64 {
    let jitter_buffer = (JITTER_BUFFER_FACTOR * finite_or(jitter_ms, 0.0)).max(MIN_JITTER_BUFFER_MS);
    let network = network_delay_ms.map_or(0.0, |d| finite_or(d, 0.0).max(0.0));
    f64::from(FRAME_MS) + jitter_buffer + network
}

/// G.107 Annex B: MOS (conversational quality, estimated) from R.
pub fn mos_from_r(r: f64) -> f64 {
    if r.is_nan() || r < 0.0 {
        1.0
    } else if r > 100.0 {
        4.5
    } else {
        // The cubic dips to 0.989 for R between 0 and 6.5; held at 1 so
        // that a worse R never gives a better MOS.
        (1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7.0e-6).max(1.0)
    }
}

/// The model in one line, for the report: what was computed and from what.
pub fn model_description(codec: AudioCodec) -> String {
    let mut model = "ITU-T G.107 E-model, simplified: R = 93.2 - Id - Ie,eff (A = 0), MOS from R per G.107 Annex B; \
                     Ie/Bpl from G.113 Appendix I (received: G.711 with PLC, Bpl 25.1); loss taken as random (BurstR 1); \
                     one-way delay assumed = 20 ms packetisation + jitter buffer of 2 x jitter (at least 20 ms), \
                     network transit not measured and not counted"
        .to_string();
    if codec == AudioCodec::G722 {
        model.push_str("; G.722 scored as G.711 on the narrowband scale (no wideband credit, not G.107.1)");
    }
    model
}

fn finite_or(x: f64, fallback: f64) -> f64 {
    if x.is_finite() {
        x
    } else {
        fallback
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G711_PLC: CodecImpairment = CodecImpairment { ie: 0.0, bpl: 25.1 };

    fn path(loss_percent: f64, jitter_ms: f64) -> PathQuality {
        PathQuality { loss_percent, burst_ratio: 1.0, jitter_ms, network_delay_ms: None }
    }

    fn close(got: f64, want: f64, tolerance: f64) -> bool {
        (got - want).abs() <= tolerance
    }

    /// G.107's default parameters give R 93.2, which G.107 maps to MOS 4.41:
    /// 1 + 0.035·93.2 + 93.2·33.2·6.8·7e-6 = 1 + 3.262 + 0.1473 = 4.4093.
    #[test]
    fn g107_default_r_is_mos_4_41() {
        let mos = mos_from_r(R_DEFAULT);
        assert!(close(mos, 4.4093, 1e-4), "{mos}");
        assert_eq!((mos * 100.0).round() / 100.0, 4.41);
    }

    /// The R → MOS curve of G.107 Annex B at the category limits of its
    /// Table B.1 (R 90, 80, 70, 60, 50; G.109's user-satisfaction classes).
    /// By hand: R 90: 1 + 3.15 + 90·30·10·7e-6 = 4.339; R 80: 1 + 2.8 +
    /// 80·20·20·7e-6 = 4.024; R 70: 1 + 2.45 + 70·10·30·7e-6 = 3.597;
    /// R 60: 1 + 2.1 + 0 = 3.1; R 50: 1 + 1.75 − 50·10·50·7e-6 = 2.575.
    /// The table prints 4.34, 4.03, 3.60, 3.10, 2.58 (R 80 rounded up from
    /// 4.024: within 0.01 here too).
    #[test]
    fn mos_from_r_matches_g107_annex_b() {
        for (r, computed, table) in
            [(90.0, 4.339, 4.34), (80.0, 4.024, 4.03), (70.0, 3.597, 3.60), (60.0, 3.1, 3.10), (50.0, 2.575, 2.58)]
        {
            let mos = mos_from_r(r);
            assert!(close(mos, computed, 1e-9), "R {r}: {mos}, by hand {computed}");
            assert!(close(mos, table, 0.0061), "R {r}: {mos}, G.107 table {table}");
        }
        // Rounded to two decimals, as the report writes them.
        let two_decimals = |r: f64| (mos_from_r(r) * 100.0).round() / 100.0;
        assert_eq!([two_decimals(90.0), two_decimals(80.0), two_decimals(70.0)], [4.34, 4.02, 3.60]);
        assert!(close(mos_from_r(50.0), 2.58, 0.0051), "R 50 → 2.58");
    }

    #[test]
    fn mos_is_clamped_outside_0_to_100() {
        assert_eq!(mos_from_r(-5.0), 1.0);
        assert_eq!(mos_from_r(f64::NAN), 1.0);
        assert_eq!(mos_from_r(100.5), 4.5);
        assert!(close(mos_from_r(0.0), 1.0, 1e-12));
        assert!(close(mos_from_r(100.0), 4.5, 1e-12));
        // At R 3 the bare cubic gives 1 + 0.105 − 3·57·97·7e-6 = 0.9889; held at 1.
        assert_eq!(mos_from_r(3.0), 1.0);
    }

    /// G.711 with PLC (Ie 0, Bpl 25.1), random loss, by hand:
    /// 1 %: 95·1/(1 + 25.1) = 95/26.1 = 3.6398;
    /// 2 %: 95·2/(2 + 25.1) = 190/27.1 = 7.0111;
    /// 5 %: 95·5/(5 + 25.1) = 475/30.1 = 15.7807.
    /// Without PLC (Bpl 4.3) 1 % costs far more: 95/5.3 = 17.9245.
    #[test]
    fn ie_eff_of_g711_with_random_loss() {
        for (loss, want) in [(0.0, 0.0), (1.0, 3.6398), (2.0, 7.0111), (5.0, 15.7807)] {
            let got = effective_equipment_impairment(G711_PLC, loss, 1.0);
            assert!(close(got, want, 1e-4), "{loss} %: {got}, by hand {want}");
        }
        let no_plc = codec_impairment(AudioCodec::Pcmu, Concealment::None);
        assert!(close(effective_equipment_impairment(no_plc, 1.0, 1.0), 17.9245, 1e-4));
        // All loss: Ie,eff tends to 95 − (95 − Ie)·Bpl/(100 + Bpl).
        assert!(close(effective_equipment_impairment(G711_PLC, 100.0, 1.0), 95.0 * 100.0 / 125.1, 1e-9));
        // Bursty loss hurts more than random loss of the same rate.
        assert!(
            effective_equipment_impairment(G711_PLC, 2.0, 2.0) > effective_equipment_impairment(G711_PLC, 2.0, 1.0)
        );
    }

    /// Id by hand: 40 ms → 0.96; 177.3 ms → 4.2552 (the knee); 300 ms →
    /// 7.2 + 0.11·122.7 = 20.697.
    #[test]
    fn delay_impairment_has_its_knee_at_177_ms() {
        assert!(close(delay_impairment(40.0), 0.96, 1e-9));
        assert!(close(delay_impairment(177.3), 4.2552, 1e-9));
        assert!(close(delay_impairment(300.0), 20.697, 1e-9));
        assert_eq!(delay_impairment(-1.0), 0.0);
    }

    /// 20 ms of packetisation, a buffer of 2 × jitter but at least 20 ms, and
    /// the transit only when known.
    #[test]
    fn assumed_delay() {
        assert_eq!(assumed_delay_ms(0.0, None), 40.0);
        assert_eq!(assumed_delay_ms(8.0, None), 40.0);
        assert_eq!(assumed_delay_ms(30.0, None), 80.0);
        assert_eq!(assumed_delay_ms(30.0, Some(50.0)), 130.0);
        assert_eq!(assumed_delay_ms(f64::NAN, None), 40.0);
    }

    /// A clean G.711 call: R = 93.2 − 0.96 (40 ms) − 0 = 92.24, MOS 4.39.
    /// 1 % random loss and 30 ms of jitter: R = 93.2 − 1.92 − 3.6398 = 87.64,
    /// MOS 4.28.
    #[test]
    fn whole_estimates() {
        let clean = estimate(AudioCodec::Pcmu, Concealment::G711AppendixI, &path(0.0, 0.0));
        assert!(close(clean.r, 92.24, 1e-9), "{clean:?}");
        assert!(close(clean.mos, 4.39, 0.005), "{clean:?}");
        assert_eq!(clean.delay_ms, 40.0);
        let lossy = estimate(AudioCodec::Pcma, Concealment::G711AppendixI, &path(1.0, 30.0));
        assert!(close(lossy.r, 87.6402, 1e-3), "{lossy:?}");
        assert!(close(lossy.mos, 4.28, 0.005), "{lossy:?}");
        // G.722 is scored like G.711 (narrowband scale).
        assert_eq!(estimate(AudioCodec::G722, Concealment::G711AppendixI, &path(1.0, 30.0)), lossy);
        // Total loss is the bottom of the scale.
        assert_eq!(estimate(AudioCodec::Pcmu, Concealment::None, &path(100.0, 0.0)).mos, 1.0);
    }

    #[test]
    fn more_loss_gives_a_lower_mos() {
        for concealment in [Concealment::G711AppendixI, Concealment::None] {
            let mut previous = f64::INFINITY;
            for tenths in 0..=300 {
                let e = estimate(AudioCodec::Pcmu, concealment, &path(f64::from(tenths) / 10.0, 5.0));
                assert!(e.mos < previous || e.mos == 1.0, "{concealment:?} {tenths}‰: {} after {previous}", e.mos);
                previous = e.mos;
            }
        }
    }

    #[test]
    fn more_jitter_gives_a_lower_or_equal_mos() {
        let mut previous = f64::INFINITY;
        for jitter in 0..=400 {
            let e = estimate(AudioCodec::Pcmu, Concealment::G711AppendixI, &path(0.5, f64::from(jitter)));
            assert!(e.mos <= previous, "jitter {jitter} ms: {} after {previous}", e.mos);
            previous = e.mos;
        }
        let low = estimate(AudioCodec::Pcmu, Concealment::G711AppendixI, &path(0.5, 5.0)).mos;
        let high = estimate(AudioCodec::Pcmu, Concealment::G711AppendixI, &path(0.5, 100.0)).mos;
        assert!(high < low, "100 ms of jitter must cost something: {high} vs {low}");
    }

    #[test]
    fn the_model_string_names_the_wideband_caveat_only_for_g722() {
        assert!(model_description(AudioCodec::G722).contains("G.722 scored as G.711"));
        assert!(!model_description(AudioCodec::Pcmu).contains("G.722"));
        assert!(model_description(AudioCodec::Pcma).starts_with("ITU-T G.107 E-model"));
    }
}
