//! [`Watched<T>`]: one namespace, or several of one environment, kept
//! current as a typed value, swapped atomically, with validation hooks and
//! refusal reporting.
//!
//! The pieces: [`WatchedBuilder`] collects the hooks; `start` waits for the
//! first good value; a background task feeds every later event to a
//! `Tracker` (which documents changed, does the new value deserialize and
//! validate) and swaps or refuses; readers only ever touch the `ArcSwap`.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cache::{self, CachedConfig};
use crate::file_source::FileSource;
use crate::view::{changed_paths, view_revision, Shape, View};
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

/// Configures a [`Watched`]; made by [`Client::watched`],
/// [`Client::watched_set`] or [`Watched::from_file`].
pub struct WatchedBuilder<T> {
    origin: Origin,
    /// The paths and prefixes asked for; checked by `start`.
    targets: Vec<String>,
    hooks: Hooks<T>,
    start_timeout: Duration,
    cache_dir: Option<PathBuf>,
}

/// Where a builder's events come from.
enum Origin {
    Server(Client),
    File(PathBuf),
}

impl<T> std::fmt::Debug for WatchedBuilder<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchedBuilder")
            .field("targets", &self.targets)
            .field("validators", &self.hooks.validators.len())
            .field("start_timeout", &self.start_timeout)
            .field("cache_dir", &self.cache_dir)
            .finish()
    }
}

struct Hooks<T> {
    /// All must pass for a document to be taken.
    validators: Vec<Validator<T>>,
    on_change: Option<ChangeHook<T>>,
    on_error: Option<ErrorHook>,
}

impl<T> Default for Hooks<T> {
    fn default() -> Self {
        Hooks {
            validators: Vec::new(),
            on_change: None,
            on_error: None,
        }
    }
}

