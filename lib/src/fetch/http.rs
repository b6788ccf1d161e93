//! A bundle over HTTP(S): exact byte ranges with `Range` requests, checked against what was
//! asked (status, `Content-Range`, length, encoding, validator), retried with backoff across
//! the failures of a 3G street link, and never silently turned into a whole-file download.
//!
//! Bytes received before a connection drops are kept: the retry asks only for the rest.

use std::io::Read;
use std::ops::Range;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::error::FetchError;
use super::head_cache::{HeadCache, MAX_HEAD};
use super::response::{Asked, Meta, Outcome, Reply, check_reply, classify, multipart_boundary};
use crate::storage::BundleSource;

/// Deadlines, retries and limits for HTTP fetching.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Connecting (DNS, TCP, TLS).
    pub connect_timeout: Duration,
    /// From request sent to response headers received.
    pub response_timeout: Duration,
    /// Longest wait for the next bytes of a body.
    pub idle_read_timeout: Duration,
    /// Window over which throughput is judged for stall detection.
    pub stall_window: Duration,
    /// Below this many bytes per second over a window, the transfer is stalled and retried.
    pub min_bytes_per_second: u64,
    /// Attempts per range without progress before giving up.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt, with jitter.
    pub backoff: Duration,
    /// Longest delay between attempts of our own choosing.
    pub max_backoff: Duration,
    /// Longest `Retry-After` (429, 503) honoured; a longer one is waited for this long.
    pub max_retry_after: Duration,
    /// Redirects followed. From an https:// URL only to https:// (a downgrade is refused).
    pub max_redirects: u32,
    /// Accept responses redirected to another origin (scheme, host, port), as some CDNs do.
    /// Off by default: the bundle is fetched from the origin configured, and a response from
    /// elsewhere is refused before its body is read.
    pub follow_other_hosts: bool,
    /// PEM certificates of a private CA to trust instead of the public roots.
    pub ca_certs_pem: Option<Vec<u8>>,
    /// Average download rate cap in bytes per second (leave bandwidth to the station).
    pub rate_limit: Option<u64>,
    /// The longest a source may spend on requests, from its opening: past it, every request
    /// ends in [`FetchError::DeadlinePassed`] (a server slow enough never to stall still
    /// cannot hold the update lock for days). None: no limit.
    pub deadline: Option<Duration>,
    /// How long the first request keeps retrying a server it cannot reach (connection
    /// refused, no route, unknown host) before [`FetchError::Unreachable`]: a wrong URL or
    /// port fails in seconds. Once the server has answered, retries are patient.
    pub first_contact_patience: Duration,
    /// Told of each retry before its wait, so that a caller can show that the link is being
    /// retried rather than silent.
    pub on_retry: Option<RetryHook>,
}

/// A retry about to be waited for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    /// The number of the attempt about to be made (the first retry is attempt 2).
    pub attempt: u32,
    /// Attempts allowed without progress.
    pub of: u32,
    /// The wait before it.
    pub wait: Duration,
    /// What failed.
    pub why: String,
}

/// The callback of [`HttpOptions::on_retry`].
#[derive(Clone)]
pub struct RetryHook(pub std::sync::Arc<dyn Fn(&Retry) + Send + Sync>);

impl std::fmt::Debug for RetryHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RetryHook")
    }
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            connect_timeout: Duration::from_secs(20),
            response_timeout: Duration::from_secs(30),
            idle_read_timeout: Duration::from_secs(60),
            stall_window: Duration::from_secs(30),
            min_bytes_per_second: 64,
            max_attempts: 8,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(120),
            max_retry_after: Duration::from_secs(600),
            max_redirects: 5,
            follow_other_hosts: false,
            deadline: None,
            first_contact_patience: Duration::from_secs(15),
            on_retry: None,
            ca_certs_pem: None,
            rate_limit: None,
        }
    }
}

/// What went over the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchStats {
    /// HTTP requests sent.
    pub requests: u64,
    /// Body bytes received (kept or not).
    pub body_bytes: u64,
    /// Attempts that failed and were retried.
    pub retries: u64,
}

