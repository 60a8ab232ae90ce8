//! The channels against real counterparts: e-mail through real SMTP to aiosmtpd (an
//! independent SMTP server, from PyPI) and parsed by Python's `email` package; SMS to a local
//! HTTP receiver speaking the Twilio form API; webhooks refused at send time when a name
//! resolves to a private address.

use std::path::Path;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use notification_service::send::Answer;
use notification_service::send::email::{Mail, Mailer};
use notification_service::send::sms::Texter;
use notification_service::send::webhook::Webhooks;
use notification_service::settings::{EmailTransport, Settings};
use platform::Secret;

fn python() -> String {
    std::env::var("PYTOOLS_PYTHON").expect(
        "PYTOOLS_PYTHON names the Python with aiosmtpd; `cargo xtask test` installs it and sets it",
    )
}

/// aiosmtpd on a free port, storing what it receives in a maildir; killed on drop.
struct SmtpSink {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn smtp_sink() -> SmtpSink {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("smtp-sink-{}", uuid::Uuid::new_v4()));
    // Killed and waited for on drop, whatever happens below.
    let sink = SmtpSink {
        child: Command::new(python())
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&dir)
            .spawn()
            .expect("aiosmtpd starts"),
        port,
        dir,
    };
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return sink;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("aiosmtpd did not listen on {port}");
}

fn read_mail(file: &Path) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/it/py/read_mail.py");
    let out = Command::new(python())
        .arg(script)
        .arg(file)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn email_goes_through_smtp_with_both_parts_and_the_pdf() {
    let sink = smtp_sink().await;
    let mailer = Mailer::new(
        &EmailTransport::Smtp(Secret::new(format!("smtp://127.0.0.1:{}", sink.port))),
        "Billing <billing@saas.example>",
    )
    .unwrap();
    let pdf =
        b"%PDF-1.7\n\xe2\xe3\xcf\xd3 not really a pdf, but bytes that must survive\n%%EOF".to_vec();
    let a = mailer
        .send(Mail {
            id: "dlv_test_1",
            to: "ops@tenant.example",
            subject: "Invoice INV-0001 for Acme: EUR 12.34",
            text: "Hello Acme,\nyour invoice is ready.",
            html: "<p>Hello <b>Acme</b> &amp; co</p>",
            attachment: Some(("inv_1.pdf".into(), pdf.clone())),
        })
        .await;
    assert_eq!(a.answer, Answer::Delivered, "{}", a.response);
    assert_eq!(a.code, Some(250));
    let new = sink.dir.join("new");
    let file = std::fs::read_dir(&new)
        .expect("aiosmtpd stored the message")
        .next()
        .expect("one message")
        .unwrap()
        .path();
    let m = read_mail(&file);
    assert_eq!(m["from"], "Billing <billing@saas.example>");
    assert_eq!(m["to"], "ops@tenant.example");
    assert_eq!(m["subject"], "Invoice INV-0001 for Acme: EUR 12.34");
    assert_eq!(m["message_id"], "<dlv_test_1@saas-platform>");
    assert_eq!(
        m["text"].as_str().unwrap().trim_end(),
        "Hello Acme,\nyour invoice is ready."
    );
    assert_eq!(
        m["html"].as_str().unwrap().trim_end(),
        "<p>Hello <b>Acme</b> &amp; co</p>"
    );
    let att = &m["attachments"][0];
    assert_eq!(att["filename"], "inv_1.pdf");
    assert_eq!(att["content_type"], "application/pdf");
    use sha2::Digest;
    assert_eq!(att["sha256"], hex::encode(sha2::Sha256::digest(&pdf)));
}

#[tokio::test]
async fn email_to_a_server_that_is_not_there_is_retried() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mailer = Mailer::new(
        &EmailTransport::Smtp(Secret::new(format!("smtp://127.0.0.1:{port}"))),
        "Billing <billing@saas.example>",
    )
    .unwrap();
    let a = mailer
        .send(Mail {
            id: "dlv_test_2",
            to: "ops@tenant.example",
            subject: "s",
            text: "t",
            html: "h",
            attachment: None,
        })
        .await;
    assert_eq!(a.answer, Answer::Retry(None), "{}", a.response);
}

