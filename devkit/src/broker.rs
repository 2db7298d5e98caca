//! A private Kafka-protocol broker (noida-db, `NOIDA_BIN`) on its own port and data directory, for
//! tests that kill it: the shared test-bed broker stays untouched.

use std::process::Stdio;
use std::time::{Duration, Instant};

/// A running broker, killed when dropped; its data survives [`Broker::kill`] for [`Broker::start`].
pub struct Broker {
    bin: String,
    port: u16,
    data: tempfile::TempDir,
    child: Option<tokio::process::Child>,
}

fn noida_bin() -> String {
    std::env::var("NOIDA_BIN")
        .expect("NOIDA_BIN is set (source /var/tmp/chainwatch/run/env after scripts/testbed.sh up)")
}

impl Broker {
    /// Starts a broker on a free port with an empty data directory; waits until it takes
    /// connections.
    pub async fn spawn() -> std::io::Result<Self> {
        let port = crate::testbed::free_port();
        let data = tempfile::Builder::new().prefix("chainwatch-broker").tempdir()?;
        let mut broker = Broker { bin: noida_bin(), port, data, child: None };
        broker.start().await?;
        Ok(broker)
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts it again on the same port and data (after [`Broker::kill`]).
    pub async fn start(&mut self) -> std::io::Result<()> {
        let log = std::fs::File::create(self.data.path().join("broker.log"))?;
        let child = tokio::process::Command::new(&self.bin)
            .args(["start", "--only", "kafka", "--kafka-port", &self.port.to_string(), "--data-dir"])
            .arg(self.data.path().join("data"))
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            if Instant::now() > deadline {
                return Err(std::io::Error::other(format!(
                    "the broker did not listen on {} within 30 s (log: {})",
                    self.port,
                    self.data.path().join("broker.log").display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// SIGKILL, as a crashed node; returns once the process is gone.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }
}
