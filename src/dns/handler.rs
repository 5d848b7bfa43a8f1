//! The request handler hickory's server calls for every query (UDP or TCP): cluster names
//! are answered from the [`Zone`] (authoritative), everything else is relayed from the
//! [`Forwarder`]. Encoding, UDP truncation (512 bytes without EDNS, the client's EDNS
//! buffer otherwise) and the sockets are hickory's; this module decides what a response
//! says and never changes the index.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use hickory_proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::Record;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

use super::forward::Forwarder;
use super::index::Index;
use super::zone::{Resolution, Zone};

/// Answers queries from the index and the upstreams.
pub(crate) struct Handler {
    zone: Zone,
    index: Arc<RwLock<Index>>,
    /// Set once both watches have listed: before that the index would deny names that
    /// exist, and a negative answer gets cached, so cluster names fail (SERVFAIL) instead.
    synced: Arc<AtomicBool>,
    forwarder: Forwarder,
}

impl Handler {
    /// A handler over `index`, answering cluster names once `synced` is set.
    pub(crate) fn new(
        zone: Zone,
        index: Arc<RwLock<Index>>,
        synced: Arc<AtomicBool>,
        forwarder: Forwarder,
    ) -> Self {
        Handler {
            zone,
            index,
            synced,
            forwarder,
        }
    }

    fn resolve(&self, query: &Query) -> Option<Resolution> {
        if !self.synced.load(Ordering::Acquire) && self.zone.contains(query.name()) {
            return None;
        }
        // A std lock: resolving is synchronous and short, and the guard drops before any
        // await.
        let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
        Some(self.zone.resolve(&index, query.name(), query.query_type()))
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        let edns = response_edns(request);
        let edns = edns.as_ref();
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.recursion_available = true;
        if request.metadata.op_code != OpCode::Query {
            metadata.response_code = ResponseCode::NotImp;
            return respond(request, edns, metadata, &[], &[], &[], response_handle).await;
        }
        if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            metadata.response_code = ResponseCode::BADVERS;
            return respond(request, edns, metadata, &[], &[], &[], response_handle).await;
        }
        let query = match request.request_info() {
            Ok(info) => info.query.original().clone(),
            Err(_) => {
                metadata.response_code = ResponseCode::FormErr;
                return respond(request, edns, metadata, &[], &[], &[], response_handle).await;
            }
        };
        match self.resolve(&query) {
            None => {
                metadata.response_code = ResponseCode::ServFail;
                respond(request, edns, metadata, &[], &[], &[], response_handle).await
            }
            Some(Resolution::Local(mut answer)) => {
                if let Some(target) = answer.chase.take() {
                    // Stub resolvers do not follow a CNAME themselves: fetch the target's
                    // records as a recursive server would (CoreDNS does the same).
                    let mut chase = Query::query(target, query.query_type());
                    chase.set_query_class(query.query_class());
                    match self.forwarder.forward(&chase, true).await {
                        Ok(upstream) => {
                            if upstream.metadata.response_code == ResponseCode::NXDomain {
                                answer.rcode = ResponseCode::NXDomain;
                            }
                            answer.answers.extend(upstream.answers);
                        }
                        Err(error) => {
                            tracing::debug!(name = %chase.name(), %error, "following an ExternalName")
                        }
                    }
                }
                metadata.authoritative = true;
                metadata.response_code = answer.rcode;
                respond(
                    request,
                    edns,
                    metadata,
                    &answer.answers,
                    &answer.authorities,
                    &answer.additionals,
                    response_handle,
                )
                .await
            }
            Some(Resolution::Forward) => {
                match self
                    .forwarder
                    .forward(&query, request.metadata.recursion_desired)
                    .await
                {
                    Ok(upstream) => {
                        metadata.response_code = upstream.metadata.response_code;
                        metadata.authoritative = upstream.metadata.authoritative;
                        metadata.recursion_available = upstream.metadata.recursion_available;
                        respond(
                            request,
                            edns,
                            metadata,
                            &upstream.answers,
                            &upstream.authorities,
                            &upstream.additionals,
                            response_handle,
                        )
                        .await
                    }
                    Err(error) => {
                        tracing::debug!(name = %query.name(), %error, "forwarding failed");
                        metadata.response_code = ResponseCode::ServFail;
                        respond(request, edns, metadata, &[], &[], &[], response_handle).await
                    }
                }
            }
        }
    }
}

/// The OPT record of the response: present when the request had one (RFC 6891), with the
/// client's buffer size so hickory truncates UDP responses at that size.
fn response_edns(request: &Request) -> Option<Edns> {
    let requested = request.edns.as_ref()?;
    let mut edns = Edns::new();
    edns.set_max_payload(requested.max_payload().max(512));
    edns.set_version(0);
    Some(edns)
}

async fn respond<R: ResponseHandler>(
    request: &Request,
    edns: Option<&Edns>,
    metadata: Metadata,
    answers: &[Record],
    authorities: &[Record],
    additionals: &[Record],
    mut response_handle: R,
) -> ResponseInfo {
    let response = MessageResponseBuilder::new(&request.queries, edns).build(
        metadata,
        answers,
        authorities,
        &[],
        additionals,
    );
    match response_handle.send_response(response).await {
        Ok(info) => info,
        Err(error) => {
            tracing::debug!(%error, "sending a DNS response");
            let mut failed = metadata;
            failed.response_code = ResponseCode::ServFail;
            ResponseInfo::from(Header {
                metadata: failed,
                counts: HeaderCounts::default(),
            })
        }
    }
}
