//! Cutting a TCP byte stream into SIP messages (RFC 3261 section 18.3):
//! headers end at the first blank line, the body is `Content-Length` bytes
//! (compact form `l:` too). CRLF keep-alives between messages are skipped.
//! Sans-I/O: feed bytes into a [`StreamFramer`], take whole messages out.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("SIP message over TCP without a valid Content-Length header")]
    NoContentLength,
    #[error("SIP header block larger than {0} bytes")]
    TooLarge(usize),
    #[error("SIP body of {0} bytes announced; at most {MAX_BODY_BYTES} accepted")]
    BodyTooLarge(usize),
}

const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Far more than any SDP; a larger Content-Length is garbage or an attack.
const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Debug, Default)]
pub struct StreamFramer {
    buf: Vec<u8>,
}

impl StreamFramer {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held that do not make a whole message yet (a peer that stalls
    /// mid-message leaves them here).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete message, if the buffer holds one.
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>, FramingError> {
        let skip = self.buf.iter().take_while(|b| **b == b'\r' || **b == b'\n').count();
        self.buf.drain(..skip);
        let Some(end) = find(&self.buf, b"\r\n\r\n") else {
            if self.buf.len() > MAX_HEADER_BYTES {
                return Err(FramingError::TooLarge(MAX_HEADER_BYTES));
            }
            return Ok(None);
        };
        if end > MAX_HEADER_BYTES {
            return Err(FramingError::TooLarge(MAX_HEADER_BYTES));
        }
        let length = content_length(&self.buf[..end]).ok_or(FramingError::NoContentLength)?;
        if length > MAX_BODY_BYTES {
            return Err(FramingError::BodyTooLarge(length));
        }
        let total = end + 4 + length;
        if self.buf.len() < total {
            return Ok(None);
        }
        Ok(Some(self.buf.drain(..total).collect()))
    }
}

/// The Content-Length (or compact `l`) of a message head (the bytes before
/// the blank line): the first such header's value; `None` when there is none
/// or it is not a number.
pub fn content_length(head: &[u8]) -> Option<usize> {
    let head = String::from_utf8_lossy(head);
    head.split("\r\n")
        .skip(1)
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            let name = name.trim();
            (name.eq_ignore_ascii_case("Content-Length") || name.eq_ignore_ascii_case("l"))
                .then(|| value.trim().parse::<usize>().ok())
        })
        .flatten()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_messages_split_across_reads() {
        let m1 = b"SIP/2.0 100 Trying\r\nCall-ID: a\r\nContent-Length: 0\r\n\r\n".to_vec();
        let m2 = b"SIP/2.0 200 OK\r\nl: 5\r\nCall-ID: a\r\n\r\nv=0\r\n".to_vec();
        let mut all = b"\r\n\r\n".to_vec();
        all.extend(&m1);
        all.extend(&m2);
        let mut f = StreamFramer::default();
        let mut got = Vec::new();
        for chunk in all.chunks(7) {
            f.push(chunk);
            while let Some(m) = f.next_message().unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got, vec![m1, m2]);
    }

    #[test]
    fn absurd_content_length_is_an_error_not_a_panic() {
        let mut f = StreamFramer::default();
        f.push(b"SIP/2.0 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\n");
        assert_eq!(f.next_message(), Err(FramingError::BodyTooLarge(usize::MAX)));
    }

    #[test]
    fn a_header_block_over_64_kb_is_an_error_whether_or_not_it_ends() {
        let mut huge = b"SIP/2.0 200 OK\r\nX-Pad: ".to_vec();
        huge.extend(std::iter::repeat_n(b'a', 70_000));
        let mut f = StreamFramer::default();
        f.push(&huge);
        assert_eq!(f.next_message(), Err(FramingError::TooLarge(MAX_HEADER_BYTES)));
        huge.extend(b"\r\nContent-Length: 0\r\n\r\n");
        let mut f = StreamFramer::default();
        f.push(&huge);
        assert_eq!(f.next_message(), Err(FramingError::TooLarge(MAX_HEADER_BYTES)));
    }

    #[test]
    fn a_stalled_message_stays_buffered() {
        let half = b"SIP/2.0 200 OK\r\nContent-Length: 10\r\n\r\nv=0";
        let mut f = StreamFramer::default();
        f.push(half);
        assert_eq!(f.next_message(), Ok(None));
        assert_eq!(f.buffered(), half.len());
    }

    #[test]
    fn missing_content_length_is_an_error() {
        let mut f = StreamFramer::default();
        f.push(b"SIP/2.0 200 OK\r\nCall-ID: a\r\n\r\n");
        assert_eq!(f.next_message(), Err(FramingError::NoContentLength));
    }
}
