//! `reef serve`: one scheduler on the chosen device behind the KServe v2
//! HTTP and gRPC endpoints. Models come from a repository directory, or, by
//! default, every zoo model under its zoo name, loaded in the background so
//! the server answers health checks at once. Settings come from flags,
//! `REEF_*` variables and an optional TOML file ([`crate::serve_config`]).

use crate::device::{self, DeviceChoice};
use crate::serve_config::{self, ServeSettings};
use anyhow::{Context, Result};
use reef_sched::starting::Starting;
use reef_sched::{GraphSource, Mode, PollPause, Priority, SchedConfig, Scheduler, Service};
use reef_server::{ModelConfig, Server, ServerConfig};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Options of `reef serve` as given on the command line or in `REEF_*`
/// environment variables. Every option is optional here: the ones not given
/// come from the configuration file, then from the defaults shown (see
/// [`crate::serve_config`]). The same struct is the configuration file's
/// schema (keys as the flags, with `_` for `-`).
#[derive(clap::Args, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeArgs {
    /// Configuration file (TOML; keys as the flags, with `_` for `-`).
    /// Command-line flags and REEF_* variables override it.
    #[arg(long, env = "REEF_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Device [default: auto].
    #[arg(long, value_enum, env = "REEF_DEVICE")]
    #[serde(default, deserialize_with = "serve_config::de_device")]
    pub device: Option<DeviceChoice>,
    /// Scheduling mode: seq, stream, wait, reset or reef (reset plus dynamic
    /// kernel padding; see docs/RESULTS.md) [default: reset].
    #[arg(long, env = "REEF_MODE")]
    #[serde(default, deserialize_with = "serve_config::de_mode")]
    pub mode: Option<Mode>,
    /// HTTP listen address [default: 127.0.0.1:8000].
    #[arg(long, env = "REEF_HTTP_ADDR")]
    pub http: Option<SocketAddr>,
    /// gRPC listen address [default: 127.0.0.1:8001].
    #[arg(long, env = "REEF_GRPC_ADDR")]
    pub grpc: Option<SocketAddr>,
    /// Also serve HTTP on this Unix domain socket (e.g. for `curl
    /// --unix-socket`); a stale socket file is replaced, and the file is
    /// removed at shutdown.
    #[arg(long, env = "REEF_HTTP_UDS", value_name = "PATH")]
    pub http_uds: Option<PathBuf>,
    /// Also serve gRPC on this Unix domain socket (clients connect to
    /// `unix:PATH`; gRPC's C core, under Python's grpcio and tritonclient,
    /// must also set the channel argument `grpc.default_authority` to
    /// `localhost`); a stale socket file is replaced, and the file is
    /// removed at shutdown.
    #[arg(long, env = "REEF_GRPC_UDS", value_name = "PATH")]
    pub grpc_uds: Option<PathBuf>,
    /// Model repository (one folder per model with a config.toml); without
    /// it every zoo model is served under its zoo name.
    #[arg(long, env = "REEF_MODEL_REPOSITORY")]
    pub repository: Option<PathBuf>,
    /// Serve only these zoo models (comma separated; without a repository).
    #[arg(long, value_delimiter = ',', env = "REEF_MODELS")]
    pub models: Option<Vec<String>>,
    /// Largest request body, MiB [default: 64].
    #[arg(long, env = "REEF_MAX_BODY_MIB")]
    pub max_body_mib: Option<usize>,
    /// BE kernels in flight per BE lane [default: 2].
    #[arg(long, env = "REEF_BE_DEPTH")]
    pub be_depth: Option<usize>,
    /// `reef` mode: BE lanes that keep running beside RT work, on
    /// low-priority streams (0 to 32; 0: BE pauses while RT work runs and
    /// padding is planned per RT kernel) [default: 0].
    #[arg(long, env = "REEF_BESIDE_LANES")]
    pub beside_lanes: Option<usize>,
    /// `reef` mode with beside lanes: the longest estimated BE tile (us)
    /// allowed to run beside RT work (0: no limit) [default: 0].
    #[arg(long, env = "REEF_BESIDE_MAX_TILE_US")]
    pub beside_max_tile_us: Option<u64>,
    /// `reset` and `reef` modes without beside lanes: launch RT kernels
    /// right after raising the BE preemption flags, before the BE lanes have
    /// drained (the running BE blocks leave at their next tile and the RT
    /// stream's priority puts RT blocks first); false: REEF's order, the
    /// drain first [default: true where it applies].
    #[arg(
        long,
        env = "REEF_EARLY_RT",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub early_rt: Option<bool>,
    /// Make the BE lanes for quick drains: on a GPU each gets a told word
    /// and its flag is raised through the preemption relay (shorter
    /// preemptions for about 4% of BE throughput) [default: true where RT
    /// work waits for the drain (`--early-rt=false`, or beside lanes),
    /// false otherwise].
    #[arg(
        long,
        env = "REEF_QUICK_DRAIN",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub quick_drain: Option<bool>,
    /// Write BE requests' inputs and read their outputs on a thread of
    /// their own (one per device, polling like the scheduling thread and so
    /// another busy core on a GPU), so that the scheduling thread notices
    /// RT requests meanwhile [default: true on a GPU, false on the CPU
    /// backend].
    #[arg(
        long,
        env = "REEF_BE_IO_THREAD",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub be_io_thread: Option<bool>,
    /// Number of BE queues (1 to 32) [default: 8].
    #[arg(long, env = "REEF_BE_QUEUES")]
    pub be_queues: Option<usize>,
    /// RT requests waiting before new ones get 429 / UNAVAILABLE [default: 1024].
    #[arg(long, env = "REEF_RT_CAPACITY")]
    pub rt_capacity: Option<usize>,
    /// BE requests waiting per BE queue before new ones are refused [default: 256].
    #[arg(long, env = "REEF_BE_CAPACITY")]
    pub be_capacity: Option<usize>,
    /// Largest batch a request may carry [default: 64].
    #[arg(long, env = "REEF_MAX_BATCH")]
    pub max_batch: Option<usize>,
    /// Number of devices (GPUs 0..N; on the CPU backend, N emulated devices).
    /// Every model is placed on every device; requests go to the least-loaded
    /// device that holds their model, RT first [default: 1].
    #[arg(long, env = "REEF_DEVICES")]
    pub devices: Option<usize>,
    /// Let clients register system and CUDA shared memory regions and pass
    /// tensors through them (the server then reads and writes any /dev/shm
    /// object a client names, and maps device memory a client exports as a
    /// CUDA IPC handle) [default: false].
    #[arg(
        long,
        env = "REEF_ALLOW_CLIENT_SHM",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub allow_client_shm: Option<bool>,
    /// Run the front end on this many worker threads that busy-poll
    /// instead of sleeping: each costs a host core at 100% and saves the
    /// thread wake-ups of a request's hand-offs (hundreds of microseconds
    /// per request on a virtualised host; docs/PERF.md). 0: one sleeping
    /// worker per core [default: 0].
    #[arg(long, env = "REEF_BUSY_POLL")]
    pub busy_poll: Option<usize>,
    /// How long each device's scheduling thread keeps polling for requests
    /// after it runs out of work before it sleeps, ms (0 to 1000): a
    /// request within it skips the thread's wake-up, at the cost of a busy
    /// core [default: 20 on a GPU, 0 on the CPU backend].
    #[arg(long, env = "REEF_IDLE_SPIN_MS")]
    pub idle_spin_ms: Option<u64>,
    /// How each scheduling thread waits between its looks at the queue and
    /// the device while it polls: `spin` keeps the core (no turn for the
    /// operating system to run another thread in the middle of a
    /// preemption), `yield` gives it up each time [default: spin on a GPU,
    /// yield on the CPU backend].
    #[arg(long, env = "REEF_POLL_PAUSE")]
    #[serde(default, deserialize_with = "serve_config::de_poll_pause")]
    pub poll_pause: Option<PollPause>,
    /// Pinned host memory for request inputs, MiB (0 to 65536): the front
    /// end decodes FP32 inputs of 64 KiB and up into page-locked buffers,
    /// which the GPU uploads without the driver's staging copy (as
    /// Triton's pinned memory pool); 0: off [default: 256].
    #[arg(long, env = "REEF_PINNED_INPUT_MIB")]
    pub pinned_input_mib: Option<usize>,
    /// Task contexts (a model's device memory for one request in flight)
    /// made for each model when it loads, 0 to 8, so that the first
    /// requests do not wait for them; more are made as more requests of a
    /// model run at once [default: 2].
    #[arg(long, env = "REEF_CONTEXTS_AT_LOAD")]
    pub contexts_at_load: Option<usize>,
}

