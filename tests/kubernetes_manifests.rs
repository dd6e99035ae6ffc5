//! The Kubernetes manifests in `deploy/kubernetes/`: valid against the
//! Kubernetes JSON schemas (strictly: an unknown field is an error), checked
//! offline by kubernetes-validate (PyPI; `scripts/install-deps` installs it
//! in `~/.cache/callprobe/kubernetes-validate`), which must also catch a
//! misspelt field, a wrong type and an unknown kind; and consistent with
//! callprobe: N said the same way everywhere, the secrets the scenario reads
//! given from the Secret, the example scenario accepted by `callprobe check`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::peers::TempDir;

/// The oldest Kubernetes the Job is for (`backoffLimitPerIndex`, on by
/// default from 1.29) and the newest the pinned kubernetes-validate knows.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.29.0", "1.37.0"];

fn manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join("kubernetes")
}

/// Every `*.yaml` in `deploy/kubernetes/`, sorted.
fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(manifests_dir())
        .expect("deploy/kubernetes/")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

fn read(name: &str) -> String {
    let path = manifests_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// `$CALLPROBE_KUBERNETES_VALIDATE`, else the venv `scripts/install-deps`
/// makes; `None` after [`support::skip_or_fail`] when it is not there.
fn validator(test: &str) -> Option<PathBuf> {
    let path = match std::env::var_os("CALLPROBE_KUBERNETES_VALIDATE") {
        Some(p) => PathBuf::from(p),
        None => {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .unwrap_or_default();
            cache.join("callprobe/kubernetes-validate/bin/kubernetes-validate")
        }
    };
    if path.is_file() {
        return Some(path);
    }
    support::skip_or_fail(
        test,
        &format!(
            "needs kubernetes-validate ({} is not there): run scripts/install-deps, or set \
             CALLPROBE_KUBERNETES_VALIDATE",
            path.display()
        ),
    );
    None
}

/// Validates `files` strictly against `version`: passed (exit 0 and no
/// warning: an unknown kind is only a warning to the tool), and what it said.
fn validate(tool: &Path, version: &str, files: &[PathBuf]) -> (bool, String) {
    let out = Command::new(tool)
        .args(["--kubernetes-version", version, "--strict"])
        .args(files)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", tool.display()));
    let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let clean = out.status.success() && !said.lines().any(|l| l.starts_with("WARN") || l.starts_with("ERROR"));
    (clean, said)
}

#[test]
fn the_manifests_match_the_kubernetes_schemas() {
    let Some(tool) = validator("the_manifests_match_the_kubernetes_schemas") else { return };
    let files = manifests();
    let names: Vec<String> =
        files.iter().filter_map(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["configmap.yaml", "job.yaml", "merge-job.yaml", "pvc.yaml", "secret.example.yaml"]);
    for version in KUBERNETES_VERSIONS {
        let (clean, said) = validate(&tool, version, &files);
        assert!(clean, "deploy/kubernetes/ against Kubernetes {version}:\n{said}");
        // configmap.yaml holds two resources; every resource is checked.
        assert_eq!(said.matches(" passed for resource ").count(), 6, "{said}");
    }
}

#[test]
fn the_validator_catches_mistakes() {
    let Some(tool) = validator("the_validator_catches_mistakes") else { return };
    let work = TempDir::new("callprobe-k8s").expect("temp dir");
    let job = read("job.yaml");
    let mistakes = [
        ("misspelt-field.yaml", job.replace("completionMode: Indexed", "completionsMode: Indexed"), "completionsMode"),
        ("wrong-type.yaml", job.replace("parallelism: 3", "parallelism: three"), "'three' is not of type 'integer'"),
        (
            "misplaced-field.yaml",
            job.replace("      restartPolicy: Never", "      restartPolicy: Never\n      completions: 3"),
            "'completions' was unexpected",
        ),
        ("unknown-kind.yaml", job.replace("kind: Job", "kind: Jobb"), "Couldn't find schema for kind Jobb"),
    ];
    for (name, text, expected) in mistakes {
        assert_ne!(text, job, "{name}: the mistake was made");
        let path = work.path().join(name);
        std::fs::write(&path, text).expect("write the manifest");
        let (clean, said) = validate(&tool, KUBERNETES_VERSIONS[0], &[path]);
        assert!(!clean, "{name} must not pass:\n{said}");
        assert!(said.contains(expected), "{name}: expected '{expected}' in:\n{said}");
    }
}

/// The value of `key: value` on the first line (trimmed) that starts with `key:`.
fn value_of<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().map(str::trim).find_map(|l| l.strip_prefix(&format!("{key}:"))).map(|v| v.trim().trim_matches('"'))
}

