//! `reef bench disb`: runs a DISB workload in each scheduling mode (plus RT
//! alone) on one device or over several (`--devices N`), each mode on fresh
//! schedulers with the workload's models loaded, and writes JSON, a Markdown
//! table and SVG plots. Over several devices the JSON and the table also break
//! every mode down per device (RT latency against rt-alone on the same
//! device, BE and total throughput next to the totals). With `--server` it
//! drives a server running in another process instead (one mode, the
//! server's), optionally through CUDA shared memory (`--cuda-shm`).

use anyhow::{Context, Result};
use reef_bench::remote::{Protocol, RemoteService, RtClient};
use reef_bench::{plot, report, run_workload, PinnedInputs, RunOptions, Workload};
use reef_exec::Device;
use reef_sched::{GraphSource, ModeSpec, Priority, SchedConfig, Scheduler, Service};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Options of one DISB run.
pub struct Options {
    /// Workload file.
    pub workload: PathBuf,
    /// Modes to run, with their padding policies (RT alone is always run
    /// first when the workload has RT tasks).
    pub modes: Vec<ModeSpec>,
    /// Override of the workload's duration, seconds.
    pub duration: Option<f64>,
    /// Override of the warm-up, seconds.
    pub warmup: Option<f64>,
    /// Output directory.
    pub out: PathBuf,
    /// BE kernels in flight per BE lane.
    pub be_depth: usize,
    /// [`SchedConfig::idle_spin`] (`None`: the device decides).
    pub idle_spin: Option<Duration>,
    /// [`SchedConfig::pinned_input_bytes`] (used by the server's decoding).
    pub pinned_input_bytes: usize,
    /// Also measure the BE tasks alone (the exclusive-RT ceiling).
    pub be_alone: bool,
    /// Progress bar.
    pub progress: bool,
    /// Drive each mode through a reef server started in this process (on
    /// loopback, over `protocol`) instead of calling the scheduler directly.
    pub via_server: bool,
    /// The protocol of `via_server` and `server`.
    pub protocol: Protocol,
    /// With `via_server` or `server`: tensors travel by system shared memory.
    pub shm: bool,
    /// Busy-polling runtime worker threads (`reef serve --busy-poll`).
    pub busy_poll: usize,
    /// Open-loop clients spin this long before each arrival
    /// ([`RunOptions::spin`]).
    pub dispatch_spin: Duration,
    /// Drive the server at this address (another process) instead of
    /// schedulers of this process.
    pub server: Option<String>,
    /// With `server`: tensors travel by CUDA shared memory on GPU 0.
    pub cuda_shm: bool,
    /// With `cuda_shm`: outputs travel by system shared memory instead.
    pub host_outputs: bool,
    /// With `via_server` or `server`: how the client sends RT requests.
    pub rt_client: RtClient,
    /// Hold the inputs in pinned host memory ([`RunOptions::pinned_inputs`]):
    /// in process on a GPU, or with `server` and `cuda_shm`.
    pub pinned_inputs: bool,
}

/// The SM clock of GPU 0 through NVML, for the report.
struct NvmlClock(reef_cuda::clocks::ClockSampler);

impl reef_bench::clock::ClockSource for NvmlClock {
    fn sm_mhz_between(&self, from: std::time::Instant, to: std::time::Instant) -> Vec<u32> {
        self.0.between(from, to)
    }
}

/// A sampler of GPU 0's SM clock where the run uses a GPU (in process, or a
/// server on this host); none, with the reason logged, where NVML cannot
/// read it.
fn clock_source(devices: &[Arc<dyn Device>], opts: &Options) -> Option<reef_bench::clock::Clock> {
    let on_gpu = match &opts.server {
        Some(_) => reef_cuda::cuda_available(),
        None => devices
            .first()
            .is_some_and(|d| d.kind() == reef_exec::DeviceKind::Cuda),
    };
    if !on_gpu {
        return None;
    }
    let period = Duration::from_millis(reef_bench::clock::SAMPLE_PERIOD_MS);
    match reef_cuda::clocks::ClockSampler::start(0, period) {
        Ok(s) => Some(reef_bench::clock::Clock(Arc::new(NvmlClock(s)))),
        Err(e) => {
            tracing::info!("no SM clock samples: {e}");
            None
        }
    }
}

