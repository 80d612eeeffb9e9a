//! A local listener bound once per runtime (shard) on one address, `SO_REUSEPORT`: the kernel
//! spreads the connections over them, and each shard serves the ones it accepts
//! (`murmur_transport::shard`).

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::runtime::Handle;

/// One address's listeners: the first runtime's, and those of the others, not yet on them.
#[derive(Debug)]
pub struct Spread {
    /// Shard 0's, on the runtime that bound it.
    pub first: TcpListener,
    /// Shards 1 and on.
    pub others: Vec<std::net::TcpListener>,
}

impl Spread {
    /// Binds `addr` for `shards` runtimes; with one, as tokio's `TcpListener::bind` does.
    pub async fn bind(addr: SocketAddr, shards: usize) -> std::io::Result<Self> {
        if shards <= 1 {
            let first = TcpListener::bind(addr).await?;
            return Ok(Self {
                first,
                others: Vec::new(),
            });
        }
        let mut all = bind_shared(addr, shards)?.into_iter();
        let first = all
            .next()
            .ok_or_else(|| std::io::Error::other("no listener"))?;
        Ok(Self {
            first: TcpListener::from_std(first)?,
            others: all.collect(),
        })
    }

    /// Serves each listener with `serve` on its own runtime: the first on the current one,
    /// the others on `shards` (shard 1 first).
    pub fn serve<F, Fut>(self, shards: &[Handle], serve: F) -> std::io::Result<()>
    where
        F: Fn(TcpListener) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        tokio::spawn(serve(self.first));
        for (listener, shard) in self.others.into_iter().zip(shards) {
            // Registered with, and served on, the shard's own runtime.
            let _entered = shard.enter();
            shard.spawn(serve(TcpListener::from_std(listener)?));
        }
        Ok(())
    }
}

/// `count` listeners on `addr`, each with `SO_REUSEPORT`, as tokio's `TcpListener::bind` makes
/// them otherwise. A plain bind first fails on a busy port (the group would take in another
/// process's listener that shares the port the same way) and picks the port, should `addr` ask
/// for any.
fn bind_shared(addr: SocketAddr, count: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    use socket2::{Domain, Socket, Type};
    let one = |addr: SocketAddr| -> std::io::Result<std::net::TcpListener> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        Ok(socket.into())
    };
    let addr = std::net::TcpListener::bind(addr)?.local_addr()?;
    (0..count).map(|_| one(addr)).collect()
}
