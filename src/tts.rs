//! The offline text-to-speech that speaks a conversation's `say_text` (and
//! `--say TEXT`): festival's `text2wave` with the HTS voice
//! `cmu_us_slt_arctic_hts` (Debian packages `festival` and
//! `festvox-us-slt-hts`), run as a subprocess with a deadline, its WAV read
//! as 16 kHz mono PCM.
//!
//! Owns the cache too: what was spoken once is kept as a WAV in
//! `$CALLPROBE_TTS_CACHE`, else `$XDG_CACHE_HOME/callprobe/tts`, else
//! `~/.cache/callprobe/tts`, named by the SHA-256 of (engine, voice, rate,
//! text), so a suite run again does not synthesise again. Files appear
//! there whole (written aside, then renamed); a cache that cannot be
//! written only costs the synthesis.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::audio::wav::{self, WavError};

/// The program that synthesises.
pub const ENGINE: &str = "text2wave";
/// The festival voice, as `text2wave -eval` selects it.
pub const VOICE: &str = "voice_cmu_us_slt_arctic_hts";
/// Where Debian's `festvox-us-slt-hts` installs that voice.
pub const VOICE_DIR: &str = "/usr/share/festival/voices/us/cmu_us_slt_arctic_hts";
/// The rate of the PCM [`speak`] returns.
pub const RATE: u32 = 16_000;
/// Longest a synthesis may take (a sentence takes well under a second).
pub const TIMEOUT: Duration = Duration::from_secs(60);
/// Overrides the cache directory.
pub const CACHE_VAR: &str = "CALLPROBE_TTS_CACHE";
/// Longest text accepted (a turn, not a speech).
pub const MAX_TEXT_CHARS: usize = 2_000;

const INSTALL_HINT: &str = "install festival and festvox-us-slt-hts (Debian: apt-get install festival \
     festvox-us-slt-hts, or scripts/install-deps), or say a WAV file instead";

/// Why text could not be spoken.
#[derive(Debug, thiserror::Error)]
pub enum TtsError {
    #[error("the offline TTS ({ENGINE}) is not installed: {INSTALL_HINT}")]
    NotInstalled,
    #[error("the TTS voice cmu_us_slt_arctic_hts is not installed ({VOICE_DIR} is missing): {INSTALL_HINT}")]
    VoiceMissing,
    #[error("nothing to say: the text is empty")]
    EmptyText,
    #[error("the text is {0} characters long; at most {MAX_TEXT_CHARS} can be spoken")]
    TooLong(usize),
    #[error("cannot run {ENGINE}: {0}")]
    Spawn(std::io::Error),
    #[error("{ENGINE} took longer than {}s and was stopped", .0.as_secs())]
    TimedOut(Duration),
    #[error("{ENGINE} produced no audio: {0}")]
    Failed(String),
    #[error("reading what {ENGINE} produced: {0}")]
    Wav(#[from] WavError),
}

/// `text`, spoken by the offline TTS: mono 16-bit PCM at 16 kHz
/// ([`RATE`]), from the cache when it was spoken before.
pub fn speak(text: &str) -> Result<Vec<i16>, TtsError> {
    speak_cached(text, cache_dir().as_deref())
}

/// [`speak`] with this cache directory (`None`: no cache).
pub fn speak_cached(text: &str, cache: Option<&Path>) -> Result<Vec<i16>, TtsError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(TtsError::EmptyText);
    }
    let chars = text.chars().count();
    if chars > MAX_TEXT_CHARS {
        return Err(TtsError::TooLong(chars));
    }
    let key = cache_key(text);
    let cache = cache.filter(|dir| match std::fs::create_dir_all(dir) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!("tts cache: cannot create {}: {e}; not caching", dir.display());
            false
        }
    });
    if let Some(hit) = cache.map(|dir| dir.join(format!("{key}.wav"))).filter(|p| p.is_file()) {
        match wav::load_mono(&hit, RATE) {
            Ok(pcm) if !pcm.is_empty() => return Ok(pcm),
            // A damaged entry is spoken again and replaced.
            _ => tracing::warn!("tts cache: {} is unreadable; synthesising again", hit.display()),
        }
    }
    // Synthesise next to where the result will live, so that keeping it is
    // a rename; without a cache, in the temp directory.
    let dir = cache.map_or_else(std::env::temp_dir, Path::to_path_buf);
    let scratch = Scratch(dir.join(format!("{key}.{}.partial.wav", unique_suffix())));
    synthesise(text, &scratch.0)?;
    let pcm = wav::load_mono(&scratch.0, RATE)?;
    if pcm.is_empty() {
        return Err(TtsError::Failed("the WAV it wrote holds no samples".into()));
    }
    if let Some(dir) = cache {
        let kept = dir.join(format!("{key}.wav"));
        if let Err(e) = std::fs::rename(&scratch.0, &kept) {
            tracing::warn!("tts cache: cannot keep {}: {e}", kept.display());
        }
    }
    Ok(pcm)
}