/// Most pinned memory the benchmark's inputs take (the scheduler's default
/// pool size).
const PINNED_INPUT_BYTES: usize = reef_sched::DEFAULT_PINNED_INPUT_BYTES;

/// The pool of pinned buffers for the inputs where `opts` asks for one.
fn pinned_inputs(devices: &[Arc<dyn Device>], opts: &Options) -> Result<Option<PinnedInputs>> {
    if !opts.pinned_inputs {
        return Ok(None);
    }
    anyhow::ensure!(
        !opts.via_server && !opts.shm,
        "--pinned-inputs: with --via-server or --shm the inputs travel in messages or system shared memory, not from pinned memory"
    );
    let pool = if opts.server.is_some() {
        anyhow::ensure!(
            opts.cuda_shm,
            "--pinned-inputs with --server needs --cuda-shm (the client's uploads are what it speeds up)"
        );
        reef_cuda::host_pool(0, PINNED_INPUT_BYTES)
            .map_err(|e| anyhow::anyhow!("--pinned-inputs needs CUDA GPU 0 in this process: {e}"))?
    } else {
        devices
            .first()
            .and_then(|d| d.host_pool(PINNED_INPUT_BYTES))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "--pinned-inputs needs a GPU (the CPU backend reads inputs where they are)"
                )
            })?
    };
    Ok(Some(PinnedInputs(pool)))
}

/// Client memory for CUDA shared memory: an exported allocation on a GPU.
struct IpcMemory(reef_cuda::ipc::IpcBuffer);

impl reef_server::shm::ClientMemory for IpcMemory {
    fn byte_size(&self) -> u64 {
        self.0.byte_size() as u64
    }
    fn write_at(&self, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
        self.0
            .write(offset as usize, bytes)
            .map_err(std::io::Error::other)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.0
            .read(offset as usize, buf)
            .map_err(std::io::Error::other)
    }
    fn describe(&self) -> String {
        format!(
            "CUDA IPC memory of {} bytes on GPU {}",
            self.0.byte_size(),
            self.0.device()
        )
    }
}

impl reef_bench::remote::CudaMemory for IpcMemory {
    fn raw_handle(&self) -> Vec<u8> {
        self.0.raw_handle().to_vec()
    }
    fn device_id(&self) -> i64 {
        self.0.device() as i64
    }
}

/// Connects to the server at `url` (another process, speaking `protocol`)
/// for one mode, passing
/// tensors through system shared memory when `shm`, CUDA shared memory when
/// `cuda_shm` (outputs through system shared memory when `host_outputs`).
async fn remote(
    url: &str,
    protocol: Protocol,
    models: &[String],
    shm: bool,
    cuda_shm: bool,
    host_outputs: bool,
    rt_client: RtClient,
) -> Result<Arc<dyn Service>> {
    let client = RemoteService::connect(url, protocol, models, None)
        .await?
        .with_rt_client(rt_client)?;
    let client = if shm {
        client.with_shared_memory()
    } else if cuda_shm {
        // Fail here, not on every request, where this process has no GPU.
        reef_cuda::ipc::IpcBuffer::new(0, 1)
            .map_err(|e| anyhow::anyhow!("--cuda-shm needs CUDA GPU 0 in this process: {e}"))?;
        let alloc: reef_bench::remote::CudaAllocator = Arc::new(|bytes| {
            reef_cuda::ipc::IpcBuffer::new(0, bytes as usize)
                .map(|b| Box::new(IpcMemory(b)) as Box<dyn reef_bench::remote::CudaMemory>)
                .map_err(|e| e.to_string())
        });
        if host_outputs {
            client.with_cuda_inputs_system_outputs(alloc)
        } else {
            client.with_cuda_shared_memory(alloc)
        }
    } else {
        client
    };
    let t0 = std::time::Instant::now();
    let pairs = client.prepare_shared_memory(SHM_PAIRS_PER_MODEL).await?;
    if pairs > 0 {
        eprintln!(
            "registered {pairs} shared memory region pairs in {:.1} ms",
            t0.elapsed().as_secs_f64() * 1e3
        );
    }
    Ok(Arc::new(client))
}

