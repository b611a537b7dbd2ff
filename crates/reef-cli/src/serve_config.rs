//! Settings of `reef serve` and its configuration file.
//!
//! `reef serve --config FILE` (or `REEF_CONFIG=FILE`) reads a TOML file whose
//! keys are the flags' names with `_` for `-` (`max_body_mib = 128`). Each
//! setting comes from, in order of precedence: the command line, its
//! `REEF_*` environment variable, the file, the built-in default. Unknown
//! keys and values of the wrong type are errors naming the file, the key and
//! the reason. A relative `repository`, `http_uds` or `grpc_uds` in the file
//! is resolved against the file's folder.

use crate::device::DeviceChoice;
use crate::serve::ServeArgs;
use reef_sched::config::MAX_BE_QUEUES;
use reef_sched::{Mode, PollPause};
use serde::{Deserialize, Deserializer};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};

/// Default device.
pub const DEFAULT_DEVICE: DeviceChoice = DeviceChoice::Auto;
/// Default scheduling mode.
pub const DEFAULT_MODE: Mode = Mode::Reset;
/// Default HTTP listen address.
pub const DEFAULT_HTTP: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8000));
/// Default gRPC listen address.
pub const DEFAULT_GRPC: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8001));
/// Default largest request body, MiB.
pub const DEFAULT_MAX_BODY_MIB: usize = 64;
/// Default BE kernels in flight per BE lane.
pub const DEFAULT_BE_DEPTH: usize = 2;
/// Default number of BE queues.
pub const DEFAULT_BE_QUEUES: usize = 8;
/// Default RT queue capacity.
pub const DEFAULT_RT_CAPACITY: usize = 1024;
/// Default BE capacity per queue.
pub const DEFAULT_BE_CAPACITY: usize = 256;
/// Default largest batch per request.
pub const DEFAULT_MAX_BATCH: usize = 64;
/// Default number of devices.
pub const DEFAULT_DEVICES: usize = 1;
/// Longest `idle_spin_ms`: a scheduling thread polling longer than a second
/// after its work is a mistake, not a setting.
pub const MAX_IDLE_SPIN_MS: u64 = 1000;
/// Largest `pinned_input_mib` (64 GiB): page-locked memory is taken from
/// the host for good, so a larger pool is a typo.
pub const MAX_PINNED_INPUT_MIB: usize = 65536;
/// Default `pinned_input_mib`: the scheduler's default pool.
pub const DEFAULT_PINNED_INPUT_MIB: usize = reef_sched::DEFAULT_PINNED_INPUT_BYTES >> 20;

