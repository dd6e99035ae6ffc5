//! HTTP Digest authentication for SIP (RFC 2617, RFC 7616, RFC 8760).
//!
//! Owns: parsing `WWW-Authenticate` / `Proxy-Authenticate` challenges,
//! choosing the strongest one we support, and computing the
//! `Authorization` / `Proxy-Authorization` value. Pure functions: the caller
//! supplies the client nonce and nonce count, so every output is reproducible
//! and testable against the RFC vectors.
//!
//! Hand-written on `md-5` + `sha2` because rsip 0.4's `DigestGenerator`
//! ignores `-sess`, prints `nc` in decimal and prints the algorithm as
//! `SHA256`, and its parser rejects `algorithm=SHA-256` and qop lists such as
//! `qop="auth,auth-int"`; the rules here are small and fully tested.

use md5::Md5;
use sha2::{Digest as _, Sha256, Sha512_256};

use crate::secret::Secret;

/// Digest algorithms we can answer, weakest first (the order is the strength
/// ranking used to choose among several challenges).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Algorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
    Sha512_256,
    Sha512_256Sess,
}

impl Algorithm {
    fn parse(token: &str) -> Option<Algorithm> {
        match token.to_ascii_uppercase().as_str() {
            "MD5" => Some(Algorithm::Md5),
            "MD5-SESS" => Some(Algorithm::Md5Sess),
            "SHA-256" => Some(Algorithm::Sha256),
            "SHA-256-SESS" => Some(Algorithm::Sha256Sess),
            "SHA-512-256" => Some(Algorithm::Sha512_256),
            "SHA-512-256-SESS" => Some(Algorithm::Sha512_256Sess),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
            Algorithm::Sha512_256 => "SHA-512-256",
            Algorithm::Sha512_256Sess => "SHA-512-256-sess",
        }
    }

    fn is_session(self) -> bool {
        matches!(self, Algorithm::Md5Sess | Algorithm::Sha256Sess | Algorithm::Sha512_256Sess)
    }

    /// Lower-case hex of the hash of `data`.
    fn hash(self, data: &[u8]) -> String {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => to_hex(&Md5::digest(data)),
            Algorithm::Sha256 | Algorithm::Sha256Sess => to_hex(&Sha256::digest(data)),
            Algorithm::Sha512_256 | Algorithm::Sha512_256Sess => to_hex(&Sha512_256::digest(data)),
        }
    }
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Quality of protection we answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qop {
    Auth,
    AuthInt,
}

impl Qop {
    fn name(self) -> &'static str {
        match self {
            Qop::Auth => "auth",
            Qop::AuthInt => "auth-int",
        }
    }
}

/// One parsed `Digest` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Algorithm,
    /// Whether the challenge named the algorithm (we echo it only then... and
    /// always for non-MD5, as RFC 7616 requires).
    pub algorithm_given: bool,
    /// The qop options offered; empty means RFC 2069 compatibility (no qop),
    /// which is what LiveKit SIP sends.
    pub qop_options: Vec<String>,
    pub stale: bool,
}

