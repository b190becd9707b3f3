//! KMS key policies that release the age identity only to the measured enclave image.
//!
//! The policy lets the enclave's parent role call `kms:Decrypt` only with a `Recipient`
//! attestation document whose PCRs equal the image's (`kms:RecipientAttestation:PCRn`).
//! A `Decrypt` without a document carries no such condition key, so it is refused: the
//! parent role can never see the identity. An optional operator role may `Encrypt` (to
//! seal a new identity) and nothing else. The key administrator manages the key's life
//! from an explicit list ([`ADMIN_ACTIONS`]): no data-plane action, no `CreateGrant` (a
//! grant can carry a plain `Decrypt`) and no `PutKeyPolicy` (a policy can grant anything).
//! Changing the policy, which an image upgrade needs, belongs to a separate, named
//! break-glass principal alone.
//!
//! [`recipient_conditions`] reads the PCR conditions back from a policy; [`allows`]
//! evaluates a request against a policy the way KMS does for the statements we write (the
//! KMS emulator enforces policies with it); [`audit`] (`signservice-offline kms-policy --check`)
//! lists every statement that lets a principal decrypt without the PCR conditions, create
//! grants, or change the policy outside the break-glass principal.
//!
//! The S3 objects (the share file, its manifest, the sealed identity) are encrypted by S3
//! under another key, the bucket key ([`bucket_key_policy`]): the instance role decrypts
//! with it only through S3 (`kms:ViaService`), and the identity's key is never S3's to
//! use ([`audit`] refuses a statement that lets it be).

use std::collections::BTreeMap;
use std::fmt;

use node_verify::pcrs_file::Pin;
use serde_json::{Value, json};

/// The principals of a policy.
#[derive(Debug, Clone)]
pub struct Principals {
    /// The EC2 parent's instance role: `kms:Decrypt` with an attested recipient only.
    pub enclave_role: String,
    /// Key administrators: [`ADMIN_ACTIONS`] only.
    pub admin: String,
    /// The only principal that may change the key policy (`kms:PutKeyPolicy`), for an
    /// image upgrade; used under a two-person procedure (`docs/runbook.md`).
    pub break_glass: String,
    /// An operator role allowed `kms:Encrypt` (sealing a new identity), if any.
    pub operator: Option<String>,
}

/// The statement id of the attested decrypt.
pub const DECRYPT_SID: &str = "EnclaveDecryptWithAttestationOnly";

/// What the key administrator may do: see the key, manage its life, aliases, tags and
/// rotation, and take grants away. Nothing that uses the key or widens who may.
pub const ADMIN_ACTIONS: &[&str] = &[
    "kms:DescribeKey",
    "kms:GetKeyPolicy",
    "kms:GetKeyRotationStatus",
    "kms:ListGrants",
    "kms:ListKeyPolicies",
    "kms:ListResourceTags",
    "kms:ListAliases",
    "kms:CreateAlias",
    "kms:UpdateAlias",
    "kms:DeleteAlias",
    "kms:UpdateKeyDescription",
    "kms:EnableKey",
    "kms:DisableKey",
    "kms:EnableKeyRotation",
    "kms:DisableKeyRotation",
    "kms:RevokeGrant",
    "kms:RetireGrant",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:ScheduleKeyDeletion",
    "kms:CancelKeyDeletion",
];

/// The statements every key of ours starts with: the administrator's life-cycle actions,
/// and the policy change reserved to the break-glass principal.
fn key_control(who: &Principals) -> Vec<Value> {
    vec![
        json!({
            "Sid": "KeyAdministration",
            "Effect": "Allow",
            "Principal": {"AWS": who.admin},
            "Action": ADMIN_ACTIONS,
            "Resource": "*"
        }),
        json!({
            "Sid": "BreakGlassPolicyChange",
            "Effect": "Allow",
            "Principal": {"AWS": who.break_glass},
            "Action": ["kms:PutKeyPolicy", "kms:GetKeyPolicy", "kms:DescribeKey"],
            "Resource": "*",
            "Condition": {"Bool": {"kms:BypassPolicyLockoutSafetyCheck": "false"}}
        }),
    ]
}

