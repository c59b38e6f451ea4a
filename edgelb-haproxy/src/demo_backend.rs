//! A tiny backend that tells each client who it is: it reads the PROXY header HAProxy sends
//! and answers with the client address it carried. The quick start and the testbed use it to
//! show that the real client IP arrives through the edge.
//!
//! The answer is one line, `edgelb-demo backend=<name> client=<ip:port> proxy=<v2|v1|none>`,
//! wrapped in an HTTP/1.1 response when the request looks like HTTP (so `curl` works).
//! Health checks (PROXY `LOCAL`, or a connect-then-close) are answered with nothing.
//! A client that sends `HOLD` first gets the line and then an echo of everything it sends
//! until it closes: a long-lived connection for tests.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::proxy_header::{Parsed, ProxyHeader, parse};

/// Serves until the listener fails; each connection is handled on its own task.
pub async fn serve(listener: TcpListener, name: String) -> std::io::Result<()> {
    loop {
        let (stream, peer) = listener.accept().await?;
        let name = name.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(stream, peer, &name).await {
                tracing::debug!(%peer, error = %e, "demo backend connection ended with an error");
            }
        });
    }
}

/// The answer line for a client (without the trailing newline).
pub fn answer_line(name: &str, client: SocketAddr, proxy: &str) -> String {
    format!("edgelb-demo backend={name} client={client} proxy={proxy}")
}

/// Parses an answer line back: `(backend, client, proxy)`.
pub fn parse_answer_line(line: &str) -> Option<(String, SocketAddr, String)> {
    let body = line
        .trim()
        .rsplit('\n')
        .next()?
        .strip_prefix("edgelb-demo ")?;
    let mut backend = None;
    let mut client = None;
    let mut proxy = None;
    for field in body.split(' ') {
        match field.split_once('=')? {
            ("backend", v) => backend = Some(v.to_owned()),
            ("client", v) => client = v.parse().ok(),
            ("proxy", v) => proxy = Some(v.to_owned()),
            _ => {}
        }
    }
    Some((backend?, client?, proxy?))
}

async fn handle(mut stream: TcpStream, peer: SocketAddr, name: &str) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    let (client, proxy, used) = loop {
        match parse(&buf) {
            Parsed::Header(
                ProxyHeader::Proxied {
                    version, source, ..
                },
                used,
            ) => {
                break (source, format!("v{version}"), used);
            }
            Parsed::Header(ProxyHeader::Local { .. }, _) => return Ok(()), // a health check
            Parsed::Invalid(why) => {
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, why));
            }
            Parsed::NoHeader if !buf.is_empty() => break (peer, "none".to_owned(), 0),
            Parsed::NoHeader | Parsed::Incomplete => {
                // Wait for bytes; a plain client that sends nothing gets its answer anyway.
                match tokio::time::timeout(Duration::from_millis(300), stream.read(&mut chunk))
                    .await
                {
                    Ok(Ok(0)) => return Ok(()), // connect-then-close health check
                    Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
                    Ok(Err(e)) => return Err(e),
                    Err(_) if buf.is_empty() => break (peer, "none".to_owned(), 0),
                    Err(_) => return Ok(()),
                }
            }
        }
    };
    let mut rest = buf.split_off(used);
    if rest.is_empty() {
        // Give the request a moment to follow the header, to tell HTTP from raw TCP.
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(300), stream.read(&mut chunk)).await
        {
            rest.extend_from_slice(&chunk[..n]);
        }
    }
    let line = answer_line(name, client, &proxy);
    if rest.starts_with(b"HOLD") {
        // A long-lived connection: answer, then echo everything until the client closes.
        stream.write_all(format!("{line}\n").as_bytes()).await?;
        let (mut reader, mut writer) = stream.split();
        tokio::io::copy(&mut reader, &mut writer).await?;
        return writer.shutdown().await;
    }
    let is_http = [&b"GET "[..], b"HEAD ", b"POST ", b"PUT "]
        .iter()
        .any(|m| rest.starts_with(m));
    let reply = if is_http {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{line}\n",
            line.len() + 1
        )
    } else {
        format!("{line}\n")
    };
    stream.write_all(reply.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_plain_http_and_proxied_clients() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, "b1".into()));

        // A plain client that says nothing.
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let (backend, client, proxy) = parse_answer_line(&out).unwrap();
        assert_eq!((backend.as_str(), proxy.as_str()), ("b1", "none"));
        assert_eq!(client, s.local_addr().unwrap());

        // PROXY v1 then HTTP.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"PROXY TCP4 203.0.113.9 10.0.0.1 40000 80\r\nGET / HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
        let (_, client, proxy) = parse_answer_line(&out).unwrap();
        assert_eq!(
            (client.to_string().as_str(), proxy.as_str()),
            ("203.0.113.9:40000", "v1")
        );
    }
}
