//! The `reef` command line: serve models, run a client, list and export the
//! zoo, self-test a device, and benchmark.

mod bench_disb;
mod bench_models;
mod bench_preempt;
mod cases;
mod cases_elementwise;
mod cases_gemm;
mod compile_cmd;
mod device;
mod infer;
mod selftest;
mod selftest_batch;
mod selftest_sched;
mod serve;
mod serve_config;
mod tactic_sweep;
mod tune_cmd;
mod verify;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use device::DeviceChoice;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "reef",
    version,
    about = "reef: GPU inference for real-time and best-effort DNN requests side by side"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve models over the KServe v2 / Triton protocol (HTTP and gRPC).
    /// Without a repository: every zoo model, on the GPU if present, else the CPU.
    Serve(serve::ServeArgs),
    /// Send inference requests to a running server (gRPC).
    Infer(infer::InferArgs),
    /// Run a model with a reference run's inputs and compare the outputs.
    Verify(verify::VerifyArgs),
    /// List the built-in zoo models.
    Models,
    /// Export a zoo model as ONNX and/or safetensors.
    Export {
        /// Zoo model name.
        name: String,
        /// Output directory.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// What to write.
        #[arg(long, value_enum, default_value_t = ExportFormat::Both)]
        format: ExportFormat,
        /// Batch size baked into the exported graph's shapes (dim 0 stays symbolic in ONNX).
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Weight seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Check a device: every kernel and zoo model against the CPU backend, and
    /// preemption at random points against unpreempted runs.
    Selftest {
        /// Device under test.
        #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
        device: DeviceChoice,
        /// Zoo models to check (comma separated; default all).
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        /// Random preemptions per model.
        #[arg(long, default_value_t = 5)]
        preemptions: usize,
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Relative L2 tolerance of whole models on the GPU against the
        /// plain-f32 CPU backend in the tf32x3 and f32 precisions, stated
        /// for TF32 arithmetic and scaled by the precision: x0.1 for
        /// REEF_PRECISION=tf32x3 (1e-4 by default), x0.01 for f32 (1e-5).
        /// In tf32 precision (the default) whole models are judged against
        /// the TF32-rounding CPU instead (--tf32-tol, --tf32-model-factor).
        #[arg(long, default_value_t = 1e-3)]
        model_tol: f64,
        /// Relative L2 tolerance, in tf32 precision on the GPU (the
        /// default), of the tensor-core kernel cases against the CPU backend
        /// with the same GEMM operands rounded to TF32 (only the order and
        /// rounding of the f32 accumulation differ), and the least bound of
        /// whole models. On the H200 every kernel case landed at or under
        /// 4.7e-7 (session 5, run 4), while skipping the TF32 rounding moves
        /// them by 4e-5..3e-4, so 1e-5 separates the two.
        #[arg(long, default_value_t = 1e-5)]
        tf32_tol: f64,
        /// In tf32 precision, whole models also pass within this multiple of
        /// the CPU's own TF32-vs-f32 error on the model: a last-bit
        /// accumulation difference that flips one TF32 rounding grows
        /// through the later layers to about TF32's own error. 0: judge
        /// models by --tf32-tol alone.
        #[arg(long, default_value_t = 2.0)]
        tf32_model_factor: f64,
    },
    /// Compile the CUDA kernel module for a GPU architecture into the kernel
    /// cache (REEF_CACHE_DIR, else ~/.cache/reef/kernels) with NVRTC; no GPU
    /// needed. A device's first use then skips the compile (minutes), e.g.
    /// in a container image built on a machine without a GPU. The kernel
    /// options come from the environment as for a device (REEF_PRECISION,
    /// REEF_WGMMA, REEF_TACTICS, REEF_TALL_TILES, REEF_FLAG_CHUNK,
    /// REEF_NVRTC_DEFINES): they decide which kernel sets a device loads.
    Compile {
        /// Compute capability: 9.0, 90 or sm_90 (H100 / H200).
        #[arg(long, default_value = "9.0")]
        arch: String,
        /// Compile every kernel set (every precision, the tuner's tiles and
        /// the wgmma kernels), not only those the options use.
        #[arg(long)]
        all_sets: bool,
    },
    /// Time every convolution's and matmul's candidate tactics (tile and K
    /// split) of zoo models on the GPU and store the fastest in the tactic
    /// cache beside the compiled kernels, so that later loads with
    /// REEF_TACTICS=tune (e.g. `reef serve`) take them without timing.
    /// Needs a CUDA GPU; the other kernel options come from the environment.
    Tune {
        /// Models (comma separated; default the full-size zoo models).
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        /// Batch sizes (comma separated).
        #[arg(long, value_delimiter = ',', default_value = "1,8")]
        batches: Vec<usize>,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        what: BenchCmd,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Latency of zoo models, RT and BE variants.
    Models {
        /// Device.
        #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
        device: DeviceChoice,
        /// Models (comma separated; default the eight full-size zoo models).
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        /// Batch sizes.
        #[arg(long, value_delimiter = ',', default_value = "1,8")]
        batches: Vec<usize>,
        /// Timed runs per configuration.
        #[arg(long, default_value_t = 20)]
        iters: usize,
        /// Also time every kernel alone (RT variant) and print the N slowest
        /// per model and batch (the JSON gets all of them).
        #[arg(long, default_value_t = 0, value_name = "N")]
        kernels: usize,
        /// Write the figures as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Run a DISB workload in each scheduling mode (and RT alone) and report.
    Disb {
        /// Workload file (DISB JSON; see workloads/).
        #[arg(long, default_value = "workloads/A.json")]
        workload: PathBuf,
        /// Device.
        #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
        device: DeviceChoice,
        /// Modes (comma separated), with options after colons. `reef`:
        /// `reef:besideN` lets up to N BE lanes run beside RT work, `:tileT`
        /// keeps BE kernels with tiles over T us off the device meanwhile
        /// (e.g. `reef,reef:beside1,reef:beside5:tile20`). `reset` and
        /// `reef`: `:drain` drains the BE lanes before launching RT work
        /// (REEF's order; by default RT work is launched first). `wait`,
        /// `reset`, `reef`: `:depthN` keeps N BE kernels in flight per lane
        /// in this mode (e.g. `reset,reset:drain:depth2`).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "seq,stream,wait,reset,reef"
        )]
        modes: Vec<reef_sched::ModeSpec>,
        /// Override the workload's duration (seconds).
        #[arg(long)]
        duration: Option<f64>,
        /// Override the warm-up (seconds).
        #[arg(long)]
        warmup: Option<f64>,
        /// Output directory for JSON, Markdown and SVG.
        #[arg(long, default_value = "disb-results")]
        out: PathBuf,
        /// BE kernels in flight per BE lane (where a mode names no `:depthN`).
        #[arg(long, default_value_t = 2)]
        be_depth: usize,
        /// How long the scheduling thread polls for requests after its work
        /// before it sleeps, ms (as `reef serve --idle-spin-ms`) [default:
        /// 20 on a GPU, 0 on the CPU backend].
        #[arg(long, value_parser = clap::value_parser!(u64).range(0..=serve_config::MAX_IDLE_SPIN_MS))]
        idle_spin_ms: Option<u64>,
        /// With --via-server: the server decodes FP32 inputs into this many MiB
        /// of pinned host buffers (as `reef serve --pinned-input-mib`; 0: off).
        #[arg(long, default_value_t = serve_config::DEFAULT_PINNED_INPUT_MIB as u64, value_parser = clap::value_parser!(u64).range(0..=serve_config::MAX_PINNED_INPUT_MIB as u64))]
        pinned_input_mib: u64,
        /// Also run the workload's BE tasks alone ("be-alone", after
        /// rt-alone, in `stream` mode: nothing holds them back; with
        /// --server, in the server's mode): the report then gives the
        /// throughput ceiling of any mode that runs no BE work beside RT
        /// work (on one device).
        #[arg(long)]
        be_alone: bool,
        /// Hide the progress bar.
        #[arg(long)]
        quiet: bool,
        /// Send every request through a reef server started in this
        /// process (on loopback, over --protocol).
        #[arg(long, alias = "via-grpc")]
        via_server: bool,
        /// The protocol of --via-server and --server: KServe v2 over gRPC,
        /// or over HTTP/1.1 (JSON with Triton's binary tensors).
        #[arg(long, default_value = "grpc")]
        protocol: reef_bench::remote::Protocol,
        /// With --via-server or --server: tensors travel by system shared
        /// memory (each request in flight uses its own registered input and
        /// output regions; the copies count in the latency).
        #[arg(long, conflicts_with = "cuda_shm")]
        shm: bool,
        /// Drive a reef (or Triton) server already running at this address
        /// of --protocol (gRPC: e.g. http://127.0.0.1:8001, or unix:PATH
        /// for the socket of `reef serve --grpc-uds PATH`; HTTP:
        /// http://127.0.0.1:8000, or the socket of --http-uds; another process, serving
        /// the workload's models) instead of schedulers in this process;
        /// --modes names the one mode it runs, for the report. This process
        /// opens no device for it (--device is not used; --cuda-shm
        /// allocates on GPU 0).
        #[arg(long, conflicts_with_all = ["via_server", "devices"])]
        server: Option<String>,
        /// With --server: tensors travel by CUDA shared memory (device
        /// allocations on GPU 0 of this process, exported as IPC handles;
        /// the server must allow client shared memory). The client's
        /// upload and download count in the latency.
        #[arg(long, requires = "server")]
        cuda_shm: bool,
        /// With --cuda-shm: outputs come back through system shared memory
        /// instead (the server writes them into host memory the client
        /// reads directly, as the in-process scheduler answers in host
        /// memory); inputs still travel by CUDA shared memory.
        #[arg(long, requires = "cuda_shm")]
        host_outputs: bool,
        /// With --via-server or --server: how RT requests go out.
        /// `runtime`: through the client's async runtime, as BE requests;
        /// `direct` (HTTP only): the open-loop thread that owns an arrival
        /// uploads its inputs and writes it on a kept-alive connection
        /// itself, and a reader thread polls for the answers (faster where
        /// several RT models arrive at once, slower for one; docs/PERF.md,
        /// Session 31); `poll` (HTTP only): a runtime task uploads the
        /// inputs, writes the request on a kept-alive connection itself and
        /// polls that connection for the answer (no HTTP library between
        /// it and the socket; it holds a runtime worker meanwhile).
        #[arg(long, default_value = "runtime")]
        rt_client: reef_bench::remote::RtClient,
        /// Hold the benchmark's FP32 inputs (64 KiB and up) in pinned host
        /// memory, as a client whose data lands in page-locked buffers: the
        /// scheduler's uploads in process, or the client's into CUDA shared
        /// memory with --server --cuda-shm, are then direct DMA instead of
        /// the driver's staged copy. Needs a GPU in this process.
        #[arg(long, conflicts_with_all = ["via_server", "shm"])]
        pinned_inputs: bool,
        /// Run the client and server side on this many runtime workers that
        /// busy-poll instead of sleeping (as `reef serve --busy-poll`; each
        /// costs a host core; 0: one sleeping worker per core).
        #[arg(long, default_value_t = 0)]
        busy_poll: usize,
        /// Each open-loop client sleeps until this long before its next
        /// arrival, then spins, microseconds. A sleep that overshoots past
        /// the arrival counts against RT latency (the dispatch lag); on a
        /// virtual machine's sleeping cores it reached 1-2 ms at p99.
        #[arg(long, default_value_t = 2000)]
        dispatch_spin_us: u64,
        /// Devices: GPUs 0..N (or N emulated CPU devices), one scheduler each,
        /// every model on every device, requests to the least-loaded device
        /// (as `reef serve --devices N`).
        #[arg(long, default_value_t = 1)]
        devices: usize,
    },
    /// Preemption microbenchmark: preemption latency (p50/p99/max), RT
    /// latency against RT alone, the RT tasks' first kernel on the device
    /// against RT alone (on a GPU, its excess is RT's wait for BE blocks to
    /// leave) and BE throughput, per BE model and mode.
    Preempt {
        /// Device.
        #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
        device: DeviceChoice,
        /// BE models (comma separated; one run each).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "resnet152,densenet201,vgg19,inception_v3,bert_base"
        )]
        be: Vec<String>,
        /// The RT model.
        #[arg(long, default_value = "resnet50")]
        rt: String,
        /// Modes (comma separated), with options after colons. `reef`:
        /// `reef:besideN` lets up to N BE lanes run beside RT work, `:tileT`
        /// keeps BE kernels with tiles over T us off the device meanwhile
        /// (e.g. `reef,reef:beside1,reef:beside5:tile20`). `reset` and
        /// `reef`: `:drain` drains the BE lanes before launching RT work
        /// (REEF's order; by default RT work is launched first). `wait`,
        /// `reset`, `reef`: `:depthN` keeps N BE kernels in flight per lane
        /// in this mode (e.g. `reset,reset:drain:depth2`).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "wait,reset:drain,reef:drain,reset,reef"
        )]
        modes: Vec<reef_sched::ModeSpec>,
        /// RT requests per run (half as many for RT alone).
        #[arg(long, default_value_t = 200)]
        requests: usize,
        /// Largest gap between RT requests, ms (gaps are uniform in [max/4, max]).
        #[arg(long, default_value_t = 8.0)]
        max_gap_ms: f64,
        /// Also time every drain on the device (flag written to the last
        /// flagged lane's end): the rest of the preemption latency is the
        /// host's (the flag write's submission, seeing the lanes idle).
        #[arg(long)]
        time_drains: bool,
        /// Write the rows as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ExportFormat {
    Onnx,
    Safetensors,
    Both,
}