/// A key policy for an image with these PCRs (index -> value): the registers chosen by
/// `node_verify::pcrs_file::select` (PCR0 and the image's others, or its signer's PCR8).
#[must_use]
pub fn key_policy(pcrs: &BTreeMap<u64, Vec<u8>>, who: &Principals) -> Value {
    let conditions: serde_json::Map<String, Value> = pcrs
        .iter()
        .map(|(i, v)| (format!("kms:RecipientAttestation:PCR{i}"), json!(hex::encode(v))))
        .collect();
    let mut statements = key_control(who);
    statements.extend([json!({
        "Sid": DECRYPT_SID,
        "Effect": "Allow",
        "Principal": {"AWS": who.enclave_role},
        "Action": "kms:Decrypt",
        "Resource": "*",
        "Condition": {"StringEqualsIgnoreCase": conditions}
    })]);
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

/// The bucket key's statement id for the instance role's reads through S3.
pub const BUCKET_READ_SID: &str = "InstanceRoleReadsInputsThroughS3Only";

/// S3's service name in `region`, as `kms:ViaService` carries it.
fn s3_service(region: &str) -> String {
    format!("s3.{region}.amazonaws.com")
}

/// The key policy of the S3 bucket key (SSE-KMS with an S3 Bucket Key for the inputs):
/// the administrator and break-glass statements of [`key_policy`]; the instance role may
/// `kms:Decrypt` only through S3 in `region` (it reads the objects; it can decrypt nothing
/// with this key directly); the operator may `kms:GenerateDataKey` and `kms:Decrypt`
/// through S3 (uploads). This key must not be the identity's: [`audit`] refuses an
/// identity key that S3 may use.
#[must_use]
pub fn bucket_key_policy(region: &str, who: &Principals) -> Value {
    let via_s3 = json!({"StringEquals": {"kms:ViaService": s3_service(region)}});
    let mut statements = key_control(who);
    statements.extend([json!({
        "Sid": BUCKET_READ_SID,
        "Effect": "Allow",
        "Principal": {"AWS": who.enclave_role},
        "Action": "kms:Decrypt",
        "Resource": "*",
        "Condition": via_s3
    })]);
    if let Some(operator) = &who.operator {
        statements.push(json!({
            "Sid": "OperatorUploadsInputsThroughS3Only",
            "Effect": "Allow",
            "Principal": {"AWS": operator},
            "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
            "Resource": "*",
            "Condition": via_s3
        }));
    }
    json!({"Version": "2012-10-17", "Id": "sign-service-bucket-key", "Statement": statements})
}

/// What [`audit_bucket_key`] refuses: any use of the bucket key outside S3 in `region`
/// (a `kms:Decrypt` or `kms:GenerateDataKey` without `kms:ViaService` set to S3), grants,
/// re-encryption, and policy changes outside the break-glass principal.
#[must_use]
pub fn audit_bucket_key(policy: &Value, region: &str, break_glass: Option<&str>) -> Vec<Finding> {
    let service = s3_service(region);
    each_allow(policy, |s, who, find| {
        let through_s3 = via_service(s).is_some_and(|v| v == service);
        for action in ["kms:Decrypt", "kms:GenerateDataKey"] {
            if matches_action(s, action) && !through_s3 {
                find(format!("lets {who} {action} other than through {service}"));
            }
        }
        control_plane(s, who, break_glass, find);
    })
}

/// Calls `check` with every `Allow` statement, its principals as text and a `find` that
/// records a finding against it (by `Sid`, else `#index`); the findings, in order.
fn each_allow(
    policy: &Value,
    mut check: impl FnMut(&Value, &str, &mut dyn FnMut(String)),
) -> Vec<Finding> {
    let Some(statements) = policy.get("Statement").and_then(Value::as_array) else {
        return vec![Finding { statement: "-".into(), problem: "no Statement array".into() }];
    };
    let mut findings = Vec::new();
    for (i, s) in statements.iter().enumerate() {
        if s.get("Effect") != Some(&json!("Allow")) {
            continue;
        }
        let name =
            s.get("Sid").and_then(Value::as_str).map_or_else(|| format!("#{i}"), str::to_owned);
        let mut find =
            |problem: String| findings.push(Finding { statement: name.clone(), problem });
        check(s, &principals_text(s), &mut find);
    }
    findings
}

/// What no key of ours lets anyone do: re-encrypt (to a key the caller holds, which
/// reveals the plaintext), create grants (which can carry a plain `Decrypt`), or change
/// the policy, unless it is the break-glass principal alone.
fn control_plane(s: &Value, who: &str, break_glass: Option<&str>, find: &mut dyn FnMut(String)) {
    for action in ["kms:ReEncryptFrom", "kms:CreateGrant"] {
        if matches_action(s, action) {
            find(format!("lets {who} {action}"));
        }
    }
    if matches_action(s, "kms:PutKeyPolicy") {
        let only_break_glass = break_glass.is_some_and(|b| principal_list(s) == [b]);
        if !only_break_glass {
            find(format!(
                "lets {who} kms:PutKeyPolicy{}",
                break_glass.map_or(String::new(), |b| format!(" (only {b} may)"))
            ));
        }
    }
}

/// The `kms:ViaService` value a statement's conditions require, if any.
fn via_service(statement: &Value) -> Option<&str> {
    let conditions = statement.get("Condition")?.as_object()?;
    conditions.values().filter_map(Value::as_object).find_map(|keys| {
        keys.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("kms:ViaService"))
            .and_then(|(_, v)| v.as_str())
    })
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

/// One request, as the policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The caller's principal ARN.
    pub principal: &'a str,
    /// The action, e.g. `kms:Decrypt`.
    pub action: &'a str,
    /// The PCRs of the request's verified `Recipient` attestation document, if it had one
    /// (the `kms:RecipientAttestation:*` condition keys exist only then).
    pub recipient_pcrs: Option<&'a BTreeMap<u64, Vec<u8>>>,
    /// `kms:BypassPolicyLockoutSafetyCheck` (`PutKeyPolicy` only).
    pub bypass_lockout_check: bool,
}

