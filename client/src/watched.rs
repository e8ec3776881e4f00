//! [`Watched<T>`]: one namespace kept current as a typed value, swapped
//! atomically, with a validation hook and refusal reporting.
//!
//! The pieces: [`WatchedBuilder`] collects the hooks; `start` waits for the
//! first good value; a background task feeds every later event to a
//! `Processor`, which decides (deserialize, validate, swap, or refuse); readers
//! only ever touch the `ArcSwap`.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::types::ChangeKind;
use crate::watch::{WatchEvent, WatchStream};
use crate::{Client, Error, Result};

type Validator<T> = Box<dyn Fn(&T) -> std::result::Result<(), Vec<String>> + Send + Sync>;
type ChangeHook<T> = Box<dyn Fn(&Arc<T>, &Arc<T>, u64) + Send + Sync>;
type ErrorHook = Box<dyn Fn(&Error) + Send + Sync>;

/// Where a [`Watched`] gets its events: a [`WatchStream`] in production, a
/// scripted source in tests.
pub(crate) trait EventSource: Send + 'static {
    /// The next event; `None` when the source ended.
    fn next_event(&mut self) -> impl Future<Output = Option<Result<WatchEvent>>> + Send;
    /// The caller applied everything up to `revision`.
    fn ack(&mut self, revision: u64);
    /// The caller refused the document at `revision`.
    fn refuse(&mut self, revision: u64, path: &str, reasons: Vec<String>);
    /// Why the source last had to reconnect, for error messages.
    fn last_error(&self) -> Option<String> {
        None
    }
}

impl EventSource for WatchStream {
    fn next_event(&mut self) -> impl Future<Output = Option<Result<WatchEvent>>> + Send {
        self.next()
    }
    fn ack(&mut self, revision: u64) {
        WatchStream::ack(self, revision)
    }
    fn refuse(&mut self, revision: u64, path: &str, reasons: Vec<String>) {
        WatchStream::refuse(self, revision, path, reasons)
    }
    fn last_error(&self) -> Option<String> {
        WatchStream::last_error(self)
    }
}

/// Configures a [`Watched`]; made by [`Client::watched`].
pub struct WatchedBuilder<T> {
    client: Client,
    path: String,
    hooks: Hooks<T>,
    start_timeout: Duration,
}

impl<T> std::fmt::Debug for WatchedBuilder<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchedBuilder")
            .field("path", &self.path)
            .field("validators", &self.hooks.validators.len())
            .field("start_timeout", &self.start_timeout)
            .finish()
    }
}

struct Hooks<T> {
    /// All must pass for a document to be taken.
    validators: Vec<Validator<T>>,
    on_change: Option<ChangeHook<T>>,
    on_error: Option<ErrorHook>,
}

impl Client {
    /// Starts configuring a [`Watched`] view of the namespace at `path`.
    pub fn watched<T>(&self, path: &str) -> WatchedBuilder<T>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        WatchedBuilder {
            client: self.clone(),
            path: path.to_string(),
            hooks: Hooks {
                validators: Vec::new(),
                on_change: None,
                on_error: None,
            },
            start_timeout: self.options().start_timeout,
        }
    }
}

