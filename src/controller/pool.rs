//! The warm pool: for each image with `warm: N` in its YAML, N containers
//! created, attached, started and waiting for a function, so that a session
//! skips the container start (which is most of a cold start).
//!
//! - A warm container is the same hardened container a cold session gets,
//!   with the image's default limits. A run that asks for other memory, CPU
//!   or pids limits starts cold; a timeout is the controller's to enforce,
//!   so asking for one still takes a warm container.
//! - It joins the pool once its driver has said READY: started, imports
//!   done, waiting for the START frame on stdin, which carries the code.
//!   Handing a session a warm container is then one write.
//! - A container serves one session and is never reused: taking one wakes
//!   the refill task, which starts another in the background.
//! - While idle, a watcher holds the container's output stream. The driver
//!   writes nothing before START, so output, an error or the end of the
//!   stream means the container broke (killed, out of memory): it is
//!   removed and replaced.
//! - On shutdown the idle containers are removed. One left behind by a
//!   controller that was killed carries the `PREFIX.pool` label and belongs
//!   to no session, so reconcile removes it at the next start.
//! - Warm containers are not sessions and do not count against
//!   `max_sessions`.

use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWrite;
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, ImageSpec};
use crate::metrics;
use crate::runtime::{ContainerIo, ContainerSpec, OutputChunk, Runtime};
use crate::wire::api::Limits;
use crate::wire::driver::{Decoder, Kind};

/// Backoff between failed attempts to start a warm container.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How long a new warm container's driver has to say READY.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

type Output = BoxStream<'static, crate::runtime::Result<OutputChunk>>;

/// A warm container handed to a session.
pub struct WarmContainer {
    pub container: String,
    pub io: ContainerIo,
}

/// An idle warm container.
struct Idle {
    serial: u64,
    container: String,
    input: Pin<Box<dyn AsyncWrite + Send>>,
    /// Tells the watcher to hand the output stream back.
    take: oneshot::Sender<()>,
    /// The watcher: the output stream if taken, `None` if the container broke.
    watcher: JoinHandle<Option<Output>>,
}

/// One image's pool.
struct ImagePool {
    spec: ImageSpec,
    idle: Mutex<VecDeque<Idle>>,
    /// Wakes the refill task: a container was taken or broke.
    wake: Notify,
    serial: AtomicU64,
}

impl ImagePool {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Idle>> {
        // Every update is one push or remove; a poisoned queue is still whole.
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct Pool {
    images: HashMap<String, Arc<ImagePool>>,
    runtime: Arc<dyn Runtime>,
    label_prefix: String,
    /// This controller's label, on every warm container too.
    controller_label: (String, String),
}

/// Whether a run's limits are the ones warm containers are made with. The
/// timeout is not a container setting, so it may differ.
fn same_container_limits(a: &Limits, b: &Limits) -> bool {
    a.memory == b.memory && a.cpus == b.cpus && a.pids == b.pids
}

impl Pool {
    pub fn new(config: &Config, runtime: Arc<dyn Runtime>) -> Arc<Pool> {
        let images = config
            .images
            .values()
            .filter(|s| s.warm > 0)
            .map(|s| {
                let pool = ImagePool {
                    spec: s.clone(),
                    idle: Mutex::new(VecDeque::new()),
                    wake: Notify::new(),
                    serial: AtomicU64::new(0),
                };
                (s.name.clone(), Arc::new(pool))
            })
            .collect();
        Arc::new(Pool {
            images,
            runtime,
            label_prefix: config.label_prefix.clone(),
            controller_label: config.controller_label(),
        })
    }

    /// The label every warm container carries (its value is the image).
    pub fn label(&self) -> String {
        format!("{}.pool", self.label_prefix)
    }

    /// Idle warm containers of every pooled image, by name.
    pub fn ready_all(&self) -> Vec<(String, u64)> {
        let mut all: Vec<(String, u64)> = self
            .images
            .iter()
            .map(|(name, p)| (name.clone(), p.lock().len() as u64))
            .collect();
        all.sort();
        all
    }

    /// Starts one refill task per pooled image. Each fills its pool, refills
    /// it when a container is taken or breaks, and empties it on shutdown.
    pub fn spawn(self: &Arc<Self>, tracker: &TaskTracker, shutdown: &CancellationToken) {
        for pool in self.images.values() {
            let this = self.clone();
            let pool = pool.clone();
            let shutdown = shutdown.clone();
            tracker.spawn(async move { this.refill(pool, shutdown).await });
        }
    }

