//! TCP connect check: the listening socket accepts connections.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::{at_least_1ms, HealthCheck};

/// Succeeds when a TCP connection to the address is accepted.
#[derive(Debug, Clone)]
pub struct TcpCheck {
    addr: SocketAddr,
}

impl TcpCheck {
    /// A check connecting to `addr`.
    pub fn new(addr: SocketAddr) -> TcpCheck {
        TcpCheck { addr }
    }
}

impl HealthCheck for TcpCheck {
    fn describe(&self) -> String {
        format!("TCP connect {}", self.addr)
    }

    fn check(&self, timeout: Duration) -> Result<(), String> {
        self.check_detail(timeout).map(|_| ())
    }

    fn check_detail(&self, timeout: Duration) -> Result<String, String> {
        match TcpStream::connect_timeout(&self.addr, at_least_1ms(timeout)) {
            Ok(_) => Ok(format!("connected to {}", self.addr)),
            Err(e) => Err(format!("connect to {} failed: {e}", self.addr)),
        }
    }
}
