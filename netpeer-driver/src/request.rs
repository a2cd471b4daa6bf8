//! Request/response on top of the machine's requests: [`Request`], what a member asked
//! us, and the waiting side of [`Peer::request`](crate::Peer::request).

use std::{fmt, sync::Weak, time::Duration};

use bytes::Bytes;
use netpeer_proto::{DecodeValueError, IncomingRequest, RequestOutcome};
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    error::{Error, RequestError},
    shared::{FlowControl, Shared},
};

/// Where a request's outcome goes.
pub(crate) type RequestReply = async_channel::Sender<RequestOutcome>;

/// A member's request ([`PeerEvent::Request`](crate::PeerEvent::Request)): answer it
/// once with [`respond`](Self::respond) or [`reject`](Self::reject).
///
/// Every subscription receives the same request; the first answer counts, later ones
/// fail with [`RespondError::NoSuchRequest`](netpeer_proto::RespondError). A request
/// nobody answers ends on the requester's side when its timeout passes (here it is
/// forgotten then, and after
/// [`max_request_timeout`](netpeer_proto::Config::max_request_timeout) at the latest).
#[derive(Clone)]
pub struct Request {
    inner: IncomingRequest,
    peer: Weak<Shared>,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("from", &self.inner.from)
            .field("id", &self.inner.id)
            .field("kind", &self.inner.kind)
            .field("len", &self.inner.payload.len())
            .finish()
    }
}

impl PartialEq for Request {
    fn eq(&self, other: &Self) -> bool {
        self.inner == other.inner && Weak::ptr_eq(&self.peer, &other.peer)
    }
}

impl Request {
    pub(crate) fn new(inner: IncomingRequest, peer: Weak<Shared>) -> Self {
        Request { inner, peer }
    }

    /// The member that asks (authenticated by its session).
    pub fn from(&self) -> &str {
        &self.inner.from
    }

    /// The request's id, chosen by the requester.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The application-chosen kind.
    pub fn kind(&self) -> &str {
        &self.inner.kind
    }

    /// The raw payload (CBOR unless the requester sent raw bytes).
    pub fn payload(&self) -> &Bytes {
        &self.inner.payload
    }

    /// Decodes the payload as a `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, DecodeValueError> {
        self.inner.decode()
    }

    /// Answers with `value` (as CBOR).
    pub fn respond<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), Error> {
        let payload = netpeer_proto::encode_value(value)?;
        self.respond_bytes(payload)
    }

    /// Answers with raw payload bytes.
    pub fn respond_bytes(&self, payload: Bytes) -> Result<(), Error> {
        self.answer(Ok(payload))
    }

    /// Refuses the request; the requester's `request` fails with
    /// [`RequestError::Rejected`] and this reason.
    pub fn reject(&self, reason: &str) -> Result<(), Error> {
        self.answer(Err(reason))
    }

    fn answer(&self, answer: Result<Bytes, &str>) -> Result<(), Error> {
        let shared = self.peer.upgrade().ok_or(Error::Closed)?;
        let mut core = shared.lock();
        if core.closed {
            return Err(Error::Closed);
        }
        let (from, id, now) = (&*self.inner.from, self.inner.id, shared.now());
        let result = match answer {
            Ok(payload) => core.machine.respond(from, id, payload, now),
            Err(reason) => core.machine.reject_request(from, id, reason, now),
        };
        drop(core);
        shared.signal.wake();
        result.map_err(Error::Respond)
    }
}

/// Forgets a request whose caller stopped waiting.
struct Forget<'a> {
    shared: &'a Shared,
    id: Option<u64>,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.shared.lock().requests.remove(&id);
        }
    }
}

impl Shared {
    /// Sends a request (waiting first under flow control `Wait`) and waits for its
    /// outcome.
    pub(crate) async fn request(
        &self,
        to: &str,
        kind: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, RequestError> {
        let outcome = loop {
            let listener = {
                let mut core = self.lock();
                if core.closed {
                    return Err(RequestError::Closed);
                }
                let ready = match self.flow {
                    FlowControl::Wait => core.machine.send_ready(Some(to)).is_ok(),
                    FlowControl::Fail => {
                        core.machine
                            .send_ready(Some(to))
                            .map_err(RequestError::from)?;
                        true
                    }
                    FlowControl::Ignore => true,
                };
                if ready {
                    let now = self.now();
                    let machine = &mut core.machine;
                    let id = machine.request(to, kind, payload, timeout, now)?;
                    let (reply, outcome) = async_channel::bounded(1);
                    core.requests.insert(id, reply);
                    drop(core);
                    self.signal.wake();
                    break (id, outcome);
                }
                self.progress.listen()
            };
            listener.await;
        };
        let (id, outcome) = outcome;
        let mut guard = Forget {
            shared: self,
            id: Some(id),
        };
        let outcome = outcome.recv().await;
        guard.id = None;
        match outcome {
            Ok(RequestOutcome::Answered(bytes)) => Ok(bytes),
            Ok(RequestOutcome::Rejected(reason)) => Err(RequestError::Rejected(reason)),
            Ok(RequestOutcome::PeerLeft) => Err(RequestError::PeerLeft),
            Ok(RequestOutcome::TimedOut) => Err(RequestError::TimedOut),
            Ok(other) => Err(RequestError::Rejected(format!("{other:?}"))),
            Err(_) => Err(RequestError::Closed),
        }
    }
}

/// Decodes an answer as a `T`.
pub(crate) fn decode_answer<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, RequestError> {
    netpeer_proto::decode_value(bytes).map_err(RequestError::Decode)
}

/// The reply of a request the driver saw end.
pub(crate) fn finished(
    requests: &mut std::collections::BTreeMap<u64, RequestReply>,
    id: u64,
    outcome: RequestOutcome,
) {
    if let Some(reply) = requests.remove(&id) {
        let _ = reply.try_send(outcome);
    }
}

/// The requests of a peer that closes end with `Closed` (their senders dropped).
pub(crate) fn close_all(requests: &mut std::collections::BTreeMap<u64, RequestReply>) {
    requests.clear();
}