/// Whether `policy` allows `request`: an `Allow` statement matches it (principal, action,
/// every condition) and no `Deny` statement does. A condition operator or key this module
/// does not know never matches an `Allow` (and always matches a `Deny`): fail closed.
#[must_use]
pub fn allows(policy: &Value, request: &Request<'_>) -> bool {
    let statements = policy.get("Statement").and_then(Value::as_array);
    let statements = statements.map(Vec::as_slice).unwrap_or_default();
    let applies =
        |s: &Value| names_principal(s, request.principal) && matches_action(s, request.action);
    let denied = statements.iter().any(|s| {
        s.get("Effect") == Some(&json!("Deny"))
            && applies(s)
            && conditions_hold(s, request).unwrap_or(true)
    });
    let allowed = statements.iter().any(|s| {
        s.get("Effect") == Some(&json!("Allow"))
            && applies(s)
            && conditions_hold(s, request).unwrap_or(false)
    });
    allowed && !denied
}

/// One problem [`audit`] found: the statement (its `Sid`, or its index) and what it allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `Sid`, or `#index` for a statement without one.
    pub statement: String,
    /// What is wrong, in one sentence.
    pub problem: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "statement {}: {}", self.statement, self.problem)
    }
}

/// Every `Allow` statement of `policy` that lets a principal read the identity or widen
/// access: `kms:Decrypt` without `kms:RecipientAttestation` PCR conditions (or, given
/// `pcrs`, with other values than the image's), `kms:ReEncrypt*` (re-encrypting to a key
/// the caller holds reveals the plaintext, and takes no attestation), `kms:CreateGrant`
/// (a grant can carry a plain `Decrypt`), and `kms:PutKeyPolicy` for anyone but
/// `break_glass`. Wildcards in actions and principals count as what they match; a
/// `NotAction` counts as every action it does not name.
#[must_use]
pub fn audit(
    policy: &Value,
    break_glass: Option<&str>,
    pcrs: Option<&BTreeMap<u64, Vec<u8>>>,
) -> Vec<Finding> {
    audit_pinning(policy, break_glass, pcrs, Pin::Image)
}

