//! The loop every call goes through: which endpoint to try, when to back
//! off, and how a write whose outcome is unknown is re-sent (same write id,
//! bounded) instead of being reported as "not applied".

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Instant;

use raftconf_api::v1 as pb;
use tonic::transport::Channel;
use tonic::Status;

use crate::endpoints::{classify, Failure};
use crate::error::{one_line_status, AUTHOR_METADATA};
use crate::{Client, Error, Result};

/// Least call time left for which another attempt is started.
const MIN_ATTEMPT: std::time::Duration = std::time::Duration::from_millis(25);

/// Whether a call may change state, which decides how failures are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallKind {
    Read,
    Write,
}

/// Responses that carry a [`pb::ResponseHeader`].
pub(crate) trait HasHeader {
    fn header(&self) -> Option<&pb::ResponseHeader>;
}

macro_rules! has_header {
    ($($t:ty),*) => {$(
        impl HasHeader for $t {
            fn header(&self) -> Option<&pb::ResponseHeader> {
                self.header.as_ref()
            }
        }
    )*};
}

has_header!(
    pb::GetResponse,
    pb::ListResponse,
    pb::PutResponse,
    pb::ApplyResponse,
    pb::ClientsResponse,
    pb::PlanResponse,
    pb::DeleteResponse,
    pb::HistoryResponse,
    pb::CreateTenantResponse,
    pb::ListTenantsResponse,
    pb::CreateEnvironmentResponse,
    pb::DeleteEnvironmentResponse,
    pb::DeleteTenantResponse,
    pb::SetTenantSettingsResponse,
    pb::ListEnvironmentsResponse,
    pb::StatusResponse,
    pb::MembershipResponse,
    pb::SetSchemaResponse,
    pb::GetSchemaResponse,
    pb::SchemaHistoryResponse,
    pb::DeleteSchemaResponse
);

impl Client {
    pub(crate) fn next_write_id(&self) -> pb::WriteId {
        pb::WriteId {
            client_id: self.inner.client_id.clone(),
            request_id: self.inner.next_request_id.fetch_add(1, Ordering::Relaxed),
        }
    }

    pub(crate) fn request<M>(&self, message: M, kind: CallKind) -> tonic::Request<M> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.options().request_timeout);
        if kind == CallKind::Write {
            if let Some(author) = &self.inner.author {
                request
                    .metadata_mut()
                    .insert(AUTHOR_METADATA, author.clone());
            }
        }
        request
    }

    pub(crate) fn note_header(&self, header: Option<&pb::ResponseHeader>) {
        if let Some(h) = header {
            self.inner.endpoints.note_leader(&h.leader_addr);
            self.inner
                .seen_revision
                .fetch_max(h.revision, Ordering::Relaxed);
        }
    }

    /// Runs one call with failover. `attempt` is called once per try with a
    /// fresh copy of `message` (for a write: the same write id every time).
    ///
    /// - `NotSent` failures move to the next endpoint, rounds of endpoints are
    ///   separated by a jittered backoff, all within `call_timeout`.
    /// - `Ambiguous` failures of reads do the same. For writes they are
    ///   counted: after `max_write_retries` re-sends, or when time runs out
    ///   after one, the call fails with [`Error::Indeterminate`], never with
    ///   `Unavailable`.
    /// - Any other status is the answer.
    pub(crate) async fn call<M, R, F, Fut>(
        &self,
        kind: CallKind,
        what: impl Fn() -> String,
        message: M,
        attempt: F,
    ) -> Result<R>
    where
        M: Clone,
        R: HasHeader,
        F: Fn(Channel, tonic::Request<M>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<R>, Status>>,
    {
        let options = self.options();
        let endpoints = &self.inner.endpoints;
        let deadline = Instant::now() + options.call_timeout;
        let mut errors: BTreeMap<String, String> = BTreeMap::new();
        let mut ambiguous = 0u32;
        let mut round = 0u32;
        'rounds: loop {
            let mut queue: VecDeque<String> = endpoints
                .order(kind == CallKind::Write && options.prefer_leader)
                .into();
            let mut tried: Vec<String> = Vec::new();
            while let Some(addr) = queue.pop_front() {
                if tried.contains(&addr) {
                    continue;
                }
                let now = Instant::now();
                // A retry is not started on a sliver of the budget: it could
                // only run out of time, and a write that runs out of time is
                // uncertain — a dead cluster's refusals would end as
                // `Indeterminate` instead of `Unavailable`.
                if now >= deadline || (!errors.is_empty() && deadline - now < MIN_ATTEMPT) {
                    break 'rounds;
                }
                tried.push(addr.clone());
                let channel = endpoints.channel(&addr)?;
                let limit = options.request_timeout.min(deadline - now);
                let request = self.request(message.clone(), kind);
                let status = match tokio::time::timeout(limit, attempt(channel, request)).await {
                    Ok(Ok(response)) => {
                        endpoints.note_leader_metadata(response.metadata());
                        endpoints.mark_good(&addr);
                        let response = response.into_inner();
                        self.note_header(response.header());
                        return Ok(response);
                    }
                    Ok(Err(status)) => status,
                    Err(_) => Status::deadline_exceeded(format!("no answer within {limit:?}")),
                };
                if let Some(leader) = endpoints.note_leader_metadata(status.metadata()) {
                    if kind == CallKind::Write {
                        // A new leader hint: go there next, even if tried this round.
                        tried.retain(|a| *a != leader);
                        queue.push_front(leader);
                    }
                }
                let failure = classify(&status);
                if failure == Failure::Final {
                    return Err(status.into());
                }
                endpoints.mark_bad(&addr);
                tracing::debug!(
                    call = %what(),
                    endpoint = %addr,
                    code = ?status.code(),
                    message = status.message(),
                    ?failure,
                    "attempt failed"
                );
                errors.insert(addr.clone(), one_line_status(&status));
                if failure == Failure::Ambiguous && kind == CallKind::Write {
                    ambiguous += 1;
                    if ambiguous > options.max_write_retries {
                        break 'rounds;
                    }
                    tracing::warn!(
                        call = %what(),
                        endpoint = %addr,
                        retry = ambiguous,
                        "write outcome unknown; re-sending with the same write id"
                    );
                    let pause = options.backoff_for(ambiguous - 1);
                    if Instant::now() + pause >= deadline {
                        break 'rounds;
                    }
                    tokio::time::sleep(pause).await;
                    // Re-send to the leader first, if one is known, else anywhere.
                    queue = endpoints.order(options.prefer_leader).into();
                    tried.clear();
                }
            }
            let pause = options.backoff_for(round);
            round += 1;
            if Instant::now() + pause >= deadline {
                break;
            }
            tokio::time::sleep(pause).await;
        }
        let detail = errors
            .iter()
            .map(|(addr, e)| format!("{addr}: {e}"))
            .collect::<Vec<_>>()
            .join("; ");
        if ambiguous > 0 {
            Err(Error::Indeterminate(format!(
                "{} after {ambiguous} uncertain attempt(s): {detail}",
                what()
            )))
        } else {
            Err(Error::Unavailable(format!(
                "{}: no endpoint answered within {:?}: {detail}",
                what(),
                options.call_timeout
            )))
        }
    }
}

#[cfg(test)]
#[path = "failover_tests.rs"]
mod tests;
