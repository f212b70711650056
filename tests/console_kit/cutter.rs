//! A loopback TCP proxy that forwards faithfully until told to cut: then
//! it drops every connection open at that moment (the browser sees its
//! WebSocket and its keep-alive connections die) and goes on forwarding
//! new ones. For the console's resume over a dropped connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub struct Cutter {
    pub addr: SocketAddr,
    current: Arc<Mutex<CancellationToken>>,
    connections: Arc<AtomicUsize>,
    stop: CancellationToken,
}

impl Cutter {
    pub async fn start(upstream: SocketAddr) -> Cutter {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("cutter bind: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("cutter addr: {e}"));
        let current = Arc::new(Mutex::new(CancellationToken::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let (cur, conns, stopping) = (current.clone(), connections.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let mut client = tokio::select! {
                    _ = stopping.cancelled() => return,
                    c = listener.accept() => match c {
                        Ok((c, _)) => c,
                        Err(_) => continue,
                    },
                };
                conns.fetch_add(1, Ordering::Relaxed);
                let cut = cur.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let stopping = stopping.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = cut.cancelled() => {}
                        _ = stopping.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    }
                });
            }
        });
        Cutter {
            addr,
            current,
            connections,
            stop,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Drops every connection open now.
    pub fn cut(&self) {
        let mut c = self.current.lock().unwrap_or_else(|p| p.into_inner());
        c.cancel();
        *c = CancellationToken::new();
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

impl Drop for Cutter {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
