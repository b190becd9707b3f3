//! Boot inputs and launch: what the enclave is booted with, and the boot itself.
//! [`inputs`] reads the manifest and the sealed identity (step 1), [`launcher`] starts the
//! enclave, [`bring_up`] connects and boots it (steps 2 and 3) through [`conversation`].
//!
//! - [`inputs`]: the manifest and the sealed identity read (step 1).
//! - [`s3_fetch`]: objects from S3 through `aws-sdk-s3` (or `file://`).
//! - [`share_stream`]: the share file streamed through a bounded window as it arrives.
//! - [`kms_relay`]: KMS `Decrypt` with `Recipient` through `aws-sdk-kms`.
//! - [`launcher`]: starting, watching and destroying the enclave (local or nitro-cli).
//! - [`args_file`]: the enclave's arguments written (the image build uses it too).
//! - [`bring_up`]: a launched enclave connected and booted (steps 2 and 3).
//! - [`conversation`]: the boot messages in order: attest, unseal, stream the shares, loaded.

pub mod args_file;
pub mod bring_up;
pub mod conversation;
pub mod inputs;
pub mod kms_relay;
pub mod launcher;
pub mod s3_fetch;
pub mod share_stream;
