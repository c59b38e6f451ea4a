//! Long-lived connections through an edge to a demo backend (`HOLD`, then an echo of every
//! line), to see whether a change cuts the connections a worker already carries.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One held connection.
pub struct Held {
    reader: BufReader<TcpStream>,
    /// The backend that answered.
    pub backend: String,
    /// The PROXY protocol version the backend saw (`v2`, `v1` or `none`).
    pub proxy: String,
}

impl Held {
    /// Opens a held connection to `target`; panics when it cannot, or when no backend
    /// answers within 5 s.
    pub async fn open(target: SocketAddr) -> Self {
        let mut stream = TcpStream::connect(target).await.unwrap();
        stream.write_all(b"HOLD\n").await.unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line))
            .await
            .expect("the backend answers a held connection")
            .unwrap();
        let (backend, _, proxy) = edgelb_haproxy::demo_backend::parse_answer_line(&line)
            .unwrap_or_else(|| panic!("unexpected answer {line:?}"));
        Self {
            reader,
            backend,
            proxy,
        }
    }

    /// Sends line `n` and reads its echo within `limit`; `Err` says how the connection failed.
    pub async fn ping(&mut self, n: usize, limit: Duration) -> Result<(), String> {
        let msg = format!("ping {n}\n");
        self.reader
            .get_mut()
            .write_all(msg.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut line = String::new();
        match tokio::time::timeout(limit, self.reader.read_line(&mut line)).await {
            Ok(Ok(_)) if line == msg => Ok(()),
            Ok(Ok(_)) => Err(format!("echo {line:?} instead of {msg:?}")),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no echo within {limit:?}")),
        }
    }
}