/// [`audit`] of a policy meant to pin `pin`: with a signer pin ([`Pin::Signer`],
/// [`Pin::SignerAndImage`]) a `kms:Decrypt` conditioned on PCR8 without PCR0 is what was
/// asked for; without one it is a finding (the signer is pinned, not the image). A PCR8
/// condition of zeros, which every unsigned image reports, is always a finding.
#[must_use]
pub fn audit_pinning(
    policy: &Value,
    break_glass: Option<&str>,
    pcrs: Option<&BTreeMap<u64, Vec<u8>>>,
    pin: Pin,
) -> Vec<Finding> {
    each_allow(policy, |s, who, find| {
        if matches_action(s, "kms:Decrypt") {
            let signer_pin = pin != Pin::Image;
            match (statement_pcrs(s), pcrs) {
                (None, _) => find(format!(
                    "lets {who} kms:Decrypt without kms:RecipientAttestation PCR conditions"
                )),
                (Some(found), _) if found.get(&8).is_some_and(|v| v.iter().all(|b| *b == 0)) => {
                    find(format!(
                        "lets {who} kms:Decrypt with PCR8 of zeros, which every unsigned image \
                         reports"
                    ));
                }
                (Some(found), _)
                    if !found.contains_key(&0) && found.contains_key(&8) && !signer_pin =>
                {
                    find(format!(
                        "lets {who} kms:Decrypt for any image signed by the PCR8 certificate's \
                         key, without pinning PCR0 (the image): check with --pcr8 if a signer \
                         pin is intended"
                    ));
                }
                (Some(found), _) if !found.contains_key(&0) && !found.contains_key(&8) => {
                    find(format!(
                        "lets {who} kms:Decrypt with PCR conditions that pin neither PCR0 (the \
                     image) nor PCR8 (its signer)"
                    ));
                }
                (Some(found), Some(want)) if &found != want => find(format!(
                    "lets {who} kms:Decrypt for PCRs other than the image's ({})",
                    differing(&found, want)
                )),
                _ => {}
            }
        }
        control_plane(s, who, break_glass, find);
        // S3 encrypts the inputs under the bucket key; the identity's key is not S3's (or
        // any service's) to use, and seals nothing but the identity.
        if let Some(service) = via_service(s) {
            find(format!(
                "lets {who} use the identity's key through {service} (kms:ViaService): S3 \
                 objects belong under the bucket key"
            ));
        }
        if matches_action(s, "kms:GenerateDataKey") {
            find(format!(
                "lets {who} kms:GenerateDataKey: the identity's key seals the identity only \
                 (S3 objects use the bucket key)"
            ));
        }
    })
}

/// The PCR indices whose conditions differ between two maps.
fn differing(found: &BTreeMap<u64, Vec<u8>>, want: &BTreeMap<u64, Vec<u8>>) -> String {
    let mut indices: Vec<u64> = found.keys().chain(want.keys()).copied().collect();
    indices.sort_unstable();
    indices.dedup();
    let names: Vec<String> = indices
        .into_iter()
        .filter(|i| found.get(i) != want.get(i))
        .map(|i| format!("PCR{i}"))
        .collect();
    names.join(", ")
}

/// The statement's PCR conditions, if it has any and nothing else it cannot read.
fn statement_pcrs(statement: &Value) -> Option<BTreeMap<u64, Vec<u8>>> {
    recipient_conditions(&json!({"Statement": [statement]})).ok()
}

/// The statement's AWS principals (`"*"` for anyone).
fn principal_list(statement: &Value) -> Vec<&str> {
    match statement.get("Principal") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Object(o)) => match o.get("AWS") {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        },
        _ => vec![],
    }
}

