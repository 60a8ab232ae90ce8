//! A plain HTTP/1.1 client for the workloads (one connection per request, so a killed server
//! shows as a refused or cut connection, never as a pooled one gone stale), and a webhook
//! receiver that records every `webhook-id` it is sent.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;

/// `method path` with `Authorization: Bearer token` (when not empty), `headers` and a JSON
/// `body`; the status and body. An error is a refused or cut connection.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    token: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr.parse()?, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if !token.is_empty() {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    write!(s, "{head}\r\n{body}")?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no HTTP answer"))?;
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Ok((status, body))
}

/// Every `webhook-id` received, in order (a resend appears twice).
#[derive(Clone, Default)]
pub struct Receiver {
    pub ids: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    /// Listens on a free port; answers every request 204. The URL to register.
    pub fn start() -> Result<(Receiver, String)> {
        Self::failing_first(0)
    }

    /// Like [`Receiver::start`], but answers the first `n` deliveries of each webhook 503
    /// (they are recorded too): the sender must retry each exactly that often.
    pub fn failing_first(n: usize) -> Result<(Receiver, String)> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let r = Receiver::default();
        let ids = r.ids.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let ids = ids.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &ids, n);
                });
            }
        });
        Ok((r, url))
    }

    pub fn ids(&self) -> Vec<String> {
        self.ids.lock().expect("receiver").clone()
    }
}

fn serve(stream: TcpStream, ids: &Mutex<Vec<String>>, fail_first: usize) -> Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    loop {
        let (mut id, mut length) = (None, 0usize);
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                match k.trim().to_ascii_lowercase().as_str() {
                    "webhook-id" => id = Some(v.trim().to_string()),
                    "content-length" => length = v.trim().parse().unwrap_or(0),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let mut seen = 0;
        if let Some(id) = id {
            let mut ids = ids.lock().expect("receiver");
            seen = ids.iter().filter(|i| **i == id).count();
            ids.push(id);
        }
        if seen < fail_first {
            (&stream)
                .write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")?;
        } else {
            (&stream).write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")?;
        }
    }
}
