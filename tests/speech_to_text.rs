//! The embedded speech-to-text engine on our fixtures, as a call delivers
//! them: 16 kHz (G.722-like) and through G.711 µ-law at 8 kHz. Prints the
//! word error rate and the CPU cost per second of audio (numbers, not
//! assertions on speed: the machine is shared). Needs the model
//! (`scripts/install-stt-model`; `scripts/test` installs it).

use std::path::Path;
use std::time::Instant;

use callprobe::audio::wav;
use callprobe::media::g711::{linear_to_ulaw, ulaw_to_linear};
use callprobe::transcribe::{whisper, Transcriber};
use callprobe::verdict::conversation::{normalise, similarity, word_errors};

#[allow(dead_code)]
mod support;

/// Fixture, and what it says.
const CLIPS: [(&str, &str); 5] = [
    ("hello_can_you_hear_me_slt_16k.wav", "Hello, can you hear me?"),
    ("what_is_my_order_number_slt_16k.wav", "What is my order number?"),
    ("what_time_is_it_slt_16k.wav", "What time is it?"),
    ("please_stop_talking_slt_16k.wav", "Please stop talking."),
    ("tell_me_a_story_slt_16k.wav", "Tell me a story."),
];

fn engine(test: &str) -> Option<Box<dyn Transcriber>> {
    match whisper::load(None) {
        Ok(e) => Some(e),
        Err(e) => {
            support::skip_or_fail(test, &e.to_string());
            None
        }
    }
}

/// 16 kHz → 8 kHz µ-law → 16 kHz, as a G.711 call delivers our recording.
fn through_g711(pcm_16k: &[i16]) -> Vec<i16> {
    let narrow = wav::resample_i16(pcm_16k, 16_000, 8_000).unwrap_or_else(|e| panic!("{e}"));
    let decoded: Vec<i16> = narrow.iter().map(|s| ulaw_to_linear(linear_to_ulaw(*s))).collect();
    wav::resample_i16(&decoded, 8_000, 16_000).unwrap_or_else(|e| panic!("{e}"))
}

fn cpu_seconds() -> f64 {
    // utime + stime of this process, in clock ticks (fields 14 and 15 of /proc/self/stat).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

#[test]
fn the_embedded_engine_transcribes_our_fixtures_over_g711_and_16k() {
    let Some(engine) = engine("the_embedded_engine_transcribes_our_fixtures_over_g711_and_16k") else { return };
    for (path_name, channel) in [("16 kHz", false), ("G.711", true)] {
        let (mut errors, mut words, mut audio_s, mut cpu_s) = (0, 0, 0.0, 0.0);
        for (file, said) in CLIPS {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(file);
            let pcm = wav::load_mono(&path, 16_000).unwrap_or_else(|e| panic!("{file}: {e}"));
            let pcm = if channel { through_g711(&pcm) } else { pcm };
            let (cpu0, wall0) = (cpu_seconds(), Instant::now());
            let heard = engine.transcribe(&pcm).unwrap_or_else(|e| panic!("{file}: {e}"));
            cpu_s += cpu_seconds() - cpu0;
            audio_s += pcm.len() as f64 / 16_000.0;
            let (expected, got) = (normalise(said), normalise(&heard));
            let e: Vec<&str> = expected.split_whitespace().collect();
            errors += word_errors(&e, &got.split_whitespace().collect::<Vec<_>>());
            words += e.len();
            println!("{path_name}: {file}: '{heard}' ({:.2} s wall)", wall0.elapsed().as_secs_f64());
            assert!(similarity(said, &heard) >= 0.75, "{path_name} {file}: expected '{said}', heard '{heard}'");
        }
        println!(
            "{path_name}: word error rate {:.1} % ({errors}/{words} words), {:.2} CPU-s per audio-s",
            100.0 * errors as f64 / words as f64,
            cpu_s / audio_s
        );
    }
}

#[test]
fn silence_and_tones_give_no_words() {
    let Some(engine) = engine("silence_and_tones_give_no_words") else { return };
    assert_eq!(engine.transcribe(&vec![0i16; 32_000]).unwrap_or_else(|e| panic!("{e}")), "");
    let tone = wav::load_mono(&Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tone_1000hz_8k.wav"), 16_000)
        .unwrap_or_else(|e| panic!("{e}"));
    let heard = engine.transcribe(&tone).unwrap_or_else(|e| panic!("{e}"));
    assert!(normalise(&heard).split_whitespace().count() <= 1, "a tone is not speech: '{heard}'");
}
