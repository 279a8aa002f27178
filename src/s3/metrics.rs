//! What a client has done, for `s3mount status` and the Prometheus endpoint: per kind of S3
//! request ([`Operation`]) the requests sent, those that failed and their latency, and the
//! uploads in flight with their progress.
//!
//! Cheap on the request path: [`S3Metrics::record`] is three relaxed atomic additions and one
//! logarithm per request (whose own cost is a network round trip); no lock. The uploads in
//! flight take a lock only when one starts or ends, and their progress is an atomic.
//!
//! Latency is the time from sending a request to its reply's status and headers (a GET's body
//! is read after that by the caller, at its own pace). It is kept in a histogram of fixed
//! buckets four to a doubling, from 100 µs to about 100 s, so the quantiles
//! ([`OperationStats::quantile`]) are within one bucket (a factor 2^¼ ≈ 1.19) of the truth and the
//! Prometheus histogram ([`OperationStats::grouped_buckets`]) can use every fourth bound.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::operation::Operation;

/// The smallest bucket bound, seconds.
const FIRST_BOUND: f64 = 1e-4;
/// Buckets per doubling of the latency: the bounds are `FIRST_BOUND * 2^(i / STEPS)`.
const STEPS_PER_DOUBLING: u32 = 4;
/// Finite buckets: up to `FIRST_BOUND * 2^20` ≈ 105 s; slower requests land in the last,
/// unbounded one.
const BOUNDED_BUCKETS: usize = 81;

/// The upper bound of bucket `i`, seconds.
fn bound(i: usize) -> f64 {
    FIRST_BOUND * 2f64.powf(i as f64 / f64::from(STEPS_PER_DOUBLING))
}

/// The bucket of a latency: the first whose bound is not below it.
fn bucket_of(seconds: f64) -> usize {
    if seconds <= FIRST_BOUND {
        return 0;
    }
    let i = ((seconds / FIRST_BOUND).log2() * f64::from(STEPS_PER_DOUBLING)).ceil();
    if i.is_finite() && i >= 0.0 {
        (i as usize).min(BOUNDED_BUCKETS)
    } else {
        BOUNDED_BUCKETS
    }
}

/// The counters of one operation.
struct OperationCounters {
    count: AtomicU64,
    errors: AtomicU64,
    sum_micros: AtomicU64,
    /// Requests per bucket (not cumulative); the last is unbounded.
    buckets: [AtomicU64; BOUNDED_BUCKETS + 1],
}

impl Default for OperationCounters {
    fn default() -> Self {
        OperationCounters {
            count: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// The figures of one operation at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct OperationStats {
    /// Which.
    pub operation: Operation,
    /// Requests sent (each retry counts).
    pub count: u64,
    /// Those that failed: an error reply or none. A missing object (404) or a condition that
    /// did not hold (412), which callers expect (a lookup of a new name, a conditional
    /// write), is not an error here; a missing bucket is.
    pub errors: u64,
    /// The latencies added up, seconds.
    pub sum_seconds: f64,
    /// Requests per bucket (see the module note); the last is unbounded.
    buckets: Vec<u64>,
}

impl OperationStats {
    /// The latency below which a fraction `q` (0..=1) of the requests were answered, seconds:
    /// interpolated within its bucket, as Prometheus' `histogram_quantile` does. 0 without
    /// requests.
    pub fn quantile(&self, q: f64) -> f64 {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return 0.0;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut below = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            if n > 0 && (below + n) as f64 >= rank {
                if i == BOUNDED_BUCKETS {
                    return bound(BOUNDED_BUCKETS - 1);
                }
                let lower = if i == 0 { 0.0 } else { bound(i - 1) };
                let within = (rank - below as f64) / n as f64;
                return lower + (bound(i) - lower) * within.clamp(0.0, 1.0);
            }
            below += n;
        }
        bound(BOUNDED_BUCKETS - 1)
    }

    /// The buckets of a Prometheus histogram: `(upper bound in seconds, requests in this
    /// bucket)` for every `every`-th bound of the fine buckets (counts merged), then `(+Inf,
    /// the slower ones)`. The counts are per bucket, not cumulative: the encoder adds them up.
    pub fn grouped_buckets(&self, every: usize) -> Vec<(f64, u64)> {
        let every = every.max(1);
        let mut out = Vec::new();
        let mut group = 0u64;
        for (i, &n) in self.buckets.iter().enumerate().take(BOUNDED_BUCKETS) {
            group += n;
            if i % every == 0 || i + 1 == BOUNDED_BUCKETS {
                out.push((bound(i), group));
                group = 0;
            }
        }
        out.push((f64::INFINITY, group + self.buckets[BOUNDED_BUCKETS]));
        out
    }
}

/// One upload in flight, as shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadStats {
    /// The object's key.
    pub key: String,
    /// Bytes the server has acknowledged.
    pub sent: u64,
    /// Bytes to send (for a file streamed while written: what has been written so far).
    pub total: u64,
}