impl<T> WatchedBuilder<T>
where
    T: DeserializeOwned + Send + Sync + 'static,
{
    /// Adds a validation hook: a document whose value it refuses is not taken
    /// (the old value stays and the refusal is reported). Hooks run in the
    /// order added; all must pass.
    pub fn validate_with<F>(mut self, hook: F) -> Self
    where
        F: Fn(&T) -> std::result::Result<(), String> + Send + Sync + 'static,
    {
        self.hooks.validators.push(Box::new(move |t: &T| {
            hook(t).map_err(|reason| vec![reason])
        }));
        self
    }

    /// Called after each new value is swapped in, with the old value, the new
    /// value and the revision. Runs on the watch task, never on a reader's path;
    /// a slow hook delays later updates, not readers.
    pub fn on_change<F>(mut self, hook: F) -> Self
    where
        F: Fn(&Arc<T>, &Arc<T>, u64) + Send + Sync + 'static,
    {
        self.hooks.on_change = Some(Box::new(hook));
        self
    }

    /// Called for every refused document (does not deserialize, fails
    /// validation, or the namespace was deleted) and if the watch ends with an error.
    pub fn on_error<F>(mut self, hook: F) -> Self
    where
        F: Fn(&Error) + Send + Sync + 'static,
    {
        self.hooks.on_error = Some(Box::new(hook));
        self
    }

    /// Bounds how long [`WatchedBuilder::start`] waits for the first good value
    /// (default: [`crate::ClientOptions::start_timeout`]).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Opens the watch and waits for the first good value. Fails if the
    /// namespace does not exist, its document is refused, or no value arrives
    /// within the start timeout.
    pub async fn start(self) -> Result<Watched<T>> {
        let path = self.path.parse::<raftconf_schema::NsPath>()?.to_string();
        let stream = self.client.watch([path.as_str()], 0).await?;
        start_with(path, stream, self.hooks, self.start_timeout).await
    }
}

impl<T> WatchedBuilder<T>
where
    T: validator::Validate + DeserializeOwned + Send + Sync + 'static,
{
    /// Adds `T`'s `validator::Validate` rules as a validation hook; a refusal
    /// lists every failing field.
    pub fn validate(mut self) -> Self {
        self.hooks.validators.push(Box::new(|t: &T| {
            t.validate().map_err(|e| validation_reasons(&e))
        }));
        self
    }
}

/// One line per failing field of a `validator` result, sorted, with nested
/// fields as `outer.inner` and list items as `items[2].name`, e.g.
/// `workers: range (max=64, min=1, value=0)`.
pub fn validation_reasons(errors: &validator::ValidationErrors) -> Vec<String> {
    let mut out = Vec::new();
    collect_reasons("", errors, &mut out);
    out.sort();
    out
}

fn collect_reasons(prefix: &str, errors: &validator::ValidationErrors, out: &mut Vec<String>) {
    use validator::ValidationErrorsKind as Kind;
    for (field, kind) in errors.errors() {
        let name = if prefix.is_empty() {
            field.to_string()
        } else {
            format!("{prefix}.{field}")
        };
        match kind {
            Kind::Field(list) => {
                for e in list {
                    let what = e.message.as_deref().unwrap_or(&e.code);
                    let mut params: Vec<String> =
                        e.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    params.sort();
                    if params.is_empty() {
                        out.push(format!("{name}: {what}"));
                    } else {
                        out.push(format!("{name}: {what} ({})", params.join(", ")));
                    }
                }
            }
            Kind::Struct(inner) => collect_reasons(&name, inner, out),
            Kind::List(items) => {
                for (i, inner) in items {
                    collect_reasons(&format!("{name}[{i}]"), inner, out);
                }
            }
        }
    }
}

