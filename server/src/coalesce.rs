//! Client sockets that let HTTP/2 put many frames into one write.
//!
//! h2 copies a DATA frame into its 16 KiB write buffer only when the frame is
//! smaller than its chaining threshold: 256 bytes on a socket that takes
//! vectored writes (a TCP stream does), 1 KiB on one that does not. A watch
//! event of a 256-byte document is about 350 bytes, so on a plain TCP stream
//! every event is written by a `writev` of its own, one per subscriber
//! even when ten subscribers share the connection. Worse, tokio runs a task
//! woken by the running one next (its LIFO slot), so the connection task
//! flushes each frame before the next subscriber's stream has queued its own.
//!
//! [`CoalescingStream`] answers both: it says it takes no vectored writes
//! (frames under 1 KiB are then copied and batched), and it defers the first
//! write of a batch by a turn of the scheduler (the connection task wakes
//! itself and goes to the back of the run queue), and again while the batch
//! grows, so the streams woken by the same event queue their frames first.
//! One write then carries them all. A larger frame is written in two calls
//! instead of one `writev`.
//!
//! A turn given way costs a wake-up, which on an idle runtime can be another
//! worker thread's (tens of µs on these VMs): a unary call's answer would pay
//! it for nothing. So a connection whose batch was one small frame and did not
//! grow while it gave way writes the next batches at once, twice as many after
//! each such miss (up to `MAX_SKIPPED`), and gives way again from the first
//! batch that grew or started with several frames. (A batch that is already
//! complete when the connection task first gets its turn, as when a write
//! reaches all the subscribers of a connection at once, is the batching
//! working, not a miss: counted as one, it turned batching off for the next
//! events, and a fan-out to 10,000 subscribers 10 per connection was written
//! in about one `sendto` per event in some runs and one per 33 in others.)

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// At most this many turns given way before one write.
const MAX_YIELDS: u32 = 8;

/// Write at once from this many buffered bytes on (h2's buffer holds 16 KiB).
const BATCH_BYTES: usize = 12 * 1024;

/// At most this many batches written at once after turns that gained nothing.
const MAX_SKIPPED: u32 = 256;

/// A batch that starts with more than this holds several frames (one frame
/// with its headers, a unary answer or a watch event of a small document, is
/// less): giving way is not a miss then, even if nothing more joins.
const LONE_BYTES: usize = 1024;

/// A client connection's TCP stream, written as described in the module docs.
#[derive(Debug)]
pub struct CoalescingStream {
    inner: TcpStream,
    /// Turns given way in the current batch.
    yields: u32,
    /// What h2 had buffered at the last turn given way.
    buffered: usize,
    /// The current batch is being written (until h2 flushes).
    writing: bool,
    /// Batches still to write at once, without giving way.
    skip: u32,
    /// How many to skip after the next miss.
    next_skip: u32,
}

impl CoalescingStream {
    /// Wraps an accepted stream.
    pub fn new(inner: TcpStream) -> Self {
        CoalescingStream {
            inner,
            yields: 0,
            buffered: 0,
            writing: false,
            skip: 0,
            next_skip: 1,
        }
    }

    /// Whether to give way before writing `len` buffered bytes.
    fn give_way(&mut self, len: usize) -> bool {
        if self.writing {
            return false;
        }
        if self.yields == 0 && self.skip > 0 {
            self.skip -= 1;
            return false;
        }
        let grew = len > self.buffered;
        if self.yields == 1 {
            if grew || self.buffered > LONE_BYTES {
                self.next_skip = 1;
            } else {
                // Nothing joined: the frames came alone.
                self.skip = self.next_skip;
                self.next_skip = (self.next_skip * 2).min(MAX_SKIPPED);
            }
        }
        (self.yields == 0 || grew) && self.yields < MAX_YIELDS && len < BATCH_BYTES
    }
}

impl AsyncRead for CoalescingStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for CoalescingStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.give_way(buf.len()) {
            // The connection task goes to the back of the run queue; the
            // streams woken with it queue their frames meanwhile.
            self.yields += 1;
            self.buffered = buf.len();
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.writing = true;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn is_write_vectored(&self) -> bool {
        false
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // h2 flushes once everything buffered is written: the next write
        // starts a new batch.
        self.yields = 0;
        self.buffered = 0;
        self.writing = false;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Connected for CoalescingStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Wake, Waker};

    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use super::*;

