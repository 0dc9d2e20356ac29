//! The one way tests start a role in-process: bound on `127.0.0.1:0`,
//! spawned with the role's own `serve` function, and returned once its gRPC
//! health says SERVING. `treven serve` starts roles the same way (through
//! `services/treven/src/roles.rs`); the gateway, tenants and reports test
//! harnesses use this instead of each binding, spawning and polling by hand.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A role serving in this process.
#[derive(Debug)]
pub struct InProcess {
    /// Where it listens.
    pub address: SocketAddr,
    /// Cancel to make it drain and stop (as SIGTERM would).
    pub shutdown: CancellationToken,
    task: JoinHandle<Result<(), String>>,
}

impl InProcess {
    /// Binds a loopback port, runs `serve(listener, shutdown)` on it, and
    /// waits (at most 30 s) until the server's gRPC health is SERVING.
    pub async fn start<F, Fut, E>(serve: F) -> InProcess
    where
        F: FnOnce(TcpListener, CancellationToken) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Debug + Send + 'static,
    {
        InProcess::start_with(CancellationToken::new(), serve).await
    }

    /// [`InProcess::start`] stopping on an existing `shutdown` token (several
    /// roles of one test stopping together).
    pub async fn start_with<F, Fut, E>(shutdown: CancellationToken, serve: F) -> InProcess
    where
        F: FnOnce(TcpListener, CancellationToken) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Debug + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let address = listener.local_addr().expect("its address");
        let served = serve(listener, shutdown.clone());
        let task = tokio::spawn(async move { served.await.map_err(|e| format!("{e:?}")) });
        let role = InProcess {
            address,
            shutdown,
            task,
        };
        role.wait_until_serving().await;
        role
    }

    async fn wait_until_serving(&self) {
        use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            assert!(
                !self.task.is_finished(),
                "the role at {} stopped before serving",
                self.address
            );
            if let Ok(channel) =
                tonic::transport::Endpoint::from_shared(format!("http://{}", self.address))
                    .expect("a URL")
                    .connect()
                    .await
                && let Ok(reply) = HealthClient::new(channel)
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await
                && reply.into_inner().status == 1
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the role at {} did not serve within 30 s", self.address);
    }

    /// Cancels it and waits (at most `limit`) for it to stop; its result.
    pub async fn stop(self, limit: Duration) -> Option<Result<(), String>> {
        self.shutdown.cancel();
        match tokio::time::timeout(limit, self.task).await {
            Ok(Ok(result)) => Some(result),
            Ok(Err(panicked)) => Some(Err(format!("panicked: {panicked}"))),
            Err(_) => None,
        }
    }
}