impl Challenge {
    /// The qop we will answer with: `auth` when offered, else `auth-int`,
    /// else none.
    pub fn chosen_qop(&self) -> Option<Qop> {
        let has = |q: &str| self.qop_options.iter().any(|o| o.eq_ignore_ascii_case(q));
        if has("auth") {
            Some(Qop::Auth)
        } else if has("auth-int") {
            Some(Qop::AuthInt)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("challenge is not a Digest challenge: {0}")]
    NotDigest(String),
    #[error("challenge lacks {0}")]
    Missing(&'static str),
    #[error("challenge uses unsupported algorithm {0}")]
    UnsupportedAlgorithm(String),
    #[error("challenge offers only unsupported qop values: {0}")]
    UnsupportedQop(String),
    #[error("malformed challenge: {0}")]
    Malformed(String),
}

/// Parses one `WWW-Authenticate`/`Proxy-Authenticate` header value.
pub fn parse_challenge(value: &str) -> Result<Challenge, DigestError> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(char::is_whitespace).unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("Digest") {
        return Err(DigestError::NotDigest(scheme.to_string()));
    }
    let params = parse_auth_params(rest)?;
    let get = |name: &str| params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
    let realm = get("realm").ok_or(DigestError::Missing("realm"))?;
    let nonce = get("nonce").ok_or(DigestError::Missing("nonce"))?;
    let (algorithm, algorithm_given) = match get("algorithm") {
        Some(a) => (Algorithm::parse(&a).ok_or(DigestError::UnsupportedAlgorithm(a.clone()))?, true),
        None => (Algorithm::Md5, false),
    };
    let qop_options: Vec<String> = get("qop")
        .map(|q| q.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    let challenge = Challenge {
        realm,
        nonce,
        opaque: get("opaque"),
        algorithm,
        algorithm_given,
        stale: get("stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
        qop_options,
    };
    if !challenge.qop_options.is_empty() && challenge.chosen_qop().is_none() {
        return Err(DigestError::UnsupportedQop(challenge.qop_options.join(",")));
    }
    Ok(challenge)
}

/// Splits `a=b, c="d, e"` into pairs, unquoting quoted-strings.
fn parse_auth_params(text: &str) -> Result<Vec<(String, String)>, DigestError> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            name.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(DigestError::Malformed(format!("parameter {name} has no value")));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(escaped) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        closed = true;
                        break;
                    }
                    _ => value.push(c),
                }
            }
            if !closed {
                return Err(DigestError::Malformed(format!("unterminated quote in {name}")));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((name, value));
    }
}

/// Among several challenges (one per header), the strongest we support.
/// Unparseable or unsupported ones are skipped.
pub fn strongest(values: &[String]) -> Result<Challenge, DigestError> {
    let mut best: Option<Challenge> = None;
    let mut last_err = DigestError::Missing("a challenge header");
    for v in values {
        match parse_challenge(v) {
            Ok(c) => {
                if best.as_ref().is_none_or(|b| c.algorithm > b.algorithm) {
                    best = Some(c);
                }
            }
            Err(e) => last_err = e,
        }
    }
    best.ok_or(last_err)
}

/// What the request being authorised looks like.
pub struct RequestInfo<'a> {
    pub method: &'a str,
    pub uri: &'a str,
    pub body: &'a [u8],
}

/// The computed answer; `header_value()` renders it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub algorithm: Option<Algorithm>,
    pub cnonce: Option<String>,
    pub nc: Option<u32>,
    pub qop: Option<Qop>,
    pub opaque: Option<String>,
}

impl Authorization {
    pub fn header_value(&self) -> String {
        let mut v = format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{}\"",
            quote_escape(&self.username),
            quote_escape(&self.realm),
            quote_escape(&self.nonce),
            self.uri,
            self.response
        );
        if let Some(a) = self.algorithm {
            v.push_str(&format!(", algorithm={}", a.name()));
        }
        if let Some(c) = &self.cnonce {
            v.push_str(&format!(", cnonce=\"{}\"", quote_escape(c)));
        }
        if let Some(o) = &self.opaque {
            v.push_str(&format!(", opaque=\"{}\"", quote_escape(o)));
        }
        if let (Some(q), Some(nc)) = (self.qop, self.nc) {
            v.push_str(&format!(", qop={}, nc={:08x}", q.name(), nc));
        }
        v
    }
}