/// A namespace kept current as a `T`: the latest good value, swapped in
/// atomically on every accepted change. Cheap to clone; the background task
/// stops when the last clone is dropped.
///
/// A document that does not deserialize into `T`, fails a validation hook, or
/// is a delete is *refused*: the old value stays, a warning is logged, the
/// `on_error` hook is called, [`Watched::errors`] counts it, and the server is
/// told (a `Refusal` on the watch stream, for delivery tracking).
///
/// # Examples
///
/// ```no_run
/// use std::sync::Arc;
/// use std::time::Duration;
/// use raftconf_client::Client;
/// use serde::Deserialize;
/// use validator::Validate;
///
/// #[derive(Debug, Deserialize, Validate)]
/// struct Checkout {
///     #[validate(range(min = 1, max = 10_000))]
///     timeout_ms: u32,
/// }
///
/// # async fn example() -> Result<(), raftconf_client::Error> {
/// let client = Client::connect(["127.0.0.1:7070"]).await?;
/// let config = client
///     .watched::<Checkout>("payments/prod/checkout")
///     .validate()
///     .on_change(|old: &Arc<Checkout>, new: &Arc<Checkout>, revision| {
///         println!("revision {revision}: {} -> {}", old.timeout_ms, new.timeout_ms)
///     })
///     .on_error(|err| eprintln!("refused: {err}"))
///     .start()
///     .await?;
///
/// // Lock-free, on any thread, as often as you like.
/// let current: Arc<Checkout> = config.load();
/// println!("timeout {} ms (revision {})", current.timeout_ms, config.revision());
///
/// // After a write at revision 42, wait until this process has taken it in.
/// let caught_up = config.wait_for_revision(42, Duration::from_secs(5)).await;
/// # let _ = caught_up;
/// # Ok(())
/// # }
/// ```
pub struct Watched<T> {
    inner: Arc<WatchedInner<T>>,
}

impl<T> Clone for Watched<T> {
    fn clone(&self) -> Self {
        Watched {
            inner: self.inner.clone(),
        }
    }
}

impl<T> std::fmt::Debug for Watched<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watched")
            .field("path", &self.inner.state.path)
            .field("revision", &self.revision())
            .field("errors", &self.errors())
            .finish()
    }
}

/// Owned by the `Watched` clones only: dropping it stops the task.
struct WatchedInner<T> {
    state: Arc<State<T>>,
    task: JoinHandle<()>,
}

impl<T> Drop for WatchedInner<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Shared by the readers and the task.
struct State<T> {
    path: String,
    value: ArcSwap<T>,
    /// The revision of the value in effect.
    revision: AtomicU64,
    /// Refused documents and stream errors so far.
    errors: AtomicU64,
    /// The highest revision processed, taken or not.
    processed: watch::Sender<u64>,
}

impl<T> Watched<T> {
    /// The current value. Lock-free; never a half-applied configuration.
    pub fn load(&self) -> Arc<T> {
        self.inner.state.value.load_full()
    }

    /// The revision of the value in effect (the revision that wrote it).
    pub fn revision(&self) -> u64 {
        self.inner.state.revision.load(Ordering::Acquire)
    }

    /// The highest revision processed so far, whether it changed the value or
    /// not (refused documents and unrelated revisions count).
    pub fn processed_revision(&self) -> u64 {
        *self.inner.state.processed.borrow()
    }

    /// How many documents were refused (plus stream errors) since start.
    pub fn errors(&self) -> u64 {
        self.inner.state.errors.load(Ordering::Relaxed)
    }

    /// The namespace watched.
    pub fn path(&self) -> &str {
        &self.inner.state.path
    }

    /// Whether the background task still runs (it stops after a final error).
    pub fn is_running(&self) -> bool {
        !self.inner.task.is_finished()
    }

    /// Waits until revision `revision` has been processed (taken, refused, or
    /// not about this namespace). `false` if `timeout` passed first.
    pub async fn wait_for_revision(&self, revision: u64, timeout: Duration) -> bool {
        let mut processed = self.inner.state.processed.subscribe();
        let reached = tokio::time::timeout(timeout, processed.wait_for(|r| *r >= revision))
            .await
            .is_ok_and(|r| r.is_ok());
        reached
    }
}

/// What one event did to the value.
#[derive(Debug)]
enum Verdict {
    /// A new value was swapped in.
    Taken,
    /// Nothing about this namespace, or the same document again.
    Unchanged,
    /// The document was refused; the old value stays.
    Refused(Error),
}

/// Decides what each event does; owned by the task.
struct Processor<T> {
    state: Arc<State<T>>,
    hooks: Hooks<T>,
}

