//! WAV files: loading any PCM/float WAV as mono 16-bit audio at the rate we
//! need, writing 16-bit mono recordings, and the sample-rate conversion that
//! both use.
//!
//! Reading and writing go through `hound`; resampling through `rubato`'s
//! synchronous FFT resampler (fixed ratio, whole clip at once, delay trimmed).
//! Multi-channel files are downmixed by averaging the channels.

use std::io::{Read, Seek, Write};
use std::path::Path;

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};
use thiserror::Error;

/// Why a WAV file could not be read, converted or written.
#[derive(Debug, Error)]
pub enum WavError {
    #[error("WAV file: {0}")]
    Wav(#[from] hound::Error),
    #[error("WAV file has {0} channels")]
    NoChannels(u16),
    #[error("unsupported WAV sample format: {bits}-bit {format:?}")]
    UnsupportedFormat { bits: u16, format: hound::SampleFormat },
    #[error("resampling from {from} Hz to {to} Hz failed: {reason}")]
    Resample { from: u32, to: u32, reason: String },
}

/// Loads a WAV file as mono 16-bit PCM at `target_rate`.
pub fn load_mono(path: &Path, target_rate: u32) -> Result<Vec<i16>, WavError> {
    read_mono(hound::WavReader::open(path)?, target_rate)
}

/// Reads WAV data as mono 16-bit PCM at `target_rate`. Accepts 8/16/24/32-bit
/// integer and 32-bit float samples, any rate and channel count.
pub fn read_mono<R: Read>(reader: hound::WavReader<R>, target_rate: u32) -> Result<Vec<i16>, WavError> {
    let spec = reader.spec();
    let channels = usize::from(spec.channels);
    if channels == 0 {
        return Err(WavError::NoChannels(spec.channels));
    }
    let interleaved: Vec<f32> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => reader.into_samples::<f32>().collect::<Result<_, _>>()?,
        (hound::SampleFormat::Int, bits @ 8..=32) => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            reader.into_samples::<i32>().map(|s| s.map(|v| v as f32 * scale)).collect::<Result<_, _>>()?
        }
        (format, bits) => return Err(WavError::UnsupportedFormat { bits, format }),
    };
    let mono: Vec<f32> =
        interleaved.chunks_exact(channels).map(|frame| frame.iter().sum::<f32>() / channels as f32).collect();
    let resampled = resample(&mono, spec.sample_rate, target_rate)?;
    Ok(resampled.into_iter().map(f32_to_i16).collect())
}

/// Writes 16-bit mono PCM to a WAV file.
pub fn write_mono(path: &Path, sample_rate: u32, samples: &[i16]) -> Result<(), WavError> {
    let file = std::io::BufWriter::new(std::fs::File::create(path).map_err(hound::Error::IoError)?);
    write_mono_to(file, sample_rate, samples)
}