/// Region pairs registered per model before a run through shared memory.
const SHM_PAIRS_PER_MODEL: usize = 4;

/// One scheduler per device, each with the models loaded; several devices
/// are served as one [`MultiScheduler`](reef_sched::multi::MultiScheduler)
/// (every model on every device, requests to the least-loaded one).
fn service_on(
    devices: &[Arc<dyn Device>],
    spec: ModeSpec,
    models: &[String],
    base: &SchedConfig,
) -> Result<Arc<dyn Service>> {
    let scheds = devices
        .iter()
        .map(|d| scheduler_with(d, spec, models, base))
        .collect::<Result<Vec<_>>>()?;
    if scheds.len() == 1 {
        return Ok(scheds.into_iter().next().expect("one scheduler") as Arc<dyn Service>);
    }
    Ok(
        reef_sched::multi::MultiScheduler::new(scheds).map_err(|e| anyhow::anyhow!("{e}"))?
            as Arc<dyn Service>,
    )
}

/// Starts a server on loopback ports for `sched` (allowing client shared
/// memory) and connects a client service of `protocol` to it (stats and
/// shutdown go to the scheduler), passing tensors through shared memory
/// when `shm`.
async fn through_server(
    sched: Arc<dyn Service>,
    protocol: Protocol,
    models: &[String],
    shm: bool,
    rt_client: RtClient,
) -> Result<Arc<dyn Service>> {
    let config = reef_server::ServerConfig {
        allow_client_shm: true,
        ..reef_server::ServerConfig::localhost_ephemeral()
    };
    let server = reef_server::Server::bind(config).await?;
    let url = match protocol {
        Protocol::Grpc => format!("http://{}", server.grpc_addr()),
        Protocol::Http => format!("http://{}", server.http_addr()),
    };
    let svc: Arc<dyn Service> = sched.clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _keep = stop_tx;
        if let Err(e) = server
            .run(svc, async move { std::future::pending::<()>().await })
            .await
        {
            tracing::error!("benchmark server: {e}");
        }
    });
    drop(stop_rx);
    let client = RemoteService::connect(&url, protocol, models, Some(sched))
        .await?
        .with_rt_client(rt_client)?;
    if !shm {
        return Ok(Arc::new(client));
    }
    let client = client.with_shared_memory();
    client.prepare_shared_memory(SHM_PAIRS_PER_MODEL).await?;
    Ok(Arc::new(client))
}

/// A scheduler set up as `spec` over `base` on `device` with the zoo
/// models `models` loaded, one BE queue per model.
pub fn scheduler_with(
    device: &Arc<dyn Device>,
    spec: ModeSpec,
    models: &[String],
    base: &SchedConfig,
) -> Result<Arc<Scheduler>> {
    let cfg = spec.apply(SchedConfig {
        be_queues: models.len().clamp(1, 32),
        ..base.clone()
    });
    let s = Scheduler::new(device.clone(), cfg)?;
    for m in models {
        let name = m.clone();
        let source: GraphSource =
            Arc::new(move |batch| reef_zoo::build(&name, batch, 0).map_err(|e| e.to_string()));
        s.load_model(m, source, Priority::Be)
            .with_context(|| format!("loading {m}"))?;
    }
    Ok(s)
}

