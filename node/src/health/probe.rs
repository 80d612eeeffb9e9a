//! One health probe of a local app: an HTTP GET or a TCP connect.

use std::net::SocketAddr;
use std::ops::RangeInclusive;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// What a check does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// `GET path` must answer a status in `expect`.
    Http {
        /// Request path.
        path: String,
        /// Accepted statuses.
        expect: RangeInclusive<u16>,
    },
    /// A TCP connection must be accepted.
    Tcp,
}

impl Probe {
    /// Runs the probe once; `Err` says why it failed.
    pub async fn check(&self, service: &str, target: SocketAddr) -> Result<(), String> {
        let stream = TcpStream::connect(target)
            .await
            .map_err(|e| format!("connect {target}: {e}"))?;
        let Self::Http { path, expect } = self else {
            return Ok(());
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake: {e}"))?;
        tokio::spawn(conn);
        let req = hyper::Request::get(path.as_str())
            .header(hyper::header::HOST, service)
            .header(hyper::header::USER_AGENT, "murmur-health-check")
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("bad health check path {path:?}: {e}"))?;
        let status = sender
            .send_request(req)
            .await
            .map_err(|e| format!("GET {path}: {e}"))?
            .status()
            .as_u16();
        if expect.contains(&status) {
            Ok(())
        } else {
            Err(format!(
                "GET {path} answered {status}, expected {}-{}",
                expect.start(),
                expect.end()
            ))
        }
    }
}

/// Parses `"200-399"` or `"204"`.
pub fn parse_expect(s: &str) -> Result<RangeInclusive<u16>, String> {
    let bad = || format!("{s:?} is not a status or range such as \"200-399\"");
    let (lo, hi) = match s.split_once('-') {
        Some((lo, hi)) => (lo.trim(), hi.trim()),
        None => (s.trim(), s.trim()),
    };
    let lo: u16 = lo.parse().map_err(|_| bad())?;
    let hi: u16 = hi.parse().map_err(|_| bad())?;
    if !(100..=599).contains(&lo) || !(100..=599).contains(&hi) || lo > hi {
        return Err(bad());
    }
    Ok(lo..=hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_statuses_parse() {
        assert_eq!(parse_expect("200-399"), Ok(200..=399));
        assert_eq!(parse_expect("204"), Ok(204..=204));
        assert!(parse_expect("399-200").is_err());
        assert!(parse_expect("2xx").is_err());
        assert!(parse_expect("99").is_err());
    }
}