/// A bad configuration file or setting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", .file.display())]
    Read {
        /// The config file.
        file: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The file is not valid TOML (the reason names the line).
    #[error("config file {}: {reason}", .file.display())]
    Syntax {
        /// The config file.
        file: PathBuf,
        /// What is wrong, with the line.
        reason: String,
    },
    /// A key is unknown or its value has the wrong type.
    #[error("config file {}: key `{key}`: {reason}", location(.file, *.line))]
    Key {
        /// The config file.
        file: PathBuf,
        /// Line of the offending entry, when known (1-based).
        line: Option<usize>,
        /// The key (a path such as `models[1]` for list elements).
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A setting has a value out of range (from wherever it came).
    #[error("setting `{key}`: {reason}")]
    Invalid {
        /// The setting.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
}

fn location(file: &Path, line: Option<usize>) -> String {
    match line {
        Some(l) => format!("{}:{l}", file.display()),
        None => file.display().to_string(),
    }
}

/// Every setting of `reef serve`, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeSettings {
    /// Device.
    pub device: DeviceChoice,
    /// Scheduling mode.
    pub mode: Mode,
    /// HTTP listen address.
    pub http: SocketAddr,
    /// gRPC listen address.
    pub grpc: SocketAddr,
    /// HTTP Unix domain socket.
    pub http_uds: Option<PathBuf>,
    /// gRPC Unix domain socket.
    pub grpc_uds: Option<PathBuf>,
    /// Model repository folder.
    pub repository: Option<PathBuf>,
    /// Zoo models to serve (empty: all).
    pub models: Vec<String>,
    /// Largest request body, MiB.
    pub max_body_mib: usize,
    /// BE kernels in flight per BE lane.
    pub be_depth: usize,
    /// Number of BE queues.
    pub be_queues: usize,
    /// `reef` mode: BE lanes running beside RT work.
    pub beside_lanes: usize,
    /// `reef` mode: longest BE tile beside RT work, us (0: no limit).
    pub beside_max_tile_us: u64,
    /// `reset` / `reef` modes without beside lanes: RT kernels launched
    /// before the BE drain (default; false: drain first).
    pub early_rt: bool,
    /// BE lanes made for quick drains (`None`: where RT work waits for the
    /// drain).
    pub quick_drain: Option<bool>,
    /// BE I/O on a thread of its own (`None`: the device decides).
    pub be_io_thread: Option<bool>,
    /// RT queue capacity.
    pub rt_capacity: usize,
    /// BE capacity per queue.
    pub be_capacity: usize,
    /// Largest batch per request.
    pub max_batch: usize,
    /// Number of devices.
    pub devices: usize,
    /// Whether clients may use system shared memory.
    pub allow_client_shm: bool,
    /// Busy-polling front-end threads.
    pub busy_poll: usize,
    /// The scheduling threads' polling after their work, ms (`None`: the
    /// device decides).
    pub idle_spin_ms: Option<u64>,
    /// How the scheduling threads wait between looks (`None`: the device
    /// decides).
    pub poll_pause: Option<PollPause>,
    /// Pinned input pool, MiB (0: none).
    pub pinned_input_mib: usize,
    /// Task contexts made per model at load.
    pub contexts_at_load: usize,
}

impl ServeSettings {
    /// The settings of parsed arguments (command line and environment),
    /// reading the configuration file they name, if any.
    pub fn resolve(args: ServeArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => load(path)?,
            None => ServeArgs::default(),
        };
        Self::merge(args, file)
    }

    /// `cli` (command line and environment) over `file` over the defaults.
    pub fn merge(cli: ServeArgs, file: ServeArgs) -> Result<Self, ConfigError> {
        let s = ServeSettings {
            device: cli.device.or(file.device).unwrap_or(DEFAULT_DEVICE),
            mode: cli.mode.or(file.mode).unwrap_or(DEFAULT_MODE),
            http: cli.http.or(file.http).unwrap_or(DEFAULT_HTTP),
            grpc: cli.grpc.or(file.grpc).unwrap_or(DEFAULT_GRPC),
            http_uds: cli.http_uds.or(file.http_uds),
            grpc_uds: cli.grpc_uds.or(file.grpc_uds),
            repository: cli.repository.or(file.repository),
            models: cli.models.or(file.models).unwrap_or_default(),
            max_body_mib: cli
                .max_body_mib
                .or(file.max_body_mib)
                .unwrap_or(DEFAULT_MAX_BODY_MIB),
            be_depth: cli.be_depth.or(file.be_depth).unwrap_or(DEFAULT_BE_DEPTH),
            be_queues: cli
                .be_queues
                .or(file.be_queues)
                .unwrap_or(DEFAULT_BE_QUEUES),
            beside_lanes: cli.beside_lanes.or(file.beside_lanes).unwrap_or(0),
            beside_max_tile_us: cli
                .beside_max_tile_us
                .or(file.beside_max_tile_us)
                .unwrap_or(0),
            early_rt: cli.early_rt.or(file.early_rt).unwrap_or(true),
            quick_drain: cli.quick_drain.or(file.quick_drain),
            be_io_thread: cli.be_io_thread.or(file.be_io_thread),
            rt_capacity: cli
                .rt_capacity
                .or(file.rt_capacity)
                .unwrap_or(DEFAULT_RT_CAPACITY),
            be_capacity: cli
                .be_capacity
                .or(file.be_capacity)
                .unwrap_or(DEFAULT_BE_CAPACITY),
            max_batch: cli
                .max_batch
                .or(file.max_batch)
                .unwrap_or(DEFAULT_MAX_BATCH),
            devices: cli.devices.or(file.devices).unwrap_or(DEFAULT_DEVICES),
            allow_client_shm: cli
                .allow_client_shm
                .or(file.allow_client_shm)
                .unwrap_or(false),
            busy_poll: cli.busy_poll.or(file.busy_poll).unwrap_or(0),
            idle_spin_ms: cli.idle_spin_ms.or(file.idle_spin_ms),
            poll_pause: cli.poll_pause.or(file.poll_pause),
            pinned_input_mib: cli
                .pinned_input_mib
                .or(file.pinned_input_mib)
                .unwrap_or(DEFAULT_PINNED_INPUT_MIB),
            contexts_at_load: cli
                .contexts_at_load
                .or(file.contexts_at_load)
                .unwrap_or(reef_sched::DEFAULT_CONTEXTS_AT_LOAD),
        };
        if s.contexts_at_load > reef_sched::MAX_POOLED_CONTEXTS {
            return Err(ConfigError::Invalid {
                key: "contexts_at_load",
                reason: format!(
                    "must be at most {} (the contexts a model keeps), got {}",
                    reef_sched::MAX_POOLED_CONTEXTS,
                    s.contexts_at_load
                ),
            });
        }
        if s.pinned_input_mib > MAX_PINNED_INPUT_MIB {
            return Err(ConfigError::Invalid {
                key: "pinned_input_mib",
                reason: format!(
                    "must be at most {MAX_PINNED_INPUT_MIB} (MiB), got {}",
                    s.pinned_input_mib
                ),
            });
        }
        if let Some(ms) = s.idle_spin_ms.filter(|&ms| ms > MAX_IDLE_SPIN_MS) {
            return Err(ConfigError::Invalid {
                key: "idle_spin_ms",
                reason: format!("must be at most {MAX_IDLE_SPIN_MS} (ms), got {ms}"),
            });
        }
        reef_server::check_busy_pollers(s.busy_poll).map_err(|reason| ConfigError::Invalid {
            key: "busy_poll",
            reason,
        })?;
        s.max_body_bytes()?;
        if s.beside_lanes > MAX_BE_QUEUES {
            return Err(ConfigError::Invalid {
                key: "beside_lanes",
                reason: format!("must be at most {MAX_BE_QUEUES}, got {}", s.beside_lanes),
            });
        }
        // Asked for by name where it cannot apply: an error. (The default
        // applies only where it can.)
        let applies = s.mode.raises_flags() && s.beside_lanes == 0;
        if cli.early_rt.or(file.early_rt) == Some(true) && !applies {
            return Err(ConfigError::Invalid {
                key: "early_rt",
                reason: format!(
                    "needs the reset or reef mode without beside lanes (mode {}, beside_lanes {})",
                    s.mode, s.beside_lanes
                ),
            });
        }
        for (key, v) in [
            ("be_depth", s.be_depth),
            ("be_queues", s.be_queues),
            ("max_batch", s.max_batch),
            ("devices", s.devices),
        ] {
            if v == 0 {
                return Err(ConfigError::Invalid {
                    key,
                    reason: "must be at least 1".into(),
                });
            }
        }
        Ok(s)
    }

    /// The longest BE tile allowed beside RT work (None: no limit).
    pub fn beside_max_tile(&self) -> Option<std::time::Duration> {
        (self.beside_max_tile_us > 0)
            .then(|| std::time::Duration::from_micros(self.beside_max_tile_us))
    }

    /// The body limit in bytes.
    pub fn max_body_bytes(&self) -> Result<usize, ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid {
            key: "max_body_mib",
            reason,
        };
        if self.max_body_mib == 0 {
            return Err(invalid("must be at least 1".into()));
        }
        self.max_body_mib
            .checked_mul(1 << 20)
            .ok_or_else(|| invalid(format!("{} MiB is too large", self.max_body_mib)))
    }
}

