"""Whether onnxruntime's u8 x s8 integer kernels are exact on this CPU.

On x86-64 without VNNI (AVX2 alone, or AVX-512 without VNNI) onnxruntime's MLAS runs
u8 x s8 (and s8 x s8, shifted to u8) products with VPMADDUBSW, which adds each pair of
u8*s8 products into a saturating 16-bit lane: 255*127*2 = 64770 does not fit, so
onnxruntime's results are not the exact integer results there. onnxruntime's own
advice for such CPUs is `reduce_range=True` (7-bit weights: 255*64*2 = 32640 fits).
With VNNI (AVX-VNNI, AVX512-VNNI, AMX) and on aarch64 its products are exact.

The interop scripts that compare edgeml (always exact) with onnxruntime call
`reduce_range()` and quantize with 7-bit weights where onnxruntime would saturate.
"""

import platform


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def u8s8_exact():
    """True where onnxruntime's u8 x s8 GEMM and convolution kernels are exact."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return True
    return bool(cpu_flags() & {"avx_vnni", "avx512_vnni", "amx_int8"})


def reduce_range(who):
    """The `reduce_range` to quantize with so that onnxruntime's results are exact here;
    prints a line naming the choice when it is True."""
    if u8s8_exact():
        return False
    print(f"{who}: this CPU has no VNNI, so onnxruntime's u8 x s8 kernels saturate "
          "16-bit pair sums; quantizing with reduce_range=True (7-bit weights) so its "
          "results are exact and comparable")
    return True
