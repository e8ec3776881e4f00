//! [`Client`]: connecting, and the typed reads and writes of the `Config` service.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use raftconf_api::v1 as pb;
use raftconf_api::v1::config_client::ConfigClient;
use raftconf_schema::{EnvPath, Format, NsPath};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};

use crate::endpoints::Endpoints;
use crate::failover::CallKind;
use crate::types::{Document, HistoryPage, HistoryRecord, Listing, NamespaceEntry, WriteResult};
use crate::watch_link::SharedStreams;
use crate::{ClientOptions, Consistency, DeleteOptions, Error, GetOptions, PutOptions, Result};

/// A handle to a raftconf cluster. Cheap to clone: clones share connections,
/// the leader hint and the client id.
///
/// Reads go to the endpoint that answered last and fail over to the others;
/// writes go to the leader first when a response has named it. Every write
/// carries a write id `(client_id, request_id)` (the wire API's `WriteId`);
/// when its outcome is unknown (the server said `UNKNOWN`, or the connection
/// broke after the request left) it is re-sent with the *same* id, so the
/// server answers with the original result instead of applying it twice.
///
/// # Examples
///
/// ```no_run
/// use raftconf_client::{Client, Error, PutOptions};
/// use serde_json::json;
///
/// # async fn example() -> Result<(), Error> {
/// let client = Client::connect(["127.0.0.1:7070", "127.0.0.1:7071"]).await?;
/// client.create_tenant("payments").await?;
/// client.create_env("payments", "prod").await?;
///
/// let written = client
///     .put("payments/prod/checkout", &json!({"timeout_ms": 250}))
///     .await?;
/// let doc = client.get("payments/prod/checkout").await?;
/// assert_eq!(doc.version, written.version);
///
/// // Compare-and-set: only if nobody changed it since we read it.
/// let opts = PutOptions::default().if_version(doc.version).message("slower");
/// match client
///     .put_with("payments/prod/checkout", &json!({"timeout_ms": 500}), opts)
///     .await
/// {
///     Ok(w) => println!("now version {} at revision {}", w.version, w.revision),
///     Err(Error::CasMismatch { current_version, .. }) => {
///         println!("lost the race; version is now {current_version:?}")
///     }
///     Err(e) => return Err(e),
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}
impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("client_id", &self.inner.client_id)
            .field("endpoints", &self.inner.endpoints.addrs())
            .field("leader", &self.inner.endpoints.leader())
            .finish()
    }
}

/// What every clone of a [`Client`] shares.
pub(crate) struct Inner {
    pub(crate) endpoints: Endpoints,
    /// Identifies this client's writes for de-duplication, and its watches.
    pub(crate) client_id: String,
    /// The next write's request id (never 0: 0 means "no de-duplication").
    pub(crate) next_request_id: AtomicU64,
    /// The highest store revision any response carried, so that a serializable
    /// read never shows older state than this client has already seen.
    pub(crate) seen_revision: AtomicU64,
    /// [`ClientOptions::author`], checked once.
    pub(crate) author: Option<AsciiMetadataValue>,
    /// The streams its watches share, if they share them.
    pub(crate) shared_streams: Option<Arc<SharedStreams>>,
}