fn zoo_configs(names: &[String], max_batch: usize) -> Result<Vec<ModelConfig>> {
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
                max_batch,
                dims: Default::default(),
            })
        })
        .collect()
}

/// Runs the server until Ctrl-C or SIGTERM.
pub fn run(args: ServeArgs) -> Result<()> {
    let a = ServeSettings::resolve(args)?;
    let max_body_bytes = a.max_body_bytes()?;
    device::precheck(a.device, a.devices)?;
    let cfg = SchedConfig {
        mode: a.mode,
        be_depth: a.be_depth,
        be_queues: a.be_queues,
        rt_capacity: a.rt_capacity,
        be_capacity: a.be_capacity,
        max_batch: a.max_batch,
        beside_lanes: a.beside_lanes,
        beside_max_tile: a.beside_max_tile(),
        early_rt: a.early_rt,
        idle_spin: a.idle_spin_ms.map(std::time::Duration::from_millis),
        poll_pause: a.poll_pause,
        quick_drain: a.quick_drain,
        be_io_thread: a.be_io_thread,
        pinned_input_bytes: a.pinned_input_mib << 20,
        // A benchmark's diagnostic (`reef bench preempt --time-drains`).
        time_drains: false,
        contexts_at_load: a.contexts_at_load,
        // A benchmark's option (`reef bench disb --modes reset:late`), not
        // yet measured on a GPU.
        late_raise: false,
    };
    let configs = match &a.repository {
        Some(dir) => reef_server::scan_repository(dir)
            .with_context(|| format!("reading model repository {}", dir.display()))?,
        None => zoo_configs(&a.models, a.max_batch)?,
    };
    let server_cfg = ServerConfig {
        http_addr: a.http,
        grpc_addr: a.grpc,
        http_uds: a.http_uds.clone(),
        grpc_uds: a.grpc_uds.clone(),
        max_body_bytes,
        model_repository: a.repository.clone(),
        // Zoo models report the scheduler's limit (repository models carry
        // their own).
        default_max_batch: Some(a.max_batch),
        allow_client_shm: a.allow_client_shm,
        ..ServerConfig::default()
    };
    let rt = reef_server::front_end_runtime(a.busy_poll).context("starting the front end")?;
    if a.busy_poll > 0 {
        tracing::info!(threads = a.busy_poll, "front end busy-polling");
    }
    // The endpoints answer at once (live; not ready) while the device is
    // opened (a GPU's first start compiles its kernel sets) and the
    // scheduler built; then the models load one by one.
    let starting = Starting::new();
    let sched: Arc<dyn Service> = starting.clone();
    let (device, devices, mode) = (a.device, a.devices, a.mode);
    let unix_sockets: String = [("HTTP", &a.http_uds), ("gRPC", &a.grpc_uds)]
        .iter()
        .filter_map(|(what, p)| p.as_ref().map(|p| format!(", {what} unix:{}", p.display())))
        .collect();
    let result = rt.block_on(async move {
        let server = Server::bind(server_cfg).await?;
        println!(
            "reef serving: HTTP {}, gRPC {}{} ({mode} mode); preparing the device",
            server.http_addr(),
            server.grpc_addr(),
            unix_sockets
        );
        let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<anyhow::Error>();
        tokio::task::spawn_blocking(move || {
            let t0 = std::time::Instant::now();
            let (service, names) = match start_service(device, devices, cfg) {
                Ok(s) => s,
                Err(e) => {
                    let _ = failed_tx.send(e);
                    return;
                }
            };
            tracing::info!(devices = %names, mode = %mode, models = configs.len(), secs = t0.elapsed().as_secs_f64(), "device ready");
            println!("reef ready on {names}");
            starting.started(service.clone());
            for c in configs {
                let t0 = std::time::Instant::now();
                let source: Result<GraphSource, _> = c.graph_source();
                let r = source.map_err(|e| e.to_string()).and_then(|s| service.load_model(&c.name, s, c.priority).map_err(|e| e.to_string()));
                match r {
                    Ok(()) => tracing::info!(model = %c.name, secs = t0.elapsed().as_secs_f64(), "model ready"),
                    Err(e) => tracing::error!(model = %c.name, "not loaded: {e}"),
                }
            }
        });
        let failure = Arc::new(std::sync::Mutex::new(None::<anyhow::Error>));
        let failure_slot = failure.clone();
        let shutdown = async move {
            let ctrl_c = tokio::signal::ctrl_c();
            let signal = async {
                #[cfg(unix)]
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(mut term) => tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} },
                    Err(_) => {
                        let _ = ctrl_c.await;
                    }
                }
                #[cfg(not(unix))]
                let _ = ctrl_c.await;
            };
            tokio::select! {
                _ = signal => tracing::info!("shutting down: finishing RT work, cancelling BE work"),
                Ok(e) = failed_rx => {
                    tracing::error!("the device could not be prepared: {e:#}");
                    *failure_slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                }
            }
        };
        server.run(sched, shutdown).await?;
        let failed = failure.lock().unwrap_or_else(|p| p.into_inner()).take();
        match failed {
            Some(e) => Err(e),
            None => Ok::<_, anyhow::Error>(()),
        }
    });
    // A device still being prepared (kernels compiling) or models still
    // loading when shutdown came: do not wait for them.
    rt.shutdown_background();
    result
}

/// Opens the devices and builds one scheduler per device (a multi-device
/// scheduler over several); returns it and the devices' names.
fn start_service(
    device: DeviceChoice,
    devices: usize,
    cfg: SchedConfig,
) -> Result<(Arc<dyn Service>, String)> {
    let devs = device::open_many(device, devices)?;
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
    Ok((sched, names.join(" + ")))
}
