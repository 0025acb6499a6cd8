//! The emulator's side of a client's TCP connection, acknowledging every read at once.
//!
//! AMQP clients write small frames back to back (a flow, then a transfer; two attaches),
//! and most of them leave Nagle's algorithm on: the second frame waits until the first is
//! acknowledged. A server that has nothing to answer to the first frame would delay that
//! acknowledgement (40 ms on Linux), so every such pair cost a client 40 ms — a dozen of
//! them before the first event of a partition. Re-arming `TCP_QUICKACK` after each read
//! (the kernel clears it by itself) makes the emulator acknowledge at once, as a busy
//! broker effectively does.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A TCP stream that acknowledges what it reads without delay.
#[derive(Debug)]
pub(crate) struct QuickAck(pub TcpStream);

impl QuickAck {
    fn rearm(&self) {
        #[cfg(target_os = "linux")]
        {
            // Best effort: without it the connection still works, only slower.
            let _ = socket2::SockRef::from(&self.0).set_tcp_quickack(true);
        }
    }
}

impl AsyncRead for QuickAck {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.0).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.rearm();
        }
        polled
    }
}

impl AsyncWrite for QuickAck {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}