/// Whether the engine and its voice are installed.
pub fn available() -> Result<(), TtsError> {
    if find_engine().is_none() {
        return Err(TtsError::NotInstalled);
    }
    if !Path::new(VOICE_DIR).is_dir() {
        return Err(TtsError::VoiceMissing);
    }
    Ok(())
}

/// The cache directory: `$CALLPROBE_TTS_CACHE`, else
/// `$XDG_CACHE_HOME/callprobe/tts`, else `~/.cache/callprobe/tts`; `None`
/// when none of them is set.
pub fn cache_dir() -> Option<PathBuf> {
    cache_dir_from(&|name| std::env::var_os(name).map(PathBuf::from))
}

/// [`cache_dir`] with the variables from `env`.
pub fn cache_dir_from(env: &dyn Fn(&str) -> Option<PathBuf>) -> Option<PathBuf> {
    // Relative values are ignored, as the XDG base directory spec says.
    let set = |name: &str| env(name).filter(|p| p.is_absolute());
    set(CACHE_VAR)
        .or_else(|| set("XDG_CACHE_HOME").map(|d| d.join("callprobe/tts")))
        .or_else(|| set("HOME").map(|d| d.join(".cache/callprobe/tts")))
}

/// The cache file's name (without `.wav`): hex SHA-256 of what decides the
/// audio.
pub fn cache_key(text: &str) -> String {
    let mut hash = Sha256::new();
    for part in [ENGINE, VOICE, &RATE.to_string(), text] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `text2wave`, text on its stdin, the WAV to `out`.
fn synthesise(text: &str, out: &Path) -> Result<(), TtsError> {
    available()?;
    let engine = find_engine().ok_or(TtsError::NotInstalled)?;
    let mut child = Command::new(engine)
        .args(["-eval", &format!("({VOICE})"), "-F", &RATE.to_string(), "-o"])
        .arg(out)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(TtsError::Spawn)?;
    // Read stderr aside so that a chatty engine cannot block on a full pipe.
    let stderr = child.stderr.take().map(|mut pipe| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    });
    if let Some(mut stdin) = child.stdin.take() {
        // A failed write shows as the engine's failure below.
        let _ = stdin.write_all(text.as_bytes()).and_then(|()| stdin.write_all(b"\n"));
    }
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        match child.try_wait().map_err(TtsError::Spawn)? {
            Some(status) => break status,
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(TtsError::TimedOut(TIMEOUT));
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    let stderr = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
    // text2wave exits 0 even when festival fails: the file tells.
    let wrote = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    if !status.success() || wrote <= 44 {
        let detail = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ");
        let detail = if detail.is_empty() { format!("exit status {status}") } else { detail };
        return Err(TtsError::Failed(detail));
    }
    Ok(())
}

/// `text2wave` on the PATH.
fn find_engine() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(ENGINE)).find(|p| p.is_file())
}