impl Client {
    /// Starts configuring a [`Watched`] view of the namespace at `path`
    /// (`tenant/env/namespace`: `T` is its document), or of every namespace
    /// of an environment (`tenant/env/`: `T` is read from an object keyed by
    /// namespace name, as for [`Client::watched_set`]).
    pub fn watched<T>(&self, path: &str) -> WatchedBuilder<T>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        self.watched_set([path])
    }

    /// Starts configuring one [`Watched`] value over several namespaces of one
    /// environment, given as paths and/or the `tenant/env/` prefix. `T` is
    /// read from a JSON object whose keys are the namespace names and whose
    /// values are their documents (a namespace that does not exist is absent:
    /// use `Option` or `#[serde(default)]` for ones that may be missing). It
    /// changes atomically per revision: a transaction that publishes two of
    /// the namespaces is never seen half applied.
    ///
    /// ```no_run
    /// use raftconf_client::Client;
    /// use serde::Deserialize;
    ///
    /// #[derive(Deserialize)]
    /// struct Checkout { timeout_ms: u32 }
    /// #[derive(Deserialize)]
    /// struct Limits { max_items: u32 }
    /// #[derive(Deserialize)]
    /// struct Service { checkout: Checkout, limits: Limits }
    ///
    /// # async fn example() -> Result<(), raftconf_client::Error> {
    /// let client = Client::connect(["127.0.0.1:7070"]).await?;
    /// let config = client
    ///     .watched_set::<Service>(["payments/prod/checkout", "payments/prod/limits"])
    ///     .start()
    ///     .await?;
    /// let now = config.load();
    /// println!("{} ms, {} items", now.checkout.timeout_ms, now.limits.max_items);
    /// # Ok(())
    /// # }
    /// ```
    pub fn watched_set<T>(
        &self,
        targets: impl IntoIterator<Item = impl Into<String>>,
    ) -> WatchedBuilder<T>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        WatchedBuilder {
            origin: Origin::Server(self.clone()),
            targets: targets.into_iter().map(Into::into).collect(),
            hooks: Hooks::default(),
            start_timeout: self.options().start_timeout,
            cache_dir: None,
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
    /// validation, or the namespace was deleted) and for stream errors.
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

    /// Keeps the last good documents and their revision in a cache file in
    /// `dir`, replaced atomically (temp file, rename) before each new value
    /// is swapped in, so a restarted process never starts from a value older
    /// than one it already exposed; the fsync follows, off the reload path
    /// (after a machine crash the file may be an older one, or damaged and
    /// then ignored). When no server answers within the start timeout,
    /// [`WatchedBuilder::start`] starts from the cache instead
    /// ([`WatchedStats::from_cache`]), keeps trying in the background, and
    /// resumes the watch right after the cached revision when a server
    /// answers. A damaged cache file is ignored with a warning, never loaded.
    /// Several handles may share a directory (one file per subscription).
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Opens the watch and waits for the first good value. Fails if the
    /// namespace does not exist, its document is refused, or no value arrives
    /// within the start timeout (and there is no usable cache).
    pub async fn start(self) -> Result<Watched<T>> {
        let WatchedBuilder {
            origin,
            targets,
            hooks,
            start_timeout,
            cache_dir,
        } = self;
        match origin {
            Origin::File(file) => {
                let source = FileSource::open(&file)?;
                let shape = Shape::One(source.label().to_string());
                start_with(shape, source, hooks, start_timeout, Arc::default()).await
            }
            Origin::Server(client) => {
                let shape = Shape::for_targets(&targets)?;
                let cache = cache_dir.map(|dir| CacheSpec {
                    dir,
                    subscription: shape.label(),
                });
                start_server(client, shape, hooks, start_timeout, cache).await
            }
        }
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

/// A namespace (or several of one environment) kept current as a `T`: the
/// latest good value, swapped in atomically on every accepted change. Cheap
/// to clone; the background task stops when the last clone is dropped.
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
            .field("path", &self.inner.state.label)
            .field("stats", &self.stats())
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

/// The value in effect and the revision it stands for, swapped as one.
struct Current<T> {
    value: Arc<T>,
    revision: u64,
}

impl<T> Watched<T>
where
    T: DeserializeOwned + Send + Sync + 'static,
{
    /// Starts configuring a `Watched` fed from a local JSON, YAML or TOML
    /// file (by extension) instead of a cluster: for development, tests and
    /// sidecars. The file is watched with `notify` (its directory, so editors
    /// that save by renaming a temp file over it are seen too); every version
    /// that parses, deserializes and validates is swapped in, one that does
    /// not is refused with the line and column of a syntax error and the old
    /// value stays. Revisions are local: 1 for the first read, then one more
    /// per version read. `cache_dir` does not apply.
    ///
    /// ```no_run
    /// use raftconf_client::Watched;
    ///
    /// #[derive(serde::Deserialize)]
    /// struct AppConfig { workers: u32 }
    ///
    /// # async fn example() -> Result<(), raftconf_client::Error> {
    /// let config = Watched::<AppConfig>::from_file("/etc/app/config.yaml")
    ///     .on_error(|err| eprintln!("refused: {err}"))
    ///     .start()
    ///     .await?;
    /// println!("{} workers", config.load().workers);
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_file(path: impl Into<PathBuf>) -> WatchedBuilder<T> {
        WatchedBuilder {
            origin: Origin::File(path.into()),
            targets: Vec::new(),
            hooks: Hooks::default(),
            start_timeout: crate::ClientOptions::default().start_timeout,
            cache_dir: None,
        }
    }
}

/// The value in effect when [`Watched::read`] was called, borrowed.
pub struct ReadGuard<T> {
    guard: arc_swap::Guard<Arc<Current<T>>>,
}

impl<T> ReadGuard<T> {
    /// The revision this value stands for.
    pub fn revision(&self) -> u64 {
        self.guard.revision
    }
}

impl<T> std::ops::Deref for ReadGuard<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard.value
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for ReadGuard<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadGuard")
            .field("revision", &self.revision())
            .field("value", &**self)
            .finish()
    }
}

/// Shared by the readers and the task.
struct State<T> {
    /// The path, or the targets joined by commas.
    label: String,
    current: ArcSwap<Current<T>>,
    /// Values swapped in after the first.
    reloads: AtomicU64,
    /// Documents refused.
    refusals: AtomicU64,
    /// Errors of the source (a refused subscription, an unreadable file).
    stream_errors: AtomicU64,
    /// Broken connections the watch resumed from.
    reconnects: Arc<AtomicU64>,
    /// The value came from the local cache and no server has answered since.
    from_cache: AtomicBool,
    /// The highest revision processed, taken or not.
    processed: watch::Sender<u64>,
}

