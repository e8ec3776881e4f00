//! [`ClientOptions`]: timeouts, retry bounds, identity and watch labels.

use std::collections::BTreeMap;
use std::time::Duration;

/// How a [`crate::Client`] connects, retries and identifies itself.
///
/// Built with chained setters from [`ClientOptions::default`]:
///
/// ```
/// use std::time::Duration;
/// use raftconf_client::ClientOptions;
///
/// let options = ClientOptions::default()
///     .request_timeout(Duration::from_secs(3))
///     .author("deploy-bot")
///     .label("region", "us-east");
/// assert_eq!(options.labels["region"], "us-east");
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientOptions {
    /// Bound on establishing a TCP + HTTP/2 connection to one endpoint, so a dead
    /// address costs this much before the next endpoint is tried.
    pub connect_timeout: Duration,
    /// Bound on one attempt of one unary call on one endpoint.
    pub request_timeout: Duration,
    /// Bound on a whole call across endpoints and retries: during a leader
    /// election every node answers `UNAVAILABLE` for about a second, and a call
    /// should ride that out rather than fail.
    pub call_timeout: Duration,
    /// How many times a write whose outcome is unknown is re-sent (with the same
    /// write id) before [`crate::Error::Indeterminate`] is returned.
    pub max_write_retries: u32,
    /// Shortest pause between two rounds over the endpoints, and before the
    /// first watch reconnect.
    pub backoff_min: Duration,
    /// Longest such pause.
    pub backoff_max: Duration,
    /// HTTP/2 keep-alive ping interval, also while idle: how a dead or
    /// blackholed server (and the watch streams on it) is noticed. With the
    /// defaults (4 s + 2 s) a silent server is left within about 6 s.
    pub keep_alive_interval: Duration,
    /// How long a keep-alive ping may go unanswered before the connection is dropped.
    pub keep_alive_timeout: Duration,
    /// Largest response accepted, in bytes (lists with values can be large).
    pub max_response_bytes: usize,
    /// Sent with every write (metadata `x-raftconf-author`) so history can say who
    /// changed what until tokens carry an identity.
    pub author: Option<String>,
    /// The client id used for write de-duplication and watch delivery tracking.
    /// `None` picks a random one per [`crate::Client`].
    pub client_id: Option<String>,
    /// Labels sent with every watch subscription (e.g. `region=us-east`), which
    /// the server uses to target gray releases.
    pub labels: BTreeMap<String, String>,
    /// Bound on [`crate::WatchedBuilder::start`] waiting for the first good value.
    pub start_timeout: Duration,
    /// Send writes to the leader the servers name (default). When false,
    /// writes go to the endpoints in their usual order and followers forward
    /// them (useful to measure or spread that path).
    pub prefer_leader: bool,
    /// How long a watch holds an ack before sending it; acks made in that
    /// time go as one. Acks feed the server's delivery tracking (`raftconf
    /// clients`), which lags by this much. Sent at once, every subscriber's
    /// ack of one write competed with the fan-out of the next: 10,000
    /// subscribers took 1.5x longer to all have each write.
    pub ack_delay: Duration,
    /// Whether the watches of this client on one server share a stream
    /// (each still resumes on its own). The first watch on a server has a
    /// stream of its own; those that come while it runs share one. An event
    /// several of them need then crosses the network and is decoded once,
    /// and the server keeps one stream instead of one per watch; the price
    /// is a hand-off inside the client between that stream and each watch.
    /// A watch whose caller stops reading holds up no other: once 64 of its
    /// events wait, it leaves the shared stream, and when its caller reads
    /// again it joins again from its last revision (the server replays what
    /// it missed). Servers that do not know watch ids get a stream per watch
    /// whatever this says.
    pub share_watch_streams: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            call_timeout: Duration::from_secs(15),
            max_write_retries: 3,
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            keep_alive_interval: Duration::from_secs(4),
            keep_alive_timeout: Duration::from_secs(2),
            max_response_bytes: 64 * 1024 * 1024,
            author: None,
            client_id: None,
            labels: BTreeMap::new(),
            start_timeout: Duration::from_secs(10),
            prefer_leader: true,
            ack_delay: Duration::from_secs(2),
            share_watch_streams: true,
        }
    }
}

impl ClientOptions {
    /// Sets [`ClientOptions::connect_timeout`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`ClientOptions::request_timeout`].
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets [`ClientOptions::call_timeout`].
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// Sets [`ClientOptions::max_write_retries`].
    pub fn max_write_retries(mut self, retries: u32) -> Self {
        self.max_write_retries = retries;
        self
    }

    /// Sets [`ClientOptions::backoff_min`] and [`ClientOptions::backoff_max`].
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff_min = min;
        self.backoff_max = max.max(min);
        self
    }

    /// Sets [`ClientOptions::keep_alive_interval`] and [`ClientOptions::keep_alive_timeout`].
    pub fn keep_alive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.keep_alive_interval = interval;
        self.keep_alive_timeout = timeout;
        self
    }

    /// Sets [`ClientOptions::max_response_bytes`].
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    /// Sets [`ClientOptions::prefer_leader`].
    pub fn prefer_leader(mut self, prefer: bool) -> Self {
        self.prefer_leader = prefer;
        self
    }

    /// Sets [`ClientOptions::author`].
    pub fn author(mut self, author: impl Into<String>) -> Self {
        self.author = Some(author.into());
        self
    }

    /// Sets [`ClientOptions::client_id`].
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// Adds one watch label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Sets [`ClientOptions::start_timeout`].
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Sets [`ClientOptions::share_watch_streams`].
    pub fn share_watch_streams(mut self, share: bool) -> Self {
        self.share_watch_streams = share;
        self
    }

    /// Sets [`ClientOptions::ack_delay`] (zero: each ack at once).
    pub fn ack_delay(mut self, delay: Duration) -> Self {
        self.ack_delay = delay;
        self
    }

    /// The pause before retry round `round` (0-based): exponential from
    /// `backoff_min` to `backoff_max`, with full jitter (uniform below the
    /// exponential bound) so that many clients do not retry in lockstep.
    pub(crate) fn backoff_for(&self, round: u32) -> Duration {
        let exp = self
            .backoff_min
            .saturating_mul(1u32 << round.min(16))
            .min(self.backoff_max);
        // Full jitter: anywhere in [0, exp), so clients that lost the same
        // server do not come back in lockstep.
        exp.mul_f64(rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_fully_jittered() {
        let o =
            ClientOptions::default().backoff(Duration::from_millis(100), Duration::from_secs(1));
        for round in 0..40 {
            let cap = Duration::from_millis(100)
                .saturating_mul(1 << round.min(16))
                .min(Duration::from_secs(1));
            let pauses: Vec<Duration> = (0..200).map(|_| o.backoff_for(round)).collect();
            assert!(
                pauses.iter().all(|d| *d < cap),
                "round {round}: over {cap:?}"
            );
            // Full jitter spreads over the whole range, not just its top half
            // (200 uniform draws all on one side: probability 2^-199).
            assert!(
                pauses.iter().any(|d| *d < cap / 2),
                "round {round}: none low"
            );
            assert!(
                pauses.iter().any(|d| *d >= cap / 2),
                "round {round}: none high"
            );
        }
    }
}