    /// Takes a warm container of `image` for a run with `limits`, if one is
    /// ready and fits. Oldest first; broken ones are removed and skipped.
    pub async fn take(&self, image: &str, limits: &Limits) -> Option<WarmContainer> {
        let pool = self.images.get(image)?;
        if !same_container_limits(&pool.spec.limits, limits) {
            return None;
        }
        loop {
            let Some(idle) = pool.lock().pop_front() else {
                metrics::add(&metrics::METRICS.pool_misses, 1);
                return None;
            };
            pool.wake.notify_one();
            let Idle {
                container,
                input,
                take,
                watcher,
                ..
            } = idle;
            // The watcher may have just seen the container break; then the
            // send fails and it answers `None`.
            let _ = take.send(());
            if let Ok(Some(output)) = watcher.await {
                metrics::add(&metrics::METRICS.pool_hits, 1);
                return Some(WarmContainer {
                    container,
                    io: ContainerIo { output, input },
                });
            }
            self.discard(&container).await;
        }
    }

    async fn discard(&self, container: &str) {
        if let Err(e) = self.runtime.remove(container).await {
            tracing::warn!(%container, error = %e, "cannot remove a warm container");
        }
    }

    async fn refill(self: Arc<Self>, pool: Arc<ImagePool>, shutdown: CancellationToken) {
        let image = pool.spec.name.clone();
        let mut backoff = BACKOFF_MIN;
        loop {
            while pool.lock().len() < pool.spec.warm && !shutdown.is_cancelled() {
                match self.start_one(&pool, &shutdown).await {
                    Ok(()) => backoff = BACKOFF_MIN,
                    Err(e) => {
                        tracing::warn!(%image, error = %e, retry_in = ?backoff,
                            "cannot start a warm container");
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = shutdown.cancelled() => {}
                        }
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                    }
                }
            }
            tokio::select! {
                _ = pool.wake.notified() => {}
                _ = shutdown.cancelled() => break,
            }
        }
        let idle: Vec<Idle> = pool.lock().drain(..).collect();
        let drained = idle.len();
        for i in idle {
            i.watcher.abort();
            self.discard(&i.container).await;
        }
        tracing::info!(%image, drained, "warm pool drained");
    }

