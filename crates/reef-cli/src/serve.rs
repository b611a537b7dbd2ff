//! `reef serve`: one scheduler on the chosen device behind the KServe v2
//! HTTP and gRPC endpoints. Models come from a repository directory, or, by
//! default, every zoo model under its zoo name, loaded in the background so
//! the server answers health checks at once.

use crate::device::{self, DeviceChoice};
use anyhow::{Context, Result};
use reef_sched::{GraphSource, Mode, Priority, SchedConfig, Scheduler, Service};
use reef_server::{ModelConfig, Server, ServerConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Options of `reef serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Device.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto, env = "REEF_DEVICE")]
    pub device: DeviceChoice,
    /// Scheduling mode.
    #[arg(long, default_value = "reef", env = "REEF_MODE")]
    pub mode: Mode,
    /// HTTP listen address.
    #[arg(long, default_value = "127.0.0.1:8000", env = "REEF_HTTP_ADDR")]
    pub http: SocketAddr,
    /// gRPC listen address.
    #[arg(long, default_value = "127.0.0.1:8001", env = "REEF_GRPC_ADDR")]
    pub grpc: SocketAddr,
    /// Model repository (one folder per model with a config.toml); without
    /// it every zoo model is served under its zoo name.
    #[arg(long, env = "REEF_MODEL_REPOSITORY")]
    pub repository: Option<PathBuf>,
    /// Serve only these zoo models (comma separated; without a repository).
    #[arg(long, value_delimiter = ',', env = "REEF_MODELS")]
    pub models: Vec<String>,
    /// Largest request body, MiB.
    #[arg(long, default_value_t = 64, env = "REEF_MAX_BODY_MIB")]
    pub max_body_mib: usize,
    /// BE kernels in flight per BE lane.
    #[arg(long, default_value_t = 2, env = "REEF_BE_DEPTH")]
    pub be_depth: usize,
    /// Number of BE queues (1 to 32).
    #[arg(long, default_value_t = 8, env = "REEF_BE_QUEUES")]
    pub be_queues: usize,
    /// RT requests waiting before new ones get 429 / UNAVAILABLE.
    #[arg(long, default_value_t = 1024, env = "REEF_RT_CAPACITY")]
    pub rt_capacity: usize,
    /// BE requests waiting per BE queue before new ones are refused.
    #[arg(long, default_value_t = 256, env = "REEF_BE_CAPACITY")]
    pub be_capacity: usize,
    /// Largest batch a request may carry.
    #[arg(long, default_value_t = 64, env = "REEF_MAX_BATCH")]
    pub max_batch: usize,
    /// Number of devices (GPUs 0..N; on the CPU backend, N emulated devices).
    /// Every model is placed on every device; requests go to the least-loaded
    /// device that holds their model, RT first.
    #[arg(long, default_value_t = 1, env = "REEF_DEVICES")]
    pub devices: usize,
}

fn zoo_configs(names: &[String]) -> Result<Vec<ModelConfig>> {
    let all: Vec<String> = reef_zoo::names().iter().map(|s| s.to_string()).collect();
    let names = if names.is_empty() {
        all.clone()
    } else {
        names.to_vec()
    };
    names
        .into_iter()
        .map(|n| {
            if !all.contains(&n) {
                anyhow::bail!("unknown zoo model '{n}' (see `reef models`)");
            }
            Ok(ModelConfig {
                name: n.clone(),
                source: reef_server::ModelSource::Zoo(n),
                priority: Priority::Be,
                max_batch: 64,
            })
        })
        .collect()
}

/// Runs the server until Ctrl-C or SIGTERM.
pub fn run(a: ServeArgs) -> Result<()> {
    let devs = device::open_many(a.device, a.devices)?;
    let cfg = SchedConfig {
        mode: a.mode,
        be_depth: a.be_depth,
        be_queues: a.be_queues,
        rt_capacity: a.rt_capacity,
        be_capacity: a.be_capacity,
        max_batch: a.max_batch,
    };
    let configs = match &a.repository {
        Some(dir) => reef_server::scan_repository(dir)
            .with_context(|| format!("reading model repository {}", dir.display()))?,
        None => zoo_configs(&a.models)?,
    };
    let names: Vec<String> = devs.iter().map(|d| d.name()).collect();
    let scheds = devs
        .into_iter()
        .map(|d| Scheduler::new(d, cfg.clone()).map_err(|e| anyhow::anyhow!("{e}")))
        .collect::<Result<Vec<_>>>()?;
    let sched: Arc<dyn Service> = if scheds.len() == 1 {
        scheds.into_iter().next().expect("one scheduler")
    } else {
        reef_sched::multi::MultiScheduler::new(scheds).map_err(|e| anyhow::anyhow!("{e}"))?
    };
    let dev_names = names.join(" + ");
    tracing::info!(devices = %dev_names, mode = %a.mode, models = configs.len(), "starting");
    let server_cfg = ServerConfig {
        http_addr: a.http,
        grpc_addr: a.grpc,
        max_body_bytes: a.max_body_mib << 20,
        model_repository: a.repository.clone(),
        ..ServerConfig::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let server = Server::bind(server_cfg).await?;
        println!("reef serving on {dev_names}: HTTP {}, gRPC {} ({} mode)", server.http_addr(), server.grpc_addr(), a.mode);
        let loader = sched.clone();
        tokio::task::spawn_blocking(move || {
            for c in configs {
                let t0 = std::time::Instant::now();
                let source: Result<GraphSource, _> = c.graph_source();
                let r = source.map_err(|e| e.to_string()).and_then(|s| loader.load_model(&c.name, s, c.priority).map_err(|e| e.to_string()));
                match r {
                    Ok(()) => tracing::info!(model = %c.name, secs = t0.elapsed().as_secs_f64(), "model ready"),
                    Err(e) => tracing::error!(model = %c.name, "not loaded: {e}"),
                }
            }
        });
        let shutdown = async {
            let ctrl_c = tokio::signal::ctrl_c();
            #[cfg(unix)]
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut term) => tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} },
                Err(_) => {
                    let _ = ctrl_c.await;
                }
            }
            #[cfg(not(unix))]
            let _ = ctrl_c.await;
            tracing::info!("shutting down: finishing RT work, cancelling BE work");
        };
        server.run(sched, shutdown).await?;
        Ok::<_, anyhow::Error>(())
    })
}