#[test]
fn the_manifests_agree_with_callprobe() {
    let job = read("job.yaml");
    let (completions, parallelism) = (value_of(&job, "completions"), value_of(&job, "parallelism"));
    let shards = job.lines().skip_while(|l| !l.contains("name: SHARDS")).nth(1).and_then(|l| value_of(l, "value"));
    assert_eq!((completions, parallelism), (shards, shards), "completions, parallelism and SHARDS must be the same N");
    assert!(job.contains("completionMode: Indexed") && job.contains("--shard \"auto/$SHARDS\""), "{job}");
    assert!(job.contains("--report-dir \"/results/shard-$JOB_COMPLETION_INDEX\""), "{job}");
    assert!(read("merge-job.yaml").contains("callprobe merge /results/shard-*"));

    // Every secret the job hands over is in the example Secret, and every
    // variable the example scenario reads is handed over.
    let secret = read("secret.example.yaml");
    let settings = read("configmap.yaml");
    let keys: Vec<&str> = job.lines().filter_map(|l| value_of(l, "key")).collect();
    assert_eq!(keys, ["SIP_AUTH_PASSWORD", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"]);
    for key in &keys {
        assert!(secret.lines().any(|l| l.trim().starts_with(&format!("{key}:"))), "{key} in secret.example.yaml");
    }
    let scenario = scenario_from_configmap(&settings);
    for var in ["SIP_AUTH_PASSWORD", "LIVEKIT_API_SECRET"] {
        assert!(scenario.contains(&format!("\"{var}\"")), "the scenario reads {var}");
    }
    let mut env: Vec<(String, String)> = keys.iter().map(|k| (k.to_string(), "from-the-secret".to_string())).collect();
    for var in ["LIVEKIT_URL", "LIVEKIT_SIP_HOST", "CALLED_NUMBER", "CALLER_NUMBER", "SIP_AUTH_USER", "AGENT_NAME"] {
        let value = value_of(&settings, var).unwrap_or_else(|| panic!("{var} in the callprobe-settings ConfigMap"));
        env.push((var.to_string(), value.to_string()));
    }

    // The example scenario, with the image's clip path pointed at this
    // checkout's fixtures, passes `callprobe check` with those variables.
    let work = TempDir::new("callprobe-k8s-scenario").expect("temp dir");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let local = scenario.replace("/opt/callprobe/fixtures", &fixtures.to_string_lossy());
    std::fs::write(work.path().join("cloud.toml"), local).expect("write the scenario");
    let out = Command::new(env!("CARGO_BIN_EXE_callprobe"))
        .args(["check", work.path().to_str().expect("UTF-8")])
        .env_clear()
        .envs(env)
        .output()
        .expect("run callprobe check");
    let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "callprobe check of the ConfigMap's scenario:\n{said}");
    assert!(said.contains("checked 1 file, 2 cases: ok"), "{said}");
}

/// The `cloud.toml: |` block of the scenarios ConfigMap, unindented.
fn scenario_from_configmap(configmap: &str) -> String {
    let mut lines = configmap.lines().skip_while(|l| l.trim() != "cloud.toml: |").skip(1);
    let first = lines.next().expect("cloud.toml has content");
    let indent = first.len() - first.trim_start().len();
    let mut text = format!("{}\n", &first[indent..]);
    for line in lines {
        if !line.trim().is_empty() && line.len() - line.trim_start().len() < indent {
            break;
        }
        text.push_str(line.get(indent..).unwrap_or(""));
        text.push('\n');
    }
    text
}
