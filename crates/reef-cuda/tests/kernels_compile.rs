//! Compiles the whole kernel module for sm_90 with NVRTC (the same code path
//! a device uses, minus the device). Skips, saying so, when libnvrtc cannot
//! be found (set LD_LIBRARY_PATH to the folder holding libnvrtc.so.13).

use reef_cuda::kernels::{nvrtc_options, program_source, Family};

#[test]
fn kernels_compile() {
    if !reef_cuda::nvrtc_available() {
        println!("SKIP: NVRTC not found (put libnvrtc.so.13 on LD_LIBRARY_PATH)");
        return;
    }
    let src = program_source();
    let cubin = match reef_cuda::compile_cubin(&src, &nvrtc_options(9, 0)) {
        Ok(c) => c,
        Err(e) => panic!("kernel module failed to compile:\n{e}"),
    };
    // An ELF image naming every entry point.
    assert_eq!(&cubin[..4], b"\x7fELF", "not a CUBIN");
    let text = String::from_utf8_lossy(&cubin);
    for f in Family::ALL {
        for v in [reef_exec::Variant::Rt, reef_exec::Variant::Be] {
            let name = f.entry(v);
            assert!(
                text.contains(&name),
                "entry point {name} missing from the CUBIN"
            );
        }
    }
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
