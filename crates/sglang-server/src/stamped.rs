//! A TCP stream that knows when the bytes of its latest read reached this
//! machine: the kernel's receive time of the data (`SO_TIMESTAMPNS`), not
//! the time a task got around to reading it.
//!
//! The load times each streamed chunk by when it arrived. A time taken in
//! the reading task adds the task's wake-up and whatever else the sender's
//! core was doing to the first-token time; the kernel's stamp does not.
//! For TCP the kernel gives the stamp of the last packet a read took, so
//! bytes are never dated before they came. Linux only, as the rest of the
//! sender; on a socket that does not give the stamp, reads are plain and
//! [`Arrivals::latest`] says `None`.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// When the bytes of the latest read of a [`Stamped`] stream arrived,
/// shared with whoever reads what the stream delivered.
#[derive(Clone, Debug, Default)]
pub(crate) struct Arrivals(Arc<Mutex<Option<Instant>>>);

impl Arrivals {
    /// The arrival of the latest read's bytes, on this process's
    /// monotonic clock, if the kernel stamped it.
    pub(crate) fn latest(&self) -> Option<Instant> {
        self.0.lock().ok().and_then(|it| *it)
    }

    fn set(&self, at: Option<Instant>) {
        if let Ok(mut it) = self.0.lock() {
            *it = at;
        }
    }
}

/// A [`TcpStream`] whose reads note the kernel's receive time in its
/// [`Arrivals`].
#[derive(Debug)]
pub(crate) struct Stamped {
    inner: TcpStream,
    arrivals: Arrivals,
}

impl Stamped {
    /// Asks the kernel to stamp what `inner` receives.
    pub(crate) fn new(inner: TcpStream) -> Stamped {
        let on: libc::c_int = 1;
        // SAFETY: a valid socket, and an option value of the size given.
        // Failing leaves the socket without stamps, and reads plain.
        unsafe {
            libc::setsockopt(
                inner.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                (&on as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        Stamped {
            inner,
            arrivals: Arrivals::default(),
        }
    }

    pub(crate) fn arrivals(&self) -> Arrivals {
        self.arrivals.clone()
    }
}

/// Room for one `SCM_TIMESTAMPNS` control message, aligned for its header.
#[repr(C, align(8))]
struct Control([u8; 64]);

/// One `recvmsg` into `buf`: the bytes read and the kernel's receive time
/// of the first of them, on the wall clock, when it was given.
fn recv_stamped(fd: i32, buf: &mut [MaybeUninit<u8>]) -> io::Result<(usize, Option<SystemTime>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = Control([0; 64]);
    // SAFETY: every field is set below or valid when zeroed.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = control.0.len() as _;
    // SAFETY: `msg` points at a live buffer and control area of the sizes
    // it gives; the kernel writes at most those.
    let n = unsafe { libc::recvmsg(fd, &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut stamp = None;
    // SAFETY: the kernel filled `msg`'s control area; the CMSG_* walk stays
    // inside `msg_controllen`, and a timestamp's data is a `timespec`.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                stamp = Some(
                    SystemTime::UNIX_EPOCH + Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32),
                );
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n as usize, stamp))
}

impl AsyncRead for Stamped {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let fd = this.inner.as_raw_fd();
        loop {
            ready!(this.inner.poll_read_ready(cx))?;
            // SAFETY: `recv_stamped` only writes the bytes it reports, and
            // exactly those are marked as filled.
            let unfilled = unsafe { buf.unfilled_mut() };
            match this
                .inner
                .try_io(Interest::READABLE, || recv_stamped(fd, unfilled))
            {
                Ok((n, stamp)) => {
                    // SAFETY: the kernel wrote `n` bytes.
                    unsafe { buf.assume_init(n) };
                    buf.advance(n);
                    if n > 0 {
                        // How long ago the bytes arrived, on the wall clock,
                        // taken back from now on the monotonic one: the two
                        // clocks read together, so their drift does not count.
                        // A read without a stamp leaves none, never an older one.
                        this.arrivals.set(stamp.map(|stamp| {
                            let (now, wall) = (Instant::now(), SystemTime::now());
                            let ago = wall.duration_since(stamp).unwrap_or_default();
                            now.checked_sub(ago).unwrap_or(now)
                        }));
                    }
                    return Poll::Ready(Ok(()));
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
    }
}

impl AsyncWrite for Stamped {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Bytes read long after they arrived carry their arrival, not the
    /// read's time.
    #[tokio::test]
    async fn reads_carry_the_kernels_arrival_time() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = Stamped::new(TcpStream::connect(addr).await.unwrap());
        let (mut server, _) = listener.accept().await.unwrap();
        let arrivals = client.arrivals();
        assert_eq!(arrivals.latest(), None);
        // The kernel starts stamping received packets shortly after the
        // first socket asks (until then a read has no stamp, and says so).
        let mut client = client;
        server.write_all(b"warm").await.unwrap();
        let mut buf = [0u8; 16];
        let _ = client.read(&mut buf).await.unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let sent = Instant::now();
        server.write_all(b"hello").await.unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let n = client.read(&mut buf).await.unwrap();
        let read = Instant::now();
        assert_eq!(&buf[..n], b"hello");
        let arrived = arrivals.latest().expect("loopback sockets are stamped");
        assert!(
            arrived >= sent - Duration::from_millis(1),
            "{arrived:?} {sent:?}"
        );
        assert!(
            arrived + Duration::from_millis(40) < read,
            "{arrived:?} {read:?}"
        );
        // One read of two packets carries the later one's arrival, so a
        // chunk is never dated before it came.
        server.write_all(b"head").await.unwrap();
        std::thread::sleep(Duration::from_millis(30));
        let second = Instant::now();
        server.write_all(b"chunk").await.unwrap();
        std::thread::sleep(Duration::from_millis(30));
        let mut buf = [0u8; 16];
        let n = client.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"headchunk");
        let arrived = arrivals.latest().unwrap();
        assert!(
            arrived + Duration::from_millis(1) >= second,
            "{arrived:?} {second:?}"
        );
        // Writes go through.
        client.write_all(b"back").await.unwrap();
        let mut got = [0u8; 4];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"back");
    }
}