impl Client {
    /// Connects to a cluster with default options. `endpoints` are `host:port`
    /// (`http://` is added). Connections are made lazily, on first use, so this
    /// succeeds even when no server is up yet.
    pub async fn connect<I, S>(endpoints: I) -> Result<Client>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::connect_with(endpoints, ClientOptions::default()).await
    }

    /// Connects with the given options.
    pub async fn connect_with<I, S>(endpoints: I, options: ClientOptions) -> Result<Client>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let author = match &options.author {
            Some(a) => {
                let bad =
                    || Error::InvalidArgument(format!("author {a:?} must be printable ASCII"));
                if !a.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
                    return Err(bad());
                }
                Some(MetadataValue::try_from(a.as_str()).map_err(|_| bad())?)
            }
            None => None,
        };
        let client_id = options
            .client_id
            .clone()
            .unwrap_or_else(|| format!("{:016x}", rand::random::<u64>()));
        let shared_streams = options.share_watch_streams.then(Arc::default);
        let endpoints = Endpoints::new(endpoints.into_iter().map(Into::into).collect(), options)?;
        Ok(Client {
            inner: Arc::new(Inner {
                endpoints,
                client_id,
                next_request_id: AtomicU64::new(1),
                seen_revision: AtomicU64::new(0),
                author,
                shared_streams,
            }),
        })
    }

    /// This client's id, sent with every write and watch.
    pub fn client_id(&self) -> &str {
        &self.inner.client_id
    }

    /// The options this client was made with.
    pub fn options(&self) -> &ClientOptions {
        self.inner.endpoints.options()
    }

    /// Every endpoint known: the configured ones, then any learned from leader hints.
    pub fn endpoints(&self) -> Vec<String> {
        self.inner.endpoints.addrs()
    }

    /// The leader's client address as last reported by a server.
    pub fn leader_hint(&self) -> Option<String> {
        self.inner.endpoints.leader()
    }

    /// The highest store revision any response has carried so far.
    pub fn last_seen_revision(&self) -> u64 {
        self.inner.seen_revision.load(Ordering::Relaxed)
    }

    pub(crate) fn endpoint_set(&self) -> &Endpoints {
        &self.inner.endpoints
    }

    // ------------------------------------------------------------ reads

    /// Reads a namespace, linearizably: the answer reflects every write
    /// acknowledged before the call.
    pub async fn get(&self, path: &str) -> Result<Document> {
        self.get_with(path, GetOptions::default()).await
    }

    /// Reads a namespace as it was at `revision` (from its history).
    pub async fn get_at(&self, path: &str, revision: u64) -> Result<Document> {
        self.get_with(path, GetOptions::default().revision(revision))
            .await
    }

    /// Reads a namespace from the answering node's local state: cheaper, may
    /// lag the leader, but never older than what this client has already seen.
    pub async fn get_serializable(&self, path: &str) -> Result<Document> {
        let options = GetOptions::default().consistency(Consistency::Serializable);
        self.get_with(path, options).await
    }

    /// Reads a namespace at a revision and a consistency of the caller's choice.
    ///
    /// ```no_run
    /// use raftconf_client::{Client, Consistency, GetOptions};
    ///
    /// # async fn example() -> Result<(), raftconf_client::Error> {
    /// let client = Client::connect(["127.0.0.1:7070"]).await?;
    /// // Cheaper, from whichever node answers.
    /// let local = GetOptions::default().consistency(Consistency::Serializable);
    /// let now = client.get_with("payments/prod/checkout", local).await?;
    /// // As it was at store revision 17 (from history).
    /// let at_17 = GetOptions::default().revision(17);
    /// let then = client.get_with("payments/prod/checkout", at_17).await?;
    /// println!("version {} then, {} now", then.version, now.version);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn get_with(&self, path: &str, options: GetOptions) -> Result<Document> {
        let path = ns_path(path)?;
        let (consistency, min_revision) = match options.consistency {
            Consistency::Linearizable => (pb::Consistency::Linearizable, 0),
            Consistency::Serializable => (pb::Consistency::Serializable, self.last_seen_revision()),
        };
        let request = pb::GetRequest {
            path: path.clone(),
            revision: options.revision,
            consistency: consistency as i32,
            min_revision,
        };
        let max = self.options().max_response_bytes;
        let response = self
            .call(
                CallKind::Read,
                || format!("get {path}"),
                request,
                move |ch, r| async move {
                    ConfigClient::new(ch)
                        .max_decoding_message_size(max)
                        .get(r)
                        .await
                },
            )
            .await?;
        Document::from_response(response)
    }

    /// Reads a namespace and deserializes it into `T`.
    pub async fn get_typed<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let doc = self.get(path).await?;
        T::deserialize(&doc.value).map_err(|e| Error::Deserialize {
            path: doc.path.clone(),
            revision: doc.mod_revision,
            message: e.to_string(),
        })
    }

    /// Lists the namespaces of an environment (`tenant/env/`), without their values.
    pub async fn list(&self, prefix: &str) -> Result<Listing> {
        self.list_request(prefix, false).await
    }

    /// Lists the namespaces of an environment with their values.
    pub async fn list_values(&self, prefix: &str) -> Result<Listing> {
        self.list_request(prefix, true).await
    }

    async fn list_request(&self, prefix: &str, include_values: bool) -> Result<Listing> {
        let prefix = EnvPath::parse(prefix)?.to_string();
        let request = pb::ListRequest {
            prefix: prefix.clone(),
            include_values,
            consistency: pb::Consistency::Linearizable as i32,
            min_revision: 0,
        };
        let max = self.options().max_response_bytes;
        let response = self
            .call(
                CallKind::Read,
                || format!("list {prefix}"),
                request,
                move |ch, r| async move {
                    ConfigClient::new(ch)
                        .max_decoding_message_size(max)
                        .list(r)
                        .await
                },
            )
            .await?;
        Ok(Listing {
            revision: response.header.map(|h| h.revision).unwrap_or(0),
            entries: response
                .entries
                .into_iter()
                .map(NamespaceEntry::from_proto)
                .collect::<Result<_>>()?,
        })
    }

    /// One page of a namespace's history, newest first. `page_size` 0 means the
    /// server's default; `before_version` 0 starts at the newest version,
    /// otherwise the page holds versions strictly below it.
    pub async fn history(
        &self,
        path: &str,
        page_size: u32,
        before_version: u64,
    ) -> Result<HistoryPage> {
        let path = ns_path(path)?;
        let request = pb::HistoryRequest {
            path: path.clone(),
            page_size,
            before_version,
        };
        let max = self.options().max_response_bytes;
        let response = self
            .call(
                CallKind::Read,
                || format!("history {path}"),
                request,
                move |ch, r| async move {
                    ConfigClient::new(ch)
                        .max_decoding_message_size(max)
                        .history(r)
                        .await
                },
            )
            .await?;
        Ok(HistoryPage {
            records: response
                .records
                .into_iter()
                .map(|r| HistoryRecord::from_proto(&path, r))
                .collect::<Result<_>>()?,
            next_before_version: Some(response.next_before_version).filter(|v| *v > 0),
        })
    }

    // ------------------------------------------------------------ writes

    /// Writes a document (a JSON object), unconditionally.
    pub async fn put(&self, path: &str, value: &Value) -> Result<WriteResult> {
        self.put_with(path, value, PutOptions::default()).await
    }

    /// Writes a document with conditions and a history message.
    pub async fn put_with(
        &self,
        path: &str,
        value: &Value,
        options: PutOptions,
    ) -> Result<WriteResult> {
        if !value.is_object() {
            return Err(Error::InvalidArgument(format!(
                "a document must be a JSON object, got {}",
                raftconf_schema::describe_json_value(value)
            )));
        }
        let text = raftconf_schema::canonical_json(value);
        self.put_text(path, &text, Format::Json, options).await
    }

    /// Writes a document given as JSON, YAML or TOML text; the server parses it
    /// and reports a malformed one with its line and column.
    ///
    /// With [`PutOptions::dry_run`] the server only checks the document and
    /// answers with the namespace's current version and the revision of its
    /// last change (0 and 0 if it does not exist); nothing is written, so the
    /// call carries no write id and is retried like a read.
    ///
    /// ```no_run
    /// use raftconf_client::{Client, Format, PutOptions};
    ///
    /// # async fn example() -> Result<(), raftconf_client::Error> {
    /// let client = Client::connect(["127.0.0.1:7070"]).await?;
    /// let yaml = "timeout_ms: 250\nretries: 3\n";
    /// let check = PutOptions::default().dry_run(true);
    /// let now = client.put_text("payments/prod/checkout", yaml, Format::Yaml, check).await?;
    /// println!("valid; the namespace is at version {}", now.version);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn put_text(
        &self,
        path: &str,
        text: &str,
        format: Format,
        options: PutOptions,
    ) -> Result<WriteResult> {
        let path = ns_path(path)?;
        let format = match format {
            Format::Json => pb::DocumentFormat::Json,
            Format::Yaml => pb::DocumentFormat::Yaml,
            Format::Toml => pb::DocumentFormat::Toml,
        };
        // A dry run changes nothing: no write id, and any failure may be retried.
        let (kind, write_id) = if options.dry_run {
            (CallKind::Read, None)
        } else {
            (CallKind::Write, Some(self.next_write_id()))
        };
        let request = pb::PutRequest {
            path: path.clone(),
            value: text.to_string(),
            format: format as i32,
            if_version: options.if_version,
            if_revision: options.if_revision,
            message: options.message,
            write_id,
            dry_run: options.dry_run,
        };
        let response = self
            .call(
                kind,
                || format!("put {path}"),
                request,
                |ch, r| async move { ConfigClient::new(ch).put(r).await },
            )
            .await?;
        Ok(WriteResult {
            revision: response.revision,
            version: response.version,
        })
    }

    /// Deletes a namespace (its version moves on: a delete is a tombstone version).
    ///
    /// A delete has no dry run: [`DeleteOptions::dry_run`] set is refused with
    /// [`Error::InvalidArgument`] before anything is sent.
    pub async fn delete(&self, path: &str, options: DeleteOptions) -> Result<WriteResult> {
        let path = ns_path(path)?;
        if options.dry_run {
            return Err(Error::InvalidArgument(format!(
                "delete {path}: a delete has no dry run"
            )));
        }
        let request = pb::DeleteRequest {
            path: path.clone(),
            if_version: options.if_version,
            if_revision: options.if_revision,
            message: options.message,
            write_id: Some(self.next_write_id()),
        };
        let response = self
            .call(
                CallKind::Write,
                || format!("delete {path}"),
                request,
                |ch, r| async move { ConfigClient::new(ch).delete(r).await },
            )
            .await?;
        Ok(WriteResult {
            revision: response.revision,
            version: response.version,
        })
    }
}

/// Validates a namespace path and returns it as a string.
pub(crate) fn ns_path(path: &str) -> Result<String> {
    Ok(path.parse::<NsPath>()?.to_string())
}