/// Reads a configuration file.
pub fn load(file: &Path) -> Result<ServeArgs, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
        file: file.to_path_buf(),
        source,
    })?;
    parse(&text, file)
}

/// Parses configuration text (`file` names it in errors and anchors
/// relative paths).
pub fn parse(text: &str, file: &Path) -> Result<ServeArgs, ConfigError> {
    let de = toml::Deserializer::parse(text).map_err(|e| ConfigError::Syntax {
        file: file.to_path_buf(),
        reason: e.to_string().trim_end().to_string(),
    })?;
    let mut args: ServeArgs = serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        ConfigError::Key {
            file: file.to_path_buf(),
            line: inner
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1),
            key,
            reason: inner.message().to_string(),
        }
    })?;
    if let Some(dir) = file.parent() {
        for path in [&mut args.repository, &mut args.http_uds, &mut args.grpc_uds] {
            if let Some(p) = path.as_ref().filter(|p| p.is_relative()) {
                *path = Some(dir.join(p));
            }
        }
    }
    args.config = None;
    Ok(args)
}

fn parse_str<'de, D, T>(
    d: D,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
{
    let s = String::deserialize(d)?;
    parse(&s).map(Some).map_err(serde::de::Error::custom)
}

/// Deserializes a device name as the `--device` flag spells it.
pub fn de_device<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DeviceChoice>, D::Error> {
    parse_str(d, |s| {
        <DeviceChoice as clap::ValueEnum>::from_str(s, true)
            .map_err(|_| format!("unknown device '{s}' (expected auto, cpu or cuda)"))
    })
}

