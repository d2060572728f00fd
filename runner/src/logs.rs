//! The deployment log on its way out of the sandbox: every byte passes the masker
//! first, then is batched into ordered, numbered chunks sent in the background.

use std::time::Duration;

use envplane_core::deployment::LogChunkInput;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::client::ApiClient;
use crate::mask::Masker;

/// Send a batch at least this often while output flows.
const FLUSH_INTERVAL: Duration = Duration::from_millis(300);
/// Keep chunks well below the platform's 256 KiB limit.
const MAX_CHUNK_BYTES: usize = 64 * 1024;

enum Event {
    Output { step: String, text: String },
    Flush(oneshot::Sender<()>),
}

/// Masks output per step and ships it; cheap to clone.
#[derive(Clone)]
pub struct LogShipper {
    events: mpsc::UnboundedSender<Event>,
    secrets: std::sync::Arc<Vec<String>>,
}

/// One step's output stream: holds back the tail that could be the start of a secret.
pub struct StepLog {
    step: String,
    masker: Masker,
    /// Bytes of an unfinished UTF-8 character at the end of the last push.
    partial: Vec<u8>,
    /// The last masked text, to name why a step failed.
    tail: String,
    /// Output after the last newline, held so whole lines can be dropped.
    line: Vec<u8>,
    shipper: LogShipper,
}

const TAIL_BYTES: usize = 4096;