/// Bytes an attempt must deliver (or all that was left) to count as progress that resets the
/// retry count.
const MIN_PROGRESS: u64 = 4 << 10;
/// Bytes the first request asks for: the envelope and, for small bundles, the whole signed
/// header, in one round trip; small enough that a run killed during it loses little.
const PROBE_LEN: u64 = 16 << 10;
/// A bundle at an HTTP(S) URL.
pub struct HttpSource {
    agent: ureq::Agent,
    url: String,
    len: u64,
    /// `If-Range` value: a strong ETag, or Last-Modified.
    validator: Option<String>,
    /// The first bytes of the file: the probe, extended by contiguous reads after it.
    head: Mutex<Vec<u8>>,
    /// A head from an earlier run, to revalidate instead of download.
    cached: Option<HeadCache>,
    /// Set once the server has shown it does not answer multi-range requests.
    single_ranges_only: std::sync::atomic::AtomicBool,
    options: HttpOptions,
    stats: Mutex<FetchStats>,
    /// When the deadline passes, if there is one.
    deadline: Option<Instant>,
}

/// The throughput rules of one response body, the same on the single- and the multi-range
/// path: a minimum rate over each stall window (a trickle is a stall), and the rate limit.
struct Pace<'o> {
    options: &'o HttpOptions,
    deadline: Option<Instant>,
    started: Instant,
    window_start: Instant,
    window_bytes: u64,
    bytes: u64,
}

