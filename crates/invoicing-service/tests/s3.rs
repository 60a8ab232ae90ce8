//! The blob store against an S3-compatible server that is not ours: moto's (`MOTO_SERVER`,
//! installed from PyPI by `cargo xtask test`). A PDF written through `BLOB_STORE=s3://…` is
//! read back by us and by AWS's own SDK (boto3); a missing key is `None`.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use invoicing_service::blobs::Blobs;

#[tokio::test]
async fn pdfs_round_trip_through_an_s3_compatible_store() {
    test_support::install_tls_provider();
    let moto = std::env::var("MOTO_SERVER").expect(
        "MOTO_SERVER names moto's S3-compatible server; `cargo xtask test` installs it and sets it",
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let mut server = Command::new(&moto)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server starts");
    let endpoint = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    // Up when it answers; then the bucket (S3 CreateBucket: PUT on the bucket, path-style).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if http.get(&endpoint).send().await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "moto_server did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let made = http
        .put(format!("{endpoint}/invoices"))
        .send()
        .await
        .unwrap();
    assert!(made.status().is_success(), "{}", made.status());

    let aws: Vec<(String, String)> = [
        ("AWS_ENDPOINT", endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "eu-central-1"),
        ("AWS_PROFILE", "ignored"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let blobs = Blobs::open("s3://invoices/pdfs", &aws).expect("an S3 blob store");
    let pdf = invoicing_service::pdf::sample_invoice(&invoicing_service::pdf::Fonts::embedded());
    blobs
        .put("invoices/inv_1.pdf", pdf.bytes.clone())
        .await
        .expect("the PDF is stored");
    let back = blobs.get("invoices/inv_1.pdf").await.unwrap().unwrap();
    assert!(back == pdf.bytes, "read back through our client");
    // AWS's own SDK (boto3, beside moto in the same virtualenv) finds it under the prefix,
    // byte for byte.
    let python = std::path::Path::new(&moto).with_file_name("python");
    let script = "import boto3, hashlib, sys\n\
        s3 = boto3.client('s3', endpoint_url=sys.argv[1], region_name='eu-central-1', \
        aws_access_key_id='test', aws_secret_access_key='test')\n\
        body = s3.get_object(Bucket='invoices', Key='pdfs/invoices/inv_1.pdf')['Body'].read()\n\
        print(hashlib.sha256(body).hexdigest())";
    let out = Command::new(&python)
        .args(["-c", script, &endpoint])
        .output()
        .expect("the virtualenv's python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), pdf.sha256);
    assert!(blobs.get("invoices/inv_2.pdf").await.unwrap().is_none());

    let _ = server.kill();
    let _ = server.wait();
}
