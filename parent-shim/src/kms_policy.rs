//! KMS key policies that release the age identity only to the measured enclave image.
//!
//! The policy lets the enclave's parent role call `kms:Decrypt` only with a `Recipient`
//! attestation document whose PCRs equal the image's (`kms:RecipientAttestation:PCRn`).
//! A `Decrypt` without a document carries no such condition key, so it is refused: the
//! parent role can never see the identity. An optional operator role may `Encrypt` (to
//! seal a new identity) and nothing else; key administration is a separate principal with
//! no data-plane rights.
//!
//! [`recipient_conditions`] reads the PCR conditions back from a policy: the KMS emulator
//! enforces generated policies with it, and operators can check a deployed policy against
//! a `pcrs.json` before rolling an image.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Value, json};

/// The principals of a policy.
#[derive(Debug, Clone)]
pub struct Principals {
    /// The EC2 parent's instance role: `kms:Decrypt` with an attested recipient only.
    pub enclave_role: String,
    /// Key administrators (no encrypt/decrypt).
    pub admin: String,
    /// An operator role allowed `kms:Encrypt` (sealing a new identity), if any.
    pub operator: Option<String>,
}

/// The statement id of the attested decrypt.
pub const DECRYPT_SID: &str = "EnclaveDecryptWithAttestationOnly";

/// A key policy for an image with these PCRs (index -> value).
#[must_use]
pub fn key_policy(pcrs: &BTreeMap<u64, Vec<u8>>, who: &Principals) -> Value {
    let conditions: serde_json::Map<String, Value> = pcrs
        .iter()
        .map(|(i, v)| (format!("kms:RecipientAttestation:PCR{i}"), json!(hex::encode(v))))
        .collect();
    let mut statements = vec![
        json!({
            "Sid": "KeyAdministration",
            "Effect": "Allow",
            "Principal": {"AWS": who.admin},
            "Action": ["kms:Create*", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*",
                       "kms:Update*", "kms:Revoke*", "kms:Disable*", "kms:Get*", "kms:Delete*",
                       "kms:TagResource", "kms:UntagResource", "kms:ScheduleKeyDeletion",
                       "kms:CancelKeyDeletion"],
            "Resource": "*"
        }),
        json!({
            "Sid": DECRYPT_SID,
            "Effect": "Allow",
            "Principal": {"AWS": who.enclave_role},
            "Action": "kms:Decrypt",
            "Resource": "*",
            "Condition": {"StringEqualsIgnoreCase": conditions}
        }),
    ];
    if let Some(operator) = &who.operator {
        statements.push(json!({
            "Sid": "OperatorSealsIdentities",
            "Effect": "Allow",
            "Principal": {"AWS": operator},
            "Action": "kms:Encrypt",
            "Resource": "*"
        }));
    }
    json!({"Version": "2012-10-17", "Id": "sign-service-enclave-key", "Statement": statements})
}

/// Why a policy could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError(pub String);

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PolicyError {}