/// Counters of a [`Watched`], for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct WatchedStats {
    /// The revision of the value in effect.
    pub revision: u64,
    /// The highest revision processed (taken, refused, or not about this value).
    pub processed_revision: u64,
    /// New values swapped in since start.
    pub reloads: u64,
    /// Documents refused since start (did not deserialize, failed
    /// validation, or were deletes).
    pub refusals: u64,
    /// Errors of the source itself (a subscription the server refused, a
    /// local file that does not parse).
    pub stream_errors: u64,
    /// Times the watch lost its server and resumed on another (or the same).
    pub reconnects: u64,
    /// Whether the value in effect came from the local cache and no server
    /// has answered yet.
    pub from_cache: bool,
}

impl<T> Watched<T> {
    /// The current value. Lock-free and allocation-free; never a half-applied
    /// configuration.
    pub fn load(&self) -> Arc<T> {
        self.inner.state.current.load().value.clone()
    }

    /// Borrows the current value without touching its reference count: the
    /// cheapest read when many threads read at once (no shared counter
    /// bouncing between cores). Keep the guard briefly, e.g. for one request:
    /// it keeps its value alive, and a thread holding many guards at once
    /// falls back to a slower path.
    ///
    /// ```no_run
    /// # async fn example(config: raftconf_client::Watched<serde_json::Value>) {
    /// let current = config.read();
    /// println!("revision {}: {}", current.revision(), *current);
    /// # }
    /// ```
    pub fn read(&self) -> ReadGuard<T> {
        ReadGuard {
            guard: self.inner.state.current.load(),
        }
    }

    /// The current value and the revision it stands for, read together (two
    /// separate calls to [`Watched::load`] and [`Watched::revision`] may
    /// straddle a swap).
    pub fn load_with_revision(&self) -> (Arc<T>, u64) {
        let current = self.inner.state.current.load();
        (current.value.clone(), current.revision)
    }

    /// The revision of the value in effect: the newest revision that wrote
    /// one of its documents. The committed state at this revision is exactly
    /// the value.
    pub fn revision(&self) -> u64 {
        self.inner.state.current.load().revision
    }

    /// The highest revision processed so far, whether it changed the value or
    /// not (refused documents and unrelated revisions count).
    pub fn processed_revision(&self) -> u64 {
        *self.inner.state.processed.borrow()
    }

    /// How many documents were refused, plus source errors, since start.
    pub fn errors(&self) -> u64 {
        let s = &self.inner.state;
        s.refusals.load(Ordering::Relaxed) + s.stream_errors.load(Ordering::Relaxed)
    }

    /// Counters and the current revision, for metrics.
    pub fn stats(&self) -> WatchedStats {
        let s = &self.inner.state;
        WatchedStats {
            revision: self.revision(),
            processed_revision: self.processed_revision(),
            reloads: s.reloads.load(Ordering::Relaxed),
            refusals: s.refusals.load(Ordering::Relaxed),
            stream_errors: s.stream_errors.load(Ordering::Relaxed),
            reconnects: s.reconnects.load(Ordering::Relaxed),
            from_cache: s.from_cache.load(Ordering::Acquire),
        }
    }

    /// What is watched: the namespace path, or the targets joined by commas.
    pub fn path(&self) -> &str {
        &self.inner.state.label
    }

    /// Whether the background task still runs (it stops when its source ends).
    pub fn is_running(&self) -> bool {
        !self.inner.task.is_finished()
    }

    /// Waits until revision `revision` has been processed (taken, refused, or
    /// not about this value). `false` if `timeout` passed first.
    pub async fn wait_for_revision(&self, revision: u64, timeout: Duration) -> bool {
        let mut processed = self.inner.state.processed.subscribe();
        let reached = tokio::time::timeout(timeout, processed.wait_for(|r| *r >= revision))
            .await
            .is_ok_and(|r| r.is_ok());
        reached
    }
}