fn principals_text(statement: &Value) -> String {
    let list = principal_list(statement);
    if list.is_empty() { "no principal".into() } else { list.join(", ") }
}

fn names_principal(statement: &Value, principal: &str) -> bool {
    principal_list(statement).iter().any(|p| *p == "*" || *p == principal)
}

/// Whether the statement's `Action` (or `NotAction`) covers `action`.
fn matches_action(statement: &Value, action: &str) -> bool {
    let listed = |v: Option<&Value>| match v {
        Some(Value::String(p)) => glob(p, action),
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).any(|p| glob(p, action)),
        _ => false,
    };
    match statement.get("NotAction") {
        Some(not) => !listed(Some(not)),
        None => listed(statement.get("Action")),
    }
}

/// IAM's action match: case-insensitive, `*` any run, `?` any one character.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) =
        (pattern.to_lowercase().chars().collect(), text.to_lowercase().chars().collect());
    // Classic two-pointer wildcard match with one backtrack point.
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(sp) = star {
            pi = sp + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Whether every condition of the statement holds for `request`; `None` if the statement
/// has a condition this module cannot evaluate.
fn conditions_hold(statement: &Value, request: &Request<'_>) -> Option<bool> {
    let Some(conditions) = statement.get("Condition") else { return Some(true) };
    let mut hold = true;
    for (operator, keys) in conditions.as_object()? {
        for (key, value) in keys.as_object()? {
            let key = key.to_ascii_lowercase();
            let value = value.as_str()?;
            hold &= match operator.as_str() {
                "Bool" if key == "kms:bypasspolicylockoutsafetycheck" => {
                    value.eq_ignore_ascii_case(&request.bypass_lockout_check.to_string())
                }
                "StringEquals" | "StringEqualsIgnoreCase" => {
                    let index = if key == "kms:recipientattestation:imagesha384" {
                        0
                    } else {
                        key.strip_prefix("kms:recipientattestation:pcr")?.parse().ok()?
                    };
                    let want = hex::decode(value).ok()?;
                    // No document: the condition key is absent, and the condition fails.
                    request.recipient_pcrs.and_then(|p| p.get(&index)) == Some(&want)
                }
                _ => return None,
            };
        }
    }
    Some(hold)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who() -> Principals {
        Principals {
            enclave_role: "arn:aws:iam::111122223333:role/sign-service-parent".into(),
            admin: "arn:aws:iam::111122223333:role/kms-admin".into(),
            break_glass: "arn:aws:iam::111122223333:role/kms-break-glass".into(),
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
        p["Statement"][2]["Condition"]["StringEqualsIgnoreCase"]["kms:RecipientAttestation:PCR0"] =
            json!("zz");
        assert!(recipient_conditions(&p).unwrap_err().0.contains("not hex"));
        let mut p = ok.clone();
        p["Statement"][2]["Condition"]["StringEqualsIgnoreCase"]["kms:RecipientAttestation:ImageSha384"] =
            json!(hex::encode([9u8; 48]));
        assert!(recipient_conditions(&p).unwrap_err().0.contains("contradicting"));
        let mut p = ok.clone();
        p["Statement"][2].as_object_mut().unwrap().remove("Condition");
        assert!(recipient_conditions(&p).is_err());
        assert!(allows_unconditioned_decrypt(&p));
        assert!(recipient_conditions(&json!({})).is_err());
    }

    const ADMIN: &str = "arn:aws:iam::111122223333:role/kms-admin";
    const GLASS: &str = "arn:aws:iam::111122223333:role/kms-break-glass";
    const PARENT: &str = "arn:aws:iam::111122223333:role/sign-service-parent";

    fn ask<'a>(principal: &'a str, action: &'a str) -> Request<'a> {
        Request { principal, action, recipient_pcrs: None, bypass_lockout_check: false }
    }

    #[test]
    fn the_generated_policy_gives_each_principal_only_its_part() {
        let pcrs: BTreeMap<u64, Vec<u8>> = [(0, vec![1; 48]), (2, vec![3; 48])].into();
        let policy = key_policy(&pcrs, &who());
        assert_eq!(audit(&policy, Some(GLASS), Some(&pcrs)), vec![]);
        for action in ["kms:Decrypt", "kms:CreateGrant", "kms:PutKeyPolicy", "kms:Encrypt"] {
            assert!(!allows(&policy, &ask(ADMIN, action)), "admin may {action}");
        }
        assert!(allows(&policy, &ask(ADMIN, "kms:ScheduleKeyDeletion")));
        assert!(allows(&policy, &ask(GLASS, "kms:PutKeyPolicy")));
        let bypass = Request { bypass_lockout_check: true, ..ask(GLASS, "kms:PutKeyPolicy") };
        assert!(!allows(&policy, &bypass));
        assert!(!allows(&policy, &ask(GLASS, "kms:Decrypt")));
        // The parent: only with a document showing the image's PCRs.
        assert!(!allows(&policy, &ask(PARENT, "kms:Decrypt")));
        let attested = Request { recipient_pcrs: Some(&pcrs), ..ask(PARENT, "kms:Decrypt") };
        assert!(allows(&policy, &attested));
        let other: BTreeMap<u64, Vec<u8>> = [(0, vec![1; 48]), (2, vec![4; 48])].into();
        let wrong = Request { recipient_pcrs: Some(&other), ..ask(PARENT, "kms:Decrypt") };
        assert!(!allows(&policy, &wrong));
        assert!(!allows(
            &policy,
            &Request { recipient_pcrs: Some(&pcrs), ..ask(PARENT, "kms:CreateGrant") }
        ));
        // A Deny wins; an unknown condition never allows.
        let mut denied = policy.clone();
        denied["Statement"].as_array_mut().unwrap().push(
            json!({"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "kms:*", "Resource": "*"}),
        );
        assert!(!allows(&denied, &attested));
        let mut odd = policy.clone();
        odd["Statement"][0]["Condition"] = json!({"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}});
        assert!(!allows(&odd, &ask(ADMIN, "kms:DescribeKey")));
    }

    #[test]
    fn the_audit_names_every_way_around_the_attestation() {
        let pcrs: BTreeMap<u64, Vec<u8>> = [(0, vec![1; 48])].into();
        let good = key_policy(&pcrs, &who());
        let found = |p: &Value| -> Vec<String> {
            audit(p, Some(GLASS), Some(&pcrs)).iter().map(ToString::to_string).collect()
        };
        // The administrator statement this module wrote before: kms:Create* holds
        // CreateGrant and kms:Put* holds PutKeyPolicy.
        let mut old = good.clone();
        old["Statement"][0]["Action"] = json!(["kms:Create*", "kms:Put*", "kms:Describe*"]);
        let f = found(&old);
        assert!(
            f.iter().any(|l| l.contains("KeyAdministration") && l.contains("kms:CreateGrant")),
            "{f:?}"
        );
        assert!(f.iter().any(|l| l.contains("kms:PutKeyPolicy") && l.contains(ADMIN)), "{f:?}");
        // A plain decrypt, by dropping the condition or by a wildcard elsewhere.
        let mut open = good.clone();
        open["Statement"][2].as_object_mut().unwrap().remove("Condition");
        assert!(found(&open)[0].contains("without kms:RecipientAttestation"), "{:?}", found(&open));
        let mut star = good.clone();
        star["Statement"][0]["Action"] = json!("kms:*");
        let f = found(&star);
        for action in ["kms:Decrypt", "kms:ReEncryptFrom", "kms:CreateGrant", "kms:PutKeyPolicy"] {
            assert!(f.iter().any(|l| l.contains(action)), "{action} missing from {f:?}");
        }
        let mut not_action = good.clone();
        not_action["Statement"][0] = json!({"Sid": "Everything", "Effect": "Allow",
            "Principal": {"AWS": "*"}, "NotAction": "kms:Encrypt", "Resource": "*"});
        assert!(found(&not_action).iter().any(|l| l.contains("Everything") && l.contains('*')));
        let mut sneaky = good.clone();
        sneaky["Statement"][0]["Action"] = json!(["kms:Dec?ypt", "kms:ReEncrypt*"]);
        assert_eq!(found(&sneaky).len(), 2, "{:?}", found(&sneaky));
        // The image's PCRs, when given, must be the ones pinned.
        let other: BTreeMap<u64, Vec<u8>> = [(0, vec![9; 48])].into();
        let f: Vec<String> =
            audit(&good, Some(GLASS), Some(&other)).iter().map(ToString::to_string).collect();
        assert!(f[0].contains("PCR0"), "{f:?}");
        // Without a named break-glass principal, any PutKeyPolicy is reported.
        assert_eq!(audit(&good, None, None).len(), 1);
        // Conditions on other registers only (PCR4: the instance; PCR1+2 are shared by
        // images that differ in PCR0) pin no image, with or without --pcrs.
        for keys in [&[4u64][..], &[1, 2]] {
            let mut weak = good.clone();
            let conditions: serde_json::Map<String, Value> = keys
                .iter()
                .map(|i| (format!("kms:RecipientAttestation:PCR{i}"), json!(hex::encode([1; 48]))))
                .collect();
            weak["Statement"][2]["Condition"] = json!({ "StringEqualsIgnoreCase": conditions });
            for pcrs in [None, Some(&pcrs)] {
                let f: Vec<String> =
                    audit(&weak, Some(GLASS), pcrs).iter().map(ToString::to_string).collect();
                assert!(
                    f.len() == 1 && f[0].contains("pin neither PCR0 (the image) nor PCR8"),
                    "{keys:?} {pcrs:?}: {f:?}"
                );
            }
        }
    }

    #[test]
    fn a_signer_pin_is_accepted_only_when_meant_and_never_of_zeros() {
        let image: BTreeMap<u64, Vec<u8>> = [(0, vec![1; 48]), (8, vec![8; 48])].into();
        let signer: BTreeMap<u64, Vec<u8>> = [(8, vec![8; 48])].into();
        let policy = key_policy(&signer, &who());
        assert_eq!(recipient_conditions(&policy).unwrap(), signer);
        let found = |pcrs, pin| -> Vec<String> {
            audit_pinning(&policy, Some(GLASS), pcrs, pin).iter().map(ToString::to_string).collect()
        };
        assert_eq!(found(Some(&signer), Pin::Signer), Vec::<String>::new());
        assert_eq!(found(None, Pin::Signer), Vec::<String>::new());
        // Not said: the signer pin is a finding.
        let f = found(None, Pin::Image);
        assert!(f.len() == 1 && f[0].contains("any image signed by the PCR8"), "{f:?}");
        // Said, but the policy pins another signer, or PCR0 as well as asked.
        let other: BTreeMap<u64, Vec<u8>> = [(8, vec![9; 48])].into();
        assert!(found(Some(&other), Pin::Signer)[0].contains("PCR8"));
        let both = key_policy(&image, &who());
        assert_eq!(audit_pinning(&both, Some(GLASS), Some(&image), Pin::SignerAndImage), vec![]);
        // PCR8 of zeros is every unsigned image's: a finding whatever was meant.
        let zeros = key_policy(&[(8, vec![0; 48])].into(), &who());
        for pin in [Pin::Image, Pin::Signer] {
            let f = audit_pinning(&zeros, Some(GLASS), None, pin);
            assert!(f[0].problem.contains("PCR8 of zeros"), "{f:?}");
        }
        // KMS (and the emulator) release to a document of any image of that signer only.
        let doc = |pcr0: u8, pcr8: u8| -> BTreeMap<u64, Vec<u8>> {
            [(0, vec![pcr0; 48]), (1, vec![2; 48]), (8, vec![pcr8; 48])].into()
        };
        for (pcrs, want) in
            [(doc(1, 8), true), (doc(7, 8), true), (doc(1, 9), false), (doc(1, 0), false)]
        {
            let asked = Request { recipient_pcrs: Some(&pcrs), ..ask(PARENT, "kms:Decrypt") };
            assert_eq!(allows(&policy, &asked), want, "{pcrs:?}");
        }
        let asked = Request { recipient_pcrs: Some(&doc(7, 8)), ..ask(PARENT, "kms:Decrypt") };
        assert!(!allows(&both, &asked), "the image and signer pin refuses another image");
    }

    #[test]
    fn action_wildcards_match_as_iam_does() {
        for (pattern, action, want) in [
            ("kms:*", "kms:Decrypt", true),
            ("*", "kms:Decrypt", true),
            ("KMS:decrypt", "kms:Decrypt", true),
            ("kms:De*t", "kms:Decrypt", true),
            ("kms:Create*", "kms:CreateGrant", true),
            ("kms:Create*", "kms:Decrypt", false),
            ("kms:Decrypt?", "kms:Decrypt", false),
            ("kms:Decryp", "kms:Decrypt", false),
        ] {
            assert_eq!(glob(pattern, action), want, "{pattern} {action}");
        }
    }

    #[test]
    fn the_bucket_key_is_s3_s_alone_and_the_identity_key_never_is() {
        let region = "eu-west-1";
        let bucket = bucket_key_policy(region, &who());
        assert!(audit_bucket_key(&bucket, region, Some(&who().break_glass)).is_empty());
        let text = bucket.to_string();
        assert!(text.contains("\"kms:ViaService\":\"s3.eu-west-1.amazonaws.com\""), "{text}");
        // Used as the identity's key, the bucket key's policy is refused: its decrypts
        // take no attestation and S3 may use it.
        let as_identity = audit(&bucket, Some(&who().break_glass), None);
        assert!(
            as_identity.iter().any(|f| f.problem.contains("kms:ViaService")),
            "{as_identity:?}"
        );
        assert!(as_identity.iter().any(|f| f.problem.contains("without kms:RecipientAttestation")));
        // An identity key a broad fix opened to S3: the instance role decrypting through
        // S3, and S3 generating data keys with it. Both named.
        let pcrs = BTreeMap::from([(0, vec![1u8; 48])]);
        let mut identity = key_policy(&pcrs, &who());
        let statements = identity["Statement"].as_array_mut().unwrap();
        statements.push(json!({
            "Sid": "S3ReadsIdentity", "Effect": "Allow",
            "Principal": {"AWS": who().enclave_role}, "Action": "kms:Decrypt", "Resource": "*",
            "Condition": {"StringEquals": {"kms:ViaService": "s3.eu-west-1.amazonaws.com"}}
        }));
        statements.push(json!({
            "Sid": "S3Writes", "Effect": "Allow", "Principal": {"AWS": who().admin},
            "Action": "kms:GenerateDataKey*", "Resource": "*"
        }));
        let found = audit(&identity, Some(&who().break_glass), Some(&pcrs));
        let named = |sid: &str, what: &str| {
            found.iter().any(|f| f.statement == sid && f.problem.contains(what))
        };
        assert!(named("S3ReadsIdentity", "without kms:RecipientAttestation"), "{found:?}");
        assert!(named("S3ReadsIdentity", "kms:ViaService"), "{found:?}");
        assert!(named("S3Writes", "kms:GenerateDataKey"), "{found:?}");
        assert_eq!(found.len(), 3, "{found:?}");
        // The bucket key's own check: a decrypt outside S3, or through another region's S3.
        let mut loose = bucket_key_policy(region, &who());
        loose["Statement"][2]["Condition"] = json!({});
        let f = audit_bucket_key(&loose, region, Some(&who().break_glass));
        assert!(f.iter().any(|f| f.problem.contains("other than through s3.eu-west-1")), "{f:?}");
        let elsewhere = bucket_key_policy("us-east-1", &who());
        assert!(!audit_bucket_key(&elsewhere, region, Some(&who().break_glass)).is_empty());
    }
}