    /// Creates, attaches and starts one warm container, waits for its
    /// driver's READY, and puts it in the pool with a watcher.
    async fn start_one(
        self: &Arc<Self>,
        pool: &Arc<ImagePool>,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let spec = &pool.spec;
        let short = uuid::Uuid::new_v4().simple().to_string();
        let cspec = ContainerSpec::for_image(
            spec,
            format!("bento-warm-{}-{}", spec.name, &short[..10]),
            HashMap::from([
                (self.label(), spec.name.clone()),
                self.controller_label.clone(),
            ]),
            spec.limits.clone(),
        );
        let container = self.runtime.create(&cspec).await?;
        let started = async {
            let mut io = self.runtime.attach(&container).await?;
            self.runtime.start(&container).await?;
            tokio::select! {
                ready = tokio::time::timeout(READY_TIMEOUT, wait_ready(&mut io.output)) => {
                    ready.map_err(|_| anyhow::anyhow!(
                        "its driver did not say READY within {READY_TIMEOUT:?} \
                         (an image built with an older driver? rebuild it)"
                    ))??;
                    Ok(Some(io))
                }
                _ = shutdown.cancelled() => Ok(None),
            }
        }
        .await;
        let io = match started {
            Ok(Some(io)) if !shutdown.is_cancelled() => io,
            Ok(_) => {
                self.discard(&container).await;
                return Ok(());
            }
            Err(e) => {
                self.discard(&container).await;
                return Err(e);
            }
        };
        let serial = pool.serial.fetch_add(1, Ordering::Relaxed);
        let (take_tx, take_rx) = oneshot::channel();
        let watcher = tokio::spawn(watch(
            self.clone(),
            pool.clone(),
            serial,
            container.clone(),
            io.output,
            take_rx,
        ));
        pool.lock().push_back(Idle {
            serial,
            container,
            input: io.input,
            take: take_tx,
            watcher,
        });
        Ok(())
    }
}

/// Reads a new container's output up to its driver's READY frame. Raw
/// stderr before it (interpreter warnings) is ignored; anything else on
/// the frame stream is not a driver waiting for START.
async fn wait_ready(output: &mut Output) -> anyhow::Result<()> {
    let mut decoder = Decoder::new();
    while let Some(chunk) = output.next().await {
        match chunk? {
            OutputChunk::Stderr(_) => continue,
            OutputChunk::Stdout(bytes) => decoder.feed(bytes),
        }
        if let Some(f) = decoder.next_frame()? {
            if f.kind != Kind::Ready {
                anyhow::bail!("its driver wrote {} before READY", f.kind);
            }
            if !decoder.into_remaining().is_empty() {
                anyhow::bail!("its driver wrote more than READY before START");
            }
            return Ok(());
        }
    }
    anyhow::bail!("its output ended before its driver said READY")
}

/// Holds an idle container's output stream until the container is taken
/// (hands the stream back) or breaks (removes it and wakes the refill).
async fn watch(
    this: Arc<Pool>,
    pool: Arc<ImagePool>,
    serial: u64,
    container: String,
    mut output: Output,
    take: oneshot::Receiver<()>,
) -> Option<Output> {
    let why = tokio::select! {
        biased;
        taken = take => match taken {
            Ok(()) => return Some(output),
            // The pool was dropped with it in it.
            Err(_) => "the pool is gone".to_string(),
        },
        item = output.next() => match item {
            Some(Ok(_)) => "it wrote before it was given a function".to_string(),
            Some(Err(e)) => e.to_string(),
            None => "its output ended".to_string(),
        },
    };
    tracing::warn!(%container, reason = %why, "warm container broke; replacing it");
    let was_idle = {
        let mut idle = pool.lock();
        let at = idle.iter().position(|i| i.serial == serial);
        at.and_then(|at| idle.remove(at)).is_some()
    };
    // If a session took it meanwhile, `take` removes it instead.
    if was_idle {
        this.discard(&container).await;
        pool.wake.notify_one();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::fake::{frame, FakeContainer, FakeRuntime};
    use crate::wire::driver::Kind;
    use std::path::Path;

    fn config(warm: usize) -> Config {
        let mut c = Config::default();
        let mut spec = ImageSpec::builtin_python(Path::new("."));
        spec.warm = warm;
        c.images.insert(spec.name.clone(), spec);
        c
    }

    /// Idle python containers.
    fn ready(pool: &Pool) -> u64 {
        let all = pool.ready_all();
        all.iter()
            .find(|(i, _)| i == "python")
            .map_or(0, |(_, n)| *n)
    }

    /// Waits, yielding to the pool's tasks, until `cond` holds.
    async fn until(what: &str, cond: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(tokio::time::Instant::now() < deadline, "never: {what}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    #[tokio::test]
    async fn takes_fit_refill_replace_and_drain() {
        let config = config(2);
        let fake = FakeRuntime::default();
        let pool = Pool::new(&config, Arc::new(fake.clone()));
        let (tracker, shutdown) = (TaskTracker::new(), CancellationToken::new());
        // Plays each new container's driver: READY once it is attached.
        // The first one says something else first and never joins.
        let drivers = fake.clone();
        let playing = tokio::spawn(async move {
            let mut kept: Vec<FakeContainer> = Vec::new();
            loop {
                while let Some(c) = drivers.take_container() {
                    let kind = if c.id == "fake00000001" {
                        Kind::Data
                    } else {
                        Kind::Ready
                    };
                    drivers.push(&c.id, frame(kind, false, b"")).await;
                    kept.push(c);
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        pool.spawn(&tracker, &shutdown);
        until("filled", || ready(&pool) == 2).await;
        assert_eq!(pool.ready_all(), vec![("python".to_string(), 2)]);

        let defaults = config.images["python"].limits.clone();
        let mut other = defaults.clone();
        other.pids += 1;
        assert!(pool.take("python", &other).await.is_none(), "other limits");
        assert!(
            pool.take("nope", &defaults).await.is_none(),
            "unpooled image"
        );
        let mut longer = defaults.clone();
        longer.timeout *= 2;
        let first = pool.take("python", &longer).await;
        let first = first.map(|w| w.container).unwrap_or_default();
        assert_eq!(first, "fake00000002", "oldest first; a timeout still fits");
        assert!(
            fake.removed().contains(&"fake00000001".into()),
            "no READY: removed"
        );
        until("refilled", || ready(&pool) == 2).await;

        // A container whose output ends broke: removed and replaced.
        fake.exit("fake00000003", 137, false);
        until("replaced", || {
            fake.removed().contains(&"fake00000003".into())
        })
        .await;
        until("refilled again", || ready(&pool) == 2).await;
        assert!(
            !fake.removed().contains(&first),
            "a taken one is the session's"
        );

        shutdown.cancel();
        tracker.close();
        tracker.wait().await;
        playing.abort();
        assert_eq!(ready(&pool), 0);
        let mut removed = fake.removed();
        removed.sort();
        let want = [
            "fake00000001",
            "fake00000003",
            "fake00000004",
            "fake00000005",
        ];
        assert_eq!(removed, want);
    }
}