#[derive(Debug)]
struct UploadProgress {
    key: String,
    sent: AtomicU64,
    total: AtomicU64,
}

/// The counters of one client (shared by its clones) and of the uploads sent through it.
#[derive(Default)]
pub struct S3Metrics {
    operations: [OperationCounters; Operation::ALL.len()],
    next_upload: AtomicU64,
    uploads: Mutex<BTreeMap<u64, Arc<UploadProgress>>>,
}

impl std::fmt::Debug for S3Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Metrics").finish_non_exhaustive()
    }
}

impl S3Metrics {
    /// Count one request of kind `op` that took `elapsed`; `failed` if it is an error.
    pub fn record(&self, op: Operation, elapsed: Duration, failed: bool) {
        let c = &self.operations[op as usize];
        c.count.fetch_add(1, Ordering::Relaxed);
        if failed {
            c.errors.fetch_add(1, Ordering::Relaxed);
        }
        c.sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        c.buckets[bucket_of(elapsed.as_secs_f64())].fetch_add(1, Ordering::Relaxed);
    }

    /// The figures of every operation sent at least once, in [`Operation::ALL`]'s order.
    pub fn operations(&self) -> Vec<OperationStats> {
        Operation::ALL
            .into_iter()
            .zip(&self.operations)
            .filter_map(|(operation, c)| {
                let count = c.count.load(Ordering::Relaxed);
                (count > 0).then(|| OperationStats {
                    operation,
                    count,
                    errors: c.errors.load(Ordering::Relaxed),
                    sum_seconds: c.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
                    buckets: c
                        .buckets
                        .iter()
                        .map(|b| b.load(Ordering::Relaxed))
                        .collect(),
                })
            })
            .collect()
    }

    /// An upload of `key` starts, `total` bytes so far; it shows until the ticket is dropped.
    pub fn upload_started(self: &Arc<Self>, key: &str, total: u64) -> UploadTicket {
        let id = self.next_upload.fetch_add(1, Ordering::Relaxed);
        let progress = Arc::new(UploadProgress {
            key: key.to_string(),
            sent: AtomicU64::new(0),
            total: AtomicU64::new(total),
        });
        self.lock_uploads().insert(id, progress.clone());
        UploadTicket {
            metrics: self.clone(),
            id,
            progress,
        }
    }

    /// The uploads in flight, oldest first.
    pub fn uploads(&self) -> Vec<UploadStats> {
        self.lock_uploads()
            .values()
            .map(|p| UploadStats {
                key: p.key.clone(),
                sent: p.sent.load(Ordering::Relaxed),
                total: p.total.load(Ordering::Relaxed),
            })
            .collect()
    }