impl<'o> Pace<'o> {
    fn new(options: &'o HttpOptions, deadline: Option<Instant>) -> Pace<'o> {
        let now = Instant::now();
        Pace {
            options,
            deadline,
            started: now,
            window_start: now,
            window_bytes: 0,
            bytes: 0,
        }
    }

    /// Counts `n` bytes that arrived; an error says the transfer stalled. Sleeps to keep to
    /// the rate limit.
    fn arrived(&mut self, n: u64) -> Result<(), String> {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err("the deadline passed".into());
        }
        self.bytes += n;
        self.window_bytes += n;
        let window = self.window_start.elapsed();
        if window >= self.options.stall_window {
            let floor = self
                .options
                .min_bytes_per_second
                .saturating_mul(window.as_secs().max(1));
            if self.window_bytes < floor {
                return Err(format!(
                    "stalled: {} bytes in {} s",
                    self.window_bytes,
                    window.as_secs()
                ));
            }
            self.window_start = Instant::now();
            self.window_bytes = 0;
        }
        if let Some(rate) = self.options.rate_limit.filter(|&r| r > 0) {
            let due = Duration::from_secs_f64(self.bytes as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(self.started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        Ok(())
    }
}

impl HttpSource {
    /// Connects to `url`, learns the bundle's length and validator with one range request for
    /// its first 64 KiB, and keeps those bytes.
    pub fn open(url: &str, options: HttpOptions) -> Result<HttpSource, FetchError> {
        HttpSource::open_cached(url, options, None)
    }

    /// Like [`HttpSource::open`], but revalidates `cached` (an earlier run's head) with
    /// `If-None-Match`: when the file is unchanged the server answers 304 and no header byte
    /// is downloaded again.
    pub fn open_cached(
        url: &str,
        options: HttpOptions,
        cached: Option<HeadCache>,
    ) -> Result<HttpSource, FetchError> {
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(options.max_redirects)
            // A redirect from https:// to http:// is refused (ureq's RequireHttpsOnly).
            .https_only(url.starts_with("https://"))
            .timeout_connect(Some(options.connect_timeout))
            .timeout_recv_response(Some(options.response_timeout))
            .timeout_per_read(Some(options.idle_read_timeout))
            .user_agent(concat!("abdelta/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &options.ca_certs_pem {
            let certs = ureq::tls::parse_pem(pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| FetchError::Config(format!("CA certificate: {e}")))?;
            if certs.is_empty() {
                return Err(FetchError::Config(
                    "CA certificate file holds no certificate".into(),
                ));
            }
            let tls = ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(certs)))
                .build();
            config = config.tls_config(tls);
        }
        let mut source = HttpSource {
            agent: config.build().into(),
            url: url.to_owned(),
            len: 0,
            validator: None,
            head: Mutex::new(Vec::new()),
            cached,
            single_ranges_only: std::sync::atomic::AtomicBool::new(false),
            deadline: options.deadline.map(|d| Instant::now() + d),
            options,
            stats: Mutex::new(FetchStats::default()),
        };
        let mut head = Vec::with_capacity(PROBE_LEN as usize);
        let (_, meta) = source.fetch(0, PROBE_LEN, true, &mut |bytes: &[u8]| {
            head.extend_from_slice(bytes);
            Ok(())
        })?;
        if meta.not_modified
            && let Some(cached) = source.cached.take()
        {
            source.len = cached.len;
            source.validator = Some(cached.etag);
            source.head = Mutex::new(cached.bytes);
        } else {
            source.len = meta.total;
            source.validator = meta.validator;
            source.head = Mutex::new(head);
        }
        Ok(source)
    }

    /// The head to keep for a later run, when the server gave a strong ETag.
    pub fn head_cache(&self) -> Option<HeadCache> {
        let etag = self.validator.clone().filter(|v| v.starts_with('"'))?;
        Some(HeadCache {
            etag,
            len: self.len,
            bytes: self.head.lock().map(|h| h.clone()).unwrap_or_default(),
        })
    }

    /// Refuses a response that a redirect brought from another origin than the URL's,
    /// unless configured to follow other hosts.
    fn check_origin(&self, resp: &ureq::http::Response<ureq::Body>) -> Result<(), FetchError> {
        use ureq::ResponseExt;
        let came_from = resp.get_uri();
        let asked: Option<ureq::http::Uri> = self.url.parse().ok();
        let origin = |u: &ureq::http::Uri| {
            (
                u.scheme_str().map(str::to_ascii_lowercase),
                u.host().map(str::to_ascii_lowercase),
                u.port_u16(),
            )
        };
        if self.options.follow_other_hosts || asked.is_some_and(|a| origin(&a) == origin(came_from))
        {
            return Ok(());
        }
        Err(FetchError::Config(format!(
            "redirected to another host ({came_from}); not followed unless the configuration allows other hosts"
        )))
    }

    /// Bytes at the start of the bundle already held (the probe and the header read after
    /// it): ranges inside them cost nothing.
    pub fn head_len(&self) -> u64 {
        self.head.lock().map_or(0, |h| h.len() as u64)
    }

    /// Traffic so far.
    pub fn stats(&self) -> FetchStats {
        self.stats.lock().map(|s| *s).unwrap_or_default()
    }

    fn count(&self, f: impl FnOnce(&mut FetchStats)) {
        if let Ok(mut s) = self.stats.lock() {
            f(&mut s);
        }
    }

    /// Streams the `len` bytes at `start` into `sink`, retrying across failures and asking
    /// each retry only for the bytes not yet delivered. A probe may deliver fewer (a file
    /// shorter than asked). Returns the bytes delivered and what the server said.
    fn fetch(
        &self,
        start: u64,
        len: u64,
        probe: bool,
        sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<(u64, Meta), FetchError> {
        let mut done = 0u64;
        let mut attempts = 0u32;
        let began = Instant::now();
        let mut jitter = Instant::now().elapsed().subsec_nanos() | 1;
        loop {
            if let (Some(deadline), Some(limit)) = (self.deadline, self.options.deadline)
                && Instant::now() >= deadline
            {
                return Err(FetchError::DeadlinePassed(limit));
            }
            let (n, result) = self.attempt(start + done, len - done, probe, sink);
            done += n;
            if n >= MIN_PROGRESS.min(len - (done - n)) {
                // Real progress: a link that keeps moving is not failing. A server that sends
                // a byte or two per attempt does not reset the count, so it ends in an error
                // instead of holding the update for days.
                attempts = 0;
            }
            let outcome = match result {
                Ok(meta) if probe || done == len => return Ok((done, meta)),
                Ok(_) => Outcome::Retry {
                    why: "body ended early".into(),
                    after: None,
                },
                Err(outcome) => outcome,
            };
            // A server never reached on the first contact (the probe): a wrong URL or port
            // ends in seconds, not after minutes of backoff.
            let patience = match &outcome {
                Outcome::Unreachable(why) if probe => {
                    let waited = began.elapsed();
                    if waited >= self.options.first_contact_patience {
                        return Err(FetchError::Unreachable {
                            waited,
                            last: why.clone(),
                        });
                    }
                    Some(self.options.first_contact_patience - waited)
                }
                _ => None,
            };
            let (why, after) = match outcome {
                Outcome::Fatal(e) => return Err(e),
                Outcome::Unreachable(why) => (why, None),
                Outcome::Retry { why, after } => (why, after),
            };
            attempts += 1;
            self.count(|s| s.retries += 1);
            if attempts >= self.options.max_attempts {
                return Err(FetchError::RetriesExhausted {
                    attempts,
                    last: why,
                });
            }
            // Exponential backoff with ±50 % jitter (xorshift), or the server's Retry-After,
            // bounded either way, and by the first contact's patience.
            jitter ^= jitter << 13;
            jitter ^= jitter >> 17;
            jitter ^= jitter << 5;
            let base = self.options.backoff.saturating_mul(1 << attempts.min(16));
            let ours = base
                .mul_f64(0.5 + f64::from(jitter % 1000) / 1000.0)
                .min(self.options.max_backoff);
            let wait = after.map_or(ours, |a| a.min(self.options.max_retry_after));
            let wait = patience.map_or(wait, |left| wait.min(left));
            if let Some(hook) = &self.options.on_retry {
                (hook.0)(&Retry {
                    attempt: attempts + 1,
                    of: self.options.max_attempts,
                    wait,
                    why,
                });
            }
            std::thread::sleep(wait);
        }
    }

    /// The bytes of `[start, start + len)` the head holds, from `start` on, if any.
    fn cached_part(&self, start: u64, len: u64) -> Option<Vec<u8>> {
        let head = self.head.lock().ok()?;
        let end = (start + len).min(head.len() as u64);
        (start < end)
            .then(|| head.get(start as usize..end as usize).map(<[u8]>::to_vec))
            .flatten()
    }

    /// Asks for all of `ranges` in one request. Returns the bytes delivered per range (by
    /// index), and whether the server can do this at all; any failure leaves the rest to the
    /// single-range path.
    fn multi_attempt(
        &self,
        ranges: &[Range<u64>],
        sink: &mut dyn FnMut(u64, &[u8]) -> std::io::Result<()>,
    ) -> std::io::Result<(Vec<u64>, bool)> {
        let mut done = vec![0u64; ranges.len()];
        let spec: Vec<String> = ranges
            .iter()
            .map(|r| format!("{}-{}", r.start, r.end - 1))
            .collect();
        let mut request = self
            .agent
            .get(&self.url)
            .header("Range", format!("bytes={}", spec.join(",")))
            .header("Accept-Encoding", "identity");
        if let Some(v) = &self.validator {
            request = request.header("If-Range", v);
        }
        self.count(|s| s.requests += 1);
        let mut resp = match request.call() {
            Ok(resp) => resp,
            Err(e) => {
                self.fall_back_to_single_ranges(&format!("multi-range request: {e}"));
                return Ok((done, true));
            }
        };
        if self.check_origin(&resp).is_err() {
            // Left to the single-range path, which reports it.
            return Ok((done, true));
        }
        let boundary = match multipart_boundary(&resp) {
            Ok(boundary) => boundary,
            // 200 (whole file), 416 (no multi-range) or a single coalesced range: not read.
            Err(can_multi) => return Ok((done, can_multi)),
        };
        // Bounded: the data asked for plus generous per-part headers.
        let expected: u64 = ranges.iter().map(|r| r.end - r.start).sum();
        let limit = expected + 1024 * (ranges.len() as u64 + 1);
        let mut body = std::io::BufReader::new(resp.body_mut().as_reader().take(limit));
        // A failure of our own sink (disk full, a cancellation) ends the download; a failure
        // of the response (it broke off, lied, or trickled below the minimum rate) only leaves
        // its undelivered ranges to the single-range path.
        let mut sink_error = None;
        let mut pace = Pace::new(&self.options, self.deadline);
        let mut counting = |offset: u64, bytes: &[u8]| -> std::io::Result<()> {
            let hit = ranges
                .iter()
                .zip(done.iter_mut())
                .find(|(r, _)| r.start <= offset && offset < r.end);
            if let Some((r, d)) = hit {
                *d = offset + bytes.len() as u64 - r.start;
            }
            self.count(|s| s.body_bytes += bytes.len() as u64);
            sink(offset, bytes).inspect_err(|e| {
                sink_error = Some(std::io::Error::new(e.kind(), e.to_string()));
            })?;
            pace.arrived(bytes.len() as u64)
                .map_err(std::io::Error::other)
        };
        let parsed = super::multipart::parse(&mut body, &boundary, ranges, self.len, &mut counting);
        match sink_error {
            Some(e) => Err(e),
            // The response broke off or lied: what it delivered is kept, the rest retried.
            None => {
                if let (_, Err(e)) = parsed {
                    self.fall_back_to_single_ranges(&format!("multi-range reply: {e}"));
                }
                Ok((done, true))
            }
        }
    }

    /// Counts a failed multi-range attempt as a retry and tells the retry hook, which the
    /// single-range path makes at once for the ranges it left.
    fn fall_back_to_single_ranges(&self, why: &str) {
        self.count(|s| s.retries += 1);
        if let Some(hook) = &self.options.on_retry {
            (hook.0)(&Retry {
                attempt: 2,
                of: self.options.max_attempts,
                wait: Duration::ZERO,
                why: format!("{why}; the rest is fetched range by range"),
            });
        }
    }

    /// Streams `[start, start + len)` into `sink`: one request (with retries) for the whole
    /// range, whatever its size; memory stays one read buffer.
    pub fn stream_range(
        &self,
        start: u64,
        len: u64,
        sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<(), FetchError> {
        if start.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(FetchError::LengthMismatch {
                expected: len,
                got: self.len.saturating_sub(start),
            });
        }
        // The part the probe already holds is served from it; only the rest is requested.
        let mut start = start;
        let mut len = len;
        if let Some(cached) = self.cached_part(start, len) {
            sink(&cached).map_err(|e| FetchError::Local(e.to_string()))?;
            len -= cached.len() as u64;
            start += cached.len() as u64;
        }
        if len == 0 {
            return Ok(());
        }
        self.fetch(start, len, false, sink).map(|_| ())
    }

    /// One request for `[from, from + want)` (for a probe: up to that). Returns the bytes
    /// delivered to `sink` even when the attempt fails after a partial body.
    fn attempt(
        &self,
        from: u64,
        want: u64,
        probe: bool,
        sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> (u64, Result<Meta, Outcome>) {
        if want == 0 {
            return (
                0,
                Ok(Meta {
                    total: self.len,
                    validator: self.validator.clone(),
                    not_modified: false,
                }),
            );
        }
        let to = from + want - 1;
        let mut request = self
            .agent
            .get(&self.url)
            .header("Range", format!("bytes={from}-{to}"))
            .header("Accept-Encoding", "identity");
        if let (Some(v), false) = (&self.validator, probe) {
            request = request.header("If-Range", v);
        }
        if let (Some(c), true) = (&self.cached, probe) {
            request = request.header("If-None-Match", c.etag.as_str());
        }
        self.count(|s| s.requests += 1);
        let mut resp = match request.call() {
            Ok(r) => r,
            Err(e) => return (0, Err(classify(e))),
        };
        if let Err(e) = self.check_origin(&resp) {
            return (0, Err(Outcome::Fatal(e)));
        }
        let asked = Asked {
            from,
            to: from + want - 1,
            probe,
            revalidating: probe && self.cached.is_some(),
            validator: self.validator.as_deref(),
            len: self.len,
        };
        let (expect, meta) = match check_reply(&resp, &asked) {
            Ok(Reply::Body { expect, meta }) => (expect, meta),
            Ok(Reply::NotModified) => return (0, Ok(Meta::not_modified())),
            Err(outcome) => return (0, Err(outcome)),
        };
        let body = resp.body_mut().as_reader();
        let (n, result) = self.read_body(body, expect, sink);
        (n, result.map(|()| meta))
    }

    /// Reads exactly `want` body bytes into `sink`, then checks the body ends there. Watches
    /// for stalls and applies the rate limit.
    fn read_body(
        &self,
        mut body: impl Read,
        want: u64,
        sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> (u64, Result<(), Outcome>) {
        let mut pace = Pace::new(&self.options, self.deadline);
        let mut done = 0u64;
        let mut buf = vec![0u8; 64 << 10];
        while done < want {
            let room = usize::try_from(want - done)
                .unwrap_or(usize::MAX)
                .min(buf.len());
            let read = match body.read(buf.get_mut(..room).unwrap_or(&mut [])) {
                Ok(0) => {
                    let why = "connection closed mid-body".to_owned();
                    return (done, Err(Outcome::Retry { why, after: None }));
                }
                Ok(n) => n,
                Err(e) => {
                    let why = format!("reading the body: {e}");
                    return (done, Err(Outcome::Retry { why, after: None }));
                }
            };
            if let Err(e) = sink(buf.get(..read).unwrap_or(&[])) {
                return (done, Err(Outcome::Fatal(FetchError::Local(e.to_string()))));
            }
            done += read as u64;
            self.count(|s| s.body_bytes += read as u64);
            if let Err(why) = pace.arrived(read as u64) {
                return (done, Err(Outcome::Retry { why, after: None }));
            }
        }
        // The body must end exactly here: an endless or longer body is a lie about the range.
        let mut extra = [0u8; 1];
        match body.read(&mut extra) {
            Ok(0) => (done, Ok(())),
            Ok(_) => {
                let mismatch = FetchError::LengthMismatch {
                    expected: want,
                    got: want + 1,
                };
                (done, Err(Outcome::Fatal(mismatch)))
            }
            // The bytes asked for all arrived; a failure to see the end is not worth a retry.
            Err(_) => (done, Ok(())),
        }
    }
}

impl BundleSource for HttpSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let len = buf.len() as u64;
        let mut filled = 0usize;
        let mut sink = |bytes: &[u8]| -> std::io::Result<()> {
            let end = filled + bytes.len();
            buf.get_mut(filled..end)
                .ok_or(std::io::ErrorKind::InvalidData)?
                .copy_from_slice(bytes);
            filled = end;
            Ok(())
        };
        self.stream_range(offset, len, &mut sink)
            .map_err(std::io::Error::other)?;
        // Reads that continue the head (the signed header after the probe) extend it.
        if let Ok(mut head) = self.head.lock() {
            let have = head.len() as u64;
            if offset <= have && have < offset + len && offset + len <= MAX_HEAD {
                head.extend_from_slice(buf.get((have - offset) as usize..).unwrap_or(&[]));
            }
        }
        Ok(())
    }

    fn read_stream(
        &self,
        offset: u64,
        len: u64,
        sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        self.stream_range(offset, len, sink)
            .map_err(std::io::Error::other)
    }

    /// Several ranges: what the probe holds is served from it; the rest is asked for in
    /// multi-range requests of up to 32 ranges where the server supports them (learned on the
    /// first try), and whatever a multi-range reply did not deliver, in single-range requests.
    fn read_ranges(
        &self,
        ranges: &[Range<u64>],
        sink: &mut dyn FnMut(u64, &[u8]) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        use std::sync::atomic::Ordering::Relaxed;
        let mut rest: Vec<Range<u64>> = Vec::with_capacity(ranges.len());
        for r in ranges {
            match self.cached_part(r.start, r.end - r.start) {
                Some(cached) => {
                    sink(r.start, &cached)?;
                    let end = r.start + cached.len() as u64;
                    if end < r.end {
                        rest.push(end..r.end);
                    }
                }
                None => rest.push(r.clone()),
            }
        }
        let mut singles: Vec<Range<u64>> = Vec::new();
        for batch in rest.chunks(32) {
            if batch.len() < 2 || self.single_ranges_only.load(Relaxed) {
                singles.extend_from_slice(batch);
                continue;
            }
            let (done, supported) = self.multi_attempt(batch, sink)?;
            if !supported {
                self.single_ranges_only.store(true, Relaxed);
            }
            for (r, d) in batch.iter().zip(done) {
                if r.start + d < r.end {
                    singles.push(r.start + d..r.end);
                }
            }
        }
        for r in singles {
            let mut at = r.start;
            self.stream_range(r.start, r.end - r.start, &mut |bytes| {
                sink(at, bytes)?;
                at += bytes.len() as u64;
                Ok(())
            })
            .map_err(std::io::Error::other)?;
        }
        Ok(())
    }
}