/// What one event does to the value.
enum Decision<T> {
    /// A new value to swap in.
    Take(T),
    /// Nothing about the followed documents, or the same documents again.
    Unchanged,
    /// Refused; the old value stays. The documents to report, with the
    /// revision of each.
    Refuse(Error, Vec<(String, u64)>),
}

/// Follows the documents and decides; owned by whoever processes events.
struct Tracker<T> {
    shape: Shape,
    hooks: Hooks<T>,
    /// The followed documents as of the last event processed.
    view: View,
    /// The documents of the value in effect.
    taken: View,
}

impl<T: DeserializeOwned> Tracker<T> {
    fn new(shape: Shape, hooks: Hooks<T>) -> Self {
        Tracker {
            shape,
            hooks,
            view: View::new(),
            taken: View::new(),
        }
    }

    /// Deserializes and validates the value of `view`.
    fn accept(&self, view: &View, revision: u64, starting: bool) -> Result<T> {
        let label = self.shape.label();
        let at = match self.shape {
            Shape::One(_) => view_revision(view),
            Shape::Set { .. } => revision,
        };
        let value = self.shape.value_of(view, revision, starting)?;
        let typed = T::deserialize(&value).map_err(|e| Error::Deserialize {
            path: label.clone(),
            revision: at,
            message: e.to_string(),
        })?;
        let mut reasons = Vec::new();
        for validator in &self.hooks.validators {
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
                path: label,
                revision: at,
                reasons,
            })
        }
    }

    /// What `event` does. The view always follows the server; the taken
    /// documents only when the new value is accepted.
    fn decide(&mut self, event: &WatchEvent) -> Decision<T> {
        let Some(next) = self.shape.apply(&self.view, event) else {
            return Decision::Unchanged;
        };
        let previous = std::mem::replace(&mut self.view, next);
        if self.view == self.taken {
            return Decision::Unchanged;
        }
        let revision = event.revision();
        // A refusal is reported for what this event changed, not again for
        // documents refused before.
        let changed = changed_paths(&previous, &self.view, revision);
        if let Some(gone) = self.taken.keys().find(|p| !self.view.contains_key(*p)) {
            let err = Error::Deleted {
                path: gone.clone(),
                revision,
            };
            return Decision::Refuse(err, changed);
        }
        match self.accept(&self.view, revision, false) {
            Ok(typed) => {
                self.taken = self.view.clone();
                Decision::Take(typed)
            }
            Err(err) => Decision::Refuse(err, changed),
        }
    }
}

/// The reasons sent to the server with a refusal.
fn refusal_reasons(err: &Error) -> Vec<String> {
    match err {
        Error::Validation { reasons, .. } => reasons.clone(),
        Error::Deserialize { message, .. } => vec![format!("does not deserialize: {message}")],
        Error::Deleted { path, .. } => vec![format!("namespace {path} was deleted")],
        other => vec![other.to_string()],
    }
}

/// Tells the source about a refusal, once per document concerned.
fn send_refusals<S: EventSource>(source: &mut S, err: &Error, paths: &[(String, u64)]) {
    let reasons = refusal_reasons(err);
    for (path, revision) in paths {
        source.refuse(*revision, path, reasons.clone());
    }
}

/// The task: every event after the first value, until the source ends.
struct Task<T> {
    state: Arc<State<T>>,
    tracker: Tracker<T>,
    cache: Option<CacheSpec>,
}

