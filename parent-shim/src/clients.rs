//! The parent's outgoing clients, shared by the boot, the relay and the reports.
//!
//! - [`aws`]: what every AWS client shares: the HTTPS client, credentials (`IMDSv2`).
//! - [`https`]: HTTPS for the parent's own requests and the relay.

pub mod aws;
pub mod https;
