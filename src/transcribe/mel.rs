//! Whisper's log-mel front end, as openai/whisper computes it (audio.py):
//! a reflect-centred 400-point periodic Hann STFT with hop 160 over one
//! 30 s window (the audio followed by silence), power spectrum through the
//! Slaney mel filters, `log10(max(e, 1e-10))`, clamped to the window's
//! maximum minus 8, then `(x + 4) / 4`.
//!
//! Hand-written because ct2rs's own front end normalises each frame on its
//! own and leaves the padding at zero: measured here on 12 sentences × 3
//! voices over G.711, its transcripts had 26.7 % word errors against 9.6 %
//! with this front end (faster-whisper, the reference: 9.3 %).

use realfft::RealFftPlanner;

pub const N_FFT: usize = 400;
pub const HOP: usize = 160;
/// Frames in one 30 s window.
pub const N_FRAMES: usize = 3000;
/// Samples in one 30 s window at 16 kHz.
pub const N_SAMPLES: usize = N_FRAMES * HOP;

pub struct LogMel {
    /// `n_mels` × (N_FFT/2 + 1).
    filters: Vec<Vec<f64>>,
    window: Vec<f64>,
    n_mels: usize,
}

impl LogMel {
    pub fn new(n_mels: usize) -> LogMel {
        let bank = mel_spec::mel::mel(16_000.0, N_FFT, n_mels, None, None, false, true);
        let filters = bank.rows().into_iter().map(|r| r.to_vec()).collect();
        let window =
            (0..N_FFT).map(|n| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / N_FFT as f64).cos()).collect();
        LogMel { filters, window, n_mels }
    }

    pub fn n_mels(&self) -> usize {
        self.n_mels
    }

    /// One window (`x.len() <= N_SAMPLES`, samples in -1..1) → row-major
    /// `[n_mels][N_FRAMES]`.
    pub fn compute(&self, x: &[f32]) -> Vec<f32> {
        let x = &x[..x.len().min(N_SAMPLES)];
        let half = N_FFT / 2;
        // The audio, then silence (Whisper pads with 30 s), centred with a reflect pad.
        let mut padded = vec![0f64; half + x.len() + N_SAMPLES + half];
        for (i, v) in x.iter().enumerate() {
            padded[half + i] = f64::from(*v);
        }
        for i in 0..half {
            padded[half - 1 - i] = x.get(i + 1).copied().map_or(0.0, f64::from);
        }
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(N_FFT);
        let mut input = fft.make_input_vec();
        let mut spectrum = fft.make_output_vec();
        let mut power = vec![0f64; half + 1];
        // Frames past the audio see only silence: their energy is 0.
        let silent_from = (x.len() + N_FFT).div_ceil(HOP).min(N_FRAMES);
        let floor = 1e-10f64.log10();
        let mut out = vec![floor; self.n_mels * N_FRAMES];
        for t in 0..silent_from {
            let start = t * HOP;
            for (j, slot) in input.iter_mut().enumerate() {
                *slot = padded[start + j] * self.window[j];
            }
            if fft.process(&mut input, &mut spectrum).is_err() {
                continue;
            }
            for (p, c) in power.iter_mut().zip(&spectrum) {
                *p = c.norm_sqr();
            }
            for (m, filter) in self.filters.iter().enumerate() {
                let energy: f64 = filter.iter().zip(&power).map(|(a, b)| a * b).sum();
                out[m * N_FRAMES + t] = energy.max(1e-10).log10();
            }
        }
        let top = out.iter().copied().fold(f64::NEG_INFINITY, f64::max) - 8.0;
        out.iter().map(|v| ((v.max(top) + 4.0) / 4.0) as f32).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_is_flat_and_a_tone_lights_its_band() {
        let mel = LogMel::new(80);
        let silent = mel.compute(&vec![0.0; 16_000]);
        assert_eq!(silent.len(), 80 * N_FRAMES);
        assert!(silent.iter().all(|v| (v - silent[0]).abs() < 1e-6), "no energy anywhere");
        let tone: Vec<f32> =
            (0..16_000).map(|n| (2.0 * std::f32::consts::PI * 1000.0 * n as f32 / 16_000.0).sin() * 0.5).collect();
        let lit = mel.compute(&tone);
        // Frame 50 (0.5 s in): the band around 1 kHz is the loudest, the top bands near the floor.
        let frame = |m: usize| lit[m * N_FRAMES + 50];
        let loudest = (0..80).max_by(|a, b| frame(*a).total_cmp(&frame(*b))).unwrap_or(0);
        assert!((20..35).contains(&loudest), "1 kHz lands in mel band {loudest}");
        assert!(frame(loudest) - frame(79) > 1.0);
        // After the audio: clamped to max - 8 (in log10 units /4 = -2 after scaling).
        assert!((lit[loudest * N_FRAMES + 2000] - (frame(loudest) - 2.0)).abs() < 0.05);
    }
}