/// Deserializes a scheduling mode as the `--mode` flag spells it.
pub fn de_mode<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Mode>, D::Error> {
    parse_str(d, str::parse::<Mode>)
}

/// `poll_pause = "yield"` or `"spin"` in the configuration file.
pub fn de_poll_pause<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PollPause>, D::Error> {
    parse_str(d, str::parse::<PollPause>)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn cli(args: &[&str]) -> ServeArgs {
        let mut all = vec!["reef-serve"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).expect("arguments parse").serve
    }

    fn file_of(text: &str) -> ServeArgs {
        parse(text, Path::new("/etc/reef/serve.toml")).expect("config parses")
    }

    fn key_error(text: &str) -> (Option<usize>, String, String, String) {
        let e = parse(text, Path::new("/etc/reef/serve.toml")).expect_err("config is rejected");
        let shown = e.to_string();
        assert!(shown.contains("/etc/reef/serve.toml"), "{shown}");
        match e {
            ConfigError::Key {
                line, key, reason, ..
            } => (line, key, reason, shown),
            other => panic!("expected a key error, got {other:?}"),
        }
    }

    const FULL: &str = r#"
device = "cpu"
mode = "reef"
http = "0.0.0.0:9000"
grpc = "0.0.0.0:9001"
repository = "models"
grpc_uds = "run/reef-grpc.sock"
http_uds = "/run/reef-http.sock"
models = ["resnet_tiny", "vgg_tiny"]
max_body_mib = 16
be_depth = 3
be_queues = 4
beside_lanes = 2
beside_max_tile_us = 30
rt_capacity = 100
be_capacity = 50
max_batch = 16
devices = 2
allow_client_shm = true
busy_poll = 1
"#;

    #[test]
    fn defaults_without_flags_or_file() {
        let s = ServeSettings::merge(cli(&[]), ServeArgs::default()).unwrap();
        assert_eq!(s.device, DEFAULT_DEVICE);
        assert_eq!(s.mode, DEFAULT_MODE);
        assert_eq!(s.http, DEFAULT_HTTP);
        assert_eq!(s.grpc, DEFAULT_GRPC);
        assert_eq!(s.repository, None);
        assert_eq!((s.http_uds.as_ref(), s.grpc_uds.as_ref()), (None, None));
        assert!(s.models.is_empty());
        assert_eq!(s.max_body_mib, DEFAULT_MAX_BODY_MIB);
        assert_eq!(s.max_body_bytes().unwrap(), 64 << 20);
        assert_eq!(
            (s.be_depth, s.be_queues, s.rt_capacity, s.be_capacity),
            (2, 8, 1024, 256)
        );
        assert_eq!((s.max_batch, s.devices), (64, 1));
        assert!(!s.allow_client_shm);
        assert_eq!((s.beside_lanes, s.beside_max_tile()), (0, None));
        assert!(s.early_rt);
    }

    #[test]
    fn file_sets_every_key() {
        let s = ServeSettings::merge(cli(&[]), file_of(FULL)).unwrap();
        assert_eq!(s.device, DeviceChoice::Cpu);
        assert_eq!(s.mode, Mode::Reef);
        assert_eq!(s.http, "0.0.0.0:9000".parse::<SocketAddr>().unwrap());
        assert_eq!(s.grpc, "0.0.0.0:9001".parse::<SocketAddr>().unwrap());
        // Relative to the file's folder.
        assert_eq!(s.repository, Some(PathBuf::from("/etc/reef/models")));
        assert_eq!(
            s.grpc_uds,
            Some(PathBuf::from("/etc/reef/run/reef-grpc.sock"))
        );
        assert_eq!(s.http_uds, Some(PathBuf::from("/run/reef-http.sock")));
        assert_eq!(s.models, vec!["resnet_tiny", "vgg_tiny"]);
        assert_eq!(s.max_body_mib, 16);
        assert_eq!(
            (s.be_depth, s.be_queues, s.rt_capacity, s.be_capacity),
            (3, 4, 100, 50)
        );
        assert_eq!((s.max_batch, s.devices), (16, 2));
        assert!(s.allow_client_shm);
        assert_eq!(s.busy_poll, 1);
        assert_eq!(s.beside_lanes, 2);
        assert_eq!(
            s.beside_max_tile(),
            Some(std::time::Duration::from_micros(30))
        );
    }

    #[test]
    fn early_rt_from_flag_environment_or_file_and_its_bad_combinations() {
        let s = ServeSettings::merge(
            cli(&["--mode", "reset", "--early-rt=false"]),
            ServeArgs::default(),
        )
        .unwrap();
        assert!(!s.early_rt);
        let s =
            ServeSettings::merge(cli(&[]), file_of("mode = \"reef\"\nearly_rt = false\n")).unwrap();
        assert!(!s.early_rt);
        let s = ServeSettings::merge(cli(&["--early-rt"]), file_of("early_rt = false\n")).unwrap();
        assert!(s.early_rt, "the flag over the file");
        // The default where it cannot apply is no error.
        let s = ServeSettings::merge(cli(&["--mode", "wait"]), ServeArgs::default()).unwrap();
        assert_eq!(s.mode, Mode::Wait);
        for (flags, file) in [
            (&["--mode", "stream", "--early-rt"][..], ""),
            (&["--mode", "wait", "--early-rt=true"][..], ""),
            (&["--early-rt"][..], "mode = \"reef\"\nbeside_lanes = 1\n"),
        ] {
            let e = ServeSettings::merge(cli(flags), file_of(file))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("early_rt") && e.contains("reset or reef"),
                "{flags:?} {file:?}: {e}"
            );
        }
    }

    #[test]
    fn quick_drain_from_flag_or_file() {
        let s = ServeSettings::merge(cli(&[]), ServeArgs::default()).unwrap();
        assert_eq!(s.quick_drain, None, "the order decides");
        let s = ServeSettings::merge(cli(&["--quick-drain"]), file_of("quick_drain = false\n"))
            .unwrap();
        assert_eq!(s.quick_drain, Some(true), "the flag over the file");
        let s = ServeSettings::merge(cli(&[]), file_of("quick_drain = false\n")).unwrap();
        assert_eq!(s.quick_drain, Some(false));
    }

    #[test]
    fn be_io_thread_from_flag_or_file() {
        let s = ServeSettings::merge(cli(&[]), ServeArgs::default()).unwrap();
        assert_eq!(s.be_io_thread, None, "the device decides");
        let s = ServeSettings::merge(
            cli(&["--be-io-thread=false"]),
            file_of("be_io_thread = true\n"),
        )
        .unwrap();
        assert_eq!(s.be_io_thread, Some(false), "the flag over the file");
        let s = ServeSettings::merge(cli(&[]), file_of("be_io_thread = true\n")).unwrap();
        assert_eq!(s.be_io_thread, Some(true));
    }

    #[test]
    fn poll_pause_from_flag_or_file_and_bad_words_named() {
        let s = ServeSettings::merge(cli(&[]), ServeArgs::default()).unwrap();
        assert_eq!(s.poll_pause, None, "the device decides");
        let s = ServeSettings::merge(
            cli(&["--poll-pause", "yield"]),
            file_of("poll_pause = \"spin\"\n"),
        )
        .unwrap();
        assert_eq!(
            s.poll_pause,
            Some(PollPause::Yield),
            "the flag over the file"
        );
        let s = ServeSettings::merge(cli(&[]), file_of("poll_pause = \"Spin\"\n")).unwrap();
        assert_eq!(s.poll_pause, Some(PollPause::Spin));
        let (line, key, reason, _) = key_error("poll_pause = \"nap\"\n");
        assert_eq!((line, key.as_str()), (Some(1), "poll_pause"));
        assert!(
            reason.contains("nap") && reason.contains("yield or spin"),
            "{reason}"
        );
    }

    #[test]
    fn idle_spin_is_left_to_the_device_unless_set_and_bounded() {
        let s = ServeSettings::merge(cli(&[]), ServeArgs::default()).unwrap();
        assert_eq!(s.idle_spin_ms, None);
        let s = ServeSettings::merge(cli(&["--idle-spin-ms", "0"]), file_of("idle_spin_ms = 5\n"))
            .unwrap();
        assert_eq!(s.idle_spin_ms, Some(0), "the flag over the file");
        let s = ServeSettings::merge(cli(&[]), file_of("idle_spin_ms = 5\n")).unwrap();
        assert_eq!(s.idle_spin_ms, Some(5));
        let e = ServeSettings::merge(cli(&["--idle-spin-ms", "1001"]), ServeArgs::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("idle_spin_ms") && e.contains("1001"), "{e}");
    }

    #[test]
    fn the_pinned_input_pool_defaults_to_256_mib_and_is_bounded() {
        let s = ServeSettings::merge(cli(&[]), ServeArgs::default()).unwrap();
        assert_eq!(s.pinned_input_mib, 256);
        let s = ServeSettings::merge(cli(&[]), file_of("pinned_input_mib = 0\n")).unwrap();
        assert_eq!(s.pinned_input_mib, 0);
        let e = ServeSettings::merge(cli(&["--pinned-input-mib", "70000"]), ServeArgs::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("pinned_input_mib") && e.contains("70000"), "{e}");
    }

    #[test]
    fn contexts_at_load_default_to_two_and_are_bounded_by_the_pool() {
        let s = ServeSettings::merge(cli(&[]), ServeArgs::default()).unwrap();
        assert_eq!(s.contexts_at_load, 2);
        let s = ServeSettings::merge(cli(&[]), file_of("contexts_at_load = 0\n")).unwrap();
        assert_eq!(s.contexts_at_load, 0);
        let s = ServeSettings::merge(
            cli(&["--contexts-at-load", "5"]),
            file_of("contexts_at_load = 1\n"),
        )
        .unwrap();
        assert_eq!(s.contexts_at_load, 5, "the command line over the file");
        let e = ServeSettings::merge(cli(&["--contexts-at-load", "9"]), ServeArgs::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("contexts_at_load") && e.contains('9'), "{e}");
    }

    #[test]
    fn beside_lanes_out_of_range_is_named() {
        let e = ServeSettings::merge(cli(&["--beside-lanes", "33"]), ServeArgs::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("beside_lanes") && e.contains("33"), "{e}");
    }

    #[test]
    fn busy_poll_defaults_off_and_must_leave_a_core() {
        let s = ServeSettings::merge(cli(&[]), ServeArgs::default()).unwrap();
        assert_eq!(s.busy_poll, 0);
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        let e = ServeSettings::merge(
            cli(&["--busy-poll", &cores.to_string()]),
            ServeArgs::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("busy_poll") && e.contains("core"), "{e}");
    }

    #[test]
    fn allow_client_shm_flag() {
        let s = ServeSettings::merge(cli(&["--allow-client-shm"]), ServeArgs::default()).unwrap();
        assert!(s.allow_client_shm);
        let off = cli(&["--allow-client-shm=false"]);
        let s = ServeSettings::merge(off, file_of(FULL)).unwrap();
        assert!(!s.allow_client_shm, "the command line beats the file");
    }

    #[test]
    fn command_line_beats_file() {
        let args = cli(&[
            "--mode",
            "seq",
            "--http",
            "127.0.0.1:7000",
            "--be-depth",
            "5",
            "--models",
            "bert_tiny",
            "--repository",
            "here",
        ]);
        let s = ServeSettings::merge(args, file_of(FULL)).unwrap();
        assert_eq!(s.mode, Mode::Seq);
        assert_eq!(s.http, "127.0.0.1:7000".parse::<SocketAddr>().unwrap());
        assert_eq!(s.be_depth, 5);
        assert_eq!(s.models, vec!["bert_tiny"]);
        // A flag's relative path stays relative to the working directory.
        assert_eq!(s.repository, Some(PathBuf::from("here")));
        // Keys the command line did not give still come from the file.
        assert_eq!(s.grpc, "0.0.0.0:9001".parse::<SocketAddr>().unwrap());
        assert_eq!(s.be_queues, 4);
        assert_eq!(s.device, DeviceChoice::Cpu);
    }

    #[test]
    fn config_file_is_read_from_flag() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serve.toml");
        std::fs::write(&path, "be_queues = 3\nrepository = \"repo\"\n").unwrap();
        let path_str = path.to_str().unwrap();
        let s = ServeSettings::resolve(cli(&["--config", path_str, "--max-batch", "7"])).unwrap();
        assert_eq!(s.be_queues, 3);
        assert_eq!(s.max_batch, 7);
        assert_eq!(s.repository, Some(dir.path().join("repo")));

        let missing = dir.path().join("absent.toml");
        let e = ServeSettings::resolve(cli(&["--config", missing.to_str().unwrap()]))
            .expect_err("missing file");
        assert!(matches!(e, ConfigError::Read { .. }), "{e:?}");
        assert!(e.to_string().contains("absent.toml"), "{e}");
    }

    /// The environment layer: runs `env_layer_child` in a child process with
    /// REEF_* variables set (so this process's environment is never changed).
    #[test]
    fn environment_beats_file_and_loses_to_command_line() {
        let exe = std::env::current_exe().expect("test binary path");
        let out = std::process::Command::new(exe)
            .args([
                "--exact",
                "serve_config::tests::env_layer_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("REEF_ENV_LAYER_CHILD", "1")
            .env("REEF_BE_DEPTH", "9")
            .env("REEF_MODE", "wait")
            .env("REEF_MAX_BATCH", "11")
            .env("REEF_MODELS", "a_tiny,b_tiny")
            .env("REEF_ALLOW_CLIENT_SHM", "false")
            .env_remove("REEF_CONFIG")
            .output()
            .expect("run the child test");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "child failed:\n{text}");
        assert!(
            text.contains("env layer checked"),
            "child did not run:\n{text}"
        );
    }

    #[test]
    #[ignore = "run by environment_beats_file_and_loses_to_command_line"]
    fn env_layer_child() {
        if std::env::var_os("REEF_ENV_LAYER_CHILD").is_none() {
            println!("SKIP env_layer_child: only meaningful as a child of its parent test");
            return;
        }
        let s = ServeSettings::merge(cli(&["--max-batch", "12"]), file_of(FULL)).unwrap();
        assert_eq!(s.be_depth, 9, "environment over file");
        assert_eq!(s.mode, Mode::Wait, "environment over file");
        assert_eq!(s.models, vec!["a_tiny", "b_tiny"]);
        assert_eq!(s.max_batch, 12, "command line over environment");
        assert_eq!(s.be_queues, 4, "file where neither flag nor environment");
        assert!(!s.allow_client_shm, "environment over file");
        println!("env layer checked");
    }

    #[test]
    fn unknown_key_is_named() {
        let (line, key, reason, shown) = key_error("be_depth = 2\nbe_dpeth = 3\n");
        assert_eq!(key, "be_dpeth");
        assert_eq!(line, Some(2));
        assert!(reason.contains("unknown field"), "{reason}");
        assert!(shown.contains("serve.toml:2"), "{shown}");
        // Tables are unknown keys too.
        let (_, key, _, _) = key_error("[server]\nhttp = \"127.0.0.1:1\"\n");
        assert_eq!(key, "server");
    }

    #[test]
    fn wrong_types_are_named() {
        for (text, want_key, want) in [
            ("be_depth = \"two\"", "be_depth", "invalid type"),
            ("be_queues = -1", "be_queues", "invalid value"),
            ("http = \"localhost\"", "http", "socket address"),
            ("models = \"resnet_tiny\"", "models", "invalid type"),
            ("models = [\"a\", 2]", "models[1]", "invalid type"),
            ("device = \"tpu\"", "device", "unknown device 'tpu'"),
            ("mode = \"fast\"", "mode", "unknown mode 'fast'"),
            ("repository = 3", "repository", "invalid type"),
            ("max_body_mib = 1.5", "max_body_mib", "invalid type"),
        ] {
            let (line, key, reason, shown) = key_error(text);
            assert_eq!(key, want_key, "{text}");
            assert!(reason.contains(want), "{text}: {reason}");
            assert!(shown.contains(&format!("`{want_key}`")), "{shown}");
            assert_eq!(line, Some(1), "{text}");
        }
    }

    /// The README's example file stays a valid configuration: every key it
    /// shows exists, with a value of its type, and the settings resolve.
    #[test]
    fn the_readme_example_config_parses_and_resolves() {
        let readme = include_str!("../../../README.md");
        let start = readme
            .find("# serve.toml")
            .expect("README shows an example serve.toml");
        let body = &readme[start..];
        let text = &body[..body.find("```").expect("the example's code block ends")];
        let file = parse(text, Path::new("README.md")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(file.idle_spin_ms, Some(20));
        assert_eq!(file.be_depth, Some(2));
        let s = ServeSettings::merge(cli(&[]), file).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.mode, Mode::Reset);
    }

    #[test]
    fn syntax_error_names_file_and_line() {
        let e = parse("be_depth = 2\nbe_depth = 3\n", Path::new("s.toml")).unwrap_err();
        assert!(matches!(e, ConfigError::Syntax { .. }), "{e:?}");
        let shown = e.to_string();
        assert!(
            shown.contains("s.toml") && shown.contains("line 2"),
            "{shown}"
        );
        let e = parse("device = \n", Path::new("s.toml")).unwrap_err();
        assert!(matches!(e, ConfigError::Syntax { .. }), "{e:?}");
    }

    #[test]
    fn out_of_range_values_are_rejected() {
        for (text, key) in [
            ("max_body_mib = 0", "max_body_mib"),
            ("be_queues = 0", "be_queues"),
            ("devices = 0", "devices"),
        ] {
            let e = ServeSettings::merge(cli(&[]), file_of(text)).unwrap_err();
            assert!(
                matches!(&e, ConfigError::Invalid { key: k, .. } if *k == key),
                "{text}: {e:?}"
            );
        }
        let huge = format!("max_body_mib = {}", usize::MAX / 2);
        let e = ServeSettings::merge(cli(&[]), file_of(&huge)).unwrap_err();
        assert!(e.to_string().contains("too large"), "{e}");
    }

    #[test]
    fn help_shows_the_defaults() {
        let help = Cli::command().render_help().to_string();
        for want in [
            format!("[default: {DEFAULT_HTTP}]"),
            format!("[default: {DEFAULT_GRPC}]"),
            format!("[default: {DEFAULT_MODE}]"),
            format!("[default: {DEFAULT_MAX_BODY_MIB}]"),
            format!("[default: {DEFAULT_BE_DEPTH}]"),
            format!("[default: {DEFAULT_BE_QUEUES}]"),
            format!("[default: {DEFAULT_RT_CAPACITY}]"),
            format!("[default: {DEFAULT_BE_CAPACITY}]"),
            format!("[default: {DEFAULT_MAX_BATCH}]"),
            format!("[default: {DEFAULT_DEVICES}]"),
            "[default: auto]".to_string(),
        ] {
            assert!(help.contains(&want), "help lacks {want}:\n{help}");
        }
    }
}
