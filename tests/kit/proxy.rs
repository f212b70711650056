//! A fault-injecting TCP proxy for tests, on loopback: it forwards bytes
//! between a client and the controller and, at random points, cuts the
//! connection (often in the middle of a WebSocket frame), stalls it, or
//! delays it. Random but reproducible: the seed is printed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// What the proxy does to each connection.
#[derive(Debug, Clone)]
pub struct Faults {
    /// Bytes a connection may carry (both directions) before it is cut;
    /// drawn uniformly from this range per connection.
    pub cut_after: (usize, usize),
    /// Chance, per forwarded chunk, of stalling for up to `stall_max`.
    pub stall_chance: f64,
    pub stall_max: Duration,
    /// Chance, per connection, that it silently blackholes (stops
    /// forwarding without closing) after its budget, instead of cutting.
    pub blackhole_chance: f64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            cut_after: (64 << 10, 2 << 20),
            stall_chance: 0.01,
            stall_max: Duration::from_millis(50),
            blackhole_chance: 0.0,
        }
    }
}

/// xorshift64*: enough randomness for fault injection, no dependency.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, p: f64) -> bool {
        let x = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        x < p
    }
}

pub struct FaultProxy {
    pub addr: SocketAddr,
    cuts: Arc<AtomicUsize>,
    blackholes: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
    stop: CancellationToken,
}

impl FaultProxy {
    pub async fn start(upstream: SocketAddr, faults: Faults) -> FaultProxy {
        let seed = std::env::var("BENTO_FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| uuid::Uuid::new_v4().as_u64_pair().0 | 1);
        eprintln!("fault proxy seed: {seed} (set BENTO_FAULT_SEED to replay)");
        let rng = Arc::new(Mutex::new(Rng(seed)));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("proxy bind: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("proxy addr: {e}"));
        let proxy = FaultProxy {
            addr,
            cuts: Arc::default(),
            blackholes: Arc::default(),
            connections: Arc::default(),
            stop: CancellationToken::new(),
        };
        let (cuts, holes, conns, stop) = (
            proxy.cuts.clone(),
            proxy.blackholes.clone(),
            proxy.connections.clone(),
            proxy.stop.clone(),
        );
        tokio::spawn(async move {
            loop {
                let client = tokio::select! {
                    _ = stop.cancelled() => return,
                    c = listener.accept() => match c {
                        Ok((c, _)) => c,
                        Err(_) => continue,
                    },
                };
                conns.fetch_add(1, Ordering::Relaxed);
                let (budget, blackhole, conn_rng) = {
                    let mut r = rng.lock().unwrap_or_else(|p| p.into_inner());
                    let (lo, hi) = faults.cut_after;
                    let budget = lo + r.below(hi.saturating_sub(lo).max(1));
                    (budget, r.chance(faults.blackhole_chance), Rng(r.next() | 1))
                };
                let (cuts, holes, faults, stop) =
                    (cuts.clone(), holes.clone(), faults.clone(), stop.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let ended = tokio::select! {
                        _ = stop.cancelled() => return,
                        e = pipe(client, server, budget, blackhole, &faults, conn_rng) => e,
                    };
                    match ended {
                        Ended::Cut => {
                            cuts.fetch_add(1, Ordering::Relaxed);
                        }
                        Ended::Blackholed => {
                            holes.fetch_add(1, Ordering::Relaxed);
                        }
                        Ended::Closed => {}
                    }
                });
            }
        });
        proxy
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connections cut mid-stream so far.
    pub fn cuts(&self) -> usize {
        self.cuts.load(Ordering::Relaxed)
    }

    pub fn blackholes(&self) -> usize {
        self.blackholes.load(Ordering::Relaxed)
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

enum Ended {
    /// One side closed on its own.
    Closed,
    /// The budget ran out: the connection was cut, often mid-frame.
    Cut,
    /// The budget ran out and the connection went silent without closing,
    /// until a peer gave up on it.
    Blackholed,
}

async fn pipe(
    client: TcpStream,
    server: TcpStream,
    budget: usize,
    blackhole: bool,
    faults: &Faults,
    rng: Rng,
) -> Ended {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let left = Arc::new(AtomicUsize::new(budget));
    let rng = Arc::new(Mutex::new(rng));
    let up = copy(
        &mut cr,
        &mut sw,
        left.clone(),
        blackhole,
        faults,
        rng.clone(),
    );
    let down = copy(&mut sr, &mut cw, left, blackhole, faults, rng);
    // Whichever direction ends first ends the connection.
    tokio::select! {
        e = up => e,
        e = down => e,
    }
}

async fn copy(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    left: Arc<AtomicUsize>,
    blackhole: bool,
    faults: &Faults,
    rng: Arc<Mutex<Rng>>,
) -> Ended {
    let mut buf = vec![0u8; 32 << 10];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return Ended::Closed,
            Ok(n) => n,
        };
        let (stall, cut_at) = {
            let mut r = rng.lock().unwrap_or_else(|p| p.into_inner());
            let stall = r.chance(faults.stall_chance).then(|| {
                Duration::from_micros(r.below(faults.stall_max.as_micros() as usize) as u64)
            });
            // Both directions spend one budget: check and spend it under
            // the same lock, or two chunks at once could both pass it.
            let remaining = left.load(Ordering::Relaxed);
            // Cut somewhere inside this chunk when the budget runs out.
            let cut_at = (n >= remaining).then(|| r.below(n.min(remaining).max(1)));
            if cut_at.is_none() {
                left.store(remaining - n, Ordering::Relaxed);
            }
            (stall, cut_at)
        };
        if let Some(d) = stall {
            tokio::time::sleep(d).await;
        }
        match cut_at {
            Some(_) if blackhole => {
                left.store(0, Ordering::Relaxed);
                // Swallow everything until this side gives up and closes.
                loop {
                    match from.read(&mut buf).await {
                        Ok(0) | Err(_) => return Ended::Blackholed,
                        Ok(_) => {}
                    }
                }
            }
            Some(k) => {
                let _ = to.write_all(&buf[..k]).await;
                left.store(0, Ordering::Relaxed);
                return Ended::Cut;
            }
            None => {
                if to.write_all(&buf[..n]).await.is_err() {
                    return Ended::Closed;
                }
            }
        }
    }
}