fn quote_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Computes the digest response for `challenge`. `cnonce` is used when the
/// challenge asks for qop or a `-sess` algorithm; `nc` is the nonce count
/// (1 for the first use of a nonce).
pub fn authorize(
    challenge: &Challenge,
    username: &str,
    password: &Secret,
    request: &RequestInfo<'_>,
    cnonce: &str,
    nc: u32,
) -> Authorization {
    let alg = challenge.algorithm;
    let qop = challenge.chosen_qop();
    let mut ha1 = alg.hash(format!("{}:{}:{}", username, challenge.realm, password.expose()).as_bytes());
    if alg.is_session() {
        ha1 = alg.hash(format!("{}:{}:{}", ha1, challenge.nonce, cnonce).as_bytes());
    }
    let ha2 = match qop {
        Some(Qop::AuthInt) => {
            alg.hash(format!("{}:{}:{}", request.method, request.uri, alg.hash(request.body)).as_bytes())
        }
        _ => alg.hash(format!("{}:{}", request.method, request.uri).as_bytes()),
    };
    let response = match qop {
        Some(q) => {
            alg.hash(format!("{}:{}:{:08x}:{}:{}:{}", ha1, challenge.nonce, nc, cnonce, q.name(), ha2).as_bytes())
        }
        None => alg.hash(format!("{}:{}:{}", ha1, challenge.nonce, ha2).as_bytes()),
    };
    let uses_cnonce = qop.is_some() || alg.is_session();
    Authorization {
        username: username.to_string(),
        realm: challenge.realm.clone(),
        nonce: challenge.nonce.clone(),
        uri: request.uri.to_string(),
        response,
        algorithm: (challenge.algorithm_given || alg != Algorithm::Md5).then_some(alg),
        cnonce: uses_cnonce.then(|| cnonce.to_string()),
        nc: qop.map(|_| nc),
        qop,
        opaque: challenge.opaque.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(uri: &str) -> RequestInfo<'_> {
        RequestInfo { method: "GET", uri, body: b"" }
    }

    /// RFC 2617 section 3.5.
    #[test]
    fn rfc2617_example() {
        let c = parse_challenge(
            r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        )
        .unwrap();
        assert_eq!(c.chosen_qop(), Some(Qop::Auth));
        let a = authorize(&c, "Mufasa", &Secret::new("Circle Of Life"), &get("/dir/index.html"), "0a4f113b", 1);
        assert_eq!(a.response, "6629fae49393a05397450978507c4ef1");
        let h = a.header_value();
        assert!(h.contains("nc=00000001"), "{h}");
        assert!(h.contains("qop=auth,") || h.contains("qop=auth, "), "{h}");
        assert!(h.contains(r#"opaque="5ccc069c403ebaf9f0171e9517f40e41""#), "{h}");
    }

    const RFC7616_CHALLENGE_TAIL: &str = r#"realm="http-auth@example.org", qop="auth, auth-int", nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#;

    /// The RFC 7616 section 3.9.1 example's credentials, request and cnonce.
    fn authorize_mufasa(c: &Challenge) -> Authorization {
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        authorize(c, "Mufasa", &Secret::new("Circle of Life"), &get("/dir/index.html"), cnonce, 1)
    }

    /// RFC 7616 section 3.9.1, MD5 variant.
    #[test]
    fn rfc7616_md5_example() {
        let c = parse_challenge(&format!("Digest {RFC7616_CHALLENGE_TAIL}, algorithm=MD5")).unwrap();
        let a = authorize_mufasa(&c);
        assert_eq!(a.response, "8ca523f5e9506fed4657c9700eebdbec");
    }

    /// RFC 7616 section 3.9.1, SHA-256 variant.
    #[test]
    fn rfc7616_sha256_example() {
        let c = parse_challenge(&format!("Digest {RFC7616_CHALLENGE_TAIL}, algorithm=SHA-256")).unwrap();
        let a = authorize_mufasa(&c);
        assert_eq!(a.response, "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1");
        assert!(a.header_value().contains("algorithm=SHA-256"));
    }

    /// LiveKit SIP's challenge: MD5, no qop, no opaque. The answer must not
    /// carry qop/nc/cnonce (LiveKit's hash would not match).
    #[test]
    fn livekit_style_no_qop() {
        let c = parse_challenge(r#"Digest realm="LiveKit", nonce="1764424000000000-abc@host", algorithm=MD5"#).unwrap();
        assert!(c.qop_options.is_empty());
        let a = authorize(
            &c,
            "user",
            &Secret::new("pw"),
            &RequestInfo { method: "INVITE", uri: "sip:+14144007103@127.0.0.1:5060", body: b"v=0" },
            "cn",
            1,
        );
        // HA1 = MD5(user:LiveKit:pw), HA2 = MD5(INVITE:uri), resp = MD5(HA1:nonce:HA2)
        let ha1 = Algorithm::Md5.hash(b"user:LiveKit:pw");
        let ha2 = Algorithm::Md5.hash(b"INVITE:sip:+14144007103@127.0.0.1:5060");
        let want = Algorithm::Md5.hash(format!("{ha1}:1764424000000000-abc@host:{ha2}").as_bytes());
        assert_eq!(a.response, want);
        let h = a.header_value();
        assert!(!h.contains("qop") && !h.contains("nc=") && !h.contains("cnonce"), "{h}");
        assert!(h.contains("algorithm=MD5"));
    }

    #[test]
    fn md5_sess_uses_cnonce_in_ha1() {
        let c = parse_challenge(r#"Digest realm="r", nonce="n", algorithm=MD5-sess, qop="auth""#).unwrap();
        let a = authorize(&c, "u", &Secret::new("p"), &get("/x"), "c", 2);
        let ha1 = Algorithm::Md5.hash(format!("{}:n:c", Algorithm::Md5.hash(b"u:r:p")).as_bytes());
        let ha2 = Algorithm::Md5.hash(b"GET:/x");
        assert_eq!(a.response, Algorithm::Md5.hash(format!("{ha1}:n:00000002:c:auth:{ha2}").as_bytes()));
        assert!(a.header_value().contains("nc=00000002"));
    }

    #[test]
    fn sha256_sess_and_auth_int() {
        let c = parse_challenge(r#"Digest realm="r", nonce="n", algorithm=SHA-256-sess, qop="auth-int""#).unwrap();
        assert_eq!(c.chosen_qop(), Some(Qop::AuthInt));
        let body = b"v=0\r\n";
        let a = authorize(&c, "u", &Secret::new("p"), &RequestInfo { method: "INVITE", uri: "sip:a@b", body }, "c", 1);
        let h = |s: &str| Algorithm::Sha256.hash(s.as_bytes());
        let ha1 = h(&format!("{}:n:c", h("u:r:p")));
        let ha2 = h(&format!("INVITE:sip:a@b:{}", Algorithm::Sha256.hash(body)));
        assert_eq!(a.response, h(&format!("{ha1}:n:00000001:c:auth-int:{ha2}")));
    }

    #[test]
    fn picks_strongest_supported() {
        let values = vec![
            r#"Digest realm="r", nonce="n1", algorithm=MD5"#.to_string(),
            r#"Digest realm="r", nonce="n2", algorithm=SHA-256"#.to_string(),
            r#"Digest realm="r", nonce="n3", algorithm=FOO-1"#.to_string(),
            r#"Basic realm="r""#.to_string(),
        ];
        let c = strongest(&values).unwrap();
        assert_eq!(c.algorithm, Algorithm::Sha256);
        assert_eq!(c.nonce, "n2");
    }

    #[test]
    fn rejects_what_it_cannot_answer() {
        assert!(matches!(parse_challenge(r#"Basic realm="x""#), Err(DigestError::NotDigest(_))));
        assert!(matches!(parse_challenge(r#"Digest realm="x""#), Err(DigestError::Missing("nonce"))));
        assert!(matches!(
            parse_challenge(r#"Digest realm="x", nonce="n", algorithm=SHA-1"#),
            Err(DigestError::UnsupportedAlgorithm(_))
        ));
        assert!(matches!(
            parse_challenge(r#"Digest realm="x", nonce="n", qop="auth-conf""#),
            Err(DigestError::UnsupportedQop(_))
        ));
        assert!(strongest(&[r#"Basic realm="x""#.to_string()]).is_err());
    }

    #[test]
    fn stale_flag_and_escapes() {
        let c = parse_challenge(r#"Digest realm="a \"q\" b", nonce="n", stale=TRUE"#).unwrap();
        assert!(c.stale);
        assert_eq!(c.realm, r#"a "q" b"#);
    }
}
