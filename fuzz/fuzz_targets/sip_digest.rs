//! Fuzz target: digest challenge parsing (`WWW-Authenticate` /
//! `Proxy-Authenticate`, src/sip/digest.rs). The input is one or more header
//! values separated by newlines (several challenge headers).
//!
//! Invariants beyond "no panic":
//! - `strongest` picks a challenge that `parse_challenge` accepts on its own,
//!   and none of the others is stronger;
//! - the `Authorization` we compute for it renders a header whose quoted
//!   realm and nonce read back unchanged (our escaping round-trips through
//!   our own auth-param parser).

#![no_main]

use callprobe::secret::Secret;
use callprobe::sip::digest::{authorize, parse_challenge, strongest, RequestInfo};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let values: Vec<String> = text.split('\n').map(str::to_string).collect();
    let parsed: Vec<_> = values.iter().filter_map(|v| parse_challenge(v).ok()).collect();
    let Ok(best) = strongest(&values) else {
        assert!(parsed.is_empty(), "strongest failed although a challenge parses");
        return;
    };
    assert!(parsed.contains(&best), "strongest returned a challenge no header parses to");
    assert!(parsed.iter().all(|c| c.algorithm <= best.algorithm), "a stronger challenge was passed over");

    let request = RequestInfo { method: "INVITE", uri: "sip:+15550100@127.0.0.1:5060", body: b"v=0\r\n" };
    let auth = authorize(&best, "probe", &Secret::new("s3cret"), &request, "0a4f113b", 1);
    let rendered = auth.header_value();
    // The Authorization header is itself a Digest auth-param list: our
    // parser must read the realm and nonce we quoted back unchanged.
    if let Ok(back) = parse_challenge(&rendered) {
        assert_eq!(back.realm, best.realm, "realm did not round-trip: {rendered:?}");
        assert_eq!(back.nonce, best.nonce, "nonce did not round-trip: {rendered:?}");
        assert_eq!(back.opaque, best.opaque, "opaque did not round-trip: {rendered:?}");
    } else {
        panic!("our Authorization value does not parse as auth-params: {rendered:?}");
    }
});
