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
    for (set, cubin) in compile_sets(&KernelSet::ALL, "") {
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
    compile_sets(
        &[KernelSet::Tf32, KernelSet::Tf32Wide],
        "REEF_LDMATRIX=1,REEF_GEMM_STAGES=4",
    );
}

/// Compiles `sets` for sm_90 with the extra `defines` (a
/// `REEF_NVRTC_DEFINES` value), all at once as on a device's first start;
/// panics with the compile log of a set that fails.
fn compile_sets(sets: &[KernelSet], defines: &str) -> Vec<(KernelSet, Vec<u8>)> {
    let src = program_source();
    let extra = reef_cuda::kernels::nvrtc_defines(defines).expect("valid defines");
    std::thread::scope(|s| {
        let handles: Vec<_> = sets
            .iter()
            .map(|&set| {
                let (src, extra) = (&src, &extra);
                s.spawn(move || {
                    let mut options = nvrtc_options(9, 0);
                    options.push(set.define());
                    options.extend(extra.iter().cloned());
                    match reef_cuda::compile_cubin(src, &options) {
                        Ok(c) => (set, c),
                        Err(e) => panic!("kernel set {set} ({defines:?}) failed to compile:\n{e}"),
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
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