/// The full-size zoo models (every zoo model but the tiny test variants).
fn full_models() -> Vec<String> {
    reef_zoo::names()
        .iter()
        .filter(|n| !n.ends_with("_tiny"))
        .map(|n| n.to_string())
        .collect()
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}

fn run(cli: Cli) -> Result<i32> {
    match cli.cmd {
        Cmd::Serve(a) => serve::run(a).map(|_| 0),
        Cmd::Infer(a) => infer::run(a).map(|_| 0),
        Cmd::Verify(a) => verify::run(a).map(|ok| if ok { 0 } else { 1 }),
        Cmd::Compile { arch, all_sets } => {
            let (major, minor) = compile_cmd::parse_arch(&arch)?;
            let options = reef_cuda::CudaOptions::from_env()?;
            let t = std::time::Instant::now();
            let sets =
                reef_cuda::precompile(major, minor, &options, all_sets).with_context(|| {
                    format!("compiling the kernel modules for compute capability {major}.{minor}")
                })?;
            let dir = reef_cuda::cache_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_default();
            println!(
                "{}",
                compile_cmd::report(major, minor, &sets, &dir, t.elapsed())
            );
            Ok(0)
        }
        Cmd::Tune { models, batches } => {
            let models = if models.is_empty() {
                full_models()
            } else {
                models
            };
            tune_cmd::run(&models, &batches).map(|_| 0)
        }
        Cmd::Models => {
            for n in reef_zoo::names() {
                match reef_zoo::info(n) {
                    Some(i) => println!("{n:<16} {}", i.description),
                    None => println!("{n}"),
                }
            }
            Ok(0)
        }
        Cmd::Export {
            name,
            out,
            format,
            batch,
            seed,
        } => {
            let g = reef_zoo::build(&name, batch, seed)?;
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            if matches!(format, ExportFormat::Onnx | ExportFormat::Both) {
                let p = out.join(format!("{name}.onnx"));
                std::fs::write(&p, reef_onnx::export(&g)?)
                    .with_context(|| format!("writing {}", p.display()))?;
                println!("wrote {}", p.display());
            }
            if matches!(format, ExportFormat::Safetensors | ExportFormat::Both) {
                let p = out.join(format!("{name}.safetensors"));
                reef_model::weights::save_safetensors(&reef_model::weights::named_weights(&g), &p)?;
                println!("wrote {}", p.display());
            }
            Ok(0)
        }
        Cmd::Selftest {
            device,
            models,
            preemptions,
            seed,
            model_tol,
            tf32_tol,
            tf32_model_factor,
        } => {
            let dev = device::open(device, None)?;
            let ok = selftest::run(
                dev,
                &selftest::Options {
                    models,
                    preemptions,
                    seed,
                    model_tol,
                    tf32_tol,
                    tf32_model_factor,
                },
            )?;
            Ok(if ok { 0 } else { 1 })
        }
        Cmd::Bench {
            what:
                BenchCmd::Models {
                    device,
                    models,
                    batches,
                    iters,
                    kernels,
                    json,
                },
        } => {
            if iters == 0 || batches.contains(&0) {
                bail!("--iters and every batch size must be at least 1");
            }
            let dev = device::open(device, None)?;
            let models = if models.is_empty() {
                full_models()
            } else {
                models
            };
            let res = bench_models::run(dev, &models, &batches, iters, kernels)?;
            if let Some(p) = json {
                std::fs::write(&p, serde_json::to_string_pretty(&res)?)
                    .with_context(|| format!("writing {}", p.display()))?;
            }
            Ok(0)
        }
        Cmd::Bench {
            what:
                BenchCmd::Disb {
                    workload,
                    device,
                    modes,
                    duration,
                    warmup,
                    out,
                    be_depth,
                    idle_spin_ms,
                    pinned_input_mib,
                    be_alone,
                    quiet,
                    via_server,
                    protocol,
                    shm,
                    busy_poll,
                    dispatch_spin_us,
                    devices,
                    server,
                    cuda_shm,
                    host_outputs,
                    rt_client,
                    pinned_inputs,
                },
        } => {
            let devs = match server {
                Some(_) => Vec::new(),
                None => device::open_many(device, devices)?,
            };
            let opts = bench_disb::Options {
                workload,
                modes,
                duration,
                warmup,
                out,
                be_depth,
                idle_spin: idle_spin_ms.map(std::time::Duration::from_millis),
                pinned_input_bytes: (pinned_input_mib as usize) << 20,
                be_alone,
                progress: !quiet,
                via_server,
                protocol,
                shm,
                busy_poll,
                dispatch_spin: std::time::Duration::from_micros(dispatch_spin_us),
                server,
                cuda_shm,
                host_outputs,
                rt_client,
                pinned_inputs,
            };
            println!("{}", bench_disb::run(devs, &opts)?);
            Ok(0)
        }
        Cmd::Bench {
            what:
                BenchCmd::Preempt {
                    device,
                    be,
                    rt,
                    modes,
                    requests,
                    max_gap_ms,
                    time_drains,
                    json,
                },
        } => {
            for m in be.iter().chain(std::iter::once(&rt)) {
                if !reef_zoo::names().contains(&m.as_str()) {
                    bail!("unknown zoo model '{m}' (see `reef models`)");
                }
            }
            if requests < 2 || !(max_gap_ms > 0.0 && max_gap_ms.is_finite()) {
                bail!("--requests must be at least 2 and --max-gap-ms positive");
            }
            let dev = device::open(device, None)?;
            let opts = bench_preempt::Options {
                be_models: be,
                rt_model: rt,
                modes,
                requests,
                max_gap_ms,
                time_drains,
                json,
            };
            bench_preempt::run(dev, &opts)?;
            Ok(0)
        }
    }
}
