//! An invocation's event handed to the handler as the bytes the Runtime API sent, under
//! `lambda_runtime`.
//!
//! `lambda_runtime` deserialises every event with serde before the handler sees it. The ingest
//! reads its API Gateway event itself ([`crate::proxy_event::ProxyEvent::read`], one pass over a
//! body of up to 1 MB), so [`RawEventLayer`] takes the bytes out of each invocation before that
//! step and leaves the JSON `null` in their place; the handler, typed
//! `LambdaEvent<serde::de::IgnoredAny>`, takes them with [`take`]. Everything else stays
//! `lambda_runtime`'s: polling, the answer and error posts, panics reported as invocation errors,
//! the tracing span with the request id, X-Ray's trace id.
//!
//! The hand-over is a thread-local slot, filled and emptied within one synchronous call: the
//! layer's `call` fills it and calls the inner services, which deserialise `null` and call the
//! handler's closure before returning its future (`lambda_runtime`'s services build the
//! handler's future inside their own `call`); the closure takes the bytes there. Whatever was
//! not taken is dropped when the call returns, so one invocation's bytes never reach another.

use std::cell::RefCell;
use std::task::{Context, Poll};

use bytes::Bytes;
use lambda_http::lambda_runtime::tower::{Layer, Service};
use lambda_http::lambda_runtime::LambdaInvocation;

thread_local! {
    static EVENT: RefCell<Option<Bytes>> = const { RefCell::new(None) };
}

/// What `lambda_runtime` deserialises instead of the event.
const NULL: &[u8] = b"null";

/// Takes each invocation's event bytes before `lambda_runtime` deserialises them (see the module).
#[derive(Debug, Clone, Copy, Default)]
pub struct RawEventLayer;

impl<S> Layer<S> for RawEventLayer {
    type Service = RawEvent<S>;

    fn layer(&self, inner: S) -> RawEvent<S> {
        RawEvent { inner }
    }
}

#[derive(Debug, Clone)]
pub struct RawEvent<S> {
    inner: S,
}

impl<S: Service<LambdaInvocation>> Service<LambdaInvocation> for RawEvent<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut invocation: LambdaInvocation) -> S::Future {
        let event = std::mem::replace(&mut invocation.body, Bytes::from_static(NULL));
        EVENT.with(|slot| *slot.borrow_mut() = Some(event));
        let future = self.inner.call(invocation);
        EVENT.with(|slot| slot.borrow_mut().take());
        future
    }
}

/// The event bytes of the invocation being handled: for the handler's closure to call as it is
/// called (not from its future). Empty outside an invocation under [`RawEventLayer`].
pub fn take() -> Bytes {
    EVENT
        .with(|slot| slot.borrow_mut().take())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::{ready, Ready};

    /// Stands for `lambda_runtime`'s inner services: calls the handler's closure within `call`.
    struct Handler {
        seen_by_closure: Vec<Bytes>,
        deserialised: Vec<Bytes>,
    }

    impl Service<LambdaInvocation> for &mut Handler {
        type Response = ();
        type Error = ();
        type Future = Ready<Result<(), ()>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, invocation: LambdaInvocation) -> Self::Future {
            self.deserialised.push(invocation.body);
            self.seen_by_closure.push(take());
            ready(Ok(()))
        }
    }

    fn invocation(body: &'static [u8]) -> LambdaInvocation {
        let (parts, ()) = lambda_http::http::Response::new(()).into_parts();
        LambdaInvocation {
            parts,
            body: Bytes::from_static(body),
            context: Default::default(),
        }
    }

    #[test]
    fn the_handler_takes_its_own_invocations_bytes_and_serde_sees_null() {
        let mut handler = Handler {
            seen_by_closure: vec![],
            deserialised: vec![],
        };
        {
            let mut service = RawEventLayer.layer(&mut handler);
            drop(service.call(invocation(b"{\"body\":\"first\"}")));
            drop(service.call(invocation(b"second")));
        }
        assert_eq!(
            handler.seen_by_closure,
            ["{\"body\":\"first\"}".as_bytes(), b"second"]
        );
        assert_eq!(handler.deserialised, [NULL, NULL]);
        // Nothing is left for a later call.
        assert!(take().is_empty());
    }

    #[test]
    fn bytes_the_handler_did_not_take_are_dropped_with_the_call() {
        struct Ignores;
        impl Service<LambdaInvocation> for Ignores {
            type Response = ();
            type Error = ();
            type Future = Ready<Result<(), ()>>;
            fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
                Poll::Ready(Ok(()))
            }
            fn call(&mut self, _: LambdaInvocation) -> Self::Future {
                ready(Ok(()))
            }
        }
        drop(RawEventLayer.layer(Ignores).call(invocation(b"unread")));
        assert!(take().is_empty());
    }
}
