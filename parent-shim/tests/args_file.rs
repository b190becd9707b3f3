//! The enclave's arguments, written by the parent's half and read by the enclave's: what
//! the image build and the parent write is what the enclave reads (a round trip over every
//! option), and a default is not written.

use std::path::PathBuf;

use enclave_core::enclave_args::{Address, EnclaveArgs, NITRO_HEARTBEAT};
use enclave_core::session_events::EventsConfig;
use parent_shim::boot::args_file::WriteArgs as _;
use tests::gateway::{fresh_publisher_key, gateway_key};

fn vsock(port: u32) -> Address {
    Address::Vsock { cid: u32::MAX, port }
}

#[test]
fn every_option_survives_the_round_trip() {
    let mut a =
        EnclaveArgs::new(vsock(5000), vsock(5001), gateway_key(), fresh_publisher_key()).unwrap();
    a.memory_budget_mib = 2048;
    a.store_limit_mib = 1500;
    a.allow_empty = true;
    a.engine.session_cap = 17;
    a.engine.session_ttl_secs = 11;
    a.engine.max_grant_lifetime_secs = 90;
    a.engine.replay_window = 4096;
    a.max_clock_skew_ms = 2_500;
    a.quiet = true;
    a.sim_nsm_dir = Some(PathBuf::from("/etc/enclave-rt/sim-nsm"));
    a.sim_pcrs = vec![(0, [0xab; 48]), (2, [0x01; 48])];
    a.heartbeat = Address::Vsock { cid: 2, port: 9000 };
    a.events = Some(EventsConfig::new("https://gw.example/e", "https://gw.example/a").unwrap());
    let file = a.to_file();
    let b = EnclaveArgs::parse_file(&format!("# measured\n\n{file}")).unwrap();
    assert_eq!(b.to_lines(), a.to_lines());
    assert_eq!(b.serving_config().max_clock_skew_ms, 2_500);
    assert_eq!((b.control, b.logs, b.heartbeat), (a.control, a.logs, a.heartbeat));
    assert_eq!((b.memory_budget_mib, b.store_limit_mib), (2048, 1500));
    assert!(b.allow_empty && b.quiet);
    assert_eq!(b.engine.gateway_key.to_bytes(), gateway_key());
    assert_eq!(b.publisher_key, a.publisher_key);
    assert_eq!((b.engine.session_cap, b.engine.session_ttl_secs), (17, 11),);
    assert_eq!((b.engine.max_grant_lifetime_secs, b.engine.replay_window), (90, 4096));
    assert_eq!(b.max_clock_skew_ms, 2_500);
    assert_eq!(b.sim_nsm_dir, a.sim_nsm_dir);
    assert_eq!(b.sim_pcrs, a.sim_pcrs);
    assert_eq!(b.events, a.events);
}

#[test]
fn defaults_are_not_written_and_read_back_as_defaults() {
    let a = EnclaveArgs::new(
        Address::Unix("/run/c.sock".into()),
        vsock(5001),
        gateway_key(),
        fresh_publisher_key(),
    )
    .unwrap();
    let lines = a.to_lines();
    assert_eq!(lines.len(), 8, "{lines:?}");
    let b = EnclaveArgs::parse(&lines).unwrap();
    assert_eq!(b.heartbeat, NITRO_HEARTBEAT);
    assert_eq!((b.memory_budget_mib, b.store_limit_mib), (1024, 768));
    assert_eq!(b.engine.session_cap, 256);
    assert!(b.events.is_none() && b.sim_pcrs.is_empty() && !b.quiet && !b.allow_empty);
}