/// A Twilio-style receiver: records each form and its basic auth, answers the given statuses.
async fn sms_receiver(statuses: Vec<u16>) -> (String, Arc<Mutex<Vec<(String, String)>>>) {
    let got: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let plan = Arc::new(Mutex::new(statuses));
    let g = got.clone();
    let app = axum::Router::new().route(
        "/2010-04-01/Accounts/AC123/Messages.json",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let (g, plan) = (g.clone(), plan.clone());
            async move {
                let auth = headers["authorization"].to_str().unwrap().to_string();
                g.lock().unwrap().push((auth, body));
                let code = plan.lock().unwrap().remove(0);
                (
                    axum::http::StatusCode::from_u16(code).unwrap(),
                    r#"{"sid":"SM1"}"#,
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

#[tokio::test]
async fn sms_speaks_the_twilio_form_api() {
    let (url, got) = sms_receiver(vec![201, 503, 400]).await;
    let settings = Settings::from_lookup(|k| match k {
        "SMS_TRANSPORT" => Some(url.clone()),
        "SMS_ACCOUNT_SID" => Some("AC123".into()),
        "SMS_AUTH_TOKEN" => Some("tok".into()),
        "SMS_FROM" => Some("+15005550006".into()),
        _ => None,
    })
    .unwrap();
    let texter = Texter::new(&settings).unwrap();
    let a = texter
        .send("dlv_1", "+4930123456", "Invoice INV-1: EUR 5 & more")
        .await;
    assert_eq!(a.answer, Answer::Delivered, "{}", a.response);
    assert_eq!(a.code, Some(201));
    let (auth, form) = got.lock().unwrap()[0].clone();
    use base64::Engine;
    assert_eq!(
        auth,
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("AC123:tok")
        )
    );
    let fields: Vec<(String, String)> = form_urlencoded::parse(form.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(
        fields,
        [
            ("To".to_string(), "+4930123456".to_string()),
            ("From".into(), "+15005550006".into()),
            ("Body".into(), "Invoice INV-1: EUR 5 & more".into()),
        ]
    );
    // A provider outage is retried; its refusal of the message is final.
    assert_eq!(
        texter.send("dlv_2", "+4930123456", "x").await.answer,
        Answer::Retry(None)
    );
    assert_eq!(
        texter.send("dlv_3", "+4930123456", "x").await.answer,
        Answer::Refused
    );
}

#[tokio::test]
async fn webhooks_never_reach_private_addresses_unless_allowed() {
    let hits = Arc::new(Mutex::new(0));
    let h = hits.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let h = h.clone();
            async move {
                *h.lock().unwrap() += 1;
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let secret = notification_service::domain::signing::Secret::generate();
    let guarded = Webhooks::new(Duration::from_secs(2), false).unwrap();
    // A name that resolves to loopback (checked when connecting), and a literal address.
    let by_name = guarded
        .send(
            &format!("http://localhost:{port}/hook"),
            "msg_1",
            1,
            "{}",
            std::slice::from_ref(&secret),
        )
        .await;
    assert_ne!(by_name.answer, Answer::Delivered);
    assert!(
        by_name.response.contains("may not reach"),
        "{}",
        by_name.response
    );
    let literal = guarded
        .send(
            &format!("http://127.0.0.1:{port}/hook"),
            "msg_1",
            1,
            "{}",
            std::slice::from_ref(&secret),
        )
        .await;
    assert_eq!(literal.answer, Answer::Refused, "{}", literal.response);
    assert_eq!(
        *hits.lock().unwrap(),
        0,
        "nothing reached the private address"
    );
    // Local development may allow it.
    let open = Webhooks::new(Duration::from_secs(2), true).unwrap();
    let a = open
        .send(
            &format!("http://localhost:{port}/hook"),
            "msg_1",
            1,
            "{}",
            std::slice::from_ref(&secret),
        )
        .await;
    assert_eq!(a.answer, Answer::Delivered, "{}", a.response);
    assert_eq!(*hits.lock().unwrap(), 1);
}
