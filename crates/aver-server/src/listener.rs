//! The HTTPS listener: TLS, HTTP/1.1 and HTTP/2, and the limits that keep
//! slow, idle or numerous clients from starving everyone else.
//!
//! Aver owns its accept loop (tokio-rustls + hyper-util) rather than using
//! a ready-made server so that every connection is bounded:
//!
//! * **connections**: at most [`ConnectionLimits::max_connections`] are open
//!   at once. At the cap the loop stops accepting; new connections wait in
//!   the kernel's backlog until a slot frees, instead of the process running
//!   out of file descriptors (which would starve `/health` too);
//! * **TLS handshake**: must finish within `tls_handshake_timeout`;
//! * **request headers**: must arrive whole within `header_read_timeout`
//!   (HTTP/1.1, hyper's own timer; it also runs while a keep-alive
//!   connection waits for its next request);
//! * **request bodies**: must arrive whole within `body_read_timeout`
//!   (enforced where bodies are read, [`crate::request::read_body`]);
//! * **idle connections**: a connection on which no byte moves in either
//!   direction for `idle_timeout` is closed (HTTP/1.1 and HTTP/2 alike);
//! * **HTTP/2 streams**: at most `max_h2_streams` concurrent streams per
//!   connection.
//!
//! Shutdown is graceful: the loop stops accepting and in-flight requests
//! finish, within a bound chosen by the caller.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, Sleep};

/// Bounds on connections and how long a client may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Most connections open at once.
    pub max_connections: usize,
    pub tls_handshake_timeout: Duration,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub idle_timeout: Duration,
    /// Most concurrent HTTP/2 streams per connection.
    pub max_h2_streams: u32,
}

impl Default for ConnectionLimits {
    /// 1024 connections; 10 s for the TLS handshake and for headers, 30 s
    /// for a body (1 MiB at 35 KB/s), 60 s idle; 64 HTTP/2 streams. Real
    /// clients (the Azure SDKs, a relying party fetching `/certs`) send a
    /// request in milliseconds; these only cut off clients that trickle.
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 1024,
            tls_handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_h2_streams: 64,
        }
    }
}

/// Tells a running [`serve`] loop to stop, and reports open connections.
#[derive(Debug, Clone)]
pub struct ListenerHandle {
    stop: watch::Sender<bool>,
    open: Arc<AtomicUsize>,
}

impl ListenerHandle {
    pub fn new() -> Self {
        let (stop, _) = watch::channel(false);
        ListenerHandle {
            stop,
            open: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Stops accepting; in-flight requests finish (see [`serve`]).
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }

    /// Connections open right now.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

impl Default for ListenerHandle {
    fn default() -> Self {
        Self::new()
    }
}

/// Counts an open connection for as long as it lives.
struct OpenGuard(Arc<AtomicUsize>);

impl OpenGuard {
    fn new(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        OpenGuard(counter.clone())
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves `app` over TLS on `listener` until `handle.shutdown()`, then
/// waits up to `drain` for in-flight connections to finish.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    limits: ConnectionLimits,
    handle: ListenerHandle,
    drain: Duration,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_h2_streams)
        .max_header_list_size(64 * 1024);
    let builder = Arc::new(builder);
    let mut stop = handle.stop.subscribe();

    loop {
        // Wait for a free slot before accepting: at the cap, new connections
        // queue in the kernel's backlog rather than exhausting descriptors.
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stopped(&mut stop) => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE/ENFILE and aborted handshakes: log and back off
                    // briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let builder = builder.clone();
        let app = app.clone();
        let limits = limits.clone();
        let open = OpenGuard::new(&handle.open);
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let _open = open;
            let tls = match tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(tcp))
                .await
            {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let io = TokioIo::new(IdleTimeout::new(tls, limits.idle_timeout));
            let service = TowerToHyperService::new(app);
            let connection = builder.serve_connection(io, service);
            if let Err(e) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            open = handle.open_connections(),
            "connections still open after the drain period; closing them"
        );
    }
    Ok(())
}

/// Resolves once shutdown was requested.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Closes a connection on which no byte moved, in either direction, for a
/// while. Reads and writes both count as activity, so a request being
/// processed (the client silent, waiting) is not cut off once the response
/// starts flowing, and a keep-alive connection nobody uses is.
struct IdleTimeout<T> {
    inner: T,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<T> IdleTimeout<T> {
    fn new(inner: T, timeout: Duration) -> Self {
        IdleTimeout {
            inner,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    fn touch(&mut self) {
        self.deadline.as_mut().reset(Instant::now() + self.timeout);
    }

    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
    }
}

fn idle_error() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "connection idle too long")
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleTimeout<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.touch();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if this.expired(cx) => Poll::Ready(Err(idle_error())),
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, data) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    this.touch();
                }
                Poll::Ready(Ok(n))
            }
            // A peer that stops reading our response is idle too.
            Poll::Pending if this.expired(cx) => Poll::Ready(Err(idle_error())),
            other => other,
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    this.touch();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Pending if this.expired(cx) => Poll::Ready(Err(idle_error())),
            other => other,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A rustls server configuration from PEM files, offering HTTP/2 and
/// HTTP/1.1 by ALPN.
pub fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<rustls::ServerConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in the file", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| format!("TLS certificate and key: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