/// Runs the workload on `devices` (one scheduler each; requests spread over
/// them); returns the Markdown table.
pub fn run(devices: Vec<Arc<dyn Device>>, opts: &Options) -> Result<String> {
    anyhow::ensure!(
        !devices.is_empty() || opts.server.is_some(),
        "no device to run on"
    );
    anyhow::ensure!(
        !opts.shm || opts.via_server || opts.server.is_some(),
        "--shm needs --via-server or --server"
    );
    anyhow::ensure!(
        opts.server.is_none() || opts.modes.len() == 1,
        "with --server, name the one mode the server runs (--modes, as `reef serve --mode`)"
    );
    let mut w = Workload::load(&opts.workload)
        .with_context(|| format!("reading {}", opts.workload.display()))?;
    if let Some(d) = opts.duration {
        w.duration_s = d;
    }
    if let Some(wu) = opts.warmup {
        w.warmup_s = Some(wu);
    }
    w.validate()?;
    let models = w.models();
    let run_opts = RunOptions {
        pinned_inputs: pinned_inputs(&devices, opts)?,
        clock: clock_source(&devices, opts),
        warmup: opts.warmup.map(Duration::from_secs_f64),
        progress: opts.progress,
        be_alone: opts.be_alone.then_some(reef_sched::Mode::Stream),
        spin: opts.dispatch_spin,
        ..RunOptions::default()
    };
    let rt = reef_server::front_end_runtime(opts.busy_poll).context("--busy-poll")?;
    let devs = devices.clone();
    let base = SchedConfig {
        be_depth: opts.be_depth,
        idle_spin: opts.idle_spin,
        pinned_input_bytes: opts.pinned_input_bytes,
        ..SchedConfig::default()
    };
    let via_server = opts.via_server;
    let protocol = opts.protocol;
    let shm = opts.shm;
    let server = opts.server.clone();
    let cuda_shm = opts.cuda_shm;
    let host_outputs = opts.host_outputs;
    let rt_client = opts.rt_client;
    anyhow::ensure!(!host_outputs || cuda_shm, "--host-outputs needs --cuda-shm");
    let result = rt.block_on(async {
        run_workload(
            &w,
            &opts.modes,
            |spec: ModeSpec| -> Result<Arc<dyn Service>, anyhow::Error> {
                tokio::task::block_in_place(|| {
                    if let Some(url) = &server {
                        return tokio::runtime::Handle::current().block_on(remote(
                            url,
                            protocol,
                            &models,
                            shm,
                            cuda_shm,
                            host_outputs,
                            rt_client,
                        ));
                    }
                    let s = service_on(&devs, spec, &models, &base)?;
                    if via_server {
                        tokio::runtime::Handle::current()
                            .block_on(through_server(s, protocol, &models, shm, rt_client))
                    } else {
                        Ok(s)
                    }
                })
            },
            &run_opts,
        )
        .await
    })?;
    let mut result = result;
    let names: Vec<String> = devices.iter().map(|d| d.name()).collect();
    let rt_client = opts.rt_client;
    let mut device = match &opts.server {
        Some(url) => format!("{protocol} server at {url}, RT client {rt_client}"),
        None if opts.via_server => format!(
            "{} through a {protocol} server, RT client {rt_client}",
            names.join(" + ")
        ),
        None => names.join(" + "),
    };
    if opts.pinned_inputs {
        device.push_str(", inputs in pinned memory");
    }
    result.device = Some(device);
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("creating {}", opts.out.display()))?;
    let mut stem = w
        .name
        .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_");
    if opts.via_server || opts.server.is_some() {
        stem.push('-');
        stem.push_str(&opts.protocol.to_string());
    }
    if opts.shm {
        stem.push_str("-shm");
    }
    if opts.cuda_shm {
        stem.push_str("-cudashm");
    }
    if opts.host_outputs {
        stem.push_str("-hostout");
    }
    if opts.pinned_inputs {
        stem.push_str("-pinned");
    }
    let path = |ext: &str| -> PathBuf { Path::new(&opts.out).join(format!("disb-{stem}.{ext}")) };
    report::write_json(&result, &path("json"), false)?;
    report::write_markdown(&result, &path("md"))?;
    plot::rt_latency_cdf(
        &result,
        &Path::new(&opts.out).join(format!("disb-{stem}-cdf.svg")),
    )?;
    plot::throughput_bars(
        &result,
        &Path::new(&opts.out).join(format!("disb-{stem}-throughput.svg")),
    )?;
    Ok(report::markdown(&result))
}