/// Distinguishes concurrent syntheses of the same text.
fn unique_suffix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A file removed when dropped (unless renamed away first).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cache directory of its own, removed on drop.
    struct TempCache(PathBuf);

    impl TempCache {
        fn new(tag: &str) -> TempCache {
            let dir = std::env::temp_dir().join(format!("callprobe-tts-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            TempCache(dir)
        }
    }

    impl Drop for TempCache {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn installed() -> bool {
        match available() {
            Ok(()) => true,
            Err(e) => {
                eprintln!("skipped: {e}");
                false
            }
        }
    }

    fn rms(pcm: &[i16]) -> f64 {
        (pcm.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / pcm.len().max(1) as f64).sqrt()
    }

    #[test]
    fn speaks_a_sentence_and_caches_it() {
        if !installed() {
            return;
        }
        let cache = TempCache::new("speak");
        let text = "What is my order number?";
        let cold = Instant::now();
        let first = speak_cached(text, Some(&cache.0)).unwrap_or_else(|e| panic!("{e}"));
        let cold = cold.elapsed();
        let seconds = first.len() as f64 / f64::from(RATE);
        assert!((0.8..5.0).contains(&seconds), "{seconds} s of audio for {text:?}");
        assert!(rms(&first) > 300.0, "too quiet: rms {}", rms(&first));
        let entries: Vec<_> = std::fs::read_dir(&cache.0).expect("cache dir").flatten().map(|e| e.path()).collect();
        assert_eq!(entries, [cache.0.join(format!("{}.wav", cache_key(text)))]);

        let warm = Instant::now();
        let second = speak_cached(&format!("  {text}\n"), Some(&cache.0)).unwrap_or_else(|e| panic!("{e}"));
        let warm = warm.elapsed();
        assert_eq!(first, second, "the cached audio is what was spoken");
        println!("tts: {seconds:.2} s of audio; cold {cold:?}, cached {warm:?}");

        // A damaged entry is spoken again.
        std::fs::write(&entries[0], b"not a wav").expect("damage the entry");
        assert_eq!(speak_cached(text, Some(&cache.0)).ok(), Some(first));
    }

    #[test]
    fn different_text_is_different_audio_and_no_cache_works() {
        if !installed() {
            return;
        }
        let a = speak_cached("yes", None).unwrap_or_else(|e| panic!("{e}"));
        let b = speak_cached("please stop talking", None).unwrap_or_else(|e| panic!("{e}"));
        assert!(b.len() > a.len(), "{} vs {}", b.len(), a.len());
    }

    #[test]
    fn empty_and_overlong_text_are_refused_before_synthesis() {
        assert!(matches!(speak_cached("  \n", None), Err(TtsError::EmptyText)));
        let long = "a".repeat(MAX_TEXT_CHARS + 1);
        assert!(matches!(speak_cached(&long, None), Err(TtsError::TooLong(n)) if n == MAX_TEXT_CHARS + 1));
    }

    #[test]
    fn the_key_depends_on_the_text_only_here() {
        assert_eq!(cache_key("hello"), cache_key("hello"));
        assert_ne!(cache_key("hello"), cache_key("hello."));
        assert_eq!(cache_key("x").len(), 64);
    }

    #[test]
    fn cache_dir_precedence() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| PathBuf::from(v))
        };
        let all = env(&[(CACHE_VAR, "/c"), ("XDG_CACHE_HOME", "/x"), ("HOME", "/h")]);
        assert_eq!(cache_dir_from(&all), Some(PathBuf::from("/c")));
        let xdg = env(&[("XDG_CACHE_HOME", "/x"), ("HOME", "/h")]);
        assert_eq!(cache_dir_from(&xdg), Some(PathBuf::from("/x/callprobe/tts")));
        let home = env(&[("XDG_CACHE_HOME", "relative"), ("HOME", "/h")]);
        assert_eq!(cache_dir_from(&home), Some(PathBuf::from("/h/.cache/callprobe/tts")));
        assert_eq!(cache_dir_from(&env(&[])), None);
    }

    #[test]
    fn the_missing_engine_says_what_to_install() {
        let e = TtsError::NotInstalled.to_string();
        assert!(e.contains("install festival and festvox-us-slt-hts (Debian"), "{e}");
    }
}
