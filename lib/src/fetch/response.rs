//! What a response says, checked without I/O: the status, `Content-Range`, length, encoding
//! and validator of a range reply against what was asked, the multipart boundary, and which
//! failures are worth a retry. The client (`http.rs`) sends the requests and reads the bodies.

use std::time::Duration;

use super::error::FetchError;

/// What a response said about the file, from the probe.
pub(super) struct Meta {
    pub total: u64,
    pub validator: Option<String>,
    /// The probe was answered 304: the cached head is still the file's.
    pub not_modified: bool,
}

impl Meta {
    /// The probe was answered 304: nothing new about the file.
    pub(super) fn not_modified() -> Meta {
        Meta {
            total: 0,
            validator: None,
            not_modified: true,
        }
    }
}

/// How a failed attempt ends: retried (with the server's `Retry-After`, if any), retried as
/// a server not reached, or reported.
pub(super) enum Outcome {
    Retry {
        why: String,
        after: Option<Duration>,
    },
    /// No connection to the server at all (refused, no route, unknown host).
    Unreachable(String),
    Fatal(FetchError),
}

/// What one single-range request asked for.
pub(super) struct Asked<'a> {
    /// First byte asked.
    pub from: u64,
    /// Last byte asked (inclusive). A probe accepts a shorter file.
    pub to: u64,
    /// The first request: it learns the length and validator.
    pub probe: bool,
    /// The probe carries `If-None-Match` for a cached head.
    pub revalidating: bool,
    /// The validator learnt from the probe (`If-Range` on every later request).
    pub validator: Option<&'a str>,
    /// The bundle's length learnt from the probe.
    pub len: u64,
}

/// A reply that passed [`check_reply`].
pub(super) enum Reply {
    /// Read exactly `expect` body bytes.
    Body { expect: u64, meta: Meta },
    /// 304 to a revalidating probe: the cached head is still the file's.
    NotModified,
}

/// Checks a reply's status and headers against what was asked, before any body byte is read:
/// a whole file where a range was asked, a changed file, an encoded body, a `Content-Range`
/// or `Content-Length` that is not the range asked for are refused; statuses worth a retry
/// are retried.
pub(super) fn check_reply<B>(
    resp: &ureq::http::Response<B>,
    asked: &Asked<'_>,
) -> Result<Reply, Outcome> {
    let fatal = |e| Err(Outcome::Fatal(e));
    let status = resp.status().as_u16();
    let want = asked.to - asked.from + 1;
    match status {
        206 => {}
        304 if asked.revalidating => return Ok(Reply::NotModified),
        200 if asked.probe => {
            // A file no larger than the probe may come whole; a larger one is refused
            // before reading a byte of it.
            let announced = header(resp, "content-length").and_then(|v| v.parse::<u64>().ok());
            if announced.is_none_or(|n| n >= want) {
                return fatal(FetchError::RangesUnsupported);
            }
        }
        200 | 416 => return fatal(FetchError::FileChanged),
        408 | 425 | 429 | 500 | 502 | 503 | 504 => {
            return Err(Outcome::Retry {
                why: format!("HTTP status {status}"),
                after: retry_after(resp),
            });
        }
        _ => return fatal(FetchError::Status(status)),
    }
    if let Some(enc) =
        header(resp, "content-encoding").filter(|e| !e.eq_ignore_ascii_case("identity"))
    {
        return fatal(FetchError::ContentEncoding(enc.to_owned()));
    }
    let etag = header(resp, "etag")
        .filter(|t| !t.starts_with("W/"))
        .map(str::to_owned);
    let validator = etag.or_else(|| header(resp, "last-modified").map(str::to_owned));
    if !asked.probe
        && asked.validator.is_some()
        && validator.is_some()
        && validator.as_deref() != asked.validator
    {
        return fatal(FetchError::FileChanged);
    }
    let (expect, total) = if status == 206 {
        let Some(value) = header(resp, "content-range") else {
            return fatal(FetchError::BadContentRange("missing".into()));
        };
        let Some((a, b, total)) = content_range(value) else {
            return fatal(FetchError::BadContentRange(format!("malformed: {value:?}")));
        };
        let end_ok = if asked.probe {
            b == asked.to.min(total - 1)
        } else {
            b == asked.to && total == asked.len
        };
        if a != asked.from || !end_ok {
            let (from, to) = (asked.from, asked.to);
            return fatal(FetchError::BadContentRange(format!(
                "asked bytes {from}-{to}, got {value:?}"
            )));
        }
        (b - a + 1, total)
    } else {
        let n = header(resp, "content-length")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        (n, n)
    };
    if let Some(n) = header(resp, "content-length").and_then(|v| v.parse::<u64>().ok())
        && n != expect
    {
        return fatal(FetchError::LengthMismatch {
            expected: expect,
            got: n,
        });
    }
    let meta = Meta {
        total,
        validator,
        not_modified: false,
    };
    Ok(Reply::Body { expect, meta })
}