/// The PCR conditions (index -> value) of the policy's attested `kms:Decrypt` statement.
/// `kms:RecipientAttestation:ImageSha384` counts as PCR0. An error if the policy has no
/// such statement, a condition is not hex, or one contradicts another.
pub fn recipient_conditions(policy: &Value) -> Result<BTreeMap<u64, Vec<u8>>, PolicyError> {
    let bad = |m: &str| PolicyError(m.to_owned());
    let statements = policy
        .get("Statement")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no Statement array"))?;
    let decrypt = statements
        .iter()
        .find(|s| {
            s.get("Effect") == Some(&json!("Allow"))
                && match s.get("Action") {
                    Some(Value::String(a)) => a == "kms:Decrypt",
                    Some(Value::Array(a)) => a.iter().any(|x| x == "kms:Decrypt"),
                    _ => false,
                }
                && s.get("Condition").is_some()
        })
        .ok_or_else(|| bad("no conditioned kms:Decrypt statement"))?;
    let mut out = BTreeMap::new();
    let conditions = decrypt
        .get("Condition")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("Condition is not an object"))?;
    for (operator, keys) in conditions {
        if operator != "StringEqualsIgnoreCase" && operator != "StringEquals" {
            return Err(PolicyError(format!("unsupported condition operator {operator}")));
        }
        for (key, value) in keys.as_object().ok_or_else(|| bad("condition keys"))? {
            let name = key.to_ascii_lowercase();
            let index = if name == "kms:recipientattestation:imagesha384" {
                0
            } else if let Some(n) = name.strip_prefix("kms:recipientattestation:pcr") {
                n.parse().map_err(|_| PolicyError(format!("bad condition key {key}")))?
            } else {
                return Err(PolicyError(format!("unsupported condition key {key}")));
            };
            let hex =
                value.as_str().ok_or_else(|| PolicyError(format!("{key} is not a string")))?;
            let bytes = hex::decode(hex).map_err(|_| PolicyError(format!("{key} is not hex")))?;
            if out.insert(index, bytes.clone()).is_some_and(|prev| prev != bytes) {
                return Err(PolicyError(format!("contradicting conditions on PCR{index}")));
            }
        }
    }
    if out.is_empty() {
        return Err(bad("the kms:Decrypt statement pins no PCR"));
    }
    Ok(out)
}

/// Whether the policy allows some principal `kms:Decrypt` without any condition, which
/// would defeat the attestation.
#[must_use]
pub fn allows_unconditioned_decrypt(policy: &Value) -> bool {
    policy.get("Statement").and_then(Value::as_array).is_some_and(|all| {
        all.iter().any(|s| {
            let decrypts = match s.get("Action") {
                Some(Value::String(a)) => a == "kms:Decrypt" || a == "kms:*" || a == "*",
                Some(Value::Array(a)) => {
                    a.iter().any(|x| x == "kms:Decrypt" || x == "kms:*" || x == "*")
                }
                _ => false,
            };
            s.get("Effect") == Some(&json!("Allow")) && decrypts && s.get("Condition").is_none()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who() -> Principals {
        Principals {
            enclave_role: "arn:aws:iam::111122223333:role/sign-service-parent".into(),
            admin: "arn:aws:iam::111122223333:role/kms-admin".into(),
            operator: Some("arn:aws:iam::111122223333:role/sign-service-operator".into()),
        }
    }

    #[test]
    fn generated_policies_read_back_and_never_allow_a_plain_decrypt() {
        let pcrs: BTreeMap<u64, Vec<u8>> =
            [(0, vec![1; 48]), (1, vec![2; 48]), (2, vec![3; 48])].into();
        let policy = key_policy(&pcrs, &who());
        assert_eq!(recipient_conditions(&policy).unwrap(), pcrs);
        assert!(!allows_unconditioned_decrypt(&policy));
        let text = serde_json::to_string(&policy).unwrap();
        assert!(text.contains("kms:RecipientAttestation:PCR2"));
        assert!(text.contains("sign-service-operator"));
    }

    #[test]
    fn bad_policies_are_refused_with_a_reason() {
        let ok = key_policy(&[(0, vec![1; 48])].into(), &who());
        let mut p = ok.clone();
        p["Statement"][1]["Condition"]["StringEqualsIgnoreCase"]["kms:RecipientAttestation:PCR0"] =
            json!("zz");
        assert!(recipient_conditions(&p).unwrap_err().0.contains("not hex"));
        let mut p = ok.clone();
        p["Statement"][1]["Condition"]["StringEqualsIgnoreCase"]["kms:RecipientAttestation:ImageSha384"] =
            json!(hex::encode([9u8; 48]));
        assert!(recipient_conditions(&p).unwrap_err().0.contains("contradicting"));
        let mut p = ok.clone();
        p["Statement"][1].as_object_mut().unwrap().remove("Condition");
        assert!(recipient_conditions(&p).is_err());
        assert!(allows_unconditioned_decrypt(&p));
        assert!(recipient_conditions(&json!({})).is_err());
    }
}
