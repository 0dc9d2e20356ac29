//! Early answers never reset the connection.
//!
//! Many answers come before the request body is read: no such method, no
//! token, rate limited, a body over the limit. An HTTP/1.1 server that then
//! drops the unread body has to close the connection, and a client still
//! sending it sees `EPIPE` or a reset instead of the answer (an HTTP/2 one
//! sees its stream reset). This layer, around every route and protocol
//! (REST, gRPC-web, Connect), notices a request body that a handler let go
//! of unread and reads the rest of it — at most [`MAX_BYTES`], for at most
//! [`MAX_TIME`] — before the answer goes out, so the client reads the answer
//! and its connection stays usable. A body beyond those bounds is not
//! waited for: the answer then says `Connection: close`.
//!
//! A body still held when the handler answers (a gRPC call streaming it
//! upstream) is left alone.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt as _;
use http_body::{Frame, SizeHint};
use tokio::sync::oneshot;

/// The most of an unread body read before answering.
pub const MAX_BYTES: usize = 4 * 1024 * 1024;
/// The longest an answer waits for an unread body.
pub const MAX_TIME: Duration = Duration::from_secs(5);

/// The middleware: see the module docs.
pub async fn drain_unread(request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let (back, mut returned) = oneshot::channel();
    let body = Body::new(Watched {
        inner: Some(body),
        finished: false,
        back: Some(back),
    });
    let mut response = next.run(Request::from_parts(parts, body)).await;
    if let Ok(unread) = returned.try_recv()
        && !drain(unread).await
    {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Reads and discards `body` within the bounds; false when it did not end
/// within them (or failed).
async fn drain(body: Body) -> bool {
    let read = async {
        let mut stream = body.into_data_stream();
        let mut total = 0usize;
        while let Some(chunk) = stream.next().await {
            let Ok(chunk) = chunk else { return false };
            total = total.saturating_add(chunk.len());
            if total > MAX_BYTES {
                return false;
            }
        }
        true
    };
    let drained = tokio::time::timeout(MAX_TIME, read).await.unwrap_or(false);
    if !drained {
        tracing::info!("an unread request body did not end in time: closing the connection");
    }
    drained
}

/// A request body that, dropped before its end, goes back to
/// [`drain_unread`].
struct Watched {
    inner: Option<Body>,
    finished: bool,
    back: Option<oneshot::Sender<Body>>,
}

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            this.finished = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), http_body::Body::size_hint)
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let (Some(inner), Some(back)) = (self.inner.take(), self.back.take())
            && !http_body::Body::is_end_stream(&inner)
        {
            // The receiver is gone once the answer left: nothing to do then.
            let _ = back.send(inner);
        }
    }
}