/// The boundary of a multi-range reply worth reading (206, `multipart/byteranges`, not
/// encoded); otherwise whether the server may still answer multi-range requests (`false`
/// once it has shown it cannot: a whole file, 416, or one coalesced range).
pub(super) fn multipart_boundary<B>(resp: &ureq::http::Response<B>) -> Result<String, bool> {
    let status = resp.status().as_u16();
    let boundary = header(resp, "content-type").and_then(boundary);
    let encoded =
        header(resp, "content-encoding").is_some_and(|e| !e.eq_ignore_ascii_case("identity"));
    boundary
        .filter(|_| status == 206 && !encoded)
        .ok_or(!matches!(status, 200 | 206 | 416))
}

pub(super) fn header<'a, B>(resp: &'a ureq::http::Response<B>, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Parses `bytes A-B/T` exactly.
pub(super) fn content_range(value: &str) -> Option<(u64, u64, u64)> {
    let rest = value.strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (a, b) = span.split_once('-')?;
    let parse = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (a, b, t) = (parse(a)?, parse(b)?, parse(total)?);
    (a <= b && b < t).then_some((a, b, t))
}

/// A request that failed before a response: worth retrying (network, timeouts, DNS on a
/// flaky link) or not (a certificate the device does not trust, a bad URL or proxy, a
/// redirect loop), so that a permanent failure is reported at once rather than after minutes
/// of backoff.
pub(super) fn classify(e: ureq::Error) -> Outcome {
    let fatal = match &e {
        ureq::Error::Io(io) => io.kind() == std::io::ErrorKind::InvalidData, // TLS: untrusted peer
        ureq::Error::Tls(_)
        | ureq::Error::Pem(_)
        | ureq::Error::Rustls(_)
        | ureq::Error::BadUri(_)
        | ureq::Error::Http(_)
        | ureq::Error::InvalidProxyUrl
        | ureq::Error::TooManyRedirects
        | ureq::Error::RedirectFailed
        | ureq::Error::RequireHttpsOnly(_)
        | ureq::Error::TlsRequired => true,
        _ => false,
    };
    let unreachable = match &e {
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => true,
        ureq::Error::Io(io) => matches!(
            io.kind(),
            std::io::ErrorKind::ConnectionRefused
                | std::io::ErrorKind::HostUnreachable
                | std::io::ErrorKind::NetworkUnreachable
        ),
        _ => false,
    };
    if fatal {
        Outcome::Fatal(FetchError::Config(e.to_string()))
    } else if unreachable {
        Outcome::Unreachable(e.to_string())
    } else {
        Outcome::Retry {
            why: e.to_string(),
            after: None,
        }
    }
}

pub(super) fn retry_after<B>(resp: &ureq::http::Response<B>) -> Option<Duration> {
    header(resp, "retry-after")?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// The boundary of a `multipart/byteranges` content type, if that is what it is.
pub(crate) fn boundary(content_type: &str) -> Option<String> {
    let (kind, params) = content_type.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("multipart/byteranges") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let v = v.trim().trim_matches('"');
        // RFC 2046: 1 to 70 characters.
        (!v.is_empty() && v.len() <= 70 && v.bytes().all(|b| b.is_ascii_graphic() || b == b' '))
            .then(|| v.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parses_exactly() {
        assert_eq!(content_range("bytes 0-99/1000"), Some((0, 99, 1000)));
        for bad in [
            "bytes 0-99/*",
            "bytes */1000",
            "bytes 5-4/10",
            "bytes 0-10/10",
            "bytes=0-9/10",
            "bytes -1-9/10",
            "bytes 0-9/10 ",
            "bytes 0-+9/10",
        ] {
            assert_eq!(content_range(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_multipart_boundary_is_read_only_from_its_content_type() {
        assert_eq!(
            boundary("multipart/byteranges; boundary=XYZ"),
            Some("XYZ".into())
        );
        assert_eq!(
            boundary("multipart/byteranges; boundary=\"a b\""),
            Some("a b".into())
        );
        assert_eq!(boundary("application/octet-stream"), None);
        assert_eq!(boundary("multipart/byteranges; boundary="), None);
        let long = format!("multipart/byteranges; boundary={}", "b".repeat(71));
        assert_eq!(boundary(&long), None);
    }
}
