//! Single-frequency tone detection with the Goertzel algorithm: how much of
//! the audio is dominated by one target frequency (a 1 kHz test tone, a
//! ringback component, a DTMF row or column).
//!
//! The audio is cut into 20 ms frames. A frame matches when it is not silent
//! and the target frequency carries at least `min_power_fraction` of the
//! frame's energy. For a pure sine at the target the fraction is 1.0; for
//! white noise it is about 2/N (N samples per frame).

use crate::media::codec::FRAME_MS;

/// Frames quieter than this RMS (about -60 dBFS) never match.
pub const SILENT_FRAME_RMS: f64 = 32.0;

/// How much of the audio carried the target tone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ToneReport {
    /// Number of complete 20 ms frames examined.
    pub frames: usize,
    /// Frames where the target dominated.
    pub matching_frames: usize,
    /// `matching_frames / frames` (0 when there were no frames).
    pub fraction: f64,
}

/// Measures the presence of `frequency_hz` in `samples`.
pub fn tone_presence(samples: &[i16], sample_rate: u32, frequency_hz: f64, min_power_fraction: f64) -> ToneReport {
    let frame_len = (sample_rate / 1000 * FRAME_MS) as usize;
    let mut report = ToneReport { frames: 0, matching_frames: 0, fraction: 0.0 };
    if frame_len == 0 {
        return report;
    }
    for frame in samples.chunks_exact(frame_len) {
        report.frames += 1;
        let energy: f64 = frame.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
        let rms = (energy / frame.len() as f64).sqrt();
        if rms >= SILENT_FRAME_RMS && power_fraction(frame, sample_rate, frequency_hz) >= min_power_fraction {
            report.matching_frames += 1;
        }
    }
    if report.frames > 0 {
        report.fraction = report.matching_frames as f64 / report.frames as f64;
    }
    report
}

/// Fraction (0..≈1) of the frame's energy at `frequency_hz`, from the Goertzel
/// power normalised by Parseval: a sine exactly at the target gives 1.0.
pub fn power_fraction(frame: &[i16], sample_rate: u32, frequency_hz: f64) -> f64 {
    let n = frame.len() as f64;
    let energy: f64 = frame.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    if energy == 0.0 {
        return 0.0;
    }
    goertzel_power(frame, sample_rate, frequency_hz) * 2.0 / (n * energy)
}

/// |X(f)|² of the frame at `frequency_hz` (need not be an integer bin).
pub fn goertzel_power(frame: &[i16], sample_rate: u32, frequency_hz: f64) -> f64 {
    let omega = 2.0 * std::f64::consts::PI * frequency_hz / f64::from(sample_rate);
    let coefficient = 2.0 * omega.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &sample in frame {
        let s0 = f64::from(sample) + coefficient * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - coefficient * s1 * s2).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq_hz: f64, sample_rate: u32, seconds: f64, amplitude: f64) -> Vec<i16> {
        let count = (f64::from(sample_rate) * seconds) as usize;
        (0..count)
            .map(|n| {
                (amplitude * (2.0 * std::f64::consts::PI * freq_hz * n as f64 / f64::from(sample_rate)).sin()) as i16
            })
            .collect()
    }

    /// Deterministic white-ish noise (xorshift), amplitude ±`amplitude`.
    fn noise(count: usize, amplitude: i32) -> Vec<i16> {
        crate::audio::xorshift(0x2545_F491_4F6C_DD1D)
            .take(count)
            .map(|state| ((state % (2 * amplitude as u64 + 1)) as i32 - amplitude) as i16)
            .collect()
    }

    #[test]
    fn detects_a_1khz_tone_at_both_rates() {
        for rate in [8000, 16000] {
            let report = tone_presence(&sine(1000.0, rate, 1.0, 8000.0), rate, 1000.0, 0.5);
            assert_eq!(report.frames, 50);
            assert_eq!(report.fraction, 1.0, "rate {rate}");
        }
        let fraction = power_fraction(&sine(1000.0, 8000, 0.02, 8000.0), 8000, 1000.0);
        assert!((fraction - 1.0).abs() < 0.01, "{fraction}");
    }

    #[test]
    fn a_1200hz_tone_is_not_taken_for_1khz() {
        let report = tone_presence(&sine(1200.0, 8000, 1.0, 8000.0), 8000, 1000.0, 0.5);
        assert_eq!(report.matching_frames, 0);
        assert!(power_fraction(&sine(1200.0, 8000, 0.02, 8000.0), 8000, 1000.0) < 0.01);
    }

    #[test]
    fn silence_and_noise_do_not_match() {
        assert_eq!(tone_presence(&vec![0; 8000], 8000, 1000.0, 0.5).matching_frames, 0);
        let quiet_tone = sine(1000.0, 8000, 1.0, 20.0); // below the silence floor
        assert_eq!(tone_presence(&quiet_tone, 8000, 1000.0, 0.5).matching_frames, 0);
        let report = tone_presence(&noise(8000, 8000), 8000, 1000.0, 0.5);
        assert_eq!(report.matching_frames, 0);
    }

    #[test]
    fn partial_presence_is_a_fraction_of_frames() {
        let mut audio = sine(1000.0, 8000, 0.5, 8000.0);
        audio.extend(vec![0; 4000]);
        let report = tone_presence(&audio, 8000, 1000.0, 0.5);
        assert_eq!((report.frames, report.matching_frames), (50, 25));
        assert_eq!(report.fraction, 0.5);
    }

    #[test]
    fn tone_in_noise_still_dominates() {
        let tone = sine(1000.0, 8000, 1.0, 8000.0);
        let mixed: Vec<i16> = tone.iter().zip(noise(8000, 2000)).map(|(&t, n)| t.saturating_add(n)).collect();
        assert!(tone_presence(&mixed, 8000, 1000.0, 0.5).fraction > 0.9);
    }
}