/// Deserializes and validates a document of `path` at `revision`.
fn accept<T: DeserializeOwned>(
    hooks: &Hooks<T>,
    path: &str,
    revision: u64,
    value: Option<&Value>,
) -> Result<T> {
    let value = value.ok_or_else(|| Error::Deserialize {
        path: path.to_string(),
        revision,
        message: "the document is missing or unreadable".into(),
    })?;
    let typed = T::deserialize(value).map_err(|e| Error::Deserialize {
        path: path.to_string(),
        revision,
        message: e.to_string(),
    })?;
    let mut reasons = Vec::new();
    for validator in &hooks.validators {
        match catch_unwind(AssertUnwindSafe(|| validator(&typed))) {
            Ok(Ok(())) => {}
            Ok(Err(mut r)) => reasons.append(&mut r),
            Err(_) => reasons.push("the validation hook panicked".into()),
        }
    }
    if reasons.is_empty() {
        Ok(typed)
    } else {
        Err(Error::Validation {
            path: path.to_string(),
            revision,
            reasons,
        })
    }
}

/// The reasons sent to the server with a refusal.
fn refusal_reasons(err: &Error) -> Vec<String> {
    match err {
        Error::Validation { reasons, .. } => reasons.clone(),
        Error::Deserialize { message, .. } => vec![format!("does not deserialize: {message}")],
        Error::Deleted { .. } => vec!["the namespace was deleted".into()],
        other => vec![other.to_string()],
    }
}

/// The revision of the refused document (the revision that wrote it, which is
/// older than the event's for a snapshot entry).
fn refused_revision(err: &Error) -> Option<u64> {
    match err {
        Error::Validation { revision, .. }
        | Error::Deserialize { revision, .. }
        | Error::Deleted { revision, .. } => Some(*revision),
        _ => None,
    }
}

/// The document an event holds for `path`: `Some(Some(value))` for a put or a
/// snapshot entry (with the revision that wrote it), `Some(None)` for a delete
/// or absence from a snapshot, `None` if the event says nothing about `path`.
fn document_in<'e>(event: &'e WatchEvent, path: &str) -> Option<Option<(Option<&'e Value>, u64)>> {
    match event {
        WatchEvent::Snapshot { entries, .. } => Some(
            entries
                .iter()
                .find(|e| e.path == path)
                .map(|e| (e.value.as_ref(), e.mod_revision)),
        ),
        WatchEvent::Change {
            revision, changes, ..
        } => {
            let change = changes.iter().rev().find(|c| c.path == path)?;
            match change.kind {
                ChangeKind::Put => Some(Some((change.value.as_ref(), *revision))),
                ChangeKind::Delete => Some(None),
                _ => None,
            }
        }
        WatchEvent::Progress { .. } => None,
    }
}

