//! A bandwidth cap for one transfer (`--limit-rate`): wraps a stream and lets bytes through no
//! faster than the rate, on average since the transfer began. Reading slowly is enough to slow
//! a sender down too: the transport's flow control pushes back.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};

/// Most bytes let through in one call, so the average stays close to the rate.
const SLICE: usize = 64 * 1024;

pub struct Throttled<S> {
    inner: S,
    /// `None`: no cap, bytes pass straight through.
    bytes_per_sec: Option<u64>,
    start: Instant,
    moved: u64,
    pause: Option<Pin<Box<Sleep>>>,
}

impl<S> Throttled<S> {
    pub fn new(inner: S, bytes_per_sec: Option<u64>) -> Self {
        Throttled {
            inner,
            bytes_per_sec: bytes_per_sec.map(|r| r.max(1)),
            start: Instant::now(),
            moved: 0,
            pause: None,
        }
    }

    /// Ready when the rate allows more bytes; otherwise arms a timer for when it will.
    fn poll_budget(&mut self, cx: &mut Context<'_>) -> Poll<usize> {
        let Some(rate) = self.bytes_per_sec else {
            return Poll::Ready(usize::MAX);
        };
        loop {
            if let Some(pause) = &mut self.pause {
                if pause.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.pause = None;
            }
            let elapsed = self.start.elapsed().as_secs_f64();
            let allowed = (elapsed * rate as f64) as u64;
            if allowed > self.moved {
                return Poll::Ready(((allowed - self.moved) as usize).clamp(1, SLICE));
            }
            let due = (self.moved + 1) as f64 / rate as f64;
            let wait = Duration::from_secs_f64((due - elapsed).max(0.001));
            self.pause = Some(Box::pin(tokio::time::sleep(wait)));
        }
    }
}

impl<S: Unpin> Throttled<S> {
    /// Lets at most the budget of `len` bytes through `io`, and counts what went.
    fn poll_paced(
        &mut self,
        cx: &mut Context<'_>,
        len: usize,
        io: impl FnOnce(Pin<&mut S>, &mut Context<'_>, usize) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        let budget = futures::ready!(self.poll_budget(cx));
        let n = futures::ready!(io(Pin::new(&mut self.inner), cx, budget.min(len)))?;
        self.moved += n as u64;
        Poll::Ready(Ok(n))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Throttled<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let len = buf.len();
        self.poll_paced(cx, len, |inner, cx, n| inner.poll_read(cx, &mut buf[..n]))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Throttled<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_paced(cx, buf.len(), |inner, cx, n| {
            inner.poll_write(cx, &buf[..n])
        })
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::AsyncWriteExt;

    #[tokio::test(start_paused = true)]
    async fn bytes_go_no_faster_than_the_rate() {
        let mut sink = Throttled::new(futures::io::sink(), Some(1000));
        let begun = Instant::now();
        sink.write_all(&[0u8; 3000]).await.unwrap();
        let took = begun.elapsed();
        // 3000 bytes at 1000 B/s: three seconds of (virtual) time, give or take a slice.
        assert!(took >= Duration::from_millis(2900), "{took:?}");
        assert!(took <= Duration::from_millis(3100), "{took:?}");
    }
}
