//! Bench-only: the ingest's handler under a minimal Runtime API client of our own, in place of
//! `lambda_runtime`'s: what option (a) of issue 14 could save, measured by `make bench` beside
//! the real ingest on the same events. The handler is the ingest's (`Ingest::from_env`, the same
//! SQS/S3 sink, the same answer); only the loop around it differs. One kept-open connection,
//! blocking reads into one buffer that grows to the largest event and is reused without being
//! zeroed again, the event read in place (never copied), the answer written with one `write`.
//! Not a runtime to deploy: no X-Ray trace id, no deadline, no client context, no error posts
//! (the handler never fails), no reconnect.

use std::io::{self, Read, Write};
use std::net::TcpStream;

use nylas_sync::config::ProcessEnv;
use nylas_sync::ingest::Ingest;
use nylas_sync::proxy_event::ProxyEvent;

const NEXT: &[u8] = b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: runtime\r\n\r\n";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    nylas_sync::tls::run_function(run)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    nylas_sync::telemetry::init();
    let ingest = Ingest::from_env(&ProcessEnv).await?;
    let api = std::env::var("AWS_LAMBDA_RUNTIME_API")?;
    let mut client = Client::connect(&api)?;
    loop {
        let (id, event) = client.next()?;
        // The runtime's thread blocks on the socket between invocations, as a Lambda instance
        // is frozen between them: nothing else runs on it.
        let answer = ingest.handle_event(ProxyEvent::read(event)).await;
        let body = serde_json::to_vec(&answer)?;
        client.respond(&id, &body)?;
    }
}

/// One HTTP/1.1 connection to the Runtime API.
struct Client {
    conn: TcpStream,
    /// The current response; grows to the largest one and stays.
    buf: Vec<u8>,
    out: Vec<u8>,
}

/// What the head of a response says.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    /// Where the body starts in the buffer.
    body_at: usize,
    content_length: usize,
    request_id: Option<String>,
}

impl Client {
    fn connect(api: &str) -> io::Result<Self> {
        let conn = TcpStream::connect(api)?;
        conn.set_nodelay(true)?;
        Ok(Self {
            conn,
            buf: vec![0; 64 << 10],
            out: Vec::with_capacity(4096),
        })
    }

    /// The next invocation: its request id and its event, borrowed from the buffer.
    fn next(&mut self) -> io::Result<(String, &[u8])> {
        self.conn.write_all(NEXT)?;
        let head = self.read_response()?;
        let id = head
            .request_id
            .ok_or_else(|| io::Error::other("no Lambda-Runtime-Aws-Request-Id"))?;
        Ok((
            id,
            &self.buf[head.body_at..head.body_at + head.content_length],
        ))
    }

    fn respond(&mut self, id: &str, body: &[u8]) -> io::Result<()> {
        self.out.clear();
        write!(
            self.out,
            "POST /2018-06-01/runtime/invocation/{id}/response HTTP/1.1\r\nHost: runtime\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )?;
        self.out.extend_from_slice(body);
        self.conn.write_all(&self.out)?;
        self.read_response().map(drop)
    }

    /// Reads one whole response (head and `Content-Length` body) into the buffer.
    fn read_response(&mut self) -> io::Result<Head> {
        let mut filled = 0;
        let head = loop {
            if filled == self.buf.len() {
                self.buf.resize(self.buf.len() * 2, 0);
            }
            let n = self.conn.read(&mut self.buf[filled..])?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            filled += n;
            if let Some(head) = parse_head(&self.buf[..filled])? {
                break head;
            }
        };
        let end = head.body_at + head.content_length;
        if self.buf.len() < end {
            self.buf.resize(end, 0);
        }
        if filled < end {
            self.conn.read_exact(&mut self.buf[filled..end])?;
        }
        Ok(head)
    }
}

/// The head of a response once all of it is in `bytes`; `None` while it is not.
fn parse_head(bytes: &[u8]) -> io::Result<Option<Head>> {
    let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let text = std::str::from_utf8(&bytes[..end]).map_err(io::Error::other)?;
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap_or_default();
    if !status.starts_with("HTTP/1.1 2") {
        return Err(io::Error::other(format!("Runtime API answered {status}")));
    }
    let mut head = Head {
        body_at: end + 4,
        content_length: 0,
        request_id: None,
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            head.content_length = value.parse().map_err(io::Error::other)?;
        } else if name.eq_ignore_ascii_case("lambda-runtime-aws-request-id") {
            head.request_id = Some(value.to_string());
        }
    }
    Ok(Some(head))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_is_read_once_complete_with_its_length_and_request_id() {
        let response =
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nLambda-Runtime-Aws-Request-Id: r-1\r\n\r\n{}";
        assert_eq!(parse_head(&response[..20]).unwrap(), None);
        assert_eq!(
            parse_head(response).unwrap(),
            Some(Head {
                body_at: response.len() - 2,
                content_length: 2,
                request_id: Some("r-1".into()),
            })
        );
        assert!(parse_head(b"HTTP/1.1 500 Oops\r\n\r\n").is_err());
    }
}