    /// Counts its wake-ups.
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn pair() -> (CoalescingStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (server, _) = accepted.expect("accept");
        (CoalescingStream::new(server), client.expect("connect"))
    }

    #[tokio::test]
    async fn writes_give_way_while_the_batch_grows_and_go_through_when_it_stops() {
        let (mut stream, mut peer) = pair().await;
        assert!(!stream.is_write_vectored(), "h2 must copy small frames");
        let wakes = Arc::new(Wakes(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&wakes));
        let mut cx = Context::from_waker(&waker);
        let mut s = Pin::new(&mut stream);
        let data = vec![7u8; 64 * 1024];

        assert!(s.as_mut().poll_write(&mut cx, &data[..100]).is_pending());
        assert_eq!(wakes.0.load(Ordering::Relaxed), 1, "it wakes itself");
        assert!(
            s.as_mut().poll_write(&mut cx, &data[..300]).is_pending(),
            "more was queued meanwhile: give way again"
        );
        match s.as_mut().poll_write(&mut cx, &data[..300]) {
            Poll::Ready(Ok(n)) => assert_eq!(n, 300, "nothing more queued: written"),
            other => panic!("expected the write to go through, got {other:?}"),
        }
        assert!(s.as_mut().poll_flush(&mut cx).is_ready());

        assert!(
            s.as_mut().poll_write(&mut cx, &data[..50]).is_pending(),
            "after a flush the next batch gives way again"
        );
        for len in 1..MAX_YIELDS as usize {
            assert!(s
                .as_mut()
                .poll_write(&mut cx, &data[..50 + len])
                .is_pending());
        }
        assert!(
            s.as_mut().poll_write(&mut cx, &data[..60]).is_ready(),
            "at most {MAX_YIELDS} turns, however it grows"
        );
        assert!(s.as_mut().poll_flush(&mut cx).is_ready());

        assert!(
            s.as_mut()
                .poll_write(&mut cx, &data[..BATCH_BYTES])
                .is_ready(),
            "a full batch is written at once"
        );
        assert!(s.as_mut().poll_flush(&mut cx).is_ready());
        assert_eq!(wakes.0.load(Ordering::Relaxed), 1 + 1 + MAX_YIELDS as usize);

        let wakes_now = || wakes.0.load(Ordering::Relaxed);
        let mut written = 300 + 60 + BATCH_BYTES;
        // One batch: `turn` is whether it gives way first, `joined` whether
        // more frames were queued while it did, `start` what it starts with.
        let mut batch = |s: &mut Pin<&mut CoalescingStream>, turn, joined, start| {
            let before = wakes_now();
            if turn {
                assert!(s.as_mut().poll_write(&mut cx, &data[..start]).is_pending());
            }
            let len = if joined { start + 100 } else { start };
            if turn && joined {
                assert!(s.as_mut().poll_write(&mut cx, &data[..len]).is_pending());
            }
            assert!(s.as_mut().poll_write(&mut cx, &data[..len]).is_ready());
            assert!(s.as_mut().poll_flush(&mut cx).is_ready());
            written += len;
            wakes_now() - before
        };
        let lone = 100;
        let several = LONE_BYTES + 1;
        // (gives way, frames join meanwhile, bytes at the start, wake-ups, why)
        let script = [
            (true, false, lone, 1, "gives way; nothing joins"),
            (false, false, lone, 0, "so the next goes at once"),
            (true, false, lone, 1, "then it tries again; nothing"),
            (false, false, lone, 0, "two batches at once now"),
            (false, false, lone, 0, "two batches at once now"),
            (true, true, lone, 2, "this time frames joined"),
            (true, false, lone, 1, "so it gives way next time"),
            (false, false, lone, 0, "a miss after a hit: skip one"),
            (true, true, lone, 2, "and then gives way again"),
            (true, false, several, 1, "several frames, none join"),
            (true, false, lone, 1, "not a miss: gives way again"),
            (false, false, lone, 0, "while a lone frame is one"),
        ];
        for (turn, joined, start, wakes, why) in script {
            assert_eq!(batch(&mut s, turn, joined, start), wakes, "{why}");
        }

        let mut received = vec![0u8; written];
        peer.read_exact(&mut received)
            .await
            .expect("the peer gets every byte");
        assert!(received.iter().all(|&b| b == 7));
    }
}
