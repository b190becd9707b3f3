//! The HTTPS/SSE relay between a stand-in enclave (raw `wire` frames on a socket pair) and
//! the gateway's HTTPS server: a POST answered on its stream, a live event stream relayed
//! across a cut connection with nothing lost or repeated, a resumed stream, a reconnect on
//! the enclave's request, and refusals (a URL off the allowlist never leaves the parent; an
//! answer too large for a frame).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parent_shim::link::control::EnclaveClient;
use parent_shim::serve::https_relay::{self, RelayPolicy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wire::{Flags, HttpPost, Message, RelayErrorCode, SseClose, SseOpen, SseReconnect};

fn certs(pem: &str) -> Vec<rustls_pki_types::CertificateDer<'static>> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()).map(Result::unwrap).collect()
}

async fn send(to: &mut tokio::net::UnixStream, stream: u32, m: &Message<'_>) {
    let mut frame = vec![0u8; wire::HEADER_LEN + m.payload_len()];
    let n = m.encode(stream, Flags::NONE, &mut frame).unwrap();
    to.write_all(&frame[..n]).await.unwrap();
}

/// What came back, per stream: (kind name, fields worth checking).
type Seen = BTreeMap<u32, Vec<(String, String)>>;

async fn read_until(
    from: &mut tokio::net::UnixStream,
    seen: &mut Seen,
    done: impl Fn(&Seen) -> bool,
) {
    let mut decoder: Box<wire::DefaultDecoder> = Box::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done(seen) {
        let n = tokio::time::timeout_at(deadline, from.read(decoder.read_buf()))
            .await
            .unwrap_or_else(|_| panic!("timed out; saw {seen:#?}"))
            .unwrap();
        assert!(n > 0, "the relay closed the connection; saw {seen:#?}");
        decoder.commit(n);
        while let Ok(Some(frame)) = decoder.next_frame() {
            let detail = match frame.message().unwrap() {
                Message::HttpResponse(r) => {
                    format!("{} {} {}", r.status, r.content_type, String::from_utf8_lossy(r.body))
                }
                Message::HttpError(e) => format!("{:?} {}", e.code, e.detail),
                Message::SseEvent(e) => format!("{}|{}|{}", e.id, e.event, e.data),
                Message::SseClose(c) => format!("{:?} {}", c.code, c.detail),
                other => other.name().to_owned(),
            };
            let name = frame.message().unwrap().name().to_owned();
            seen.entry(frame.header.stream).or_default().push((name, detail));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // one conversation, read top to bottom
async fn the_relay_posts_streams_events_and_refuses_what_is_not_allowed() {
    let ca = tests::tls_certs::Ca::new("gateway server CA").unwrap();
    let gw = tests::gateway_health::HealthEndpoint::start(&ca).await.unwrap();
    let (parent_end, mut enclave) = tokio::net::UnixStream::pair().unwrap();
    let (client, requests) = EnclaveClient::new(parent_end);
    let tls = parent_shim::clients::https::client_tls(&certs(&ca.cert_pem()), None).unwrap();
    let policy = RelayPolicy {
        allow: vec![format!("{}/v1/", gw.base())],
        // The gateway is on loopback, which the default (public addresses only) refuses.
        networks: vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
        tls: Arc::new(tls),
        timeout: Duration::from_secs(10),
    };
    tokio::spawn(https_relay::serve(client, requests, policy));
    for (event, data) in [
        ("session", "{\"session\":\"a\"}"),
        ("session", "{\"session\":\"b\"}"),
        ("session", "{\"session\":\"c\",\n\"more\":true}"),
    ] {
        gw.publish(event, data);
    }
    // The first subscription's connection breaks after two events.
    gw.cut_next_connection_after(2);

    let base = gw.base();
    let (echo, events, big) =
        (format!("{base}/v1/echo"), format!("{base}/v1/events"), format!("{base}/v1/big"));
    let outside = format!("{base}/admin/keys");
    send(
        &mut enclave,
        7,
        &Message::HttpPost(HttpPost {
            url: &echo,
            content_type: "application/json",
            body: b"{\"sig\":1}",
        }),
    )
    .await;
    send(&mut enclave, 9, &Message::SseOpen(SseOpen { url: &events, last_event_id: "" })).await;
    send(
        &mut enclave,
        11,
        &Message::HttpPost(HttpPost { url: &outside, content_type: "text/plain", body: b"x" }),
    )
    .await;
    send(
        &mut enclave,
        15,
        &Message::HttpPost(HttpPost { url: &big, content_type: "text/plain", body: b"" }),
    )
    .await;
    send(
        &mut enclave,
        17,
        &Message::SseOpen(SseOpen { url: "http://localhost/v1/events", last_event_id: "" }),
    )
    .await;

    let closed =
        |s: &Seen, id: u32| s.get(&id).is_some_and(|v| v.iter().any(|(n, _)| n == "SseClose"));
    let events_in = |s: &Seen, id: u32| {
        s.get(&id).map_or(0, |v| v.iter().filter(|(n, _)| n == "SseEvent").count())
    };
    let mut seen = Seen::new();
    read_until(&mut enclave, &mut seen, |s| {
        [7, 11, 15].iter().all(|id| s.contains_key(id)) && closed(s, 17) && events_in(s, 9) == 3
    })
    .await;
    // A second subscription (after the cut, which was the first one's) resumes after "2".
    send(&mut enclave, 13, &Message::SseOpen(SseOpen { url: &events, last_event_id: "2" })).await;
    read_until(&mut enclave, &mut seen, |s| events_in(s, 13) == 1).await;
    // A live event reaches both subscriptions.
    gw.publish("session", "{\"session\":\"d\"}");
    read_until(&mut enclave, &mut seen, |s| events_in(s, 9) == 4 && events_in(s, 13) == 2).await;
    // The enclave asks stream 13 to resume after "2" again: event 3 and 4 come once more,
    // on that stream only.
    send(&mut enclave, 13, &Message::SseReconnect(SseReconnect { last_event_id: "2" })).await;
    read_until(&mut enclave, &mut seen, |s| events_in(s, 13) == 4).await;
    // Reconnecting a stream that was never opened is refused.
    send(&mut enclave, 21, &Message::SseReconnect(SseReconnect { last_event_id: "1" })).await;
    read_until(&mut enclave, &mut seen, |s| closed(s, 21)).await;
    // The enclave ends the subscriptions; nothing more comes on them.
    for stream in [9, 13] {
        let close = SseClose { code: RelayErrorCode::CLOSED, detail: "done" };
        send(&mut enclave, stream, &Message::SseClose(close)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw.publish("session", "{\"session\":\"e\"}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut after = Seen::new();
    let _ = tokio::time::timeout(
        Duration::from_millis(500),
        read_until(&mut enclave, &mut after, |s| !s.is_empty()),
    )
    .await;
    assert!(after.is_empty(), "events after the enclave closed: {after:?}");

    assert_eq!(
        seen[&7],
        [("HttpResponse".to_owned(), "201 application/json {\"sig\":1}".to_owned())]
    );
    assert_eq!(seen[&11][0].0, "HttpError");
    assert!(
        seen[&11][0].1.starts_with(&format!("{:?}", RelayErrorCode::NOT_ALLOWED)),
        "{:?}",
        seen[&11]
    );
    assert_eq!(seen[&15][0].0, "HttpError");
    assert!(
        seen[&15][0].1.starts_with(&format!("{:?}", RelayErrorCode::TOO_LARGE)),
        "{:?}",
        seen[&15]
    );
    let events_of = |id: u32| -> Vec<String> {
        seen[&id].iter().filter(|(n, _)| n == "SseEvent").map(|(_, d)| d.clone()).collect()
    };
    let (a, b, c, d) = (
        "1|session|{\"session\":\"a\"}",
        "2|session|{\"session\":\"b\"}",
        "3|session|{\"session\":\"c\",\n\"more\":true}",
        "4|session|{\"session\":\"d\"}",
    );
    assert_eq!(events_of(9), [a, b, c, d], "across the cut: nothing lost, nothing twice");
    assert_eq!(events_of(13), [c, d, c, d], "resumed after id 2, twice");
    assert!(!closed(&seen, 9) && !closed(&seen, 13), "the relay kept both subscriptions");
    assert!(seen[&17].last().unwrap().1.starts_with(&format!("{:?}", RelayErrorCode::NOT_ALLOWED)));
    assert!(
        seen[&21].last().unwrap().1.starts_with(&format!("{:?}", RelayErrorCode::BAD_RESPONSE))
    );
    // Nothing off the allowlist reached the network; the cut connection was resumed after
    // the last event relayed on it.
    let asked = gw.requests();
    assert!(!asked.iter().any(|r| r.contains("/admin")), "{asked:?}");
    let mut subscriptions = gw.subscriptions();
    subscriptions.sort();
    assert_eq!(subscriptions, ["", "2", "2", "2"], "{asked:?}");
}

fn post(url: &str) -> Message<'_> {
    Message::HttpPost(HttpPost { url, content_type: "text/plain", body: b"x" })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_addresses_and_redirects_outside_the_policy_are_refused() {
    let ca = tests::tls_certs::Ca::new("gateway server CA").unwrap();
    let gw = tests::gateway_health::HealthEndpoint::start(&ca).await.unwrap();
    let tls =
        Arc::new(parent_shim::clients::https::client_tls(&certs(&ca.cert_pem()), None).unwrap());
    let relay = |networks: &[&str]| {
        let (parent_end, enclave) = tokio::net::UnixStream::pair().unwrap();
        let (client, requests) = EnclaveClient::new(parent_end);
        let policy = RelayPolicy {
            allow: vec![format!("{}/v1/", gw.base())],
            networks: networks.iter().map(|n| n.parse().unwrap()).collect(),
            tls: Arc::clone(&tls),
            timeout: Duration::from_secs(10),
        };
        tokio::spawn(https_relay::serve(client, requests, policy));
        enclave
    };
    let echo = format!("{}/v1/echo", gw.base());
    let port = gw.base().rsplit(':').next().unwrap().to_owned();

    // `localhost` is allowed by name, but resolves to loopback, outside 10.0.0.0/8 and
    // outside the default (public addresses only): refused before any connection.
    for networks in [&["10.0.0.0/8"][..], &[]] {
        let mut enclave = relay(networks);
        send(&mut enclave, 3, &post(&echo)).await;
        let events = format!("{}/v1/events", gw.base());
        send(&mut enclave, 5, &Message::SseOpen(SseOpen { url: &events, last_event_id: "" })).await;
        let mut seen = Seen::new();
        read_until(&mut enclave, &mut seen, |s| s.contains_key(&3) && s.contains_key(&5)).await;
        for stream in [3, 5] {
            let (_, detail) = &seen[&stream][0];
            assert!(detail.contains("NOT_ALLOWED"), "{networks:?}: {seen:?}");
            assert!(detail.contains("outside relay.networks"), "{detail}");
        }
    }
    assert!(gw.requests().is_empty(), "{:?}", gw.requests());

    // With loopback allowed: the same host works, an IP literal for it does not (the
    // allowlist names hosts), and a redirect comes back to the enclave unfollowed.
    let mut enclave = relay(&["127.0.0.0/8", "::1/128"]);
    let literal = format!("https://127.0.0.1:{port}/v1/echo");
    let redirect = format!("{}/v1/redirect", gw.base());
    send(&mut enclave, 3, &post(&echo)).await;
    send(&mut enclave, 5, &post(&literal)).await;
    send(&mut enclave, 7, &post(&redirect)).await;
    let mut seen = Seen::new();
    read_until(&mut enclave, &mut seen, |s| [3, 5, 7].iter().all(|i| s.contains_key(i))).await;
    assert!(seen[&3][0].1.starts_with("201 "), "{seen:?}");
    assert!(seen[&5][0].1.contains("NOT_ALLOWED"), "{seen:?}");
    assert!(seen[&7][0].1.starts_with("302 "), "{seen:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut reached = gw.requests();
    reached.sort(); // the relay runs the two posts concurrently
    assert_eq!(reached, ["POST /v1/echo", "POST /v1/redirect"], "nothing else reached");
}
