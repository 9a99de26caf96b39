//! Guest stdout and stderr: captured per call, bounded, never blocking.

use std::sync::{Arc, Mutex};

/// Most captured stdout/stderr bytes kept per call.
pub(crate) const CAPTURE_LIMIT: usize = 64 << 10;

/// Captured guest stdout/stderr, bounded.
#[derive(Clone, Default)]
pub(crate) struct Capture(Arc<Mutex<(Vec<u8>, Vec<u8>)>>);

impl Capture {
    fn push(&self, stream: Stream, bytes: &[u8]) {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let buf = match stream {
            Stream::Stdout => &mut g.0,
            Stream::Stderr => &mut g.1,
        };
        let room = CAPTURE_LIMIT.saturating_sub(buf.len());
        buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    pub(crate) fn drain(&self) -> (Vec<u8>, Vec<u8>) {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        (std::mem::take(&mut g.0), std::mem::take(&mut g.1))
    }
}

#[derive(Clone, Copy)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

/// A guest's stdout or stderr: always writable, never blocks, keeps at most
/// [`CAPTURE_LIMIT`] bytes per call and silently drops the rest, so a guest
/// cannot trap or stall the host by printing.
#[derive(Clone)]
pub(crate) struct GuestOutput {
    pub(crate) capture: Capture,
    pub(crate) stream: Stream,
}

impl wasmtime_wasi::cli::IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl wasmtime_wasi::p2::OutputStream for GuestOutput {
    fn write(&mut self, bytes: bytes::Bytes) -> wasmtime_wasi::p2::StreamResult<()> {
        self.capture.push(self.stream, &bytes);
        Ok(())
    }
    fn flush(&mut self) -> wasmtime_wasi::p2::StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> wasmtime_wasi::p2::StreamResult<usize> {
        Ok(CAPTURE_LIMIT)
    }
}

#[wasmtime_wasi::async_trait]
impl wasmtime_wasi::p2::Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.capture.push(self.stream, buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
