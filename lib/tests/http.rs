//! Fetching bundles over HTTP from a real static-file server (tower-http's ServeDir, with Range
//! and ETag support) through a scripted fault proxy on loopback: one test per fault row of
//! THREATS.md §4 (F10–F18) that applies to range transfer (F15, multipart replies, does not:
//! only single ranges are requested), plus the endless-data row T9 for HTTP bodies.
// These tests make bundles: they need the generator.
#![cfg(feature = "generator")]
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use abdelta::fetch::{FetchError, FetchStats, HttpOptions, HttpSource};
use abdelta::format::Limits;
use abdelta::no_progress;
use abdelta::storage::MemTarget;
use abdelta::{OverBudget, VerifiedBundle};
use abdelta_testkit::{Fault, proxy, serve};
use common::{Rng, key, make_bundle};

struct Fixture {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    source: Vec<u8>,
    target: Vec<u8>,
    server: SocketAddr,
}

fn fixture() -> Fixture {
    let mut rng = Rng(404);
    let mut source = Vec::new();
    while source.len() < 3 << 20 {
        source.extend(rng.text(20_000));
        source.extend(rng.bytes(5_000));
    }
    let mut target = source.clone();
    for i in 0..40 {
        target[i * 70_000 + 13] ^= 0x21;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("r2.abd"), make_bundle(&source, &target)).unwrap();
    let server = serve(dir.path());
    Fixture {
        dir: dir.path().to_path_buf(),
        _dir: dir,
        source,
        target,
        server,
    }
}

fn fast() -> HttpOptions {
    HttpOptions {
        backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(50),
        ..HttpOptions::default()
    }
}

/// Opens, plans and applies over HTTP, blank device or with the source.
fn run(
    addr: SocketAddr,
    options: HttpOptions,
    source: &[u8],
) -> Result<(Vec<u8>, FetchStats, u64), Box<dyn std::error::Error>> {
    let url = format!("http://{addr}/r2.abd");
    let http = HttpSource::open(&url, options)?;
    let bundle = VerifiedBundle::open(&http, &[key().public()], &Limits::DEFAULT)?;
    let plan = abdelta::plan(&bundle, source);
    let mut target = MemTarget::default();
    abdelta::apply(&bundle, &http, source, &mut target, &plan, &no_progress)?;
    Ok((target.bytes, http.stats(), plan.total_bytes()))
}

/// The transport's error in `error`'s chain: its own, or the one it handed the pipeline
/// inside an I/O error.
fn transport_error(error: &(dyn std::error::Error + 'static)) -> Option<FetchError> {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(f) = e.downcast_ref::<FetchError>() {
            return Some(f.clone());
        }
        let inner = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref());
        if let Some(f) = inner.and_then(|i| i.downcast_ref::<FetchError>()) {
            return Some(f.clone());
        }
        cause = e.source();
    }
    None
}

fn fetch_error(
    result: Result<(Vec<u8>, FetchStats, u64), Box<dyn std::error::Error>>,
) -> FetchError {
    match result {
        Err(e) => transport_error(&*e).expect("a FetchError"),
        Ok(r) => panic!("expected a fetch error, got {:?}", r.2),
    }
}

#[test]
fn clean_transfer_reads_about_the_plan() {
    let f = fixture();
    let (image, stats, planned) = run(f.server, fast(), &f.source).unwrap();
    assert!(image == f.target);
    // The probe reads up to 64 KiB at once; everything else is exactly the planned blobs.
    assert!(
        stats.body_bytes <= planned + (64 << 10),
        "{stats:?} vs {planned}"
    );
    let (blank, stats, planned) = run(f.server, fast(), &[]).unwrap();
    assert!(blank == f.target);
    assert!(stats.body_bytes <= planned + (64 << 10));
    let _ = &f.dir;
}

#[test]
fn f10_connection_cut_mid_body_resumes_without_refetching_received_bytes() {
    let f = fixture();
    // Every other response is cut after 3000 body bytes.
    let (addr, _) = proxy(f.server, |i| {
        if i % 2 == 1 {
            Fault::CutBodyAfter(3000)
        } else {
            Fault::Pass
        }
    });
    let (image, stats, planned) = run(addr, fast(), &[]).unwrap();
    assert!(image == f.target);
    assert!(stats.retries > 0);
    // Bytes received before a cut are kept: nothing is downloaded twice.
    assert!(
        stats.body_bytes <= planned + (64 << 10),
        "{stats:?} vs planned {planned}"
    );
}

#[test]
fn bad_43_f11_200_instead_of_206_is_refused_never_a_whole_file_download() {
    let f = fixture();
    let (addr, _) = proxy(f.server, |_| {
        Fault::Head(|h| {
            h.replace("206 Partial Content", "200 OK")
                .split("\r\n")
                .filter(|l| !l.to_ascii_lowercase().starts_with("content-range"))
                .collect::<Vec<_>>()
                .join("\r\n")
        })
    });
    assert_eq!(
        fetch_error(run(addr, fast(), &[])),
        FetchError::RangesUnsupported
    );
}