impl<T: DeserializeOwned + Send + Sync + 'static> Task<T> {
    /// Swaps in a new value and runs the `on_change` hook.
    fn swap(&self, typed: T) {
        let revision = view_revision(&self.tracker.taken);
        let new = Arc::new(typed);
        let old = self.state.current.swap(Arc::new(Current {
            value: new.clone(),
            revision,
        }));
        self.state.reloads.fetch_add(1, Ordering::Relaxed);
        tracing::info!(path = %self.state.label, revision, "configuration reloaded");
        if let Some(hook) = &self.tracker.hooks.on_change {
            if catch_unwind(AssertUnwindSafe(|| hook(&old.value, &new, revision))).is_err() {
                tracing::error!(path = %self.state.label, revision, "on_change hook panicked");
            }
        }
    }

    /// Logs an error and passes it to the `on_error` hook.
    fn report(&self, err: &Error) {
        tracing::warn!(
            path = %self.state.label,
            error = %err,
            "configuration refused; keeping the last good value"
        );
        if let Some(hook) = &self.tracker.hooks.on_error {
            if catch_unwind(AssertUnwindSafe(|| hook(err))).is_err() {
                tracing::error!(path = %self.state.label, "on_error hook panicked");
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

    /// Puts the taken documents, as of event revision `revision`, in the
    /// cache file (renamed into place, not yet fsynced).
    async fn save_visible(&self, revision: u64) -> Option<cache::Unsynced> {
        let cache = self.cache.as_ref()?;
        let config = CachedConfig {
            subscription: cache.subscription.clone(),
            revision,
            documents: self.tracker.taken.clone(),
        };
        let dir = cache.dir.clone();
        match tokio::task::spawn_blocking(move || cache::write_visible(&dir, &config)).await {
            Ok(Ok(unsynced)) => Some(unsynced),
            Ok(Err(e)) => {
                tracing::warn!(
                    path = %self.state.label,
                    dir = %cache.dir.display(),
                    error = %e,
                    "could not write the cache file"
                );
                None
            }
            Err(e) => {
                tracing::warn!(path = %self.state.label, error = %e, "cache write failed");
                None
            }
        }
    }

    /// Processes events until the source ends.
    async fn run<S: EventSource>(mut self, mut source: S) {
        while let Some(item) = source.next_event().await {
            match item {
                Ok(event) => {
                    let revision = event.revision();
                    match self.tracker.decide(&event) {
                        Decision::Take(typed) => {
                            // In the cache before it is swapped in: a process
                            // killed at any point restarts from a value at
                            // least as new as any it exposed, never older.
                            // The fsync (for machine crashes) runs after the
                            // swap, off the reload path.
                            let unsynced = self.save_visible(revision).await;
                            self.swap(typed);
                            source.ack(revision);
                            if let Some(unsynced) = unsynced {
                                let label = self.state.label.clone();
                                tokio::task::spawn_blocking(move || {
                                    if let Err(e) = unsynced.sync() {
                                        tracing::warn!(path = %label, error = %e, "could not fsync the cache file");
                                    }
                                });
                            }
                        }
                        Decision::Unchanged => source.ack(revision),
                        Decision::Refuse(err, paths) => {
                            self.state.refusals.fetch_add(1, Ordering::Relaxed);
                            self.report(&err);
                            send_refusals(&mut source, &err, &paths);
                        }
                    }
                    self.state.from_cache.store(false, Ordering::Release);
                    self.processed(revision);
                }
                Err(err) => {
                    self.state.stream_errors.fetch_add(1, Ordering::Relaxed);
                    self.report(&err);
                }
            }
        }
        tracing::warn!(path = %self.state.label, "watch ended; the last value stays in effect");
    }
}

/// Where a handle keeps its cache file.
#[derive(Debug, Clone)]
struct CacheSpec {
    dir: PathBuf,
    subscription: String,
}

/// The error of a start that got no value in time.
fn timed_out(label: &str, timeout: Duration, last_error: Option<String>) -> Error {
    let cause = last_error
        .map(|e| format!(" (last error: {e})"))
        .unwrap_or_default();
    Error::Timeout(format!("no value for {label} within {timeout:?}{cause}"))
}

/// The first value and the revision processed, or `None` if `timeout`
/// passed first.
async fn first_in_time<T, S>(
    tracker: &mut Tracker<T>,
    source: &mut S,
    timeout: Duration,
    floor: u64,
) -> Result<Option<(T, u64)>>
where
    T: DeserializeOwned,
    S: EventSource,
{
    match tokio::time::timeout(timeout, first_value(tracker, source, floor)).await {
        Ok(first) => first.map(Some),
        Err(_) => Ok(None),
    }
}

/// Waits for the first good value from `source`, then spawns the task.
async fn start_with<T, S>(
    shape: Shape,
    mut source: S,
    hooks: Hooks<T>,
    timeout: Duration,
    reconnects: Arc<AtomicU64>,
) -> Result<Watched<T>>
where
    T: DeserializeOwned + Send + Sync + 'static,
    S: EventSource,
{
    let mut tracker = Tracker::new(shape, hooks);
    match first_in_time(&mut tracker, &mut source, timeout, 0).await? {
        Some((value, processed)) => {
            source.ack(processed);
            Ok(spawn_task(
                tracker, source, value, processed, reconnects, None, false,
            ))
        }
        None => Err(timed_out(
            &tracker.shape.label(),
            timeout,
            source.last_error(),
        )),
    }
}

/// A server-fed handle: the first value from a server within `timeout`, or
/// else from the cache (then the watch resumes right after its revision).
async fn start_server<T>(
    client: Client,
    shape: Shape,
    hooks: Hooks<T>,
    timeout: Duration,
    cache: Option<CacheSpec>,
) -> Result<Watched<T>>
where
    T: DeserializeOwned + Send + Sync + 'static,
{
    let label = shape.label();
    // Read first: a server behind the cached revision must not be taken.
    let cached = match &cache {
        Some(cache) => match cache::read(&cache.dir, &cache.subscription) {
            Ok(cached) => cached,
            Err(e) => {
                tracing::warn!(path = %label, error = %e, "ignoring the cache file");
                None
            }
        },
        None => None,
    };
    let floor = cached.as_ref().map_or(0, |c| c.revision);
    let reconnects = Arc::new(AtomicU64::new(0));
    let targets = shape.targets();
    let mut stream = client
        .watch_counted(targets.clone(), 0, reconnects.clone())
        .await?;
    let mut tracker = Tracker::new(shape, hooks);
    if let Some((value, processed)) =
        first_in_time(&mut tracker, &mut stream, timeout, floor).await?
    {
        stream.ack(processed);
        if let Some(cache) = &cache {
            save(cache, &label, processed, &tracker.taken).await;
        }
        return Ok(spawn_task(
            tracker, stream, value, processed, reconnects, cache, false,
        ));
    }
    let error = timed_out(&label, timeout, stream.last_error());
    let (Some(cache), Some(cached)) = (cache, cached) else {
        return Err(error);
    };
    tracker.view = cached.documents;
    let value = match tracker.accept(&tracker.view, cached.revision, true) {
        Ok(value) => value,
        Err(e) => {
            tracing::warn!(
                path = %label,
                error = %e,
                "ignoring the cache file: this process refuses its configuration"
            );
            return Err(error);
        }
    };
    tracker.taken = tracker.view.clone();
    drop(stream);
    tracing::warn!(
        path = %label,
        revision = cached.revision,
        %error,
        "starting from the cache; the watch resumes after its revision when a server answers"
    );
    let stream = client
        .watch_counted(targets.clone(), cached.revision + 1, reconnects.clone())
        .await?;
    let source = ResumeSource {
        client,
        targets,
        reconnects: reconnects.clone(),
        stream,
        delivered: false,
    };
    Ok(spawn_task(
        tracker,
        source,
        value,
        cached.revision,
        reconnects,
        Some(cache),
        true,
    ))
}

/// Writes `documents`, taken at event revision `revision`, to the cache (on a
/// blocking thread: it fsyncs). A failure is logged: the handle works on.
async fn save(cache: &CacheSpec, label: &str, revision: u64, documents: &View) {
    let config = CachedConfig {
        subscription: cache.subscription.clone(),
        revision,
        documents: documents.clone(),
    };
    let dir = cache.dir.clone();
    match tokio::task::spawn_blocking(move || cache::write(&dir, &config)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(
            path = %label,
            dir = %cache.dir.display(),
            error = %e,
            "could not write the cache file"
        ),
        Err(e) => tracing::warn!(path = %label, error = %e, "cache write failed"),
    }
}

/// Starts the task that processes every later event.
fn spawn_task<T, S>(
    tracker: Tracker<T>,
    source: S,
    value: T,
    processed: u64,
    reconnects: Arc<AtomicU64>,
    cache: Option<CacheSpec>,
    from_cache: bool,
) -> Watched<T>
where
    T: DeserializeOwned + Send + Sync + 'static,
    S: EventSource,
{
    let label = tracker.shape.label();
    let revision = view_revision(&tracker.taken);
    tracing::info!(path = %label, revision, from_cache, "configuration loaded");
    let state = Arc::new(State {
        label,
        current: ArcSwap::from_pointee(Current {
            value: Arc::new(value),
            revision,
        }),
        reloads: AtomicU64::new(0),
        refusals: AtomicU64::new(0),
        stream_errors: AtomicU64::new(0),
        reconnects,
        from_cache: AtomicBool::new(from_cache),
        processed: watch::channel(processed).0,
    });
    let task = Task {
        state: state.clone(),
        tracker,
        cache,
    };
    let task = tokio::spawn(task.run(source));
    Watched {
        inner: Arc::new(WatchedInner { state, task }),
    }
}

/// A watch resumed after a cached revision. Should the servers refuse to
/// resume there before anything arrived (their history was rebuilt, say), it
/// starts over from their current state instead.
struct ResumeSource {
    client: Client,
    targets: Vec<String>,
    reconnects: Arc<AtomicU64>,
    stream: WatchStream,
    delivered: bool,
}

impl ResumeSource {
    async fn next(&mut self) -> Option<Result<WatchEvent>> {
        loop {
            match self.stream.next().await {
                Some(Err(err)) if !self.delivered => {
                    tracing::warn!(
                        error = %err,
                        "the servers cannot resume after the cached revision; starting over from their state"
                    );
                    self.delivered = true;
                    match self
                        .client
                        .watch_counted(self.targets.clone(), 0, self.reconnects.clone())
                        .await
                    {
                        Ok(stream) => self.stream = stream,
                        Err(e) => return Some(Err(e)),
                    }
                }
                Some(Ok(event)) => {
                    self.delivered = true;
                    return Some(Ok(event));
                }
                other => return other,
            }
        }
    }
}

impl EventSource for ResumeSource {
    fn next_event(&mut self) -> impl Future<Output = Option<Result<WatchEvent>>> + Send {
        self.next()
    }
    fn ack(&mut self, revision: u64) {
        self.stream.ack(revision)
    }
    fn refuse(&mut self, revision: u64, path: &str, reasons: Vec<String>) {
        self.stream.refuse(revision, path, reasons)
    }
    fn last_error(&self) -> Option<String> {
        self.stream.last_error()
    }
}

/// The first value: from the opening snapshot (or a put, should the server
/// start with changes). Returns the value and the revision processed.
///
/// Nothing older than revision `floor` is taken: a handle that already
/// exposed the state at `floor` (its cache says so) must not start from a
/// node that is behind it. Such a node's events build the view up until it
/// reaches `floor`.
async fn first_value<T, S>(tracker: &mut Tracker<T>, source: &mut S, floor: u64) -> Result<(T, u64)>
where
    T: DeserializeOwned,
    S: EventSource,
{
    let mut have_view = false;
    loop {
        let event = match source.next_event().await {
            Some(event) => event?,
            None => {
                return Err(Error::Unavailable(format!(
                    "the watch of {} ended before the first value",
                    tracker.shape.label()
                )))
            }
        };
        let revision = event.revision();
        if let Some(view) = tracker.shape.apply(&tracker.view, &event) {
            tracker.view = view;
            have_view = true;
        }
        if !have_view {
            continue;
        }
        if revision < floor {
            tracing::debug!(
                revision,
                floor,
                "this server is behind the cached revision; waiting for it to catch up"
            );
            continue;
        }
        return match tracker.accept(&tracker.view, revision, true) {
            Ok(typed) => {
                tracker.taken = tracker.view.clone();
                Ok((typed, revision))
            }
            Err(err) => {
                let paths = changed_paths(&tracker.taken, &tracker.view, revision);
                send_refusals(source, &err, &paths);
                Err(err)
            }
        };
    }
}

#[cfg(test)]
#[path = "watched_tests.rs"]
mod tests;
