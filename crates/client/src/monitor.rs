//! `GET /v1/agent/monitor`: the agent's log lines as they are written.

use crate::{Client, Error};

/// An open log stream. Obtained from [`Client::monitor`].
#[derive(Debug)]
pub struct Monitor {
    resp: reqwest::Response,
    /// Bytes received after the last complete line.
    pending: Vec<u8>,
}

impl Monitor {
    /// The next log line, or `None` once the agent ends the stream.
    pub async fn next_line(&mut self) -> Result<Option<String>, Error> {
        loop {
            if let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                let text = String::from_utf8_lossy(&line[..line.len() - 1]);
                return Ok(Some(text.trim_end_matches('\r').to_owned()));
            }
            match self.resp.chunk().await.map_err(Error::transport)? {
                Some(chunk) => self.pending.extend_from_slice(&chunk),
                None if self.pending.is_empty() => return Ok(None),
                // A last line without its newline.
                None => {
                    let text = String::from_utf8_lossy(&self.pending).into_owned();
                    self.pending.clear();
                    return Ok(Some(text));
                }
            }
        }
    }
}

impl Client {
    /// Streams the agent's log at `level` (`trace` … `error`), as JSON lines when
    /// `json` is set.
    pub async fn monitor(&self, level: &str, json: bool) -> Result<Monitor, Error> {
        let mut req = self
            .request(reqwest::Method::GET, "/v1/agent/monitor", None, None)
            .query(&[("loglevel", level)]);
        if json {
            req = req.query(&[("logjson", "true")]);
        }
        let resp = self.send(req, false).await?;
        Ok(Monitor {
            resp,
            pending: Vec::new(),
        })
    }
}
