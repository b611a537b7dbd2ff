//! Compiles every kernel set for sm_90 with NVRTC (the same code path a
//! device uses, minus the device) and checks that each CUBIN holds exactly
//! its set's entry points. Skips, saying so, when libnvrtc cannot be found
//! (set LD_LIBRARY_PATH to the folder holding libnvrtc.so.13).

use reef_cuda::kernels::{nvrtc_options, program_source, Family, KernelSet};

#[test]
fn kernels_compile() {
    if !reef_cuda::nvrtc_available() {
        println!("SKIP: NVRTC not found (put libnvrtc.so.13 on LD_LIBRARY_PATH)");
        return;
    }
    let src = program_source();
    // The sets compile at once, as on a device's first start.
    let cubins: Vec<(KernelSet, Vec<u8>)> = std::thread::scope(|s| {
        let handles: Vec<_> = KernelSet::ALL
            .into_iter()
            .map(|set| {
                let src = &src;
                s.spawn(move || {
                    let mut options = nvrtc_options(9, 0);
                    options.push(set.define());
                    match reef_cuda::compile_cubin(src, &options) {
                        Ok(c) => (set, c),
                        Err(e) => panic!("kernel set {set} failed to compile:\n{e}"),
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (set, cubin) in cubins {
        // An ELF image naming every entry point of its set and no other.
        assert_eq!(&cubin[..4], b"\x7fELF", "{set}: not a CUBIN");
        let text = String::from_utf8_lossy(&cubin);
        for f in Family::ALL {
            for v in [reef_exec::Variant::Rt, reef_exec::Variant::Be] {
                let name = format!("{}\0", f.entry(v));
                assert_eq!(
                    text.contains(&name),
                    f.set() == set,
                    "entry point {name:?} in the {set} CUBIN"
                );
            }
        }
        assert_eq!(
            text.contains("reef_hold\0"),
            set == KernelSet::Base,
            "{set}"
        );
    }
}

/// The kernel experiments selected by `REEF_NVRTC_DEFINES` (docs/PERF.md,
/// Session 15) keep compiling: the GEMM sets with ldmatrix fragment loads
/// and a fourth pipeline stage.
#[test]
fn kernel_experiments_compile() {
    if !reef_cuda::nvrtc_available() {
        println!("SKIP: NVRTC not found (put libnvrtc.so.13 on LD_LIBRARY_PATH)");
        return;
    }
    let src = program_source();
    std::thread::scope(|s| {
        for set in [KernelSet::Tf32, KernelSet::Tf32Wide] {
            let src = &src;
            s.spawn(move || {
                let mut options = nvrtc_options(9, 0);
                options.push(set.define());
                options.extend(
                    reef_cuda::kernels::nvrtc_defines("REEF_LDMATRIX=1,REEF_GEMM_STAGES=4")
                        .expect("valid defines"),
                );
                if let Err(e) = reef_cuda::compile_cubin(src, &options) {
                    panic!("kernel set {set} with the experiments failed to compile:\n{e}");
                }
            });
        }
    });
}

#[test]
fn compile_errors_carry_the_log() {
    if !reef_cuda::nvrtc_available() {
        println!("SKIP: NVRTC not found");
        return;
    }
    let err = reef_cuda::compile_cubin("this is not CUDA;", &nvrtc_options(9, 0)).unwrap_err();
    match err {
        reef_exec::ExecError::Compile(log) => assert!(!log.is_empty()),
        other => panic!("expected a compile error, got {other}"),
    }
}