impl LogShipper {
    pub fn start(client: ApiClient, secrets: Vec<String>) -> (Self, JoinHandle<()>) {
        let (events, receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(ship(client, receiver));
        let shipper = Self {
            events,
            secrets: std::sync::Arc::new(secrets),
        };
        (shipper, task)
    }

    pub fn step(&self, step: &str) -> StepLog {
        StepLog {
            step: step.to_string(),
            masker: Masker::new(self.secrets.iter()),
            partial: Vec::new(),
            tail: String::new(),
            line: Vec::new(),
            shipper: self.clone(),
        }
    }

    /// A line of the runner's own, masked like everything else.
    pub fn note(&self, step: &str, line: &str) {
        let mut log = self.step(step);
        log.push(format!("{line}\n").as_bytes());
        log.finish();
    }

    /// Waits until everything pushed so far has been sent.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.events.send(Event::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

impl StepLog {
    pub fn push(&mut self, bytes: &[u8]) {
        self.line.extend_from_slice(bytes);
        let Some(last_newline) = self.line.iter().rposition(|&byte| byte == b'\n') else {
            return;
        };
        let rest = self.line.split_off(last_newline + 1);
        let complete = std::mem::replace(&mut self.line, rest);
        let kept: Vec<u8> = complete
            .split_inclusive(|&byte| byte == b'\n')
            .filter(|line| !is_http_backend_debug_line(line))
            .flatten()
            .copied()
            .collect();
        let masked = self.masker.push(&kept);
        self.emit(masked);
    }

    /// The most telling line of what was logged: Terraform's last `Error:`, git's
    /// last `fatal:`, or else the last line.
    pub fn last_error_line(&self) -> Option<String> {
        let lines: Vec<&str> = self
            .tail
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .collect();
        lines
            .iter()
            .rev()
            .find(|line| {
                line.starts_with("Error:")
                    || line.starts_with("fatal:")
                    || line.starts_with("error:")
            })
            .or(lines.last())
            .map(|line| line.to_string())
    }

    pub fn finish(mut self) {
        let rest = std::mem::take(&mut self.line);
        let mut masked = self.masker.push(&rest);
        masked.extend(self.masker.finish());
        self.emit(masked);
        if !self.partial.is_empty() {
            let rest = String::from_utf8_lossy(&std::mem::take(&mut self.partial)).into_owned();
            self.send(rest);
        }
    }

    fn emit(&mut self, masked: Vec<u8>) {
        self.partial.extend(masked);
        let valid = match std::str::from_utf8(&self.partial) {
            Ok(_) => self.partial.len(),
            // An incomplete character at the end waits for its remaining bytes.
            Err(error) if error.error_len().is_none() => error.valid_up_to(),
            Err(_) => {
                let text = String::from_utf8_lossy(&std::mem::take(&mut self.partial)).into_owned();
                self.send(text);
                return;
            }
        };
        let rest = self.partial.split_off(valid);
        let complete = std::mem::replace(&mut self.partial, rest);
        if !complete.is_empty() {
            self.send(String::from_utf8(complete).expect("checked above"));
        }
    }

    fn send(&mut self, text: String) {
        self.tail.push_str(&text);
        if self.tail.len() > TAIL_BYTES {
            let cut = self.tail.len() - TAIL_BYTES;
            let cut = (cut..self.tail.len())
                .find(|i| self.tail.is_char_boundary(*i))
                .unwrap_or(0);
            self.tail.drain(..cut);
        }
        let _ = self.shipper.events.send(Event::Output {
            step: self.step.clone(),
            text,
        });
    }
}

/// Terraform's http backend client prints `2026/11/29 05:33:05 [DEBUG] GET http://...`
/// for every state request whatever TF_LOG says: noise in a user's log.
fn is_http_backend_debug_line(line: &[u8]) -> bool {
    let timestamp = b"0000/00/00 00:00:00 ";
    line.len() > timestamp.len()
        && line[..timestamp.len()]
            .iter()
            .zip(timestamp)
            .all(|(byte, shape)| {
                if *shape == b'0' {
                    byte.is_ascii_digit()
                } else {
                    byte == shape
                }
            })
        && line[timestamp.len()..].starts_with(b"[DEBUG] ")
}

async fn ship(client: ApiClient, mut events: mpsc::UnboundedReceiver<Event>) {
    let mut batch = Batch::default();
    loop {
        let event = tokio::time::timeout(FLUSH_INTERVAL, events.recv()).await;
        match event {
            Ok(Some(Event::Output { step, text })) => {
                batch.add(&step, &text);
                if batch.bytes >= MAX_CHUNK_BYTES {
                    batch.send(&client).await;
                }
            }
            Ok(Some(Event::Flush(done))) => {
                batch.send(&client).await;
                let _ = done.send(());
            }
            Ok(None) => {
                batch.send(&client).await;
                return;
            }
            Err(_elapsed) => batch.send(&client).await,
        }
    }
}

#[derive(Default)]
struct Batch {
    chunks: Vec<LogChunkInput>,
    bytes: usize,
    next_seq: u64,
}

impl Batch {
    fn add(&mut self, step: &str, text: &str) {
        match self.chunks.last_mut() {
            Some(last) if last.step == step && last.text.len() + text.len() <= MAX_CHUNK_BYTES => {
                last.text.push_str(text);
            }
            _ => {
                self.next_seq += 1;
                self.chunks.push(LogChunkInput {
                    seq: self.next_seq,
                    step: step.to_string(),
                    text: text.to_string(),
                });
            }
        }
        self.bytes += text.len();
    }

    async fn send(&mut self, client: &ApiClient) {
        if self.chunks.is_empty() {
            return;
        }
        if let Err(error) = client.logs(&self.chunks).await {
            eprintln!("envplane-runner: log chunks were lost: {error}");
        }
        self.chunks.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_backend_debug_lines_are_dropped() {
        assert!(is_http_backend_debug_line(
            b"2026/11/29 05:33:05 [DEBUG] GET http://127.0.0.1/v1/state/env_1\n"
        ));
        assert!(!is_http_backend_debug_line(
            b"Apply complete! Resources: 0 added\n"
        ));
        assert!(!is_http_backend_debug_line(b"[DEBUG] something\n"));
        assert!(!is_http_backend_debug_line(
            b"2026/11/29 05:33:05 [ERROR] state lock\n"
        ));
    }
}
