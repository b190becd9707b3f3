//! `parent-shim run` as a real process, launching the real `enclave-rt` (sim) binary, with
//! the stand-ins on loopback. The inputs from S3 and the credentials the AWS SDK clients
//! use: real SDK clients against moto and the KMS emulator on loopback.

use tests::moto_server::MotoServer;
#[allow(clippy::wildcard_imports)]
use tests::node::*;
use tests::share_gen::files;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_its_inputs_from_s3() {
    let moto = MotoServer::start().unwrap();
    let (c, config) = case("s3", 7, 7).await;
    via_s3(&c, &config, &moto, true).await;
    let mut p = start(&config);
    let fetched: serde_json::Value =
        serde_json::from_str(&p.wait_for("\"inputs_fetched\"")).unwrap();
    // The manifest came from next to the object, and the enclave loaded what it names.
    assert_eq!(fetched["manifest_accounts"], 20);
    assert_eq!(fetched["manifest_epoch"], 1);
    let record: serde_json::Value = serde_json::from_str(&p.wait_for("\"boot_record\"")).unwrap();
    assert_eq!(record["accounts"], 20);
    assert_eq!(record["epoch"], 1);
    assert_eq!(record["share_file_sha256"], fetched["share_file_sha256"]);
    // The file streamed from S3 into the enclave: all of it sent, the enclave's count.
    let progress: serde_json::Value =
        serde_json::from_str(&p.seen_or_wait_for("\"load_progress\"")).unwrap();
    let len = std::fs::metadata(c.dir.0.join("shares").join(files::SHARES)).unwrap().len();
    assert_eq!((&progress["bytes_sent"], &progress["bytes_total"]), (&len.into(), &len.into()));
    assert_eq!(progress["accounts"], 20);
    p.wait_for("\"serving\"");
    no_secrets(&c, &p);
    // The three inputs are stored as designed: SSE-KMS under the bucket key (an S3 Bucket
    // Key), which is not the identity's key; the parent read them through S3 all the same.
    let bucket_key = moto.bucket_key().await.unwrap();
    for key in ["prod/shares.age", "prod/shares.age.manifest", "prod/identity.kms"] {
        let (sse, kms_key, bucket_key_enabled) =
            moto.encryption_of("signservice-inputs", key).await.unwrap();
        assert_eq!(sse.as_deref(), Some("aws:kms"), "{key}");
        assert_eq!(kms_key.as_deref(), Some(bucket_key.as_str()), "{key}");
        assert_eq!(bucket_key_enabled, Some(true), "{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_s3_object_fails_closed_before_any_enclave_starts() {
    let moto = MotoServer::start().unwrap();
    let (c, config) = case("s3-missing", 7, 7).await;
    via_s3(&c, &config, &moto, false).await;
    // The manifest is fetched first; it is missing with the file.
    let missing = "s3://signservice-inputs/prod/shares.age.manifest does not exist";
    refused_before_launch(&c, start(&config), missing);

    // The manifest there, the object not: its GetObject is made before the enclave starts.
    let (c, config) = case("s3-missing-object", 7, 7).await;
    via_s3(&c, &config, &moto, true).await;
    moto.delete_object("signservice-inputs", "prod/shares.age").await.unwrap();
    let missing = "s3://signservice-inputs/prod/shares.age does not exist";
    refused_before_launch(&c, start(&config), missing);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_object_of_another_length_than_its_manifest_is_refused_before_any_enclave_starts() {
    let moto = MotoServer::start().unwrap();
    let (c, config) = case("s3-length", 7, 7).await;
    via_s3(&c, &config, &moto, true).await;
    let bytes = std::fs::read(c.dir.0.join("shares").join(files::SHARES)).unwrap();
    let longer = [bytes.as_slice(), b"appended"].concat();
    moto.put_object("signservice-inputs", "prod/shares.age", longer, &[]).await.unwrap();
    // S3's Content-Length, before a byte is streamed.
    let why = format!("{} bytes where the manifest says {}", bytes.len() + 8, bytes.len());
    refused_before_launch(&c, start(&config), &why);
}

/// No keys in the configuration: the parent signs its KMS calls with the instance role's
/// temporary credentials, fetched from the metadata service with an `IMDSv2` token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_static_keys_the_instance_role_signs_the_kms_calls() {
    let imds = tests::imds_emulator::ImdsEmulator::start().await.unwrap();
    let (c, config) = case("instance-role", 7, 7).await;
    let text = std::fs::read_to_string(&config).unwrap();
    let keyless =
        text.replace("access_key_id = \"AKIDLOCAL\"\nsecret_access_key = \"local-secret\"\n", "");
    assert_ne!(keyless, text);
    std::fs::write(&config, keyless).unwrap();
    let mut p = start_with_env(&config, &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.endpoint())]);
    p.wait_for("\"serving\"");
    let by_role = format!("by {}", tests::imds_emulator::ACCESS_KEY_ID);
    assert!(
        c.kms.log().iter().any(|l| l.starts_with("Decrypt ok") && l.ends_with(&by_role)),
        "{:?}",
        c.kms.log()
    );
    let asked = imds.log();
    assert!(asked.iter().any(|l| l.starts_with("PUT /latest/api/token 200")), "{asked:?}");
    assert!(
        asked.iter().any(|l| l.contains(tests::imds_emulator::ROLE) && l.ends_with(" 200")),
        "{asked:?}"
    );
    no_secrets(&c, &p);
}

/// With neither keys nor an instance role, KMS refuses the unsigned call and the parent
/// fails closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_any_credentials_the_boot_fails_closed() {
    let (c, config) = case("no-credentials", 7, 7).await;
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("access_key_id = \"AKIDLOCAL\"\nsecret_access_key = \"local-secret\"\n", ""),
    )
    .unwrap();
    // A metadata endpoint where nothing listens.
    let p = start_with_env(
        &config,
        &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9".into())],
    );
    fails_closed(&c, p, "boot_failed");
}