#[test]
fn bad_44_f12_wrong_or_missing_content_range_is_refused() {
    let f = fixture();
    let rewrites: [fn(String) -> String; 3] = [
        |h| {
            h.split("\r\n")
                .filter(|l| !l.to_ascii_lowercase().starts_with("content-range"))
                .collect::<Vec<_>>()
                .join("\r\n")
        },
        |h| h.replace("content-range: bytes 0-", "content-range: bytes 1-"),
        |h| {
            h.replace(
                "content-range: bytes ",
                "content-range: bytes abc-def/deadbeef x",
            )
        },
    ];
    for rewrite in rewrites {
        let (addr, _) = proxy(f.server, move |_| Fault::Head(rewrite));
        assert!(matches!(
            fetch_error(run(addr, fast(), &[])),
            FetchError::BadContentRange(_)
        ));
    }
    // A total that changes after the first response: the file is not the one being read.
    let (addr, _) = proxy(f.server, |i| {
        if i >= 1 {
            Fault::Head(grow_total)
        } else {
            Fault::Pass
        }
    });
    let error = fetch_error(run(addr, fast(), &[]));
    assert!(
        matches!(
            error,
            FetchError::BadContentRange(_) | FetchError::FileChanged
        ),
        "{error:?}"
    );
}

/// Adds one to the total of a Content-Range header.
fn grow_total(head: String) -> String {
    head.split("\r\n")
        .map(
            |line| match line.to_ascii_lowercase().starts_with("content-range:") {
                true => {
                    let (span, total) = line.rsplit_once('/').unwrap();
                    format!("{span}/{}", total.trim().parse::<u64>().unwrap() + 1)
                }
                false => line.to_owned(),
            },
        )
        .collect::<Vec<_>>()
        .join("\r\n")
}

#[test]
fn f13_file_replaced_mid_download_is_detected() {
    let f = fixture();
    let url = format!("http://{}/r2.abd", f.server);
    let http = HttpSource::open(&url, fast()).unwrap();
    let bundle = VerifiedBundle::open(&http, &[key().public()], &Limits::DEFAULT).unwrap();
    // A new build lands at the same URL.
    let mut other = f.target.clone();
    other[5] ^= 1;
    std::fs::write(f.dir.join("r2.abd"), make_bundle(&f.source, &other)).unwrap();
    let plan = abdelta::plan(&bundle, &[]);
    let result = abdelta::apply(
        &bundle,
        &http,
        &[],
        &mut MemTarget::default(),
        &plan,
        &no_progress,
    );
    let Err(e @ abdelta::ApplyError::Io(_)) = result else {
        panic!("expected the download to stop")
    };
    assert_eq!(transport_error(&e), Some(FetchError::FileChanged));
}

#[test]
fn bad_45_t09_lying_content_length_and_endless_body_are_caught() {
    let f = fixture();
    let (addr, _) = proxy(
        f.server,
        |i| if i == 1 { Fault::Endless } else { Fault::Pass },
    );
    assert!(matches!(
        fetch_error(run(addr, fast(), &[])),
        FetchError::LengthMismatch { .. }
    ));
    let (addr, _) = proxy(f.server, |i| {
        if i == 1 {
            Fault::Head(|h| h.replace("content-length: ", "content-length: 1"))
        } else {
            Fault::Pass
        }
    });
    assert!(matches!(
        fetch_error(run(addr, fast(), &[])),
        FetchError::LengthMismatch { .. }
    ));
}

