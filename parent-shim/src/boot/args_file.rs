//! The writing half of the enclave's arguments ([`enclave_core::enclave_args`], whose
//! parser is the reading half): the parent's local launcher writes them into a file beside
//! its enclave, and `cargo xtask build-eif` into the image (`/etc/enclave-rt/args`, measured
//! into PCR2). It lives here so that the image carries only the parser; a test round-trips
//! every option through both.

use enclave_core::enclave_args::{
    DEFAULT_MEMORY_BUDGET_MIB, DEFAULT_STORE_LIMIT_MIB, EnclaveArgs, NITRO_HEARTBEAT,
};
use enclave_core::signing_engine::EngineConfig;
use enclave_core::trusted_time::DEFAULT_MAX_SKEW_MS;

/// Writes [`EnclaveArgs`] as `EnclaveArgs::parse` and `parse_file` read them.
pub trait WriteArgs {
    /// The arguments, one per line's worth: the required ones, then every option that
    /// differs from its default.
    fn to_lines(&self) -> Vec<String>;

    /// The arguments file: one argument per line.
    fn to_file(&self) -> String {
        self.to_lines().join("\n") + "\n"
    }
}

impl WriteArgs for EnclaveArgs {
    fn to_lines(&self) -> Vec<String> {
        let mut out = vec![
            "--control".to_owned(),
            self.control.to_string(),
            "--logs".to_owned(),
            self.logs.to_string(),
            "--gateway-key".to_owned(),
            hex::encode(self.engine.gateway_key),
            "--publisher-key".to_owned(),
            hex::encode(self.publisher_key),
        ];
        let defaults = EngineConfig::with_gateway_key(self.engine.gateway_key);
        let mut put = |flag: &str, value: String| out.extend([flag.to_owned(), value]);
        let numbers = [
            (
                "--memory-budget-mib",
                self.memory_budget_mib as u64,
                DEFAULT_MEMORY_BUDGET_MIB as u64,
            ),
            ("--store-limit-mib", self.store_limit_mib, DEFAULT_STORE_LIMIT_MIB),
            ("--session-cap", self.engine.session_cap as u64, defaults.session_cap as u64),
            ("--session-ttl-secs", self.engine.session_ttl_secs, defaults.session_ttl_secs),
            (
                "--max-grant-lifetime-secs",
                self.engine.max_grant_lifetime_secs,
                defaults.max_grant_lifetime_secs,
            ),
            ("--replay-window", self.engine.replay_window as u64, defaults.replay_window as u64),
            ("--max-clock-skew-ms", self.max_clock_skew_ms, DEFAULT_MAX_SKEW_MS),
        ];
        for (flag, value, default) in numbers {
            if value != default {
                put(flag, value.to_string());
            }
        }
        if self.heartbeat != NITRO_HEARTBEAT {
            put("--heartbeat", self.heartbeat.to_string());
        }
        if let Some(dir) = &self.sim_nsm_dir {
            put("--sim-nsm-dir", dir.display().to_string());
        }
        for (index, value) in &self.sim_pcrs {
            put("--sim-pcr", format!("{index}={}", hex::encode(value)));
        }
        if let Some(events) = &self.events {
            put("--events-url", events.events_url.clone());
            put("--answers-url", events.answers_url.clone());
        }
        for (flag, on) in [("--allow-empty", self.allow_empty), ("--quiet", self.quiet)] {
            if on {
                out.push(flag.to_owned());
            }
        }
        out
    }
}