/// Writes 16-bit mono PCM as WAV to any seekable writer.
pub fn write_mono_to<W: Write + Seek>(writer: W, sample_rate: u32, samples: &[i16]) -> Result<(), WavError> {
    let spec =
        hound::WavSpec { channels: 1, sample_rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut wav = hound::WavWriter::new(writer, spec)?;
    let mut sample_writer = wav.get_i16_writer(samples.len() as u32);
    for &sample in samples {
        sample_writer.write_sample(sample);
    }
    sample_writer.flush()?;
    wav.finalize()?;
    Ok(())
}

/// Resamples 16-bit mono PCM (e.g. 8 kHz call audio to 16 kHz for the VAD).
pub fn resample_i16(samples: &[i16], from_rate: u32, to_rate: u32) -> Result<Vec<i16>, WavError> {
    let input: Vec<f32> = samples.iter().map(|&s| f32::from(s) / 32768.0).collect();
    Ok(resample(&input, from_rate, to_rate)?.into_iter().map(f32_to_i16).collect())
}

/// Resamples mono float audio; the output has `len × to / from` samples
/// (rounded up) and no added delay.
pub fn resample(samples: &[f32], from_rate: u32, to_rate: u32) -> Result<Vec<f32>, WavError> {
    if from_rate == to_rate || samples.is_empty() {
        return Ok(samples.to_vec());
    }
    let fail = |reason: String| WavError::Resample { from: from_rate, to: to_rate, reason };
    let mut resampler = Fft::<f32>::new(from_rate as usize, to_rate as usize, 1024, 1, FixedSync::Input)
        .map_err(|e| fail(e.to_string()))?;
    let input = InterleavedSlice::new(samples, 1, samples.len()).map_err(|e| fail(e.to_string()))?;
    let output = resampler.process_all(&input, samples.len(), None).map_err(|e| fail(e.to_string()))?;
    Ok(output.take_data())
}

fn f32_to_i16(sample: f32) -> i16 {
    (sample * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn wav_bytes<S: hound::Sample + Copy>(spec: hound::WavSpec, samples: &[S]) -> Vec<u8> {
        let mut cursor = Cursor::new(Vec::new());
        let mut writer = hound::WavWriter::new(&mut cursor, spec).unwrap();
        for &s in samples {
            writer.write_sample(s).unwrap();
        }
        writer.finalize().unwrap();
        cursor.into_inner()
    }

    fn spec(channels: u16, sample_rate: u32, bits: u16, format: hound::SampleFormat) -> hound::WavSpec {
        hound::WavSpec { channels, sample_rate, bits_per_sample: bits, sample_format: format }
    }

    fn read(bytes: Vec<u8>, rate: u32) -> Vec<i16> {
        read_mono(hound::WavReader::new(Cursor::new(bytes)).unwrap(), rate).unwrap()
    }

    #[test]
    fn reads_every_integer_width_and_float_as_the_same_level() {
        use hound::SampleFormat::{Float, Int};
        let half = 16384i16; // 0.5 full scale
        assert_eq!(read(wav_bytes(spec(1, 8000, 16, Int), &[half, -half]), 8000), vec![half, -half]);
        assert_eq!(read(wav_bytes(spec(1, 8000, 8, Int), &[64i8, -64]), 8000), vec![half, -half]);
        assert_eq!(read(wav_bytes(spec(1, 8000, 24, Int), &[1i32 << 22, -(1 << 22)]), 8000), vec![half, -half]);
        assert_eq!(read(wav_bytes(spec(1, 8000, 32, Int), &[1i32 << 30, -(1 << 30)]), 8000), vec![half, -half]);
        assert_eq!(read(wav_bytes(spec(1, 8000, 32, Float), &[0.5f32, -0.5, 2.0]), 8000), vec![half, -half, 32767]);
    }

    #[test]
    fn downmixes_channels_by_averaging() {
        let stereo = wav_bytes(spec(2, 8000, 16, hound::SampleFormat::Int), &[1000i16, 3000, -2000, 0]);
        assert_eq!(read(stereo, 8000), vec![2000, -1000]);
    }

    #[test]
    fn resamples_44100_stereo_to_16k_keeping_frequency_and_length() {
        let rate = 44_100u32;
        let samples: Vec<i16> = (0..rate)
            .flat_map(|n| {
                let v = (8000.0 * (2.0 * std::f64::consts::PI * 1000.0 * f64::from(n) / f64::from(rate)).sin()) as i16;
                [v, v]
            })
            .collect();
        let out = read(wav_bytes(spec(2, rate, 16, hound::SampleFormat::Int), &samples), 16_000);
        assert!((out.len() as i64 - 16_000).abs() <= 1, "{}", out.len());
        // Still a 1 kHz sine: count zero crossings in the middle 0.5 s.
        let middle = &out[4000..12000];
        let crossings = middle.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        assert!((999..=1001).contains(&crossings), "{crossings}");
        let peak = middle.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!((7800..=8200).contains(&peak), "{peak}");
    }

    #[test]
    fn write_then_read_round_trips() {
        let dir = std::env::temp_dir().join(format!("callprobe-wav-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.wav");
        let samples: Vec<i16> = (0..320).map(|n| (n * 100 - 16000) as i16).collect();
        write_mono(&path, 16000, &samples).unwrap();
        let reader = hound::WavReader::open(&path).unwrap();
        assert_eq!(reader.spec(), spec(1, 16000, 16, hound::SampleFormat::Int));
        assert_eq!(load_mono(&path, 16000).unwrap(), samples);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unreadable_input_is_an_error_value() {
        let garbage = std::env::temp_dir().join(format!("callprobe-garbage-{}.wav", std::process::id()));
        std::fs::write(&garbage, b"RIFF but not really a wav").unwrap();
        assert!(matches!(load_mono(&garbage, 8000), Err(WavError::Wav(_))));
        std::fs::remove_file(&garbage).unwrap();
        assert!(matches!(load_mono(Path::new("/nonexistent/x.wav"), 8000), Err(WavError::Wav(_))));
    }
}