#[test]
fn f14_416_range_not_satisfiable_means_the_file_changed() {
    let f = fixture();
    let (addr, _) = proxy(f.server, |i| {
        if i == 1 {
            Fault::Respond(
                "HTTP/1.1 416 Range Not Satisfiable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            )
        } else {
            Fault::Pass
        }
    });
    assert_eq!(fetch_error(run(addr, fast(), &[])), FetchError::FileChanged);
}

#[test]
fn bad_46_f16_injected_content_encoding_is_refused() {
    let f = fixture();
    let (addr, _) = proxy(f.server, |_| {
        Fault::Head(|h| h.replace("\r\n\r\n", "\r\ncontent-encoding: gzip\r\n\r\n"))
    });
    assert_eq!(
        fetch_error(run(addr, fast(), &[])),
        FetchError::ContentEncoding("gzip".into())
    );
}

/// A pause longer than the idle-read timeout ends the attempt; the rest is retried.
#[test]
fn f16_a_pause_longer_than_the_idle_timeout_is_retried() {
    let f = fixture();
    let (addr, _) = proxy(f.server, |i| {
        if i == 2 {
            Fault::StallAfter(1000, Duration::from_secs(3))
        } else {
            Fault::Pass
        }
    });
    let options = HttpOptions {
        idle_read_timeout: Duration::from_millis(500),
        stall_window: Duration::from_millis(200),
        ..fast()
    };
    let (image, stats, _) = run(addr, options, &[]).unwrap();
    assert!(image == f.target);
    assert!(stats.retries >= 1);
}

/// A trickle below the minimum throughput (bytes keep coming, so the idle timeout never
/// fires) is caught by the throughput window; the rest is retried.
#[test]
fn f16_a_trickle_below_the_minimum_throughput_is_retried() {
    let f = fixture();
    let (addr, _) = proxy(f.server, |i| {
        if i == 2 {
            Fault::Throttle(2_000)
        } else {
            Fault::Pass
        }
    });
    let options = HttpOptions {
        idle_read_timeout: Duration::from_secs(30),
        stall_window: Duration::from_secs(1),
        min_bytes_per_second: 10_000,
        ..fast()
    };
    let started = std::time::Instant::now();
    let (image, stats, _) = run(addr, options, &[]).unwrap();
    assert!(image == f.target);
    assert!(stats.retries >= 1, "the trickle was not detected");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn f17_5xx_bursts_and_429_retry_after_are_retried() {
    let f = fixture();
    let (addr, count) = proxy(f.server, |i| match i {
        0..=2 => Fault::Respond(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        ),
        3 => Fault::Respond(
            "HTTP/1.1 429 Too Many Requests\r\nretry-after: 1\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        ),
        i if i % 5 == 0 => Fault::Respond(
            "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        ),
        _ => Fault::Pass,
    });
    let started = std::time::Instant::now();
    let (image, stats, _) = run(addr, fast(), &[]).unwrap();
    assert!(image == f.target);
    assert!(stats.retries >= 4, "{stats:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "Retry-After was not honoured"
    );
    assert!(count.requests.load(Ordering::SeqCst) > 4);
}

#[test]
fn f17_a_server_that_keeps_failing_ends_in_a_reported_error() {
    let f = fixture();
    let (addr, _) = proxy(f.server, |_| {
        Fault::Respond("HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
    });
    assert!(matches!(
        fetch_error(run(addr, fast(), &[])),
        FetchError::RetriesExhausted { .. }
    ));
}

#[test]
fn f18_redirect_loop_is_capped() {
    let f = fixture();
    let (addr, count) = proxy(f.server, |_| {
        Fault::Respond(
            "HTTP/1.1 302 Found\r\nlocation: /r2.abd\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        )
    });
    let result = run(addr, fast(), &[]);
    assert!(result.is_err());
    assert!(
        count.requests.load(Ordering::SeqCst) <= 6 * 8 + 1,
        "redirects were not capped"
    );
}

/// Fault 6 (single range): a server that sends a byte per attempt ends in a reported error,
/// not in retries without end.
#[test]
fn fault_06_a_server_that_sends_a_byte_per_attempt_ends_in_an_error() {
    let f = fixture();
    let (addr, count) = proxy(f.server, |n| match n {
        0 => Fault::Pass,
        _ => Fault::CutBodyAfter(1),
    });
    let started = std::time::Instant::now();
    match fetch_error(run(addr, fast(), &[])) {
        FetchError::RetriesExhausted { attempts, .. } => assert_eq!(attempts, fast().max_attempts),
        other => panic!("{other}"),
    }
    assert!(count.requests.load(Ordering::SeqCst) < 40);
    assert!(started.elapsed() < Duration::from_secs(30));
}

/// Fault 6 (deadline): a server slow enough never to stall still cannot hold the update for
/// longer than the deadline.
#[test]
fn fault_06_a_slow_but_steady_server_meets_the_deadline() {
    let f = fixture();
    let (addr, _) = proxy(f.server, |n| {
        if n == 0 {
            Fault::Pass
        } else {
            Fault::Throttle(20_000)
        }
    });
    let options = HttpOptions {
        min_bytes_per_second: 1_000,
        deadline: Some(Duration::from_secs(2)),
        ..fast()
    };
    let started = std::time::Instant::now();
    match fetch_error(run(addr, options, &[])) {
        FetchError::DeadlinePassed(d) => assert_eq!(d, Duration::from_secs(2)),
        other => panic!("{other}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

/// Fault 10: a redirect to another origin is not followed unless configured.
#[test]
fn fault_10_a_redirect_to_another_host_is_refused_unless_configured() {
    let f = fixture();
    let location: &'static str = Box::leak(
        format!(
            "HTTP/1.1 302 Found\r\nlocation: http://{}/r2.abd\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            f.server
        )
        .into_boxed_str(),
    );
    let (addr, _) = proxy(f.server, move |_| Fault::Respond(location));
    let url = format!("http://{addr}/r2.abd");
    match HttpSource::open(&url, fast()) {
        Err(FetchError::Config(why)) => assert!(why.contains("another host"), "{why}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a redirect to another host was followed"),
    }
    let other_hosts = HttpOptions {
        follow_other_hosts: true,
        ..fast()
    };
    assert!(HttpSource::open(&url, other_hosts).is_ok());
}

/// The budget check names both figures and passes at exactly the budget. (That nothing is
/// fetched when it refuses, with range merging's gaps counted, is proven end to end against
/// the server's byte count in `updater::the_wire_stays_within_the_budget_with_range_merging`.)
#[test]
fn the_budget_check_names_the_planned_bytes_and_the_budget() {
    let f = fixture();
    let url = format!("http://{}/r2.abd", f.server);
    let http = HttpSource::open(&url, fast()).unwrap();
    let bundle = VerifiedBundle::open(&http, &[key().public()], &Limits::DEFAULT).unwrap();
    let plan = abdelta::plan(&bundle, &[]);
    let before = http.stats();
    let budget = plan.total_bytes() - 1;
    match plan.check_budget(budget) {
        Err(OverBudget { planned, budget: b }) => {
            assert_eq!((planned, b), (plan.total_bytes(), budget))
        }
        other => panic!("expected the budget to refuse, got {other:?}"),
    }
    assert_eq!(
        http.stats(),
        before,
        "nothing may be fetched once the budget refuses"
    );
    assert!(plan.check_budget(plan.total_bytes()).is_ok());
}

/// Fault 6 (multi-range): a multi-range reply that trickles below the minimum rate is dropped
/// after one stall window, and what it did not deliver comes through the single-range path.
/// Needs a server that answers multi-range requests: nginx, which `.ci/run` starts and names
/// in ABDELTA_NGINX_ROOT and ABDELTA_NGINX_ADDR; elsewhere the test says it did not run.
#[test]
fn fault_06_a_multi_range_trickle_is_left_to_the_single_range_path() {
    let (Ok(root), Ok(nginx)) = (
        std::env::var("ABDELTA_NGINX_ROOT"),
        std::env::var("ABDELTA_NGINX_ADDR"),
    ) else {
        eprintln!("fault_06 multi-range SKIPPED: no nginx configured (see .ci/run)");
        return;
    };
    let bytes: Vec<u8> = Rng(606).bytes(400_000);
    let name = format!("trickle-{}.bin", std::process::id());
    std::fs::write(std::path::Path::new(&root).join(&name), &bytes).unwrap();
    // Request 0 is the probe, request 1 the multi-range reply, trickled at 2 kB/s.
    let (addr, count) = proxy(nginx.parse().unwrap(), |n| {
        if n == 1 {
            Fault::Throttle(2_000)
        } else {
            Fault::Pass
        }
    });
    let options = HttpOptions {
        idle_read_timeout: Duration::from_secs(30),
        stall_window: Duration::from_secs(1),
        min_bytes_per_second: 10_000,
        ..fast()
    };
    let http = HttpSource::open(&format!("http://{addr}/{name}"), options).unwrap();
    let ranges = [100_000..180_000, 250_000..330_000];
    let mut got = vec![0u8; bytes.len()];
    let started = std::time::Instant::now();
    abdelta::storage::BundleSource::read_ranges(&http, &ranges, &mut |offset, piece| {
        let at = usize::try_from(offset).unwrap();
        got[at..at + piece.len()].copy_from_slice(piece);
        Ok(())
    })
    .unwrap();
    for r in &ranges {
        let r = r.start as usize..r.end as usize;
        assert!(got[r.clone()] == bytes[r], "the ranges arrived whole");
    }
    assert!(
        count.requests.load(Ordering::SeqCst) >= 3,
        "the single-range path finished"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}

/// A server that cannot be reached at first contact (a closed port: the connection is
/// refused) ends in `Unreachable` once the first contact's patience is spent, not after
/// minutes of backoff.
#[test]
fn a_refused_connection_fails_after_the_first_contacts_patience() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The listener is dropped: nothing listens there now.
    let options = HttpOptions {
        first_contact_patience: Duration::from_secs(2),
        ..HttpOptions::default()
    };
    let started = std::time::Instant::now();
    let result = HttpSource::open(&format!("http://127.0.0.1:{port}/r2.abd"), options);
    match result {
        Err(FetchError::Unreachable { waited, last }) => {
            assert!(waited >= Duration::from_secs(2), "{waited:?}");
            assert!(!last.is_empty());
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("a closed port answered"),
    }
    // Well short of the patient retries' minutes (8 attempts, doubling from 0.5 s).
    assert!(started.elapsed() < Duration::from_secs(30));
}