impl<T: DeserializeOwned + Send + Sync + 'static> Processor<T> {
    fn handle(&self, event: &WatchEvent) -> Verdict {
        let path = &self.state.path;
        let revision = event.revision();
        match document_in(event, path) {
            None => Verdict::Unchanged,
            Some(None) => Verdict::Refused(Error::Deleted {
                path: path.clone(),
                revision,
            }),
            Some(Some((_, written))) if written == self.revision() => Verdict::Unchanged,
            Some(Some((value, written))) => match accept(&self.hooks, path, written, value) {
                Ok(typed) => {
                    let new = Arc::new(typed);
                    let old = self.state.value.swap(new.clone());
                    self.state.revision.store(written, Ordering::Release);
                    tracing::info!(path = %path, revision = written, "configuration reloaded");
                    if let Some(hook) = &self.hooks.on_change {
                        if catch_unwind(AssertUnwindSafe(|| hook(&old, &new, written))).is_err() {
                            tracing::error!(path = %path, revision = written, "on_change hook panicked");
                        }
                    }
                    Verdict::Taken
                }
                Err(err) => Verdict::Refused(err),
            },
        }
    }

    fn revision(&self) -> u64 {
        self.state.revision.load(Ordering::Acquire)
    }

    /// Logs, counts and reports an error to the `on_error` hook.
    fn report(&self, err: &Error) {
        tracing::warn!(
            path = %self.state.path,
            error = %err,
            "configuration refused; keeping the last good value"
        );
        self.state.errors.fetch_add(1, Ordering::Relaxed);
        if let Some(hook) = &self.hooks.on_error {
            if catch_unwind(AssertUnwindSafe(|| hook(err))).is_err() {
                tracing::error!(path = %self.state.path, "on_error hook panicked");
            }
        }
    }

    fn processed(&self, revision: u64) {
        self.state.processed.send_if_modified(|r| {
            let newer = revision > *r;
            if newer {
                *r = revision;
            }
            newer
        });
    }

    /// Feeds every event after the first value until the source ends.
    async fn run<S: EventSource>(self, mut source: S) {
        while let Some(item) = source.next_event().await {
            match item {
                Ok(event) => {
                    let revision = event.revision();
                    match self.handle(&event) {
                        Verdict::Refused(err) => {
                            self.report(&err);
                            let refused = refused_revision(&err).unwrap_or(revision);
                            source.refuse(refused, &self.state.path, refusal_reasons(&err));
                        }
                        Verdict::Taken | Verdict::Unchanged => source.ack(revision),
                    }
                    self.processed(revision);
                }
                Err(err) => self.report(&err),
            }
        }
        tracing::warn!(path = %self.state.path, "watch ended; the last value stays in effect");
    }
}

/// Waits for the first good value from `source`, then spawns the task.
async fn start_with<T, S>(
    path: String,
    mut source: S,
    hooks: Hooks<T>,
    timeout: Duration,
) -> Result<Watched<T>>
where
    T: DeserializeOwned + Send + Sync + 'static,
    S: EventSource,
{
    let first = tokio::time::timeout(timeout, first_value(&path, &mut source, &hooks)).await;
    let (value, written, processed) = match first {
        Ok(result) => result?,
        Err(_) => {
            let cause = source
                .last_error()
                .map(|e| format!(" (last error: {e})"))
                .unwrap_or_default();
            return Err(Error::Timeout(format!(
                "no value for {path} within {timeout:?}{cause}"
            )));
        }
    };
    source.ack(processed);
    tracing::info!(path = %path, revision = written, "configuration loaded");
    let (processed_tx, _) = watch::channel(processed);
    let state = Arc::new(State {
        path,
        value: ArcSwap::from_pointee(value),
        revision: AtomicU64::new(written),
        errors: AtomicU64::new(0),
        processed: processed_tx,
    });
    let processor = Processor {
        state: state.clone(),
        hooks,
    };
    let task = tokio::spawn(processor.run(source));
    Ok(Watched {
        inner: Arc::new(WatchedInner { state, task }),
    })
}

/// The first value: from the opening snapshot (or a put, should the server
/// start with changes). Returns the value, the revision that wrote it, and the
/// revision processed.
async fn first_value<T, S>(path: &str, source: &mut S, hooks: &Hooks<T>) -> Result<(T, u64, u64)>
where
    T: DeserializeOwned,
    S: EventSource,
{
    loop {
        let event = match source.next_event().await {
            Some(event) => event?,
            None => {
                return Err(Error::Unavailable(format!(
                    "the watch of {path} ended before the first value"
                )))
            }
        };
        let revision = event.revision();
        match document_in(&event, path) {
            None => continue,
            Some(None) => {
                return Err(Error::NotFound(format!(
                    "{path} does not exist at revision {revision}"
                )))
            }
            Some(Some((value, written))) => {
                return match accept(hooks, path, written, value) {
                    Ok(typed) => Ok((typed, written, revision)),
                    Err(err) => {
                        let refused = refused_revision(&err).unwrap_or(revision);
                        source.refuse(refused, path, refusal_reasons(&err));
                        Err(err)
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "watched_tests.rs"]
mod tests;