    fn lock_uploads(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<UploadProgress>>> {
        // A panic elsewhere leaves a map that is still whole: keep counting.
        self.uploads.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An upload in flight; dropping it (done, failed or given up) takes it off the list.
#[derive(Debug)]
pub struct UploadTicket {
    metrics: Arc<S3Metrics>,
    id: u64,
    progress: Arc<UploadProgress>,
}

impl UploadTicket {
    /// `bytes` more acknowledged by the server.
    pub fn sent(&self, bytes: u64) {
        self.progress.sent.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The upload now has `total` bytes to send (a streamed file grew).
    pub fn set_total(&self, total: u64) {
        self.progress.total.store(total, Ordering::Relaxed);
    }
}

impl Drop for UploadTicket {
    fn drop(&mut self) {
        self.metrics.lock_uploads().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_four_to_a_doubling_and_every_latency_has_one() {
        assert_eq!(bucket_of(0.0), 0);
        assert_eq!(bucket_of(FIRST_BOUND), 0);
        assert_eq!(bucket_of(2.0 * FIRST_BOUND), 4);
        assert_eq!(bucket_of(1e9), BOUNDED_BUCKETS);
        assert_eq!(bucket_of(f64::NAN), BOUNDED_BUCKETS);
        for i in 1..BOUNDED_BUCKETS {
            let b = bound(i);
            assert_eq!(bucket_of(b * 0.999), i, "just below bound {i}");
            assert!(b / bound(i - 1) < 1.2);
        }
        assert!(bound(BOUNDED_BUCKETS - 1) > 100.0);
    }

    #[test]
    fn counts_errors_and_quantiles() {
        let m = S3Metrics::default();
        // 100 GETs: 98 of 10 ms, 2 of 1 s (one failed).
        for i in 0..100 {
            let (t, failed) = if i < 98 {
                (0.010, false)
            } else {
                (1.0, i == 99)
            };
            m.record(Operation::GetObject, Duration::from_secs_f64(t), failed);
        }
        m.record(Operation::PutObject, Duration::from_millis(30), false);
        let ops = m.operations();
        assert_eq!(
            ops.iter().map(|o| o.operation).collect::<Vec<_>>(),
            [Operation::GetObject, Operation::PutObject],
            "only what was sent, in ALL's order"
        );
        let get = &ops[0];
        assert_eq!((get.count, get.errors), (100, 1));
        assert!(
            (get.sum_seconds - (0.98 + 2.0)).abs() < 1e-3,
            "{}",
            get.sum_seconds
        );
        let p50 = get.quantile(0.5);
        assert!((0.0091..=0.0101).contains(&p50), "p50 {p50}");
        let p99 = get.quantile(0.99);
        assert!(
            (0.97..=1.16).contains(&p99),
            "p99 {p99}: in the bucket holding 1 s"
        );
        let prom = get.grouped_buckets(4);
        assert_eq!(
            prom.len(),
            22,
            "one bound per doubling from 100 µs, and +Inf"
        );
        assert_eq!(prom.iter().map(|b| b.1).sum::<u64>(), 100);
        assert!(prom.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(prom[0].0, FIRST_BOUND);
        assert_eq!(prom[7].0, FIRST_BOUND * 128.0, "exact doublings");
        // 10 ms lies in (6.4 ms, 12.8 ms], 1 s in (819.2 ms, 1.6384 s].
        assert_eq!(prom[7], (0.0128, 98), "{prom:?}");
        assert_eq!(prom[14].1, 2, "{prom:?}");
        assert_eq!(
            S3Metrics::default().operations(),
            Vec::<OperationStats>::new()
        );
    }

    #[test]
    fn uploads_show_while_their_ticket_lives() {
        let m = Arc::new(S3Metrics::default());
        let a = m.upload_started("a.bin", 100);
        let b = m.upload_started("b.bin", 0);
        a.sent(40);
        b.set_total(64);
        b.sent(8);
        assert_eq!(
            m.uploads(),
            [
                UploadStats {
                    key: "a.bin".into(),
                    sent: 40,
                    total: 100
                },
                UploadStats {
                    key: "b.bin".into(),
                    sent: 8,
                    total: 64
                }
            ]
        );
        drop(a);
        assert_eq!(m.uploads().len(), 1);
        drop(b);
        assert!(m.uploads().is_empty());
    }
}
