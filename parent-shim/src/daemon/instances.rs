//! Several parents on one host, one enclave each (`parent-shim@.service`, one
//! configuration per instance): what two instances must not share. `check-config` with
//! every instance's file refuses a pair that collides, naming both files and the resource;
//! a collision found only at start would take down the second instance, or worse, route
//! one node's traffic, logs or audit chain to the other.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::daemon::config::{Config, LaunchMode};

/// One instance's resources that no other instance on the host may use: (what, value).
fn resources(config: &Config) -> Vec<(&'static str, String)> {
    let mut out = vec![];
    if let Some(port) = listen_port(&config.grpc.listen) {
        out.push(("gRPC port", port.to_string()));
    }
    if let Some(port) = config.metrics.as_ref().and_then(|m| listen_port(&m.listen)) {
        out.push(("metrics port", port.to_string()));
    }
    match config.enclave.mode {
        LaunchMode::Nitro => out.push(("enclave CID", config.enclave.cid.to_string())),
        LaunchMode::Local => {
            if let Some(dir) = &config.enclave.runtime_dir {
                out.push(("runtime directory", dir.display().to_string()));
            }
        }
    }
    if let Some(audit) = &config.audit {
        out.push(("audit file", audit.file.display().to_string()));
    }
    if let Some(cw) = &config.cloudwatch {
        out.push(("CloudWatch stream", format!("{}:{}", cw.log_group, cw.log_stream)));
        out.push(("CloudWatch stream", format!("{}:{}", cw.log_group, cw.audit_stream())));
    }
    out
}

/// The port of a listen address, unless it is 0 (the system picks a free one each time).
/// Ports are compared whatever the address: `0.0.0.0:50051` and `127.0.0.1:50051` collide.
fn listen_port(listen: &str) -> Option<u16> {
    listen.parse::<SocketAddr>().ok().map(|a| a.port()).filter(|p| *p != 0)
}

/// Every collision between the instances' configurations, one line each: the resource,
/// its value and the two files. Empty when they can run side by side.
#[must_use]
pub fn collisions(instances: &[(PathBuf, Config)]) -> Vec<String> {
    let mut out = vec![];
    let all: Vec<(&Path, Vec<(&str, String)>)> =
        instances.iter().map(|(p, c)| (p.as_path(), resources(c))).collect();
    for (i, (a_path, a)) in all.iter().enumerate() {
        for (b_path, b) in all.iter().skip(i + 1) {
            for (what, value) in a {
                if b.iter().any(|(w, v)| w == what && v == value) {
                    out.push(format!(
                        "{what} {value} is used by both {} and {}",
                        a_path.display(),
                        b_path.display()
                    ));
                }
            }
        }
    }
    out.dedup();
    out
}

/// What the instances together ask of the host (nitro mode): vCPUs and MiB, for the
/// allocator's reservation (`/etc/nitro_enclaves/allocator.yaml`).
#[must_use]
pub fn host_reservation(instances: &[(PathBuf, Config)]) -> (u32, u32) {
    instances.iter().filter(|(_, c)| c.enclave.mode == LaunchMode::Nitro).fold(
        (0, 0),
        |(cpus, mib), (_, c)| {
            (cpus.saturating_add(c.enclave.cpu_count), mib.saturating_add(c.enclave.memory_mib))
        },
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn ports_collide_whatever_the_address_and_never_at_zero() {
        assert_eq!(super::listen_port("0.0.0.0:50051"), Some(50051));
        assert_eq!(super::listen_port("127.0.0.1:50051"), Some(50051));
        assert_eq!(super::listen_port("127.0.0.1:0"), None);
        assert_eq!(super::listen_port("[::1]:50052"), Some(50052));
    }
}
